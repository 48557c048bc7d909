"""Lesson 10's experiment: the same U-Net trained on tiny objects with six losses, scored on the foreground.

The claim (DESIGN.md, lesson 10; Jadon 2020): on a small-object, imbalanced binary set, Dice, Focal and Combo
beat plain binary cross-entropy on small-object IoU at the same budget. Every loss gets the same data, initial
weights, data order, optimizer and number of steps; only the loss changes.

``tiny_object_data(profile)`` renders the set once; ``train_losses(data, seed, profile)`` trains one U-Net
per loss and returns each one's confusion matrix and validation predictions; ``tiny_objects(seed, profile)``
is the same as one row of numbers (the foreground IoU per loss) for ``bench/seeds.py``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.utils.data import TensorDataset

from segedu import losses, runtime
from segedu.data.shapes import ShapesDataset
from segedu.experiments.common import Comparison
from segedu.metrics import ConfusionMatrix
from segedu.models.unet import UNet
from segedu.train import fit

__all__ = ["LOSS_SETTINGS", "SMALL_OBJECTS", "TinyObjects", "tiny_object_data", "make_loss", "train_losses",
           "tiny_objects", "COMPARISONS"]

# 1-3 objects of 8-16 % of the image side: 2.5 to 5 pixels across at 32x32, about 1.5 % foreground.
SMALL_OBJECTS = dict(scale=(0.08, 0.16), min_objects=1, max_objects=3)

# The six losses and the parameters the lesson explains (binary mode: one sigmoid channel).
LOSS_SETTINGS = {
    "BCE": ("BinaryCrossEntropyLoss", {}),
    "weighted CE": ("WeightedCrossEntropyLoss", {}),
    "Dice": ("DiceLoss", {}),
    "Focal": ("FocalLoss", {"alpha": 0.75, "gamma": 2.0}),  # alpha on the rare foreground (Lin et al.: 0.25)
    "Tversky": ("TverskyLoss", {"alpha": 0.3, "beta": 0.7}),  # Salehi et al.: beta > alpha buys recall
    "Combo": ("ComboLoss", {"alpha": 0.5, "beta": 0.5}),      # Taghanaki et al.: half CE, half Dice
}


class TinyObjects(NamedTuple):
    """The rendered set: ``train`` (a TensorDataset of images ``[N, 3, S, S]`` and binary masks ``[N, S, S]``)
    and the validation ``images`` / ``masks``."""

    train: TensorDataset
    images: torch.Tensor
    masks: torch.Tensor


def _scenes(count: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, masks = ShapesDataset(count, size=size, seed=seed, **SMALL_OBJECTS).batch(range(count))
    return images, (masks > 0).long()  # binary target: any shape is foreground


def tiny_object_data(profile=None) -> TinyObjects:
    """Render the set at half the profile's image size: ``train_images // 4`` training scenes (seed 0) and
    ``val_images`` validation scenes (seed 1). Rendered once, reused by every loss and seed."""
    p = profile or runtime.profile()
    size = p.image_size // 2
    train = TensorDataset(*_scenes(p.train_images // 4, size, seed=0))
    return TinyObjects(train, *_scenes(p.val_images, size, seed=1))


def make_loss(name: str) -> torch.nn.Module:
    """The loss module of ``LOSS_SETTINGS[name]`` in binary mode."""
    if name not in LOSS_SETTINGS:
        raise ValueError(f"name must be one of {sorted(LOSS_SETTINGS)}, got {name!r}")
    cls, params = LOSS_SETTINGS[name]
    return getattr(losses, cls)(mode="binary", **params)


def train_losses(data: TinyObjects, seed: int = 0, profile=None, names=None, device=None):
    """Train one U-Net (two poolings, base width ``profile.width // 2``) per loss with ``profile.ablation_steps``
    Adam steps, from the same initial weights (``seed``). Returns ``{loss name: (ConfusionMatrix, predictions)}``
    with the validation predictions thresholded at p > 0.5 (``int64 [N, S, S]``, on the CPU)."""
    p = profile or runtime.profile()
    device = device or runtime.device()
    results = {}
    for name in names or LOSS_SETTINGS:
        runtime.seed_everything(seed)  # the same initial weights for every loss
        model = UNet(1, base=p.width // 2, depth=2)
        fit(model, data.train, make_loss(name), steps=p.ablation_steps, batch_size=p.batch_size, lr=p.lr,
            seed=seed, device=device, progress=False)
        model.eval()
        with torch.no_grad():
            pred = (model(data.images.to(device))[:, 0] > 0).long().cpu()  # logit > 0 <=> p > 0.5
        matrix = ConfusionMatrix(2)
        matrix.update(pred, data.masks)
        results[name] = (matrix, pred)
    return results


def tiny_objects(seed: int = 0, profile=None) -> dict[str, float]:
    """The foreground IoU of every loss for one seed: ``{"BCE": ..., "Dice": ..., ...}``."""
    runs = train_losses(tiny_object_data(profile), seed, profile)
    return {name: float(matrix.iou()[1]) for name, (matrix, _) in runs.items()}


# The lesson's claim, one entry per loss it names; 0.05 IoU is the margin the lesson asserts on the mean.
COMPARISONS = {
    f"{name.lower()}_vs_bce": Comparison(function=tiny_objects, better=name, worse="BCE", margin=0.05)
    for name in ("Dice", "Focal", "Combo")
}
