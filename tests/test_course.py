import pytest

from segedu import course
from segedu.data.tasks import semantic_from_instances


def test_show_returns_the_real_source():
    code = course.show(semantic_from_instances)
    text = course.source(semantic_from_instances)
    assert text.startswith("def semantic_from_instances(")
    assert "semantic[mask] = label" in text
    assert "semantic_from_instances" in code._repr_html_() or text in str(code.data)


def test_show_rejects_builtins():
    with pytest.raises(TypeError, match="show"):
        course.source(len)


def test_lesson_index_follows_course_order(tmp_path):
    for name in ("02_upsampling.ipynb", "00_segmentation_task.ipynb"):
        (tmp_path / name).write_text("{}")
    assert [lesson.number for lesson in course.lesson_index(tmp_path)] == [0, 2]
    numbers = [lesson.number for lesson in course.LESSONS]
    assert numbers == sorted(numbers) == list(range(12))
