"""Lesson 00 · The segmentation task: the exercise check.

``check_iou_from_confusion``: the per-class IoU ``TP / (TP + FP + FN)`` read off a confusion matrix, compared
with ``segedu.metrics.ConfusionMatrix``.
"""

from __future__ import annotations

from typing import Callable

import torch

from segedu.checks.common import agrees, compare, expect_tensor, passed

__all__ = ["check_iou_from_confusion"]

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
