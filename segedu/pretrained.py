"""Pretrained networks in the course's models: ImageNet encoders, and what lessons 07 and 11 do with them.

Everything else in the course trains from random weights on synthetic scenes. Real photos change the picture:
an encoder trained on ImageNet-1K (1.28 M labelled photos, Russakovsky et al., IJCV 2015) already computes
edges, textures and object parts, and a segmentation model fine-tuned from it learns from a few thousand
masks what it could not learn from scratch (the recipe of FCN, Long et al., CVPR 2015, and of every DeepLab).

* ``torchvision_weights`` / ``encoder_state_dict``: torchvision's weights for a ResNet, by torchvision's name
  (``"DEFAULT"``, ``"IMAGENET1K_V1"``, ``"ResNet50_Weights.IMAGENET1K_V2"``), read from the data folder
  (``segedu.data.download``); fetched only with ``download=True``. ``segedu.models.backbones.resnet_backbone``
  takes them as ``weights=``; ``segedu.zoo.pretrained`` builds DeepLab v3 with torchvision's COCO weights.
* ``ImageNetNormalize`` / ``with_imagenet_normalization``: pretrained networks expect images normalised with
  ImageNet's channel mean and standard deviation, the course's images are in [0, 1].
* ``class_probabilities`` / ``person_probability``: run a pretrained DeepLab v3 on one photo (lesson 07:
  the portrait, then a dense CRF on the probabilities).
* ``finetune_vs_scratch``: the same DeepLab v3 trained twice at the same budget, once from ImageNet weights
  and once from random ones (lesson 11).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from segedu import runtime, validate

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "ImageNetNormalize", "with_imagenet_normalization", "torchvision_weights",
    "encoder_state_dict", "deeplabv3_on_resnet", "class_probabilities", "person_probability", "finetune_vs_scratch",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
"""The channel statistics of ImageNet every torchvision model was trained with (``weights.transforms()``)."""


class ImageNetNormalize(nn.Module):
    """``(x - IMAGENET_MEAN) / IMAGENET_STD`` per channel: ``[B, 3, H, W]`` in [0, 1] -> the same shape,
    roughly zero-mean and unit-variance. The statistics are buffers that follow the model to its device and
    are not saved in its state dict (they are constants)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        validate.images(x, "x", 3)
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


def with_imagenet_normalization(model: nn.Module) -> nn.Sequential:
    """``nn.Sequential(ImageNetNormalize(), model)``: a pretrained model that takes the course's images in
    [0, 1], so ``fit``, ``evaluate`` and ``predict`` work with it unchanged. ``[B, 3, H, W] -> model's output``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    return nn.Sequential(ImageNetNormalize(), model)


# --------------------------------------------------------------------------- weights by torchvision's names


def torchvision_weights(arch: str, weights: Any):
    """torchvision's weights enum for ``arch`` (``"resnet50"``): ``weights`` is a member of
    ``get_model_weights(arch)``, its name (``"IMAGENET1K_V1"``, ``"DEFAULT"``) or its full name
    (``"ResNet50_Weights.IMAGENET1K_V1"``). ``ValueError`` lists the names ``arch`` has."""
    from torchvision.models import WeightsEnum, get_model_weights, get_weight

    if not isinstance(arch, str):
        raise TypeError(f"arch must be a torchvision model name such as 'resnet50', got {type(arch).__name__}")
    try:
        enum = get_model_weights(arch)
    except (KeyError, ValueError):
        raise ValueError(f"arch must be a torchvision model name such as 'resnet50', got {arch!r}") from None
    names = ["DEFAULT", *(member.name for member in enum)]  # iterating skips the alias DEFAULT
    if isinstance(weights, str):
        try:
            chosen = get_weight(weights) if "." in weights else enum[weights]
        except (KeyError, ValueError, AttributeError):
            raise ValueError(f"weights must be one of {names} for {arch}, got {weights!r}") from None
    elif isinstance(weights, WeightsEnum):
        chosen = weights
    else:
        raise TypeError(f"weights must be a torchvision weights name or enum, got {type(weights).__name__}")
    if not isinstance(chosen, enum):
        raise ValueError(f"weights must be one of {names} for {arch}, got {chosen} (another model's weights)")
    return chosen


def encoder_state_dict(arch: str, weights: Any, *, root: str | os.PathLike | None = None,
                       download: bool = False) -> dict:
    """The state dict of torchvision's ``arch`` with ``weights``: a state dict you hold (returned as a dict),
    or torchvision's weights (``torchvision_weights``) read from the data folder ``root``
    (``segedu.data.download.load_weights``; ``FileNotFoundError`` saying how to get them, unless
    ``download=True``)."""
    if isinstance(weights, Mapping):
        return dict(weights)
    from segedu.data.download import load_weights, weights_resource

    return load_weights(weights_resource(torchvision_weights(arch, weights)), root,
                        download=validate.flag(download, "download"))


def deeplabv3_on_resnet(num_classes: int, arch: str = "resnet18", state_dict: Mapping | None = None,
                        output_stride: int = 16, aspp_channels: int = 256) -> nn.Sequential:
    """``with_imagenet_normalization(DeepLabV3(num_classes, backbone=<torchvision arch>))``, the encoder's
    weights from ``state_dict`` (a torchvision ``arch`` state dict; ``None``: random, as built). Its
    classifier head is random either way. ``[B, 3, H, W]`` in [0, 1] -> logits ``[B, num_classes, H, W]``."""
    from segedu.models.backbones import TORCHVISION_RESNETS, resnet_backbone
    from segedu.models.deeplab import DeepLabV3

    validate.choice(arch, "arch", TORCHVISION_RESNETS)
    encoder = resnet_backbone(arch, output_stride, weights=state_dict)  # a TorchvisionResNet
    return with_imagenet_normalization(DeepLabV3(num_classes, backbone=encoder, output_stride=output_stride,
                                                 aspp_channels=aspp_channels))


# --------------------------------------------------------------------------- lesson 07: one photo


@torch.no_grad()
def class_probabilities(model: nn.Module, image: torch.Tensor, *, size: int | None = None,
                        normalize: bool = True) -> torch.Tensor:
    """Softmax probabilities of a semantic model on ``image`` float ``[3, H, W]`` in [0, 1] (or a batch
    ``[B, 3, H, W]``) -> ``[C, H, W]`` (``[B, C, H, W]``), on the image's device.

    ``normalize``: apply ``ImageNetNormalize`` first (what a torchvision-pretrained model such as
    ``segedu.zoo.pretrained(...)`` expects; ``False`` for a model that normalises itself). ``size``: resize the
    shorter side to ``size`` before the model (torchvision evaluates its DeepLab v3 at 520) and the
    probabilities back to ``H x W`` (bilinear); ``None`` runs at the image's own size. The model runs in eval
    mode on its own device; its mode is restored afterwards.
    """
    from segedu.evaluation import logits_of

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    validate.tensor(image, "image", (3, 4), dtype="floating", layout="[3, H, W] or [B, 3, H, W]")
    single = image.dim() == 3
    x = image[None] if single else image
    validate.images(x, "image", 3)
    height, width = x.shape[-2:]
    parameter = next(model.parameters(), None)
    x = x.to(parameter.device if parameter is not None else x.device, torch.float32)
    if validate.flag(normalize, "normalize"):
        x = ImageNetNormalize().to(x.device)(x)
    if size is not None:
        size = validate.positive_int(size, "size")
        scale = size / min(height, width)
        x = F.interpolate(x, size=(max(1, round(height * scale)), max(1, round(width * scale))), mode="bilinear",
                          align_corners=False, antialias=True)
    was_training = model.training
    model.eval()
    try:
        logits = logits_of(model(x)).float()
    finally:
        model.train(was_training)
    if logits.shape[-2:] != (height, width):
        logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
    probabilities = logits.softmax(dim=1).to(image.device)
    return probabilities[0] if single else probabilities


def person_probability(model: nn.Module, image: torch.Tensor, *, size: int | None = None,
                       normalize: bool = True) -> torch.Tensor:
    """P(person) at every pixel: ``image`` float ``[3, H, W]`` in [0, 1] -> ``[H, W]`` in [0, 1].

    ``model`` predicts the 21 VOC classes (``segedu.zoo.pretrained("deeplabv3_resnet50")``; "person" is
    class 15, or the index of ``"person"`` in ``model.classes``). ``size`` and ``normalize`` as in
    ``class_probabilities``. Stack ``[1 - p, p]`` for a two-class dense CRF (``segedu.crf``).
    """
    from segedu.data.voc import VOC_CLASSES

    classes = list(getattr(model, "classes", VOC_CLASSES))
    if "person" not in classes:
        raise ValueError(f"model must predict a 'person' class, its classes are {classes}")
    probabilities = class_probabilities(model, image, size=size, normalize=normalize)
    return probabilities[..., classes.index("person"), :, :]


# --------------------------------------------------------------------------- lesson 11: pretrained vs scratch


def finetune_vs_scratch(train_data: Any, val_data: Any, num_classes: int, steps: int, *, backbone: str = "resnet18",
                        weights: Any = "DEFAULT", output_stride: int = 16, aspp_channels: int = 256,
                        batch_size: int | None = None, lr: float | None = None, seed: int = 0,
                        device: torch.device | str | None = None, root: str | os.PathLike | None = None,
                        download: bool = False, progress: bool = False) -> dict:
    """Train one DeepLab v3 twice at the same budget: from ImageNet weights, and from scratch.

    Both runs build ``deeplabv3_on_resnet(num_classes, backbone, ...)`` under the same ``seed`` - so the two
    classifier heads start identical and only the encoder's initial weights differ - and train it with
    ``segedu.train.fit`` for ``steps`` Adam steps at ``lr`` on ``batch_size`` images of ``train_data`` (the
    same batches in the same order), cross entropy with 255 ignored, then ``evaluate`` on ``val_data``.

    Args:
        train_data, val_data: what ``fit`` takes (e.g. ``VOCSegmentation`` or ``OxfordPets`` with
            ``train_transforms`` / ``eval_transforms``); ``val_data`` may be ``None`` (no metrics).
        weights: the encoder's pretrained weights: torchvision's name for ``backbone`` (``"DEFAULT"``,
            ``"IMAGENET1K_V1"``: read from the data folder ``root``, fetched only with ``download=True``) or a
            state dict of torchvision's ``backbone``.
        batch_size, lr: default ``runtime.profile()``'s.

    Returns:
        ``{"pretrained": run, "scratch": run, "settings": {...}}``, each run ``{"model" (eval mode),
        "val" (``evaluate``'s metrics or ``None``), "loss" (per step), "seconds"}``.
    """
    from segedu.train import fit

    num_classes = validate.positive_int(num_classes, "num_classes")
    steps = validate.positive_int(steps, "steps")
    seed = validate.integer(seed, "seed")
    profile = runtime.profile()
    batch_size = profile.batch_size if batch_size is None else validate.positive_int(batch_size, "batch_size")
    lr = profile.lr if lr is None else validate.positive_number(lr, "lr")
    state = encoder_state_dict(backbone, weights, root=root, download=download)  # fails before any training
    runs = {}
    for name, encoder_state in (("pretrained", state), ("scratch", None)):
        runtime.seed_everything(seed)
        model = deeplabv3_on_resnet(num_classes, backbone, encoder_state, output_stride, aspp_channels)
        history = fit(model, train_data, nn.CrossEntropyLoss(ignore_index=255), steps, val_data=val_data,
                      device=device, progress=progress, batch_size=batch_size, lr=lr, seed=seed,
                      num_classes=num_classes)
        val = {k: v for k, v in history.val[-1].items() if k != "step"} if history.val else None
        runs[name] = {"model": model, "val": val, "loss": history.loss, "seconds": history.seconds}
    weights_name = "a state dict" if isinstance(weights, Mapping) else str(torchvision_weights(backbone, weights))
    runs["settings"] = {"backbone": backbone, "weights": weights_name, "steps": steps, "batch_size": batch_size,
                        "lr": lr, "seed": seed, "output_stride": output_stride, "num_classes": num_classes}
    return runs
