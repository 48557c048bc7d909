"""Regions of interest by hand: RoIPool and RoIAlign (lesson 09); box IoU and NMS re-exported from ``boxes``.

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

The detections are then cleaned up by ``box_iou``, ``nms`` and ``batched_nms``, written in
``segedu.ops.boxes`` and importable from here too (``segedu.ops.roi.nms``).

Training the mask head needs a target for each RoI: ``mask_targets`` matches proposals to ground-truth boxes
by IoU, keeps the positive ones (IoU >= 0.5) and RoIAligns each matched object's binary mask to the
proposal, as torchvision's ``roi_heads.project_masks_on_boxes`` (Mask R-CNN, section 3: "the mask target is
the intersection between an RoI and its associated ground-truth mask"; the loss is defined on positive RoIs
only).

Conventions, those of ``torchvision.ops`` (and the same signatures): features ``[N, C, H, W]``; boxes
``(x1, y1, x2, y2)`` in input-image coordinates, mapped to the feature map by ``spatial_scale`` (1/stride);
RoIs are ``Tensor[K, 5]`` with the batch index first, or a list of ``N`` tensors ``[L, 4]`` (one per image);
pooled features ``[K, C, PH, PW]``. ``tests/test_roi.py`` checks every function against torchvision's C++
kernels to 1e-6 in float64, including sub-pixel, empty and out-of-image boxes. Everything is vectorized over
RoIs and bins (no Python loop over either), runs on any device and is differentiable with respect to the
features, as torchvision's ops are (RoIAlign also with respect to the boxes, almost everywhere).

Numerics: box coordinates are handled in float32 at least (float64 for float64 features), also for
float16 / bfloat16 features and under ``torch.autocast``: float16 has 11 significant bits, so near pixel 700
it can only say 700 or 700.5. Boxes must be finite: torchvision's kernels turn NaN or infinite coordinates
into undefined integer casts (garbage, or a crash), so these functions raise a ``ValueError`` instead.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import Tensor

from segedu import validate
from segedu.ops.boxes import batched_nms, box_iou, nms

__all__ = ["roi_pool", "roi_align", "match_proposals", "mask_targets", "box_iou", "nms", "batched_nms"]


# --------------------------------------------------------------------------- argument checks


def _check_features(input) -> None:
    validate.tensor(input, "input", 4, dtype="floating", layout="feature map [N, C, H, W]")


def _as_rois(boxes, input: Tensor) -> Tensor:
    """Boxes in torchvision's two formats -> ``[K, 5]`` rows ``(batch index, x1, y1, x2, y2)``.

    ``Tensor[K, 5]`` is taken as is; a list of ``N`` tensors ``[L_i, 4]`` gets batch index ``i`` prepended
    (``torchvision.ops._utils.convert_boxes_to_roi_format``). Batch indices must name an image of ``input``;
    coordinates must be finite. The result is in ``input``'s dtype if that is float32 or float64, else in
    float32: float16 / bfloat16 features (autocast) must not round the box coordinates.
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
    rois = rois.to(input.dtype if input.dtype in (torch.float32, torch.float64) else torch.float32)
    finite = torch.isfinite(rois).all(dim=1)
    if not bool(finite.all()):
        rows = (~finite).nonzero().squeeze(1).tolist()
        raise ValueError(f"boxes must hold finite coordinates, got NaN or inf in row(s) {rows[:5]}"
                         + (f" and {len(rows) - 5} more" if len(rows) > 5 else ""))
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
    coords = rois.dtype  # float32 at least: float16 cannot tell cell 700 from 700.5

    start_x, start_y, end_x, end_y = _round_half_away(rois[:, 1:] * scale).long().unbind(1)
    # Malformed boxes (x2 < x1) become one cell, as in torchvision.
    roi_w = (end_x - start_x + 1).clamp(min=1).to(coords)
    roi_h = (end_y - start_y + 1).clamp(min=1).to(coords)

    def bins(start, size, pooled, length):
        """Cell range [lo, hi) of every bin along one axis, clipped to the map: long [K, P] each."""
        p = torch.arange(pooled, device=device, dtype=coords)
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
    # Clamp before converting to integers, so that no coordinate, however far out, overflows an index.
    t = t.clamp(0, length - 1)
    low = t.floor()
    high = (low + 1).clamp(max=length - 1)  # the last cell has no right neighbour: use it alone (frac = 0)
    frac = t - low
    keep = inside.to(t.dtype)
    return low.long(), high.long(), (1 - frac) * keep, frac * keep


def _axis_weights(start: Tensor, bin_size: Tensor, grid: Tensor, pooled: int, length: int) -> Tensor:
    """RoIAlign along one axis as a matrix: ``[K, P, length]``, row ``p`` = the average over bin ``p``'s
    ``grid`` samples of the bilinear weights each sample puts on the cells ``0 .. length - 1``.

    ``start``, ``bin_size``, ``grid`` are ``[K]`` (``grid`` holds whole numbers as floats, of any size).
    Sample ``i`` of bin ``p`` sits at ``start + p * bin + (i + 0.5) * bin / grid``. Only samples in
    ``[-1, length]`` read anything, and with adaptive sampling consecutive samples are 0.5 to 1 cell apart,
    so each bin visits a window of at most about ``2 * length + 5`` samples, however large the box.
    Boxes are grouped by their window size rounded up to a power of two, so that a huge box does not pad
    every other box's samples to its window.
    """
    k, dtype, device = start.shape[0], start.dtype, start.device
    origin = start[:, None] + torch.arange(pooled, device=device, dtype=dtype) * bin_size[:, None]  # [K, P]
    divisor = grid.clamp(min=1)  # an axis with no samples (grid 0) has an empty window and weighs 0
    with torch.no_grad():  # which samples to visit: integer positions, no gradient
        spacing = bin_size / divisor
        ahead = spacing > 0  # empty or inverted boxes (aligned=True) have no direction: visit all samples
        reach = torch.where(ahead, torch.floor((length + 1) / spacing) + 4, grid)
        count = torch.minimum(grid, reach)  # [K] samples per bin to visit
        first = torch.where(ahead[:, None], torch.floor((-1 - origin) / spacing[:, None] - 0.5) - 1, 0)
        first = torch.minimum(first.clamp(min=0), (grid - count)[:, None])  # the window stays in [0, grid)
        # Group the boxes by their window rounded up to a power of two: a few groups, each padded < 2x.
        groups = torch.where(count > 0, torch.exp2(torch.ceil(torch.log2(count.clamp(min=1)))), 0).long()
    weights = start.new_zeros(k, pooled, length)
    for size in groups.unique().tolist():
        if size == 0:
            continue
        box = (groups == size).nonzero().squeeze(1)
        j = torch.arange(size, device=device, dtype=dtype)
        i = first[box, :, None] + j  # [k, P, size] sample indices
        # Written in the reference kernels' order of operations, so float64 results agree to rounding.
        t = origin[box, :, None] + (i + 0.5) * bin_size[box, None, None] / divisor[box, None, None]
        low, high, w_low, w_high = _interpolation_axis(t, length)
        used = (j < count[box, None, None]).to(dtype)  # the window's padding weighs 0
        axis = start.new_zeros(len(box), pooled, length)
        weights[box] = axis.scatter_add(2, low, w_low * used).scatter_add(2, high, w_high * used)
    return weights / divisor[:, None, None]


def _full_precision(device: torch.device):
    """A context with autocast off on ``device`` (autocast would run the products in float16/bfloat16)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


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
        boxes: ``Tensor[K, 5]`` (batch index, x1, y1, x2, y2) or a list of ``N`` tensors ``[L, 4]``; finite.
        output_size: ``PH`` (square) or ``(PH, PW)``.
        spatial_scale: feature cells per input pixel (1 / stride).
        sampling_ratio: samples per bin along each axis; ``<= 0`` = adaptive.
        aligned: shift by half a cell (Detectron2; use ``True`` for new code).

    Returns:
        ``[K, C, PH, PW]`` in ``input``'s dtype, differentiable with respect to ``input`` (and the boxes).

    Vectorized over RoIs, bins and samples. The output is linear in the features and bilinear interpolation
    is separable, so bin ``(p, q)`` of box ``k`` is ``Wy[k, p] @ F @ Wx[k, q]``: ``Wy [K, PH, H]`` holds the
    averaged interpolation weights of each bin's sample rows on the feature rows, ``Wx [K, PW, W]`` those of
    its sample columns. Two matrix products per image do the rest, so memory does not grow with the number
    of samples (a 10^6-pixel box has 142858 per bin and axis at P = 7).

    Numerics: coordinates, weights and products are float32 at least (float64 for float64 input), with
    autocast switched off inside, and the result is cast back to ``input``'s dtype, as torchvision's
    autocast wrapper does. In float16 coordinates near y = 700 are 0.5 apart, in bfloat16 4 apart. Boxes with
    NaN or infinite coordinates are refused (``ValueError``): torchvision's kernels read them as garbage.
    """
    _check_features(input)
    ph, pw = validate.pair(output_size, "output_size", 1)
    scale = validate.positive_number(spatial_scale, "spatial_scale")
    sampling_ratio = validate.integer(sampling_ratio, "sampling_ratio")
    aligned = validate.flag(aligned, "aligned")
    rois = _as_rois(boxes, input)  # float32 or float64
    n, c, height, width = input.shape
    k = rois.shape[0]
    if k == 0:
        return input.new_zeros(0, c, ph, pw)

    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (rois[:, i] * scale - offset for i in range(1, 5))
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:  # the original Mask R-CNN forces malformed or tiny boxes to one cell
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    if not bool(torch.isfinite(torch.stack([x1, y1, roi_w, roi_h])).all()):
        raise ValueError(f"boxes * spatial_scale must have finite corners and sizes in {rois.dtype}, got a box "
                         "beyond that range")
    bin_w, bin_h = roi_w / pw, roi_h / ph
    if sampling_ratio > 0:
        grid_h = grid_w = torch.full_like(roi_h, sampling_ratio)
    else:  # adaptive: about one sample per feature cell; an empty (or inverted) box gets none
        grid_h, grid_w = torch.ceil(roi_h / ph).clamp(min=0), torch.ceil(roi_w / pw).clamp(min=0)

    with _full_precision(input.device):
        wy = _axis_weights(y1, bin_h, grid_h, ph, height)  # [K, PH, H]
        wx = _axis_weights(x1, bin_w, grid_w, pw, width)  # [K, PW, W]
        features = input.to(rois.dtype)
        out = features.new_zeros(k, c, ph, pw)
        batch = rois[:, 0].long()
        for image in batch.unique().tolist():  # a loop over the images, not over the RoIs
            box = (batch == image).nonzero().squeeze(1)
            rows = torch.einsum("kph,chw->kcpw", wy[box], features[image])  # blend feature rows (y) ...
            out[box] = torch.einsum("kcpw,kqw->kcpq", rows, wx[box])  # ... then columns (x)
    return out.to(input.dtype)


# --------------------------------------------------------------------------- mask targets


def match_proposals(proposals: Tensor, gt_boxes: Tensor, iou_threshold: float = 0.5) -> tuple[Tensor, Tensor]:
    """Each proposal's ground-truth object and whether it is positive, as torchvision's ``Matcher`` with
    ``fg_iou_thresh = bg_iou_thresh = 0.5`` (Mask R-CNN's rule: "an RoI is positive if it has IoU with a
    ground-truth box of at least 0.5 and negative otherwise").

    Args:
        proposals: ``[P, 4]`` (x1, y1, x2, y2); gt_boxes: ``[G, 4]``; iou_threshold: positive at IoU >= it.

    Returns:
        ``(matched, positive)``: int64 ``[P]``, the index of the object of highest IoU with each proposal
        (0 when there is no object), and bool ``[P]``, IoU >= ``iou_threshold`` (all False without objects).
    """
    iou_threshold = validate.probability(iou_threshold, "iou_threshold")
    iou = box_iou(gt_boxes, proposals)  # [G, P]; validates both
    if gt_boxes.shape[0] == 0:
        none = torch.zeros(proposals.shape[0], dtype=torch.int64, device=proposals.device)
        return none, none.bool()
    best, matched = iou.max(dim=0)  # ties: the first object, as torchvision's Matcher
    return matched, best >= iou_threshold


def mask_targets(proposals: Tensor, gt_boxes: Tensor, gt_masks: Tensor, size: int = 28,
                 iou_threshold: float = 0.5) -> tuple[Tensor, Tensor]:
    """Mask R-CNN's mask targets: for every **positive** proposal, its object's mask cropped to the proposal.

    1. Match each proposal to the ground-truth box of highest IoU (``match_proposals``); keep the proposals
       with IoU >= ``iou_threshold`` (the loss ignores the others: a proposal that misses its object would
       teach the head to draw half objects).
    2. RoIAlign the matched binary mask with the proposal's box to ``size x size`` (``roi_align`` at
       ``spatial_scale=1``, ``sampling_ratio=-1``, ``aligned=False``, exactly as torchvision's
       ``project_masks_on_boxes``). The values stay soft (fractions of a pixel covered near the edges);
       torchvision trains its binary cross entropy on them (Detectron2 instead thresholds them at 0.5).

    Args:
        proposals: ``[P, 4]`` float (x1, y1, x2, y2), in the masks' pixel coordinates.
        gt_boxes: ``[G, 4]`` the objects' boxes; gt_masks: ``[G, H, W]`` their binary masks (any dtype).
        size: the side ``M`` of the targets (28 in Mask R-CNN).
        iou_threshold: the positive rule.

    Returns:
        ``(targets, positive)``: float ``[K, M, M]`` in [0, 1] and int64 ``[K]``, the indices of the ``K``
        positive proposals in increasing order (``targets[i]`` belongs to ``proposals[positive[i]]``).
    """
    _check_boxes_float(proposals, "proposals")
    validate.tensor(gt_masks, "gt_masks", 3, layout="[G, H, W] binary masks")
    size = validate.positive_int(size, "size")
    if gt_masks.shape[0] != gt_boxes.shape[0]:
        raise ValueError(f"gt_masks must hold one mask per box: [G, H, W] with G = {gt_boxes.shape[0]}, got "
                         f"{tuple(gt_masks.shape)}")
    matched, positive = match_proposals(proposals, gt_boxes, iou_threshold)
    keep = torch.nonzero(positive).flatten()
    if keep.numel() == 0:
        return proposals.new_zeros(0, size, size), keep
    rois = torch.cat([matched[keep, None].to(proposals.dtype), proposals[keep]], dim=1)  # (mask index, box)
    masks = gt_masks[:, None].to(device=proposals.device, dtype=proposals.dtype)  # [G, 1, H, W]: G "images"
    return roi_align(masks, rois, size, 1.0)[:, 0], keep


def _check_boxes_float(boxes, name: str) -> None:
    validate.tensor(boxes, name, 2, dtype="floating", layout="[P, 4] (x1, y1, x2, y2)")
    if boxes.shape[1] != 4:
        raise ValueError(f"{name} must be [P, 4] (x1, y1, x2, y2), got shape {tuple(boxes.shape)}")
