"""Lesson 05 · Fully convolutional networks (Long et al., CVPR 2015): the exercise checks.

``check_fc_to_conv``: a fully connected layer turned into the equivalent convolution, compared with
``segedu.models.vgg_table.convolutionalize``; ``check_fuse_scores``: FCN-8s's coarse-to-fine fusion of the score
maps, compared with ``segedu.models.fcn.fuse``.
"""

from __future__ import annotations

from typing import Callable

import torch

from segedu.checks.common import agrees, compare, expect_tensor, passed, returned

__all__ = ["check_fc_to_conv", "check_fuse_scores"]


def check_fc_to_conv(fn: Callable) -> None:
    """Lesson 05: ``fn(linear, in_channels, kernel_size)`` returns an ``nn.Conv2d`` computing ``linear`` on every
    ``kernel_size x kernel_size`` window of a ``[B, in_channels, H, W]`` map (``linear.in_features = in_channels
    * k * k``, flattened channel-first). Compared with ``segedu.models.vgg_table.convolutionalize``."""
    from torch import nn

    from segedu.models.vgg_table import convolutionalize

    name = "fc_to_conv"
    gen = torch.Generator().manual_seed(5)
    cases = 0
    # fc6-like (a 7x7 window of many channels), fc7/fc8-like (1x1), and a small 3x3 one.
    for in_channels, k, out in ((6, 7, 5), (16, 1, 4), (3, 3, 2)):
        linear = nn.Linear(in_channels * k * k, out)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(linear.weight.shape, generator=gen))
            linear.bias.copy_(torch.randn(out, generator=gen))
        conv = fn(linear, in_channels, k)
        returned(conv, name)
        if not isinstance(conv, nn.Conv2d):
            raise AssertionError(f"{name} must return an nn.Conv2d, got {type(conv).__name__}")
        if tuple(conv.weight.shape) != (out, in_channels, k, k):
            raise AssertionError(
                f"{name}: the conv weight has shape {tuple(conv.weight.shape)}, expected {(out, in_channels, k, k)} "
                "= [out_features, in_channels, k, k]"
            )
        if conv.bias is None:
            raise AssertionError(f"{name}: the conv has no bias, but the linear layer has one: copy it too.")
        if conv.stride != (1, 1) or conv.padding != (0, 0) or conv.dilation != (1, 1):
            raise AssertionError(f"{name}: use stride 1, no padding and no dilation (got stride {conv.stride}, "
                                 f"padding {conv.padding}, dilation {conv.dilation}).")
        x = torch.randn(2, in_channels, k, k, generator=gen)
        with torch.no_grad():
            compare(conv(x).flatten(1), linear(x.flatten(1)), f"{name}, a {in_channels}x{k}x{k} input",
                    atol=1e-5, rtol=1e-4,
                    hint="The linear layer reads x.flatten(1), i.e. channel first, then row, then column: reshape "
                    "linear.weight to [out, in_channels, k, k] in that order (no transposes).")
            big = torch.randn(2, in_channels, k + 3, k + 2, generator=gen)
            compare(conv(big), convolutionalize(linear, in_channels, k)(big), f"{name}, a larger input map",
                    atol=1e-5, rtol=1e-4,
                    hint="On a larger map every output position must be the linear layer applied to its window.")
        cases += 1
    passed(name, cases)


def check_fuse_scores(fn: Callable) -> None:
    """Lesson 05: ``fn(score32, score16, score8)`` returns FCN-8s's fused scores at stride 8: upsample 2x
    (bilinear, ``align_corners=False``) and add, twice. ``[B, K, h, w]``, ``[B, K, 2h, 2w]``,
    ``[B, K, 4h, 4w]`` -> ``[B, K, 4h, 4w]``. Compared with ``segedu.models.fcn.fuse`` using untrained
    (exactly bilinear) ``Upsample`` layers."""
    import torch.nn.functional as F

    from segedu.models.fcn import Upsample, fuse

    name = "fuse_scores"
    gen = torch.Generator().manual_seed(6)
    cases = 0
    for batch, classes, h, w in ((1, 3, 2, 2), (2, 6, 3, 5), (1, 21, 4, 4)):
        s32 = torch.randn(batch, classes, h, w, generator=gen)
        s16 = torch.randn(batch, classes, 2 * h, 2 * w, generator=gen)
        s8 = torch.randn(batch, classes, 4 * h, 4 * w, generator=gen)
        up = Upsample(classes, 2)
        with torch.no_grad():
            want = fuse(fuse(s32, s16, up), s8, up)
        got = expect_tensor(fn(s32.clone(), s16.clone(), s8.clone()), name, tuple(s8.shape),
                            "the fused scores at stride 8, the size of score8")
        if not got.is_floating_point():
            raise AssertionError(f"{name} returned dtype {got.dtype}: scores are floats.")
        case = f"K={classes}, score32 of {h}x{w}"

        def nearest(x):
            return F.interpolate(x, scale_factor=2, mode="nearest")

        def corners(x):
            return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)

        for wrong, hint in (
            (nearest, "you upsampled with 'nearest': FCN's upsampling starts as bilinear."),
            (corners, "you used align_corners=True; FCN's bilinear kernel matches align_corners=False."),
        ):
            if agrees(got, wrong(wrong(s32) + s16) + s8, atol=1e-5) and h > 1:
                raise AssertionError(f"{name}, {case}: {hint}")
        compare(got, want, f"{name}, {case}", atol=1e-5, rtol=1e-4,
                hint="Fuse from coarse to fine: up2(up2(score32) + score16) + score8, with "
                "F.interpolate(..., scale_factor=2, mode='bilinear', align_corners=False).")
        cases += 1
    passed(name, cases)
