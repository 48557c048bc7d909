"""The gradebook (``python -m segedu grade``, issue 17 point 5): one CSV row per student and exercise, one
feedback file per student, submissions graded in parallel, files replaced atomically, bad arguments refused
(exit code 2). The course here is a tiny one made by the test (two lessons, one exercise each)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from segedu import course
from segedu.course.gradebook import COLUMNS, write_gradebook
from segedu.course.grading import ExerciseResult
from segedu.course.manifest import build_manifest, manifest_text
from segedu.course.roles import mark_roles

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
LESSONS = {
    "00_first.ipynb": ("def iou_from_confusion(matrix):\n    ### BEGIN SOLUTION\n    m = matrix.double()\n"
                       "    return m.diagonal() / (m.sum(0) + m.sum(1) - m.diagonal())\n    ### END SOLUTION",
                       "from segedu import checks\n\nchecks.check_iou_from_confusion(iou_from_confusion)"),
    "03_second.ipynb": ("def size(n, k, s=1, p=0, op=0, d=1):\n    ### BEGIN SOLUTION\n"
                        "    return (n - 1) * s - 2 * p + d * (k - 1) + op + 1\n    ### END SOLUTION",
                        "from segedu import checks\n\nchecks.check_transposed_output_size(size)"),
}


def _lesson(exercise: str, check: str):
    nb = nbformat.v4.new_notebook()
    for cell_id, source in (("setup", "import torch"), ("exercise", exercise), ("check", check)):
        nb.cells.append(nbformat.v4.new_code_cell(source))
        nb.cells[-1].id = cell_id
    return nb


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The instructor lessons, the manifest, and three submissions: alice solved both lessons, bob has the
    release (not attempted) and no second lesson, carol's first notebook is a merge conflict."""
    root = tmp_path_factory.mktemp("course")
    (root / "instructor").mkdir()
    released = {}
    for name, (exercise, check) in LESSONS.items():
        nb = _lesson(exercise, check)
        mark_roles(nb, ["setup"], name)
        nbformat.write(nb, root / "instructor" / name)
        released[name] = course.release_notebook(nb, name)
    manifest = root / "manifest.json"
    manifest.write_text(manifest_text(build_manifest(root / "instructor")))
    submissions = root / "submissions"
    for student in ("alice", "bob", "carol"):
        (submissions / student / "lessons").mkdir(parents=True)
    for name in LESSONS:
        solved = nbformat.read(root / "instructor" / name, as_version=4)
        nbformat.write(solved, submissions / "alice" / "lessons" / name)
        nbformat.write(released[name], submissions / "carol" / "lessons" / name)
    nbformat.write(released["00_first.ipynb"], submissions / "bob" / "lessons" / "00_first.ipynb")
    first = submissions / "carol" / "lessons" / "00_first.ipynb"
    first.write_text("<<<<<<< HEAD\n" + first.read_text() + "=======\n>>>>>>> main\n")
    return root, manifest, submissions


def _grade(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "segedu", "grade", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=ENV, timeout=600)


def test_grade_writes_one_row_per_student_and_exercise_and_a_feedback_file_each(setup, tmp_path):
    root, manifest, submissions = setup
    out = tmp_path / "grades.csv"
    students = [submissions / s for s in ("alice", "bob", "carol")]
    result = _grade(*students, "--out", out, "--jobs", 2, "--manifest", manifest, "--timeout", 60, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    with out.open(newline="") as file:
        rows = list(csv.reader(file))
    assert tuple(rows[0]) == COLUMNS
    got = {(r[0], r[1], r[2]): (r[3], r[4]) for r in rows[1:]}
    assert got == {
        ("alice", "00_first.ipynb", "check_iou_from_confusion"): ("passed", "1"),
        ("alice", "03_second.ipynb", "check_transposed_output_size"): ("passed", "1"),
        ("bob", "00_first.ipynb", "check_iou_from_confusion"): ("not attempted", "0"),
        ("bob", "03_second.ipynb", "check_transposed_output_size"): ("missing", "0"),
        ("carol", "00_first.ipynb", "check_iou_from_confusion"): ("error", "0"),
        ("carol", "03_second.ipynb", "check_transposed_output_size"): ("not attempted", "0"),
    }
    assert [r[0] for r in rows[1:]] == ["alice", "alice", "bob", "bob", "carol", "carol"]  # the order given
    feedback = sorted(p.name for p in (tmp_path / "feedback").iterdir())
    assert feedback == ["alice.md", "bob.md", "carol.md"]
    assert "**2/2 points**" in (tmp_path / "feedback" / "alice.md").read_text()
    assert "merge-conflict" in (tmp_path / "feedback" / "carol.md").read_text()
    # a second run replaces the files atomically and leaves no temporary file behind
    result = _grade(submissions / "bob", "--out", out, "--jobs", 1, "--manifest", manifest, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [r.split(",")[0] for r in out.read_text().splitlines()[1:]] == ["bob", "bob"]
    assert not [p for p in tmp_path.rglob(".*tmp")]


def test_grade_refuses_bad_arguments(setup, tmp_path):
    root, manifest, submissions = setup
    result = _grade(tmp_path / "nobody", "--out", tmp_path / "g.csv", "--manifest", manifest, cwd=tmp_path)
    assert result.returncode == 2 and "not a folder" in result.stderr
    twin = tmp_path / "other" / "alice"
    twin.mkdir(parents=True)
    result = _grade(submissions / "alice", twin, "--out", tmp_path / "g.csv", "--manifest", manifest, cwd=tmp_path)
    assert result.returncode == 2 and "same folder name" in result.stderr
    result = _grade(submissions / "alice", "--out", tmp_path / "g.csv", "--timeout", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert not (tmp_path / "g.csv").exists()


def test_messages_with_commas_quotes_and_newlines_survive_the_csv(tmp_path):
    message = 'expected [1, 2], got "x"\nsecond line | pipe'
    graded = {"dana": [ExerciseResult("00_first.ipynb", "check_x", "failed", message, 0, 2)]}
    written = write_gradebook(graded, tmp_path / "g.csv", tmp_path / "fb")
    assert written == [tmp_path / "g.csv", tmp_path / "fb" / "dana.md"]
    with (tmp_path / "g.csv").open(newline="") as file:
        rows = list(csv.reader(file))
    assert rows[1] == ["dana", "00_first.ipynb", "check_x", "failed", "0", message]
    assert "\\| pipe" in (tmp_path / "fb" / "dana.md").read_text()


@pytest.mark.parametrize("bad, error", [(True, TypeError), (2.5, TypeError), (0, ValueError), (-1, ValueError)])
def test_counts_and_time_limits_follow_the_error_rule(bad, error, tmp_path):
    from segedu.course.gradebook import grade_submissions
    from segedu.course.grading import check_notebooks, grade_notebook

    manifest = {"format": "segedu-manifest-v1", "lessons": []}
    with pytest.raises(error, match="jobs"):
        check_notebooks([], manifest, jobs=bad)
    with pytest.raises(error, match="jobs"):
        grade_submissions([], manifest, jobs=bad)
    if not isinstance(bad, float):  # a timeout may be fractional
        with pytest.raises(error, match="timeout"):
            check_notebooks([], manifest, timeout=bad)
        with pytest.raises(error, match="threads"):
            grade_notebook(tmp_path / "x.ipynb", None, threads=bad)
