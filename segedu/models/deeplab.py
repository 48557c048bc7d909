"""The DeepLab family: atrous convolution, ASPP, image pooling and a decoder (lesson 07).

* ``DeepLabV1`` - Chen et al., "Semantic Image Segmentation with Deep Convolutional Nets and Fully Connected
  CRFs", ICLR 2015. VGG16 whose last two max-pools stop downsampling (3x3, stride 1), with the convolutions
  after them dilated by 2 (conv5) and 4 (fc6), so the pretrained kernels still see what they saw: output
  stride 8 instead of 32. The "LargeFOV" head replaces fc6 (7x7, 4096 channels) by a 3x3 convolution with
  dilation 12 and 1024 channels; bilinear upsampling x8 to the input size; a dense CRF after it (``segedu.crf``).
* ``DeepLabV2`` - Chen et al., TPAMI 2017 (arXiv 2016). Atrous Spatial Pyramid Pooling (ASPP): four parallel
  3x3 atrous convolutions with rates 6, 12, 18, 24 on the ResNet-101 features (output stride 8), each
  predicting class scores; the four score maps are summed.
* ``DeepLabV3`` - Chen et al., "Rethinking Atrous Convolution for Semantic Image Segmentation", arXiv 2017.
  ASPP with batch norm: a 1x1 branch, three 3x3 atrous branches (rates 6, 12, 18 at output stride 16, twice
  that at 8) and an image-level branch (global average pooling, 1x1 conv, upsampled back), concatenated
  and projected by a 1x1 convolution, then a 3x3 convolution and the classifier. Optional multi-grid
  (unit rates for the blocks of the last stage). No CRF any more. With ``backbone="resnet50",
  output_stride=8`` it is exactly torchvision's ``deeplabv3_resnet50(aux_loss=False)``:
  ``load_torchvision_deeplabv3`` converts its state dict.
* ``DeepLabV3Plus`` - Chen et al., "Encoder-Decoder with Atrous Separable Convolution", ECCV 2018. The v3
  encoder plus a light decoder: the ASPP output upsampled to the stride-4 low-level features (x4 at output
  stride 16), concatenated with those reduced to 48 channels by a 1x1 convolution, two 3x3 convolutions,
  the classifier, and x4 upsampling. ``separable=True`` makes the 3x3 convolutions of ASPP and decoder
  depthwise-separable (Xception-style): 9 C_in + C_in C_out weights instead of 9 C_in C_out.

Every model: ``Model(num_classes, backbone=..., output_stride=...)``, ``forward(x [B, 3, H, W]) -> logits
[B, num_classes, H, W]`` at the input size (bilinear upsampling, as in the papers). Backbones: a name
(``"small"`` - a small encoder from ``segedu.models.backbones`` sized by ``width``, trainable on a CPU in
minutes; ``"vgg16"`` for v1; ``"resnet18"``, ``"resnet50"``, ``"resnet101"`` - torchvision ResNets built
with ``weights=None``, never downloaded) or an encoder module with the interface of
``segedu.models.backbones``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from segedu import validate
from segedu.models.backbones import TORCHVISION_RESNETS, VGGBackbone, resnet_backbone
# conv_bn_relu lives in segedu.models.common (PSPNet and the dilated FCN use it too); it stays importable from
# here, where lesson 07 and segedu.checks find it, and so do OUTPUT_STRIDES and TORCHVISION_RESNETS.
from segedu.models.common import (
    OUTPUT_STRIDES, check_images, check_num_classes, check_output_stride, conv_bn_relu, int_tuple, upsample_to,
)

__all__ = [
    "aspp_rates",
    "atrous_valid_taps",
    "conv_bn_relu",
    "ASPP",
    "ASPPPooling",
    "ASPPScoreSum",
    "DeepLabV1",
    "DeepLabV2",
    "DeepLabV3",
    "DeepLabV3Plus",
    "dilate_vgg",
    "apply_multi_grid",
    "load_torchvision_deeplabv3",
]

# --------------------------------------------------------------------------- small helpers


def aspp_rates(output_stride: int, base_rates: Sequence[int] = (6, 12, 18), base_stride: int = 16) -> tuple[int, ...]:
    """Atrous rates of ASPP's 3x3 branches for an ``output_stride`` (DeepLab v3, Sec. 3.3).

    The rates are chosen at ``base_stride`` (6, 12, 18 at 16). At another output stride the feature map is
    ``base_stride / output_stride`` times larger, so the same field of view in the *image* needs rates that
    much larger: 12, 24, 36 at stride 8, 3, 6, 9 at stride 32. Non-integer results raise ``ValueError``.
    """
    output_stride = validate.positive_int(output_stride, "output_stride")
    base_stride = validate.positive_int(base_stride, "base_stride")
    rates = []
    for rate in int_tuple(base_rates, "base_rates"):
        scaled, rest = divmod(rate * base_stride, output_stride)
        if rest:
            raise ValueError(f"rate {rate} at stride {base_stride} is not an integer rate at stride {output_stride}")
        rates.append(scaled)
    return tuple(rates)


def atrous_valid_taps(size: int, rate: int) -> float:
    """Mean fraction of the 9 taps of a 3x3 convolution with dilation ``rate`` that fall inside a
    ``size x size`` feature map (zero padding elsewhere), over all output positions.

    DeepLab v3 (Fig. 4): as the rate approaches the map size the filter degenerates into a 1x1 convolution
    (only the centre tap sees data) - the reason for the image-pooling branch.
    """
    size, rate = validate.positive_int(size, "size"), validate.positive_int(rate, "rate")
    pos = torch.arange(size)
    # per axis: how many of the three taps (pos - rate, pos, pos + rate) lie inside [0, size)
    inside = sum(((pos + k * rate >= 0) & (pos + k * rate < size)).double() for k in (-1, 0, 1))  # [size]
    return float((inside[:, None] * inside[None, :]).mean() / 9.0)


# --------------------------------------------------------------------------- backbone surgery


def apply_multi_grid(encoder: nn.Module, grid: Sequence[int]) -> None:
    """DeepLab v3's multi-grid, in place: the 3x3 convolutions of block i of the last stage (``layer4``) get
    dilation ``base * grid[i]``, base = that stage's dilation (1, 2, 4 at output stride 32, 16, 8).

    With (1, 2, 4) the three blocks of ResNet-50's last stage see the map at three rates, which fills the
    holes that one large rate leaves (gridding, lesson 04).
    """
    layer = encoder.layer4
    grid = int_tuple(grid, "multi_grid", length=len(layer))  # one unit rate per block of layer4
    base = 32 // encoder.output_stride
    for block, unit in zip(layer, grid):
        for conv in block.modules():
            if isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3):
                conv.dilation = conv.padding = (base * unit, base * unit)


def dilate_vgg(vgg: VGGBackbone, output_stride: int) -> VGGBackbone:
    """DeepLab v1's surgery on a ``VGGBackbone``, in place: the pools after stage ``log2(output_stride)``
    become 3x3 max-pools of stride 1 (padding 1, the size is kept) and every convolution after a removed
    pool is dilated by the stride it lost (2 after pool4, 4 after pool5). Returns ``vgg``."""
    check_output_stride(output_stride)
    stride, dilation = 1, 1
    for i, layer in enumerate(vgg.features):
        if isinstance(layer, nn.Conv2d):
            layer.dilation = layer.padding = (dilation, dilation)
        elif isinstance(layer, nn.MaxPool2d):
            if stride * 2 <= output_stride:
                stride *= 2
            else:  # stop downsampling; later kernels must spread out to see the same input positions
                vgg.features[i] = nn.MaxPool2d(3, stride=1, padding=1)
                dilation *= 2
    vgg.strides = {name: min(s, output_stride) for name, s in vgg.strides.items()}
    vgg.output_stride = output_stride
    vgg.dilation = dilation
    return vgg


# --------------------------------------------------------------------------- ASPP heads


class ASPPScoreSum(nn.Module):
    """DeepLab v2's ASPP: parallel 3x3 atrous convolutions (rates 6, 12, 18, 24) from the features straight
    to class scores, summed. ``[B, in_channels, h, w] -> [B, num_classes, h, w]``."""

    def __init__(self, in_channels: int, num_classes: int, rates: Sequence[int] = (6, 12, 18, 24)):
        super().__init__()
        in_channels, num_classes = validate.positive_int(in_channels, "in_channels"), check_num_classes(num_classes)
        rates = int_tuple(rates, "rates")
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=r, dilation=r) for r in rates
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(branch(x) for branch in self.branches)


class ASPPPooling(nn.Sequential):
    """The image-level branch of DeepLab v3: global average pooling, 1x1 conv + BN + ReLU, then upsampled
    (a constant map) back to ``[B, out_channels, h, w]``: every position gets the whole image's context."""

    def __init__(self, in_channels: int, out_channels: int):
        in_channels = validate.positive_int(in_channels, "in_channels")
        out_channels = validate.positive_int(out_channels, "out_channels")
        super().__init__(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample_to(super().forward(x), x.shape[-2:])


class ASPP(nn.Module):
    """DeepLab v3's ASPP: ``[B, in_channels, h, w] -> [B, out_channels, h, w]``.

    Branches (``convs``, torchvision's names and order): 1x1 conv, one 3x3 atrous conv per rate, image
    pooling; each ends in BN + ReLU. They are concatenated (``(2 + len(rates)) * out_channels`` channels)
    and ``project``-ed by a 1x1 conv + BN + ReLU + dropout. ``separable``: depthwise-separable 3x3 branches.
    """

    def __init__(self, in_channels: int, rates: Sequence[int], out_channels: int = 256, dropout: float = 0.5,
                 separable: bool = False):
        super().__init__()
        rates, dropout = int_tuple(rates, "rates"), validate.probability(dropout, "dropout")
        branches = [conv_bn_relu(in_channels, out_channels, 1)]
        branches += [conv_bn_relu(in_channels, out_channels, 3, r, separable) for r in rates]
        branches.append(ASPPPooling(in_channels, out_channels))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(
            nn.Conv2d(len(branches) * out_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(), nn.Dropout(dropout),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


# --------------------------------------------------------------------------- the models


class DeepLabV1(nn.Module):
    """DeepLab v1 (LargeFOV): dilated VGG at ``output_stride`` 8 + fc6 (3x3, dilation ``fc_dilation``) + fc7
    (1x1) + classifier, bilinear upsampling to the input size.

    Args:
        num_classes: classes C.
        backbone: ``"vgg16"`` (torchvision's VGG16 layout, 64 channels first), ``"small"`` (width ``width``,
            one or two convs per stage, batch norm) or a ``VGGBackbone``.
        output_stride: 8 (the paper); 16 or 32 keep more pools (for comparisons).
        fc_channels: channels of fc6 and fc7 (1024 in LargeFOV; default ``16 * width`` for ``"small"``).
        fc_dilation: fc6's dilation at output stride 8 (12 in LargeFOV); scaled by ``8 / output_stride``.
    """

    def __init__(self, num_classes: int = 21, backbone="vgg16", output_stride: int = 8, width: int = 16,
                 fc_channels: int | None = None, fc_dilation: int = 12, dropout: float = 0.5):
        super().__init__()
        check_num_classes(num_classes)
        check_output_stride(output_stride)
        width, fc_dilation = validate.positive_int(width, "width"), validate.positive_int(fc_dilation, "fc_dilation")
        if fc_channels is not None:
            fc_channels = validate.positive_int(fc_channels, "fc_channels")
        dropout = validate.probability(dropout, "dropout")
        if backbone == "vgg16":
            backbone, fc_channels = VGGBackbone(64), fc_channels or 1024
        elif backbone == "small":
            backbone = VGGBackbone(width, convs=(1, 1, 2, 2, 2), batch_norm=True)
            fc_channels = fc_channels or 16 * width
        elif not isinstance(backbone, VGGBackbone):
            error = ValueError if isinstance(backbone, str) else TypeError
            raise error(f"backbone must be 'vgg16', 'small' or a VGGBackbone, got {backbone!r}")
        self.backbone = dilate_vgg(backbone, output_stride)
        self.output_stride = output_stride
        rate = max(1, fc_dilation * 8 // output_stride)
        self.head = nn.Sequential(
            nn.Conv2d(self.backbone.out_channels, fc_channels, 3, padding=rate, dilation=rate),  # fc6
            nn.ReLU(), nn.Dropout(dropout),
            nn.Conv2d(fc_channels, fc_channels, 1), nn.ReLU(), nn.Dropout(dropout),  # fc7
            nn.Conv2d(fc_channels, num_classes, 1),  # fc8: the classifier
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x)
        return upsample_to(self.head(self.backbone(x)["pool5"]), x.shape[-2:])


class DeepLabV2(nn.Module):
    """DeepLab v2: a dilated ResNet (``output_stride`` 8) + ASPP of summed score maps (rates 6, 12, 18, 24),
    bilinear upsampling. ``backbone``: ``"resnet101"`` (the paper), ``"resnet50"``, ``"small"`` or a module."""

    def __init__(self, num_classes: int = 21, backbone="resnet101", output_stride: int = 8, width: int = 16,
                 rates: Sequence[int] = (6, 12, 18, 24)):
        super().__init__()
        check_num_classes(num_classes)
        self.output_stride = check_output_stride(output_stride)
        self.backbone = resnet_backbone(backbone, output_stride, width)
        self.classifier = ASPPScoreSum(self.backbone.out_channels, num_classes, rates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x)
        return upsample_to(self.classifier(self.backbone(x)["out"]), x.shape[-2:])


def _v3_encoder(backbone, output_stride: int, width: int, multi_grid, rates):
    """The encoder DeepLab v3 and v3+ share: ``(output_stride, dilated ResNet with optional multi-grid,
    ASPP rates)`` (the rates default to ``aspp_rates(output_stride)``)."""
    output_stride = check_output_stride(output_stride)
    encoder = resnet_backbone(backbone, output_stride, width)
    if multi_grid is not None:
        apply_multi_grid(encoder, multi_grid)
    return output_stride, encoder, aspp_rates(output_stride) if rates is None else int_tuple(rates, "rates")


class DeepLabV3(nn.Module):
    """DeepLab v3: a dilated ResNet + ASPP (with BN and image pooling) + 3x3 conv + classifier.

    Args:
        num_classes: classes C.
        backbone: ``"resnet50"`` (default), ``"resnet101"``, ``"resnet18"``, ``"small"`` or a module.
        output_stride: 16 (v3's training setting) or 8 (its evaluation setting); 32 works too.
        rates: ASPP's atrous rates; default ``aspp_rates(output_stride)`` (6, 12, 18 at 16).
        aspp_channels: channels of every ASPP branch and of the head (256 in the paper).
        multi_grid: unit rates for the blocks of the last stage, e.g. ``(1, 2, 4)`` (``apply_multi_grid``).
        separable: depthwise-separable 3x3 convolutions in ASPP and head.
        width: width of the ``"small"`` backbone.

    ``DeepLabV3(21, "resnet50", output_stride=8)`` has the modules, names and parameters of torchvision's
    ``deeplabv3_resnet50(weights=None, weights_backbone=None, aux_loss=False)`` (see
    ``load_torchvision_deeplabv3``).
    """

    def __init__(self, num_classes: int = 21, backbone="resnet50", output_stride: int = 16, rates=None,
                 aspp_channels: int = 256, multi_grid: Sequence[int] | None = None, separable: bool = False,
                 width: int = 16, dropout: float = 0.5):
        super().__init__()
        check_num_classes(num_classes)
        self.output_stride, self.backbone, self.rates = _v3_encoder(backbone, output_stride, width, multi_grid, rates)
        c = validate.positive_int(aspp_channels, "aspp_channels")
        # torchvision's DeepLabHead: ASPP, 3x3 conv + BN + ReLU, 1x1 classifier (index 4)
        self.classifier = nn.Sequential(
            ASPP(self.backbone.out_channels, self.rates, c, dropout, separable),
            *conv_bn_relu(c, c, 3, separable=separable),
            nn.Conv2d(c, num_classes, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x)
        return upsample_to(self.classifier(self.backbone(x)["out"]), x.shape[-2:])


class DeepLabV3Plus(nn.Module):
    """DeepLab v3+: the v3 encoder (backbone + ASPP) and a decoder that brings back stride-4 detail.

    ``forward``: ASPP features (stride ``output_stride``) are upsampled to the low-level features (stride 4),
    concatenated with those reduced to ``low_level_reduced`` (48) channels by a 1x1 conv (few, so that they
    do not outweigh the semantic features), refined by two 3x3 convs (``decoder_channels``), classified and
    upsampled x4 to the input size. Arguments as ``DeepLabV3``; ``separable`` also applies to the decoder.
    """

    def __init__(self, num_classes: int = 21, backbone="resnet50", output_stride: int = 16, rates=None,
                 aspp_channels: int = 256, decoder_channels: int = 256, low_level_reduced: int = 48,
                 multi_grid: Sequence[int] | None = None, separable: bool = False, width: int = 16,
                 dropout: float = 0.5):
        super().__init__()
        check_num_classes(num_classes)
        for value, name in ((aspp_channels, "aspp_channels"), (decoder_channels, "decoder_channels"),
                            (low_level_reduced, "low_level_reduced")):
            validate.positive_int(value, name)
        self.output_stride, self.backbone, self.rates = _v3_encoder(backbone, output_stride, width, multi_grid, rates)
        self.aspp = ASPP(self.backbone.out_channels, self.rates, aspp_channels, dropout, separable)
        self.reduce = conv_bn_relu(self.backbone.low_level_channels, low_level_reduced, 1)
        self.decoder = nn.Sequential(
            conv_bn_relu(aspp_channels + low_level_reduced, decoder_channels, 3, separable=separable),
            conv_bn_relu(decoder_channels, decoder_channels, 3, separable=separable),
        )
        self.classifier = nn.Conv2d(decoder_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x)
        features = self.backbone(x)
        low = self.reduce(features["low_level"])
        high = upsample_to(self.aspp(features["out"]), low.shape[-2:])
        logits = self.classifier(self.decoder(torch.cat([high, low], dim=1)))
        return upsample_to(logits, x.shape[-2:])


# --------------------------------------------------------------------------- torchvision interop


def load_torchvision_deeplabv3(model: DeepLabV3, state_dict: dict) -> DeepLabV3:
    """Load the state dict of torchvision's ``deeplabv3_resnet50/101`` (``aux_loss=False``) into ``model``.

    The only renaming: torchvision's backbone keeps the ResNet's ``conv1``/``bn1``, ours groups them as
    ``stem.0``/``stem.1``; everything else (``layer1..4``, ``classifier.*``) has the same name. Strict:
    a missing or extra key raises. Returns ``model``.
    """
    renamed = {}
    for key, value in state_dict.items():
        if key.startswith("aux_classifier."):
            raise ValueError("state_dict has an aux_classifier: build torchvision's model with aux_loss=False")
        key = key.replace("backbone.conv1.", "backbone.stem.0.").replace("backbone.bn1.", "backbone.stem.1.")
        renamed[key] = value
    model.load_state_dict(renamed, strict=True)
    return model
