"""Distribution-based losses: a loss per pixel, averaged (Jadon 2020, Sec. III-A).

``binary_cross_entropy`` (and its categorical form ``cross_entropy``), ``weighted_cross_entropy``,
``balanced_cross_entropy``, ``focal_loss``. Each takes logits and a target as described in
``segedu.losses`` (``[B, 1, H, W]`` or ``[B, C, H, W]`` logits, ``[B, H, W]`` labels, ``ignore_index``
skipped); ``reduction="none"`` gives the per-pixel map ``[B, H, W]`` (0 at ignored pixels),
``"sum"`` its sum, ``"mean"`` its mean over the non-ignored pixels.

Reference: Jadon, "A survey of loss functions for semantic segmentation", CIBCB 2020.
"""

from __future__ import annotations

import torch

from segedu import validate
from segedu.losses.common import class_counts, log_prob_of_target, positive, power, prepare, reduce_pixels

__all__ = [
    "binary_cross_entropy",
    "cross_entropy",
    "weighted_cross_entropy",
    "balanced_cross_entropy",
    "focal_loss",
]


def _check_channels(function: str, logits, mode) -> None:
    """The clear error when the channel count contradicts the name of the function called.

    ``binary_cross_entropy`` on ``[B, C, H, W]`` logits with C >= 2 could mean one sigmoid per
    channel (torch's multi-label ``binary_cross_entropy_with_logits``) or a softmax over C (the
    categorical ``cross_entropy``): we do not guess. ``cross_entropy`` on one channel is the
    mirror case.
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() != 4:
        return  # prepare's own checks answer
    if mode == "binary" and logits.shape[1] != 1:
        raise ValueError(
            f"{function} with mode='binary' expects one foreground logit per pixel [B, 1, H, W] or "
            f"[B, H, W], got shape {tuple(logits.shape)}; for C >= 2 class channels (softmax over C) "
            "use cross_entropy or mode='multiclass'"
        )
    if mode == "multiclass" and logits.shape[1] == 1:
        raise ValueError(
            f"{function} with mode='multiclass' expects logits [B, C, H, W] with C >= 2, got shape "
            f"{tuple(logits.shape)}; for one foreground logit per pixel use binary_cross_entropy or "
            "mode='binary'"
        )


def binary_cross_entropy(logits, target, mode="binary", ignore_index=255, reduction="mean"):
    r"""Binary cross-entropy, the pixel-wise default (the lecture's BCE).

    Formula (binary): BCE = -mean_i [ g_i log p_i + (1 - g_i) log(1 - p_i) ],
    p = sigmoid of the one foreground logit. ``mode="binary"`` is the default:
    logits ``[B, 1, H, W]`` or ``[B, H, W]``, target ``[B, H, W]`` of 0/1.
    ``mode="multiclass"`` gives the categorical form of ``cross_entropy``
    (with C = 2 it equals BCE on the logit difference); logits with C >= 2
    channels in binary mode raise a ``ValueError`` that names both.

    Reference: Jadon (2020), Sec. III-A; the lecture's BCE.

    Shapes: see the module text. ``reduction="none"`` -> ``[B, H, W]``.
    Equals ``F.binary_cross_entropy_with_logits`` (mean over non-ignored pixels).
    """
    _check_channels("binary_cross_entropy", logits, mode)
    b = prepare(logits, target, mode, ignore_index, reduction)
    return reduce_pixels(-log_prob_of_target(b), b, reduction)


def cross_entropy(logits, target, mode="multiclass", ignore_index=255, reduction="mean"):
    r"""Categorical cross-entropy, the multiclass form of ``binary_cross_entropy``.

    Formula: CE = -mean_i log p_{i, y_i}, p = softmax over the C channels of
    logits ``[B, C, H, W]`` (C >= 2), target int64 ``[B, H, W]``.
    ``mode="binary"`` gives ``binary_cross_entropy``; logits with one channel
    in multiclass mode raise a ``ValueError`` that names both.

    Reference: Jadon (2020), Sec. III-A.

    Shapes: see the module text. ``reduction="none"`` -> ``[B, H, W]``.
    Equals ``F.cross_entropy(logits, target, ignore_index=ignore_index)``.
    """
    _check_channels("cross_entropy", logits, mode)
    b = prepare(logits, target, mode, ignore_index, reduction)
    return reduce_pixels(-log_prob_of_target(b), b, reduction)


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
    b = prepare(logits, target, mode, ignore_index, reduction)
    if weights is None:
        with torch.no_grad():
            counts = class_counts(b)
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
    return reduce_pixels(-w[b.labels] * log_prob_of_target(b), b, reduction)


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
    if beta is not None:
        beta = validate.probability(beta, "beta")
    b = prepare(logits, target, mode, ignore_index, reduction)
    is_positive = positive(b)
    if beta is None:
        with torch.no_grad():
            beta = 1.0 - (is_positive * b.valid).sum() / b.valid.sum().clamp_min(1)
    weight = beta * is_positive + (1.0 - beta) * (1.0 - is_positive)
    return reduce_pixels(-weight * log_prob_of_target(b), b, reduction)


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
    if alpha is not None:
        alpha = validate.probability(alpha, "alpha")
    gamma = validate.number(gamma, "gamma", minimum=0.0)
    b = prepare(logits, target, mode, ignore_index, reduction)
    log_pt = log_prob_of_target(b)
    # 1 - p_t = -expm1(log p_t): exact even when p_t rounds to 1.
    loss = power(-torch.expm1(log_pt), gamma) * -log_pt
    if alpha is not None:
        is_positive = positive(b)
        loss = (alpha * is_positive + (1.0 - alpha) * (1.0 - is_positive)) * loss
    return reduce_pixels(loss, b, reduction)
