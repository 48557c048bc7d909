"""The ``check`` and ``grade`` sub-commands of ``python -m segedu``: their arguments and what they do.

Exit codes, both commands: 2 for a usage or tool error (a bad argument, no notebooks, an unreadable manifest, a
fault of the grader itself), otherwise ``check`` exits 0 when every exercise passed and 1 when one did not
(failed, not attempted, error, timeout, tampered, missing); with ``--ignore-not-attempted`` (the student
workflow) exercises not attempted yet do not count against it. ``grade`` exits 0 once the gradebook is written.
Ctrl-C kills the worker processes and exits with 130.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
from pathlib import Path

__all__ = ["add_check_parser", "add_grade_parser", "run_check", "run_grade"]


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _lesson_number(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"a lesson is a number such as 03, got {text!r}")
    return int(text)


def _common(p: argparse.ArgumentParser, jobs_help: str) -> None:
    from segedu.course.grading import DEFAULT_TIMEOUT

    p.add_argument("--timeout", type=_positive_seconds, default=DEFAULT_TIMEOUT, metavar="S",
                   help=f"seconds each set-up cell, each exercise cell and each check may take; past it the worker "
                        f"process (and what it started) is killed and the exercise is a timeout (default "
                        f"{DEFAULT_TIMEOUT})")
    p.add_argument("--manifest", metavar="PATH",
                   help="the manifest of the exercises (default: the installed package's, segedu/course/manifest.json)")
    p.add_argument("--jobs", type=_positive_int, default=min(4, os.cpu_count() or 1), metavar="N", help=jobs_help)


def add_check_parser(commands) -> argparse.ArgumentParser:
    p = commands.add_parser(
        "check", help="check the exercises of notebooks (set-up and exercise cells only; the checks run here)",
        description="Check every exercise of the given lesson notebooks: run each lesson's set-up cells and exercise "
                    "cells in a fresh worker process, and the package's own checks against the student's functions. "
                    "Statuses: passed, failed, not attempted, error, timeout, tampered (the check cell was "
                    "changed), missing (it was deleted). Exit code 0: all passed; 1: not all passed; 2: usage or "
                    "tool error.")
    p.add_argument("notebooks", nargs="*", help="lesson notebooks (default: lessons/*.ipynb)")
    p.add_argument("--lessons", nargs="+", type=_lesson_number, metavar="NN",
                   help="only these lessons, by number (--lessons 03 07)")
    p.add_argument("--summary", metavar="FILE", help="also write the table to this file (Markdown)")
    p.add_argument("--ignore-not-attempted", action="store_true",
                   help="exit 0 when every exercise passed or is not attempted yet (the student workflow)")
    _common(p, "notebooks checked at a time, one worker process each (default: the cores, at most 4)")
    p.set_defaults(run=run_check)
    return p


def add_grade_parser(commands) -> argparse.ArgumentParser:
    p = commands.add_parser(
        "grade", help="grade students' submissions into a CSV gradebook and feedback files",
        description="Grade every exercise of the manifest for each SUBMISSION (a student's folder with "
                    "lessons/*.ipynb; the folder's name is the student's). Writes --out (CSV: student, lesson, "
                    "exercise, status, points, message) and one Markdown feedback file per student. Both are "
                    "written atomically and replace the files of an earlier run. A submission's segedu/ folder is "
                    "never imported. Run it from outside the submissions, with the course installed.")
    p.add_argument("submissions", nargs="+", metavar="SUBMISSION", help="student folders")
    p.add_argument("--out", required=True, metavar="CSV", help="the gradebook to write (replaced if it exists)")
    p.add_argument("--feedback", metavar="DIR", help="folder for <student>.md (default: feedback/ beside --out)")
    _common(p, "submissions graded at a time, each in its own grader process (default: the cores, at most 4)")
    p.set_defaults(run=run_grade)
    return p


def _manifest(args, command: str) -> dict | None:
    from segedu.course.manifest import read_manifest

    try:
        manifest = read_manifest(args.manifest)
    except (OSError, ValueError) as error:
        print(f"python -m segedu {command}: error: cannot read the manifest: {error}", file=sys.stderr)
        return None
    if not manifest["lessons"]:
        print(f"python -m segedu {command}: error: the manifest lists no lessons", file=sys.stderr)
        return None
    return manifest


def _notebooks(args) -> list[Path] | str:
    paths = [Path(p) for p in args.notebooks] if args.notebooks else sorted(Path("lessons").glob("*.ipynb"))
    if not paths:
        return "no notebooks given and none in lessons/"
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        return f"no such notebook: {', '.join(missing)}"
    if args.lessons:
        wanted = {f"{n:02d}_" for n in args.lessons}
        unknown = sorted(w for w in wanted if not any(p.name.startswith(w) for p in paths))
        if unknown:
            return f"no notebook of lesson {', '.join(u.rstrip('_') for u in unknown)} among the notebooks"
        paths = [p for p in paths if p.name[:3] in wanted]
    return paths


def _tool_errors(command: str):
    """Exit code 2, with one line on stderr, for a fault of the tool itself (never 1: that means an exercise)."""
    def wrap(run):
        @functools.wraps(run)
        def guarded(args) -> int:
            try:
                return run(args)
            except KeyboardInterrupt:
                raise
            except Exception as error:  # the grader's own fault, or a file it cannot write
                print(f"python -m segedu {command}: error: {type(error).__name__}: {error}", file=sys.stderr)
                return 2
        return guarded
    return wrap


@_tool_errors("check")
def run_check(args) -> int:
    from segedu.course.grading import INTERNAL_ERROR, check_notebooks
    from segedu.course.report import counts, format_markdown, format_results

    paths = _notebooks(args)
    if isinstance(paths, str):
        print(f"python -m segedu check: error: {paths}", file=sys.stderr)
        return 2
    manifest = _manifest(args, "check")
    if manifest is None:
        return 2
    out = sys.stdout  # the checks' own prints are captured while they run; progress goes here

    def progress(name, results, seconds):
        print(f"checked {name}: {counts(results)} ({seconds:.1f} s)", file=out, flush=True)

    try:
        results = check_notebooks([(p.name, p) for p in paths], manifest, args.timeout, args.jobs, progress)
    except KeyboardInterrupt:  # the workers are killed by then
        print("python -m segedu check: interrupted", file=sys.stderr)
        return 130
    print(format_results(results))
    if args.summary:
        Path(args.summary).parent.mkdir(parents=True, exist_ok=True)
        Path(args.summary).write_text(format_markdown(results), encoding="utf-8")
    if any(r.message.startswith(INTERNAL_ERROR) for r in results):
        return 2
    fine = {"passed", "not attempted"} if args.ignore_not_attempted else {"passed"}
    return 0 if results and all(r.status in fine for r in results) else 1


@_tool_errors("grade")
def run_grade(args) -> int:
    from segedu.course.gradebook import grade_submissions, write_gradebook
    from segedu.course.report import counts

    import segedu

    folders = [Path(s) for s in args.submissions]
    bad = [str(f) for f in folders if not f.is_dir()]
    names = [f.resolve().name for f in folders]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    grader = Path(segedu.__file__).resolve()
    graded_by_itself = [str(f) for f in folders if f.is_dir() and grader.is_relative_to(f.resolve())]
    error = (f"not a folder: {', '.join(bad)}" if bad else
             f"two submissions have the same folder name (the student's name): {', '.join(duplicates)}" if duplicates
             else f"the segedu package running this command is the submission's own copy ({grader.parent}): run "
                  f"grade from outside the submissions, with the course installed" if graded_by_itself else None)
    if error:
        print(f"python -m segedu grade: error: {error}", file=sys.stderr)
        return 2
    manifest = _manifest(args, "grade")
    if manifest is None:
        return 2

    def progress(student, results):
        print(f"graded {student}: {counts(results)}", flush=True)

    try:
        graded = grade_submissions(folders, manifest, args.timeout, args.jobs, progress)
    except KeyboardInterrupt:  # each grader process kills its workers as it stops; nothing is written
        print("python -m segedu grade: interrupted; nothing written", file=sys.stderr)
        return 130
    try:
        written = write_gradebook(graded, args.out, args.feedback)
    except OSError as error:
        print(f"python -m segedu grade: error: cannot write the gradebook: {error}", file=sys.stderr)
        return 2
    print(f"wrote {written[0]} ({sum(len(r) for r in graded.values())} rows) and {len(written) - 1} feedback file(s) "
          f"in {written[1].parent if len(written) > 1 else '-'}")
    crashed = any(r.message.startswith("the grader failed") for rs in graded.values() for r in rs)
    return 2 if crashed else 0
