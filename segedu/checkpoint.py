"""Checkpoints that are safe to open: ``save_checkpoint``, ``load_checkpoint`` and ``read_checkpoint``.

A checkpoint holds only state dicts and plain values (numbers, strings, tensors, lists and dicts), so
``torch.load(path, weights_only=True)`` reads it: no pickled code runs when you open a file someone sent you.
The file is one dict::

    {"format": "segedu-checkpoint-v1", "model": state dict, "optimizer": state dict or None, "extra": {...}}

``extra`` is free metadata (``step=300, classes=[...]``); ``python -m segedu train`` stores the model's
``zoo.model_spec`` there, so that ``segedu.zoo.load_model`` rebuilds the network from the file alone.
A *resumable* checkpoint, written by ``segedu.train.fit(checkpoint=...)``, has one more key, ``"resume"``:
everything else a run needs to go on exactly where it stopped (scheduler, step, random generators, the
batch sampler, the ``History``; ``segedu.resume`` describes it).

Saving goes through ``segedu.files.atomic_save``: the bytes go to a temporary file created exclusively in
the target's folder (never a file or a link that is already there), which is then renamed over ``path``
(``os.replace`` is atomic). An interrupted or failed save removes its temporary file and leaves an existing
checkpoint as it was.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segedu.files import atomic_save

__all__ = ["FORMAT", "save_checkpoint", "load_checkpoint", "read_checkpoint", "is_checkpoint", "check_metadata"]

FORMAT = "segedu-checkpoint-v1"
_PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def _check_module(model: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def check_metadata(value: Any, where: str = "extra") -> None:
    """Only values ``torch.load(weights_only=True)`` can read back: numbers, strings, tensors, lists, tuples
    and dicts with str or int keys; anything else raises ``TypeError`` naming where it sits (``where``)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"checkpoint metadata {where} has a key of type {type(key).__name__}; use str")
            check_metadata(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_metadata(item, f"{where}[{i}]")
    elif not isinstance(value, _PLAIN):
        raise TypeError(
            f"checkpoint metadata {where} is a {type(value).__name__}; only numbers, strings, tensors, lists "
            "and dicts load with weights_only=True (for a History pass dataclasses.asdict(history))"
        )


def save_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    *, resume_state: dict | None = None, **extra: Any) -> Path:
    """Save the model's (and optimizer's) state dict plus plain metadata ``extra`` (e.g. ``step=300,
    classes=[...]``) to ``path``; returns the path.

    ``resume_state`` (plain values only) is stored under ``"resume"``: ``segedu.train.fit`` passes what a
    resumed run needs (``segedu.resume``); without it the file has no ``"resume"`` key. The folder is
    created if needed. Written through ``segedu.files.atomic_save`` (an exclusively created temporary file,
    then an atomic rename), so an interrupted save never leaves a broken checkpoint, nor writes through a
    link planted at a predictable temporary name.
    """
    _check_module(model)
    check_metadata(extra, "extra")
    if resume_state is not None:
        check_metadata(resume_state, "resume_state")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "extra": extra,
    }
    if resume_state is not None:
        state["resume"] = resume_state
    return atomic_save(state, path)


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """The whole ``save_checkpoint`` file (``{"format", "model", "optimizer", "extra", "resume"}``), format
    checked; ``"resume"`` is ``None`` for a checkpoint that cannot be resumed.

    Reads with ``weights_only=True``; a file of another kind raises ``ValueError``. ``segedu.zoo.load_model``
    uses it to read the spec and the weights in one pass.
    """
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as error:  # not a torch file, truncated, or holding pickled objects
        raise ValueError(f"{path} is not a segedu checkpoint (expected format {FORMAT!r}; "
                         f"torch.load failed: {type(error).__name__})") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a segedu checkpoint (expected format {FORMAT!r})")
    state.setdefault("resume", None)
    return state


def is_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a readable ``save_checkpoint`` file (``False`` for a missing file, a folder or a
    file of another kind). Reads the file memory-mapped where it can, so a large checkpoint costs little."""
    path = Path(path)
    if not path.is_file():
        return False
    for mmap in (True, False):  # mmap needs torch's zip format; an old-style file is read in full
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except Exception:
            continue
        return isinstance(state, dict) and state.get("format") == FORMAT
    return False


def load_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    map_location: str | torch.device = "cpu") -> dict:
    """Load a ``save_checkpoint`` file into ``model`` (strictly: every key must match) and, if given,
    ``optimizer``; returns the ``extra`` metadata. Reads with ``weights_only=True``."""
    _check_module(model)
    state = read_checkpoint(path, map_location)
    model.load_state_dict(state["model"])
    if optimizer is not None:
        if state["optimizer"] is None:
            raise ValueError(f"{path} holds no optimizer state, but an optimizer was passed")
        optimizer.load_state_dict(state["optimizer"])
    return state["extra"]
