"""Lesson 00 (the segmentation task): one scene as three tasks, boundary F1's tolerance, the sliding window.

``scene_browser`` views ``segedu.data.tasks.semantic_from_instances``, ``instance_ids`` and
``panoptic_from_instances`` on an instance-variant ``ShapesDataset``. ``draw_boundary_match`` draws what
``segedu.metrics.boundary_match`` computes for one class - the true and predicted boundaries, their tolerance
bands and the pixels that find no partner - and ``boundary_f1_explorer`` moves a label map sideways past the
tolerance. ``draw_sliding_window`` shows two neighbouring windows and each layer's cost from
``segedu.sliding_window.layer_costs``.
"""

from __future__ import annotations

import ipywidgets as W
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from segedu import viz
from segedu.widgets.frame import FigureDemo

__all__ = ["draw_scene_view", "scene_browser", "draw_boundary_match", "shift_labels", "draw_boundary_shift",
           "boundary_f1_explorer", "draw_sliding_window"]


def draw_scene_view(fig: Figure, dataset, index: int, view: str) -> dict:
    """The scene ``index`` of an instance-variant ``ShapesDataset`` next to its ``view``:
    "semantic" (class per pixel), "instance" (a colour per object) or "panoptic" (class and instance)."""
    from segedu.data.tasks import instance_ids, panoptic_from_instances, semantic_from_instances

    image, target = dataset[index]
    labels, masks = target["labels"], target["masks"]
    if view == "semantic":
        picture = viz.colorize(semantic_from_instances(labels, masks))
    elif view == "instance":
        picture = viz.colorize_instances(instance_ids(masks))
    elif view == "panoptic":
        picture = viz.colorize_panoptic(panoptic_from_instances(labels, masks))
    else:
        raise ValueError(f"view must be 'semantic', 'instance' or 'panoptic', got {view!r}")
    axes = fig.subplots(1, 2)
    axes[0].imshow(viz.to_numpy_image(image))
    axes[0].set_title(f"scene {index}")
    axes[1].imshow(picture, interpolation="nearest")
    names = ", ".join(dataset.classes[int(c)] for c in labels)
    axes[1].set_title(f"{view}: {len(labels)} object{'' if len(labels) == 1 else 's'}")
    for ax in axes:
        ax.axis("off")
    if view != "instance":
        present = [0] + sorted(set(labels.tolist()))
        fig.legend(handles=viz.legend_handles(dataset.classes, present), loc="center right", fontsize=9, frameon=False)
        fig.subplots_adjust(right=0.72)
    fig.suptitle(names, fontsize=9)
    return {"objects": len(labels), "view": view}


def scene_browser(dataset) -> FigureDemo:
    """Lesson 00: browse scenes and switch between semantic, instance and panoptic views."""
    controls = {
        "index": W.IntSlider(value=0, min=0, max=len(dataset) - 1, description="scene"),
        "view": W.Dropdown(options=["semantic", "instance", "panoptic"], value="semantic", description="view"),
    }
    return FigureDemo(lambda fig, **v: draw_scene_view(fig, dataset, **v), controls, title="One scene, three tasks")


# --------------------------------------------------------------------------- boundary F1 and its tolerance

# The colours of the boundary pictures: the true boundary green, the predicted one blue, a pixel that finds no
# partner within the tolerance red; a band (the pixels within the tolerance of a boundary) a light tint.
_TRUE, _PRED, _MISS = (0.10, 0.55, 0.15), (0.15, 0.35, 0.90), (0.90, 0.10, 0.10)
_TRUE_BAND, _PRED_BAND, _INSIDE = (0.78, 0.93, 0.78), (0.80, 0.86, 1.00), (0.93, 0.93, 0.93)


def _crop(*maps, margin: int) -> tuple[slice, slice]:
    """Rows and columns around every True pixel of ``maps`` (bool ``[H, W]``), ``margin`` pixels wider."""
    union = torch.stack(maps).any(0)
    if not bool(union.any()):
        return slice(None), slice(None)
    rows, cols = union.any(1).nonzero().flatten(), union.any(0).nonzero().flatten()
    h, w = union.shape
    return (slice(max(int(rows[0]) - margin, 0), min(int(rows[-1]) + margin + 1, h)),
            slice(max(int(cols[0]) - margin, 0), min(int(cols[-1]) + margin + 1, w)))


def _paint(shape, layers) -> np.ndarray:
    """An RGB float ``[H, W, 3]`` picture: white, then each ``(bool map, colour)`` of ``layers`` painted on top."""
    picture = np.ones((*shape, 3))
    for where, colour in layers:
        picture[where.cpu().numpy()] = colour
    return picture


def draw_boundary_match(fig: Figure, pred_mask: torch.Tensor, true_mask: torch.Tensor, tolerance: float,
                        crop: bool = True) -> dict:
    """Boundary F1 of one class, drawn: what ``segedu.metrics.boundary_match`` computes.

    Left (precision): the band within ``tolerance`` of the true boundary, the true boundary, and the predicted
    boundary - blue where it lies in the band, red where it does not. Right (recall): the same with the roles
    swapped. ``pred_mask``, ``true_mask``: bool ``[H, W]``; ``crop`` zooms on the object. Returns the
    precision, recall and F1.
    """
    from matplotlib.patches import Patch

    from segedu.metrics import boundary_match

    m = boundary_match(pred_mask, true_mask, tolerance)
    rows, cols = _crop(pred_mask, true_mask, margin=int(tolerance) + 3) if crop else (slice(None), slice(None))
    inside = (pred_mask | true_mask)[rows, cols]
    precision_view = _paint(inside.shape, [
        (inside, _INSIDE), (m["true_band"][rows, cols], _TRUE_BAND), (m["true_boundary"][rows, cols], _TRUE),
        (m["pred_matched"][rows, cols], _PRED), ((m["pred_boundary"] & ~m["pred_matched"])[rows, cols], _MISS)])
    recall_view = _paint(inside.shape, [
        (inside, _INSIDE), (m["pred_band"][rows, cols], _PRED_BAND), (m["pred_boundary"][rows, cols], _PRED),
        (m["true_matched"][rows, cols], _TRUE), ((m["true_boundary"] & ~m["true_matched"])[rows, cols], _MISS)])
    axes = fig.subplots(1, 2)
    axes[0].imshow(precision_view, interpolation="nearest")
    axes[0].set_title(f"precision {m['precision']:.2f}: predicted boundary\nwithin {tolerance:g} px of the true one?",
                      fontsize=9)
    axes[1].imshow(recall_view, interpolation="nearest")
    axes[1].set_title(f"recall {m['recall']:.2f}: true boundary\nwithin {tolerance:g} px of the predicted one?",
                      fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Patch(color=_TRUE, label="true boundary"), Patch(color=_PRED, label="predicted boundary"),
               Patch(color=_MISS, label="no partner within the tolerance"),
               Patch(color=_TRUE_BAND, label="tolerance band of the true boundary"),
               Patch(color=_PRED_BAND, label="tolerance band of the predicted boundary")]
    handles.insert(0, Patch(color=_INSIDE, label="inside either mask"))
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(f"boundary F1 = 2PR / (P + R) = {m['f1']:.3f}", fontsize=10)
    fig.subplots_adjust(bottom=0.2, top=0.8)
    return {"precision": m["precision"], "recall": m["recall"], "f1": m["f1"]}


def shift_labels(masks: torch.Tensor, pixels: int) -> torch.Tensor:
    """Label maps ``[..., H, W]`` moved ``pixels`` to the right; the columns that come in are background (0)."""
    width = masks.shape[-1]
    return F.pad(masks, (pixels, 0))[..., :width]


def draw_boundary_shift(fig: Figure, masks: torch.Tensor, index: int, shift: int, tolerance: float) -> dict:
    """Scene ``index`` of ``masks`` (int64 ``[N, H, W]``): its largest object class against the same labels moved
    ``shift`` pixels to the right, drawn with ``draw_boundary_match``; also returns that class's IoU."""
    target = masks[index]
    counts = torch.bincount(target.flatten(), minlength=2)[1:]
    label = 1 + int(counts.argmax())
    true_mask, pred_mask = target == label, shift_labels(target, shift) == label
    result = draw_boundary_match(fig, pred_mask, true_mask, tolerance)
    union = int((true_mask | pred_mask).sum())
    result["iou"] = int((true_mask & pred_mask).sum()) / union if union else 1.0
    fig.suptitle(f"shift {shift} px, tolerance {tolerance:g} px: boundary F1 {result['f1']:.3f}, "
                 f"IoU {result['iou']:.3f}", fontsize=10)
    return result


def boundary_f1_explorer(masks: torch.Tensor) -> FigureDemo:
    """Lesson 00: move a true label map sideways and watch boundary F1 against IoU as the shift passes the
    tolerance. ``masks``: int64 ``[N, H, W]``."""
    controls = {
        "index": W.IntSlider(value=0, min=0, max=len(masks) - 1, description="scene"),
        "shift": W.IntSlider(value=3, min=0, max=8, description="shift (px)"),
        "tolerance": W.IntSlider(value=2, min=0, max=6, description="tolerance (px)"),
    }
    return FigureDemo(lambda fig, **v: draw_boundary_shift(fig, masks, **v), controls, figsize=(8, 4),
                      title="Boundary F1: a match within the tolerance")


# --------------------------------------------------------------------------- the sliding window


def draw_sliding_window(fig: Figure, image: torch.Tensor, model, pixel: tuple[int, int]) -> dict:
    """Left: ``image`` ``[3, H, W]`` with the windows of ``model`` (a ``segedu.sliding_window.PatchClassifier``)
    around ``pixel`` (row, column) and its right-hand neighbour. Right: each layer's multiply-adds per pixel,
    sliding window (``o^2 m``) against one fully convolutional pass (``m``), from ``layer_costs``."""
    from matplotlib.patches import Rectangle

    from segedu.sliding_window import layer_costs

    p, (i, j) = model.patch, pixel
    axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.4]})
    # Zoom on the two windows: a crop 1.5 windows wide around the pixel, so that one image pixel is visible.
    h, w = image.shape[-2:]
    top, left = max(i - p, 0), max(j - p, 0)
    bottom, right = min(i + p + 2, h), min(j + p + 2, w)
    axes[0].imshow(viz.to_numpy_image(image[:, top:bottom, left:right]), interpolation="nearest",
                   extent=(left - 0.5, right - 0.5, bottom - 0.5, top - 0.5))
    for dj, colour, style in ((0, "yellow", "-"), (1, "cyan", "--")):
        axes[0].add_patch(Rectangle((j + dj - p // 2 - 0.5, i - p // 2 - 0.5), p, p, fill=False, lw=2, ec=colour,
                                    ls=style))
        axes[0].plot([j + dj], [i], "s", ms=4, color=colour, mec="k")
    shared = (p - 1) / p
    axes[0].set_title(f"the {p}x{p} windows of two neighbouring\npixels share {shared:.0%} of their pixels",
                      fontsize=9)
    axes[0].set_xticks([])
    axes[0].set_yticks([])
    rows = layer_costs(model)
    names = [name for name, _, _ in rows]
    sliding = [o * o * m for _, o, m in rows]
    dense = [m for _, _, m in rows]
    x = np.arange(len(rows))
    axes[1].bar(x - 0.2, sliding, 0.4, label="sliding window: o² m", color="tab:red")
    axes[1].bar(x + 0.2, dense, 0.4, label="one dense pass: m", color="tab:blue")
    for k, (_, o, _) in enumerate(rows):
        axes[1].annotate(f"x{o * o}", (x[k] - 0.2, sliding[k]), ha="center", va="bottom", fontsize=8)
    axes[1].set_xticks(x, names)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("multiply-adds per pixel")
    ratio = sum(sliding) / sum(dense)
    axes[1].set_title(f"each layer's outputs are recomputed o² times: {ratio:.1f}x in all\n"
                      "(per pixel, away from the image border)", fontsize=9)
    axes[1].legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return {"ratio": ratio, "shared": shared}
