"""Checkerboard artefacts of learned upsampling, and three learned layers side by side (lesson 03).

A transposed convolution whose kernel size is not a multiple of its stride stacks
more kernel taps on some output pixels than on others, and its outputs show a
pattern that repeats every ``stride`` pixels (Odena, Dumoulin & Olah,
"Deconvolution and checkerboard artifacts", Distill 2016).

* ``overlap_count``         - how many taps of a transposed convolution land on each
  output pixel: where the checkerboard comes from.
* ``overlap_range``         - the fewest and the most of them away from the border
  (equal: no checkerboard).
* ``subpixel_means``        - the mean of each of the ``period x period`` interleaved
  sub-pixel grids of an image: a checkerboard shows as unequal means.
* ``checkerboard_strength`` - how strong a period-``stride`` pattern is in an output.
* ``LearnedUpsample``       - the three learned upsampling layers side by side: transposed
  convolution, resize-convolution and convolution + pixel shuffle.

The operations they are built from (``transposed_conv2d``, ``pixel_shuffle``) are in
``segedu.ops.upsample``. Every image is ``[B, C, H, W]``; ``tests/test_upsample.py``
checks this module too.
"""

from __future__ import annotations

import torch
from torch import nn

from segedu import validate
from segedu.ops.upsample import transposed_conv2d

__all__ = ["overlap_count", "overlap_range", "subpixel_means", "checkerboard_strength", "LearnedUpsample"]


def overlap_count(kernel_size, stride, input_size) -> torch.Tensor:
    """How many kernel taps of a transposed convolution land on each output pixel.

    A transposed convolution with constant weights 1 applied to a constant input
    of ones (no padding, dilation 1): ``[H_out, W_out]`` float32 with
    ``H_out = (H - 1) * stride + kernel_size``. Away from the border the count is
    the same everywhere exactly when ``kernel_size % stride == 0``; otherwise it
    alternates with period ``stride`` - the checkerboard that a transposed
    convolution makes before it has learned anything (Odena et al., Distill 2016).
    Arguments are ints or ``(height, width)`` pairs.
    """
    kh, kw = validate.pair(kernel_size, "kernel_size", 1)
    stride = validate.pair(stride, "stride", 1)
    height, width = validate.pair(input_size, "input_size", 1)
    ones = torch.ones(1, 1, height, width)
    return transposed_conv2d(ones, torch.ones(1, 1, kh, kw), stride=stride)[0, 0]


def overlap_range(kernel_size, stride, input_size) -> tuple[int, int]:
    """``(fewest, most)`` kernel taps on one output pixel of ``overlap_count``, away from the border.

    The border, ``kernel_size`` pixels wide, is left out: fewer kernels reach it
    whatever the stride. When nothing is left (a small ``input_size``) the whole
    output counts. Given enough input, fewest equals most exactly when
    ``kernel_size % stride == 0``; then they are ``(kernel_size // stride) ** 2``,
    otherwise ``(kernel_size // stride) ** 2`` and ``ceil(kernel_size / stride) ** 2``
    (Odena et al., Distill 2016). Arguments are ints or ``(height, width)`` pairs.
    """
    count = overlap_count(kernel_size, stride, input_size)
    kh, kw = validate.pair(kernel_size, "kernel_size", 1)
    if count.shape[0] > 2 * kh and count.shape[1] > 2 * kw:
        count = count[kh:-kh, kw:-kw]
    return int(count.min()), int(count.max())


def subpixel_means(x: torch.Tensor, period: int = 2) -> torch.Tensor:
    """The mean value of each sub-pixel grid: ``[B, C, H, W] -> [B, C, period, period]``.

    Pixel ``(i, j)`` belongs to grid ``(i % period, j % period)``; entry ``(a, b)`` of the result is the mean
    over the pixels of grid ``(a, b)`` (``x`` cropped to multiples of ``period``). A ``period``-times upsampling
    layer computes each grid with its own taps (lesson 03), so unequal means are its signature: image content
    averages out over a grid, a checkerboard does not.
    """
    validate.images(x, "x")
    p = validate.integer(period, "period", minimum=2)
    batch, channels, height, width = x.shape
    if height < p or width < p:
        raise ValueError(f"x must be at least period x period ({p} x {p}), got {height} x {width}")
    h, w = height // p * p, width // p * p
    grids = x[..., :h, :w].reshape(batch, channels, h // p, p, w // p, p)
    return grids.mean(dim=(2, 4))


def checkerboard_strength(x: torch.Tensor, period: int = 2) -> torch.Tensor:
    """Strength of a pattern that repeats every ``period`` pixels, per image.

    The image is split into its ``period x period`` sub-pixel grids (pixel
    ``(i, j)`` belongs to grid ``(i % period, j % period)``); the result is the
    standard deviation of the grids' mean values (``subpixel_means``), averaged over channels:
    float32 ``[B]`` for ``x`` float ``[B, C, H, W]`` (cropped to multiples of
    ``period``). Image content averages out over a grid, a checkerboard does
    not: a flat image scores 0, a pure +-a checkerboard scores about ``a``. By
    Parseval it is the energy of the image at the frequencies that are multiples
    of ``1 / period`` (except 0), where upsampling artefacts live.
    """
    means = subpixel_means(x, period).flatten(2)  # [B, C, p * p]: one mean per sub-pixel grid
    return means.std(dim=2, unbiased=False).mean(dim=1).float()


class LearnedUpsample(nn.Module):
    """A learned ``factor``-times upsampling layer, three ways (``[B, C_in, H, W] -> [B, C_out, fH, fW]``).

    * ``"transposed"``: ``nn.ConvTranspose2d(kernel_size, stride=factor)`` with
      padding and output padding chosen so the output is exactly ``factor``
      times the input. When ``kernel_size % factor != 0`` the taps overlap
      unevenly (``overlap_count``) and a checkerboard appears unless the
      weights learn to cancel it.
    * ``"resize_conv"``: nearest-neighbour upsampling, then an ordinary
      convolution (Odena et al., Distill 2016). Every output pixel is computed
      by the same kernel from a nearest-upsampled map, so a flat input gives a
      flat output (away from the border) whatever the weights.
    * ``"pixel_shuffle"``: a convolution to ``C_out * factor**2`` channels at
      the low resolution, then ``F.pixel_shuffle`` (Shi et al., CVPR 2016). Each
      of the ``factor**2`` sub-pixel positions has its own kernel; with
      ``icnr=True`` (default) they start identical, so the layer starts as
      "convolve, then nearest-upsample" and has no checkerboard at
      initialisation (ICNR, Aitken et al., arXiv:1707.02937, 2017).

    ``kernel_size`` is odd for ``resize_conv`` and ``pixel_shuffle`` ("same" padding).
    """

    METHODS = ("transposed", "resize_conv", "pixel_shuffle")

    def __init__(self, in_channels: int, out_channels: int, factor: int = 2, method: str = "transposed",
                 kernel_size: int = 3, icnr: bool = True):
        super().__init__()
        in_channels = validate.positive_int(in_channels, "in_channels")
        out_channels = validate.positive_int(out_channels, "out_channels")
        self.factor = factor = validate.positive_int(factor, "factor")
        kernel_size = validate.positive_int(kernel_size, "kernel_size")
        method = validate.choice(method, "method", self.METHODS)
        if method != "transposed" and kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd for method {method!r} ('same' padding), got {kernel_size}")
        self.method = method
        if method == "transposed":
            # (H - 1) f - 2 p + k + op = f H  <=>  op - 2 p = f - k, with 0 <= op < f.
            padding = max(0, -(-(kernel_size - factor) // 2))
            output_padding = factor - kernel_size + 2 * padding
            self.layer = nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride=factor,
                                            padding=padding, output_padding=output_padding)
        elif method == "resize_conv":
            self.layer = nn.Sequential(
                nn.Upsample(scale_factor=factor, mode="nearest"),
                nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            )
        else:
            conv = nn.Conv2d(in_channels, out_channels * factor**2, kernel_size, padding=kernel_size // 2)
            if icnr:
                with torch.no_grad():  # output channel c * f^2 + s is sub-pixel s of channel c: copy s = 0
                    weight = conv.weight.view(out_channels, factor**2, in_channels, kernel_size, kernel_size)
                    weight.copy_(weight[:, :1].expand_as(weight).clone())
                    bias = conv.bias.view(out_channels, factor**2)
                    bias.copy_(bias[:, :1].expand_as(bias).clone())
            self.layer = nn.Sequential(conv, nn.PixelShuffle(factor))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        validate.tensor(x, "x", 4, layout="[B, C, H, W]")
        return self.layer(x)
