"""Dilated (atrous) convolution and receptive fields (lesson 04).

A dilated convolution spaces the kernel taps ``rate`` pixels apart: a large
but sparse kernel that sees a wider context with the same number of weights
and without lowering the resolution (Yu & Koltun, "Multi-scale context
aggregation by dilated convolutions", ICLR 2016; the "atrous" convolution of
DeepLab, Chen et al., ICLR 2015 / TPAMI 2018).

``receptive_field`` follows the recurrence of Araujo, Norris & Sim,
"Computing receptive fields of convolutional neural networks" (Distill,
2019): with ``span = dilation * (kernel - 1) + 1`` the footprint of one layer,

    size  += (span - 1) * jump
    start += ((span - 1) / 2 - padding) * jump
    jump  *= stride

where ``jump`` is the distance in input pixels between neighbouring outputs.

``gradient_extent`` measures the field of a real network from a gradient, to check the
recurrence. ``footprint`` goes one step further than the size: it counts, for every input
pixel inside the field, how many paths through a stack of dilated convolutions
reach one output. Zeros inside the field are the "gridding" of stacked equal
rates (Wang et al., "Understanding convolution for semantic segmentation",
WACV 2018, who propose rates like 1, 2, 5 instead).

``effective_receptive_field`` measures what the theoretical field does not
say (lesson 08): how strongly each input pixel moves one output of a real
model, by back-propagation (Luo, Li, Urtasun & Zemel, NeurIPS 2016). The
influence concentrates in a Gaussian-like core far smaller than the field;
``erf_profile``, ``erf_extent`` and ``erf_support`` measure its size.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from segedu import validate

__all__ = [
    "dilate_kernel",
    "dilated_conv2d",
    "receptive_field",
    "ReceptiveField",
    "LayerRow",
    "footprint",
    "coverage",
    "gradient_extent",
    "effective_receptive_field",
    "erf_profile",
    "erf_extent",
    "erf_support",
]


def dilate_kernel(weight: torch.Tensor, rate) -> torch.Tensor:
    """Insert ``rate - 1`` zeros between the taps of a kernel.

    ``[C_out, C_in, kh, kw] -> [C_out, C_in, rate * (kh - 1) + 1, rate * (kw - 1) + 1]``;
    ``rate`` is an int or ``(rate_h, rate_w)``. A 3x3 kernel at rate 2 becomes 5x5
    with 9 non-zero taps: the field grows, the number of weights does not.
    """
    validate.tensor(weight, "weight", 4, layout="[C_out, C_in, kh, kw]")
    rate_h, rate_w = validate.pair(rate, "rate", 1)
    c_out, c_in, kh, kw = weight.shape
    sparse = weight.new_zeros(c_out, c_in, rate_h * (kh - 1) + 1, rate_w * (kw - 1) + 1)
    sparse[..., ::rate_h, ::rate_w] = weight  # a differentiable copy: gradients reach weight
    return sparse


def dilated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    dilation=1,
    stride=1,
    padding=0,
) -> torch.Tensor:
    """Dilated convolution by hand: dilate the kernel, then run an ordinary convolution.

    Args:
        x: float ``[B, C_in, H, W]``.
        weight: ``[C_out, C_in, kh, kw]``; bias: ``[C_out]`` or None.
        dilation, stride, padding: an int or ``(height, width)``.
            ``padding = dilation * (k - 1) // 2`` keeps the size (odd k, stride 1).

    Returns ``[B, C_out, H_out, W_out]`` with ``H_out = (H + 2 * padding -
    dilation * (kh - 1) - 1) // stride + 1``; equals ``F.conv2d(x, weight, bias,
    stride, padding, dilation)``. Multiplying by the inserted zeros is wasted
    work that torch's own kernel skips; here it makes the idea visible.
    """
    validate.images(x, "x")
    validate.tensor(weight, "weight", 4, layout="[C_out, C_in, kh, kw]")
    dilation = validate.pair(dilation, "dilation", 1)
    stride = validate.pair(stride, "stride", 1)
    padding = validate.pair(padding, "padding", 0)
    if weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"weight.shape[1] must equal the channels of x ({x.shape[1]}), "
            f"got weight of shape {tuple(weight.shape)}"
        )
    if bias is not None and (not isinstance(bias, torch.Tensor) or bias.shape != weight.shape[:1]):
        got = tuple(bias.shape) if isinstance(bias, torch.Tensor) else type(bias).__name__
        raise ValueError(f"bias must be a tensor of shape ({weight.shape[0]},), got {got}")
    sparse = dilate_kernel(weight, dilation)
    for axis, name in ((-2, "height"), (-1, "width")):
        if x.shape[axis] + 2 * padding[axis] < sparse.shape[axis]:
            raise ValueError(
                f"x is too small: padded {name} {x.shape[axis] + 2 * padding[axis]} < "
                f"dilated kernel {sparse.shape[axis]}"
            )
    return F.conv2d(x, sparse, bias, stride=stride, padding=padding)


# ----------------------------------------------------------------------------
# receptive fields


class LayerRow(NamedTuple):
    """One layer of a receptive-field table, with the field after that layer."""

    name: str
    kernel: int
    stride: int
    dilation: int
    padding: int
    size: int  # receptive field (input pixels) of one output of this layer
    jump: int  # input pixels between neighbouring outputs of this layer
    start: float  # input coordinate of the centre of the first output's field


@dataclass(frozen=True)
class ReceptiveField:
    """The receptive field of the last layer in input pixels (one axis; square layers).

    ``size``: pixels one output sees; ``jump``: effective stride (input pixels
    between neighbouring outputs); ``start``: input coordinate (pixel centres
    at 0, 1, ...) of the centre of output 0's field, so output ``i`` is centred
    at ``start + i * jump``; negative when padding moved it outside the image.
    ``table``: one ``LayerRow`` per layer; ``str()`` formats it.
    """

    size: int
    jump: int
    start: float
    table: tuple[LayerRow, ...] = ()

    def __str__(self) -> str:
        rows = [LayerRow._fields] + [tuple(str(value) for value in row) for row in self.table]
        widths = [max(len(row[column]) for row in rows) for column in range(len(LayerRow._fields))]
        lines = []
        for row in rows:  # names left-aligned, numbers right-aligned
            cells = [row[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(row[1:], widths[1:])]
            lines.append("  ".join(cells))
        lines.append(f"receptive field {self.size} px, jump {self.jump}, start {self.start}")
        return "\n".join(lines)


# Layers that change the geometry in a way the recurrence above does not cover.
_UNSUPPORTED = (
    nn.ConvTranspose2d, nn.Upsample, nn.PixelShuffle, nn.Linear,
    nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Conv1d, nn.Conv3d,
    nn.MaxPool1d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool3d,
)  # fmt: skip


def _square(value, what: str, name: str) -> int:
    """One number for both axes (the table describes square layers)."""
    if isinstance(value, (tuple, list)):
        if len(set(value)) != 1:
            raise ValueError(
                f"layer {name} has a non-square {what} {tuple(value)}; "
                "receptive_field describes square layers"
            )
        value = value[0]
    return value


def _module_layers(module: nn.Module):
    """(name, kernel, stride, dilation, padding) of each Conv2d / MaxPool2d / AvgPool2d, in order."""
    for path, layer in module.named_modules():
        name = f"{path or 'module'} ({type(layer).__name__})"
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            kernel = _square(layer.kernel_size, "kernel", name)
            stride = _square(layer.stride, "stride", name)
            dilation = _square(getattr(layer, "dilation", 1), "dilation", name)  # AvgPool2d has none
            padding = layer.padding
            if padding == "valid":
                padding = 0
            elif padding == "same":  # torch pads d * (k - 1) in all, the odd pixel at the bottom/right
                padding = dilation * (kernel - 1) // 2
            yield name, kernel, stride, dilation, _square(padding, "padding", name)
        elif isinstance(layer, _UNSUPPORTED):
            raise ValueError(
                f"layers contains {name}, whose receptive field this recurrence does not cover "
                "(pass the convolutional part only, e.g. vgg.features)"
            )
        # anything else is pointwise (ReLU, BatchNorm, Dropout) or a container: nothing changes


def _tuple_layers(layers: Iterable):
    """(name, kernel, stride, dilation, padding) from (kernel, stride[, dilation[, padding]]) tuples."""
    for i, spec in enumerate(layers):
        if not isinstance(spec, (tuple, list)) or not 2 <= len(spec) <= 4:
            raise TypeError(
                f"layers[{i}] must be a tuple (kernel, stride[, dilation[, padding]]), got {spec!r}"
            )
        kernel, stride = spec[:2]
        dilation = spec[2] if len(spec) > 2 else 1
        padding = spec[3] if len(spec) > 3 else 0
        yield f"layer {i + 1}", kernel, stride, dilation, padding


def receptive_field(layers) -> ReceptiveField:
    """Receptive field, effective stride and centre of a stack of layers run in sequence.

    ``layers`` is either a sequence of ``(kernel, stride)``, ``(kernel, stride,
    dilation)`` or ``(kernel, stride, dilation, padding)`` tuples (padding only
    moves ``start``), or an ``nn.Module`` whose ``Conv2d`` / ``MaxPool2d`` /
    ``AvgPool2d`` layers run one after another in registration order (e.g.
    ``torchvision.models.vgg16(weights=None).features``: 212 pixels, jump 32).
    Pointwise layers are skipped; layers whose field depends on the input size
    (adaptive pooling, Linear) or that upsample raise ``ValueError``.
    """
    if isinstance(layers, nn.Module):
        specs = _module_layers(layers)
    elif isinstance(layers, (str, bytes)) or not isinstance(layers, Iterable):
        raise TypeError(
            f"layers must be an nn.Module or a sequence of (kernel, stride[, dilation[, padding]]) "
            f"tuples, got {type(layers).__name__}"
        )
    else:
        specs = _tuple_layers(layers)

    size, jump, start, table = 1, 1, 0.0, []
    for name, kernel, stride, dilation, padding in specs:
        kernel = validate.integer(kernel, f"kernel of {name}", minimum=1)
        stride = validate.integer(stride, f"stride of {name}", minimum=1)
        dilation = validate.integer(dilation, f"dilation of {name}", minimum=1)
        padding = validate.integer(padding, f"padding of {name}", minimum=0)
        span = dilation * (kernel - 1) + 1  # input positions of one output, gaps included
        size += (span - 1) * jump
        start += ((span - 1) / 2 - padding) * jump
        jump *= stride
        table.append(LayerRow(name, kernel, stride, dilation, padding, size, jump, start))
    return ReceptiveField(size=size, jump=jump, start=start, table=tuple(table))


def footprint(rates, kernel_size: int = 3) -> torch.Tensor:
    """Which input pixels reach one output of a stack of stride-1 dilated convolutions, and by how many paths.

    Args:
        rates: the dilation rate of each layer, e.g. ``(1, 2, 4)``; every layer is a
            ``kernel_size x kernel_size`` convolution with stride 1.
        kernel_size: odd (centred kernels).

    Returns int64 ``[S, S]`` with ``S = receptive_field(...).size = 1 + (k - 1) * sum(rates)``:
    entry ``(i, j)`` is the number of paths from input pixel ``(i, j)`` to the centre output,
    i.e. the output's gradient with respect to that pixel when every weight is 1. It sums to
    ``k ** (2 * len(rates))``. A zero inside the square is a pixel the output never sees although
    it lies within the receptive field: rates ``(2, 2, 2)`` only ever see every other row and
    column ("gridding"), rates ``(1, 2, 4)`` or ``(1, 2, 5)`` see every pixel.
    """
    kernel_size = validate.positive_int(kernel_size, "kernel_size")
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd (a centred kernel), got {kernel_size}")
    if isinstance(rates, (str, bytes)) or not isinstance(rates, Iterable):
        raise TypeError(f"rates must be a sequence of ints, got {type(rates).__name__}")
    rates = [validate.positive_int(rate, f"rates[{i}]") for i, rate in enumerate(rates)]
    if not rates:
        raise ValueError("rates must hold at least one dilation rate, got an empty sequence")
    size = 1 + (kernel_size - 1) * sum(rates)
    paths = torch.zeros(1, 1, size, size, dtype=torch.float64)
    paths[..., size // 2, size // 2] = 1.0  # one output; spread it back through the layers
    ones = torch.ones(1, 1, kernel_size, kernel_size, dtype=torch.float64)
    for rate in reversed(rates):  # the kernels are symmetric: correlation = its transpose
        paths = F.conv2d(paths, ones, padding=rate * (kernel_size - 1) // 2, dilation=rate)
    return paths[0, 0].round().long()


def coverage(rates, kernel_size: int = 3) -> float:
    """The fraction of the receptive field that one output of the stack actually sees (``footprint > 0``).

    1.0 for rates such as ``(1, 2, 4)``; 49 / 169 = 0.29 for ``(2, 2, 2)``, whose 13 x 13 field is seen only on
    its 7 even rows and 7 even columns (the "gridding" of Wang et al., "Understanding convolution for semantic
    segmentation", WACV 2018).
    """
    return float((footprint(rates, kernel_size) > 0).double().mean())


def gradient_extent(model: nn.Module, size: int = 129, in_channels: int = 1) -> int:
    """The receptive field of ``model`` measured instead of computed: the height of the input region that moves
    the centre output.

    ``model`` maps ``[1, in_channels, size, size]`` to ``[1, C, h, w]``; the gradient of output ``(0, 0, h // 2,
    w // 2)`` with respect to a zero input is non-zero exactly on the pixels it depends on (unless weights cancel:
    use positive weights). Returns the number of rows from the first to the last such pixel. ``size`` must
    exceed the field, or the count stops at the border.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    size = validate.positive_int(size, "size")
    in_channels = validate.positive_int(in_channels, "in_channels")
    x = torch.zeros(1, in_channels, size, size, requires_grad=True)
    out = model(x)
    out[0, 0, out.shape[-2] // 2, out.shape[-1] // 2].backward()
    rows = x.grad[0].abs().sum((0, 2)).nonzero()
    return int(rows.max() - rows.min() + 1) if len(rows) else 0


# ----------------------------------------------------------------------------
# effective receptive field (lesson 08)


def effective_receptive_field(model, input_size, *, inputs: torch.Tensor | None = None, samples: int = 8,
                              in_channels: int = 3, seed: int = 0) -> torch.Tensor:
    """Effective receptive field (Luo, Li, Urtasun & Zemel, "Understanding the effective receptive field in
    deep convolutional neural networks", NeurIPS 2016): how much each input pixel moves the centre output.

    A gradient of 1 is placed on every channel of the centre output pixel ``(h // 2, w // 2)`` and
    back-propagated to the input; the result is ``|d out_centre / d x|`` summed over the input channels and
    averaged over the images: float32 ``[H, W]``, zero exactly outside the theoretical receptive field. The
    absolute value keeps the signs of different channels and images from cancelling: the map measures how
    strongly a pixel influences the centre, not in which direction.

    Args:
        model: a module (or function) mapping ``[B, in_channels, H, W]`` to ``[B, C, h, w]`` (or a dict with
            ``"out"``): a whole model, or a prefix of its layers for the ERF of a shallow layer.
        input_size: ``H`` or ``(H, W)``.
        inputs: images ``[B, in_channels, H, W]`` to average over; default ``samples`` standard-normal images
            (``seed``), as in the paper.
        samples, in_channels, seed: for the random inputs.

    The model runs in eval mode (restored afterwards): in train mode BatchNorm's batch statistics would tie
    every pixel to every other one. Only the input's gradient is computed; the parameters' ``.grad`` are
    left untouched.
    """
    height, width = validate.pair(input_size, "input_size", 1)
    if not callable(model):
        raise TypeError(f"model must be a module or function [B, C, H, W] -> [B, C', h, w], got {type(model).__name__}")
    params = next(model.parameters(), None) if isinstance(model, torch.nn.Module) else None
    device = params.device if params is not None else torch.device("cpu")
    if inputs is None:
        samples = validate.positive_int(samples, "samples")
        in_channels = validate.positive_int(in_channels, "in_channels")
        generator = torch.Generator().manual_seed(validate.integer(seed, "seed"))
        inputs = torch.randn(samples, in_channels, height, width, generator=generator)
    else:
        validate.tensor(inputs, "inputs", 4, layout=f"[B, C, {height}, {width}]")
        if tuple(inputs.shape[-2:]) != (height, width):
            raise ValueError(f"inputs must be [B, C, {height}, {width}] (input_size), got {tuple(inputs.shape)}")
    x = inputs.detach().to(device=device, dtype=torch.float32).requires_grad_(True)

    was_training = getattr(model, "training", None)
    if was_training is not None:
        model.eval()
    try:
        with torch.enable_grad():
            out = model(x)
            if isinstance(out, dict):
                out = out["out"]
            if not isinstance(out, torch.Tensor):
                raise TypeError(f"model must return a [B, C, h, w] tensor, got {type(out).__name__}")
            if out.dim() != 4:
                raise ValueError(f"model must return a [B, C, h, w] map, got {tuple(out.shape)}")
            h, w = out.shape[-2:]
            # Images of a batch are independent in eval mode: one backward gives each image's own gradient.
            (grad,) = torch.autograd.grad(out[:, :, h // 2, w // 2].sum(), x)
    finally:
        if was_training is not None:
            model.train(was_training)
    return grad.abs().sum(1).mean(0).float()


def erf_profile(erf: torch.Tensor) -> torch.Tensor:
    """Fraction of an ERF map's mass inside centred squares: ``erf [H, W]`` -> float64 ``[R + 1]``, entry r
    the mass within Chebyshev distance r of the centre ``(H // 2, W // 2)`` (a square of side ``2r + 1``)
    over the total. Non-decreasing, ending at 1."""
    validate.tensor(erf, "erf", 2, layout="map [H, W]")
    height, width = erf.shape
    rows = (torch.arange(height, device=erf.device) - height // 2).abs()
    cols = (torch.arange(width, device=erf.device) - width // 2).abs()
    radius = torch.maximum(rows[:, None], cols[None, :])  # Chebyshev distance to the centre
    mass = torch.bincount(radius.flatten(), weights=erf.flatten().double().abs())
    total = mass.sum()
    if total <= 0:
        raise ValueError("erf is zero everywhere: the centre output does not depend on the input")
    return mass.cumsum(0) / total


def erf_extent(erf: torch.Tensor, mass: float = 0.9) -> int:
    """Side ``2r + 1`` of the smallest centred square holding ``mass`` of the ERF (``erf_profile``): a size to
    compare with the theoretical receptive field. Can exceed the map when its centre is off-centre."""
    mass = validate.number(mass, "mass", 0.0, 1.0, open_minimum=True)
    profile = erf_profile(erf)
    radius = int(torch.searchsorted(profile, torch.tensor([mass - 1e-12], dtype=profile.dtype, device=profile.device)))
    return 2 * radius + 1


def erf_support(erf: torch.Tensor) -> tuple[int, int]:
    """Height and width of the bounding box of the pixels that reach the centre at all (``erf > 0``): the
    theoretical receptive field, clipped by the input (use an input larger than the field to measure it)."""
    validate.tensor(erf, "erf", 2, layout="map [H, W]")
    rows, cols = (erf > 0).nonzero(as_tuple=True)
    if rows.numel() == 0:
        return 0, 0
    return int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1
