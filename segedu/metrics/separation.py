"""Does an instance segmentation tell two given objects apart? (The shared-box scenes of lessons 09 and 12.)

``pairs_separated`` asks, per scene, whether **both** objects of a pair are segmented: each has a detection
(score above ``score_threshold``) whose mask overlaps it with IoU > ``iou_threshold``. With the default 0.5
the two detections are necessarily different ones when the two objects do not overlap: a mask with IoU > 0.5
with one object covers more than half of itself with that object, so it cannot do the same with another.
Mask AP hides this case among many easy objects; this measures it alone.
"""

from __future__ import annotations

import torch

from segedu import validate
from segedu.metrics.instance import mask_iou

__all__ = ["pairs_separated"]


def pairs_separated(predictions: list[dict], targets: list[dict], pairs, score_threshold: float = 0.5,
                    iou_threshold: float = 0.5, mask_threshold: float = 0.5) -> torch.Tensor:
    """bool ``[N]``: in scene ``i``, both objects ``pairs[i]`` of ``targets[i]`` are found (see the module text).

    Args:
        predictions: one dict per scene with ``masks`` ``[D, 1, H, W]`` (or ``[D, H, W]``) probabilities and
            ``scores`` ``[D]``, as torchvision's Mask R-CNN and ``segedu.models.embedding`` return them.
        targets: one dict per scene with ``masks`` ``[M, H, W]``.
        pairs: int ``[N, 2]`` (a tensor or a list of pairs): the two objects of each scene.
        score_threshold: detections scoring at most this are not looked at.
        iou_threshold: an object is found by a mask whose IoU with it is above this.
        mask_threshold: a predicted pixel is in the mask when its probability is above this.
    """
    pairs = torch.as_tensor(pairs)
    validate.tensor(pairs, "pairs", 2, dtype="integer", layout="[N, 2] of object indices")
    if pairs.shape[1] != 2 or not (len(predictions) == len(targets) == len(pairs)):
        raise ValueError(f"predictions, targets and pairs [N, 2] must list the same scenes, got {len(predictions)}, "
                         f"{len(targets)} and pairs of shape {tuple(pairs.shape)}")
    validate.probability(score_threshold, "score_threshold")
    validate.probability(iou_threshold, "iou_threshold")
    validate.probability(mask_threshold, "mask_threshold")
    found = []
    for i, (pred, target, pair) in enumerate(zip(predictions, targets, pairs.tolist())):
        masks = pred["masks"].detach().cpu()
        masks = masks[:, 0] if masks.dim() == 4 else masks
        masks = masks[pred["scores"].detach().cpu() > score_threshold] > mask_threshold
        objects = target["masks"][pair].bool().cpu()
        if masks.shape[1:] != objects.shape[1:]:
            raise ValueError(f"scene {i}: predicted masks {tuple(masks.shape)} and target masks "
                             f"{tuple(objects.shape)} differ in size")
        iou = mask_iou(masks, objects)  # [D, 2]
        found.append(bool((iou > iou_threshold).any(dim=0).all()))
    return torch.tensor(found, dtype=torch.bool)
