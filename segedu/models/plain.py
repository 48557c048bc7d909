"""A plain dilated FCN: the baseline without a context module (lesson 08).

The backbone of DeepLab v3 and PSPNet - a ResNet whose last stages are dilated to output stride 8 - followed
by a head that only looks at a small neighbourhood: a 3x3 conv + BN + ReLU + dropout and a 1x1 classifier,
then bilinear upsampling. It is torchvision's ``fcn_resnet50`` (the "FCN" of torchvision: Long et al., CVPR
2015, on a dilated ResNet as in Chen et al., TPAMI 2018), layer for layer with ``backbone="resnet50"``.

What it lacks is the point: no global pooling, no atrous pyramid. Every logit is a function of a window of
the image; the window (the theoretical receptive field) is large, but most of the gradient comes from its
centre (the *effective* receptive field, Luo et al., NeurIPS 2016). When the class of an object is decided by
what surrounds it, this model has to see that far on its own; PSPNet and DeepLab v3 get there in one layer.
"""

from __future__ import annotations

import torch
from torch import nn

from segedu import validate
from segedu.models.backbones import resnet_backbone
from segedu.models.common import check_images, check_num_classes, check_output_stride, conv_bn_relu, upsample_to

__all__ = ["DilatedFCN"]


class DilatedFCN(nn.Module):
    """Dilated ResNet + a local head (3x3 conv + BN + ReLU + dropout + 1x1 classifier) + bilinear upsampling.

    Args:
        num_classes: classes C.
        backbone: ``None`` (= ``"resnet50"``), a torchvision ResNet name, ``"small"`` (``width`` channels) or
            an encoder module, as for ``DeepLabV3`` and ``PSPNet``.
        output_stride: 8 (default, as torchvision's ``fcn_resnet50``), 16 or 32.
        channels: channels of the 3x3 conv; default ``out_channels // 4`` of the backbone (512 for ResNet-50).
        dropout: before the classifier (0.1 in torchvision).
        width: width of the ``"small"`` backbone.

    ``forward(x)``: ``[B, 3, H, W]`` -> logits ``[B, num_classes, H, W]``.
    """

    def __init__(self, num_classes: int, backbone=None, *, output_stride: int = 8, channels: int | None = None,
                 dropout: float = 0.1, width: int = 16):
        super().__init__()
        check_num_classes(num_classes)
        self.output_stride = check_output_stride(output_stride)
        dropout = validate.probability(dropout, "dropout")
        if channels is not None:
            channels = validate.positive_int(channels, "channels")
        self.backbone = resnet_backbone("resnet50" if backbone is None else backbone, output_stride, width)
        c = self.backbone.out_channels
        channels = max(1, c // 4) if channels is None else channels
        # torchvision's FCNHead: same modules, same order (indices 0, 1, 2: conv, BN, ReLU; 3 dropout; 4 classifier)
        self.classifier = nn.Sequential(*conv_bn_relu(c, channels, 3), nn.Dropout(dropout),
                                        nn.Conv2d(channels, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x)
        logits = self.classifier(self.backbone(x)["out"])
        return upsample_to(logits, x.shape[-2:])
