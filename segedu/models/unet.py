"""U-Net: Ronneberger, Fischer & Brox, "U-Net: convolutional networks for biomedical image segmentation",
MICCAI 2015 (lesson 06).

An encoder and a decoder of the same depth, joined level by level:

* encoder level ``i``: two 3x3 conv + BN + ReLU with ``base * 2**i`` channels, then a 2x2 max-pool;
* bottleneck at level ``depth`` (``base * 2**depth`` channels: 1024 in the paper);
* decoder level ``i``: a 2x2 up-convolution that doubles the size and halves the channels, the encoder's
  level-``i`` features **concatenated** to it (the skip: fine detail the bottleneck has lost), two 3x3 conv
  + BN + ReLU;
* a 1x1 convolution to the class scores.

Compared with FCN-8s: several learned upsampling steps instead of one big one, skips at every level, and
concatenation (the decoder sees the features themselves) instead of adding score maps.

The paper's convolutions are unpadded ("valid"): every 3x3 convolution trims one pixel per side, so only
pixels whose whole context lies inside the input are predicted, and the skip features must be
**centre-cropped** to the smaller decoder map. A 572 x 572 input gives a 388 x 388 output (depth 4).
Large images are predicted tile by tile, each tile's missing context at the image border mirrored from
the image ("overlap-tile"): ``input_size_for`` gives the input a wanted output needs, ``MirrorContext``
does the mirroring for a whole image and ``tiled_predict`` the tiling for an image larger than a tile.
``padding="same"`` pads every convolution instead: output size = input size for any input (padded to a multiple
of ``2**depth`` first, cropped back after).
"""

from __future__ import annotations

import torch
from torch import nn

from segedu import validate
from segedu.models.backbones import pad_to_multiple
from segedu.models.common import check_images, check_num_classes

__all__ = ["center_crop", "unet_output_size", "unet_input_size", "mirror_pad", "DoubleConv", "UNet", "MirrorContext",
           "tiled_predict"]

PADDINGS = ("same", "valid")
UPS = ("transpose", "bilinear")


def _check_map(x) -> None:
    validate.tensor(x, "x", layout="[..., H, W]")
    if x.dim() < 2:
        raise ValueError(f"x must be a tensor [..., H, W] (at least 2-D), got shape {tuple(x.shape)}")


def center_crop(x: torch.Tensor, size) -> torch.Tensor:
    """The central ``[..., h, w]`` window of ``x`` ``[..., H, W]``; ``size`` is ``(h, w)`` or one int.

    When ``H - h`` is odd the extra row is cut at the bottom (``top = (H - h) // 2``), likewise for
    columns. U-Net crops the encoder's features this way before concatenating them to the decoder's.
    """
    _check_map(x)
    h, w = validate.pair(size, "size", minimum=1)
    height, width = x.shape[-2:]
    if not (h <= height and w <= width):
        raise ValueError(f"size must be at most the size of x {(height, width)}, got {(h, w)}")
    top, left = (height - h) // 2, (width - w) // 2
    return x[..., top : top + h, left : left + w]


def _trace(size: int, depth: int) -> tuple[int, str | None]:
    """Follow a valid U-Net's map down and up: ``(output side, None)`` or ``(0, why it fails)``."""
    for level in range(depth):
        size -= 4  # two unpadded 3x3 convolutions
        if size < 2 or size % 2:
            # An odd map would lose its last row in the pool, and the skip would no longer line up.
            return 0, f"the map before pool {level + 1} would be {size} pixels (it must be even and >= 2)"
        size //= 2
    size -= 4  # bottleneck
    for _ in range(depth):
        size = 2 * size - 4  # up-convolution, then two unpadded 3x3 convolutions
    return (size, None) if size >= 1 else (0, "nothing would be left to predict")


def unet_output_size(input_size: int, depth: int = 4, padding: str = "valid") -> int:
    """Output side of a U-Net for an input side (square or per axis).

    ``"same"``: the input size. ``"valid"``: follow the map down and up - every double conv trims 4 pixels,
    every pool halves (the map must be even there), every up-convolution doubles. 572 -> 388 at depth 4.
    Raises ``ValueError`` for an input no valid U-Net of this depth accepts, naming the nearest sizes that
    work (they are ``2**depth`` apart).
    """
    input_size = validate.positive_int(input_size, "input_size")
    depth = validate.positive_int(depth, "depth")
    validate.choice(padding, "padding", PADDINGS)
    if padding == "same":
        return input_size
    size, why = _trace(input_size, depth)
    if why is not None:
        smallest = unet_input_size(1, depth)
        near = [s for s in range(max(smallest, input_size - 2**depth), input_size + 2**depth + 1)
                if _trace(s, depth)[1] is None] or [smallest]
        raise ValueError(
            f"input_size {input_size} does not fit a valid U-Net of depth {depth}: {why}; "
            f"valid sizes near it: {near} (unet_input_size gives the one a wanted output needs)"
        )
    return size


def unet_input_size(output_size: int, depth: int = 4) -> int:
    """The smallest input side whose valid U-Net output is at least ``output_size`` (overlap-tile).

    Walk the network backwards: through the decoder each level needs ``ceil((size + 4) / 2)`` pixels
    below it, the bottleneck adds 4, then every encoder level doubles and adds 4. ``unet_input_size(388)``
    is 572 at depth 4; the output of that input is >= ``output_size`` (equal when the size is reachable).
    """
    output_size = validate.positive_int(output_size, "output_size")
    depth = validate.positive_int(depth, "depth")
    size = output_size
    for _ in range(depth):
        size = -(-(size + 4) // 2)  # ceil: the map below must produce at least this many pixels
    size += 4
    for _ in range(depth):
        size = 2 * size + 4
    return size


def _mirror_index(size: int, before: int, after: int, device) -> torch.Tensor:
    """Source indices of a mirrored axis: ``-before .. size + after - 1`` folded back into ``0 .. size - 1``."""
    index = torch.arange(-before, size + after, device=device)
    period = 2 * (size - 1)  # a mirrored signal repeats every 2 (n - 1) samples (the edges are not doubled)
    index = index.remainder(period)
    return torch.where(index >= size, period - index, index)


def mirror_pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Extend ``[..., H, W]`` by mirroring it at its borders (the paper's Fig. 2), by any amount.

    Equals ``F.pad(x, (left, right, top, bottom), mode="reflect")`` (edge pixels not repeated), which only
    accepts margins smaller than the map; wider margins keep reflecting, like ``numpy.pad(mode="reflect")``.
    Done by index arithmetic: a gather, no loop.
    """
    _check_map(x)
    top, bottom, left, right = (validate.integer(amount, name, minimum=0) for amount, name in
                                ((top, "top"), (bottom, "bottom"), (left, "left"), (right, "right")))
    height, width = x.shape[-2:]
    if (min(height, width) < 2 and (top or bottom or left or right)):
        raise ValueError(f"cannot mirror a map of size {(height, width)}: it needs at least 2 pixels per side")
    rows = _mirror_index(height, top, bottom, x.device)
    cols = _mirror_index(width, left, right, x.device)
    return x[..., rows[:, None], cols[None, :]]


class DoubleConv(nn.Sequential):
    """(3x3 conv -> BN -> ReLU) x 2: ``[B, in, H, W] -> [B, out, H', W']``.

    ``padding="same"``: ``H' = H``; ``"valid"``: ``H' = H - 4`` (each unpadded 3x3 trims one pixel per side).
    The conv bias is dropped: the BatchNorm that follows subtracts the mean anyway.
    """

    def __init__(self, in_channels: int, out_channels: int, padding: str = "same"):
        in_channels = validate.positive_int(in_channels, "in_channels")
        out_channels = validate.positive_int(out_channels, "out_channels")
        p = 1 if validate.choice(padding, "padding", PADDINGS) == "same" else 0
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=p, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=p, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


def _up(in_channels: int, out_channels: int, mode: str) -> nn.Module:
    """Double the size and halve the channels: the paper's 2x2 up-convolution, or bilinear + 1x1 conv."""
    if mode == "transpose":
        return nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        nn.Conv2d(in_channels, out_channels, kernel_size=1),
    )


class UNet(nn.Module):
    """U-Net (Ronneberger et al., MICCAI 2015) with BatchNorm.

    Args:
        num_classes: K, channels of the output logits.
        in_channels: image channels.
        base: channels of the first level; level i has ``base * 2**i`` (64 ... 1024 in the paper).
        depth: number of poolings (4 in the paper).
        padding: ``"same"`` (padded convs; output = input size, any size) or ``"valid"`` (the paper:
            unpadded convs and centre-cropped skips; output smaller than the input, see ``output_size``).
        up: ``"transpose"`` (2x2 up-convolution, stride 2) or ``"bilinear"`` (bilinear 2x + 1x1 conv).
        skips: ``False`` removes the concatenations: a plain encoder-decoder (the ablation of lesson 06).

    ``forward(x)``: ``[B, in_channels, H, W]`` -> logits ``[B, K, H, W]`` ("same") or
    ``[B, K, output_size(H), output_size(W)]`` ("valid"). ``features(x)`` returns every level's map too.
    """

    def __init__(self, num_classes: int, in_channels: int = 3, base: int = 64, depth: int = 4,
                 padding: str = "same", up: str = "transpose", skips: bool = True):
        super().__init__()
        num_classes = check_num_classes(num_classes)
        in_channels = validate.positive_int(in_channels, "in_channels")
        base, depth = validate.positive_int(base, "base"), validate.positive_int(depth, "depth")
        validate.choice(padding, "padding", PADDINGS)
        validate.choice(up, "up", UPS)
        validate.flag(skips, "skips")
        self.num_classes, self.in_channels, self.depth = num_classes, in_channels, depth
        self.padding, self.skips = padding, skips
        widths = [base * 2**i for i in range(depth + 1)]
        self.widths = widths
        self.encoder = nn.ModuleList(
            [DoubleConv(in_channels, widths[0], padding)]
            + [DoubleConv(widths[i - 1], widths[i], padding) for i in range(1, depth + 1)]
        )
        self.pool = nn.MaxPool2d(2)
        # Decoder level i (from depth-1 down to 0): up from level i+1, then concatenate level i's features.
        levels = range(depth - 1, -1, -1)
        self.ups = nn.ModuleList([_up(widths[i + 1], widths[i], up) for i in levels])
        self.decoder = nn.ModuleList(
            [DoubleConv(2 * widths[i] if skips else widths[i], widths[i], padding) for i in levels]
        )
        self.classifier = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    def output_size(self, input_size: int) -> int:
        """Output side for an input side (572 -> 388 for a valid U-Net of depth 4)."""
        return unet_output_size(input_size, self.depth, self.padding)

    def input_size_for(self, output_size: int) -> int:
        """Smallest input side whose output is at least ``output_size`` ("same": ``output_size`` itself)."""
        output_size = validate.positive_int(output_size, "output_size")
        return output_size if self.padding == "same" else unet_input_size(output_size, self.depth)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every level's feature map: ``enc0 .. enc{depth-1}``, ``bottleneck``, ``dec{depth-1} .. dec0`` and
        ``logits`` (level i is at 1 / 2**i of the (padded) input; "valid" maps are smaller)."""
        check_images(x, self.in_channels)
        height, width = x.shape[-2:]
        if self.padding == "same":
            x = pad_to_multiple(x, 2**self.depth)  # every pool then halves an even map
        else:
            for side in (height, width):
                self.output_size(side)  # a clear error for a size the valid network cannot take
        maps, skips = {}, []
        for level, block in enumerate(self.encoder):
            x = block(x if level == 0 else self.pool(x))
            name = "bottleneck" if level == self.depth else f"enc{level}"
            maps[name] = x
            skips.append(x)
        skips.pop()  # the bottleneck is the way up, not a skip
        for level, up, block in zip(range(self.depth - 1, -1, -1), self.ups, self.decoder):
            x = up(x)
            skip = skips.pop()
            if self.skips:
                # "valid": the encoder map is larger (it lost fewer border pixels), keep its centre.
                x = torch.cat([center_crop(skip, x.shape[-2:]), x], dim=1)
            x = block(x)
            maps[f"dec{level}"] = x
        logits = self.classifier(x)
        if self.padding == "same":
            logits = logits[..., :height, :width]
        maps["logits"] = logits
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)["logits"]


class MirrorContext(nn.Module):
    """A valid U-Net that predicts a whole image: the missing border context is mirrored (overlap-tile).

    ``forward(x)``: ``[B, C, H, W]`` -> logits ``[B, K, H, W]``. The image is mirror-padded to the input
    size ``unet.input_size_for(H)`` (margins split evenly, the extra pixel at the bottom/right), the
    U-Net predicts, and the output window that lies over the original image is cut out. Every prediction
    then comes from valid convolutions only; near the border part of the context is a mirror image.
    """

    def __init__(self, unet: UNet):
        super().__init__()
        if not isinstance(unet, UNet):
            raise TypeError(f"unet must be a UNet, got {type(unet).__name__}")
        self.unet = unet

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        need_h, need_w = self.unet.input_size_for(height), self.unet.input_size_for(width)
        top, left = (need_h - height) // 2, (need_w - width) // 2
        out = self.unet(mirror_pad(x, top, need_h - height - top, left, need_w - width - left))
        # Output pixel j sits over padded-input pixel j + margin, i.e. image pixel j + margin - top.
        margin_h, margin_w = (need_h - out.shape[-2]) // 2, (need_w - out.shape[-1]) // 2
        return out[..., top - margin_h : top - margin_h + height, left - margin_w : left - margin_w + width]


def tiled_predict(unet: UNet, image: torch.Tensor, tile: int) -> torch.Tensor:
    """Overlap-tile prediction of a valid U-Net on an image larger than its tile (Ronneberger et al. 2015, Fig. 2).

    ``image [B, C, H, W]`` -> logits ``[B, K, H, W]``, predicted ``tile x tile`` output pixels at a time:

    1. every output tile needs an input tile ``unet.input_size_for(tile)`` wide, the output plus a context
       ``margin = (input - output) / 2`` on every side (92 pixels for the paper's depth 4);
    2. the image is mirror-padded (``mirror_pad``) by ``margin`` at the top and left and at the bottom and right
       as far as the last row / column of tiles reaches;
    3. tile ``(i, j)`` reads the padded window starting at ``(i * tile, j * tile)`` - neighbouring input tiles
       overlap by ``2 * margin`` - and its first ``tile x tile`` outputs cover image pixels ``i * tile ..``
       (output pixel p sits over input pixel ``p + margin``);
    4. the tiles are stitched and the result is cropped to ``H x W``.

    When ``tile`` is a multiple of ``2**depth`` the result equals one pass over the whole padded image (a valid
    U-Net commutes with shifts by multiples of ``2**depth``, where every pooling window lines up again); other
    tiles give slightly different logits near the seams. Runs under the caller's grad mode.
    """
    if not isinstance(unet, UNet):
        raise TypeError(f"unet must be a UNet, got {type(unet).__name__}")
    if unet.padding != "valid":
        raise ValueError(f"unet must be a valid U-Net (padding='valid'), got padding={unet.padding!r}")
    check_images(image, unet.in_channels, "image")
    tile = validate.positive_int(tile, "tile")
    height, width = image.shape[-2:]
    need = unet.input_size_for(tile)
    margin = (need - unet.output_size(need)) // 2
    rows, cols = -(-height // tile), -(-width // tile)
    padded = mirror_pad(image, margin, (rows - 1) * tile + need - height - margin,
                        margin, (cols - 1) * tile + need - width - margin)
    out_rows = []
    for i in range(rows):
        row = [unet(padded[..., i * tile : i * tile + need, j * tile : j * tile + need])[..., :tile, :tile]
               for j in range(cols)]
        out_rows.append(torch.cat(row, dim=-1))
    return torch.cat(out_rows, dim=-2)[..., :height, :width]
