"""Lesson 05's experiment: FCN-32s, FCN-16s and FCN-8s trained at one budget, scored on boundary F1.

The claim (Long, Shelhamer & Darrell, CVPR 2015, Table 2 and Fig. 4; DESIGN.md, lesson 05): each skip sharpens
the boundaries, so boundary F1 is ordered 8s > 16s > 32s. The three variants get the same data, data order,
optimizer, learning-rate schedule and number of steps (``profile.ablation_steps``); ``seed`` sets the initial
weights and the order of the batches.

The task is object against background (every shape is "object"): skips are about *where* a boundary runs, and
a model still confusing the five shapes would be scored on that confusion instead (lesson 05, section 4).
``train_fcn_variants`` returns the trained models (for the lesson's pictures and widgets) and their scores;
``fcn_variants`` is the same as one row of numbers for ``bench/seeds.py``. The object task's pieces
(``foreground``, ``object_loss``, ``cosine_schedule``, ``object_validation``, ``train_and_score``) are shared
with lesson 06's experiment.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from segedu import runtime, validate
from segedu.data.shapes import ShapesDataset
from segedu.evaluation import evaluate
from segedu.experiments.common import Comparison, resolve_profile
from segedu.models.fcn import VARIANTS, small_fcn
from segedu.train import fit

__all__ = ["CLASSES", "foreground", "object_loss", "cosine_schedule", "object_data",
           "object_validation", "train_and_score", "train_models", "flat_scores", "train_fcn_variants", "fcn_variants",
           "COMPARISONS"]

CLASSES = ("background", "object")


def foreground(masks: torch.Tensor) -> torch.Tensor:
    """``int64 [B, H, W]``: 1 where a shape is (any class), 0 elsewhere; the object/background target."""
    return (masks > 0).long()


def object_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``logits [B, 2, H, W]`` against the foreground of shape-class ``masks [B, H, W]``."""
    return F.cross_entropy(logits, foreground(masks))


def cosine_schedule(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning rate decays to 0 along a cosine over ``steps``: each model ends its run settled, not
    mid-jump, so a comparison at a fixed budget compares the models rather than where their last steps landed."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)


def object_data(profile=None) -> tuple[ShapesDataset, torch.Tensor, torch.Tensor]:
    """``(train, val_images, val_masks)``: ``profile.train_images`` training scenes (seed 0) and
    ``profile.val_images`` validation scenes (seed 1) of ``profile.image_size``, the masks with shape classes."""
    p = resolve_profile(profile)
    train = ShapesDataset(p.train_images, size=p.image_size, seed=0)
    val = ShapesDataset(p.val_images, size=p.image_size, seed=1)
    images, masks = val.batch(range(len(val)))
    return train, images, masks


def object_validation(images: torch.Tensor, masks: torch.Tensor, batch_size: int) -> list:
    """The validation scenes as ``(images, foreground masks)`` batches for ``evaluate``."""
    batch_size = validate.positive_int(batch_size, "batch_size")
    return [(images[i : i + batch_size], foreground(masks[i : i + batch_size]))
            for i in range(0, len(images), batch_size)]


def train_and_score(model: nn.Module, train, val_batches: list, seed: int, profile, *,
                    callback: Callable | None = None, progress: bool = True, device=None) -> dict[str, float]:
    """Train ``model`` on the object task for ``profile.ablation_steps`` Adam steps (lr ``profile.lr``, cosine
    schedule, batch ``profile.batch_size``, batches drawn with ``seed``) and score it on ``val_batches``.

    Returns ``{"params", "miou", "bf" (boundary F1), "images/s" (training speed)}``. With ``callback`` (a
    widget's snapshots) ``segedu.cache`` is off for the run; without it a cached result is reused."""
    p = resolve_profile(profile)
    history = fit(model, train, object_loss, p.ablation_steps, lr=p.lr, batch_size=p.batch_size,
                  device=device or runtime.device(), seed=seed, progress=progress, callback=callback,
                  scheduler=functools.partial(cosine_schedule, steps=p.ablation_steps))
    metrics = evaluate(model, val_batches, num_classes=len(CLASSES))
    return {"params": float(sum(q.numel() for q in model.parameters())), "miou": float(metrics["miou"]),
            "bf": float(metrics["boundary_f1"]), "images/s": float(history.images_per_second)}


def train_fcn_variants(seed: int = 0, profile=None, *, variants=VARIANTS, callbacks: dict | None = None,
                       progress: bool = True, device=None) -> tuple[dict, dict]:
    """Train ``small_fcn(2, variant, profile.width)`` for each of ``variants`` on the object task.

    ``seed`` seeds the initial weights (``runtime.seed_everything`` before each model is built) and the batch
    order; every variant starts from the same generator state. ``callbacks``: ``{variant: fit callback}``
    (lesson 05's prediction snapshots). Returns ``(models, results)``: ``{variant: trained model}`` and
    ``{variant: {"params", "miou", "bf", "images/s"}}``."""
    seed = validate.integer(seed, "seed")
    p = resolve_profile(profile)
    for variant in variants:
        validate.choice(variant, "variants", VARIANTS)
    builders = {variant: functools.partial(small_fcn, len(CLASSES), variant, p.width) for variant in variants}
    return train_models(builders, seed, p, callbacks=callbacks, progress=progress, device=device)


def train_models(builders: dict, seed: int, profile: runtime.Profile, *, callbacks: dict | None = None,
                 progress: bool = True, device=None) -> tuple[dict, dict]:
    """Train ``builders[name]()`` for each name on the object task, at one budget (``train_and_score``): each
    model is built right after ``runtime.seed_everything(seed)``, so all start from the same generator state.
    ``callbacks``: ``{name: fit callback}``. Returns ``({name: trained model}, {name: scores})``."""
    train, images, masks = object_data(profile)
    val_batches = object_validation(images, masks, profile.batch_size)
    models, results = {}, {}
    for name, build in builders.items():
        runtime.seed_everything(seed)
        models[name] = build()
        results[name] = train_and_score(models[name], train, val_batches, seed, profile, progress=progress,
                                        device=device, callback=(callbacks or {}).get(name))
    return models, results


def flat_scores(results: dict) -> tuple:
    """``{name: scores}`` -> ``(("bf_<name>", value), ("miou_<name>", value), ...)``: what a registered
    comparison reads (a tuple, so that an ``lru_cache`` can keep it)."""
    return tuple((f"{key}_{name}", value) for name, r in results.items() for key, value in r.items()
                 if key in ("bf", "miou"))


@functools.lru_cache(maxsize=4)
def _scores(seed: int, profile: runtime.Profile) -> tuple:
    return flat_scores(train_fcn_variants(seed, profile, progress=False)[1])


def fcn_variants(seed: int = 0, profile=None) -> dict[str, float]:
    """Boundary F1 and mIoU of FCN-32s, 16s and 8s trained with ``seed``: ``{"bf_32s", "bf_16s", "bf_8s",
    "miou_32s", ...}`` (one training per seed and profile in a process: the registered comparisons share it)."""
    return dict(_scores(validate.integer(seed, "seed"), resolve_profile(profile)))


# The margins lesson 05 asserts: FCN-8s over FCN-32s by 0.1, and each skip by 0.05.
COMPARISONS = {
    "fcn8s_vs_fcn32s": Comparison(function=fcn_variants, better="bf_8s", worse="bf_32s", margin=0.1),
    "fcn8s_vs_fcn16s": Comparison(function=fcn_variants, better="bf_8s", worse="bf_16s", margin=0.05),
    "fcn16s_vs_fcn32s": Comparison(function=fcn_variants, better="bf_16s", worse="bf_32s", margin=0.05),
}
