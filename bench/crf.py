"""Speed of ``segedu.crf.dense_crf`` (permutohedral) against pydensecrf2, in the same run on the same machine.

The setting of the issue: a 500 x 375 photo (matplotlib's ``grace_hopper.jpg`` resized), 21 classes, a coarse
noisy unary, 10 mean-field iterations, default parameters (bilateral 10 / 80 / 13, Gaussian 3 / 3). Both
timings are end to end: the unary (-log of the probabilities), the lattices, the inference. pydensecrf runs
on one CPU thread; ours runs with each torch thread count in ``--threads`` (on CPU) or on the GPU
(``--device cuda``). The two are timed alternately, ``--repeats`` times each, and the best run of each is
kept (the one least disturbed by other processes); the median is recorded too, with the load average.
Writes ``bench/results/crf_<device>.json`` (machine, versions, date, times, ratios, agreement).

    python bench/crf.py                       # CPU, torch threads 1 and all cores
    python bench/crf.py --device cuda         # ours on the GPU, pydensecrf on the CPU

Goal (issue 5): time ratio ours / pydensecrf <= 1.0 on a CPU (0.5 stretch); >= 30x faster on a GPU.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402  (the shared record of CPU, cores, GPU and load)

from segedu.crf import dense_crf  # noqa: E402
from segedu.data.samples import grace_hopper  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PARAMS = dict(w_bilateral=10.0, theta_alpha=80.0, theta_beta=13.0, w_gaussian=3.0, theta_gamma=3.0)


def problem(height: int = 375, width: int = 500, classes: int = 21, seed: int = 0):
    """The photo (uint8 [3, H, W]) and coarse noisy probabilities ([C, H, W]): random logits on 16-pixel
    cells, upsampled, plus pixel noise (as in tests/test_crf.py)."""
    image = grace_hopper((height, width))
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(1, classes, height // 16 + 1, width // 16 + 1, generator=g)
    logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)[0]
    probs = (logits + 0.5 * torch.randn(classes, height, width, generator=g)).softmax(0)
    return image, probs


def run_reference(probs: torch.Tensor, image: torch.Tensor, iterations: int) -> np.ndarray:
    """pydensecrf2, end to end: unary, both kernels (their lattices), inference."""
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax

    c, h, w = probs.shape
    crf = dcrf.DenseCRF2D(w, h, c)
    crf.setUnaryEnergy(unary_from_softmax(probs.numpy()))
    crf.addPairwiseGaussian(sxy=PARAMS["theta_gamma"], compat=PARAMS["w_gaussian"])
    rgb = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
    crf.addPairwiseBilateral(sxy=PARAMS["theta_alpha"], srgb=PARAMS["theta_beta"], rgbim=rgb,
                             compat=PARAMS["w_bilateral"])
    return np.array(crf.inference(iterations)).reshape(c, h, w)


def run_ours(probs: torch.Tensor, image: torch.Tensor, iterations: int) -> torch.Tensor:
    out = dense_crf(probs, image, iterations=iterations, method="permutohedral", **PARAMS)
    if out.device.type == "cuda":
        torch.cuda.synchronize(out.device)
    return out


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def compare(device: str, threads: int | None, repeats: int, iterations: int, probs, image) -> dict:
    """Alternate ours and the reference ``repeats`` times; best and median seconds of each."""
    if threads is not None:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    p, im = probs.to(dev), image.to(dev)
    run_ours(p, im, iterations)  # warm-up (allocator, CUDA context and kernels)
    ours, ref = [], []
    for _ in range(repeats):
        ours.append(timed(run_ours, p, im, iterations))
        ref.append(timed(run_reference, probs, image, iterations))
    return {
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "ours_s": {"best": round(min(ours), 4), "median": round(statistics.median(ours), 4)},
        "pydensecrf_s": {"best": round(min(ref), 4), "median": round(statistics.median(ref), 4)},
        "ratio_best": round(min(ours) / min(ref), 3),
        "ratio_median": round(statistics.median(ours) / statistics.median(ref), 3),
    }


def agreement(probs, image, iterations: int) -> dict:
    ours = run_ours(probs, image, iterations).cpu()
    ref = torch.from_numpy(run_reference(probs, image, iterations))
    return {
        "argmax_agreement": round(float((ours.argmax(0) == ref.argmax(0)).float().mean()), 6),
        "mean_abs_q_diff": float(f"{float((ours - ref).abs().mean()):.3e}"),
        "max_abs_q_diff": float(f"{float((ours - ref).abs().max()):.3e}"),
    }


def run(device: str = "cpu", threads=(1, None), repeats: int = 5, iterations: int = 10, note: str = "") -> dict:
    import pydensecrf

    image, probs = problem()
    load_before = os.getloadavg()
    if device == "cuda":
        rows = [compare("cuda", None, repeats, iterations, probs, image)]
    else:
        rows = [compare("cpu", t if t is not None else os.cpu_count(), repeats, iterations, probs, image)
                for t in threads]
    return {
        "benchmark": "segedu.crf.dense_crf (permutohedral) vs pydensecrf2",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "pydensecrf": getattr(pydensecrf, "__version__", None) or _dist_version("pydensecrf2"),
        "machine": machine(torch.device(device)),
        "load_average_1_5_15min": {"before": [round(x, 2) for x in load_before],
                                   "after": [round(x, 2) for x in os.getloadavg()]},
        "setting": {"image": "grace_hopper resized to 375 x 500", "classes": int(probs.shape[0]),
                    "iterations": iterations, **PARAMS, "pydensecrf_threads": 1},
        "repeats": repeats,
        "note": note,
        "agreement": agreement(probs, image, iterations),
        "results": rows,
    }


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def table(record: dict) -> str:
    lines = [f"{'device':<6} {'threads':>7} {'ours best':>10} {'ref best':>9} {'ratio':>6} {'ours med':>9} "
             f"{'ref med':>8} {'ratio':>6}"]
    for r in record["results"]:
        lines.append(
            f"{r['device']:<6} {r['torch_threads']:>7} {r['ours_s']['best']:>9.3f}s {r['pydensecrf_s']['best']:>8.3f}s "
            f"{r['ratio_best']:>6.2f} {r['ours_s']['median']:>8.3f}s {r['pydensecrf_s']['median']:>7.3f}s "
            f"{r['ratio_median']:>6.2f}"
        )
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where ours runs")
    parser.add_argument("--threads", default="1,all", help="torch thread counts to time on CPU, e.g. 1,2,all")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each (the best is kept)")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default bench/results/crf_<device>.json)")
    parser.add_argument("--note", default="", help="free text stored with the results (e.g. what else was running)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    threads = tuple(None if t == "all" else int(t) for t in args.threads.split(","))
    record = run(args.device, threads, args.repeats, args.iterations, args.note)
    m = record["machine"]
    print(f"{m['cpu_model']} ({m['cpu_count']} CPUs), gpu: {m['gpu']}, torch {record['torch']}, "
          f"pydensecrf2 {record['pydensecrf']}, load average before/after {record['load_average_1_5_15min']}")
    print(table(record))
    print("agreement:", record["agreement"])
    out = args.out or RESULTS / f"crf_{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    return record


if __name__ == "__main__":
    main()
