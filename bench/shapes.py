"""Throughput of ``ShapesDataset.batch``: scenes rendered per second.

Times every variant at sizes 64 and 128 with batches of 64 and 256 scenes,
prints a table and writes ``bench/results/shapes.json`` (machine, torch
version, date, scenes/s). The target is >= 2,000 scenes/s for the semantic
variant at 64 x 64 on a 2-core CPU.

    python bench/shapes.py                 # CPU
    python bench/shapes.py --device cuda   # a GPU
    python bench/shapes.py --threads 1     # one CPU thread (steadier on a busy machine)

Each figure is the best of ``--repeats`` timed batches (after a warm-up): the
best run is the one least disturbed by other processes on the machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import torch

from segedu.data.shapes import VARIANTS, ShapesDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402  (the shared record of CPU, cores, GPU and load)

RESULTS = Path(__file__).resolve().parent / "results" / "shapes.json"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_batch(dataset: ShapesDataset, batch_size: int, repeats: int) -> tuple[float, float]:
    """Best scenes/s over ``repeats`` batches of fresh (never rendered before) indices.

    Returns (wall-clock rate, CPU-time rate). The second divides by the CPU time
    of this process (all threads): on a machine shared with other jobs it is the
    steadier figure; on a quiet machine with one thread the two agree.
    """
    dataset.batch(range(batch_size))  # warm-up: allocator, caches, CUDA context
    _sync(dataset.device)
    best_wall = best_cpu = float("inf")
    for r in range(1, repeats + 1):
        wall, cpu = time.perf_counter(), time.process_time()
        dataset.batch(range(r * batch_size, (r + 1) * batch_size))
        _sync(dataset.device)
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return batch_size / best_wall, batch_size / max(best_cpu, 1e-9)


def run(device: str = "cpu", sizes=(64, 128), batch_sizes=(64, 256), repeats: int = 5) -> dict:
    """Measure every (variant, size, batch size); returns the JSON-ready record."""
    dev = torch.device(device)
    rows = []
    for variant in VARIANTS:
        for size in sizes:
            dataset = ShapesDataset(10**9, size=size, variant=variant, device=dev)
            for batch_size in batch_sizes:
                rate, cpu_rate = time_batch(dataset, batch_size, repeats)
                rows.append({
                    "variant": variant, "size": size, "batch_size": batch_size,
                    "scenes_per_s": round(rate, 1), "scenes_per_cpu_s": round(cpu_rate, 1),
                })
    return {
        "benchmark": "segedu.data.shapes.ShapesDataset.batch",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "device": str(dev),
        "machine": machine(dev),
        "repeats": repeats,
        "results": rows,
    }


def table(record: dict) -> str:
    lines = [f"{'variant':<10} {'size':>5} {'batch':>6} {'scenes/s':>10} {'scenes/cpu-s':>13}"]
    for row in record["results"]:
        lines.append(
            f"{row['variant']:<10} {row['size']:>5} {row['batch_size']:>6} "
            f"{row['scenes_per_s']:>10.0f} {row['scenes_per_cpu_s']:>13.0f}"
        )
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to render")
    parser.add_argument("--repeats", type=int, default=5, help="timed batches per setting (the best is kept)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON file to write")
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    record = run(args.device, repeats=args.repeats)
    m = record["machine"]
    print(f"{m['cpu_model']} ({m['cpu_count']} CPUs, {m['torch_threads']} torch threads), gpu: {m['gpu']}, "
          f"torch {record['torch']}, device {record['device']}")
    print(table(record))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")
    return record


if __name__ == "__main__":
    main()
