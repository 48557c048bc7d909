"""Joint image + mask augmentation with ``torchvision.transforms.v2``.

A segmentation label is a picture too: every geometric change made to the image (scale, crop, flip) must be
made to the mask in exactly the same way, or the labels no longer sit on their pixels. Two details differ:

* the mask is resized with *nearest* interpolation - blending class 3 and class 7 gives 5, a third class
  that is not there - while the image uses antialiased bilinear;
* padding fills the mask with 255 (void, ignored by the loss) and the image with 0: padded pixels have no
  label.

Colour changes touch the image only. ``torchvision.transforms.v2`` handles all of this once the tensors are
wrapped as ``tv_tensors.Image`` and ``tv_tensors.Mask``: the transforms draw their random parameters once
per call and apply them to both, dispatching on the type (a Mask is resized nearest, skipped by colour jitter).

The recipe is the one of DeepLab (Chen et al., TPAMI 2017) and of torchvision's segmentation references:
random scale in ``scale`` x ``size``, pad to ``size`` if smaller, random ``size`` x ``size`` crop,
horizontal flip, colour jitter.

Both builders return a callable ``(image, mask) -> (image, mask)`` taking plain tensors - image float
``[3, H, W]`` in [0, 1] or uint8, mask int64 ``[H, W]`` - and returning plain tensors: image float32
``[3, size, size]`` in [0, 1] and mask int64 ``[size, size]``. Pass it as ``VOCSegmentation(...,
transforms=...)``. Randomness comes from torch's global generator (``segedu.runtime.seed_everything``).
"""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from segedu import validate

__all__ = ["VOID", "PairTransform", "train_transforms", "eval_transforms"]

VOID = 255  # same as segedu.data.voc.VOID; repeated so this module stands alone


class PairTransform:
    """Apply a ``transforms.v2`` pipeline to an ``(image, mask)`` pair of plain tensors.

    Wraps the image as ``tv_tensors.Image`` and the mask as ``tv_tensors.Mask`` so the pipeline treats each
    correctly (a plain tensor second in line would be passed through untouched), and unwraps the outputs.
    """

    def __init__(self, transform: v2.Transform) -> None:
        self.transform = transform

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        validate.tensor(image, "image", 3, layout="[3, H, W] (or [1, H, W])")
        if image.shape[0] not in (1, 3):
            raise ValueError(f"image must be a tensor [3, H, W] (or [1, H, W]), got shape {tuple(image.shape)}")
        validate.tensor(mask, "mask", dtype=torch.int64, layout="[H, W]")
        if mask.shape != image.shape[-2:]:
            raise ValueError(
                f"mask must have the image's size [H, W] = {list(image.shape[-2:])}, got {list(mask.shape)}"
            )
        image, mask = self.transform(tv_tensors.Image(image), tv_tensors.Mask(mask))
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)

    def __repr__(self) -> str:
        return f"PairTransform({self.transform})"


def _to_float() -> v2.Transform:
    # Only the image changes dtype (uint8 -> float in [0, 1]); "others": None leaves the mask int64.
    return v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True)


def train_transforms(
    size: int,
    scale: tuple[float, float] = (0.5, 2.0),
    hflip: bool = True,
    jitter: float = 0.3,
) -> PairTransform:
    """Training augmentation: random scale, pad + random crop to ``size`` x ``size``, flip, colour jitter.

    * ``scale = (lo, hi)``: the shorter side is resized to a random length in ``[lo * size, hi * size]``
      (image antialiased bilinear, mask nearest);
    * if the result is smaller than ``size`` it is padded (image 0, mask 255 = void), then a random
      ``size`` x ``size`` window is cropped;
    * ``hflip``: mirror left-right with probability 1/2;
    * ``jitter``: brightness, contrast and saturation factors drawn from ``[1 - jitter, 1 + jitter]``
      (image only; 0 turns colour jitter off).

    Returns a ``PairTransform``: ``(image [3, H, W], mask int64 [H, W]) -> (float32 [3, size, size],
    int64 [size, size])``.
    """
    size = validate.positive_int(size, "size")
    if not isinstance(scale, (tuple, list)):
        raise TypeError(f"scale must be a pair (lo, hi) with 0 < lo <= hi, got {type(scale).__name__} {scale!r}")
    if len(scale) != 2:
        raise ValueError(f"scale must be a pair (lo, hi) with 0 < lo <= hi, got {len(scale)} values {scale!r}")
    lo, hi = (validate.number(s, "scale") for s in scale)
    if not 0 < lo <= hi:
        raise ValueError(f"scale must be a pair (lo, hi) with 0 < lo <= hi, got {scale!r}")
    jitter = validate.number(jitter, "jitter", minimum=0.0)
    if jitter >= 1:
        raise ValueError(f"jitter must be a number in [0, 1), got {jitter!r}")
    low, high = max(1, round(lo * size)), max(1, round(hi * size))
    steps: list[v2.Transform] = [
        _to_float(),
        # RandomResize draws the shorter side from [low, high); +1 makes hi inclusive (and lo == hi legal).
        v2.RandomResize(low, high + 1, antialias=True),
        v2.RandomCrop(size, pad_if_needed=True, fill={tv_tensors.Image: 0.0, tv_tensors.Mask: VOID}),
    ]
    if hflip:
        steps.append(v2.RandomHorizontalFlip(p=0.5))
    if jitter > 0:
        steps.append(v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter))
    return PairTransform(v2.Compose(steps))


def eval_transforms(size: int) -> PairTransform:
    """Evaluation preprocessing, no randomness: shorter side to ``size``, then the central ``size`` x ``size``.

    Every output is the same size, so a validation set batches; the crop drops the ends of the longer side
    of both image and mask alike, so metrics are computed on the same pixels the model sees.
    """
    size = validate.positive_int(size, "size")
    return PairTransform(
        v2.Compose([_to_float(), v2.Resize(size, antialias=True), v2.CenterCrop(size)])
    )
