"""Upsampling, written from the idea each method teaches (lessons 02 and 03).

Fixed (nothing learned):

* ``nearest_upsample``  - copy each pixel into a ``factor x factor`` block.
* ``bed_of_nails``      - put each pixel at the top-left of its block, zeros elsewhere.
* ``max_unpool``        - put each value back where max pooling found its maximum
  (the "switches" of Zeiler & Fergus, ECCV 2014; SegNet, Badrinarayanan et al. 2017).
* ``bilinear_upsample`` - the four-neighbour interpolation formula; ``sample_positions``
  says where its output pixels sit in the input (``align_corners`` both ways).

Learned:

* ``transposed_conv2d`` - every input pixel scales the kernel, the scaled kernels
  are placed ``stride`` apart and overlaps are summed (Dumoulin & Visin, "A guide
  to convolution arithmetic for deep learning", 2016).
* ``bilinear_kernel``   - FCN's initialiser that makes a transposed convolution
  start as bilinear upsampling (Long, Shelhamer & Darrell, CVPR 2015);
  ``bilinear_by_transposed_conv`` upsamples with it.
* ``pixel_shuffle``     - sub-pixel convolution: channels rearranged into space
  (Shi et al., CVPR 2016).

Compared (lesson 02): ``upsample_with`` shrinks an image and grows it back with one
of ``UPSAMPLING_METHODS``.

The learned upsampling layers and their checkerboard artefacts (lesson 03) live in
``segedu.ops.checkerboard``.

Every image is ``[B, C, H, W]``. Each function equals its torch counterpart
(``F.interpolate``, ``F.max_unpool2d``, ``F.conv_transpose2d``,
``F.pixel_shuffle``); ``tests/test_upsample.py`` checks that.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from segedu import validate

__all__ = [
    "nearest_upsample",
    "bed_of_nails",
    "max_unpool",
    "bilinear_upsample",
    "sample_positions",
    "bilinear_kernel",
    "bilinear_by_transposed_conv",
    "transposed_conv2d",
    "pixel_shuffle",
    "UPSAMPLING_METHODS",
    "upsample_with",
]


# ----------------------------------------------------------------------------
# fixed upsampling


def nearest_upsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Nearest-neighbour upsampling: each pixel becomes a ``factor x factor`` block.

    ``[B, C, H, W] -> [B, C, H * factor, W * factor]``; any dtype. Equals
    ``F.interpolate(x, scale_factor=factor, mode="nearest")``.
    """
    validate.tensor(x, "x", 4, layout="[B, C, H, W]")
    factor = validate.positive_int(factor, "factor")
    return x.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def bed_of_nails(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Bed-of-nails upsampling: each pixel at the top-left of its block, zeros elsewhere.

    ``[B, C, H, W] -> [B, C, H * factor, W * factor]``; any dtype. It is a
    transposed convolution (stride ``factor``) whose kernel is 1 at its top-left
    tap and 0 elsewhere, the fixed "unpooling" that max unpooling refines.
    """
    validate.tensor(x, "x", 4, layout="[B, C, H, W]")
    factor = validate.positive_int(factor, "factor")
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
    validate.tensor(x, "x", 4, layout="[B, C, H, W]")
    validate.tensor(indices, "indices")
    if indices.shape != x.shape:
        raise ValueError(
            f"indices must have the shape of x {tuple(x.shape)}, got {tuple(indices.shape)}"
        )
    if indices.dtype != torch.int64:
        raise TypeError(f"indices must be int64 (from max_pool2d), got {indices.dtype}")
    height, width = validate.pair(output_size, "output_size", 1)
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
        return validate.pair(size, "size", 1), (None, None)
    factors = scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor,) * 2
    if len(factors) != 2:
        raise ValueError(f"scale_factor must be a number or a pair, got {scale_factor!r}")
    factors = [validate.positive_number(f, "scale_factor") for f in factors]
    # Like F.interpolate: the output size is rounded down.
    out = tuple(math.floor(n * float(f)) for n, f in zip(in_size, factors))
    if min(out) < 1:
        raise ValueError(
            f"scale_factor {scale_factor!r} shrinks the input {tuple(in_size)} to {out}"
        )
    return out, tuple(float(f) for f in factors)


def _positions(in_size: int, out_size: int, align_corners: bool, scale_factor=None) -> torch.Tensor:
    """Float64 ``[out_size]``: where each output pixel's centre sits in input pixel coordinates (not clamped)."""
    dst = torch.arange(out_size, dtype=torch.float64)
    if align_corners:
        # The centres of the corner pixels of input and output coincide.
        return dst * ((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)
    # Pixels are unit squares: the centre of output pixel i sits at i + 0.5 in
    # output units, (i + 0.5) * scale in input units, and pixel centres are at
    # index + 0.5. torch takes scale = 1 / scale_factor when one was given (not
    # in / out, which differs when in * scale_factor is not an integer).
    scale = 1.0 / scale_factor if scale_factor is not None else in_size / out_size
    return (dst + 0.5) * scale - 0.5


def sample_positions(in_size: int, out_size: int, align_corners: bool = False) -> torch.Tensor:
    """Where bilinear interpolation samples the input, along one axis: float64 ``[out_size]``.

    Entry ``i`` is the position of output pixel ``i``'s centre in input pixel
    coordinates (input centres at 0, 1, ..., ``in_size - 1``):
    ``i * (in - 1) / (out - 1)`` with ``align_corners=True`` (the corner centres
    coincide), ``(i + 0.5) * in / out - 0.5`` with ``False`` (pixels are unit
    squares whose outer edges coincide). Not clamped: with ``False`` the first
    positions of an upsampling lie left of the first centre, where
    ``bilinear_upsample`` repeats the edge pixel.
    """
    in_size = validate.positive_int(in_size, "in_size")
    out_size = validate.positive_int(out_size, "out_size")
    return _positions(in_size, out_size, validate.flag(align_corners, "align_corners"))


def _source_coordinates(in_size: int, out_size: int, scale_factor, align_corners: bool):
    """Along one axis, for every output index: the two input neighbours and the weight of the second.

    The output is ``(1 - w1) * input[i0] + w1 * input[i1]``. Computed in float64
    on the CPU (the vectors are short), moved to the image's device by the caller.
    """
    if out_size == in_size:
        # An axis that keeps its size is copied, whatever scale_factor gave
        # that size (e.g. 5 * 1.1 -> 5): torch's CPU kernel does the same.
        src = torch.arange(out_size, dtype=torch.float64)
    else:
        # Left of the first centre there is nothing to interpolate: use pixel 0.
        src = _positions(in_size, out_size, align_corners, scale_factor).clamp(min=0.0)
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
    validate.images(x, "x")
    validate.flag(align_corners, "align_corners")
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
    in_channels = validate.positive_int(in_channels, "in_channels")
    out_channels = validate.positive_int(out_channels, "out_channels")
    kernel_size = validate.positive_int(kernel_size, "kernel_size")
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


def bilinear_by_transposed_conv(x: torch.Tensor, factor: int, replicate_edges: bool = False) -> torch.Tensor:
    """Bilinear upsampling by an integer ``factor`` as a transposed convolution with FCN's bilinear kernel.

    ``x`` float ``[B, C, H, W] -> [B, C, factor * H, factor * W]``: ``transposed_conv2d`` with
    ``bilinear_kernel(C, C, 2 * factor - factor % 2)``, stride ``factor`` and padding ``factor // 2`` (the
    kernel size and padding of Caffe's ``BilinearFiller``, which FCN uses; Long et al., CVPR 2015). Inside
    the image it equals ``F.interpolate(x, scale_factor=factor, mode="bilinear")`` (``align_corners=False``);
    in a border band ``factor // 2`` pixels wide it differs, because the transposed convolution sees zeros
    beyond the edge. With ``replicate_edges=True`` the input is first padded by one replicated pixel on every
    side and ``factor`` more pixels are cropped: then it equals ``F.interpolate`` everywhere.
    """
    validate.images(x, "x")
    factor = validate.positive_int(factor, "factor")
    replicate_edges = validate.flag(replicate_edges, "replicate_edges")
    kernel = bilinear_kernel(x.shape[1], x.shape[1], 2 * factor - factor % 2).to(x)
    if replicate_edges:
        return transposed_conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, stride=factor,
                                 padding=factor // 2 + factor)
    return transposed_conv2d(x, kernel, stride=factor, padding=factor // 2)


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
    validate.tensor(x, "x", 4, layout="[B, C, H, W]")
    validate.tensor(weight, "weight", 4, layout="[C_in, C_out / groups, kh, kw]")
    stride = validate.pair(stride, "stride", 1)
    padding = validate.pair(padding, "padding", 0)
    output_padding = validate.pair(output_padding, "output_padding", 0)
    dilation = validate.pair(dilation, "dilation", 1)
    groups = validate.positive_int(groups, "groups")
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
    validate.tensor(x, "x", 4, layout="[B, C, H, W]")
    r = validate.positive_int(factor, "factor")
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
# the methods compared (lesson 02)


# The names the lesson's dropdown shows, in the order of the lesson.
UPSAMPLING_METHODS = ("nearest", "bed of nails", "max unpooling", "bilinear", "bilinear, align_corners",
                      "transposed conv, bilinear kernel")


def upsample_with(method: str, image: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Shrink ``image`` by ``factor`` and grow it back with ``method`` (one of ``UPSAMPLING_METHODS``).

    ``image`` float ``[B, C, H, W]`` is first cropped to ``[B, C, h, w]`` with ``h, w`` the largest
    multiples of ``factor`` (at most ``H, W``). Returns ``(small, upsampled)``: ``small`` float
    ``[B, C, h / factor, w / factor]`` and ``upsampled`` float ``[B, C, h, w]``. Max unpooling shrinks by
    max pooling (it needs the positions of the maxima, Zeiler & Fergus 2014), the others by averaging.
    "transposed conv, bilinear kernel" is FCN's initial upsampling layer (Long et al., CVPR 2015):
    ``transposed_conv2d`` with ``bilinear_kernel`` of size ``2 * factor - factor % 2``.
    """
    method = validate.choice(method, "method", UPSAMPLING_METHODS)
    validate.images(image, "image")
    factor = validate.positive_int(factor, "factor")
    if factor > min(image.shape[-2:]):
        raise ValueError(f"factor must be at most the image's height and width {tuple(image.shape[-2:])}, got {factor}")
    h, w = image.shape[-2] // factor * factor, image.shape[-1] // factor * factor
    image = image[..., :h, :w]
    if method == "max unpooling":
        small, indices = F.max_pool2d(image, factor, return_indices=True)
        return small, max_unpool(small, indices, (h, w))
    small = F.avg_pool2d(image, factor)
    if method == "nearest":
        return small, nearest_upsample(small, factor)
    if method == "bed of nails":
        return small, bed_of_nails(small, factor)
    if method == "bilinear":
        return small, bilinear_upsample(small, scale_factor=factor)
    if method == "bilinear, align_corners":
        return small, bilinear_upsample(small, size=(h, w), align_corners=True)
    # "transposed conv, bilinear kernel", the last choice
    return small, bilinear_by_transposed_conv(small, factor)
