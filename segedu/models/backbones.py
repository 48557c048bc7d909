"""Encoders: the classification networks that segmentation models are built on (lessons 05-08).

A classification network halves the resolution five times (stride 32) while the number of channels grows:
deep features know *what* is in the image but not exactly *where*. A segmentation model taps the encoder at
several strides (FCN, U-Net) or stops it from shrinking (DeepLab). Three encoders live here:

* ``VGGBackbone`` - five stages of 3x3 convolutions, each closed by a 2x2 max-pool (Simonyan & Zisserman,
  ICLR 2015). ``width=64`` with ``convs=(2, 2, 3, 3, 3)`` is VGG16, layer for layer the ``features`` of
  ``torchvision.models.vgg16(weights=None)``; a small ``width`` makes it train on a CPU. Returns the taps
  ``pool1 .. pool5`` at strides 2, 4, 8, 16, 32 (FCN reads pool3, pool4 and pool5).
* ``ResNetBackbone`` - a small ResNet (He et al., CVPR 2016) of basic blocks whose ``output_stride`` is 32,
  16 or 8: the stride of the last stages is replaced by dilation, as torchvision's
  ``replace_stride_with_dilation`` does (DeepLab, Chen et al., TPAMI 2018). Returns the low-level features
  (stride 4) and the high-level features (stride ``output_stride``).
* ``TorchvisionResNet`` - the same interface around torchvision's ``resnet18`` / ``resnet50`` / ... built
  with ``weights=None``; it can dilate them too, including the basic-block ResNets for which torchvision
  refuses.
* ``resnet_backbone(backbone, output_stride, width, weights)`` - the ResNet encoder of a model by name
  (``"small"``, ``"resnet50"``, ...) or as a module, as DeepLab, PSPNet, FPN and the dilated FCN take it;
  ``weights`` loads ImageNet weights into a torchvision ResNet (named as torchvision names them).

Every encoder takes images ``[B, C_in, H, W]`` and returns a dict of feature maps ``[B, C, H / s, W / s]``;
its ``channels`` and ``strides`` attributes say what each entry holds, so a model can size its layers
without a trial forward pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segedu import validate
from segedu.models.common import check_images, check_output_stride, int_tuple

__all__ = [
    "VGG16_CONVS",
    "TORCHVISION_RESNETS",
    "VGGBackbone",
    "ResNetBackbone",
    "TorchvisionResNet",
    "dilate_resnet",
    "pad_to_multiple",
    "resnet_backbone",
]

VGG16_CONVS = (2, 2, 3, 3, 3)  # 3x3 convolutions per stage in VGG16 (13 in all)
TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad ``[B, C, H, W]`` at the bottom and right up to the next multiple of ``multiple``.

    An encoder of stride ``s`` sees every input pixel at every scale only when ``s`` divides the size: a
    2x2 max-pool drops the last row of an odd map. Models pad with this, run, and crop their output back
    to ``[:H, :W]``; the padding sits bottom-right, so the crop is the top-left corner.
    """
    validate.positive_int(multiple, "multiple")
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    return F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x


# --------------------------------------------------------------------------- VGG


class VGGBackbone(nn.Module):
    """VGG-style encoder: five stages of (3x3 conv [+ BN] + ReLU) x n, each followed by a 2x2 max-pool.

    Args:
        width: channels of the first stage; the stages have ``width * (1, 2, 4, 8, 8)`` channels
            (VGG16: ``width=64`` -> 64, 128, 256, 512, 512).
        convs: 3x3 convolutions per stage (VGG16: ``(2, 2, 3, 3, 3)``; VGG11: ``(1, 1, 2, 2, 2)``).
        in_channels: image channels.
        batch_norm: add BatchNorm after every convolution (torchvision's ``vgg16_bn``); it lets a small
            network train from scratch in a few hundred steps.

    ``self.features`` has exactly the layout of torchvision's ``make_layers`` (same indices), so with the
    defaults ``load_state_dict`` takes the ``features.*`` weights of ``torchvision.models.vgg16``.

    ``forward(x)``: ``[B, in_channels, H, W]`` -> ``{"pool1": ..., "pool5": ...}``, ``pool{k}`` of shape
    ``[B, channels[k], H // 2**k, W // 2**k]`` (floor: pad to a multiple of 32 to keep every pixel).
    """

    def __init__(self, width: int = 64, convs=VGG16_CONVS, in_channels: int = 3, batch_norm: bool = False):
        super().__init__()
        width = validate.positive_int(width, "width")
        self.in_channels = in_channels = validate.positive_int(in_channels, "in_channels")
        convs = int_tuple(convs, "convs", length=5)  # one count per stage
        widths = [width * m for m in (1, 2, 4, 8, 8)]
        layers: list[nn.Module] = []
        self._pool_index: dict[int, str] = {}  # position in `features` -> tap name
        channels = in_channels
        for stage, (out, n) in enumerate(zip(widths, convs), start=1):
            for _ in range(n):
                # With BN the conv bias is redundant (BN subtracts the mean), but torchvision keeps it: we
                # keep it too so that the state dicts match.
                layers.append(nn.Conv2d(channels, out, kernel_size=3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(out))
                layers.append(nn.ReLU(inplace=True))
                channels = out
            self._pool_index[len(layers)] = f"pool{stage}"
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers)
        self.channels = {f"pool{k}": c for k, c in enumerate(widths, start=1)}
        self.strides = {f"pool{k}": 2**k for k in range(1, 6)}
        self.out_channels = widths[-1]
        self.output_stride = 32

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        check_images(x, self.in_channels)
        taps = {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self._pool_index:
                taps[self._pool_index[index]] = x
        return taps


# --------------------------------------------------------------------------- ResNet


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 conv + BN, plus the input (He et al., CVPR 2016), with dilation.

    ``[B, in_channels, H, W] -> [B, out_channels, H / stride, W / stride]``. ``padding = dilation`` keeps
    the size of a dilated 3x3 convolution; a 1x1 convolution matches the shortcut when the shape changes.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1,
                 first_dilation: int | None = None):
        super().__init__()
        d1 = dilation if first_dilation is None else first_dilation
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=d1, dilation=d1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


def _dilations(output_stride) -> list[bool]:
    """torchvision's ``replace_stride_with_dilation`` (for layer2, layer3, layer4) for an output stride."""
    table = {32: [False, False, False], 16: [False, False, True], 8: [False, True, True]}
    return table[check_output_stride(output_stride)]


class _ResNetFeatures(nn.Module):
    """The forward pass shared by both ResNet encoders: stem, layer1 (stride 4) .. layer4."""

    in_channels = 3

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        check_images(x, self.in_channels)
        low_level = self.layer1(self.stem(x))
        return {"low_level": low_level, "out": self.layer4(self.layer3(self.layer2(low_level)))}

    def _describe(self, low_level_channels: int, out_channels: int, output_stride: int) -> None:
        self.low_level_channels = low_level_channels
        self.out_channels = out_channels
        self.output_stride = output_stride
        self.channels = {"low_level": low_level_channels, "out": out_channels}
        self.strides = {"low_level": 4, "out": output_stride}


class ResNetBackbone(_ResNetFeatures):
    """A small ResNet-style encoder with an ``output_stride`` of 32, 16 or 8.

    Args:
        width: channels of layer1; layers 1-4 have ``width * (1, 2, 4, 8)`` (ResNet-18: 64).
        blocks: basic blocks per layer (ResNet-18: ``(2, 2, 2, 2)``).
        output_stride: 32 is the classification network. 16 replaces the stride of layer4 by dilation 2,
            8 also replaces the stride of layer3 (dilation 2 there, 4 in layer4): the features stay 4 or 16
            times larger in area while every kernel still sees what it saw at stride 32 - the "atrous"
            trick of DeepLab. As in torchvision, the first block of a dilated layer keeps the previous
            dilation and the following blocks use the new one.
        in_channels: image channels.
        stages: how many of layer1..layer4 to build: 2, 3 or 4 (default, all). A shorter encoder ends earlier
            (the layers after it are ``nn.Identity``) and has a much smaller receptive field: with
            ``stages=2`` (stem, layer1, layer2; stride 8) a pixel of its output sees 51 px of the input
            instead of several hundred - lesson 08 uses it to make scenes that are larger than the field.
            ``output_stride`` must be the stride the short encoder really ends at (8 for ``stages=2``).

    ``forward(x)``: ``[B, in_channels, H, W]`` -> ``{"low_level": [B, width, H/4, W/4],
    "out": [B, 8 width, H/os, W/os]}`` (sizes rounded up; ``width * 2 ** (stages - 1)`` channels when
    shorter). Attributes ``low_level_channels``, ``out_channels``, ``output_stride``.
    """

    def __init__(self, width: int = 64, blocks=(2, 2, 2, 2), output_stride: int = 32, in_channels: int = 3,
                 stages: int = 4):
        super().__init__()
        stages = validate.integer(stages, "stages", 2, 4)
        width = validate.positive_int(width, "width")
        self.in_channels = in_channels = validate.positive_int(in_channels, "in_channels")
        blocks = int_tuple(blocks, "blocks", length=4)  # one count per layer
        dilate = [False] + _dilations(output_stride)
        # The stem: a 7x7 stride-2 conv and a stride-2 max-pool bring the resolution to 1/4 cheaply.
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 7, 2, padding=3, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, padding=1),
        )
        channels, dilation, reached = width, 1, 4  # reached: the stride after the last stage built
        for k, (n, dil) in enumerate(zip(blocks, dilate), start=1):
            out = width * 2 ** (k - 1)
            stride = 1 if k == 1 else 2
            previous = dilation
            if dil:  # keep the resolution; dilate the following kernels by the stride we dropped
                dilation, stride = dilation * stride, 1
            if k > stages:  # a short encoder: the stage is skipped, the stride stays where it was
                setattr(self, f"layer{k}", nn.Identity())
                continue
            layer = [BasicBlock(channels, out, stride, dilation, first_dilation=previous)]
            layer += [BasicBlock(out, out, 1, dilation) for _ in range(n - 1)]
            setattr(self, f"layer{k}", nn.Sequential(*layer))
            channels, reached = out, reached * stride
        if reached != output_stride:
            raise ValueError(f"an encoder with stages={stages} ends at stride {reached}, not output_stride="
                             f"{output_stride}: pass output_stride={reached}")
        self._describe(width, channels, output_stride)


# --------------------------------------------------------------------------- torchvision ResNets


def _block_convs(block: nn.Module) -> tuple[list[nn.Conv2d], nn.Conv2d | None]:
    """The 3x3 convolutions of a torchvision BasicBlock / Bottleneck, and the one that carries the stride."""
    if hasattr(block, "conv3"):  # Bottleneck: 1x1, 3x3 (strided), 1x1
        return [block.conv2], block.conv2
    return [block.conv1, block.conv2], block.conv1  # BasicBlock: 3x3 (strided), 3x3


def dilate_resnet(resnet: nn.Module, output_stride: int) -> nn.Module:
    """Turn a torchvision ResNet (stride 32) into one of output stride 16 or 8, in place; returns it.

    The surgery of DeepLab: in each layer that must stop downsampling, the strided convolutions (the 3x3 of
    the first block and the 1x1 of its shortcut) get stride 1, and the 3x3 convolutions after them get
    dilation 2 (4 in layer4 at output stride 8), so every kernel samples the same input positions it did
    before - at a higher resolution: the new output at every 2nd (4th) position is the old output. The
    result equals ``resnet50(replace_stride_with_dilation=...)`` (checked in the tests) and also works for
    the basic-block ResNets (18, 34), which torchvision refuses. The weights are untouched: the parameter
    shapes do not change.
    """
    dilate = _dilations(output_stride)
    if _output_stride(resnet) != 32:
        raise ValueError(f"resnet must have output stride 32 to be dilated, got {_output_stride(resnet)}")
    dilation = 1
    for name, dil in zip(("layer2", "layer3", "layer4"), dilate):
        if not dil:
            continue
        layer = getattr(resnet, name)
        previous, dilation = dilation, dilation * 2
        for i, block in enumerate(layer):
            convs, strided = _block_convs(block)
            for conv in convs:
                # The conv that used to stride reads the old grid: it keeps the old dilation (as in
                # torchvision); every 3x3 conv after it reads the denser grid and is dilated.
                d = previous if (i == 0 and conv is strided) else dilation
                conv.dilation, conv.padding = (d, d), (d, d)
            strided.stride = (1, 1)
            if block.downsample is not None:
                block.downsample[0].stride = (1, 1)
    return resnet


def _output_stride(resnet: nn.Module) -> int:
    """Stride of ``layer4``'s output: 4 (stem) times the stride of each strided layer."""
    stride = 4
    for name in ("layer2", "layer3", "layer4"):
        _, strided = _block_convs(getattr(resnet, name)[0])
        stride *= strided.stride[0]
    return stride


class TorchvisionResNet(_ResNetFeatures):
    """Adapter: a torchvision ResNet (``resnet18``, ``resnet50``, ... built with ``weights=None``) as an encoder.

    Args:
        resnet: a ``torchvision.models.ResNet``. Build it yourself, e.g. ``resnet50(weights=None)``;
            whether to load pretrained weights is the caller's choice (``resnet_backbone`` takes ``weights``).
        output_stride: ``None`` keeps the network's stride (32, or 16 / 8 when it was built with
            ``replace_stride_with_dilation``); 16 or 8 dilates a stride-32 network with ``dilate_resnet``.

    Keeps the stem and ``layer1 .. layer4`` (the modules are shared, not copied) and drops the average pool
    and the classifier, so every parameter of the encoder is used. ``forward(x)``: ``[B, 3, H, W] ->
    {"low_level": [B, low_level_channels, H/4, W/4], "out": [B, out_channels, H/os, W/os]}``; ResNet-18:
    64 and 512 channels, ResNet-50: 256 and 2048.
    """

    def __init__(self, resnet: nn.Module, output_stride: int | None = None):
        super().__init__()
        missing = [n for n in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
                   if not hasattr(resnet, n)]
        if not isinstance(resnet, nn.Module) or missing:
            raise TypeError(f"resnet must be a torchvision ResNet (missing {missing}), got {type(resnet).__name__}")
        if output_stride is not None:
            dilate_resnet(resnet, output_stride)
        self.in_channels = resnet.conv1.in_channels
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4

        def out_channels(layer):
            last = layer[-1]
            return (last.bn3 if hasattr(last, "bn3") else last.bn2).num_features

        self._describe(out_channels(self.layer1), out_channels(self.layer4), _output_stride(resnet))


# --------------------------------------------------------------------------- by name


def resnet_backbone(backbone, output_stride: int, width: int = 16, weights=None, *, root=None,
                    download: bool = False) -> nn.Module:
    """A ResNet encoder returning ``{"low_level" (stride 4), "out" (stride output_stride)}``.

    The encoder of DeepLab v2/v3/v3+, PSPNet, FPN and the dilated FCN. ``backbone`` is:

    * ``"small"`` - ``ResNetBackbone(width, blocks=(1, 1, 2, 2), output_stride=output_stride)``, trainable on
      a CPU in minutes;
    * one of ``TORCHVISION_RESNETS`` - torchvision's network, dilated to ``output_stride``
      (``TorchvisionResNet``), with random weights or, given ``weights``, pretrained ones: torchvision's name
      for them (``"DEFAULT"``, ``"IMAGENET1K_V1"``, ``"ResNet50_Weights.IMAGENET1K_V2"``) or a state dict of
      that network. Named weights are read from the data folder ``root`` (``segedu.pretrained.encoder_state_dict``;
      ``python -m segedu download resnet50``) and fetched only with ``download=True``;
    * an encoder module (``ResNetBackbone``, ``TorchvisionResNet`` or one with their interface), returned as it
      is; its ``output_stride`` must be the one asked for (``ValueError`` otherwise).

    ``forward(x)`` of the result: ``[B, 3, H, W] -> {"low_level": [B, C_low, H/4, W/4], "out": [B, C, H/os, W/os]}``.
    """
    output_stride = check_output_stride(output_stride)
    width = validate.positive_int(width, "width")
    if weights is not None and not (isinstance(backbone, str) and backbone in TORCHVISION_RESNETS):
        raise ValueError(f"weights are torchvision's: they need a backbone in {TORCHVISION_RESNETS}, got {backbone!r}")
    if isinstance(backbone, nn.Module):
        if getattr(backbone, "output_stride", None) != output_stride:
            raise ValueError(
                f"the backbone module has output_stride {getattr(backbone, 'output_stride', None)}, "
                f"the model asks for {output_stride}: build the backbone with output_stride={output_stride}"
            )
        return backbone
    if backbone == "small":
        return ResNetBackbone(width=width, blocks=(1, 1, 2, 2), output_stride=output_stride)
    if isinstance(backbone, str) and backbone in TORCHVISION_RESNETS:
        import torchvision

        # weights=None here: torchvision would download; pretrained weights come from the data folder instead
        resnet = getattr(torchvision.models, backbone)(weights=None)
        if weights is not None:
            from segedu.pretrained import encoder_state_dict

            resnet.load_state_dict(encoder_state_dict(backbone, weights, root=root, download=download))
        return TorchvisionResNet(resnet, output_stride)
    error = ValueError if isinstance(backbone, str) else TypeError
    raise error(f"backbone must be 'small', one of {TORCHVISION_RESNETS} or an encoder module, got {backbone!r}")
