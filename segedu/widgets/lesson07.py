"""Lesson 07 (DeepLab and the dense CRF): the CRF's weights and thetas, its two Gaussian kernels, and the
permutohedral lattice in 2-D.

``crf_explorer`` views ``segedu.crf.dense_crf`` and ``boundary_contrast``; ``kernel_viewer`` views
``segedu.crf.pairwise_kernel`` (Krähenbühl & Koltun, NeurIPS 2011); ``lattice_viewer`` draws the splat, blur
and slice of ``segedu.ops.permutohedral.PermutohedralLattice`` (Adams, Baek & Davis, Eurographics 2010) on a
row of pixels, whose features (position, intensity) are 2-D - every number drawn comes from the lattice object.
"""

from __future__ import annotations

import ipywidgets as W
import torch
from matplotlib.figure import Figure

from segedu import viz
from segedu.widgets.frame import FigureDemo

__all__ = ["draw_crf", "crf_explorer", "draw_pairwise_kernel", "kernel_viewer", "draw_lattice", "lattice_viewer"]


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


# The three lattice directions of the 2-D lattice (in the plane sum(x) = 0 of R^3): a blur pass runs along one.
_AXES = ((2, -1, -1), (-1, 2, -1), (-1, -1, 2))
_AXIS_COLOURS = ("tab:orange", "tab:green", "tab:purple")


def _lattice_grid(lattice, to_display, window, margin: float = 1.0) -> list:
    """Display-frame segments of every lattice edge whose two ends lie within ``window`` (+ ``margin``):
    the triangles the plane is tiled with (all points with coordinates congruent mod 3, summing to 0)."""
    (x0, x1), (y0, y1) = window
    used = lattice.point_coordinates()
    low, high = int(used[:, :2].min()) - 12, int(used[:, :2].max()) + 12
    q = torch.arange(low // 3, high // 3 + 1)
    points = torch.cat([torch.stack([r + 3 * a, r + 3 * b], -1).reshape(-1, 2)
                        for r in range(3) for a, b in [torch.meshgrid(q, q, indexing="ij")]])
    points = torch.cat([points, -points.sum(1, keepdim=True)], 1)  # [P, 3], on the plane
    shown = to_display(points.double())
    inside = ((shown[:, 0] > x0 - margin) & (shown[:, 0] < x1 + margin)
              & (shown[:, 1] > y0 - margin) & (shown[:, 1] < y1 + margin))
    points, shown = points[inside], shown[inside]
    index = {tuple(p): i for i, p in enumerate(points.tolist())}
    segments = []
    for i, p in enumerate(points.tolist()):
        for step in _AXES:
            j = index.get(tuple(a + b for a, b in zip(p, step)))
            if j is not None:
                segments.append((shown[i].tolist(), shown[j].tolist()))
    return segments


def draw_lattice(fig: Figure, intensities: torch.Tensor, values: torch.Tensor, theta_alpha: float,
                 theta_beta: float) -> dict:
    """The permutohedral lattice filtering one row of pixels: ``intensities [N]`` (grey levels 0..255) at
    positions 0..N-1 carry ``values [N]`` (say, P(object)); the features ``(x / theta_alpha, I / theta_beta)``
    are 2-D, so the lattice lies in a plane and can be drawn (axes in feature units: a lattice edge is 1 long).

    1. *splat*: each pixel (a dot, coloured by its value) sends its value to the 3 corners of its triangle,
       with its barycentric weights (line widths); 2. *blur*: every lattice point in use, after the [1 2 1]
       passes along the three lattice directions (coloured lines: the neighbour pairs a pass connects; points
       without a neighbour exchange nothing); 3. *slice*: the values read back at the pixels, normalised by
       the same filter applied to ones (as the CRF's normalisation does), against the exact Gaussian filter.

    Returns ``{"pixels": N, "points": M, "blur_pairs", "max_error"}`` (the largest difference between the
    lattice's normalised result and the exact one).
    """
    import numpy as np
    from matplotlib.collections import LineCollection

    from segedu.crf import NaiveGaussianFilter
    from segedu.ops.permutohedral import PermutohedralLattice

    intensities, values = intensities.detach().double().cpu(), values.detach().double().cpu()
    n = intensities.numel()
    features = torch.stack([torch.arange(n, dtype=torch.float64) / theta_alpha, intensities / theta_beta], 1)
    lattice = PermutohedralLattice(features.float())
    # The elevation is linear: fit it on the pixels, then show lattice points in the pixels' feature frame.
    plane = torch.linalg.lstsq(lattice.elevated.double(), features).solution  # [3, 2]
    to_display = lambda points: points @ plane  # noqa: E731
    corners = to_display(lattice.point_coordinates().double())  # [M, 2]
    pair = torch.stack([values, torch.ones_like(values)], 1).float()  # the value and the normaliser (ones)
    splat = lattice.splat(pair).double()
    blurred = splat.float()
    for axis in range(3):
        blurred = lattice.blur_axis(blurred, axis)
    blurred = blurred.double()
    sliced = lattice.slice(blurred.float()).double()
    result = sliced[:, 0] / sliced[:, 1]
    exact = NaiveGaussianFilter(features).filter(torch.stack([values, torch.ones_like(values)], 1))
    exact = exact[:, 0] / exact[:, 1]

    window = ((float(min(features[:, 0].min(), corners[:, 0].min())), float(max(features[:, 0].max(), corners[:, 0].max()))),
              (float(min(features[:, 1].min(), corners[:, 1].min())), float(max(features[:, 1].max(), corners[:, 1].max()))))
    grid = _lattice_grid(lattice, to_display, window)
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.1]})
    colours = dict(cmap="coolwarm", vmin=0, vmax=1)
    for ax in axes[:2]:
        ax.add_collection(LineCollection(grid, colors="0.85", linewidths=0.6, zorder=0))
        ax.set_aspect("equal")
        ax.set_xlim(window[0][0] - 0.6, window[0][1] + 0.6)
        ax.set_ylim(window[1][0] - 0.6, window[1][1] + 0.6)
        ax.set_xlabel("position / θα")
    axes[0].set_ylabel("intensity / θβ")
    # 1. splat: pixel -> its three corners, line width = barycentric weight
    links = [(features[i].tolist(), corners[lattice.offsets[i, r]].tolist()) for i in range(n) for r in range(3)]
    axes[0].add_collection(LineCollection(links, colors="0.35", linewidths=3 * lattice.barycentric.reshape(-1).numpy()))
    axes[0].scatter(corners[:, 0], corners[:, 1], s=25 + 60 * splat[:, 1].numpy(), facecolors="none", edgecolors="k",
                    linewidths=0.8, zorder=3)
    axes[0].scatter(features[:, 0], features[:, 1], c=values.numpy(), s=22, edgecolors="k", linewidths=0.4, zorder=4,
                    **colours)
    axes[0].set_title(f"1. splat: {n} pixels onto {lattice.num_points} lattice points", fontsize=9)
    # 2. blur: the neighbour pairs each pass connects, and the blurred (normalised) values at the points
    pairs = 0
    for axis in range(3):
        index, weights = lattice.blur_index[axis], lattice.blur_weights[axis]
        found = [(corners[i].tolist(), corners[j].tolist()) for i, j, w in
                 zip(index[:, 0].tolist(), index[:, 2].tolist(), weights[:, 2].tolist()) if w > 0]
        pairs += len(found)
        axes[1].add_collection(LineCollection(found, colors=_AXIS_COLOURS[axis], linewidths=1.6, zorder=1))
    mean = (blurred[:, 0] / blurred[:, 1]).numpy()
    axes[1].scatter(corners[:, 0], corners[:, 1], c=mean, s=45, edgecolors="k", linewidths=0.5, zorder=3, **colours)
    axes[1].set_title(f"2. blur [1 2 1] along the 3 lattice axes ({pairs} pairs)", fontsize=9)
    # 3. slice: back at the pixels, against the exact filter
    x = np.arange(n)
    axes[2].plot(x, values.numpy(), "o", color="0.5", ms=4, label="value before")
    axes[2].plot(x, result.numpy(), "-", color="C0", lw=2, label="lattice (splat, blur, slice)")
    axes[2].plot(x, exact.numpy(), "--", color="k", lw=1, label="exact Gaussian filter")
    twin = axes[2].twinx()
    twin.step(x, intensities.numpy(), where="mid", color="C2", alpha=0.5, lw=1)
    twin.set_ylabel("intensity", color="C2", fontsize=8)
    twin.set_ylim(0, 255)
    axes[2].set(xlabel="pixel", ylim=(-0.05, 1.05))
    axes[2].legend(fontsize=7, loc="upper left")
    max_error = float((result - exact).abs().max())
    axes[2].set_title(f"3. slice: read back (largest gap to exact {max_error:.3f})", fontsize=9)
    fig.tight_layout()
    return {"pixels": n, "points": lattice.num_points, "blur_pairs": pairs, "max_error": max_error}


def lattice_viewer(intensities: torch.Tensor, values: torch.Tensor, theta_alpha: float = 3.0,
                   theta_beta: float = 40.0) -> FigureDemo:
    """Lesson 07: the permutohedral lattice's splat, blur and slice on a row of pixels (``draw_lattice``), with
    sliders for the two thetas: a smaller θβ pulls dark and bright pixels apart on the lattice."""
    import math

    controls = {
        "theta_alpha": W.FloatLogSlider(value=theta_alpha, base=10, min=0, max=math.log10(intensities.numel()),
                                        step=0.05, description="θα (px)"),
        "theta_beta": W.FloatLogSlider(value=theta_beta, base=10, min=1, max=2.5, step=0.05, description="θβ (grey)"),
    }

    def draw(fig, **values_):
        return draw_lattice(fig, intensities, values, **values_)

    return FigureDemo(draw, controls, figsize=(13, 4.2), title="The permutohedral lattice in 2-D: splat, blur, slice")
