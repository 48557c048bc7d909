"""The segmentation losses of lesson 10, as functions and ``nn.Module`` s.

The table follows Jadon, "A survey of loss functions for semantic
segmentation" (CIBCB 2020), in its four families:

* distribution-based (a loss per pixel, averaged): ``binary_cross_entropy``,
  ``weighted_cross_entropy``, ``balanced_cross_entropy``, ``focal_loss``;
* region-based (soft overlap counts per class): ``dice_loss``,
  ``sensitivity_specificity_loss``, ``tversky_loss``, ``focal_tversky_loss``,
  ``log_cosh_dice_loss``;
* boundary-based (errors weighted by distances): ``hausdorff_dt_loss``,
  ``shape_aware_loss``;
* compounded (a distribution term plus a region term): ``combo_loss``,
  ``exp_log_loss``.

``LOSSES`` maps each name to ``(function, family, formula)``.

Every loss has the signature::

    loss(logits, target, mode="multiclass", ignore_index=255, reduction="mean", **params)

Shapes:

* ``mode="binary"``: logits ``[B, 1, H, W]`` or ``[B, H, W]`` (one
  foreground logit per pixel, p = sigmoid); target ``[B, H, W]`` or
  ``[B, 1, H, W]`` holding 0, 1 and ``ignore_index``.
* ``mode="multiclass"``: logits ``[B, C, H, W]`` with C >= 2 (p = softmax over
  C); target integer ``[B, H, W]`` in ``0..C-1`` or ``ignore_index``. Class 0
  is the background, as in PASCAL VOC: the losses with a positive/negative
  weight (balanced CE, focal's alpha, Combo's beta) treat classes >= 1 as
  positive.

Pixels whose target is ``ignore_index`` contribute nothing: neither to the
value nor to any gradient. A batch whose pixels are all ignored gives 0 (a
tensor still attached to the graph, so ``backward()`` works).

Notation in the formulas: p = predicted probability, g = one-hot target,
sums run over every non-ignored pixel of the whole batch, per class c.
Soft counts: TP_c = sum p g, FP_c = sum p (1 - g), FN_c = sum (1 - p) g.

``reduction`` by family:

* distribution- and boundary-based: ``"none"`` is the per-pixel map
  ``[B, H, W]`` (0 at ignored pixels), ``"sum"`` its sum, ``"mean"`` its mean
  over the non-ignored pixels;
* region-based: ``"none"`` is the per-class loss ``[K]`` (K = C classes in
  multiclass mode, K = 1 in binary mode, where the foreground is the only
  class), ``"sum"`` / ``"mean"`` the sum / mean over classes (as
  segmentation-models-pytorch does, statistics summed over the batch first);
* compounded: ``"none"`` is the two weighted terms ``[2]`` (distribution term,
  Dice term); ``"mean"`` and ``"sum"`` both return their sum, the loss (each
  term is already reduced).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from numbers import Real
from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segedu.ops.distance import edt

__all__ = [
    "LOSSES",
    "LossInfo",
    "binary_cross_entropy",
    "weighted_cross_entropy",
    "balanced_cross_entropy",
    "focal_loss",
    "dice_loss",
    "sensitivity_specificity_loss",
    "tversky_loss",
    "focal_tversky_loss",
    "log_cosh_dice_loss",
    "hausdorff_dt_loss",
    "shape_aware_loss",
    "combo_loss",
    "exp_log_loss",
    "BinaryCrossEntropyLoss",
    "WeightedCrossEntropyLoss",
    "BalancedCrossEntropyLoss",
    "FocalLoss",
    "DiceLoss",
    "SensitivitySpecificityLoss",
    "TverskyLoss",
    "FocalTverskyLoss",
    "LogCoshDiceLoss",
    "HausdorffDTLoss",
    "ShapeAwareLoss",
    "ComboLoss",
    "ExpLogLoss",
]

MODES = ("binary", "multiclass")
REDUCTIONS = ("mean", "sum", "none")


# --------------------------------------------------------------------------
# Inputs: check once, then every loss works on the same tidy tensors.
# --------------------------------------------------------------------------


@dataclass
class _Batch:
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


def _check_choice(name: str, value, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def _check_number(name: str, value, low=None, high=None, *, allow_none=False) -> None:
    """A real-valued parameter inside [low, high] (either bound optional)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{name} must lie in [{lo}, {hi}], got {value}")


def _prepare(logits, target, mode: str, ignore_index, reduction: str) -> _Batch:
    _check_choice("mode", mode, MODES)
    _check_choice("reduction", reduction, REDUCTIONS)
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor, got dtype {logits.dtype}")
    if ignore_index is not None and (
        isinstance(ignore_index, bool) or not isinstance(ignore_index, int)
    ):
        raise TypeError(f"ignore_index must be an int or None, got {ignore_index!r}")

    if mode == "binary":
        if logits.dim() == 3:
            logits = logits.unsqueeze(1)
        if logits.dim() != 4 or logits.shape[1] != 1:
            raise ValueError(
                "mode='binary' expects logits [B, 1, H, W] or [B, H, W], "
                f"got shape {tuple(logits.shape)}"
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
    return _Batch(mode, logits, labels, valid, num_classes)


# --------------------------------------------------------------------------
# Shared pieces.
# --------------------------------------------------------------------------


def _log_prob_of_target(b: _Batch) -> torch.Tensor:
    """log p_t, the log-probability of each pixel's true class: ``[B, H, W]``.

    Binary: log sigmoid(s z) with s = +1 for foreground, -1 for background,
    the numerically stable form of log p and log(1 - p). Multiclass:
    log_softmax picked at the true class.
    """
    if b.mode == "binary":
        sign = 2.0 * b.labels.to(b.logits.dtype) - 1.0
        return F.logsigmoid(sign * b.logits[:, 0])
    return F.log_softmax(b.logits, dim=1).gather(1, b.labels[:, None]).squeeze(1)


def _probabilities(b: _Batch) -> torch.Tensor:
    """p ``[B, K, H, W]``: sigmoid (K = 1) or softmax over C channels."""
    return torch.sigmoid(b.logits) if b.mode == "binary" else torch.softmax(b.logits, dim=1)


def _one_hot(b: _Batch) -> torch.Tensor:
    """g ``[B, K, H, W]`` in the logits' dtype: the foreground indicator in
    binary mode, the one-hot target in multiclass mode."""
    if b.mode == "binary":
        return (b.labels == 1).to(b.logits.dtype)[:, None]
    return F.one_hot(b.labels, b.num_classes).permute(0, 3, 1, 2).to(b.logits.dtype)


def _masked_p_and_g(b: _Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """p and g ``[B, K, H, W]``, both zero at ignored pixels (so they vanish
    from every sum, and no gradient reaches an ignored logit)."""
    keep = b.valid[:, None].to(b.logits.dtype)
    return _probabilities(b) * keep, _one_hot(b) * keep


def _soft_counts(p: torch.Tensor, g: torch.Tensor):
    """Soft TP, FP, FN per class, summed over batch and pixels: each ``[K]``."""
    dims = (0, 2, 3)
    tp = (p * g).sum(dims)
    fp = (p * (1 - g)).sum(dims)
    fn = ((1 - p) * g).sum(dims)
    return tp, fp, fn


def _ratio(num: torch.Tensor, den: torch.Tensor, if_empty: float) -> torch.Tensor:
    """num / den, and ``if_empty`` where den == 0.

    With ``smooth=0`` an empty class (nothing predicted, nothing present)
    gives 0/0; we score it as ``if_empty`` (perfect). The inner ``where``
    keeps the unused branch finite, so its gradient is 0, not NaN.
    """
    nonzero = den != 0
    safe = torch.where(nonzero, den, torch.ones_like(den))
    return torch.where(nonzero, num / safe, torch.full_like(num, if_empty))


def _power(x: torch.Tensor, gamma: float) -> torch.Tensor:
    """x ** gamma for x >= 0, with a finite gradient at x = 0.

    d/dx x^gamma = gamma x^(gamma - 1) is infinite at 0 for gamma < 1 (focal
    Tversky's 0.75, exp-log's 0.3); a perfect pixel or class would then give
    0 * inf = NaN. Clamping at the smallest normal float changes the value
    by at most tiny^gamma (about 1e-11 in float32) and zeroes the gradient
    exactly at 0.
    """
    return x.clamp_min(torch.finfo(x.dtype).tiny) ** gamma


def _reduce_pixels(loss: torch.Tensor, b: _Batch, reduction: str) -> torch.Tensor:
    """Per-pixel ``[B, H, W]`` -> as asked; the mean is over non-ignored pixels."""
    loss = loss.masked_fill(~b.valid, 0.0)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    # clamp: an all-ignored batch gives 0 / 1 = 0, still attached to the graph.
    return loss.sum() / b.valid.sum().clamp_min(1)


def _reduce_classes(per_class: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return per_class
    return per_class.sum() if reduction == "sum" else per_class.mean()


@torch.no_grad()
def _class_counts(b: _Batch) -> torch.Tensor:
    """Number of non-ignored pixels of each class in the batch: ``[num_classes]``."""
    labels = b.labels[b.valid]
    return torch.bincount(labels, minlength=b.num_classes).to(b.logits.dtype)


def _positive(b: _Batch) -> torch.Tensor:
    """1.0 where the true class is foreground (>= 1), else 0.0: ``[B, H, W]``."""
    return (b.labels != 0).to(b.logits.dtype)


# --------------------------------------------------------------------------
# Distribution-based losses.
# --------------------------------------------------------------------------


def binary_cross_entropy(logits, target, mode="multiclass", ignore_index=255, reduction="mean"):
    r"""Cross-entropy, the pixel-wise default.

    Formula (binary): BCE = -mean_i [ g_i log p_i + (1 - g_i) log(1 - p_i) ].
    Multiclass: the categorical form CE = -mean_i log p_{i, y_i} (softmax);
    with C = 2 it equals BCE on the logit difference.

    Reference: Jadon (2020), Sec. III-A; the lecture's BCE.

    Shapes: see the module text. ``reduction="none"`` -> ``[B, H, W]``.
    Equals ``F.binary_cross_entropy_with_logits`` / ``F.cross_entropy``
    (mean over non-ignored pixels).
    """
    b = _prepare(logits, target, mode, ignore_index, reduction)
    return _reduce_pixels(-_log_prob_of_target(b), b, reduction)


def weighted_cross_entropy(
    logits, target, mode="multiclass", ignore_index=255, reduction="mean", weights=None
):
    r"""Cross-entropy with a weight per class.

    Formula: WCE = (1/N) sum_i w_{y_i} (-log p_{i, y_i}), N = non-ignored pixels.
    ``weights``: a sequence or tensor of one weight per class (binary mode:
    ``[w_background, w_foreground]``); None: the inverse class frequency of
    the batch, w_c = N / (C N_c), so every present class carries the same
    total weight.

    Note: the mean divides by N, so ``reduction="mean"`` is the mean of the
    ``"none"`` map. ``F.cross_entropy(weight=w)`` divides by sum_i w_{y_i}
    instead (the two agree for the default inverse-frequency weights when
    every class is present in the batch).

    Reference: Jadon (2020), Sec. III-A (weighted binary cross-entropy);
    Ronneberger et al. (2015) use a weight map of the same kind in U-Net.

    Shapes: see the module text. ``reduction="none"`` -> ``[B, H, W]``.
    """
    b = _prepare(logits, target, mode, ignore_index, reduction)
    if weights is None:
        with torch.no_grad():
            counts = _class_counts(b)
            w = counts.sum() / (b.num_classes * counts.clamp_min(1))
    else:
        w = torch.as_tensor(weights, dtype=b.logits.dtype, device=b.logits.device)
        if w.shape != (b.num_classes,):
            raise ValueError(
                f"weights must hold one value per class ({b.num_classes} in mode={mode!r}), "
                f"got shape {tuple(w.shape)}"
            )
        if not (torch.isfinite(w).all() and (w >= 0).all()):
            raise ValueError(f"weights must be finite and >= 0, got {w.tolist()}")
    return _reduce_pixels(-w[b.labels] * _log_prob_of_target(b), b, reduction)


def balanced_cross_entropy(
    logits, target, mode="multiclass", ignore_index=255, reduction="mean", beta=None
):
    r"""Cross-entropy that weighs positive pixels by beta, negatives by 1 - beta.

    Formula: BalCE = -mean_i [ beta g_i log p_i + (1 - beta)(1 - g_i) log(1 - p_i) ]
    (multiclass: -mean_i w_i log p_{i, y_i} with w_i = beta for y_i >= 1 and
    1 - beta for the background class 0).
    ``beta``: in [0, 1]; None: the fraction of negative (background) pixels
    in the batch, so the rare positives get the large weight.

    Reference: Jadon (2020), Sec. III-A; Xie & Tu, "Holistically-nested edge
    detection" (2015), where beta is the fraction of negatives.

    Shapes: see the module text. ``reduction="none"`` -> ``[B, H, W]``.
    """
    _check_number("beta", beta, 0.0, 1.0, allow_none=True)
    b = _prepare(logits, target, mode, ignore_index, reduction)
    positive = _positive(b)
    if beta is None:
        with torch.no_grad():
            beta = 1.0 - (positive * b.valid).sum() / b.valid.sum().clamp_min(1)
    weight = beta * positive + (1.0 - beta) * (1.0 - positive)
    return _reduce_pixels(-weight * _log_prob_of_target(b), b, reduction)


def focal_loss(
    logits, target, mode="multiclass", ignore_index=255, reduction="mean", alpha=0.25, gamma=2.0
):
    r"""Focal loss: cross-entropy scaled down on pixels that are already right.

    Formula: FL = -mean_i alpha_t (1 - p_t)^gamma log p_t, with p_t the
    probability of the true class and alpha_t = alpha for positive pixels
    (foreground; multiclass: classes >= 1), 1 - alpha for background.
    ``alpha=None`` drops the weighting; ``gamma=0`` gives (weighted) CE.

    Binary mode equals ``torchvision.ops.sigmoid_focal_loss``; multiclass
    mode is the softmax focal loss (two channels [0, z] give the binary loss
    of z).

    Reference: Lin, Goyal, Girshick, He, Dollar, "Focal loss for dense
    object detection", ICCV 2017; Jadon (2020), Sec. III-A.

    Shapes: see the module text. ``reduction="none"`` -> ``[B, H, W]``.
    """
    _check_number("alpha", alpha, 0.0, 1.0, allow_none=True)
    _check_number("gamma", gamma, 0.0)
    b = _prepare(logits, target, mode, ignore_index, reduction)
    log_pt = _log_prob_of_target(b)
    # 1 - p_t = -expm1(log p_t): exact even when p_t rounds to 1.
    loss = _power(-torch.expm1(log_pt), gamma) * -log_pt
    if alpha is not None:
        positive = _positive(b)
        loss = (alpha * positive + (1.0 - alpha) * (1.0 - positive)) * loss
    return _reduce_pixels(loss, b, reduction)


# --------------------------------------------------------------------------
# Region-based losses.
# --------------------------------------------------------------------------


def _dice_score(b: _Batch, smooth: float) -> torch.Tensor:
    """Squared-denominator soft Dice per class ``[K]`` (see ``dice_loss``)."""
    p, g = _masked_p_and_g(b)
    dims = (0, 2, 3)
    num = 2.0 * (p * g).sum(dims) + smooth
    den = (p * p).sum(dims) + (g * g).sum(dims) + smooth
    return _ratio(num, den, if_empty=1.0)


def _tversky_index(b: _Batch, alpha: float, beta: float, smooth: float) -> torch.Tensor:
    """Tversky index per class ``[K]`` (see ``tversky_loss``)."""
    tp, fp, fn = _soft_counts(*_masked_p_and_g(b))
    return _ratio(tp + smooth, tp + alpha * fp + beta * fn + smooth, if_empty=1.0)


def dice_loss(logits, target, mode="multiclass", ignore_index=255, reduction="mean", smooth=1.0):
    r"""Dice loss in the lecture's squared-denominator form.

    Formula, per class c:
        D_c = (2 sum p g + smooth) / (sum p^2 + sum g^2 + smooth),  loss = mean_c (1 - D_c).
    ``smooth=0`` is the bare formula; an empty class (0/0) then counts as
    perfect (D_c = 1), but a sigmoid or softmax is never exactly 0, so a
    nearly-empty prediction of an empty class scores D_c = 0. The default
    ``smooth=1`` makes it score about 1, and is negligible next to the
    pixel counts of a present class. With binary predictions (p in {0, 1})
    p^2 = p and this is the usual F1/Dice overlap.

    Reference: Milletari, Navab, Ahmadi, "V-Net", 3DV 2016 (eq. 1, squared
    denominators); Jadon (2020), Sec. III-B.

    Shapes: see the module text. ``reduction="none"`` -> per class ``[K]``.
    """
    _check_number("smooth", smooth, 0.0)
    b = _prepare(logits, target, mode, ignore_index, reduction)
    return _reduce_classes(1.0 - _dice_score(b, smooth), reduction)


def sensitivity_specificity_loss(
    logits, target, mode="multiclass", ignore_index=255, reduction="mean", r=0.1, smooth=1.0
):
    r"""Sensitivity-specificity loss: squared errors on positives and on negatives.

    Formula, per class c:
        SS_c = r sum (g - p)^2 g / (sum g + smooth)
             + (1 - r) sum (g - p)^2 (1 - g) / (sum (1 - g) + smooth),   loss = mean_c SS_c.
    The first term is 1 - soft sensitivity, the second 1 - soft specificity;
    written as ratios (sum g (1 - (1 - p)^2) + smooth) / (sum g + smooth) the
    smooth term sits in numerator and denominator. ``r`` weighs the
    sensitivity (foreground) term, as in the paper; ``smooth=0`` is the bare
    formula, with an empty term (0/0) counted as perfect (0).

    Reference: Brosch, Yoo, Tang, Li, Traboulsee, Tam, "Deep convolutional
    encoder networks for multiple sclerosis lesion segmentation", MICCAI 2015;
    Jadon (2020), Sec. III-B.

    Shapes: see the module text. ``reduction="none"`` -> per class ``[K]``.
    """
    _check_number("r", r, 0.0, 1.0)
    _check_number("smooth", smooth, 0.0)
    b = _prepare(logits, target, mode, ignore_index, reduction)
    p, g = _masked_p_and_g(b)
    keep = b.valid[:, None].to(p.dtype)
    negative = (1.0 - g) * keep  # background of class c, ignored pixels excluded
    squared_error = (g - p) ** 2
    dims = (0, 2, 3)
    sensitivity_error = _ratio((squared_error * g).sum(dims), g.sum(dims) + smooth, 0.0)
    specificity_error = _ratio(
        (squared_error * negative).sum(dims), negative.sum(dims) + smooth, 0.0
    )
    return _reduce_classes(r * sensitivity_error + (1.0 - r) * specificity_error, reduction)


def tversky_loss(
    logits, target, mode="multiclass", ignore_index=255, reduction="mean",
    alpha=0.3, beta=0.7, smooth=1.0,
):
    r"""Tversky loss: Dice with separate weights on false positives and negatives.

    Formula, per class c:
        TI_c = (TP + smooth) / (TP + alpha FP + beta FN + smooth),  loss = mean_c (1 - TI_c).
    alpha weighs false positives, beta false negatives; beta > alpha favours
    recall (small objects). alpha = beta = 0.5 is the (linear) soft Dice,
    alpha = beta = 1 the soft Jaccard. ``smooth=0``: bare formula, 0/0 -> TI = 1.

    Reference: Salehi, Erdogmus, Gholipour, "Tversky loss function for image
    segmentation using 3D fully convolutional deep networks", MLMI 2017;
    Jadon (2020), Sec. III-B. Equals segmentation-models-pytorch's
    ``TverskyLoss(alpha, beta, smooth)`` when every class is present.

    Shapes: see the module text. ``reduction="none"`` -> per class ``[K]``.
    """
    _check_number("alpha", alpha, 0.0)
    _check_number("beta", beta, 0.0)
    _check_number("smooth", smooth, 0.0)
    b = _prepare(logits, target, mode, ignore_index, reduction)
    return _reduce_classes(1.0 - _tversky_index(b, alpha, beta, smooth), reduction)


def focal_tversky_loss(
    logits, target, mode="multiclass", ignore_index=255, reduction="mean",
    alpha=0.3, beta=0.7, gamma=0.75, smooth=1.0,
):
    r"""Focal Tversky loss: the Tversky loss raised to a power per class.

    Formula: loss = mean_c (1 - TI_c)^gamma, TI_c as in ``tversky_loss``.
    gamma < 1 (the paper's 1/gamma = 0.75) raises the loss and its gradient
    for classes that are already nearly right, i.e. keeps pushing on the
    hard, small structures late in training.

    Reference: Abraham & Khan, "A novel focal Tversky loss function with
    improved attention U-Net for lesion segmentation", ISBI 2019; Jadon
    (2020), Sec. III-B. Binary mode equals segmentation-models-pytorch's
    ``TverskyLoss(alpha, beta, smooth, gamma=gamma)``.

    Shapes: see the module text. ``reduction="none"`` -> per class ``[K]``.
    """
    _check_number("alpha", alpha, 0.0)
    _check_number("beta", beta, 0.0)
    _check_number("gamma", gamma, 0.0)
    _check_number("smooth", smooth, 0.0)
    b = _prepare(logits, target, mode, ignore_index, reduction)
    per_class = _power(1.0 - _tversky_index(b, alpha, beta, smooth), gamma)
    return _reduce_classes(per_class, reduction)


def log_cosh_dice_loss(
    logits, target, mode="multiclass", ignore_index=255, reduction="mean", smooth=1.0
):
    r"""Log-cosh Dice loss: a smoothed Dice loss.

    Formula: loss = mean_c log(cosh(1 - D_c)), D_c as in ``dice_loss``.
    log cosh x is about x^2 / 2 near 0 and |x| - log 2 far away, so the loss is
    smooth and bounded in slope (tanh).

    Reference: Jadon (2020), Sec. III-B (introduced there).

    Shapes: see the module text. ``reduction="none"`` -> per class ``[K]``.
    """
    _check_number("smooth", smooth, 0.0)
    b = _prepare(logits, target, mode, ignore_index, reduction)
    # 1 - D lies in [0, 1]: cosh cannot overflow, the direct form is exact.
    return _reduce_classes(torch.log(torch.cosh(1.0 - _dice_score(b, smooth))), reduction)


# --------------------------------------------------------------------------
# Boundary-based losses.
# --------------------------------------------------------------------------


@torch.no_grad()
def _hard_masks(b: _Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Thresholded prediction and target as bool ``[B, K, H, W]`` masks.

    Prediction: z > 0 (binary) or argmax == c. Ignored pixels are False in
    both, so the distance maps built from them do not depend on the logits
    of ignored pixels.
    """
    if b.mode == "binary":
        pred = b.logits > 0
        true = b.labels[:, None] == 1
    else:
        classes = torch.arange(b.num_classes, device=b.logits.device)[None, :, None, None]
        pred = b.logits.argmax(dim=1, keepdim=True) == classes
        true = b.labels[:, None] == classes
    keep = b.valid[:, None]
    return pred & keep, true & keep


def _edt_dtype(dtype: torch.dtype) -> torch.dtype:
    """Distances in double for double logits, else float32 (also under AMP)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


@torch.no_grad()
def _distance_to_boundary(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Unsigned distance to the other side of the boundary, ``[..., H, W]``.

    For a pixel inside the mask: distance to the nearest pixel outside; for
    a pixel outside: distance to the nearest pixel inside. An image with no
    boundary (empty or full) gets 0 everywhere, as in MONAI's
    HausdorffDTLoss: there is nothing to measure a distance to.
    """
    flat = mask.reshape(-1, *mask.shape[-2:])
    distance = edt(flat, _edt_dtype(dtype)) + edt(~flat, _edt_dtype(dtype))
    # (one of the two terms is 0 at every pixel)
    return torch.nan_to_num(distance, posinf=0.0).reshape(mask.shape).to(dtype)


@torch.no_grad()
def _contour(mask: torch.Tensor) -> torch.Tensor:
    """Inner contour of bool ``[B, K, H, W]`` masks: mask pixels with a pixel
    outside the mask among their 8 neighbours (a 3x3 morphological erosion;
    max_pool2d pads with -inf, so the image border is not a contour)."""
    m = mask.float()
    eroded = -F.max_pool2d(-m, kernel_size=3, stride=1, padding=1)
    return mask & (eroded < 0.5)


def hausdorff_dt_loss(
    logits, target, mode="multiclass", ignore_index=255, reduction="mean", alpha=2.0
):
    r"""Hausdorff-distance loss, distance-transform form.

    Formula, per pixel i and class c:
        HD_i = mean_c (p_ic - g_ic)^2 (d_p(i)^alpha + d_g(i)^alpha),  loss = mean_i HD_i,
    where d_g is the distance from pixel i to the boundary of the target
    mask of class c and d_p the same for the thresholded prediction (z > 0,
    or argmax). Errors far from either boundary cost more, which is what
    the Hausdorff distance measures. Distances are constants (no gradient);
    an image without a boundary in a mask has distance 0 there. Ignored
    pixels count as outside every mask when the distances are built.

    Binary mode uses the foreground class only; without ignored pixels, two
    multiclass channels [0, z] give the binary loss of z (the distance to
    the boundary is the same for a mask and its complement).

    Reference: Karimi & Salcudean, "Reducing the Hausdorff distance in
    medical image segmentation with convolutional neural networks", IEEE TMI
    2019 (eq. 8); Jadon (2020), Sec. III-C.

    Shapes: see the module text. ``reduction="none"`` -> ``[B, H, W]``.
    """
    _check_number("alpha", alpha, 0.0)
    b = _prepare(logits, target, mode, ignore_index, reduction)
    pred, true = _hard_masks(b)
    d_pred = _distance_to_boundary(pred, b.logits.dtype)
    d_true = _distance_to_boundary(true, b.logits.dtype)
    weight = d_pred**alpha + d_true**alpha
    p, g = _probabilities(b), _one_hot(b)
    return _reduce_pixels(((p - g) ** 2 * weight).mean(dim=1), b, reduction)


def shape_aware_loss(logits, target, mode="multiclass", ignore_index=255, reduction="mean"):
    r"""Shape-aware loss: cross-entropy weighted by contour distance.

    Formula: loss = mean_i (1 + E_i) CE_i, with CE_i the pixel's
    cross-entropy (as ``binary_cross_entropy``) and E_i the Euclidean
    distance from pixel i to the target contour of its predicted class when
    i lies on the contour of the predicted region (E_i = 0 elsewhere).
    Jadon writes it -sum CE - sum E_i CE with CE = y log p; here both terms
    are positive. A predicted outline that strays far from the true outline
    is penalized in proportion to how far it strays.

    Contours are the inner contours (8-neighbour erosion) of the thresholded
    prediction and of the target, class by class (binary mode: background
    and foreground, which makes it equal to two multiclass channels [0, z]).
    A class with no target contour gives E = 0 (nothing to measure against).
    Ignored pixels belong to no class when contours are drawn.

    Reference: Jadon (2020), Sec. III-C; after Hayder, He, Salzmann,
    "Boundary-aware instance segmentation" (shape-aware), CVPR 2017.

    Shapes: see the module text. ``reduction="none"`` -> ``[B, H, W]``.
    """
    b = _prepare(logits, target, mode, ignore_index, reduction)
    with torch.no_grad():
        if b.mode == "binary":
            classes = torch.arange(2, device=b.logits.device)[None, :, None, None]
            keep = b.valid[:, None]
            pred = ((b.logits > 0).long() == classes) & keep
            true = (b.labels[:, None] == classes) & keep
        else:
            pred, true = _hard_masks(b)
        true_contour = _contour(true)  # [B, C, H, W]
        distance = edt(true_contour.flatten(0, 1), _edt_dtype(b.logits.dtype))
        distance = distance.reshape(true_contour.shape)
        distance = torch.nan_to_num(distance, posinf=0.0)  # class with no contour
        # Each pixel has one predicted class, so at most one term is non-zero.
        e = (distance * _contour(pred)).sum(dim=1).to(b.logits.dtype)  # [B, H, W]
    return _reduce_pixels((1.0 + e) * -_log_prob_of_target(b), b, reduction)


# --------------------------------------------------------------------------
# Compounded losses.
# --------------------------------------------------------------------------


def _compound(terms: torch.Tensor, reduction: str) -> torch.Tensor:
    return terms if reduction == "none" else terms.sum()


def combo_loss(
    logits, target, mode="multiclass", ignore_index=255, reduction="mean",
    alpha=0.5, beta=0.5, smooth=1.0,
):
    r"""Combo loss: a balanced cross-entropy plus a Dice loss.

    Formula: loss = alpha BalCE_beta + (1 - alpha)(1 - mean_c D_c), with
    BalCE_beta = -mean_i [beta g log p + (1 - beta)(1 - g) log(1 - p)] as in
    ``balanced_cross_entropy(beta=beta)`` and D_c the Dice of ``dice_loss``.
    The paper writes ``- (1 - alpha) Dice``; adding the constant (1 - alpha)
    changes no gradient and makes a perfect prediction score 0. It also uses
    the linear Dice denominator (sum p + sum g); here the course's squared
    form, so the lesson compares one Dice throughout.

    Reference: Taghanaki, Zheng, Zhou, Georgescu, Sharma, Xu, Comaniciu,
    Hamarneh, "Combo loss: handling input and output imbalance in
    multi-organ segmentation", CMIG 2019; Jadon (2020), Sec. III-D.

    Shapes: see the module text. ``reduction="none"`` -> ``[2]``: the
    weighted CE and Dice terms.
    """
    _check_number("alpha", alpha, 0.0, 1.0)
    _check_number("beta", beta, 0.0, 1.0)
    _check_number("smooth", smooth, 0.0)
    _check_choice("reduction", reduction, REDUCTIONS)
    ce = balanced_cross_entropy(logits, target, mode, ignore_index, "mean", beta=beta)
    dice = dice_loss(logits, target, mode, ignore_index, "mean", smooth=smooth)
    return _compound(torch.stack([alpha * ce, (1.0 - alpha) * dice]), reduction)


def exp_log_loss(
    logits, target, mode="multiclass", ignore_index=255, reduction="mean",
    w_dice=0.8, w_cross=0.2, gamma=0.3, smooth=1.0,
):
    r"""Exponential logarithmic loss: powers of -log Dice and of -log p.

    Formula:
        L_dice  = mean_c (-ln D_c)^gamma                 (D_c as in ``dice_loss``)
        L_cross = mean_i w_{y_i} (-ln p_{i, y_i})^gamma,  w_l = (sum_k f_k / f_l)^0.5
        loss    = w_dice L_dice + w_cross L_cross
    f_k counts the non-ignored pixels of class k in the batch (binary mode:
    background and foreground), so rare classes weigh more. gamma < 1 keeps
    the gradient large for nearly-right predictions, like focal Tversky.
    The paper's Dice has a linear denominator; here the course's squared one.

    Reference: Wong, Moradi, Tang, Syeda-Mahmood, "3D segmentation with
    exponential logarithmic loss for highly unbalanced object sizes",
    MICCAI 2018; Jadon (2020), Sec. III-D.

    Shapes: see the module text. ``reduction="none"`` -> ``[2]``: the
    weighted cross-entropy and Dice terms, in that order (as ``combo_loss``).
    """
    _check_number("w_dice", w_dice, 0.0)
    _check_number("w_cross", w_cross, 0.0)
    _check_number("gamma", gamma, 0.0)
    _check_number("smooth", smooth, 0.0)
    b = _prepare(logits, target, mode, ignore_index, reduction)
    dice = _dice_score(b, smooth)
    # clamp: D_c = 0 (possible with smooth=0) would give -ln 0 = inf.
    l_dice = _power(-torch.log(dice.clamp_min(torch.finfo(dice.dtype).tiny)), gamma).mean()
    with torch.no_grad():
        counts = _class_counts(b)
        label_weight = (counts.sum() / counts.clamp_min(1)).sqrt()
    pixel = label_weight[b.labels] * _power(-_log_prob_of_target(b), gamma)
    l_cross = _reduce_pixels(pixel, b, "mean")
    return _compound(torch.stack([w_cross * l_cross, w_dice * l_dice]), reduction)


# --------------------------------------------------------------------------
# The table the lesson renders.
# --------------------------------------------------------------------------


class LossInfo(NamedTuple):
    """One row of ``LOSSES``: the function, its family, its formula."""

    function: Callable[..., torch.Tensor]
    family: str
    formula: str


LOSSES: dict[str, LossInfo] = {
    "binary_cross_entropy": LossInfo(
        binary_cross_entropy, "distribution",
        "-mean[g log p + (1-g) log(1-p)]"),
    "weighted_cross_entropy": LossInfo(
        weighted_cross_entropy, "distribution",
        "-mean[w_y log p_y],  w_c = N / (C N_c) by default"),
    "balanced_cross_entropy": LossInfo(
        balanced_cross_entropy, "distribution",
        "-mean[beta g log p + (1-beta)(1-g) log(1-p)],  beta = fraction of negatives"),
    "focal_loss": LossInfo(
        focal_loss, "distribution",
        "-mean[alpha_t (1-p_t)^gamma log p_t]"),
    "dice_loss": LossInfo(
        dice_loss, "region",
        "1 - (2 sum pg + s) / (sum p^2 + sum g^2 + s)"),
    "sensitivity_specificity_loss": LossInfo(
        sensitivity_specificity_loss, "region",
        "r sum(g-p)^2 g / sum g + (1-r) sum(g-p)^2 (1-g) / sum(1-g)"),
    "tversky_loss": LossInfo(
        tversky_loss, "region",
        "1 - (TP + s) / (TP + alpha FP + beta FN + s)"),
    "focal_tversky_loss": LossInfo(
        focal_tversky_loss, "region",
        "(1 - TI)^gamma"),
    "log_cosh_dice_loss": LossInfo(
        log_cosh_dice_loss, "region",
        "log cosh(1 - Dice)"),
    "hausdorff_dt_loss": LossInfo(
        hausdorff_dt_loss, "boundary",
        "mean[(p-g)^2 (d_p^alpha + d_g^alpha)]"),
    "shape_aware_loss": LossInfo(
        shape_aware_loss, "boundary",
        "mean[(1 + E) CE],  E = distance of the predicted contour to the true contour"),
    "combo_loss": LossInfo(
        combo_loss, "compounded",
        "alpha BalCE_beta + (1-alpha)(1 - Dice)"),
    "exp_log_loss": LossInfo(
        exp_log_loss, "compounded",
        "w_dice mean(-ln Dice)^gamma + w_cross mean[w_y (-ln p_y)^gamma]"),
}


# --------------------------------------------------------------------------
# nn.Module wrappers, as in torch.nn: the function holds the maths.
# --------------------------------------------------------------------------

_CALL_ARGS = ("logits", "target", "mode", "ignore_index", "reduction")


class _SegmentationLoss(nn.Module):
    """Stores ``mode``, ``ignore_index``, ``reduction`` and the loss's own
    parameters; ``forward(logits, target)`` calls ``function`` with them."""

    function: Callable[..., torch.Tensor]

    def __init__(self, mode="multiclass", ignore_index=255, reduction="mean", **params):
        super().__init__()
        _check_choice("mode", mode, MODES)
        _check_choice("reduction", reduction, REDUCTIONS)
        allowed = [
            name for name in inspect.signature(type(self).function).parameters
            if name not in _CALL_ARGS
        ]
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unknown parameter(s) {unknown}; "
                f"it takes {allowed or 'no parameters'}"
            )
        self.mode = mode
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.params = params

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return type(self).function(
            logits, target, mode=self.mode, ignore_index=self.ignore_index,
            reduction=self.reduction, **self.params,
        )

    def extra_repr(self) -> str:
        settings = {"mode": self.mode, "ignore_index": self.ignore_index,
                    "reduction": self.reduction, **self.params}
        return ", ".join(f"{key}={value!r}" for key, value in settings.items())


class BinaryCrossEntropyLoss(_SegmentationLoss):
    """``nn.Module`` form of :func:`binary_cross_entropy`."""

    function = staticmethod(binary_cross_entropy)


class WeightedCrossEntropyLoss(_SegmentationLoss):
    """``nn.Module`` form of :func:`weighted_cross_entropy`."""

    function = staticmethod(weighted_cross_entropy)


class BalancedCrossEntropyLoss(_SegmentationLoss):
    """``nn.Module`` form of :func:`balanced_cross_entropy`."""

    function = staticmethod(balanced_cross_entropy)


class FocalLoss(_SegmentationLoss):
    """``nn.Module`` form of :func:`focal_loss`."""

    function = staticmethod(focal_loss)


class DiceLoss(_SegmentationLoss):
    """``nn.Module`` form of :func:`dice_loss`."""

    function = staticmethod(dice_loss)


class SensitivitySpecificityLoss(_SegmentationLoss):
    """``nn.Module`` form of :func:`sensitivity_specificity_loss`."""

    function = staticmethod(sensitivity_specificity_loss)


class TverskyLoss(_SegmentationLoss):
    """``nn.Module`` form of :func:`tversky_loss`."""

    function = staticmethod(tversky_loss)


class FocalTverskyLoss(_SegmentationLoss):
    """``nn.Module`` form of :func:`focal_tversky_loss`."""

    function = staticmethod(focal_tversky_loss)


class LogCoshDiceLoss(_SegmentationLoss):
    """``nn.Module`` form of :func:`log_cosh_dice_loss`."""

    function = staticmethod(log_cosh_dice_loss)


class HausdorffDTLoss(_SegmentationLoss):
    """``nn.Module`` form of :func:`hausdorff_dt_loss`."""

    function = staticmethod(hausdorff_dt_loss)


class ShapeAwareLoss(_SegmentationLoss):
    """``nn.Module`` form of :func:`shape_aware_loss`."""

    function = staticmethod(shape_aware_loss)


class ComboLoss(_SegmentationLoss):
    """``nn.Module`` form of :func:`combo_loss`."""

    function = staticmethod(combo_loss)


class ExpLogLoss(_SegmentationLoss):
    """``nn.Module`` form of :func:`exp_log_loss`."""

    function = staticmethod(exp_log_loss)
