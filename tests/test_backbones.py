"""Encoders: VGG layout equals torchvision's, output strides, dilation surgery equals torchvision's."""

import pytest
import torch
import torchvision
from torchvision.models.vgg import cfgs, make_layers

from segedu.models.backbones import (
    ResNetBackbone,
    TorchvisionResNet,
    VGGBackbone,
    dilate_resnet,
    pad_to_multiple,
    resnet_backbone,
)
from segedu.ops.dilation import effective_receptive_field, erf_support
from segedu.models.fpn import stage_prefixes


def _shapes(state_dict):
    return {k: tuple(v.shape) for k, v in state_dict.items()}


@pytest.mark.parametrize("batch_norm, name", [(False, "vgg16"), (True, "vgg16_bn")])
def test_vgg_backbone_has_the_layout_of_torchvision_vgg16(batch_norm, name):
    with torch.device("meta"):  # shapes only: no 138M-parameter allocation
        reference = getattr(torchvision.models, name)(weights=None).features
        ours = VGGBackbone(batch_norm=batch_norm).features
    assert _shapes(ours.state_dict()) == _shapes(reference.state_dict())
    assert [type(m) for m in ours] == [type(m) for m in reference]
    assert sum(p.numel() for p in ours.parameters()) == 14_714_688 + (8_448 if batch_norm else 0)


def test_vgg_taps_equal_the_torchvision_features_and_have_strides_8_16_32():
    torch.manual_seed(0)
    reference = make_layers(cfgs["A"])  # VGG11: 1, 1, 2, 2, 2 convolutions per stage
    ours = VGGBackbone(width=64, convs=(1, 1, 2, 2, 2))
    ours.features.load_state_dict(reference.state_dict())  # same indices, same keys
    x = torch.randn(1, 3, 64, 96)
    taps = ours(x)
    assert torch.allclose(taps["pool5"], reference(x), atol=1e-5)
    assert list(taps) == ["pool1", "pool2", "pool3", "pool4", "pool5"]
    for k, (name, t) in enumerate(taps.items(), start=1):
        assert ours.strides[name] == 2**k
        assert t.shape == (1, ours.channels[name], 64 // 2**k, 96 // 2**k)


def test_small_vgg_widths_and_odd_sizes():
    net = VGGBackbone(width=4, convs=(1, 1, 1, 1, 1), in_channels=1, batch_norm=True)
    assert net.channels == {"pool1": 4, "pool2": 8, "pool3": 16, "pool4": 32, "pool5": 32}
    taps = net(torch.randn(2, 1, 70, 90))
    assert taps["pool3"].shape == (2, 16, 8, 11) and taps["pool5"].shape == (2, 32, 2, 2)  # floor
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        net(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="convs"):
        VGGBackbone(convs=(2, 2, 3))
    with pytest.raises(ValueError, match="width"):
        VGGBackbone(width=0)


def test_pad_to_multiple():
    x = torch.randn(1, 2, 70, 90)
    y = pad_to_multiple(x, 32)
    assert y.shape == (1, 2, 96, 96)
    assert torch.equal(y[..., :70, :90], x) and y[..., 70:, :].abs().sum() == 0 and y[..., 90:].abs().sum() == 0
    assert pad_to_multiple(x[..., :64, :64], 32).shape == (1, 2, 64, 64)
    with pytest.raises(ValueError, match="multiple"):
        pad_to_multiple(x, 0)


@pytest.mark.parametrize("output_stride", [32, 16, 8])
def test_small_resnet_output_strides(output_stride):
    net = ResNetBackbone(width=8, blocks=(1, 1, 1, 1), output_stride=output_stride)
    out = net(torch.randn(2, 3, 64, 64))
    assert out["low_level"].shape == (2, 8, 16, 16)
    assert out["out"].shape == (2, 64, 64 // output_stride, 64 // output_stride)
    assert (net.low_level_channels, net.out_channels, net.output_stride) == (8, 64, output_stride)


@pytest.mark.parametrize("stages, output_stride, channels", [(2, 8, 16), (3, 16, 32), (3, 8, 32), (4, 8, 64)])
def test_short_resnet_ends_early_with_a_small_receptive_field(stages, output_stride, channels):
    net = ResNetBackbone(width=8, blocks=(1, 1, 1, 1), output_stride=output_stride, stages=stages)
    out = net(torch.randn(2, 3, 45, 64))
    assert out["out"].shape == (2, channels, -(-45 // output_stride), 64 // output_stride)
    assert (net.out_channels, net.output_stride) == (channels, output_stride)
    skipped = [isinstance(getattr(net, f"layer{k}"), torch.nn.Identity) for k in range(1, 5)]
    assert skipped == [k > stages for k in range(1, 5)]
    assert list(stage_prefixes(net)) == ["stem", *(f"layer{k}" for k in range(1, stages + 1))]
    # the same weights as the first stages of the full encoder: a short encoder is a prefix of it
    full = ResNetBackbone(width=8, blocks=(1, 1, 1, 1), output_stride=output_stride)
    full.load_state_dict(net.state_dict(), strict=False)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(stage_prefixes(full)[f"layer{stages}"].eval()(x), net.eval()(x)["out"])


def test_two_stage_resnet_sees_51_pixels():
    # stem: 7x7/2 then 3x3/2 pool -> 11 px; layer1: two 3x3 at stride 4 -> 27; layer2: 3x3/2 at stride 4, 3x3 at 8 -> 51
    torch.manual_seed(0)
    net = ResNetBackbone(width=4, blocks=(1, 1, 1, 1), output_stride=8, stages=2)
    assert erf_support(effective_receptive_field(net, 128, samples=1)) == (51, 51)


@pytest.mark.parametrize("stages, output_stride, match, error", [
    (2, 16, "ends at stride 8", ValueError), (4, 4, "output_stride", ValueError), (1, 8, "stages", ValueError),
    (5, 8, "stages", ValueError), (True, 8, "stages", TypeError),  # a bool where an int is expected: a wrong type
])
def test_short_resnet_errors(stages, output_stride, match, error):
    with pytest.raises(error, match=match):
        ResNetBackbone(width=4, output_stride=output_stride, stages=stages)


def test_dilation_gives_the_dense_version_of_the_stride_32_output():
    """Replacing strides by dilation computes the stride-32 output at every 4th (or 2nd) position exactly."""
    torch.manual_seed(0)
    nets = {os: ResNetBackbone(width=8, blocks=(2, 2, 2, 2), output_stride=os).eval() for os in (32, 16, 8)}
    for os in (16, 8):  # same parameters: dilation changes no shape
        nets[os].load_state_dict(nets[32].state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        coarse = nets[32](x)["out"]
        assert torch.allclose(nets[16](x)["out"][..., ::2, ::2], coarse, atol=1e-5)
        assert torch.allclose(nets[8](x)["out"][..., ::4, ::4], coarse, atol=1e-5)
    with pytest.raises(ValueError, match="output_stride"):
        ResNetBackbone(output_stride=4)


def test_dilate_resnet_equals_torchvision_replace_stride_with_dilation():
    torch.manual_seed(0)
    reference = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=[False, True, True]).eval()
    ours = dilate_resnet(torchvision.models.resnet50(weights=None), output_stride=8).eval()
    ours.load_state_dict(reference.state_dict())
    for a, b in zip(ours.modules(), reference.modules()):
        if isinstance(a, torch.nn.Conv2d):
            assert (a.stride, a.dilation, a.padding) == (b.stride, b.dilation, b.padding)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), reference(x), atol=1e-5)


@pytest.mark.parametrize("builder, low, high", [("resnet18", 64, 512), ("resnet50", 256, 2048)])
def test_torchvision_adapter(builder, low, high):
    """The adapter dilates basic-block ResNets too (torchvision refuses) and its dense output matches."""
    torch.manual_seed(0)
    plain = TorchvisionResNet(getattr(torchvision.models, builder)(weights=None)).eval()
    dilated = TorchvisionResNet(getattr(torchvision.models, builder)(weights=None), output_stride=8).eval()
    dilated.load_state_dict(plain.state_dict())
    assert (dilated.low_level_channels, dilated.out_channels, dilated.output_stride) == (low, high, 8)
    assert plain.output_stride == 32
    assert not any(name.startswith(("fc", "avgpool")) for name, _ in plain.named_modules())  # classifier dropped
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out, dense = plain(x), dilated(x)
    assert out["low_level"].shape == (1, low, 16, 16) and dense["out"].shape == (1, high, 8, 8)
    assert torch.allclose(dense["out"][..., ::4, ::4], out["out"], atol=1e-4)
    with pytest.raises(ValueError, match="output stride 32"):
        dilate_resnet(dilated, 16)  # an already dilated network is refused
    with pytest.raises(TypeError, match="ResNet"):
        TorchvisionResNet(torch.nn.Linear(2, 2))


def test_every_encoder_parameter_receives_a_gradient():
    for net in (VGGBackbone(width=4, batch_norm=True), ResNetBackbone(width=4, output_stride=8),
                TorchvisionResNet(torchvision.models.resnet18(weights=None), output_stride=16)):
        out = net(torch.randn(2, 3, 64, 64))
        sum(t.square().mean() for t in out.values()).backward()
        missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not missing, f"{type(net).__name__}: no gradient for {missing}"


@pytest.mark.parametrize("bad, error", [(True, TypeError), (2.5, TypeError), (-1, ValueError)])
@pytest.mark.parametrize("make", [
    lambda v: VGGBackbone(width=v),
    lambda v: VGGBackbone(width=4, in_channels=v),
    lambda v: VGGBackbone(width=4, convs=(1, 1, 1, 1, v)),
    lambda v: ResNetBackbone(width=v),
    lambda v: ResNetBackbone(width=4, in_channels=v),
    lambda v: ResNetBackbone(width=4, blocks=(1, 1, 1, v)),
    lambda v: ResNetBackbone(width=4, output_stride=v),
    lambda v: ResNetBackbone(width=4, stages=v),
    lambda v: pad_to_multiple(torch.zeros(1, 1, 3, 3), v),
    lambda v: resnet_backbone("small", v, width=4),
    lambda v: resnet_backbone("small", 16, width=v),
])
def test_counts_follow_the_validation_rule(make, bad, error):
    """A bool or a float where a count is expected is a TypeError, a negative count a ValueError."""
    with pytest.raises(error):
        make(bad)


def test_resnet_backbone_by_name_or_module():
    small = resnet_backbone("small", 16, width=4)
    assert isinstance(small, ResNetBackbone) and small.output_stride == 16
    assert resnet_backbone(small, 16) is small
    assert isinstance(resnet_backbone("resnet18", 8), TorchvisionResNet)
    with pytest.raises(ValueError, match="output_stride=8"):
        resnet_backbone(small, 8)
    with pytest.raises(ValueError, match="backbone"):
        resnet_backbone("mobilenet", 16)
    with pytest.raises(TypeError, match="backbone"):
        resnet_backbone(18, 16)


def test_images_of_a_wrong_type_or_rank():
    net = ResNetBackbone(width=4)
    with pytest.raises(TypeError, match="torch.Tensor"):
        net([[0.0]])
    with pytest.raises(TypeError, match="floating-point"):
        net(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        net(torch.zeros(3, 32, 32))
