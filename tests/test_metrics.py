"""segedu.metrics: region metrics cross-checked against torchmetrics, boundary F1 against a SciPy
reference and a hand-computed example, and every bad-input error."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_f1_score,
    multiclass_jaccard_index,
)
from torchmetrics.functional.segmentation import dice_score

from segedu.metrics import ConfusionMatrix, boundary_f1, default_tolerance, mean_iou

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def random_case(generator, num_classes, shape=(3, 12, 10), ignore=0.2, absent=()):
    """Random pred/target label maps with ignored pixels and classes missing from both maps."""
    target = torch.randint(0, num_classes, shape, generator=generator)
    pred = torch.randint(0, num_classes, shape, generator=generator)
    for c in absent:  # remove class c from both maps
        target[target == c] = (c + 1) % num_classes
        pred[pred == c] = (c + 1) % num_classes
    target[torch.rand(shape, generator=generator) < ignore] = 255
    return pred, target


# --------------------------------------------------------------------------- confusion matrix


def test_matrix_rows_are_target_columns_are_prediction():
    target = torch.tensor([[0, 0, 1, 2, 255]])
    pred = torch.tensor([[0, 1, 1, 1, 2]])
    cm = ConfusionMatrix(3).update(pred, target)
    expected = torch.tensor([[1, 1, 0], [0, 1, 0], [0, 1, 0]])
    assert torch.equal(cm.matrix, expected)
    # class 1: TP 1, FP 2 (pixels 1 and 3), FN 0 -> 1/3; class 2: TP 0 -> 0 (it occurs in the target)
    assert torch.allclose(cm.iou(), torch.tensor([0.5, 1 / 3, 0.0], dtype=torch.float64))
    assert cm.pixel_accuracy() == pytest.approx(2 / 4)
    assert cm.dice()[1].item() == pytest.approx(2 * 1 / (2 * 1 + 2 + 0))


@pytest.mark.parametrize("trial", range(12))
def test_against_torchmetrics(trial):
    g = torch.Generator().manual_seed(trial)
    num_classes = 2 + trial % 5
    absent = (num_classes - 1,) if trial % 2 else ()
    pred, target = random_case(g, num_classes, absent=absent)
    cm = ConfusionMatrix(num_classes, ignore_index=255).update(pred, target)

    ref_miou = multiclass_jaccard_index(pred, target, num_classes, average="macro", ignore_index=255)
    assert cm.miou() == pytest.approx(float(ref_miou), abs=1e-6)

    ref_iou = multiclass_jaccard_index(pred, target, num_classes, average="none", ignore_index=255)
    iou = cm.iou()
    present = ~iou.isnan()
    assert torch.allclose(iou[present].float(), ref_iou[present], atol=1e-6)
    assert (ref_iou[~present] == 0).all()  # torchmetrics writes 0 (zero_division) where we write NaN
    if absent:
        assert iou[absent[0]].isnan() and not present.all()

    ref_dice = multiclass_f1_score(pred, target, num_classes, average="none", ignore_index=255)
    assert torch.allclose(cm.dice()[present].float(), ref_dice[present], atol=1e-6)

    ref_acc = multiclass_accuracy(pred, target, num_classes, average="micro", ignore_index=255)
    assert cm.pixel_accuracy() == pytest.approx(float(ref_acc), abs=1e-6)


def test_absent_classes_are_left_out_of_the_mean():
    # Class 2 never occurs: the mean is over classes 0 and 1 only (not counted as 0, not as 1).
    target = torch.tensor([[0, 0, 1, 1]])
    pred = torch.tensor([[0, 1, 1, 1]])
    cm = ConfusionMatrix(3).update(pred, target)
    assert cm.iou()[2].isnan()
    assert cm.miou() == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert cm.miou() == pytest.approx(float(multiclass_jaccard_index(pred, target, 3, average="macro")))


def test_ignore_index_inside_the_class_range_matches_torchmetrics():
    g = torch.Generator().manual_seed(7)
    pred = torch.randint(0, 4, (2, 9, 9), generator=g)
    target = torch.randint(0, 4, (2, 9, 9), generator=g)
    cm = ConfusionMatrix(4, ignore_index=0).update(pred, target)
    ref = multiclass_jaccard_index(pred, target, 4, average="macro", ignore_index=0)
    assert cm.miou() == pytest.approx(float(ref), abs=1e-6)
    assert cm.iou()[0].isnan()
    assert cm.matrix[0].sum() == 0  # ignored target pixels are not counted at all


def test_dice_matches_torchmetrics_segmentation_dice_with_nan_for_absent():
    g = torch.Generator().manual_seed(3)
    pred, target = random_case(g, 5, ignore=0.0, absent=(4,))
    ours = ConfusionMatrix(5).update(pred, target).dice()
    ref = dice_score(pred, target, 5, average="none", input_format="index", aggregation_level="global")
    assert torch.allclose(ours.float(), ref, equal_nan=True, atol=1e-6)
    assert ours[4].isnan()


def test_logits_and_accumulation_over_batches():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 3, 8, 8, generator=g)
    target = torch.randint(0, 3, (4, 8, 8), generator=g)
    whole = ConfusionMatrix(3).update(logits, target)
    assert torch.equal(whole.matrix, ConfusionMatrix(3).update(logits.argmax(1), target).matrix)
    parts = ConfusionMatrix(3)
    for i in range(4):  # [C, H, W] logits with an [H, W] target: one image at a time
        parts.update(logits[i], target[i])
    assert torch.equal(parts.matrix, whole.matrix)
    assert parts.matrix.sum() == 4 * 8 * 8
    assert mean_iou(logits, target, 3) == pytest.approx(whole.miou())
    parts.reset()
    assert parts.matrix.sum() == 0 and math.isnan(parts.miou())


def test_repr_is_readable():
    cm = ConfusionMatrix(3)
    assert repr(cm) == "ConfusionMatrix(num_classes=3, ignore_index=255, pixels=0)"
    cm.update(torch.tensor([[0, 1]]), torch.tensor([[0, 1]]))
    text = repr(cm)
    assert "pixels=2" in text and "miou=1.000" in text and "iou=[1.000, 1.000, nan]" in text


@pytest.mark.parametrize("device", DEVICES)
def test_stays_on_the_inputs_device(device):
    pred = torch.randint(0, 3, (2, 5, 5), device=device)
    cm = ConfusionMatrix(3).update(pred, pred)
    assert cm.matrix.device.type == device and cm.iou().device.type == device
    assert cm.miou() == 1.0
    assert boundary_f1(pred, pred) == 1.0


# --------------------------------------------------------------------------- boundary F1


def test_default_tolerance_is_three_quarters_percent_of_the_diagonal():
    assert default_tolerance(64, 64) == 1  # 0.68 px -> at least 1
    assert default_tolerance(128, 128) == 2  # 1.36 -> 2
    assert default_tolerance(375, 500) == 5  # 4.69 -> 5


def test_hand_computed_example():
    # 6x6 image, a 3x3 square (class 1) at rows 1-3, cols 1-3; the prediction is shifted right by 1.
    target = torch.zeros(6, 6, dtype=torch.int64)
    target[1:4, 1:4] = 1
    pred = torch.roll(target, 1, dims=1)
    # tolerance 0 (exact positions):
    #  class 1: each square's boundary is its ring of 8 pixels; the rings share 4 (rows 1 and 3, cols 2-3),
    #           so P = R = 4/8 and F1 = 1/2;
    #  class 0: 12 background pixels touch each square (3 per side); 4 are shared (rows 0 and 4, cols 2-3),
    #           so P = R = 4/12 and F1 = 1/3.
    assert boundary_f1(pred, target, tolerance=0) == pytest.approx((1 / 2 + 1 / 3) / 2)
    # tolerance 1: every boundary pixel has a boundary pixel of the other map within one step -> 1.
    assert boundary_f1(pred, target, tolerance=1) == pytest.approx(1.0)


def test_perfect_prediction_scores_one_also_from_logits():
    g = torch.Generator().manual_seed(0)
    target = blobs(g, 2, 4, 48)
    assert boundary_f1(target, target) == 1.0
    logits = F.one_hot(target, 4).permute(0, 3, 1, 2).float()
    assert boundary_f1(logits, target) == 1.0
    assert torch.equal(boundary_f1(target, target, reduction="none"), torch.ones(2))


def test_shift_lowers_bf_and_a_larger_tolerance_forgives_it():
    target = torch.zeros(1, 64, 64, dtype=torch.int64)
    target[:, 20:44, 16:40] = 1
    target[:, 30:36, 44:58] = 2
    scores = [boundary_f1(torch.roll(target, s, dims=2), target, tolerance=2) for s in range(8)]
    assert scores[:3] == [1.0, 1.0, 1.0]  # within the tolerance nothing is lost
    assert all(a > b for a, b in zip(scores[2:], scores[3:])), scores  # strictly worse beyond it
    shifted = torch.roll(target, 3, dims=2)
    by_tolerance = [boundary_f1(shifted, target, tolerance=t) for t in (0, 1, 2, 3)]
    assert all(a < b for a, b in zip(by_tolerance, by_tolerance[1:])), by_tolerance
    assert by_tolerance[-1] == 1.0


def blobs(generator, batch, classes, size):
    """Smooth random label maps: argmax of upsampled noise."""
    noise = torch.randn(batch, classes, size // 8, size // 8, generator=generator)
    return F.interpolate(noise, size=(size, size), mode="bilinear", align_corners=False).argmax(1)


def reference_bf(pred, target, tolerance, num_classes, ignore_index=255):
    """Straightforward NumPy/SciPy BF: Euclidean distance transform per image and class."""
    scores = []
    for p, t in zip(pred.numpy(), target.numpy()):
        valid = t != ignore_index
        f1s = []
        for c in range(num_classes):
            masks = [(p == c) & valid, (t == c) & valid]
            if not (masks[0].any() or masks[1].any()):
                continue
            bounds = []
            for m in masks:  # pixels of m with a 4-neighbour outside m; outside the image counts as inside
                padded = np.pad(m, 1, constant_values=True)
                inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
                bounds.append(m & ~inner)
            pb, tb = bounds

            def matched(a, b):  # fraction of a's pixels within `tolerance` of b's (1 if a is empty)
                if not a.any():
                    return 1.0
                if not b.any():
                    return 0.0
                distance = ndimage.distance_transform_edt(~b)
                return float((distance[a] <= tolerance).mean())

            precision, recall = matched(pb, tb), matched(tb, pb)
            f1s.append(0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))
        scores.append(np.mean(f1s) if f1s else np.nan)
    return np.array(scores)


@pytest.mark.parametrize("tolerance", [0, 1, 2.5, 4])
def test_against_scipy_distance_transform(tolerance):
    g = torch.Generator().manual_seed(int(tolerance * 10))
    target = blobs(g, 4, 4, 40)
    pred = blobs(g, 4, 4, 40)
    pred[:2] = torch.roll(target[:2], 2, dims=1)  # two near misses, two unrelated maps
    target[torch.rand(target.shape, generator=g) < 0.02] = 255  # scattered ignored pixels
    target[:, :, :5] = 255  # and an ignored band
    ours = boundary_f1(pred, target, tolerance=tolerance, num_classes=4, reduction="none")
    ref = reference_bf(pred, target, tolerance, 4)
    assert np.allclose(ours.numpy(), ref, atol=1e-6), (ours, ref)
    assert boundary_f1(pred, target, tolerance=tolerance, num_classes=4) == pytest.approx(ref.mean(), abs=1e-6)


def test_ignored_pixels_are_never_boundaries():
    target = torch.zeros(1, 16, 16, dtype=torch.int64)
    target[:, 4:12, 4:12] = 1
    pred = target.clone()
    pred[:, 2:14, 2:14] = 1  # too large, but the extra ring lies in the ignored band around the object
    target[:, 2:14, 2:14][~(target[:, 2:14, 2:14] == 1)] = 255
    assert boundary_f1(pred, target, tolerance=0) == 1.0
    everything_ignored = torch.full((1, 16, 16), 255)
    assert math.isnan(boundary_f1(pred, everything_ignored))
    per_image = boundary_f1(torch.cat([pred, pred]), torch.cat([target, everything_ignored]), reduction="none")
    assert per_image[0] == 1.0 and per_image[1].isnan()


def test_a_hallucinated_class_is_penalised():
    target = torch.zeros(1, 16, 16, dtype=torch.int64)
    pred = target.clone()
    pred[:, 5:9, 5:9] = 1  # class 1 is only in the prediction
    assert boundary_f1(pred, target) == 0.0  # both classes have predicted boundaries with no true ones


# --------------------------------------------------------------------------- errors


def test_bad_inputs_raise_named_errors():
    labels = torch.zeros(2, 4, 4, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"pred \(labels\).*\(2, 4, 4\).*\(2, 4, 5\)"):
        ConfusionMatrix(3).update(torch.zeros(2, 4, 5, dtype=torch.int64), labels)
    with pytest.raises(ValueError, match=r"logits.*\(2, 3, 4\)"):
        ConfusionMatrix(3).update(torch.zeros(2, 3, 4), labels)
    with pytest.raises(ValueError, match="4 channels.*num_classes=3"):
        ConfusionMatrix(3).update(torch.zeros(2, 4, 4, 4), labels)
    with pytest.raises(TypeError, match="target must be an integer.*float32"):
        ConfusionMatrix(3).update(labels, labels.float())
    with pytest.raises(ValueError, match=r"target must be \[B, H, W\].*\(4,\)"):
        ConfusionMatrix(3).update(labels[0, 0], labels[0, 0])
    with pytest.raises(ValueError, match=r"target has labels outside \[0, 3\).*max 7"):
        ConfusionMatrix(3).update(labels, labels + 7)
    with pytest.raises(ValueError, match=r"pred has labels outside \[0, 3\).*min -1"):
        ConfusionMatrix(3).update(labels - 1, labels)
    with pytest.raises(ValueError, match="num_classes must be an int >= 1, got 0"):
        ConfusionMatrix(0)
    with pytest.raises(TypeError, match="ignore_index"):
        ConfusionMatrix(3, ignore_index=2.5)
    with pytest.raises(TypeError, match="pred must be a torch.Tensor, got list"):
        mean_iou([[0]], labels, 3)
    with pytest.raises(ValueError, match="tolerance must be .*-1"):
        boundary_f1(labels, labels, tolerance=-1)
    with pytest.raises(ValueError, match="reduction must be"):
        boundary_f1(labels, labels, reduction="sum")
    with pytest.raises(ValueError, match=r"pred \(labels\) must have the shape"):
        boundary_f1(labels[:1], labels)
