"""Lesson 09's experiments (segedu.experiments.lesson09), at a tiny size: keys, types, determinism, and the
positive-RoI rule's sampling and targets."""

import pytest
import torch

from segedu import runtime
from segedu.data.shapes import CLASSES, ShapesDataset
from segedu.experiments import lesson09 as experiment
from segedu.experiments.common import Comparison
from segedu.models.maskrcnn import mask_rcnn
from segedu.ops.roi import box_iou

TINY = runtime.profile("quick").replace(train_images=16, val_images=4, det_steps=2, ablation_steps=2,
                                        det_batch_size=2, width=4)


@pytest.fixture(scope="module")
def data():
    train = ShapesDataset(16, size=64, seed=0, variant="instance")
    images, targets = ShapesDataset(4, size=64, seed=1, variant="instance").batch(range(4))
    return train, images, targets


@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(0)
    return mask_rcnn(len(CLASSES), image_size=64, width=4).eval()


def test_sample_rois_follows_torchvisions_sampler(data):
    _, _, targets = data
    target = targets[0]
    gen = torch.Generator().manual_seed(0)
    proposals = torch.cat([target["boxes"].repeat(10, 1) + torch.randn(10 * len(target["boxes"]), 4, generator=gen) * 4,
                           torch.rand(40, 2, generator=gen).repeat(1, 2) * 40 + torch.tensor([0.0, 0, 8, 8])])
    boxes, matched, positive = experiment.sample_rois(proposals, target, 16, 0.25, gen)
    assert boxes.shape == (16, 4) and matched.shape == positive.shape == (16,)
    assert int(positive.sum()) == 4  # at most 25 % positives, and there are more than enough
    assert (matched < len(target["boxes"])).all()
    # Positive means IoU >= 0.5 with the matched object.
    iou = torch.diag(box_iou(target["boxes"][matched], boxes))
    assert torch.equal(positive, iou >= 0.5)


def test_train_mask_heads_is_deterministic_and_leaves_the_detector_alone(data, detector):
    train, _, _ = data
    before = {k: v.clone() for k, v in detector.state_dict().items()}
    first = experiment.train_mask_heads(detector, train, steps=2, batch_size=2, lr=1e-3, seed=3)
    again = experiment.train_mask_heads(detector, train, steps=2, batch_size=2, lr=1e-3, seed=3)
    assert set(first) == set(experiment.RULES)
    for rule in experiment.RULES:
        for (name, a), b in zip(first[rule].state_dict().items(), again[rule].state_dict().values()):
            assert torch.equal(a, b), (rule, name)
    # The rules start from the same weights and see the same RoIs, but train on different RoIs or targets.
    weights = [head["predictor"].mask_fcn_logits.weight for head in first.values()]
    assert not any(torch.equal(a, b) for i, a in enumerate(weights) for b in weights[i + 1:])
    assert all(torch.equal(v, detector.state_dict()[k]) for k, v in before.items())


def test_score_mask_head_reports_the_metrics(data, detector):
    train, images, targets = data
    heads = experiment.train_mask_heads(detector, train, steps=1, batch_size=2, lr=1e-3, seed=0, rules=("all_empty",))
    scores = experiment.score_mask_head(detector, heads["all_empty"], images, targets)
    assert set(scores) == {"AP", "AP50", "iou", "area"}
    assert all(isinstance(v, float) for v in scores.values())
    assert 0 <= scores["iou"] <= 1 and scores["area"] >= 0


def test_positive_roi_rule_is_registered_and_runs_at_a_tiny_size():
    result = experiment.positive_roi_rule(seed=0, profile=TINY)
    comparison = experiment.COMPARISONS["positive_roi_rule"]
    assert isinstance(comparison, Comparison) and comparison.function is experiment.positive_roi_rule
    assert {comparison.better, comparison.worse} <= set(result)
    assert set(result) == {f"{key}_{rule}" for key in ("AP", "AP50", "iou", "area") for rule in experiment.RULES}
    assert experiment.positive_roi_rule(seed=0, profile=TINY) == result  # one training per seed and profile


def test_head_budget_follows_the_profile():
    budget = experiment.head_budget("quick")
    quick = runtime.profile("quick")
    assert budget == dict(steps=quick.ablation_steps // 2, batch_size=quick.det_batch_size, lr=quick.lr,
                          rois_per_image=16)
    assert experiment.head_budget(TINY)["steps"] == 1


def test_errors_name_the_argument(data, detector):
    train, _, _ = data
    with pytest.raises(TypeError, match="detector"):
        experiment.train_mask_heads(torch.nn.Conv2d(3, 3, 1), train, steps=1, batch_size=1, lr=1e-3)
    with pytest.raises(ValueError, match="rules"):
        experiment.train_mask_heads(detector, train, steps=1, batch_size=1, lr=1e-3, rules=("negatives",))
    with pytest.raises(ValueError, match="steps"):
        experiment.train_mask_heads(detector, train, steps=0, batch_size=1, lr=1e-3)
    with pytest.raises(TypeError, match="profile"):
        experiment.positive_roi_rule(profile=3)


def test_shared_box_scene_puts_two_bars_in_one_box():
    images, targets = ShapesDataset(64, size=64, seed=1, variant="instance").batch(range(64))
    bar = CLASSES.index("bar")
    image, target, pair = experiment.shared_box_scene(images, targets, bar)
    assert image.shape == images[0].shape
    assert target["labels"][pair].tolist() == [bar, bar]
    a, b = target["boxes"][pair]
    assert (a - b).abs().max() <= 1  # the mirror image fills the same box (up to a pixel)
    overlap = (target["masks"][pair[0]].bool() & target["masks"][pair[1]].bool()).sum()
    assert overlap == 0  # the new bar is painted on top: each pixel belongs to one object
    assert len(target["boxes"]) == len(target["labels"]) == len(target["masks"])
    with pytest.raises(ValueError, match="class"):
        experiment.shared_box_scene(images[:1], targets[:1], 99)
