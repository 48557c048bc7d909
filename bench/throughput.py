"""Training throughput (images/s) of every semantic model of ``segedu.zoo``, at the sizes of the profiles.

For each model and profile (``quick``: the CPU course; ``full``: the GPU course): the model at the profile's
width, a fixed batch of scenes of the profile's image and batch size, and ``--steps`` timed training steps
(forward, cross entropy, backward, Adam) after a warm-up; the median step gives images/s. Recorded with it:
parameters and the forward pass's FLOPs per image (``torch.utils.flop_counter``: 2 per multiply-add).
The quick profile always runs; the full one on CUDA, or on a CPU with ``--full``. On CUDA: bfloat16 autocast and
channels-last (``--compile``: torch.compile too). Writes ``bench/results/throughput_<device>.json``.

    python bench/throughput.py                     # CPU, quick sizes
    python bench/throughput.py --full --steps 3    # CPU, both profiles (slow)
    python bench/throughput.py --models unet fpn   # a subset
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

from segedu import runtime, zoo  # noqa: E402
from segedu.data.shapes import ShapesDataset  # noqa: E402


def measure(name: str, profile: str, device: torch.device, steps: int, compile: bool = False) -> dict:
    P = runtime.profile(profile)
    data = ShapesDataset(P.batch_size, size=P.image_size, seed=0, device=device)
    x, y = data.batch(range(P.batch_size))
    torch.manual_seed(0)
    model = zoo.build_model(name, data.num_classes, P).to(device)
    params = zoo.count_parameters(model)  # a freshly built model: every parameter is trainable
    gflops = zoo.forward_flops(model, x[:1]) / 1e9
    cuda = device.type == "cuda"
    if cuda:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=P.lr)
    net = torch.compile(model) if compile else model
    model.train()

    def step():
        with common.autocast(device, cuda):
            loss = F.cross_entropy(net(x), y, ignore_index=255)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    times = common.timeit(step, steps, warmup=3 if compile else 1, device=device)
    return {"model": name, "profile": P.name, "image_size": P.image_size, "batch_size": P.batch_size,
            "width": P.width, "params_M": round(params / 1e6, 4), "forward_GFLOP_per_image": round(gflops, 4),
            "step_s": common.summarize(times), "images_per_s": round(P.batch_size / statistics.median(times), 1)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_device_arguments(parser)
    parser.add_argument("--models", nargs="+", default=list(zoo.MODEL_NAMES), choices=zoo.MODEL_NAMES)
    parser.add_argument("--full", action="store_true", help="also the full profile's sizes on a CPU")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model and profile")
    args = parser.parse_args(argv)
    device = common.pick_device(parser, args)
    profiles = ["quick", "full"] if args.full or device.type == "cuda" else ["quick"]
    rows = []
    for profile in profiles:
        for name in args.models:
            row = measure(name, profile, device, args.steps, args.compile)
            print(f"{profile:<6} {name:<14} {row['params_M']:8.3f}M params {row['forward_GFLOP_per_image']:8.3f} GFLOP/img "
                  f"{row['step_s']['median'] * 1e3:9.1f} ms/step {row['images_per_s']:9.1f} img/s", flush=True)
            rows.append(row)
    settings = {"profiles": profiles, "steps": args.steps, "amp_bf16": device.type == "cuda",
                "channels_last": device.type == "cuda", "compile": args.compile, "optimizer": "Adam"}
    rec = common.record("training throughput of the segedu.zoo models", device, settings, rows, note=args.note)
    common.save(rec, f"throughput_{device.type}", args.out)
    return rec


if __name__ == "__main__":
    main()
