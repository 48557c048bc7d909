"""Lesson 06 · U-Net (Ronneberger et al., MICCAI 2015): the exercise checks.

``check_center_crop``: the central window of a skip connection, compared with ``segedu.models.unet.center_crop``;
``check_valid_output_size``: the output side of a valid (unpadded) U-Net, compared with
``segedu.models.unet.unet_output_size``; ``check_tiled_predict``: overlap-tile inference of a valid U-Net on an
image larger than the tile (mirror-pad, tile, stitch), compared with ``segedu.models.unet.tiled_predict``.
"""

from __future__ import annotations

from typing import Callable

import torch

from segedu.checks.common import agrees, compare, expect_tensor, passed, returned

__all__ = ["check_center_crop", "check_valid_output_size", "check_tiled_predict"]


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


def _valid_unet(gen: torch.Generator, depth: int, base: int, classes: int):
    """A valid U-Net with random weights and BatchNorm statistics, in eval mode (one prediction per input)."""
    from torch import nn

    from segedu.models.unet import UNet

    unet = UNet(classes, in_channels=3, base=base, depth=depth, padding="valid")
    with torch.no_grad():
        for module in unet.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * (2 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1)
            elif isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=gen) * 0.1)
                module.running_var.copy_(0.5 + torch.rand(module.num_features, generator=gen))
    return unet.eval()


def _tiling_mistakes(unet, image, tile):
    """What common wrong tilings return, to name the one a student made."""
    import torch.nn.functional as F

    from segedu.models.unet import MirrorContext

    height, width = image.shape[-2:]
    need = unet.input_size_for(tile)
    margin = (need - unet.output_size(need)) // 2
    rows, cols = -(-height // tile), -(-width // tile)
    bottom, right = (rows - 1) * tile + need - height - margin, (cols - 1) * tile + need - width - margin

    def stitch(padded, step):
        return torch.cat([torch.cat([unet(padded[..., i * step : i * step + need, j * step : j * step + need])
                                     [..., :tile, :tile] for j in range(cols)], dim=-1)
                          for i in range(rows)], dim=-2)[..., :height, :width]

    mistakes = {
        "the context is zero-padded: mirror it at the image border (mirror_pad), as the paper does":
            stitch(F.pad(image, (margin, right, margin, bottom)), tile),
        "the context repeats the edge pixel (mode='replicate'): mirror it without repeating the edge (mirror_pad)":
            stitch(F.pad(image, (margin, right, margin, bottom), mode="replicate"), tile),
        "one pass over the whole image (MirrorContext): predict tile by tile, each from its own input window":
            MirrorContext(unet)(image),
    }
    return mistakes


def check_tiled_predict(fn: Callable) -> None:
    """Lesson 06: ``fn(unet, image, tile)`` is overlap-tile inference with a valid U-Net (Ronneberger et al. 2015,
    Fig. 2): ``image [B, C, H, W]`` larger than the tile -> logits ``[B, K, H, W]``, predicted ``tile x tile``
    output pixels at a time from mirror-padded input windows of ``unet.input_size_for(tile)`` pixels, stitched
    and cropped to ``H x W``. Compared with ``segedu.models.unet.tiled_predict`` on U-Nets of depth 1 to 3,
    tiles that are multiples of ``2**depth`` and tiles that are not, and images whose side the tile does not
    divide."""
    from segedu.models.unet import tiled_predict

    name = "tiled_predict"
    gen = torch.Generator().manual_seed(66)
    # (depth, base, classes, image shape, tile): a worked case, then sides the tile does not divide, a tile
    # that is not a multiple of 2**depth (tiles then differ from one whole pass), a batch, a deeper net.
    cases = ((1, 4, 2, (1, 3, 24, 24), 8), (2, 4, 3, (1, 3, 37, 50), 16), (2, 4, 2, (2, 3, 30, 41), 10),
             (1, 3, 2, (1, 3, 19, 23), 7), (3, 2, 2, (1, 3, 40, 33), 16))
    for depth, base, classes, shape, tile in cases:
        unet = _valid_unet(gen, depth, base, classes)
        image = torch.rand(shape, generator=gen)
        case = f"{name}, depth {depth}, image {tuple(shape[-2:])}, tile {tile}"
        with torch.no_grad():
            want = tiled_predict(unet, image, tile)
            got = expect_tensor(fn(unet, image.clone(), tile), name, tuple(want.shape),
                                "logits [B, K, H, W] at the image's size")
            for hint, wrong in _tiling_mistakes(unet, image, tile).items():
                if agrees(got, wrong, atol=1e-5) and not agrees(wrong, want, atol=1e-5):
                    raise AssertionError(f"{case}: {hint}.")
        compare(got, want, case, atol=1e-4, rtol=1e-4,
                hint="Pad by margin = (input_size_for(tile) - output) // 2 at the top/left (mirror_pad); tile (i, j) "
                "reads the window starting at (i * tile, j * tile) of the padded image, its output's first "
                "tile x tile pixels go to rows i * tile.. and columns j * tile..; crop the stitched map to H x W.")
    passed(name, len(cases))
