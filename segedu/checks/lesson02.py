"""Lesson 02 · Upsampling: the exercise checks.

``check_bed_of_nails``: unpooling that puts every value at the top-left of its block; ``check_bilinear_align_corners``:
bilinear interpolation with ``align_corners=True``. Both compared with ``segedu.ops.upsample``.
"""

from __future__ import annotations

from typing import Callable

import torch

from segedu.checks.common import agrees, compare, expect_tensor, passed

__all__ = ["check_bed_of_nails", "check_bilinear_align_corners"]


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
