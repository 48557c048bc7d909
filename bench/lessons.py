"""How long each lesson takes to run top to bottom (the quick profile by default), as a student's kernel runs it.

Every notebook in ``lessons/`` (or those named: ``05``, ``05_fcn`` or ``05_fcn.ipynb``) is executed with
nbclient in a kernel of this interpreter (``segedu.course.execute_notebook``), ``SEGEDU_PROFILE`` set to
``--profile`` and the training cache off (every model trains). Recorded per lesson: wall-clock seconds, cells,
errors (the first one named) and the slowest cells. Rows are merged into
``bench/results/lessons_<profile>_<device>.json`` (a subset run updates its lessons and keeps the others).

    python bench/lessons.py                     # every lesson, quick profile
    python bench/lessons.py 05 07 --threads 1   # two lessons, one torch thread in the kernel (as `make test`)
    python bench/lessons.py --profile full      # on a GPU: the full course
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

LESSONS = Path(__file__).resolve().parents[1] / "lessons"


def select(names: list[str], folder: Path = LESSONS) -> list[Path]:
    """The notebooks in ``folder`` matching ``names`` (number, stem or file name); all when ``names`` is empty."""
    notebooks = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if not names:
        return notebooks
    chosen = []
    for name in names:
        hits = [p for p in notebooks if name in (p.name, p.stem, p.stem[:2])]
        if not hits:
            raise ValueError(f"no lesson matches {name!r}; lessons: {', '.join(p.stem for p in notebooks)}")
        chosen += [p for p in hits if p not in chosen]
    return chosen


def _cell_seconds(cell) -> float | None:
    timing = cell.get("metadata", {}).get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not start or not end:
        return None
    parse = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def time_lesson(path: Path, timeout: int) -> dict:
    """Run one notebook; its row of the table."""
    import nbformat

    from segedu.course import execute_notebook

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    failure = None
    try:
        execute_notebook(nb, path.parent, timeout)
    except Exception as error:  # a dead kernel: record it and go on with the next lesson
        failure = f"{type(error).__name__}: {error}"
    seconds = time.perf_counter() - start
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    timed = sorted(((s, i) for i, c in enumerate(code) if (s := _cell_seconds(c)) is not None), reverse=True)
    first_error = failure or (f"{errors[0]['ename']}: {errors[0]['evalue']}"[:300] if errors else None)
    return {"lesson": path.stem, "seconds": round(seconds, 1), "code_cells": len(code), "errors": len(errors),
            "status": "ok" if not errors and not failure else "error", "first_error": first_error,
            "slowest_cells": [{"cell": i, "seconds": round(s, 1)} for s, i in timed[:3]],
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def merge(previous: dict | None, rows: list[dict]) -> list[dict]:
    """Rows of ``previous`` for lessons not re-run, plus the new ``rows``, in lesson order."""
    kept = {r["lesson"]: r for r in (previous or {}).get("results", [])}
    kept.update({r["lesson"]: r for r in rows})
    return [kept[name] for name in sorted(kept)]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lessons", nargs="*", help="lesson numbers or names (default: all)")
    parser.add_argument("--profile", default="quick", choices=["quick", "full"])
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for the kernels (make test uses 1)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument("--note", default="")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        notebooks = select(args.lessons)
    except ValueError as error:
        parser.error(str(error))
    os.environ["SEGEDU_PROFILE"] = args.profile  # the kernels inherit the environment
    os.environ.pop("SEGEDU_CACHE", None)
    if args.threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # what the lessons will pick
    rows = []
    for path in notebooks:
        print(f"{path.name} ...", end=" ", flush=True)
        row = time_lesson(path, args.timeout)
        print(f"{row['seconds']:.1f} s, {row['status']}" + (f" ({row['first_error']})" if row["first_error"] else ""),
              flush=True)
        rows.append(row)
    out = args.out or common.RESULTS / f"lessons_{args.profile}_{device.type}.json"
    previous = json.loads(out.read_text()) if out.exists() else None
    rows = merge(previous, rows)
    settings = {"profile": args.profile, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                "timeout_per_cell_s": args.timeout}
    summary = {"lessons": len(rows), "total_seconds": round(sum(r["seconds"] for r in rows), 1),
               "errors": sum(r["status"] != "ok" for r in rows)}
    rec = common.record(f"lesson run times ({args.profile} profile)", device, settings, rows, summary, args.note)
    common.save(rec, out.stem, out)
    return rec


if __name__ == "__main__":
    main()
