"""The training loop every lesson uses: ``fit``, ``evaluate``, ``predict`` and checkpoints.

``fit`` is the plain PyTorch loop (forward, loss, backward, optimizer step) with what a course needs
around it: data from three kinds of sources, a ``tqdm`` progress bar (a widget in JupyterLab, text in a
terminal), mixed precision on a GPU, periodic validation, a callback for live widgets, and a ``History``
of what happened. Nothing is hidden: read ``_step`` to see one optimizer step.

Mixed precision follows Micikevicius et al., "Mixed Precision Training", ICLR 2018: the forward pass runs
in 16-bit under ``torch.autocast``; with float16 (narrow exponent range) the loss is scaled before the
backward pass so small gradients do not underflow (``GradScaler``); bfloat16 has float32's range and
needs no scaling, so it is preferred where the GPU supports it.

Checkpoints hold only state dicts and plain values, so ``torch.load(path, weights_only=True)`` reads them
(no pickled code runs when you open a file someone sent you).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset
from torch.utils.data._utils.collate import default_collate
from tqdm.auto import tqdm

from segedu import cache, runtime
from segedu.metrics import ConfusionMatrix, boundary_f1

__all__ = ["History", "fit", "evaluate", "predict", "save_checkpoint", "load_checkpoint"]


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


# --------------------------------------------------------------------------- data sources


def _collate(items: list) -> Any:
    """Stack ``(image, mask)`` items; keep lists for detection targets (dicts with a varying number of
    objects cannot be stacked: torchvision's detection models take lists of images and of target dicts)."""
    if isinstance(items[0], (tuple, list)) and len(items[0]) == 2 and isinstance(items[0][1], dict):
        return [item[0] for item in items], [item[1] for item in items]
    return default_collate(items)


def _num_images(x: Any) -> int:
    return len(x) if isinstance(x, (list, tuple)) else int(x.shape[0])


def _kind(data: Any, name: str) -> str:
    """Which of the three kinds of source ``data`` is: ``"batch"``, ``"dataset"`` or ``"iterable"``."""
    if callable(getattr(data, "batch", None)):
        kind = "batch"
    elif isinstance(data, Dataset) and not isinstance(data, IterableDataset):
        kind = "dataset"
    elif isinstance(data, Iterable):
        return "iterable"
    else:
        raise TypeError(
            f"{name} must have a .batch(indices) method, be a torch Dataset, or be an iterable of (x, y) "
            f"batches; got {type(data).__name__}"
        )
    if len(data) < 1:
        raise ValueError(f"{name} is empty (len 0)")
    return kind


def _train_batches(data: Any, batch_size: int, seed: int) -> Iterator:
    """Endless stream of training batches from any of the three kinds of source."""
    generator = torch.Generator().manual_seed(seed)
    kind = _kind(data, "train_data")
    if kind == "batch":
        # Render whole batches at once (vectorized, on the dataset's device): no per-item Python work.
        while True:
            yield data.batch(torch.randint(len(data), (batch_size,), generator=generator))
    if kind == "dataset":
        data = DataLoader(
            data, batch_size, shuffle=True, generator=generator, drop_last=len(data) >= batch_size,
            collate_fn=_collate,
        )  # a new shuffle every epoch, from the seeded generator
    done = 0
    while True:  # cycle; a one-shot iterator that runs dry must not loop forever
        before = done
        for item in data:
            done += 1
            yield item
        if done == before:
            raise ValueError(
                f"train_data ran out after {done} batches (an iterator can be read only once): pass a list, "
                "a DataLoader or a Dataset, or an iterator with at least `steps` batches"
            )


def _eval_batches(data: Any, batch_size: int) -> Iterator:
    """One ordered pass over an evaluation source."""
    kind = _kind(data, "data")
    if kind == "batch":
        for start in range(0, len(data), batch_size):
            yield data.batch(torch.arange(start, min(len(data), start + batch_size)))
    elif kind == "dataset":
        yield from DataLoader(data, batch_size, shuffle=False, collate_fn=_collate)
    else:
        yield from data


def _to(obj: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Move tensors (inside lists, tuples and dicts too) to ``device``; 4-D images optionally channels-last."""
    if isinstance(obj, torch.Tensor):
        obj = obj.to(device, non_blocking=True)
        if channels_last and obj.dim() == 4 and obj.is_floating_point():
            obj = obj.contiguous(memory_format=torch.channels_last)
        return obj
    if isinstance(obj, dict):
        return {k: _to(v, device, channels_last) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to(v, device, channels_last) for v in obj)
    return obj


def _split(batch: Any, name: str) -> tuple[Any, Any]:
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValueError(f"{name} must yield (x, y) pairs, got {type(batch).__name__} of length "
                         f"{len(batch) if hasattr(batch, '__len__') else '?'}")
    return batch[0], batch[1]


def _logits(out: Any) -> torch.Tensor:
    """A model's logits: the tensor itself, or ``out["out"]`` for torchvision's segmentation models."""
    if isinstance(out, dict) and "out" in out:
        out = out["out"]
    if not isinstance(out, torch.Tensor):
        raise TypeError(
            f"the model must return logits [B, C, H, W] (or a dict with 'out'), got {type(out).__name__}"
        )
    return out


# --------------------------------------------------------------------------- argument checks


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def _positive_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    return value


def _auto_flag(value: Any, name: str, device: torch.device) -> bool:
    """``"auto"`` -> on for CUDA only; ``True``/``False`` force."""
    if value == "auto" and isinstance(value, str):
        return device.type == "cuda"
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be 'auto', True or False, got {value!r}")
    return value


def _amp_dtype(amp: Any, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bfloat16 where supported (no loss scaling needed), else float16; None = off."""
    if not _auto_flag(amp, "amp", device):
        return None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


# --------------------------------------------------------------------------- fit


def _step(model, x, y, loss_fn, optimizer, scaler, autocast, grad_clip) -> tuple[torch.Tensor, dict]:
    """One optimizer step; returns the (detached) loss and its named parts (empty unless a dict)."""
    with autocast:
        if loss_fn is None:  # the model computes its own loss (torchvision detection models)
            out = model(x, y)
            parts = out if isinstance(out, dict) else {}
            loss = sum(parts.values()) if parts else out
            if not isinstance(loss, torch.Tensor):
                raise TypeError(f"with loss_fn=None, model(x, y) must return a loss tensor or a dict of them, "
                                f"got {type(out).__name__}")
        else:
            loss, parts = loss_fn(_logits(model(x)), y), {}
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
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable or None, got {type(loss_fn).__name__}")
    _positive_int(steps, "steps")
    batch_size = _positive_int(runtime.profile().batch_size if batch_size is None else batch_size, "batch_size")
    if optimizer is not None and lr is not None:
        raise ValueError("pass either optimizer or lr (lr is only used to build the default Adam optimizer)")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}")
    lr = _positive_number(runtime.profile().lr if lr is None else lr, "lr")
    if val_every is not None:
        _positive_int(val_every, "val_every")
    if grad_clip is not None:
        _positive_number(grad_clip, "grad_clip")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    _kind(train_data, "train_data")
    if val_data is not None:
        _kind(val_data, "val_data")

    device = torch.device(device) if device is not None else runtime.device()
    autocast_dtype = _amp_dtype(amp, device)
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
    scaler = torch.amp.GradScaler(device.type) if autocast_dtype == torch.float16 else None
    autocast = (
        torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
    )

    # An identical earlier run (same package code, initial weights, data, loss and arguments) is reused when
    # $SEGEDU_CACHE names a folder; a callback watches the run as it happens, so it always trains. Nor is it
    # used under torch.distributed: a rank that answered from the cache would never join the others' all-reduces.
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    path, folder = None, cache.cache_dir() if callback is None and not distributed else None
    if folder is not None:
        key = cache.fingerprint(
            "fit", model, train_data, loss_fn, steps, optimizer, val_data, device.type, str(autocast_dtype),
            use_channels_last, batch_size, lr, num_classes, val_every, seed, scheduler, grad_clip,
        )
        if key is not None:
            path = folder / f"fit-{key[:32]}.pt"
            cached = _load_cached(path, model, optimizer, scheduler, progress)
            if cached is not None:
                return cached

    history = History()
    batches = _train_batches(train_data, batch_size, seed)
    bar = tqdm(total=steps, disable=not progress, desc="fit", unit="step", dynamic_ncols=True)
    start = time.perf_counter()
    train_seconds, images, running = 0.0, 0, None
    model.train()
    try:
        for step in range(1, steps + 1):
            t0 = time.perf_counter()
            x, y = _split(next(batches), "train_data")
            x, y = _to(x, device, use_channels_last), _to(y, device)
            loss, parts = _step(model, x, y, loss_fn, optimizer, scaler, autocast, grad_clip)
            if scheduler is not None:
                scheduler.step()
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
            images += _num_images(x)
            train_seconds += time.perf_counter() - t0

            running = value if running is None else 0.9 * running + 0.1 * value  # smoothed for display
            if val_data is not None and (step == steps or (val_every is not None and step % val_every == 0)):
                metrics = evaluate(model, val_data, num_classes, batch_size=batch_size, device=device)
                history.val.append({"step": step, **metrics})
                model.train()
            postfix = {"loss": f"{running:.4f}"}
            if history.last_val:
                postfix["val_mIoU"] = f"{history.last_val['miou']:.3f}"
            bar.set_postfix(postfix, refresh=False)
            bar.update(1)
            if callback is not None:
                callback(step, model, history)
                model.train()  # a callback may have switched to eval mode for a snapshot
    finally:
        bar.close()
        model.eval()
        history.seconds = time.perf_counter() - start
        history.images_per_second = images / train_seconds if train_seconds > 0 else 0.0
    if path is not None:
        _store_cached(path, model, optimizer, scheduler, history)
    return history


def _store_cached(path: Path, model: nn.Module, optimizer, scheduler, history: History) -> None:
    state = {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if hasattr(scheduler, "state_dict") else None,
        "history": dataclasses.asdict(history),
        "rng": cache.rng_state(),
    }
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a reader never sees half a file


def _load_cached(path: Path, model: nn.Module, optimizer, scheduler, progress: bool) -> History | None:
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])  # the model is already on its device: values are copied there
    optimizer.load_state_dict(state["optimizer"])
    if state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    cache.set_rng_state(state["rng"])  # the generators as training left them
    model.eval()
    history = History(**{**state["history"], "cached": True})
    if progress:
        print(f"fit: reused an identical earlier run from ${cache.ENV_VAR} ({path.name}); "
              f"{history.steps} steps, trained in {history.seconds:.1f} s")
    return history


# --------------------------------------------------------------------------- evaluate / predict


def _model_device(model: nn.Module) -> torch.device:
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
    _kind(data, "data")
    batch_size = _positive_int(runtime.profile().batch_size if batch_size is None else batch_size, "batch_size")
    if device is not None:
        model.to(device)
    device = _model_device(model) if device is None else torch.device(device)
    num_classes = num_classes if num_classes is not None else getattr(data, "num_classes", None)

    was_training = model.training
    model.eval()
    matrix, bf_sum, bf_count, images = None, 0.0, 0, 0
    try:
        for batch in _eval_batches(data, batch_size):
            x, y = _split(batch, "data")
            x, y = _to(x, device), _to(y, device)
            logits = _logits(model(x)).float()
            if matrix is None:
                matrix = ConfusionMatrix(num_classes or logits.shape[1], ignore_index)
            matrix.update(logits, y)
            bf = boundary_f1(logits, y, num_classes=matrix.num_classes, ignore_index=ignore_index,
                             reduction="none")  # per image, so the mean is over images, not batches
            bf_sum += float(bf.nan_to_num(0).sum())
            bf_count += int((~bf.isnan()).sum())
            images += _num_images(x)
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
    if not isinstance(images, torch.Tensor) or images.dim() not in (3, 4):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a tensor [B, C, H, W] or [C, H, W], got {shape}")
    if device is not None:
        model.to(device)
    device = _model_device(model) if device is None else torch.device(device)
    single = images.dim() == 3
    was_training = model.training
    model.eval()
    try:
        logits = _logits(model((images[None] if single else images).to(device)))
    finally:
        model.train(was_training)
    labels = logits.argmax(1).to(images.device)
    return labels[0] if single else labels


# --------------------------------------------------------------------------- checkpoints

_FORMAT = "segedu-checkpoint-v1"
_PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def _check_plain(value: Any, where: str) -> None:
    """Only values ``torch.load(weights_only=True)`` can read back: numbers, strings, tensors, containers."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"checkpoint metadata {where} has a key of type {type(key).__name__}; use str")
            _check_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
    elif not isinstance(value, _PLAIN):
        raise TypeError(
            f"checkpoint metadata {where} is a {type(value).__name__}; only numbers, strings, tensors, lists "
            "and dicts load with weights_only=True (for a History pass dataclasses.asdict(history))"
        )


def save_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    **extra: Any) -> Path:
    """Save the model's (and optimizer's) state dict plus plain metadata ``extra`` (e.g. ``step=300,
    classes=[...]``) to ``path``; returns the path. Written to a temporary file first, then renamed, so an
    interrupted save never leaves a broken checkpoint behind."""
    _check_plain(extra, "extra")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": _FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "extra": extra,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def _read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """The whole ``save_checkpoint`` file (``{"format", "model", "optimizer", "extra"}``), format checked."""
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a segedu checkpoint (expected format {_FORMAT!r})")
    return state


def load_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    map_location: str | torch.device = "cpu") -> dict:
    """Load a ``save_checkpoint`` file into ``model`` (strictly: every key must match) and, if given,
    ``optimizer``; returns the ``extra`` metadata. Reads with ``weights_only=True``."""
    state = _read_checkpoint(path, map_location)
    model.load_state_dict(state["model"])
    if optimizer is not None:
        if state["optimizer"] is None:
            raise ValueError(f"{path} holds no optimizer state, but an optimizer was passed")
        optimizer.load_state_dict(state["optimizer"])
    return state["extra"]
