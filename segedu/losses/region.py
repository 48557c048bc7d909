"""Region-based losses: soft overlap counts per class (Jadon 2020, Sec. III-B).

``dice_loss`` (the lecture's squared-denominator form), ``sensitivity_specificity_loss``,
``tversky_loss``, ``focal_tversky_loss``, ``log_cosh_dice_loss``. Each takes logits and a target as
described in ``segedu.losses``; p and g are ``[B, K, H, W]`` (K = 1 in binary mode, where the
foreground is the only class, K = C in multiclass mode), every sum runs over the batch and the
non-ignored pixels per class (as segmentation-models-pytorch does). ``reduction="none"`` gives the
per-class loss ``[K]``, ``"sum"`` / ``"mean"`` its sum / mean over classes.

``dice_score`` and ``tversky_index`` (per class ``[K]``) are public: the compounded losses reuse them.

Reference: Jadon, "A survey of loss functions for semantic segmentation", CIBCB 2020.
"""

from __future__ import annotations

import torch

from segedu import validate
from segedu.losses.common import Batch, masked_p_and_g, power, prepare, reduce_classes, soft_counts

__all__ = [
    "dice_score",
    "tversky_index",
    "dice_loss",
    "sensitivity_specificity_loss",
    "tversky_loss",
    "focal_tversky_loss",
    "log_cosh_dice_loss",
]


def _ratio(num: torch.Tensor, den: torch.Tensor, if_empty: float) -> torch.Tensor:
    """num / den, and ``if_empty`` where den == 0.

    With ``smooth=0`` an empty class (nothing predicted, nothing present)
    gives 0/0; we score it as ``if_empty`` (perfect). The inner ``where``
    keeps the unused branch finite, so its gradient is 0, not NaN.
    """
    nonzero = den != 0
    safe = torch.where(nonzero, den, torch.ones_like(den))
    return torch.where(nonzero, num / safe, torch.full_like(num, if_empty))


def dice_score(b: Batch, smooth: float) -> torch.Tensor:
    """Squared-denominator soft Dice per class ``[K]`` (see ``dice_loss``)."""
    p, g = masked_p_and_g(b)
    dims = (0, 2, 3)
    num = 2.0 * (p * g).sum(dims) + smooth
    den = (p * p).sum(dims) + (g * g).sum(dims) + smooth
    return _ratio(num, den, if_empty=1.0)


def tversky_index(b: Batch, alpha: float, beta: float, smooth: float) -> torch.Tensor:
    """Tversky index per class ``[K]`` (see ``tversky_loss``)."""
    tp, fp, fn = soft_counts(*masked_p_and_g(b))
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
    smooth = validate.number(smooth, "smooth", minimum=0.0)
    b = prepare(logits, target, mode, ignore_index, reduction)
    return reduce_classes(1.0 - dice_score(b, smooth), reduction)


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
    r = validate.probability(r, "r")
    smooth = validate.number(smooth, "smooth", minimum=0.0)
    b = prepare(logits, target, mode, ignore_index, reduction)
    p, g = masked_p_and_g(b)
    keep = b.valid[:, None].to(p.dtype)
    negative = (1.0 - g) * keep  # background of class c, ignored pixels excluded
    squared_error = (g - p) ** 2
    dims = (0, 2, 3)
    sensitivity_error = _ratio((squared_error * g).sum(dims), g.sum(dims) + smooth, 0.0)
    specificity_error = _ratio(
        (squared_error * negative).sum(dims), negative.sum(dims) + smooth, 0.0
    )
    return reduce_classes(r * sensitivity_error + (1.0 - r) * specificity_error, reduction)


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
    alpha = validate.number(alpha, "alpha", minimum=0.0)
    beta = validate.number(beta, "beta", minimum=0.0)
    smooth = validate.number(smooth, "smooth", minimum=0.0)
    b = prepare(logits, target, mode, ignore_index, reduction)
    return reduce_classes(1.0 - tversky_index(b, alpha, beta, smooth), reduction)


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
    alpha = validate.number(alpha, "alpha", minimum=0.0)
    beta = validate.number(beta, "beta", minimum=0.0)
    gamma = validate.number(gamma, "gamma", minimum=0.0)
    smooth = validate.number(smooth, "smooth", minimum=0.0)
    b = prepare(logits, target, mode, ignore_index, reduction)
    per_class = power(1.0 - tversky_index(b, alpha, beta, smooth), gamma)
    return reduce_classes(per_class, reduction)


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
    smooth = validate.number(smooth, "smooth", minimum=0.0)
    b = prepare(logits, target, mode, ignore_index, reduction)
    # 1 - D lies in [0, 1]: cosh cannot overflow, the direct form is exact.
    return reduce_classes(torch.log(torch.cosh(1.0 - dice_score(b, smooth))), reduction)
