"""segedu.ops.dilation.effective_receptive_field (Luo et al. 2016): exact support of known stacks, eval mode, the
profile and extent measures, and argument checks."""

import pytest
import torch
from torch import nn

from segedu.ops.dilation import effective_receptive_field, erf_extent, erf_profile, receptive_field


def test_two_stacked_3x3_convs_have_a_5x5_support():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1))
    erf = effective_receptive_field(model, 11)
    assert erf.shape == (11, 11) and erf.dtype == torch.float32
    support = torch.zeros(11, 11, dtype=torch.bool)
    support[3:8, 3:8] = True
    assert torch.equal(erf > 0, support)
    assert erf_extent(erf, 1.0) == 5


def test_uniform_kernels_count_the_paths():
    # Linear convolutions with all-one 3x3 kernels: d out / d x counts the paths from a pixel to the centre,
    # the outer product of [1, 2, 3, 2, 1] - the peaked, Gaussian-like shape of Luo et al. Sec. 2.
    model = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, bias=False), nn.Conv2d(1, 1, 3, padding=1, bias=False))
    for conv in model:
        nn.init.ones_(conv.weight)
    erf = effective_receptive_field(model, 9, in_channels=1, samples=2)
    paths = torch.tensor([0, 0, 1, 2, 3, 2, 1, 0, 0.0])
    assert torch.equal(erf, paths[:, None] * paths[None, :])


@pytest.mark.parametrize("rates", [(1, 2), (1, 2, 4), (3,)])
def test_support_equals_the_theoretical_receptive_field(rates):
    torch.manual_seed(0)
    layers = []
    for i, r in enumerate(rates):
        layers += [nn.Conv2d(1 if i == 0 else 3, 3, 3, padding=r, dilation=r), nn.Tanh()]
    model = nn.Sequential(*layers)
    size = receptive_field([(3, 1, r) for r in rates]).size
    erf = effective_receptive_field(model, (size + 6, size + 4), in_channels=1)
    rows, cols = (erf > 0).nonzero(as_tuple=True)
    assert rows.max() - rows.min() + 1 == size and cols.max() - cols.min() + 1 == size


def test_strided_model_and_given_inputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
    images = torch.rand(3, 3, 16, 16)
    erf = effective_receptive_field(model, 16, inputs=images)
    # output centre (4, 4) reads conv1 outputs 3..5, i.e. input rows 5..11: a 7x7 support
    rows, cols = (erf > 0).nonzero(as_tuple=True)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (5, 11, 5, 11)
    # the average over the given images: one image at a time gives the same mean
    each = torch.stack([effective_receptive_field(model, 16, inputs=images[i : i + 1]) for i in range(3)])
    assert torch.allclose(each.mean(0), erf, atol=1e-6)


def test_eval_mode_and_no_parameter_gradients():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
    model.train()
    erf = effective_receptive_field(model, 9, samples=4)
    # in train mode BatchNorm's batch mean would make every pixel matter; in eval mode only the 3x3 window does
    assert int((erf > 0).sum()) == 9
    assert model.training  # restored
    assert all(p.grad is None for p in model.parameters())


def test_dict_output_and_global_pooling_reaches_everything():
    class Global(nn.Module):
        def forward(self, x):
            return {"out": x + x.mean((2, 3), keepdim=True)}

    erf = effective_receptive_field(Global(), 7, in_channels=2)
    assert bool((erf > 0).all())
    assert erf[3, 3] > erf[0, 0]  # the centre pixel counts twice


def test_profile_and_extent():
    erf = torch.zeros(9, 9)
    erf[4, 4] = 2.0
    erf[4, 6] = 1.0
    erf[0, 0] = 1.0
    profile = erf_profile(erf)
    assert torch.allclose(profile, torch.tensor([0.5, 0.5, 0.75, 0.75, 1.0], dtype=torch.float64))
    assert erf_extent(erf, 0.5) == 1 and erf_extent(erf, 0.6) == 5 and erf_extent(erf, 1.0) == 9
    with pytest.raises(ValueError, match="mass"):
        erf_extent(erf, 0.0)
    with pytest.raises(ValueError, match="zero everywhere"):
        erf_profile(torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        erf_profile(torch.zeros(1, 3, 3))


def test_bad_arguments():
    conv = nn.Conv2d(3, 1, 3, padding=1)
    with pytest.raises(ValueError, match="input_size"):
        effective_receptive_field(conv, 0)
    with pytest.raises(TypeError, match="input_size"):
        effective_receptive_field(conv, (8, 8.5))
    with pytest.raises(ValueError, match="inputs must be"):
        effective_receptive_field(conv, 8, inputs=torch.rand(1, 3, 9, 8))
    with pytest.raises(ValueError, match="samples"):
        effective_receptive_field(conv, 8, samples=0)
    with pytest.raises(TypeError, match="model"):
        effective_receptive_field("conv", 8)
    with pytest.raises(ValueError, match=r"\[B, C, h, w\]"):
        effective_receptive_field(nn.Flatten(), 8)
