"""Multi-scale DeepLab (lesson 07): multi-scale and flipped inference, the MSc head, multi-grid in use."""

import pytest
import torch
import torch.nn.functional as F

from segedu.models.deeplab import DeepLabV3
from segedu.models.multiscale import DeepLabMSc, multi_scale_predict, scaled_sizes


def small_v3(**kw):
    torch.manual_seed(0)
    return DeepLabV3(3, "small", output_stride=16, width=4, aspp_channels=8, rates=(1, 2), **kw).eval()


def test_scale_one_without_flip_is_the_model():
    model, x = small_v3(), torch.rand(2, 3, 32, 40)
    with torch.no_grad():
        assert torch.equal(multi_scale_predict(model, x, scales=(1,), flip=False), model(x))


def test_flip_and_scales_average_the_manual_passes():
    model, x = small_v3(), torch.rand(2, 3, 32, 40)
    with torch.no_grad():
        flipped = multi_scale_predict(model, x, scales=(1.0,), flip=True)
        assert torch.allclose(flipped, (model(x) + model(x.flip(-1)).flip(-1)) / 2, atol=1e-6)
        both = multi_scale_predict(model, x, scales=(0.5, 1.0), flip=True)
        small = F.interpolate(x, size=(16, 20), mode="bilinear", align_corners=False)
        back = lambda y: F.interpolate(y, size=(32, 40), mode="bilinear", align_corners=False)  # noqa: E731
        manual = (model(x) + model(x.flip(-1)).flip(-1) + back(model(small)) + back(model(small.flip(-1)).flip(-1))) / 4
        assert torch.allclose(both, manual, atol=1e-6)


def test_output_shape_and_sizes():
    model, x = small_v3(), torch.rand(1, 3, 30, 45)
    with torch.no_grad():
        out = multi_scale_predict(model, x, scales=(0.75, 1, 1.25))
    assert out.shape == (1, 3, 30, 45)
    assert scaled_sizes((30, 45), (0.75, 1, 1.25)) == [(22, 34), (30, 45), (38, 56)]
    assert scaled_sizes(8, (0.01,)) == [(1, 1)]


def test_a_flip_symmetric_model_is_unchanged_by_flipping():
    # a 1x1 convolution treats every pixel alike: mirroring the input mirrors its output exactly
    model = torch.nn.Conv2d(3, 2, 1)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(multi_scale_predict(model, x, scales=(1,), flip=True), model(x), atol=1e-6)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(scales=()), ValueError, "scales"),
    (dict(scales=(1, -0.5)), ValueError, r"scales\[1\]"),
    (dict(scales=(1, True)), TypeError, r"scales\[1\]"),
    (dict(scales=1.0), TypeError, "scales"),
    (dict(scales="1"), TypeError, "scales"),
    (dict(flip=1), TypeError, "flip"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        multi_scale_predict(small_v3(), torch.rand(1, 3, 16, 16), **kwargs)


def test_bad_model_and_images():
    with pytest.raises(TypeError, match="model"):
        multi_scale_predict(lambda x: x, torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="images"):
        multi_scale_predict(small_v3(), torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match="at its input size"):
        multi_scale_predict(torch.nn.Conv2d(3, 2, 3, stride=2), torch.rand(1, 3, 8, 8))


def test_msc_starts_as_its_base_and_trains_only_the_head():
    base = small_v3()
    msc = DeepLabMSc(base, channels=8)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(msc(x), base(x), atol=1e-6)  # the head's classifier starts at zero
    msc.train()
    assert not base.training and msc.extra.training       # the frozen base keeps its BN statistics
    trainable = {n for n, p in msc.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("extra.") for n in trainable)
    msc(x).sum().backward()
    assert all(p.grad is None for p in base.parameters())
    assert msc.extra[0].in_channels == base.backbone.low_level_channels
    assert msc.extra[-1].out_channels == 3


def test_msc_head_changes_the_output_at_stride_4():
    msc = DeepLabMSc(small_v3(), channels=8, freeze_base=False)
    torch.nn.init.normal_(msc.extra[-1].weight)
    x = torch.rand(1, 3, 32, 32)
    assert msc(x).shape == (1, 3, 32, 32)
    assert any(p.requires_grad for p in msc.base.parameters())
    with torch.no_grad():
        assert not torch.allclose(msc(x), msc.base(x))


def test_msc_bad_arguments():
    with pytest.raises(TypeError, match="base"):
        DeepLabMSc(torch.nn.Conv2d(3, 2, 1))
    with pytest.raises(TypeError, match="channels"):
        DeepLabMSc(small_v3(), channels=2.5)
    with pytest.raises(ValueError, match="channels"):
        DeepLabMSc(small_v3(), channels=-1)
    with pytest.raises(TypeError, match="freeze_base"):
        DeepLabMSc(small_v3(), freeze_base=1)


def test_multi_grid_changes_the_last_stage_rates_only():
    plain, grid = small_v3(), small_v3(multi_grid=(1, 2))
    rates = lambda m: [c.dilation[0] for c in m.backbone.layer4.modules() if isinstance(c, torch.nn.Conv2d) and c.kernel_size == (3, 3)]  # noqa: E731
    assert rates(plain) == [1, 2, 2, 2] and rates(grid) == [2, 2, 4, 4]
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in grid.parameters())


def test_multiscale_module_is_the_function():
    from segedu.models.multiscale import MultiScale

    model, x = small_v3(), torch.rand(2, 3, 24, 24)
    wrapped = MultiScale(model, scales=(0.5, 1), flip=True)
    with torch.no_grad():
        assert torch.equal(wrapped(x), multi_scale_predict(model, x, (0.5, 1), True))
    assert list(wrapped.parameters()) and wrapped.model is model
    with pytest.raises(TypeError, match="model"):
        MultiScale(lambda x: x)
    with pytest.raises(ValueError, match="scales"):
        MultiScale(model, scales=())
