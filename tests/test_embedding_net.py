"""Lesson 12's proposal-free pipeline: the two-headed U-Net, its detections, the shared-box scenes and their
separation rate, and the experiment that ties them to Mask R-CNN."""

import pytest
import torch

from segedu import runtime
from segedu.data.shapes import CLASSES, ShapesDataset
from segedu.data.shared_box import BAR, crossing_bar_scene, diagonal_bars, shared_box_scenes
from segedu.data.tasks import instance_ids
from segedu.losses.discriminative import discriminative_terms
from segedu.metrics.separation import pairs_separated
from segedu.models.embedding import EmbeddingUNet, dense_targets, detections_from_instances, segment_instances
from segedu.ops.roi import box_iou


@pytest.fixture(scope="module")
def scenes():
    return ShapesDataset(6, size=32, seed=5, variant="instance", max_objects=5).batch(range(6))


def test_outputs_and_losses(scenes):
    images, targets = scenes
    runtime.seed_everything(0)
    model = EmbeddingUNet(len(CLASSES), embedding_dim=4, base=4, depth=2)
    out = model(images)
    assert out["embedding"].shape == (6, 4, 32, 32) and out["semantic"].shape == (6, 6, 32, 32)
    assert model(list(images[:2]))["embedding"].shape == (2, 4, 32, 32)  # a list of images, as torchvision's
    assert model(torch.rand(1, 3, 30, 21))["semantic"].shape == (1, 6, 30, 21)  # any size
    losses = model(images, targets)
    assert set(losses) == {"pull", "push", "reg", "semantic"}
    semantic, instances = dense_targets(targets, (32, 32))
    terms = discriminative_terms(out["embedding"], instances)
    assert losses["push"].item() == pytest.approx(terms["push"].mean().item(), rel=1e-5)  # every image has one
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.parameters())  # both decoders and heads train


def test_the_loss_weights_and_the_background_weight(scenes):
    images, targets = scenes
    runtime.seed_everything(0)
    plain = EmbeddingUNet(6, embedding_dim=4, base=4, depth=2, background_weight=1.0)
    runtime.seed_everything(0)
    weighted = EmbeddingUNet(6, embedding_dim=4, base=4, depth=2, alpha=2.0, beta=0.0, gamma=0.0,
                             semantic_weight=3.0, background_weight=1.0)
    a, b = plain(images, targets), weighted(images, targets)
    assert b["pull"].item() == pytest.approx(2 * a["pull"].item(), rel=1e-5) and b["push"].item() == 0
    assert b["semantic"].item() == pytest.approx(3 * a["semantic"].item(), rel=1e-5)
    semantic, _ = dense_targets(targets, (32, 32))
    assert a["semantic"].item() == pytest.approx(
        torch.nn.functional.cross_entropy(plain(images)["semantic"], semantic).item(), rel=1e-5)


def test_dense_targets(scenes):
    _, targets = scenes
    semantic, instances = dense_targets(targets, (32, 32))
    assert semantic.shape == instances.shape == (6, 32, 32)
    for t, s, i in zip(targets, semantic, instances):
        assert torch.equal(i, instance_ids(t["masks"]))
        assert sorted(s.unique().tolist()) == sorted(set([0] + t["labels"].tolist()) & set(s.unique().tolist()))
    with pytest.raises(ValueError, match="like the images"):
        dense_targets(targets, (16, 16))
    with pytest.raises(TypeError, match="list of dicts"):
        dense_targets(semantic, (32, 32))


def test_detections_from_instances():
    ids = torch.zeros(1, 6, 6, dtype=torch.long)
    ids[0, :2, :3] = 4          # 6 pixels
    ids[0, 3:, 2:5] = 7         # 9 pixels
    probs = torch.zeros(1, 3, 6, 6)
    probs[:, 0] = 1.0           # background everywhere ...
    probs[0, :, :2, :3] = torch.tensor([0.5, 0.4, 0.1])[:, None, None]  # ... but instance 4: class 1 (0.4)
    probs[0, :, 3:, 2:5] = torch.tensor([0.1, 0.3, 0.6])[:, None, None]  # instance 7: class 2 (0.6)
    (d,) = detections_from_instances(ids, probs)
    assert d["labels"].tolist() == [1, 2]              # background never wins: it is excluded from the vote
    assert torch.allclose(d["scores"], torch.tensor([0.4, 0.6]))
    assert d["masks"].shape == (2, 1, 6, 6) and int(d["masks"][0].sum()) == 6 and int(d["masks"][1].sum()) == 9
    assert d["boxes"].tolist() == [[0.0, 0.0, 3.0, 2.0], [2.0, 3.0, 5.0, 6.0]]  # x2, y2 exclusive
    (empty,) = detections_from_instances(torch.zeros(1, 6, 6, dtype=torch.long), probs)
    assert len(empty["labels"]) == 0 and empty["masks"].shape == (0, 1, 6, 6)


def test_segment_instances_runs_the_whole_pipeline(scenes):
    images, targets = scenes
    runtime.seed_everything(0)
    model = EmbeddingUNet(6, embedding_dim=4, base=4, depth=2)
    out = segment_instances(model, images, batch_size=4)
    assert out["embedding"].shape == (6, 4, 32, 32) and out["probabilities"].shape == (6, 6, 32, 32)
    assert torch.equal(out["semantic"], out["probabilities"].argmax(1))
    assert ((out["instances"] > 0) == (out["semantic"] > 0)).all()  # every foreground pixel gets an instance
    assert len(out["detections"]) == 6 and model.training  # the model's mode is restored
    with pytest.raises(TypeError, match="EmbeddingUNet"):
        segment_instances(torch.nn.Conv2d(3, 3, 1), images)


def test_crossing_bar_scenes_share_one_box():
    data = ShapesDataset(400, size=64, seed=3, variant="instance")
    images, targets, pairs, sources = shared_box_scenes(data, 8)
    assert images.shape == (8, 3, 64, 64) and pairs.shape == (8, 2) and len(targets) == 8
    for image, target, (a, b), source in zip(images, targets, pairs.tolist(), sources.tolist()):
        assert target["labels"][a] == target["labels"][b] == BAR
        assert box_iou(target["boxes"][a:a + 1], target["boxes"][b:b + 1]).item() > 0.8
        assert not (target["masks"][a].bool() & target["masks"][b].bool()).any()  # no pixel in both
        original_image, original = data[source]
        assert diagonal_bars(original, 64)  # it came from a scene with a diagonal bar
        changed = (image != original_image).any(0)
        assert torch.equal(changed, target["masks"][b].bool() & changed)  # only the twin's pixels changed
    with pytest.raises(ValueError, match="fewer than count"):
        shared_box_scenes(ShapesDataset(3, size=64, seed=3, variant="instance"), 5)
    image, target = data[int(sources[0])]
    with pytest.raises(ValueError, match="must name a bar"):
        crossing_bar_scene(image, target, int((target["labels"] != BAR).nonzero()[0]) if (target["labels"] != BAR).any() else 99)


def test_pairs_separated():
    masks = torch.zeros(2, 8, 8, dtype=torch.uint8)
    masks[0, :, :4] = 1
    masks[1, :, 4:] = 1
    target = {"masks": masks}
    both = {"masks": masks[:, None].float(), "scores": torch.tensor([0.9, 0.8])}
    one = {"masks": masks[:1, None].float(), "scores": torch.tensor([0.9])}
    merged = {"masks": (masks.sum(0, keepdim=True) > 0)[:, None].float(), "scores": torch.tensor([0.9])}  # IoU 0.5
    low = {"masks": masks[:, None].float(), "scores": torch.tensor([0.9, 0.3])}
    found = pairs_separated([both, one, merged, low], [target] * 4, [[0, 1]] * 4)
    assert found.tolist() == [True, False, False, False]
    assert pairs_separated([low], [target], [[0, 1]], score_threshold=0.0).tolist() == [True]
    with pytest.raises(ValueError, match="same scenes"):
        pairs_separated([both], [target, target], [[0, 1]])


def test_the_experiment_runs_end_to_end_on_a_tiny_budget():
    from segedu.experiments import lesson12

    p = runtime.profile("quick").replace(det_steps=2, train_images=16, val_images=16, width=4)
    assert lesson12.budget(p)["steps"] == 2 and lesson12.budget(p)["batch_size"] == p.det_batch_size
    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=0.1)
    assert isinstance(lesson12.schedule(p)(optimizer), torch.optim.lr_scheduler.OneCycleLR)
    scores = lesson12.same_budget(seed=0, profile=p)
    for model in ("mask_rcnn", "embedding"):
        for key in ("AP", "AP50", "PQ", "SQ", "RQ", "separated"):
            assert 0.0 <= scores[f"{key}_{model}"] <= 1.0, (key, model, scores)
    assert set(lesson12.COMPARISONS) == {"shared_box"}


def test_the_semantic_decoder_stops_at_its_stride():
    for stride, levels in ((1, 3), (2, 2), (4, 1)):
        model = EmbeddingUNet(6, embedding_dim=3, base=4, depth=3, semantic_stride=stride)
        assert len(model.semantic_decoder) == levels
        out = model(torch.rand(2, 3, 20, 28))  # padded to 24 x 32 inside, cropped back
        assert out["semantic"].shape == (2, 6, 20, 28) and out["embedding"].shape == (2, 3, 20, 28)
    with pytest.raises(ValueError, match="semantic_stride must be one of"):
        EmbeddingUNet(6, depth=3, semantic_stride=8)
    with pytest.raises(TypeError, match="semantic_stride"):
        EmbeddingUNet(6, semantic_stride=2.0)
