"""The argument checks every ``segedu`` module uses, with one rule.

* A value of the wrong **type** raises ``TypeError``: a ``bool`` or a ``float``
  where an int is expected, a string where a number is expected, a list where a
  tensor is expected, a tensor of the wrong dtype.
* A value of the right type but the wrong **value** raises ``ValueError``: a
  count below 1, a number outside its range, NaN, a tensor of the wrong rank or
  shape, a string that is not one of the allowed choices.

Every message names the argument, what was expected and what was received, for
example ``"num_classes must be an int >= 1, got -1"``. Each function returns the
checked value in its canonical form (a Python ``int``, a ``float``, a pair), so
callers write ``n = validate.positive_int(n, "n")``.

``tests/test_validate.py`` holds the rule for this module, and
``tests/test_validation_rule.py`` calls the package's public constructors and
functions with ``True``, ``2.5`` and ``-1`` to hold every module to it.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Collection, Iterable
from numbers import Real
from typing import Any

import torch

__all__ = [
    "integer",
    "positive_int",
    "pair",
    "number",
    "positive_number",
    "probability",
    "flag",
    "choice",
    "ignore_index",
    "tensor",
    "images",
    "label_map",
    "torch_device",
]


def _describe(value: Any) -> str:
    """``"bool True"``, ``"float 2.5"``, ``"Tensor of shape (2, 3)"``: the received value, for a message."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _bounds(minimum, maximum) -> str:
    if minimum is not None and maximum is not None:
        return f" in [{minimum}, {maximum}]"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""


# --------------------------------------------------------------------------- numbers


def integer(value: Any, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as a Python ``int`` within ``[minimum, maximum]`` (either bound optional).

    Python, NumPy and 0-d integer tensor values are accepted (``operator.index``);
    ``bool`` is refused although it is an ``int`` subclass, because ``True`` where a
    count is expected is always a mistake.
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int{_bounds(minimum, maximum)}, got {_describe(value)}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int{_bounds(minimum, maximum)}, got {_describe(value)}") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be an int{_bounds(minimum, maximum)}, got {value}")
    return int(value)


def positive_int(value: Any, name: str) -> int:
    """A count: an ``int >= 1``."""
    return integer(value, name, minimum=1)


def pair(value: Any, name: str, minimum: int | None = None) -> tuple[int, int]:
    """An int or a pair of ints ``(height, width)`` as a pair, each ``>= minimum``."""
    if isinstance(value, (tuple, list, torch.Size)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair (height, width), got {value!r}")
        return integer(value[0], name, minimum), integer(value[1], name, minimum)
    value = integer(value, name, minimum)
    return value, value


def number(
    value: Any,
    name: str,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    open_minimum: bool = False,
) -> float:
    """A finite real number within ``[minimum, maximum]`` (``(minimum, maximum]`` with ``open_minimum``).

    Ints, floats and NumPy scalars are accepted; ``bool`` and strings are refused
    (``TypeError``); NaN and infinity are refused (``ValueError``).
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {_describe(value)}")
    value = float(value)
    if open_minimum and maximum is None:
        expected = f"a finite number > {minimum}"
    elif open_minimum:
        expected = f"a finite number in ({minimum}, {maximum}]"
    else:
        expected = "a finite number" + _bounds(minimum, maximum)
    below = minimum is not None and (value <= minimum if open_minimum else value < minimum)
    if not math.isfinite(value) or below or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {expected}, got {value}")
    return value


def positive_number(value: Any, name: str) -> float:
    """A finite number ``> 0`` (a learning rate, a temperature, a standard deviation)."""
    return number(value, name, minimum=0, open_minimum=True)


def probability(value: Any, name: str) -> float:
    """A number in ``[0, 1]``."""
    return number(value, name, minimum=0, maximum=1)


def flag(value: Any, name: str) -> bool:
    """``True`` or ``False`` (not ``1``, not ``"yes"``)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {_describe(value)}")
    return value


def choice(value: Any, name: str, choices: Iterable) -> Any:
    """One of ``choices``. A value of another type than every choice is a ``TypeError``."""
    choices = list(choices)
    if any(value == c and type(value) is type(c) for c in choices):
        return value
    if not any(isinstance(value, type(c)) for c in choices):
        raise TypeError(f"{name} must be one of {choices}, got {_describe(value)}")
    raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def ignore_index(value: Any, name: str = "ignore_index") -> int | None:
    """The label to skip (``255`` = VOC's void), or ``None`` to count every label."""
    if value is None:
        return None
    return integer(value, name)


# --------------------------------------------------------------------------- tensors


def tensor(
    x: Any,
    name: str,
    ndim: int | Collection[int] | None = None,
    *,
    dtype: str | torch.dtype | Collection[torch.dtype] | None = None,
    layout: str | None = None,
) -> torch.Tensor:
    """``x`` as a tensor of rank ``ndim`` (an int or a set of ints) and of the given ``dtype``.

    ``dtype`` is a ``torch.dtype``, a collection of them, or one of the kinds
    ``"floating"``, ``"integer"`` (any integer dtype, not bool), ``"bool"``. A wrong
    dtype is a ``TypeError``; a wrong rank a ``ValueError``. ``layout`` (for
    example ``"[B, C, H, W]"``) is named in the message.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor{' ' + layout if layout else ''}, got {type(x).__name__}")
    if dtype is not None:
        if dtype == "floating":
            ok, want = x.is_floating_point(), "a floating-point"
        elif dtype == "integer":
            ok = not x.is_floating_point() and not x.is_complex() and x.dtype != torch.bool
            want = "an integer"
        elif dtype == "bool":
            ok, want = x.dtype == torch.bool, "a bool"
        else:
            allowed = [dtype] if isinstance(dtype, torch.dtype) else list(dtype)
            ok, want = x.dtype in allowed, " or ".join(str(d) for d in allowed)
        if not ok:
            raise TypeError(f"{name} must be {want} tensor{' ' + layout if layout else ''}, got dtype {x.dtype}")
    if ndim is not None:
        ranks = (ndim,) if isinstance(ndim, int) else tuple(sorted(ndim))
        if x.dim() not in ranks:
            want = " or ".join(f"{r}-D" for r in ranks)
            raise ValueError(f"{name} must be {want}{' ' + layout if layout else ''}, got shape {tuple(x.shape)}")
    return x


def images(x: Any, name: str = "x", channels: int | None = None) -> torch.Tensor:
    """A floating-point image batch ``[B, C, H, W]`` (with ``C == channels`` when given)."""
    tensor(x, name, 4, dtype="floating", layout="[B, C, H, W]")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channels [B, {channels}, H, W], got shape {tuple(x.shape)}")
    return x


def label_map(x: Any, name: str = "target", ndim: int | Collection[int] = 3) -> torch.Tensor:
    """An integer label map ``[B, H, W]`` (``255`` = ignore, by the course's convention)."""
    return tensor(x, name, ndim, dtype="integer", layout="[B, H, W]" if ndim == 3 else None)


def torch_device(value: Any, name: str = "device") -> torch.device:
    """A ``torch.device`` from a device or a string such as ``"cpu"`` or ``"cuda:0"``."""
    if not isinstance(value, (str, torch.device)):
        raise TypeError(f"{name} must be a str or torch.device, got {_describe(value)}")
    try:
        return torch.device(value)
    except RuntimeError as err:
        raise ValueError(f"{name} must name a torch device such as 'cpu' or 'cuda', got {value!r}") from err
