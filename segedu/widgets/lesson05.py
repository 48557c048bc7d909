"""Lesson 05 (FCN): record the predictions while training and step through them, FCN-32s/16s/8s side by side.

``PredictionSnapshots`` is the ``fit`` callback that records; ``fcn_training_browser`` shows the records.
"""

from __future__ import annotations

import ipywidgets as W
import torch
from matplotlib.figure import Figure

from segedu import validate, viz
from segedu.widgets.frame import FigureDemo

__all__ = ["PredictionSnapshots", "draw_fcn_snapshots", "fcn_training_browser"]


class PredictionSnapshots:
    """A ``fit(callback=...)`` that records the model's predicted labels on fixed images every ``every`` steps.

    ``images`` ``[N, 3, H, W]``; after training, ``self.steps`` lists the recorded steps and
    ``self.labels`` the int64 ``[N, H, W]`` predictions (on the CPU) at each. ``every`` should divide the
    number of training steps so that the last snapshot is the trained model.
    """

    def __init__(self, images: torch.Tensor, every: int):
        self.images, self.every = images, validate.positive_int(every, "every")
        self.steps: list[int] = []
        self.labels: list[torch.Tensor] = []

    @torch.no_grad()
    def __call__(self, step: int, model, history=None) -> None:
        if step % self.every:
            return
        model.eval()  # fit switches back to train mode after the callback
        device = next(model.parameters()).device
        logits = model(self.images.to(device))
        self.steps.append(step)
        self.labels.append(logits.argmax(1).cpu())


def draw_fcn_snapshots(fig: Figure, images, masks, snapshots: dict, class_names, snapshot: int, index: int) -> dict:
    """Image ``index``, its ground truth and every model's prediction at snapshot number ``snapshot``.
    ``snapshots`` maps a model name to its ``PredictionSnapshots``."""
    names = list(snapshots)
    first = snapshots[names[0]]
    snapshot = min(snapshot, len(first.steps) - 1)
    axes = fig.subplots(1, 2 + len(names))
    axes[0].imshow(viz.to_numpy_image(images[index]))
    axes[0].set_title("image")
    axes[1].imshow(viz.colorize(masks[index]), interpolation="nearest")
    axes[1].set_title("ground truth")
    present = set(masks[index].unique().tolist())
    for ax, name in zip(axes[2:], names):
        labels = snapshots[name].labels[snapshot][index]
        present |= set(labels.unique().tolist())
        ax.imshow(viz.colorize(labels), interpolation="nearest")
        ax.set_title(name)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"after {first.steps[snapshot]} training steps", fontsize=10)
    fig.legend(handles=viz.legend_handles(class_names, sorted(present - {255})), loc="center right", fontsize=8,
               frameon=False)
    fig.subplots_adjust(right=0.86, wspace=0.05)
    return {"step": first.steps[snapshot], "index": index}


def fcn_training_browser(images, masks, snapshots: dict, class_names) -> FigureDemo:
    """Lesson 05: step through the training of several models (FCN-32s/16s/8s) side by side.

    ``images`` ``[N, 3, H, W]`` and ``masks`` ``[N, H, W]`` are the images the ``PredictionSnapshots`` in
    ``snapshots`` (name -> recorder, all with the same steps) were recorded on.
    """
    if not snapshots or any(len(s.steps) == 0 for s in snapshots.values()):
        raise ValueError("snapshots must map model names to PredictionSnapshots with at least one recorded step")
    count = len(next(iter(snapshots.values())).steps)
    controls = {
        "snapshot": W.IntSlider(value=count - 1, min=0, max=count - 1, description="snapshot"),
        "index": W.IntSlider(value=0, min=0, max=len(images) - 1, description="image"),
    }
    return FigureDemo(
        lambda fig, **v: draw_fcn_snapshots(fig, images, masks, snapshots, class_names, **v),
        controls, figsize=(2.1 * (2 + len(snapshots)) + 1.2, 2.6), title="Training FCN-32s, 16s and 8s",
    )
