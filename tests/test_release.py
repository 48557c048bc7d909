"""The student release and the exercise checker (python -m segedu release / check)."""

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from segedu import course

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons").glob("*.ipynb"))

SOLVED = '''def double(x):
    """Twice x."""
    ### BEGIN SOLUTION
    y = x + x
    return y
    ### END SOLUTION'''


def test_strip_solutions_keeps_indentation_and_drops_markers():
    out = course.strip_solutions(SOLVED, course.CODE_PLACEHOLDER)
    assert out.splitlines() == [
        "def double(x):",
        '    """Twice x."""',
        "    # YOUR CODE HERE",
        "    raise NotImplementedError()",
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("### BEGIN SOLUTION\nx = 1", "without ### END"),
        ("x = 1\n### END SOLUTION", "without ### BEGIN"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside another"),
    ],
)
def test_strip_solutions_rejects_unbalanced_markers(text, message):
    with pytest.raises(ValueError, match=message):
        course.strip_solutions(text, "pass")


def _notebook():
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell(SOLVED)
    code.outputs = [nbformat.v4.new_output("stream", text="secret output")]
    code.execution_count = 3
    answer = nbformat.v4.new_markdown_cell("Why?\n\n### BEGIN SOLUTION\nBecause of the secret.\n### END SOLUTION")
    hidden = nbformat.v4.new_code_cell("print('instructor only')")
    hidden.metadata["tags"] = ["instructor"]
    check = nbformat.v4.new_code_cell("from segedu import checks\nassert double(2) == 4\nprint('double: PASSED')")
    nb.cells = [code, answer, hidden, check]
    return nb


def test_release_notebook_removes_every_trace_of_the_solution():
    student = course.release_notebook(_notebook())
    text = nbformat.writes(student)
    for secret in ("x + x", "secret", "BEGIN SOLUTION", "END SOLUTION", "instructor only"):
        assert secret not in text
    assert "raise NotImplementedError()" in student.cells[0].source
    assert course.ANSWER_PLACEHOLDER in student.cells[1].source
    assert len(student.cells) == 3
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in student.cells if c.cell_type == "code")


def _blocks(source: str) -> list[str]:
    """The solution blocks of a cell, in order."""
    blocks, current = [], None
    for line in source.splitlines():
        if line.strip() == course.BEGIN_SOLUTION:
            current = []
        elif line.strip() == course.END_SOLUTION:
            blocks.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def _restore(student_source: str, blocks: list[str]) -> str:
    """Put solution blocks back where the placeholders are (what a student who solved everything hands in)."""
    lines, out, k = student_source.splitlines(), [], 0
    i = 0
    while i < len(lines):
        if lines[i].strip() == "# YOUR CODE HERE" and i + 1 < len(lines) and lines[i + 1].strip() == "raise NotImplementedError()":
            indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
            out += [indent + course.BEGIN_SOLUTION, blocks[k], indent + course.END_SOLUTION]
            k, i = k + 1, i + 2
        else:
            out.append(lines[i])
            i += 1
    return "\n".join(out)


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_released_lessons_hide_solutions_and_restore_exactly(path):
    instructor = nbformat.read(path, as_version=4)
    student = course.release_notebook(instructor)
    exercises = 0
    kept = [c for c in instructor.cells if not course.INSTRUCTOR_TAGS & set(c.metadata.get("tags", []))]
    assert len(kept) == len(student.cells)
    for original, released in zip(kept, student.cells):
        blocks = _blocks(original.source)
        exercises += len(blocks)
        assert "SOLUTION" not in released.source
        for block in blocks:
            for line in block.splitlines():
                if len(line.strip()) > 12 and line.strip() not in original.source.replace(block, ""):
                    assert line.strip() not in released.source, f"{path.name}: solution line survived: {line!r}"
        if original.cell_type == "code":
            assert _restore(released.source, blocks) == original.source, "putting the solutions back restores the lesson"
    assert exercises >= 1, f"{path.name} has no exercise"


def test_release_command_writes_every_lesson(tmp_path):
    out = tmp_path / "release"
    result = subprocess.run(
        [sys.executable, "-m", "segedu", "release", str(ROOT / "lessons"), "--out", str(out)],
        capture_output=True, text=True, check=True,
    )
    assert sorted(p.name for p in out.glob("*.ipynb")) == [p.name for p in LESSONS]
    assert "wrote" in result.stdout
    for path in out.glob("*.ipynb"):
        assert "### BEGIN SOLUTION" not in path.read_text()
    with pytest.raises(ValueError, match="differ"):
        course.release(ROOT / "lessons", ROOT / "lessons")


def test_check_command_reports_each_exercise(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from segedu import checks\nimport torch\n"
            "def iou_from_confusion(m):\n    m = m.double(); tp = m.diagonal()\n    return tp / (m.sum(0) + m.sum(1) - tp)"
        ),
        nbformat.v4.new_code_cell("checks.check_iou_from_confusion(iou_from_confusion)"),
        nbformat.v4.new_code_cell("def wrong(m):\n    return m.diagonal().double() / m.sum(1)"),
        nbformat.v4.new_code_cell("checks.check_iou_from_confusion(wrong)"),
        nbformat.v4.new_code_cell("def todo(m):\n    # YOUR CODE HERE\n    raise NotImplementedError()"),
        nbformat.v4.new_code_cell("checks.check_iou_from_confusion(todo)"),
    ]
    path = tmp_path / "student.ipynb"
    nbformat.write(nb, path)
    summary = tmp_path / "summary.md"
    result = subprocess.run(
        [sys.executable, "-m", "segedu", "check", str(path), "--summary", str(summary)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert result.returncode == 1
    rows = [line for line in result.stdout.splitlines() if line.startswith("student.ipynb")]
    assert [row.split()[2] for row in rows] == ["passed", "failed", "not"]
    assert "recall" in rows[1]  # the check's own message reaches the student
    assert "1 passed, 1 failed, 1 not attempted" in result.stdout
    assert "check_iou_from_confusion" in summary.read_text()


def test_check_command_succeeds_when_everything_passes(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from segedu import checks\n"
            "def f(m):\n    m = m.double(); tp = m.diagonal()\n    return tp / (m.sum(0) + m.sum(1) - tp)\n"
            "checks.check_iou_from_confusion(f)"
        )
    ]
    path = tmp_path / "ok.ipynb"
    nbformat.write(nb, path)
    result = subprocess.run([sys.executable, "-m", "segedu", "check", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
