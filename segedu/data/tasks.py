"""Semantic, instance and panoptic outputs computed from one instance target.

The three segmentation tasks of lesson 00 describe the same scene differently:

* **semantic**: one class per pixel, objects of a class are not told apart -> int64 ``[H, W]``;
* **instance**: one binary mask per *thing* object, with its class -> ``masks uint8 [N, H, W]``, ``labels [N]``;
* **panoptic**: every pixel gets a class *and*, for thing classes, an instance id. Stuff classes (sky, road,
  our background) have no instances. We use the COCO-panoptic encoding
  ``id = class * label_divisor + instance`` (Kirillov et al., "Panoptic Segmentation", CVPR 2019).

The instance masks of ``segedu.data.shapes`` never overlap (occlusion is resolved), so each conversion is a
paint of the masks; with overlapping masks the later mask wins, like the painter's algorithm.

``merge_panoptic`` goes the other way for a model's outputs (lesson 12): a semantic map and an instance map,
predicted separately, merged into one panoptic map; ``paint_detections`` turns a detector's overlapping,
scored masks into such maps first.
"""

from __future__ import annotations

import torch

from segedu import validate

__all__ = ["LABEL_DIVISOR", "VOID", "semantic_from_instances", "instance_ids", "panoptic_from_instances",
           "split_panoptic", "merge_panoptic", "paint_detections"]

LABEL_DIVISOR = 1000
VOID = 255  # the class of pixels that count for nothing (VOC's void, the ignore_index of every loss)


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


def merge_panoptic(
    semantic: torch.Tensor,
    instances: torch.Tensor,
    things,
    stuff,
    label_divisor: int = LABEL_DIVISOR,
    void: int = VOID,
    min_stuff_area: int = 0,
) -> torch.Tensor:
    """One panoptic map from a semantic map and an instance map: int64 ``[B, H, W]`` (or ``[H, W]``) of ids
    ``class * label_divisor + instance``.

    The heuristic of Kirillov et al. ("Panoptic Segmentation", CVPR 2019, Sec. 7), for instances that do not
    overlap:

    * every instance (a non-zero id of ``instances``, per image) takes the thing class that most of its pixels
      have in ``semantic`` and is numbered ``1, 2, ..`` within its class, in the order of the ids; an instance
      none of whose pixels is a thing is dropped (its pixels keep their semantic class);
    * the instances win over the semantic map: their pixels belong to them, whatever their semantic class;
    * every other pixel keeps its semantic class if it is stuff (instance 0), and becomes ``void`` if it is a
      thing (a thing pixel that no instance claims is not a segment of its own);
    * a stuff region of fewer than ``min_stuff_area`` pixels in an image becomes ``void``.

    Args:
        semantic: int64 ``[B, H, W]`` class per pixel (every class in ``things`` or ``stuff``).
        instances: int64 ``[B, H, W]`` instance id per pixel, 0 = none.
        things, stuff: the thing and the stuff classes.
    """
    validate.tensor(semantic, "semantic", (2, 3), dtype="integer", layout="[B, H, W]")
    validate.tensor(instances, "instances", (2, 3), dtype="integer", layout="[B, H, W]")
    if instances.shape != semantic.shape:
        raise ValueError(f"instances must have the shape of semantic {tuple(semantic.shape)}, got {tuple(instances.shape)}")
    things = [validate.integer(c, "things", minimum=0) for c in things]
    stuff = [validate.integer(c, "stuff", minimum=0) for c in stuff]
    label_divisor = validate.positive_int(label_divisor, "label_divisor")
    void = validate.integer(void, "void", minimum=0)
    min_stuff_area = validate.integer(min_stuff_area, "min_stuff_area", minimum=0)
    single = semantic.dim() == 2
    semantic, instances = (semantic[None], instances[None]) if single else (semantic, instances)
    semantic, instances = semantic.long(), instances.long().to(semantic.device)
    thing_set = torch.tensor(things, dtype=torch.int64, device=semantic.device)
    stuff_set = torch.tensor(stuff, dtype=torch.int64, device=semantic.device)
    unknown = ~torch.isin(semantic, thing_set) & ~torch.isin(semantic, stuff_set)
    if bool(unknown.any()):
        raise ValueError(f"semantic holds classes that are neither things nor stuff: {semantic[unknown].unique().tolist()}")
    is_thing = torch.isin(semantic, thing_set)
    panoptic = torch.where(is_thing, void, semantic) * label_divisor
    size = int(semantic.max()) + 1
    for b in range(semantic.shape[0]):  # images, then instances: never a loop over pixels
        if min_stuff_area:
            area = torch.bincount(semantic[b][~is_thing[b]], minlength=size)
            small = torch.isin(semantic[b], (area < min_stuff_area).nonzero()[:, 0]) & ~is_thing[b]
            panoptic[b][small] = void * label_divisor
        numbers = [int(v) for v in torch.unique(instances[b]) if int(v) != 0]
        seen: dict[int, int] = {}
        for number in numbers:
            mask = instances[b] == number
            votes = torch.bincount(semantic[b][mask & is_thing[b]], minlength=size)
            if int(votes.sum()) == 0:
                continue  # no thing pixel: not an instance of any thing class
            label = int(votes.argmax())
            seen[label] = seen.get(label, 0) + 1
            panoptic[b][mask] = label * label_divisor + seen[label]
    return panoptic[0] if single else panoptic


def paint_detections(
    detections: list[dict],
    score_threshold: float = 0.5,
    mask_threshold: float = 0.5,
    overlap: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A detector's instance masks as ``(semantic, instances)`` maps, int64 ``[B, H, W]`` each (0 = background).

    Detected masks overlap and carry scores; a panoptic map gives each pixel to one segment. The heuristic of
    Kirillov et al. ("Panoptic Segmentation", CVPR 2019, Sec. 7): the detections scoring above
    ``score_threshold`` are painted from the most confident down, each on the pixels no earlier one took; a
    detection left with less than ``1 - overlap`` of its mask is dropped (mostly hidden by better ones).

    ``detections``: one dict per image with ``masks`` ``[N, 1, H, W]`` (or ``[N, H, W]``) probabilities, cut at
    ``mask_threshold``, ``labels`` ``[N]`` and ``scores`` ``[N]`` (torchvision's Mask R-CNN output). The kept
    detections get instance ids ``1, 2, ..`` in the order they were painted.
    """
    if not isinstance(detections, (list, tuple)) or not detections:
        raise TypeError(f"detections must be a non-empty list of dicts, got {type(detections).__name__}")
    score_threshold = validate.probability(score_threshold, "score_threshold")
    mask_threshold = validate.probability(mask_threshold, "mask_threshold")
    overlap = validate.probability(overlap, "overlap")
    semantic, instances = [], []
    for i, d in enumerate(detections):
        if not isinstance(d, dict) or any(k not in d for k in ("masks", "labels", "scores")):
            raise ValueError(f"detections[{i}] must be a dict with masks, labels and scores")
        masks = d["masks"].detach().cpu()
        masks = (masks[:, 0] if masks.dim() == 4 else masks) > mask_threshold
        labels, scores = d["labels"].detach().cpu().long(), d["scores"].detach().cpu()
        sem = torch.zeros(masks.shape[-2:], dtype=torch.int64)
        ids = torch.zeros(masks.shape[-2:], dtype=torch.int64)
        taken = torch.zeros(masks.shape[-2:], dtype=torch.bool)
        number = 0
        for k in scores.argsort(descending=True, stable=True).tolist():  # detections, never pixels
            if float(scores[k]) <= score_threshold or not bool(masks[k].any()):
                continue
            free = masks[k] & ~taken
            if float(free.sum()) < (1 - overlap) * float(masks[k].sum()):
                continue
            number += 1
            ids[free], sem[free], taken = number, int(labels[k]), taken | free
        semantic.append(sem)
        instances.append(ids)
    return torch.stack(semantic), torch.stack(instances)
