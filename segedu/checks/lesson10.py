"""Lesson 10 · Loss functions for segmentation: the exercise checks.

``check_exp_log_loss`` (the larger exercise: it composes the per-class Dice, a log, powers and
class-frequency weights): the exponential logarithmic loss of Wong et al. (MICCAI 2018), compared with
``segedu.losses.exp_log_loss``. ``check_dice_loss``: the multiclass soft Dice loss (Milletari et al., 3DV 2016: squared denominator), compared
with ``segedu.losses.dice_loss``; ``check_focal_loss``: the binary focal loss (Lin et al., ICCV 2017), compared
with ``torchvision.ops.sigmoid_focal_loss``. Both compare the values and the gradients, and name the mistake a
wrong answer reproduces when it is a known one.
"""

from __future__ import annotations

from typing import Callable

import torch

from segedu.checks.common import agrees, passed, returned

__all__ = ["check_dice_loss", "check_focal_loss", "check_exp_log_loss"]


def _loss_scalar(value, name: str) -> torch.Tensor:
    """The student's loss must be a 0-dim floating tensor."""
    returned(value, name)
    if not isinstance(value, torch.Tensor):
        raise AssertionError(
            f"{name} must return a torch.Tensor (a scalar the optimizer can backpropagate through), "
            f"got {type(value).__name__}. Keep the computation in torch: no .item(), no NumPy."
        )
    if value.dim() != 0:
        raise AssertionError(
            f"{name} returned shape {tuple(value.shape)}, expected a scalar (shape ()): average over the pixels "
            "(or classes) at the end."
        )
    if not value.is_floating_point():
        raise AssertionError(f"{name} returned dtype {value.dtype}: a loss is a floating-point number.")
    return value


def _loss_value_and_grad(fn: Callable, name: str, logits: torch.Tensor, *args, **kwargs):
    """Call ``fn`` on a fresh leaf copy of ``logits``; return the loss (float64) and d loss / d logits."""
    leaf = logits.detach().clone().requires_grad_(True)
    value = _loss_scalar(fn(leaf, *args, **kwargs), name)
    if not value.requires_grad:
        raise AssertionError(
            f"{name}: the loss does not depend on the logits through autograd (no gradient can flow). "
            "Did you call .detach(), .item(), .numpy() or torch.tensor(...) on an intermediate result?"
        )
    (grad,) = torch.autograd.grad(value, leaf)
    return value.detach().double(), grad.double()


def _loss_hint(got: torch.Tensor, mistakes: dict[str, torch.Tensor]) -> str:
    """The hint of the first known mistake whose value the student's answer reproduces, or ''."""
    for hint, value in mistakes.items():
        if agrees(got, value, rtol=1e-4, atol=1e-8):
            return " " + hint
    return ""


# Exercise: multiclass soft Dice loss.


def _loss_dice_terms(probabilities: torch.Tensor, one_hot: torch.Tensor, smooth: float, dims=(0, 2, 3)):
    """Squared-denominator soft Dice per class, the statistics summed over ``dims``."""
    num = 2 * (probabilities * one_hot).sum(dims) + smooth
    den = (probabilities**2).sum(dims) + (one_hot**2).sum(dims) + smooth
    return num / den


def _loss_dice_mistakes(logits: torch.Tensor, target: torch.Tensor, smooth: float) -> dict[str, torch.Tensor]:
    """Plausible wrong Dice losses, each with the hint the student gets when they reproduce it."""
    num_classes = logits.shape[1]
    g = torch.nn.functional.one_hot(target, num_classes).permute(0, 3, 1, 2).double()
    p = torch.softmax(logits.double(), dim=1)
    dice = _loss_dice_terms(p, g, smooth)
    linear = (2 * (p * g).sum((0, 2, 3)) + smooth) / (p.sum((0, 2, 3)) + g.sum((0, 2, 3)) + smooth)
    per_image = _loss_dice_terms(p, g, smooth, dims=(2, 3))
    numerator_only = (2 * (p * g).sum((0, 2, 3)) + smooth) / ((p**2).sum((0, 2, 3)) + (g**2).sum((0, 2, 3)))
    return {
        "You returned the Dice coefficient itself: the loss is 1 - Dice (0 for a perfect prediction).":
            dice.mean(),
        "The lecture's Dice squares the denominator terms: sum p^2 + sum g^2, not sum p + sum g.":
            1 - linear.mean(),
        "Sum the statistics over the whole batch (dims 0, 2, 3) per class, then average over classes - not "
        "one Dice per image.": 1 - per_image.mean(),
        "Apply softmax over the class dimension (dim=1) first: the formula needs probabilities, not logits.":
            1 - _loss_dice_terms(logits.double(), g, smooth).mean(),
        "`smooth` goes into the numerator AND the denominator.": 1 - numerator_only.mean(),
        "Average over ALL classes, background (class 0) included.": 1 - dice[1:].mean(),
    }


def check_dice_loss(fn: Callable) -> None:
    """Lesson 10: ``fn(logits, target, smooth=1.0)`` is the multiclass soft Dice loss of the lecture.

    ``logits`` float ``[B, C, H, W]``, ``target`` int64 ``[B, H, W]`` in ``0..C-1``; with p = softmax over C
    and g the one-hot target, per class c: ``D_c = (2 sum p g + smooth) / (sum p^2 + sum g^2 + smooth)``,
    sums over batch and pixels; the loss is ``1 - mean_c D_c`` (a scalar). Reference:
    ``segedu.losses.dice_loss(mode="multiclass", ignore_index=None)``.
    """
    from segedu.losses import dice_loss

    name = "dice_loss"
    # The worked example: one 2x2 image, 2 classes. Foreground probabilities 0.9, 0.2, 0.6, 0.1 (logits are
    # log-probabilities, so softmax gives them back exactly); the first and third pixels are foreground.
    p1 = torch.tensor([[0.9, 0.2], [0.6, 0.1]], dtype=torch.float64)
    logits = torch.stack([torch.log(1 - p1), torch.log(p1)])[None]  # [1, 2, 2, 2]
    target = torch.tensor([[[1, 0], [1, 0]]])
    # class 1: 2 sum pg = 2 (0.9 + 0.6) = 3.0,  sum p^2 = 0.81 + 0.04 + 0.36 + 0.01 = 1.22,  sum g^2 = 2
    # class 0: 2 sum pg = 2 (0.8 + 0.9) = 3.4,  sum p^2 = 0.01 + 0.64 + 0.16 + 0.81 = 1.62,  sum g^2 = 2
    worked = {0.0: 1 - (3.0 / 3.22 + 3.4 / 3.62) / 2, 1.0: 1 - (4.0 / 4.22 + 4.4 / 4.62) / 2}
    cases = 0
    for smooth, want in worked.items():
        got, _ = _loss_value_and_grad(fn, name, logits, target, smooth=smooth)
        if not agrees(got, torch.tensor(want), atol=1e-8):
            hint = _loss_hint(got, _loss_dice_mistakes(logits, target, smooth))
            raise AssertionError(
                f"{name}, worked example (2x2 image, smooth={smooth}): got {float(got):.6f}, expected {want:.6f}."
                + (hint or " Check the per-class sums and the mean over classes.")
            )
        cases += 1
    # Random cases against the package, values and gradients.
    gen = torch.Generator().manual_seed(10)
    for shape, smooth in [((2, 3, 5, 7), 1.0), ((1, 2, 8, 8), 0.0), ((3, 4, 6, 5), 0.5), ((2, 5, 4, 4), 1.0)]:
        batch, num_classes, height, width = shape
        logits = 3 * torch.randn(shape, generator=gen, dtype=torch.float64)
        target = torch.randint(0, num_classes, (batch, height, width), generator=gen)
        got, grad = _loss_value_and_grad(fn, name, logits, target, smooth=smooth)
        want, want_grad = _loss_value_and_grad(
            lambda z, y, smooth: dice_loss(z, y, mode="multiclass", ignore_index=None, smooth=smooth),
            "reference", logits, target, smooth=smooth,
        )
        case = f"random case logits {list(shape)}, smooth={smooth}"
        if not agrees(got, want, atol=1e-8):
            hint = _loss_hint(got, _loss_dice_mistakes(logits, target, smooth))
            raise AssertionError(f"{name}, {case}: got {float(got):.6f}, expected {float(want):.6f}.{hint}")
        if not agrees(grad, want_grad, rtol=1e-4, atol=1e-9):
            raise AssertionError(
                f"{name}, {case}: the value is right but the gradient is off by up to "
                f"{float((grad - want_grad).abs().max()):.2e}. Avoid in-place edits and non-differentiable steps "
                "(argmax, rounding) inside the loss."
            )
        cases += 1
    # Networks give float32 logits: the loss must work (and stay finite) on them too.
    logits, target = torch.randn(2, 3, 4, 4, generator=gen), torch.randint(0, 3, (2, 4, 4), generator=gen)
    got = _loss_scalar(fn(logits, target), name)
    if not torch.isfinite(got):
        raise AssertionError(f"{name} returned {float(got)} for float32 logits: it must be finite.")
    passed(name, cases + 1)


# Exercise: binary focal loss.


def _loss_focal_mistakes(logits, target, alpha, gamma) -> dict[str, torch.Tensor]:
    z, y = logits.double(), target.double()
    p = torch.sigmoid(z)
    p_t = p * y + (1 - p) * (1 - y)
    ce = torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none")
    alpha_t = alpha * y + (1 - alpha) * (1 - y)
    return {
        "Sum, then divide by the number of pixels: the loss is the MEAN over pixels, not the sum.":
            (alpha_t * (1 - p_t) ** gamma * ce).sum(),
        "The modulating factor is (1 - p_t)^gamma with p_t the probability of the TRUE class (p for a "
        "positive pixel, 1 - p for a negative one).": (alpha_t * (1 - p) ** gamma * ce).mean(),
        "The modulating factor is (1 - p_t)^gamma, not p_t^gamma: it must shrink the loss of pixels that are "
        "already right.": (alpha_t * p_t**gamma * ce).mean(),
        "alpha weighs the POSITIVE pixels (target 1) and 1 - alpha the negatives, as in Lin et al.":
            ((1 - alpha_t) * (1 - p_t) ** gamma * ce).mean(),
        "Multiply by alpha_t (alpha for positives, 1 - alpha for negatives).": ((1 - p_t) ** gamma * ce).mean(),
    }


def check_focal_loss(fn: Callable) -> None:
    """Lesson 10: ``fn(logits, target, alpha=0.25, gamma=2.0)`` is the binary focal loss, mean over pixels.

    ``logits`` float ``[B, H, W]`` (one foreground logit per pixel), ``target`` float ``[B, H, W]`` of 0/1.
    ``FL = mean_i -alpha_t (1 - p_t)^gamma log p_t`` with p = sigmoid(logits), p_t = p for target 1 and
    1 - p for target 0, alpha_t = alpha for target 1 and 1 - alpha for target 0 (Lin et al., ICCV 2017).
    Reference: ``torchvision.ops.sigmoid_focal_loss(..., reduction="mean")`` (and ``segedu.losses.focal_loss``).
    """
    import math

    from torchvision.ops import sigmoid_focal_loss

    name = "focal_loss"
    # The worked example: three pixels. p = 0.5 on a positive, p = 0.9 on a positive, p = 0.9 on a negative.
    logits = torch.tensor([[[0.0, math.log(9.0), math.log(9.0)]]], dtype=torch.float64)
    target = torch.tensor([[[1.0, 1.0, 0.0]]], dtype=torch.float64)
    # 0.25 * 0.5^2 * ln 2 = 0.043322,  0.25 * 0.1^2 * -ln 0.9 = 0.000263,  0.75 * 0.9^2 * -ln 0.1 = 1.398853
    want = (0.25 * 0.25 * math.log(2) + 0.25 * 0.01 * -math.log(0.9) + 0.75 * 0.81 * -math.log(0.1)) / 3
    got, _ = _loss_value_and_grad(fn, name, logits, target, alpha=0.25, gamma=2.0)
    if not agrees(got, torch.tensor(want), atol=1e-8):
        hint = _loss_hint(got, _loss_focal_mistakes(logits, target, 0.25, 2.0))
        raise AssertionError(
            f"{name}, worked example (3 pixels): got {float(got):.6f}, expected {want:.6f}."
            + (hint or " Work out the three pixels by hand: -alpha_t (1 - p_t)^gamma log p_t.")
        )
    cases = 1
    # gamma = 0, alpha = 0.5: half the binary cross-entropy.
    gen = torch.Generator().manual_seed(11)
    logits = 2 * torch.randn(2, 6, 6, generator=gen, dtype=torch.float64)
    target = (torch.rand(2, 6, 6, generator=gen) < 0.3).double()
    got, _ = _loss_value_and_grad(fn, name, logits, target, alpha=0.5, gamma=0.0)
    half_bce = 0.5 * torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    if not agrees(got, half_bce, atol=1e-8):
        raise AssertionError(
            f"{name}: with gamma=0 and alpha=0.5 the focal loss is half the binary cross-entropy "
            f"({float(half_bce):.6f}), got {float(got):.6f}."
            + _loss_hint(got, _loss_focal_mistakes(logits, target, 0.5, 0.0))
        )
    cases += 1
    # Random cases against torchvision: values and gradients.
    for shape, alpha, gamma in [((2, 8, 8), 0.25, 2.0), ((1, 5, 9), 0.75, 1.0), ((3, 4, 4), 0.5, 0.5)]:
        logits = 4 * torch.randn(shape, generator=gen, dtype=torch.float64)
        target = (torch.rand(shape, generator=gen) < 0.2).double()
        got, grad = _loss_value_and_grad(fn, name, logits, target, alpha=alpha, gamma=gamma)
        want, want_grad = _loss_value_and_grad(
            lambda z, y, alpha, gamma: sigmoid_focal_loss(z, y, alpha=alpha, gamma=gamma, reduction="mean"),
            "reference", logits, target, alpha=alpha, gamma=gamma,
        )
        case = f"random case {list(shape)}, alpha={alpha}, gamma={gamma}"
        if not agrees(got, want, atol=1e-8):
            hint = _loss_hint(got, _loss_focal_mistakes(logits, target, alpha, gamma))
            raise AssertionError(f"{name}, {case}: got {float(got):.6f}, expected {float(want):.6f}.{hint}")
        if not agrees(grad, want_grad, rtol=1e-4, atol=1e-9):
            raise AssertionError(
                f"{name}, {case}: the value is right but the gradient is off by up to "
                f"{float((grad - want_grad).abs().max()):.2e}."
            )
        cases += 1
    # Confident mistakes in float32: sigmoid(40) rounds to 1.0, so log(1 - sigmoid(z)) is log(0) = -inf.
    logits = torch.tensor([[40.0, -40.0, 40.0, -40.0]])
    target = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    got, grad = _loss_value_and_grad(fn, name, logits, target, alpha=0.25, gamma=2.0)
    want = torch.tensor((0.75 * 40.0 + 0.25 * 40.0) / 4)  # two pixels wrong by 40 nats, two right (~0)
    if not (torch.isfinite(got) and torch.isfinite(grad).all()):
        raise AssertionError(
            f"{name}: logits of +-40 in float32 gave loss {float(got)} (gradient finite: "
            f"{bool(torch.isfinite(grad).all())}). sigmoid(40) is exactly 1.0 in float32, so log(1 - p) = -inf. "
            "Compute log p_t from the logits: F.logsigmoid(z) = log p and F.logsigmoid(-z) = log(1 - p) "
            "(or F.binary_cross_entropy_with_logits(..., reduction='none') = -log p_t)."
        )
    if not agrees(got, want, rtol=1e-4, atol=1e-8):
        raise AssertionError(f"{name}: logits of +-40 gave {float(got):.4f}, expected {float(want):.4f}.")
    passed(name, cases + 1)


# Exercise: the exponential logarithmic loss (composes Dice, logs, powers and class weights).


def _exp_log_parts(logits, target, smooth, linear=False):
    """Per-class Dice ``[C]``, -log p of each pixel's true class ``[B, H, W]`` and the class counts ``[C]``."""
    z = logits.double()
    p = torch.softmax(z, dim=1)
    g = torch.nn.functional.one_hot(target, z.shape[1]).permute(0, 3, 1, 2).double()
    dims = (0, 2, 3)
    denominator = (p.sum(dims) + g.sum(dims)) if linear else ((p * p).sum(dims) + (g * g).sum(dims))
    dice = (2 * (p * g).sum(dims) + smooth) / (denominator + smooth)
    nll = -torch.log_softmax(z, dim=1).gather(1, target[:, None])[:, 0]
    return dice, nll, g.sum(dims)


def _exp_log_mistakes(logits, target, w_dice, w_cross, gamma, smooth) -> dict[str, torch.Tensor]:
    dice, nll, counts = _exp_log_parts(logits, target, smooth)
    weight = (counts.sum() / counts.clamp_min(1)).sqrt()
    l_dice, l_cross = ((-dice.log()) ** gamma).mean(), (weight[target] * nll**gamma).mean()
    lin_dice = _exp_log_parts(logits, target, smooth, linear=True)[0]
    return {
        "The class weight is w_l = (sum_k f_k / f_l) ** 0.5: a square root of the inverse frequency.":
            w_dice * l_dice + w_cross * ((counts.sum() / counts.clamp_min(1))[target] * nll**gamma).mean(),
        "Each pixel's cross-entropy term is weighted by w of its TRUE class (rare classes weigh more).":
            w_dice * l_dice + w_cross * (nll**gamma).mean(),
        "Raise each class's -ln D_c to gamma, then average over classes (not the other way round).":
            w_dice * (-dice.log()).mean() ** gamma + w_cross * l_cross,
        "Take -ln of every class's Dice, not of their mean.":
            w_dice * (-dice.mean().log()) ** gamma + w_cross * l_cross,
        "The course's Dice has the squared denominator sum p^2 + sum g^2 (lesson 10, exercise 1).":
            w_dice * ((-lin_dice.log()) ** gamma).mean() + w_cross * l_cross,
        "w_dice weighs the Dice term and w_cross the cross-entropy term: swapped?":
            w_cross * l_dice + w_dice * l_cross,
    }


def check_exp_log_loss(fn: Callable) -> None:
    """Lesson 10: ``fn(logits, target, w_dice=0.8, w_cross=0.2, gamma=0.3, smooth=1.0)`` is the multiclass
    exponential logarithmic loss (Wong et al., MICCAI 2018) with the course's squared-denominator Dice.

    ``logits`` float ``[B, C, H, W]``, ``target`` int64 ``[B, H, W]`` in ``0..C-1``. With D_c the soft Dice of
    exercise 1 and f_k the number of pixels of class k in the batch:
    ``L_dice = mean_c (-ln D_c)^gamma``, ``L_cross = mean_i w_{y_i} (-ln p_{i, y_i})^gamma`` with
    ``w_l = (sum_k f_k / f_l)^0.5``, loss ``= w_dice L_dice + w_cross L_cross``. Reference:
    ``segedu.losses.exp_log_loss(mode="multiclass", ignore_index=None)``.
    """
    from segedu.losses import exp_log_loss

    name = "exp_log_loss"
    gen = torch.Generator().manual_seed(12)
    cases = 0
    settings = [((1, 2, 2, 2), 0.8, 0.2, 0.3, 1.0), ((2, 3, 5, 7), 0.8, 0.2, 0.3, 1.0),
                ((1, 4, 6, 6), 0.5, 0.5, 1.0, 0.5), ((3, 2, 4, 5), 0.3, 0.7, 0.5, 1.0)]
    for shape, w_dice, w_cross, gamma, smooth in settings:
        batch, num_classes, height, width = shape
        logits = 2 * torch.randn(shape, generator=gen, dtype=torch.float64)
        target = torch.randint(0, num_classes, (batch, height, width), generator=gen)
        target.view(-1)[:num_classes] = torch.arange(num_classes)  # every class present: every f_k > 0
        kwargs = dict(w_dice=w_dice, w_cross=w_cross, gamma=gamma, smooth=smooth)
        got, grad = _loss_value_and_grad(fn, name, logits, target, **kwargs)
        want, want_grad = _loss_value_and_grad(
            lambda z, y, **kw: exp_log_loss(z, y, mode="multiclass", ignore_index=None, **kw),
            "reference", logits, target, **kwargs,
        )
        case = f"logits {list(shape)}, {', '.join(f'{k}={v}' for k, v in kwargs.items())}"
        if not agrees(got, want, atol=1e-8):
            hint = _loss_hint(got, _exp_log_mistakes(logits, target, w_dice, w_cross, gamma, smooth))
            raise AssertionError(
                f"{name}, {case}: got {float(got):.6f}, expected {float(want):.6f}."
                + (hint or " Compute L_dice and L_cross separately and compare each with its formula.")
            )
        if not agrees(grad, want_grad, rtol=1e-4, atol=1e-9):
            raise AssertionError(
                f"{name}, {case}: the value is right but the gradient is off by up to "
                f"{float((grad - want_grad).abs().max()):.2e}. Compute the class weights from the target only "
                "(they are constants, not functions of the logits)."
            )
        cases += 1
    passed(name, cases)
