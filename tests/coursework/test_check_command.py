"""``python -m segedu check`` on a real lesson (00, the cheapest): as released (not attempted), with the
solutions put back (passed, exit status 0) and with a deliberately wrong solution (failed, the check's message
in the table). Each test runs the lesson's set-up cell and exercise cell in a worker process (seconds)."""

import os
import subprocess
import sys
from pathlib import Path

import nbformat

from segedu import course

ROOT = Path(__file__).resolve().parents[2]
LESSON = ROOT / "lessons" / "00_segmentation_task.ipynb"
# The lesson's IoU solution, and the recall a student gets by forgetting the false positives.
RIGHT = "return tp / (matrix.sum(dim=0) + matrix.sum(dim=1) - tp)"
WRONG = "return tp / matrix.sum(dim=1)"


def _student_copy(tmp_path: Path, lessons: Path, solve=None) -> Path:
    """The released lesson 00; ``solve(instructor_source)`` gives the source each released cell gets back."""
    instructor = nbformat.read(lessons / LESSON.name, as_version=4)
    student = course.release_notebook(instructor)
    if solve is not None:
        for cell, original in zip(student.cells, instructor.cells):  # lesson 00 has no instructor-only cells
            cell.source = solve(original.source)
    path = tmp_path / "lessons" / LESSON.name
    path.parent.mkdir()
    nbformat.write(student, path)
    return path


def _check(path: Path, tmp_path: Path, manifest: Path) -> tuple[int, list[str], str]:
    summary = tmp_path / "summary.md"
    result = subprocess.run(
        [sys.executable, "-m", "segedu", "check", str(path), "--summary", str(summary), "--manifest", str(manifest)],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "SEGEDU_PROFILE": "quick"},
    )
    rows = [line for line in result.stdout.splitlines() if line.startswith(path.name)]
    return result.returncode, rows, summary.read_text()


def test_released_lesson_is_not_attempted(tmp_path, marked_course):
    lessons, manifest = marked_course
    code, rows, summary = _check(_student_copy(tmp_path, lessons), tmp_path, manifest)
    assert code == 1
    assert [row.split()[1:4] for row in rows] == [["check_iou_from_confusion", "not", "attempted"],
                                                  ["check_window_macs", "not", "attempted"]]
    assert "not attempted" in summary and "`check_iou_from_confusion`" in summary


def test_restored_lesson_passes(tmp_path, marked_course):
    lessons, manifest = marked_course
    code, rows, summary = _check(_student_copy(tmp_path, lessons, solve=lambda s: s), tmp_path, manifest)
    assert code == 0, rows
    assert [row.split()[1:4] for row in rows] == [["check_iou_from_confusion", "passed", "1/1"],
                                                  ["check_window_macs", "passed", "1/1"]]
    assert "2 passed, 0 failed, 0 not attempted - 2/2 points" in summary


def test_wrong_solution_fails_with_the_checks_message(tmp_path, marked_course):
    lessons, manifest = marked_course
    assert RIGHT in LESSON.read_text(), "lesson 00's solution changed: update RIGHT"

    def wrong(source: str) -> str:
        return source.replace(RIGHT, WRONG)

    code, rows, summary = _check(_student_copy(tmp_path, lessons, solve=wrong), tmp_path, manifest)
    assert code == 1
    assert len(rows) == 2 and rows[0].split()[1:4] == ["check_iou_from_confusion", "failed", "0/1"]
    assert rows[1].split()[1:4] == ["check_window_macs", "passed", "1/1"]  # the other exercise is untouched
    assert "you computed TP / (TP + FN) (recall)" in rows[0]  # the check's own words reach the student
    assert "(recall)" in summary
