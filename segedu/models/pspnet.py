"""PSPNet: Zhao, Shi, Qi, Wang & Jia, "Pyramid Scene Parsing Network", CVPR 2017 (lesson 08).

A pixel alone often cannot tell its class: the same grey hull is a boat on water and a car on a road. The
context that decides it may lie far away, farther than the network's *effective* receptive field reaches
(Luo et al., NeurIPS 2016; ``segedu.ops.dilation.effective_receptive_field``), even when the theoretical
one covers the whole image. PSPNet hands every pixel that context explicitly, with a **pyramid pooling
module** on the last feature map of a dilated ResNet (output stride 8):

1. average-pool the map ``[B, C, h, w]`` to ``b x b`` bins for every ``b`` in ``bins`` (1, 2, 3, 6 in the
   paper): the 1x1 bin is the whole image's summary, the 6x6 bins are summaries of sub-regions;
2. reduce each pooled map to ``C / len(bins)`` channels by a 1x1 conv + BN + ReLU (so that the global prior
   does not outweigh the local features);
3. upsample every pooled map bilinearly back to ``h x w`` and **concatenate** them with the features;
4. a 3x3 conv + BN + ReLU + dropout and a 1x1 classifier; bilinear upsampling to the input size.

Training adds an **auxiliary** classifier on ``layer3`` (the paper's res4b22), with loss weight 0.4: an extra
gradient path into the middle of a deep network. It is dropped at test time.

Compared with DeepLab v3's ASPP (``segedu.models.deeplab``): ASPP samples context with parallel atrous
convolutions plus one global average; PSPNet pools at several grid sizes. Both give a pixel access to the
whole image in one layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segedu import validate
from segedu.models.backbones import resnet_backbone
from segedu.models.common import (
    check_images, check_num_classes, check_output_stride, conv_bn_relu, int_tuple, upsample_to,
)
from segedu.models.fpn import resnet_stages

__all__ = ["pyramid_pool", "PyramidPooling", "PSPNet"]


def _check_bins(bins) -> tuple[int, ...]:
    bins = int_tuple(bins, "bins")
    if not bins:
        raise ValueError("bins must be a non-empty sequence of ints >= 1, e.g. (1, 2, 3, 6), got ()")
    return bins


def pyramid_pool(x: torch.Tensor, bins: Sequence[int], reduce: Sequence[nn.Module]) -> torch.Tensor:
    """The pyramid pooling forward: ``[B, C, h, w] -> [B, C + sum(reduced channels), h, w]``.

    For each bin size ``b`` (with its reduction module ``reduce[i]``, a 1x1 conv + BN + ReLU): adaptive
    average pooling to ``b x b`` (``F.adaptive_avg_pool2d``: bin edges ``floor(i h / b) .. ceil((i+1) h / b)``,
    so any ``h`` works, even smaller than ``b``), the reduction, and bilinear upsampling back to ``h x w``
    (``align_corners=False``). The result is ``x`` followed by the pooled maps, in the order of ``bins``.
    """
    bins = _check_bins(bins)
    if len(bins) != len(reduce):
        raise ValueError(f"bins and reduce must have the same length, got {len(bins)} and {len(reduce)}")
    size = x.shape[-2:]
    pooled = [
        F.interpolate(conv(F.adaptive_avg_pool2d(x, b)), size=size, mode="bilinear", align_corners=False)
        for b, conv in zip(bins, reduce)
    ]
    return torch.cat([x, *pooled], dim=1)


class PyramidPooling(nn.Module):
    """The pyramid pooling module: ``[B, in_channels, h, w] -> [B, out_channels, h, w]``.

    Args:
        in_channels: channels C of the feature map.
        bins: pooled grid sizes, ``(1, 2, 3, 6)`` in the paper.
        channels: channels of each reduced branch; default ``C // len(bins)`` (the paper: 2048 / 4 = 512), so
            the pooled context and the features have the same weight in the concatenation.

    ``out_channels = in_channels + len(bins) * channels``. ``forward`` is ``pyramid_pool``.
    """

    def __init__(self, in_channels: int, bins: Sequence[int] = (1, 2, 3, 6), channels: int | None = None):
        super().__init__()
        in_channels = validate.positive_int(in_channels, "in_channels")
        self.bins = _check_bins(bins)
        if channels is None:
            channels = max(1, in_channels // len(self.bins))
        channels = validate.positive_int(channels, "channels")
        # A 1x1 bin is one value per channel and image: BatchNorm normalises it over the batch (PSPNet did
        # the same); a training batch therefore needs at least 2 images.
        self.reduce = nn.ModuleList(conv_bn_relu(in_channels, channels, 1) for _ in self.bins)
        self.out_channels = in_channels + len(self.bins) * channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pyramid_pool(x, self.bins, self.reduce)


class PSPNet(nn.Module):
    """PSPNet (Zhao et al., CVPR 2017): dilated ResNet + pyramid pooling + 3x3 conv + classifier.

    Args:
        num_classes: classes C.
        backbone: ``None`` (= ``"resnet50"``, the paper's smaller network, random weights), ``"resnet18"``,
            ``"resnet101"``, ... (torchvision ResNets with ``weights=None``), ``"small"`` (a small encoder of
            ``width`` channels, as in ``DeepLabV3``) or an encoder module with ``stem``, ``layer1..4``,
            ``out_channels`` and ``output_stride`` (``segedu.models.backbones``).
        bins: the pyramid's grid sizes.
        output_stride: 8 (the paper) or 16 / 32.
        channels: channels of the 3x3 conv after the pyramid (512 in the paper); default
            ``out_channels // 4`` of the backbone.
        aux: add the auxiliary head on ``layer3`` (used by the loss only).
        aux_weight: weight of the auxiliary loss (0.4 in the paper).
        dropout: before the classifiers (0.1 in the paper).
        width: width of the ``"small"`` backbone.

    ``forward(x)``: images ``[B, 3, H, W]`` -> logits ``[B, num_classes, H, W]`` (train or eval mode).
    ``forward(x, target)`` with masks int64 ``[B, H, W]`` (255 = ignore) returns the losses
    ``{"out": CE, "aux": aux_weight * CE of the auxiliary head}`` (``{"out"}`` without ``aux``): the form
    ``segedu.train.fit(model, data, loss_fn=None, ...)`` trains.
    """

    def __init__(self, num_classes: int, backbone=None, bins: Sequence[int] = (1, 2, 3, 6), *,
                 output_stride: int = 8, channels: int | None = None, aux: bool = False, aux_weight: float = 0.4,
                 dropout: float = 0.1, width: int = 16):
        super().__init__()
        check_num_classes(num_classes)
        self.output_stride = check_output_stride(output_stride)
        bins = _check_bins(bins)
        aux = validate.flag(aux, "aux")
        aux_weight = validate.number(aux_weight, "aux_weight", minimum=0.0)
        dropout = validate.probability(dropout, "dropout")
        if channels is not None:
            channels = validate.positive_int(channels, "channels")
        self.backbone = resnet_backbone("resnet50" if backbone is None else backbone, output_stride, width)
        c = self.backbone.out_channels
        channels = max(1, c // 4) if channels is None else channels
        self.ppm = PyramidPooling(c, bins)
        self.bins = self.ppm.bins
        self.head = nn.Sequential(
            conv_bn_relu(self.ppm.out_channels, channels, 3), nn.Dropout2d(dropout), nn.Conv2d(channels, num_classes, 1)
        )
        self.aux_weight = aux_weight
        self.aux_head = None
        if aux:
            # layer3 of every ResNet has half the channels of layer4
            aux_channels = max(1, c // 8)
            self.aux_head = nn.Sequential(
                conv_bn_relu(c // 2, aux_channels, 3), nn.Dropout2d(dropout), nn.Conv2d(aux_channels, num_classes, 1)
            )

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None):
        check_images(x)
        size = x.shape[-2:]
        if target is not None:
            # a float or uint8 mask is a wrong type (TypeError), a mask of another size a wrong value (ValueError)
            want = f"target must be int64 masks [B, H, W] = {(x.shape[0], *size)}"
            if not isinstance(target, torch.Tensor) or target.dtype != torch.int64:
                got = f"dtype {target.dtype}" if isinstance(target, torch.Tensor) else type(target).__name__
                raise TypeError(f"{want}, got {got}")
            if tuple(target.shape) != (x.shape[0], *size):
                raise ValueError(f"{want}, got shape {tuple(target.shape)}")
        b = self.backbone
        if self.aux_head is None or target is None:
            features = b(x)["out"]
        else:  # run the stages one by one to keep layer3's output for the auxiliary head
            check_images(x, b.in_channels)
            *_, middle, features = resnet_stages(b, x)
        logits = upsample_to(self.head(self.ppm(features)), size)
        if target is None:
            return logits
        losses = {"out": F.cross_entropy(logits, target, ignore_index=255)}
        if self.aux_head is not None:
            aux = upsample_to(self.aux_head(middle), size)
            losses["aux"] = self.aux_weight * F.cross_entropy(aux, target, ignore_index=255)
        return losses
