"""The small Mask R-CNN builder and the helpers that look inside it (lesson 09)."""

import pytest
import torch
from torchvision.models.detection import MaskRCNN

from segedu.data.shapes import ShapesDataset
from segedu.models import maskrcnn
from segedu.ops import roi
from segedu.train import fit

LOSSES = {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}


@pytest.fixture(scope="module")
def scenes():
    return ShapesDataset(8, size=64, seed=3, variant="instance").batch(range(4))


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the Mask R-CNN builder must never download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.mark.parametrize("fpn", [True, False])
def test_trains_and_predicts_at_the_image_size(scenes, fpn):
    images, targets = scenes
    model = maskrcnn.mask_rcnn(6, fpn=fpn, image_size=64, width=4)
    assert isinstance(model, MaskRCNN)
    model.train()
    losses = model(list(images), targets)
    assert set(losses) == LOSSES
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    first_conv = model.backbone.body.stem[0][0] if fpn else model.backbone.body[0][0][0]
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0

    model.eval()
    batch, _ = model.transform(list(images))
    assert tuple(batch.tensors.shape[-2:]) == (64, 64), "64 px scenes must not be resized to torchvision's 800"
    with torch.no_grad():
        out = model(list(images))
    assert len(out) == 4
    for det in out:
        n = len(det["scores"])
        assert n <= 100 and det["boxes"].shape == (n, 4) and det["labels"].shape == (n,)
        assert det["masks"].shape == (n, 1, 64, 64)
        assert det["masks"].min() >= 0 and det["masks"].max() <= 1
        assert (det["labels"] >= 1).all() and (det["labels"] <= 5).all()


def test_anchors_follow_the_image_size():
    small = maskrcnn.mask_rcnn(6, image_size=64, width=4).rpn.anchor_generator
    large = maskrcnn.mask_rcnn(6, image_size=128, width=4).rpn.anchor_generator
    assert small.sizes == ((8.0,), (16.0,), (32.0,), (64.0,))
    assert large.sizes == tuple(tuple(2 * s for s in level) for level in small.sizes)
    assert small.num_anchors_per_location() == [3, 3, 3, 3]
    single = maskrcnn.mask_rcnn(6, fpn=False, image_size=64, width=4, aspect_ratios=(0.25, 1.0, 4.0))
    assert single.rpn.anchor_generator.num_anchors_per_location() == [9]


def test_kwargs_override_the_defaults():
    model = maskrcnn.mask_rcnn(6, width=4, box_nms_thresh=0.3, rpn_post_nms_top_n_test=7)
    assert model.roi_heads.nms_thresh == 0.3
    assert model.rpn._post_nms_top_n["testing"] == 7
    assert model.roi_heads.fg_bg_sampler.batch_size_per_image == maskrcnn.DEFAULTS["box_batch_size_per_image"]


def test_the_models_roi_pooler_is_our_roi_align(scenes):
    images, targets = scenes
    model = maskrcnn.mask_rcnn(6, fpn=False, image_size=64, width=4).eval()
    batch, _ = model.transform(list(images))
    features = model.backbone(batch.tensors)
    boxes = [t["boxes"] for t in targets]
    theirs = model.roi_heads.box_roi_pool({"0": features}, boxes, batch.image_sizes)
    ours = roi.roi_align(features, boxes, 7, spatial_scale=1 / 8, sampling_ratio=2, aligned=False)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_filtered_raw_detections_are_the_models_output(scenes):
    images, _ = scenes
    torch.manual_seed(1)
    model = maskrcnn.mask_rcnn(6, image_size=64, width=4).eval()
    raw = maskrcnn.raw_detections(model, images)
    assert model.roi_heads.nms_thresh == 0.5 and model.roi_heads.detections_per_img == 100  # restored
    with torch.no_grad():
        final = model(list(images))
    for r, f in zip(raw, final):
        assert len(r["scores"]) > len(f["scores"]) > 0  # the untrained model has overlapping boxes to suppress
        mine = maskrcnn.filter_detections(r, 0.05, 0.5, 100)
        for key in ("boxes", "labels", "scores", "masks"):
            torch.testing.assert_close(mine[key], f[key])
    count = lambda t: len(maskrcnn.filter_detections(raw[0], 0.05, t, max_detections=10**6)["scores"])
    assert count(0.2) < count(0.5) < count(1.0) == len(raw[0]["scores"])  # a lower threshold suppresses more


def test_masks_for_boxes_reproduces_the_detections_and_ignores_the_rest(scenes):
    images, _ = scenes
    torch.manual_seed(2)
    model = maskrcnn.mask_rcnn(6, image_size=64, width=4).eval()
    with torch.no_grad():
        det = model([images[0]])[0]
    masks = maskrcnn.masks_for_boxes(model, images[0], det["boxes"][:5], det["labels"][:5])
    torch.testing.assert_close(masks, det["masks"][:5], atol=1e-6, rtol=0)
    box = det["boxes"][:1]
    twice = maskrcnn.masks_for_boxes(model, images[0], box.repeat(2, 1), det["labels"][:1].repeat(2))
    assert torch.equal(twice[0], twice[1]), "one box, one class: one mask"


def test_overfits_two_scenes(scenes):
    images, targets = scenes
    torch.manual_seed(0)
    model = maskrcnn.mask_rcnn(6, image_size=64, width=8)
    history = fit(model, [(images[:2], targets[:2])], loss_fn=None, steps=40, lr=3e-3, device="cpu", progress=False)
    first, last = sum(history.loss[:3]) / 3, sum(history.loss[-3:]) / 3
    assert last < 0.5 * first, (first, last)
    assert set(history.parts) == LOSSES


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        maskrcnn.mask_rcnn(1)
    with pytest.raises(ValueError, match="backbone"):
        maskrcnn.mask_rcnn(6, backbone="resnet50")
    with pytest.raises(TypeError, match="fpn"):
        maskrcnn.mask_rcnn(6, fpn="yes")
    with pytest.raises(ValueError, match="image_size"):
        maskrcnn.mask_rcnn(6, image_size=8)
    with pytest.raises(TypeError, match="MaskRCNN"):
        maskrcnn.raw_detections(torch.nn.Linear(2, 2), torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="images must be"):
        maskrcnn.raw_detections(maskrcnn.mask_rcnn(6, width=4), torch.zeros(3, 64, 64))


def test_a_custom_backbone():
    backbone = maskrcnn.TinyBackbone(4)
    model = maskrcnn.mask_rcnn(3, backbone=backbone, image_size=64).eval()
    with torch.no_grad():
        out = model([torch.rand(3, 64, 64)])
    assert out[0]["masks"].shape[1:] == (1, 64, 64)


@pytest.mark.parametrize("bad, error", [(True, TypeError), (2.5, TypeError), (-1, ValueError)])
@pytest.mark.parametrize("make", [
    lambda v: maskrcnn.mask_rcnn(v),
    lambda v: maskrcnn.mask_rcnn(6, width=v),
    lambda v: maskrcnn.mask_rcnn(6, image_size=v),
    lambda v: maskrcnn.tiny_body(v),
    lambda v: maskrcnn.TinyBackbone(v),
    lambda v: maskrcnn.filter_detections(
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long), "scores": torch.zeros(0)},
        max_detections=v),
])
def test_counts_follow_the_validation_rule(make, bad, error):
    """A bool or a float where a count is expected is a TypeError, a negative count a ValueError."""
    with pytest.raises(error):
        make(bad)


def test_arguments_of_a_wrong_type():
    with pytest.raises(TypeError, match="images must be"):
        maskrcnn.raw_detections(maskrcnn.mask_rcnn(6, width=4), "scene.png")
    with pytest.raises(TypeError, match="backbone"):
        maskrcnn.mask_rcnn(6, backbone=18)
    with pytest.raises(TypeError, match="detections"):
        maskrcnn.filter_detections([])
    with pytest.raises(TypeError, match=r"aspect_ratios\[1\]"):
        maskrcnn.mask_rcnn(6, width=4, aspect_ratios=(1.0, True))
    with pytest.raises(ValueError, match=r"aspect_ratios\[1\]"):
        maskrcnn.mask_rcnn(6, width=4, aspect_ratios=(1.0, -1.0))


def test_rpn_proposals_rebuild_the_rpns_output(scenes):
    images, _ = scenes
    torch.manual_seed(1)
    model = maskrcnn.mask_rcnn(6, image_size=64, width=4)
    model.train()  # the function switches to eval mode and back
    for image in images:
        ours = maskrcnn.rpn_proposals(model, image)
        assert model.training
        model.eval()
        with torch.no_grad():
            batch, _ = model.transform([image])
            theirs, _ = model.rpn(batch, model.backbone(batch.tensors))
        model.train()
        pre, post = ours["pre_nms"], ours["post_nms"]
        assert torch.equal(post["boxes"], theirs[0])
        # Before NMS: the best rpn_pre_nms_top_n_test of each level (200, or all of a small level), by score.
        assert len(pre["boxes"]) == 200 + 8 * 8 * 3 + 4 * 4 * 3 + 2 * 2 * 3
        assert torch.all(pre["scores"][:-1] >= pre["scores"][1:])
        assert len(post["boxes"]) == maskrcnn.DEFAULTS["rpn_post_nms_top_n_test"]
        # After NMS no two proposals of one level overlap by more than the RPN's threshold (0.7).
        for level in post["levels"].unique():
            b = post["boxes"][post["levels"] == level]
            iou = roi.box_iou(b, b).fill_diagonal_(0)
            assert iou.max() <= model.rpn.nms_thresh


def test_rpn_proposals_refuse_other_models():
    with pytest.raises(TypeError, match="MaskRCNN"):
        maskrcnn.rpn_proposals(torch.nn.Conv2d(3, 3, 1), torch.rand(3, 64, 64))
    with pytest.raises(TypeError, match="MaskRCNN"):
        maskrcnn.anchors_by_level(torch.nn.Conv2d(3, 3, 1), torch.rand(3, 64, 64))
