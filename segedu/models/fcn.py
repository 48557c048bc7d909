"""FCN-32s, FCN-16s and FCN-8s: Long, Shelhamer & Darrell, "Fully convolutional networks for semantic
segmentation", CVPR 2015 (lesson 05).

The recipe:

1. Take a classification network and make it fully convolutional: its fully connected layers fc6 / fc7
   become convolutions (``FCNHead``; see ``segedu.models.vgg_table.convolutionalize``), so it accepts any
   input size and outputs a map of features at stride 32.
2. A 1x1 convolution turns every feature vector into class scores ("score" layers): a coarse score map.
3. Upsample the scores back to the input size with a *learnable* transposed convolution initialised as
   bilinear interpolation (``Upsample``). Doing this in one 32x step is **FCN-32s**.
4. Skips: deep layers know *what*, shallow layers know *where*. **FCN-16s** upsamples the stride-32 scores
   2x and *adds* scores computed from pool4 (stride 16) before the final 16x step; **FCN-8s** also adds
   pool3's scores (stride 8) and upsamples 8x. Each added skip sharpens the boundaries.

Any input size: the paper pads the image by 100 pixels (so that the unpadded 7x7 fc6 fits on small inputs)
and crops every fused map at hand-computed offsets. Here the convolutions are padded instead, and the input
is zero-padded at the bottom/right to a multiple of 32: then every map is exactly 1/8, 1/16, 1/32 of the
padded input, the maps to fuse have identical sizes, and one crop of the top-left ``H x W`` corner at the
end gives logits of the input's size (``pad_to_multiple``). Same idea, no offsets to compute.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segedu import validate
from segedu.models.backbones import VGGBackbone, pad_to_multiple
from segedu.models.common import check_num_classes
from segedu.ops.upsample import bilinear_kernel

__all__ = ["VARIANTS", "Upsample", "FCNHead", "FCN", "fuse", "small_fcn"]

VARIANTS = ("32s", "16s", "8s")


class Upsample(nn.Module):
    """Learnable upsampling by an integer ``factor``: a transposed convolution that starts as bilinear.

    ``[B, C, H, W] -> [B, C, factor * H, factor * W]``. The kernel is ``2 * factor - factor % 2`` wide, the
    stride ``factor``, and the weights start as ``bilinear_kernel`` (FCN's ``upsample_filt``): channel c
    goes to channel c with the bilinear tent, so before training the layer *is* bilinear interpolation;
    training may then learn something better (and mix channels). No bias, as in the paper.

    One detail makes it exactly ``F.interpolate(x, scale_factor=factor, mode="bilinear")`` everywhere: the
    input is first padded by one pixel that repeats the edge (``replicate``) and ``factor`` pixels are cut
    from every side of the result. Without it the border band would blend with the zeros a transposed
    convolution assumes beyond the edge, and the scores would fade towards the image border.
    """

    def __init__(self, channels: int, factor: int):
        super().__init__()
        channels = validate.positive_int(channels, "channels")
        self.factor = factor = validate.integer(factor, "factor", minimum=2)
        kernel = 2 * factor - factor % 2
        self.conv = nn.ConvTranspose2d(channels, channels, kernel, stride=factor, padding=factor // 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(bilinear_kernel(channels, channels, kernel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.factor
        return self.conv(F.pad(x, (1, 1, 1, 1), mode="replicate"))[..., f:-f, f:-f]


class FCNHead(nn.Sequential):
    """fc6 and fc7 as convolutions: ``[B, in_channels, h, w] -> [B, channels, h, w]``.

    fc6 is a ``kernel_size`` convolution (7 in VGG16: the 7x7 pool5 map the FC layer used to see), fc7 a
    1x1 convolution, each followed by ReLU and dropout. The convolutions are padded (``kernel_size // 2``)
    so the map keeps its size; the paper instead pads the input image by 100 pixels.
    """

    def __init__(self, in_channels: int, channels: int = 4096, kernel_size: int = 7, dropout: float = 0.5):
        in_channels = validate.positive_int(in_channels, "in_channels")
        channels = validate.positive_int(channels, "channels")
        kernel_size = validate.positive_int(kernel_size, "kernel_size")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (padding keeps the size), got {kernel_size}")
        dropout = validate.number(dropout, "dropout", 0.0)
        if dropout >= 1:  # p = 1 would zero every feature
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        super().__init__(
            nn.Conv2d(in_channels, channels, kernel_size, padding=kernel_size // 2),  # fc6
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Conv2d(channels, channels, 1),  # fc7
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )


def fuse(coarse: torch.Tensor, fine: torch.Tensor, upsample: nn.Module) -> torch.Tensor:
    """One FCN skip: ``upsample(coarse) + fine``.

    ``coarse`` scores ``[B, K, h, w]`` at stride ``2s``, ``fine`` scores ``[B, K, 2h, 2w]`` at stride ``s``
    (from a shallower layer); ``upsample`` doubles the size (an ``Upsample(K, 2)``). Addition keeps the
    number of channels: the skip refines the coarse prediction instead of adding features.
    """
    up = upsample(coarse)
    if up.shape != fine.shape:
        raise ValueError(
            f"the upsampled coarse scores {tuple(up.shape)} must match the fine scores {tuple(fine.shape)}: "
            "pad the input to a multiple of the network's stride"
        )
    return up + fine


class FCN(nn.Module):
    """Fully convolutional network, variant ``"32s"``, ``"16s"`` or ``"8s"`` (Long et al., CVPR 2015).

    Args:
        num_classes: K, the number of classes.
        variant: ``"32s"`` (one 32x upsampling of the pool5 scores), ``"16s"`` (+ pool4 scores, then 16x) or
            ``"8s"`` (+ pool3 scores, then 8x).
        backbone: an encoder returning ``{"pool3", "pool4", "pool5"}`` taps at strides 8, 16, 32 with a
            ``channels`` dict, such as ``VGGBackbone``; default ``VGGBackbone()`` (VGG16, random weights).
        head_channels: width of fc6 / fc7; default ``8 * channels["pool5"]`` (4096 for VGG16).
        head_kernel: fc6's kernel size (7 in the paper).
        dropout: after fc6 and fc7 (0.5 in the paper).

    ``forward(x)``: images ``[B, C_in, H, W]`` of any size -> logits ``[B, K, H, W]``.

    As in the paper the new skip score layers start at zero, so an untrained FCN-16s / 8s predicts exactly
    what the FCN-32s inside it does and the skips only add what they learn.
    """

    def __init__(self, num_classes: int, variant: str = "8s", backbone: nn.Module | None = None, *,
                 head_channels: int | None = None, head_kernel: int = 7, dropout: float = 0.5):
        super().__init__()
        num_classes = check_num_classes(num_classes)
        validate.choice(variant, "variant", VARIANTS)
        if head_channels is not None:
            head_channels = validate.positive_int(head_channels, "head_channels")
        backbone = VGGBackbone() if backbone is None else backbone
        channels = getattr(backbone, "channels", None)
        if not isinstance(channels, dict) or not {"pool3", "pool4", "pool5"} <= set(channels):
            raise TypeError(
                "backbone must return pool3/pool4/pool5 taps and describe them in a `channels` dict "
                f"(like VGGBackbone), got {type(backbone).__name__}"
            )
        self.variant = variant
        self.num_classes = num_classes
        self.backbone = backbone
        self.stride = getattr(backbone, "strides", {}).get("pool5", 32)
        head_channels = 8 * channels["pool5"] if head_channels is None else head_channels
        self.head = FCNHead(channels["pool5"], head_channels, head_kernel, dropout)
        self.score_pool5 = nn.Conv2d(head_channels, num_classes, 1)  # "score_fr" in the paper
        if variant in ("16s", "8s"):
            self.score_pool4 = self._zero(nn.Conv2d(channels["pool4"], num_classes, 1))
            self.up_pool5 = Upsample(num_classes, 2)
        if variant == "8s":
            self.score_pool3 = self._zero(nn.Conv2d(channels["pool3"], num_classes, 1))
            self.up_pool4 = Upsample(num_classes, 2)
        self.upsample = Upsample(num_classes, {"32s": 32, "16s": 16, "8s": 8}[variant])

    @staticmethod
    def _zero(conv: nn.Conv2d) -> nn.Conv2d:
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
        return conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        taps = self.backbone(pad_to_multiple(x, self.stride))
        score = self.score_pool5(self.head(taps["pool5"]))  # [B, K, H/32, W/32]
        if self.variant in ("16s", "8s"):
            score = fuse(score, self.score_pool4(taps["pool4"]), self.up_pool5)  # stride 16
        if self.variant == "8s":
            score = fuse(score, self.score_pool3(taps["pool3"]), self.up_pool4)  # stride 8
        return self.upsample(score)[..., :height, :width]


def small_fcn(num_classes: int, variant: str, width: int = 16) -> FCN:
    """The CPU-sized FCN of lessons 05 and 06: a VGG16-shaped encoder of ``width`` channels with BatchNorm
    (it trains from scratch in a few hundred steps), fc6 a 3x3 convolution of ``16 * width`` channels (the
    pool5 map of a small image is only a few pixels wide) and no dropout (short runs do not overfit)."""
    backbone = VGGBackbone(width=width, batch_norm=True)
    return FCN(num_classes, variant, backbone, head_channels=16 * width, head_kernel=3, dropout=0.0)
