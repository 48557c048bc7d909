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

Later lessons add the swap rate of look-alike classes (``confusion_rate``, lesson 08) and COCO mask AP
(``mask_ap``, lesson 09), lesson 12 panoptic quality (``panoptic_quality``, PQ = SQ x RQ). One module per kind of
output: ``semantic`` (label maps), ``instance`` (instance masks with scores) and ``panoptic`` (panoptic maps).
The effective receptive field measures a model, not a segmentation: it lives in ``segedu.ops.dilation``.
"""

from segedu.metrics.instance import COCO_IOU_THRESHOLDS, COCO_RECALL_THRESHOLDS, mask_ap, mask_iou
from segedu.metrics.panoptic import panoptic_quality
from segedu.metrics.semantic import (ConfusionMatrix, boundary_f1, boundary_match, confusion_rate,
                                      default_tolerance, mean_iou)

__all__ = [
    "ConfusionMatrix",
    "mean_iou",
    "boundary_f1",
    "boundary_match",
    "default_tolerance",
    "confusion_rate",
    "COCO_IOU_THRESHOLDS",
    "COCO_RECALL_THRESHOLDS",
    "mask_iou",
    "mask_ap",
    "panoptic_quality",
]
