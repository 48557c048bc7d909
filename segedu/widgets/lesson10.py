"""Lesson 10 (losses): one pixel's cost and gradient under each loss against its foreground probability.

``draw_loss_curves`` and ``loss_explorer`` view ``segedu.loss_probe.sweep``.
"""

from __future__ import annotations

import ipywidgets as W
import torch
from matplotlib.figure import Figure

from segedu.widgets.frame import FigureDemo

__all__ = ["LOSS_SWEEP", "draw_loss_curves", "loss_explorer"]


# Probabilities of the probed pixel: evenly spaced in logit, so both ends (confidently right, confidently
# wrong) get as many points as the middle.
LOSS_SWEEP = torch.sigmoid(torch.linspace(-6.0, 6.0, 61, dtype=torch.float64))
_LOG_FLOOR = 1e-4  # log axes: smaller values (a focal loss's easy pixel, ~1e-7) are drawn at the floor


def draw_loss_curves(fig: Figure, names, ratio: float = 0.05, probability: float | None = None,
                     params: dict | None = None, title: str | None = None) -> dict:
    """One pixel's cost and gradient against its foreground probability p, for the losses ``names``.

    A view of ``segedu.loss_probe.sweep`` (one pixel of a 32 x 32 scene whose foreground covers ``ratio``).
    Left: the cost ``N (L(p) - L(right))``; right: ``|N dL/dz|``; log axes. Colour = loss (the first one
    drawn wide and pale, as the reference); solid = a positive pixel (right at p = 1), dashed = a negative
    pixel (right at p = 0). ``params`` maps a loss name
    to its keyword arguments (default: the function's defaults). With ``probability`` a vertical line marks
    p and the result holds, per loss, ``{"positive": (cost, gradient), "negative": (cost, gradient)}`` at p
    (gradient signed); without it the result is ``{}``.
    """
    from matplotlib.lines import Line2D

    from segedu.loss_probe import PIXELS, sweep

    names = [names] if isinstance(names, str) else list(names)
    params = params or {}
    p = LOSS_SWEEP
    if probability is not None:
        p = torch.cat([p, torch.tensor([probability], dtype=torch.float64)])  # the last entry: the marker
    order = torch.argsort(p)
    ax_cost, ax_grad = fig.subplots(1, 2)
    result = {}
    for i, name in enumerate(names):
        # The first loss is the reference (binary cross-entropy in the lesson): wide and pale, so a loss
        # that coincides with it stays visible on top.
        style = {"color": f"C{i % 10}", "lw": 3.5 if i == 0 else 1.6, "alpha": 0.45 if i == 0 else 1.0}
        for pixel, ls in zip(PIXELS, ("-", "--")):
            cost, gradient = sweep(name, p, pixel, ratio=ratio, **params.get(name, {}))
            ax_cost.plot(p[order], cost[order].clamp_min(_LOG_FLOOR), ls=ls, **style)
            ax_grad.plot(p[order], gradient[order].abs().clamp_min(_LOG_FLOOR), ls=ls, **style)
            if probability is not None:
                result.setdefault(name, {})[pixel] = (float(cost[-1]), float(gradient[-1]))
    labels = (("cost of the pixel  N (L(p) - L(right))", ax_cost), ("|gradient on its logit|  N |dL/dz|", ax_grad))
    for ylabel, ax in labels:
        ax.set_yscale("log")
        ax.set_xlim(0, 1)
        ax.set_xlabel("foreground probability p of the pixel")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if probability is not None:
            ax.axvline(probability, color="k", lw=0.8, alpha=0.6)
    ax_cost.set_title("loss", fontsize=10)
    ax_grad.set_title("gradient", fontsize=10)
    handles = [Line2D([], [], color=f"C{i % 10}", lw=3.5 if i == 0 else 1.6, alpha=0.45 if i == 0 else 1.0,
                      label=name) for i, name in enumerate(names)]
    handles += [Line2D([], [], color="k", ls="-", label="positive pixel"),
                Line2D([], [], color="k", ls="--", label="negative pixel")]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.suptitle(title or f"one pixel of a scene with {ratio:.1%} foreground", fontsize=10)
    fig.tight_layout()
    return result


def loss_explorer(loss: str = "dice_loss", ratio: float = 0.05, probability: float = 0.1) -> FigureDemo:
    """Lesson 10: a loss's cost and gradient for one pixel against its probability p and the foreground
    fraction (sliders), next to binary cross-entropy (the reference)."""
    import math

    from segedu.losses import LOSSES

    controls = {
        "loss": W.Dropdown(options=list(LOSSES), value=loss, description="loss"),
        "ratio": W.FloatLogSlider(value=ratio, base=10, min=-3, max=math.log10(0.5), step=0.1,
                                  description="foreground", readout_format=".3f"),
        "probability": W.FloatSlider(value=probability, min=0.01, max=0.99, step=0.01, description="p"),
    }

    def draw(fig, loss, ratio, probability):
        names = list(dict.fromkeys(["binary_cross_entropy", loss]))  # BCE first, once
        values = draw_loss_curves(fig, names, ratio, probability)
        (pos_cost, pos_grad), (neg_cost, neg_grad) = values[loss]["positive"], values[loss]["negative"]
        fig.suptitle(
            f"{loss} at p = {probability:.2f}, foreground {ratio:.1%}: positive pixel cost {pos_cost:.3g}, "
            f"gradient {pos_grad:+.3g}; negative pixel cost {neg_cost:.3g}, gradient {neg_grad:+.3g}",
            fontsize=9,
        )
        return values

    return FigureDemo(draw, controls, figsize=(9, 3.4), title="One pixel under each loss")
