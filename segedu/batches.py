"""Where ``fit`` and ``evaluate`` get their batches: three kinds of data source, one stream of ``(x, y)``.

A source is one of

* an object with ``.batch(indices) -> (images [B, 3, H, W], masks [B, H, W])`` and ``len()``, such as
  ``segedu.data.shapes.ShapesDataset``: a whole batch is rendered in one vectorized call;
* a ``torch.utils.data.Dataset`` (map-style): read through a ``DataLoader``;
* any iterable of ``(x, y)`` batches (a list, a ``DataLoader``, ...).

``train_batches`` turns a source into an endless, seeded stream (cycled, reshuffled every epoch);
``eval_batches`` into one ordered pass. Detection targets (dicts with a varying number of objects) stay
lists, the way torchvision's detection models take them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, default_collate

__all__ = ["source_kind", "train_batches", "eval_batches", "collate", "to_device", "split_pair", "num_images"]


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


def train_batches(data: Any, batch_size: int, seed: int) -> Iterator:
    """Endless stream of training batches from any of the three kinds of source."""
    generator = torch.Generator().manual_seed(seed)
    kind = source_kind(data, "train_data")
    if kind == "batch":
        # Render whole batches at once (vectorized, on the dataset's device): no per-item Python work.
        while True:
            yield data.batch(torch.randint(len(data), (batch_size,), generator=generator))
    if kind == "dataset":
        data = DataLoader(
            data, batch_size, shuffle=True, generator=generator, drop_last=len(data) >= batch_size,
            collate_fn=collate,
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
