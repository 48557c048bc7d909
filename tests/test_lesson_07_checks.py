"""Lesson 07's exercise checks accept the reference solutions and reject plausible wrong answers."""

import pytest
import torch

from segedu import checks
from segedu.crf import bilateral_features, gaussian_features


def mean_field_step(probs, image, w_bilateral=10.0, theta_alpha=80.0, theta_beta=13.0, w_gaussian=3.0,
                    theta_gamma=3.0, *, normalize=True, half=True, sign=1.0, self_pairs=True, dim=1, unary=True):
    """The lesson's reference solution; the keyword-only flags make the wrong variants."""
    c, h, w = probs.shape
    q = probs.reshape(c, -1).t()  # [N, C]
    message = torch.zeros_like(q)
    for weight, f in ((w_bilateral, bilateral_features(image, theta_alpha, theta_beta)),
                      (w_gaussian, gaussian_features(h, w, theta_gamma))):
        f = f.to(probs.dtype)
        k = torch.exp(-(0.5 if half else 1.0) * torch.cdist(f, f) ** 2)
        if not self_pairs:
            k = k - torch.eye(h * w, dtype=k.dtype)
        d = k.sum(1).rsqrt() if normalize else torch.ones(h * w, dtype=k.dtype)
        message = message + weight * d[:, None] * (k @ (d[:, None] * q))
    return torch.softmax((torch.log(q) if unary else 0) + sign * message, dim=dim).t().reshape(c, h, w)


def aspp_rates(output_stride, base_rates=(6, 12, 18), base_stride=16):
    rates = []
    for rate in base_rates:
        scaled, rest = divmod(rate * base_stride, output_stride)
        if rest:
            raise ValueError("not an integer rate")
        rates.append(scaled)
    return tuple(rates)


def test_mean_field_reference_passes(capsys):
    checks.check_mean_field_step(mean_field_step)
    assert capsys.readouterr().out.strip().endswith("PASSED")


def test_mean_field_float32_solution_passes(capsys):
    checks.check_mean_field_step(lambda probs, image, **kw: mean_field_step(probs.float(), image, **kw))
    assert capsys.readouterr().out.strip().endswith("PASSED")


@pytest.mark.parametrize(
    "wrong, message",
    [
        (dict(normalize=False), "normalisation"),
        (dict(half=False), r"exp\(-d\^2\)"),
        (dict(sign=-1.0), "subtracted"),
        (dict(dim=0), "over the pixels"),
        (dict(unary=False), "unary"),
        (dict(self_pairs=False), "mean_field_step"),  # the package's filter keeps j = i: no special hint
    ],
)
def test_mean_field_mistakes_fail(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_mean_field_step(lambda probs, image, **kw: mean_field_step(probs, image, **kw, **wrong))


def test_mean_field_garbage_fails():
    with pytest.raises(AssertionError, match="None"):
        checks.check_mean_field_step(lambda probs, image, **kw: None)
    with pytest.raises(AssertionError, match="shape"):
        checks.check_mean_field_step(lambda probs, image, **kw: probs[0])
    with pytest.raises(AssertionError, match="mean_field_step"):
        checks.check_mean_field_step(lambda probs, image, **kw: probs)  # no iteration at all
    with pytest.raises(AssertionError, match="mean_field_step"):  # started from uniform marginals
        checks.check_mean_field_step(
            lambda probs, image, **kw: mean_field_step(torch.full_like(probs, 1 / probs.shape[0]), image, **kw)
        )


def test_aspp_rates_reference_passes(capsys):
    checks.check_aspp_rates(aspp_rates)
    assert capsys.readouterr().out.strip().endswith("PASSED")


def test_aspp_rates_mistakes_fail():
    def inverted(s, base_rates=(6, 12, 18), base_stride=16):
        return tuple(r * s // base_stride for r in base_rates)

    def floats(s, base_rates=(6, 12, 18), base_stride=16):
        return tuple(r * base_stride / s for r in base_rates)

    def floor(s, base_rates=(6, 12, 18), base_stride=16):
        return tuple(r * base_stride // s for r in base_rates)

    with pytest.raises(AssertionError, match="wrong way"):
        checks.check_aspp_rates(inverted)
    with pytest.raises(AssertionError, match="ints"):
        checks.check_aspp_rates(floats)
    with pytest.raises(AssertionError, match="ValueError"):
        checks.check_aspp_rates(floor)  # silently rounds 96 / 7
    fixed = lambda s, base_rates=(6, 12, 18), base_stride=16: aspp_rates(s)  # noqa: E731  ignores the base
    with pytest.raises(AssertionError, match="expected"):
        checks.check_aspp_rates(fixed)
    with pytest.raises(AssertionError, match="None"):
        checks.check_aspp_rates(lambda s, **kw: None)
    with pytest.raises(AssertionError, match="tuple"):
        checks.check_aspp_rates(lambda s, **kw: torch.tensor(aspp_rates(s, **kw)))
