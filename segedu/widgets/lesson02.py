"""Lesson 02 (upsampling): shrink an image, grow it back with each fixed method, compare.

The computation is ``segedu.ops.upsample.upsample_with`` (tested in ``tests/test_upsample.py``); this module
only draws it.
"""

from __future__ import annotations

import ipywidgets as W
import torch
from matplotlib.figure import Figure

from segedu.ops.upsample import UPSAMPLING_METHODS, upsample_with
from segedu.widgets.frame import FigureDemo, draw_image

__all__ = ["draw_upsampling", "upsampling_viewer"]


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
