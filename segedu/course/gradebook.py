"""The gradebook (``python -m segedu grade``): many students' submissions graded in parallel, into one CSV
and one feedback file per student.

A submission is a student's folder - a clone of their coursework repository - holding ``lessons/*.ipynb`` (or
the notebooks themselves); the student's name is the folder's name. Every lesson of the grader's manifest is
graded (``segedu.course.grading.grade_notebook``): a lesson notebook the submission lacks scores its exercises as
``missing``. Nothing of the submission but its notebooks is read: its ``segedu/`` folder, if any, is never
imported. Submissions are graded ``jobs`` at a time, each in its own grader process; inside it, each notebook's
student code runs in a worker process that is killed at its time limit.

The CSV has one row per student and exercise: ``student, lesson, exercise, status, points, message``. Files are
written atomically (a temporary file, then renamed): an existing gradebook is replaced only once the new one is
complete.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path

from segedu.course.grading import DEFAULT_TIMEOUT, ExerciseResult, grade_notebook, lesson_entry

__all__ = ["COLUMNS", "submission_notebook", "grade_submission", "grade_submissions", "write_gradebook"]

COLUMNS = ("student", "lesson", "exercise", "status", "points", "message")


def submission_notebook(folder: str | Path, notebook: str) -> Path | None:
    """Where the submission in ``folder`` keeps the lesson ``notebook``: ``lessons/<notebook>``, else
    ``<notebook>`` at the top; ``None`` if neither exists."""
    for path in (Path(folder) / "lessons" / notebook, Path(folder) / notebook):
        if path.is_file():
            return path
    return None


def grade_submission(folder: str | Path, manifest: dict, timeout: float = DEFAULT_TIMEOUT,
                     threads: int | None = None) -> list[ExerciseResult]:
    """Every exercise of ``manifest`` for the submission in ``folder``, in the manifest's order."""
    results = []
    for lesson in manifest["lessons"]:
        path = submission_notebook(folder, lesson["notebook"])
        if path is None:
            results += [ExerciseResult(lesson["notebook"], ex["exercise"], "missing",
                                       f"lessons/{lesson['notebook']} is not in the submission", 0, ex.get("points", 1))
                        for ex in lesson["exercises"]]
        else:
            results += grade_notebook(path, lesson_entry(manifest, lesson["notebook"]), timeout, threads)
    return results


def _crashed(manifest: dict, error: BaseException) -> list[ExerciseResult]:
    message = f"the grader failed on this submission: {type(error).__name__}: {error}"
    return [ExerciseResult(lesson["notebook"], ex["exercise"], "error", message, 0, ex.get("points", 1))
            for lesson in manifest["lessons"] for ex in lesson["exercises"]]


def grade_submissions(folders: list, manifest: dict, timeout: float = DEFAULT_TIMEOUT, jobs: int = 1,
                      progress=None) -> dict[str, list[ExerciseResult]]:
    """``{student: results}`` for the submission folders, ``jobs`` at a time (each in a grader process of its
    own: a spawned process, started fresh). ``progress(student, results)`` is called as each finishes. A
    submission whose grader process fails gets ``error`` rows; the others are still graded."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    from segedu import validate

    timeout = validate.positive_number(timeout, "timeout")
    jobs = validate.positive_int(jobs, "jobs")
    students = {Path(folder).resolve().name: Path(folder) for folder in folders}
    graded: dict[str, list[ExerciseResult]] = {}
    threads = max(1, (os.cpu_count() or 1) // jobs)
    if jobs <= 1:
        for student, folder in students.items():
            try:
                graded[student] = grade_submission(folder, manifest, timeout, threads)
            except Exception as error:
                graded[student] = _crashed(manifest, error)
            if progress is not None:
                progress(student, graded[student])
    else:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(grade_submission, folder, manifest, timeout, threads): student
                       for student, folder in students.items()}
            for future in as_completed(futures):
                student = futures[future]
                try:
                    graded[student] = future.result()
                except Exception as error:  # the grader process died (BrokenProcessPool) or raised
                    graded[student] = _crashed(manifest, error)
                if progress is not None:
                    progress(student, graded[student])
    return {student: graded[student] for student in students}


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_gradebook(graded: dict[str, list[ExerciseResult]], out: str | Path,
                    feedback_dir: str | Path | None = None) -> list[Path]:
    """Write the CSV ``out`` and, in ``feedback_dir`` (default: ``feedback/`` beside ``out``), one Markdown file
    per student, ``<student>.md``. Returns the paths written."""
    from segedu.course.report import format_markdown

    out = Path(out)
    feedback = out.parent / "feedback" if feedback_dir is None else Path(feedback_dir)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for student, results in graded.items():
        for r in results:
            writer.writerow((student, r.notebook, r.exercise, r.status, r.points, r.message))
    written = []
    for student, results in graded.items():
        path = feedback / f"{student}.md"
        _atomic_write(path, format_markdown(results, title=f"Coursework of {student}"))
        written.append(path)
    _atomic_write(out, buffer.getvalue())
    return [out, *written]
