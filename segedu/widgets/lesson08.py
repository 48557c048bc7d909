"""Lesson 08 (PSPNet and context): pyramid pooling's bins and the effective receptive field.

``pyramid_bins_viewer`` views ``segedu.models.pspnet.pyramid_pool`` (Zhao et al., CVPR 2017); ``erf_viewer``
views ``segedu.ops.dilation.effective_receptive_field``, ``erf_extent`` and ``erf_support`` (Luo et al.,
NeurIPS 2016).
"""

from __future__ import annotations

import ipywidgets as W
import torch
from matplotlib.figure import Figure

from segedu import viz
from segedu.widgets.frame import FigureDemo

__all__ = ["draw_pyramid_bins", "pyramid_bins_viewer", "draw_erf", "erf_viewer"]


def draw_pyramid_bins(fig: Figure, image: torch.Tensor, bins: int) -> dict:
    """What one level of PSPNet's pyramid hands every pixel: ``image [3, H, W]`` with the ``bins x bins`` grid of
    adaptive average pooling, the pooled map, and the map upsampled bilinearly back to ``H x W`` (computed with
    ``segedu.models.pspnet.pyramid_pool`` and identity reductions). Returns ``{"bins", "cells", "spread"}``:
    the number of pooled cells and the per-pixel standard deviation left in the upsampled map (0 at 1 bin)."""
    from torch import nn

    from segedu.models.pspnet import pyramid_pool

    height, width = image.shape[-2:]
    with torch.no_grad():
        pooled = torch.nn.functional.adaptive_avg_pool2d(image[None], bins)[0]
        spread_map = pyramid_pool(image[None].float(), (bins,), [nn.Identity()])[0, 3:]
    axes = fig.subplots(1, 3)
    axes[0].imshow(viz.to_numpy_image(image))
    for i in range(1, bins):  # adaptive pooling's bin edges: floor(i * H / bins)
        axes[0].axhline(i * height // bins - 0.5, color="white", lw=1)
        axes[0].axvline(i * width // bins - 0.5, color="white", lw=1)
    axes[0].set_title(f"image and the {bins}x{bins} bins", fontsize=9)
    axes[1].imshow(viz.to_numpy_image(pooled.clamp(0, 1)), interpolation="nearest")
    axes[1].set_title(f"average in each bin ({bins}x{bins})", fontsize=9)
    axes[2].imshow(viz.to_numpy_image(spread_map.clamp(0, 1)))
    axes[2].set_title("upsampled back: concatenated to every pixel", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    spread = float(spread_map.std(dim=(1, 2)).mean())
    fig.suptitle(f"pyramid level {bins}: each pixel gets the summary of its {height // bins}x{width // bins}-pixel "
                 f"region (spatial spread {spread:.3f})", fontsize=10)
    return {"bins": bins, "cells": bins * bins, "spread": spread}


def pyramid_bins_viewer(image: torch.Tensor, bins: int = 1, max_bins: int = 8) -> FigureDemo:
    """Lesson 08: a slider over the pyramid level (bins per side) of PSPNet's pooling, on one image ``[3, H, W]``."""
    controls = {"bins": W.IntSlider(value=bins, min=1, max=max_bins, description="bins per side")}

    def draw(fig, **values):
        return draw_pyramid_bins(fig, image, **values)

    return FigureDemo(draw, controls, figsize=(9, 3.4), title="Pyramid pooling: what each bin size summarises")


def draw_erf(fig: Figure, layers: dict, model: str, layer: str, inputs: torch.Tensor, log: bool = False) -> dict:
    """The effective receptive field (``segedu.ops.dilation.effective_receptive_field``) of ``layers[model][layer]``
    (a module mapping images to a feature or logit map) on ``inputs [B, 3, H, W]``, with colour bar and the
    centred squares holding 50 % and 90 % of it (``erf_extent``). Returns ``{"extent50", "extent90", "support"}``
    (``support``: the side of the pixels that reach the centre at all, ``erf_support``)."""
    import numpy as np
    from matplotlib.patches import Rectangle

    from segedu.ops.dilation import effective_receptive_field, erf_extent, erf_support

    height, width = inputs.shape[-2:]
    erf = effective_receptive_field(layers[model][layer], (height, width), inputs=inputs)
    erf = erf / erf.max()
    result = {"extent50": erf_extent(erf, 0.5), "extent90": erf_extent(erf, 0.9), "support": max(erf_support(erf))}
    ax = fig.subplots(1, 1)
    shown = erf.cpu().numpy()
    if log:
        shown = np.log10(np.maximum(shown, 1e-4))
    picture = ax.imshow(shown, cmap="inferno", vmin=-4 if log else 0, vmax=0 if log else 1)
    cy, cx = height // 2, width // 2
    for side, colour, label in ((result["extent50"], "cyan", "50 %"), (result["extent90"], "lime", "90 %")):
        r = side // 2
        ax.add_patch(Rectangle(
            (cx - r - 0.5, cy - r - 0.5), side, side, fill=False, edgecolor=colour, lw=1.5,
            label=f"{label} of the ERF: {side}x{side} px"))
    ax.legend(loc="upper right", fontsize=7, framealpha=0.7)
    ax.set_xlabel("input column (px)")
    ax.set_ylabel("input row (px)")
    ax.set_title(f"{model}, {layer}: |d centre / d input| (support {result['support']} px)", fontsize=9)
    fig.colorbar(picture, ax=ax, fraction=0.046, pad=0.04,
                 label="log10 of the normalised gradient" if log else "normalised gradient")
    return result


def erf_viewer(layers: dict, inputs: torch.Tensor) -> FigureDemo:
    """Lesson 08: the effective receptive field by model and layer. ``layers``: ``{model name: {layer name:
    module}}`` (e.g. ``segedu.models.fpn.stage_prefixes(model.backbone)`` plus the whole model); ``inputs``
    ``[B, 3, H, W]`` the images the gradients are averaged over."""
    models = list(layers)
    controls = {
        "model": W.Dropdown(options=models, value=models[0], description="model"),
        "layer": W.Dropdown(options=list(layers[models[0]]), value=list(layers[models[0]])[-1], description="layer"),
        "log": W.Checkbox(value=False, description="log scale"),
    }

    def draw(fig, model, layer, log):
        if layer not in layers[model]:
            layer = list(layers[model])[-1]
        return draw_erf(fig, layers, model, layer, inputs, log)

    return FigureDemo(draw, controls, figsize=(5.2, 4.4), title="Effective receptive field by model and layer")
