"""U-Net: same/valid sizes (572 -> 388), overlap-tile arithmetic and tiled inference, centre crop, mirroring,
gradients, overfitting."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segedu.models.unet import (
    DoubleConv,
    MirrorContext,
    UNet,
    center_crop,
    mirror_pad,
    tiled_predict,
    unet_input_size,
    unet_output_size,
)


@pytest.mark.parametrize("depth", [1, 2, 4])
@pytest.mark.parametrize("up", ["transpose", "bilinear"])
@pytest.mark.parametrize("skips", [True, False])
def test_same_unet_keeps_any_input_size(depth, up, skips):
    model = UNet(3, base=2, depth=depth, up=up, skips=skips)
    for size in [(33, 47), (64, 64), (5, 9)]:
        assert model(torch.randn(2, 3, *size)).shape == (2, 3, *size)


def test_valid_unet_of_the_paper_maps_572_to_388():
    assert unet_output_size(572, depth=4) == 388
    assert unet_input_size(388, depth=4) == 572
    model = UNet(2, in_channels=1, base=2, depth=4, padding="valid")
    assert model.output_size(572) == 388 and model.input_size_for(388) == 572
    with torch.no_grad():
        assert model(torch.randn(1, 1, 572, 572)).shape == (1, 2, 388, 388)


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("up", ["transpose", "bilinear"])
def test_valid_output_size_matches_the_network(depth, up):
    model = UNet(2, base=2, depth=depth, padding="valid", up=up)
    for wanted in (1, 5, 20):
        size = model.input_size_for(wanted)
        out = model(torch.randn(1, 3, size, size + 2**depth))
        assert out.shape[-2:] == (unet_output_size(size, depth), unet_output_size(size + 2**depth, depth))
        assert out.shape[-2] >= wanted


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_input_size_for_is_the_smallest_input_that_covers_the_output(depth):
    valid = [s for s in range(1, 700) if _valid(s, depth)]
    assert all(b - a == 2**depth for a, b in zip(valid, valid[1:]))  # valid inputs are 2**depth apart
    for wanted in range(1, 200):
        size = unet_input_size(wanted, depth)
        assert unet_output_size(size, depth) >= wanted
        assert all(unet_output_size(s, depth) < wanted for s in valid if s < size)
    # Input minus output is constant: the context every prediction needs (184 = 2 x 92 at depth 4).
    assert len({s - unet_output_size(s, depth) for s in valid}) == 1
    assert depth != 4 or valid[0] - unet_output_size(valid[0], 4) == 184


def _valid(size, depth):
    try:
        unet_output_size(size, depth)
    except ValueError:
        return False
    return True


def test_invalid_sizes_raise_and_name_sizes_that_work():
    with pytest.raises(ValueError, match=r"570 .*pool 2.*\[556, 572\]"):
        unet_output_size(570)
    with pytest.raises(ValueError, match=r"188"):
        unet_output_size(20)
    with pytest.raises(ValueError, match="input_size"):
        UNet(2, base=2, depth=2, padding="valid")(torch.randn(1, 3, 50, 51))
    with pytest.raises(ValueError, match="padding"):
        UNet(2, padding="reflect")
    with pytest.raises(ValueError, match="up"):
        UNet(2, up="nearest")
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        UNet(2, base=2, depth=1)(torch.randn(1, 1, 8, 8))
    assert unet_output_size(57, 4, padding="same") == 57


def test_center_crop():
    x = torch.arange(7 * 8).view(1, 1, 7, 8)
    crop = center_crop(x, (4, 5))
    assert crop.shape == (1, 1, 4, 5)
    assert torch.equal(crop, x[..., 1:5, 1:6])  # 3 extra rows: 1 cut at the top, 2 at the bottom
    assert torch.equal(center_crop(x, 7), x[..., :, :7])  # one extra column: cut at the right
    assert torch.equal(center_crop(x, (7, 8)), x)
    assert torch.equal(center_crop(torch.arange(36).view(6, 6), 2), torch.tensor([[14, 15], [20, 21]]))
    with pytest.raises(ValueError, match="size"):
        center_crop(x, (8, 2))


@pytest.mark.parametrize("pads", [(0, 0, 2, 1), (5, 9, 0, 13), (20, 3, 17, 4)])
def test_mirror_pad_equals_numpy_reflect_for_any_margin(pads):
    top, bottom, left, right = pads
    x = torch.randn(2, 3, 5, 6)
    want = np.pad(x.numpy(), ((0, 0), (0, 0), (top, bottom), (left, right)), mode="reflect")
    assert np.allclose(mirror_pad(x, top, bottom, left, right).numpy(), want)
    with pytest.raises(ValueError, match="2 pixels"):
        mirror_pad(torch.randn(1, 1, 1, 1), 1, 0, 0, 0)


def test_mirror_context_predicts_at_the_input_size_and_stays_aligned():
    torch.manual_seed(0)
    unet = UNet(1, in_channels=1, base=2, depth=2, padding="valid").eval()
    model = MirrorContext(unet)
    x = torch.randn(1, 1, 40, 36)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (1, 1, 40, 36)
        # Poke one pixel: the outputs that change must be centred on it (same coordinates in and out).
        poked = x.clone()
        poked[..., 20, 17] += 100.0
        changed = (model(poked) - out).abs()[0, 0] > 1e-4
    rows, cols = changed.nonzero().T.float()
    assert abs((rows.min() + rows.max()) / 2 - 20) <= 2 and abs((cols.min() + cols.max()) / 2 - 17) <= 2
    with pytest.raises(TypeError, match="UNet"):
        MirrorContext(torch.nn.Identity())


def _random_valid_unet(depth):
    torch.manual_seed(depth)
    unet = UNet(2, base=3, depth=depth, padding="valid")
    with torch.no_grad():  # away from BatchNorm's default statistics, so that shifts show in the logits
        for module in unet.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return unet.eval()


@pytest.mark.parametrize("depth, tile, size", [(1, 8, (20, 21)), (2, 16, (37, 50)), (2, 12, (30, 30)),
                                               (3, 16, (40, 33)), (2, 64, (20, 30))])
def test_tiles_that_are_multiples_of_2_to_the_depth_equal_one_pass_over_the_padded_image(depth, tile, size):
    unet, x = _random_valid_unet(depth), torch.randn(1, 3, *size)
    need = unet.input_size_for(tile)
    margin = (need - unet.output_size(need)) // 2
    rows, cols = -(-size[0] // tile), -(-size[1] // tile)
    with torch.no_grad():
        tiled = tiled_predict(unet, x, tile)
        whole = unet(mirror_pad(x, margin, (rows - 1) * tile + need - size[0] - margin,
                                margin, (cols - 1) * tile + need - size[1] - margin))
    assert tiled.shape == (1, 2, *size)
    torch.testing.assert_close(tiled, whole[..., : size[0], : size[1]], atol=1e-5, rtol=1e-5)  # float32 sums


def test_each_tile_is_the_unet_on_its_own_mirrored_window():
    # A tile that is not a multiple of 2**depth: the pooling grid of the second tile is shifted against the
    # first's, so the stitched map is not one whole-image pass - but every tile is exactly its own window's.
    unet, x = _random_valid_unet(2), torch.randn(2, 3, 23, 19)
    tile, need = 10, unet.input_size_for(10)
    margin = (need - unet.output_size(need)) // 2
    with torch.no_grad():
        tiled = tiled_predict(unet, x, tile)
        padded = mirror_pad(x, margin, 2 * tile + need - 23 - margin, margin, tile + need - 19 - margin)
        for i in range(3):
            for j in range(2):
                window = padded[..., i * tile : i * tile + need, j * tile : j * tile + need]
                want = unet(window)[..., :tile, :tile][..., : 23 - i * tile, : 19 - j * tile]
                got = tiled[..., i * tile : (i + 1) * tile, j * tile : (j + 1) * tile]
                torch.testing.assert_close(got, want)
        whole = unet(padded[..., : need + 12, : need + 8])  # one pass from the same corner (valid sizes)
    torch.testing.assert_close(whole[..., :tile, :tile], tiled[..., :tile, :tile])  # the first tile agrees
    assert (whole[..., tile : 2 * tile, :tile] - tiled[..., tile : 2 * tile, :tile]).abs().max() > 1e-4


def test_tiled_predict_bad_arguments():
    valid, x = _random_valid_unet(1), torch.randn(1, 3, 16, 16)
    with pytest.raises(TypeError, match="unet"):
        tiled_predict(MirrorContext(valid), x, 8)
    with pytest.raises(ValueError, match="valid"):
        tiled_predict(UNet(2, base=2, depth=1), x, 8)
    with pytest.raises(ValueError, match="image"):
        tiled_predict(valid, torch.randn(1, 1, 16, 16), 8)
    for bad, error in ((0, ValueError), (-1, ValueError), (True, TypeError), (2.5, TypeError)):
        with pytest.raises(error, match="tile"):
            tiled_predict(valid, x, bad)


def test_parameters_gradients_and_the_no_skip_ablation():
    model = UNet(3, base=4, depth=3)
    F.cross_entropy(model(torch.randn(2, 3, 24, 40)), torch.randint(0, 3, (2, 24, 40))).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient for {missing}"

    def count(m):
        return sum(p.numel() for p in m.parameters())

    # Padding changes no weight; the paper's U-Net (base 64, depth 4, 1 input channel, 2 classes) has ~31M
    # parameters (31.03M with BatchNorm).
    with torch.device("meta"):
        paper = UNet(2, in_channels=1, base=64, depth=4, padding="valid")
        same = UNet(2, in_channels=1, base=64, depth=4)
        plain = UNet(2, in_channels=1, base=64, depth=4, skips=False)
    assert count(paper) == count(same) and round(count(paper) / 1e6, 1) == 31.0
    # Without skips each decoder's first conv reads half the channels.
    assert count(same) - count(plain) == sum(9 * 64 * 2**i * 64 * 2**i for i in range(4))
    features = UNet(3, base=4, depth=3).features(torch.randn(1, 3, 32, 32))
    assert list(features) == ["enc0", "enc1", "enc2", "bottleneck", "dec2", "dec1", "dec0", "logits"]
    assert features["enc2"].shape == (1, 16, 8, 8) and features["bottleneck"].shape == (1, 32, 4, 4)


def test_unet_overfits_four_images(overfit_miou):
    miou = overfit_miou(lambda: UNet(3, base=8, depth=2), steps=40)
    assert miou >= 0.95, miou


@pytest.mark.parametrize("bad, error", [(True, TypeError), (2.5, TypeError), (-1, ValueError)])
@pytest.mark.parametrize("make", [
    lambda v: UNet(v),
    lambda v: UNet(2, in_channels=v),
    lambda v: UNet(2, base=v),
    lambda v: UNet(2, depth=v),
    lambda v: DoubleConv(v, 4),
    lambda v: DoubleConv(4, v),
    lambda v: unet_output_size(v),
    lambda v: unet_output_size(572, v),
    lambda v: unet_input_size(v),
    lambda v: unet_input_size(388, v),
    lambda v: center_crop(torch.zeros(1, 1, 4, 4), v),
    lambda v: mirror_pad(torch.zeros(1, 1, 4, 4), v, 0, 0, 0),
])
def test_counts_follow_the_validation_rule(make, bad, error):
    """A bool or a float where a count is expected is a TypeError, a negative count a ValueError."""
    with pytest.raises(error):
        make(bad)


def test_arguments_of_a_wrong_type():
    with pytest.raises(TypeError, match="skips"):
        UNet(2, skips=1)
    with pytest.raises(TypeError, match="padding"):
        UNet(2, padding=0)
    with pytest.raises(TypeError, match="torch.Tensor"):
        UNet(2, base=2, depth=1)([[0.0]])  # a non-tensor is a wrong type, not a wrong value
    with pytest.raises(TypeError, match="x must be"):
        center_crop([[0.0]], 1)
