"""segedu.models.deeplab: shapes, output strides, ASPP rates, separable savings, multi-grid, and DeepLab v3
against torchvision's deeplabv3_resnet50 (same parameters, converted weights, same output)."""

import pytest
import torch
from torch import nn

from segedu.models import deeplab
from segedu.models.backbones import ResNetBackbone
from segedu.models.deeplab import (
    ASPP,
    DeepLabV1,
    DeepLabV2,
    DeepLabV3,
    DeepLabV3Plus,
    aspp_rates,
    atrous_valid_taps,
    conv_bn_relu,
)


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    "make",
    [
        lambda: DeepLabV1(5, backbone="small", width=4),
        lambda: DeepLabV2(5, backbone="small", width=4),
        lambda: DeepLabV3(5, backbone="small", width=4, output_stride=16, aspp_channels=16),
        lambda: DeepLabV3(5, backbone="small", width=4, output_stride=8, aspp_channels=16, multi_grid=(1, 2)),
        lambda: DeepLabV3Plus(5, backbone="small", width=4, aspp_channels=16, decoder_channels=16, separable=True),
    ],
)
def test_logits_at_input_size_and_trainable(make):
    torch.manual_seed(0)
    model = make()
    x = torch.rand(2, 3, 37, 45)  # odd sizes: not a multiple of any stride
    out = model(x)
    assert out.shape == (2, 5, 37, 45)
    loss = nn.functional.cross_entropy(out, torch.randint(0, 5, (2, 37, 45)))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_deeplabv3_resnet50_is_torchvisions():
    from torchvision.models.segmentation import deeplabv3_resnet50

    torch.manual_seed(0)
    theirs = deeplabv3_resnet50(weights=None, weights_backbone=None, aux_loss=False, num_classes=21).eval()
    ours = DeepLabV3(21, backbone="resnet50", output_stride=8).eval()
    assert count(ours) == count(theirs)
    print(f"parameters: ours {count(ours):,}, torchvision {count(theirs):,}")
    with torch.no_grad():  # torchvision's BN statistics are the defaults: make them non-trivial first
        for m in theirs.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    deeplab.load_torchvision_deeplabv3(ours, theirs.state_dict())
    x = torch.rand(1, 3, 61, 53)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x)["out"], rtol=1e-4, atol=1e-4)
    # the rates torchvision hard-codes are v3's (6, 12, 18) doubled for output stride 8
    assert ours.rates == (12, 24, 36) == tuple(theirs.classifier[0].convs[1][0].dilation[:1]
                                              + theirs.classifier[0].convs[2][0].dilation[:1]
                                              + theirs.classifier[0].convs[3][0].dilation[:1])
    with pytest.raises(ValueError, match="aux_loss"):
        deeplab.load_torchvision_deeplabv3(ours, {"aux_classifier.0.weight": torch.zeros(1)})


def test_output_stride_sets_resolution_not_parameters():
    x = torch.rand(1, 3, 64, 64)
    sizes, params = {}, {}
    for os in (8, 16, 32):
        model = DeepLabV3(3, backbone="small", width=4, output_stride=os, aspp_channels=8)
        sizes[os] = tuple(model.backbone(x)["out"].shape[-2:])
        params[os] = count(model)
    assert sizes == {8: (8, 8), 16: (4, 4), 32: (2, 2)}
    assert len(set(params.values())) == 1  # dilation spreads the same kernels: no new weights


def test_v1_dilated_vgg():
    model = DeepLabV1(4, backbone="small", width=4)
    feats = model.backbone(torch.rand(1, 3, 64, 64))
    assert feats["pool5"].shape[-2:] == (8, 8) and feats["pool3"].shape[-2:] == (8, 8)
    dilations = [m.dilation[0] for m in model.backbone.features if isinstance(m, nn.Conv2d)]
    assert dilations == [1, 1, 1, 1, 1, 1, 2, 2]  # conv5 dilated by 2 (after pool4)
    assert model.head[0].dilation == (12, 12)  # fc6: LargeFOV
    plain = DeepLabV1(4, backbone="small", width=4, output_stride=32)
    assert plain.backbone(torch.rand(1, 3, 64, 64))["pool5"].shape[-2:] == (2, 2)
    assert plain.head[0].dilation == (3, 3) and count(plain) == count(model)
    full = DeepLabV1(21)  # VGG16 + LargeFOV: the paper's network
    assert 20e6 < count(full) < 21e6
    assert full.backbone.strides["pool5"] == 8


def test_v2_sums_four_atrous_score_maps():
    model = DeepLabV2(3, backbone="small", width=4)
    branches = model.classifier.branches
    assert [b.dilation[0] for b in branches] == [6, 12, 18, 24]
    assert all(b.out_channels == 3 for b in branches)
    f = torch.rand(1, model.backbone.out_channels, 9, 9)
    torch.testing.assert_close(model.classifier(f), sum(b(f) for b in branches))


def test_aspp_rates():
    assert aspp_rates(16) == (6, 12, 18)
    assert aspp_rates(8) == (12, 24, 36)
    assert aspp_rates(32) == (3, 6, 9)
    assert aspp_rates(4, base_rates=(6, 12, 18, 24), base_stride=8) == (12, 24, 36, 48)
    with pytest.raises(ValueError, match="integer"):
        aspp_rates(7)
    with pytest.raises(ValueError, match="output_stride"):
        aspp_rates(0)


def test_atrous_taps_degenerate_with_large_rates():
    assert atrous_valid_taps(1000, 1) > 0.99
    assert atrous_valid_taps(8, 8) == pytest.approx(1 / 9)  # only the centre tap: a 1x1 convolution
    fractions = [atrous_valid_taps(16, r) for r in (1, 2, 4, 8, 12, 16)]
    assert fractions == sorted(fractions, reverse=True) and fractions[-1] == pytest.approx(1 / 9)
    # by hand: 3x3 map, rate 1: corners see 4 taps, edges 6, the centre 9 -> (4*4 + 4*6 + 9) / 81
    assert atrous_valid_taps(3, 1) == pytest.approx((16 + 24 + 9) / 81)


def test_image_pooling_branch_is_constant_over_space():
    aspp = ASPP(6, (1, 2), out_channels=4).eval()
    pooled = aspp.convs[-1](torch.rand(2, 6, 5, 7))
    assert pooled.shape == (2, 4, 5, 7)
    assert torch.allclose(pooled, pooled[:, :, :1, :1].expand_as(pooled))


def test_separable_convolution_saving():
    cin, cout = 64, 128
    conv = lambda layer: sum(m.weight.numel() for m in layer if isinstance(m, nn.Conv2d))  # noqa: E731
    assert conv(conv_bn_relu(cin, cout, 3)) == 9 * cin * cout
    assert conv(conv_bn_relu(cin, cout, 3, separable=True)) == 9 * cin + cin * cout
    full = DeepLabV3Plus(5, backbone="small", width=8)
    sep = DeepLabV3Plus(5, backbone="small", width=8, separable=True)
    assert count(sep.aspp) + count(sep.decoder) < 0.3 * (count(full.aspp) + count(full.decoder))
    x = torch.rand(2, 3, 32, 32)
    assert sep(x).shape == full(x).shape == (2, 5, 32, 32)


def test_multi_grid():
    from torchvision.models import resnet50

    from segedu.models.backbones import TorchvisionResNet

    enc = TorchvisionResNet(resnet50(weights=None), output_stride=16)
    deeplab.apply_multi_grid(enc, (1, 2, 4))
    assert [block.conv2.dilation[0] for block in enc.layer4] == [2, 4, 8]
    small = ResNetBackbone(width=4, blocks=(1, 1, 1, 2), output_stride=8)
    deeplab.apply_multi_grid(small, (1, 2))
    assert [block.conv2.dilation[0] for block in small.layer4] == [4, 8]
    with pytest.raises(ValueError, match="multi_grid"):
        deeplab.apply_multi_grid(small, (1, 2, 4))


def test_v3plus_decoder_uses_low_level_features():
    torch.manual_seed(0)
    model = DeepLabV3Plus(3, backbone="small", width=4, aspp_channels=8, decoder_channels=8).eval()
    assert model.reduce[0].out_channels == 48 and model.reduce[0].in_channels == model.backbone.low_level_channels
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        base = model(x)
        model.reduce[0].weight.zero_()  # cut the skip: the output changes
        assert not torch.allclose(base, model(x))


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        DeepLabV3(0, backbone="small")
    with pytest.raises(ValueError, match="output_stride"):
        DeepLabV3(3, backbone="small", output_stride=12)
    with pytest.raises(ValueError, match="backbone"):
        DeepLabV3(3, backbone="mobilenet")
    with pytest.raises(ValueError, match="output_stride=8"):
        DeepLabV3(3, backbone=ResNetBackbone(width=4, output_stride=16), output_stride=8)
    with pytest.raises(ValueError, match="backbone"):
        DeepLabV1(3, backbone="resnet50")
    with pytest.raises(TypeError, match="x must be"):
        DeepLabV3(3, backbone="small", width=4)(torch.rand(3, 8, 8).numpy())


# --------------------------------------------------------------------------- the validation rule

BAD_COUNTS = [(True, TypeError), (2.5, TypeError), (-1, ValueError)]


@pytest.mark.parametrize("bad, error", BAD_COUNTS)
@pytest.mark.parametrize("make", [
    lambda v: DeepLabV1(v, backbone="small", width=4),
    lambda v: DeepLabV1(3, backbone="small", width=v),
    lambda v: DeepLabV1(3, backbone="small", width=4, output_stride=v),
    lambda v: DeepLabV1(3, backbone="small", width=4, fc_channels=v),
    lambda v: DeepLabV1(3, backbone="small", width=4, fc_dilation=v),
    lambda v: DeepLabV2(v, backbone="small", width=4),
    lambda v: DeepLabV2(3, backbone="small", width=4, rates=(6, v)),
    lambda v: DeepLabV3(v, backbone="small", width=4),
    lambda v: DeepLabV3(3, backbone="small", width=v),
    lambda v: DeepLabV3(3, backbone="small", width=4, output_stride=v),
    lambda v: DeepLabV3(3, backbone="small", width=4, aspp_channels=v),
    lambda v: DeepLabV3(3, backbone="small", width=4, rates=(1, v)),
    lambda v: DeepLabV3(3, backbone="small", width=4, output_stride=8, multi_grid=(1, v)),
    lambda v: DeepLabV3Plus(3, backbone="small", width=4, decoder_channels=v),
    lambda v: DeepLabV3Plus(3, backbone="small", width=4, low_level_reduced=v),
    lambda v: ASPP(v, (1, 2)),
    lambda v: ASPP(8, (1, v)),
    lambda v: ASPP(8, (1, 2), out_channels=v),
    lambda v: deeplab.ASPPScoreSum(8, v),
    lambda v: deeplab.ASPPPooling(8, v),
    lambda v: aspp_rates(v),
    lambda v: aspp_rates(16, base_rates=(6, v)),
    lambda v: aspp_rates(16, base_stride=v),
    lambda v: atrous_valid_taps(v, 2),
    lambda v: atrous_valid_taps(4, v),
    lambda v: conv_bn_relu(v, 4),
    lambda v: conv_bn_relu(4, 4, 3, dilation=v),
])
def test_counts_follow_the_validation_rule(make, bad, error):
    """A bool or a float where a count is expected is a TypeError, a negative count a ValueError."""
    with pytest.raises(error):
        make(bad)


def test_backbone_of_a_wrong_type_is_a_type_error():
    with pytest.raises(TypeError, match="backbone"):
        DeepLabV3(3, backbone=50)
    with pytest.raises(TypeError, match="backbone"):
        DeepLabV1(3, backbone=16)


def test_common_pieces():
    """segedu.models.common: what the models share, importable from deeplab where the lessons find it."""
    from segedu.models import common

    assert deeplab.conv_bn_relu is common.conv_bn_relu
    x = torch.randn(2, 3, 4, 5)
    assert common.upsample_to(x, (8, 10)).shape == (2, 3, 8, 10)
    assert torch.equal(common.upsample_like(x, torch.zeros(1, 1, 8, 10)), common.upsample_to(x, (8, 10)))
    assert common.check_output_stride(16) == 16 and common.check_num_classes(3) == 3
    assert common.int_tuple([1, 2], "bins") == (1, 2)
    for bad, error in ((True, TypeError), (2.5, TypeError), ("16", TypeError), (12, ValueError), (-1, ValueError)):
        with pytest.raises(error, match="output_stride"):
            common.check_output_stride(bad)
    with pytest.raises(TypeError, match="bins"):
        common.int_tuple(3, "bins")
    with pytest.raises(ValueError, match="convs must be 5"):
        common.int_tuple((1, 2), "convs", length=5)
    with pytest.raises(TypeError, match=r"bins\[1\]"):
        common.int_tuple((1, True), "bins")
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        common.check_images(torch.zeros(3, 8, 8), 3)
    with pytest.raises(ValueError, match="3 channels"):
        common.check_images(torch.zeros(1, 4, 8, 8), 3)
    with pytest.raises(TypeError, match="floating-point"):
        common.check_images(torch.zeros(1, 3, 8, 8, dtype=torch.long))
