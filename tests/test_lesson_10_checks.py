"""Lesson 10's exercise checks accept the reference solutions and reject plausible wrong answers."""

import pytest
import torch
import torch.nn.functional as F

from segedu import checks

# ---------------------------------------------------------------------------------------------- Dice loss


def _one_hot(logits, target):
    return F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)


def dice_reference(logits, target, smooth=1.0):
    p, g = torch.softmax(logits, dim=1), _one_hot(logits, target)
    dims = (0, 2, 3)
    dice = (2 * (p * g).sum(dims) + smooth) / ((p * p).sum(dims) + (g * g).sum(dims) + smooth)
    return 1 - dice.mean()


def dice_linear_denominator(logits, target, smooth=1.0):
    p, g = torch.softmax(logits, dim=1), _one_hot(logits, target)
    dims = (0, 2, 3)
    return 1 - ((2 * (p * g).sum(dims) + smooth) / (p.sum(dims) + g.sum(dims) + smooth)).mean()


def dice_per_image(logits, target, smooth=1.0):
    p, g = torch.softmax(logits, dim=1), _one_hot(logits, target)
    dims = (2, 3)
    return 1 - ((2 * (p * g).sum(dims) + smooth) / ((p * p).sum(dims) + (g * g).sum(dims) + smooth)).mean()


def dice_on_logits(logits, target, smooth=1.0):
    g = _one_hot(logits, target)
    dims = (0, 2, 3)
    return 1 - ((2 * (logits * g).sum(dims) + smooth) / ((logits**2).sum(dims) + g.sum(dims) + smooth)).mean()


def dice_smooth_in_numerator_only(logits, target, smooth=1.0):
    p, g = torch.softmax(logits, dim=1), _one_hot(logits, target)
    dims = (0, 2, 3)
    return 1 - ((2 * (p * g).sum(dims) + smooth) / ((p * p).sum(dims) + (g * g).sum(dims))).mean()


def dice_without_background(logits, target, smooth=1.0):
    p, g = torch.softmax(logits, dim=1), _one_hot(logits, target)
    dims = (0, 2, 3)
    dice = (2 * (p * g).sum(dims) + smooth) / ((p * p).sum(dims) + (g * g).sum(dims) + smooth)
    return 1 - dice[1:].mean()


def dice_with_sigmoid(logits, target, smooth=1.0):
    p, g = torch.sigmoid(logits), _one_hot(logits, target)
    dims = (0, 2, 3)
    return 1 - ((2 * (p * g).sum(dims) + smooth) / ((p * p).sum(dims) + (g * g).sum(dims) + smooth)).mean()


def test_dice_check_accepts_the_reference(capsys):
    checks.check_dice_loss(dice_reference)
    assert capsys.readouterr().out.strip().endswith("PASSED")


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda z, y, smooth=1.0: None, "None"),
        (lambda z, y, smooth=1.0: 1 - dice_reference(z, y, smooth), "1 - Dice"),
        (dice_linear_denominator, "squares the denominator"),
        (dice_per_image, "whole batch"),
        (dice_on_logits, "softmax"),
        (dice_smooth_in_numerator_only, "numerator AND the denominator"),
        (dice_without_background, "ALL classes"),
        (dice_with_sigmoid, "expected"),
        (lambda z, y, smooth=1.0: dice_reference(z, y, smooth).detach(), "autograd"),
        (lambda z, y, smooth=1.0: dice_reference(z, y, smooth).item(), "torch.Tensor"),
        (lambda z, y, smooth=1.0: dice_reference(z, y, smooth).reshape(1), "scalar"),
        (lambda z, y, smooth=1.0: dice_reference(z, y, 1.0), "smooth=0.0"),  # ignores its smooth argument
    ],
)
def test_dice_check_rejects_wrong_answers(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_dice_loss(wrong)


# ---------------------------------------------------------------------------------------------- focal loss


def focal_reference(logits, target, alpha=0.25, gamma=2.0):
    log_pt = F.logsigmoid(torch.where(target == 1, logits, -logits))  # log of the true class's probability
    alpha_t = alpha * target + (1 - alpha) * (1 - target)
    return (-alpha_t * (1 - log_pt.exp()) ** gamma * log_pt).mean()


def _parts(logits, target, alpha):
    p = torch.sigmoid(logits)
    p_t = p * target + (1 - p) * (1 - target)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return p, p_t, ce, alpha * target + (1 - alpha) * (1 - target)


def focal_naive_log(logits, target, alpha=0.25, gamma=2.0):
    p = torch.sigmoid(logits)
    p_t = p * target + (1 - p) * (1 - target)
    alpha_t = alpha * target + (1 - alpha) * (1 - target)
    return (-alpha_t * (1 - p_t) ** gamma * torch.log(p_t)).mean()


def focal_sum(logits, target, alpha=0.25, gamma=2.0):
    _, p_t, ce, alpha_t = _parts(logits, target, alpha)
    return (alpha_t * (1 - p_t) ** gamma * ce).sum()


def focal_on_p(logits, target, alpha=0.25, gamma=2.0):
    p, _, ce, alpha_t = _parts(logits, target, alpha)
    return (alpha_t * (1 - p) ** gamma * ce).mean()


def focal_p_t_power(logits, target, alpha=0.25, gamma=2.0):
    _, p_t, ce, alpha_t = _parts(logits, target, alpha)
    return (alpha_t * p_t**gamma * ce).mean()


def focal_alpha_swapped(logits, target, alpha=0.25, gamma=2.0):
    _, p_t, ce, alpha_t = _parts(logits, target, alpha)
    return ((1 - alpha_t) * (1 - p_t) ** gamma * ce).mean()


def focal_without_alpha(logits, target, alpha=0.25, gamma=2.0):
    _, p_t, ce, _ = _parts(logits, target, alpha)
    return ((1 - p_t) ** gamma * ce).mean()


def focal_fixed_gamma(logits, target, alpha=0.25, gamma=2.0):
    return focal_reference(logits, target, alpha, 2.0)


def test_focal_check_accepts_the_reference(capsys):
    checks.check_focal_loss(focal_reference)
    assert capsys.readouterr().out.strip().endswith("PASSED")


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda z, y, alpha=0.25, gamma=2.0: None, "None"),
        (focal_naive_log, "logsigmoid"),
        (focal_sum, "MEAN"),
        (focal_on_p, "TRUE class"),
        (focal_p_t_power, "not p_t\\^gamma"),
        (focal_alpha_swapped, "POSITIVE"),
        (focal_without_alpha, "alpha_t"),
        (focal_fixed_gamma, "gamma=0"),
        (lambda z, y, alpha=0.25, gamma=2.0: focal_reference(z, y, alpha, gamma).detach(), "autograd"),
        (lambda z, y, alpha=0.25, gamma=2.0: focal_reference(z, y, alpha, gamma).detach().item(), "torch.Tensor"),
    ],
)
def test_focal_check_rejects_wrong_answers(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_focal_loss(wrong)


# ------------------------------------------------------------------------------- exponential logarithmic loss


def _exp_log_terms(logits, target, smooth, linear=False):
    p, g = torch.softmax(logits, dim=1), _one_hot(logits, target)
    dims = (0, 2, 3)
    denominator = (p.sum(dims) + g.sum(dims)) if linear else ((p * p).sum(dims) + (g * g).sum(dims))
    dice = (2 * (p * g).sum(dims) + smooth) / (denominator + smooth)
    nll = -torch.log_softmax(logits, dim=1).gather(1, target[:, None])[:, 0]
    counts = g.sum(dims)
    return dice, nll, counts


def exp_log_reference(logits, target, w_dice=0.8, w_cross=0.2, gamma=0.3, smooth=1.0):
    dice, nll, counts = _exp_log_terms(logits, target, smooth)
    weight = (counts.sum() / counts).sqrt()
    return w_dice * ((-dice.log()) ** gamma).mean() + w_cross * (weight[target] * nll**gamma).mean()


def exp_log_no_sqrt(logits, target, w_dice=0.8, w_cross=0.2, gamma=0.3, smooth=1.0):
    dice, nll, counts = _exp_log_terms(logits, target, smooth)
    return w_dice * ((-dice.log()) ** gamma).mean() + w_cross * ((counts.sum() / counts)[target] * nll**gamma).mean()


def exp_log_unweighted(logits, target, w_dice=0.8, w_cross=0.2, gamma=0.3, smooth=1.0):
    dice, nll, _ = _exp_log_terms(logits, target, smooth)
    return w_dice * ((-dice.log()) ** gamma).mean() + w_cross * (nll**gamma).mean()


def exp_log_power_outside(logits, target, w_dice=0.8, w_cross=0.2, gamma=0.3, smooth=1.0):
    dice, nll, counts = _exp_log_terms(logits, target, smooth)
    weight = (counts.sum() / counts).sqrt()
    return w_dice * (-dice.log()).mean() ** gamma + w_cross * (weight[target] * nll**gamma).mean()


def exp_log_linear_dice(logits, target, w_dice=0.8, w_cross=0.2, gamma=0.3, smooth=1.0):
    dice, nll, counts = _exp_log_terms(logits, target, smooth, linear=True)
    weight = (counts.sum() / counts).sqrt()
    return w_dice * ((-dice.log()) ** gamma).mean() + w_cross * (weight[target] * nll**gamma).mean()


def exp_log_swapped(logits, target, w_dice=0.8, w_cross=0.2, gamma=0.3, smooth=1.0):
    return exp_log_reference(logits, target, w_cross, w_dice, gamma, smooth)


def exp_log_detached(logits, target, w_dice=0.8, w_cross=0.2, gamma=0.3, smooth=1.0):
    return exp_log_reference(logits.detach(), target, w_dice, w_cross, gamma, smooth)


def test_exp_log_check_accepts_the_reference(capsys):
    checks.check_exp_log_loss(exp_log_reference)
    assert "exp_log_loss: 4 cases - PASSED" in capsys.readouterr().out


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda *a, **k: None, "returned None"),
        (lambda logits, target, **k: logits.sum(1), "scalar"),
        (exp_log_no_sqrt, "square root"),
        (exp_log_unweighted, "TRUE class"),
        (exp_log_power_outside, "then average over classes"),
        (exp_log_linear_dice, "squared denominator"),
        (exp_log_swapped, "swapped"),
        (exp_log_detached, "autograd"),
    ],
)
def test_exp_log_check_rejects_wrong_answers(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_exp_log_loss(wrong)
