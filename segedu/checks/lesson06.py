"""Lesson 06 · U-Net (Ronneberger et al., MICCAI 2015): the exercise checks.

``check_center_crop``: the central window of a skip connection, compared with ``segedu.models.unet.center_crop``;
``check_valid_output_size``: the output side of a valid (unpadded) U-Net, compared with
``segedu.models.unet.unet_output_size``.
"""

from __future__ import annotations

from typing import Callable

import torch

from segedu.checks.common import compare, expect_tensor, passed, returned

__all__ = ["check_center_crop", "check_valid_output_size"]


def check_center_crop(fn: Callable) -> None:
    """Lesson 06: ``fn(x, size)`` returns the central ``size = (h, w)`` window of ``x`` ``[B, C, H, W]``;
    when ``H - h`` is odd the extra row goes at the bottom (``top = (H - h) // 2``), likewise for columns.
    Compared with ``segedu.models.unet.center_crop``; the result must pass gradients back to ``x``."""
    from segedu.models.unet import center_crop

    name = "center_crop"
    gen = torch.Generator().manual_seed(7)
    # The paper's level-2 skip (136 -> 104: 16 pixels off every side), then odd and non-square differences.
    cases = [((1, 2, 136, 136), (104, 104)), ((2, 3, 9, 8), (4, 5)), ((1, 1, 7, 12), (6, 3)), ((1, 4, 5, 5), (5, 5))]
    for shape, size in cases:
        x = torch.randn(shape, generator=gen, requires_grad=True)
        got = expect_tensor(fn(x, size), name, shape[:2] + size, "[B, C, h, w]")
        want = center_crop(x, size)
        hint = "Take top = (H - h) // 2 and left = (W - w) // 2; rows are dim -2, columns dim -1."
        (h, w), (height, width) = size, shape[-2:]
        up_top, up_left = -(-(height - h) // 2), -(-(width - w) // 2)
        if torch.equal(got.detach(), x.detach()[..., up_top : up_top + h, up_left : up_left + w]):
            hint = "When H - h is odd the extra row is cut at the bottom: round the offset down, top = (H - h) // 2."
        elif torch.equal(got.detach(), x.detach()[..., :h, :w]):
            hint = "You kept the top-left corner: start (H - h) // 2 rows down and (W - w) // 2 columns in."
        compare(got, want, f"{name}, x {shape} -> {size}", atol=0, rtol=0, hint=hint)
        if not got.requires_grad:
            raise AssertionError(f"{name}: the crop lost the gradient (did you go through numpy or .detach()?). "
                                 "Index the tensor with slices instead.")
        got.sum().backward()
        expected_grad = torch.zeros(shape)
        top, left = (shape[-2] - size[0]) // 2, (shape[-1] - size[1]) // 2
        expected_grad[..., top : top + size[0], left : left + size[1]] = 1
        compare(x.grad, expected_grad, f"{name}, gradient for x {shape}", atol=0, rtol=0,
                hint="Gradients must flow back to exactly the cropped pixels of x.")
    passed(name, len(cases))


def check_valid_output_size(fn: Callable[[int, int], int]) -> None:
    """Lesson 06: ``fn(input_size, depth)`` returns the output side of a valid U-Net (unpadded 3x3 convs, two
    per level, 2x2 pools, 2x2 up-convolutions) for a valid input side. 572 -> 388 at depth 4.
    Compared with ``segedu.models.unet.unet_output_size``."""
    from segedu.models.unet import unet_input_size, unet_output_size

    name = "valid_output_size"
    got = fn(572, 4)
    returned(got, name)
    if not isinstance(got, int) or isinstance(got, bool):
        raise AssertionError(f"{name} must return an int, got {type(got).__name__} {got!r}")
    hints = {
        452: "You forgot the two convolutions of the bottleneck (-4 once more at the bottom).",
        448: "You forgot the two convolutions after every up-convolution (-4 per decoder level).",
        436: "You forgot the two convolutions before every pool (-4 per encoder level).",
    }
    if got != 388:
        raise AssertionError(f"{name}(572, 4) returned {got}, expected 388 (the paper's Fig. 1). "
                             + hints.get(got, "Per level: -4 (two convs), then //2 (pool); bottleneck -4; "
                                          "per level on the way up: *2 (up-conv), then -4."))
    cases = 1
    for depth in (1, 2, 3, 5):
        for wanted in (1, 30, 97):
            size = unet_input_size(wanted, depth)
            got, want = fn(size, depth), unet_output_size(size, depth)
            if got != want:
                raise AssertionError(f"{name}({size}, {depth}) returned {got}, expected {want}: "
                                     "loop over the depth instead of hard-coding four levels.")
            cases += 1
    passed(name, cases)
