"""segedu.models.fpn: the lateral connection, the top-down pathway against torchvision.ops.FeaturePyramidNetwork,
the semantic head's strides, logits at odd input sizes, gradients to every parameter."""

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import FeaturePyramidNetwork

from segedu.models.backbones import ResNetBackbone
from segedu.models.fpn import FPN, FeaturePyramid, SemanticHead, lateral_merge, resnet_stages, stage_channels


def test_lateral_merge_is_add_of_nearest_upsampled_top():
    torch.manual_seed(0)
    lateral = nn.Conv2d(3, 4, 1)
    top = torch.randn(1, 4, 2, 3)
    feature = torch.randn(1, 3, 4, 6)
    out = lateral_merge(top, feature, lateral)
    up = top.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # nearest x2 by hand
    assert torch.allclose(out, lateral(feature) + up)
    # odd size: upsampled to the feature's size exactly
    assert lateral_merge(top, torch.randn(1, 3, 5, 7), lateral).shape == (1, 4, 5, 7)


def test_top_down_pathway_equals_torchvision():
    torch.manual_seed(0)
    theirs = FeaturePyramidNetwork([4, 8, 16, 32], 6)
    ours = FeaturePyramid([4, 8, 16, 32], 6)
    for i in range(4):
        for mine, tv in ((ours.lateral[i], theirs.inner_blocks[i][0]), (ours.smooth[i], theirs.layer_blocks[i][0])):
            mine.load_state_dict(tv.state_dict())
    features = [torch.randn(2, c, s, s + 1) for c, s in ((4, 17), (8, 9), (16, 5), (32, 3))]  # odd sizes
    want = theirs(OrderedDict((str(i), f) for i, f in enumerate(features)))
    got = ours(features)
    for i, f in enumerate(features):
        assert got[i].shape == (2, 6, *f.shape[-2:])
        assert torch.allclose(got[i], want[str(i)], atol=1e-6)


@pytest.mark.parametrize("size", [(37, 45), (64, 64), (33, 70)])
def test_logits_at_input_size(size):
    torch.manual_seed(0)
    model = FPN(5, "small", width=4, channels=8, head_channels=8)
    x = torch.rand(2, 3, *size)
    assert model(x).shape == (2, 5, *size)
    pyramid = model.pyramid(x)
    padded = [-(-s // 32) * 32 for s in size]
    assert [p.shape[-2:] for p in pyramid] == [torch.Size([padded[0] // s, padded[1] // s]) for s in (4, 8, 16, 32)]
    assert all(p.shape[1] == 8 for p in pyramid)


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = FPN(4, "small", width=4, channels=8, head_channels=8)
    out = model(torch.rand(2, 3, 37, 45))
    F.cross_entropy(out, torch.randint(0, 4, (2, 37, 45))).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


def test_semantic_head_stages_follow_the_strides():
    head = SemanticHead(8, 3, channels=4, upsamplings=(0, 1, 2, 3))
    convs = [sum(isinstance(m, nn.Conv2d) for m in b) for b in head.branches]
    ups = [sum(isinstance(m, nn.Upsample) for m in b) for b in head.branches]
    assert convs == [1, 1, 2, 3] and ups == [0, 1, 2, 3]  # Panoptic FPN, Fig. 3
    pyramid = [torch.rand(1, 8, 16 // 2**k, 16 // 2**k) for k in range(4)]
    assert head(pyramid).shape == (1, 3, 16, 16)
    # dilated backbone: levels share a stride, fewer upsamplings
    model = FPN(3, "small", width=4, channels=8, head_channels=4, output_stride=8)
    assert model.head.upsamplings == (0, 1, 1, 1)
    assert model(torch.rand(2, 3, 30, 34)).shape == (2, 3, 30, 34)


def test_resnet_stages_and_channels():
    encoder = ResNetBackbone(width=4, blocks=(1, 1, 1, 1))
    stages = resnet_stages(encoder, torch.rand(1, 3, 64, 64))
    assert [s.shape[1] for s in stages] == stage_channels(encoder) == [4, 8, 16, 32]
    assert [s.shape[-1] for s in stages] == [16, 8, 4, 2]
    from torchvision.models import resnet50

    with torch.device("meta"):
        from segedu.models.backbones import TorchvisionResNet

        assert stage_channels(TorchvisionResNet(resnet50(weights=None))) == [256, 512, 1024, 2048]


def test_bad_arguments():
    with pytest.raises(ValueError, match="in_channels"):
        FeaturePyramid([], 4)
    with pytest.raises(ValueError, match="features must hold 2"):
        FeaturePyramid([3, 4], 4)([torch.rand(1, 3, 4, 4)])
    with pytest.raises(ValueError, match="num_classes"):
        FPN(0, "small")
    model = FPN(3, "small", width=4, channels=8, head_channels=4)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model(torch.rand(1, 4, 32, 32))
    with pytest.raises(TypeError, match="torch.Tensor"):
        model([[0.0]])


@pytest.mark.parametrize("bad, error", [(True, TypeError), (2.5, TypeError), (-1, ValueError)])
@pytest.mark.parametrize("make", [
    lambda v: FPN(v, "small", width=4),
    lambda v: FPN(3, "small", width=v),
    lambda v: FPN(3, "small", width=4, channels=v),
    lambda v: FPN(3, "small", width=4, head_channels=v),
    lambda v: FPN(3, "small", width=4, output_stride=v),
    lambda v: FeaturePyramid([4, v]),
    lambda v: FeaturePyramid([4], v),
    lambda v: SemanticHead(v, 3),
    lambda v: SemanticHead(4, v),
    lambda v: SemanticHead(4, 3, v),
    lambda v: SemanticHead(4, 3, 4, (0, v)),
])
def test_counts_follow_the_validation_rule(make, bad, error):
    """A bool or a float where a count is expected is a TypeError, a negative count a ValueError."""
    with pytest.raises(error):
        make(bad)
