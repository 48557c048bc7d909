"""Lesson 03 (transposed convolution): where the kernels of a transposed convolution overlap unevenly.

``checkerboard_viewer`` draws ``segedu.ops.checkerboard.overlap_count`` and ``overlap_range`` (Odena et al.,
Distill 2016); ``probe_patterns_figure`` draws what trained upsampling layers answer to a flat input and the
period-2 pattern of their errors (``segedu.ops.checkerboard.subpixel_means``).
"""

from __future__ import annotations

import ipywidgets as W
import torch
from matplotlib.figure import Figure

from segedu.widgets.frame import FigureDemo

__all__ = ["draw_overlaps", "checkerboard_viewer", "draw_probe_patterns", "probe_patterns_figure"]


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


def draw_probe_patterns(fig: Figure, models: dict, small: torch.Tensor, images: torch.Tensor, grey: float = 0.2,
                        inside: int = 6) -> dict:
    """Lesson 03: for each ``{name: model}`` (a 2x upsampling network ``[B, 3, h, w] -> [B, 3, 2h, 2w]``), top: its
    answer to a flat grey 16 x 16 input minus that answer's mean (channel mean, ``inside`` border pixels left out);
    bottom: the mean error ``model(small) - images`` at each of the four 2x2 sub-pixel positions minus their mean
    (x 1/1000). Returns ``{"flat": {name: [H', W']}, "phase": {name: [2, 2]}}``, the arrays drawn."""
    from segedu.ops.checkerboard import subpixel_means

    flat, phase = {}, {}
    for name, model in models.items():
        device = next(model.parameters()).device
        with torch.no_grad():
            answer = model(torch.full((1, 3, 16, 16), grey, device=device))[0].mean(0).cpu()
            errors = model(small.to(device)).cpu() - images.cpu()
        answer = answer[inside:-inside, inside:-inside]
        flat[name] = answer - answer.mean()
        means = subpixel_means(errors).mean((0, 1))  # [2, 2]: mean error of each sub-pixel position
        phase[name] = means - means.mean()           # the pattern, not the overall bias
    span = max(float(v.abs().max()) for v in flat.values()) or 1e-9
    phase_span = max(float(v.abs().max()) for v in phase.values()) or 1e-9
    axes = fig.subplots(2, len(models), squeeze=False)
    for col, name in enumerate(models):
        top = axes[0, col].imshow(flat[name].numpy(), cmap="RdBu_r", vmin=-span, vmax=span)
        axes[0, col].set_title(f"{name}\nflat grey in: output - its mean", fontsize=9)
        bottom = axes[1, col].imshow(phase[name].numpy(), cmap="PuOr_r", vmin=-phase_span, vmax=phase_span)
        for i in range(2):
            for j in range(2):
                axes[1, col].text(j, i, f"{1000 * float(phase[name][i, j]):+.1f}", ha="center", va="center", fontsize=10)
        axes[1, col].set_title("mean error at each 2x2 position\nminus the overall mean (x 1/1000)", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.colorbar(top, ax=axes[0].tolist(), fraction=0.02, label="deviation")
    fig.colorbar(bottom, ax=axes[1].tolist(), fraction=0.02, label="error pattern")
    return {"flat": flat, "phase": phase}


def probe_patterns_figure(models: dict, small: torch.Tensor, images: torch.Tensor):
    """Lesson 03: ``draw_probe_patterns`` on a new pyplot figure (for a notebook cell); returns the figure."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(3 * len(models), 6.2))
    draw_probe_patterns(fig, models, small, images)
    return fig
