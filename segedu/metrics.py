"""How good is a segmentation? Region metrics (IoU, Dice, pixel accuracy) and boundary F1.

* ``ConfusionMatrix`` accumulates a ``[C, C]`` count matrix over many batches (rows = true class,
  columns = predicted class). Every region metric is a formula on it:

  - IoU of class c = TP / (TP + FP + FN) (Jaccard index); **mIoU** is the mean over classes, the standard
    score of PASCAL VOC (Everingham et al., IJCV 2010) and Cityscapes;
  - Dice (= F1) of class c = 2 TP / (2 TP + FP + FN);
  - pixel accuracy = trace / total. It is misleading when the background dominates: predicting
    background everywhere scores high while the mIoU stays low (lesson 00).

* ``boundary_f1`` is the BF score of Csurka, Larlus & Perronnin, "What is a good evaluation measure for
  semantic segmentation?", BMVC 2013: region metrics barely move when a boundary is off by a few pixels,
  the BF score measures exactly that.

Conventions: label maps are int64 ``[B, H, W]`` (or ``[H, W]``), ``ignore_index`` (255, VOC's "void")
marks pixels that count for nothing. A prediction may also be logits ``[B, C, H, W]`` (or ``[C, H, W]``):
it is reduced with ``argmax`` over C. Everything stays on the inputs' device and is vectorized (``bincount``,
pooling, convolution): no Python loop runs over pixels.

Later lessons add mask AP (lesson 09) and the effective receptive field (lesson 08) to this module.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["ConfusionMatrix", "mean_iou", "boundary_f1", "default_tolerance"]


# --------------------------------------------------------------------------- input checks


def _as_labels(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int | None, ignore_index: int | None
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Check ``pred``/``target`` and return ``(pred_labels, target, num_classes)``, both int64 ``[B, H, W]``.

    ``pred`` is labels (an integer or bool tensor shaped like ``target``) or logits (a floating tensor with
    one more dimension, classes at dim -3). ``num_classes=None`` takes C from logits, else ``max label + 1``.
    Labels outside ``[0, num_classes)`` (other than ``ignore_index`` in ``target``) raise ``ValueError``:
    ``bincount`` would otherwise count them silently in the wrong cell.
    """
    for name, t in (("pred", pred), ("target", target)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool:
        raise ValueError(f"target must be an integer label map (int64 [B, H, W]), got dtype {target.dtype}")
    if target.dim() not in (2, 3):
        raise ValueError(f"target must be [B, H, W] or [H, W], got shape {tuple(target.shape)}")
    if pred.device != target.device:
        raise ValueError(f"pred and target must be on the same device, got {pred.device} and {target.device}")

    if pred.dtype.is_floating_point:  # logits: classes at dim -3
        if pred.dim() != target.dim() + 1 or pred.shape[-2:] != target.shape[-2:] or (
            target.dim() == 3 and pred.shape[0] != target.shape[0]
        ):
            expected = "[B, C, H, W]" if target.dim() == 3 else "[C, H, W]"
            raise ValueError(
                f"pred is floating point, so it is read as logits {expected} for target of shape "
                f"{tuple(target.shape)}; got pred of shape {tuple(pred.shape)}"
            )
        if num_classes is not None and pred.shape[-3] != num_classes:
            raise ValueError(
                f"pred (logits) has {pred.shape[-3]} channels at dim -3 but num_classes={num_classes}"
            )
        num_classes = pred.shape[-3]
        pred = pred.argmax(dim=-3)
    elif pred.dtype.is_complex:
        raise ValueError(f"pred must be labels (integer) or logits (floating point), got dtype {pred.dtype}")
    elif pred.shape != target.shape:
        raise ValueError(
            f"pred (labels) must have the shape of target {tuple(target.shape)}, got {tuple(pred.shape)}"
        )

    pred, target = pred.long(), target.long()
    if target.dim() == 2:
        pred, target = pred.unsqueeze(0), target.unsqueeze(0)
    valid = _valid(target, ignore_index)

    if num_classes is None:  # infer: one device sync, fine for a metric
        top = max(int(pred.max()) if pred.numel() else -1, int(target[valid].max()) if valid.any() else -1)
        num_classes = max(top + 1, 1)
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")

    # One sync for both range checks: a reduction to two booleans.
    bad_pred = ((pred < 0) | (pred >= num_classes)).any()
    bad_target = (((target < 0) | (target >= num_classes)) & valid).any()
    if bool(bad_pred) or bool(bad_target):
        name, t, mask = ("pred", pred, None) if bool(bad_pred) else ("target", target, valid)
        values = t[mask] if mask is not None else t
        raise ValueError(
            f"{name} has labels outside [0, {num_classes}) (num_classes={num_classes}, "
            f"ignore_index={ignore_index}): min {int(values.min())}, max {int(values.max())}"
        )
    return pred, target, num_classes


def _valid(target: torch.Tensor, ignore_index: int | None) -> torch.Tensor:
    """bool, shaped like ``target``: the pixels that count."""
    return target != ignore_index if ignore_index is not None else torch.ones_like(target, dtype=torch.bool)


def _check_ignore_index(ignore_index) -> None:
    if ignore_index is not None and (not isinstance(ignore_index, int) or isinstance(ignore_index, bool)):
        raise ValueError(f"ignore_index must be an int or None, got {ignore_index!r}")


# --------------------------------------------------------------------------- confusion matrix


class ConfusionMatrix:
    """Counts ``matrix[t, p]`` = number of pixels of true class t predicted as p, over many batches.

    Args:
        num_classes: C, the number of classes (labels ``0 .. C-1``).
        ignore_index: target label that is skipped (VOC's 255 "void"); ``None`` skips nothing. If it lies in
            ``[0, C)`` that class is skipped in the target and left out of ``miou()``, as torchmetrics does.

    ``update(pred, target)`` adds a batch: ``pred`` labels ``[B, H, W]`` or logits ``[B, C, H, W]``,
    ``target`` int64 ``[B, H, W]`` (``[H, W]`` / ``[C, H, W]`` for one image). The matrix lives on the
    device of the inputs (int64). Example::

        cm = ConfusionMatrix(3)
        for images, masks in loader:
            cm.update(model(images), masks)
        cm.miou(), cm.iou(), cm.pixel_accuracy()
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255):
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
        _check_ignore_index(ignore_index)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._matrix: torch.Tensor | None = None

    # -- accumulation

    def reset(self) -> "ConfusionMatrix":
        """Forget every count."""
        self._matrix = None
        return self

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> "ConfusionMatrix":
        """Add one batch of predictions; returns ``self`` so calls chain."""
        pred, target, c = _as_labels(pred, target, self.num_classes, self.ignore_index)
        valid = _valid(target, self.ignore_index)
        # Pixel (t, p) goes to bin t*C + p; ignored pixels go to one extra bin C*C that we drop. A torch.where
        # instead of boolean indexing keeps the shapes static (no device sync on a GPU).
        index = torch.where(valid, target * c + pred, torch.full_like(target, c * c))
        counts = torch.bincount(index.flatten(), minlength=c * c + 1)[: c * c].view(c, c)
        if self._matrix is None:
            self._matrix = counts
        else:
            self._matrix = self._matrix.to(counts.device) + counts
        return self

    @property
    def matrix(self) -> torch.Tensor:
        """int64 ``[C, C]``: rows = true class, columns = predicted class (zeros before any update)."""
        if self._matrix is None:
            return torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)
        return self._matrix

    # -- metrics

    def _counts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        m = self.matrix.double()
        tp = m.diagonal()
        return tp, m.sum(0) - tp, m.sum(1) - tp  # TP, FP (column minus TP), FN (row minus TP)

    def _evaluated(self) -> torch.Tensor:
        """bool ``[C]``: classes that occur in the target or the prediction, minus an in-range ignore_index."""
        m = self.matrix
        keep = (m.sum(0) + m.sum(1)) > 0
        if self.ignore_index is not None and 0 <= self.ignore_index < self.num_classes:
            keep[self.ignore_index] = False
        return keep

    def iou(self) -> torch.Tensor:
        """float64 ``[C]``: TP / (TP + FP + FN) per class; NaN for classes absent from both target and
        prediction (and for an in-range ``ignore_index``): there is nothing to score."""
        tp, fp, fn = self._counts()
        out = tp / (tp + fp + fn)  # 0/0 -> NaN exactly for absent classes
        return out.masked_fill(~self._evaluated(), float("nan"))

    def miou(self) -> float:
        """Mean IoU over the classes that occur in the target or the prediction.

        Absent classes are left out of the mean instead of counting as 0 or 1, exactly as
        ``torchmetrics.functional.classification.multiclass_jaccard_index(average="macro")`` (checked
        against torchmetrics 1.9 in the tests). NaN before any update.
        """
        return float(torch.nanmean(self.iou()))

    def dice(self) -> torch.Tensor:
        """float64 ``[C]``: 2 TP / (2 TP + FP + FN) per class (= F1 score); NaN where ``iou()`` is NaN.
        Per class, Dice = 2 IoU / (1 + IoU), so both rank predictions the same way."""
        tp, fp, fn = self._counts()
        out = 2 * tp / (2 * tp + fp + fn)
        return out.masked_fill(~self._evaluated(), float("nan"))

    def pixel_accuracy(self) -> float:
        """Fraction of non-ignored pixels whose class is right (trace / total); NaN before any update."""
        m = self.matrix.double()
        return float(m.trace() / m.sum())

    def __repr__(self) -> str:
        pixels = int(self.matrix.sum())
        head = f"ConfusionMatrix(num_classes={self.num_classes}, ignore_index={self.ignore_index}, pixels={pixels}"
        if pixels == 0:
            return head + ")"
        ious = ", ".join("nan" if math.isnan(v) else f"{v:.3f}" for v in self.iou().tolist())
        return f"{head}, miou={self.miou():.3f}, pixel_accuracy={self.pixel_accuracy():.3f}, iou=[{ious}])"


def mean_iou(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None = 255) -> float:
    """mIoU of one batch: ``ConfusionMatrix(num_classes, ignore_index).update(pred, target).miou()``.

    ``pred`` labels ``[B, H, W]`` or logits ``[B, C, H, W]``; ``target`` int64 ``[B, H, W]``.
    """
    return ConfusionMatrix(num_classes, ignore_index).update(pred, target).miou()


# --------------------------------------------------------------------------- boundary F1


def default_tolerance(height: int, width: int) -> int:
    """Csurka et al.'s default match distance: 0.75% of the image diagonal, rounded up, at least 1 pixel."""
    return max(1, math.ceil(0.0075 * math.hypot(height, width)))


def _boundary(masks: torch.Tensor) -> torch.Tensor:
    """bool ``[N, H, W]`` -> its inner boundary: mask pixels with a 4-neighbour (up, down, left, right)
    outside the mask. The image border is not a boundary (the pooling pads with -inf, i.e. "inside")."""
    m = masks.float().unsqueeze(1)
    # Erosion = -maxpool(-m). Two 1-D pools give the 4-neighbour cross; a 3x3 pool would also look at
    # diagonals and give a thicker (4-connected) boundary.
    eroded = torch.minimum(
        -F.max_pool2d(-m, (1, 3), stride=1, padding=(0, 1)), -F.max_pool2d(-m, (3, 1), stride=1, padding=(1, 0))
    )
    return masks & (eroded.squeeze(1) < 0.5)


def _disk(radius: float, device: torch.device) -> torch.Tensor:
    """float ``[1, 1, k, k]`` of ones where the Euclidean offset is <= radius (k = 2 floor(radius) + 1)."""
    r = int(math.floor(radius))
    d = torch.arange(-r, r + 1, device=device, dtype=torch.float32)
    return ((d[:, None] ** 2 + d[None, :] ** 2) <= radius**2 + 1e-6).float()[None, None]


def _near(boundary: torch.Tensor, radius: float) -> torch.Tensor:
    """bool ``[N, H, W]``: pixels within Euclidean distance ``radius`` of a True pixel of ``boundary``.

    A dilation with a disk, done as a convolution: the count of boundary pixels under the disk is > 0.
    The inputs are 0/1 and the sums small integers, so float32 (or TF32/bf16) is exact enough for "> 0.5".
    """
    if radius < 1:
        return boundary
    kernel = _disk(radius, boundary.device)
    with torch.autocast(boundary.device.type, enabled=False):
        hits = F.conv2d(boundary.float().unsqueeze(1), kernel, padding=kernel.shape[-1] // 2)
    return hits.squeeze(1) > 0.5


def boundary_f1(
    pred: torch.Tensor,
    target: torch.Tensor,
    tolerance: float | None = None,
    num_classes: int | None = None,
    ignore_index: int | None = 255,
    reduction: str = "mean",
) -> float | torch.Tensor:
    """Boundary F1 (BF) score of Csurka, Larlus & Perronnin (BMVC 2013).

    For every image and every class c:

    1. boundary pixels of the true mask ``target == c`` and of the predicted mask ``pred == c``: pixels of
       the mask with a 4-neighbour outside it (the image border is not a boundary);
    2. precision = fraction of predicted boundary pixels within ``tolerance`` pixels (Euclidean distance,
       a disk-shaped dilation done with ``conv2d``) of a true boundary pixel; recall = fraction of true
       boundary pixels within ``tolerance`` of a predicted one. An empty set scores 1 (nothing to miss,
       nothing wrong), so a class with no boundary in either map scores F1 = 1 and a class whose boundary
       one map lacks scores 0;
    3. F1 = 2 P R / (P + R) (0 when P + R = 0).

    An image's BF is the mean F1 over the classes **present in its target or its prediction** (any
    non-ignored pixel): hallucinated classes are penalised too. The result is the mean over images.

    Ignored pixels (``target == ignore_index``) count as "no label" in both maps: they are never boundary
    pixels, and a labelled pixel next to one is a boundary pixel. On VOC, where a 5-pixel void band
    surrounds each object, the true boundary therefore sits on the inner side of the band.

    Args:
        pred: labels ``[B, H, W]`` / ``[H, W]`` or logits ``[B, C, H, W]`` / ``[C, H, W]``.
        target: int64 ``[B, H, W]`` / ``[H, W]``.
        tolerance: match distance in pixels (>= 0); default ``default_tolerance(H, W)``: 0.75% of the
            diagonal, rounded up, at least 1 (1 px at 64x64, 2 px at 128x128, 4 px at 500x375).
        num_classes: C; default from the logits, else ``max label + 1``.
        ignore_index: target label to skip (``None``: none). If it lies in ``[0, C)`` that class is skipped.
        reduction: ``"mean"`` -> float over images (images with no labelled pixel are left out; NaN if
            none is left); ``"none"`` -> float32 ``[B]`` per image (NaN for such images).

    Vectorized over batch and classes: the work is ``[B, C, H, W]`` boolean maps, pooling and one
    convolution, on the inputs' device.
    """
    _check_ignore_index(ignore_index)
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    pred, target, c = _as_labels(pred, target, num_classes, ignore_index)
    b, h, w = target.shape
    if tolerance is None:
        tolerance = default_tolerance(h, w)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance >= 0:
        raise ValueError(f"tolerance must be a number of pixels >= 0, got {tolerance!r}")

    valid = _valid(target, ignore_index)
    classes = torch.arange(c, device=target.device).view(1, c, 1, 1)
    # One-hot masks [B, C, H, W]; the prediction is cut to the labelled region so that both maps see the
    # ignored region the same way (see the docstring).
    true_masks = (target.unsqueeze(1) == classes) & valid.unsqueeze(1)
    pred_masks = (pred.unsqueeze(1) == classes) & valid.unsqueeze(1)

    true_b = _boundary(true_masks.view(b * c, h, w))
    pred_b = _boundary(pred_masks.view(b * c, h, w))
    pred_hit = (pred_b & _near(true_b, tolerance)).view(b, c, -1).sum(-1).double()
    true_hit = (true_b & _near(pred_b, tolerance)).view(b, c, -1).sum(-1).double()
    n_pred = pred_b.view(b, c, -1).sum(-1).double()
    n_true = true_b.view(b, c, -1).sum(-1).double()

    one = torch.ones_like(n_pred)
    precision = torch.where(n_pred > 0, pred_hit / n_pred.clamp(min=1), one)
    recall = torch.where(n_true > 0, true_hit / n_true.clamp(min=1), one)
    f1 = torch.where(
        precision + recall > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12), 0 * one
    )

    present = (true_masks | pred_masks).flatten(2).any(-1)  # [B, C]
    if ignore_index is not None and 0 <= ignore_index < c:
        present[:, ignore_index] = False
    per_image = (f1 * present).sum(1) / present.sum(1)  # 0/0 -> NaN: nothing labelled in that image
    if reduction == "none":
        return per_image.float()
    return float(torch.nanmean(per_image))


# --------------------------------------------------------------------------- mask AP (lesson 09)
#
# COCO's instance-segmentation metric (Lin et al., "Microsoft COCO: Common Objects in Context", ECCV 2014),
# written to give exactly what pycocotools' ``COCOeval(gt, dt, "segm")`` gives for area "all" and 100
# detections (tests/test_mask_ap.py compares them on random predictions). Detectron2 and torchvision report it.

import numpy as np  # noqa: E402  (only the AP bookkeeping needs it; kept with its section)

__all__ += ["COCO_IOU_THRESHOLDS", "COCO_RECALL_THRESHOLDS", "mask_iou", "mask_ap"]

# The exact thresholds pycocotools builds (np.linspace: 0.7000000000000001 and all): an IoU that equals a
# threshold must fall on the same side of it as in pycocotools.
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
COCO_RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)


def mask_iou(masks1: torch.Tensor, masks2: torch.Tensor) -> torch.Tensor:
    """IoU of every pair of binary masks: bool ``[N, H, W]`` x ``[M, H, W]`` -> float64 ``[N, M]``.

    Intersections are one matrix product of the flattened masks; two empty masks score 0 (as pycocotools).
    """
    for name, m in (("masks1", masks1), ("masks2", masks2)):
        if not isinstance(m, torch.Tensor) or m.dim() != 3:
            got = tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__
            raise ValueError(f"{name} must be a tensor of binary masks [N, H, W], got {got}")
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
        if not isinstance(item, dict) or any(k not in item for k in keys):
            got = sorted(item) if isinstance(item, dict) else type(item).__name__
            raise ValueError(f"{name}[{i}] must be a dict with keys {list(keys)}, got {got}")


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
    if isinstance(mask_threshold, bool) or not isinstance(mask_threshold, (int, float)) or not 0 <= mask_threshold < 1:
        raise ValueError(f"mask_threshold must be a probability in [0, 1), got {mask_threshold!r}")
    if isinstance(max_detections, bool) or not isinstance(max_detections, int) or max_detections < 1:
        raise ValueError(f"max_detections must be an int >= 1, got {max_detections!r}")

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


# --------------------------------------------------------------------------- effective receptive field (lesson 08)

__all__ += ["effective_receptive_field", "erf_profile", "erf_extent", "erf_support", "confusion_rate"]


def _input_size(input_size) -> tuple[int, int]:
    size = (input_size, input_size) if isinstance(input_size, int) and not isinstance(input_size, bool) else input_size
    try:
        height, width = (int(s) for s in size)
        ok = all(isinstance(s, int) and not isinstance(s, bool) for s in size)
    except (TypeError, ValueError):
        ok = False
    if not ok or height < 1 or width < 1:
        raise ValueError(f"input_size must be an int or (H, W) of ints >= 1, got {input_size!r}")
    return height, width


def effective_receptive_field(model, input_size, *, inputs: torch.Tensor | None = None, samples: int = 8,
                              in_channels: int = 3, seed: int = 0) -> torch.Tensor:
    """Effective receptive field (Luo, Li, Urtasun & Zemel, "Understanding the effective receptive field in
    deep convolutional neural networks", NeurIPS 2016): how much each input pixel moves the centre output.

    A gradient of 1 is placed on every channel of the centre output pixel ``(h // 2, w // 2)`` and
    back-propagated to the input; the result is ``|d out_centre / d x|`` summed over the input channels and
    averaged over the images: float32 ``[H, W]``, zero exactly outside the theoretical receptive field. The
    absolute value keeps the signs of different channels and images from cancelling: the map measures how
    strongly a pixel influences the centre, not in which direction.

    Args:
        model: a module (or function) mapping ``[B, in_channels, H, W]`` to ``[B, C, h, w]`` (or a dict with
            ``"out"``): a whole model, or a prefix of its layers for the ERF of a shallow layer.
        input_size: ``H`` or ``(H, W)``.
        inputs: images ``[B, in_channels, H, W]`` to average over; default ``samples`` standard-normal images
            (``seed``), as in the paper.
        samples, in_channels, seed: for the random inputs.

    The model runs in eval mode (restored afterwards): in train mode BatchNorm's batch statistics would tie
    every pixel to every other one. Only the input's gradient is computed; the parameters' ``.grad`` are
    left untouched.
    """
    height, width = _input_size(input_size)
    if not callable(model):
        raise TypeError(f"model must be a module or function [B, C, H, W] -> [B, C', h, w], got {type(model).__name__}")
    params = next(model.parameters(), None) if isinstance(model, torch.nn.Module) else None
    device = params.device if params is not None else torch.device("cpu")
    if inputs is None:
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be an int >= 1, got {samples!r}")
        generator = torch.Generator().manual_seed(seed)
        inputs = torch.randn(samples, in_channels, height, width, generator=generator)
    elif not isinstance(inputs, torch.Tensor) or inputs.dim() != 4 or tuple(inputs.shape[-2:]) != (height, width):
        got = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise ValueError(f"inputs must be [B, C, {height}, {width}] (input_size), got {got}")
    x = inputs.detach().to(device=device, dtype=torch.float32).requires_grad_(True)

    was_training = getattr(model, "training", None)
    if was_training is not None:
        model.eval()
    try:
        with torch.enable_grad():
            out = model(x)
            if isinstance(out, dict):
                out = out["out"]
            if not isinstance(out, torch.Tensor) or out.dim() != 4:
                got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(f"model must return a [B, C, h, w] map, got {got}")
            h, w = out.shape[-2:]
            # Images of a batch are independent in eval mode: one backward gives each image's own gradient.
            (grad,) = torch.autograd.grad(out[:, :, h // 2, w // 2].sum(), x)
    finally:
        if was_training is not None:
            model.train(was_training)
    return grad.abs().sum(1).mean(0).float()


def erf_profile(erf: torch.Tensor) -> torch.Tensor:
    """Fraction of an ERF map's mass inside centred squares: ``erf [H, W]`` -> float64 ``[R + 1]``, entry r
    the mass within Chebyshev distance r of the centre ``(H // 2, W // 2)`` (a square of side ``2r + 1``)
    over the total. Non-decreasing, ending at 1."""
    if not isinstance(erf, torch.Tensor) or erf.dim() != 2:
        got = tuple(erf.shape) if isinstance(erf, torch.Tensor) else type(erf).__name__
        raise ValueError(f"erf must be a map [H, W], got {got}")
    height, width = erf.shape
    rows = (torch.arange(height, device=erf.device) - height // 2).abs()
    cols = (torch.arange(width, device=erf.device) - width // 2).abs()
    radius = torch.maximum(rows[:, None], cols[None, :])  # Chebyshev distance to the centre
    mass = torch.bincount(radius.flatten(), weights=erf.flatten().double().abs())
    total = mass.sum()
    if total <= 0:
        raise ValueError("erf is zero everywhere: the centre output does not depend on the input")
    return mass.cumsum(0) / total


def erf_extent(erf: torch.Tensor, mass: float = 0.9) -> int:
    """Side ``2r + 1`` of the smallest centred square holding ``mass`` of the ERF (``erf_profile``): a size to
    compare with the theoretical receptive field. Can exceed the map when its centre is off-centre."""
    if isinstance(mass, bool) or not isinstance(mass, (int, float)) or not 0 < mass <= 1:
        raise ValueError(f"mass must be a fraction in (0, 1], got {mass!r}")
    profile = erf_profile(erf)
    radius = int(torch.searchsorted(profile, torch.tensor([mass - 1e-12], dtype=profile.dtype, device=profile.device)))
    return 2 * radius + 1


def erf_support(erf: torch.Tensor) -> tuple[int, int]:
    """Height and width of the bounding box of the pixels that reach the centre at all (``erf > 0``): the
    theoretical receptive field, clipped by the input (use an input larger than the field to measure it)."""
    if not isinstance(erf, torch.Tensor) or erf.dim() != 2:
        got = tuple(erf.shape) if isinstance(erf, torch.Tensor) else type(erf).__name__
        raise ValueError(f"erf must be a map [H, W], got {got}")
    rows, cols = (erf > 0).nonzero(as_tuple=True)
    if rows.numel() == 0:
        return 0, 0
    return int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1


def confusion_rate(pred: torch.Tensor, target: torch.Tensor, classes=(1, 2)) -> float:
    """How often look-alike classes are swapped: among the pixels whose target is one of ``classes`` and whose
    prediction is one of ``classes`` too, the fraction predicted as the wrong one of them.

    ``pred``, ``target``: int64 label maps of the same shape. For the context scenes with ``classes=(1, 2)``
    (car, boat) it isolates the question of lesson 08 - "is this vehicle a car or a boat?" - from how well
    the vehicle is segmented. NaN when no pixel qualifies.
    """
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor) or pred.shape != target.shape:
        shapes = [tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__ for t in (pred, target)]
        raise ValueError(f"pred and target must be label maps of the same shape, got {shapes[0]} and {shapes[1]}")
    chosen = torch.as_tensor(list(classes), device=target.device)
    both = torch.isin(target, chosen) & torch.isin(pred, chosen)
    total = int(both.sum())
    return float(((pred != target) & both).sum()) / total if total else float("nan")
