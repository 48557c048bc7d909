"""Lesson 11's exercise check accepts the reference (and segedu.zoo's) FLOP count and rejects plausible
wrong formulas, each with the hint that names the mistake."""

import pytest
import torch

from segedu import checks, zoo


def conv2d_flops(conv, input_shape, *, macs=False, groups=True, stride=True, dilation=True, padding=True, bias=False,
                 out_size_from_input=False):
    """The lesson's reference solution; the keyword-only flags make the wrong variants."""
    b, _, h, w = input_shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    if not stride:
        sh = sw = 1
    if not dilation:
        dh = dw = 1
    if not padding:
        ph = pw = 0
    h_out = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    w_out = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if out_size_from_input:
        h_out, w_out = h, w
    outputs = b * conv.out_channels * h_out * w_out
    per_output = conv.in_channels // (conv.groups if groups else 1) * kh * kw
    return outputs * per_output * (1 if macs else 2) + (outputs if bias else 0)


def test_reference_solutions_pass(capsys):
    checks.check_conv2d_flops(conv2d_flops)
    checks.check_conv2d_flops(zoo.conv2d_flops)
    checks.check_conv2d_flops(lambda conv, shape: float(conv2d_flops(conv, shape)))  # 1.7e8 as a float is fine
    assert capsys.readouterr().out.strip().splitlines()[-1].endswith("PASSED")


@pytest.mark.parametrize("wrong, message", [
    (dict(macs=True), "multiply-adds"),
    (dict(groups=False), "groups"),
    (dict(stride=False), "stride"),
    (dict(dilation=False), "dilat"),
    (dict(padding=False), "padding"),
    (dict(bias=True), "bias"),
    (dict(out_size_from_input=True), "expected"),  # no special hint: the general formula
])
def test_wrong_formulas_fail(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_conv2d_flops(lambda conv, shape: conv2d_flops(conv, shape, **wrong))


def test_garbage_fails():
    with pytest.raises(AssertionError, match="None"):
        checks.check_conv2d_flops(lambda conv, shape: None)
    with pytest.raises(AssertionError, match="whole number"):
        checks.check_conv2d_flops(lambda conv, shape: conv2d_flops(conv, shape) + 0.5)
    with pytest.raises(AssertionError, match="whole number"):
        checks.check_conv2d_flops(lambda conv, shape: "173408256")
    with pytest.raises(AssertionError, match="whole number"):
        checks.check_conv2d_flops(lambda conv, shape: float("nan"))
    with pytest.raises(AssertionError, match="expected 173,408,256"):
        checks.check_conv2d_flops(lambda conv, shape: 0)
    with pytest.raises(AssertionError, match="expected"):  # the weights' size is not the cost
        checks.check_conv2d_flops(lambda conv, shape: 2 * conv.weight.numel())
