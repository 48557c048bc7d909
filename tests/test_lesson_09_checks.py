"""Lesson 09's exercise checks accept the reference and reject plausible wrong answers."""

import pytest
import torch

from segedu import checks
from segedu.checks.lesson09 import iou_with_mistake


def box_iou_reference(boxes1, boxes2):
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    top_left = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area1[:, None] + area2[None, :] - inter)


def nms_reference(boxes, scores, iou_threshold):
    """The loop a student writes: visit by score, keep, suppress what overlaps the kept box."""
    iou = box_iou_reference(boxes, boxes)
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    keep = []
    for i in scores.argsort(descending=True).tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return torch.tensor(keep, dtype=torch.int64)


def test_box_iou_accepts_the_reference(capsys):
    checks.check_box_iou(box_iou_reference)
    assert capsys.readouterr().out.strip().endswith("PASSED")


def _plus_one(a, b):
    return iou_with_mistake(a, b, plus_one=True)


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda a, b: None, "None"),
        (lambda a, b: box_iou_reference(a, b).T, "transposed"),
        (lambda a, b: box_iou_reference(a, b).tolist(), "torch.Tensor"),
        (lambda a, b: (box_iou_reference(a, b) * 1000).long(), "dtype"),
        (_plus_one, r"\+1"),
        (lambda a, b: iou_with_mistake(a, b, clamp=False), "clamp"),
        (lambda a, b: iou_with_mistake(a, b, subtract=False), "twice"),
        (lambda a, b: iou_with_mistake(a, b, by_min=True), "smaller area"),
        (lambda a, b: box_iou_reference(a, b)[:, :1].expand(len(a), len(b)), "index"),
        (lambda a, b: torch.diag(box_iou_reference(a, b)), "shape"),
    ],
)
def test_box_iou_rejects_wrong_answers(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_box_iou(wrong)


def test_box_iou_rejects_a_mistake_only_random_boxes_reveal():
    # Right on the small worked examples (all boxes start at 0 or 1), wrong when x1 > 1: uses x2 as the width.
    def width_is_x2(a, b):
        area1 = a[:, 2] * a[:, 3]
        area2 = b[:, 2] * b[:, 3]
        wh = (torch.minimum(a[:, None, 2:], b[None, :, 2:]) - torch.maximum(a[:, None, :2], b[None, :, :2])).clamp(min=0)
        inter = wh[..., 0] * wh[..., 1]
        return inter / (area1[:, None] + area2[None, :] - inter)

    with pytest.raises(AssertionError, match="index"):
        checks.check_box_iou(width_is_x2)


def test_nms_accepts_the_reference_and_the_package(capsys):
    from segedu.ops.roi import nms

    checks.check_nms(nms_reference)
    checks.check_nms(nms)
    assert capsys.readouterr().out.strip().endswith("PASSED")


def fast_nms(boxes, scores, iou_threshold):
    """Every box suppresses, kept or not (YOLACT's Fast NMS): a plausible wrong answer."""
    order = scores.argsort(descending=True)
    iou = box_iou_reference(boxes[order], boxes[order]).triu(diagonal=1)
    return order[~(iou > iou_threshold).any(0)]


def nms_in_index_order(boxes, scores, iou_threshold):
    return nms_reference(boxes, scores, iou_threshold).sort().values


def nms_greater_equal(boxes, scores, iou_threshold):
    iou = box_iou_reference(boxes, boxes)
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    keep = []
    for i in scores.argsort(descending=True).tolist():
        if not suppressed[i]:
            keep.append(i)
            suppressed |= iou[i] >= iou_threshold  # the box suppresses itself too, harmless: it is kept already
    return torch.tensor(keep, dtype=torch.int64)


def nms_without_sorting(boxes, scores, iou_threshold):
    iou = box_iou_reference(boxes, boxes)
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    keep = []
    for i in range(len(boxes)):
        if not suppressed[i]:
            keep.append(i)
            suppressed |= iou[i] > iou_threshold
    return torch.tensor(keep, dtype=torch.int64)


def nms_ascending(boxes, scores, iou_threshold):
    return nms_reference(boxes, -scores, iou_threshold)


def nms_mask(boxes, scores, iou_threshold):
    keep = torch.zeros(len(boxes), dtype=torch.bool)
    keep[nms_reference(boxes, scores, iou_threshold)] = True
    return keep


def nms_max_threshold_ignored(boxes, scores, iou_threshold):
    return nms_reference(boxes, scores, 0.5)


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda b, s, t: None, "None"),
        (fast_nms, "Fast NMS"),
        (nms_in_index_order, "decreasing score"),
        (nms_greater_equal, "not >="),
        (nms_without_sorting, "decreasing score"),
        (nms_ascending, "expected"),
        (nms_mask, "int64"),
        (lambda b, s, t: nms_reference(b, s, t).tolist(), "torch.Tensor"),
        (nms_max_threshold_ignored, "iou_threshold=0.3"),
    ],
)
def test_nms_rejects_wrong_answers(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_nms(wrong)
