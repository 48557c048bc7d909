"""What ``segedu.train.fit`` costs on top of a bare PyTorch loop, with data rendered on the fly.

Same model (``segedu.zoo``, the quick profile's size by default), same optimizer, same number of steps:

* ``fit``: ``fit(model, ShapesDataset(...), cross_entropy, steps)``: it draws indices, renders every batch
  (``ShapesDataset.batch``, on the model's device), moves it, steps, reads the loss (``.item()``) for the
  progress bar and the history;
* ``bare``: ``for x, y in batches: loss = ce(model(x), y); zero_grad; backward; step`` on batches rendered
  *before* the clock starts.

Runs are timed in turns and the median per step compared: target ratio fit / bare <= 1.10. The time to render
one batch alone is recorded too (it is what fit pays that the bare loop does not). On CUDA both use bfloat16
autocast and channels-last (fit's defaults there) and the scenes are rendered on the GPU. Writes
``bench/results/fit_overhead_<device>.json``.

    python bench/fit_overhead.py                          # unet, quick profile sizes, 20 steps x 5 rounds
    python bench/fit_overhead.py --model deeplabv3 --steps 10 --repeats 3
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from segedu import runtime, zoo  # noqa: E402
from segedu.data.shapes import ShapesDataset  # noqa: E402
from segedu.train import fit  # noqa: E402

TARGET = 1.10


def ce(logits, target):
    return F.cross_entropy(logits, target, ignore_index=255)


def run(device: torch.device, model_name: str, profile: str, steps: int, repeats: int, note: str = "") -> dict:
    os.environ.pop("SEGEDU_CACHE", None)  # fit must train, not reuse a cached run
    P = runtime.profile(profile)
    data = ShapesDataset(P.train_images, size=P.image_size, seed=0, device=device)
    torch.manual_seed(0)
    model = zoo.build_model(model_name, data.num_classes, P).to(device)
    cuda = device.type == "cuda"
    fit_model, bare_model = model, copy.deepcopy(model)
    if cuda:
        bare_model = bare_model.to(memory_format=torch.channels_last)
    fit_opt = torch.optim.Adam(fit_model.parameters(), lr=P.lr)
    bare_opt = torch.optim.Adam(bare_model.parameters(), lr=P.lr)
    g = torch.Generator().manual_seed(1)
    batches = [data.batch(torch.randint(len(data), (P.batch_size,), generator=g)) for _ in range(steps)]
    if cuda:
        batches = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in batches]
    seed = iter(range(10**6))  # a new sample of scenes every fit run, as in training

    def with_fit():
        fit(fit_model, data, ce, steps, fit_opt, device=device, progress=False, batch_size=P.batch_size,
            seed=next(seed))

    def bare():
        bare_model.train()
        for x, y in batches:
            with common.autocast(device, cuda):
                loss = ce(bare_model(x), y)
            bare_opt.zero_grad(set_to_none=True)
            loss.backward()
            bare_opt.step()

    times = common.interleaved({"fit": with_fit, "bare": bare}, repeats, warmup=1, device=device)
    render = common.timeit(lambda: data.batch(torch.randint(len(data), (P.batch_size,), generator=g)), 5, 1, device)
    per_step = {name: [t / steps for t in ts] for name, ts in times.items()}
    ratio = statistics.median(per_step["fit"]) / statistics.median(per_step["bare"])
    rows = [{"loop": name, "step_s": common.summarize(t), "images_per_s": round(P.batch_size / statistics.median(t), 1)}
            for name, t in per_step.items()]
    rows.append({"loop": "render one batch (ShapesDataset.batch)", "step_s": common.summarize(render),
                 "images_per_s": round(P.batch_size / statistics.median(render), 1)})
    settings = {"model": model_name, "profile": P.name, "image_size": P.image_size, "batch_size": P.batch_size,
                "width": P.width, "steps_per_run": steps, "repeats": repeats, "amp_bf16": cuda, "channels_last": cuda}
    summary = {"ratio_median": round(ratio, 3), "target": TARGET, "pass": ratio <= TARGET,
               "ratio_best": round(min(per_step["fit"]) / min(per_step["bare"]), 3),
               "render_share_of_bare_step": round(statistics.median(render) / statistics.median(per_step["bare"]), 3)}
    return common.record("segedu.train.fit overhead vs a bare loop (ShapesDataset rendered on the fly)", device,
                         settings, rows, summary, note)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_device_arguments(parser)
    parser.add_argument("--model", default="unet", choices=zoo.MODEL_NAMES)
    parser.add_argument("--profile", default="quick", help="the sizes: quick or full")
    parser.add_argument("--steps", type=int, default=20, help="steps per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each loop (in turns)")
    args = parser.parse_args(argv)
    device = common.pick_device(parser, args)
    rec = run(device, args.model, args.profile, args.steps, args.repeats, args.note)
    for row in rec["results"]:
        print(f"{row['loop']:<40} median {row['step_s']['median'] * 1e3:8.1f} ms  {row['images_per_s']:8.1f} img/s")
    print("summary:", rec["summary"])
    common.save(rec, f"fit_overhead_{device.type}", args.out)
    return rec


if __name__ == "__main__":
    main()
