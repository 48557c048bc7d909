"""Scenes in which two objects share one box: the proposal-based limit of lesson 09, measured in lesson 12.

Mask R-CNN (He et al., ICCV 2017) finds boxes first. Two objects of one class whose boxes coincide survive NMS
as one detection, and the mask head, which sees only the features inside a box, paints the same mask for both.
The simplest such pair is an X: a diagonal bar and its mirror image inside the same box.

``crossing_bar_scene`` builds one from a scene of ``segedu.data.shapes`` (its largest roughly diagonal bar gets
a mirrored twin, painted on top in a contrasting colour, so the two bars cross and the twin splits the
original in two); ``shared_box_scenes`` collects many such scenes from a dataset. Both return targets in the
format of ``ShapesDataset(variant="instance")`` and the indices of the two crossing bars in each target.
"""

from __future__ import annotations

import torch

from segedu import validate
from segedu.data.shapes import CLASSES, MIN_VISIBLE_PIXELS

__all__ = ["BAR", "diagonal_bars", "crossing_bar_scene", "shared_box_scenes"]

BAR = CLASSES.index("bar")


def diagonal_bars(target: dict, size: int, min_side: float = 0.3, max_ratio: float = 1.6) -> list[int]:
    """Indices of the bars of ``target`` whose box is at least ``min_side`` of the image side each way and whose
    width / height lies within ``(1 / max_ratio, max_ratio)``: roughly diagonal bars, largest box first."""
    boxes, labels = target["boxes"], target["labels"]
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    ok = (labels == BAR) & (torch.minimum(w, h) >= min_side * size) & (w / h > 1 / max_ratio) & (w / h < max_ratio)
    found = ok.nonzero()[:, 0].tolist()
    return sorted(found, key=lambda j: -float(w[j] * h[j]))


def crossing_bar_scene(image: torch.Tensor, target: dict, index: int) -> tuple[torch.Tensor, dict, tuple[int, int]]:
    """Add the mirror image of bar ``index`` inside its own box: ``(image, target, (a, b))``.

    ``image`` float ``[3, H, W]``, ``target`` with ``boxes``, ``labels``, ``masks`` (``ShapesDataset``'s instance
    format). The twin takes the colour ``1 - mean colour of the bar`` and is painted on top: objects it hides
    down to fewer than ``MIN_VISIBLE_PIXELS`` pixels leave the scene, as in ``ShapesDataset``. ``(a, b)`` are the
    indices of the original bar and of its twin in the new target; their boxes are the same box, give or take
    a pixel where the twin covers an end of the original.
    """
    validate.tensor(image, "image", 3, dtype="floating", layout="[3, H, W]")
    masks = target["masks"]
    index = validate.integer(index, "index", minimum=0, maximum=len(masks) - 1)
    if int(target["labels"][index]) != BAR:
        raise ValueError(f"index must name a bar (label {BAR}), got label {int(target['labels'][index])}")
    x1, _, x2, _ = target["boxes"][index].long().tolist()
    bar = masks[index].bool()
    twin = torch.zeros_like(bar)
    twin[:, x1:x2] = bar[:, x1:x2].flip(-1)  # mirrored about the box's vertical axis: same box
    colour = 1 - image[:, bar].mean(dim=1)
    new_image = torch.where(twin, colour[:, None, None], image)
    new_masks = torch.cat([masks * ~twin, twin[None].to(masks.dtype)])
    new_labels = torch.cat([target["labels"], torch.tensor([BAR], dtype=target["labels"].dtype)])
    visible = new_masks.flatten(1).sum(1) >= MIN_VISIBLE_PIXELS
    visible[-1] = True
    if not bool(visible[index]):
        raise ValueError(f"bar {index} is hidden by its own mirror image (a bar that is nearly vertical or horizontal)")
    pair = (int(visible[:index].sum()), int(visible.sum()) - 1)
    new_masks, new_labels = new_masks[visible], new_labels[visible]
    rows, cols = new_masks.bool().any(2), new_masks.bool().any(1)
    first = lambda m: m.float().argmax(1)  # noqa: E731 - the first True of each row
    boxes = torch.stack([first(cols), first(rows), cols.shape[1] - first(cols.flip(1)),
                         rows.shape[1] - first(rows.flip(1))], dim=1).float()
    return new_image, {"boxes": boxes, "labels": new_labels, "masks": new_masks}, pair


def shared_box_scenes(dataset, count: int, min_side: float = 0.3, chunk: int = 64):
    """``count`` crossing-bar scenes from ``dataset`` (a ``ShapesDataset(variant="instance")``), scanned from
    index 0 in chunks of ``chunk`` scenes: each scene with a roughly diagonal bar (``diagonal_bars``) gives one,
    with its largest such bar mirrored. Returns ``(images [count, 3, H, W], targets, pairs int64 [count, 2],
    sources int64 [count])``, ``sources`` the dataset indices used. Raises ``ValueError`` when the dataset holds
    fewer such scenes."""
    count = validate.positive_int(count, "count")
    chunk = validate.positive_int(chunk, "chunk")
    if getattr(dataset, "variant", None) != "instance":
        raise ValueError("dataset must be a ShapesDataset with variant='instance'")
    images, targets, pairs, sources = [], [], [], []
    for start in range(0, len(dataset), chunk):
        batch_images, batch_targets = dataset.batch(range(start, min(len(dataset), start + chunk)))
        for k, (image, target) in enumerate(zip(batch_images, batch_targets)):
            for j in diagonal_bars(target, dataset.size, min_side):
                try:
                    new_image, new_target, pair = crossing_bar_scene(image, target, j)
                except ValueError:
                    continue
                images.append(new_image), targets.append(new_target), pairs.append(pair), sources.append(start + k)
                break
            if len(images) == count:
                return torch.stack(images), targets, torch.tensor(pairs), torch.tensor(sources)
    raise ValueError(f"dataset holds only {len(images)} scenes with a diagonal bar, fewer than count={count}")
