"""Where VGG16 keeps its parameters, and how its fully connected layers become convolutions (lesson 05).

VGG16 (Simonyan & Zisserman, ICLR 2015) has 138.36 million parameters, and almost nine in ten of them sit
in the three fully connected layers at the end: fc6 alone maps the 512 x 7 x 7 = 25,088 numbers of the last
feature map to 4,096 outputs (102.8M weights). Those layers also fix the input size to 224 x 224.

Long, Shelhamer & Darrell ("Fully convolutional networks for semantic segmentation", CVPR 2015) noticed
that a fully connected layer looking at a ``C x k x k`` map *is* a ``k x k`` convolution with ``C`` input
channels, evaluated at a single position. ``convolutionalize`` performs that rewrite: on a 224 input the
convolutional network gives the same 1,000 scores; on a larger input it slides the classifier and returns a
*map* of scores, one per 32-pixel step - the first step from classification to segmentation.

``vgg16_table`` computes the per-layer table from torchvision's ``vgg16(weights=None)``, built on the
``meta`` device: only the shapes exist, no memory is allocated and nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from segedu import validate

__all__ = ["LayerRow", "vgg16_table", "format_table", "fc_share", "convolutionalize", "fully_convolutional_vgg"]


@dataclass(frozen=True)
class LayerRow:
    """One layer with parameters: ``kind`` is ``"conv"`` or ``"fc"``; ``kernel`` is the side of a conv
    kernel (0 for an FC layer); ``in_channels`` is the input width (the flattened size for an FC layer)."""

    name: str
    kind: str
    kernel: int
    in_channels: int
    out_channels: int
    params: int


def vgg16_table(model: nn.Module | None = None) -> list[LayerRow]:
    """The parameter table of VGG16: 13 conv layers named ``conv{stage}_{i}`` and ``fc6``, ``fc7``, ``fc8``.

    ``model`` defaults to ``torchvision.models.vgg16(weights=None)`` built on the meta device; pass any
    torchvision VGG (``vgg11``, ``vgg16_bn``, ...) to tabulate it instead (BatchNorm layers are left out of
    the rows: they hold 0.01% of the parameters). ``params`` counts weights and biases.
    """
    if model is None:
        import torchvision

        with torch.device("meta"):  # shapes only: no 550 MB allocation, no random init
            model = torchvision.models.vgg16(weights=None)
    if not (hasattr(model, "features") and hasattr(model, "classifier")):
        raise TypeError(f"model must be a torchvision VGG (with .features and .classifier), got {type(model).__name__}")

    def count(layer):
        return sum(p.numel() for p in layer.parameters())

    rows, stage, index = [], 1, 0
    for layer in model.features:
        if isinstance(layer, nn.MaxPool2d):
            stage, index = stage + 1, 0
        elif isinstance(layer, nn.Conv2d):
            index += 1
            rows.append(LayerRow(f"conv{stage}_{index}", "conv", layer.kernel_size[0], layer.in_channels,
                                 layer.out_channels, count(layer)))
    linears = [layer for layer in model.classifier if isinstance(layer, nn.Linear)]
    for number, layer in enumerate(linears, start=6):
        rows.append(LayerRow(f"fc{number}", "fc", 0, layer.in_features, layer.out_features, count(layer)))
    return rows


def fc_share(rows: list[LayerRow]) -> float:
    """Fraction of the parameters that sit in the fully connected layers."""
    total = sum(r.params for r in rows)
    return sum(r.params for r in rows if r.kind == "fc") / total


def format_table(rows: list[LayerRow]) -> str:
    """A plain-text table of ``rows`` with parameters in millions and the share of the total."""
    total = sum(r.params for r in rows)
    lines = [f"{'layer':<8} {'type':<5} {'kernel':>6} {'in':>7} {'out':>6} {'params (M)':>11} {'share':>7}"]
    for r in rows:
        kernel = f"{r.kernel}x{r.kernel}" if r.kind == "conv" else "-"
        lines.append(f"{r.name:<8} {r.kind:<5} {kernel:>6} {r.in_channels:>7} {r.out_channels:>6} "
                     f"{r.params / 1e6:>11.3f} {r.params / total:>7.1%}")
    lines.append(f"{'total':<8} {'':<5} {'':>6} {'':>7} {'':>6} {total / 1e6:>11.3f} {1:>7.1%}")
    return "\n".join(lines)


def convolutionalize(linear: nn.Linear, in_channels: int, kernel_size) -> nn.Conv2d:
    """The convolution that computes ``linear`` on every ``kernel_size`` window of a ``[B, in_channels, H, W]`` map.

    ``linear`` must read flattened ``[in_channels, kh, kw]`` inputs (``in_features = in_channels * kh * kw``,
    flattened channel-first, as ``torch.flatten`` of a ``[B, C, kh, kw]`` map does). Returns an
    ``nn.Conv2d(in_channels, out_features, kernel_size)`` (no padding, stride 1) holding a copy of the same
    numbers: ``weight = linear.weight.view(out, in_channels, kh, kw)``. On a map of exactly ``kh x kw`` it
    outputs ``[B, out, 1, 1]`` equal to ``linear(x.flatten(1))``; on a larger map, ``[B, out, H - kh + 1,
    W - kw + 1]``: the classifier applied at every position (Long, Shelhamer & Darrell, CVPR 2015).
    """
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
    kh, kw = validate.pair(kernel_size, "kernel_size", minimum=1)
    in_channels = validate.positive_int(in_channels, "in_channels")
    if linear.in_features != in_channels * kh * kw:
        raise ValueError(
            f"linear.in_features ({linear.in_features}) must equal in_channels * kh * kw = "
            f"{in_channels} * {kh} * {kw} = {in_channels * kh * kw}"
        )
    weight = linear.weight
    conv = nn.Conv2d(in_channels, linear.out_features, (kh, kw), bias=linear.bias is not None,
                     device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(weight.view(linear.out_features, in_channels, kh, kw))
        if linear.bias is not None:
            conv.bias.copy_(linear.bias)
    return conv


def fully_convolutional_vgg(vgg: nn.Module) -> nn.Sequential:
    """A torchvision VGG with its classifier convolutionalized: ``[B, 3, H, W] -> [B, 1000, H/32 - 6, W/32 - 6]``.

    ``features`` is shared (not copied); fc6 becomes a 7x7 convolution over the 512-channel pool5 map, fc7
    and fc8 become 1x1 convolutions (copies of the weights). The adaptive average pool is dropped: on a 224
    input it does nothing (pool5 is already 7x7); on a larger input it would squash the map back to 7x7,
    which is exactly what we no longer want. Every input side must be at least 224.
    """
    if not (hasattr(vgg, "features") and hasattr(vgg, "classifier")):
        raise TypeError(f"vgg must be a torchvision VGG (with .features and .classifier), got {type(vgg).__name__}")
    fc6, fc7, fc8 = [layer for layer in vgg.classifier if isinstance(layer, nn.Linear)]
    channels = fc6.in_features // 49
    head = [convolutionalize(fc6, channels, 7), nn.ReLU(inplace=True), nn.Dropout(),
            convolutionalize(fc7, fc7.in_features, 1), nn.ReLU(inplace=True), nn.Dropout(),
            convolutionalize(fc8, fc8.in_features, 1)]
    return nn.Sequential(vgg.features, *head)
