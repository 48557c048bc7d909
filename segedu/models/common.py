"""What the segmentation models share: checks of their arguments and inputs, and two small layers.

Every model of ``segedu.models`` maps images ``[B, C, H, W]`` to logits ``[B, num_classes, H, W]`` at the input
size, and most of them end the same way: class scores computed at a stride ``s`` (``[B, K, H / s, W / s]``)
are resized bilinearly to the input size, as in FCN (Long et al., CVPR 2015), DeepLab (Chen et al., TPAMI
2018) and PSPNet (Zhao et al., CVPR 2017). The pieces:

* ``upsample_to(x, size)`` / ``upsample_like(x, reference)`` - bilinear resizing of ``[B, C, h, w]`` to
  ``[B, C, *size]`` (``align_corners=False``, the convention of torchvision's segmentation models).
* ``conv_bn_relu`` - convolution (no bias) + BatchNorm + ReLU, optionally depthwise-separable (DeepLab v3+,
  Chen et al., ECCV 2018), the building block of ASPP, PSPNet's head and the dilated FCN.
* ``check_num_classes``, ``check_output_stride``, ``check_images``, ``int_tuple`` - the argument checks the
  models share, built on ``segedu.validate`` and following its rule: a value of the wrong type (a bool or a
  float where an int is expected, a list where a tensor is expected) raises ``TypeError``, a wrong value
  (out of range, wrong rank or channel count) ``ValueError``; the message names the argument, the expected
  and the received.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from segedu import validate

__all__ = [
    "OUTPUT_STRIDES",
    "upsample_to",
    "upsample_like",
    "conv_bn_relu",
    "check_num_classes",
    "check_output_stride",
    "check_images",
    "int_tuple",
]

# The output strides an encoder of this package can have: 32 (a classification network), 16 or 8 (the
# last one or two stages dilated instead of strided, DeepLab's "atrous" trick).
OUTPUT_STRIDES = (8, 16, 32)


# --------------------------------------------------------------------------- layers


def upsample_to(x: torch.Tensor, size) -> torch.Tensor:
    """Bilinear resizing of ``[B, C, h, w]`` to ``[B, C, *size]`` (``size = (H, W)``, ``align_corners=False``).

    How every model here brings its stride-``s`` class scores back to the input size: the logits are
    smooth at that scale, so interpolating them costs little (DeepLab, Chen et al., TPAMI 2018, Sec. 3.1).
    """
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def upsample_like(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``upsample_to(x, reference.shape[-2:])``: ``[B, C, h, w]`` at the height and width of ``reference``."""
    return upsample_to(x, reference.shape[-2:])


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1,
                 separable: bool = False) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + ReLU, ``padding`` keeping the size.

    ``separable=True`` (3x3 only): a depthwise 3x3 (``groups=in_channels``, one filter per channel) + BN + ReLU
    followed by a pointwise 1x1 + BN + ReLU, as in DeepLab v3+ (Chen et al., ECCV 2018, Sec. 3.2). Weights:
    ``9 C_in + C_in C_out`` instead of ``9 C_in C_out``.
    """
    for value, name in ((in_channels, "in_channels"), (out_channels, "out_channels"),
                        (kernel_size, "kernel_size"), (dilation, "dilation")):
        validate.positive_int(value, name)
    padding = dilation * (kernel_size // 2)
    if separable and kernel_size > 1:
        return nn.Sequential(
            nn.Conv2d(in_channels, in_channels, kernel_size, padding=padding, dilation=dilation,
                      groups=in_channels, bias=False),
            nn.BatchNorm2d(in_channels), nn.ReLU(),
            nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(),
        )  # fmt: skip
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU(),
    )  # fmt: skip


# --------------------------------------------------------------------------- checks


def check_num_classes(num_classes: Any) -> int:
    """The number of classes C of a model: an int ``>= 1`` (``TypeError`` for ``True`` or ``2.5``)."""
    return validate.positive_int(num_classes, "num_classes")


def check_output_stride(output_stride: Any, allowed: Iterable[int] = OUTPUT_STRIDES) -> int:
    """An encoder's output stride: an int (``TypeError`` otherwise) that is one of ``allowed`` (``ValueError``)."""
    return validate.choice(validate.integer(output_stride, "output_stride"), "output_stride", allowed)


def check_images(x: Any, channels: int | None = None, name: str = "x") -> torch.Tensor:
    """A floating-point image batch ``[B, C, H, W]``, with ``C == channels`` when given; returns ``x``.

    ``validate.images`` with the expected layout, channel count included, in the message of a wrong rank
    (``"x must be 4-D [B, 3, H, W], got shape (3, 32, 32)"``): a forgotten batch dimension is the usual cause.
    """
    layout = "[B, C, H, W]" if channels is None else f"[B, {channels}, H, W]"
    validate.tensor(x, name, 4, dtype="floating", layout=layout)
    return validate.images(x, name, channels)


def int_tuple(values: Any, name: str, minimum: int = 1, length: int | None = None) -> tuple[int, ...]:
    """A sequence of ints (channel widths, blocks per stage, pooling bins, atrous rates) as a tuple.

    Not a sequence (a single int, a string) -> ``TypeError``; not ``length`` entries -> ``ValueError``;
    every entry is ``validate.integer(v, f"{name}[{i}]", minimum)`` (``TypeError`` for a bool or a float,
    ``ValueError`` below ``minimum``).
    """
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a sequence of ints >= {minimum}, got {type(values).__name__} {values!r}")
    values = tuple(values)
    if length is not None and len(values) != length:
        raise ValueError(f"{name} must be {length} ints >= {minimum}, got {len(values)}: {values!r}")
    return tuple(validate.integer(v, f"{name}[{i}]", minimum) for i, v in enumerate(values))
