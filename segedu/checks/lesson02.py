"""Lesson 02 · Upsampling: the exercise checks.

``check_bed_of_nails``: unpooling that puts every value at the top-left of its block; ``check_max_unpool``: max
unpooling from the positions max pooling remembered (without ``F.max_unpool2d``); ``check_bilinear_align_corners``:
bilinear interpolation with ``align_corners=True``. All compared with ``segedu.ops.upsample``.
"""

from __future__ import annotations

from typing import Callable

import torch

from segedu.checks.common import agrees, compare, expect_tensor, passed

__all__ = ["check_bed_of_nails", "check_max_unpool", "check_bilinear_align_corners"]


def check_bed_of_nails(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """Lesson 02: ``fn(x, factor)`` -> ``[B, C, H * factor, W * factor]``, ``x`` at the top-left of every block."""
    from segedu.ops.upsample import bed_of_nails, nearest_upsample

    name = "bed_of_nails"
    x = torch.tensor([[1.0, 4.0], [3.0, 2.0]])[None, None]
    want = torch.tensor([[1.0, 0, 4, 0], [0, 0, 0, 0], [3, 0, 2, 0], [0, 0, 0, 0]])[None, None]
    got = expect_tensor(fn(x.clone(), 2), name, (1, 1, 4, 4), "the lecture's 2x2 -> 4x4 example")
    if agrees(got, nearest_upsample(x, 2)):
        raise AssertionError(f"{name}: you copied every value into its whole block (nearest neighbour). Bed of nails "
                             "keeps each value once, at the top-left of its block, and zeros elsewhere.")
    if agrees(got, torch.tensor([[0.0, 0, 0, 0], [0, 1, 0, 4], [0, 0, 0, 0], [0, 3, 0, 2]])[None, None]):
        raise AssertionError(f"{name}: the values sit at the bottom-right of their blocks; put them at "
                             "(i * factor, j * factor), the top-left.")
    compare(got, want, f"{name}, the lecture's example [[1, 4], [3, 2]]", atol=1e-5,
            hint="Expected [[1,0,4,0],[0,0,0,0],[3,0,2,0],[0,0,0,0]].")
    cases = 1
    gen = torch.Generator().manual_seed(0)
    for shape, factor, dtype in (((2, 3, 3, 5), 3, torch.float32), ((1, 2, 4, 1), 2, torch.float64),
                                 ((2, 1, 2, 3), 1, torch.float32), ((1, 1, 3, 3), 4, torch.int64)):
        x = torch.randint(1, 10, shape, generator=gen).to(dtype)
        out_shape = (*shape[:2], shape[2] * factor, shape[3] * factor)
        got = expect_tensor(fn(x.clone(), factor), name, out_shape, f"factor {factor}")
        if got.dtype != dtype:
            raise AssertionError(f"{name} turned {dtype} into {got.dtype}: create the output with x.new_zeros(...) "
                                 "so it keeps the input's dtype (and device).")
        compare(got, bed_of_nails(x, factor), f"{name}, input {shape}, factor {factor}", atol=1e-5,
                hint="Each value goes to (i * factor, j * factor); every other entry is 0.")
        cases += 1
    passed(name, cases)


def _unpool_variant(x: torch.Tensor, indices: torch.Tensor, size: tuple, mistake: str) -> torch.Tensor:
    """Max unpooling done one of the common wrong ways (``mistake``), to name what a student did."""
    height, width = size
    if mistake == "whole tensor":  # one scatter over the flattened batch: every plane lands in the first one
        flat = x.new_zeros(x.numel() // x[0, 0].numel() * height * width)
        return flat.scatter(0, indices.flatten(), x.flatten()).view(*x.shape[:2], height, width)
    if mistake == "rows and columns swapped":  # row = i % W, col = i // W: only the transpose of a square plane
        rows, cols = indices % width, indices // width
        if int(rows.max()) >= height or int(cols.max()) >= width:
            return x.new_full((*x.shape[:2], height, width), float("nan"))
        out = x.new_zeros(*x.shape[:2], height, width)
        b, c = torch.meshgrid(torch.arange(x.shape[0]), torch.arange(x.shape[1]), indexing="ij")
        out[b[..., None, None], c[..., None, None], rows, cols] = x
        return out
    raise ValueError(mistake)


def check_max_unpool(fn: Callable[[torch.Tensor, torch.Tensor, tuple], torch.Tensor]) -> None:
    """Lesson 02: ``fn(x, indices, output_size)`` -> ``[B, C, H, W]``: every value of ``x [B, C, h, w]`` written at
    the flat position ``indices`` (``row * W + col`` of its plane, from ``F.max_pool2d(..., return_indices=True)``),
    zeros elsewhere; gradients flow back to ``x``."""
    import torch.nn.functional as F

    from segedu.ops.upsample import bed_of_nails, max_unpool, nearest_upsample

    name = "max_unpool"

    def ask(x, indices, size, what):
        got = fn(x.clone(), indices.clone(), tuple(size))
        shape = (*x.shape[:2], *size)
        if isinstance(got, torch.Tensor) and got.dim() == 4 and tuple(got.shape) != shape \
                and tuple(got.shape[-2:]) == (x.shape[-2] * 2, x.shape[-1] * 2):
            raise AssertionError(f"{name}, {what}: you return {tuple(got.shape)}, twice the pooled size; expected "
                                 f"{shape}. Use output_size: pooling forgets odd sizes (5 and 4 rows both pool to 2).")
        got = expect_tensor(got, name, shape, f"{what}: [B, C, *output_size]")
        if got.dtype != x.dtype:
            raise AssertionError(f"{name} changed the dtype from {x.dtype} to {got.dtype}: make the output with "
                                 "x.new_zeros(...), which keeps x's dtype and device.")
        want = max_unpool(x, indices, size)
        if not agrees(got, want):
            for mistake, hint in (
                ("whole tensor", "each (image, channel) plane has its own positions 0 .. H*W - 1: flatten only the "
                                 "last two dimensions and scatter along them, plane by plane"),
                ("rows and columns swapped", "row and column are swapped: position i is row i // W, column i % W"),
            ):
                if agrees(got, _unpool_variant(x, indices, size, mistake)):
                    raise AssertionError(f"{name}, {what}: {hint}.")
            compare(got, want, f"{name}, {what}", atol=1e-6,
                    hint="Value (b, c, i, j) goes to the flat position indices[b, c, i, j] of plane (b, c).")
        return got

    # 1. The lecture's example: maxima 7, 8, 3, 5; the decoder's [[1, 3], [2, 4]] goes back to where they were.
    features = torch.tensor([[1.0, 4, 4, 8], [7, 0, 3, 2], [3, 1, 2, 1], [2, 0, 3, 5]])[None, None]
    _, indices = F.max_pool2d(features, 2, return_indices=True)
    later = torch.tensor([[1.0, 3.0], [2.0, 4.0]])[None, None]
    got = fn(later.clone(), indices.clone(), (4, 4))
    if agrees(got, bed_of_nails(later, 2)):
        raise AssertionError(f"{name}: every value sits at the top-left of its block (bed of nails). Max unpooling "
                             "puts it where the maximum was: at the flat position indices[b, c, i, j].")
    if agrees(got, nearest_upsample(later, 2)):
        raise AssertionError(f"{name}: you copied every value into its whole block (nearest neighbour). Max "
                             "unpooling writes it once, where the maximum was, and zeros elsewhere.")
    ask(later, indices, (4, 4), "the lecture's example (maxima 7, 8, 3, 5 -> [[0,0,0,3],[1,0,0,0],[2,0,0,0],[0,0,0,4]])")
    cases = 1
    # 2. Random planes: not square, odd sizes, several images and channels, pooling 3x3, float64.
    gen = torch.Generator().manual_seed(2)
    for shape, kernel, dtype in (((1, 1, 5, 7), 2, torch.float32), ((2, 3, 4, 6), 2, torch.float32),
                                 ((1, 2, 6, 9), 3, torch.float64), ((3, 1, 7, 4), 2, torch.float32)):
        features = torch.randn(shape, generator=gen, dtype=dtype)
        pooled, indices = F.max_pool2d(features, kernel, return_indices=True)
        x = torch.randn(pooled.shape, generator=gen, dtype=dtype)
        ask(x, indices, shape[-2:], f"input {tuple(x.shape)} -> output_size {shape[-2:]} (pooling {kernel}x{kernel})")
        cases += 1
    # 3. A decoder learns through unpooling: every value gets the gradient of the position it was written to.
    x = torch.randn(1, 2, 3, 3, generator=gen).requires_grad_()
    _, indices = F.max_pool2d(torch.randn(1, 2, 6, 6, generator=gen), 2, return_indices=True)
    out = fn(x, indices, (6, 6))
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        raise AssertionError(f"{name}: the result does not depend on x for autograd: place the values with tensor "
                             "operations (scatter or an indexed assignment), do not copy numbers.")
    weight = torch.randn(out.shape, generator=gen)
    (grad,) = torch.autograd.grad((out * weight).sum(), x)
    compare(grad, weight.flatten(2).gather(2, indices.flatten(2)).view_as(x), f"{name}, gradient with respect to x",
            atol=1e-5, hint="The gradient of a placed value is the gradient at the position it was written to.")
    passed(name, cases + 1)


def check_bilinear_align_corners(fn: Callable[[torch.Tensor, int, int], torch.Tensor]) -> None:
    """Lesson 02: ``fn(x, out_h, out_w)`` -> bilinear interpolation with ``align_corners=True``."""
    from segedu.ops.upsample import bilinear_upsample

    name = "bilinear (align_corners=True)"
    x = torch.arange(1, 10, dtype=torch.float32).view(1, 1, 3, 3)
    want = bilinear_upsample(x, size=(5, 5), align_corners=True)
    got = expect_tensor(fn(x.clone(), 5, 5), name, (1, 1, 5, 5), "the lecture's 3x3 -> 5x5 table")
    if agrees(got, bilinear_upsample(x, size=(5, 5), align_corners=False)):
        raise AssertionError(f"{name}: you computed align_corners=False (s = (i + 0.5) * in / out - 0.5). With "
                             "aligned corners s = i * (in - 1) / (out - 1), so output 0 and output out-1 land on the "
                             "corner pixels.")
    compare(got, want, f"{name}, the lecture's 3x3 -> 5x5 table (rows 1.0 1.5 2.0 2.5 3.0 / 2.5 3.0 ...)",
            atol=1e-5, hint="Check the weights: the neighbour at floor(s) gets 1 - w, the next one w = s - floor(s).")
    cases = 1
    gen = torch.Generator().manual_seed(0)
    for shape, out in (((2, 3, 4, 6), (7, 11)), ((1, 2, 5, 5), (3, 2)), ((1, 1, 1, 4), (3, 9)),
                       ((2, 1, 6, 3), (1, 1)), ((1, 3, 2, 2), (8, 8))):
        x = torch.randn(shape, generator=gen)
        got = expect_tensor(fn(x.clone(), *out), name, (*shape[:2], *out), f"{shape} -> {out}")
        compare(got, bilinear_upsample(x, size=out, align_corners=True), f"{name}, input {shape} -> {out}",
                atol=1e-5, hint="At the last row/column y1 = min(y0 + 1, H - 1) (no neighbour beyond the edge); "
                "with one output row the scale is 0; with one input row y0 = y1 = 0.")
        cases += 1
    passed(name, cases)
