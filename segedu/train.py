"""The training loop every lesson uses: ``fit``, ``evaluate`` and ``predict``.

``fit`` is the plain PyTorch loop (forward, loss, backward, optimizer step) with what a course needs
around it: data from three kinds of sources (``segedu.batches``), a ``tqdm`` progress bar (a widget in
JupyterLab, text in a terminal), mixed precision on a GPU, periodic validation, a callback for live
widgets, and a ``History`` of what happened. Nothing is hidden: read ``_Step`` to see one optimizer step.

Mixed precision follows Micikevicius et al., "Mixed Precision Training", ICLR 2018: the forward pass runs
in 16-bit under ``torch.autocast``; with float16 (narrow exponent range) the loss is scaled before the
backward pass so small gradients do not underflow (``GradScaler``); bfloat16 has float32's range and
needs no scaling, so it is preferred where the GPU supports it.

Checkpoints live in ``segedu.checkpoint``; the opt-in reuse of identical earlier runs in ``segedu.cache``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from segedu import cache, runtime, validate
from segedu.batches import eval_batches, num_images, source_kind, split_pair, to_device, train_batches
from segedu.metrics import ConfusionMatrix, boundary_f1

__all__ = ["History", "fit", "evaluate", "predict"]


# --------------------------------------------------------------------------- history


@dataclass
class History:
    """What ``fit`` did.

    Attributes:
        loss: the training loss of every step (float, ``steps`` entries).
        val: one dict per validation: ``{"step", "miou", "iou", "dice", "pixel_accuracy", "boundary_f1",
            "images"}`` (see ``evaluate``).
        parts: when the model returns a dict of losses (``loss_fn=None``), each part per step.
        seconds: wall-clock time of the whole call, validation included.
        images_per_second: training throughput (training steps only: validation and callbacks excluded).
        steps: optimizer steps done.
    """

    loss: list[float] = field(default_factory=list)
    val: list[dict] = field(default_factory=list)
    parts: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    images_per_second: float = 0.0
    steps: int = 0
    cached: bool = False  # True when ``fit`` reused an identical earlier run (see ``segedu.cache``)

    @property
    def last_val(self) -> dict | None:
        """The latest validation dict, or ``None`` if there was none."""
        return self.val[-1] if self.val else None

    def __repr__(self) -> str:
        text = f"History(steps={self.steps}"
        if self.loss:
            text += f", loss {self.loss[0]:.4g} -> {self.loss[-1]:.4g}"
        if self.last_val:
            v = self.last_val
            text += f", val@{v['step']} mIoU {v['miou']:.3f} BF {v['boundary_f1']:.3f}"
        return text + f", {self.seconds:.1f} s, {self.images_per_second:.0f} img/s)"


# --------------------------------------------------------------------------- model outputs


def _logits(out: Any) -> torch.Tensor:
    """A model's logits: the tensor itself, or ``out["out"]`` for torchvision's segmentation models."""
    if isinstance(out, dict) and "out" in out:
        out = out["out"]
    if not isinstance(out, torch.Tensor):
        raise TypeError(
            f"the model must return logits [B, C, H, W] (or a dict with 'out'), got {type(out).__name__}"
        )
    return out


# --------------------------------------------------------------------------- arguments


def _auto_flag(value: Any, name: str, device: torch.device) -> bool:
    """``"auto"`` -> on for CUDA only; ``True``/``False`` force."""
    if validate.choice(value, name, ["auto", True, False]) == "auto":
        return device.type == "cuda"
    return value


def _amp_dtype(amp: Any, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bfloat16 where supported (no loss scaling needed), else float16; None = off."""
    if not _auto_flag(amp, "amp", device):
        return None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def _check_fit_arguments(model, train_data, loss_fn, steps, optimizer, val_data, batch_size, lr, val_every,
                         callback, seed, grad_clip) -> tuple[int, int, Any, int | None, int]:
    """``fit``'s checks, by ``segedu.validate``'s rule (a wrong type raises ``TypeError``, a wrong value
    ``ValueError``); returns ``steps, batch_size, lr, val_every, seed`` with the profile's defaults filled in."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable or None, got {type(loss_fn).__name__}")
    steps = validate.positive_int(steps, "steps")
    batch_size = validate.positive_int(runtime.profile().batch_size if batch_size is None else batch_size,
                                       "batch_size")
    if optimizer is not None and lr is not None:
        raise ValueError("pass either optimizer or lr (lr is only used to build the default Adam optimizer)")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}")
    lr = runtime.profile().lr if lr is None else lr
    validate.positive_number(lr, "lr")  # checked but kept as given (an int stays an int): it is in the cache key
    if val_every is not None:
        val_every = validate.positive_int(val_every, "val_every")
    if grad_clip is not None:
        validate.positive_number(grad_clip, "grad_clip")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
    seed = validate.integer(seed, "seed")
    source_kind(train_data, "train_data")
    if val_data is not None:
        source_kind(val_data, "val_data")
    return steps, batch_size, lr, val_every, seed


# --------------------------------------------------------------------------- one step, progress


class _Step:
    """One training step of ``fit``: the batch to the device, forward, loss, backward, optimizer (and
    scheduler) step; the loss and its parts go into the ``History``.

    ``amp_dtype`` float16 brings a ``GradScaler`` (the loss is scaled so small gradients survive and
    unscaled before clipping); bfloat16 needs none (Micikevicius et al., ICLR 2018).
    """

    def __init__(self, model, loss_fn, optimizer, scheduler, device, amp_dtype, channels_last, grad_clip):
        self.model, self.loss_fn, self.optimizer, self.scheduler = model, loss_fn, optimizer, scheduler
        self.device, self.channels_last, self.grad_clip = device, channels_last, grad_clip
        self.scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
        self.autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()

    def __call__(self, batch: Any, step: int, history: History) -> int:
        """Train on ``batch`` (``step`` = steps done, 1-based); returns its number of images."""
        x, y = split_pair(batch, "train_data")
        x, y = to_device(x, self.device, self.channels_last), to_device(y, self.device)
        loss, parts = self.optimize(x, y)
        if self.scheduler is not None:
            self.scheduler.step()
        value = loss.item()  # one device sync per step: the price of a live loss curve
        if not math.isfinite(value):
            raise FloatingPointError(
                f"the loss became {value} at step {step}: lower lr, clip gradients (grad_clip=1.0) "
                "or check the data and loss_fn"
            )
        history.loss.append(value)
        for name, part in parts.items():
            history.parts.setdefault(name, []).append(part.item())
        history.steps = step
        return num_images(x)

    def optimize(self, x: Any, y: Any) -> tuple[torch.Tensor, dict]:
        """One optimizer step; returns the (detached) loss and its named parts (empty unless a dict)."""
        model, optimizer, scaler, grad_clip = self.model, self.optimizer, self.scaler, self.grad_clip
        with self.autocast:
            if self.loss_fn is None:  # the model computes its own loss (torchvision detection models)
                out = model(x, y)
                parts = out if isinstance(out, dict) else {}
                loss = sum(parts.values()) if parts else out
                if not isinstance(loss, torch.Tensor):
                    raise TypeError(f"with loss_fn=None, model(x, y) must return a loss tensor or a dict of "
                                    f"them, got {type(out).__name__}")
            else:
                loss, parts = self.loss_fn(_logits(model(x)), y), {}
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:  # float16: scale the loss so small gradients survive, unscale before clipping
            scaler.scale(loss).backward()
            if grad_clip is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
        return loss.detach(), {k: v.detach() for k, v in parts.items()}


class _Progress:
    """``fit``'s ``tqdm`` bar: steps done, the smoothed loss and the last validation mIoU."""

    def __init__(self, steps: int, enabled: bool):
        self.bar = tqdm(total=steps, disable=not enabled, desc="fit", unit="step", dynamic_ncols=True)
        self.running: float | None = None

    def update(self, history: History) -> None:
        value = history.loss[-1]
        self.running = value if self.running is None else 0.9 * self.running + 0.1 * value  # smoothed for display
        postfix = {"loss": f"{self.running:.4f}"}
        if history.last_val:
            postfix["val_mIoU"] = f"{history.last_val['miou']:.3f}"
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


# --------------------------------------------------------------------------- fit


def fit(
    model: nn.Module,
    train_data: Any,
    loss_fn: Callable[[torch.Tensor, Any], torch.Tensor] | None,
    steps: int,
    optimizer: torch.optim.Optimizer | None = None,
    val_data: Any = None,
    device: torch.device | str | None = None,
    amp: bool | str = "auto",
    progress: bool = True,
    *,
    batch_size: int | None = None,
    lr: float | None = None,
    num_classes: int | None = None,
    val_every: int | None = None,
    callback: Callable[[int, nn.Module, History], Any] | None = None,
    seed: int = 0,
    scheduler: Any = None,
    channels_last: bool | str = "auto",
    grad_clip: float | None = None,
) -> History:
    """Train ``model`` for ``steps`` optimizer steps and return a ``History``.

    Args:
        model: any ``nn.Module``; semantic models return logits ``[B, C, H, W]`` (or a dict with ``"out"``).
        train_data: one of
            (a) an object with ``.batch(indices) -> (images, masks)`` and ``len()``, such as
            ``segedu.data.shapes.ShapesDataset``: each step draws ``batch_size`` random indices (with
            replacement, from a generator seeded with ``seed``) and renders the batch in one call;
            (b) a ``torch.utils.data.Dataset``: a shuffled DataLoader, cycled endlessly;
            (c) any iterable of ``(x, y)`` batches (a list, a DataLoader, ...), cycled.
        loss_fn: ``loss_fn(logits, target) -> scalar``. ``None``: the model computes its loss,
            ``model(x, y)`` returns a tensor or a dict of losses (summed), the way torchvision's Mask R-CNN
            trains (``x`` a list of images, ``y`` a list of target dicts).
        steps: optimizer steps (>= 1).
        optimizer: default ``Adam(model.parameters(), lr)``.
        val_data: evaluated with ``evaluate`` every ``val_every`` steps (default: once, at the end).
        device: default ``runtime.device()``; the model is moved there, batches follow.
        amp: ``"auto"`` = bfloat16 autocast on CUDA (float16 + ``GradScaler`` where bfloat16 is
            unsupported), off elsewhere; ``True``/``False`` force it (``True`` on a CPU uses bfloat16).
        progress: show a ``tqdm`` bar with the running loss and the last validation mIoU.
        batch_size: default ``runtime.profile().batch_size`` (sources (a) and (b)).
        lr: default ``runtime.profile().lr``; only for the default optimizer.
        num_classes: for validation; default ``val_data.num_classes``, then the logits' channel count.
        val_every: validate every this many steps (and at the end).
        callback: ``callback(step, model, history)`` after every step, ``step`` = steps done (1-based);
            lesson widgets take snapshots with it.
        seed: seeds ``random``, NumPy and torch (``runtime.seed_everything``: dropout and augmentation
            repeat) and the batch sampler. Same model, data and seed -> same losses (on a GPU up to
            nondeterministic kernels: see torch.use_deterministic_algorithms).
        scheduler: a learning-rate scheduler stepped after every optimizer step, or a function
            ``optimizer -> scheduler`` (handy with the default optimizer).
        channels_last: ``"auto"`` = on for CUDA (faster convolutions on tensor cores), for model and inputs.
        grad_clip: clip the gradient norm to this value (``None``: no clipping).

    Returns:
        a ``History``. The model is left in **eval mode** on ``device``: ready for ``evaluate``,
        ``predict`` or a widget; call ``model.train()`` to go on training.
    """
    steps, batch_size, lr, val_every, seed = _check_fit_arguments(
        model, train_data, loss_fn, steps, optimizer, val_data, batch_size, lr, val_every, callback, seed, grad_clip)
    device = validate.torch_device(device) if device is not None else runtime.device()
    amp_dtype = _amp_dtype(amp, device)
    use_channels_last = _auto_flag(channels_last, "channels_last", device)
    if num_classes is None:
        num_classes = getattr(val_data, "num_classes", None) or getattr(train_data, "num_classes", None)

    runtime.seed_everything(seed)
    model.to(device)
    if use_channels_last:
        model.to(memory_format=torch.channels_last)
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    if scheduler is not None and not hasattr(scheduler, "step"):
        scheduler = scheduler(optimizer)  # a factory: optimizer -> scheduler

    # An identical earlier run (same package code, initial weights, data, loss and arguments) is reused when
    # $SEGEDU_CACHE names a folder (segedu.cache); a callback watches the run as it happens, so it always trains.
    path = cache.entry("fit", model, train_data, loss_fn, steps, optimizer, val_data, device.type, str(amp_dtype),
                       use_channels_last, batch_size, lr, num_classes, val_every, seed, scheduler,
                       grad_clip) if callback is None else None
    stored = cache.load(path, model, optimizer, scheduler, verbose=progress) if path is not None else None
    if stored is not None:
        model.eval()
        return History(**{**stored, "cached": True})

    train_step = _Step(model, loss_fn, optimizer, scheduler, device, amp_dtype, use_channels_last, grad_clip)
    history, batches, bar = History(), train_batches(train_data, batch_size, seed), _Progress(steps, progress)
    start, train_seconds, images = time.perf_counter(), 0.0, 0
    model.train()
    try:
        for step in range(1, steps + 1):
            t0 = time.perf_counter()
            images += train_step(next(batches), step, history)
            train_seconds += time.perf_counter() - t0
            if val_data is not None and (step == steps or (val_every is not None and step % val_every == 0)):
                metrics = evaluate(model, val_data, num_classes, batch_size=batch_size, device=device)
                history.val.append({"step": step, **metrics})
                model.train()
            bar.update(history)
            if callback is not None:
                callback(step, model, history)
                model.train()  # a callback may have switched to eval mode for a snapshot
    finally:
        bar.close()
        model.eval()
        history.seconds = time.perf_counter() - start
        history.images_per_second = images / train_seconds if train_seconds > 0 else 0.0
    if path is not None:
        cache.store(path, model, optimizer, scheduler, dataclasses.asdict(history))
    return history


# --------------------------------------------------------------------------- evaluate / predict


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
        for batch in eval_batches(data, batch_size):
            x, y = split_pair(batch, "data")
            x, y = to_device(x, device), to_device(y, device)
            logits = _logits(model(x)).float()
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
        logits = _logits(model((images[None] if single else images).to(device)))
    finally:
        model.train(was_training)
    labels = logits.argmax(1).to(images.device)
    return labels[0] if single else labels
