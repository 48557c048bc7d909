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


# --------------------------------------------------------------------------- the box encoding


def encode_reference(reference, proposals, weights):
    """What a student writes: centres and sizes, shifts in units of the proposal, log size ratios."""
    wx, wy, ww, wh = weights
    aw, ah = proposals[:, 2] - proposals[:, 0], proposals[:, 3] - proposals[:, 1]
    gw, gh = reference[:, 2] - reference[:, 0], reference[:, 3] - reference[:, 1]
    ax, ay = proposals[:, 0] + 0.5 * aw, proposals[:, 1] + 0.5 * ah
    gx, gy = reference[:, 0] + 0.5 * gw, reference[:, 1] + 0.5 * gh
    return torch.stack([wx * (gx - ax) / aw, wy * (gy - ay) / ah, ww * torch.log(gw / aw), wh * torch.log(gh / ah)], 1)


def test_encode_boxes_accepts_the_reference_and_the_package(capsys):
    from segedu.ops.boxes import encode_boxes

    checks.check_encode_boxes(encode_reference)
    checks.check_encode_boxes(encode_boxes)
    assert capsys.readouterr().out.strip().endswith("PASSED")


def _encoding(**mistake):
    from segedu.checks.lesson09 import encoding_with_mistake

    return lambda r, p, w: encoding_with_mistake(r, p, w, **mistake)


def _weights_divided(r, p, w):
    return encode_reference(r, p, tuple(1 / x for x in w))


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda r, p, w: None, "None"),
        (lambda r, p, w: encode_reference(r, p, w).T, r"shape \(4, "),
        (lambda r, p, w: encode_reference(r, p, w)[:, :2], "shape"),
        (lambda r, p, w: encode_reference(r, p, w).tolist(), "torch.Tensor"),
        (_encoding(swapped=True), "wrong way round"),
        (_encoding(by_reference=True), "proposal's width"),
        (_encoding(corners=True), "centres"),
        (_encoding(no_log=True), "LOG"),
        (_encoding(inverted=True), "upside down"),
        (_encoding(no_weights=True), "weights are missing"),
        (_weights_divided, "index"),
    ],
)
def test_encode_boxes_rejects_wrong_answers(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_encode_boxes(wrong)


# --------------------------------------------------------------------------- the mask targets


def mask_targets_reference(proposals, gt_boxes, gt_masks, size):
    """What a student writes: match by IoU, keep IoU >= 0.5, RoIAlign the matched masks to the proposals."""
    from segedu.ops import roi

    if len(gt_boxes) == 0:
        return torch.zeros(0, size, size), torch.zeros(0, dtype=torch.int64)
    best, matched = roi.box_iou(gt_boxes, proposals).max(dim=0)
    keep = torch.nonzero(best >= 0.5).flatten()
    rois = torch.cat([matched[keep, None].float(), proposals[keep]], dim=1)
    return roi.roi_align(gt_masks[:, None].float(), rois, size, 1.0)[:, 0], keep


def test_mask_targets_accepts_the_reference_and_the_package(capsys):
    from segedu.ops.roi import mask_targets

    checks.check_mask_targets(mask_targets_reference)
    checks.check_mask_targets(mask_targets)
    assert capsys.readouterr().out.strip().endswith("PASSED")


def _targets(**mistake):
    """A student's version with one mistake (an image without objects handled, so the mistake is what fails)."""
    from segedu.checks.lesson09 import mask_targets_with_mistake

    def wrong(p, b, m, s):
        if len(b) == 0:
            return torch.zeros(0, s, s), torch.zeros(0, dtype=torch.int64)
        return mask_targets_with_mistake(p, b, m, s, **mistake)

    return wrong


def _no_empty_case(p, b, m, s):
    from segedu.checks.lesson09 import mask_targets_with_mistake

    return mask_targets_with_mistake(p, b, m, s)


def _bool_keep(p, b, m, s):
    targets, keep = mask_targets_reference(p, b, m, s)
    mask = torch.zeros(len(p), dtype=torch.bool)
    mask[keep] = True
    return targets, mask


def _reversed_order(p, b, m, s):
    targets, keep = mask_targets_reference(p, b, m, s)
    return targets.flip(0), keep.flip(0)


def _nearest_resize(p, b, m, s):
    """Crop the mask with whole pixels and resize by nearest neighbour (no RoIAlign)."""
    from segedu.ops import roi

    targets, keep = mask_targets_reference(p, b, m, s)
    matched = roi.box_iou(b, p).max(dim=0).indices if len(b) else None
    out = []
    for k in keep.tolist():
        x1, y1, x2, y2 = p[k].round().long().clamp(0, m.shape[-1]).tolist()
        crop = m[matched[k], y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)].float()
        crop = torch.nn.functional.pad(crop, (0, max(0, 1 - crop.shape[1]), 0, max(0, 1 - crop.shape[0])))
        out.append(torch.nn.functional.interpolate(crop[None, None], size=(s, s), mode="nearest")[0, 0])
    return (torch.stack(out) if out else targets), keep


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda p, b, m, s: None, "None"),
        (lambda p, b, m, s: mask_targets_reference(p, b, m, s)[0], "pair"),
        (lambda p, b, m, s: (mask_targets_reference(p, b, m, s)[0][:, None], mask_targets_reference(p, b, m, s)[1]),
         "shape"),
        (_bool_keep, "int64"),
        (_reversed_order, "increasing order"),
        (_targets(strict=True), r"IoU >= 0.5, not > 0.5"),
        (_targets(all_rois=True), "below 0.5"),
        (_targets(crop_with_gt=True), "PROPOSAL's box"),
        (_targets(aligned=True), "aligned=False"),
        (_targets(sampling_ratio=2), "sampling_ratio=-1"),
        (_targets(binary=True), "soft values"),
        (_targets(mask_by_proposal=True), "matched object"),
        (_nearest_resize, "index"),
        (_no_empty_case, "without objects"),
    ],
)
def test_mask_targets_rejects_wrong_answers(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_mask_targets(wrong)
