"""The worker process that runs a student's notebook code for grading ("process A").

The grader (``segedu.course.proxy``) starts one fresh worker per notebook with ``python -I`` (no current folder,
``PYTHONPATH`` or user site on ``sys.path``: a ``segedu/`` folder in the submission cannot shadow the package)
and the grader's own ``segedu`` first on ``sys.path``. The worker runs the notebook's set-up and exercise cells
in an IPython shell, then serves calls of the student's functions. It never runs a check: every verdict is
computed in the grader. Everything here is untrusted once a student's cell has run - the cells may rewrite this
module, IPython or torch - and that is fine, because the grader believes nothing the worker says beyond "this is
what the student's function returned" (see ``segedu.course.protocol``).

Requests (pickled tuples, from the grader) and replies (``torch.save``'d tuples):

* ``("cell", source)`` -> ``("ok",)`` or ``("raise", builtin, class, message)``;
* ``("lookup", name)`` -> ``("ok", is it a callable in the notebook's namespace)``;
* ``("call", call_id, name, args, kwargs, grad_enabled)`` -> ``("ok", value tree)``, ``("raise", ...)`` or
  ``("missing",)``; tensor arguments that require grad arrive as ``GradLeaf``;
* ``("backward", call_id, grads)`` -> ``("ok", [gradient per GradLeaf, or None])``.
"""

from __future__ import annotations

import io
import os
import pickle
import sys
from typing import Any

__all__ = ["encode", "serve", "main"]

_MAX_DEPTH = 32


def _tensor(t):
    """A plain, dense, CPU copy of a tensor (no subclass, no view of a larger storage, no lazy conj/neg bit)."""
    import torch

    t = t.detach()
    if t.layout != torch.strided:
        t = t.to_dense()
    t = t.cpu().resolve_conj().resolve_neg().clone()
    return t.as_subclass(torch.Tensor) if type(t) is not torch.Tensor else t


def encode(value: Any, outputs: list, depth: int = 0):
    """The value tree of ``value`` (``segedu.course.protocol.TAGS``). Tensors that require grad are appended
    to ``outputs`` and tagged with their index there (the call's differentiable outputs)."""
    import torch

    from segedu.course.protocol import module_spec

    if depth > _MAX_DEPTH:
        return ("o", type(value).__name__, "(nested too deep)")
    if value is None:
        return ("n",)
    if isinstance(value, bool):
        return ("b", bool(value))
    if isinstance(value, int):
        return ("i", int(value))
    if isinstance(value, float):  # numpy.float64 is a float, as it is for the check in the student's own process
        return ("f", float(value))
    if isinstance(value, complex):
        return ("c", complex(value))
    if isinstance(value, str):
        return ("s", str(value))
    if isinstance(value, bytes):
        return ("y", bytes(value))
    if isinstance(value, torch.Tensor):
        index = -1
        if value.requires_grad:
            outputs.append(value)
            index = len(outputs) - 1
        return ("t", _tensor(value), index)
    if isinstance(value, tuple):  # namedtuples and torch.Size too
        return ("T", [encode(v, outputs, depth + 1) for v in value])
    if isinstance(value, list):
        return ("L", [encode(v, outputs, depth + 1) for v in value])
    if isinstance(value, dict):
        return ("D", [(encode(k, outputs, depth + 1), encode(v, outputs, depth + 1)) for k, v in value.items()])
    if isinstance(value, torch.nn.Module):
        spec = module_spec(value)
        if spec is not None:
            return ("m", spec)
    if isinstance(value, torch.dtype):
        return ("d", str(value).removeprefix("torch."))
    if isinstance(value, torch.device):
        return ("v", str(value))
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return ("o", type(value).__name__, text[:300])


def _arguments(value: Any, leaves: dict):
    """``value`` with every ``GradLeaf`` replaced by a fresh leaf tensor that requires grad (kept in ``leaves``)."""
    from segedu.course.protocol import GradLeaf

    if isinstance(value, GradLeaf):
        leaf = value.tensor.detach().requires_grad_(True)
        leaves[value.index] = leaf
        return leaf
    if type(value) in (tuple, list):
        return type(value)(_arguments(v, leaves) for v in value)
    if type(value) is dict:
        return {k: _arguments(v, leaves) for k, v in value.items()}
    return value


def _shell():
    """An IPython shell without a terminal or a kernel: ``%matplotlib inline`` and friends are accepted."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    class WorkerShell(InteractiveShell):
        def enable_gui(self, gui=None):  # no event loop to hook: figures are simply not shown
            pass

    config = Config()
    config.HistoryManager.enabled = False  # no history database: workers run side by side, and leave no trace
    return WorkerShell.instance(config=config, colors="NoColor")


def _handle(shell, calls: dict, request: tuple):
    import torch

    from segedu.course.protocol import describe_exception

    kind = request[0]
    if kind == "cell":
        result = shell.run_cell(request[1], store_history=False)
        error = result.error_before_exec or result.error_in_exec
        return ("ok",) if error is None else ("raise", *describe_exception(error))
    if kind == "lookup":
        return ("ok", callable(shell.user_ns.get(request[1])))
    if kind == "call":
        _, call_id, name, args, kwargs, grad_enabled = request
        fn = shell.user_ns.get(name)
        if not callable(fn):
            return ("missing",)
        leaves: dict = {}
        args, kwargs = _arguments(args, leaves), _arguments(kwargs, leaves)
        try:
            with torch.set_grad_enabled(grad_enabled):
                value = fn(*args, **kwargs)
        except BaseException as error:  # SystemExit and KeyboardInterrupt from a student's function too
            return ("raise", *describe_exception(error))
        outputs: list = []
        tree = encode(value, outputs)
        if outputs and leaves:
            calls[call_id] = (outputs, [leaves[i] for i in sorted(leaves)])
        return ("ok", tree)
    if kind == "backward":
        _, call_id, grads = request
        outputs, inputs = calls[call_id]
        pairs = [(o, g) for o, g in zip(outputs, grads) if g is not None and o.requires_grad]
        if not pairs:
            return ("ok", [None] * len(inputs))
        found = torch.autograd.grad([o for o, _ in pairs], inputs, [g for _, g in pairs], retain_graph=True,
                                    allow_unused=True)
        return ("ok", [None if g is None else _tensor(g) for g in found])
    return ("raise", "ValueError", "ValueError", f"unknown request {kind!r}")


def _dumps(reply) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(reply, buffer)
    return buffer.getvalue()


def serve(requests, replies) -> None:
    """Answer requests from ``requests`` on ``replies`` (binary streams) until the grader closes them."""
    from segedu.course.protocol import describe_exception, read_frame, write_frame

    shell = _shell()
    calls: dict = {}
    write_frame(replies, _dumps(("ready",)))  # the start-up is over: the grader's clock for the cells starts now
    while True:
        frame = read_frame(requests)
        if frame is None:
            return
        request = pickle.loads(frame)  # the grader's bytes: trusted
        try:
            reply = _handle(shell, calls, request)
            payload = _dumps(reply)
        except BaseException as error:  # a value that would not encode, a backward that failed, ...
            payload = _dumps(("raise", *describe_exception(error)))
        write_frame(replies, payload)


def _watch(parent: int) -> None:
    """End this process when the grader is gone (killed, say): a hung cell must not outlive it."""
    import time

    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def main() -> None:
    """The worker's entry point: stdin/stdout become the protocol's streams, and the student's prints (fd 1 and 2)
    go to the grader's log of this worker instead, so nothing a cell prints can be taken for a reply."""
    import threading

    threading.Thread(target=_watch, args=(os.getppid(),), daemon=True, name="segedu-watch-grader").start()
    requests = os.fdopen(os.dup(0), "rb", buffering=0)
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the process
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    serve(requests, replies)
