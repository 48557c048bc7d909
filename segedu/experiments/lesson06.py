"""Lesson 06's experiment: five decoders trained at one budget on lesson 05's object task, scored on boundary F1.

The models: U-Net ("same", depth 4, base ``profile.width``; Ronneberger et al., MICCAI 2015), U-Net "valid"
(depth ``VALID_DEPTH``, whole scenes predicted through ``MirrorContext``), the same U-Net without skips (a plain
encoder-decoder), FCN-8s of lesson 05 and SegNet (Badrinarayanan et al., TPAMI 2017: the decoder reuses the
encoder's pooling indices; one convolution per stage, ``SEGNET_CONVS``). Same data, data order, optimizer,
schedule and steps; ``seed`` sets the initial weights and the batch order.

The claims (DESIGN.md, lesson 06): U-Net beats FCN-8s on boundary F1, and removing the skips drops it.
``train_decoders`` returns the trained models (for the lesson's pictures and widgets) and their scores;
``decoders`` is the same as one row of numbers for ``bench/seeds.py``.
"""

from __future__ import annotations

import functools

from torch import nn

from segedu import runtime, validate
from segedu.experiments.common import Comparison, resolve_profile
from segedu.experiments.lesson05 import CLASSES, flat_scores, train_models
from segedu.models.fcn import small_fcn
from segedu.models.segnet import SegNet
from segedu.models.unet import MirrorContext, UNet

__all__ = ["DECODERS", "VALID_DEPTH", "SEGNET_CONVS", "build_decoder", "train_decoders", "decoders", "COMPARISONS"]

DECODERS = ("U-Net", "U-Net valid", "no skips", "FCN-8s", "SegNet")
# Two levels less than the "same" U-Net: the context margin roughly doubles with every level (20 px per side
# at depth 2, 44 at depth 3, 92 at depth 4), and a CPU pays for every mirrored pixel.
VALID_DEPTH = 2
# One 3x3 convolution per stage, in the spirit of the paper's SegNet-Basic (its ablations: one 7x7 convolution per
# stage). At VGG16's depth - 13 convolutions down and 13 up, no skip to shorten the path - SegNet does not get
# off the ground in the quick profile's 200 steps (measured: boundary F1 0.10, mIoU 0.50, close to all
# background); with one convolution per stage it reaches boundary F1 0.56 with the same budget.
SEGNET_CONVS = (1, 1, 1, 1, 1)


def build_decoder(name: str, profile=None) -> nn.Module:
    """A fresh model ``name`` (one of ``DECODERS``) for the two-class object task at ``profile.width``."""
    validate.choice(name, "name", DECODERS)
    width, classes = resolve_profile(profile).width, len(CLASSES)
    if name == "U-Net":
        return UNet(classes, base=width, depth=4)
    if name == "U-Net valid":
        return MirrorContext(UNet(classes, base=width, depth=VALID_DEPTH, padding="valid"))
    if name == "no skips":
        return UNet(classes, base=width, depth=4, skips=False)
    if name == "FCN-8s":
        return small_fcn(classes, "8s", width)
    return SegNet(classes, width=width, convs=SEGNET_CONVS)


def train_decoders(seed: int = 0, profile=None, names=DECODERS, *, progress: bool = True,
                   device=None) -> tuple[dict, dict]:
    """Train every model of ``names`` on the object task (``segedu.experiments.lesson05.train_models``).

    Each model is built right after ``runtime.seed_everything(seed)``. Returns ``(models, results)``:
    ``{name: trained model}`` and ``{name: {"params", "miou", "bf", "images/s"}}``."""
    seed = validate.integer(seed, "seed")
    p = resolve_profile(profile)
    names = tuple(validate.choice(name, "names", DECODERS) for name in names)
    builders = {name: functools.partial(build_decoder, name, p) for name in names}
    return train_models(builders, seed, p, progress=progress, device=device)


@functools.lru_cache(maxsize=4)
def _scores(seed: int, profile: runtime.Profile) -> tuple:
    return flat_scores(train_decoders(seed, profile, progress=False)[1])


def decoders(seed: int = 0, profile=None) -> dict[str, float]:
    """Boundary F1 and mIoU of the five models trained with ``seed``: ``{"bf_U-Net", "bf_FCN-8s", ...,
    "miou_SegNet"}`` (one training per seed and profile in a process: the registered comparisons share it)."""
    return dict(_scores(validate.integer(seed, "seed"), resolve_profile(profile)))


# The margins lesson 06 asserts.
COMPARISONS = {
    "unet_vs_fcn8s": Comparison(function=decoders, better="bf_U-Net", worse="bf_FCN-8s", margin=0.05),
    "unet_vs_no_skips": Comparison(function=decoders, better="bf_U-Net", worse="bf_no skips", margin=0.05),
    "unet_valid_vs_fcn8s": Comparison(function=decoders, better="bf_U-Net valid", worse="bf_FCN-8s", margin=0.0),
}
