"""The lecture's table of losses: ``LOSSES`` maps each name to ``LossInfo(function, family, formula)``.

Thirteen losses in the four families of Jadon, "A survey of loss functions for semantic
segmentation" (CIBCB 2020): distribution-based, region-based, boundary-based, compounded. Lesson 10
renders the table, draws each loss's curves (``segedu.loss_probe``) and offers every name in its
explorer. Each function takes ``(logits, target, mode, ignore_index, reduction, **params)`` with
the shapes of ``segedu.losses``. ``cross_entropy`` is not a row of its own: it is the categorical
form of the ``binary_cross_entropy`` row (that row's function with ``mode="multiclass"``).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch

from segedu.losses.boundary import hausdorff_dt_loss, shape_aware_loss
from segedu.losses.compound import combo_loss, exp_log_loss
from segedu.losses.distribution import (
    balanced_cross_entropy,
    binary_cross_entropy,
    focal_loss,
    weighted_cross_entropy,
)
from segedu.losses.region import (
    dice_loss,
    focal_tversky_loss,
    log_cosh_dice_loss,
    sensitivity_specificity_loss,
    tversky_loss,
)

__all__ = ["LossInfo", "LOSSES"]


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
