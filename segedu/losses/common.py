"""What every loss of ``segedu.losses`` shares: the checked inputs and the pieces built from them.

``prepare`` checks ``(logits, target, mode, ignore_index, reduction)`` once and returns a ``Batch``
of tidy tensors; every loss then works on the same layout:

* ``mode="binary"``: logits ``[B, 1, H, W]`` or ``[B, H, W]`` (one foreground logit per pixel,
  p = sigmoid); target ``[B, H, W]`` or ``[B, 1, H, W]`` holding 0, 1 and ``ignore_index``;
* ``mode="multiclass"``: logits ``[B, C, H, W]`` with C >= 2 (p = softmax over C); target integer
  ``[B, H, W]`` in ``0..C-1`` or ``ignore_index``.

The pieces: ``log_prob_of_target`` (log p_t, for the distribution-based losses), ``probabilities``
and ``one_hot`` (p and g ``[B, K, H, W]``), ``masked_p_and_g`` (both zero at ignored pixels),
``soft_counts`` (TP, FP, FN per class, for the region-based losses), ``power`` (x ** gamma with a
finite gradient at 0), ``class_counts`` and ``positive`` (for the class weights), and the two
reductions ``reduce_pixels`` (per-pixel maps) and ``reduce_classes`` (per-class losses).

The notation follows Jadon, "A survey of loss functions for semantic segmentation" (CIBCB 2020):
p = predicted probability, g = one-hot target, sums over every non-ignored pixel of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from segedu import validate

__all__ = [
    "MODES",
    "REDUCTIONS",
    "Batch",
    "prepare",
    "log_prob_of_target",
    "probabilities",
    "one_hot",
    "masked_p_and_g",
    "soft_counts",
    "power",
    "reduce_pixels",
    "reduce_classes",
    "class_counts",
    "positive",
]

MODES = ("binary", "multiclass")
REDUCTIONS = ("mean", "sum", "none")


# --------------------------------------------------------------------------
# Inputs: check once, then every loss works on the same tidy tensors.
# --------------------------------------------------------------------------


@dataclass
class Batch:
    """Checked inputs.

    logits: ``[B, K, H, W]`` (K = 1 in binary mode, C in multiclass mode).
    labels: int64 ``[B, H, W]`` with ignored pixels replaced by 0, so that
        every per-pixel formula stays finite there (it is masked anyway).
    valid: bool ``[B, H, W]``, False at ignored pixels.
    num_classes: 2 in binary mode (background, foreground), C otherwise.
    """

    mode: str
    logits: torch.Tensor
    labels: torch.Tensor
    valid: torch.Tensor
    num_classes: int


def prepare(logits, target, mode: str, ignore_index, reduction: str) -> Batch:
    """Check a loss's inputs and return them as a ``Batch``.

    A wrong type (a non-tensor, integer logits, a float multiclass target, a
    ``bool`` or ``float`` ``ignore_index``, a non-string ``mode``) raises
    ``TypeError``; a wrong value (an unknown ``mode`` or ``reduction``, a shape
    that does not fit ``mode``, a label outside ``0..K-1`` that is not
    ``ignore_index``) raises ``ValueError``.
    """
    validate.choice(mode, "mode", MODES)
    validate.choice(reduction, "reduction", REDUCTIONS)
    validate.tensor(logits, "logits", dtype="floating")
    validate.tensor(target, "target")
    ignore_index = validate.ignore_index(ignore_index)

    if mode == "binary":
        if logits.dim() == 3:
            logits = logits.unsqueeze(1)
        if logits.dim() != 4 or logits.shape[1] != 1:
            raise ValueError(
                "mode='binary' expects logits [B, 1, H, W] or [B, H, W] (one foreground logit per pixel; "
                f"use mode='multiclass' for C >= 2 class channels), got shape {tuple(logits.shape)}"
            )
        if target.dim() == 4 and target.shape[1] == 1:
            target = target.squeeze(1)
        if target.is_complex():
            raise TypeError(f"target must hold real 0/1 labels, got dtype {target.dtype}")
        num_classes = 2
    else:
        if logits.dim() != 4 or logits.shape[1] < 2:
            raise ValueError(
                "mode='multiclass' expects logits [B, C, H, W] with C >= 2 "
                f"(use mode='binary' for one foreground channel), got shape {tuple(logits.shape)}"
            )
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise TypeError(
                "mode='multiclass' expects an integer target (int64 class indices), "
                f"got dtype {target.dtype}"
            )
        num_classes = logits.shape[1]

    expected = (logits.shape[0], *logits.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(
            f"target must have shape {list(expected)} to match logits {list(logits.shape)} "
            f"(mode={mode!r}), got {list(target.shape)}"
        )
    if target.device != logits.device:
        raise ValueError(
            f"target must be on the logits' device {logits.device}, got {target.device}"
        )
    if target.dtype == torch.bool:
        target = target.long()
    valid = (
        torch.ones_like(target, dtype=torch.bool)
        if ignore_index is None
        else target != ignore_index
    )
    in_range = (target >= 0) & (target < num_classes)
    if target.is_floating_point():  # binary targets may be float 0./1.
        in_range &= target == target.floor()
    if not (in_range | ~valid).all():
        bad = torch.unique(target[valid & ~in_range])[:8].tolist()
        raise ValueError(
            f"target values must be in 0..{num_classes - 1} or ignore_index={ignore_index}, "
            f"found {bad}"
        )
    labels = torch.where(valid, target, torch.zeros_like(target)).long()
    return Batch(mode, logits, labels, valid, num_classes)


# --------------------------------------------------------------------------
# Shared pieces.
# --------------------------------------------------------------------------


def log_prob_of_target(b: Batch) -> torch.Tensor:
    """log p_t, the log-probability of each pixel's true class: ``[B, H, W]``.

    Binary: log sigmoid(s z) with s = +1 for foreground, -1 for background,
    the numerically stable form of log p and log(1 - p). Multiclass:
    log_softmax picked at the true class.
    """
    if b.mode == "binary":
        sign = 2.0 * b.labels.to(b.logits.dtype) - 1.0
        return F.logsigmoid(sign * b.logits[:, 0])
    return F.log_softmax(b.logits, dim=1).gather(1, b.labels[:, None]).squeeze(1)


def probabilities(b: Batch) -> torch.Tensor:
    """p ``[B, K, H, W]``: sigmoid (K = 1) or softmax over C channels."""
    return torch.sigmoid(b.logits) if b.mode == "binary" else torch.softmax(b.logits, dim=1)


def one_hot(b: Batch) -> torch.Tensor:
    """g ``[B, K, H, W]`` in the logits' dtype: the foreground indicator in
    binary mode, the one-hot target in multiclass mode."""
    if b.mode == "binary":
        return (b.labels == 1).to(b.logits.dtype)[:, None]
    return F.one_hot(b.labels, b.num_classes).permute(0, 3, 1, 2).to(b.logits.dtype)


def masked_p_and_g(b: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """p and g ``[B, K, H, W]``, both zero at ignored pixels (so they vanish
    from every sum, and no gradient reaches an ignored logit)."""
    keep = b.valid[:, None].to(b.logits.dtype)
    return probabilities(b) * keep, one_hot(b) * keep


def soft_counts(p: torch.Tensor, g: torch.Tensor):
    """Soft TP, FP, FN per class, summed over batch and pixels: each ``[K]``."""
    dims = (0, 2, 3)
    tp = (p * g).sum(dims)
    fp = (p * (1 - g)).sum(dims)
    fn = ((1 - p) * g).sum(dims)
    return tp, fp, fn


def power(x: torch.Tensor, gamma: float) -> torch.Tensor:
    """x ** gamma for x >= 0, with a finite gradient at x = 0.

    d/dx x^gamma = gamma x^(gamma - 1) is infinite at 0 for gamma < 1 (focal
    Tversky's 0.75, exp-log's 0.3); a perfect pixel or class would then give
    0 * inf = NaN. Clamping at the smallest normal float changes the value
    by at most tiny^gamma (about 1e-11 in float32) and zeroes the gradient
    exactly at 0.
    """
    return x.clamp_min(torch.finfo(x.dtype).tiny) ** gamma


def reduce_pixels(loss: torch.Tensor, b: Batch, reduction: str) -> torch.Tensor:
    """Per-pixel ``[B, H, W]`` -> as asked; the mean is over non-ignored pixels."""
    loss = loss.masked_fill(~b.valid, 0.0)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    # clamp: an all-ignored batch gives 0 / 1 = 0, still attached to the graph.
    return loss.sum() / b.valid.sum().clamp_min(1)


def reduce_classes(per_class: torch.Tensor, reduction: str) -> torch.Tensor:
    """Per-class ``[K]`` -> as asked: itself, its sum, or its mean over classes."""
    if reduction == "none":
        return per_class
    return per_class.sum() if reduction == "sum" else per_class.mean()


@torch.no_grad()
def class_counts(b: Batch) -> torch.Tensor:
    """Number of non-ignored pixels of each class in the batch: ``[num_classes]``."""
    labels = b.labels[b.valid]
    return torch.bincount(labels, minlength=b.num_classes).to(b.logits.dtype)


def positive(b: Batch) -> torch.Tensor:
    """1.0 where the true class is foreground (>= 1), else 0.0: ``[B, H, W]``."""
    return (b.labels != 0).to(b.logits.dtype)
