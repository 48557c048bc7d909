"""Lesson 03 (transposed convolution): where the kernels of a transposed convolution overlap unevenly.

``checkerboard_viewer`` draws ``segedu.ops.checkerboard.overlap_count`` and ``overlap_range`` (Odena et al.,
Distill 2016).
"""

from __future__ import annotations

import ipywidgets as W
from matplotlib.figure import Figure

from segedu.widgets.frame import FigureDemo

__all__ = ["draw_overlaps", "checkerboard_viewer"]


def draw_overlaps(fig: Figure, kernel: int, stride: int, inputs: int = 5) -> dict:
    """Lesson 03: how many taps of a ``kernel x kernel`` transposed convolution with ``stride`` land on each output
    pixel (``segedu.ops.checkerboard.overlap_count`` over an ``inputs x inputs`` input), and the middle row as a profile.
    Even inside (``overlap_range``: as many taps everywhere away from the border) means no checkerboard."""
    from segedu.ops.checkerboard import overlap_count, overlap_range

    count = overlap_count(kernel, stride, inputs)
    fewest, most = overlap_range(kernel, stride, inputs)
    uniform = fewest == most
    axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.3], "wspace": 0.4})
    shown = axes[0].imshow(count.numpy(), cmap="viridis", vmin=0, interpolation="nearest")
    fig.colorbar(shown, ax=axes[0], fraction=0.046, label="taps")
    axes[0].set_title(f"{inputs}x{inputs} input -> {count.shape[0]}x{count.shape[1]} output", fontsize=9)
    axes[0].set_xticks([]), axes[0].set_yticks([])
    row = count[count.shape[0] // 2]
    axes[1].bar(range(len(row)), row.numpy(), color="tab:purple")
    axes[1].set_xlabel("output column (middle row)")
    axes[1].set_ylabel("taps per output pixel")
    verdict = "even inside: no checkerboard" if uniform else "uneven: checkerboard"
    axes[1].set_title(f"kernel {kernel}, stride {stride}: {kernel} % {stride} = {kernel % stride}, {verdict}", fontsize=9)
    return {"uniform": uniform, "min": fewest, "max": most}


def checkerboard_viewer() -> FigureDemo:
    """Lesson 03: move kernel size and stride; see where a transposed convolution's kernels overlap unevenly."""
    controls = {
        "kernel": W.IntSlider(value=3, min=1, max=7, description="kernel"),
        "stride": W.IntSlider(value=2, min=1, max=4, description="stride"),
    }
    return FigureDemo(lambda fig, **v: draw_overlaps(fig, **v), controls, figsize=(9, 3.3),
                      title="Where do the kernels of a transposed convolution overlap?")
