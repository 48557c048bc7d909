"""Multi-scale DeepLab: looking at an image at several scales, at test time or inside the network (lesson 07).

Objects come in all sizes, and a network trained at one scale sees a large object at a small input resolution
(or a small one at a large resolution) as something it rarely met. DeepLab handles scale in three places:

* **multi-scale and flipped inference** (``multi_scale_predict``) - DeepLab v2 and v3 (Chen et al., TPAMI 2017;
  arXiv 2017, Sec. 4.3, "Inference strategy on val set"): at test time the image is resized by several factors
  (v3 uses 0.5, 0.75, 1, 1.25, 1.5, 1.75) and also mirrored left-right; the logits of every pass are resized
  back to the input size and averaged. Training is unchanged; inference costs one forward pass per scale and
  flip (v3, Table 5 on PASCAL VOC val: 78.51 -> 79.45 mIoU with multi-scale inputs, 79.77 with flips too). It
  pays off for a network trained on randomly rescaled images (v3: factors 0.5 to 2); lesson 07 measures that
  for models trained at one scale it does not.
* **a multi-scale head** (``DeepLabMSc``) - DeepLab v1's "MSc" (Chen et al., ICLR 2015, Sec. 4.3): a small
  two-layer MLP on earlier, finer feature maps whose output joins the final layer's. Here one such head on
  the stride-4 stage: it hands the classifier the detail the stride-16 features lost - the ancestor of v3+'s
  decoder (``segedu.models.deeplab.DeepLabV3Plus``).
* **multi-grid** - DeepLab v3 (Sec. 3.2): the blocks of the last stage get different dilations (unit rates
  ``(1, 2, 4)`` times the stage's rate); ``DeepLabV3(..., multi_grid=...)`` and
  ``segedu.models.deeplab.apply_multi_grid``.

Shapes: images float ``[B, 3, H, W]``, logits ``[B, C, H, W]`` at the input size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from segedu import validate
from segedu.models.common import check_images, upsample_to

__all__ = ["multi_scale_predict", "scaled_sizes", "MultiScale", "DeepLabMSc"]


def scaled_sizes(size, scales: Sequence[float]) -> list[tuple[int, int]]:
    """The input sizes ``multi_scale_predict`` runs for an image of ``size = (H, W)``: ``(round(s H),
    round(s W))`` for every scale ``s`` (at least 1 pixel)."""
    height, width = validate.pair(size, "size", minimum=1)
    return [(max(1, round(s * height)), max(1, round(s * width))) for s in _check_scales(scales)]


def _check_scales(scales) -> tuple[float, ...]:
    if isinstance(scales, (str, bytes, torch.Tensor)) or not isinstance(scales, Sequence):
        raise TypeError(f"scales must be a sequence of numbers > 0, e.g. (0.75, 1, 1.25), got "
                        f"{type(scales).__name__} {scales!r}")
    if len(scales) == 0:
        raise ValueError("scales must hold at least one scale, e.g. (0.75, 1, 1.25), got ()")
    return tuple(validate.positive_number(s, f"scales[{i}]") for i, s in enumerate(scales))


def multi_scale_predict(model: nn.Module, images: torch.Tensor, scales: Sequence[float] = (0.75, 1.0, 1.25),
                        flip: bool = True) -> torch.Tensor:
    """Logits averaged over input scales (and left-right flips): ``[B, 3, H, W] -> [B, C, H, W]``.

    For each scale ``s`` the images are resized bilinearly to ``scaled_sizes((H, W), scales)`` (``s = 1`` runs
    the images as they are), the model's logits are resized bilinearly back to ``H x W`` and, with
    ``flip=True``, so are those of the mirrored images (mirrored back); the result is the mean of the
    ``len(scales) x (1 + flip)`` logit maps (DeepLab v3, Sec. 4.3: the outputs are averaged).
    Averaging logits rather than probabilities weighs a confident pass more; after the argmax the two rarely
    differ. ``model``: any module mapping ``[B, 3, h, w]`` to logits ``[B, C, h, w]`` at its input size (all of
    ``segedu.models``); put it in ``eval()`` mode and call this under ``torch.no_grad()`` for inference.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_images(images, name="images")
    flip = validate.flag(flip, "flip")
    size = tuple(images.shape[-2:])
    total, count = None, 0
    for scaled, s in zip(scaled_sizes(size, scales), _check_scales(scales)):
        x = images if s == 1 else upsample_to(images, scaled)
        views = [(x, False), (x.flip(-1), True)] if flip else [(x, False)]
        for view, mirrored in views:
            logits = model(view)
            if logits.dim() != 4 or logits.shape[-2:] != view.shape[-2:]:
                raise ValueError(f"model must return logits [B, C, h, w] at its input size {tuple(view.shape[-2:])},"
                                 f" got shape {tuple(logits.shape)}")
            logits = logits.flip(-1) if mirrored else logits
            logits = logits if tuple(logits.shape[-2:]) == size else upsample_to(logits, size)
            total = logits if total is None else total + logits
            count += 1
    return total / count


class DeepLabMSc(nn.Module):
    """DeepLab v1's multi-scale idea on a DeepLab v3: one extra head on an earlier, finer stage.

    Chen et al., ICLR 2015 ("DeepLab-MSc"): a two-layer MLP (a 3x3 convolution with 128 channels and a 1x1 with
    128) on the image and on each of the first four pooling outputs; its features join the last layer's
    before the classifier, and only the new weights are trained. Here one head on the encoder's stride-4
    output (``features["low_level"]``): 3x3 conv + ReLU, 1x1 conv + ReLU (``channels`` each) and a 1x1
    classifier, whose scores are **added** to the base model's (each upsampled to the input size). Adding the
    scores of two linear classifiers is the same as concatenating their features and classifying them with
    one (bilinear upsampling is linear too), so this is the paper's concatenation. The classifier starts at
    zero: before training, ``DeepLabMSc(base)`` computes exactly what ``base`` does.

    Args:
        base: a ``DeepLabV3`` (or any model whose ``backbone(x)`` returns ``{"low_level", "out"}`` and whose
            ``classifier`` maps ``"out"`` to class scores ``[B, C, h, w]``).
        channels: the MLP's width (128 in the paper).
        freeze_base: train only the new head (the paper); the base keeps its weights and, in ``train()``
            mode too, its batch-norm statistics (it stays in ``eval()``).

    ``forward(x [B, 3, H, W]) -> logits [B, C, H, W]``.
    """

    def __init__(self, base: nn.Module, channels: int = 128, freeze_base: bool = True):
        super().__init__()
        if not isinstance(base, nn.Module) or not isinstance(getattr(base, "backbone", None), nn.Module) \
                or not isinstance(getattr(base, "classifier", None), nn.Module):
            raise TypeError(f"base must be a DeepLabV3 (a module with .backbone and .classifier), got "
                            f"{type(base).__name__}")
        channels = validate.positive_int(channels, "channels")
        self.freeze_base = validate.flag(freeze_base, "freeze_base")
        self.base = base
        low = base.backbone.low_level_channels
        num_classes = _num_classes(base.classifier)
        self.extra = nn.Sequential(
            nn.Conv2d(low, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 1), nn.ReLU(),
            nn.Conv2d(channels, num_classes, 1),
        )  # fmt: skip
        nn.init.zeros_(self.extra[-1].weight)  # start as the base model: the head learns a correction
        nn.init.zeros_(self.extra[-1].bias)
        if self.freeze_base:
            base.requires_grad_(False)
            base.eval()

    def train(self, mode: bool = True) -> "DeepLabMSc":
        super().train(mode)
        if self.freeze_base:  # a frozen base also keeps its batch-norm statistics
            self.base.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x)
        features = self.base.backbone(x)
        # each score map goes to the input size on its own (resizing twice is not resizing once)
        main = upsample_to(self.base.classifier(features["out"]), x.shape[-2:])
        return main + upsample_to(self.extra(features["low_level"]), x.shape[-2:])


def _num_classes(classifier: nn.Module) -> int:
    """The number of classes a classifier ends with: the output channels of its last convolution."""
    convs = [m for m in classifier.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise TypeError(f"base.classifier must end with a convolution to class scores, got {type(classifier).__name__}")
    return convs[-1].out_channels


class MultiScale(nn.Module):
    """``multi_scale_predict`` as a model: ``MultiScale(model, scales, flip)(images) -> averaged logits``, so
    that ``segedu.evaluation.evaluate`` and ``predict`` score multi-scale inference like any model.
    ``model`` is a submodule (``eval()`` and ``to()`` reach it)."""

    def __init__(self, model: nn.Module, scales: Sequence[float] = (0.75, 1.0, 1.25), flip: bool = True):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model, self.scales, self.flip = model, _check_scales(scales), validate.flag(flip, "flip")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return multi_scale_predict(self.model, images, self.scales, self.flip)
