"""Lesson 09 (Mask R-CNN): boxes and instance masks, and what the score threshold and NMS keep.

``draw_boxes`` and ``draw_instances`` draw targets and predictions; ``detection_explorer`` views
``segedu.models.maskrcnn.filter_detections`` and ``segedu.metrics.mask_ap`` (He et al., ICCV 2017).
"""

from __future__ import annotations

import ipywidgets as W
from matplotlib.figure import Figure

from segedu import viz
from segedu.widgets.frame import FigureDemo

__all__ = ["draw_boxes", "draw_instances", "draw_detection_view", "detection_explorer"]


def draw_boxes(ax, boxes, labels=None, class_names=None, scores=None, color=None, linewidth: float = 1.5,
               linestyle: str = "-") -> None:
    """Rectangles ``boxes [N, 4]`` (x1, y1, x2, y2, pixels) on ``ax``, in the VOC colour of their label (or
    ``color``), tagged "name score" when ``class_names`` / ``scores`` are given."""
    from matplotlib.patches import Rectangle

    palette = viz.palette() / 255.0
    boxes = boxes.detach().cpu().tolist()
    labels = labels.detach().cpu().tolist() if labels is not None else [None] * len(boxes)
    scores = scores.detach().cpu().tolist() if scores is not None else [None] * len(boxes)
    for (x1, y1, x2, y2), label, score in zip(boxes, labels, scores):
        edge = color if color is not None else (palette[label] if label is not None else "white")
        # pixel i covers [i - 0.5, i + 0.5] in imshow's coordinates, box coordinates start at the pixel's edge
        ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=edge,
                               linewidth=linewidth, linestyle=linestyle))
        tag = [class_names[label] if class_names is not None and label is not None else None,
               f"{score:.2f}" if score is not None else None]
        tag = " ".join(t for t in tag if t)
        if tag:
            ax.text(x1 - 0.5, y1 - 1, tag, fontsize=7, color="white", va="bottom",
                    bbox=dict(facecolor=edge, edgecolor="none", pad=0.5, alpha=0.8))


def draw_instances(ax, image, instances: dict, class_names=None, title: str | None = None,
                   mask_threshold: float = 0.5, alpha: float = 0.45) -> None:
    """An image with instance masks (filled in their class colour, outlined) and boxes.

    ``instances`` is a target dict (``masks [N, H, W]`` uint8) or a prediction dict (``masks [N, 1, H, W]``
    probabilities, cut at ``mask_threshold``, and ``scores``); lower scores are painted first.
    """
    import numpy as np

    rgb = viz.to_numpy_image(image).copy()
    masks = instances["masks"].detach().cpu()
    if masks.dim() == 4:
        masks = masks[:, 0]
    masks = (masks > mask_threshold) if masks.is_floating_point() else masks.bool()
    labels = instances["labels"].detach().cpu()
    scores = instances.get("scores")
    order = scores.detach().cpu().argsort().tolist() if scores is not None else range(len(labels))
    palette = viz.palette() / 255.0
    for i in order:
        m = masks[i].numpy()
        rgb[m] = (1 - alpha) * rgb[m] + alpha * palette[int(labels[i])]
    ax.imshow(np.clip(rgb, 0, 1), interpolation="nearest")
    for i in order:
        if masks[i].any():
            ax.contour(masks[i].numpy().astype(float), levels=[0.5], colors=[palette[int(labels[i])]], linewidths=1)
    draw_boxes(ax, instances["boxes"], labels, class_names, scores)
    ax.set_xlim(-0.5, rgb.shape[1] - 0.5)
    ax.set_ylim(rgb.shape[0] - 0.5, -0.5)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)


def draw_detection_view(fig: Figure, images, raw: list, targets: list, class_names, index: int,
                        score_threshold: float, iou_threshold: float) -> dict:
    """Ground truth next to the detections that survive ``score_threshold`` and class-wise NMS at
    ``iou_threshold`` (``segedu.models.maskrcnn.filter_detections`` on the raw detections of scene ``index``).

    Returns ``{"kept", "above_score", "raw", "AP50"}``: detections kept, detections above the score threshold
    before NMS, raw detections, and the mask AP50 of this one scene (``segedu.metrics.mask_ap``).
    """
    from segedu.metrics import mask_ap
    from segedu.models.maskrcnn import filter_detections

    detections = raw[index]
    above = int((detections["scores"] > score_threshold).sum())
    kept = filter_detections(detections, score_threshold, iou_threshold)
    ap50 = mask_ap([kept], [targets[index]])["AP50"]
    axes = fig.subplots(1, 2)
    draw_instances(axes[0], images[index], targets[index], class_names,
                   f"ground truth: {len(targets[index]['labels'])} objects")
    draw_instances(axes[1], images[index], kept, class_names,
                   f"kept {len(kept['scores'])} of {above} boxes with score > {score_threshold:.2f}")
    present = sorted(set(targets[index]["labels"].tolist()) | set(kept["labels"].tolist()))
    fig.legend(handles=viz.legend_handles(class_names, present), loc="center right", fontsize=8, frameon=False)
    fig.subplots_adjust(right=0.8)
    fig.suptitle(f"scene {index}: NMS at IoU > {iou_threshold:.2f} suppresses; mask AP50 of this scene {ap50:.2f}",
                 fontsize=10)
    return {"kept": len(kept["scores"]), "above_score": above, "raw": len(detections["scores"]), "AP50": ap50}


def detection_explorer(images, raw: list, targets: list, class_names) -> FigureDemo:
    """Lesson 09: a scene slider, a score threshold and an NMS IoU threshold over a trained Mask R-CNN's raw
    detections (``segedu.models.maskrcnn.raw_detections``), next to the ground truth."""
    if not (len(images) == len(raw) == len(targets)) or len(raw) == 0:
        raise ValueError(f"images, raw and targets must list the same scenes, got {len(images)}, {len(raw)}, {len(targets)}")
    controls = {
        "index": W.IntSlider(value=0, min=0, max=len(raw) - 1, description="scene"),
        "score_threshold": W.FloatSlider(value=0.5, min=0.05, max=0.95, step=0.05, description="score >"),
        "iou_threshold": W.FloatSlider(value=0.5, min=0.05, max=1.0, step=0.05, description="NMS IoU >"),
    }

    def draw(fig, **values):
        return draw_detection_view(fig, images, raw, targets, class_names, **values)

    return FigureDemo(draw, controls, figsize=(8, 3.8), title="Score threshold and NMS: what the detector keeps")
