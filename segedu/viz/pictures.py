"""Pictures of data: palettes, colourised masks, overlays and grids (matplotlib).

Everything here turns tensors into something to look at. The colour of a class is the PASCAL VOC palette
entry of its index, so a mask looks the same here, in a VOC PNG and in the papers' figures; 255 (void/ignore)
takes VOC's own cream colour. Figures get titles and a legend that maps colours to class names.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Patch

from segedu import validate
from segedu.data.voc import VOC_PALETTE

__all__ = [
    "palette",
    "to_numpy_image",
    "colorize",
    "instance_colors",
    "colorize_instances",
    "overlay",
    "legend_handles",
    "show_grid",
    "show_segmentation",
    "colorize_panoptic",
    "figure_to_png",
]


def palette(num_colors: int = 256) -> np.ndarray:
    """The VOC palette as uint8 ``[num_colors, 3]`` (index 255, void, is cream)."""
    num_colors = validate.integer(num_colors, "num_colors", 1, 256)
    return np.asarray(VOC_PALETTE, dtype=np.uint8).reshape(-1, 3)[:num_colors]


def to_numpy_image(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """An image as float ``[H, W, 3]`` in [0, 1]: accepts ``[3, H, W]`` / ``[1, H, W]`` tensors (float in [0, 1]
    or uint8) and ``[H, W]`` / ``[H, W, 3]`` arrays."""
    if isinstance(image, torch.Tensor):  # tensors are channels-first
        array = image.detach().cpu().numpy()
        if array.ndim == 3:
            array = array.transpose(1, 2, 0)
    else:  # arrays are channels-last, as matplotlib wants them
        array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3):
        raise ValueError(f"image must be [3,H,W], [1,H,W], [H,W,3] or [H,W], got shape {tuple(np.shape(image))}")
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    return np.clip(array.astype(np.float32), 0.0, 1.0)


def colorize(mask: torch.Tensor | np.ndarray) -> np.ndarray:
    """Class indices ``[H, W]`` -> uint8 RGB ``[H, W, 3]`` with the VOC palette (255, void, cream)."""
    array = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"mask must be [H, W], got shape {array.shape}")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError(f"mask values must be class indices in 0..255, got range {array.min()}..{array.max()}")
    return palette()[array.astype(np.int64)]


def instance_colors(num_instances: int, seed: int = 0) -> np.ndarray:
    """Distinct bright colours for instance ids 1..N (uint8 ``[N + 1, 3]``, row 0 black)."""
    num_instances = validate.integer(num_instances, "num_instances", minimum=0)
    hues = (np.arange(num_instances) * 0.618033988749895 + 0.1 * seed) % 1.0  # golden-ratio hue steps
    import matplotlib.colors as mcolors

    hsv = np.stack([hues, np.full_like(hues, 0.75), np.full_like(hues, 0.95)], axis=-1)
    rgb = (mcolors.hsv_to_rgb(hsv) * 255).astype(np.uint8) if num_instances else np.zeros((0, 3), np.uint8)
    return np.concatenate([np.zeros((1, 3), np.uint8), rgb])


def colorize_instances(ids: torch.Tensor | np.ndarray) -> np.ndarray:
    """Instance ids ``[H, W]`` (0 = none) -> uint8 RGB, one colour per id."""
    array = ids.detach().cpu().numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
    uniques, inverse = np.unique(array, return_inverse=True)
    colors = instance_colors(len(uniques))
    # id 0 stays black, the others take colours 1.. in order
    index = np.where(uniques == 0, 0, np.arange(len(uniques)) + (0 if 0 in uniques else 1))
    return colors[index[inverse.reshape(array.shape)]]


def overlay(image, mask, alpha: float = 0.5) -> np.ndarray:
    """Blend a colourised mask over an image: float ``[H, W, 3]`` in [0, 1]. Background (0) stays unblended."""
    validate.probability(alpha, "alpha")
    rgb = to_numpy_image(image)
    labels = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if labels.shape != rgb.shape[:2]:
        raise ValueError(f"mask shape {labels.shape} does not match image size {rgb.shape[:2]}")
    colors = colorize(labels).astype(np.float32) / 255.0
    weight = np.where(labels[..., None] == 0, 0.0, alpha)
    return rgb * (1 - weight) + colors * weight


def legend_handles(class_names: Sequence[str], present: Sequence[int] | None = None) -> list[Patch]:
    """Patches mapping palette colours to class names, for ``ax.legend(handles=...)``."""
    pal = palette()
    indices = range(len(class_names)) if present is None else sorted(set(int(i) for i in present))
    return [Patch(color=pal[i] / 255.0, label=f"{i} {class_names[i]}") for i in indices if i < len(class_names)]


def _as_picture(item) -> tuple[np.ndarray, bool]:
    """An image (float RGB) or a mask (colourised); returns (array, is_mask)."""
    array = item.detach().cpu() if isinstance(item, torch.Tensor) else np.asarray(item)
    is_mask = array.ndim == 2 and (
        (isinstance(array, torch.Tensor) and not array.is_floating_point())
        or (isinstance(array, np.ndarray) and np.issubdtype(array.dtype, np.integer))
    )
    return (colorize(array) if is_mask else to_numpy_image(array)), is_mask


def show_grid(
    items: Sequence,
    titles: Sequence[str] | None = None,
    ncols: int | None = None,
    class_names: Sequence[str] | None = None,
    size: float = 2.6,
    suptitle: str | None = None,
    fig: plt.Figure | None = None,
):
    """Show images (``[3,H,W]`` float) and masks (``[H,W]`` integer, colourised) in a grid.

    With ``class_names`` a legend lists the classes that appear in the masks. Returns the figure.
    """
    items = list(items)
    if not items:
        raise ValueError("items is empty: nothing to show")
    if titles is not None and len(titles) != len(items):
        raise ValueError(f"titles has {len(titles)} entries for {len(items)} items")
    ncols = min(len(items), 6) if ncols is None else validate.positive_int(ncols, "ncols")
    nrows = -(-len(items) // ncols)
    if fig is None:
        fig = plt.figure(figsize=(size * ncols + (1.6 if class_names else 0), size * nrows + 0.3))
    else:
        fig.clear()
    axes = fig.subplots(nrows, ncols, squeeze=False)
    present: set[int] = set()
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= len(items):
            continue
        picture, is_mask = _as_picture(items[k])
        if is_mask:
            raw = items[k].cpu().numpy() if isinstance(items[k], torch.Tensor) else np.asarray(items[k])
            present.update(int(v) for v in np.unique(raw) if v != 255)
        ax.imshow(picture, interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[k], fontsize=10)
    if class_names is not None and present:
        fig.legend(handles=legend_handles(class_names, present), loc="center right", fontsize=9, frameon=False)
        fig.subplots_adjust(right=1 - 1.5 / fig.get_size_inches()[0])
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def show_segmentation(image, target, prediction=None, class_names=None, title=None, alpha: float = 0.5):
    """Image, ground truth overlay and (optionally) prediction overlay side by side, with a class legend."""
    items = [to_numpy_image(image), overlay(image, target, alpha)]
    titles = ["image", "ground truth"]
    if prediction is not None:
        items.append(overlay(image, prediction, alpha))
        titles.append("prediction")
    fig = show_grid(items, titles=titles, suptitle=title)
    if class_names is not None:
        labels = [target] + ([prediction] if prediction is not None else [])
        present = set()
        for lab in labels:
            lab = lab.cpu().numpy() if isinstance(lab, torch.Tensor) else np.asarray(lab)
            present.update(int(v) for v in np.unique(lab) if v != 255)
        fig.legend(handles=legend_handles(class_names, present), loc="center right", fontsize=9, frameon=False)
        fig.subplots_adjust(right=1 - 1.5 / fig.get_size_inches()[0])
    return fig


def colorize_panoptic(panoptic, label_divisor: int = 1000) -> np.ndarray:
    """Panoptic ids ``class * label_divisor + instance`` -> uint8 RGB ``[H, W, 3]``.

    Each pixel takes its class colour; instances of one class get different shades (instance 1 full colour,
    later ones darker) and thing segments a white outline, so two objects of a class are told apart.
    """
    label_divisor = validate.positive_int(label_divisor, "label_divisor")
    array = panoptic.detach().cpu().numpy() if isinstance(panoptic, torch.Tensor) else np.asarray(panoptic)
    classes, instances = array // label_divisor, array % label_divisor
    shade = np.where(instances > 0, 1.0 - 0.3 * ((instances - 1) % 3), 1.0)[..., None]
    rgb = (colorize(classes).astype(np.float32) * shade).astype(np.uint8)
    # white outlines where the segment id changes, so touching instances of one class stay apart
    edge = np.zeros(array.shape, bool)
    horizontal, vertical = array[:, 1:] != array[:, :-1], array[1:, :] != array[:-1, :]
    edge[:, 1:] |= horizontal  # mark both pixels of every change
    edge[:, :-1] |= horizontal
    edge[1:, :] |= vertical
    edge[:-1, :] |= vertical
    rgb[edge & (instances > 0)] = 255
    return rgb


def figure_to_png(fig) -> bytes:
    """Render a matplotlib figure to PNG bytes (for image widgets and tests)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi, bbox_inches="tight")
    return buffer.getvalue()
