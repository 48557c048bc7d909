"""segedu.models.pspnet and segedu.models.plain: shapes for odd sizes, configurable bins, the pyramid pooling
forward by hand, the auxiliary loss, gradients to every parameter, and the plain dilated FCN against
torchvision's fcn_resnet50."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segedu.models.backbones import ResNetBackbone
from segedu.models.plain import DilatedFCN
from segedu.models.pspnet import PSPNet, PyramidPooling, pyramid_pool
from segedu.zoo import count_parameters


@pytest.mark.parametrize("bins", [(1, 2, 3, 6), (1,), (2, 4), (1, 3, 7)])
@pytest.mark.parametrize("output_stride", [8, 16])
def test_logits_at_odd_input_sizes_and_bins_configurable(bins, output_stride):
    torch.manual_seed(0)
    model = PSPNet(5, "small", bins, width=4, output_stride=output_stride)
    assert model.bins == bins and len(model.ppm.reduce) == len(bins)
    c = model.backbone.out_channels
    assert model.ppm.out_channels == c + len(bins) * (c // len(bins))
    x = torch.rand(2, 3, 37, 45)  # odd: not a multiple of any stride; 5x6 features, smaller than a 6 or 7 bin
    assert model(x).shape == (2, 5, 37, 45)
    assert model.eval()(x[:1]).shape == (1, 5, 37, 45)


def test_every_parameter_gets_a_gradient_with_the_auxiliary_loss():
    torch.manual_seed(0)
    model = PSPNet(4, "small", width=4, aux=True)
    x, y = torch.rand(2, 3, 33, 40), torch.randint(0, 4, (2, 33, 40))
    y[0, :5] = 255  # ignored pixels
    losses = model(x, y)
    assert set(losses) == {"out", "aux"}
    # the main loss is the cross entropy of the logits that forward(x) returns (dropout off to compare)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(x, y)["out"], F.cross_entropy(model(x), y, ignore_index=255), atol=1e-6)
    model.train()
    sum(model(x, y).values()).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing
    # without aux: no aux head, no aux loss
    plain = PSPNet(4, "small", width=4)
    assert plain.aux_head is None and set(plain(x, y)) == {"out"}


def test_aux_weight_scales_the_auxiliary_loss():
    torch.manual_seed(0)
    model = PSPNet(3, "small", width=4, aux=True, aux_weight=1.0).eval()
    x, y = torch.rand(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32))
    with torch.no_grad():
        full = model(x, y)["aux"]
        model.aux_weight = 0.4
        assert torch.allclose(model(x, y)["aux"], 0.4 * full)


def test_pyramid_pool_by_hand():
    torch.manual_seed(0)
    ppm = PyramidPooling(8, bins=(1, 2, 3)).eval()
    with torch.no_grad():
        for m in ppm.modules():  # non-trivial BN statistics
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 8, 7, 9)
    with torch.no_grad():
        out = ppm(x)
    assert out.shape == (2, 8 + 3 * 2, 7, 9)
    assert torch.equal(out[:, :8], x)  # the features themselves come first
    # bin 1: global mean -> 1x1 conv + BN + ReLU -> the same vector at every position
    conv, bn = ppm.reduce[0][0], ppm.reduce[0][1]
    mean = x.mean((2, 3))
    want = torch.relu((mean @ conv.weight[:, :, 0, 0].T - bn.running_mean) / (bn.running_var + bn.eps).sqrt()
                      * bn.weight + bn.bias)
    assert torch.allclose(out[:, 8:10], want[:, :, None, None].expand(2, 2, 7, 9), atol=1e-5)
    # bin 2 on a 7x9 map: adaptive bins overlap (rows 0..3 and 3..6), cells are plain means
    with torch.no_grad():
        cells = torch.stack([torch.stack([x[:, :, r0:r1, c0:c1].mean((2, 3)) for c0, c1 in ((0, 5), (4, 9))], -1)
                             for r0, r1 in ((0, 4), (3, 7))], -2)
        want2 = F.interpolate(ppm.reduce[1](cells), size=(7, 9), mode="bilinear", align_corners=False)
    assert torch.allclose(out[:, 10:12], want2, atol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="bins"):
        PSPNet(3, "small", bins=(), width=4)
    with pytest.raises(ValueError, match="bins"):
        PSPNet(3, "small", bins=(1, 0), width=4)
    with pytest.raises(TypeError, match="bins"):
        PSPNet(3, "small", bins=3, width=4)
    with pytest.raises(ValueError, match="num_classes"):
        PSPNet(0, "small", width=4)
    with pytest.raises(ValueError, match="output_stride"):
        PSPNet(3, "small", width=4, output_stride=4)
    with pytest.raises(ValueError, match="bins and reduce"):
        pyramid_pool(torch.rand(1, 4, 5, 5), (1, 2), [nn.Identity()])
    model = PSPNet(3, "small", width=4, aux=True)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model(torch.rand(2, 1, 32, 32), torch.zeros(2, 32, 32, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        model(torch.rand(3, 32, 32))


def test_same_backbone_module_as_deeplab():
    backbone = ResNetBackbone(width=4, blocks=(1, 1, 1, 1), output_stride=8)
    model = PSPNet(3, backbone)
    assert model.backbone is backbone
    with pytest.raises(ValueError, match="output_stride"):
        PSPNet(3, ResNetBackbone(width=4, output_stride=16))  # PSPNet asks for 8 by default


def test_plain_dilated_fcn_shapes_and_gradients():
    torch.manual_seed(0)
    model = DilatedFCN(5, "small", width=4, channels=8)
    x = torch.rand(2, 3, 37, 45)
    out = model(x)
    assert out.shape == (2, 5, 37, 45)
    F.cross_entropy(out, torch.randint(0, 5, (2, 37, 45))).backward()
    assert all(p.grad is not None for p in model.parameters())
    # the head is local: a 3x3 conv and a 1x1 conv, no pooling of any kind
    kinds = {type(m) for m in model.classifier.modules()}
    assert not kinds & {nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.MaxPool2d}


def test_plain_dilated_fcn_is_torchvisions_fcn_resnet50():
    from torchvision.models.segmentation import fcn_resnet50

    torch.manual_seed(0)
    theirs = fcn_resnet50(weights=None, weights_backbone=None, aux_loss=False, num_classes=7).eval()
    ours = DilatedFCN(7, "resnet50").eval()
    assert count_parameters(ours) == count_parameters(theirs)
    state = {k.replace("backbone.conv1.", "backbone.stem.0.").replace("backbone.bn1.", "backbone.stem.1."): v
             for k, v in theirs.state_dict().items()}
    ours.load_state_dict(state, strict=True)
    x = torch.rand(1, 3, 61, 75)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x)["out"], atol=1e-4)


def test_pspnet_resnet50_size():
    with torch.device("meta"):
        model = PSPNet(150)  # ResNet-50, bins (1, 2, 3, 6), ADE20K's 150 classes
    # backbone 23.5M + pyramid 4 x 2048 x 512 + 3x3 conv 4096 -> 512 + classifier
    ppm = 4 * (2048 * 512 + 2 * 512)
    head = 4096 * 512 * 9 + 2 * 512 + 512 * 150 + 150
    assert count_parameters(model) == count_parameters(model.backbone) + ppm + head
    assert count_parameters(model.backbone) == 23_508_032


def test_bad_target_and_aux_arguments():
    model = PSPNet(3, "small", width=4, aux=True)
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(TypeError, match="int64 masks"):
        model(x, torch.zeros(2, 32, 32))  # float masks: a wrong dtype is a TypeError
    with pytest.raises(ValueError, match="int64 masks"):
        model(x, torch.zeros(2, 31, 32, dtype=torch.long))
    with pytest.raises(TypeError, match="aux"):
        PSPNet(3, "small", width=4, aux="yes")
    with pytest.raises(ValueError, match="aux_weight"):
        PSPNet(3, "small", width=4, aux=True, aux_weight=-1.0)


def test_fit_trains_with_the_auxiliary_loss():
    from segedu.data.shapes import ShapesDataset
    from segedu.train import fit

    data = ShapesDataset(16, size=32, variant="context")
    model = PSPNet(data.num_classes, "small", width=4, aux=True)
    history = fit(model, data, None, steps=2, batch_size=4, lr=1e-3, device="cpu", progress=False)
    assert set(history.parts) == {"out", "aux"} and history.steps == 2
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, data.num_classes, 32, 32)  # eval mode: logits


@pytest.mark.parametrize("bad, error", [(True, TypeError), (2.5, TypeError), (-1, ValueError)])
@pytest.mark.parametrize("make", [
    lambda v: PSPNet(v, "small", width=4),
    lambda v: PSPNet(3, "small", width=v),
    lambda v: PSPNet(3, "small", width=4, output_stride=v),
    lambda v: PSPNet(3, "small", width=4, channels=v),
    lambda v: PSPNet(3, "small", bins=(1, v), width=4),
    lambda v: PyramidPooling(v),
    lambda v: PyramidPooling(8, (1, v)),
    lambda v: PyramidPooling(8, channels=v),
    lambda v: pyramid_pool(torch.rand(1, 4, 5, 5), (1, v), [nn.Identity(), nn.Identity()]),
    lambda v: DilatedFCN(v, "small", width=4),
    lambda v: DilatedFCN(3, "small", width=v),
    lambda v: DilatedFCN(3, "small", width=4, output_stride=v),
    lambda v: DilatedFCN(3, "small", width=4, channels=v),
])
def test_counts_follow_the_validation_rule(make, bad, error):
    """A bool or a float where a count is expected is a TypeError, a negative count a ValueError."""
    with pytest.raises(error):
        make(bad)
