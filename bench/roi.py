"""segedu's RoI ops and NMS (``segedu.ops.roi``, written with tensor ops for lesson 09) against torchvision's
C++/CUDA kernels: time and largest difference.

The setting of a Mask R-CNN head at lesson size: features ``[2, --channels, --map, --map]`` (a ``16 * map``
px image at stride 16; default 64 channels, 32 x 32), ``--rois`` random boxes, 7x7 output; RoIAlign with
``sampling_ratio=2, aligned=True``; NMS on ``--boxes`` random boxes at IoU 0.5 (the kept indices must be
identical). Timed in turns, medians compared. Writes ``bench/results/roi_<device>.json``.

Mind the memory of ``segedu.ops.roi.roi_pool``: it holds ``K * C * H * PW * W`` values at once (its
docstring says so), 9 GB for 512 RoIs on ``[2, 256, 50, 50]``; hence the lesson-sized default.

    python bench/roi.py
    python bench/roi.py --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
import torchvision.ops as tvops

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from segedu.ops import roi  # noqa: E402


def random_boxes(n: int, size: float, generator: torch.Generator) -> torch.Tensor:
    """``n`` boxes (x1, y1, x2, y2) inside a ``size`` square, 8 px to half the side wide."""
    xy = torch.rand(n, 2, generator=generator) * size * 0.75
    wh = 8 + torch.rand(n, 2, generator=generator) * (size / 2 - 8)
    return torch.cat([xy, (xy + wh).clamp(max=size)], dim=1)


def problem(device: torch.device, rois: int, boxes: int, channels: int = 64, side: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(2, channels, side, side, generator=g)
    batch_index = torch.randint(2, (rois, 1), generator=g).float()
    roi_boxes = torch.cat([batch_index, random_boxes(rois, 16.0 * side, g)], dim=1)
    nms_boxes, scores = random_boxes(boxes, 16.0 * side, g), torch.rand(boxes, generator=g)
    return [t.to(device) for t in (features, roi_boxes, nms_boxes, scores)]


def cases(features, roi_boxes, nms_boxes, scores) -> dict:
    """name -> (ours, torchvision's), each a zero-argument call."""
    align = dict(output_size=7, spatial_scale=1 / 16, sampling_ratio=2, aligned=True)
    pool = dict(output_size=7, spatial_scale=1 / 16)
    return {
        "roi_align": (lambda: roi.roi_align(features, roi_boxes, **align),
                      lambda: tvops.roi_align(features, roi_boxes, **align)),
        "roi_pool": (lambda: roi.roi_pool(features, roi_boxes, **pool),
                     lambda: tvops.roi_pool(features, roi_boxes, **pool)),
        "nms": (lambda: roi.nms(nms_boxes, scores, 0.5), lambda: tvops.nms(nms_boxes, scores, 0.5)),
    }


def run(device: torch.device, rois: int, boxes: int, repeats: int, channels: int = 64, side: int = 32,
        note: str = "") -> dict:
    rows = []
    for name, (ours, theirs) in cases(*problem(device, rois, boxes, channels, side)).items():
        a, b = ours(), theirs()
        if name == "nms":
            difference = {"identical_keep": bool(torch.equal(a.cpu(), b.cpu())), "kept": int(b.numel())}
        else:
            difference = {"max_abs_difference": float(f"{float((a - b).abs().max()):.3g}")}
        times = common.interleaved({"segedu": ours, "torchvision": theirs}, repeats, warmup=1, device=device)
        ratio = statistics.median(times["segedu"]) / statistics.median(times["torchvision"])
        rows.append({"op": name, "segedu_s": common.summarize(times["segedu"]),
                     "torchvision_s": common.summarize(times["torchvision"]), "ratio_median": round(ratio, 2),
                     **difference})
    settings = {"features": [2, channels, side, side], "rois": rois, "output_size": 7, "spatial_scale": 1 / 16,
                "sampling_ratio": 2, "aligned": True, "nms_boxes": boxes, "iou_threshold": 0.5, "repeats": repeats}
    return common.record("segedu.ops.roi vs torchvision.ops", device, settings, rows, note=note)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_device_arguments(parser)
    parser.add_argument("--rois", type=int, default=128)
    parser.add_argument("--channels", type=int, default=64, help="feature channels")
    parser.add_argument("--map", type=int, default=32, help="side of the feature map")
    parser.add_argument("--boxes", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)
    device = common.pick_device(parser, args)
    rec = run(device, args.rois, args.boxes, args.repeats, args.channels, args.map, args.note)
    for r in rec["results"]:
        extra = {k: v for k, v in r.items() if k in ("max_abs_difference", "identical_keep", "kept")}
        print(f"{r['op']:<10} segedu {r['segedu_s']['median'] * 1e3:8.2f} ms  torchvision "
              f"{r['torchvision_s']['median'] * 1e3:8.2f} ms  ratio {r['ratio_median']:6.2f}  {extra}")
    common.save(rec, f"roi_{device.type}", args.out)
    return rec


if __name__ == "__main__":
    main()
