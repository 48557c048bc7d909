"""Measuring a trained model: ``evaluate`` (region and boundary metrics over a dataset) and ``predict``.

Both run without gradients in eval mode and restore the model's mode afterwards. ``evaluate`` pools one
confusion matrix over every pixel of the dataset (IoU, Dice, pixel accuracy: ``segedu.metrics``) and
averages the boundary F1 score over images (Csurka et al., "What is a good evaluation measure for semantic
segmentation?", BMVC 2013). Logits that are not finite raise ``FloatingPointError`` rather than give
metrics: the argmax of NaN logits is class 0 everywhere, which can look like a good pixel accuracy.

``segedu.train`` re-exports both (``from segedu.train import evaluate, fit``); ``fit`` validates with
``evaluate``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from segedu import runtime, validate
from segedu.batches import eval_batches, num_images, source_kind, split_pair, to_device
from segedu.metrics import ConfusionMatrix, boundary_f1

__all__ = ["evaluate", "predict", "logits_of"]


# --------------------------------------------------------------------------- model outputs


def logits_of(out: Any) -> torch.Tensor:
    """A model's logits: the tensor itself, or ``out["out"]`` for torchvision's segmentation models."""
    if isinstance(out, dict) and "out" in out:
        out = out["out"]
    if not isinstance(out, torch.Tensor):
        raise TypeError(
            f"the model must return logits [B, C, H, W] (or a dict with 'out'), got {type(out).__name__}"
        )
    return out


def _place(model: nn.Module, device: Any) -> torch.device:
    """The device to run on: ``device`` (the model is moved there) or, when ``None``, the model's own."""
    if device is not None:
        device = validate.torch_device(device)
        model.to(device)
        return device
    param = next(model.parameters(), None)
    return param.device if param is not None else runtime.device()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Any,
    num_classes: int | None = None,
    batch_size: int | None = None,
    device: torch.device | str | None = None,
    ignore_index: int | None = 255,
) -> dict:
    """Region and boundary metrics of a semantic model over a whole dataset (no_grad, eval mode).

    Args:
        model: returns logits ``[B, C, H, W]`` (or a dict with ``"out"``).
        data: a ``.batch()`` object (rendered in chunks of ``batch_size``), a ``Dataset`` or an iterable of
            ``(images [B, 3, H, W], masks int64 [B, H, W])`` batches; one ordered pass.
        num_classes: C; default ``data.num_classes``, then the logits' channel count.
        batch_size: default ``runtime.profile().batch_size``.
        device: default the model's device (the model is moved only when ``device`` is given).
        ignore_index: mask label that counts for nothing.

    Returns:
        ``{"miou": float, "iou": [C floats], "dice": [C floats], "pixel_accuracy": float,
        "boundary_f1": float, "images": int}``: IoU, Dice and accuracy pooled over all pixels (one confusion
        matrix), boundary F1 averaged over images (``segedu.metrics.boundary_f1``). NaN marks classes absent
        from both predictions and masks. The model's train/eval mode is restored afterwards.

    Raises:
        FloatingPointError: the model's logits hold NaN or infinity (the message names the batch): the
            argmax of NaN is class 0, so metrics of such logits would be numbers without meaning.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    source_kind(data, "data")
    batch_size = validate.positive_int(runtime.profile().batch_size if batch_size is None else batch_size,
                                       "batch_size")
    ignore_index = validate.ignore_index(ignore_index)
    device = _place(model, device)
    num_classes = num_classes if num_classes is not None else getattr(data, "num_classes", None)

    was_training = model.training
    model.eval()
    matrix, bf_sum, bf_count, images = None, 0.0, 0, 0
    try:
        for index, batch in enumerate(eval_batches(data, batch_size)):
            x, y = split_pair(batch, "data")
            x, y = to_device(x, device), to_device(y, device)
            logits = logits_of(model(x)).float()
            finite = torch.isfinite(logits)
            if not bool(finite.all()):  # one sync per batch; the metrics below sync anyway
                bad = int((~finite).sum())
                raise FloatingPointError(
                    f"evaluate: the model's logits hold {bad} of {logits.numel()} values that are NaN or infinite "
                    f"(batch {index}, images {images} to {images + num_images(x) - 1}); metrics of them would "
                    "mean nothing. The weights may have diverged (lower lr, grad_clip) or the inputs hold NaN"
                )
            if matrix is None:
                matrix = ConfusionMatrix(num_classes or logits.shape[1], ignore_index)
            matrix.update(logits, y)
            bf = boundary_f1(logits, y, num_classes=matrix.num_classes, ignore_index=ignore_index,
                             reduction="none")  # per image, so the mean is over images, not batches
            bf_sum += float(bf.nan_to_num(0).sum())
            bf_count += int((~bf.isnan()).sum())
            images += num_images(x)
    finally:
        model.train(was_training)
    if matrix is None:
        raise ValueError("data yielded no batches")
    return {
        "miou": matrix.miou(),
        "iou": matrix.iou().tolist(),
        "dice": matrix.dice().tolist(),
        "pixel_accuracy": matrix.pixel_accuracy(),
        "boundary_f1": bf_sum / bf_count if bf_count else float("nan"),
        "images": images,
    }


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """Class labels of ``images``: float ``[B, 3, H, W]`` -> int64 ``[B, H, W]`` (``[3, H, W]`` -> ``[H, W]``).

    Runs in eval mode without gradients on ``device`` (default: the model's device) and returns the labels
    on the images' device; the model's mode is restored afterwards.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    validate.tensor(images, "images", (3, 4), layout="[B, C, H, W] or [C, H, W]")
    device = _place(model, device)
    single = images.dim() == 3
    was_training = model.training
    model.eval()
    try:
        logits = logits_of(model((images[None] if single else images).to(device)))
    finally:
        model.train(was_training)
    labels = logits.argmax(1).to(images.device)
    return labels[0] if single else labels
