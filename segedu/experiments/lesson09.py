"""Lesson 09's experiments: the positive-RoI rule of the mask loss, and two objects that share one box.

**The positive-RoI rule** (He et al., "Mask R-CNN", ICCV 2017, section 3: "The mask loss L_mask is defined only
on positive RoIs"). A detector is trained; then its mask head is trained again from scratch, once per rule, on
the frozen backbone and RPN, at one budget (``head_budget``), on the same batches and the same sampled RoIs
(torchvision's sampling: the RPN's proposals plus the ground-truth boxes, ``rois_per_image`` per image, at most
25% positive). Only the RoIs that enter the mask loss, and their targets, differ:

* ``"positives"`` - the positive RoIs only (IoU >= 0.5 with an object), the target the object's mask cropped
  to the RoI (``segedu.ops.roi.mask_targets``), as Mask R-CNN;
* ``"all_empty"`` - every sampled RoI; a negative RoI is background, as the box head labels it, so its target
  is an empty mask (in the channel of its best-overlapping object's class);
* ``"all_crops"`` - every sampled RoI, each with the crop of its best-overlapping object's mask (empty only
  where the RoI misses the object).

Each head is then put into the detector in turn and scored on the same detections: COCO mask AP
(``segedu.metrics.mask_ap``), and the mask IoU and predicted-area ratio of the masks it draws on the
ground-truth boxes (the head alone, without the detector's box errors). ``positive_roi_rule`` returns the
numbers for one seed, ``train_mask_heads`` the heads themselves (for the lesson's pictures).

**Two objects, one box** (the lecture's limit of proposal-based instance segmentation): ``shared_box_scene``
turns a validation scene into an X of two bars of one class with the same box.
"""

from __future__ import annotations

import copy
import functools

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import MaskRCNN

from segedu import runtime, validate
from segedu.experiments.common import Comparison, resolve_profile
from segedu.metrics.instance import mask_ap, mask_iou
from segedu.ops.roi import match_proposals, roi_align

__all__ = ["RULES", "head_budget", "sample_rois", "train_mask_heads", "with_mask_head", "score_mask_head",
           "positive_roi_rule", "shared_box_scene", "COMPARISONS"]

RULES = ("positives", "all_crops", "all_empty")


def head_budget(profile=None) -> dict:
    """The mask heads' training budget for ``profile``: ``train_mask_heads`` keyword arguments (half the
    profile's ablation steps at the detector's batch size and learning rate, 16 RoIs per image)."""
    p = resolve_profile(profile)
    return dict(steps=max(1, p.ablation_steps // 2), batch_size=p.det_batch_size, lr=p.lr, rois_per_image=16)


def sample_rois(proposals: torch.Tensor, target: dict, rois_per_image: int, positive_fraction: float,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """torchvision's RoI sampling for one image: the proposals plus the ground-truth boxes, matched by IoU
    (``match_proposals``), then at most ``positive_fraction * rois_per_image`` random positives and random
    negatives for the rest (``BalancedPositiveNegativeSampler``).

    Returns ``(boxes [R, 4], matched [R], positive [R] bool)``: the sampled RoIs, the index of each one's
    best-overlapping object, and whether it is positive (IoU >= 0.5)."""
    boxes = torch.cat([proposals, target["boxes"].to(proposals)])
    matched, positive = match_proposals(boxes, target["boxes"].to(proposals))
    pos, neg = torch.nonzero(positive).flatten(), torch.nonzero(~positive).flatten()
    n_pos = min(len(pos), int(rois_per_image * positive_fraction))
    n_neg = min(len(neg), rois_per_image - n_pos)
    pos = pos[torch.randperm(len(pos), generator=generator)[:n_pos].to(pos.device)]
    neg = neg[torch.randperm(len(neg), generator=generator)[:n_neg].to(neg.device)]
    keep = torch.cat([pos, neg])
    return boxes[keep], matched[keep], positive[keep]


def _fresh_head(detector: MaskRCNN) -> nn.Module:
    """A copy of the detector's mask head + predictor with new weights (torchvision's init: Kaiming normal,
    fan-out, zero biases)."""
    head = copy.deepcopy(nn.ModuleDict({"head": detector.roi_heads.mask_head,
                                        "predictor": detector.roi_heads.mask_predictor}))
    for module in head.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return head


def train_mask_heads(detector: MaskRCNN, train_data, steps: int, batch_size: int, lr: float, seed: int = 0,
                     rules=RULES, rois_per_image: int = 16, positive_fraction: float = 0.25,
                     device=None) -> dict[str, nn.Module]:
    """Train a fresh mask head per rule of ``RULES`` on ``detector``'s frozen features.

    Every step draws ``batch_size`` scenes of ``train_data`` (a ``ShapesDataset(variant="instance")``), runs
    the frozen backbone and RPN once (eval mode), samples the RoIs once (``sample_rois``), and gives every head
    the same RoIs: the rule decides which of them enter its loss and their targets (see the module's
    docstring); the loss is binary cross entropy between the mask of the matched object's class and the
    target, the matched object's mask RoIAligned to the RoI (``project_masks_on_boxes``). Adam at ``lr``, the
    same initial weights for every head (``seed``). ``detector`` is left in eval mode, its weights untouched.
    Returns ``{rule: nn.ModuleDict(head=, predictor=)}``."""
    if not isinstance(detector, MaskRCNN):
        raise TypeError(f"detector must be a torchvision MaskRCNN, got {type(detector).__name__}")
    steps = validate.positive_int(steps, "steps")
    batch_size = validate.positive_int(batch_size, "batch_size")
    rois_per_image = validate.positive_int(rois_per_image, "rois_per_image")
    rules = tuple(validate.choice(rule, "rules", RULES) for rule in rules)
    device = torch.device(device) if device is not None else next(detector.parameters()).device
    detector = detector.to(device).eval()
    runtime.seed_everything(seed)
    start = _fresh_head(detector)
    heads = {rule: copy.deepcopy(start).to(device).train() for rule in rules}
    optimizers = {rule: torch.optim.Adam(head.parameters(), lr=lr) for rule, head in heads.items()}
    generator = torch.Generator().manual_seed(seed)
    size = 2 * detector.roi_heads.mask_roi_pool.output_size[0]  # the predictor's 2x transposed conv: 14 -> 28
    for _ in range(steps):
        index = torch.randint(0, len(train_data), (batch_size,), generator=generator).tolist()
        images, targets = train_data.batch(index)
        with torch.no_grad():
            batch, _ = detector.transform(list(images.to(device)))  # 64 px scenes: normalised, not resized
            features = detector.backbone(batch.tensors)
            proposals, _ = detector.rpn(batch, features)
            rois, labels, masks, positive = [], [], [], []
            for props, target in zip(proposals, targets):
                boxes, matched, pos = sample_rois(props, target, rois_per_image, positive_fraction, generator)
                gt = target["masks"][:, None].to(boxes)
                masks.append(roi_align(gt, torch.cat([matched[:, None].to(boxes), boxes], 1), size, 1.0)[:, 0])
                rois.append(boxes), labels.append(target["labels"].to(device)[matched]), positive.append(pos)
            pooled = detector.roi_heads.mask_roi_pool(features, rois, batch.image_sizes)
            labels, masks, positive = torch.cat(labels), torch.cat(masks), torch.cat(positive)
        for rule, head in heads.items():
            use = positive if rule == "positives" else torch.ones_like(positive)
            if not bool(use.any()):
                continue
            want = masks * positive[:, None, None] if rule == "all_empty" else masks  # negatives: nothing
            logits = head["predictor"](head["head"](pooled[use]))  # [R, K, 28, 28]
            picked = logits[torch.arange(len(logits), device=device), labels[use]]
            loss = F.binary_cross_entropy_with_logits(picked, want[use])
            optimizers[rule].zero_grad(set_to_none=True)
            loss.backward()
            optimizers[rule].step()
    return {rule: head.eval() for rule, head in heads.items()}


def with_mask_head(detector: MaskRCNN, head: nn.Module) -> MaskRCNN:
    """A copy of ``detector`` (eval mode) whose mask head and predictor are ``head``'s (``train_mask_heads``):
    the same boxes, classes and scores, only the masks change."""
    model = copy.deepcopy(detector).eval()
    model.roi_heads.mask_head, model.roi_heads.mask_predictor = head["head"], head["predictor"]
    return model


@torch.no_grad()
def score_mask_head(detector: MaskRCNN, head: nn.Module, images: torch.Tensor, targets: list) -> dict[str, float]:
    """``detector`` with ``head`` as its mask head, on validation scenes: ``{"AP", "AP50", "iou", "area"}`` -
    COCO mask AP and AP50 of its detections, and, for the masks it draws on the ground-truth boxes with the
    true classes, the mean mask IoU with the objects and the mean predicted / true area (1 = right size)."""
    from segedu.models.maskrcnn import masks_for_boxes

    model = with_mask_head(detector, head)
    device = next(model.parameters()).device
    predictions = [{k: v.cpu() for k, v in p.items()} for p in model([im.to(device) for im in images])]
    ap = mask_ap(predictions, targets)
    ious, areas = [], []
    for image, target in zip(images, targets):
        probs = masks_for_boxes(model, image.to(device), target["boxes"].to(device), target["labels"].to(device))
        drawn, truth = probs[:, 0].cpu() > 0.5, target["masks"].bool()
        ious.append(mask_iou(drawn, truth).diagonal())
        areas.append(drawn.flatten(1).sum(1) / truth.flatten(1).sum(1).clamp(min=1))
    return {"AP": ap["AP"], "AP50": ap["AP50"], "iou": float(torch.cat(ious).mean()),
            "area": float(torch.cat(areas).mean())}


def _detector(seed: int, p: runtime.Profile, device) -> MaskRCNN:
    """The lesson's detector for ``seed``: ``mask_rcnn`` trained with ``fit`` as in lesson 09 (the
    ``segedu.cache`` reuses the weights when ``$SEGEDU_CACHE`` is set)."""
    from segedu.data.shapes import CLASSES, ShapesDataset
    from segedu.models.maskrcnn import mask_rcnn
    from segedu.train import fit

    train = ShapesDataset(p.train_images, size=p.image_size, seed=0, variant="instance")
    runtime.seed_everything(seed)
    model = mask_rcnn(len(CLASSES), image_size=p.image_size, width=p.width)

    def schedule(optimizer):
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=p.lr, total_steps=p.det_steps, pct_start=0.15)

    fit(model, train, loss_fn=None, steps=p.det_steps, batch_size=p.det_batch_size, lr=p.lr, scheduler=schedule,
        grad_clip=10.0, device=device, seed=seed, amp=False, channels_last=False, progress=False)
    return model.eval()


@functools.lru_cache(maxsize=4)
def _rule_scores(seed: int, p: runtime.Profile) -> tuple:
    from segedu.data.shapes import ShapesDataset

    device = runtime.device()
    detector = _detector(seed, p, device)
    train = ShapesDataset(p.train_images, size=p.image_size, seed=0, variant="instance")
    val_images, val_targets = ShapesDataset(p.val_images, size=p.image_size, seed=1, variant="instance").batch(
        range(p.val_images))
    heads = train_mask_heads(detector, train, seed=seed, device=device, **head_budget(p))
    return tuple((f"{key}_{rule}", value) for rule, head in heads.items()
                 for key, value in score_mask_head(detector, head, val_images, val_targets).items())


def positive_roi_rule(seed: int = 0, profile=None) -> dict[str, float]:
    """The lesson's detector trained with ``seed``, then a mask head per rule trained on its frozen features
    at ``head_budget(profile)`` (``train_mask_heads``), scored by ``score_mask_head``: ``{"AP_positives",
    "AP50_positives", "iou_positives", "area_positives", "AP_all_empty", ..., "area_all_crops"}``."""
    return dict(_rule_scores(validate.integer(seed, "seed"), resolve_profile(profile)))


def shared_box_scene(images: torch.Tensor, targets: list, class_index: int) -> tuple[torch.Tensor, dict, list[int]]:
    """An X of two bars with one box, made from validation scenes (lesson 09, section 8).

    Takes the largest roughly diagonal bar of all the scenes (``segedu.data.shared_box.diagonal_bars``: sides
    >= 30% of the image, aspect ratio between 1/1.6 and 1.6) and adds its mirror image inside the same box in a
    contrasting colour (``crossing_bar_scene``: the new bar is painted on top). ``class_index`` must be the bar
    class. Returns ``(image [3, H, W], target, pair)``: the scene, its instance target (``boxes``, ``labels``,
    ``masks``) and the indices of the two bars in it."""
    from segedu.data.shared_box import BAR, crossing_bar_scene, diagonal_bars

    if validate.integer(class_index, "class_index") != BAR:
        raise ValueError(f"class_index must be the bar class {BAR} (the X is made of two bars), got {class_index}")
    side = images.shape[-1]
    candidates = [(float((t["boxes"][j, 2] - t["boxes"][j, 0]) * (t["boxes"][j, 3] - t["boxes"][j, 1])), i, j)
                  for i, t in enumerate(targets) for j in diagonal_bars(t, side)]
    if not candidates:
        raise ValueError(f"no bar large and diagonal enough in the {len(targets)} scenes")
    _, i, j = max(candidates)
    image, target, pair = crossing_bar_scene(images[i], targets[i], j)
    return image, target, list(pair)


COMPARISONS = {
    "positive_roi_rule": Comparison(function=positive_roi_rule, better="iou_positives", worse="iou_all_empty",
                                    margin=0.25),
}
