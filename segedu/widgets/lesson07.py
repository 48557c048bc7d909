"""Lesson 07 (DeepLab and the dense CRF): the CRF's weights and thetas, and its two Gaussian kernels.

``crf_explorer`` views ``segedu.crf.dense_crf`` and ``boundary_contrast``; ``kernel_viewer`` views
``segedu.crf.pairwise_kernel`` (Krähenbühl & Koltun, NeurIPS 2011).
"""

from __future__ import annotations

import ipywidgets as W
import torch
from matplotlib.figure import Figure

from segedu import viz
from segedu.widgets.frame import FigureDemo

__all__ = ["draw_crf", "crf_explorer", "draw_pairwise_kernel", "kernel_viewer"]


def _boundaries(ax, labels: torch.Tensor, color: str = "yellow") -> None:
    """Draw the borders between the classes of ``labels [H, W]`` as lines over what the axes show."""
    import numpy as np

    labels = labels.detach().cpu().numpy()
    if labels.min() != labels.max():
        ax.contour(labels, levels=np.arange(labels.min(), labels.max()) + 0.5, colors=color, linewidths=1.2)


def draw_crf(fig: Figure, image: torch.Tensor, probs: torch.Tensor, class_names, iterations: int,
             w_bilateral: float, theta_alpha: float, theta_beta: float, w_gaussian: float, theta_gamma: float,
             show_class: int = 1) -> dict:
    """The dense CRF on one photo: the coarse labels (argmax of ``probs [C, H, W]``), the CRF's labels, and the
    CRF's probability of class ``show_class``; ``image`` uint8 ``[3, H, W]``.

    Returns ``{"changed": fraction of pixels relabelled, "contrast_before", "contrast_after"}`` (the mean image
    gradient on the boundary of ``show_class``, ``segedu.crf.boundary_contrast``).
    """
    from segedu.crf import boundary_contrast, dense_crf

    refined = dense_crf(probs, image, iterations=iterations, w_bilateral=w_bilateral, theta_alpha=theta_alpha,
                        theta_beta=theta_beta, w_gaussian=w_gaussian, theta_gamma=theta_gamma)
    before, after = probs.argmax(0), refined.argmax(0)
    result = {
        "changed": float((before != after).float().mean()),
        "contrast_before": boundary_contrast(before == show_class, image),
        "contrast_after": boundary_contrast(after == show_class, image),
    }
    axes = fig.subplots(1, 3)
    for ax, labels, title in (
        (axes[0], before, f"coarse labels (edge contrast {result['contrast_before']:.0f})"),
        (axes[1], after, f"after the CRF (edge contrast {result['contrast_after']:.0f})"),
    ):
        ax.imshow(viz.overlay(image, labels, alpha=0.35))
        _boundaries(ax, labels)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    shown = axes[2].imshow(refined[show_class].detach().cpu().numpy(), vmin=0, vmax=1, cmap="viridis")
    axes[2].set_title(f"CRF: P({class_names[show_class]})", fontsize=9)
    axes[2].axis("off")
    fig.colorbar(shown, ax=axes[2], fraction=0.046, pad=0.04)
    fig.legend(handles=viz.legend_handles(class_names), loc="lower center", ncol=len(class_names), fontsize=8,
               frameon=False)
    fig.suptitle(f"{iterations} mean-field iterations; {result['changed']:.1%} of the pixels relabelled", fontsize=10)
    return result


def crf_explorer(image: torch.Tensor, probs: torch.Tensor, class_names=("background", "person"),
                 iterations: int = 5, w_bilateral: float = 10.0, theta_alpha: float = 30.0, theta_beta: float = 13.0,
                 w_gaussian: float = 3.0, theta_gamma: float = 1.0) -> FigureDemo:
    """Lesson 07: sliders for the CRF's weights, thetas and iterations over a photo and its coarse ``probs``."""
    import math

    side = max(image.shape[-2:])
    controls = {
        "iterations": W.IntSlider(value=iterations, min=0, max=10, description="iterations"),
        "w_bilateral": W.FloatSlider(value=w_bilateral, min=0.0, max=20.0, step=0.5, description="w bilateral"),
        "theta_alpha": W.FloatLogSlider(value=theta_alpha, base=10, min=0, max=math.log10(side),
                                        step=0.05, description="θα (px)"),
        "theta_beta": W.FloatLogSlider(value=theta_beta, base=10, min=0, max=2, step=0.05, description="θβ (rgb)"),
        "w_gaussian": W.FloatSlider(value=w_gaussian, min=0.0, max=10.0, step=0.5, description="w gaussian"),
        "theta_gamma": W.FloatLogSlider(value=theta_gamma, base=10, min=-0.3, max=1, step=0.05,
                                        description="θγ (px)"),
    }

    def draw(fig, **values):
        return draw_crf(fig, image, probs, class_names, **values)

    return FigureDemo(draw, controls, figsize=(10, 3.8), title="Dense CRF: move the sliders")


def draw_pairwise_kernel(fig: Figure, image: torch.Tensor, row: int, col: int, theta_alpha: float,
                         theta_beta: float, theta_gamma: float) -> dict:
    """The two kernels of the dense CRF from pixel ``(row, col)`` of ``image`` uint8 ``[3, H, W]``: how much a
    label disagreement with every other pixel costs (weights 1). Returns the kernel mass of each map."""
    from segedu.crf import pairwise_kernel

    maps = pairwise_kernel(image, (row, col), w_bilateral=1.0, theta_alpha=theta_alpha, theta_beta=theta_beta,
                           w_gaussian=1.0, theta_gamma=theta_gamma)
    axes = fig.subplots(1, 3)
    axes[0].imshow(viz.to_numpy_image(image))
    axes[0].plot([col], [row], marker="+", color="red", markersize=14, mew=2)
    axes[0].set_title(f"pixel ({row}, {col})", fontsize=9)
    for ax, name, title in ((axes[1], "bilateral", f"appearance kernel (θα={theta_alpha:.0f}, θβ={theta_beta:.0f})"),
                            (axes[2], "gaussian", f"smoothness kernel (θγ={theta_gamma:.1f})")):
        shown = ax.imshow(maps[name].cpu().numpy(), vmin=0, vmax=1, cmap="magma")
        ax.set_title(title, fontsize=9)
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    for ax in axes:
        ax.axis("off")
    return {name: float(maps[name].sum()) for name in ("bilateral", "gaussian")}


def kernel_viewer(image: torch.Tensor, row: int | None = None, col: int | None = None, theta_alpha: float = 30.0,
                  theta_beta: float = 13.0, theta_gamma: float = 3.0) -> FigureDemo:
    """Lesson 07: pick a pixel and the thetas; see which pixels the appearance and smoothness kernels tie to it
    (default pixel: 3/4 down, in the middle)."""
    import math

    height, width = image.shape[-2:]
    side = max(height, width)
    controls = {
        "row": W.IntSlider(value=3 * height // 4 if row is None else row, min=0, max=height - 1, description="row"),
        "col": W.IntSlider(value=width // 2 if col is None else col, min=0, max=width - 1, description="column"),
        "theta_alpha": W.FloatLogSlider(value=theta_alpha, base=10, min=0, max=math.log10(side), step=0.05,
                                        description="θα (px)"),
        "theta_beta": W.FloatLogSlider(value=theta_beta, base=10, min=0, max=2, step=0.05, description="θβ (rgb)"),
        "theta_gamma": W.FloatLogSlider(value=theta_gamma, base=10, min=-0.3, max=1.3, step=0.05,
                                        description="θγ (px)"),
    }

    def draw(fig, **values):
        return draw_pairwise_kernel(fig, image, **values)

    return FigureDemo(draw, controls, figsize=(10, 3.4), title="The two Gaussian kernels of the dense CRF")
