"""The training loop every lesson uses: ``fit`` (and ``evaluate``, ``predict`` from ``segedu.evaluation``).

``fit`` is the plain PyTorch loop (forward, loss, backward, optimizer step) with what a course needs
around it: data from three kinds of sources (``segedu.batches``), a ``tqdm`` progress bar (a widget in
JupyterLab, text in a terminal), mixed precision on a GPU, periodic validation, a callback for live
widgets, and a ``History`` of what happened. Nothing is hidden: read ``_Step`` to see one optimizer step.

Mixed precision follows Micikevicius et al., "Mixed Precision Training", ICLR 2018: the forward pass runs
in 16-bit under ``torch.autocast``; with float16 (narrow exponent range) the loss is scaled before the
backward pass so small gradients do not underflow (``GradScaler``); bfloat16 has float32's range and
needs no scaling, so it is preferred where the GPU supports it.

A loss that turns NaN or infinite stops ``fit`` before that step's optimizer step (``FloatingPointError``),
so the model keeps its last finite weights. Long runs write resumable checkpoints, resume from them and
survive Ctrl-C (``segedu.resume``), and log every step to a CSV file (``segedu.runlog``, ``read_log``).
Checkpoint files live in ``segedu.checkpoint``; the opt-in reuse of identical earlier runs in
``segedu.cache``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from segedu import cache, runtime, validate
from segedu.batches import num_images, source_kind, split_pair, to_device, train_batches
from segedu.evaluation import evaluate, logits_of, predict
from segedu.resume import (RunSaver, StopRequests, check_resume, check_run_arguments, distributed, is_main,
                           restore)
from segedu.runlog import RunLog, read_log

__all__ = ["History", "fit", "evaluate", "predict", "read_log"]


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

    A loss that is not finite stops training *before* the optimizer step (``FloatingPointError``): the
    weights and the optimizer state stay those of the previous step, and the BatchNorm running statistics,
    which the forward pass already moved, are put back, so the model is the last finite one.
    """

    def __init__(self, model, loss_fn, optimizer, scheduler, device, amp_dtype, channels_last, grad_clip):
        self.model, self.loss_fn, self.optimizer, self.scheduler = model, loss_fn, optimizer, scheduler
        self.device, self.channels_last, self.grad_clip = device, channels_last, grad_clip
        self.scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
        self.autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
        self.ddp = isinstance(model, nn.parallel.DistributedDataParallel)
        # Buffers a training-mode forward pass updates in place (running mean / var, batches tracked).
        self.norm_buffers = [b for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase)
                             for b in m.buffers(recurse=False)]

    def __call__(self, batch: Any, step: int, history: History) -> int:
        """Train on ``batch`` (``step`` = steps done, 1-based); returns its number of images."""
        x, y = split_pair(batch, "train_data")
        x, y = to_device(x, self.device, self.channels_last), to_device(y, self.device)
        before = [b.clone() for b in self.norm_buffers]  # small: a few numbers per channel
        loss, parts = self.backward(x, y)
        value = loss.item()  # one device sync per step: the price of a live loss curve and of this check
        finite = math.isfinite(value)
        if self.ddp:  # every process stops before the same step (their gradients were all-reduced)
            flag = torch.tensor([float(not finite)], device=self.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            finite = flag.item() == 0
        if not finite:
            self.optimizer.zero_grad(set_to_none=True)  # the gradients of a non-finite loss are garbage
            with torch.no_grad():
                for buffer, saved in zip(self.norm_buffers, before):
                    buffer.copy_(saved)
            last = f"after step {step - 1}" if step > 1 else "it started with"
            what = value if not math.isfinite(value) else "non-finite in another process"
            raise FloatingPointError(
                f"fit: the loss became {what} at step {step}, before its optimizer step: the model keeps the "
                f"weights {last}. Lower the learning rate (lr), clip gradients (grad_clip=1.0) or check the "
                "data and loss_fn"
            )
        self.update()
        if self.scheduler is not None:
            self.scheduler.step()
        history.loss.append(value)
        for name, part in parts.items():
            history.parts.setdefault(name, []).append(part.item())
        history.steps = step
        return num_images(x)

    def backward(self, x: Any, y: Any) -> tuple[torch.Tensor, dict]:
        """Forward, loss and backward (gradients only: the weights do not change); returns the (detached)
        loss and its named parts (empty unless the model returns a dict)."""
        model, optimizer = self.model, self.optimizer
        with self.autocast:
            if self.loss_fn is None:  # the model computes its own loss (torchvision detection models)
                out = model(x, y)
                parts = out if isinstance(out, dict) else {}
                loss = sum(parts.values()) if parts else out
                if not isinstance(loss, torch.Tensor):
                    raise TypeError(f"with loss_fn=None, model(x, y) must return a loss tensor or a dict of "
                                    f"them, got {type(out).__name__}")
            else:
                loss, parts = self.loss_fn(logits_of(model(x)), y), {}
        optimizer.zero_grad(set_to_none=True)
        # float16: scale the loss so small gradients survive (unscaled in ``update``)
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        return loss.detach(), {k: v.detach() for k, v in parts.items()}

    def update(self) -> None:
        """The optimizer step on the gradients ``backward`` left (clipped first when ``grad_clip`` is set)."""
        model, optimizer, scaler, grad_clip = self.model, self.optimizer, self.scaler, self.grad_clip
        if scaler is not None:
            if grad_clip is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(optimizer)  # skipped when a scaled gradient overflowed; the scale then shrinks
            scaler.update()
        else:
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()


class _Progress:
    """``fit``'s ``tqdm`` bar: steps done, the smoothed loss and the last validation mIoU."""

    def __init__(self, steps: int, enabled: bool, done: int = 0):
        self.bar = tqdm(total=steps, initial=done, disable=not enabled, desc="fit", unit="step", dynamic_ncols=True)
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
    checkpoint: str | os.PathLike | None = None,
    save_every: int | None = None,
    resume: str | os.PathLike | None = None,
    log: str | os.PathLike | None = None,
    checkpoint_extra: dict | None = None,
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
        steps: optimizer steps (>= 1); with ``resume``, the total, counting the steps already done.
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
        checkpoint: a file for a resumable checkpoint (``segedu.resume``), written every ``save_every``
            steps, after the last step, and when Ctrl-C stops the run (the step under way is finished first;
            a second Ctrl-C stops at once). An existing file there must be a segedu checkpoint.
        save_every: write ``checkpoint`` every this many steps (needs ``checkpoint``).
        resume: a checkpoint written by ``fit(checkpoint=...)``: weights, optimizer, scheduler, random
            generators, batch sampler and ``History`` are restored and training goes on from its step to
            ``steps``; ``k`` steps + resume to ``N`` give the weights of ``N`` steps straight (on a CPU, bit
            for bit). Pass the same data, loss, batch size and kind of optimizer and scheduler; the
            optimizer's hyper-parameters (``lr``) come from the file.
        log: a CSV file with a row per step and per validation (``segedu.runlog``: ``kind,step,seconds,loss,
            lr,miou,...``), flushed row by row; a resumed run appends. ``read_log(path)`` reads it back.
        checkpoint_extra: plain metadata stored in the checkpoint's ``extra`` (with ``step``), e.g. the
            ``zoo.model_spec`` under ``"spec"``, so that ``zoo.load_model`` rebuilds the network.

        Under ``torch.distributed`` pass the same ``checkpoint`` and ``save_every`` to every process: each
        takes part in a save (its random generators and sampler are gathered) and process 0 writes the file;
        only process 0 writes the ``log``.

    Returns:
        a ``History``. The model is left in **eval mode** on ``device``: ready for ``evaluate``,
        ``predict`` or a widget; call ``model.train()`` to go on training.

    Raises:
        FloatingPointError: the loss is NaN or infinite; raised before that step's optimizer step, so the
            model keeps the weights of the step before (and ``checkpoint`` its last save).
    """
    steps, batch_size, lr, val_every, seed = _check_fit_arguments(
        model, train_data, loss_fn, steps, optimizer, val_data, batch_size, lr, val_every, callback, seed, grad_clip)
    checkpoint, save_every, log, checkpoint_extra = check_run_arguments(checkpoint, save_every, log,
                                                                             checkpoint_extra)
    saved = check_resume(resume, steps)
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
    # $SEGEDU_CACHE names a folder (segedu.cache); a callback watches the run as it happens, and a run that
    # writes a checkpoint or a log, or resumes, has effects beyond its result: those always train.
    uncached = callback is not None or checkpoint is not None or saved is not None or log is not None
    path = None if uncached else cache.entry(
        "fit", model, train_data, loss_fn, steps, optimizer, val_data, device.type, str(amp_dtype),
        use_channels_last, batch_size, lr, num_classes, val_every, seed, scheduler, grad_clip)
    stored = cache.load(path, model, optimizer, scheduler, verbose=progress) if path is not None else None
    if stored is not None:
        model.eval()
        return History(**{**stored, "cached": True})

    train_step = _Step(model, loss_fn, optimizer, scheduler, device, amp_dtype, use_channels_last, grad_clip)
    history, batches, done = History(), train_batches(train_data, batch_size, seed), 0
    counters = {"train_seconds": 0.0, "images": 0}  # training steps only: the throughput
    if saved is not None:
        done, stored_history, counters = restore(saved, model, optimizer, scheduler, train_step.scaler,
                                                      batches)
        history = History(**{**stored_history, "cached": False})
    saver = None if checkpoint is None else RunSaver(
        checkpoint, save_every, checkpoint_extra, model, optimizer, scheduler, train_step.scaler, batches, steps,
        batch_size, seed)
    run_log = None if log is None or not is_main() else RunLog(log, done if saved is not None else None)
    bar, stops = _Progress(steps, progress, done), StopRequests(saver is not None, device)
    start, earlier = time.perf_counter(), history.seconds  # a resumed run counts on from the saved time

    def clock() -> float:
        return earlier + time.perf_counter() - start

    step, whole = done, True  # whole: the state is that of a finished step (a Ctrl-C can save it)
    model.train()
    try:
        with stops:
            for step in range(done + 1, steps + 1):
                whole, t0 = False, time.perf_counter()
                step_lr = optimizer.param_groups[0]["lr"]
                counters["images"] += train_step(next(batches), step, history)
                counters["train_seconds"] += time.perf_counter() - t0
                if run_log is not None:
                    run_log.train(step, clock(), history.loss[-1], float(step_lr),
                                  {name: values[-1] for name, values in history.parts.items()})
                if val_data is not None and (step == steps or (val_every is not None and step % val_every == 0)):
                    # Validation must not change the training that follows: iterating a DataLoader draws its
                    # base seed from the global generator, which dropout and augmentation draw from too.
                    generators = runtime.rng_state()
                    metrics = evaluate(model, val_data, num_classes, batch_size=batch_size, device=device)
                    runtime.set_rng_state(generators)
                    history.val.append({"step": step, **metrics})
                    if run_log is not None:
                        run_log.val(step, clock(), metrics)
                    model.train()
                whole = True
                bar.update(history)
                if callback is not None:
                    callback(step, model, history)
                    model.train()  # a callback may have switched to eval mode for a snapshot
                if saver is not None:
                    stop = stops.requested()  # under torch.distributed: every process asks, every step
                    if stop or saver.due(step):
                        saver.save(step, _timed(history, clock(), counters), counters)
                    if stop:
                        raise KeyboardInterrupt
    except KeyboardInterrupt:
        if saver is not None:  # save the last finished step, unless Ctrl-C came twice (= stop at once)
            if whole and saver.saved_step != step and step > done and not stops.forced and not distributed():
                saver.save(step, _timed(history, clock(), counters), counters)
            finished = step if whole else step - 1
            saver.interrupted(finished, saved=saver.saved_step == finished)
        raise
    finally:
        bar.close()
        model.eval()
        _timed(history, clock(), counters)
        if run_log is not None:
            run_log.close()
    if path is not None:
        cache.store(path, model, optimizer, scheduler, dataclasses.asdict(history))
    return history


def _timed(history: History, seconds: float, counters: dict) -> dict:
    """Set ``history``'s wall-clock time and throughput; returns it as plain values (for a checkpoint)."""
    history.seconds = seconds
    history.images_per_second = (counters["images"] / counters["train_seconds"]
                                 if counters["train_seconds"] > 0 else 0.0)
    return dataclasses.asdict(history)
