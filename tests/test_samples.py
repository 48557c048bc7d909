"""segedu.data.samples: matplotlib's sample images as tensors (shapes, dtypes, ranges, orientation)."""

import copy
import gzip
import importlib.util

import numpy as np
import pytest
import torch
from matplotlib import cbook

from segedu.data import samples


def test_grace_hopper_uint8_and_float():
    image = samples.grace_hopper()
    assert image.shape == (3, 600, 512) and image.dtype == torch.uint8
    assert image.float().std() > 20  # a real photo, not a blank
    as_float = samples.grace_hopper(as_float=True)
    assert as_float.dtype == torch.float32 and 0 <= as_float.min() and as_float.max() <= 1
    assert torch.allclose(as_float, image.float() / 255)


def test_grace_hopper_resize_is_antialiased():
    small = samples.grace_hopper(120)  # shorter side (width 512) -> 120, aspect kept: 600 * 120 / 512 = 140.6
    assert small.shape == (3, 140, 120) and small.dtype == torch.uint8
    assert samples.grace_hopper((32, 48), as_float=True).shape == (3, 32, 48)
    # Antialiased downsizing averages: the small image's mean brightness matches the full image's.
    assert abs(small.float().mean() - samples.grace_hopper().float().mean()) < 2.0


def test_mri_slice_scaled_from_big_endian_uint16():
    mri = samples.mri_slice()
    assert mri.shape == (1, 256, 256) and mri.dtype == torch.float32
    assert mri.min() == 0 and mri.max() == 1
    with gzip.open(cbook.get_sample_data("s1045.ima.gz", asfileobj=False), "rb") as f:
        raw = np.frombuffer(f.read(), dtype=">u2").reshape(256, 256)
    assert raw.max() == samples.MRI_RAW_MAX
    assert torch.allclose(mri[0], torch.from_numpy(raw / samples.MRI_RAW_MAX).float())
    assert 0.3 < (mri > 0).float().mean() < 0.6  # head in the middle, air (0) around it
    assert mri[0, 128, 128] > 0 and mri[0, 0, 0] == 0
    small = samples.mri_slice(64)
    assert small.shape == (1, 64, 64) and 0 <= small.min() and small.max() <= 1


def test_topobathy_land_is_elevation_above_zero():
    elevation, land = samples.topobathy()
    assert elevation.shape == (1, 91, 120) and elevation.dtype == torch.float32
    assert land.shape == (91, 120) and land.dtype == torch.int64
    assert torch.equal(land, (elevation[0] > 0).long())
    assert -1500 < elevation.min() < -1000 and 2000 < elevation.max() < 2500  # metres
    assert 0.4 < land.float().mean() < 0.7  # a coast: plausibly half land
    # North up: the file's last row (49.98 N) is row 0 and the east edge (122 W, the mainland) is land.
    raw = np.load(cbook.get_sample_data("topobathy.npz", asfileobj=False))["topo"]
    assert np.array_equal(elevation[0, 0].numpy(), raw[-1])
    assert land[:, -1].all()
    small_elevation, small_land = samples.topobathy((45, 60))
    assert small_elevation.shape == (1, 45, 60) and torch.equal(small_land, (small_elevation[0] > 0).long())


def test_bad_arguments_and_missing_files(monkeypatch):
    with pytest.raises(ValueError, match="size must be"):
        samples.grace_hopper(0)
    with pytest.raises(ValueError, match="size must be"):
        samples.mri_slice((64,))
    for bad in (True, 2.5, (64, 2.5), (True, 64)):
        with pytest.raises(TypeError, match="size must be"):
            samples.mri_slice(bad)
    for bad in (-1, (64, -1)):
        with pytest.raises(ValueError, match="size must be"):
            samples.mri_slice(bad)
    with pytest.raises(TypeError, match="uint8"):
        samples.to_float(torch.zeros(3))
    with pytest.raises(TypeError, match="image must be a torch.Tensor"):
        samples.to_float([0, 255])
    # a matplotlib whose installation lacks the sample files
    find_spec = importlib.util.find_spec
    broken = copy.copy(find_spec("matplotlib"))
    broken.submodule_search_locations = ["/nonexistent/matplotlib"]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: broken if name == "matplotlib" else find_spec(name, *a))
    with pytest.raises(FileNotFoundError, match="topobathy.npz"):
        samples.topobathy()
