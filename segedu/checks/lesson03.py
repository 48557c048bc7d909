"""Lesson 03 · Transposed convolution: the exercise checks.

``check_transposed_conv_scatter``: the transposed convolution as scaled kernels placed and summed, compared with
``segedu.ops.upsample.transposed_conv2d``; ``check_transposed_output_size``: its output size along one axis, as
``nn.ConvTranspose2d`` computes it.
"""

from __future__ import annotations

from typing import Callable

import torch

from segedu.checks.common import agrees, compare, expect_tensor, passed, returned

__all__ = ["check_transposed_conv_scatter", "check_transposed_output_size"]


def _overwrite_placement(x: torch.Tensor, kernel: torch.Tensor, stride: int) -> torch.Tensor:
    """The classic mistake: each placed kernel *overwrites* the canvas instead of adding to it."""
    (h, w), (kh, kw) = x.shape, kernel.shape
    out = torch.zeros((h - 1) * stride + kh, (w - 1) * stride + kw, dtype=torch.float64)
    for i in range(h):
        for j in range(w):
            out[i * stride : i * stride + kh, j * stride : j * stride + kw] = x[i, j] * kernel
    return out


def check_transposed_conv_scatter(fn: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]) -> None:
    """Lesson 03: ``fn(x, kernel, stride)`` with ``x`` ``[H, W]`` and ``kernel`` ``[kh, kw]`` -> the transposed
    convolution ``[(H - 1) * stride + kh, (W - 1) * stride + kw]`` (no padding): scaled kernels, placed, summed."""
    from segedu.ops.upsample import transposed_conv2d

    name = "transposed_conv_scatter"

    def reference(x, kernel, stride):
        return transposed_conv2d(x[None, None].double(), kernel[None, None].double(), stride=stride)[0, 0]

    x = torch.tensor([[0.0, 2.0], [3.0, 1.0]])
    kernel = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    want = torch.tensor([[0.0, 0.0, 2.0], [0.0, 7.0, 7.0], [6.0, 11.0, 3.0]])
    got = expect_tensor(fn(x.clone(), kernel.clone(), 1), name, (3, 3), "the lecture's example, stride 1")
    if agrees(got, _overwrite_placement(x, kernel, 1)):
        raise AssertionError(f"{name}: where two placed kernels overlap you kept only the last one. A transposed "
                             "convolution *adds* the overlapping contributions: use += on the output slice.")
    if agrees(got, reference(x, kernel.flip(0, 1), 1)):
        raise AssertionError(f"{name}: your kernel is flipped. Place x[i, j] * kernel as it is: the top-left tap "
                             "lands on (i * stride, j * stride).")
    compare(got, want, f"{name}, the lecture's example [[0,2],[3,1]] with kernel [[0,1],[2,3]]",
            atol=1e-5, hint="Expected [[0,0,2],[0,7,7],[6,11,3]]: x[i, j] * kernel placed at (i, j), overlaps summed.")
    cases = 1
    gen = torch.Generator().manual_seed(0)
    for (h, w), (kh, kw), stride in (((2, 2), (3, 3), 2), ((3, 4), (2, 3), 2), ((4, 3), (3, 3), 3),
                                     ((1, 5), (4, 2), 1), ((3, 3), (1, 1), 2)):
        x = torch.randn(h, w, generator=gen)
        kernel = torch.randn(kh, kw, generator=gen)
        shape = ((h - 1) * stride + kh, (w - 1) * stride + kw)
        got = expect_tensor(fn(x.clone(), kernel.clone(), stride), name, shape,
                            f"(H - 1) * stride + kh rows for H={h}, kh={kh}, stride={stride}")
        if agrees(got, _overwrite_placement(x, kernel, stride)) and stride < max(kh, kw):
            raise AssertionError(f"{name}: with stride {stride} and a {kh}x{kw} kernel the placed kernels overlap; "
                                 "you kept only the last one. Add them up.")
        compare(got, reference(x, kernel, stride), f"{name}, x {h}x{w}, kernel {kh}x{kw}, stride {stride}",
                atol=1e-5, hint="Kernel number (i, j) starts at (i * stride, j * stride).")
        cases += 1
    passed(name, cases)


def check_transposed_output_size(fn: Callable[..., int]) -> None:
    """Lesson 03: ``fn(size, kernel, stride=1, padding=0, output_padding=0, dilation=1)`` -> the output size of a
    transposed convolution along one axis, as ``nn.ConvTranspose2d`` computes it."""
    import itertools

    name = "transposed_output_size"
    cases = 0
    for size, kernel, stride, padding, output_padding, dilation in itertools.product(
            (1, 2, 5), (1, 3, 4), (1, 2, 3), (0, 1), (0, 1, 2), (1, 2)):
        if output_padding >= max(stride, dilation):
            continue  # torch refuses these
        want = (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1
        if want < 1:
            continue
        got = fn(size, kernel, stride, padding, output_padding, dilation)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        returned(got, name)
        if isinstance(got, bool) or not isinstance(got, int):
            raise AssertionError(f"{name} must return an int, got {type(got).__name__} {got!r} (use // not /).")
        if got != want:
            args = f"size={size}, kernel={kernel}, stride={stride}, padding={padding}, output_padding={output_padding}, dilation={dilation}"
            hints = {
                (size - 1) * stride - 2 * padding + kernel + output_padding: "the dilated kernel spans dilation * (kernel - 1) + 1 pixels",
                (size - 1) * stride - padding + dilation * (kernel - 1) + output_padding + 1: "padding crops from both sides: subtract 2 * padding",
                (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + 1: "output_padding adds rows at the bottom/right",
                size * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1: "the first kernel starts at 0 and the last at (size - 1) * stride",
            }
            raise AssertionError(f"{name}({args}) returned {got}, expected {want}: {hints.get(got, 'compare with nn.ConvTranspose2d')}.")
        cases += 1
    passed(name, cases)
