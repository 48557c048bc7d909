"""Real images that ship with matplotlib, as tensors - real data with no download.

matplotlib installs a few sample files in ``matplotlib/mpl-data/sample_data/`` (where
``matplotlib.cbook.get_sample_data`` finds them). Three of them are useful for segmentation:

* ``grace_hopper.jpg`` - a portrait photograph (600 x 512 pixels), for the "real photo" experiments
  (e.g. the dense CRF snapping a coarse mask to real edges, lesson 07);
* ``s1045.ima.gz`` - a 256 x 256 MRI slice of a head (the image of matplotlib's "mri_with_eeg" example);
* ``topobathy.npz`` - an elevation grid (metres) of a coast: land/water ground truth is ``elevation > 0``.

Each loader takes an optional ``size`` to shrink the picture for the quick profile: an int resizes the
shorter side to ``size`` (keeping the aspect ratio, as ``torchvision.transforms.v2.Resize`` does), a pair
``(h, w)`` resizes to exactly that. Downsizing is antialiased so the small picture does not alias.

Only the files are read: the folder is found from the installed distribution without importing
matplotlib, which the package imports in ``segedu.viz`` and ``segedu.widgets`` only (DESIGN.md).
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from segedu import validate

__all__ = ["MRI_RAW_MAX", "sample_path", "grace_hopper", "to_float", "mri_slice", "topobathy"]

MRI_RAW_MAX = 215
"""Largest raw value in ``s1045.ima.gz`` (its pixels are 0..215, stored as big-endian uint16)."""


def sample_path(name: str) -> Path:
    """The path of matplotlib's sample file ``name``; ``FileNotFoundError`` if this matplotlib lacks it."""
    # find_spec locates a top-level package without importing it (no matplotlib start-up cost here)
    spec = importlib.util.find_spec("matplotlib")
    folders = list(spec.submodule_search_locations or []) if spec else []
    path = Path(folders[0] if folders else ".") / "mpl-data" / "sample_data" / name
    if not spec or not path.is_file():
        raise FileNotFoundError(
            f"matplotlib sample file {name!r} not found at {path}; "
            "it ships with the regular matplotlib package - reinstall it with `pip install matplotlib`"
        )
    return path


def _resize(image: torch.Tensor, size: int | tuple[int, int] | None) -> torch.Tensor:
    """Antialiased bilinear resize of ``[C, H, W]``; ``size`` int = shorter side, pair = exact ``(h, w)``."""
    if size is None:
        return image
    if isinstance(size, (tuple, list)):
        size = list(validate.pair(size, "size", minimum=1))  # exactly (h, w)
    else:
        size = [validate.positive_int(size, "size")]  # the shorter side
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
    validate.tensor(image, "image", dtype=torch.uint8, layout="[..., H, W]")
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
