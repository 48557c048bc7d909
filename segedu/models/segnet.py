"""SegNet: Badrinarayanan, Kendall & Cipolla, "SegNet: a deep convolutional encoder-decoder architecture for
image segmentation", TPAMI 2017 (lesson 06).

The encoder is VGG16's 13 convolutions (five stages, BatchNorm after every convolution) without the fully
connected layers. Every 2x2 max-pool **remembers where its maximum was** (``return_indices=True``). The
decoder mirrors the encoder stage by stage: **max-unpooling** with the remembered positions (the values go back
exactly where the encoder's maxima were, zeros elsewhere: ``segedu.ops.upsample.max_unpool`` of lesson 02),
then 3x3 convolutions that fill the sparse map in. A 1x1 convolution gives the class scores.

What the decoder carries from the encoder is the point of the design. U-Net keeps whole feature maps for its
skips (``C x H x W`` floats per level); SegNet keeps only the pooling indices: one position per pooled value,
which needs 2 bits (one of the 4 pixels of a 2x2 window) - ``carried_from_encoder`` counts both. DeconvNet
(Noh, Hong & Han, ICCV 2015) decodes the same way (unpooling with the encoder's indices) but keeps VGG's fully
connected layers in the middle and uses transposed convolutions after each unpooling (252M parameters);
SegNet drops the FC layers and uses ordinary convolutions (29.5M parameters at VGG16 width: ``SegNet(21)``).

Any input size: the input is zero-padded at the bottom/right to a multiple of 32 (every pool then halves an
even map, so every index points into the map the unpooling rebuilds) and the logits are cropped back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segedu import validate
from segedu.models.backbones import VGG16_CONVS, pad_to_multiple
from segedu.models.common import check_images, check_num_classes, int_tuple
from segedu.ops.upsample import max_unpool

__all__ = ["SegNet", "carried_from_encoder", "INDEX_BITS"]

INDEX_BITS = 2  # a 2x2 window has 4 pixels: its argmax needs log2(4) = 2 bits (the paper's storage count)


def _convs(in_channels: int, out_channels: int, count: int, *, widen_first: bool) -> nn.Sequential:
    """``count`` x (3x3 conv + BN + ReLU) from ``in_channels`` to ``out_channels``. An encoder stage changes the
    width in its first convolution (``widen_first=True``), a decoder stage in its last, as in the paper."""
    layers: list[nn.Module] = []
    channels = in_channels
    for i in range(count):
        change = i == 0 if widen_first else i == count - 1
        out = out_channels if change else channels
        layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
        channels = out
    return nn.Sequential(*layers)


class SegNet(nn.Module):
    """SegNet (Badrinarayanan et al., TPAMI 2017): a VGG encoder, a mirrored decoder that unpools with the
    encoder's max-pooling indices.

    Args:
        num_classes: K, channels of the logits.
        in_channels: image channels.
        width: channels of the first stage; the stages have ``width * (1, 2, 4, 8, 8)`` (64 ... 512 in the
            paper).
        convs: 3x3 convolutions per stage, encoder and decoder alike (VGG16: ``(2, 2, 3, 3, 3)``).

    ``forward(x)``: ``[B, in_channels, H, W]`` (any size) -> logits ``[B, K, H, W]``. ``features(x)`` returns
    every stage's maps too: ``enc{k}`` (before pool k), ``indices{k}`` (int64, where pool k found its maxima,
    as ``F.max_pool2d(return_indices=True)`` numbers them), ``unpool{k}`` (the sparse map the decoder rebuilt
    at stage k), ``dec{k}`` and ``logits``, for k = 1 .. 5.
    """

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 64, convs=VGG16_CONVS):
        super().__init__()
        num_classes = check_num_classes(num_classes)
        self.in_channels = validate.positive_int(in_channels, "in_channels")
        width = validate.positive_int(width, "width")
        convs = int_tuple(convs, "convs", length=5)
        self.num_classes = num_classes
        self.widths = widths = [width * m for m in (1, 2, 4, 8, 8)]
        self.stride = 2 ** len(widths)
        inputs = [in_channels] + widths[:-1]
        self.encoder = nn.ModuleList([_convs(inputs[k], widths[k], convs[k], widen_first=True) for k in range(5)])
        # Decoder stage k (5 .. 1) works at stage k's width and hands stage k - 1's width on (the first: width).
        self.decoder = nn.ModuleList(
            [_convs(widths[k], widths[max(k - 1, 0)], convs[k], widen_first=False) for k in range(4, -1, -1)]
        )
        self.classifier = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every stage's maps (see the class docstring); the logits are cropped to the input's size."""
        check_images(x, self.in_channels)
        height, width = x.shape[-2:]
        x = pad_to_multiple(x, self.stride)
        maps: dict[str, torch.Tensor] = {}
        remembered = []
        for k, block in enumerate(self.encoder, start=1):
            x = block(x)
            maps[f"enc{k}"] = x
            size = x.shape[-2:]
            x, indices = F.max_pool2d(x, kernel_size=2, stride=2, return_indices=True)
            maps[f"indices{k}"] = indices
            remembered.append((indices, size))
        for k, block in zip(range(5, 0, -1), self.decoder):
            indices, size = remembered.pop()
            x = max_unpool(x, indices, tuple(size))  # values back where the encoder's maxima were
            maps[f"unpool{k}"] = x
            x = block(x)
            maps[f"dec{k}"] = x
        maps["logits"] = self.classifier(x)[..., :height, :width]
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)["logits"]


def carried_from_encoder(model: nn.Module, height: int, width: int, batch: int = 1) -> dict:
    """What a decoder keeps from the encoder for one forward pass of a ``[batch, C, height, width]`` input.

    * ``SegNet``: the max-pooling indices of the five stages (one per pooled value). As stored by torch they are
      int64 (8 bytes); they need only ``INDEX_BITS`` = 2 bits each (the paper's count).
    * ``UNet`` (with skips): the encoder feature maps of every level above the bottleneck, float32; without
      skips: nothing.
    * ``FCN``: the skip score maps (K channels at strides 16 and 8 for FCN-8s, 16 for FCN-16s), float32.

    Returns ``{"kind": "indices" | "features" | "scores" | "nothing", "values": int, "bytes": int (as
    stored), "bytes_needed": int (2 bits per index, 4 bytes per float)}``. The counts come from a forward pass
    on zeros (``torch.no_grad``, the model's device and dtype), so they follow the model's own padding.
    """
    from segedu.models.fcn import FCN
    from segedu.models.unet import UNet

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a SegNet, UNet or FCN module, got {type(model).__name__}")
    height, width = validate.positive_int(height, "height"), validate.positive_int(width, "width")
    batch = validate.positive_int(batch, "batch")
    if not isinstance(model, (SegNet, UNet, FCN)):
        raise TypeError(f"model must be a SegNet, UNet or FCN module, got {type(model).__name__}")
    parameter = next(model.parameters())
    channels = getattr(model, "in_channels", None) or getattr(model.backbone, "in_channels", 3)  # FCN: its encoder's
    x = torch.zeros(batch, channels, height, width, device=parameter.device, dtype=parameter.dtype)
    was_training = model.training
    model.eval()  # BatchNorm must not update its statistics on zeros
    try:
        with torch.no_grad():
            if isinstance(model, SegNet):
                maps = model.features(x)
                values = sum(maps[f"indices{k}"].numel() for k in range(1, 6))
                return {"kind": "indices", "values": values, "bytes": 8 * values,
                        "bytes_needed": -(-values * INDEX_BITS // 8)}
            if isinstance(model, UNet):
                if not model.skips:
                    return {"kind": "nothing", "values": 0, "bytes": 0, "bytes_needed": 0}
                maps = model.features(x)
                values = sum(maps[f"enc{level}"].numel() for level in range(model.depth))
                return {"kind": "features", "values": values, "bytes": 4 * values, "bytes_needed": 4 * values}
            taps = model.backbone(pad_to_multiple(x, model.stride))
            values = 0
            if model.variant in ("16s", "8s"):
                values += model.score_pool4(taps["pool4"]).numel()
            if model.variant == "8s":
                values += model.score_pool3(taps["pool3"]).numel()
            kind = "scores" if values else "nothing"
            return {"kind": kind, "values": values, "bytes": 4 * values, "bytes_needed": 4 * values}
    finally:
        model.train(was_training)
