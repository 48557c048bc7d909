"""Lesson 11 · Capstone: the exercise check.

``check_conv2d_flops``: the FLOPs of an ``nn.Conv2d`` on an input, as ``torch.utils.flop_counter`` counts them.
"""

from __future__ import annotations

from typing import Callable

import torch

from segedu.checks.common import passed, returned

__all__ = ["check_conv2d_flops"]


def _conv_flops_variant(conv, shape, macs=False, groups=True, stride=True, dilation=True, padding=True,
                        bias=False) -> int:
    """``conv2d_flops`` with one thing done wrong (the flags name what), to tell the student which."""
    b, _, h, w = shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    sh, sw = (sh, sw) if stride else (1, 1)
    dh, dw = (dh, dw) if dilation else (1, 1)
    ph, pw = (ph, pw) if padding else (0, 0)
    h_out = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    w_out = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    outputs = b * conv.out_channels * h_out * w_out
    per_output = (conv.in_channels // (conv.groups if groups else 1)) * kh * kw
    return outputs * per_output * (1 if macs else 2) + (outputs if bias else 0)


def check_conv2d_flops(fn: Callable) -> None:
    """Lesson 11: ``fn(conv, input_shape)`` returns the FLOPs of ``nn.Conv2d`` ``conv`` on an input
    ``(B, C_in, H, W)``, as ``torch.utils.flop_counter`` counts them (2 per multiply-add, bias ignored)."""
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    name = "conv2d_flops"
    mistakes = {
        "you counted multiply-adds (MACs); the FLOP counter counts 2 FLOPs per multiply-add": dict(macs=True),
        "each output sees only C_in / groups input channels (a depthwise conv has groups = C_in)": dict(groups=False),
        "the output size shrinks with the stride: H_out = floor((H + 2p - d(k-1) - 1) / s) + 1": dict(stride=False),
        "a dilated kernel spans d(k-1)+1 pixels: use the dilation in the output size": dict(dilation=False),
        "the padding adds 2p pixels to H and W before the kernel slides": dict(padding=False),
        "torch's FLOP counter ignores the bias additions": dict(bias=True),
    }

    def run(conv, shape, case):
        got = fn(conv, shape)
        returned(got, name)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, (int, float)) or not abs(got) < float("inf") or got != int(got):
            raise AssertionError(f"{name}, {case}: return a whole number of FLOPs (an int), got {got!r}")
        with FlopCounterMode(display=False) as counter:
            conv(torch.zeros(shape))
        want = counter.get_total_flops()
        if int(got) != want:
            for hint, flags in mistakes.items():
                if int(got) == _conv_flops_variant(conv, shape, **flags):
                    raise AssertionError(f"{name}, {case}: got {int(got):,}, expected {want:,}: {hint}.")
            raise AssertionError(
                f"{name}, {case}: got {int(got):,}, expected {want:,} (off by a factor {int(got) / want:.3g}). "
                "FLOPs = 2 x B x C_out x H_out x W_out x (C_in / groups) x kh x kw.")

    # 1. Worked example: VGG16's first convolution on a 224 x 224 image: 2 x 64 x 224^2 x 3 x 3 x 3 = 0.17 GFLOP.
    vgg_conv = nn.Conv2d(3, 64, 3, padding=1)
    run(vgg_conv, (1, 3, 224, 224), "VGG16 conv1_1 on 1 x 3 x 224 x 224 (173,408,256 FLOPs)")
    # 2. Fixed cases, one per ingredient of the formula, then random ones.
    fixed = [
        (dict(in_channels=6, out_channels=4, kernel_size=(3, 5), stride=2, padding=(0, 2)), (2, 6, 13, 17)),
        (dict(in_channels=8, out_channels=8, kernel_size=3, dilation=3, padding=3, groups=8), (1, 8, 12, 12)),
        (dict(in_channels=4, out_channels=6, kernel_size=1, stride=3, groups=2, bias=False), (3, 4, 10, 11)),
        (dict(in_channels=5, out_channels=7, kernel_size=3, dilation=2, stride=2), (2, 5, 15, 16)),
    ]
    gen = torch.Generator().manual_seed(11)
    rand = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=gen))  # noqa: E731
    while len(fixed) < 12:
        groups = rand(1, 3)
        k, d, s, p = rand(1, 5), rand(1, 3), rand(1, 3), rand(0, 2)
        h, w = rand(d * (k - 1) + 1, 20), rand(d * (k - 1) + 1, 20)
        fixed.append((dict(in_channels=groups * rand(1, 4), out_channels=groups * rand(1, 4), kernel_size=k,
                           stride=s, padding=p, dilation=d, groups=groups), (rand(1, 3), 0, h, w)))
    for kw, shape in fixed:
        shape = (shape[0], kw["in_channels"], shape[2], shape[3])
        run(nn.Conv2d(**kw), shape, f"Conv2d({', '.join(f'{k}={v}' for k, v in kw.items())}) on {shape}")
    passed(name, 1 + len(fixed))
