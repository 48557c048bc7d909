"""Regions of interest by hand: RoIPool, RoIAlign, box IoU and non-maximum suppression (lesson 09).

A two-stage detector proposes boxes ("regions of interest", RoIs) and then crops a fixed-size feature map out
of the backbone's features for every box, so that one small head can classify, refine and segment boxes of
any size. Two ways to crop:

* ``roi_pool`` - Girshick, "Fast R-CNN", ICCV 2015. The box is *snapped* to the feature grid (``round``), cut
  into ``output_size`` bins whose edges are snapped again (``floor`` / ``ceil``), and each bin takes the max
  of the cells it covers. Two quantisations: at stride 16 a rounding of half a cell moves the crop by 8 input
  pixels - harmless for a class label, visible in a mask.
* ``roi_align`` - He, Gkioxari, Dollar & Girshick, "Mask R-CNN", ICCV 2017. No rounding anywhere: every bin
  is sampled at ``sampling_ratio x sampling_ratio`` regular points by bilinear interpolation and averaged.
  ``aligned=True`` (Detectron2's fix) shifts the box by half a cell, because the value of cell ``i`` sits at
  continuous coordinate ``i + 0.5``; the legacy ``aligned=False`` keeps Mask R-CNN's original half-pixel
  misalignment, and forces boxes smaller than one cell to be one cell.

Two ways to clean up detections:

* ``box_iou`` - intersection over union of every pair of boxes.
* ``nms`` - greedy non-maximum suppression: visit boxes from the highest score down and keep a box unless a
  box kept before it overlaps it by more than ``iou_threshold``. ``batched_nms`` does it per class.

Conventions, those of ``torchvision.ops`` (and the same signatures): features ``[N, C, H, W]``; boxes
``(x1, y1, x2, y2)`` in input-image coordinates, mapped to the feature map by ``spatial_scale`` (1/stride);
RoIs are ``Tensor[K, 5]`` with the batch index first, or a list of ``N`` tensors ``[L, 4]`` (one per image);
pooled features ``[K, C, PH, PW]``. ``tests/test_roi.py`` checks every function against torchvision's C++
kernels to 1e-6 in float64, including sub-pixel, empty and out-of-image boxes. Everything is vectorized over
RoIs and bins (no Python loop over either), runs on any device and is differentiable with respect to the
features, as torchvision's ops are (RoIAlign also with respect to the boxes, almost everywhere).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from segedu import validate

__all__ = ["roi_pool", "roi_align", "box_iou", "nms", "batched_nms"]


# --------------------------------------------------------------------------- argument checks


def _check_features(input) -> None:
    validate.tensor(input, "input", 4, dtype="floating", layout="feature map [N, C, H, W]")


def _as_rois(boxes, input: Tensor) -> Tensor:
    """Boxes in torchvision's two formats -> ``[K, 5]`` rows ``(batch index, x1, y1, x2, y2)`` in input's dtype.

    ``Tensor[K, 5]`` is taken as is; a list of ``N`` tensors ``[L_i, 4]`` gets batch index ``i`` prepended
    (``torchvision.ops._utils.convert_boxes_to_roi_format``). Batch indices must name an image of ``input``.
    """
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise ValueError(
                "boxes must be a Tensor[K, 5] (batch index, x1, y1, x2, y2) or a list of Tensor[L, 4], "
                f"got a tensor of shape {tuple(boxes.shape)}"
            )
        rois = boxes
    elif isinstance(boxes, (list, tuple)):
        for i, b in enumerate(boxes):
            validate.tensor(b, f"boxes[{i}]", layout="[L, 4] (x1, y1, x2, y2)")
            if b.dim() != 2 or b.shape[1] != 4:
                raise ValueError(f"boxes[{i}] must be a Tensor[L, 4] (x1, y1, x2, y2), got {tuple(b.shape)}")
        if not boxes:
            rois = input.new_zeros(0, 5)
        else:
            index = torch.cat([torch.full_like(b[:, :1], i) for i, b in enumerate(boxes)])
            rois = torch.cat([index, torch.cat(list(boxes))], dim=1)
    else:
        raise TypeError(f"boxes must be a Tensor[K, 5] or a list of Tensor[L, 4], got {type(boxes).__name__}")
    if not rois.is_floating_point():
        raise TypeError(f"boxes must be floating point (coordinates), got dtype {rois.dtype}")
    if rois.device != input.device:
        raise ValueError(f"boxes are on {rois.device} but input is on {input.device}")
    rois = rois.to(input.dtype)
    batch = rois[:, 0]
    if rois.shape[0] and bool(((batch < 0) | (batch >= input.shape[0]) | (batch != batch.floor())).any()):
        raise ValueError(
            f"boxes[:, 0] must be image indices in [0, {input.shape[0]}) for input of batch size "
            f"{input.shape[0]}, got values in [{float(batch.min())}, {float(batch.max())}]"
        )
    return rois


# --------------------------------------------------------------------------- RoIPool


def _round_half_away(x: Tensor) -> Tensor:
    """C's ``round``: halves go away from zero (``torch.round`` would send 2.5 to 2)."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def roi_pool(input: Tensor, boxes, output_size, spatial_scale: float = 1.0) -> Tensor:
    """RoI max pooling (Fast R-CNN, Girshick 2015), as ``torchvision.ops.roi_pool``.

    1. Snap the box to the feature grid: ``x1 = round(x1 * spatial_scale)`` (and y1, x2, y2); its size in
       cells is ``x2 - x1 + 1`` (the end cell is included), at least 1.
    2. Cut it into ``PH x PW`` bins of ``size / P`` cells; bin ``p`` covers cells
       ``[floor(p * bin), ceil((p + 1) * bin))``, shifted by the box's start and clipped to the map.
    3. Each output is the max over its bin; an empty bin (entirely outside the map) gives 0.

    Args:
        input: features ``[N, C, H, W]``.
        boxes: ``Tensor[K, 5]`` (batch index, x1, y1, x2, y2) or a list of ``N`` tensors ``[L, 4]``.
        output_size: ``PH`` (square) or ``(PH, PW)``.
        spatial_scale: feature cells per input pixel (1 / stride).

    Returns:
        ``[K, C, PH, PW]``. Differentiable with respect to ``input``: the gradient of a bin goes to its
        maximum (shared equally between exact ties, where torchvision picks the first).

    Vectorized: the max over a rectangle is a max over columns, then over rows, each a masked max over the
    whole axis. Memory is ``K * C * H * PW * W`` elements: fine for lesson-sized maps.
    """
    _check_features(input)
    ph, pw = validate.pair(output_size, "output_size", 1)
    scale = validate.positive_number(spatial_scale, "spatial_scale")
    rois = _as_rois(boxes, input)
    n, c, height, width = input.shape
    k = rois.shape[0]
    dtype, device = input.dtype, input.device

    start_x, start_y, end_x, end_y = _round_half_away(rois[:, 1:] * scale).long().unbind(1)
    # Malformed boxes (x2 < x1) become one cell, as in torchvision.
    roi_w = (end_x - start_x + 1).clamp(min=1).to(dtype)
    roi_h = (end_y - start_y + 1).clamp(min=1).to(dtype)

    def bins(start, size, pooled, length):
        """Cell range [lo, hi) of every bin along one axis, clipped to the map: long [K, P] each."""
        p = torch.arange(pooled, device=device, dtype=dtype)
        step = size[:, None] / pooled  # [K, 1] bin size in cells, fractional
        lo = torch.floor(p * step).long() + start[:, None]
        hi = torch.ceil((p + 1) * step).long() + start[:, None]
        return lo.clamp(0, length), hi.clamp(0, length)

    y_lo, y_hi = bins(start_y, roi_h, ph, height)
    x_lo, x_hi = bins(start_x, roi_w, pw, width)
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    in_row = (rows >= y_lo[..., None]) & (rows < y_hi[..., None])  # [K, PH, H]: cell h lies in bin ph
    in_col = (cols >= x_lo[..., None]) & (cols < x_hi[..., None])  # [K, PW, W]

    feats = input[rois[:, 0].long()]  # [K, C, H, W]
    lowest = torch.tensor(-math.inf, dtype=dtype, device=device)
    # Max over the columns of each column-bin: [K, C, H, PW, W] -> [K, C, H, PW] ...
    col_max = torch.where(in_col[:, None, None], feats[:, :, :, None, :], lowest).amax(-1)
    # ... then over the rows of each row-bin: [K, C, PH, H, PW] -> [K, C, PH, PW].
    out = torch.where(in_row[:, None, :, :, None], col_max[:, :, None], lowest).amax(3)
    empty = (y_hi <= y_lo)[:, :, None] | (x_hi <= x_lo)[:, None, :]  # [K, PH, PW]
    out = torch.where(empty[:, None], torch.zeros((), dtype=dtype, device=device), out)
    return out.reshape(k, c, ph, pw)


# --------------------------------------------------------------------------- RoIAlign


def _interpolation_axis(t: Tensor, length: int):
    """Bilinear interpolation along one axis: the two neighbours of every sample coordinate and their weights.

    ``t`` holds continuous coordinates where cell ``i`` has its value at ``t = i`` (Mask R-CNN's convention;
    ``aligned=True`` has already subtracted the half cell). Returns ``low, high`` (long) and ``w_low, w_high``,
    all shaped like ``t``. As in the reference kernels: a sample more than one cell outside the map is 0
    (both weights 0); one within a cell outside is clamped to the border.
    """
    inside = (t >= -1.0) & (t <= length)
    t = t.clamp(min=0)
    low = t.floor().long()  # t >= 0, so floor = C's truncation
    at_end = low >= length - 1  # the last cell has no right neighbour: use it alone
    low = torch.where(at_end, torch.full_like(low, length - 1), low)
    high = torch.where(at_end, low, low + 1)
    frac = torch.where(at_end, torch.zeros_like(t), t - low.to(t.dtype))
    keep = inside.to(t.dtype)
    return low, high, (1 - frac) * keep, frac * keep


def roi_align(
    input: Tensor,
    boxes,
    output_size,
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """RoIAlign (Mask R-CNN, He et al. 2017), as ``torchvision.ops.roi_align``.

    1. Scale the box to feature coordinates (``* spatial_scale``), with no rounding. ``aligned=True`` also
       subtracts half a cell: cell ``i`` describes the area ``[i, i + 1)``, so its value belongs at ``i + 0.5``.
       With ``aligned=False`` a box is at least 1 x 1 cell.
    2. Cut it into ``PH x PW`` equal bins and place ``G_h x G_w`` regular sample points in each bin:
       ``G = sampling_ratio`` if it is > 0, else adaptive ``ceil(box size / P)`` per box (about one sample per
       cell).
    3. Read each sample by bilinear interpolation from its four neighbouring cells (0 beyond one cell outside
       the map) and average the samples of a bin.

    Args:
        input: features ``[N, C, H, W]``.
        boxes: ``Tensor[K, 5]`` (batch index, x1, y1, x2, y2) or a list of ``N`` tensors ``[L, 4]``.
        output_size: ``PH`` (square) or ``(PH, PW)``.
        spatial_scale: feature cells per input pixel (1 / stride).
        sampling_ratio: samples per bin along each axis; ``<= 0`` = adaptive.
        aligned: shift by half a cell (Detectron2; use ``True`` for new code).

    Returns:
        ``[K, C, PH, PW]``, differentiable with respect to ``input`` (and the boxes).

    Vectorized over RoIs, bins and samples. Bilinear interpolation is separable, so the samples are first
    interpolated along y (two gathered rows per sample row) and then along x. An adaptive grid takes the
    largest ``G`` over all boxes and masks the unused samples of smaller boxes.
    """
    _check_features(input)
    ph, pw = validate.pair(output_size, "output_size", 1)
    scale = validate.positive_number(spatial_scale, "spatial_scale")
    sampling_ratio = validate.integer(sampling_ratio, "sampling_ratio")
    aligned = validate.flag(aligned, "aligned")
    rois = _as_rois(boxes, input)
    n, c, height, width = input.shape
    k = rois.shape[0]
    dtype, device = input.dtype, input.device
    if k == 0:
        return input.new_zeros(0, c, ph, pw)

    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (rois[:, i] * scale - offset for i in range(1, 5))
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:  # the original Mask R-CNN forces malformed or tiny boxes to one cell
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    bin_w, bin_h = roi_w / pw, roi_h / ph

    if sampling_ratio > 0:
        grid_h = grid_w = torch.full((k,), sampling_ratio, dtype=torch.long, device=device)
    else:  # adaptive: about one sample per feature cell; an empty (or inverted) box gets none
        grid_h = torch.ceil(roi_h / ph).clamp(min=0).long()
        grid_w = torch.ceil(roi_w / pw).clamp(min=0).long()
    g_h, g_w = max(int(grid_h.max()), 1), max(int(grid_w.max()), 1)  # one sync: the padded grid size

    def samples(start, bin_size, grid, pooled, g):
        """Sample coordinates [K, P * g] (bin-major) and a mask of the samples this box really has."""
        p = torch.arange(pooled, device=device, dtype=dtype)[None, :, None]
        i = torch.arange(g, device=device, dtype=dtype)[None, None, :]
        step = bin_size[:, None, None]
        # Written in the reference kernels' order of operations, so float64 results agree to rounding.
        t = start[:, None, None] + p * step + (i + 0.5) * step / grid.clamp(min=1)[:, None, None].to(dtype)
        used = i < grid[:, None, None]
        return t.reshape(k, pooled * g), used.expand(k, pooled, g).reshape(k, pooled * g)

    ys, used_y = samples(y1, bin_h, grid_h, ph, g_h)  # [K, PH * g_h]
    xs, used_x = samples(x1, bin_w, grid_w, pw, g_w)  # [K, PW * g_w]
    y_low, y_high, wy_low, wy_high = _interpolation_axis(ys, height)
    x_low, x_high, wx_low, wx_high = _interpolation_axis(xs, width)
    wy_low, wy_high = wy_low * used_y, wy_high * used_y  # padded samples weigh 0
    wx_low, wx_high = wx_low * used_x, wx_high * used_x

    # Along y: for every RoI and sample row, blend two whole feature rows. input[b, :, y, :] with
    # b [K, 1] and y [K, Y] indexes to [K, Y, C, W]; move C first.
    b = rois[:, 0].long()[:, None]
    rows = (input[b, :, y_low] * wy_low[..., None, None] + input[b, :, y_high] * wy_high[..., None, None])
    rows = rows.permute(0, 2, 1, 3)  # [K, C, Y, W]
    # Along x: gather two columns per sample column and blend them.
    def columns(index: Tensor) -> Tensor:  # [K, X] column indices -> [K, C, Y, X] values
        return rows.gather(3, index[:, None, None, :].expand(k, c, rows.shape[2], index.shape[1]))

    values = columns(x_low) * wx_low[:, None, None, :] + columns(x_high) * wx_high[:, None, None, :]

    count = (grid_h * grid_w).clamp(min=1).to(dtype)  # samples per bin (at least 1, as in torchvision)
    pooled = values.reshape(k, c, ph, g_h, pw, g_w).sum(dim=(3, 5))
    return pooled / count[:, None, None, None]


# --------------------------------------------------------------------------- IoU and NMS


def _check_boxes(boxes, name: str) -> None:
    validate.tensor(boxes, name, layout="[N, 4] (x1, y1, x2, y2)")
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must be [N, 4] (x1, y1, x2, y2), got shape {tuple(boxes.shape)}")


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection over union of every pair of boxes, as ``torchvision.ops.box_iou``.

    Args:
        boxes1: ``[N, 4]``, boxes2: ``[M, 4]``, both ``(x1, y1, x2, y2)`` with ``x1 <= x2``, ``y1 <= y2``.

    Returns:
        ``[N, M]``: ``|A n B| / (|A| + |B| - |A n B|)``; NaN for two empty boxes (0 / 0). Integer boxes give
        float IoU.
    """
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    if not boxes1.is_floating_point():
        boxes1 = boxes1.float()
    if not boxes2.is_floating_point():
        boxes2 = boxes2.float()
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    top_left = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])  # [N, M, 2]
    bottom_right = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)  # no overlap -> zero width or height
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area1[:, None] + area2[None, :] - inter)


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression, as ``torchvision.ops.nms``.

    Visit the boxes from the highest score down (ties: lower index first); keep a box unless a box **kept**
    before it has IoU ``> iou_threshold`` with it.

    Args:
        boxes: ``[N, 4]`` (x1, y1, x2, y2); scores: ``[N]``; iou_threshold: suppress at IoU above it
            (1 keeps every box; 0 keeps no two overlapping boxes).

    Returns:
        int64 ``[N_kept]``: indices into ``boxes``, by decreasing score.

    How it is vectorized: greedy NMS is sequential (whether box j survives depends on which earlier boxes
    survived), but the rule is a recurrence ``keep[j] = not any(keep[i] and overlap[i, j] for i < j)``.
    Starting from "keep everything" and applying the rule to all boxes at once fixes at least one more box per
    round, so it reaches the greedy answer after as many rounds as the longest chain of suppressions (a
    handful in practice, never more than N) instead of one Python step per box. Its first round alone is
    "Fast NMS" (Bolya et al., YOLACT, ICCV 2019), which also lets already-suppressed boxes suppress others.
    Memory is an N x N boolean matrix.
    """
    _check_boxes(boxes, "boxes")
    validate.tensor(scores, "scores", layout="[N] (one per box)")
    if scores.shape != (boxes.shape[0],):
        got = tuple(scores.shape)
        raise ValueError(f"scores must be a tensor [N] with N = {boxes.shape[0]} (one per box), got {got}")
    if scores.device != boxes.device:
        raise ValueError(f"scores are on {scores.device} but boxes on {boxes.device}")
    iou_threshold = validate.number(iou_threshold, "iou_threshold")
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_boxes = boxes[order]
    n = order.shape[0]
    # overlap[i, j]: box i (higher score) would suppress box j (lower score).
    earlier = torch.ones(n, n, dtype=torch.bool, device=boxes.device).triu(diagonal=1)
    overlap = (box_iou(sorted_boxes, sorted_boxes) > iou_threshold) & earlier
    keep = torch.ones(n, dtype=torch.bool, device=boxes.device)
    for _ in range(n):
        new_keep = ~(overlap & keep[:, None]).any(dim=0)
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return order[keep]


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each category (``idxs``, e.g. class labels): boxes of different categories never suppress
    each other. As ``torchvision.ops.batched_nms``, with its trick: shift each category's boxes by
    ``category * (largest coordinate + 1)`` so that boxes of different categories cannot overlap, then run
    one ``nms``. Returns int64 indices by decreasing score."""
    _check_boxes(boxes, "boxes")
    validate.tensor(idxs, "idxs", layout="[N] (one category per box)")
    if idxs.shape != (boxes.shape[0],):
        got = tuple(idxs.shape)
        raise ValueError(f"idxs must be a tensor [N] with N = {boxes.shape[0]} (one category per box), got {got}")
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    offsets = idxs.to(boxes) * (boxes.max() + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)
