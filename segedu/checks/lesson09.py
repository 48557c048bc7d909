"""Lesson 09 · Mask R-CNN: the exercise checks.

``check_box_iou``: the IoU of every pair of boxes, compared with ``segedu.ops.roi.box_iou``; ``check_encode_boxes``:
the R-CNN box encoding (Ren et al. 2015, eq. 2), compared with ``segedu.ops.boxes.encode_boxes`` (equal to
torchvision's ``BoxCoder.encode_single``); ``check_nms``: greedy non-maximum suppression, compared with
``segedu.ops.roi.nms`` (equal to ``torchvision.ops.nms``); ``check_mask_targets``: Mask R-CNN's mask targets for
the positive RoIs, compared with ``segedu.ops.roi.mask_targets`` (equal to torchvision's
``project_masks_on_boxes`` on the positive proposals).
"""

from __future__ import annotations

from typing import Callable

import torch

from segedu.checks.common import agrees, compare, expect_tensor, passed, returned

__all__ = ["check_box_iou", "check_encode_boxes", "check_nms", "check_mask_targets"]


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


def encoding_with_mistake(reference: torch.Tensor, proposals: torch.Tensor, weights, swapped=False,
                          by_reference=False, corners=False, no_log=False, inverted=False, no_weights=False):
    """The box encoding with one classic mistake switched on (to name it in check_encode_boxes's message)."""
    if swapped:
        reference, proposals = proposals, reference
    wx, wy, ww, wh = (1.0, 1.0, 1.0, 1.0) if no_weights else weights
    gw, gh = reference[:, 2] - reference[:, 0], reference[:, 3] - reference[:, 1]
    aw, ah = proposals[:, 2] - proposals[:, 0], proposals[:, 3] - proposals[:, 1]
    if corners:
        gx, gy, ax, ay = reference[:, 0], reference[:, 1], proposals[:, 0], proposals[:, 1]
    else:
        gx, gy = reference[:, 0] + 0.5 * gw, reference[:, 1] + 0.5 * gh
        ax, ay = proposals[:, 0] + 0.5 * aw, proposals[:, 1] + 0.5 * ah
    sx, sy = (gw, gh) if by_reference else (aw, ah)
    rw, rh = (aw / gw, ah / gh) if inverted else (gw / aw, gh / ah)
    dw, dh = (rw - 1, rh - 1) if no_log else (torch.log(rw), torch.log(rh))
    return torch.stack([wx * (gx - ax) / sx, wy * (gy - ay) / sy, ww * dw, wh * dh], dim=1)


def check_encode_boxes(fn: Callable) -> None:
    """Lesson 09: ``fn(reference [N, 4], proposals [N, 4], weights)`` -> ``[N, 4]`` deltas ``(dx, dy, dw, dh)``
    that move each proposal onto its reference box: ``dx = wx * (x_g - x_a) / w_a``, ``dw = ww * log(w_g / w_a)``
    (centres and sizes; ``a`` the proposal, ``g`` the reference), the same for y and h. Compared with
    ``segedu.ops.boxes.encode_boxes`` (equal to torchvision's ``BoxCoder(weights).encode_single``)."""
    from segedu.ops.boxes import encode_boxes

    name = "encode_boxes"
    mistakes = {
        "you encode the reference relative to the proposal the wrong way round: the first argument is the box "
        "to reach (ground truth), the second the anchor or proposal the deltas start from": dict(swapped=True),
        "the centre shift is divided by the reference's size: divide by the proposal's width and height, the "
        "box the regressor sees": dict(by_reference=True),
        "you shift the top-left corners, not the centres: x = x1 + 0.5 * w": dict(corners=True),
        "dw must be the LOG of the size ratio (w_g / w_a), not the ratio minus 1": dict(no_log=True),
        "the size ratio is upside down: dw = log(w_g / w_a), reference over proposal": dict(inverted=True),
        "the weights are missing: multiply (dx, dy, dw, dh) by (wx, wy, ww, wh)": dict(no_weights=True),
    }
    # The worked example: an anchor of 10 x 20 centred at (5, 10), the object 20 x 20 centred at (12, 14).
    cases = [(torch.tensor([[2.0, 4.0, 22.0, 24.0]]), torch.tensor([[0.0, 0.0, 10.0, 20.0]]), (1.0, 1.0, 1.0, 1.0),
              "the worked example (anchor [0, 0, 10, 20], object [2, 4, 22, 24]: (0.7, 0.2, log 2, 0))")]
    gen = torch.Generator().manual_seed(9)
    for n, weights in ((6, (1.0, 1.0, 1.0, 1.0)), (9, (10.0, 10.0, 5.0, 5.0)), (5, (2.0, 3.0, 4.0, 0.5))):
        xy = torch.rand(2 * n, 2, generator=gen) * 50
        boxes = torch.cat([xy, xy + 2 + torch.rand(2 * n, 2, generator=gen) * 30], 1)
        cases.append((boxes[:n], boxes[n:], weights, f"{n} random boxes, weights {weights}"))
    for reference, proposals, weights, case in cases:
        want = encode_boxes(reference, proposals, weights)
        got = fn(reference.clone(), proposals.clone(), weights)
        n = reference.shape[0]
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (4, n) and n != 4:
            raise AssertionError(f"{name}, {case}: you return shape (4, {n}); return one row (dx, dy, dw, dh) per "
                                 f"box, [N, 4] = [{n}, 4] (stack along dim=1).")
        got = expect_tensor(got, name, (n, 4), "one row (dx, dy, dw, dh) per box")
        if not agrees(got, want, atol=1e-5, rtol=1e-4):
            for hint, flags in mistakes.items():
                if agrees(got, encoding_with_mistake(reference, proposals, weights, **flags), atol=1e-5, rtol=1e-4):
                    raise AssertionError(f"{name}, {case}: {hint}.")
        compare(got, want, f"{name}, {case}", atol=1e-5, rtol=1e-4,
                hint="Columns are (dx, dy, dw, dh): centre shifts in units of the proposal's width / height, "
                "log size ratios, each times its weight.")
    passed(name, len(cases))


def mask_targets_with_mistake(proposals, gt_boxes, gt_masks, size, crop_with_gt=False, aligned=False,
                              sampling_ratio=-1, binary=False, strict=False, all_rois=False, mask_by_proposal=False):
    """Mask targets with one classic mistake switched on (to name it in check_mask_targets's message)."""
    from segedu.ops.roi import box_iou, roi_align

    best, matched = box_iou(gt_boxes, proposals).max(dim=0)
    positive = best > 0.5 if strict else best >= 0.5
    keep = torch.arange(len(proposals)) if all_rois else torch.nonzero(positive).flatten()
    index = keep if mask_by_proposal else matched[keep]
    boxes = gt_boxes[matched[keep]] if crop_with_gt else proposals[keep]
    masks = gt_masks[index.clamp(max=len(gt_masks) - 1)][:, None].float()
    rois = torch.cat([torch.arange(len(keep), dtype=torch.float32)[:, None], boxes.float()], dim=1)
    targets = roi_align(masks, rois, size, 1.0, sampling_ratio, aligned)[:, 0]
    return (targets >= 0.5).float() if binary else targets, keep


def _instance_case(gen: torch.Generator, objects: int, side: int, jitter: float, count: int):
    """Random disks and squares on a ``side``-pixel image and ``count`` jittered proposals per object."""
    ys, xs = torch.meshgrid(torch.arange(side) + 0.5, torch.arange(side) + 0.5, indexing="ij")
    masks, boxes = [], []
    for k in range(objects):
        r = 3 + torch.rand(1, generator=gen).item() * side / 5
        cx, cy = (r + torch.rand(2, generator=gen) * (side - 2 * r)).tolist()
        mask = ((xs - cx) ** 2 + (ys - cy) ** 2 <= r * r) if k % 2 else ((xs - cx).abs() <= r) & ((ys - cy).abs() <= r)
        rows, cols = torch.nonzero(mask.any(1)).flatten(), torch.nonzero(mask.any(0)).flatten()
        masks.append(mask.to(torch.uint8))
        boxes.append(torch.tensor([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=torch.float32))
    gt_boxes, gt_masks = torch.stack(boxes), torch.stack(masks)
    size = (gt_boxes[:, 2:] - gt_boxes[:, :2]).repeat(count, 2)
    proposals = gt_boxes.repeat(count, 1) + torch.randn(count * objects, 4, generator=gen) * jitter * size
    return proposals, gt_boxes, gt_masks


def check_mask_targets(fn: Callable) -> None:
    """Lesson 09: ``fn(proposals [P, 4], gt_boxes [G, 4], gt_masks [G, H, W], size)`` -> ``(targets [K, size,
    size] float, positive [K] int64)``: match each proposal to the object of highest box IoU, keep the proposals
    with IoU >= 0.5 (indices in increasing order), and RoIAlign each kept proposal's matched mask to
    ``size x size`` (``roi_align(masks, rois, size, 1.0)``: default sampling, ``aligned=False``, soft values), as
    torchvision's ``project_masks_on_boxes``. Compared with ``segedu.ops.roi.mask_targets``."""
    from segedu.ops.roi import mask_targets

    name = "mask_targets"
    mistakes = {
        "the crop uses the object's own box: crop the object's mask with the PROPOSAL's box (the head sees the "
        "proposal's features, so the target must show what lies inside the proposal)": dict(crop_with_gt=True),
        "aligned=True: torchvision's project_masks_on_boxes uses roi_align's default aligned=False":
            dict(aligned=True),
        "a fixed sampling_ratio: use roi_align's default (sampling_ratio=-1, adaptive), as torchvision":
            dict(sampling_ratio=2),
        "the targets are thresholded: keep RoIAlign's soft values (torchvision trains on them)": dict(binary=True),
        "each proposal takes the mask with ITS OWN index: use the index of the matched object (the argmax of the "
        "IoU over the objects) as the RoI's batch index": dict(mask_by_proposal=True),
    }
    gen = torch.Generator().manual_seed(11)
    # The worked example: two objects; proposals with IoU 1, exactly 0.5, about 0.3, and one that overlaps
    # object 0 a little but object 1 best.
    side = 24
    gt_masks = torch.zeros(2, side, side, dtype=torch.uint8)
    gt_masks[0, 2:12, 2:12] = 1
    gt_masks[1, 10:22, 8:22] = 1
    gt_masks[1, 14:18, 12:18] = 0  # a hole: the crop must come from the mask, not the box
    gt_boxes = torch.tensor([[2.0, 2, 12, 12], [8.0, 10, 22, 22]])
    proposals = torch.tensor([[2.0, 2, 12, 12], [2.0, 2, 22, 12], [0.0, 0, 6, 6], [9.0, 9, 21, 23],
                              [8.0, 10, 22, 22]])
    cases = [(proposals, gt_boxes, gt_masks, 6, "the worked example (proposal 1 has IoU exactly 0.5 with object 0,"
              " proposal 2 about 0.3)")]
    for objects, side, jitter, count, size in ((3, 40, 0.15, 4, 14), (5, 64, 0.25, 5, 28), (1, 32, 0.1, 3, 7)):
        p, b, m = _instance_case(gen, objects, side, jitter, count)
        cases.append((p, b, m, size, f"{objects} random objects, {len(p)} proposals, size {size}"))
    cases.append((torch.tensor([[0.0, 0, 8, 8], [4.0, 4, 12, 12]]), torch.zeros(0, 4), torch.zeros(0, 16, 16,
                  dtype=torch.uint8), 5, "an image without objects (G = 0: no positive RoI)"))
    for proposals, gt_boxes, gt_masks, size, case in cases:
        want, want_keep = mask_targets(proposals, gt_boxes, gt_masks, size)
        try:
            got = fn(proposals.clone(), gt_boxes.clone(), gt_masks.clone(), size)
        except (RuntimeError, IndexError) as error:
            if len(gt_boxes):
                raise
            raise AssertionError(f"{name}, {case}: your function raises {type(error).__name__} ({error}). With no "
                                 f"objects nothing is positive: return torch.zeros(0, {size}, {size}) and an empty "
                                 "int64 tensor (test len(gt_boxes) == 0 first: a max over 0 objects fails).") from None
        got = returned(got, name)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise AssertionError(f"{name} must return a pair (targets, positive), got {type(got).__name__}"
                                 + (f" of length {len(got)}" if isinstance(got, (tuple, list)) else ""))
        targets, keep = got
        if not isinstance(keep, torch.Tensor) or keep.dtype == torch.bool or keep.is_floating_point():
            what = f"dtype {keep.dtype}" if isinstance(keep, torch.Tensor) else type(keep).__name__
            raise AssertionError(f"{name}, {case}: positive must be an int64 tensor of proposal indices (e.g. "
                                 f"torch.nonzero(iou >= 0.5).flatten()), got {what}")
        if keep.tolist() != want_keep.tolist():
            got_set, want_set = set(keep.tolist()), set(want_keep.tolist())
            if got_set == want_set:
                hint = "the right proposals in another order: return the indices in increasing order"
            elif want_set - got_set and (want_set - got_set) == set(mask_targets_with_mistake(
                    proposals, gt_boxes, gt_masks, size)[1].tolist()) - set(mask_targets_with_mistake(
                    proposals, gt_boxes, gt_masks, size, strict=True)[1].tolist()):
                hint = "a proposal with IoU exactly 0.5 is positive: IoU >= 0.5, not > 0.5"
            elif got_set > want_set:
                hint = f"you keep proposals {sorted(got_set - want_set)}, whose best IoU is below 0.5"
            else:
                hint = f"you drop proposals {sorted(want_set - got_set)}, whose best IoU is >= 0.5"
            raise AssertionError(f"{name}, {case}: positive is {keep.tolist()}, expected {want_keep.tolist()}: {hint}.")
        targets = expect_tensor(targets, name, tuple(want.shape), f"one {size} x {size} target per positive proposal")
        if not agrees(targets, want, atol=1e-5) and len(gt_boxes):
            for hint, flags in mistakes.items():
                wrong, _ = mask_targets_with_mistake(proposals, gt_boxes, gt_masks, size, **flags)
                if agrees(targets, wrong, atol=1e-5):
                    raise AssertionError(f"{name}, {case}: {hint}.")
        compare(targets, want, f"{name}, {case}", atol=1e-5,
                hint="RoIs are rows (index of the matched mask, x1, y1, x2, y2) of the positive proposals; "
                "roi.roi_align(gt_masks[:, None].float(), rois, size, 1.0)[:, 0].")
    passed(name, len(cases))
