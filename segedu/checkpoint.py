"""Checkpoints that are safe to open: ``save_checkpoint``, ``load_checkpoint`` and ``read_checkpoint``.

A checkpoint holds only state dicts and plain values (numbers, strings, tensors, lists and dicts), so
``torch.load(path, weights_only=True)`` reads it: no pickled code runs when you open a file someone sent you.
The file is one dict::

    {"format": "segedu-checkpoint-v1", "model": state dict, "optimizer": state dict or None, "extra": {...}}

``extra`` is free metadata (``step=300, classes=[...]``); ``python -m segedu train`` stores the model's
``zoo.model_spec`` there, so that ``segedu.zoo.load_model`` rebuilds the network from the file alone.

Saving writes a temporary file first and renames it over ``path`` (``os.replace`` is atomic), so an
interrupted save never leaves a broken checkpoint behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint"]

_FORMAT = "segedu-checkpoint-v1"
_PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def _check_module(model: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")


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
    _check_module(model)
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


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """The whole ``save_checkpoint`` file (``{"format", "model", "optimizer", "extra"}``), format checked.

    Reads with ``weights_only=True``; a file of another kind raises ``ValueError``. ``segedu.zoo.load_model``
    uses it to read the spec and the weights in one pass.
    """
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a segedu checkpoint (expected format {_FORMAT!r})")
    return state


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
