"""Lesson 12 (instance segmentation without boxes): the pixel embeddings, seen from above.

``draw_embedding_view`` puts a scene's instances next to its pixel embeddings projected to 2-D
(``segedu.clustering.principal_projection``, PCA), coloured by the instance the clustering found or by the
true instance, with a circle of radius ``delta_v`` around every cluster centre; ``embedding_explorer`` adds a
scene slider and the choice of colouring. The embeddings come from ``segedu.models.embedding.segment_instances``
(De Brabandere, Neven & Van Gool, 2017).
"""

from __future__ import annotations

import ipywidgets as W
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from segedu import viz
from segedu.clustering import principal_projection
from segedu.widgets.frame import FigureDemo

__all__ = ["COLOUR_BY", "draw_embedding_view", "embedding_explorer"]

COLOUR_BY = ("found instance", "true instance")


def _colours_for(ids: np.ndarray) -> np.ndarray:
    """float RGB ``[N, 3]`` per id: ``viz.instance_colors`` for ids 1.., grey for 0 (no instance)."""
    uniques, inverse = np.unique(ids, return_inverse=True)
    palette = viz.instance_colors(len(uniques)).astype(float) / 255
    index = np.where(uniques == 0, 0, np.arange(len(uniques)) + (0 if 0 in uniques else 1))
    colours = palette[index[inverse]]
    colours[ids == 0] = 0.6
    return colours


def draw_embedding_view(fig: Figure, image: torch.Tensor, embedding: torch.Tensor, found: torch.Tensor,
                        truth: torch.Tensor, colour_by: str = "found instance", delta_v: float = 0.5,
                        title: str | None = None) -> dict:
    """Left: ``image`` ``[3, H, W]`` with the instances ``found`` (int64 ``[H, W]``, 0 = none) painted over it.
    Right: the embeddings ``[D, H, W]`` of the pixels the clustering labelled, projected on their two principal
    directions, coloured by ``colour_by`` (``"found instance"`` or ``"true instance"``, read from ``truth``
    ``[H, W]``); the projected cluster centres are marked, each with a circle of radius ``delta_v``.

    Returns ``{"pixels", "found", "true", "explained"}``: pixels drawn, instances found, true instances among
    them, and the fraction of the embeddings' variance the 2-D picture keeps.
    """
    if colour_by not in COLOUR_BY:
        raise ValueError(f"colour_by must be one of {list(COLOUR_BY)}, got {colour_by!r}")
    found, truth = found.detach().cpu(), truth.detach().cpu()
    fg = found > 0
    points = embedding.detach().cpu().double().permute(1, 2, 0)[fg]  # [N, D]
    projected, explained = principal_projection(points)
    labels = (found if colour_by == "found instance" else truth)[fg].numpy()
    axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.25]})
    rgb = viz.to_numpy_image(image)
    painted = viz.colorize_instances(found).astype(float) / 255
    mix = np.where(fg.numpy()[..., None], 0.45 * rgb + 0.55 * painted, rgb)
    axes[0].imshow(np.clip(mix, 0, 1), interpolation="nearest")
    axes[0].set_title(f"{int(found.max()) if fg.any() else 0} instances found", fontsize=9)
    axes[0].axis("off")
    ax = axes[1]
    xy = projected.numpy()
    if len(xy):
        ax.scatter(xy[:, 0], xy[:, 1], s=4, c=_colours_for(labels), alpha=0.6, linewidths=0)
        for number in found[fg].unique().tolist():
            centre = xy[found[fg].numpy() == number].mean(0)
            ax.plot(*centre, "kx", markersize=7)
            ax.add_patch(Circle(centre, delta_v, fill=False, color="k", linewidth=0.8, linestyle="--"))
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("principal direction 1"); ax.set_ylabel("principal direction 2")
    ax.set_title(f"embeddings of {len(xy)} pixels, coloured by {colour_by} (PCA keeps {explained:.0%})", fontsize=9)
    ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    true_ids = truth[fg].unique()
    return {"pixels": len(xy), "found": int(found[fg].unique().numel()),
            "true": int((true_ids > 0).sum()), "explained": explained}


def embedding_explorer(images: torch.Tensor, embeddings: torch.Tensor, found: torch.Tensor, truth: torch.Tensor,
                       delta_v: float = 0.5) -> FigureDemo:
    """Lesson 12: a scene slider and a colouring choice over ``draw_embedding_view``.

    ``images`` ``[B, 3, H, W]``, ``embeddings`` ``[B, D, H, W]``, ``found`` and ``truth`` int64 ``[B, H, W]``.
    """
    if not (len(images) == len(embeddings) == len(found) == len(truth)) or len(images) == 0:
        raise ValueError(f"images, embeddings, found and truth must list the same scenes, got {len(images)}, "
                         f"{len(embeddings)}, {len(found)}, {len(truth)}")
    controls = {
        "index": W.IntSlider(value=0, min=0, max=len(images) - 1, description="scene"),
        "colour_by": W.Dropdown(options=list(COLOUR_BY), value=COLOUR_BY[0], description="colour by"),
    }

    def draw(fig, index, colour_by):
        return draw_embedding_view(fig, images[index], embeddings[index], found[index], truth[index], colour_by,
                                   delta_v)

    return FigureDemo(draw, controls, figsize=(9, 3.9), title="Pixel embeddings, projected to 2-D")
