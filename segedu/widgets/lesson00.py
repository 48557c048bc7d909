"""Lesson 00 (the segmentation task): one scene as semantic, instance and panoptic segmentation.

``scene_browser`` views ``segedu.data.tasks.semantic_from_instances``, ``instance_ids`` and
``panoptic_from_instances`` on an instance-variant ``ShapesDataset``.
"""

from __future__ import annotations

import ipywidgets as W
from matplotlib.figure import Figure

from segedu import viz
from segedu.widgets.frame import FigureDemo

__all__ = ["draw_scene_view", "scene_browser"]


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
