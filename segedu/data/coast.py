"""Land and water on a shaded relief: a real binary segmentation task with ground truth, no download.

matplotlib ships ``topobathy.npz``, the elevation of a coast (``segedu.data.samples.topobathy``: 91 x 120
cells of about 2.45 km, Vancouver Island, the Strait of Georgia and the mainland coast of British Columbia).
``elevation > 0`` is an exact land mask. Given the elevation itself the task would be a threshold, so the
input is a **shaded relief** of the land surface instead - the grey "hill shading" of printed maps:

* the sea surface is flat (the elevation is clipped at 0: the sea floor is under water, nobody sees it), so
  every sea pixel has the same brightness; land shows relief, brighter on slopes that face the light;
* the brightness of a surface patch is Lambert's law, ``max(0, n . l)`` for its unit normal ``n`` and the
  unit vector ``l`` towards the light, the normal coming from the elevation's gradient (Horn, "Hill shading
  and the reflectance map", Proceedings of the IEEE 69(1), 1981, with his 3 x 3 gradient estimate - the one GIS
  programs use);
* a little Gaussian noise (``noise``, fixed per region) stands for the imaging: without it "not exactly the
  sea's brightness" would be a perfect land detector, with it low, gentle land near the shore looks like the
  sea and only the context - the shape of the coast, the hills behind it - tells them apart.

Flat land and the sea shade alike, slopes that face the light are brighter and slopes that face away darker
than the sea, so no brightness threshold separates land from water: ``fit_threshold`` finds the best one (on
the training region) as the baseline a model has to beat.

Training and validation come from **disjoint regions** of the map: native columns ``[0, SPLIT_COLUMN)`` (the
west, 64 %) for training and ``[SPLIT_COLUMN, 120)`` (the east) for validation. Each region is cut out first
and then upsampled ``scale`` times (bilinear: the elevation; the land mask is ``elevation > 0`` of the
upsampled elevation, so input and truth agree) and shaded on its own: no validation cell influences a
training pixel, nor the other way round. ``CoastDataset("train")`` serves random crops (deterministic per
index and seed, with random flips), ``CoastDataset("val")`` a fixed grid of non-overlapping tiles.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from segedu import validate
from segedu.data import render, samples

__all__ = [
    "CLASSES",
    "SPLITS",
    "SPLIT_COLUMN",
    "CELL_METRES",
    "hillshade",
    "coast_region",
    "CoastDataset",
    "BrightnessThreshold",
    "fit_threshold",
]

CLASSES: tuple[str, ...] = ("water", "land")
SPLITS: tuple[str, ...] = ("train", "val")

SPLIT_COLUMN = 77
"""Native map columns ``[0, 77)`` are the training region, ``[77, 120)`` the validation region. At the default
``scale=3`` the validation region is 273 x 129 pixels: 4 x 2 tiles of 64 fit with little left over."""

CELL_METRES = 2450.0
"""Grid spacing of ``topobathy.npz`` in metres: 0.0223 degrees of latitude (2.48 km) and 0.0333 degrees of
longitude at 49 degrees north (2.43 km); the mean is used for both axes."""

_NOISE_SEEDS = {"train": 0, "val": 1}  # the imaging noise of each region: fixed, independent of crop seeds


def hillshade(
    elevation: torch.Tensor,
    spacing: float,
    azimuth: float = 315.0,
    altitude: float = 45.0,
    z_factor: float = 1.0,
) -> torch.Tensor:
    """Lambertian hill shading of an elevation grid (Horn 1981): ``[..., H, W]`` -> ``[..., H, W]`` in [0, 1].

    The gradient is Horn's 3 x 3 estimate (a Sobel-weighted central difference over the 8 neighbours, the
    border replicated); the surface normal is ``(-dz/dx, -dz/dy, 1)`` normalised, with ``x`` pointing east
    (right) and ``y`` south (down). The light comes from ``azimuth`` degrees clockwise from north (315 =
    north-west, the cartographers' convention: light from the top left) at ``altitude`` degrees above the
    horizon. Brightness is ``max(0, n . l)``: a flat cell gets ``sin(altitude)`` (0.71 at 45 degrees).

    Args:
        elevation: float ``[..., H, W]`` in metres (or any unit of ``spacing``).
        spacing: grid spacing, same unit as the elevation (> 0).
        azimuth: direction the light comes from, degrees clockwise from north.
        altitude: angle of the light above the horizon, degrees in (0, 90].
        z_factor: vertical exaggeration (> 0): multiplies every slope.
    """
    validate.tensor(elevation, "elevation", dtype="floating", layout="[..., H, W]")
    if elevation.dim() < 2:
        raise ValueError(f"elevation must be at least 2-D [..., H, W], got shape {tuple(elevation.shape)}")
    spacing = validate.positive_number(spacing, "spacing")
    azimuth = validate.number(azimuth, "azimuth")
    altitude = validate.number(altitude, "altitude", minimum=0.0, maximum=90.0, open_minimum=True)
    z_factor = validate.positive_number(z_factor, "z_factor")

    shape = elevation.shape
    z = elevation.reshape(-1, 1, *shape[-2:]) * z_factor
    p = F.pad(z, (1, 1, 1, 1), mode="replicate")[:, 0]
    a, b, c = p[:, :-2, :-2], p[:, :-2, 1:-1], p[:, :-2, 2:]  # the 3 x 3 neighbourhood, row by row
    d, f = p[:, 1:-1, :-2], p[:, 1:-1, 2:]
    g, h, i = p[:, 2:, :-2], p[:, 2:, 1:-1], p[:, 2:, 2:]
    dz_dx = ((c + 2 * f + i) - (a + 2 * d + g)) / (8 * spacing)
    dz_dy = ((g + 2 * h + i) - (a + 2 * b + c)) / (8 * spacing)

    az, alt = math.radians(azimuth), math.radians(altitude)
    light = (math.sin(az) * math.cos(alt), -math.cos(az) * math.cos(alt), math.sin(alt))  # towards the light
    dot = -dz_dx * light[0] - dz_dy * light[1] + light[2]
    return (dot / torch.sqrt(1 + dz_dx**2 + dz_dy**2)).clamp(min=0.0).reshape(shape)


def coast_region(
    split: str,
    scale: int = 3,
    *,
    noise: float = 0.02,
    z_factor: float = 2.0,
    azimuth: float = 315.0,
    altitude: float = 45.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One whole region of the map: ``(image float32 [3, H, W] in [0, 1], land int64 [H, W])``.

    ``split`` ``"train"`` is native columns ``[0, SPLIT_COLUMN)``, ``"val"`` the rest; ``H = 91 * scale`` and
    ``W`` = the region's columns times ``scale`` (``train``: 273 x 231, ``val``: 273 x 129 at ``scale=3``).
    The region's elevation is upsampled (bilinear), clipped at sea level and shaded (``hillshade``, with
    ``z_factor`` vertical exaggeration); ``noise`` is the standard deviation of the Gaussian noise added to
    the shading (a fixed draw per region). The three channels are equal (a grey picture that the zoo's
    three-channel models take as it is). ``land`` is 1 where the upsampled elevation is above 0.
    """
    split = validate.choice(split, "split", SPLITS)
    scale = validate.positive_int(scale, "scale")
    noise = validate.number(noise, "noise", minimum=0.0, maximum=1.0)
    elevation, _ = samples.topobathy()  # [1, 91, 120], north up
    part = elevation[..., :SPLIT_COLUMN] if split == "train" else elevation[..., SPLIT_COLUMN:]
    # cut first, upsample second: bilinear interpolation never reads a cell of the other region
    up = F.interpolate(part[None], scale_factor=scale, mode="bilinear", align_corners=False)[0, 0]
    land = (up > 0).to(torch.int64)
    shade = hillshade(up.clamp(min=0.0), CELL_METRES / scale, azimuth, altitude, z_factor)
    if noise > 0:
        generator = torch.Generator().manual_seed(_NOISE_SEEDS[split])
        shade = shade + noise * torch.randn(shade.shape, generator=generator)
    image = shade.clamp(0.0, 1.0).expand(3, -1, -1).contiguous()
    return image, land


class CoastDataset(Dataset):
    """Crops of one region of the shaded coast: items ``(image float32 [3, size, size], land int64 [size, size])``.

    * ``split="train"``: ``length`` (default 1024) random crops of the training region. Crop ``i`` is a pure function of
      ``(seed, i)`` (the counter-based hash of ``segedu.data.render``): its position, and a horizontal and a
      vertical flip, each with probability 1/2. A flipped hill shading is the shading of the flipped land lit
      from the mirrored direction - still a shaded relief, so the flips teach the model not to rely on where
      the light comes from.
    * ``split="val"``: a fixed grid of non-overlapping tiles of the validation region, centred in it (every
      covered pixel is scored exactly once; the few rows and columns around the grid that no whole tile fits
      are not used: ``coverage`` says how much is covered). ``length`` must be ``None``: the tiles fix it.

    Attributes: ``split``, ``size``, ``length``, ``seed``, ``scale``, ``image`` ``[3, H, W]`` and ``mask``
    ``[H, W]`` (the whole region, see ``coast_region``), ``columns`` (the native map columns of the region, a
    ``range``), ``tiles`` (``split="val"``: the ``(top, left)`` of every tile), ``coverage``, ``classes``,
    ``num_classes``. ``batch(indices)`` returns a whole batch at once (what ``segedu.train.fit`` draws from).
    Other keyword arguments go to ``coast_region``.
    """

    def __init__(
        self,
        split: str = "train",
        size: int = 64,
        length: int | None = None,
        *,
        seed: int = 0,
        scale: int = 3,
        noise: float = 0.02,
        z_factor: float = 2.0,
    ):
        self.split = validate.choice(split, "split", SPLITS)
        self.size = validate.integer(size, "size", minimum=8)
        self.seed = validate.integer(seed, "seed")
        self.scale = validate.positive_int(scale, "scale")
        self.image, self.mask = coast_region(split, scale, noise=noise, z_factor=z_factor)
        self.columns = range(0, SPLIT_COLUMN) if split == "train" else range(SPLIT_COLUMN, 120)
        self.classes, self.num_classes = CLASSES, len(CLASSES)
        height, width = self.mask.shape
        if self.size > min(height, width):
            raise ValueError(
                f"size must be <= {min(height, width)} (the {split} region is {height} x {width} pixels at "
                f"scale={scale}; raise scale for larger crops), got {size}"
            )
        if split == "train":
            self.length = validate.positive_int(1024 if length is None else length, "length")
            self.tiles: list[tuple[int, int]] = []
            self.coverage = 1.0
        else:
            if length is not None:
                raise ValueError(f"length must be None for split='val' (the tiles fix it), got {length!r}")
            rows, cols = height // self.size, width // self.size
            top, left = (height - rows * self.size) // 2, (width - cols * self.size) // 2
            self.tiles = [(top + r * self.size, left + c * self.size) for r in range(rows) for c in range(cols)]
            self.length = len(self.tiles)
            self.coverage = self.length * self.size**2 / (height * width)

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        return (f"CoastDataset(split={self.split!r}, size={self.size}, length={self.length}, seed={self.seed}, "
                f"scale={self.scale}, region {tuple(self.mask.shape)}, land {self.mask.float().mean():.0%})")

    def __getitem__(self, i):
        images, masks = self.batch([validate.integer(i, "index")])
        return images[0], masks[0]

    def crops(self, indices) -> torch.Tensor:
        """Where the crops ``indices`` lie: int64 ``[B, 4]`` = ``(top, left, flip left-right, flip up-down)``."""
        idx = self._indices(indices)
        if self.split == "val":
            tiles = torch.tensor(self.tiles, dtype=torch.int64).reshape(-1, 2)[idx]
            return torch.cat([tiles, torch.zeros_like(tiles)], 1)
        u = render.uniform(render.scene_keys(self.seed, idx), torch.arange(4))  # [B, 4] in [0, 1)
        height, width = self.mask.shape
        top = (u[:, 0] * (height - self.size + 1)).floor().long()
        left = (u[:, 1] * (width - self.size + 1)).floor().long()
        return torch.stack([top, left, (u[:, 2] < 0.5).long(), (u[:, 3] < 0.5).long()], 1)

    def batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """The crops ``indices`` (ints; negative ones count from the end): ``(images [B, 3, S, S], masks
        [B, S, S])``."""
        images, masks = [], []
        for top, left, flip_lr, flip_ud in self.crops(indices).tolist():
            image = self.image[:, top : top + self.size, left : left + self.size]
            mask = self.mask[top : top + self.size, left : left + self.size]
            flips = [d for d, on in ((-1, flip_lr), (-2, flip_ud)) if on]
            if flips:
                image, mask = image.flip(flips), mask.flip(flips)
            images.append(image)
            masks.append(mask)
        return torch.stack(images), torch.stack(masks)

    def _indices(self, indices) -> torch.Tensor:
        if isinstance(indices, torch.Tensor):
            validate.tensor(indices, "indices", (0, 1), dtype="integer")
            values = indices.reshape(-1).tolist()
        else:
            try:
                values = list(indices)
            except TypeError:
                raise TypeError(f"indices must be a sequence of ints, got {type(indices).__name__}") from None
        values = [validate.integer(v, f"indices[{k}]") for k, v in enumerate(values)]
        for v in values:
            if not -self.length <= v < self.length:
                raise IndexError(f"index {v} is out of range for a CoastDataset of length {self.length}")
        return torch.tensor([v % self.length for v in values], dtype=torch.int64)


class BrightnessThreshold(nn.Module):
    """The baseline: "land" where the mean brightness over the channels is above (or below) a threshold.

    ``forward(images [B, C, H, W]) -> logits [B, 2, H, W]`` (water, land): the land logit is the signed
    distance to the threshold, the water logit 0, so ``argmax`` is the rule and ``segedu.train.evaluate``
    scores it like any model. No parameters: it runs on whatever device the images are on.
    """

    def __init__(self, threshold: float, land_brighter: bool = True):
        super().__init__()
        self.threshold = validate.number(threshold, "threshold")
        self.land_brighter = validate.flag(land_brighter, "land_brighter")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        validate.images(images, "images")
        distance = images.mean(1) - self.threshold
        land = distance if self.land_brighter else -distance
        return torch.stack([torch.zeros_like(land), land], 1)

    def extra_repr(self) -> str:
        return f"land where brightness {'>' if self.land_brighter else '<'} {self.threshold:.4f}"


def fit_threshold(images: torch.Tensor, masks: torch.Tensor, bins: int = 256) -> BrightnessThreshold:
    """The brightness threshold (and direction) with the best two-class mIoU on ``(images, masks)``.

    ``images`` float ``[C, H, W]`` or ``[B, C, H, W]`` in [0, 1], ``masks`` int64 ``[H, W]`` or ``[B, H, W]``
    with 0 = water, 1 = land (255 = ignored). Every edge of ``bins`` equal bins of [0, 1] is tried, in both
    directions, from the two classes' brightness histograms (cumulative counts give every threshold's
    confusion matrix at once). Fit it on the training region only: choosing it on the validation region would
    flatter the baseline. The returned module carries ``miou`` (its score on the data it was fitted on).
    """
    validate.tensor(images, "images", (3, 4), dtype="floating", layout="[C, H, W] or [B, C, H, W]")
    validate.tensor(masks, "masks", (2, 3), dtype="integer", layout="[H, W] or [B, H, W]")
    bins = validate.integer(bins, "bins", minimum=2)
    brightness = images.mean(-3)
    if brightness.shape != masks.shape:
        raise ValueError(f"masks must have shape {tuple(brightness.shape)} to match images, got {tuple(masks.shape)}")
    counts = []
    for label in (0, 1):  # per-class histograms: counts[label][k] = pixels of that class in bin k
        values = brightness[masks == label].clamp(0, 1).float().cpu()
        counts.append(torch.histc(values, bins, 0.0, 1.0).double())
    # below[c][k] = pixels of class c under edge k (edge k = k / bins), above = the rest
    below = [torch.cat([torch.zeros(1, dtype=torch.float64), c.cumsum(0)]) for c in counts]
    above = [c.sum() - b for c, b in zip(counts, below)]
    best = (-1.0, 0.0, True)
    for land_brighter in (True, False):
        land_in, land_out = (above[1], below[1]) if land_brighter else (below[1], above[1])
        water_in, water_out = (below[0], above[0]) if land_brighter else (above[0], below[0])
        iou_land = land_in / (land_in + land_out + water_out).clamp(min=1)
        iou_water = water_in / (water_in + water_out + land_out).clamp(min=1)
        miou = (iou_land + iou_water) / 2
        k = int(miou.argmax())
        if float(miou[k]) > best[0]:
            best = (float(miou[k]), k / bins, land_brighter)
    model = BrightnessThreshold(best[1], best[2])
    model.miou = best[0]
    return model
