"""Boxes by hand (lesson 09): the box encoding, box IoU and non-maximum suppression, as torchvision.

A detector regresses boxes relative to reference boxes, and proposes many overlapping boxes for one object:

* ``encode_boxes`` / ``decode_boxes`` - the R-CNN box parametrisation (Girshick et al., CVPR 2014, appendix C;
  Girshick, "Fast R-CNN", ICCV 2015; Ren et al., "Faster R-CNN", NeurIPS 2015, eq. 2): a box relative to a
  reference box (an anchor, a proposal) as the shift of its centre in units of the reference's size and the
  log of its size ratio, ``(dx, dy, dw, dh)``, times per-coordinate weights. As
  ``torchvision.models.detection._utils.BoxCoder`` (its ``encode_single`` / ``decode_single``).
* ``box_iou`` - intersection over union of every pair of boxes.
* ``nms`` - greedy non-maximum suppression: visit boxes from the highest score down and keep a box unless a
  box kept before it overlaps it by more than ``iou_threshold``. ``batched_nms`` does it per class.

Boxes are ``(x1, y1, x2, y2)`` in pixels. ``segedu.ops.roi`` re-exports all three (``segedu.ops.roi.nms``
is the same function), next to the RoI crops that use the boxes.

Numerics. Areas are products of two side lengths, so they leave float16's range (largest finite value
65504) for any box larger than about 256 x 256 pixels, and bfloat16 keeps only 8 bits of mantissa. So the
arithmetic runs in float32 at least, whatever the boxes' dtype, as torchvision does: half-precision boxes
keep the same boxes as the same values in float32. Non-finite coordinates follow IEEE arithmetic, as in
torchvision: a NaN IoU is never above a threshold, so a box with a NaN coordinate never suppresses another
and is never suppressed.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from segedu import validate

__all__ = ["encode_boxes", "decode_boxes", "BBOX_XFORM_CLIP", "box_iou", "nms", "batched_nms"]

# nms works through its N x N matrices in blocks of rows of about this many elements (4 MiB in float32),
# so that one block's temporaries stay small next to the one N x N boolean matrix it keeps.
BLOCK_ELEMENTS = 1 << 20

# decode_boxes clamps dw and dh at log(1000 / 16), as torchvision and Detectron: no box grows more than 62.5x
# its reference in one step, and exp() never overflows on an untrained regressor's wild output.
BBOX_XFORM_CLIP = math.log(1000.0 / 16)


def _check_boxes(boxes, name: str) -> None:
    validate.tensor(boxes, name, layout="[N, 4] (x1, y1, x2, y2)")
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must be [N, 4] (x1, y1, x2, y2), got shape {tuple(boxes.shape)}")


def _at_least_float32(boxes: Tensor) -> Tensor:
    """float32 or float64 boxes as they are; float16, bfloat16 and integer boxes as float32.

    float16 and bfloat16 values are exactly representable in float32, and so are their differences, so the
    upcast changes no coordinate: it only gives the areas room (float16 overflows above 65504, just under
    256 x 256) and precision (bfloat16 has 8 significant bits: 2 or 3 decimal digits).
    """
    return boxes if boxes.dtype in (torch.float32, torch.float64) else boxes.float()


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection over union of every pair of boxes, as ``torchvision.ops.box_iou``.

    Args:
        boxes1: ``[N, 4]``, boxes2: ``[M, 4]``, both ``(x1, y1, x2, y2)`` with ``x1 <= x2``, ``y1 <= y2``.

    Returns:
        ``[N, M]``: ``|A n B| / (|A| + |B| - |A n B|)``; NaN for two empty boxes (0 / 0). Computed and
        returned in float32 for float16, bfloat16 and integer boxes (as torchvision: a 300 x 300 box has
        area 90000 > 65504, float16's largest value), in float64 for float64 boxes.
    """
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    a, b = _at_least_float32(boxes1), _at_least_float32(boxes2)
    area1 = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area2 = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    # Width and height of the overlap, one [N, M] matrix each; no overlap -> zero width or height.
    width = (torch.minimum(a[:, None, 2], b[None, :, 2]) - torch.maximum(a[:, None, 0], b[None, :, 0])).clamp(min=0)
    height = (torch.minimum(a[:, None, 3], b[None, :, 3]) - torch.maximum(a[:, None, 1], b[None, :, 1])).clamp(min=0)
    inter = width * height
    return inter / (area1[:, None] + area2[None, :] - inter)


def _check_per_box(values, name: str, boxes: Tensor, what: str) -> None:
    """``scores`` or ``idxs``: a tensor ``[N]`` on the boxes' device."""
    validate.tensor(values, name, layout=f"[N] ({what})")
    if values.shape != (boxes.shape[0],):
        got = tuple(values.shape)
        raise ValueError(f"{name} must be a tensor [N] with N = {boxes.shape[0]} ({what}), got {got}")
    if values.device != boxes.device:
        raise ValueError(f"{name} are on {values.device} but boxes on {boxes.device}")


def _blocks(n: int):
    """Slices of rows covering ``range(n)``, each ``rows x n`` about ``BLOCK_ELEMENTS`` elements."""
    rows = max(1, BLOCK_ELEMENTS // max(n, 1))
    return [slice(start, min(start + rows, n)) for start in range(0, n, rows)]


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression, as ``torchvision.ops.nms``.

    Visit the boxes from the highest score down (ties: lower index first); keep a box unless a box **kept**
    before it has IoU ``> iou_threshold`` with it.

    Args:
        boxes: ``[N, 4]`` (x1, y1, x2, y2), any float or integer dtype (the IoU is computed in float32 at
            least, so float16 boxes keep what the same values keep in float32); scores: ``[N]``;
            iou_threshold: suppress at IoU above it (1 keeps every box; 0 keeps no two overlapping boxes).

    Returns:
        int64 ``[N_kept]``: indices into ``boxes``, by decreasing score.

    How it is vectorized: greedy NMS is sequential (whether box j survives depends on which earlier boxes
    survived), but the rule is a recurrence ``keep[j] = not any(keep[i] and overlap[i, j] for i < j)``.
    Starting from "keep everything" and applying the rule to all boxes at once fixes at least one more box per
    round, so it reaches the greedy answer after as many rounds as the longest chain of suppressions (a
    handful in practice, never more than N) instead of one Python step per box. Its first round alone is
    "Fast NMS" (Bolya et al., YOLACT, ICCV 2019), which also lets already-suppressed boxes suppress others.
    Memory is one N x N boolean matrix (36 MB for 6000 boxes): the float IoU and each round's temporaries
    exist for one block of rows at a time, never as N x N float matrices.
    """
    _check_boxes(boxes, "boxes")
    _check_per_box(scores, "scores", boxes, "one per box")
    iou_threshold = validate.number(iou_threshold, "iou_threshold")
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_boxes = _at_least_float32(boxes)[order]
    n, device = order.shape[0], boxes.device
    blocks = _blocks(n)
    position = torch.arange(n, device=device)
    # overlap[i, j]: box i (higher score) would suppress box j (lower score).
    overlap = torch.empty(n, n, dtype=torch.bool, device=device)
    for rows in blocks:
        earlier = position[rows, None] < position[None, :]
        overlap[rows] = (box_iou(sorted_boxes[rows], sorted_boxes) > iou_threshold) & earlier
    keep = torch.ones(n, dtype=torch.bool, device=device)
    for _ in range(n):
        suppressed = torch.zeros_like(keep)
        for rows in blocks:  # j overlaps a kept box i: the kept rows of each block, one block at a time
            suppressed |= overlap[rows][keep[rows]].any(dim=0)
        if torch.equal(~suppressed, keep):
            break
        keep = ~suppressed
    return order[keep]


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each category (``idxs``, e.g. class labels), as ``torchvision.ops.batched_nms``: boxes of
    different categories never suppress each other. Returns int64 indices by decreasing score.

    One ``nms`` per category present (a loop over the categories, not over the boxes), as torchvision's
    ``_batched_nms_vanilla``. For small inputs torchvision instead shifts each category's boxes by
    ``category * (largest coordinate + 1)`` so that they cannot overlap and runs one ``nms``; the shift costs
    precision (in float16 the offsets pass 65504 after a few classes) and one NaN coordinate makes every
    offset NaN, which disables all suppression. Per category, the IoUs are those of the boxes themselves.
    """
    _check_boxes(boxes, "boxes")
    _check_per_box(idxs, "idxs", boxes, "one category per box")
    _check_per_box(scores, "scores", boxes, "one per box")
    iou_threshold = validate.number(iou_threshold, "iou_threshold")
    kept = [torch.empty(0, dtype=torch.int64, device=boxes.device)]
    for category in idxs.unique():
        members = (idxs == category).nonzero().squeeze(1)
        kept.append(members[nms(boxes[members], scores[members], iou_threshold)])
    keep = torch.cat(kept).sort().values  # by index, so that equal scores stay in index order
    return keep[torch.sort(scores[keep], descending=True, stable=True).indices]


# --------------------------------------------------------------------------- the box encoding


def _check_weights(weights) -> tuple[float, float, float, float]:
    if not isinstance(weights, (tuple, list)) or len(weights) != 4:
        raise TypeError(f"weights must be a tuple of 4 numbers (wx, wy, ww, wh), got {weights!r}")
    return tuple(validate.positive_number(w, f"weights[{i}]") for i, w in enumerate(weights))


def _centres(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Centre x, centre y, width, height of boxes ``[N, 4]``, each ``[N]``."""
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    return boxes[:, 0] + 0.5 * widths, boxes[:, 1] + 0.5 * heights, widths, heights


def encode_boxes(reference: Tensor, proposals: Tensor, weights=(1.0, 1.0, 1.0, 1.0)) -> Tensor:
    """The regression target that moves each proposal onto its reference box (Ren et al. 2015, eq. 2).

    With centres ``(x, y)`` and sizes ``(w, h)``, proposal ``a`` (an anchor or a proposal) and reference ``g``
    (the ground-truth box it should become)::

        dx = wx * (x_g - x_a) / w_a      dw = ww * log(w_g / w_a)
        dy = wy * (y_g - y_a) / h_a      dh = wh * log(h_g / h_a)

    Shifts in units of the proposal's size and log size ratios make the target the same for the same
    relative error at any scale, and ``log`` makes growing and shrinking by a factor symmetric. The weights
    scale the four targets to similar spreads: torchvision's RPN uses ``(1, 1, 1, 1)``, its box head
    ``(10, 10, 5, 5)`` (Detectron's choice: proposals are already close, so their deltas are small).

    Args:
        reference: ``[N, 4]`` (x1, y1, x2, y2), the boxes to reach (ground truth, matched to each proposal).
        proposals: ``[N, 4]`` (x1, y1, x2, y2) with positive widths and heights.
        weights: ``(wx, wy, ww, wh)``, positive.

    Returns:
        ``[N, 4]`` deltas ``(dx, dy, dw, dh)`` in the boxes' dtype (float32 at least), equal to
        ``BoxCoder(weights).encode_single(reference, proposals)``.
    """
    _check_boxes(reference, "reference")
    _check_boxes(proposals, "proposals")
    if reference.shape != proposals.shape:
        raise ValueError(f"reference and proposals must both be [N, 4] with the same N (one reference per "
                         f"proposal), got {tuple(reference.shape)} and {tuple(proposals.shape)}")
    wx, wy, ww, wh = _check_weights(weights)
    gx, gy, gw, gh = _centres(_at_least_float32(reference))
    ax, ay, aw, ah = _centres(_at_least_float32(proposals).to(gx.dtype))
    return torch.stack([wx * (gx - ax) / aw, wy * (gy - ay) / ah,
                        ww * torch.log(gw / aw), wh * torch.log(gh / ah)], dim=1)


def decode_boxes(deltas: Tensor, boxes: Tensor, weights=(1.0, 1.0, 1.0, 1.0), clip: float = BBOX_XFORM_CLIP) -> Tensor:
    """Apply regressed deltas to boxes: the inverse of ``encode_boxes``.

    ``x = dx / wx * w_a + x_a``, ``w = exp(min(dw / ww, clip)) * w_a`` (and the same for y, h), then back to
    corners. The clamp (``clip = log(1000 / 16)`` as torchvision) only limits how far one step can grow a
    box; below it ``decode_boxes(encode_boxes(g, a, w), a, w) == g`` up to rounding.

    Args:
        deltas: ``[N, 4 * K]`` - ``(dx, dy, dw, dh)`` for each of ``K`` classes (``K = 1`` for the RPN; the box
            head regresses one box per class).
        boxes: ``[N, 4]`` (x1, y1, x2, y2), the anchors or proposals the deltas are relative to.
        weights: ``(wx, wy, ww, wh)``, those the deltas were encoded with.
        clip: largest ``dw``, ``dh`` (after dividing by the weights).

    Returns:
        ``[N, 4 * K]`` boxes (x1, y1, x2, y2) per class, in ``deltas``' dtype, equal to
        ``BoxCoder(weights).decode_single(deltas, boxes)``.
    """
    validate.tensor(deltas, "deltas", 2, dtype="floating", layout="[N, 4 * K] (dx, dy, dw, dh per class)")
    _check_boxes(boxes, "boxes")
    if deltas.shape[0] != boxes.shape[0] or deltas.shape[1] % 4 or deltas.shape[1] == 0:
        raise ValueError(f"deltas must be [N, 4 * K] with N = {boxes.shape[0]} (one row per box), got "
                         f"{tuple(deltas.shape)}")
    wx, wy, ww, wh = _check_weights(weights)
    clip = validate.number(clip, "clip")
    x, y, w, h = (v[:, None] for v in _centres(boxes.to(deltas.dtype)))
    dx, dy = deltas[:, 0::4] / wx, deltas[:, 1::4] / wy
    dw, dh = (deltas[:, 2::4] / ww).clamp(max=clip), (deltas[:, 3::4] / wh).clamp(max=clip)
    centre_x, centre_y = dx * w + x, dy * h + y
    half_w, half_h = 0.5 * torch.exp(dw) * w, 0.5 * torch.exp(dh) * h
    return torch.stack([centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h], dim=2).flatten(1)
