"""Mutation tests of lesson 00's ``check_window_macs`` (``check_iou_from_confusion``'s are in tests/test_checks.py):
the solution passes; None, a wrong shape and the plausible mistakes fail with a message that names them."""

import pytest
import torch

from segedu import checks
from segedu.sliding_window import PatchClassifier, patch_macs


def window_macs(patch, depth, width, in_channels, num_classes):
    macs, side, channels = 0, patch, in_channels
    for _ in range(depth):
        side -= 2
        macs += side * side * width * channels * 9
        channels = width
    return macs + channels * side * side * num_classes


def test_window_macs_accepts_the_solution(capsys):
    checks.check_window_macs(window_macs)
    assert capsys.readouterr().out.strip().endswith("PASSED")


def test_window_macs_accepts_the_package_and_other_number_types(capsys):
    checks.check_window_macs(lambda p, d, w, c, k: patch_macs(PatchClassifier(k, p, c, w, d)))
    checks.check_window_macs(lambda *args: float(window_macs(*args)))
    checks.check_window_macs(lambda *args: torch.tensor(window_macs(*args)))
    assert capsys.readouterr().out.count("PASSED") == 3


def _same_padding(patch, depth, width, in_channels, num_classes):
    macs, channels = 0, in_channels
    for _ in range(depth):
        macs += patch * patch * width * channels * 9  # forgets that a valid convolution shrinks the map
        channels = width
    return macs + channels * (patch - 2 * depth) ** 2 * num_classes


@pytest.mark.parametrize("wrong, message", [
    (lambda *args: None, "None"),
    (lambda *args: torch.tensor([window_macs(*args)] * 2), "shape"),
    (lambda *args: str(window_macs(*args)), "whole number"),
    (lambda *args: 2 * window_macs(*args), "not FLOPs"),
    (lambda p, d, w, c, k: window_macs(p, d, w, c, 0), "head costs"),
    (lambda p, d, w, c, k: window_macs(p, d, w, w, k) if d else window_macs(p, d, w, c, k), "in_channels"),
    (_same_padding, "narrower"),
    (lambda p, d, w, c, k: window_macs(p, d, w, c, k) + 1, "expected"),
])
def test_window_macs_rejects_wrong_answers(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_window_macs(wrong)


def _per_pixel(patch, depth, width, in_channels, num_classes):
    macs, side, channels = 0, patch, in_channels
    for _ in range(depth):
        side -= 2
        macs += width * channels * 9  # the dense pass's cost per pixel: each output computed once
        channels = width
    return macs + channels * side * side * num_classes


def _input_side(patch, depth, width, in_channels, num_classes):
    macs, side, channels = 0, patch, in_channels
    for _ in range(depth):
        macs += side * side * width * channels * 9  # the layer's input map, not its output
        side -= 2
        channels = width
    return macs + channels * side * side * num_classes


def test_window_macs_names_the_repeated_work_and_the_output_side():
    with pytest.raises(AssertionError, match="cost per pixel of the fully convolutional pass"):
        checks.check_window_macs(_per_pixel)
    with pytest.raises(AssertionError, match="output"):
        checks.check_window_macs(_input_side)
