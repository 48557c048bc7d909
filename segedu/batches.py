"""Where ``fit`` and ``evaluate`` get their batches: three kinds of data source, one stream of ``(x, y)``.

A source is one of

* an object with ``.batch(indices) -> (images [B, 3, H, W], masks [B, H, W])`` and ``len()``, such as
  ``segedu.data.shapes.ShapesDataset``: a whole batch is rendered in one vectorized call;
* a ``torch.utils.data.Dataset`` (map-style): read through a ``DataLoader``;
* any iterable of ``(x, y)`` batches (a list, a ``DataLoader``, ...).

``train_batches`` turns a source into an endless, seeded stream (cycled, reshuffled every epoch), a
``BatchStream`` whose position can be saved and restored (a resumed run draws the same batches);
``eval_batches`` into one ordered pass. Detection targets (dicts with a varying number of objects) stay
lists, the way torchvision's detection models take them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, IterableDataset, RandomSampler, Sampler, default_collate

from segedu.runtime import rng_state, set_rng_state

__all__ = ["source_kind", "BatchStream", "train_batches", "eval_batches", "collate", "to_device", "split_pair",
           "num_images"]


def collate(items: list) -> Any:
    """Stack ``(image, mask)`` items; keep lists for detection targets (dicts with a varying number of
    objects cannot be stacked: torchvision's detection models take lists of images and of target dicts)."""
    if isinstance(items[0], (tuple, list)) and len(items[0]) == 2 and isinstance(items[0][1], dict):
        return [item[0] for item in items], [item[1] for item in items]
    return default_collate(items)


def num_images(x: Any) -> int:
    """Images in a batch: a tensor ``[B, ...]`` or a list of images (detection)."""
    return len(x) if isinstance(x, (list, tuple)) else int(x.shape[0])


def source_kind(data: Any, name: str) -> str:
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


class _SkippingBatchSampler(Sampler):
    """``BatchSampler`` whose next pass can start ``skip`` batches in: a resumed run draws the epoch's order
    from the same generator state and skips the batches already trained on without loading them."""

    def __init__(self, batches: BatchSampler):
        self.batches, self.skip = batches, 0

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        skip, self.skip = self.skip, 0
        return itertools.islice(iter(self.batches), skip, None)


class BatchStream:
    """An endless, seeded stream of training batches (an iterator) whose position can be saved and restored.

    * a ``.batch()`` source: each step draws ``batch_size`` indices with replacement from a generator seeded
      with ``seed``, and the batch is rendered in one call (vectorized, on the dataset's device);
    * a ``Dataset``: a shuffled ``DataLoader`` (``RandomSampler`` on the same generator), a new order every
      epoch, the last incomplete batch dropped when there is at least one full batch;
    * an iterable: cycled; a one-shot iterator that runs dry raises ``ValueError`` (it must not loop forever).

    ``state_dict()`` describes the position after the batches drawn so far with plain values (tensors, ints:
    ``torch.load(weights_only=True)`` reads them); ``load_state_dict(state)`` on a new stream over the same
    source continues from there, batch for batch:

    * ``.batch()``: the generator's state;
    * ``Dataset``: the generator's state at the start of the epoch and the batches done in it (the epoch's
      order is drawn again and the batches done are skipped without loading them);
    * iterable: the global random generators (``runtime.rng_state``) at the start of the pass, the source's
      own ``state_dict()`` there if it has one (an epoch counter, say), and the batches done in the pass, which
      are read again and dropped: a shuffled ``DataLoader`` (drawing its order from the global generator)
      repeats its order exactly. The caller restores the global generators afterwards (``segedu.resume``).
    """

    def __init__(self, data: Any, batch_size: int, seed: int):
        self.kind = source_kind(data, "train_data")
        self.data, self.batch_size = data, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.yielded = 0  # batches drawn, all passes together
        self.passes = 0  # passes (epochs) started: dataset and iterable
        self.position = 0  # batches drawn in the current pass
        self._pass_start: dict | None = None  # what a resume restores to replay the current pass
        self._iterator: Iterator | None = None
        if self.kind == "dataset":
            # The DataLoader that shuffle=True would build (same generator draws, so the same batches), with a
            # batch sampler that can skip; a new shuffle every epoch, from the seeded generator.
            self._sampler = _SkippingBatchSampler(BatchSampler(
                RandomSampler(data, generator=self.generator), batch_size, drop_last=len(data) >= batch_size))
            self._loader = DataLoader(data, batch_sampler=self._sampler, generator=self.generator,
                                      collate_fn=collate)

    def __iter__(self) -> "BatchStream":
        return self

    def __next__(self) -> Any:
        if self.kind == "batch":
            # Render whole batches at once (vectorized, on the dataset's device): no per-item Python work.
            item = self.data.batch(torch.randint(len(self.data), (self.batch_size,), generator=self.generator))
        else:
            item = self._next_in_pass()
        self.yielded += 1
        return item

    def _next_in_pass(self) -> Any:
        while True:
            if self._iterator is None:
                self._start_pass()
            try:
                item = next(self._iterator)
            except StopIteration:
                if self.position == 0:  # a whole pass without a batch: a one-shot iterator ran dry
                    raise ValueError(
                        f"train_data ran out after {self.yielded} batches (an iterator can be read only once): "
                        "pass a list, a DataLoader or a Dataset, or an iterator with at least `steps` batches"
                    ) from None
                self._iterator = None
                continue
            self.position += 1
            return item

    def _start_pass(self) -> None:
        if self.kind == "dataset":
            self._pass_start = {"generator": self.generator.get_state()}
        else:
            source = self.data.state_dict() if callable(getattr(self.data, "state_dict", None)) else None
            self._pass_start = {"rng": rng_state(), "source": source}
        self.passes, self.position = self.passes + 1, 0
        self._iterator = iter(self._loader if self.kind == "dataset" else self.data)

    def state_dict(self) -> dict:
        """Where the stream stands (plain values); see the class docstring."""
        state = {"kind": self.kind, "batch_size": self.batch_size, "yielded": self.yielded}
        if self.kind == "batch":
            return {**state, "generator": self.generator.get_state()}
        return {**state, "passes": self.passes, "position": self.position, "pass_start": self._pass_start}

    def load_state_dict(self, state: dict) -> None:
        """Continue where ``state`` (from ``state_dict``) stood. The source must be of the same kind and the
        batch size the same (``ValueError``). For an iterable, the batches already done in the pass are read
        again now (and dropped), and the global random generators are left as they were at that point."""
        if state.get("kind") != self.kind:
            raise ValueError(f"train_data is a {self.kind!r} source, but the saved batch stream is of a "
                             f"{state.get('kind')!r} source: resume with the same kind of train_data")
        if state["batch_size"] != self.batch_size:
            raise ValueError(f"batch_size must be the one the run was saved with, {state['batch_size']}, "
                             f"got {self.batch_size}")
        self.yielded = state["yielded"]
        if self.kind == "batch":
            self.generator.set_state(state["generator"])
            return
        self.passes, self.position, self._pass_start = state["passes"], state["position"], state["pass_start"]
        self._iterator = None
        if self._pass_start is None:  # no batch drawn yet
            return
        if self.kind == "dataset":
            self.generator.set_state(self._pass_start["generator"])
            self._sampler.skip = self.position
            self._iterator = iter(self._loader)
            return
        set_rng_state(self._pass_start["rng"])  # a shuffled DataLoader draws its order from these
        if self._pass_start["source"] is not None:
            self.data.load_state_dict(self._pass_start["source"])
        self._iterator = iter(self.data)
        for done in range(self.position):
            try:
                next(self._iterator)
            except StopIteration:
                raise ValueError(f"train_data has {done} batches per pass, but the saved run had done "
                                 f"{self.position} in its pass: resume with the same train_data") from None


def train_batches(data: Any, batch_size: int, seed: int) -> BatchStream:
    """Endless stream of training batches from any of the three kinds of source (a ``BatchStream``)."""
    return BatchStream(data, batch_size, seed)


def eval_batches(data: Any, batch_size: int) -> Iterator:
    """One ordered pass over an evaluation source."""
    kind = source_kind(data, "data")
    if kind == "batch":
        for start in range(0, len(data), batch_size):
            yield data.batch(torch.arange(start, min(len(data), start + batch_size)))
    elif kind == "dataset":
        yield from DataLoader(data, batch_size, shuffle=False, collate_fn=collate)
    else:
        yield from data


def to_device(obj: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Move tensors (inside lists, tuples and dicts too) to ``device``; 4-D images optionally channels-last."""
    if isinstance(obj, torch.Tensor):
        obj = obj.to(device, non_blocking=True)
        if channels_last and obj.dim() == 4 and obj.is_floating_point():
            obj = obj.contiguous(memory_format=torch.channels_last)
        return obj
    if isinstance(obj, dict):
        return {k: to_device(v, device, channels_last) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device, channels_last) for v in obj)
    return obj


def split_pair(batch: Any, name: str) -> tuple[Any, Any]:
    """``(x, y)`` of one batch: a tuple or list of two (``TypeError`` for another type, ``ValueError`` for
    another length)."""
    if not isinstance(batch, (tuple, list)):
        raise TypeError(f"{name} must yield (x, y) pairs, got {type(batch).__name__}")
    if len(batch) != 2:
        raise ValueError(f"{name} must yield (x, y) pairs, got {type(batch).__name__} of length {len(batch)}")
    return batch[0], batch[1]
