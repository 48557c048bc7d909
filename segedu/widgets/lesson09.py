"""Lesson 09 (Mask R-CNN): boxes and instance masks, and what the score threshold and NMS keep.

``draw_boxes`` and ``draw_instances`` draw targets and predictions; ``draw_anchors`` the RPN's anchors of every
FPN level (``segedu.models.maskrcnn.anchors_by_level``); ``draw_proposals`` boxes shaded by score (the RPN's
proposals before and after NMS); ``plot_bin_positions`` where RoIPool's and RoIAlign's bins read;
``plot_nms_tradeoff`` the NMS threshold sweep; ``draw_shared_box`` the scene with two objects in one box;
``detection_explorer`` views ``segedu.models.maskrcnn.filter_detections`` and ``segedu.metrics.mask_ap``
(He et al., ICCV 2017).
"""

from __future__ import annotations

import ipywidgets as W
from matplotlib.figure import Figure

from segedu import viz
from segedu.widgets.frame import FigureDemo

__all__ = ["draw_boxes", "draw_instances", "draw_anchors", "draw_proposals", "plot_bin_positions", "plot_nms_tradeoff",
           "draw_shared_box", "draw_detection_view", "detection_explorer"]

LEVEL_COLOURS = ["red", "orange", "cyan", "yellow", "magenta", "lime"]


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


def draw_anchors(ax, image, anchors: dict) -> list[str]:
    """The anchors at the centre cell of every feature level on ``image`` ``[3, H, W]``, one colour per level,
    on a grey canvas (large anchors stick out of the image). ``anchors``: ``{level: [h, w, A, 4]}``
    (``segedu.models.maskrcnn.anchors_by_level``). Returns the legend's labels ("level 0: 8 px, 16x16 cells")."""
    side = image.shape[-1]
    ax.imshow(viz.to_numpy_image(image))
    ax.set_facecolor("0.35")
    labels = []
    for (name, level), colour in zip(anchors.items(), LEVEL_COLOURS):
        h, w = level.shape[:2]
        centre = level[h // 2, w // 2]  # the A anchors of the centre cell
        draw_boxes(ax, centre, color=colour, linewidth=1.2)
        size = float(((centre[:, 2] - centre[:, 0]) * (centre[:, 3] - centre[:, 1])).sqrt().mean())
        labels.append(f"level {name}: {size:.0f} px, {h}x{w} cells")
        ax.plot([], [], color=colour, label=labels[-1])
    ax.legend(fontsize=7, loc="lower left")
    ax.set_xlim(-0.5 - side / 2, 1.5 * side)
    ax.set_ylim(1.5 * side, -0.5 - side / 2)
    ax.set_title("anchors of the centre cell, per FPN level", fontsize=9)
    return labels


def draw_proposals(ax, image, boxes, scores, title: str | None = None, cmap: str = "plasma") -> None:
    """Boxes ``[N, 4]`` on ``image``, the best-scored drawn last and brightest (``scores [N]`` in [0, 1])."""
    import matplotlib

    colours = matplotlib.colormaps[cmap]
    ax.imshow(viz.to_numpy_image(image), interpolation="nearest")
    order = scores.detach().cpu().argsort().tolist()
    for i in order:
        draw_boxes(ax, boxes[i:i + 1], color=colours(float(scores[i])), linewidth=0.6 + float(scores[i]))
    side = image.shape[-1]
    ax.set_xlim(-0.5, side - 0.5)
    ax.set_ylim(image.shape[-2] - 0.5, -0.5)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)


def plot_bin_positions(axes, shifts, looked: dict, errors: dict, true_first, offset: float, stride: int) -> None:
    """Two panels for lesson 09's RoIPool / RoIAlign measurement: where the first bin reads (``looked``
    ``{op: [S]}``, minus ``offset``) against the box shift, next to the true bin centre ``true_first [S]``;
    and the mean position error of the bins (``errors`` ``{op: [S]}``) against the shift."""
    import numpy as np

    def array(values):
        return np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=float)

    shifts = array(shifts)
    for (name, position), style in zip(looked.items(), ["-", "--", ":"]):
        axes[0].plot(shifts, array(position) - offset, style, label=name, linewidth=2)
        axes[1].plot(shifts, array(errors[name]), style, label=name, linewidth=2)
    axes[0].plot(shifts, array(true_first) - offset, color="k", linewidth=0.8, label="true bin centre")
    axes[0].set_xlabel("box shift (px)")
    axes[0].set_ylabel(f"x read by the first bin - {offset:g} (px)")
    axes[0].set_title("RoIPool ignores sub-cell shifts, RoIAlign follows them", fontsize=9)
    axes[1].set_xlabel("box shift (px)")
    axes[1].set_ylabel("mean |read - true| over bins (px)")
    axes[1].set_title(f"position error at stride {stride}", fontsize=9)
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)


def plot_nms_tradeoff(axes, thresholds, sweep: dict, lost: dict) -> None:
    """Lesson 09's NMS sweep: mask AP, AP50 and detections per scene of the trained model against the NMS
    threshold (``sweep`` ``{t: {"AP", "AP50", "per_scene"}}``), and the share of objects a perfect detector
    loses on crowded scenes (``lost`` ``{t: fraction}``)."""
    axes[0].plot(thresholds, [sweep[t]["AP"] for t in thresholds], "o-", label="mask AP")
    axes[0].plot(thresholds, [sweep[t]["AP50"] for t in thresholds], "s-", label="mask AP50")
    axes[0].set_xlabel("NMS IoU threshold (1 = no NMS)")
    axes[0].set_ylabel("AP")
    axes[0].set_title("trained model: duplicates hurt at high thresholds", fontsize=9)
    twin = axes[0].twinx()
    twin.plot(thresholds, [sweep[t]["per_scene"] for t in thresholds], "k:", label="detections per scene")
    twin.set_ylabel("detections per scene")
    lines = axes[0].get_lines() + twin.get_lines()
    axes[0].legend(lines, [line.get_label() for line in lines], loc="center left", fontsize=8)
    axes[1].plot(thresholds, [100 * lost[t] for t in thresholds], "o-", color="tab:red")
    axes[1].set_xlabel("NMS IoU threshold")
    axes[1].set_ylabel("objects deleted (%)")
    axes[1].set_title("perfect detector on crowded scenes: neighbours suppressed", fontsize=9)
    for ax in axes:
        ax.grid(alpha=0.3)


def draw_shared_box(axes, image, target: dict, detections: dict, head_mask, class_names,
                    found: int | None = None) -> None:
    """Lesson 09's shared-box scene in three panels: the ground truth, the detector's detections
    (``detections``, e.g. those with a score above 0.5; ``found``: how many of the two objects they segment)
    and the mask head's probabilities ``head_mask [H, W]`` on the shared box."""
    draw_instances(axes[0], image, target, class_names, "ground truth: two bars, one box")
    title = f"Mask R-CNN: {len(detections['labels'])} detections"
    if found is not None:
        title += f"\n{found} of the 2 crossing bars found"
    draw_instances(axes[1], image, detections, class_names, title)
    shown = axes[2].imshow(head_mask, vmin=0, vmax=1, cmap="viridis")
    axes[2].set_title("mask head on the shared box", fontsize=9)
    axes[2].axis("off")
    axes[2].figure.colorbar(shown, ax=axes[2], fraction=0.046, label="P(object)")


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
