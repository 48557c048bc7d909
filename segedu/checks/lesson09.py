"""Lesson 09 · Mask R-CNN: the exercise checks.

``check_box_iou``: the IoU of every pair of boxes, compared with ``segedu.ops.roi.box_iou``; ``check_nms``: greedy
non-maximum suppression, compared with ``segedu.ops.roi.nms`` (both equal to their ``torchvision.ops`` namesakes).
"""

from __future__ import annotations

from typing import Callable

import torch

from segedu.checks.common import agrees, compare, expect_tensor, passed, returned

__all__ = ["check_box_iou", "check_nms"]


def check_box_iou(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Lesson 09: ``fn(boxes1 [N, 4], boxes2 [M, 4])`` -> float ``[N, M]``, the IoU of every pair of boxes
    ``(x1, y1, x2, y2)`` (continuous coordinates: a box [0, 0, 2, 2] has area 4). Compared with
    ``segedu.ops.roi.box_iou`` (equal to ``torchvision.ops.box_iou``)."""
    from segedu.ops.roi import box_iou

    name = "box_iou"
    # Worked examples: overlap 1 of union 7; contained (1/16); disjoint; touching along an edge; identical.
    boxes1 = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 1.0, 1.0]])
    boxes2 = torch.tensor([[1.0, 1.0, 3.0, 3.0], [1.0, 1.0, 2.0, 2.0], [2.0, 2.0, 3.0, 3.0], [1.0, 0.0, 2.0, 1.0],
                           [0.0, 0.0, 2.0, 2.0]])
    want = box_iou(boxes1, boxes2)
    got = fn(boxes1.clone(), boxes2.clone())
    if isinstance(got, torch.Tensor) and tuple(got.shape) == (5, 3):
        raise AssertionError(f"{name} returned shape (5, 3): rows must follow boxes1 (N = 3) and columns boxes2 "
                             "(M = 5), i.e. [N, M]; you have it transposed.")
    got = expect_tensor(got, name, (3, 5), "one IoU per pair: rows boxes1, columns boxes2")
    if not got.is_floating_point():
        raise AssertionError(f"{name} returned dtype {got.dtype}: IoU is a fraction, return a float tensor.")
    mistakes = {
        "you count a box [0, 0, 2, 2] as 3 x 3 pixels (the '+1' convention of old Pascal code): here coordinates "
        "are continuous, the area is (x2 - x1) * (y2 - y1)": iou_with_mistake(boxes1, boxes2, plus_one=True),
        "disjoint boxes get a positive 'intersection': clamp the overlap width and height at 0 before "
        "multiplying (two negative sides make a positive product)": iou_with_mistake(boxes1, boxes2, clamp=False),
        "the union counts the overlap twice: union = area1 + area2 - intersection": iou_with_mistake(
            boxes1, boxes2, subtract=False),
        "you divide by the smaller area, not by the union": iou_with_mistake(boxes1, boxes2, by_min=True),
    }
    for hint, wrong in mistakes.items():
        if agrees(got, wrong, atol=1e-6) and not agrees(got, want, atol=1e-6):
            raise AssertionError(f"{name}, the worked examples: {hint}.")
    compare(got, want, f"{name}, the worked examples (row 0: [0, 0, 2, 2] vs [1, 1, 3, 3] has IoU 1/7)",
            atol=1e-6, hint="Intersection: max of the top-left corners, min of the bottom-right corners, width and "
            "height clamped at 0. Union: area1 + area2 - intersection.")
    gen = torch.Generator().manual_seed(9)
    cases = 1
    for n, m in ((7, 4), (1, 9), (12, 12)):
        xy = torch.rand(n + m, 2, generator=gen) * 40
        boxes = torch.cat([xy, xy + 1 + torch.rand(n + m, 2, generator=gen) * 20], 1)
        a, b = boxes[:n], boxes[n:]
        got = expect_tensor(fn(a.clone(), b.clone()), name, (n, m), "one IoU per pair")
        compare(got, box_iou(a, b), f"{name}, random boxes, N={n}, M={m}", atol=1e-6,
                hint="Compare with the worked examples; broadcast boxes1[:, None] against boxes2[None, :].")
        cases += 1
    passed(name, cases)


def iou_with_mistake(a: torch.Tensor, b: torch.Tensor, plus_one=False, clamp=True, subtract=True, by_min=False):
    """Box IoU with one classic mistake switched on (to name it in check_box_iou's message)."""
    extra = 1.0 if plus_one else 0.0
    area_a = (a[:, 2] - a[:, 0] + extra) * (a[:, 3] - a[:, 1] + extra)
    area_b = (b[:, 2] - b[:, 0] + extra) * (b[:, 3] - b[:, 1] + extra)
    wh = torch.minimum(a[:, None, 2:], b[None, :, 2:]) - torch.maximum(a[:, None, :2], b[None, :, :2]) + extra
    if clamp:
        wh = wh.clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    if by_min:
        return inter / torch.minimum(area_a[:, None], area_b[None, :])
    return inter / (area_a[:, None] + area_b[None, :] - (inter if subtract else 0))


def check_nms(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> None:
    """Lesson 09: ``fn(boxes [N, 4], scores [N], iou_threshold)`` -> int64 indices of the boxes greedy NMS keeps,
    by decreasing score: visit boxes from the best score down, keep a box unless a box kept before it overlaps it
    with IoU > ``iou_threshold``. Compared with ``segedu.ops.roi.nms`` (equal to ``torchvision.ops.nms``)."""
    from segedu.ops.roi import nms

    name = "nms"

    def run(boxes, scores, threshold, case):
        got = fn(boxes.clone(), scores.clone(), threshold)
        returned(got, name)
        if not isinstance(got, torch.Tensor):
            raise AssertionError(f"{name} must return a torch.Tensor of indices (int64), got {type(got).__name__}")
        if got.is_floating_point() or got.dtype == torch.bool or got.dim() != 1:
            raise AssertionError(f"{name}, {case}: return a 1-D tensor of int64 box indices (not a mask, not the "
                                 f"boxes), got dtype {got.dtype} and shape {tuple(got.shape)}")
        return got.cpu().tolist()

    # 1. A chain: A overlaps B, B overlaps C, A and C do not. B is suppressed by A, so it cannot suppress C.
    chain = torch.tensor([[0.0, 0, 10, 10], [3.0, 0, 13, 10], [6.0, 0, 16, 10]])
    got = run(chain, torch.tensor([0.9, 0.8, 0.7]), 0.5, "a chain of three boxes")
    if got == [0]:
        raise AssertionError(f"{name}, a chain of three boxes (A overlaps B, B overlaps C, A and C do not): you keep "
                             "only A. B was suppressed by A, so B must not suppress C - only KEPT boxes suppress "
                             "(dropping C is 'Fast NMS').")
    if got != [0, 2]:
        raise AssertionError(f"{name}, a chain of three boxes: you keep {got}, expected [0, 2].")
    # 2. Order: the best box first, whatever its position in the input.
    apart = torch.tensor([[0.0, 0, 4, 4], [10.0, 10, 14, 14], [20.0, 0, 24, 4]])
    got = run(apart, torch.tensor([0.7, 0.9, 0.8]), 0.5, "three separate boxes")
    if sorted(got) == [0, 1, 2] and got != [1, 2, 0]:
        raise AssertionError(f"{name}, three separate boxes with scores [0.7, 0.9, 0.8]: you return {got}; return "
                             "the kept indices by decreasing score: [1, 2, 0].")
    if got != [1, 2, 0]:
        raise AssertionError(f"{name}, three separate boxes: nothing overlaps, so all are kept; you return {got}, "
                             "expected [1, 2, 0].")
    # 3. The threshold is strict: IoU exactly 0.5 at threshold 0.5 is not suppressed.
    half = torch.tensor([[0.0, 0, 2, 1], [0.0, 0, 1, 1]])
    got = run(half, torch.tensor([0.9, 0.8]), 0.5, "IoU exactly at the threshold")
    if got == [0]:
        raise AssertionError(f"{name}: two boxes with IoU exactly 0.5 and iou_threshold=0.5 must both be kept: "
                             "suppress only when IoU > iou_threshold (not >=).")
    if got != [0, 1]:
        raise AssertionError(f"{name}, IoU exactly at the threshold: you keep {got}, expected [0, 1].")
    # 4. Nothing to do.
    if run(torch.zeros(0, 4), torch.zeros(0), 0.5, "no boxes") != []:
        raise AssertionError(f"{name}: with no boxes, return an empty tensor.")
    # 5. Random clusters against the reference.
    gen = torch.Generator().manual_seed(4)
    cases = 4
    for n, threshold in ((20, 0.3), (40, 0.5), (60, 0.7)):
        centres = torch.rand(4, 2, generator=gen) * 60  # a few clusters, so boxes overlap a lot
        xy = centres[torch.randint(0, 4, (n,), generator=gen)] + torch.randn(n, 2, generator=gen) * 4
        boxes = torch.cat([xy, xy + 8 + torch.rand(n, 2, generator=gen) * 12], 1)
        scores = torch.rand(n, generator=gen)
        got, want = run(boxes, scores, threshold, f"{n} random boxes"), nms(boxes, scores, threshold).tolist()
        if got != want:
            missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
            raise AssertionError(
                f"{name}, {n} random boxes at iou_threshold={threshold}: you keep {len(got)} boxes, expected "
                f"{len(want)}" + (f"; you drop {missing}" if missing else "") + (f"; you keep {extra} wrongly" if extra else "")
                + ("; same boxes, different order: sort by decreasing score" if not missing and not extra else "")
                + ". Check the order of visits (scores.argsort(descending=True)) and that only kept boxes suppress."
            )
        cases += 1
    passed(name, cases)
