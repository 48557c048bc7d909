"""Lesson 09's widget and drawing helpers redraw when a control moves and report what they show."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from segedu import widgets  # noqa: E402
from segedu.data.shapes import CLASSES, ShapesDataset  # noqa: E402


@pytest.fixture(scope="module")
def scenes():
    """Three scenes and fake raw detections: each object found three times - a good box, a shifted duplicate
    that outranks the next object's good box, and a weak duplicate - plus one low-score false positive."""
    images, targets = ShapesDataset(3, size=48, seed=4, variant="instance", min_objects=2).batch(range(3))
    raw = []
    for t in targets:
        n = len(t["labels"])
        size = (t["boxes"][:, 2:] - t["boxes"][:, :2]).repeat(1, 2)[:, None]  # [n, 1, 4]: w, h, w, h
        shift = torch.tensor([[0.0, 0, 0, 0], [0.1, 0.05, 0.1, 0.05], [-0.1, 0.05, -0.1, 0.05]])  # IoU ~0.75
        boxes = (t["boxes"][:, None] + shift[None] * size).reshape(-1, 4)
        rank = 0.1 * torch.arange(n)  # object k: good box 0.9 - 0.1 k, its duplicate just below, weak one 0.3
        scores = torch.stack([0.9 - rank, 0.85 - rank, torch.full((n,), 0.3)], 1)
        labels = t["labels"].repeat_interleave(3)
        masks = t["masks"].float().repeat_interleave(3, dim=0)[:, None]
        raw.append({
            "boxes": torch.cat([boxes, torch.tensor([[1.0, 1, 9, 9]])]),
            "labels": torch.cat([labels, torch.tensor([1])]),
            "scores": torch.cat([scores.reshape(-1), torch.tensor([0.1])]),
            "masks": torch.cat([masks, torch.zeros(1, 1, 48, 48)]),
        })
    return images, raw, targets


def test_detection_explorer_redraws_and_reports(scenes):
    images, raw, targets = scenes
    demo = widgets.detection_explorer(images, raw, targets, CLASSES)
    n = len(targets[0]["labels"])
    png = demo.update(index=0, score_threshold=0.05, iou_threshold=1.0)
    assert demo.result == {"kept": 3 * n + 1, "above_score": 3 * n + 1, "raw": 3 * n + 1, "AP50": demo.result["AP50"]}
    # NMS at 0.5 removes the duplicates (IoU ~0.75 > 0.5): two detections per object become one ...
    assert demo.update(iou_threshold=0.5) != png
    assert demo.result["kept"] == n + 1
    assert demo.result["AP50"] == pytest.approx(1.0)  # every object found once, with its true mask
    # ... and a score threshold removes the false positive too.
    demo.update(score_threshold=0.5)
    assert demo.result["kept"] == n and demo.result["above_score"] == 2 * n
    pictures = {demo.update(index=i) for i in range(3)}
    assert len(pictures) == 3
    with pytest.raises(ValueError, match="same scenes"):
        widgets.detection_explorer(images, raw[:2], targets, CLASSES)


def test_draw_instances_handles_targets_and_predictions(scenes):
    images, raw, targets = scenes
    fig, axes = plt.subplots(1, 2)
    widgets.draw_instances(axes[0], images[0], targets[0], CLASSES, "truth")
    widgets.draw_instances(axes[1], images[0], raw[0], CLASSES, "prediction")
    assert len(axes[0].patches) == len(targets[0]["labels"])  # one rectangle per object
    assert len(axes[1].patches) == len(raw[0]["labels"])
    tags = [t.get_text() for t in axes[1].texts]
    assert any(t.startswith(CLASSES[int(raw[0]["labels"][0])]) and "0." in t for t in tags)  # "name score"
    assert axes[0].get_title() == "truth"
    plt.close(fig)


def test_draw_anchors_draws_the_centre_cell_of_every_level():
    from segedu.models.maskrcnn import anchors_by_level, mask_rcnn

    torch.manual_seed(0)
    model = mask_rcnn(6, image_size=64, width=4)
    image = torch.rand(3, 64, 64)
    anchors = anchors_by_level(model, image)
    fig, ax = plt.subplots()
    labels = widgets.draw_anchors(ax, image, anchors)
    assert labels[0] == "level 0: 8 px, 16x16 cells" and labels[-1] == "level pool: 64 px, 2x2 cells"
    assert len(ax.patches) == 3 * len(anchors)  # three aspect ratios per level
    plt.close(fig)


def test_the_other_pictures_draw(scenes):
    images, raw, targets = scenes
    fig, axes = plt.subplots(1, 3)
    widgets.draw_proposals(axes[0], images[0], raw[0]["boxes"], raw[0]["scores"], "proposals")
    assert len(axes[0].patches) == len(raw[0]["boxes"]) and axes[0].get_title() == "proposals"
    shifts = torch.linspace(0, 16, 5)
    looked = {"a": shifts + 64, "b": shifts * 0 + 64}
    widgets.plot_bin_positions(axes[1:], shifts, looked, {"a": shifts * 0, "b": shifts}, shifts + 64, 64, 16)
    assert len(axes[1].get_lines()) == 3 and len(axes[2].get_lines()) == 2
    plt.close(fig)
    fig, axes = plt.subplots(1, 2)
    sweep = {t: {"AP": t, "AP50": t, "per_scene": 10 * t} for t in (0.5, 1.0)}
    widgets.plot_nms_tradeoff(axes, [0.5, 1.0], sweep, {0.5: 0.1, 1.0: 0.0})
    assert len(axes[0].get_lines()) == 2 and len(axes[1].get_lines()) == 1
    plt.close(fig)
    fig, axes = plt.subplots(1, 3)
    widgets.draw_shared_box(axes, images[0], targets[0], raw[0], torch.rand(48, 48), CLASSES, found=1)
    assert axes[1].get_title() == f"Mask R-CNN: {len(raw[0]['labels'])} detections\n1 of the 2 crossing bars found"
    plt.close(fig)
