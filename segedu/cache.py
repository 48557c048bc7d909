"""Reuse the result of a training run that was already done: an opt-in cache for ``segedu.train.fit``.

Running a lesson twice trains the same models twice: ``make test`` runs every lesson under nbval, then again
in a browser and again as the student release. Training is deterministic on a CPU (same model, data, loss,
steps and seed give the same weights), so the second run can load the weights the first one produced.

The cache is **off** unless the environment variable ``SEGEDU_CACHE`` names a folder (``make test`` sets it
to a fresh folder per run). A result is stored under a key that hashes everything that determines it:

* the source of the whole ``segedu`` package (a change to any module means a new key),
* the model: its class, structure, plain attributes and its *initial* weights,
* the loss function (its source code and the values it reads), the data source, the optimizer's class and
  hyper-parameters, the scheduler factory, and every argument of ``fit`` (steps, batch size, lr, seed, ...).

Anything that cannot be fingerprinted reliably (an object without a stable description, a ``callback``,
which watches the training as it happens) turns the cache off for that call: ``fit`` then simply trains.
A hit restores the trained weights, the optimizer state, the ``History`` and the random number generators'
state at the end of training, so the cells after ``fit`` see exactly what they would have seen.

The cache never costs a result. Each entry ``<name>-<key>.pt`` is written atomically (``segedu.files``) with a
sidecar ``<name>-<key>.sha256`` holding the SHA-256 of its bytes, recorded when it was written; an entry
whose sidecar is missing or disagrees (a file someone else put there, a truncated copy), or that does not
load, is a miss: a warning, then ``fit`` trains. A cache folder that cannot be written means training
without the cache (a warning, no error after a long run).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import inspect
import os
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from segedu.files import atomic_save, sha256_file
from segedu.runtime import rng_state, set_rng_state

ENV_VAR = "SEGEDU_CACHE"

__all__ = ["ENV_VAR", "cache_dir", "fingerprint", "Unfingerprintable", "entry", "store", "load"]


class Unfingerprintable(Exception):
    """Raised when an object has no stable description; the caller then skips the cache."""


def cache_dir() -> Path | None:
    """The cache folder named by ``$SEGEDU_CACHE`` (created), or ``None`` when caching is off.

    A folder that cannot be created or written is ``None`` too, with a warning: training goes on without
    the cache rather than failing when it tries to store its result.
    """
    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        warnings.warn(f"${ENV_VAR}={value}: cannot create the cache folder ({err}); training without the cache")
        return None
    if not os.access(path, os.W_OK | os.X_OK):
        warnings.warn(f"${ENV_VAR}={value}: the cache folder is not writable; training without the cache")
        return None
    return path


@functools.lru_cache(maxsize=1)
def _package_source_hash() -> str:
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _source(obj) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError) as error:  # built in C, or typed at a prompt that kept no source
        raise Unfingerprintable(f"no source for {obj!r}") from error


class _Hasher:
    """Feeds a stable description of nested Python objects into one sha256."""

    MAX_DEPTH = 12

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self._active: set[int] = set()  # objects being described (cycles)

    def put(self, tag: str, payload: bytes | str = b"") -> None:
        if isinstance(payload, str):
            payload = payload.encode()
        self.digest.update(f"{tag}:{len(payload)}:".encode() + payload)

    def add(self, obj: Any, depth: int = 0) -> None:
        if depth > self.MAX_DEPTH:
            raise Unfingerprintable("nested too deeply")
        if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
            self.put(type(obj).__name__, repr(obj))
        elif isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            self.put("tensor", f"{t.dtype}{tuple(t.shape)}")
            # Raw bytes (reshape: a 0-d tensor cannot be viewed as bytes); bool/int/float alike.
            self.put("data", t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(obj, np.ndarray):
            self.put("ndarray", f"{obj.dtype}{obj.shape}")
            self.put("data", np.ascontiguousarray(obj).tobytes())
        elif isinstance(obj, (torch.device, torch.dtype, enum.Enum, type(Ellipsis), slice, range)):
            self.put(type(obj).__name__, repr(obj))
        elif isinstance(obj, (types.ModuleType, type)):
            self.put("name", f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', obj.__name__)}")
        elif id(obj) in self._active:
            self.put("cycle")
        else:
            self._active.add(id(obj))
            try:
                self._add_container(obj, depth)
            finally:
                self._active.discard(id(obj))

    def _add_container(self, obj: Any, depth: int) -> None:
        if isinstance(obj, (list, tuple)):
            self.put(type(obj).__name__, str(len(obj)))
            for item in obj:
                self.add(item, depth + 1)
        elif isinstance(obj, dict):
            self.put("dict", str(len(obj)))
            for key in sorted(obj, key=repr):
                self.add(key, depth + 1)
                self.add(obj[key], depth + 1)
        elif isinstance(obj, (set, frozenset)):
            self.put("set", ",".join(sorted(map(repr, obj))))
        elif isinstance(obj, functools.partial):
            self.put("partial")
            self.add(obj.func, depth + 1)
            self.add(obj.args, depth + 1)
            self.add(obj.keywords, depth + 1)
        elif isinstance(obj, (types.FunctionType, types.MethodType)):
            self._add_function(obj, depth)
        elif isinstance(obj, (types.BuiltinFunctionType, np.ufunc)):
            self.put("builtin", f"{getattr(obj, '__module__', '')}.{obj.__qualname__ if hasattr(obj, '__qualname__') else obj.__name__}")
        elif isinstance(obj, nn.Module):
            self._add_object(obj, depth, skip=("_forward_hooks", "_backward_hooks", "_forward_pre_hooks"))
        elif dataclasses.is_dataclass(obj) or hasattr(obj, "__dict__"):
            self._add_object(obj, depth)
        else:
            raise Unfingerprintable(f"cannot describe a {type(obj).__name__}")

    def _add_function(self, fn, depth: int) -> None:
        if isinstance(fn, types.MethodType):
            self.add(fn.__self__, depth + 1)
            fn = fn.__func__
        self.put("function", f"{fn.__module__}.{fn.__qualname__}")
        if fn.__module__ and fn.__module__.split(".")[0] in {"torch", "torchvision", "numpy", "segedu"}:
            return  # library code: covered by the package hash and the library versions
        self.put("source", _source(fn))
        self.add(fn.__defaults__, depth + 1)
        self.add(fn.__kwdefaults__, depth + 1)
        for cell in fn.__closure__ or ():
            self.add(cell.cell_contents, depth + 1)
        # The globals it reads (``P`` in ``P.ablation_steps``); names it reads only as attributes are absent.
        for name in sorted(set(fn.__code__.co_names) & set(fn.__globals__)):
            self.put("global", name)
            self.add(fn.__globals__[name], depth + 1)

    def _add_object(self, obj, depth: int, skip: tuple[str, ...] = ()) -> None:
        cls = type(obj)
        self.put("object", f"{cls.__module__}.{cls.__qualname__}")
        if cls.__module__ == "__main__" or cls.__module__.startswith("__"):
            self.put("source", _source(cls))  # a class defined in a notebook cell
        for key, value in sorted(vars(obj).items()):
            if key in skip or (isinstance(value, dict) and not value and key.startswith("_")):
                continue
            self.put("attr", key)
            self.add(value, depth + 1)


def fingerprint(*parts: Any) -> str | None:
    """A hex key for ``parts`` (plus the package source and library versions); ``None`` if any part has
    no stable description."""
    hasher = _Hasher()
    hasher.put("segedu", _package_source_hash())
    hasher.put("versions", f"torch {torch.__version__}")
    try:
        for part in parts:
            hasher.add(part)
    except Unfingerprintable:
        return None
    except Exception as error:  # a cache must never stop training: warn, and train without it
        warnings.warn(f"segedu.cache: no key ({type(error).__name__}: {error}); training without the cache")
        return None
    return hasher.digest.hexdigest()


# --------------------------------------------------------------------------- stored results


def entry(name: str, *parts: Any) -> Path | None:
    """The file for the result of ``name(*parts)``: ``$SEGEDU_CACHE/<name>-<key>.pt``, keyed by
    ``fingerprint(name, *parts)``; ``None`` when the cache is off or a part has no stable description.

    Nor is the cache used under torch.distributed: a rank that answered from the cache would never join the
    others' all-reduces.
    """
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    folder = cache_dir() if not distributed else None
    if folder is None:
        return None
    key = fingerprint(name, *parts)
    return None if key is None else folder / f"{name}-{key[:32]}.pt"


def _digest_path(path: Path) -> Path:
    return path.with_suffix(".sha256")


def store(path: Path, model: nn.Module, optimizer, scheduler, history: dict) -> None:
    """Write what a training run left behind: the trained weights, the optimizer's and scheduler's state,
    ``history`` (plain values) and the random generators' state (``runtime.rng_state``), then the SHA-256
    of the written file beside it. A write that fails (a full disk, a folder made read-only meanwhile) is a
    warning: the run's result is in the model already."""
    state = {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if hasattr(scheduler, "state_dict") else None,
        "history": history,
        "rng": rng_state(),
    }
    try:
        atomic_save(state, path)  # atomic: a reader never sees half a file
        digest = _digest_path(path)
        tmp = digest.with_name(f".{digest.name}.{os.getpid()}.tmp")
        tmp.write_text(sha256_file(path) + "\n")
        os.replace(tmp, digest)  # the digest appears only once the entry is complete
    except OSError as err:
        warnings.warn(f"${ENV_VAR}: could not store {path.name} ({err}); the next run will train again")


def _verified(path: Path) -> bool:
    """The entry's bytes hash to the digest recorded when it was written."""
    try:
        recorded = _digest_path(path).read_text().strip()
    except OSError:
        return False
    return recorded == sha256_file(path)


def load(path: Path, model: nn.Module, optimizer, scheduler, verbose: bool = False) -> dict | None:
    """Undo of ``store``: restore the weights, the optimizer's and scheduler's state and the random
    generators into the given objects and return the stored history dict; ``None`` when there is no such
    file, or (with a warning) when the file is not one ``store`` wrote: no recorded digest, a digest that
    disagrees, a file that does not load or does not fit the model. Nothing is changed on a miss.
    Reads with ``weights_only=True``; ``verbose`` prints one line on what was reused."""
    if not path.exists():
        return None
    if not _verified(path):
        warnings.warn(f"${ENV_VAR}: {path.name} has no matching digest (not written by this cache); training")
        return None
    # A broken entry must leave the run as it was: keep what the model, optimizer and scheduler hold now and
    # put it back if any part fails to apply (load_state_dict may copy some tensors before it raises).
    before = ({k: v.detach().clone() for k, v in model.state_dict().items()}, optimizer.state_dict(),
              scheduler.state_dict() if hasattr(scheduler, "state_dict") else None)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        history, rng = state["history"], state["rng"]
        steps, seconds = history["steps"], history["seconds"]
        model.load_state_dict(state["model"])  # the model is already on its device: values are copied there
        optimizer.load_state_dict(state["optimizer"])
        if state["scheduler"] is not None:
            scheduler.load_state_dict(state["scheduler"])
        set_rng_state(rng)  # the generators as training left them
    except Exception as err:  # noqa: BLE001 - any unusable entry is a miss, never a failed lesson
        model.load_state_dict(before[0])
        optimizer.load_state_dict(before[1])
        if before[2] is not None:
            scheduler.load_state_dict(before[2])
        warnings.warn(f"${ENV_VAR}: {path.name} could not be used ({type(err).__name__}: {err}); training")
        return None
    if verbose:
        print(f"{path.name.split('-')[0]}: reused an identical earlier run from ${ENV_VAR} ({path.name}); "
              f"{steps} steps, trained in {seconds:.1f} s")
    return history
