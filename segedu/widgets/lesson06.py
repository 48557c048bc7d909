"""Lesson 06 (U-Net): browse the feature maps of U-Nets (e.g. with and without skips) level by level.

``unet_feature_browser`` draws ``segedu.models.unet.UNet.features``.
"""

from __future__ import annotations

import ipywidgets as W
import torch
from matplotlib.figure import Figure

from segedu import viz
from segedu.widgets.frame import FigureDemo

__all__ = ["draw_unet_features", "unet_feature_browser"]


def draw_unet_features(fig: Figure, models: dict, images, level: str, channel: int, index: int,
                       class_names=None) -> dict:
    """One channel of the ``level`` feature map of each U-Net in ``models`` (name -> ``UNet``) on image
    ``index``, next to the image and each model's prediction. ``channel`` wraps around the level's width."""
    image = images[index : index + 1]
    axes = fig.subplots(len(models), 3, squeeze=False, gridspec_kw={"wspace": 0.45, "hspace": 0.3})
    result, present = {}, set()
    for row, (name, model) in enumerate(models.items()):
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        with torch.no_grad():
            maps = model.features(image.to(device))
        model.train(was_training)
        fmap = maps[level][0].float().cpu()
        c = channel % fmap.shape[0]
        labels = maps["logits"][0].argmax(0).cpu()
        present |= set(labels.unique().tolist())
        axes[row, 0].imshow(viz.to_numpy_image(image[0]))
        axes[row, 0].set_title(f"{name}: input", fontsize=9)
        shown = axes[row, 1].imshow(fmap[c].numpy(), cmap="viridis")
        size = f"{fmap.shape[1]}x{fmap.shape[2]}"
        axes[row, 1].set_title(f"{level}: channel {c} of {fmap.shape[0]}, {size}", fontsize=9)
        fig.colorbar(shown, ax=axes[row, 1], fraction=0.046, pad=0.03).set_label("activation", fontsize=8)
        axes[row, 2].imshow(viz.colorize(labels), interpolation="nearest")
        axes[row, 2].set_title(f"{name}: prediction", fontsize=9)
        result[name] = tuple(fmap.shape)
    for ax in axes.flat:
        ax.axis("off")
    if class_names is not None:
        fig.legend(handles=viz.legend_handles(class_names, sorted(present)), loc="center right", fontsize=8,
                   frameon=False)
        fig.subplots_adjust(right=0.85)
    return result


def unet_feature_browser(models: dict, images, class_names=None) -> FigureDemo:
    """Lesson 06: browse the feature maps of U-Nets (e.g. with and without skips) level by level.

    ``models`` maps a name to a ``segedu.models.unet.UNet`` (same depth); ``images`` ``[N, 3, H, W]``;
    ``class_names`` (optional) adds a legend for the predictions.
    """
    if not models:
        raise ValueError("models must map names to UNet models")
    first = next(iter(models.values()))
    depth = first.depth
    levels = [f"enc{i}" for i in range(depth)] + ["bottleneck"] + [f"dec{i}" for i in range(depth - 1, -1, -1)]
    controls = {
        "level": W.Dropdown(options=levels, value="enc0", description="level"),
        "channel": W.IntSlider(value=0, min=0, max=max(first.widths) - 1, description="channel"),
        "index": W.IntSlider(value=0, min=0, max=len(images) - 1, description="image"),
    }
    return FigureDemo(lambda fig, **v: draw_unet_features(fig, models, images, class_names=class_names, **v),
                      controls, figsize=(9.5, 2.7 * len(models)), title="U-Net feature maps, level by level")
