"""Writing files so that nothing is lost: ``atomic_save`` and ``sha256_file``.

A checkpoint or a cache entry is written in two moves. First the bytes go to a *new* temporary file in the
target's own folder, created with ``O_CREAT | O_EXCL`` (``tempfile.mkstemp``): that call fails rather than
open a file or a symbolic link that already exists, so a link planted at a predictable name such as
``model.pt.tmp`` in a shared folder can never redirect the write onto another file. Then ``os.replace``
renames the finished file over the target, atomically: a reader sees the old file or the new one, never
half a file. If anything fails in between (a full disk, Ctrl-C), the temporary file is removed and the
target is untouched.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["atomic_save", "sha256_file"]


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` through an exclusively created temporary file in ``path``'s folder.

    The folder must exist. Returns ``path`` as a ``Path``. On any error the temporary file is removed and
    the error is raised; an existing file at ``path`` stays as it was.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes the file private (0600); a checkpoint is readable like any file
        with os.fdopen(fd, "wb") as handle:  # the descriptor mkstemp opened: no second open by name
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt included: never leave a half-written temporary file behind
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The SHA-256 hex digest of a file's bytes, read in chunks of ``chunk`` bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
