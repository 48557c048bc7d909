"""A small Mask R-CNN: torchvision's ``MaskRCNN`` sized for the 64-pixel shape scenes (lesson 09).

He, Gkioxari, Dollar & Girshick, "Mask R-CNN", ICCV 2017, with the Feature Pyramid Network of Lin et al.,
"Feature Pyramid Networks for Object Detection", CVPR 2017. torchvision implements every stage; this module
only chooses sizes, because the defaults are made for 800-pixel COCO photos and a ResNet-50:

1. **Backbone** - a tiny VGG-style body (pairs of 3x3 conv + BN + ReLU, each stage halving the resolution:
   strides 2, 4, 8, 16; channels ``w, 2w, 4w, 8w``) trained from scratch, optionally with an FPN on strides
   4, 8, 16 (+ a max-pooled level at 32). No pretrained weights anywhere: nothing is ever downloaded.
2. **RPN** - anchors of 1/8, 1/4, 1/2 and 1x the image side (8-64 px at 64 px, one size per FPN level),
   aspect ratios 1:2, 1:1, 2:1, because the shapes are 8 to 40 px across. Fewer proposals than the COCO
   defaults: a scene holds a handful of objects.
3. **RoIAlign** - 7 x 7 features for the box head, 14 x 14 for the mask head, 2 x 2 samples per bin as in
   the paper (``torchvision.ops.MultiScaleRoIAlign``; ``segedu.ops.roi.roi_align`` is the same op by hand).
4. **Box head** - two fully connected layers, then per-class scores and box deltas.
5. **Mask head** - two 3x3 convs and a 2x transposed conv to ``K`` masks of 28 x 28, one per class, each
   with its own sigmoid; the loss looks only at the mask of the ground-truth class, so classes do not compete
   for pixels (the paper's "decoupling" of masks and classes).

The transform that torchvision puts in front resizes every image so its short side is ``min_size``; here
``min_size = max_size = image_size``, so the 64-pixel scenes stay 64 pixels instead of being blown up to 800.

Helpers look inside a model for the lesson: ``anchors_by_level`` (the RPN's anchors, per FPN level and
position), ``rpn_proposals`` (the RPN's proposals before and after its NMS, rebuilt from our
``decode_boxes`` and ``batched_nms`` and equal to torchvision's), ``raw_detections`` (the detections before
the final NMS), ``filter_detections`` (score threshold + our class-wise NMS, reproducing the model's
post-processing) and ``masks_for_boxes`` (the mask head's answer for boxes we choose).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from segedu import runtime, validate
from segedu.ops.boxes import decode_boxes
from segedu.ops.roi import batched_nms

__all__ = ["tiny_body", "TinyBackbone", "mask_rcnn", "DEFAULTS", "anchors_by_level", "rpn_proposals", "raw_detections",
           "filter_detections", "masks_for_boxes"]

# Fewer proposals and sampled RoIs than torchvision's COCO defaults (2000/1000 proposals, 512 RoIs per
# image): our scenes hold 1-4 objects, and every RoI costs time on a CPU. Any of these can be overridden.
DEFAULTS: dict = dict(
    rpn_pre_nms_top_n_train=300,  # per FPN level, before the RPN's NMS
    rpn_post_nms_top_n_train=150,
    rpn_pre_nms_top_n_test=200,
    rpn_post_nms_top_n_test=100,
    rpn_batch_size_per_image=128,  # anchors sampled for the RPN loss
    box_batch_size_per_image=64,  # proposals sampled for the box and mask losses (25% positive at most)
    box_detections_per_img=100,  # COCO's limit, which mask AP assumes
)


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def tiny_body(width: int = 16) -> nn.Sequential:
    """Four stages of two 3x3 convs, each starting with stride 2: ``[B, 3, H, W]`` ->
    ``stem [B, w, H/2, W/2]`` -> ``layer1 [B, 2w, H/4, W/4]`` -> ``layer2 [B, 4w, H/8, W/8]`` ->
    ``layer3 [B, 8w, H/16, W/16]`` (named children, so torchvision's ``IntermediateLayerGetter`` can tap them).
    BatchNorm, because the body trains from scratch with batches of 16 or more."""
    w = validate.positive_int(width, "width")
    return nn.Sequential(OrderedDict(
        stem=nn.Sequential(_conv(3, w), _conv(w, w, stride=2)),
        layer1=nn.Sequential(_conv(w, 2 * w, stride=2), _conv(2 * w, 2 * w)),
        layer2=nn.Sequential(_conv(2 * w, 4 * w, stride=2), _conv(4 * w, 4 * w)),
        layer3=nn.Sequential(_conv(4 * w, 8 * w, stride=2), _conv(8 * w, 8 * w)),
    ))


class TinyBackbone(nn.Module):
    """The body up to ``layer2`` as a single-map backbone: ``[B, 3, H, W]`` -> ``[B, 4w, H/8, W/8]``.

    ``out_channels`` tells torchvision's heads how many channels to expect. Used when ``fpn=False``: one
    stride-8 map for every object size, as in the original Faster R-CNN with a single feature map.
    """

    def __init__(self, width: int = 16):
        super().__init__()
        body = tiny_body(width)
        self.body = nn.Sequential(body.stem, body.layer1, body.layer2)
        self.out_channels = 4 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def mask_rcnn(
    num_classes: int,
    backbone: str = "tiny",
    fpn: bool = True,
    image_size: int | None = None,
    width: int | None = None,
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0),
    **kwargs,
) -> MaskRCNN:
    """torchvision's ``MaskRCNN`` with a tiny backbone and sizes for ``image_size``-pixel shape scenes.

    Args:
        num_classes: classes **including background**, as torchvision counts them (6 for ``ShapesDataset``).
        backbone: ``"tiny"`` (see ``tiny_body``), the only built-in one; or any ``nn.Module`` with an
            ``out_channels`` attribute returning one map ``[B, C, h, w]`` or an ``OrderedDict`` of maps
            (then pass ``rpn_anchor_generator``, ``box_roi_pool`` and ``mask_roi_pool`` that match it).
        fpn: with the FPN (levels at strides 4, 8, 16, 32) or a single stride-8 map.
        image_size: side of the training images; sets the transform (no resizing) and the anchor sizes.
            Default ``runtime.profile().image_size``.
        width: base channel width of the backbone (heads scale with it). Default ``runtime.profile().width``.
        aspect_ratios: anchor height / width ratios, the same at every location and level.
        **kwargs: any ``torchvision.models.detection.MaskRCNN`` argument; overrides ``DEFAULTS`` and the
            choices above (e.g. ``box_nms_thresh``, ``box_score_thresh``, ``rpn_anchor_generator``).

    Returns:
        a ``MaskRCNN``: in training mode ``model(images, targets)`` returns a dict of five losses
        (``loss_classifier``, ``loss_box_reg``, ``loss_mask``, ``loss_objectness``, ``loss_rpn_box_reg``); in
        eval mode ``model(images)`` returns one dict per image with ``boxes [N, 4]``, ``labels [N]``,
        ``scores [N]`` and ``masks [N, 1, H, W]`` (probabilities). ``images`` is a list of ``[3, H, W]``
        tensors in [0, 1]; targets are ``ShapesDataset(variant="instance")`` dicts.
    """
    if validate.integer(num_classes, "num_classes") < 2:
        raise ValueError(f"num_classes must be an int >= 2 (background + at least one class), got {num_classes!r}")
    validate.flag(fpn, "fpn")
    profile = runtime.profile()
    image_size = validate.integer(profile.image_size if image_size is None else image_size, "image_size", minimum=16)
    width = validate.positive_int(profile.width if width is None else width, "width")

    # Anchor sizes follow the image: objects span 1/8 to 2/3 of the side whatever the resolution.
    s = image_size / 64
    ratios = tuple(validate.positive_number(r, f"aspect_ratios[{i}]") for i, r in enumerate(aspect_ratios))
    if isinstance(backbone, nn.Module):
        if not hasattr(backbone, "out_channels"):
            raise TypeError("a custom backbone needs an out_channels attribute (channels of its feature maps)")
        net, levels = backbone, ["0"]
        anchors = AnchorGenerator(((8 * s, 16 * s, 32 * s),), (ratios,))
    elif backbone == "tiny" and fpn:
        net = BackboneWithFPN(
            tiny_body(width),
            return_layers={"layer1": "0", "layer2": "1", "layer3": "2"},
            in_channels_list=[2 * width, 4 * width, 8 * width],
            out_channels=2 * width,  # small: the RPN head and the RoI heads run on these channels
        )  # adds a max-pooled level "pool" (stride 32) for the RPN, as torchvision's ResNet-FPN
        levels = ["0", "1", "2"]
        anchors = AnchorGenerator(((8 * s,), (16 * s,), (32 * s,), (64 * s,)), (ratios,) * 4)
    elif backbone == "tiny":
        net, levels = TinyBackbone(width), ["0"]
        anchors = AnchorGenerator(((8 * s, 16 * s, 32 * s),), (ratios,))
    else:
        error = ValueError if isinstance(backbone, str) else TypeError
        raise error(f"backbone must be 'tiny' or an nn.Module with out_channels, got {backbone!r}")

    channels = net.out_channels
    hidden = 8 * width  # box head width
    mask_channels = 2 * width
    options = dict(
        min_size=image_size,
        max_size=image_size,  # torchvision would otherwise upscale every image to 800 px
        rpn_anchor_generator=anchors,
        box_roi_pool=MultiScaleRoIAlign(levels, output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(channels * 7 * 7, hidden),
        box_predictor=FastRCNNPredictor(hidden, num_classes),
        mask_roi_pool=MultiScaleRoIAlign(levels, output_size=14, sampling_ratio=2),
        mask_head=MaskRCNNHeads(channels, (mask_channels, mask_channels), 1),
        mask_predictor=MaskRCNNPredictor(mask_channels, mask_channels, num_classes),
        **DEFAULTS,
    )
    options.update(kwargs)
    # num_classes is implied by the predictors we pass (torchvision refuses both).
    return MaskRCNN(net, **options)


# --------------------------------------------------------------------------- looking inside the detector


def _image_list(images) -> list[torch.Tensor]:
    expected = "images must be a tensor [B, 3, H, W] or a list of [3, H, W] tensors"
    if isinstance(images, torch.Tensor):
        if images.dim() != 4:
            raise ValueError(f"{expected}, got shape {tuple(images.shape)}")
        return list(images)
    if not isinstance(images, (list, tuple)) or not all(isinstance(i, torch.Tensor) for i in images):
        raise TypeError(f"{expected}, got {type(images).__name__}")
    if not all(i.dim() == 3 for i in images):
        raise ValueError(f"{expected}, got shapes {[tuple(i.shape) for i in images]}")
    return list(images)


def _check_model(model) -> None:
    if not isinstance(model, MaskRCNN):
        raise TypeError(f"model must be a torchvision MaskRCNN (see mask_rcnn()), got {type(model).__name__}")


def _features(model: MaskRCNN, image: torch.Tensor):
    """``(batch, features)``: the transformed one-image batch and the backbone's maps as an ``OrderedDict``."""
    validate.tensor(image, "image", 3, dtype="floating", layout="[3, H, W] in [0, 1]")
    batch, _ = model.transform([image])  # normalise (and resize, a no-op at image_size)
    features = model.backbone(batch.tensors)
    if isinstance(features, torch.Tensor):
        features = OrderedDict([("0", features)])
    return batch, features


@torch.no_grad()
def anchors_by_level(model: MaskRCNN, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """The RPN's anchors for ``image`` ``[3, H, W]``, as torchvision's ``AnchorGenerator`` makes them: one
    tensor ``[h, w, A, 4]`` (x1, y1, x2, y2 in the transformed image's pixels) per feature level, keyed by the
    level's name. ``A`` = sizes x aspect ratios of that level; anchor ``[i, j, a]`` is centred on the
    level's cell ``(i, j)`` (at ``(j * stride, i * stride)``: torchvision puts anchors on cell corners)."""
    _check_model(model)
    was_training = model.training
    model.eval()
    try:
        batch, features = _features(model, image)
        maps = list(features.values())
        anchors = model.rpn.anchor_generator(batch, maps)[0]  # [sum of h * w * A, 4], level by level
    finally:
        model.train(was_training)
    per_location = model.rpn.anchor_generator.num_anchors_per_location()
    result, start = {}, 0
    for (name, f), a in zip(features.items(), per_location):
        h, w = f.shape[-2:]
        result[name] = anchors[start:start + h * w * a].view(h, w, a, 4)
        start += h * w * a
    return result


@torch.no_grad()
def rpn_proposals(model: MaskRCNN, image: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
    """The RPN's proposals for one image **before** and **after** its NMS (eval mode), rebuilt by hand.

    torchvision's ``RegionProposalNetwork`` scores every anchor (objectness logit) and regresses its deltas;
    the proposals are the anchors moved by the deltas (``segedu.ops.boxes.decode_boxes``, weights 1). Then,
    per image: the ``rpn_pre_nms_top_n_test`` best of **each level**, sigmoid, clipping to the image,
    dropping boxes under 1e-3 px, NMS **per level** at ``rpn_nms_thresh`` (0.7; ``segedu.ops.boxes.
    batched_nms`` with the level as the category), and the ``rpn_post_nms_top_n_test`` best. ``post_nms``
    equals what ``model.rpn`` hands the RoI heads (``tests/test_maskrcnn.py``).

    Returns ``{"pre_nms": {...}, "post_nms": {...}}``, each with ``boxes [N, 4]`` (pixels of ``image``),
    ``scores [N]`` (objectness probability, decreasing) and ``levels [N]`` (index of the FPN level).
    """
    from torchvision.models.detection.rpn import concat_box_prediction_layers
    from torchvision.models.detection.transform import resize_boxes
    from torchvision.ops import boxes as box_ops

    _check_model(model)
    rpn, was_training = model.rpn, model.training
    model.eval()
    try:
        batch, features = _features(model, image)
        maps = list(features.values())
        objectness, deltas = rpn.head(maps)
        anchors = rpn.anchor_generator(batch, maps)[0]
        per_level = [o[0].numel() for o in objectness]  # anchors per level: A * h * w
        objectness, deltas = concat_box_prediction_layers(objectness, deltas)  # [sum, 1], [sum, 4]
        boxes = decode_boxes(deltas, anchors, rpn.box_coder.weights, rpn.box_coder.bbox_xform_clip)
        levels = torch.repeat_interleave(torch.arange(len(per_level), device=boxes.device),
                                         torch.tensor(per_level, device=boxes.device))
        top = torch.cat([torch.topk(logits, min(rpn.pre_nms_top_n(), len(logits))).indices + start
                         for logits, start in zip(objectness[:, 0].split(per_level),
                                                  torch.tensor([0] + per_level[:-1]).cumsum(0).tolist())])
        boxes = box_ops.clip_boxes_to_image(boxes[top], batch.image_sizes[0])
        scores, levels = torch.sigmoid(objectness[top, 0]), levels[top]
        keep = box_ops.remove_small_boxes(boxes, rpn.min_size)
        keep = keep[scores[keep] >= rpn.score_thresh]
        boxes, scores, levels = boxes[keep], scores[keep], levels[keep]
        kept = batched_nms(boxes, scores, levels, rpn.nms_thresh)[: rpn.post_nms_top_n()]
        order = torch.sort(scores, descending=True, stable=True).indices
    finally:
        model.train(was_training)
    back = (batch.image_sizes[0], tuple(image.shape[-2:]))
    return {name: {"boxes": resize_boxes(boxes[i], *back), "scores": scores[i], "levels": levels[i]}
            for name, i in (("pre_nms", order), ("post_nms", kept))}


@torch.no_grad()
def raw_detections(model: MaskRCNN, images, score_threshold: float = 0.05) -> list[dict]:
    """The model's detections **before** its final per-class NMS (eval mode, no gradients).

    torchvision's ``RoIHeads`` turns every proposal into one scored box per class, drops scores
    ``<= score_threshold``, runs class-wise NMS at ``box_nms_thresh`` and keeps the best
    ``box_detections_per_img``. Here the NMS threshold is set to 1 (an IoU is never > 1, so nothing is
    suppressed) and the cap removed, for one call; the settings are restored afterwards. The mask head runs on
    every raw box, and a box's mask depends only on its own features, so ``filter_detections(raw, s, t)``
    gives exactly what the model returns with ``box_score_thresh = s`` and ``box_nms_thresh = t``.

    Returns one dict per image: ``boxes [N, 4]``, ``labels [N]``, ``scores [N]``, ``masks [N, 1, H, W]``.
    """
    _check_model(model)
    score_threshold = validate.probability(score_threshold, "score_threshold")
    images = _image_list(images)
    heads = model.roi_heads
    saved = heads.score_thresh, heads.nms_thresh, heads.detections_per_img, model.training
    heads.score_thresh, heads.nms_thresh, heads.detections_per_img = score_threshold, 1.0, 10**9
    model.eval()
    try:
        return model(images)
    finally:
        heads.score_thresh, heads.nms_thresh, heads.detections_per_img = saved[:3]
        model.train(saved[3])


def filter_detections(
    detections: dict, score_threshold: float = 0.05, iou_threshold: float = 0.5, max_detections: int = 100
) -> dict:
    """What Mask R-CNN's post-processing keeps of one image's raw detections (``raw_detections``):
    scores ``> score_threshold``, then class-wise NMS at ``iou_threshold`` (``segedu.ops.roi.batched_nms``,
    by hand), then the ``max_detections`` best. Returns a dict with the same keys, rows selected."""
    if not isinstance(detections, dict):
        raise TypeError(f"detections must be a dict (one image of raw_detections), got {type(detections).__name__}")
    if not {"boxes", "labels", "scores"} <= set(detections):
        raise ValueError(f"detections must have boxes, labels and scores (one image of raw_detections), "
                         f"got keys {sorted(detections)}")
    score_threshold = validate.probability(score_threshold, "score_threshold")
    iou_threshold = validate.probability(iou_threshold, "iou_threshold")
    max_detections = validate.integer(max_detections, "max_detections", minimum=0)
    keep = torch.nonzero(detections["scores"] > score_threshold).flatten()
    kept = batched_nms(detections["boxes"][keep], detections["scores"][keep], detections["labels"][keep], iou_threshold)
    keep = keep[kept[:max_detections]]
    return {key: value[keep] for key, value in detections.items()}


@torch.no_grad()
def masks_for_boxes(model: MaskRCNN, image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The mask head's answer for boxes **we** choose: ``[N, 1, H, W]`` probabilities, pasted into the image.

    Runs the backbone, RoIAligns each box (``mask_roi_pool``), the mask head, and reads the mask of the given
    class (sigmoid), exactly as Mask R-CNN does for its own detections. The head sees nothing but the features
    inside the box: two identical boxes with the same label get identical masks, whatever the image holds.

    Args:
        image: ``[3, H, W]`` in [0, 1]; boxes: ``[N, 4]`` (x1, y1, x2, y2) in pixels; labels: int ``[N]``.
    """
    _check_model(model)
    from torchvision.models.detection.roi_heads import maskrcnn_inference
    from torchvision.models.detection.transform import resize_boxes

    validate.tensor(image, "image", 3, layout="[3, H, W]")
    validate.tensor(boxes, "boxes", 2, layout="[N, 4]")
    if boxes.shape[1] != 4:
        raise ValueError(f"boxes must be a tensor [N, 4], got shape {tuple(boxes.shape)}")
    validate.tensor(labels, "labels", layout=f"[N] with N = {boxes.shape[0]}")
    if labels.shape != boxes.shape[:1]:
        raise ValueError(f"labels must be a tensor [N] with N = {boxes.shape[0]}, got shape {tuple(labels.shape)}")
    was_training = model.training
    model.eval()
    try:
        batch, features = _features(model, image)
        size = batch.image_sizes[0]
        scaled = resize_boxes(boxes.to(batch.tensors), tuple(image.shape[-2:]), size)
        heads = model.roi_heads
        x = heads.mask_predictor(heads.mask_head(heads.mask_roi_pool(features, [scaled], [size])))
        probs = maskrcnn_inference(x, [labels.to(x.device)])
        result = [{"boxes": scaled, "masks": probs[0]}]
        return model.transform.postprocess(result, [size], [tuple(image.shape[-2:])])[0]["masks"]
    finally:
        model.train(was_training)
