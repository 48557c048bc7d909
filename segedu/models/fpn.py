"""FPN: Lin, Dollár, Girshick, He, Hariharan & Belongie, "Feature Pyramid Networks for Object Detection",
CVPR 2017, with the semantic segmentation head of Panoptic FPN (Kirillov, Girshick, He & Dollár, "Panoptic
Feature Pyramid Networks", CVPR 2019) (lesson 08).

A ResNet's stages ``C2 .. C5`` (strides 4, 8, 16, 32) form a pyramid in which only the top is semantically
strong and only the bottom is spatially fine. FPN builds a second pyramid ``P2 .. P5`` that is both:

* **top-down pathway with lateral connections**: ``P5 = lateral(C5)``; going down,
  ``P_k = lateral(C_k) + upsample(P_{k+1})`` - a 1x1 convolution brings ``C_k`` to the common width ``d``
  (256 in the paper) and the coarser map is upsampled by nearest neighbour to its size; the two are **added**
  (``lateral_merge``). Then a 3x3 convolution on each merged map reduces the aliasing of the upsampling.
* **semantic head** (Panoptic FPN): each ``P_k`` goes through ``k - 2`` stages of (3x3 conv + GroupNorm + ReLU
  + 2x bilinear upsampling) - one conv without upsampling for ``P2`` - so that all reach stride 4 with 128
  channels; they are summed, a 1x1 convolution gives the classes, and 4x bilinear upsampling the input size.

U-Net (``segedu.models.unet``) is the same encoder-decoder idea with **concatenation**: its decoder sees the
skip features next to the upsampled ones and has to mix ``2c`` channels at every level; FPN adds two maps of
the same width ``d`` and keeps every level at that width - fewer channels, fewer operations.

``torchvision.ops.FeaturePyramidNetwork`` is the same top-down pathway (the tests load its weights into
``FeaturePyramid`` and compare the outputs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segedu import validate
from segedu.models.backbones import pad_to_multiple, resnet_backbone
from segedu.models.common import check_images, check_num_classes, check_output_stride, int_tuple, upsample_to

__all__ = ["lateral_merge", "resnet_stages", "stage_channels", "stage_prefixes", "FeaturePyramid", "SemanticHead",
           "FPN"]


def lateral_merge(top: torch.Tensor, feature: torch.Tensor, lateral: nn.Module) -> torch.Tensor:
    """One lateral connection of FPN: ``lateral(feature) + nearest-upsample(top)``.

    ``top`` is the coarser pyramid level ``P_{k+1}`` ``[B, d, h, w]``, ``feature`` the backbone stage ``C_k``
    ``[B, c, H, W]`` (usually ``H = 2h``), ``lateral`` a 1x1 convolution ``c -> d``. The upsampling goes to
    ``feature``'s size (``F.interpolate(..., size=(H, W), mode="nearest")``), so odd sizes work too.
    Returns ``P_k`` before its 3x3 smoothing, ``[B, d, H, W]``.
    """
    return lateral(feature) + F.interpolate(top, size=feature.shape[-2:], mode="nearest")


def resnet_stages(encoder: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The outputs ``[C2, C3, C4, C5]`` of ``layer1 .. layer4`` of a ResNet encoder (``ResNetBackbone`` or
    ``TorchvisionResNet``): strides 4, 8, 16, 32 (less where the encoder is dilated)."""
    c2 = encoder.layer1(encoder.stem(x))
    c3 = encoder.layer2(c2)
    c4 = encoder.layer3(c3)
    return [c2, c3, c4, encoder.layer4(c4)]


def stage_prefixes(encoder: nn.Module) -> dict[str, nn.Module]:
    """The encoder cut after each stage: ``{"stem": stem, "layer1": stem + layer1, ..., "layer4": ...}``, each an
    ``nn.Sequential`` sharing the encoder's modules. Handy to look inside, e.g. the effective receptive field
    of a shallow layer (``segedu.ops.dilation.effective_receptive_field``). Stages a short encoder skips
    (``nn.Identity``, see ``ResNetBackbone(stages=...)``) are left out."""
    names = ["stem", "layer1", "layer2", "layer3", "layer4"]
    names = [n for n in names if not isinstance(getattr(encoder, n), nn.Identity)]
    return {name: nn.Sequential(*(getattr(encoder, n) for n in names[: i + 1])) for i, name in enumerate(names)}


def stage_channels(encoder: nn.Module) -> list[int]:
    """Channels of ``layer1 .. layer4`` of a ResNet encoder: the last BatchNorm of each stage's last block."""
    channels = []
    for name in ("layer1", "layer2", "layer3", "layer4"):
        last = getattr(encoder, name)[-1]
        channels.append((last.bn3 if hasattr(last, "bn3") else last.bn2).num_features)
    return channels


class FeaturePyramid(nn.Module):
    """FPN's top-down pathway: ``[C2 .. C5]`` (fine to coarse) -> ``[P2 .. P5]``, every ``P_k`` with
    ``channels`` channels at the size of ``C_k``.

    ``lateral[k]``: 1x1 conv ``in_channels[k] -> channels``; ``smooth[k]``: 3x3 conv ``channels -> channels``
    (torchvision's ``inner_blocks`` and ``layer_blocks``). Any number of levels.
    """

    def __init__(self, in_channels: Sequence[int], channels: int = 256):
        super().__init__()
        in_channels = int_tuple(in_channels, "in_channels")  # one per level
        if not in_channels:
            raise ValueError("in_channels must name at least one level (a list of ints >= 1), got []")
        channels = validate.positive_int(channels, "channels")
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.smooth = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in in_channels)
        self.channels = channels

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(features) != len(self.lateral):
            raise ValueError(f"features must hold {len(self.lateral)} maps (fine to coarse), got {len(features)}")
        merged = self.lateral[-1](features[-1])
        pyramid = [self.smooth[-1](merged)]
        for k in range(len(features) - 2, -1, -1):  # top-down: coarse to fine
            merged = lateral_merge(merged, features[k], self.lateral[k])
            pyramid.insert(0, self.smooth[k](merged))
        return pyramid


def _group_norm(channels: int) -> nn.GroupNorm:
    # Panoptic FPN uses 32 groups; a small width takes the largest group count that divides it.
    return nn.GroupNorm(math.gcd(32, channels), channels)


class SemanticHead(nn.Module):
    """Panoptic FPN's semantic branch: ``[P2 .. P5]`` -> class scores at P2's resolution ``[B, K, h2, w2]``.

    ``upsamplings[k]`` is how many 2x steps bring level k to level 0 (``log2(stride_k / stride_0)``; 0, 1, 2,
    3 for an undilated ResNet). Each level: ``max(1, n)`` stages of 3x3 conv + GroupNorm + ReLU, each
    followed by 2x bilinear upsampling when ``n > 0``; the levels are summed, a 1x1 conv classifies.
    """

    def __init__(self, in_channels: int, num_classes: int, channels: int = 128,
                 upsamplings: Sequence[int] = (0, 1, 2, 3)):
        super().__init__()
        in_channels = validate.positive_int(in_channels, "in_channels")
        channels = validate.positive_int(channels, "channels")
        num_classes = check_num_classes(num_classes)
        self.upsamplings = int_tuple(upsamplings, "upsamplings", minimum=0)
        branches = []
        for n in self.upsamplings:
            layers: list[nn.Module] = []
            for i in range(max(1, n)):
                layers += [nn.Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1, bias=False),
                           _group_norm(channels), nn.ReLU(inplace=True)]
                if n > 0:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            branches.append(nn.Sequential(*layers))
        self.branches = nn.ModuleList(branches)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, pyramid: Sequence[torch.Tensor]) -> torch.Tensor:
        # Summed, not concatenated: every level already speaks the same 128-channel language.
        return self.classifier(sum(branch(p) for branch, p in zip(self.branches, pyramid)))


class FPN(nn.Module):
    """FPN with Panoptic FPN's semantic head: ResNet ``C2..C5`` -> ``P2..P5`` -> class scores at stride 4 ->
    bilinear upsampling to the input size.

    Args:
        num_classes: classes K.
        backbone: ``None`` (= ``"resnet50"``, the paper's, random weights), a torchvision ResNet name,
            ``"small"`` (a small encoder of ``width`` channels, as for ``DeepLabV3`` and ``PSPNet``) or an encoder
            module with ``stem``, ``layer1..4`` and ``output_stride``.
        channels: width d of the pyramid (256 in the paper).
        head_channels: width of the semantic branch (128 in Panoptic FPN).
        output_stride: of the backbone; 32 (default) is FPN's setting, 16 / 8 dilate the last stages (their
            levels then share a resolution and skip the upsampling).
        width: width of the ``"small"`` backbone.

    ``forward(x)``: ``[B, 3, H, W]`` -> logits ``[B, K, H, W]``, any H, W: the input is zero-padded at the
    bottom/right to a multiple of the output stride (every 2x step is then exact) and the logits are cropped
    back. ``pyramid(x)`` returns ``[P2 .. P5]`` of the padded input.
    """

    def __init__(self, num_classes: int, backbone=None, *, channels: int = 256, head_channels: int = 128,
                 output_stride: int = 32, width: int = 16):
        super().__init__()
        check_num_classes(num_classes)
        channels = validate.positive_int(channels, "channels")
        head_channels = validate.positive_int(head_channels, "head_channels")
        self.output_stride = check_output_stride(output_stride)
        self.backbone = resnet_backbone("resnet50" if backbone is None else backbone, output_stride, width)
        self.strides = [4, 8, min(16, output_stride), min(32, output_stride)]
        self.neck = FeaturePyramid(stage_channels(self.backbone), channels)
        ups = [int(math.log2(s // self.strides[0])) for s in self.strides]
        self.head = SemanticHead(channels, num_classes, head_channels, ups)

    def pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        check_images(x, self.backbone.in_channels)
        return self.neck(resnet_stages(self.backbone, pad_to_multiple(x, self.output_stride)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x)
        height, width = x.shape[-2:]
        scores = self.head(self.pyramid(x))  # stride 4 of the padded input
        size = (scores.shape[-2] * self.strides[0], scores.shape[-1] * self.strides[0])
        logits = upsample_to(scores, size)
        return logits[..., :height, :width]
