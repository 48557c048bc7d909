"""Long training runs that never lose their work: resumable checkpoints, resuming, and Ctrl-C.

``segedu.train.fit(checkpoint=..., save_every=N)`` writes a *resumable* checkpoint every ``N`` steps and at
the end; ``fit(resume=path)`` continues from one, so that ``N`` steps straight and ``k`` steps + resume to
``N`` give bit-identical weights on a CPU (on a GPU up to nondeterministic kernels). This module holds the
pieces ``fit`` uses: the argument checks, ``RunSaver`` (what goes into the file, and when), ``restore``
(the way back) and ``StopRequests`` (Ctrl-C finishes the step, saves, then stops).

A resumable checkpoint is a ``segedu.checkpoint`` file (``zoo.load_model`` and ``read_checkpoint`` read it)
whose ``"resume"`` entry holds, as plain values (``torch.load(weights_only=True)`` reads them)::

    {"version": 1, "step": steps done, "steps": the run's target when saved, "batch_size", "seed",
     "optimizer_class": "Adam", "scheduler": state dict or None, "scaler": GradScaler state or None,
     "history": dataclasses.asdict(History) so far, "counters": {"train_seconds", "images"},
     "ranks": [{"rng": runtime.rng_state(), "batches": BatchStream.state_dict()} for each process]}

The model and optimizer state dicts are the file's ``"model"`` and ``"optimizer"`` (the model unwrapped from
``DistributedDataParallel``, so the file loads into the plain network). Everything random is in it: the
Python, NumPy and torch generators (dropout, augmentation) and the batch sampler's position
(``segedu.batches.BatchStream``). Under ``torch.distributed`` every process's generators and sampler are
gathered and process 0 writes the file; a resumed run needs the same number of processes.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segedu import validate
from segedu.checkpoint import check_metadata, is_checkpoint, read_checkpoint, save_checkpoint
from segedu.runlog import is_log
from segedu.runtime import rng_state, set_rng_state

__all__ = ["VERSION", "file_path", "writable_folder", "check_run_arguments", "check_resume", "unwrap",
           "distributed", "is_main", "RunSaver", "restore", "StopRequests"]

VERSION = 1


def file_path(value: Any, name: str) -> Path:
    """``value`` (a str or ``os.PathLike``) as a ``Path`` to a file: ``TypeError`` for another type,
    ``ValueError`` for an existing folder."""
    if isinstance(value, bool) or not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike) or None, got {type(value).__name__}")
    path = Path(value).expanduser()
    if path.is_dir():
        raise ValueError(f"{name} must name a file, got the folder {path}")
    return path


def writable_folder(path: Path, name: str) -> None:
    """Create ``path``'s folder if needed and check that it can be written (before any training)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # a file where a folder should be, a read-only parent
        raise ValueError(f"{name}: cannot create the folder {path.parent} ({error.strerror or error})") from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise PermissionError(f"{name}: the folder {path.parent} is not writable")


def _output_file(path: Any, name: str, is_kind, kind: str) -> Path:
    """``path`` as a file ``fit`` may write: an existing file must be ``kind`` (else ``ValueError``, the file
    untouched), and its folder is created and must be writable."""
    path = file_path(path, name)
    if path.exists() and not is_kind(path):
        raise ValueError(f"{name}: {path} exists and is not {kind}; refusing to overwrite it "
                         "(choose another path or move the file)")
    writable_folder(path, name)
    return path


def check_run_arguments(checkpoint: Any, save_every: Any, log: Any, checkpoint_extra: Any) -> tuple:
    """``fit``'s checks of ``checkpoint``, ``save_every``, ``log`` and ``checkpoint_extra``; returns them
    checked (``Path | None, int | None, Path | None, dict``). A ``checkpoint`` file that exists must be a
    segedu checkpoint and a ``log`` file a segedu log: any other file is refused (``ValueError``), never
    overwritten. Their folders are created and must be writable (``PermissionError``)."""
    if checkpoint is not None:
        checkpoint = _output_file(checkpoint, "checkpoint", is_checkpoint, "a segedu checkpoint")
    if save_every is not None:
        save_every = validate.positive_int(save_every, "save_every")
        if checkpoint is None:
            raise ValueError("save_every needs checkpoint (the file to write every save_every steps)")
    if log is not None:
        log = _output_file(log, "log", is_log, "a segedu training log")
    if log is not None and checkpoint is not None and log.resolve() == checkpoint.resolve():
        raise ValueError(f"log and checkpoint must be different files, got {log} for both")
    if checkpoint_extra is not None:
        if not isinstance(checkpoint_extra, dict):
            raise TypeError(f"checkpoint_extra must be a dict or None, got {type(checkpoint_extra).__name__}")
        if checkpoint is None:
            raise ValueError("checkpoint_extra is metadata for the checkpoint file: pass checkpoint too")
        check_metadata(checkpoint_extra, "checkpoint_extra")
    return checkpoint, save_every, log, dict(checkpoint_extra or {})


def check_resume(resume: Any, steps: int) -> dict | None:
    """The checkpoint to resume from, read once (``read_checkpoint``), or ``None``.

    ``FileNotFoundError`` for a missing file; ``ValueError`` for a file that is not a segedu checkpoint, one
    without the state to resume (written by ``save_checkpoint`` alone), or one already at ``steps``.
    """
    if resume is None:
        return None
    path = file_path(resume, "resume")
    if not path.exists():
        raise FileNotFoundError(f"resume: no such checkpoint: {path}")
    state = read_checkpoint(path)
    saved = state["resume"]
    if not isinstance(saved, dict) or saved.get("version") != VERSION:
        raise ValueError(f"resume: {path} is a segedu checkpoint without the state to resume a run (only "
                         "fit(checkpoint=...) and python -m segedu train --save-every write that)")
    if saved["step"] >= steps:
        raise ValueError(f"resume: {path} is at step {saved['step']} and steps={steps}: nothing is left to "
                         f"train; pass steps > {saved['step']} to train on")
    state["path"] = str(path)
    return state


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside ``DistributedDataParallel`` / ``DataParallel`` (its state dict has no ``module.``)."""
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    return model.module if isinstance(model, wrappers) else model


def distributed() -> bool:
    """Whether a ``torch.distributed`` process group is running."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def is_main() -> bool:
    """Whether this is the process that writes files: the only one, or rank 0 under ``torch.distributed``."""
    return not distributed() or torch.distributed.get_rank() == 0


def _optimizer_class(optimizer: torch.optim.Optimizer) -> str:
    return type(optimizer).__qualname__


class RunSaver:
    """Writes ``fit``'s resumable checkpoints to ``path``: every ``save_every`` steps, at the last step, and
    when asked (Ctrl-C). Under ``torch.distributed`` every process calls ``save`` at the same step (the
    random states are gathered) and process 0 writes."""

    def __init__(self, path: Path, save_every: int | None, extra: dict, model, optimizer, scheduler, scaler,
                 stream, steps: int, batch_size: int, seed: int):
        self.path, self.save_every, self.extra, self.steps = path, save_every, extra, steps
        self.model, self.optimizer, self.scheduler, self.scaler, self.stream = (
            unwrap(model), optimizer, scheduler, scaler, stream)
        self.batch_size, self.seed = batch_size, seed
        self.saved_step: int | None = None  # the step of the last file written in this call
        if scheduler is not None:
            check_metadata(self._scheduler_state(), "scheduler.state_dict()")  # fail now, not after training

    def _scheduler_state(self) -> dict | None:
        return self.scheduler.state_dict() if hasattr(self.scheduler, "state_dict") else None

    def due(self, step: int) -> bool:
        """Whether ``step`` (steps done) is a periodic save, or the last step."""
        return step == self.steps or (self.save_every is not None and step % self.save_every == 0)

    def state(self, step: int, history: dict, counters: dict) -> dict:
        """The ``"resume"`` entry for the run after ``step`` steps (``history``: ``dataclasses.asdict``)."""
        mine = {"rng": rng_state(), "batches": self.stream.state_dict()}
        if distributed():
            ranks: list = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(ranks, mine)  # a collective: every process saves at this step
        else:
            ranks = [mine]
        return {"version": VERSION, "step": step, "steps": self.steps, "batch_size": self.batch_size,
                "seed": self.seed, "optimizer_class": _optimizer_class(self.optimizer),
                "scheduler": self._scheduler_state(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "history": history, "counters": dict(counters), "ranks": ranks}

    def save(self, step: int, history: dict, counters: dict) -> Path:
        """Write the checkpoint of the run after ``step`` steps (process 0 writes); returns its path."""
        state = self.state(step, history, counters)
        if is_main():
            save_checkpoint(self.path, self.model, self.optimizer, resume_state=state,
                            **{**self.extra, "step": step})
        self.saved_step = step
        return self.path

    def interrupted(self, finished: int, saved: bool) -> None:
        """Say on stderr what an interruption after ``finished`` steps left: the checkpoint of that step
        (``saved``) and how to resume, or where the last one is."""
        if saved:
            text = (f"stopped after step {finished} of {self.steps}; resumable checkpoint: {self.path}\n"
                    f"  go on with fit(..., resume={str(self.path)!r}) or python -m segedu train ... "
                    f"--resume {self.path}")
        elif self.saved_step is not None:
            text = (f"stopped after step {finished} of {self.steps}, unsaved; the last checkpoint, {self.path}, "
                    f"holds step {self.saved_step}: resume from it")
        else:
            text = f"stopped after step {finished} of {self.steps}, before this run wrote a checkpoint"
        print(f"\nfit: {text}", file=sys.stderr, flush=True)


def restore(state: dict, model: nn.Module, optimizer, scheduler, scaler, stream) -> tuple[int, dict, dict]:
    """Put a run back where ``state`` (``check_resume``'s answer) left it: weights, optimizer, scheduler,
    loss scaler, batch stream and random generators. Returns ``(step, history dict, counters)``.

    A checkpoint that does not fit (other weights, optimizer or scheduler, another number of processes)
    raises ``ValueError`` naming the file.
    """
    path, saved = state["path"], state["resume"]
    try:
        unwrap(model).load_state_dict(state["model"])
    except RuntimeError as error:
        raise ValueError(f"resume: the weights in {path} do not fit this model: {error}") from None
    if saved["optimizer_class"] != _optimizer_class(optimizer):
        raise ValueError(f"resume: {path} holds the state of a {saved['optimizer_class']} optimizer, "
                         f"got {_optimizer_class(optimizer)}")
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (ValueError, KeyError, RuntimeError) as error:
        raise ValueError(f"resume: the optimizer state in {path} does not fit: {error}") from None
    has_scheduler = scheduler is not None and hasattr(scheduler, "load_state_dict")
    if has_scheduler != (saved["scheduler"] is not None):
        raise ValueError(f"resume: {path} was saved {'with' if saved['scheduler'] is not None else 'without'} "
                         f"a scheduler; pass {'the same' if saved['scheduler'] is not None else 'no'} scheduler")
    if has_scheduler:
        scheduler.load_state_dict(saved["scheduler"])
    if scaler is not None and saved["scaler"] is not None:
        scaler.load_state_dict(saved["scaler"])
    world, rank = ((torch.distributed.get_world_size(), torch.distributed.get_rank()) if distributed()
                   else (1, 0))
    if len(saved["ranks"]) != world:
        raise ValueError(f"resume: {path} was saved by {len(saved['ranks'])} processes; resume it with as "
                         f"many (this run has {world})")
    mine = saved["ranks"][rank]
    stream.load_state_dict(mine["batches"])  # may read part of a pass again, moving the global generators
    set_rng_state(mine["rng"])  # so the generators are set last: as the saved run left them
    return saved["step"], saved["history"], saved["counters"]


class StopRequests:
    """Ctrl-C during ``fit`` with a checkpoint: the first one lets the current step finish (so the
    checkpoint holds a whole step: weights, optimizer and random state agree), the second stops at once.

    A context manager. While active (main thread only; elsewhere Ctrl-C keeps its usual effect), SIGINT sets
    a flag that ``requested()`` reads at the end of every step. Under ``torch.distributed`` the processes
    agree on it (an all-reduce of one number per step), so they all stop after the same step.
    """

    def __init__(self, enabled: bool, device: torch.device):
        self.enabled, self.device, self._previous = enabled, device, None
        self.flag = False  # a first Ctrl-C: stop after this step
        self.forced = False  # a second one: stop now, save nothing

    def _handler(self, signum, frame) -> None:
        if self.flag:
            self.forced = True
            raise KeyboardInterrupt
        self.flag = True
        print("\nfit: Ctrl-C: finishing this step to save a checkpoint (Ctrl-C again stops at once, unsaved)",
              file=sys.stderr, flush=True)

    def __enter__(self) -> "StopRequests":
        if self.enabled and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def requested(self) -> bool:
        """Whether a Ctrl-C asked to stop (in any process)."""
        if not self.enabled:
            return False
        if distributed():
            flag = torch.tensor([float(self.flag)], device=self.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            return bool(flag.item())
        return self.flag
