"""What every benchmark records, in one place: the machine, the library versions, the date, and how the
timings were taken (a helper module, not a benchmark: ``run_all.py`` skips it).

* ``record(benchmark, device, settings, results, summary=None)`` -> the JSON-ready dict every script writes:
  ``{"benchmark", "date", "versions", "machine", "device", "settings", "results": [flat rows], "summary"}``.
* ``write(record, name)`` -> ``bench/results/<name>.json``.
* ``timeit(fn, repeats, warmup, device)`` -> a list of seconds, each call synchronised on a GPU.
* ``interleaved(fns, repeats, ...)``: time several functions in turns (a, b, a, b, ...; the order alternates),
  so a load change on a shared machine hits all of them alike; compare medians.
* ``autocast(device, amp)``: the GPU path of the suite - bfloat16 autocast on CUDA (each script also puts its
  model and inputs in channels-last there).

Medians, not means: a benchmark run on a shared machine has outliers in one direction only (slower).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"

__all__ = ["RESULTS", "cpu_model", "machine", "versions", "record", "write", "sync", "timeit", "interleaved",
           "summarize", "autocast", "add_device_arguments", "pick_device", "save"]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device | str = "cpu") -> dict:
    """CPU model and cores, torch's thread count, the GPU's name (``None`` unless ``device`` is CUDA), the
    load average when the record was made (a busy machine explains slow figures)."""
    device = torch.device(device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return {
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "load_average_1_5_15min": load,
    }


def versions() -> dict:
    import torchvision

    import segedu

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "segedu": segedu.__version__, "cuda": torch.version.cuda if torch.cuda.is_available() else None}


def record(benchmark: str, device: torch.device | str, settings: dict, results: list[dict],
           summary: dict | None = None, note: str = "") -> dict:
    """The JSON-ready record of one benchmark run. ``results``: flat dicts (one table row each)."""
    return {
        "benchmark": benchmark,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "machine": machine(device),
        "device": str(device),
        "settings": settings,
        "results": results,
        "summary": summary or {},
        "note": note,
    }


def write(rec: dict, name: str, folder: Path | None = None) -> Path:
    """Write ``rec`` to ``<folder>/<name>.json`` (default ``bench/results``); returns the path."""
    folder = RESULTS if folder is None else Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(rec, indent=2) + "\n")
    return path


def sync(device: torch.device | str) -> None:
    """Wait for the GPU: CUDA calls return before the work is done, a timer must not."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timeit(fn: Callable[[], object], repeats: int, warmup: int = 1, device: torch.device | str = "cpu") -> list[float]:
    """Seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones (synchronised on CUDA)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1,
                device: torch.device | str = "cpu") -> dict[str, list[float]]:
    """Time every function of ``fns`` ``repeats`` times, in turns; the order is reversed every other round
    (a, b / b, a), so neither always runs right after the other. Returns the seconds per name."""
    names = list(fns)
    for name in names:
        timeit(fns[name], 0, warmup, device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name] += timeit(fns[name], 1, 0, device)
    return times


def summarize(seconds: Sequence[float]) -> dict:
    """``{"median", "best", "n"}`` of a list of timings (seconds, 5 significant digits)."""
    return {"median": float(f"{statistics.median(seconds):.5g}"), "best": float(f"{min(seconds):.5g}"),
            "n": len(seconds)}


def autocast(device: torch.device | str, amp: bool):
    """bfloat16 autocast on CUDA when ``amp`` (no loss scaling needed), nothing otherwise."""
    device = torch.device(device)
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def add_device_arguments(parser) -> None:
    """``--device``, ``--threads``, ``--compile``, ``--note``, ``--out``: the options every script shares."""
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the models (CUDA; slow first step)")
    parser.add_argument("--note", default="", help="free text stored with the results (e.g. what else ran)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default bench/results/<name>.json)")


def pick_device(parser, args) -> torch.device:
    """The device of ``--device`` (checked), after applying ``--threads``."""
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    name = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if name.split(":")[0] not in ("cpu", "cuda"):
        parser.error(f"--device must be cpu or cuda, got {name!r}")
    return torch.device(name)


def save(rec: dict, name: str, out: Path | None) -> Path:
    """Write to ``out`` if given, else ``bench/results/<name>.json``; print where."""
    path = write(rec, out.stem, out.parent) if out is not None else write(rec, name)
    print(f"wrote {path}")
    return path
