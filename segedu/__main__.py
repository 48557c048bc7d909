"""The command line: ``python -m segedu <command>``.

    python -m segedu lessons                      list the lessons
    python -m segedu release lessons --out DIR    the student release (solutions removed)
    python -m segedu check NOTEBOOK...            run notebooks and report each exercise
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _lessons(args) -> int:
    from segedu.course import lesson_index

    for lesson in lesson_index(args.dir):
        print(f"{lesson.number:02d}  {lesson.title:32s}  {lesson.filename}")
    return 0


def _release(args) -> int:
    from segedu.course import release

    for path in release(args.lessons, args.out):
        print(f"wrote {path}")
    return 0


def _check(args) -> int:
    from segedu.course import check_notebook, format_results

    results = []
    for notebook in args.notebooks:
        print(f"running {notebook} ...", flush=True)
        results += check_notebook(notebook, timeout=args.timeout)
    table = format_results(results)
    print(table)
    if args.summary:
        Path(args.summary).write_text("```\n" + table + "\n```\n")
    return 0 if results and all(r.status == "passed" for r in results) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m segedu", description="segedu course tools")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("lessons", help="list the lessons")
    p.add_argument("dir", nargs="?", default="lessons")
    p.set_defaults(run=_lessons)

    p = commands.add_parser("release", help="write the student release of the lessons")
    p.add_argument("lessons", help="folder of instructor notebooks")
    p.add_argument("--out", required=True, help="folder for the student notebooks")
    p.set_defaults(run=_release)

    p = commands.add_parser("check", help="run notebooks and report every exercise")
    p.add_argument("notebooks", nargs="+")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    p.add_argument("--summary", help="also write the table to this file (markdown)")
    p.set_defaults(run=_check)

    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
