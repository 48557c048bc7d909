"""Real images that ship with matplotlib, as tensors - real data with no download.

matplotlib installs a few sample files in ``matplotlib/mpl-data/sample_data/`` and finds them with
``matplotlib.cbook.get_sample_data``. Three of them are useful for segmentation:

* ``grace_hopper.jpg`` - a portrait photograph (600 x 512 pixels), for the "real photo" experiments
  (e.g. the dense CRF snapping a coarse mask to real edges, lesson 07);
* ``s1045.ima.gz`` - a 256 x 256 MRI slice of a head (the image of matplotlib's "mri_with_eeg" example);
* ``topobathy.npz`` - an elevation grid (metres) of a coast: land/water ground truth is ``elevation > 0``.

Each loader takes an optional ``size`` to shrink the picture for the quick profile: an int resizes the
shorter side to ``size`` (keeping the aspect ratio, as ``torchvision.transforms.v2.Resize`` does), a pair
``(h, w)`` resizes to exactly that. Downsizing is antialiased so the small picture does not alias.

matplotlib is imported inside the loaders only, so importing this module stays cheap.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

MRI_RAW_MAX = 215
"""Largest raw value in ``s1045.ima.gz`` (its pixels are 0..215, stored as big-endian uint16)."""


def sample_path(name: str) -> Path:
    """The path of matplotlib's sample file ``name``; ``FileNotFoundError`` if this matplotlib lacks it."""
    import matplotlib
    from matplotlib import cbook

    path = Path(cbook.get_sample_data(name, asfileobj=False))
    if not path.is_file():
        raise FileNotFoundError(
            f"matplotlib sample file {name!r} not found at {path} (matplotlib {matplotlib.__version__}); "
            "it ships with the regular matplotlib package - reinstall it with `pip install matplotlib`"
        )
    return path


def _resize(image: torch.Tensor, size: int | tuple[int, int] | None) -> torch.Tensor:
    """Antialiased bilinear resize of ``[C, H, W]``; ``size`` int = shorter side, pair = exact ``(h, w)``."""
    if size is None:
        return image
    if isinstance(size, bool) or not (
        (isinstance(size, int) and size > 0)
        or (isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size))
    ):
        raise ValueError(f"size must be None, a positive int (shorter side) or a pair (h, w) of them, got {size!r}")
    size = [size] if isinstance(size, int) else list(size)
    return TF.resize(image, size, interpolation=TF.InterpolationMode.BILINEAR, antialias=True)


def grace_hopper(size: int | tuple[int, int] | None = None, *, as_float: bool = False) -> torch.Tensor:
    """The portrait of Grace Hopper: uint8 ``[3, 600, 512]`` (RGB), or float32 in [0, 1] with ``as_float``.

    ``size`` shrinks it (see the module docstring), e.g. ``grace_hopper(160)`` -> ``[3, 187, 160]``.
    """
    with Image.open(sample_path("grace_hopper.jpg")) as jpeg:
        pixels = np.array(jpeg.convert("RGB"), dtype=np.uint8)  # [H, W, 3]
    image = _resize(torch.from_numpy(pixels).permute(2, 0, 1).contiguous(), size)
    return to_float(image) if as_float else image


def to_float(image: torch.Tensor) -> torch.Tensor:
    """uint8 ``[..., H, W]`` in 0..255 -> float32 in [0, 1] (``x / 255``)."""
    if not isinstance(image, torch.Tensor) or image.dtype != torch.uint8:
        got = image.dtype if isinstance(image, torch.Tensor) else type(image).__name__
        raise TypeError(f"image must be a uint8 tensor, got {got}")
    return image.to(torch.float32) / 255.0


def mri_slice(size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """The MRI slice ``s1045.ima.gz`` as float32 ``[1, 256, 256]`` in [0, 1].

    The file is 256 x 256 big-endian uint16 values (gzip-compressed); the raw values run
    from 0 (air) to ``MRI_RAW_MAX`` = 215 and are divided by that maximum. (matplotlib's own example reads
    them as native uint16, which on a little-endian machine multiplies every value by 256 - the same image,
    scaled.)
    """
    with gzip.open(sample_path("s1045.ima.gz"), "rb") as raw_file:
        raw = np.frombuffer(raw_file.read(), dtype=">u2")
    if raw.size != 256 * 256:
        raise ValueError(f"s1045.ima.gz must hold 256 x 256 uint16 values, got {raw.size}")
    image = torch.from_numpy(raw.astype(np.float32).reshape(1, 256, 256)) / float(raw.max())
    return _resize(image, size).clamp_(0.0, 1.0)  # antialiasing can overshoot a little at sharp edges


def topobathy(size: int | tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Elevation of a coast and its land mask: ``(elevation float32 [1, 91, 120], land int64 [91, 120])``.

    ``elevation`` is in metres (below zero is sea floor: about -1437 .. 2205), north up (the file stores the
    southernmost row first; it is flipped so row 0 is the north edge, like a map). ``land`` is
    ``elevation > 0`` as 0/1 labels - a free, exact segmentation ground truth. With ``size`` the elevation is
    resized first and ``land`` is computed from the resized elevation, so the two always agree.
    """
    with np.load(sample_path("topobathy.npz")) as npz:
        elevation, latitude = npz["topo"].astype(np.float32), npz["latitude"]
    if latitude[0] < latitude[-1]:  # rows run south -> north: flip to image order (top = north)
        elevation = elevation[::-1]
    elevation = _resize(torch.from_numpy(elevation.copy()).unsqueeze(0), size)
    land = (elevation[0] > 0).to(torch.int64)
    return elevation, land
