"""The CSV log of a training run (``segedu.train.fit(log=path)``) and ``read_log`` to plot it.

One file, one row per optimizer step and one per validation, told apart by the first column::

    kind,step,seconds,loss,lr,miou,pixel_accuracy,boundary_f1,images[,part:NAME ...]
    train,1,0.041,1.0986,0.003,,,,
    train,2,0.070,1.0712,0.003,,,,
    val,2,0.120,,,0.412,0.803,0.377,64

* ``kind``: ``train`` (one optimizer step) or ``val`` (one validation, ``fit(val_every=...)``);
* ``step``: optimizer steps done (1-based);
* ``seconds``: wall-clock seconds since the run started (a resumed run goes on counting from the saved
  time; the time between the sessions is not counted);
* ``loss``, ``lr``: the step's training loss and the learning rate it used (first parameter group);
* ``miou``, ``pixel_accuracy``, ``boundary_f1``, ``images``: the validation metrics (``segedu.train.evaluate``);
* ``part:NAME``: each part of a dict of losses (``loss_fn=None``, Mask R-CNN's ``loss_mask``, ...).

A cell a row does not have is empty. Every row is flushed when written, so a crash or Ctrl-C keeps the log
up to the last step. A resumed run appends to the file, first dropping the rows after the checkpoint's step
(the steps it will train again), so no step appears twice.
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from segedu import validate

__all__ = ["COLUMNS", "PART_PREFIX", "RunLog", "is_log", "read_log"]

COLUMNS = ("kind", "step", "seconds", "loss", "lr", "miou", "pixel_accuracy", "boundary_f1", "images")
PART_PREFIX = "part:"
_METRICS = ("miou", "pixel_accuracy", "boundary_f1", "images")


def is_log(path: Path) -> bool:
    """Whether ``path`` is empty or starts with this module's header (so it may be replaced)."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            first = handle.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return first == "" or first.startswith(",".join(COLUMNS[:3]) + ",")


def _rewrite(path: Path, header: list[str], rows: list[list[str]]) -> None:
    """Replace ``path`` by ``header`` + ``rows`` through an exclusively created temporary file (atomic)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunLog:
    """Appends ``fit``'s rows to ``path``.

    ``resume_step=None``: a new run; an existing file is replaced if it is a log (``is_log``) and refused
    otherwise (``ValueError``, nothing written). ``resume_step=k``: rows after step ``k`` are dropped and
    the run appends. The header is written with the first row (the loss parts are known after one step).
    """

    def __init__(self, path: Path, resume_step: int | None = None):
        self.path, self.header = Path(path), None
        if self.path.exists() and not is_log(self.path):
            raise ValueError(f"log: {self.path} exists and is not a segedu training log; refusing to overwrite "
                             "it (choose another path or move the file)")
        if resume_step is not None and self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, encoding="utf-8", newline="") as handle:
                header, *rows = list(csv.reader(handle))
            kept = [row for row in rows if row and int(row[1]) <= resume_step]
            if len(kept) != len(rows):
                _rewrite(self.path, header, kept)
            self.header = header
            self.handle = open(self.path, "a", encoding="utf-8", newline="")
        else:
            self.handle = open(self.path, "w", encoding="utf-8", newline="")
        self.writer = csv.writer(self.handle)

    def _write(self, values: dict[str, Any]) -> None:
        if self.header is None:
            parts = [k for k in values if k.startswith(PART_PREFIX)]
            self.header = list(COLUMNS) + parts
            self.writer.writerow(self.header)
        self.writer.writerow(["" if values.get(c) is None else values[c] for c in self.header])
        self.handle.flush()  # a crash keeps every row written so far

    def train(self, step: int, seconds: float, loss: float, lr: float, parts: dict[str, float]) -> None:
        """One optimizer step."""
        self._write({"kind": "train", "step": step, "seconds": f"{seconds:.3f}", "loss": loss, "lr": lr,
                     **{PART_PREFIX + name: value for name, value in parts.items()}})

    def val(self, step: int, seconds: float, metrics: dict) -> None:
        """One validation (``evaluate``'s dict)."""
        self._write({"kind": "val", "step": step, "seconds": f"{seconds:.3f}",
                     **{name: metrics.get(name) for name in _METRICS}})

    def close(self) -> None:
        self.handle.close()


def _number(text: str) -> float:
    return float(text) if text != "" else math.nan


def read_log(path: str | os.PathLike, kind: str | None = None) -> dict[str, list]:
    """A log written by ``fit(log=path)`` as ``{column: list}``: ``"kind"`` as strings, ``"step"`` as ints,
    every other column as floats (``nan`` for an empty cell).

    ``kind="train"`` or ``"val"`` keeps only those rows (a loss curve: ``read_log(p, "train")``, then
    ``plt.plot(log["step"], log["loss"])``); ``None`` keeps all, in file order.
    """
    if kind is not None:
        validate.choice(kind, "kind", ["train", "val"])
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return {column: [] for column in COLUMNS}
    header, rows = rows[0], [row for row in rows[1:] if row and (kind is None or row[0] == kind)]
    if tuple(header[:3]) != COLUMNS[:3]:
        raise ValueError(f"{path} is not a segedu training log (its header is {','.join(header)!r})")
    table: dict[str, list] = {}
    for i, column in enumerate(header):
        cells = [row[i] if i < len(row) else "" for row in rows]
        table[column] = cells if column == "kind" else [int(c) for c in cells] if column == "step" else [
            _number(c) for c in cells]
    return table
