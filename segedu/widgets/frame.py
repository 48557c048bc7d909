"""The frame every demo shares (``FigureDemo``) and the drawing helpers several lessons use.

Every demo is a ``FigureDemo``: a row of controls (sliders, dropdowns) above a picture. Moving a control calls
the demo's ``draw(fig, **values)`` function, which only arranges results of tested package functions on a
matplotlib figure; the figure is rendered to PNG into an ``ipywidgets.Image``. So the demos work in any
Jupyter front-end without extra extensions, and ``demo.update(**values)`` can be called from tests.

``draw_image`` shows one image on an axes (lessons 01-02); ``draw_matrices`` / ``show_matrices`` draw the
lectures' small worked examples as annotated heatmaps (lessons 02-04).
"""

from __future__ import annotations

from typing import Callable

import ipywidgets as W
import torch
from matplotlib.figure import Figure

from segedu import viz

__all__ = ["FigureDemo", "draw_image", "draw_matrices", "show_matrices"]


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
            style = getattr(control, "style", None)
            if style is not None and hasattr(style, "description_width") and not style.description_width:
                style.description_width = "initial"  # show the whole label ("bins per side", not "bins per s...")
        header = [W.HTML(f"<b>{title}</b>")] if title else []
        row = W.HBox(list(controls.values()), layout=W.Layout(flex_flow="row wrap"))  # wrap, never squeeze
        super().__init__(header + [row, self.image])
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


def draw_image(ax, image: torch.Tensor, title: str) -> None:
    """Show a ``[1, H, W]`` or ``[3, H, W]`` image in [0, 1] (grey scale with a fixed range for one channel)."""
    image = image.detach().float().cpu()
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(viz.to_numpy_image(image), interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def draw_matrices(fig: Figure, matrices, titles=None, cmap: str = "Blues", decimals: int | None = None) -> None:
    """Small matrices side by side as heatmaps with their values written in the cells (the lectures' worked
    examples). ``matrices``: 2-D tensors (or ``[1, 1, H, W]``); values are printed when a matrix has at most
    12 x 12 entries, as integers when they all are, else with ``decimals`` (default 2)."""
    matrices = [torch.as_tensor(m).detach().cpu().double().reshape(torch.as_tensor(m).shape[-2:]) for m in matrices]
    titles = titles or [""] * len(matrices)
    axes = fig.subplots(1, len(matrices), squeeze=False)[0]
    for ax, m, title in zip(axes, matrices, titles):
        ax.imshow(m.numpy(), cmap=cmap, vmin=min(0.0, float(m.min())), vmax=max(1e-9, float(m.max())))
        if m.shape[0] <= 12 and m.shape[1] <= 12:
            integral = bool(torch.all(m == m.round())) and decimals is None
            high = float(m.max())
            fontsize = 9 if max(m.shape) <= 6 else 7
            for (i, j), value in zip(torch.cartesian_prod(torch.arange(m.shape[0]), torch.arange(m.shape[1])).tolist(),
                                     m.flatten().tolist()):
                text = f"{value:.0f}" if integral else f"{value:.{2 if decimals is None else decimals}f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=fontsize,
                        color="white" if high > 0 and value > 0.6 * high else "black")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(f"{title}\n{m.shape[0]}x{m.shape[1]}" if title else f"{m.shape[0]}x{m.shape[1]}", fontsize=9)


def show_matrices(matrices, titles=None, cmap: str = "Blues", decimals: int | None = None, size: float = 2.2):
    """``draw_matrices`` on a new pyplot figure (for a notebook cell); returns the figure."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(size * len(matrices), size + 0.4))
    draw_matrices(fig, matrices, titles, cmap, decimals)
    return fig
