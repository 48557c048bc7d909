"""Lesson 00 · The segmentation task: the exercise checks.

``check_iou_from_confusion``: the per-class IoU ``TP / (TP + FP + FN)`` read off a confusion matrix, compared
with ``segedu.metrics.ConfusionMatrix``. ``check_window_macs``: the multiply-adds of classifying one window with
the sliding-window baseline's ``PatchClassifier``, compared with ``segedu.sliding_window.patch_macs``.
"""

from __future__ import annotations

from typing import Callable

import torch

from segedu.checks.common import agrees, compare, expect_tensor, passed, returned

__all__ = ["check_iou_from_confusion", "check_window_macs"]

_IOU_HINT = ("IoU = TP / (TP + FP + FN) per class. A class that is absent from both the prediction and the target "
             "has TP + FP + FN = 0: its IoU is undefined (NaN), every other IoU is a number.")


def check_iou_from_confusion(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Lesson 00: ``fn(matrix)`` takes a confusion matrix ``[C, C]`` (rows = target class, columns = predicted
    class) and returns the per-class IoU ``[C]`` as float, NaN for classes absent from both."""
    from segedu.metrics import ConfusionMatrix

    name = "iou_from_confusion"
    # The worked example: 3 classes, written out by hand.
    matrix = torch.tensor([[50, 2, 3], [4, 10, 0], [1, 0, 0]])
    # class 0: TP 50, FN 5, FP 5 -> 50/60; class 1: TP 10, FN 4, FP 2 -> 10/16; class 2: TP 0, FN 1, FP 3 -> 0
    want = torch.tensor([50 / 60, 10 / 16, 0.0])
    got = expect_tensor(fn(matrix.clone()), name, (3,), "one IoU per class")
    if not got.is_floating_point():
        raise AssertionError(f"{name} returned dtype {got.dtype}: IoU is a fraction, convert the counts to float first.")
    if agrees(got, torch.tensor([50 / 55, 10 / 14, 0.0], dtype=torch.float64), atol=1e-6):
        raise AssertionError(f"{name}: you computed TP / (TP + FN) (recall). IoU also counts false positives: TP / (TP + FP + FN).")
    compare(got, want, f"{name}, the 3-class worked example", atol=1e-6, equal_nan=True, hint=_IOU_HINT)
    # Random cases against the package's ConfusionMatrix, with a class absent from both (NaN).
    gen = torch.Generator().manual_seed(0)
    cases = 1
    for num_classes in (2, 5, 7):
        pred = torch.randint(0, num_classes - 1, (2, 16, 16), generator=gen)  # last class never predicted...
        target = torch.randint(0, num_classes - 1, (2, 16, 16), generator=gen)  # ...nor present: NaN
        cm = ConfusionMatrix(num_classes)
        cm.update(pred, target)
        got = expect_tensor(fn(cm.matrix.clone()), name, (num_classes,), "one IoU per class")
        compare(got, cm.iou(), f"{name}, random {num_classes}-class case", atol=1e-6, equal_nan=True, hint=_IOU_HINT)
        cases += 1
    passed(name, cases)


def _window_macs_variant(patch, depth, width, in_channels, num_classes, *, shrink=True, repeat=True, head=True,
                         first_in=True, flops=False, side_after=True) -> int:
    """The multiply-adds of one window, or one of the usual mistakes (the flags name which), to tell a student
    what went wrong."""
    macs, side, channels = 0, patch, in_channels if first_in else width
    for _ in range(depth):
        before = side
        side = side - 2 if shrink else side
        o = side if side_after else before
        macs += (o * o if repeat else 1) * width * channels * 9
        channels = width
    if head:
        macs += channels * side * side * num_classes
    return macs * (2 if flops else 1)


_WINDOW_HINT = ("One window costs sum over layers of (outputs of the layer inside the window) x (multiply-adds per "
                "output): a valid 3x3 convolution with C_in inputs and C_out filters has C_out * C_in * 9 per output "
                "position and leaves a map 2 pixels narrower; the linear head reads the whole last map once.")


def check_window_macs(fn: Callable[[int, int, int, int, int], int]) -> None:
    """Lesson 00: ``fn(patch, depth, width, in_channels, num_classes)`` returns the multiply-adds of classifying
    one ``patch x patch`` window with ``PatchClassifier(num_classes, patch, in_channels, width, depth)``: ``depth``
    valid 3x3 convolutions of ``width`` filters, then a linear head on the flattened map (biases not counted).
    Compared with ``segedu.sliding_window.patch_macs``."""
    from segedu.sliding_window import PatchClassifier, patch_macs

    name = "window_macs"
    mistakes = {
        "a valid (unpadded) 3x3 convolution leaves a map 2 pixels narrower: the window's maps shrink layer by "
        "layer": dict(shrink=False),
        "that is the cost per pixel of the fully convolutional pass: inside one window a convolution computes "
        "its output at o x o positions, not once": dict(repeat=False),
        "the linear head costs multiply-adds too: (width x r x r inputs) x num_classes outputs": dict(head=False),
        "the first convolution reads the image's in_channels, not width channels": dict(first_in=False),
        "count multiply-adds, not FLOPs (a FLOP counter counts 2 per multiply-add)": dict(flops=True),
        "a layer's outputs are its *output* map (2 pixels narrower than its input)": dict(side_after=False),
    }

    def run(args, case):
        got = returned(fn(*args), name)
        if isinstance(got, torch.Tensor):
            if got.numel() != 1:
                raise AssertionError(f"{name}, {case}: return one number, got a tensor of shape {tuple(got.shape)}")
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, (int, float)) or got != got or abs(got) == float("inf"):
            raise AssertionError(f"{name}, {case}: return one whole number of multiply-adds (an int), got {got!r}")
        patch, depth, width, in_channels, num_classes = args
        want = patch_macs(PatchClassifier(num_classes, patch, in_channels, width, depth))
        if got != want:
            for hint, flags in mistakes.items():
                if got == _window_macs_variant(*args, **flags):
                    raise AssertionError(f"{name}, {case}: got {got:,}, expected {want:,}: {hint}.")
        compare(torch.tensor(float(got)), torch.tensor(float(want)), f"{name}, {case}", atol=0.5, hint=_WINDOW_HINT)

    # The lesson's model: 15 x 15 windows, 3 convolutions of 16 filters, 6 classes:
    # 13^2 * 16*3*9 + 11^2 * 16*16*9 + 9^2 * 16*16*9 + 16*9*9 * 6 = 546,192.
    run((15, 3, 16, 3, 6), "the lesson's model (patch 15, depth 3, width 16, 3 channels, 6 classes)")
    cases = [(5, 0, 8, 3, 2), (3, 1, 4, 1, 2), (9, 2, 5, 2, 3), (65, 4, 8, 3, 2)]
    gen = torch.Generator().manual_seed(0)
    while len(cases) < 10:
        depth = int(torch.randint(0, 5, (1,), generator=gen))
        patch = 2 * depth + 1 + 2 * int(torch.randint(0, 8, (1,), generator=gen))
        width, in_channels, num_classes = (int(torch.randint(1, 9, (1,), generator=gen)) for _ in range(3))
        cases.append((patch, depth, width, in_channels, num_classes))
    for args in cases:
        run(args, "patch {}, depth {}, width {}, in_channels {}, num_classes {}".format(*args))
    passed(name, 1 + len(cases))
