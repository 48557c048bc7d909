"""segedu.loss_probe: one pixel's cost and gradient, checked against closed forms and plain autograd."""

import math

import pytest
import torch

from segedu import losses
from segedu.loss_probe import PIXELS, logit, probe_scene, sweep

P = torch.tensor([0.02, 0.3, 0.5, 0.8, 0.97], dtype=torch.float64)


def test_probe_scene_layout():
    logits, target, pixels = probe_scene(ratio=0.1, size=20, confidence=0.8)
    assert logits.shape == (1, 1, 20, 20) and logits.dtype == torch.float64
    assert target.shape == (1, 20, 20) and target.dtype == torch.int64
    assert int(target.sum()) == 40  # round(0.1 * 400) foreground pixels
    assert target[0][pixels["positive"]] == 1 and target[0][pixels["negative"]] == 0
    # every pixel gives its true class probability 0.8
    p_true = torch.where(target == 1, torch.sigmoid(logits[:, 0]), 1 - torch.sigmoid(logits[:, 0]))
    assert torch.allclose(p_true, torch.full_like(p_true, 0.8))
    # the blob is compact: every foreground pixel is nearer the centre than every background pixel
    rows, cols = torch.meshgrid(torch.arange(20), torch.arange(20), indexing="ij")
    distance = (rows - 10) ** 2 + (cols - 10) ** 2
    assert distance[target[0] == 1].max() <= distance[target[0] == 0].min()
    # at least one foreground pixel however small the ratio
    assert int(probe_scene(ratio=1e-6, size=8)[1].sum()) == 1


@pytest.mark.parametrize("pixel", PIXELS)
def test_cross_entropy_sweep_is_the_per_pixel_loss_and_gradient(pixel):
    cost, gradient = sweep("binary_cross_entropy", P, pixel)
    g = 1.0 if pixel == "positive" else 0.0
    p_true = P if pixel == "positive" else 1 - P
    # cost = -log p_true - (-log(1 - 1e-13)): the per-pixel loss; gradient = p - g
    assert torch.allclose(cost, -torch.log(p_true), atol=1e-9)
    assert torch.allclose(gradient, P - g, atol=1e-12)


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_sweep_matches_a_plain_autograd_loop(name):
    """vmap + one backward pass gives what one loss call per probability gives."""
    ratio, size = 0.05, 16
    cost, gradient = sweep(name, P, "negative", ratio=ratio, size=size)
    base, target, pixels = probe_scene(ratio, size)
    row, col = pixels["negative"]
    values, grads = [], []
    for z in torch.cat([torch.tensor([-30.0], dtype=torch.float64), logit(P)]):
        logits = base.clone()
        logits[0, 0, row, col] = z
        logits.requires_grad_(True)
        value = losses.LOSSES[name].function(logits, target, mode="binary")
        (grad,) = torch.autograd.grad(value, logits)
        values.append(value.detach())
        grads.append(grad[0, 0, row, col])
    values, grads = torch.stack(values), torch.stack(grads)
    assert torch.allclose(cost, size * size * (values[1:] - values[0]), atol=1e-10)
    assert torch.allclose(gradient, size * size * grads[1:], atol=1e-10)
    assert torch.isfinite(cost).all() and torch.isfinite(gradient).all()


def test_dice_gradient_matches_finite_differences():
    p = torch.tensor([0.1, 0.6], dtype=torch.float64)
    _, gradient = sweep("dice_loss", p, "positive", ratio=0.02, size=16)
    eps = 1e-6
    z = logit(p)
    plus, _ = sweep("dice_loss", torch.sigmoid(z + eps), "positive", ratio=0.02, size=16)
    minus, _ = sweep("dice_loss", torch.sigmoid(z - eps), "positive", ratio=0.02, size=16)
    assert torch.allclose(gradient, (plus - minus) / (2 * eps), rtol=1e-5)


def test_region_loss_gradient_grows_as_the_class_shrinks_cross_entropy_does_not():
    hard = torch.tensor([0.05], dtype=torch.float64)
    rare = sweep("dice_loss", hard, "positive", ratio=0.01).gradient.abs()
    common = sweep("dice_loss", hard, "positive", ratio=0.3).gradient.abs()
    assert rare > 5 * common
    bce_rare = sweep("binary_cross_entropy", hard, "positive", ratio=0.01).gradient
    bce_common = sweep("binary_cross_entropy", hard, "positive", ratio=0.3).gradient
    assert torch.allclose(bce_rare, bce_common)


def test_parameters_reach_the_loss():
    gamma0 = sweep("focal_loss", P, "positive", alpha=None, gamma=0.0)
    bce = sweep("binary_cross_entropy", P, "positive")
    assert torch.allclose(gamma0.cost, bce.cost) and torch.allclose(gamma0.gradient, bce.gradient)
    # a function works as well as a name
    own = sweep(lambda z, y, mode: losses.dice_loss(z, y, mode=mode, smooth=0.0), P, "positive")
    named = sweep("dice_loss", P, "positive", smooth=0.0)
    assert torch.allclose(own.gradient, named.gradient)


def test_logit_inverts_the_sigmoid():
    p = torch.tensor([1e-6, 0.25, 0.5, 0.999], dtype=torch.float64)
    assert torch.allclose(torch.sigmoid(logit(p)), p, rtol=1e-12)
    assert logit(torch.tensor([0.5])).item() == 0.0
    assert math.isclose(logit(torch.tensor([0.9], dtype=torch.float64)).item(), math.log(9.0))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"loss": "dice"}, ValueError, "loss must be one of"),
        ({"loss": 3}, TypeError, "loss must be"),
        ({"pixel": "boundary"}, ValueError, "pixel must be one of"),
        ({"probabilities": [0.0, 0.5]}, ValueError, "probabilities"),
        ({"probabilities": []}, ValueError, "probabilities"),
        ({"ratio": 0.7}, ValueError, "ratio must be at most 0.5"),
        ({"ratio": 0.0}, ValueError, "ratio must lie"),
        ({"size": 3}, ValueError, "size must be an int >= 4"),
        ({"size": -1}, ValueError, "size must be an int >= 4"),
        ({"size": True}, TypeError, "size"),
        ({"size": 16.5}, TypeError, "size"),
        ({"ratio": True}, TypeError, "ratio"),
        ({"confidence": "0.9"}, TypeError, "confidence"),
        ({"confidence": float("nan")}, ValueError, "confidence"),
        ({"pixel": 1}, TypeError, "pixel"),
        ({"confidence": 1.0}, ValueError, "confidence"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, error, match):
    args = {"loss": "dice_loss", "probabilities": [0.5], **kwargs}
    with pytest.raises(error, match=match):
        sweep(**args)
