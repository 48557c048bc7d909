"""Panoptic quality (Kirillov et al., CVPR 2019) against a reference written from the paper and the COCO rules.

``coco_reference`` follows ``pq_compute_single_core`` of COCO's ``panopticapi/evaluation.py`` step by step, on
one image at a time with Python dicts: segments from the unique ids, the gt x pred overlap table, a match for
the same class with IoU > 0.5 where the union leaves out the predicted segment's pixels on void, unmatched
ground truth as FN, unmatched predictions as FP unless more than half of them lies on void; then the per-class
PQ, SQ, RQ and their means over the classes that appear.
"""

import math
from collections import defaultdict

import numpy as np
import pytest
import torch

from segedu import metrics
from segedu.data.tasks import LABEL_DIVISOR, merge_panoptic, panoptic_from_instances
from segedu.metrics.panoptic import panoptic_quality

VOID = 255


def coco_reference(pred, target, things, stuff, divisor=LABEL_DIVISOR, void=VOID):
    stats = defaultdict(lambda: {"tp": 0, "fp": 0, "fn": 0, "iou": 0.0})
    for pan_pred, pan_gt in zip(np.asarray(pred).reshape(-1, *pred.shape[-2:]),
                                np.asarray(target).reshape(-1, *target.shape[-2:])):
        def segments(pan):
            cls = pan // divisor
            ids = np.where(np.isin(cls, stuff), cls * divisor, pan)  # stuff: one segment per class
            ids = np.where(cls == void, -1, ids)  # VOID
            labels, counts = np.unique(ids, return_counts=True)
            return ids, {int(l): {"category": int(l) // divisor, "area": int(n)} for l, n in zip(labels, counts) if l != -1}

        gt_ids, gt_segms = segments(pan_gt)
        pred_ids, pred_segms = segments(pan_pred)
        overlap = defaultdict(int)
        for g, p in zip(gt_ids.ravel().tolist(), pred_ids.ravel().tolist()):
            overlap[(g, p)] += 1
        gt_matched, pred_matched = set(), set()
        for (g, p), intersection in overlap.items():
            if g not in gt_segms or p not in pred_segms:
                continue
            if gt_segms[g]["category"] != pred_segms[p]["category"]:
                continue
            union = pred_segms[p]["area"] + gt_segms[g]["area"] - intersection - overlap.get((-1, p), 0)
            iou = intersection / union
            if iou > 0.5:
                stats[gt_segms[g]["category"]]["tp"] += 1
                stats[gt_segms[g]["category"]]["iou"] += iou
                gt_matched.add(g)
                pred_matched.add(p)
        for g, info in gt_segms.items():
            if g not in gt_matched:
                stats[info["category"]]["fn"] += 1
        for p, info in pred_segms.items():
            if p in pred_matched:
                continue
            if overlap.get((-1, p), 0) / info["area"] > 0.5:
                continue  # mostly void: ignored
            stats[info["category"]]["fp"] += 1
    per_class = {}
    for c in sorted(things + stuff):
        s = stats[c]
        if s["tp"] + s["fp"] + s["fn"] == 0:
            continue
        rq_den = s["tp"] + 0.5 * s["fp"] + 0.5 * s["fn"]
        per_class[c] = {"PQ": s["iou"] / rq_den, "SQ": s["iou"] / s["tp"] if s["tp"] else 0.0,
                        "RQ": s["tp"] / rq_den, "TP": s["tp"], "FP": s["fp"], "FN": s["fn"]}

    def avg(key, classes):
        values = [per_class[c][key] for c in classes if c in per_class]
        return sum(values) / len(values) if values else math.nan

    return per_class, {k + suffix: avg(k, cls) for suffix, cls in (("", things + stuff), ("_things", things),
                                                                   ("_stuff", stuff)) for k in ("PQ", "SQ", "RQ")}


def ids(cls, inst=0):
    return cls * LABEL_DIVISOR + inst


# --------------------------------------------------------------------------- hand-computed cases


def test_a_perfect_prediction_scores_one():
    target = torch.zeros(2, 8, 8, dtype=torch.long)
    target[0, :4, :4] = ids(1, 1)
    target[0, 4:, 4:] = ids(1, 2)
    target[1, 2:5, 2:5] = ids(2, 1)
    result = panoptic_quality(target.clone(), target, things=[1, 2], stuff=[0])
    assert result["PQ"] == result["SQ"] == result["RQ"] == 1.0
    assert result["classes"] == [0, 1, 2]
    assert result["per_class"][1]["TP"] == 2 and result["per_class"][0]["TP"] == 2  # background in each image


def test_matches_false_positives_and_negatives_by_hand():
    # One 10 x 10 image, class 1 things on stuff class 0. Ground truth: A (20 px), B (20 px), C (10 px).
    target = torch.zeros(10, 10, dtype=torch.long)
    target[0:2, :] = ids(1, 1)   # A: rows 0-1
    target[4:6, :] = ids(1, 2)   # B: rows 4-5
    target[8, :] = ids(1, 3)     # C: row 8
    pred = torch.zeros(10, 10, dtype=torch.long)
    pred[0:2, 0:8] = ids(1, 7)   # 16 px inside A: IoU 16 / 20 = 0.8
    pred[4:6, 0:6] = ids(1, 3)   # 12 px inside B: IoU 12 / 20 = 0.6
    pred[8, 0:5] = ids(1, 5)     # 5 px inside C: IoU 5 / 10 = 0.5, NOT > 0.5: a FP and C a FN
    pred[9, :] = ids(1, 9)       # 10 px on background: a FP
    result = panoptic_quality(pred, target, things=[1], stuff=[0])
    one = result["per_class"][1]
    assert (one["TP"], one["FP"], one["FN"]) == (2, 2, 1)
    assert one["SQ"] == pytest.approx((0.8 + 0.6) / 2)
    assert one["RQ"] == pytest.approx(2 / (2 + 1 + 0.5))
    assert one["PQ"] == pytest.approx(1.4 / 3.5) == pytest.approx(one["SQ"] * one["RQ"])
    # background: 50 gt pixels (rows 2, 3, 6, 7, 9), 57 predicted; in common rows 2, 3, 6, 7: 40 -> IoU 40 / 67
    zero = result["per_class"][0]
    assert (zero["TP"], zero["FP"], zero["FN"]) == (1, 0, 0) and zero["SQ"] == pytest.approx(40 / 67)
    assert result["PQ"] == pytest.approx((one["PQ"] + zero["PQ"]) / 2)
    assert result["PQ_things"] == pytest.approx(one["PQ"]) and result["PQ_stuff"] == pytest.approx(40 / 67)


def test_void_pixels_by_the_coco_rules():
    target = torch.zeros(6, 6, dtype=torch.long)
    target[0:2, 0:3] = ids(1, 1)       # a 6-pixel object
    target[0:2, 3:6] = ids(VOID)       # 6 void pixels beside it
    target[4:6, 0:4] = ids(VOID)       # 8 more void pixels
    pred = torch.zeros(6, 6, dtype=torch.long)
    pred[0:2, 0:5] = ids(1, 1)         # the object + 4 void pixels: union 10 - 4 = 6 -> IoU 1
    pred[4:6, 0:3] = ids(1, 2)         # 6 pixels, all on void: not a false positive
    pred[3, 0:2] = ids(1, 3)           # 2 pixels on background: a false positive
    result = panoptic_quality(pred, target, things=[1], stuff=[0])
    one = result["per_class"][1]
    assert (one["TP"], one["FP"], one["FN"], one["SQ"]) == (1, 1, 0, 1.0)
    # a prediction of class void is "unlabelled": no segment, so no false positive either
    pred[3, 0:2] = ids(VOID)
    assert result["per_class"][1]["FP"] == 1 and panoptic_quality(pred, target, [1], [0])["per_class"][1]["FP"] == 0


def test_stuff_instances_are_merged_and_classes_must_match():
    target = torch.zeros(4, 4, dtype=torch.long)
    target[:2] = ids(2)  # stuff class 2
    pred = target.clone()
    pred[:2, :2] = ids(2, 5)  # a stuff pixel with an instance number: still the one segment of class 2
    assert panoptic_quality(pred, target, things=[1], stuff=[0, 2])["PQ"] == 1.0
    wrong = target.clone()
    wrong[:2] = ids(1, 1)  # the right pixels with the wrong class: no match
    result = panoptic_quality(wrong, target, things=[1], stuff=[0, 2])
    assert result["per_class"][2]["FN"] == 1 and result["per_class"][1]["FP"] == 1 and result["per_class"][1]["PQ"] == 0


def test_no_class_appears():
    empty = torch.full((3, 3), ids(VOID), dtype=torch.long)
    result = panoptic_quality(empty, empty, things=[1], stuff=[0])
    assert math.isnan(result["PQ"]) and result["classes"] == []


# --------------------------------------------------------------------------- against the reference


def random_panoptic(gen, B, H, W, things, stuff, max_instances):
    cls = torch.tensor(things + stuff)[torch.randint(0, len(things) + len(stuff), (B, H, W), generator=gen)]
    # blocky maps: segments of several pixels, as real ones
    cls = cls[:, ::2, ::2].repeat_interleave(2, 1).repeat_interleave(2, 2)[:, :H, :W]
    inst = torch.randint(1, max_instances + 1, (B, H, W), generator=gen)[:, ::3, ::3]
    inst = inst.repeat_interleave(3, 1).repeat_interleave(3, 2)[:, :H, :W]
    pan = cls * LABEL_DIVISOR + torch.where(torch.isin(cls, torch.tensor(things)), inst, 0)
    pan[torch.rand(B, H, W, generator=gen) < 0.05] = VOID * LABEL_DIVISOR
    return pan


@pytest.mark.parametrize("seed", range(8))
def test_equals_the_coco_reference_on_random_maps(seed):
    gen = torch.Generator().manual_seed(seed)
    things, stuff = [1, 2, 3], [0, 4]
    target = random_panoptic(gen, 3, 12, 13, things, stuff, 3)
    pred = target.clone()
    # perturb: move blocks, relabel some, drop some to void, add stray stuff instance numbers
    noise = random_panoptic(gen, 3, 12, 13, things, stuff, 4)
    take = torch.rand(3, 12, 13, generator=gen) < 0.1 + 0.08 * seed
    pred[take] = noise[take]
    per_class, means = coco_reference(pred.numpy(), target.numpy(), things, stuff)
    result = panoptic_quality(pred, target, things, stuff)
    assert result["classes"] == sorted(per_class)
    for c, ref in per_class.items():
        got = result["per_class"][c]
        assert (got["TP"], got["FP"], got["FN"]) == (ref["TP"], ref["FP"], ref["FN"]), c
        for key in ("PQ", "SQ", "RQ"):
            assert got[key] == pytest.approx(ref[key], abs=1e-12)
        assert got["PQ"] == pytest.approx(got["SQ"] * got["RQ"], abs=1e-12)
    for key, value in means.items():
        assert result[key] == pytest.approx(value, abs=1e-12) or (math.isnan(value) and math.isnan(result[key]))


def test_a_single_image_and_a_batch_agree_with_the_sum_of_counts():
    gen = torch.Generator().manual_seed(11)
    target = random_panoptic(gen, 2, 10, 10, [1, 2], [0], 3)
    pred = random_panoptic(gen, 2, 10, 10, [1, 2], [0], 3)
    both = panoptic_quality(pred, target, [1, 2], [0])["per_class"]
    first = panoptic_quality(pred[0], target[0], [1, 2], [0])["per_class"]
    second = panoptic_quality(pred[1], target[1], [1, 2], [0])["per_class"]
    for c in both:
        for key in ("TP", "FP", "FN"):
            assert both[c][key] == first.get(c, {}).get(key, 0) + second.get(c, {}).get(key, 0)


def test_the_metrics_package_re_exports_it():
    assert metrics.panoptic_quality is panoptic_quality and "panoptic_quality" in metrics.__all__


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda p, t: panoptic_quality(p.float(), t, [1], [0]), TypeError, "pred must be an integer"),
        (lambda p, t: panoptic_quality(p, t[:, :2], [1], [0]), ValueError, "same shape"),
        (lambda p, t: panoptic_quality(p, t, 1, [0]), TypeError, "things"),
        (lambda p, t: panoptic_quality(p, t, [1], [1]), ValueError, "disjoint"),
        (lambda p, t: panoptic_quality(p, t, [1], [0], label_divisor=0), ValueError, "label_divisor"),
        (lambda p, t: panoptic_quality(p, t, [2], [0]), ValueError, "neither things, stuff nor void"),
        (lambda p, t: panoptic_quality(p, t, [1, VOID], [0]), ValueError, "void"),
        (lambda p, t: panoptic_quality(p - 5, t, [1], [0]), ValueError, "negative"),
    ],
)
def test_bad_arguments(call, error, match):
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, :2] = ids(1, 1)
    with pytest.raises(error, match=match):
        call(target.clone(), target)


# --------------------------------------------------------------------------- merging semantic + instances


def test_merge_panoptic_by_hand():
    semantic = torch.tensor([[0, 1, 1, 2],
                             [0, 1, 3, 2],
                             [0, 0, 2, 2],
                             [1, 0, 0, 0]])
    instances = torch.tensor([[0, 5, 5, 7],
                              [0, 5, 5, 7],
                              [0, 0, 7, 7],
                              [0, 0, 0, 9]])
    # stuff: 0 and 3; things: 1, 2. Instance 5 is mostly class 1 (3 of its pixels; 1 says stuff class 3), 7 is
    # class 2, 9 covers only stuff (class 0): it is dropped and its pixel stays background. The class-1 pixel
    # at (3, 0) belongs to no instance: void.
    merged = merge_panoptic(semantic, instances, things=[1, 2], stuff=[0, 3])
    expected = torch.tensor([[0, ids(1, 1), ids(1, 1), ids(2, 1)],
                             [0, ids(1, 1), ids(1, 1), ids(2, 1)],
                             [0, 0, ids(2, 1), ids(2, 1)],
                             [ids(VOID), 0, 0, 0]])
    assert torch.equal(merged, expected)
    # a batch: the same image twice, each numbered from 1
    batch = merge_panoptic(torch.stack([semantic, semantic]), torch.stack([instances, instances]), [1, 2], [0, 3])
    assert torch.equal(batch, torch.stack([expected, expected]))


def test_merge_panoptic_of_the_ground_truth_is_the_ground_truth_panoptic_map():
    from segedu.data.shapes import ShapesDataset
    from segedu.data.tasks import instance_ids, semantic_from_instances

    images, targets = ShapesDataset(6, size=32, seed=4, variant="instance", max_objects=6).batch(range(6))
    for t in targets:
        semantic = semantic_from_instances(t["labels"], t["masks"])
        merged = merge_panoptic(semantic, instance_ids(t["masks"]), things=[1, 2, 3, 4, 5], stuff=[0])
        assert torch.equal(merged, panoptic_from_instances(t["labels"], t["masks"]))
        assert panoptic_quality(merged, merged, [1, 2, 3, 4, 5], [0])["PQ"] == 1.0


def test_merge_panoptic_min_stuff_area_and_errors():
    semantic = torch.tensor([[0, 0, 3], [0, 0, 0]])
    instances = torch.zeros(2, 3, dtype=torch.long)
    merged = merge_panoptic(semantic, instances, [1], [0, 3], min_stuff_area=2)
    assert merged[0, 2] == ids(VOID) and (merged.flatten()[[0, 1, 3, 4, 5]] == 0).all()
    with pytest.raises(ValueError, match="instances must"):
        merge_panoptic(semantic, instances[:1], [1], [0, 3])
    with pytest.raises(TypeError, match="semantic must be an integer"):
        merge_panoptic(semantic.float(), instances, [1], [0, 3])
    with pytest.raises(ValueError, match="neither things nor stuff"):
        merge_panoptic(semantic, instances, [1], [0])


def test_paint_detections_keeps_the_confident_and_drops_the_hidden():
    from segedu.data.tasks import paint_detections

    masks = torch.zeros(4, 1, 6, 6)
    masks[0, 0, :3, :3] = 0.9   # A: score 0.9, 9 px
    masks[1, 0, :3, 1:4] = 0.8  # B: score 0.8, 9 px, 6 of them under A: 3 free < half -> dropped
    masks[2, 0, 3:, 3:] = 0.7   # C: score 0.6, 9 px, free: kept
    masks[3, 0, 4:, :2] = 0.9   # D: score 0.3: below the score threshold
    detections = [{"masks": masks, "labels": torch.tensor([1, 2, 3, 4]), "scores": torch.tensor([0.9, 0.8, 0.6, 0.3])}]
    semantic, instances = paint_detections(detections)
    assert instances.shape == semantic.shape == (1, 6, 6)
    assert instances[0, :3, :3].eq(1).all() and semantic[0, :3, :3].eq(1).all()
    assert instances[0, 3:, 3:].eq(2).all() and semantic[0, 3:, 3:].eq(3).all()
    assert int((instances > 0).sum()) == 18 and not (semantic == 2).any() and not (semantic == 4).any()
    # overlap=1: nothing is dropped for hiding; B keeps its 3 free pixels
    _, everything = paint_detections(detections, overlap=1.0)
    assert int((everything == 2).sum()) == 3
    with pytest.raises(TypeError, match="detections"):
        paint_detections([])
