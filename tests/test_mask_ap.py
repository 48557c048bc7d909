"""segedu.metrics.mask_ap against pycocotools' COCOeval(..., "segm"), and by hand (lesson 09)."""

import contextlib
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from segedu.metrics import mask_ap, mask_iou


def _rle(mask: torch.Tensor) -> dict:
    return coco_mask.encode(np.asfortranarray(mask.numpy().astype(np.uint8)))


def coco_stats(predictions, targets, num_classes=5, threshold=0.5):
    """pycocotools' AP, AP50, AP75 for the same lists of dicts (predicted masks binarised at > threshold)."""
    height, width = targets[0]["masks"].shape[-2:]
    images, annotations, results = [], [], []
    for i, (pred, target) in enumerate(zip(predictions, targets)):
        images.append({"id": i + 1, "height": height, "width": width})
        for mask, label in zip(target["masks"], target["labels"]):
            rle = _rle(mask.bool())
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(label),
                                "segmentation": rle, "area": float(coco_mask.area(rle)),
                                "bbox": coco_mask.toBbox(rle).tolist(), "iscrowd": 0})
        for mask, label, score in zip(pred["masks"], pred["labels"], pred["scores"]):
            results.append({"image_id": i + 1, "category_id": int(label), "segmentation": _rle(mask[0] > threshold),
                            "score": float(score)})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": annotations,
                  "categories": [{"id": c, "name": str(c)} for c in range(1, num_classes + 1)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(results), "segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats[:3], evaluator.eval["precision"]


def _blob(gen, size):
    """A random ellipse, bool [size, size]."""
    cy, cx = (torch.rand(2, generator=gen) * size).tolist()
    ry, rx = (2 + torch.rand(2, generator=gen) * size / 4).tolist()
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def _random_case(seed, images=10, size=24, classes=3, max_gt=5, max_det=9, ties=False, extra=0):
    """Ground truths and predictions with graded IoUs: near-copies (shifted, dilated, eroded, noisy) of
    ground truths with a random label (often right), plus pure false positives and empty masks."""
    gen = torch.Generator().manual_seed(seed)
    predictions, targets = [], []
    for _ in range(images):
        m = int(torch.randint(0, max_gt + 1, (1,), generator=gen))
        gt = torch.stack([_blob(gen, size) for _ in range(m)]) if m else torch.zeros(0, size, size, dtype=torch.bool)
        gt_labels = torch.randint(1, classes + 1, (m,), generator=gen)
        n = int(torch.randint(0, max_det + 1, (1,), generator=gen)) + extra
        masks, labels = [], []
        for _ in range(n):
            r = float(torch.rand(1, generator=gen))
            if m and r < 0.85:
                k = int(torch.randint(0, m, (1,), generator=gen))
                base = gt[k].float()[None, None]
                how = int(torch.randint(0, 4, (1,), generator=gen))
                if how == 0:
                    base = torch.roll(base, shifts=tuple(torch.randint(-3, 4, (2,), generator=gen).tolist()), dims=(2, 3))
                elif how == 1:
                    base = F.max_pool2d(base, 3, 1, 1)
                elif how == 2:
                    base = -F.max_pool2d(-base, 3, 1, 1)
                prob = 0.8 * base[0, 0] + 0.35 * torch.rand(size, size, generator=gen)
                label = int(gt_labels[k]) if torch.rand(1, generator=gen) < 0.8 else int(torch.randint(1, classes + 1, (1,), generator=gen))
            elif r < 0.95:
                prob, label = _blob(gen, size).float() * 0.9, int(torch.randint(1, classes + 1, (1,), generator=gen))
            else:
                prob, label = torch.zeros(size, size), int(torch.randint(1, classes + 1, (1,), generator=gen))
            masks.append(prob)
            labels.append(label)
        scores = torch.rand(n, generator=gen)
        if ties:
            scores = (scores * 3).round() / 3
        predictions.append({"masks": torch.stack(masks)[:, None] if n else torch.zeros(0, 1, size, size),
                            "labels": torch.tensor(labels, dtype=torch.int64), "scores": scores})
        targets.append({"masks": gt.to(torch.uint8), "labels": gt_labels})
    return predictions, targets


@pytest.mark.parametrize("seed", range(6))
def test_equals_pycocotools_on_random_predictions(seed):
    predictions, targets = _random_case(seed, ties=seed % 2 == 1)
    ours = mask_ap(predictions, targets)
    (ap, ap50, ap75), precision = coco_stats(predictions, targets)
    assert ours["AP"] == pytest.approx(ap, abs=1e-6)
    assert ours["AP50"] == pytest.approx(ap50, abs=1e-6)
    assert ours["AP75"] == pytest.approx(ap75, abs=1e-6)
    # The whole interpolated precision table agrees (area "all", 100 detections), class by class.
    reference = precision[:, :, [c - 1 for c in ours["classes"]], 0, 2]
    np.testing.assert_allclose(ours["precision"], reference, atol=1e-12)
    assert 0 < ap75 < ap50 < 1, "the random case must give graded IoUs, not all-or-nothing"


def test_keeps_the_best_100_detections_per_image_and_class():
    predictions, targets = _random_case(11, images=3, classes=1, max_det=3, extra=110)  # > 100 per image and class
    ours = mask_ap(predictions, targets)
    (ap, ap50, ap75), _ = coco_stats(predictions, targets)
    assert (ours["AP"], ours["AP50"], ours["AP75"]) == pytest.approx((ap, ap50, ap75), abs=1e-6)
    # The only true positive ranks 101st: cut by the limit (AP 0, as pycocotools), found without it.
    gt = torch.zeros(1, 16, 16, dtype=torch.uint8)
    gt[0, 2:8, 2:8] = 1
    wrong = torch.zeros(100, 1, 16, 16)
    wrong[:, 0, 10:, 10:] = 1
    pred = {"masks": torch.cat([wrong, gt[None].float()]), "labels": torch.ones(101, dtype=torch.int64),
            "scores": torch.cat([torch.linspace(0.9, 0.5, 100), torch.tensor([0.1])])}
    target = {"masks": gt, "labels": torch.ones(1, dtype=torch.int64)}
    assert mask_ap([pred], [target])["AP"] == 0.0 == coco_stats([pred], [target])[0][0]
    assert mask_ap([pred], [target], max_detections=101)["AP"] == pytest.approx(1 / 101)


def test_worked_example_by_hand():
    # One class, two ground truths (left and right halves), three detections by decreasing score:
    # d1 = left half exactly (TP at every threshold), d2 = a copy of d1 (duplicate: FP), d3 = right half
    # minus one column of four (IoU 0.75: TP up to threshold 0.75, FP above).
    gt = torch.zeros(2, 4, 8, dtype=torch.uint8)
    gt[0, :, :4] = 1
    gt[1, :, 4:] = 1
    d3 = torch.zeros(4, 8)
    d3[:, 4:7] = 1
    masks = torch.stack([gt[0].float(), gt[0].float(), d3])[:, None]
    pred = {"masks": masks, "labels": torch.tensor([1, 1, 1]), "scores": torch.tensor([0.9, 0.8, 0.7])}
    result = mask_ap([pred], [{"masks": gt, "labels": torch.tensor([1, 1])}])
    # IoU <= 0.75: TP, FP, TP -> precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1; envelope: 1 up to recall 0.5,
    # 2/3 beyond. Of the 101 recall points, 51 (0 .. 0.50) get 1 and 50 get 2/3.
    full = (51 * 1 + 50 * 2 / 3) / 101
    # IoU > 0.75: TP, FP, FP -> recall reaches only 1/2: 51 points at precision 1, 50 at 0.
    half = 51 / 101
    assert result["AP50"] == pytest.approx(full) and result["AP75"] == pytest.approx(full)
    assert result["AP_per_iou"][0.8] == pytest.approx(half)
    assert result["AP"] == pytest.approx((6 * full + 4 * half) / 10)
    assert mask_iou(masks[2:, 0] > 0.5, gt[1:].bool()).item() == pytest.approx(0.75)


def test_perfect_empty_and_thresholded_predictions():
    _, targets = _random_case(3, images=4, max_gt=3)
    perfect = [{"masks": t["masks"][:, None].float(), "labels": t["labels"],
                "scores": torch.linspace(1, 0.5, len(t["labels"]))} for t in targets]
    assert mask_ap(perfect, targets)["AP"] == pytest.approx(1.0)
    nothing = [{"masks": torch.zeros(0, 1, 24, 24), "labels": torch.zeros(0, dtype=torch.int64),
                "scores": torch.zeros(0)} for _ in targets]
    assert mask_ap(nothing, targets)["AP"] == 0.0
    # Probabilities exactly at the threshold are outside the mask (> 0.5, torchvision's COCO evaluation).
    halves = [dict(p, masks=p["masks"] * 0.5) for p in perfect]
    assert mask_ap(halves, targets)["AP"] == 0.0
    assert mask_ap(halves, targets, mask_threshold=0.4)["AP"] == pytest.approx(1.0)
    no_truth = [{"masks": torch.zeros(0, 24, 24, dtype=torch.uint8), "labels": torch.zeros(0, dtype=torch.int64)}] * 4
    assert np.isnan(mask_ap(perfect, no_truth)["AP"])


def test_mask_iou():
    a = torch.zeros(2, 4, 4, dtype=torch.bool)
    a[0, :2] = True
    b = torch.zeros(3, 4, 4, dtype=torch.bool)
    b[0, :2] = True
    b[1, 1:3] = True
    iou = mask_iou(a, b)
    assert iou.dtype == torch.float64 and iou.shape == (2, 3)
    assert iou.tolist() == [[1.0, 1 / 3, 0.0], [0.0, 0.0, 0.0]]  # empty vs empty scores 0, as pycocotools


def test_bad_inputs():
    pred = [{"masks": torch.zeros(1, 1, 4, 4), "labels": torch.ones(1, dtype=torch.int64), "scores": torch.ones(1)}]
    target = [{"masks": torch.zeros(1, 4, 4, dtype=torch.uint8), "labels": torch.ones(1, dtype=torch.int64)}]
    with pytest.raises(ValueError, match="same images"):
        mask_ap(pred, target * 2)
    with pytest.raises(ValueError, match="keys"):
        mask_ap([{"masks": pred[0]["masks"]}], target)
    with pytest.raises(TypeError, match="list of dicts"):
        mask_ap(pred[0], target)
    with pytest.raises(ValueError, match="same size"):
        mask_ap(pred, [dict(target[0], masks=torch.zeros(1, 5, 4, dtype=torch.uint8))])
    with pytest.raises(ValueError, match="mask_threshold"):
        mask_ap(pred, target, mask_threshold=1.5)
