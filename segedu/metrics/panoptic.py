"""Panoptic quality: PQ = SQ x RQ (Kirillov, He, Girshick, Rother & Dollar, "Panoptic Segmentation", CVPR 2019).

A panoptic segmentation gives every pixel a class and, for *thing* classes, an instance; *stuff* classes
(background, sky, road) are one region per class. Here a panoptic map holds ``class * label_divisor +
instance`` per pixel (``segedu.data.tasks``, COCO's encoding); a *segment* is the set of pixels of one id in
one image. Stuff segments are whole classes: the instance part of a stuff pixel is not looked at.

For every class, ground-truth and predicted segments of that class are matched when their IoU is **> 0.5**.
The match is then unique (two segments cannot both overlap a third by more than half), so no assignment
problem has to be solved. Over all images, per class c:

* ``TP`` = matched pairs, ``FP`` = unmatched predicted segments, ``FN`` = unmatched ground-truth segments;
* ``SQ_c = sum of the IoUs of the matches / TP`` (segmentation quality: how good the matched masks are);
* ``RQ_c = TP / (TP + FP / 2 + FN / 2)`` (recognition quality: an F1 score of the segments);
* ``PQ_c = sum of IoUs / (TP + FP / 2 + FN / 2) = SQ_c x RQ_c``.

PQ, SQ and RQ are the means of the per-class values over the classes that appear (TP + FP + FN > 0), and the
same over the thing classes and the stuff classes alone. (The mean of products is not the product of means:
``PQ = SQ x RQ`` holds per class, not for the averages.)

Void pixels follow the COCO panoptic evaluation (``panopticapi/evaluation.py``): ground-truth pixels of class
``void`` (255, VOID in VOC) belong to no segment; a predicted segment's pixels on void are left out of its
union with a ground-truth segment, and an unmatched predicted segment that lies more than half on void is not
counted as a false positive. Predicted pixels of class ``void`` are unlabelled: they form no segment. COCO's
crowd regions are not used here.

Vectorised over the whole batch: every (ground-truth segment, predicted segment) overlap is counted in one
``torch.unique`` over pixel pairs; Python loops run over classes only when the result dict is built.
"""

from __future__ import annotations

import math

import torch

from segedu import validate

__all__ = ["panoptic_quality"]


def _classes(values, name: str) -> list[int]:
    if isinstance(values, int) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a list of class ids, got {type(values).__name__}")
    return [validate.integer(v, f"{name}[{i}]", minimum=0) for i, v in enumerate(values)]


def _segments(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(unique keys, index of each pixel's key, pixel count per key)``."""
    unique, index, counts = torch.unique(keys, return_inverse=True, return_counts=True)
    return unique, index, counts


def panoptic_quality(
    pred: torch.Tensor,
    target: torch.Tensor,
    things,
    stuff,
    label_divisor: int = 1000,
    void: int = 255,
) -> dict:
    """PQ, SQ and RQ of panoptic maps, per class and averaged (see the module text).

    Args:
        pred, target: int64 ``[B, H, W]`` (or ``[H, W]``) panoptic ids ``class * label_divisor + instance``.
        things: the thing classes (segments are instances).
        stuff: the stuff classes (one segment per class and image). ``things`` and ``stuff`` are disjoint, and
            every class in ``pred`` and ``target`` other than ``void`` is one of them.
        label_divisor: the encoding's divisor (``segedu.data.tasks.LABEL_DIVISOR``).
        void: the class of void (ground truth) and unlabelled (prediction) pixels.

    Returns:
        ``{"PQ", "SQ", "RQ"}`` over all counted classes, ``{"PQ_things", ...}`` and ``{"PQ_stuff", ...}`` over
        each kind (NaN when no class of that kind appears), ``"per_class"``: class -> ``{"PQ", "SQ", "RQ",
        "TP", "FP", "FN", "IoU"}`` (``IoU``: the sum over the matches), ``"classes"``: the counted classes.
    """
    validate.tensor(pred, "pred", (2, 3), dtype="integer", layout="[B, H, W] of panoptic ids")
    validate.tensor(target, "target", (2, 3), dtype="integer", layout="[B, H, W] of panoptic ids")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    things, stuff = _classes(things, "things"), _classes(stuff, "stuff")
    if set(things) & set(stuff):
        raise ValueError(f"things and stuff must be disjoint, both hold {sorted(set(things) & set(stuff))}")
    label_divisor = validate.positive_int(label_divisor, "label_divisor")
    void = validate.integer(void, "void", minimum=0)
    if void in things or void in stuff:
        raise ValueError(f"void ({void}) must not be a thing or stuff class")
    known = torch.tensor(sorted(things + stuff) + [void], dtype=torch.int64, device=target.device)
    is_stuff = torch.tensor(sorted(stuff), dtype=torch.int64, device=target.device)
    if pred.dim() == 2:
        pred, target = pred[None], target[None]
    pred, target = pred.long().to(target.device), target.long()

    def encode(panoptic: torch.Tensor, name: str):
        """Per pixel: a key (image, segment id) or -1 for void/unlabelled; checks the classes."""
        if bool((panoptic < 0).any()):
            raise ValueError(f"{name} holds negative ids (min {int(panoptic.min())})")
        cls = panoptic // label_divisor
        unknown = ~torch.isin(cls, known)
        if bool(unknown.any()):
            raise ValueError(f"{name} holds classes that are neither things, stuff nor void ({void}): "
                             f"{sorted(set(cls[unknown].unique().tolist()))}")
        segment = torch.where(torch.isin(cls, is_stuff), cls * label_divisor, panoptic)  # stuff: one per class
        span = int(segment.max()) + 1
        image = torch.arange(panoptic.shape[0], device=panoptic.device).view(-1, 1, 1)
        return torch.where(cls == void, -1, image * span + segment).flatten(), span

    t_keys, t_span = encode(target, "target")
    p_keys, p_span = encode(pred, "pred")
    t_valid, p_valid = t_keys >= 0, p_keys >= 0
    gt, gt_index, gt_area = _segments(t_keys[t_valid])
    pr, pr_index, pr_area = _segments(p_keys[p_valid])
    gt_class = (gt % t_span) // label_divisor
    pr_class = (pr % p_span) // label_divisor
    # Every pixel's (gt segment, pred segment) pair; index len(gt) = void, len(pr) = unlabelled.
    g = torch.full_like(t_keys, len(gt))
    g[t_valid] = gt_index
    p = torch.full_like(p_keys, len(pr))
    p[p_valid] = pr_index
    pairs, inter = torch.unique(g * (len(pr) + 1) + p, return_counts=True)
    pg, pp = pairs // (len(pr) + 1), pairs % (len(pr) + 1)
    on_void = torch.zeros(len(pr) + 1, dtype=torch.int64, device=pairs.device)
    on_void.index_add_(0, pp[pg == len(gt)], inter[pg == len(gt)])  # each predicted segment's pixels on void
    on_void = on_void[:-1]

    real = (pg < len(gt)) & (pp < len(pr))
    pg, pp, inter = pg[real], pp[real], inter[real]
    same = gt_class[pg] == pr_class[pp]
    union = gt_area[pg] + pr_area[pp] - inter - on_void[pp]
    iou = inter.double() / union.double()
    match = same & (iou > 0.5)
    matched_gt = torch.zeros(len(gt), dtype=torch.bool, device=pairs.device)
    matched_gt[pg[match]] = True
    matched_pr = torch.zeros(len(pr), dtype=torch.bool, device=pairs.device)
    matched_pr[pp[match]] = True
    ignored_pr = on_void.double() / pr_area.double() > 0.5  # mostly on void: not a false positive

    size = int(known.max()) + 1
    tp = torch.bincount(gt_class[pg[match]], minlength=size)
    iou_sum = torch.zeros(size, dtype=torch.float64, device=pairs.device).index_add_(0, gt_class[pg[match]], iou[match])
    fn = torch.bincount(gt_class[~matched_gt], minlength=size)
    fp = torch.bincount(pr_class[~matched_pr & ~ignored_pr], minlength=size)

    per_class = {}
    for c in sorted(things + stuff):
        TP, FP, FN, IOU = int(tp[c]), int(fp[c]), int(fn[c]), float(iou_sum[c])
        if TP + FP + FN == 0:
            continue  # the class appears nowhere: left out of the means, as panopticapi does
        denominator = TP + FP / 2 + FN / 2
        per_class[c] = {"PQ": IOU / denominator, "SQ": IOU / TP if TP else 0.0, "RQ": TP / denominator,
                        "TP": TP, "FP": FP, "FN": FN, "IoU": IOU}

    def mean(key: str, classes) -> float:
        values = [per_class[c][key] for c in classes if c in per_class]
        return sum(values) / len(values) if values else math.nan

    result = {}
    for suffix, classes in (("", things + stuff), ("_things", things), ("_stuff", stuff)):
        for key in ("PQ", "SQ", "RQ"):
            result[key + suffix] = mean(key, classes)
    result["per_class"] = per_class
    result["classes"] = sorted(per_class)
    return result
