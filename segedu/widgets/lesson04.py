"""Lesson 04 (dilated convolution): the receptive field of three stacked dilated convolutions and its holes.

``dilation_viewer`` draws ``segedu.ops.dilation.dilate_kernel``, ``footprint`` and ``receptive_field``
(gridding: Yu & Koltun, ICLR 2016; Wang et al., WACV 2018).
"""

from __future__ import annotations

import ipywidgets as W
import torch
from matplotlib.figure import Figure

from segedu.widgets.frame import FigureDemo

__all__ = ["draw_dilation", "dilation_viewer"]


def draw_dilation(fig: Figure, rate1: int, rate2: int, rate3: int) -> dict:
    """Lesson 04: a stack of three 3x3 convolutions with dilation rates ``rate1, rate2, rate3``: the taps of the last
    layer (``segedu.ops.dilation.dilate_kernel``) and the footprint of one output in the input
    (``segedu.ops.dilation.footprint``: paths per input pixel; white squares inside the field are never seen)."""
    from segedu.ops.dilation import coverage, dilate_kernel, footprint, receptive_field

    rates = (rate1, rate2, rate3)
    paths = footprint(rates)
    field = receptive_field([(3, 1, r) for r in rates])
    seen = coverage(rates)
    axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.5], "wspace": 0.35})
    taps = dilate_kernel(torch.ones(1, 1, 3, 3), rate3)[0, 0]
    axes[0].imshow(taps.numpy(), cmap="Greys", vmin=0, vmax=1.5)
    axes[0].set_title(f"layer 3: 3x3 taps at rate {rate3}\n({taps.shape[0]}x{taps.shape[1]}, 9 weights)", fontsize=9)
    shown = axes[1].imshow(paths.float().masked_fill(paths == 0, float("nan")).numpy(), cmap="viridis")
    fig.colorbar(shown, ax=axes[1], fraction=0.046, label="paths to the output")
    axes[1].set_title(f"rates {rates}: receptive field {field.size}x{field.size}, {seen:.0%} of it seen", fontsize=9)
    for ax in axes:
        ax.set_xticks([]), ax.set_yticks([])
    return {"size": field.size, "seen": seen}


def dilation_viewer() -> FigureDemo:
    """Lesson 04: choose the dilation rates of three stacked 3x3 convolutions; see the receptive field and its holes."""
    controls = {f"rate{i}": W.IntSlider(value=v, min=1, max=5, description=f"rate {i}") for i, v in ((1, 1), (2, 2), (3, 4))}
    return FigureDemo(lambda fig, **v: draw_dilation(fig, **v), controls, figsize=(8.5, 3.6),
                      title="Stacked dilated convolutions: receptive field and gridding")
