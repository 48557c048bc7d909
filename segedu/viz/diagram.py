"""Architecture diagrams drawn from the model object (matplotlib; lessons 05-09).

``architecture(model, input_size)`` traces the model (``segedu.viz.layouts.trace_architecture``: one forward
pass with hooks) and draws what the trace found: one box per block, labelled with its name and the shape
``C×H×W`` it produced, solid arrows for the main data flow, dashed blue arrows for skips and laterals
(U-Net's concatenations, FCN's score skips, FPN's lateral 1x1 convolutions, DeepLab v3+'s low-level
features) and orange arrows for parallel branches (ASPP, the pyramid pooling module, FPN's semantic head,
the RoI heads). Nothing is typed by hand, so the picture cannot drift from the code.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.patches import FancyBboxPatch
from torch import nn

from segedu.viz.layouts import trace_architecture
from segedu.viz.trace import Diagram, format_shape

__all__ = ["FILLS", "ARROWS", "draw_diagram", "architecture"]

FILLS = {"io": "#e6e6e6", "block": "#d6e6f5", "branch": "#fde3c8", "merge": "#dbefd4", "head": "#eadcf3"}
ARROWS = {  # edge kind -> (colour, line style, legend text)
    "flow": ("#333333", "-", "data flow"),
    "skip": ("#1f6fb4", "--", "skip / lateral"),
    "branch": ("#d9711b", "-", "parallel branch"),
}
X_UNIT, Y_UNIT = 1.7, 0.82  # inches between grid columns / rows
BOX_W, BOX_H = 1.15, 0.5  # inches: a gap of 0.55 in between columns holds an edge label


def _clip(centre, other) -> tuple[float, float]:
    """Where the segment from ``centre`` towards ``other`` leaves the box around ``centre``."""
    dx, dy = other[0] - centre[0], other[1] - centre[1]
    scale = min(BOX_W / 2 / abs(dx) if dx else float("inf"), BOX_H / 2 / abs(dy) if dy else float("inf"))
    scale = min(scale, 1.0)
    return centre[0] + dx * scale, centre[1] + dy * scale


def draw_diagram(diagram: Diagram, ax=None, fontsize: float = 7.5):
    """Draw a traced ``Diagram``; returns the figure.

    Every box's text is ``"name\\nC×H×W"`` (its artist's gid ``"block:<name>"``, an arrow's
    ``"arrow:<kind>:<source>-><target>"``, for tests and tools), edge labels sit on their arrows, a legend
    names the arrow kinds used. ``ax``: draw into these axes (else a new
    figure sized to the grid, 1.7 x 0.82 inches per cell).
    """
    if not isinstance(diagram, Diagram):
        raise TypeError(f"diagram must be a segedu.viz.trace.Diagram, got {type(diagram).__name__}")
    xs = [b.x for b in diagram.blocks]
    ys = [b.y for b in diagram.blocks]
    width, height = (max(xs) - min(xs)) * X_UNIT + BOX_W, (max(ys) - min(ys)) * Y_UNIT + BOX_H
    if ax is None:
        fig = plt.figure(figsize=(width + 0.3, height + 0.95))
        ax = fig.add_axes((0.15 / (width + 0.3), 0.45 / (height + 0.95), width / (width + 0.3), height / (height + 0.95)))
    fig = ax.figure
    centres = {b.name: ((b.x - min(xs)) * X_UNIT + BOX_W / 2, -(b.y - min(ys)) * Y_UNIT - BOX_H / 2)
               for b in diagram.blocks}
    for block in diagram.blocks:
        cx, cy = centres[block.name]
        ax.add_patch(FancyBboxPatch((cx - BOX_W / 2, cy - BOX_H / 2), BOX_W, BOX_H,
                                    boxstyle="round,pad=0,rounding_size=0.06", facecolor=FILLS[block.kind],
                                    edgecolor="#555555", linewidth=0.8, zorder=2))
        ax.text(cx, cy, f"{block.name}\n{format_shape(block.shape)}", ha="center", va="center", fontsize=fontsize,
                zorder=3, gid=f"block:{block.name}")
    for edge in diagram.edges:
        colour, style, _ = ARROWS[edge.kind]
        a, b = centres[edge.source], centres[edge.target]
        start, end = _clip(a, b), _clip(b, a)
        ax.annotate("", xy=end, xytext=start, zorder=1, gid=f"arrow:{edge.kind}:{edge.source}->{edge.target}",
                    arrowprops=dict(arrowstyle="-|>", color=colour, linestyle=style, linewidth=1.0,
                                    shrinkA=1, shrinkB=1, mutation_scale=9))
        if edge.label:
            ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2, edge.label, ha="center", va="center",
                    fontsize=fontsize - 1.5, color=colour, zorder=4, gid=f"edge:{edge.source}->{edge.target}",
                    bbox=dict(boxstyle="round,pad=0.1", facecolor="white", edgecolor="none", alpha=0.85))
    ax.set_xlim(0, width)
    ax.set_ylim(-height, 0)
    ax.set_aspect("equal")
    ax.axis("off")
    kinds = [k for k in ARROWS if any(e.kind == k for e in diagram.edges)]
    handles = [Line2D([], [], color=ARROWS[k][0], linestyle=ARROWS[k][1], label=ARROWS[k][2]) for k in kinds]
    if handles:
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0), ncol=len(handles), frameon=False,
                  fontsize=fontsize)
    ax.set_title(diagram.title, fontsize=fontsize + 1.5)
    return fig


def architecture(model: nn.Module, input_size=(3, 64, 64), ax=None, fontsize: float = 7.5):
    """A diagram of ``model`` drawn from the model object itself; returns the matplotlib figure.

    ``input_size``: ``(C, H, W)``, ``(H, W)`` (the model's own channels) or one side; the shapes are those
    of one forward pass of such an image. The families drawn are ``segedu.viz.layouts.FAMILIES`` (U-Net,
    SegNet, FCN, DeepLab v1-v3+, PSPNet, FPN, the dilated FCN, Mask R-CNN, any ``nn.Sequential``); another model is
    a ``ValueError`` naming them. ``trace_architecture(model, input_size)`` returns the same data as a
    ``Diagram`` (blocks with their shapes, edges) without drawing.

    Example: ``architecture(UNet(5, base=16, depth=4), (3, 64, 64))``.
    """
    return draw_diagram(trace_architecture(model, input_size), ax=ax, fontsize=fontsize)
