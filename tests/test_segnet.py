"""SegNet (Badrinarayanan et al., TPAMI 2017): any input size, the decoder unpools exactly at the encoder's
maxima, the paper's parameter count, what each decoder carries from the encoder, and the error rule."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segedu.models.fcn import small_fcn
from segedu.models.segnet import INDEX_BITS, SegNet, carried_from_encoder
from segedu.models.unet import UNet


@pytest.mark.parametrize("shape", [(1, 3, 64, 64), (2, 3, 33, 47), (1, 3, 5, 7), (1, 3, 97, 31)])
def test_logits_have_the_input_size_for_any_size(shape):
    model = SegNet(3, width=4).eval()
    with torch.no_grad():
        out = model(torch.randn(shape))
    assert out.shape == (shape[0], 3, *shape[-2:])


def test_one_input_channel_and_a_shallower_layout():
    model = SegNet(2, in_channels=1, width=4, convs=(1, 1, 1, 1, 1)).eval()
    assert model(torch.randn(2, 1, 40, 24)).shape == (2, 2, 40, 24)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 5 + 5 + 1  # encoder, decoder, classifier


def test_parameter_count_at_vgg16_width_is_the_papers():
    # Badrinarayanan et al. 2017, Table 6: SegNet has 29.5M parameters (VGG16's 13 convs, their mirror, BN).
    params = sum(p.numel() for p in SegNet(11).parameters())
    assert 29.4e6 < params < 29.5e6


def test_the_decoder_unpools_exactly_at_the_encoders_maxima():
    torch.manual_seed(0)
    model = SegNet(2, width=4).eval()
    with torch.no_grad():
        maps = model.features(torch.randn(2, 3, 64, 96))
    for k in range(1, 6):
        indices, unpooled, encoded = maps[f"indices{k}"], maps[f"unpool{k}"], maps[f"enc{k}"]
        assert indices.dtype == torch.int64 and unpooled.shape == encoded.shape
        # The remembered positions are where max pooling found each window's maximum ...
        pooled = F.max_pool2d(encoded, 2)
        assert torch.equal(encoded.flatten(2).gather(2, indices.flatten(2)), pooled.flatten(2))
        # ... the decoder's input lands exactly there ...
        source = maps[f"dec{k + 1}"] if k < 5 else pooled  # what the decoder unpools at stage k
        assert torch.equal(unpooled.flatten(2).gather(2, indices.flatten(2)), source.flatten(2))
        # ... and everything else is zero: one value per 2x2 window.
        assert not unpooled.flatten(2).scatter(2, indices.flatten(2), 0.0).any()
        window_rows, window_cols = indices // unpooled.shape[-1] // 2, indices % unpooled.shape[-1] // 2
        rows = torch.arange(indices.shape[-2])[:, None].expand_as(indices[0, 0])
        cols = torch.arange(indices.shape[-1])[None, :].expand_as(indices[0, 0])
        assert torch.equal(window_rows, rows.expand_as(indices)) and torch.equal(window_cols, cols.expand_as(indices))


def test_every_parameter_receives_a_gradient():
    model = SegNet(2, width=4)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_segnet_carries_indices_and_counts_them():
    model = SegNet(2, width=4)
    carried = carried_from_encoder(model, 64, 96, batch=2)
    # One index per pooled value: B * C_k * (H / 2^k) * (W / 2^k) for stages k = 1..5 of widths 4, 8, 16, 32, 32.
    values = sum(2 * c * (64 >> k) * (96 >> k) for k, c in zip(range(1, 6), (4, 8, 16, 32, 32)))
    assert carried == {"kind": "indices", "values": values, "bytes": 8 * values,
                       "bytes_needed": values * INDEX_BITS // 8}
    assert model.training  # the mode is restored


def test_unet_carries_its_skip_features_and_fcn_its_skip_scores():
    unet = UNet(2, base=4, depth=3).eval()
    values = sum(c * (64 >> level) * (48 >> level) for level, c in enumerate((4, 8, 16)))
    assert carried_from_encoder(unet, 64, 48) == {"kind": "features", "values": values, "bytes": 4 * values,
                                                  "bytes_needed": 4 * values}
    assert not unet.training
    assert carried_from_encoder(UNet(2, base=4, depth=3, skips=False), 64, 48)["values"] == 0
    # FCN-8s keeps K-channel scores of pool4 (stride 16) and pool3 (stride 8), on the input padded to 32.
    fcn = carried_from_encoder(small_fcn(3, "8s", 4), 50, 64)
    assert fcn == {"kind": "scores", "values": 3 * (4 * 4 + 8 * 8), "bytes": 4 * 3 * 80, "bytes_needed": 4 * 3 * 80}
    assert carried_from_encoder(small_fcn(3, "16s", 4), 64, 64)["values"] == 3 * 4 * 4
    assert carried_from_encoder(small_fcn(3, "32s", 4), 64, 64)["kind"] == "nothing"


def test_indices_need_far_less_memory_than_features():
    # The paper's argument (Sec. 3): at the same width, SegNet's decoder keeps 2 bits per pooled value where
    # U-Net keeps 32 bits for 4x as many pixels (a full-resolution map per level).
    segnet, unet = carried_from_encoder(SegNet(2, width=16), 64, 64), carried_from_encoder(UNet(2, base=16), 64, 64)
    assert segnet["bytes_needed"] * 50 < unet["bytes_needed"]


@pytest.mark.parametrize("make, error, match", [
    (lambda: SegNet(0), ValueError, "num_classes"),
    (lambda: SegNet(2.5), TypeError, "num_classes"),
    (lambda: SegNet(True), TypeError, "num_classes"),
    (lambda: SegNet(2, width=-1), ValueError, "width"),
    (lambda: SegNet(2, width=2.5), TypeError, "width"),
    (lambda: SegNet(2, in_channels=True), TypeError, "in_channels"),
    (lambda: SegNet(2, convs=(2, 2, 3)), ValueError, "convs"),
    (lambda: SegNet(2, convs=3), TypeError, "convs"),
    (lambda: SegNet(2, convs=(2, 2, 0, 3, 3)), ValueError, "convs"),
    (lambda: SegNet(2, width=2)(torch.randn(3, 16, 16)), ValueError, "x"),
    (lambda: SegNet(2, width=2)(torch.randn(1, 1, 16, 16)), ValueError, "x"),
    (lambda: carried_from_encoder(nn.Conv2d(3, 2, 1), 16, 16), TypeError, "model"),
    (lambda: carried_from_encoder(SegNet(2, width=2), 0, 16), ValueError, "height"),
    (lambda: carried_from_encoder(SegNet(2, width=2), 16, 2.5), TypeError, "width"),
    (lambda: carried_from_encoder(SegNet(2, width=2), 16, 16, batch=True), TypeError, "batch"),
])
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()
