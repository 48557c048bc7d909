"""FCN: any input size, parameter counts, gradients, bilinear init, overfitting, and the VGG16 table."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vgg import make_layers

from segedu.models.backbones import VGGBackbone
from segedu.models.fcn import FCN, FCNHead, Upsample, fuse, small_fcn
from segedu.models.vgg_table import (
    convolutionalize,
    fc_share,
    format_table,
    fully_convolutional_vgg,
    vgg16_table,
)


def _tiny(variant, num_classes=3):
    backbone = VGGBackbone(width=4, convs=(1, 1, 1, 1, 1), batch_norm=True)
    return FCN(num_classes, variant, backbone, head_channels=16, head_kernel=3, dropout=0.0)


@pytest.mark.parametrize("variant", ["32s", "16s", "8s"])
@pytest.mark.parametrize("size", [(70, 90), (33, 47), (64, 64), (7, 5)])
def test_output_has_the_input_size(variant, size):
    model = _tiny(variant)
    assert model(torch.randn(2, 3, *size)).shape == (2, 3, *size)


def test_parameter_count_of_fcn_vgg16_matches_the_paper():
    """Long et al. (Table 1): FCN-VGG16 has 134M parameters (VGG16 minus fc8 plus score and upsampling layers)."""
    with torch.device("meta"):
        counts = {v: sum(p.numel() for p in FCN(21, v).parameters()) for v in ("32s", "16s", "8s")}
    features, fc6, fc7 = 14_714_688, 512 * 49 * 4096 + 4096, 4096 * 4096 + 4096
    score = 4096 * 21 + 21
    assert counts["32s"] == features + fc6 + fc7 + score + 21 * 21 * 64 * 64
    assert counts["16s"] == features + fc6 + fc7 + score + (512 * 21 + 21) + 21 * 21 * (4 * 4 + 32 * 32)
    assert counts["8s"] == counts["16s"] - 21 * 21 * 32 * 32 + (256 * 21 + 21) + 21 * 21 * (4 * 4 + 16 * 16)
    assert round(counts["8s"] / 1e6) == 134


@pytest.mark.parametrize("variant", ["32s", "16s", "8s"])
def test_every_parameter_receives_a_gradient(variant):
    model = _tiny(variant)
    logits = model(torch.randn(2, 3, 40, 56))
    F.cross_entropy(logits, torch.randint(0, 3, (2, 40, 56))).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient for {missing}"


@pytest.mark.parametrize("factor", [2, 3, 8, 32])
def test_untrained_upsampling_is_exactly_bilinear(factor):
    x = torch.randn(2, 4, 5, 7)
    up = Upsample(4, factor)
    want = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    assert torch.allclose(up(x), want, atol=1e-5), (up(x) - want).abs().max()  # the border included
    with pytest.raises(ValueError, match="factor"):
        Upsample(4, 1)


def test_untrained_fcn_layers_start_as_bilinear_and_skips_at_zero():
    model = _tiny("8s")
    scores = torch.randn(1, 3, 4, 6)
    for layer, factor in ((model.up_pool5, 2), (model.up_pool4, 2), (model.upsample, 8)):
        want = F.interpolate(scores, scale_factor=factor, mode="bilinear")
        assert torch.allclose(layer(scores), want, atol=1e-5)
    # Zero-initialised skip scores: an untrained FCN-8s adds nothing to its FCN-32s path.
    assert model.score_pool4.weight.abs().sum() == 0 and model.score_pool3.weight.abs().sum() == 0


def test_fuse_adds_the_upsampled_coarse_scores():
    coarse, fine = torch.randn(1, 3, 4, 5), torch.randn(1, 3, 8, 10)
    up = Upsample(3, 2)
    assert torch.allclose(fuse(coarse, fine, up), F.interpolate(coarse, scale_factor=2, mode="bilinear") + fine,
                          atol=1e-5)
    with pytest.raises(ValueError, match="must match"):
        fuse(coarse, fine[..., :9], up)


def test_bad_arguments():
    with pytest.raises(ValueError, match="variant"):
        FCN(3, "4s", VGGBackbone(width=4))
    with pytest.raises(ValueError, match="num_classes"):
        FCN(0, "8s", VGGBackbone(width=4))
    with pytest.raises(TypeError, match="pool3/pool4/pool5"):
        FCN(3, "8s", nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        _tiny("8s")(torch.randn(3, 32, 32))


def test_fcn8s_overfits_four_images(overfit_miou):
    """4 scenes of two squares: FCN-8s memorises them (its boundaries are only as fine as stride 8 allows)."""
    miou = overfit_miou(lambda: small_fcn(3, "8s", width=8), steps=60)
    assert miou >= 0.9, miou


# --------------------------------------------------------------------------- VGG16 table and convolutionalize


def test_vgg16_table_matches_the_lecture():
    rows = vgg16_table()
    assert [r.name for r in rows] == [
        "conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
        "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3", "fc6", "fc7", "fc8",
    ]
    lecture = [0.002, 0.037, 0.074, 0.148, 0.295, 0.590, 0.590, 1.180] + [2.360] * 5 + [102.765, 16.781, 4.097]
    assert [round(r.params / 1e6, 3) for r in rows] == lecture
    assert sum(r.params for r in rows) == 138_357_544
    assert 0.89 < fc_share(rows) < 0.90
    assert rows[0].kernel == 3 and rows[-3].in_channels == 512 * 7 * 7 and rows[-3].kind == "fc"
    text = format_table(rows)
    assert "138.358" in text and "fc6" in text and "102.765" in text
    with pytest.raises(TypeError, match="VGG"):
        vgg16_table(nn.Linear(2, 2))


def test_convolutionalize_equals_the_linear_layer_and_slides_it():
    torch.manual_seed(0)
    linear = nn.Linear(8 * 3 * 3, 5)
    conv = convolutionalize(linear, 8, 3)
    x = torch.randn(2, 8, 3, 3)
    assert conv(x).shape == (2, 5, 1, 1)
    assert torch.allclose(conv(x).flatten(1), linear(x.flatten(1)), atol=1e-6)
    # On a larger map: the classifier applied to every 3x3 window.
    big = torch.randn(2, 8, 6, 7)
    windows = F.unfold(big, 3)  # [B, 8 * 9, 4 * 5], flattened channel-first like torch.flatten
    want = linear(windows.transpose(1, 2)).transpose(1, 2).reshape(2, 5, 4, 5)
    assert torch.allclose(conv(big), want, atol=1e-5)
    # A copy, not a view: training one does not change the other.
    with torch.no_grad():
        conv.weight.zero_()
    assert linear.weight.abs().sum() > 0
    rect = convolutionalize(nn.Linear(2 * 2 * 3, 4), 2, (2, 3))
    assert rect.weight.shape == (4, 2, 2, 3)
    with pytest.raises(ValueError, match="in_features"):
        convolutionalize(linear, 8, 2)
    with pytest.raises(TypeError, match="nn.Linear"):
        convolutionalize(conv, 8, 3)
    with pytest.raises(ValueError, match="kernel_size"):
        convolutionalize(linear, 8, 0)


class _MiniVGG(nn.Module):
    """A VGG with torchvision's structure (features, 7x7 average pool, 3 FC layers) but few channels."""

    def __init__(self):
        super().__init__()
        self.features = make_layers([4, "M", 4, "M", 8, "M", 8, "M", 8, "M"])
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(nn.Linear(8 * 49, 32), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(32, 32), nn.ReLU(True), nn.Dropout(), nn.Linear(32, 10))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def test_fully_convolutional_vgg_equals_the_classifier_at_224_and_gives_a_map_beyond():
    torch.manual_seed(0)
    vgg = _MiniVGG().eval()
    fcn = fully_convolutional_vgg(vgg).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(fcn(x).flatten(1), vgg(x), atol=1e-5)
        big = torch.randn(1, 3, 288, 320)
        scores = fcn(big)
        assert scores.shape == (1, 10, 288 // 32 - 6, 320 // 32 - 6)
        pool5 = vgg.features(big)
        # Score (i, j) is the classifier applied to the 7x7 window of pool5 at (i, j).
        window = pool5[..., 1:8, 2:9].flatten(1)
        assert torch.allclose(scores[..., 1, 2], vgg.classifier(window), atol=1e-5)


@pytest.mark.parametrize("bad, error", [(True, TypeError), (2.5, TypeError), (-1, ValueError)])
@pytest.mark.parametrize("make", [
    lambda v: FCN(v, "8s", VGGBackbone(width=4)),
    lambda v: FCN(3, "8s", VGGBackbone(width=4), head_channels=v),
    lambda v: FCN(3, "8s", VGGBackbone(width=4), head_kernel=v),
    lambda v: small_fcn(v, "8s", 4),
    lambda v: small_fcn(3, "8s", v),
    lambda v: Upsample(v, 2),
    lambda v: Upsample(4, v),
    lambda v: FCNHead(v),
    lambda v: FCNHead(8, v),
    lambda v: FCNHead(8, 8, kernel_size=v),
    lambda v: convolutionalize(nn.Linear(8, 2), v, 1),
    lambda v: convolutionalize(nn.Linear(8, 2), 8, v),
])
def test_counts_follow_the_validation_rule(make, bad, error):
    """A bool or a float where a count is expected is a TypeError, a negative count a ValueError."""
    with pytest.raises(error):
        make(bad)


def test_variant_of_a_wrong_type_is_a_type_error():
    with pytest.raises(TypeError, match="variant"):
        FCN(3, 8, VGGBackbone(width=4))
