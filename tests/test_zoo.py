"""segedu.zoo: every registered model builds at the lessons' size and maps [B, 3, H, W] to logits at the
input size; defaults come from the profile, keywords override them; specs are plain values that rebuild the
same network; bad names raise with the list of valid ones."""

import pytest
import torch

from segedu import runtime, zoo
from segedu.models.deeplab import DeepLabV3, aspp_rates
from segedu.checkpoint import save_checkpoint


@pytest.mark.parametrize("name", zoo.MODEL_NAMES)
def test_every_model_gives_logits_at_the_input_size(name):
    model = zoo.build_model(name, 5, width=4).eval()
    x = torch.rand(2, 3, 40, 56)  # not a multiple of any stride: each model must come back to 40 x 56
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 5, 40, 56)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert zoo.describe(name)


def test_registry_names_the_six_semantic_models():
    assert zoo.MODEL_NAMES == ("fcn8s", "unet", "deeplabv3", "deeplabv3plus", "pspnet", "fpn")


def test_width_comes_from_the_profile_and_keywords_override():
    quick, full = runtime.profile("quick"), runtime.profile("full")
    assert quick.width != full.width
    assert zoo.model_spec("unet", 3, quick)["kwargs"]["base"] == quick.width
    assert zoo.model_spec("unet", 3, "full")["kwargs"]["base"] == full.width
    assert zoo.model_spec("unet", 3)["kwargs"]["base"] == runtime.profile().width  # None: the current one
    small, wide = zoo.build_model("unet", 3, quick), zoo.build_model("unet", 3, full)
    assert zoo.count_parameters(wide) > 3 * zoo.count_parameters(small)  # width doubles: convolution weights grow ~4x
    assert zoo.model_spec("unet", 3, base=8, depth=3)["kwargs"] == {"base": 8, "depth": 3}
    assert zoo.model_spec("unet", 3, "full", width=8)["kwargs"]["base"] == 8  # width wins over the profile
    with pytest.raises(ValueError, match="width"):
        zoo.model_spec("unet", 3, width=0)


def test_deeplab_small_defaults_and_paper_backbones():
    spec = zoo.model_spec("deeplabv3", 4, "quick")["kwargs"]
    assert spec["backbone"] == "small" and spec["rates"] == list(zoo.SMALL_ASPP_RATES)
    # a paper backbone gets the paper's rates and widths, not the small-model defaults
    model = zoo.build_model("deeplabv3", 21, backbone="resnet18", output_stride=16)
    assert isinstance(model, DeepLabV3) and model.rates == aspp_rates(16) == (6, 12, 18)
    assert model.classifier[0].project[0].out_channels == 256


def test_same_seed_same_weights():
    runtime.seed_everything(3)
    a = zoo.build_model("fcn8s", 3, width=4)
    runtime.seed_everything(3)
    b = zoo.build_model("fcn8s", 3, width=4)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_names_are_case_insensitive_and_unknown_names_raise():
    assert zoo.model_spec("UNet", 2)["name"] == "unet"
    with pytest.raises(ValueError, match="fcn8s, unet, deeplabv3.*got 'segformer'"):
        zoo.build_model("segformer", 2)
    with pytest.raises(ValueError, match="num_classes"):
        zoo.build_model("unet", 0)
    with pytest.raises(TypeError, match="profile"):
        zoo.model_spec("unet", 2, profile=3)
    with pytest.raises(TypeError, match="model name must be a str"):
        zoo.build_model(3, 2)


@pytest.mark.parametrize("kw, error, message", [
    (dict(num_classes=True), TypeError, "num_classes must be an int >= 1, got bool True"),
    (dict(num_classes=2.5), TypeError, "num_classes must be an int >= 1, got float 2.5"),
    (dict(num_classes=-1), ValueError, "num_classes must be an int >= 1, got -1"),
    (dict(width=True), TypeError, "width must be an int >= 1, got bool True"),
    (dict(width=2.5), TypeError, "width must be an int >= 1, got float 2.5"),
    (dict(width=-1), ValueError, "width must be an int >= 1, got -1"),
])
def test_sizes_follow_the_validation_rule(kw, error, message):
    args = {"name": "unet", "num_classes": 3, **kw}
    with pytest.raises(error, match=message):
        zoo.model_spec(**args)


def test_load_model_rebuilds_from_the_checkpoint_spec(tmp_path):
    spec = zoo.model_spec("deeplabv3plus", 3, width=4)
    model = zoo.build_model(spec["name"], spec["num_classes"], **spec["kwargs"]).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, spec=spec, classes=["a", "b", "c"])
    loaded, extra = zoo.load_model(path)
    assert extra["classes"] == ["a", "b", "c"] and not loaded.training
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    save_checkpoint(tmp_path / "bare.pt", model)
    with pytest.raises(ValueError, match="no model spec"):
        zoo.load_model(tmp_path / "bare.pt")


@pytest.mark.parametrize("kw", [
    dict(in_channels=3, out_channels=8, kernel_size=3, padding=1),
    dict(in_channels=6, out_channels=4, kernel_size=(3, 5), stride=2, padding=(0, 2)),
    dict(in_channels=8, out_channels=8, kernel_size=3, dilation=3, padding=3, groups=8, bias=False),
    dict(in_channels=4, out_channels=6, kernel_size=1, stride=3, groups=2),
])
def test_conv2d_flops_is_what_the_flop_counter_counts(kw):
    from torch.utils.flop_counter import FlopCounterMode

    conv = torch.nn.Conv2d(**kw)
    x = torch.rand(2, kw["in_channels"], 13, 17)
    with FlopCounterMode(display=False) as counter:
        conv(x)
    assert zoo.conv2d_flops(conv, tuple(x.shape)) == counter.get_total_flops()


def test_forward_flops_is_the_sum_over_the_convolutions():
    """DeepLab v3 has only Conv2d layers (no transposed convolutions, no Linear): their formula counts add up
    to the counter's total, and the count grows with the pixels (4x for twice the side)."""
    model = zoo.build_model("deeplabv3", 2, width=4)
    x = torch.rand(1, 3, 64, 64)
    shapes = []
    hooks = [m.register_forward_hook(lambda m, inputs, out: shapes.append((m, tuple(inputs[0].shape))))
             for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    total = zoo.forward_flops(model.train(), x)
    for h in hooks:
        h.remove()
    assert model.training  # mode restored
    assert total == sum(zoo.conv2d_flops(m, s) for m, s in shapes) > 0
    assert 3.9 < zoo.forward_flops(model, torch.rand(1, 3, 128, 128)) / total <= 4.0


def test_forward_calls_do_not_grow_with_the_batch():
    """Lesson 11 checks "a batch amortises the per-call overhead" on this count, not on a clock."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    one = zoo.forward_calls(model.train(), torch.rand(1, 3, 16, 16))
    assert model.training  # mode restored
    assert one >= 3  # at least the conv, the batch norm and the ReLU
    assert zoo.forward_calls(model, torch.rand(8, 3, 16, 16)) == one  # the same calls for 8 images
    assert zoo.forward_calls(model, torch.rand(1, 3, 32, 32)) == one  # ... and for 4x the pixels
    deeper = torch.nn.Sequential(*model, torch.nn.Conv2d(4, 4, 3, padding=1))
    assert zoo.forward_calls(deeper, torch.rand(1, 3, 16, 16)) > one  # one more layer, more calls
    net = zoo.build_model("fcn8s", 2, width=8)
    assert zoo.forward_calls(net, torch.rand(1, 3, 64, 64)) == zoo.forward_calls(net, torch.rand(4, 3, 64, 64))


def test_latency_is_the_best_run(monkeypatch):
    """Other programs only slow a run down: the fastest of the timed runs is reported (warm-up runs not timed)."""
    import time

    clock, durations = [0.0], iter([5.0, 0.3, 0.1, 0.2])  # warm-up, then three timed runs

    class Timed(torch.nn.Module):  # each forward pass advances a fake clock by its duration
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(1))

        def forward(self, x):
            clock[0] += next(durations)
            return x * self.scale

    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    assert zoo.latency(Timed(), torch.rand(1, 3, 8, 8), repeats=3, warmup=1) == pytest.approx(0.1)


def test_count_parameters_and_latency():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    assert zoo.count_parameters(model) == 3 * 4 * 9 + 4 + 4 + 4  # conv weight + bias, BN weight + bias
    model[1].weight.requires_grad_(False)
    assert zoo.count_parameters(model) == 3 * 4 * 9 + 4 + 4
    seconds = zoo.latency(model.train(), torch.rand(2, 3, 16, 16), repeats=3)
    assert 0 < seconds < 1 and model.training  # ~0.1 ms of work: the best of 3 runs stays far below 1 s under load
    with pytest.raises(ValueError, match="repeats"):
        zoo.latency(model, torch.rand(1, 3, 8, 8), repeats=0)
    with pytest.raises(TypeError, match="repeats must be an int >= 1, got bool True"):
        zoo.latency(model, torch.rand(1, 3, 8, 8), repeats=True)
    with pytest.raises(ValueError, match="warmup must be an int >= 0, got -1"):
        zoo.latency(model, torch.rand(1, 3, 8, 8), warmup=-1)
    with pytest.raises(TypeError, match="nn.Conv2d"):
        zoo.conv2d_flops(torch.nn.Linear(2, 2), (1, 2, 3, 3))
    conv = torch.nn.Conv2d(2, 2, 3)
    assert zoo.conv2d_flops(conv, torch.Size([1, 2, 5, 5])) == zoo.conv2d_flops(conv, (1, 2, 5, 5))
    with pytest.raises(TypeError, match="input_shape must be an int >= 0, got float 2.5"):
        zoo.conv2d_flops(conv, (1, 2, 2.5, 5))
    with pytest.raises(ValueError, match=r"input_shape must be \(B, C_in, H, W\), got \(2, 5, 5\)"):
        zoo.conv2d_flops(conv, (2, 5, 5))
