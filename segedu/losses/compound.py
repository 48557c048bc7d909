"""Compounded losses: a distribution term plus a region term (Jadon 2020, Sec. III-D).

``combo_loss`` (balanced cross-entropy + Dice) and ``exp_log_loss`` (exponential logarithmic).
Each takes logits and a target as described in ``segedu.losses``; both use the lecture's
squared-denominator Dice (``segedu.losses.region.dice_score``). ``reduction="none"`` gives the two
weighted terms ``[2]`` (distribution term, Dice term); ``"mean"`` and ``"sum"`` both return their
sum, the loss (each term is already reduced).

Reference: Jadon, "A survey of loss functions for semantic segmentation", CIBCB 2020.
"""

from __future__ import annotations

import torch

from segedu import validate
from segedu.losses.common import (
    REDUCTIONS,
    class_counts,
    log_prob_of_target,
    power,
    prepare,
    reduce_pixels,
)
from segedu.losses.distribution import balanced_cross_entropy
from segedu.losses.region import dice_loss, dice_score

__all__ = ["combo_loss", "exp_log_loss"]


def _compound(terms: torch.Tensor, reduction: str) -> torch.Tensor:
    """The two weighted terms ``[2]`` -> themselves (``"none"``) or their sum, the loss."""
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
    alpha = validate.probability(alpha, "alpha")
    beta = validate.probability(beta, "beta")
    smooth = validate.number(smooth, "smooth", minimum=0.0)
    validate.choice(reduction, "reduction", REDUCTIONS)
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
    w_dice = validate.number(w_dice, "w_dice", minimum=0.0)
    w_cross = validate.number(w_cross, "w_cross", minimum=0.0)
    gamma = validate.number(gamma, "gamma", minimum=0.0)
    smooth = validate.number(smooth, "smooth", minimum=0.0)
    b = prepare(logits, target, mode, ignore_index, reduction)
    dice = dice_score(b, smooth)
    # clamp: D_c = 0 (possible with smooth=0) would give -ln 0 = inf.
    l_dice = power(-torch.log(dice.clamp_min(torch.finfo(dice.dtype).tiny)), gamma).mean()
    with torch.no_grad():
        counts = class_counts(b)
        label_weight = (counts.sum() / counts.clamp_min(1)).sqrt()
    pixel = label_weight[b.labels] * power(-log_prob_of_target(b), gamma)
    l_cross = reduce_pixels(pixel, b, "mean")
    return _compound(torch.stack([w_cross * l_cross, w_dice * l_dice]), reduction)
