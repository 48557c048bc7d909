"""The student release, run: every released lesson, executed top to bottom with errors allowed, fails only with
``NotImplementedError``, and only in its exercise and check cells (issue 9's release test).

This stage runs after the nbval stage in `make test`: with ``SEGEDU_CACHE`` set there, the training cells load
the weights that stage trained, so a released lesson costs about its non-training cells.
"""

import time
from pathlib import Path

import nbformat
import pytest

from segedu import course

ROOT = Path(__file__).resolve().parents[2]
LESSONS = sorted((ROOT / "lessons").glob("*.ipynb"))


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("release")
    course.release(ROOT / "lessons", out)
    return out


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_released_lesson_fails_only_where_the_student_writes(lesson, released, marked_course, monkeypatch,
                                                             record_property):
    monkeypatch.setenv("SEGEDU_PROFILE", "quick")  # the kernel inherits this process's environment
    nb = nbformat.read(released / lesson.name, as_version=4)
    start = time.perf_counter()
    course.execute_notebook(nb, cwd=released, timeout=600)
    record_property("seconds", round(time.perf_counter() - start, 1))

    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    assert all(c.execution_count is not None for _, c in code), "every cell ran"
    errors = {i: o for i, c in code for o in c.outputs if o.output_type == "error"}
    wrong = {i: f"{o.ename}: {o.evalue}" for i, o in errors.items() if o.ename != "NotImplementedError"}
    assert not wrong, f"{lesson.name}: a released lesson may fail only with NotImplementedError, got {wrong}"

    exercise_cells = {i for i, c in code if course.CODE_PLACEHOLDER.splitlines()[-1] in c.source}
    check_cells = {i for i, c in code if course.CHECK_CALL.search(c.source)}
    assert check_cells, f"{lesson.name} has no exercise"
    assert check_cells <= set(errors), f"{lesson.name}: these check cells did not raise: {check_cells - set(errors)}"
    assert set(errors) <= exercise_cells | check_cells, (
        f"{lesson.name}: cells {sorted(set(errors) - exercise_cells - check_cells)} raised NotImplementedError "
        "outside the exercises: a later cell uses a student's function (break the dependency in the lesson)"
    )
    # and the grader, which runs only the set-up and exercise cells, agrees: nothing attempted yet
    results = course.check_notebook(released / lesson.name, course.read_manifest(marked_course[1]))
    assert results and [r.status for r in results] == ["not attempted"] * len(results), results
