"""``nn.Module`` forms of the losses, as in ``torch.nn``: the function holds the maths.

Each module stores ``mode``, ``ignore_index``, ``reduction`` and the loss's own parameters (checked
against the function's signature); ``forward(logits, target)`` calls the function with them, so
``DiceLoss(mode="binary", smooth=0.0)(logits, target) == dice_loss(logits, target, mode="binary",
smooth=0.0)``. Shapes as in ``segedu.losses``. The default ``mode`` is the function's:
``"binary"`` for ``BinaryCrossEntropyLoss``, ``"multiclass"`` for every other module.

Reference: Jadon, "A survey of loss functions for semantic segmentation", CIBCB 2020 (the losses);
``torch.nn.modules.loss`` (the function/module split).
"""

from __future__ import annotations

import inspect
from typing import Callable

import torch
from torch import nn

from segedu import validate
from segedu.losses import boundary, compound, distribution, region
from segedu.losses.common import MODES, REDUCTIONS

__all__ = [
    "BinaryCrossEntropyLoss",
    "CrossEntropyLoss",
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

_CALL_ARGS = ("logits", "target", "mode", "ignore_index", "reduction")


class _SegmentationLoss(nn.Module):
    """Stores ``mode``, ``ignore_index``, ``reduction`` and the loss's own
    parameters; ``forward(logits, target)`` calls ``function`` with them.

    ``mode=None`` takes the function's default mode."""

    function: Callable[..., torch.Tensor]

    def __init__(self, mode=None, ignore_index=255, reduction="mean", **params):
        super().__init__()
        signature = inspect.signature(type(self).function).parameters
        if mode is None:
            mode = signature["mode"].default
        validate.choice(mode, "mode", MODES)
        validate.choice(reduction, "reduction", REDUCTIONS)
        ignore_index = validate.ignore_index(ignore_index)
        allowed = [name for name in signature if name not in _CALL_ARGS]
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
    """``nn.Module`` form of :func:`binary_cross_entropy` (default ``mode="binary"``)."""

    function = staticmethod(distribution.binary_cross_entropy)


class CrossEntropyLoss(_SegmentationLoss):
    """``nn.Module`` form of :func:`cross_entropy` (default ``mode="multiclass"``)."""

    function = staticmethod(distribution.cross_entropy)


class WeightedCrossEntropyLoss(_SegmentationLoss):
    """``nn.Module`` form of :func:`weighted_cross_entropy`."""

    function = staticmethod(distribution.weighted_cross_entropy)


class BalancedCrossEntropyLoss(_SegmentationLoss):
    """``nn.Module`` form of :func:`balanced_cross_entropy`."""

    function = staticmethod(distribution.balanced_cross_entropy)


class FocalLoss(_SegmentationLoss):
    """``nn.Module`` form of :func:`focal_loss`."""

    function = staticmethod(distribution.focal_loss)


class DiceLoss(_SegmentationLoss):
    """``nn.Module`` form of :func:`dice_loss`."""

    function = staticmethod(region.dice_loss)


class SensitivitySpecificityLoss(_SegmentationLoss):
    """``nn.Module`` form of :func:`sensitivity_specificity_loss`."""

    function = staticmethod(region.sensitivity_specificity_loss)


class TverskyLoss(_SegmentationLoss):
    """``nn.Module`` form of :func:`tversky_loss`."""

    function = staticmethod(region.tversky_loss)


class FocalTverskyLoss(_SegmentationLoss):
    """``nn.Module`` form of :func:`focal_tversky_loss`."""

    function = staticmethod(region.focal_tversky_loss)


class LogCoshDiceLoss(_SegmentationLoss):
    """``nn.Module`` form of :func:`log_cosh_dice_loss`."""

    function = staticmethod(region.log_cosh_dice_loss)


class HausdorffDTLoss(_SegmentationLoss):
    """``nn.Module`` form of :func:`hausdorff_dt_loss`."""

    function = staticmethod(boundary.hausdorff_dt_loss)


class ShapeAwareLoss(_SegmentationLoss):
    """``nn.Module`` form of :func:`shape_aware_loss`."""

    function = staticmethod(boundary.shape_aware_loss)


class ComboLoss(_SegmentationLoss):
    """``nn.Module`` form of :func:`combo_loss`."""

    function = staticmethod(compound.combo_loss)


class ExpLogLoss(_SegmentationLoss):
    """``nn.Module`` form of :func:`exp_log_loss`."""

    function = staticmethod(compound.exp_log_loss)
