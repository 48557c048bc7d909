"""Exercise checks: one public function per exercise, taking the student's function.

Each check runs the lecture's worked example (where there is one) and random cases against the reference in
the package, checks shape, dtype and values, and either prints one line ending in ``PASSED`` or raises
``AssertionError`` with a message that says what to look at. A function that returns ``None`` or garbage
never passes. (Style after the CS231n assignments: fixed inputs, ``rel_error``, messages for the student.)
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["rel_error", "check_iou_from_confusion"]


def rel_error(x: torch.Tensor, y: torch.Tensor) -> float:
    """Largest relative error ``|x - y| / max(1e-8, |x| + |y|)``, as in CS231n."""
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    return float(((x - y).abs() / (x.abs() + y.abs()).clamp_min(1e-8)).max())


def _passed(name: str, cases: int) -> None:
    print(f"{name}: {cases} cases - PASSED")


def _expect_tensor(value, name: str, shape: tuple, what: str) -> torch.Tensor:
    if value is None:
        raise AssertionError(f"{name} returned None: did you forget the `return` statement?")
    if not isinstance(value, torch.Tensor):
        raise AssertionError(f"{name} must return a torch.Tensor ({what}), got {type(value).__name__}")
    if tuple(value.shape) != tuple(shape):
        raise AssertionError(f"{name} returned shape {tuple(value.shape)}, expected {tuple(shape)} ({what})")
    return value


def _compare(got: torch.Tensor, want: torch.Tensor, name: str, case: str, atol: float = 1e-6) -> None:
    """Values equal where both are defined, NaN exactly where the reference is NaN."""
    got = got.detach().to(torch.float64).cpu()
    want = want.to(torch.float64).cpu()
    nan_got, nan_want = torch.isnan(got), torch.isnan(want)
    if not torch.equal(nan_got, nan_want):
        where = torch.nonzero(nan_got != nan_want).flatten().tolist()
        raise AssertionError(
            f"{name}, {case}: NaN in the wrong places (entries {where}). A class that is absent from both the "
            "prediction and the target has TP + FP + FN = 0: its IoU is undefined (NaN), every other IoU is a number."
        )
    diff = (got - want).abs().nan_to_num(0.0)
    if diff.max() > atol:
        k = int(diff.argmax())
        raise AssertionError(
            f"{name}, {case}: entry {k} is {got.flatten()[k]:.6f}, expected {want.flatten()[k]:.6f} "
            f"(largest error {diff.max():.2e})."
        )


# --- lesson 00 -------------------------------------------------------------------------------------------


def check_iou_from_confusion(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Lesson 00: ``fn(matrix)`` takes a confusion matrix ``[C, C]`` (rows = target class, columns = predicted
    class) and returns the per-class IoU ``[C]`` as float, NaN for classes absent from both."""
    from segedu.metrics import ConfusionMatrix

    name = "iou_from_confusion"
    # The worked example: 3 classes, written out by hand.
    matrix = torch.tensor([[50, 2, 3], [4, 10, 0], [1, 0, 0]])
    # class 0: TP 50, FN 5, FP 5 -> 50/60; class 1: TP 10, FN 4, FP 2 -> 10/16; class 2: TP 0, FN 1, FP 3 -> 0
    want = torch.tensor([50 / 60, 10 / 16, 0.0])
    got = _expect_tensor(fn(matrix.clone()), name, (3,), "one IoU per class")
    if not got.is_floating_point():
        raise AssertionError(f"{name} returned dtype {got.dtype}: IoU is a fraction, convert the counts to float first.")
    if torch.allclose(got.double(), torch.tensor([50 / 55, 10 / 14, 0.0], dtype=torch.float64), atol=1e-6):
        raise AssertionError(f"{name}: you computed TP / (TP + FN) (recall). IoU also counts false positives: TP / (TP + FP + FN).")
    _compare(got, want, name, "the 3-class worked example")
    # Random cases against the package's ConfusionMatrix, with a class absent from both (NaN).
    gen = torch.Generator().manual_seed(0)
    cases = 1
    for num_classes in (2, 5, 7):
        pred = torch.randint(0, num_classes - 1, (2, 16, 16), generator=gen)  # last class never predicted...
        target = torch.randint(0, num_classes - 1, (2, 16, 16), generator=gen)  # ...nor present: NaN
        cm = ConfusionMatrix(num_classes)
        cm.update(pred, target)
        got = _expect_tensor(fn(cm.matrix.clone()), name, (num_classes,), "one IoU per class")
        _compare(got, cm.iou(), name, f"random {num_classes}-class case")
        cases += 1
    _passed(name, cases)
