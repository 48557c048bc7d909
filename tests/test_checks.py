"""Every exercise check accepts the reference and rejects plausible wrong answers (mutation tests)."""

import pytest
import torch

from segedu import checks


def _iou_reference(matrix):
    matrix = matrix.double()
    tp = matrix.diagonal()
    return tp / (matrix.sum(0) + matrix.sum(1) - tp)


def test_rel_error():
    assert checks.rel_error(torch.ones(3), torch.ones(3)) == 0
    assert checks.rel_error(torch.tensor([1.0]), torch.tensor([3.0])) == pytest.approx(0.5)


def test_iou_from_confusion_accepts_the_reference(capsys):
    checks.check_iou_from_confusion(_iou_reference)
    assert capsys.readouterr().out.strip().endswith("PASSED")


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda m: None, "None"),
        (lambda m: m.diagonal().double() / m.sum(1).double(), "recall"),  # forgets false positives
        (lambda m: m.diagonal() // (m.sum(0) + m.sum(1) - m.diagonal()), "dtype"),  # integer division
        (lambda m: m.diagonal().double() / (m.sum(0) + m.sum(1)).double(), "entry"),  # counts TP twice
        (lambda m: _iou_reference(m).nan_to_num(0.0), "NaN"),  # absent classes scored 0
        (lambda m: _iou_reference(m.T.contiguous())[:-1], "shape"),
        (lambda m: _iou_reference(m).tolist(), "torch.Tensor"),
    ],
)
def test_iou_from_confusion_rejects_wrong_answers(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_iou_from_confusion(wrong)
