"""Interactive demos for the lessons (ipywidgets), each a thin view over tested functions.

Every demo is a ``FigureDemo``: a row of controls (sliders, dropdowns) above a picture. Moving a control calls
the demo's ``draw(fig, **values)`` function, which only arranges results of tested package functions on a
matplotlib figure; the figure is rendered to PNG into an ``ipywidgets.Image``. So the demos work in any
Jupyter front-end without extra extensions, and ``demo.update(**values)`` can be called from tests.
"""

from __future__ import annotations

from typing import Callable

import ipywidgets as W
import torch
from matplotlib.figure import Figure

from segedu import viz

# --- the common frame --------------------------------------------------------------------------------------


class FigureDemo(W.VBox):
    """Controls above a matplotlib picture.

    ``draw(fig, **values)`` draws on a cleared figure; what it returns is kept in ``self.result`` (a number or
    a dict the tests and the lesson can read). ``update(**values)`` sets controls, redraws and returns the PNG.
    """

    def __init__(self, draw: Callable, controls: dict[str, W.ValueWidget], figsize=(8, 3.2), title: str | None = None):
        self.draw = draw
        self.controls = controls
        self.figure = Figure(figsize=figsize, dpi=90)
        self.image = W.Image(format="png", layout=W.Layout(max_width="100%"))
        self.result = None
        self._updating = False
        for control in controls.values():
            control.observe(self._on_change, names="value")
        header = [W.HTML(f"<b>{title}</b>")] if title else []
        super().__init__(header + [W.HBox(list(controls.values())), self.image])
        self.update()

    def values(self) -> dict:
        return {name: control.value for name, control in self.controls.items()}

    def _on_change(self, _change) -> None:
        if not self._updating:
            self.update()

    def update(self, **values) -> bytes:
        """Set the named controls (no value: keep the current ones), redraw, and return the PNG bytes."""
        unknown = set(values) - set(self.controls)
        if unknown:
            raise ValueError(f"unknown control(s) {sorted(unknown)}; this demo has {sorted(self.controls)}")
        self._updating = True  # one redraw for several changed controls
        try:
            for name, value in values.items():
                self.controls[name].value = value
        finally:
            self._updating = False
        self.figure.clear()
        self.result = self.draw(self.figure, **self.values())
        png = viz.figure_to_png(self.figure)
        self.image.value = png
        return png


# --- lesson 00: the segmentation task ----------------------------------------------------------------------


def draw_scene_view(fig: Figure, dataset, index: int, view: str) -> dict:
    """The scene ``index`` of an instance-variant ``ShapesDataset`` next to its ``view``:
    "semantic" (class per pixel), "instance" (a colour per object) or "panoptic" (class and instance)."""
    from segedu.data.tasks import panoptic_from_instances, semantic_from_instances

    image, target = dataset[index]
    labels, masks = target["labels"], target["masks"]
    if view == "semantic":
        picture = viz.colorize(semantic_from_instances(labels, masks))
    elif view == "instance":
        numbers = torch.arange(1, len(labels) + 1, device=masks.device)  # masks do not overlap: a sum paints them
        ids = (masks.long() * numbers[:, None, None]).sum(0)
        picture = viz.colorize_instances(ids)
    elif view == "panoptic":
        picture = viz.colorize_panoptic(panoptic_from_instances(labels, masks))
    else:
        raise ValueError(f"view must be 'semantic', 'instance' or 'panoptic', got {view!r}")
    axes = fig.subplots(1, 2)
    axes[0].imshow(viz.to_numpy_image(image))
    axes[0].set_title(f"scene {index}")
    axes[1].imshow(picture, interpolation="nearest")
    names = ", ".join(dataset.classes[int(c)] for c in labels)
    axes[1].set_title(f"{view}: {len(labels)} objects")
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
