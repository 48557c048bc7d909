"""Lesson 07's experiment: DeepLab v3 and its variants trained at one budget on the object task, then scored
single-scale, with multi-scale + flipped inference and with the dense CRF.

The models (``MODELS``, all on the small ResNet encoder at output stride 16 with ASPP rates ``RATES``):

* ``"DeepLab v3"`` - ASPP + image pooling (Chen et al., arXiv 2017);
* ``"DeepLab v3+"`` - the same plus the stride-4 decoder (Chen et al., ECCV 2018);
* ``"v3 multi-grid"`` - DeepLab v3 whose last stage's two blocks get unit rates ``MULTI_GRID`` (v3, Sec. 3.2);
* ``"v3-MSc"`` - DeepLab v1's multi-scale head (``segedu.models.multiscale.DeepLabMSc``) on the trained v3:
  only the new stride-4 head is trained, for the same number of steps (Chen et al., ICLR 2015, Sec. 4.3).

The three trained from scratch get the data, data order, optimizer, schedule and steps of lessons 05 and 06
(``segedu.experiments.lesson05.train_and_score``: object against background, ``profile.ablation_steps`` steps);
``seed`` sets the initial weights and the batch order. ``score_variants`` then scores each model three ways:
as it is, with ``multi_scale_predict`` (scales ``SCALES``, flips) and with ``dense_crf`` on its probabilities.

The claims lesson 07 asserts (``COMPARISONS``): the decoder and the MSc head raise boundary F1 over v3, the CRF
raises v3+'s, and multi-scale + flipped inference does not raise it for models trained at one scale. The lesson
trains ``LESSON_MODELS`` only (multi-grid makes no measurable difference at this size; it quotes the numbers). ``train_deeplabs`` returns the trained models (the lesson draws and refines them);
``deeplab_variants`` is the same as one row of numbers for ``bench/seeds.py``.

The module also holds the lesson's other measurements: ``stride_costs`` (what output stride 32 / 16 / 8
costs), ``coarse_prediction`` (a caricature of a stride-8 network's output, for the CRF to refine) and
``crf_costs`` (the counted work and the time of ``dense_crf``, naive against permutohedral).
"""

from __future__ import annotations

import copy
import functools
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from segedu import runtime, validate
from segedu.crf import dense_crf, filter_work
from segedu.data.samples import grace_hopper
from segedu.evaluation import evaluate
from segedu.experiments.common import Comparison, resolve_profile
from segedu.experiments.lesson05 import (
    CLASSES, foreground, object_data, object_validation, train_and_score,
)
from segedu.metrics import boundary_f1, mean_iou
from segedu.models.deeplab import DeepLabV3, DeepLabV3Plus
from segedu.models.multiscale import DeepLabMSc, MultiScale

__all__ = ["CLASSES", "foreground", "RATES", "MULTI_GRID", "SCALES", "MODELS", "LESSON_MODELS", "crf_params", "build_model", "stride_costs",
           "coarse_prediction", "crf_costs", "train_deeplabs", "score_variants", "deeplab_variants", "COMPARISONS"]

RATES = (1, 2, 3)      # ASPP rates for 4x4 maps (64 px at stride 16): 6, 12, 18 would be 1x1 convolutions there
MULTI_GRID = (1, 2)    # the small encoder's last stage has two blocks (v3 uses (1, 2, 4) on ResNet's three)
SCALES = (0.75, 1.0, 1.25)
MODELS = ("DeepLab v3", "DeepLab v3+", "v3 multi-grid", "v3-MSc")
LESSON_MODELS = ("DeepLab v3", "DeepLab v3+", "v3-MSc")  # what the lesson trains (multi-grid: only its numbers)


def crf_params(profile=None) -> dict:
    """The dense CRF's parameters for the shapes scenes of ``profile.image_size`` (``dense_crf`` keywords):
    a strong appearance kernel over a quarter of the scene (shapes are flat-coloured, edges are crisp) and a
    one-pixel smoothness kernel."""
    size = resolve_profile(profile).image_size
    return dict(w_bilateral=5.0, theta_alpha=size / 4, theta_beta=13.0, w_gaussian=3.0, theta_gamma=1.0)


def build_model(name: str, profile=None, num_classes: int = len(CLASSES), output_stride: int = 16) -> nn.Module:
    """A fresh model ``name`` (one of ``MODELS`` except ``"v3-MSc"``, which wraps a trained v3) at
    ``profile.width``: the small encoder, ``2 * width`` ASPP channels, rates ``RATES``."""
    validate.choice(name, "name", MODELS[:3])
    w = resolve_profile(profile).width
    common = dict(output_stride=output_stride, width=w, aspp_channels=2 * w, rates=RATES)
    if name == "DeepLab v3+":
        return DeepLabV3Plus(num_classes, "small", decoder_channels=2 * w, **common)
    return DeepLabV3(num_classes, "small", multi_grid=MULTI_GRID if name == "v3 multi-grid" else None, **common)


def stride_costs(images: torch.Tensor, strides=(32, 16, 8), profile=None) -> dict[int, dict]:
    """What the output stride costs: ``{stride: {"side", "params", "gflops", "seconds"}}`` for
    ``build_model("DeepLab v3")`` at each stride (the same weights), on ``images [B, 3, H, W]``: the side of
    the last feature map, the parameters, the floating-point operations of one forward pass
    (``torch.utils.flop_counter``: a count, the same on every machine) and its time (a clock: load changes it)."""
    rows = {}
    for stride in strides:
        model = build_model("DeepLab v3", profile, output_stride=stride).eval()
        with torch.no_grad():
            side = model.backbone(images)["out"].shape[-1]
            with FlopCounterMode(display=False) as flops:
                model(images)
            start = time.perf_counter()
            model(images)
            seconds = time.perf_counter() - start
        rows[stride] = dict(side=side, params=sum(p.numel() for p in model.parameters()),
                            gflops=flops.get_total_flops() / 1e9, seconds=seconds)
    return rows


def coarse_prediction(masks: torch.Tensor, num_classes: int, cell: int = 8) -> torch.Tensor:
    """A caricature of a network at stride ``cell``: softmax probabilities ``[B, C, H, W]`` from label maps
    ``masks [B, H, W]``. Each class claims the ``cell x cell`` cells it appears in (background only by its share
    of the cell), the cell scores are upsampled bilinearly and sharpened (x3) before the softmax: right inside
    the objects, blurry and blocky at their boundaries - what the CRF is for."""
    num_classes, cell = validate.positive_int(num_classes, "num_classes"), validate.positive_int(cell, "cell")
    onehot = F.one_hot(masks, num_classes).permute(0, 3, 1, 2).float()
    cells = F.max_pool2d(onehot, cell)                           # an object in a cell claims the cell ...
    cells[:, 0] = F.avg_pool2d(onehot[:, :1], cell)[:, 0]         # ... background only by its share
    return (3 * F.interpolate(cells, size=masks.shape[-2:], mode="bilinear", align_corners=False)).softmax(1)


def crf_costs(sides, method: str, iterations: int, classes: int = 5, repeats: int = 3) -> tuple[list, list]:
    """The cost of ``dense_crf`` on square crops of the Grace Hopper photo of each side in ``sides``, with
    ``classes`` random classes: ``(work, seconds)``, two lists. ``work``: the multiply-adds per class of one
    mean-field message, counted from the filters (``crf.filter_work``; a count, the same on every machine);
    ``seconds``: the best of ``repeats`` timed runs of ``iterations`` iterations (a clock: the least disturbed
    run, still at the mercy of whatever else the machine does)."""
    work, seconds = [], []
    for side in sides:
        image = grace_hopper((side, side))
        probs = torch.rand(classes, side, side, generator=torch.Generator().manual_seed(side)).softmax(0)
        best = float("inf")
        for _ in range(validate.positive_int(repeats, "repeats")):
            start = time.perf_counter()
            dense_crf(probs, image, iterations=iterations, method=method)
            best = min(best, time.perf_counter() - start)
        work.append(filter_work(image, method=method))
        seconds.append(best)
    return work, seconds


def train_deeplabs(seed: int = 0, profile=None, names=MODELS, *, progress: bool = True,
                   device=None) -> tuple[dict, dict]:
    """Train every model of ``names`` on the object task (``lesson05.train_and_score``); ``"v3-MSc"`` needs
    ``"DeepLab v3"`` before it and wraps a copy of the trained v3 (its base frozen, only the head trained).

    Each model is built right after ``runtime.seed_everything(seed)``. Returns ``(models, results)``:
    ``{name: trained model in eval mode, on the CPU}`` and ``{name: {"params", "miou", "bf", "images/s"}}``
    (the trainable parameters for ``"v3-MSc"``)."""
    seed = validate.integer(seed, "seed")
    p = resolve_profile(profile)
    names = tuple(validate.choice(name, "names", MODELS) for name in names)
    if "v3-MSc" in names and "DeepLab v3" not in names[: names.index("v3-MSc")]:
        raise ValueError(f"names must hold 'DeepLab v3' before 'v3-MSc' (its base), got {names}")
    train, images, masks = object_data(p)
    val_batches = object_validation(images, masks, p.batch_size)
    models, results = {}, {}
    for name in names:
        runtime.seed_everything(seed)
        if name == "v3-MSc":
            model = DeepLabMSc(copy.deepcopy(models["DeepLab v3"]), channels=4 * p.width)
        else:
            model = build_model(name, p)
        results[name] = train_and_score(model, train, val_batches, seed, p, progress=progress, device=device)
        results[name]["params"] = float(sum(q.numel() for q in model.parameters() if q.requires_grad))
        models[name] = model.cpu().eval()
    return models, results


def score_variants(models: dict, images: torch.Tensor, masks: torch.Tensor, profile=None,
                   crf_iterations: int | None = None) -> dict[str, dict]:
    """Each model scored three ways on ``images [B, 3, H, W]`` and shape-class ``masks [B, H, W]`` (object vs
    background): ``{name: {"miou", "bf"` (as it is), ``"miou_ms", "bf_ms"`` (``MultiScale(model, SCALES,
    flip=True)``), ``"miou_crf", "bf_crf"`` (``dense_crf`` on its softmax with ``crf_params``,
    ``profile.crf_iterations`` iterations)}}``."""
    p = resolve_profile(profile)
    iterations = p.crf_iterations if crf_iterations is None else validate.integer(crf_iterations, "crf_iterations", 0)
    target = foreground(masks)
    batches = object_validation(images, masks, p.batch_size)
    image_u8 = (images * 255).round().to(torch.uint8)
    scores = {}
    for name, model in models.items():
        model = model.cpu().eval()
        single, multi = evaluate(model, batches, num_classes=2), evaluate(MultiScale(model, SCALES), batches, 2)
        with torch.no_grad():
            refined = dense_crf(model(images).softmax(1), image_u8, iterations=iterations, **crf_params(p)).argmax(1)
        scores[name] = {"miou": single["miou"], "bf": single["boundary_f1"], "miou_ms": multi["miou"],
                        "bf_ms": multi["boundary_f1"], "miou_crf": mean_iou(refined, target, 2),
                        "bf_crf": float(boundary_f1(refined, target))}
    return scores


@functools.lru_cache(maxsize=4)
def _scores(seed: int, profile: runtime.Profile) -> tuple:
    models, _ = train_deeplabs(seed, profile, progress=False)
    _, images, masks = object_data(profile)
    scores = score_variants(models, images, masks, profile)
    row = {f"{key}_{name}": float(value) for name, r in scores.items() for key, value in r.items()}
    for key in ("bf", "bf_ms"):  # multi-scale inference, judged over the lesson's three models
        row[f"{key}_mean"] = sum(scores[name][key] for name in LESSON_MODELS) / len(LESSON_MODELS)
    return tuple(row.items())


def deeplab_variants(seed: int = 0, profile=None) -> dict[str, float]:
    """Every score of ``score_variants`` for the four models trained with ``seed``: ``{"bf_DeepLab v3",
    "bf_ms_DeepLab v3", "bf_crf_DeepLab v3", ..., "miou_crf_v3-MSc"}``, and ``"bf_mean"`` / ``"bf_ms_mean"``,
    boundary F1 averaged over ``LESSON_MODELS`` without and with multi-scale inference (one training per seed
    and profile in a process: the registered comparisons share it)."""
    return dict(_scores(validate.integer(seed, "seed"), resolve_profile(profile)))


# The margins lesson 07 asserts (boundary F1). The last one is a claim that something does NOT help: one pass
# at scale 1 is not beaten by more than 0.02 by multi-scale + flipped inference (a margin of -0.02).
COMPARISONS = {
    "v3plus_vs_v3": Comparison(function=deeplab_variants, better="bf_DeepLab v3+", worse="bf_DeepLab v3", margin=0.1),
    "msc_vs_v3": Comparison(function=deeplab_variants, better="bf_v3-MSc", worse="bf_DeepLab v3", margin=0.05),
    "crf_on_v3plus": Comparison(function=deeplab_variants, better="bf_crf_DeepLab v3+", worse="bf_DeepLab v3+",
                                margin=0.08),
    "single_vs_multiscale": Comparison(function=deeplab_variants, better="bf_mean", worse="bf_ms_mean", margin=-0.02),
}
