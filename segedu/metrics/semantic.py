"""Metrics of a semantic segmentation: region metrics (IoU, Dice, pixel accuracy), boundary F1, swap rate.

See ``segedu.metrics`` for the definitions and references; label maps are int64 ``[B, H, W]`` (or ``[H, W]``)
with ``ignore_index`` (255) for pixels that count for nothing, predictions labels or logits ``[B, C, H, W]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from segedu import validate

__all__ = ["ConfusionMatrix", "mean_iou", "boundary_f1", "boundary_match", "default_tolerance", "confusion_rate"]


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
    validate.tensor(pred, "pred")
    validate.tensor(target, "target", dtype="integer", layout="label map (int64 [B, H, W])")
    if num_classes is not None:
        num_classes = validate.positive_int(num_classes, "num_classes")
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
        raise TypeError(f"pred must be labels (integer) or logits (floating point), got dtype {pred.dtype}")
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
        self.num_classes = validate.positive_int(num_classes, "num_classes")
        self.ignore_index = validate.ignore_index(ignore_index)
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
    ignore_index = validate.ignore_index(ignore_index)
    validate.choice(reduction, "reduction", ("mean", "none"))
    pred, target, c = _as_labels(pred, target, num_classes, ignore_index)
    b, h, w = target.shape
    if tolerance is None:
        tolerance = default_tolerance(h, w)
    tolerance = validate.number(tolerance, "tolerance", minimum=0)  # pixels

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


def boundary_match(pred_mask: torch.Tensor, true_mask: torch.Tensor, tolerance: float) -> dict:
    """What ``boundary_f1`` looks at for one class of one image, as maps to draw (lesson 00).

    ``pred_mask``, ``true_mask``: bool ``[H, W]`` (the pixels of one class). Returns bool ``[H, W]`` maps
    ``"pred_boundary"``, ``"true_boundary"`` (inner boundaries, as in ``boundary_f1``), ``"pred_band"``,
    ``"true_band"`` (the pixels within ``tolerance`` of each boundary: a disk-shaped dilation),
    ``"pred_matched"`` (predicted boundary pixels inside the true band), ``"true_matched"`` (true boundary
    pixels inside the predicted band), and the floats ``"precision"``, ``"recall"``, ``"f1"`` - the numbers
    ``boundary_f1`` averages over classes (same conventions: an empty boundary scores 1).
    """
    validate.tensor(pred_mask, "pred_mask", 2, dtype="bool", layout="[H, W]")
    validate.tensor(true_mask, "true_mask", 2, dtype="bool", layout="[H, W]")
    if pred_mask.shape != true_mask.shape:
        raise ValueError(
            f"pred_mask and true_mask must have the same shape, got {tuple(pred_mask.shape)} and {tuple(true_mask.shape)}"
        )
    tolerance = validate.number(tolerance, "tolerance", minimum=0)  # pixels
    pred_b, true_b = _boundary(pred_mask[None])[0], _boundary(true_mask[None])[0]
    pred_band, true_band = _near(pred_b[None], tolerance)[0], _near(true_b[None], tolerance)[0]
    pred_matched, true_matched = pred_b & true_band, true_b & pred_band
    n_pred, n_true = int(pred_b.sum()), int(true_b.sum())
    precision = int(pred_matched.sum()) / n_pred if n_pred else 1.0
    recall = int(true_matched.sum()) / n_true if n_true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"pred_boundary": pred_b, "true_boundary": true_b, "pred_band": pred_band, "true_band": true_band,
            "pred_matched": pred_matched, "true_matched": true_matched,
            "precision": precision, "recall": recall, "f1": f1}


# --------------------------------------------------------------------------- look-alike classes (lesson 08)


def confusion_rate(pred: torch.Tensor, target: torch.Tensor, classes=(1, 2)) -> float:
    """How often look-alike classes are swapped: among the pixels whose target is one of ``classes`` and whose
    prediction is one of ``classes`` too, the fraction predicted as the wrong one of them.

    ``pred``, ``target``: int64 label maps of the same shape. For the context scenes with ``classes=(1, 2)``
    (car, boat) it isolates the question of lesson 08 - "is this vehicle a car or a boat?" - from how well
    the vehicle is segmented. NaN when no pixel qualifies.
    """
    validate.tensor(pred, "pred", dtype="integer", layout="label map")
    validate.tensor(target, "target", dtype="integer", layout="label map")
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must be label maps of the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    chosen = torch.as_tensor(list(classes), device=target.device)
    both = torch.isin(target, chosen) & torch.isin(pred, chosen)
    total = int(both.sum())
    return float(((pred != target) & both).sum()) / total if total else float("nan")
