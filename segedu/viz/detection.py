"""The layout of torchvision's Mask R-CNN (He et al., ICCV 2017), as ``segedu.models.maskrcnn`` builds it
(lesson 09): backbone and FPN, RPN, RoIAlign, the box head and the mask head, each with its traced shape.

The stages come from the model: the body's children (``backbone.body``), the FPN levels it returns
(``body.return_layers``, plus the max-pooled level of ``LastLevelMaxPool``), the levels the RoIAligns read
(``box_roi_pool.featmap_names``). Region tensors keep their first dimension, the number of regions (RoIs):
``100×32×7×7`` is 100 proposals of 32 channels on a 7x7 grid.

The trace runs in eval mode with the box score threshold at 0 for the one pass (restored after), so that
even an untrained model hands some detections to the mask head and every stage has a shape to show.
"""

from __future__ import annotations

from torch import nn

from segedu.viz.trace import DiagramBuilder

__all__ = ["mask_rcnn_layout"]


def _call(model: nn.Module, images):
    return model(list(images))  # torchvision's detectors take a list of [3, H, W] images


def _backbone(b: DiagramBuilder, backbone: nn.Module, previous: str) -> list[str]:
    """Body stages down column 0 and the feature maps the heads read in column 1; returns the latter."""
    body, fpn = getattr(backbone, "body", None), getattr(backbone, "fpn", None)
    rows, labels = {}, {}
    for row, (name, _) in enumerate(body.named_children() if body is not None else [], start=2):
        rows[name] = row
        label = f"stage {name}" if name.isdigit() else name  # a plain nn.Sequential numbers its children
        b.edge(previous, b.block(label, f"backbone.body.{name}", 0, row))
        previous = labels[name] = label
    returned = getattr(body, "return_layers", None)
    if fpn is None or not isinstance(returned, dict):
        # one feature map (``TinyBackbone``, a custom backbone): the backbone's output itself
        row = max(rows.values(), default=2)
        b.edge(previous, b.block("features", "backbone", 1, row))
        return ["features"]
    levels = []
    for layer, key in returned.items():
        levels.append(b.block(f"level {key}", "backbone.fpn", 1, rows[layer], select=key))
        b.edge(labels[layer], levels[-1], "skip", "1×1")
        last = rows[layer]
    for coarse, fine in zip(levels[::-1], levels[-2::-1]):
        b.edge(coarse, fine, label="2× up, +")
    if type(fpn.extra_blocks).__name__ == "LastLevelMaxPool":  # torchvision names its level "pool"
        b.edge(levels[-1], b.block("level pool", "backbone.fpn", 1, last + 1, select="pool"),
               label="max-pool")
        levels.append("level pool")
    return levels


def mask_rcnn_layout(b: DiagramBuilder, model: nn.Module) -> str:
    """Place the stages of a torchvision ``MaskRCNN`` on ``b``; returns the diagram's title."""
    b.call = _call
    heads = model.roi_heads
    b.overrides.append((heads, "score_thresh", 0.0))
    b.block("image", "", 0, 0, port="input", select=0, batched=False, kind="io")
    b.edge("image", b.block("normalised batch", "transform", 0, 1, select=(0, "tensors")))
    levels = _backbone(b, model.backbone, "normalised batch")
    read = set(getattr(heads.box_roi_pool, "featmap_names", []))
    centre = sum(x.y for x in b.blocks if x.name in levels) / len(levels)
    rpn = b.block("RPN proposals", "rpn", 2, centre, select=(0, 0), batched=False, kind="head")
    box_row, mask_row = centre - 2.5, centre + 2.5  # far enough that level -> RoIAlign arrows miss the RPN
    box_pool = b.block("box RoIAlign", "roi_heads.box_roi_pool", 3, box_row, batched=False, kind="merge")
    mask_pool = b.block("mask RoIAlign", "roi_heads.mask_roi_pool", 3, mask_row, batched=False, kind="merge")
    for level in levels:
        b.edge(level, rpn)
        if level == "features" or level.removeprefix("level ") in read:
            b.edge(level, box_pool, "branch")
            b.edge(level, mask_pool, "branch")
    b.edge(rpn, box_pool, label="proposals")
    b.edge(box_pool, b.block("box head", "roi_heads.box_head", 4, box_row, batched=False))
    scores = b.block("class scores", "roi_heads.box_predictor", 5, box_row - 0.5, select=0, batched=False, kind="head")
    deltas = b.block("box deltas", "roi_heads.box_predictor", 5, box_row + 0.5, select=1, batched=False, kind="head")
    detections = b.block("boxes", "", 6, box_row, select=(0, "boxes"), batched=False, kind="io")
    for name in (scores, deltas):
        b.edge("box head", name)
        b.edge(name, detections)
    b.edge(detections, mask_pool, label="detections")
    b.edge(mask_pool, b.block("mask head", "roi_heads.mask_head", 4, mask_row, batched=False))
    b.edge("mask head", b.block("mask logits", "roi_heads.mask_predictor", 5, mask_row, batched=False, kind="head"))
    b.edge("mask logits", b.block("masks", "", 6, mask_row, select=(0, "masks"), batched=False, kind="io"),
           label="paste")
    classes = heads.box_predictor.cls_score.out_features
    return f"Mask R-CNN: {len(levels)} feature map{'s' * (len(levels) > 1)}, {classes} classes with background"
