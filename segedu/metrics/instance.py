"""COCO mask AP of an instance segmentation (lesson 09).

COCO's instance-segmentation metric (Lin et al., "Microsoft COCO: Common Objects in Context", ECCV 2014),
written to give exactly what pycocotools' ``COCOeval(gt, dt, "segm")`` gives for area "all" and 100
detections (tests/test_mask_ap.py compares them on random predictions). Detectron2 and torchvision report it.
"""

from __future__ import annotations

import numpy as np
import torch

from segedu import validate

__all__ = ["COCO_IOU_THRESHOLDS", "COCO_RECALL_THRESHOLDS", "mask_iou", "mask_ap"]


# The exact thresholds pycocotools builds (np.linspace: 0.7000000000000001 and all): an IoU that equals a
# threshold must fall on the same side of it as in pycocotools.
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
COCO_RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)


def mask_iou(masks1: torch.Tensor, masks2: torch.Tensor) -> torch.Tensor:
    """IoU of every pair of binary masks: bool ``[N, H, W]`` x ``[M, H, W]`` -> float64 ``[N, M]``.

    Intersections are one matrix product of the flattened masks; two empty masks score 0 (as pycocotools).
    """
    validate.tensor(masks1, "masks1", 3, layout="of binary masks [N, H, W]")
    validate.tensor(masks2, "masks2", 3, layout="of binary masks [N, H, W]")
    if masks1.shape[1:] != masks2.shape[1:]:
        raise ValueError(f"masks1 and masks2 must have the same H, W, got {tuple(masks1.shape)} and {tuple(masks2.shape)}")
    a = masks1.flatten(1).to(torch.float64)
    b = masks2.flatten(1).to(torch.float64).to(a.device)
    inter = a @ b.T  # exact: sums of 0/1 in float64
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))


def _check_instances(items, name: str, keys: tuple[str, ...]) -> None:
    if not isinstance(items, (list, tuple)):
        raise TypeError(f"{name} must be a list of dicts (one per image), got {type(items).__name__}")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise TypeError(f"{name}[{i}] must be a dict with keys {list(keys)}, got {type(item).__name__}")
        if any(k not in item for k in keys):
            raise ValueError(f"{name}[{i}] must be a dict with keys {list(keys)}, got {sorted(item)}")


def _match_image(ious: np.ndarray) -> np.ndarray:
    """COCO's greedy matching in one image and class, at every IoU threshold at once.

    ``ious`` float64 ``[D, G]``: detections sorted by decreasing score, ground truths in order. Each detection
    in turn takes the unmatched ground truth of highest IoU, if that IoU is >= the threshold (ties: the last
    one, as pycocotools). Returns bool ``[T, D]``: detection d is a true positive at threshold t. The loop
    over detections is the definition (a detection may only take what better-scored ones left), so it stays;
    the thresholds are vectorized.
    """
    thresholds = np.minimum(COCO_IOU_THRESHOLDS, 1 - 1e-10)[:, None]  # [T, 1]
    n_det, n_gt = ious.shape
    taken = np.zeros((len(thresholds), n_gt), dtype=bool)
    hit = np.zeros((len(thresholds), n_det), dtype=bool)
    rows = np.arange(len(thresholds))
    for d in range(n_det):
        candidate = ~taken & (ious[d][None, :] >= thresholds)  # [T, G]
        if not candidate.any():
            continue
        score = np.where(candidate, ious[d][None, :], -1.0)
        best = n_gt - 1 - score[:, ::-1].argmax(1)  # last maximum, as pycocotools' "<" comparison
        found = candidate.any(1)
        hit[found, d] = True
        taken[rows[found], best[found]] = True
    return hit


def mask_ap(predictions, targets, mask_threshold: float = 0.5, max_detections: int = 100) -> dict:
    """COCO mask AP: average precision of instance masks over IoU thresholds 0.50:0.05:0.95.

    For every class and IoU threshold: sort all detections of the class (over all images) by score; a
    detection is a true positive if it matches a ground-truth mask of its class in its image (greedy, by
    score, each ground truth matched once, mask IoU >= threshold); precision at 101 recall points
    0, 0.01, .., 1 after making precision non-increasing (the "interpolated" curve); AP = their mean.
    The result averages over thresholds and over the classes that have ground truth.

    Args:
        predictions: one dict per image as torchvision's Mask R-CNN returns them: ``masks`` ``[N, 1, H, W]``
            (or ``[N, H, W]``) probabilities, ``labels`` int ``[N]``, ``scores`` ``[N]``.
        targets: one dict per image: ``masks`` ``[M, H, W]`` (uint8 or bool), ``labels`` int ``[M]``.
        mask_threshold: a predicted pixel is in the mask when its probability is ``> mask_threshold``
            (torchvision's COCO evaluation).
        max_detections: per image and class, the highest-scoring ones (COCO: 100).

    Returns:
        ``{"AP", "AP50", "AP75"}`` floats (pycocotools' first three numbers; NaN where pycocotools prints -1,
        i.e. no ground truth at all), ``"AP_per_iou"`` (threshold -> AP), ``"AP_per_class"`` (label -> AP),
        ``"precision"`` float64 ``[10, 101, K]`` (interpolated precision per threshold, recall point and
        class) and ``"classes"`` (the K labels with ground truth). Crowd regions and the small/medium/large
        breakdown of COCO are not used here.
    """
    _check_instances(predictions, "predictions", ("masks", "labels", "scores"))
    _check_instances(targets, "targets", ("masks", "labels"))
    if len(predictions) != len(targets):
        raise ValueError(f"predictions and targets must list the same images, got {len(predictions)} and {len(targets)}")
    if validate.probability(mask_threshold, "mask_threshold") == 1:  # no probability is > 1: empty masks
        raise ValueError(f"mask_threshold must be a probability in [0, 1), got {mask_threshold!r}")
    max_detections = validate.positive_int(max_detections, "max_detections")

    # Per class: a list over images of (scores [D], hits [T, D]) and the ground-truth count.
    scores_of: dict[int, list[np.ndarray]] = {}
    hits_of: dict[int, list[np.ndarray]] = {}
    n_gt: dict[int, int] = {}
    for i, (pred, target) in enumerate(zip(predictions, targets)):
        masks = pred["masks"].detach()
        if masks.dim() == 4 and masks.shape[1] == 1:
            masks = masks[:, 0]
        gt_masks = target["masks"]
        if masks.dim() != 3 or gt_masks.dim() != 3 or masks.shape[1:] != gt_masks.shape[1:]:
            raise ValueError(
                f"image {i}: predictions masks must be [N, 1, H, W] and targets masks [M, H, W] of the same "
                f"size, got {tuple(pred['masks'].shape)} and {tuple(gt_masks.shape)}"
            )
        labels = pred["labels"].detach().cpu().numpy().astype(np.int64)
        scores = pred["scores"].detach().cpu().numpy().astype(np.float64)
        gt_labels = target["labels"].detach().cpu().numpy().astype(np.int64)
        if not (len(labels) == len(scores) == masks.shape[0]) or len(gt_labels) != gt_masks.shape[0]:
            raise ValueError(
                f"image {i}: one label and score per mask expected, got {masks.shape[0]} predicted masks, "
                f"{len(labels)} labels, {len(scores)} scores; {gt_masks.shape[0]} target masks, {len(gt_labels)} labels"
            )
        ious = mask_iou((masks > mask_threshold).cpu(), gt_masks.bool().cpu()).numpy()  # [N, M]
        for c in np.union1d(labels, gt_labels).tolist():
            det = np.flatnonzero(labels == c)
            det = det[np.argsort(-scores[det], kind="stable")][:max_detections]  # pycocotools: mergesort
            gt = np.flatnonzero(gt_labels == c)
            n_gt[c] = n_gt.get(c, 0) + len(gt)
            scores_of.setdefault(c, []).append(scores[det])
            hits_of.setdefault(c, []).append(_match_image(ious[np.ix_(det, gt)]))

    classes = sorted(c for c, n in n_gt.items() if n > 0)  # pycocotools leaves classes without ground truth out
    num_t, num_r = len(COCO_IOU_THRESHOLDS), len(COCO_RECALL_THRESHOLDS)
    precision = np.zeros((num_t, num_r, len(classes)))
    for k, c in enumerate(classes):
        scores = np.concatenate(scores_of[c])
        order = np.argsort(-scores, kind="stable")  # over all images, in image order for ties
        hits = np.concatenate(hits_of[c], axis=1)[:, order]  # [T, D]
        if hits.shape[1] == 0:
            continue  # ground truth but no detection: precision 0 everywhere
        tp = np.cumsum(hits, axis=1, dtype=np.float64)
        fp = np.cumsum(~hits, axis=1, dtype=np.float64)
        recall = tp / n_gt[c]
        prec = tp / (tp + fp + np.spacing(1))
        prec = np.maximum.accumulate(prec[:, ::-1], axis=1)[:, ::-1]  # the non-increasing envelope
        for t in range(num_t):
            at = np.searchsorted(recall[t], COCO_RECALL_THRESHOLDS, side="left")  # first detection reaching r
            reached = at < hits.shape[1]
            precision[t, reached, k] = prec[t, at[reached]]  # recall never reached: precision 0

    def mean(x):
        return float(x.mean()) if x.size else float("nan")

    return {
        "AP": mean(precision),
        "AP50": mean(precision[0]),
        "AP75": mean(precision[5]),
        "AP_per_iou": {round(float(t), 2): mean(precision[j]) for j, t in enumerate(COCO_IOU_THRESHOLDS)},
        "AP_per_class": {c: mean(precision[:, :, k]) for k, c in enumerate(classes)},
        "precision": precision,
        "classes": classes,
    }
