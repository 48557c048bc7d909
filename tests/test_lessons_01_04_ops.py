"""The package functions lessons 02-04 gained for their lessons: where bilinear samples (sample_positions),
bilinear upsampling as a transposed convolution (bilinear_by_transposed_conv), the sub-pixel means behind
checkerboard_strength (subpixel_means), and the receptive field measured from a gradient (gradient_extent)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segedu.ops.checkerboard import checkerboard_strength, subpixel_means
from segedu.ops.dilation import gradient_extent, receptive_field
from segedu.ops.upsample import bilinear_by_transposed_conv, bilinear_upsample, sample_positions


def test_sample_positions_for_both_conventions():
    assert sample_positions(3, 5, align_corners=True).tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]   # the lecture's table
    assert sample_positions(3, 5).tolist() == pytest.approx([-0.2, 0.4, 1.0, 1.6, 2.2])
    assert sample_positions(4, 8).tolist() == pytest.approx([-0.25, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.25])
    assert sample_positions(4, 1, align_corners=True).tolist() == [0.0]
    with pytest.raises(TypeError, match="align_corners"):
        sample_positions(3, 5, align_corners=1)
    with pytest.raises(ValueError, match="out_size"):
        sample_positions(3, 0)


def test_bilinear_upsample_still_samples_where_sample_positions_says():
    # a ramp along x is interpolated exactly: the output is the (clamped) sample position
    ramp = torch.arange(6.0).expand(1, 1, 2, 6)
    for align in (True, False):
        out = bilinear_upsample(ramp, size=(2, 15), align_corners=align)[0, 0, 0]
        assert torch.allclose(out.double(), sample_positions(6, 15, align).clamp(0, 5), atol=1e-6)


@pytest.mark.parametrize("factor", [1, 2, 3, 4])
def test_bilinear_by_transposed_conv_equals_interpolate(factor):
    x = torch.rand(2, 3, 7, 5, generator=torch.Generator().manual_seed(factor))
    want = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    padded = bilinear_by_transposed_conv(x, factor, replicate_edges=True)
    assert padded.shape == want.shape and torch.allclose(padded, want, atol=1e-5)
    plain = bilinear_by_transposed_conv(x, factor)
    band = factor // 2
    inside = (..., slice(band, want.shape[-2] - band), slice(band, want.shape[-1] - band))
    assert plain.shape == want.shape and torch.allclose(plain[inside], want[inside], atol=1e-5)
    if band:
        assert not torch.allclose(plain, want, atol=1e-3)      # the border band, where zeros come in


def test_bilinear_by_transposed_conv_checks_its_arguments():
    with pytest.raises(TypeError, match="factor"):
        bilinear_by_transposed_conv(torch.rand(1, 1, 3, 3), 2.0)
    with pytest.raises(TypeError, match="replicate_edges"):
        bilinear_by_transposed_conv(torch.rand(1, 1, 3, 3), 2, replicate_edges="yes")


def test_subpixel_means_and_the_strength_built_on_them():
    board = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).repeat(4, 4).expand(2, 3, 8, 8)   # a +-1 checkerboard
    means = subpixel_means(board)
    assert means.shape == (2, 3, 2, 2) and means[0, 0].tolist() == [[1.0, -1.0], [-1.0, 1.0]]
    assert checkerboard_strength(board).tolist() == [1.0, 1.0]
    assert subpixel_means(torch.ones(1, 1, 7, 9), period=3).shape == (1, 1, 3, 3)
    with pytest.raises(ValueError, match="period"):
        subpixel_means(torch.ones(1, 1, 2, 2), period=3)


def test_gradient_extent_measures_what_the_recurrence_computes():
    for rates in [(1,), (1, 1, 1), (1, 2, 4), (2, 2)]:
        net = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=r, dilation=r) for r in rates])
        for layer in net:
            nn.init.uniform_(layer.weight, 0.1, 1.0)
        assert gradient_extent(net, size=41) == receptive_field([(3, 1, r) for r in rates]).size
    pooled = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(2, 1, 3, padding=1))
    assert 1 <= gradient_extent(pooled, size=32, in_channels=3) <= receptive_field(pooled).size
    with pytest.raises(TypeError, match="model"):
        gradient_extent(lambda x: x)
    with pytest.raises(ValueError, match="size"):
        gradient_extent(nn.Conv2d(1, 1, 3), size=-1)
