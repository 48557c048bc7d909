"""Upsampling, written from the idea each method teaches (lessons 02 and 03).

Fixed (nothing learned):

* ``nearest_upsample``  - copy each pixel into a ``factor x factor`` block.
* ``bed_of_nails``      - put each pixel at the top-left of its block, zeros elsewhere.
* ``max_unpool``        - put each value back where max pooling found its maximum
  (the "switches" of Zeiler & Fergus, ECCV 2014; SegNet, Badrinarayanan et al. 2017).
* ``bilinear_upsample`` - the four-neighbour interpolation formula.

Learned:

* ``transposed_conv2d`` - every input pixel scales the kernel, the scaled kernels
  are placed ``stride`` apart and overlaps are summed (Dumoulin & Visin, "A guide
  to convolution arithmetic for deep learning", 2016).
* ``bilinear_kernel``   - FCN's initialiser that makes a transposed convolution
  start as bilinear upsampling (Long, Shelhamer & Darrell, CVPR 2015).
* ``pixel_shuffle``     - sub-pixel convolution: channels rearranged into space
  (Shi et al., CVPR 2016).
* ``LearnedUpsample``   - the three learned upsampling layers side by side: transposed
  convolution, resize-convolution and convolution + pixel shuffle.

Checkerboard artefacts (Odena, Dumoulin & Olah, "Deconvolution and checkerboard
artifacts", Distill 2016): ``overlap_count`` shows where a transposed convolution
stacks more kernel taps, ``checkerboard_strength`` measures a period-``stride``
pattern in an output.

Every image is ``[B, C, H, W]``. Each function equals its torch counterpart
(``F.interpolate``, ``F.max_unpool2d``, ``F.conv_transpose2d``,
``F.pixel_shuffle``); ``tests/test_upsample.py`` checks that.
"""

from __future__ import annotations

import math
import operator

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "nearest_upsample",
    "bed_of_nails",
    "max_unpool",
    "bilinear_upsample",
    "bilinear_kernel",
    "transposed_conv2d",
    "pixel_shuffle",
    "overlap_count",
    "checkerboard_strength",
    "LearnedUpsample",
]


# ----------------------------------------------------------------------------
# argument checks (shared with segedu.ops.dilation)


def _check_4d(x, name: str = "x", layout: str = "[B, C, H, W]") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must be 4-D {layout}, got shape {tuple(x.shape)}")


def _int(value, name: str, minimum: int) -> int:
    """``value`` as a Python int >= ``minimum`` (bools and floats are refused)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got bool {value!r}")
    try:
        value = operator.index(value)  # accepts int, numpy and 0-d torch integers
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _pair(value, name: str, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints (height, width) as a pair, each >= ``minimum``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair (height, width), got {value!r}")
        return _int(value[0], name, minimum), _int(value[1], name, minimum)
    value = _int(value, name, minimum)
    return value, value


# ----------------------------------------------------------------------------
# fixed upsampling


def nearest_upsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Nearest-neighbour upsampling: each pixel becomes a ``factor x factor`` block.

    ``[B, C, H, W] -> [B, C, H * factor, W * factor]``; any dtype. Equals
    ``F.interpolate(x, scale_factor=factor, mode="nearest")``.
    """
    _check_4d(x)
    factor = _int(factor, "factor", 1)
    return x.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def bed_of_nails(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Bed-of-nails upsampling: each pixel at the top-left of its block, zeros elsewhere.

    ``[B, C, H, W] -> [B, C, H * factor, W * factor]``; any dtype. It is a
    transposed convolution (stride ``factor``) whose kernel is 1 at its top-left
    tap and 0 elsewhere, the fixed "unpooling" that max unpooling refines.
    """
    _check_4d(x)
    factor = _int(factor, "factor", 1)
    batch, channels, height, width = x.shape
    out = x.new_zeros(batch, channels, height * factor, width * factor)
    out[..., ::factor, ::factor] = x
    return out


def max_unpool(x: torch.Tensor, indices: torch.Tensor, output_size) -> torch.Tensor:
    """Max unpooling: write each value where max pooling found its maximum, zeros elsewhere.

    Args:
        x: ``[B, C, h, w]`` values to place (e.g. a decoder's feature map).
        indices: int64 ``[B, C, h, w]`` from ``F.max_pool2d(..., return_indices=True)``:
            for every pooled value, the flat position ``row * W + col`` of its
            maximum in the ``H x W`` plane that was pooled.
        output_size: ``(H, W)``, the size of the plane before pooling (pooling
            forgets it: 5 and 4 rows both pool to 2).

    Returns ``[B, C, H, W]``; equals ``F.max_unpool2d``. Used by the
    deconvolution network of Zeiler & Fergus (ECCV 2014) and by SegNet
    (Badrinarayanan et al., TPAMI 2017). With overlapping pooling windows two
    values may share one position; then one of them is kept, as in torch.
    """
    _check_4d(x)
    if not isinstance(indices, torch.Tensor):
        raise TypeError(f"indices must be a torch.Tensor, got {type(indices).__name__}")
    if indices.shape != x.shape:
        raise ValueError(
            f"indices must have the shape of x {tuple(x.shape)}, got {tuple(indices.shape)}"
        )
    if indices.dtype != torch.int64:
        raise TypeError(f"indices must be int64 (from max_pool2d), got {indices.dtype}")
    height, width = _pair(output_size, "output_size", 1)
    if indices.numel() and (indices.min() < 0 or indices.max() >= height * width):
        raise ValueError(
            f"indices must lie in [0, {height * width}) for output_size {(height, width)}, "
            f"got values in [{int(indices.min())}, {int(indices.max())}]"
        )
    batch, channels = x.shape[:2]
    # Each (image, channel) plane is flat, so the remembered flat positions are
    # scatter indices along the last dimension.
    flat = x.new_zeros(batch, channels, height * width)
    flat = flat.scatter(2, indices.flatten(2), x.flatten(2))
    return flat.view(batch, channels, height, width)


# ----------------------------------------------------------------------------
# bilinear interpolation


def _output_size_and_scales(in_size, size, scale_factor):
    """Output (H, W) and the per-axis scale_factor (None when ``size`` was given)."""
    if (size is None) == (scale_factor is None):
        raise ValueError(
            f"give exactly one of size or scale_factor, got size={size!r}, "
            f"scale_factor={scale_factor!r}"
        )
    if size is not None:
        return _pair(size, "size", 1), (None, None)
    factors = scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor,) * 2
    if len(factors) != 2:
        raise ValueError(f"scale_factor must be a number or a pair, got {scale_factor!r}")
    for f in factors:
        if isinstance(f, bool) or not isinstance(f, (int, float)):
            raise TypeError(f"scale_factor must be a number, got {type(f).__name__} {f!r}")
        if not (math.isfinite(f) and f > 0):
            raise ValueError(f"scale_factor must be a finite number > 0, got {f!r}")
    # Like F.interpolate: the output size is rounded down.
    out = tuple(math.floor(n * float(f)) for n, f in zip(in_size, factors))
    if min(out) < 1:
        raise ValueError(
            f"scale_factor {scale_factor!r} shrinks the input {tuple(in_size)} to {out}"
        )
    return out, tuple(float(f) for f in factors)


def _source_coordinates(in_size: int, out_size: int, scale_factor, align_corners: bool):
    """Along one axis, for every output index: the two input neighbours and the weight of the second.

    The output is ``(1 - w1) * input[i0] + w1 * input[i1]``. Computed in float64
    on the CPU (the vectors are short), moved to the image's device by the caller.
    """
    dst = torch.arange(out_size, dtype=torch.float64)
    if out_size == in_size:
        # An axis that keeps its size is copied, whatever scale_factor gave
        # that size (e.g. 5 * 1.1 -> 5): torch's CPU kernel does the same.
        src = dst
    elif align_corners:
        # The centres of the corner pixels of input and output coincide.
        scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        src = dst * scale
    else:
        # Pixels are unit squares: the centre of output pixel i sits at i + 0.5
        # in output units, (i + 0.5) * scale in input units, and pixel centres
        # are at index + 0.5. torch takes scale = 1 / scale_factor when one was
        # given (not in / out, which differs when in * scale_factor is not an integer).
        scale = 1.0 / scale_factor if scale_factor is not None else in_size / out_size
        # Left of the first centre there is nothing to interpolate: use pixel 0.
        src = ((dst + 0.5) * scale - 0.5).clamp(min=0.0)
    i0 = src.floor().long().clamp(max=in_size - 1)
    i1 = (i0 + 1).clamp(max=in_size - 1)  # right of the last centre: repeat the last pixel
    return i0, i1, src - i0


def bilinear_upsample(
    x: torch.Tensor, size=None, scale_factor=None, align_corners: bool = False
) -> torch.Tensor:
    """Bilinear interpolation from the four-neighbour formula (no ``F.interpolate`` inside).

    Each output pixel gets a source coordinate ``(sy, sx)`` in the input; with
    ``y0 = floor(sy)``, ``wy = sy - y0`` (and the same along x) its value is::

        (1 - wy) * ((1 - wx) * x[y0, x0] + wx * x[y0, x1])
          +   wy * ((1 - wx) * x[y1, x0] + wx * x[y1, x1])

    Args:
        x: float ``[B, C, H, W]``.
        size: output ``(H_out, W_out)`` or one int for both.
        scale_factor: a number or ``(sy, sx)``; output size ``floor(H * sy)``.
            Exactly one of ``size`` and ``scale_factor``.
        align_corners: ``True`` maps the corner pixel centres onto each other;
            ``False`` (torch's default) treats pixels as unit squares.

    Returns ``[B, C, H_out, W_out]``, equal to ``F.interpolate(x, size,
    scale_factor, mode="bilinear", align_corners=align_corners)`` for up- and
    down-sampling (no anti-aliasing, like torch's default).
    """
    _check_4d(x)
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
    if not isinstance(align_corners, bool):
        raise TypeError(f"align_corners must be a bool, got {type(align_corners).__name__}")
    (out_h, out_w), (scale_y, scale_x) = _output_size_and_scales(x.shape[-2:], size, scale_factor)

    y0, y1, wy = _source_coordinates(x.shape[-2], out_h, scale_y, align_corners)
    x0, x1, wx = _source_coordinates(x.shape[-1], out_w, scale_x, align_corners)
    # Index vectors shaped [H_out, 1] and [1, W_out] broadcast to the output grid.
    y0, y1 = y0.to(x.device)[:, None], y1.to(x.device)[:, None]
    x0, x1 = x0.to(x.device)[None, :], x1.to(x.device)[None, :]
    wy, wx = wy.to(x)[:, None], wx.to(x)[None, :]

    # The four neighbours of every output pixel, gathered at once: [B, C, H_out, W_out].
    top_left, top_right = x[..., y0, x0], x[..., y0, x1]
    bottom_left, bottom_right = x[..., y1, x0], x[..., y1, x1]
    # Linear along x on the two rows, then linear along y between them.
    top = (1 - wx) * top_left + wx * top_right
    bottom = (1 - wx) * bottom_left + wx * bottom_right
    return (1 - wy) * top + wy * bottom


def bilinear_kernel(in_channels: int, out_channels: int, kernel_size: int) -> torch.Tensor:
    """FCN's bilinear initialiser for a transposed convolution (``upsample_filt`` of the FCN code).

    Returns float32 ``[in_channels, out_channels, k, k]`` (the layout of
    ``F.conv_transpose2d``): the separable tent ``(1 - |i - c| / f)`` outer itself,
    with ``f = (k + 1) // 2`` and centre ``c = f - 1`` (odd k) or ``f - 0.5`` (even k).
    Channel ``i`` maps to channel ``i`` only (zeros off the diagonal), so each
    channel is upsampled on its own; ``out_channels=1`` gives the per-channel
    form for ``groups=in_channels``.

    For an integer factor ``f``, ``F.conv_transpose2d(x, bilinear_kernel(C, C,
    2 * f - f % 2), stride=f, padding=f // 2)`` equals ``F.interpolate(x,
    scale_factor=f, mode="bilinear")`` except in a band ``f // 2`` pixels wide
    along the border, where the transposed convolution sees zeros beyond the
    edge instead of repeating it (Long, Shelhamer & Darrell, CVPR 2015).
    """
    in_channels = _int(in_channels, "in_channels", 1)
    out_channels = _int(out_channels, "out_channels", 1)
    kernel_size = _int(kernel_size, "kernel_size", 1)
    if out_channels not in (1, in_channels):
        raise ValueError(
            f"out_channels must equal in_channels ({in_channels}) or be 1, got {out_channels}"
        )
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    tent = 1 - (torch.arange(kernel_size, dtype=torch.float64) - center).abs() / factor
    filt = torch.outer(tent, tent).float()

    weight = torch.zeros(in_channels, out_channels, kernel_size, kernel_size)
    if out_channels == 1:
        weight[:, 0] = filt
    else:
        channel = torch.arange(in_channels)
        weight[channel, channel] = filt
    return weight


# ----------------------------------------------------------------------------
# learned upsampling


def transposed_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride=1,
    padding=0,
    output_padding=0,
    groups: int = 1,
    dilation=1,
) -> torch.Tensor:
    """Transposed convolution as an explicit scatter-add of weighted kernels.

    Every input pixel scales the kernel (summed over the input channels of
    its group); the scaled kernels are placed ``stride`` apart (their taps
    ``dilation`` apart) and overlaps are summed. ``padding`` then crops that
    many pixels from each side (it undoes the padding of the convolution this
    one transposes) and ``output_padding`` keeps extra rows/columns at the
    bottom/right (several conv input sizes give the same output size).

    Args:
        x: float ``[B, C_in, H, W]``.
        weight: ``[C_in, C_out / groups, kh, kw]``, the layout of ``F.conv_transpose2d``.
        bias: ``[C_out]`` or None.
        stride, padding, output_padding, dilation: an int or ``(height, width)``;
            ``output_padding`` must be smaller than stride or dilation.
        groups: ``C_in`` and ``C_out`` are split into this many independent groups.

    Returns ``[B, C_out, H_out, W_out]`` with ``H_out = (H - 1) * stride - 2 *
    padding + dilation * (kh - 1) + output_padding + 1``; equals
    ``F.conv_transpose2d`` (Dumoulin & Visin, 2016). It is the adjoint
    (gradient) of ``F.conv2d`` with the same weight.
    """
    _check_4d(x)
    _check_4d(weight, "weight", "[C_in, C_out / groups, kh, kw]")
    stride = _pair(stride, "stride", 1)
    padding = _pair(padding, "padding", 0)
    output_padding = _pair(output_padding, "output_padding", 0)
    dilation = _pair(dilation, "dilation", 1)
    groups = _int(groups, "groups", 1)
    if not x.is_floating_point() or weight.dtype != x.dtype:
        raise TypeError(
            f"x and weight must share one floating-point dtype, got {x.dtype} and {weight.dtype}"
        )
    batch, in_channels, height, width = x.shape
    if weight.shape[0] != in_channels:
        raise ValueError(
            f"weight.shape[0] must equal the input channels of x ({in_channels}), "
            f"got weight of shape {tuple(weight.shape)}"
        )
    if in_channels % groups:
        raise ValueError(f"groups ({groups}) must divide the input channels ({in_channels})")
    out_channels = weight.shape[1] * groups
    kh, kw = weight.shape[-2:]
    if bias is not None and (not isinstance(bias, torch.Tensor) or bias.shape != (out_channels,)):
        got = tuple(bias.shape) if isinstance(bias, torch.Tensor) else type(bias).__name__
        raise ValueError(f"bias must be a tensor of shape ({out_channels},), got {got}")
    for axis in range(2):
        if output_padding[axis] >= max(stride[axis], dilation[axis]):
            raise ValueError(
                f"output_padding must be smaller than stride or dilation, got "
                f"output_padding={output_padding}, stride={stride}, dilation={dilation}"
            )
    # Before cropping, the canvas spans every placed kernel.
    full_h = (height - 1) * stride[0] + dilation[0] * (kh - 1) + 1
    full_w = (width - 1) * stride[1] + dilation[1] * (kw - 1) + 1
    out_h = full_h - 2 * padding[0] + output_padding[0]
    out_w = full_w - 2 * padding[1] + output_padding[1]
    if out_h < 1 or out_w < 1:
        raise ValueError(f"padding={padding} leaves an empty output ({out_h} x {out_w})")

    # 1. One scaled kernel per input pixel and output channel:
    #    scaled[b, g, o, tap, pixel] = sum_i x[b, g, i, pixel] * weight[g, i, o, tap].
    per_group = in_channels // groups
    x_flat = x.reshape(batch, groups, per_group, height * width)
    w_flat = weight.reshape(groups, per_group, weight.shape[1], kh * kw)
    scaled = torch.einsum("bgip,giot->bgotp", x_flat, w_flat)
    # 2. Place kernel number `pixel` at (row * stride, col * stride) and sum the
    #    overlaps: that scatter-add is exactly F.fold (col2im), whose input is
    #    [B, C_out * kh * kw, number of placements].
    canvas = F.fold(
        scaled.reshape(batch, out_channels * kh * kw, height * width),
        output_size=(full_h, full_w),
        kernel_size=(kh, kw),
        dilation=dilation,
        stride=stride,
    )
    # 3. Crop `padding` from every side; output_padding may reach past the
    #    canvas, where no kernel was placed: those rows are zero.
    canvas = F.pad(canvas, (0, output_padding[1], 0, output_padding[0]))
    out = canvas[..., padding[0] : padding[0] + out_h, padding[1] : padding[1] + out_w]
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


def pixel_shuffle(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Sub-pixel convolution's rearrangement: ``factor**2`` channels become a ``factor x factor`` block.

    ``[B, C * r * r, H, W] -> [B, C, H * r, W * r]`` with
    ``out[b, c, h * r + i, w * r + j] = x[b, c * r * r + i * r + j, h, w]``.
    A convolution producing ``C * r * r`` channels followed by this upsamples
    with every output pixel computed from the same input footprint, hence
    without the checkerboard of a transposed convolution whose kernel size is
    not a multiple of its stride (Shi et al., CVPR 2016). Equals ``F.pixel_shuffle``.
    """
    _check_4d(x)
    r = _int(factor, "factor", 1)
    batch, channels, height, width = x.shape
    if channels % (r * r):
        raise ValueError(
            f"the channels of x ({channels}) must be divisible by factor**2 ({r * r})"
        )
    # Split the channel axis into (C, i, j) and move i next to H, j next to W.
    x = x.reshape(batch, channels // (r * r), r, r, height, width)
    x = x.permute(0, 1, 4, 2, 5, 3)  # [B, C, H, i, W, j]
    return x.reshape(batch, channels // (r * r), height * r, width * r)


# ----------------------------------------------------------------------------
# checkerboard artefacts


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
    kh, kw = _pair(kernel_size, "kernel_size", 1)
    stride = _pair(stride, "stride", 1)
    height, width = _pair(input_size, "input_size", 1)
    ones = torch.ones(1, 1, height, width)
    return transposed_conv2d(ones, torch.ones(1, 1, kh, kw), stride=stride)[0, 0]


def checkerboard_strength(x: torch.Tensor, period: int = 2) -> torch.Tensor:
    """Strength of a pattern that repeats every ``period`` pixels, per image.

    The image is split into its ``period x period`` sub-pixel grids (pixel
    ``(i, j)`` belongs to grid ``(i % period, j % period)``); the result is the
    standard deviation of the grids' mean values, averaged over channels:
    float32 ``[B]`` for ``x`` float ``[B, C, H, W]`` (cropped to multiples of
    ``period``). Image content averages out over a grid, a checkerboard does
    not: a flat image scores 0, a pure +-a checkerboard scores about ``a``. By
    Parseval it is the energy of the image at the frequencies that are multiples
    of ``1 / period`` (except 0), where upsampling artefacts live.
    """
    _check_4d(x)
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
    p = _int(period, "period", 2)
    batch, channels, height, width = x.shape
    if height < p or width < p:
        raise ValueError(f"x must be at least period x period ({p} x {p}), got {height} x {width}")
    h, w = height // p * p, width // p * p
    grids = x[..., :h, :w].reshape(batch, channels, h // p, p, w // p, p)
    means = grids.mean(dim=(2, 4)).flatten(2)  # [B, C, p * p]: one mean per sub-pixel grid
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
        in_channels = _int(in_channels, "in_channels", 1)
        out_channels = _int(out_channels, "out_channels", 1)
        self.factor = factor = _int(factor, "factor", 1)
        kernel_size = _int(kernel_size, "kernel_size", 1)
        if method not in self.METHODS:
            raise ValueError(f"method must be one of {self.METHODS}, got {method!r}")
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
        _check_4d(x)
        return self.layer(x)
