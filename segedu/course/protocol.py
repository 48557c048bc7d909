"""What the grader and its worker process say to each other: frames, value tags, modules, exceptions.

Grading runs the student's code in a separate worker process (``segedu.course.worker``, "process A") and the
checks in the grader's own process (``segedu.course.proxy``). They talk over A's stdin and stdout in frames: an
8-byte big-endian length, then the payload. The two directions are not equally trusted:

* grader -> worker: ``pickle`` bytes. The grader is trusted; the worker may run what it receives.
* worker -> grader: bytes written by ``torch.save`` of plain data only (tuples, lists, dicts, strings, numbers,
  tensors), which the grader reads with ``torch.load(..., weights_only=True)``: whatever the student's code
  writes there, it cannot run code in the grader. A value crosses as a tagged tree (``TAGS``): the grader
  rebuilds exactly the kinds of values it knows and nothing else.

An ``nn.Module`` the student returns crosses as a *spec* (``module_spec``): an allow-listed ``torch.nn`` class
name, its constructor arguments and its ``state_dict``; the grader builds a fresh module of that class
(``build_module``), so the forward that runs in a check is torch's own. An exception crosses as the name of its
nearest built-in class, its own class name and its message (``describe_exception``); the grader raises the
built-in class (``exception_class``), so a check that expects, say, a ``ValueError`` from the student's function
still sees one.
"""

from __future__ import annotations

import builtins
import struct
from typing import Any, BinaryIO

import torch

__all__ = [
    "MAX_FRAME",
    "TAGS",
    "ProtocolError",
    "GradLeaf",
    "write_frame",
    "read_frame",
    "describe_exception",
    "exception_class",
    "MODULE_ARGUMENTS",
    "module_spec",
    "build_module",
]

_HEADER = struct.Struct(">Q")
MAX_FRAME = 256 << 20  # bytes: a reply larger than this is refused (the checks' values are kilobytes)

# The tags of the value tree (worker -> grader). A node is a tuple whose first item is its tag.
TAGS = {
    "n": "None", "b": "bool", "i": "int", "f": "float", "c": "complex", "s": "str", "y": "bytes",
    "t": "tensor: (tag, tensor, index among the differentiable outputs or -1)",
    "T": "tuple: (tag, [nodes])", "L": "list: (tag, [nodes])", "D": "dict: (tag, [(key node, value node)])",
    "m": "module: (tag, spec)", "d": "torch.dtype: (tag, name)", "v": "torch.device: (tag, text)",
    "o": "any other object: (tag, type name, repr)",
}


class ProtocolError(Exception):
    """A frame or a reply that does not follow the protocol (too large, cut short, not the expected data)."""


class GradLeaf:
    """A tensor argument that requires a gradient (grader -> worker).

    The worker turns it into a leaf that requires grad, keeps the graph of the call, and computes the
    gradients of the outputs with respect to these leaves when the grader's autograd asks (``backward``).
    ``index`` is the leaf's position among the call's differentiable inputs.
    """

    __slots__ = ("index", "tensor")

    def __init__(self, index: int, tensor: torch.Tensor):
        self.index, self.tensor = index, tensor

    def __getstate__(self):
        return (self.index, self.tensor)

    def __setstate__(self, state):
        self.index, self.tensor = state


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def write_frame(stream: BinaryIO, payload: bytes) -> None:
    """Write one frame (length, payload) and flush."""
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


def read_frame(stream: BinaryIO, limit: int = MAX_FRAME) -> bytes | None:
    """The payload of the next frame; ``None`` at the end of the stream (the other side is gone).

    Raises ``ProtocolError`` for a frame longer than ``limit`` bytes or one cut short.
    """
    header = _read_exactly(stream, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > limit:
        raise ProtocolError(f"a reply of {size} bytes (at most {limit})")
    payload = _read_exactly(stream, size)
    if payload is None:
        raise ProtocolError(f"a reply cut short (expected {size} bytes)")
    return payload


# Built-in exceptions the grader re-raises by name; anything else becomes the nearest of these (RuntimeError last).
_EXCEPTIONS = (
    "ArithmeticError", "AssertionError", "AttributeError", "FloatingPointError", "ImportError", "IndexError",
    "KeyError", "LookupError", "MemoryError", "ModuleNotFoundError", "NameError", "NotImplementedError",
    "OverflowError", "RecursionError", "RuntimeError", "StopIteration", "TypeError", "UnboundLocalError",
    "ValueError", "ZeroDivisionError",
)


def describe_exception(error: BaseException) -> tuple[str, str, str]:
    """``(nearest built-in exception name, class name, message)`` of ``error`` (worker side)."""
    base = next((c.__name__ for c in type(error).__mro__ if c.__module__ == "builtins" and c.__name__ in _EXCEPTIONS),
                "RuntimeError")
    try:
        message = str(error)
    except Exception:  # a student's exception whose __str__ raises
        message = "(no message)"
    return base, type(error).__name__, message


def exception_class(name: Any) -> type[Exception]:
    """The built-in exception class named ``name`` if it is one grading re-raises, else ``RuntimeError``."""
    if isinstance(name, str) and name in _EXCEPTIONS:
        return getattr(builtins, name)
    return RuntimeError


# Modules that may cross from the worker to the grader, with the constructor arguments read off an instance.
_CONV = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "bias",
         "padding_mode")
_NORM = ("num_features", "eps", "momentum", "affine", "track_running_stats")
MODULE_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "Conv1d": _CONV, "Conv2d": _CONV, "Conv3d": _CONV,
    "ConvTranspose1d": (*_CONV, "output_padding"), "ConvTranspose2d": (*_CONV, "output_padding"),
    "Linear": ("in_features", "out_features", "bias"),
    "BatchNorm1d": _NORM, "BatchNorm2d": _NORM,
    "ReLU": ("inplace",), "Identity": (), "Sequential": (),
}


def _plain(value: Any) -> bool:
    """Whether ``value`` is a constructor argument a spec may carry: None, bool, int, float, str, or a tuple."""
    if value is None or type(value) in (bool, int, float, str):
        return True
    return type(value) is tuple and len(value) <= 8 and all(_plain(v) for v in value)


def module_spec(module: torch.nn.Module) -> tuple | None:
    """``(class name, arguments, state_dict, training, children)`` of ``module`` (worker side), or ``None`` when
    no class of ``MODULE_ARGUMENTS`` is among its bases. A subclass crosses as that base class: the grader runs
    torch's own forward on the student's parameters."""
    name = next((c.__name__ for c in type(module).__mro__
                 if c.__module__.startswith("torch.nn") and c.__name__ in MODULE_ARGUMENTS), None)
    if name is None:
        return None
    arguments = {}
    for key in MODULE_ARGUMENTS[name]:
        value = getattr(module, key, None)
        if key == "bias":
            value = value is not None
        arguments[key] = tuple(value) if isinstance(value, list) else value
    children = []
    if name == "Sequential":
        children = [module_spec(child) for child in module]
        if any(child is None for child in children):
            return None
        state = {}
    else:
        state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
    return (name, arguments, state, bool(module.training), children)


def build_module(spec: Any) -> torch.nn.Module:
    """A fresh ``torch.nn`` module from a spec (grader side). Raises ``ProtocolError`` for a spec that is not one
    ``module_spec`` writes, and the constructor's or ``load_state_dict``'s error for arguments or weights that do
    not fit the class."""
    if not (type(spec) is tuple and len(spec) == 5):
        raise ProtocolError("a module spec must be a 5-tuple")
    name, arguments, state, training, children = spec
    if name not in MODULE_ARGUMENTS or type(arguments) is not dict or type(state) is not dict:
        raise ProtocolError(f"a module of class {name!r} cannot be rebuilt")
    if set(arguments) != set(MODULE_ARGUMENTS[name]) or not all(_plain(v) for v in arguments.values()):
        raise ProtocolError(f"unexpected constructor arguments for {name}")
    if not all(type(k) is str and isinstance(v, torch.Tensor) for k, v in state.items()) or type(training) is not bool:
        raise ProtocolError(f"unexpected state for {name}")
    if name == "Sequential":
        if type(children) is not list:
            raise ProtocolError("a Sequential's children must be a list")
        module = torch.nn.Sequential(*(build_module(child) for child in children))
    else:
        module = getattr(torch.nn, name)(**arguments)
        module.load_state_dict({k: v.detach() for k, v in state.items()}, strict=True, assign=True)
    return module.train(training)
