"""Same network, two implementations: segedu's ``DeepLabV3(backbone="resnet50", output_stride=8)`` against
torchvision's ``deeplabv3_resnet50(weights=None, aux_loss=False)``, time of one training step.

Both models get the same weights (``load_torchvision_deeplabv3``; the script checks that their outputs agree),
the same input and target, cross entropy, SGD. The steps are timed in turns (``common.interleaved``) and the
medians compared: target ratio ours / torchvision <= 1.05 on a CPU. On CUDA both run with bfloat16 autocast and
channels-last memory (``--compile`` adds torch.compile to both). Writes
``bench/results/deeplab_vs_torchvision_<device>.json``.

    python bench/deeplab_vs_torchvision.py                         # CPU: batch 2, 224 px, 7 rounds
    python bench/deeplab_vs_torchvision.py --size 128 --repeats 3  # a quick look
    python bench/deeplab_vs_torchvision.py --device cuda           # GPU: batch 8, 512 px, bf16, channels-last
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from segedu.models.deeplab import DeepLabV3, load_torchvision_deeplabv3  # noqa: E402

TARGET = 1.05
DEFAULTS = {"cpu": dict(batch_size=2, size=224, repeats=7), "cuda": dict(batch_size=8, size=512, repeats=20)}


def models(num_classes: int = 21):
    """torchvision's model and ours, holding the same weights."""
    from torchvision.models.segmentation import deeplabv3_resnet50

    theirs = deeplabv3_resnet50(weights=None, weights_backbone=None, aux_loss=False, num_classes=num_classes)
    ours = load_torchvision_deeplabv3(DeepLabV3(num_classes, "resnet50", output_stride=8), theirs.state_dict())
    return ours, theirs


@torch.no_grad()
def max_difference(ours, theirs, x) -> float:
    """Largest |logit difference| in eval mode (the same network gives the same numbers, up to rounding)."""
    ours.eval(), theirs.eval()
    return float((ours(x) - theirs(x)["out"]).abs().max())


def train_step(model, x, y, device, amp: bool):
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step():
        with common.autocast(device, amp):
            out = model(x)
            out = out["out"] if isinstance(out, dict) else out
            loss = F.cross_entropy(out.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def run(device: torch.device, batch_size: int, size: int, repeats: int, compile: bool = False, note: str = "") -> dict:
    torch.manual_seed(0)
    ours, theirs = models()
    x = torch.rand(batch_size, 3, size, size, device=device)
    y = torch.randint(21, (batch_size, size, size), device=device)
    cuda = device.type == "cuda"
    ours, theirs = ours.to(device), theirs.to(device)
    diff = max_difference(ours, theirs, x[:1])
    if cuda:  # the GPU path: channels-last (tensor-core convolutions) and bf16 autocast, for both
        ours, theirs = ours.to(memory_format=torch.channels_last), theirs.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    ours.train(), theirs.train()
    wrap = torch.compile if compile else (lambda model: model)
    fns = {"segedu": train_step(wrap(ours), x, y, device, cuda),
           "torchvision": train_step(wrap(theirs), x, y, device, cuda)}
    times = common.interleaved(fns, repeats, warmup=2 if compile else 1, device=device)
    ratio = statistics.median(times["segedu"]) / statistics.median(times["torchvision"])
    rows = [{"model": name, "step_s": common.summarize(t), "images_per_s": round(batch_size / statistics.median(t), 2)}
            for name, t in times.items()]
    settings = {"batch_size": batch_size, "size": size, "repeats": repeats, "classes": 21, "output_stride": 8,
                "amp_bf16": cuda, "channels_last": cuda, "compile": compile, "optimizer": "SGD"}
    summary = {"ratio_median": round(ratio, 3), "target": TARGET, "pass": ratio <= TARGET,
               "max_abs_logit_difference_eval": float(f"{diff:.3g}")}
    return common.record("segedu DeepLabV3 vs torchvision deeplabv3_resnet50: training step", device, settings,
                         rows, summary, note)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_device_arguments(parser)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--size", type=int, help="image side")
    parser.add_argument("--repeats", type=int, help="timed steps of each model (in turns)")
    args = parser.parse_args(argv)
    device = common.pick_device(parser, args)
    d = DEFAULTS["cuda" if device.type == "cuda" else "cpu"]
    rec = run(device, args.batch_size or d["batch_size"], args.size or d["size"], args.repeats or d["repeats"],
              args.compile, args.note)
    for row in rec["results"]:
        print(f"{row['model']:<12} median {row['step_s']['median']:.3f} s  best {row['step_s']['best']:.3f} s  "
              f"{row['images_per_s']:.1f} img/s")
    print("summary:", rec["summary"])
    common.save(rec, f"deeplab_vs_torchvision_{device.type}", args.out)
    return rec


if __name__ == "__main__":
    main()
