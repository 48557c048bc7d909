"""segedu.ops.distance.edt against scipy.ndimage.distance_transform_edt."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from segedu.ops import distance
from segedu.ops.distance import edt

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def scipy_edt(mask: np.ndarray) -> np.ndarray:
    """Reference, image by image: scipy measures the distance to the nearest
    zero, so the True pixels (the sites) are passed as zeros."""
    flat = mask.reshape(-1, *mask.shape[-2:])
    out = np.stack([ndimage.distance_transform_edt(~m) for m in flat])
    return out.reshape(mask.shape)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "shape, density",
    [((23, 17), 0.05), ((3, 31, 40), 0.01), ((4, 1, 32, 32), 0.2), ((2, 9, 64), 0.003)],
)
def test_edt_matches_scipy_on_random_masks(shape, density, device):
    gen = torch.Generator().manual_seed(sum(shape))
    mask = torch.rand(shape, generator=gen) < density
    # make sure every image has at least one site (empty images: own test)
    mask.view(-1, *shape[-2:])[:, 0, 0] = True
    got = edt(mask.to(device))
    assert got.shape == mask.shape and got.dtype == torch.float32
    assert got.device.type == device
    np.testing.assert_allclose(got.cpu().numpy(), scipy_edt(mask.numpy()), rtol=0, atol=1e-4)


def test_edt_single_site_is_the_euclidean_norm():
    """Independent of scipy: one site at (r, c) gives sqrt((i-r)^2 + (j-c)^2)."""
    mask = torch.zeros(1, 20, 30, dtype=torch.bool)
    mask[0, 7, 22] = True
    i, j = torch.meshgrid(torch.arange(20.0), torch.arange(30.0), indexing="ij")
    expected = torch.sqrt((i - 7) ** 2 + (j - 22) ** 2)
    torch.testing.assert_close(edt(mask)[0], expected, rtol=0, atol=1e-5)


def test_edt_empty_image_is_inf_and_does_not_leak_into_the_batch():
    mask = torch.zeros(3, 12, 12, dtype=torch.bool)
    mask[1, 4, 4] = True
    mask[2] = True
    got = edt(mask)
    assert torch.isinf(got[0]).all() and (got[0] > 0).all()
    np.testing.assert_allclose(got[1].numpy(), scipy_edt(mask[1].numpy()), atol=1e-5)
    assert (got[2] == 0).all()


def test_edt_accepts_01_dtypes_and_does_not_track_gradients():
    gen = torch.Generator().manual_seed(1)
    mask = torch.rand(2, 16, 16, generator=gen) < 0.1
    mask[:, 0, 0] = True
    expected = edt(mask)
    for dtype in (torch.uint8, torch.int64, torch.float32, torch.float64):
        torch.testing.assert_close(edt(mask.to(dtype)), expected)
    as_float = mask.float().requires_grad_(True)
    assert not edt(as_float).requires_grad


def test_edt_processes_large_inputs_in_chunks(monkeypatch):
    """Chunk boundaries must not change the result."""
    gen = torch.Generator().manual_seed(2)
    mask = torch.rand(3, 21, 19, generator=gen) < 0.05
    mask[:, 10, 10] = True
    expected = scipy_edt(mask.numpy())
    monkeypatch.setattr(distance, "_CHUNK_ELEMENTS", 5 * 21 * 21)  # 5 rows a chunk
    np.testing.assert_allclose(edt(mask).numpy(), expected, atol=1e-4)


@pytest.mark.parametrize(
    "bad, error, words",
    [
        (np.zeros((4, 4), dtype=bool), TypeError, "torch.Tensor"),
        (torch.zeros(4, dtype=torch.bool), ValueError, "[H, W]"),
        (torch.zeros(1, 2, 4, 4, dtype=torch.bool), ValueError, "[B, 1, H, W]"),
        (torch.full((4, 4), 2), ValueError, "only 0 and 1"),
        (torch.full((4, 4), 0.5), ValueError, "only 0 and 1"),
    ],
)
def test_edt_rejects_bad_input(bad, error, words):
    with pytest.raises(error, match="mask") as info:
        edt(bad)
    assert words in str(info.value)
