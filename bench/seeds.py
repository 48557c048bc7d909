"""How much the lessons' comparisons of trained models move with the seed.

Every claim of the form "model A beats model B by more than a margin" is registered in a
``segedu.experiments.lessonNN.COMPARISONS`` table (``Comparison(function, better, worse, margin)``). This script
runs each registered function over several seeds (the profile's sizes; the quick one by default, as in CI) and
records, per comparison, the per-seed difference ``better - worse``, its mean, standard deviation and worst seed,
and the verdict the lessons follow (issue 19): **one seed** in the lesson is enough only when
``mean - margin >= 3 * std``; otherwise the lesson runs several seeds and asserts on their mean and worst seed.

A function shared by several comparisons (one training run scores several models) runs once per seed.

    python bench/seeds.py                         # every comparison, 5 seeds, quick profile
    python bench/seeds.py --seeds 0 1 2 3 4 5 6   # more seeds
    python bench/seeds.py --only lesson10          # one lesson's comparisons (merged into the file)
    python bench/seeds.py --rescore                # verdicts again, with the margins registered now (no training)

Writes ``bench/results/seeds.json`` (rows merged by comparison, so a subset run keeps the others).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

MIN_SEEDS = 5          # issue 19: the spread is measured over at least 5 seeds
SIGMAS = 3.0           # one seed suffices when the margin's excess is at least 3 standard deviations


def registered(only: list[str] | None = None) -> dict[str, tuple[str, object]]:
    """``{"lessonNN/name": (module name, Comparison)}`` for every registered comparison (``only``: lesson
    module names such as ``lesson10``)."""
    import segedu.experiments as experiments

    found = {}
    for info in sorted(pkgutil.iter_modules(experiments.__path__), key=lambda i: i.name):
        if not info.name.startswith("lesson") or (only and info.name not in only):
            continue
        module = importlib.import_module(f"{experiments.__name__}.{info.name}")
        for name, comparison in getattr(module, "COMPARISONS", {}).items():
            found[f"{info.name}/{name}"] = (info.name, comparison)
    return found


def verdict(differences: list[float], margin: float) -> dict:
    """Mean, standard deviation (sample, n - 1) and worst of the differences, and whether one seed suffices."""
    mean = statistics.fmean(differences)
    std = statistics.stdev(differences) if len(differences) > 1 else float("nan")
    one_seed = len(differences) >= MIN_SEEDS and mean - margin >= SIGMAS * std
    return {"mean": mean, "std": std, "worst": min(differences), "holds_on_every_seed": min(differences) > margin,
            "one_seed_enough": one_seed, "lesson_should": "run one seed" if one_seed else
            "run several seeds and assert on their mean and worst seed"}


def run(seeds: list[int], profile, only: list[str] | None = None) -> list[dict]:
    rows, cache = [], {}
    for key, (lesson, comparison) in registered(only).items():
        per_seed = []
        for seed in seeds:
            memo = (comparison.function, seed)
            if memo not in cache:  # one training run may score several comparisons
                start = time.perf_counter()
                cache[memo] = (comparison.function(seed=seed, profile=profile), time.perf_counter() - start)
                print(f"{key} seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
            metrics, seconds = cache[memo]
            per_seed.append({"seed": seed, "metrics": metrics, "seconds": round(seconds, 1),
                             "difference": metrics[comparison.better] - metrics[comparison.worse]})
        differences = [row["difference"] for row in per_seed]
        rows.append({"comparison": key, "lesson": lesson, "better": comparison.better, "worse": comparison.worse,
                     "margin": comparison.margin, "seeds": seeds, "differences": differences,
                     **verdict(differences, comparison.margin), "per_seed": per_seed})
        print(f"{key}: {comparison.better} - {comparison.worse} = {rows[-1]['mean']:.3f} +- {rows[-1]['std']:.3f} "
              f"(margin {comparison.margin}) -> {rows[-1]['lesson_should']}", flush=True)
    return rows


def rescore(path: Path) -> list[str]:
    """Recompute the verdict of every recorded row whose registered margin changed, from its recorded per-seed
    differences (they do not depend on the margin, so nothing is trained again). A row whose ``better`` or
    ``worse`` metric changed cannot be rescored: that is another claim, measure it again. Returns the rows
    rescored."""
    record = json.loads(path.read_text())
    found, changed = registered(), []
    for row in record["results"]:
        if row["comparison"] not in found:
            continue
        comparison = found[row["comparison"]][1]
        if (row["better"], row["worse"]) != (comparison.better, comparison.worse):
            raise SystemExit(f"{row['comparison']}: recorded {row['better']} - {row['worse']}, registered "
                             f"{comparison.better} - {comparison.worse}; run bench/seeds.py --only {row['lesson']}")
        if row["margin"] != comparison.margin:
            row.update(margin=comparison.margin, **verdict(row["differences"], comparison.margin))
            changed.append(row["comparison"])
    path.write_text(json.dumps(record, indent=2) + "\n")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(MIN_SEEDS)))
    parser.add_argument("--profile", default=os.environ.get("SEGEDU_PROFILE", "quick"))
    parser.add_argument("--only", nargs="*", help="lesson modules of segedu.experiments, e.g. lesson10")
    parser.add_argument("--rescore", action="store_true",
                        help="recompute the recorded verdicts with the margins registered now (no training)")
    args = parser.parse_args(argv)
    if args.rescore:
        print("rescored:", rescore(common.RESULTS / "seeds.json") or "nothing (every margin is as recorded)")
        return 0
    if len(set(args.seeds)) < MIN_SEEDS:
        parser.error(f"--seeds: at least {MIN_SEEDS} different seeds (issue 19), got {args.seeds}")
    from segedu import runtime

    profile = runtime.profile(args.profile)
    rows = run(args.seeds, profile, args.only)
    path = common.RESULTS / "seeds.json"
    if args.only and path.exists():  # merge: keep the comparisons this run did not touch
        kept = [row for row in json.loads(path.read_text())["results"]
                if row["lesson"] not in args.only and row["comparison"] not in {r["comparison"] for r in rows}]
        rows = kept + rows
    device = runtime.device()
    rec = common.record("spread of the lessons' trained-model comparisons over seeds", device,
                        {"profile": profile.name, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                         "torch_threads": torch.get_num_threads(), "sigmas": SIGMAS},
                        sorted(rows, key=lambda r: r["comparison"]))
    print("wrote", common.write(rec, "seeds"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
