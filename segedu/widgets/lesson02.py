"""Lesson 02 (upsampling): shrink an image, grow it back with each fixed method, compare.

The computation is ``segedu.ops.upsample.upsample_with`` (tested in ``tests/test_upsample.py``); this module
only draws it. ``sample_positions_figure`` draws where bilinear interpolation samples the input
(``segedu.ops.upsample.sample_positions``) for both ``align_corners`` conventions.
"""

from __future__ import annotations

import ipywidgets as W
import torch
from matplotlib.figure import Figure

from segedu.ops.upsample import UPSAMPLING_METHODS, upsample_with
from segedu.widgets.frame import FigureDemo, draw_image

__all__ = ["draw_upsampling", "upsampling_viewer", "draw_sample_positions", "sample_positions_figure"]


def draw_upsampling(fig: Figure, image: torch.Tensor, method: str, factor: int) -> dict:
    """Lesson 02: the image, its ``factor``-times smaller copy, and that copy upsampled by ``method``, with the PSNR
    of the result against the original."""
    from segedu.models.autoencoder import psnr

    image = image[None] if image.dim() == 3 else image
    small, up = upsample_with(method, image.float(), factor)
    original = image[..., : up.shape[-2], : up.shape[-1]].float()
    score = float(psnr(up.clamp(0, 1), original)[0])
    axes = fig.subplots(1, 3)
    draw_image(axes[0], original[0], f"original {original.shape[-2]}x{original.shape[-1]}")
    draw_image(axes[1], small[0].clamp(0, 1), f"{factor}x smaller: {small.shape[-2]}x{small.shape[-1]}")
    draw_image(axes[2], up[0].clamp(0, 1), f"{method}\nPSNR {score:.1f} dB")
    return {"psnr": score, "shape": tuple(up.shape)}


def upsampling_viewer(image: torch.Tensor) -> FigureDemo:
    """Lesson 02: pick an upsampling method and a factor; see what comes back from the smaller image."""
    controls = {
        "method": W.Dropdown(options=list(UPSAMPLING_METHODS), value="nearest", description="method"),
        "factor": W.IntSlider(value=4, min=2, max=8, description="factor"),
    }
    return FigureDemo(lambda fig, **v: draw_upsampling(fig, image, **v), controls, figsize=(9, 3.4),
                      title="Shrink, then upsample back")


def draw_sample_positions(fig: Figure, n_in: int = 4, n_out: int = 8) -> dict:
    """Lesson 02: the centres of ``n_in`` input pixels (top row, with the pixel edges as grey lines) and where the
    ``n_out`` output pixels of a bilinear upsampling sample them, with ``align_corners=True`` (middle row) and
    ``False`` (bottom row). Returns the positions drawn."""
    from segedu.ops.upsample import sample_positions

    ax = fig.subplots()
    ax.scatter(range(n_in), [2] * n_in, s=250, marker="s", color="tab:blue", label="input pixel centres")
    drawn = {}
    for row, align, colour in ((1, True, "tab:orange"), (0, False, "tab:green")):
        drawn[align] = sample_positions(n_in, n_out, align_corners=align)
        ax.scatter(drawn[align].numpy(), [row] * n_out, color=colour, zorder=3,
                   label=f"output samples, align_corners={align}")
    for edge in range(n_in + 1):
        ax.axvline(edge - 0.5, color="gray", linewidth=0.5)
    ax.set_yticks([0, 1, 2], ["False", "True", "input"])
    ax.set_xlabel(f"input coordinate (pixel centres at 0 ... {n_in - 1}, edges at the grey lines)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.5), ncol=3, fontsize=8)
    ax.set_title("align_corners=True stretches the corners onto each other; False keeps pixel squares aligned",
                 fontsize=10)
    return drawn


def sample_positions_figure(n_in: int = 4, n_out: int = 8):
    """Lesson 02: ``draw_sample_positions`` on a new pyplot figure (for a notebook cell); returns the figure."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(8, 2.7))
    draw_sample_positions(fig, n_in, n_out)
    fig.tight_layout()
    return fig
