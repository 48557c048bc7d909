"""What a loss says about ONE pixel: its value and gradient as that pixel's probability moves (lesson 10).

A pixel-wise loss (cross-entropy, focal) is a curve ``l(p)`` per pixel. A region loss (Dice, Tversky) is
not: a pixel's share of it depends on every other pixel of the batch, in particular on how large its class
is. To draw both kinds on one axis we fix a small scene and move one pixel:

* ``probe_scene``: an ``S x S`` image whose foreground is the ``round(ratio * S * S)`` pixels closest to
  the centre (a disk-like blob), every other pixel predicted with probability ``confidence`` of its true
  class (a fairly good prediction);
* ``sweep``: the probed pixel - a **positive** one (the centre of the blob) or a **negative** one (the
  top-left corner, far from the blob) - takes each foreground probability ``p`` in turn; we record

  - the **cost** of the pixel, ``N * (L(p) - L(right))``: how much the loss grows when this pixel moves
    from the right answer (probability of its true class ``1 - 1e-13``) to ``p``, times the number of
    pixels N;
  - the **gradient** ``N * dL/dz`` with respect to that pixel's logit z (what backpropagation sends into
    the network from this pixel), times N.

Why times N: a pixel-wise loss with mean reduction gives each pixel ``1/N`` of its own term, so the cost
is the per-pixel loss (``-log p`` for a positive pixel under cross-entropy) and the gradient the per-pixel
gradient (``p - g``), whatever the image size. A region loss spreads itself over the pixels of each class
instead, so for a rare class a pixel can cost and pull far more than under cross-entropy (Milletari et al.,
V-Net, 3DV 2016, eq. 2; Jadon, "A survey of loss functions for semantic segmentation", CIBCB 2020).

The losses run in ``mode="binary"``: logits ``[1, 1, S, S]``, target int64 ``[1, S, S]`` in {0, 1}.
Everything is float64 so that small gradients are exact.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
from torch.func import vmap

from segedu import validate
from segedu.losses import LOSSES

__all__ = ["PIXELS", "Sweep", "probe_scene", "sweep", "logit"]

PIXELS = ("positive", "negative")
RIGHT_LOGIT = 30.0  # sigmoid(30) = 1 - 1e-13: "the right answer", still finite for every loss


class Sweep(NamedTuple):
    """What ``sweep`` returns, float64 ``[P]`` each."""

    cost: torch.Tensor  # N * (L(p) - L(right))
    gradient: torch.Tensor  # N * dL/dz at the probed pixel


def logit(p: torch.Tensor) -> torch.Tensor:
    """The logit z = log p - log(1 - p) of probabilities in (0, 1) (the inverse of the sigmoid)."""
    return torch.log(p) - torch.log1p(-p)


def _open_probability(value, name: str) -> float:
    """A number strictly between 0 and 1 (its type and finiteness checked by ``segedu.validate``)."""
    value = validate.number(value, name)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {value}")
    return value


def probe_scene(ratio: float = 0.1, size: int = 32, confidence: float = 0.9, dtype=torch.float64):
    """The fixed scene of ``sweep``.

    Args:
        ratio: fraction of foreground pixels, in (0, 0.5]; the blob holds ``max(1, round(ratio * N))``
            pixels, N = ``size**2``.
        size: image side S (>= 4).
        confidence: probability every pixel gives its true class, in (0, 1).

    A wrong type (``size=2.5``, ``ratio=True``) raises ``TypeError``, a value out of range ``ValueError``
    (the rule of ``segedu.validate``).

    Returns:
        ``(logits [1, 1, S, S], target int64 [1, S, S], pixels)`` with ``pixels`` a dict
        ``{"positive": (row, col), "negative": (row, col)}``: the blob's centre and the top-left corner.
    """
    ratio = _open_probability(ratio, "ratio")
    if ratio > 0.5:
        raise ValueError(f"ratio must be at most 0.5 (foreground is the rare class here), got {ratio}")
    size = validate.integer(size, "size", minimum=4)
    confidence = _open_probability(confidence, "confidence")
    n = size * size
    count = max(1, round(ratio * n))
    # Distance of every pixel to the centre pixel; the `count` nearest form the blob (stable sort: ties
    # are broken by raster order, so the scene is the same on every run).
    centre = size // 2
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    distance = ((rows - centre) ** 2 + (cols - centre) ** 2).flatten()
    order = torch.sort(distance, stable=True).indices
    target = torch.zeros(n, dtype=torch.int64)
    target[order[:count]] = 1
    target = target.view(1, size, size)
    z = math.log(confidence / (1.0 - confidence))  # the logit of `confidence`
    logits = torch.where(target == 1, z, -z).to(dtype)[:, None]  # positives at +z, negatives at -z
    return logits, target, {"positive": (centre, centre), "negative": (0, 0)}


def sweep(
    loss: str | Callable[..., torch.Tensor],
    probabilities,
    pixel: str = "positive",
    ratio: float = 0.1,
    size: int = 32,
    confidence: float = 0.9,
    **params,
) -> Sweep:
    """Cost and gradient of one pixel as its foreground probability runs through ``probabilities``.

    Args:
        loss: a name in ``segedu.losses.LOSSES`` or a function ``loss(logits, target, mode=..., **params)``.
        probabilities: the foreground probabilities p of the probed pixel, ``[P]`` in (0, 1).
        pixel: ``"positive"`` (true class foreground: p -> 1 is right) or ``"negative"`` (p -> 0 is right).
        ratio, size, confidence: the scene, see ``probe_scene``.
        **params: the loss's own parameters (``gamma=2.0``, ``alpha=None``, ...).

    The loss runs under ``torch.func.vmap`` (one call for all of ``probabilities``): every loss of
    ``LOSSES`` supports it; a function of your own must avoid data-dependent Python control flow.

    Returns:
        ``Sweep(cost, gradient)``, float64 ``[P]`` each: ``N * (L(p) - L(right))`` and ``N * dL/dz`` at the
        probed pixel (z its logit, N = ``size**2``). A pixel-wise loss gives its own per-pixel loss and
        gradient (BCE: ``-log p_true`` and ``p - g``).
    """
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)} or a function, got {loss!r}")
        loss = LOSSES[loss].function
    elif not callable(loss):
        raise TypeError(f"loss must be a name in LOSSES or a function, got {type(loss).__name__}")
    validate.choice(pixel, "pixel", PIXELS)
    p = torch.as_tensor(probabilities, dtype=torch.float64).flatten()
    if p.numel() == 0 or not ((p > 0) & (p < 1)).all():
        raise ValueError(f"probabilities must be a non-empty sequence in (0, 1), got {p.tolist()[:6]}")
    base, target, pixels = probe_scene(ratio, size, confidence)
    row, col = pixels[pixel]
    where = torch.zeros_like(base)
    where[0, 0, row, col] = 1.0
    right = RIGHT_LOGIT if pixel == "positive" else -RIGHT_LOGIT
    z = torch.cat([torch.tensor([right], dtype=torch.float64), logit(p)])

    def loss_of_logit(z):  # the scene with the probed pixel's logit set to z
        return loss(base + where * (z - base), target, mode="binary", **params)

    # A region loss sums over the whole batch, so the sweep cannot go into the batch dimension; vmap runs
    # the loss once per value of z instead, as one vectorized call. Loss k depends on z[k] only, so the
    # gradient of their sum holds every dL_k / dz_k at once.
    z.requires_grad_(True)
    value = vmap(loss_of_logit)(z)
    (gradient,) = torch.autograd.grad(value.sum(), z)
    value = value.detach()
    n = size * size
    return Sweep(n * (value[1:] - value[0]), n * gradient[1:])
