"""Semantic, instance and panoptic outputs computed from one instance target.

The three segmentation tasks of lesson 00 describe the same scene differently:

* **semantic**: one class per pixel, objects of a class are not told apart -> int64 ``[H, W]``;
* **instance**: one binary mask per *thing* object, with its class -> ``masks uint8 [N, H, W]``, ``labels [N]``;
* **panoptic**: every pixel gets a class *and*, for thing classes, an instance id. Stuff classes (sky, road,
  our background) have no instances. We use the COCO-panoptic encoding
  ``id = class * label_divisor + instance`` (Kirillov et al., "Panoptic Segmentation", CVPR 2019).

The instance masks of ``segedu.data.shapes`` never overlap (occlusion is resolved), so each conversion is a
paint of the masks; with overlapping masks the later mask wins, like the painter's algorithm.
"""

from __future__ import annotations

import torch

from segedu import validate

__all__ = ["LABEL_DIVISOR", "semantic_from_instances", "instance_ids", "panoptic_from_instances", "split_panoptic"]

LABEL_DIVISOR = 1000


def _check_target(labels: torch.Tensor, masks: torch.Tensor) -> None:
    validate.tensor(masks, "masks", 3, layout="[N, H, W]")
    validate.tensor(labels, "labels", layout="[N]")
    if labels.dim() != 1 or labels.numel() != masks.shape[0]:
        raise ValueError(
            f"labels must be [N] with N = masks.shape[0] = {masks.shape[0]}, got shape {tuple(labels.shape)}"
        )


def semantic_from_instances(labels: torch.Tensor, masks: torch.Tensor, background: int = 0) -> torch.Tensor:
    """Paint instance masks with their class: ``labels [N]``, ``masks [N, H, W]`` -> int64 ``[H, W]``."""
    _check_target(labels, masks)
    background = validate.integer(background, "background")
    semantic = torch.full(masks.shape[1:], background, dtype=torch.int64, device=masks.device)
    for label, mask in zip(labels.tolist(), masks.bool()):  # N is small: a loop over objects, not pixels
        semantic[mask] = label
    return semantic


def instance_ids(masks: torch.Tensor) -> torch.Tensor:
    """The instance view of a scene: ``masks [N, H, W]`` -> int64 ``[H, W]``, 0 where no mask is, ``i + 1`` on mask i.

    Objects are told apart but their classes are not shown (the "instance" picture of lesson 00). Where masks
    overlap, the later mask wins, as in the other conversions.
    """
    validate.tensor(masks, "masks", 3, layout="[N, H, W]")
    ids = torch.zeros(masks.shape[1:], dtype=torch.int64, device=masks.device)
    for number, mask in enumerate(masks.bool(), start=1):  # N is small: a loop over objects, not pixels
        ids[mask] = number
    return ids


def panoptic_from_instances(
    labels: torch.Tensor,
    masks: torch.Tensor,
    stuff: torch.Tensor | int = 0,
    label_divisor: int = LABEL_DIVISOR,
) -> torch.Tensor:
    """Panoptic ids ``class * label_divisor + instance`` (instances numbered 1.. per class).

    ``stuff`` is the semantic class of every pixel no mask covers: an int, or an int64 ``[H, W]`` map of stuff
    classes. Stuff pixels get instance number 0.
    Returns int64 ``[H, W]``.
    """
    _check_target(labels, masks)
    label_divisor = validate.positive_int(label_divisor, "label_divisor")
    height, width = masks.shape[1:]
    if isinstance(stuff, torch.Tensor):
        if stuff.shape != (height, width):
            raise ValueError(f"stuff must be an int or [H, W] = {(height, width)}, got shape {tuple(stuff.shape)}")
        panoptic = stuff.to(torch.int64) * label_divisor
    else:
        stuff = validate.integer(stuff, "stuff")
        panoptic = torch.full((height, width), stuff * label_divisor, dtype=torch.int64, device=masks.device)
    seen: dict[int, int] = {}
    for label, mask in zip(labels.tolist(), masks.bool()):
        seen[label] = seen.get(label, 0) + 1
        panoptic[mask] = label * label_divisor + seen[label]
    return panoptic


def split_panoptic(panoptic: torch.Tensor, label_divisor: int = LABEL_DIVISOR) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of the encoding: ``(class [H, W], instance number [H, W])``."""
    validate.tensor(panoptic, "panoptic")
    label_divisor = validate.positive_int(label_divisor, "label_divisor")
    return panoptic // label_divisor, panoptic % label_divisor
