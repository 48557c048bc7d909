"""The grader's side of a worker process: start it, talk to it with deadlines, kill it, and stand in for the
student's function in a check.

``Worker`` starts ``segedu.course.worker`` in a fresh process (its own process group, so a kill takes whatever
the student's code started too), sends requests and waits for each reply until a deadline; past it, or if the
process dies or says something that does not follow the protocol, the worker is killed and ``WorkerGone`` is
raised. ``StudentFunction`` is what a check receives instead of the student's function: calling it sends the
arguments to the worker, the student's function runs there, and its result comes back as plain data that the
grader rebuilds (``decode``). Tensors that require grad keep working: a result that depends on them is attached
to the grader's autograd graph by ``RemoteCall``, whose backward asks the worker for the gradients.

``WorkerGone`` derives from ``BaseException``: a check's ``except Exception`` (or ``except RuntimeError``) never
swallows a timeout, and the proxy remembers it (``StudentFunction.gone``) so that the grader's verdict does not
depend on what the check did with it.
"""

from __future__ import annotations

import collections
import io
import itertools
import os
import pickle
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import torch

from segedu.course.protocol import (
    GradLeaf,
    ProtocolError,
    build_module,
    exception_class,
    read_frame,
    write_frame,
)

__all__ = ["WorkerGone", "Foreign", "Worker", "StudentFunction", "RemoteCall", "decode", "worker_command",
           "kill_workers"]

# The worker's first lines: put the grader's own segedu (and the grader's import path, less anything relative)
# before whatever else, then serve. `python -I` leaves out the current folder, PYTHONPATH and the user site.
_BOOT = "import sys; sys.path[:0] = [p for p in sys.argv[1:] if p not in sys.path]; " \
        "from segedu.course.worker import main; main()"
_LOG_TAIL = 600  # characters of the worker's output quoted when it dies
_LIVE: weakref.WeakSet = weakref.WeakSet()  # this process's workers, for kill_workers
# Environment variables a worker does not get: the student's code has no business with the grader's secrets.
_SECRET = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE|API_?KEY|ACCESS_?KEY|AUTH", re.IGNORECASE)


class WorkerGone(BaseException):
    """The worker was killed at its deadline (``status`` ``"timeout"``) or died (``"error"``)."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class Foreign:
    """An object of a kind the grader does not rebuild (a NumPy array, a generator, ...): it keeps the type name
    and the ``repr`` the student's function returned, so that a check's message names them."""

    __slots__ = ("_text",)

    def __init__(self, text: str):
        self._text = text

    def __repr__(self) -> str:
        return self._text


_FOREIGN: dict[str, type] = {}


def _foreign(type_name: Any, text: Any) -> Foreign:
    name = re.sub(r"\W", "_", str(type_name))[:60] or "object"
    if name[0].isdigit():
        name = "_" + name
    cls = _FOREIGN.setdefault(name, type(name, (Foreign,), {"__slots__": ()}))
    return cls(str(text)[:300])


def decode(node: Any, outputs: dict) -> Any:
    """The value a value tree stands for (``segedu.course.protocol.TAGS``). Differentiable output tensors are
    collected in ``outputs`` ``{index: tensor}``. Raises ``ProtocolError`` for anything else."""
    if type(node) is not tuple or not node or type(node[0]) is not str:
        raise ProtocolError(f"not a value node: {type(node).__name__}")
    tag, rest = node[0], node[1:]
    simple = {"b": bool, "i": int, "f": float, "c": complex, "s": str, "y": bytes}
    if tag == "n" and not rest:
        return None
    if tag in simple and len(rest) == 1 and type(rest[0]) is simple[tag]:
        return rest[0]
    if tag == "t" and len(rest) == 2 and isinstance(rest[0], torch.Tensor) and type(rest[1]) is int:
        tensor = rest[0].detach()
        if rest[1] >= 0:
            outputs.setdefault(rest[1], tensor)
            return outputs[rest[1]]
        return tensor
    if tag in ("T", "L") and len(rest) == 1 and type(rest[0]) is list:
        items = [decode(item, outputs) for item in rest[0]]
        return tuple(items) if tag == "T" else items
    if tag == "D" and len(rest) == 1 and type(rest[0]) is list:
        pairs = [(decode(k, outputs), decode(v, outputs)) for k, v in rest[0]]
        try:
            return dict(pairs)
        except TypeError as error:
            raise ProtocolError(f"a dict key that is not hashable: {error}") from None
    if tag == "m" and len(rest) == 1:
        return build_module(rest[0])
    if tag == "d" and len(rest) == 1 and type(rest[0]) is str:
        dtype = getattr(torch, rest[0], None)
        if isinstance(dtype, torch.dtype):
            return dtype
    if tag == "v" and len(rest) == 1 and type(rest[0]) is str:
        return torch.device(rest[0])
    if tag == "o" and len(rest) == 2:
        return _foreign(rest[0], rest[1])
    raise ProtocolError(f"an unknown value node {tag!r}")


def worker_command() -> list[str]:
    """The command line of a worker: this interpreter, isolated, with this grader's ``segedu`` first."""
    import segedu

    root = str(Path(segedu.__file__).resolve().parent.parent)
    paths = [p for p in sys.path if p and os.path.isabs(p) and p != root]
    return [sys.executable, "-I", "-c", _BOOT, root, *paths]


class Worker:
    """One worker process, started in ``cwd`` (the notebook's folder), killed by ``kill`` or ``close``.

    ``threads``: the torch threads of the worker (``OMP_NUM_THREADS``, unless the environment sets it). The worker
    gets this process's environment less the variables whose names look like secrets (tokens, passwords, keys).
    """

    def __init__(self, cwd: str | Path, threads: int | None = None):
        env = {k: v for k, v in os.environ.items() if not _SECRET.search(k)}
        env.setdefault("MPLBACKEND", "Agg")  # no window, whatever the machine; %matplotlib inline still works
        if threads is not None:
            env.setdefault("OMP_NUM_THREADS", str(threads))
        self._process = subprocess.Popen(
            worker_command(), cwd=str(cwd), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=os.name == "posix",
        )
        self._replies: queue.Queue = queue.Queue()
        self._log: collections.deque = collections.deque(maxlen=8)  # the last chunks the student's code printed
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain, daemon=True).start()
        self.gone: WorkerGone | None = None
        self.call_ids = itertools.count(1)  # unique per worker: the worker keeps each call's graph by its id
        self._killed = False
        _LIVE.add(self)

    def _read(self) -> None:
        stream = self._process.stdout
        try:
            while True:
                frame = read_frame(stream)
                self._replies.put(frame)
                if frame is None:
                    return
        except (ProtocolError, OSError, ValueError) as error:
            self._replies.put(error)

    def wait_ready(self, deadline: float) -> None:
        """Wait for the worker's first reply, sent once it has started (imports are not the student's time)."""
        reply = self._receive(deadline, "starting the worker process")
        if reply != ("ready",):
            raise self._fail("error", "the worker process did not start as expected")

    def _write(self, payload: bytes) -> None:
        try:
            write_frame(self._process.stdin, payload)
        except (OSError, ValueError):
            pass  # the process is gone: the end of its replies says so

    def _drain(self) -> None:
        """Keep the end of what the worker prints (fd 1 and 2): bounded, however much a cell prints."""
        try:
            while chunk := self._process.stderr.read1(4096):
                self._log.append(chunk)
        except (OSError, ValueError):
            pass

    def _log_tail(self) -> str:
        time.sleep(0.1)  # what a dying worker printed last is usually still in the pipe
        text = b"".join(list(self._log)).decode("utf-8", "replace")
        text = re.sub(r"\x1b\[[0-9;]*m", "", text).strip()
        return text[-_LOG_TAIL:]

    def _fail(self, status: str, message: str) -> WorkerGone:
        self.kill()
        self.gone = WorkerGone(status, message)
        return self.gone

    def request(self, message: tuple, deadline: float, what: str) -> tuple:
        """Send ``message`` and return the reply (a tuple whose first item is a string). ``deadline`` is a
        ``time.monotonic()`` value; ``what`` names the step for a timeout's message."""
        if self.gone is not None:
            raise self.gone
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        # Written from a thread: a worker that stops reading must not block the grader past the deadline.
        threading.Thread(target=self._write, args=(payload,), daemon=True).start()
        return self._receive(deadline, what)

    def _receive(self, deadline: float, what: str) -> tuple:
        if self.gone is not None:
            raise self.gone
        try:
            frame = self._replies.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise self._fail("timeout", f"{what} ran past the time limit: the worker process was killed") from None
        if frame is None or isinstance(frame, Exception):
            try:
                code = self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:  # it closed its stdout but lives on: killed below
                code = None
            why = f"the worker sent {frame}" if isinstance(frame, Exception) else f"exit code {code}"
            tail = self._log_tail()
            raise self._fail("error", f"{what}: the worker process died ({why})" + (f": {tail}" if tail else ""))
        try:
            reply = torch.load(io.BytesIO(frame), weights_only=True, map_location="cpu")
        except Exception as error:  # anything torch refuses to read as plain data
            raise self._fail("error", f"{what}: the worker sent unreadable data ({type(error).__name__})") from None
        if type(reply) is not tuple or not reply or type(reply[0]) is not str:
            raise self._fail("error", f"{what}: the worker sent an unexpected reply")
        return reply

    def kill(self) -> None:
        """Kill the worker and every process in its group (what the student's code started), and wait for it."""
        process = self._process
        if self._killed:  # once: the group's id could belong to a new process group later
            return
        self._killed = True
        if process.poll() is None or os.name == "posix":  # the group may outlive its leader
            try:
                if os.name == "posix":
                    os.killpg(process.pid, signal.SIGKILL)
                else:
                    process.kill()
            except (ProcessLookupError, PermissionError):
                pass
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        try:  # the reading threads end at the end of their pipes, and their streams close with this object
            process.stdin.close()
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        self.kill()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def kill_workers() -> None:
    """Kill every worker this process started that is still alive (on Ctrl-C: the threads waiting on them end)."""
    for worker in list(_LIVE):
        if worker.gone is None:
            worker.gone = WorkerGone("error", "grading was interrupted")
        worker.kill()


def _raise_student_error(reply: tuple, name: str):
    if len(reply) == 4 and all(type(x) is str for x in reply[1:]):
        error = exception_class(reply[1])(reply[3])
        error.segedu_type = reply[2]  # the student's own class name, for the message
        raise error
    raise ProtocolError(f"a malformed error reply from {name}")


class RemoteCall(torch.autograd.Function):
    """Attach the outputs of a call in the worker to the grader's graph: backward asks the worker for the
    gradients with respect to the call's differentiable inputs."""

    @staticmethod
    def forward(ctx, link, count, *inputs_and_outputs):
        ctx.link, ctx.count = link, count  # (StudentFunction, call id, shapes of the inputs), number of outputs
        return tuple(t.clone() for t in inputs_and_outputs[len(inputs_and_outputs) - count:])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        fn, call_id, shapes = ctx.link
        found = fn.backward(call_id, [None if g is None else g.detach().cpu() for g in grads])
        if type(found) is not list or len(found) != len(shapes):
            raise ProtocolError("the worker sent the wrong number of gradients")
        for g, shape in zip(found, shapes):
            if g is not None and (not isinstance(g, torch.Tensor) or tuple(g.shape) != shape):
                raise ProtocolError("the worker sent a gradient of the wrong shape")
        return (None, None, *found, *[None] * ctx.count)  # the outputs' values came in as inputs: no gradient


class StudentFunction:
    """Stands in for the student's function ``name`` in a check: each call runs it in ``worker``.

    Every call must be answered before ``deadline`` (``time.monotonic()``). The student's exceptions come back as
    built-in exceptions (a ``NotImplementedError`` stays one: the exercise was not attempted). ``gone`` holds the
    ``WorkerGone`` of a call that timed out or found the worker dead.
    """

    def __init__(self, worker: Worker, name: str, deadline: float):
        self.worker, self.__name__, self.deadline = worker, name, deadline
        self.gone: WorkerGone | None = None

    def _request(self, message: tuple) -> tuple:
        try:
            return self.worker.request(message, self.deadline, f"{self.__name__}(...)")
        except WorkerGone as gone:
            self.gone = gone
            raise

    def _leaves(self, value: Any, leaves: list):
        if isinstance(value, torch.Tensor) and value.requires_grad:
            leaves.append(value)
            return GradLeaf(len(leaves) - 1, value.detach())
        if isinstance(value, torch.Tensor):
            return value.detach()
        if type(value) in (tuple, list):
            return type(value)(self._leaves(v, leaves) for v in value)
        if type(value) is dict:
            return {k: self._leaves(v, leaves) for k, v in value.items()}
        return value

    def __call__(self, *args, **kwargs):
        call_id = next(self.worker.call_ids)
        leaves: list = []
        message = ("call", call_id, self.__name__, self._leaves(args, leaves), self._leaves(kwargs, leaves),
                   torch.is_grad_enabled())
        reply = self._request(message)
        if reply[0] == "missing":
            raise NameError(f"the exercise cell does not define a function named {self.__name__}")
        if reply[0] == "raise":
            _raise_student_error(reply, self.__name__)
        if reply[0] != "ok" or len(reply) != 2:
            raise ProtocolError(f"an unexpected reply to a call of {self.__name__}")
        outputs: dict = {}
        try:
            value = decode(reply[1], outputs)
        except ProtocolError as error:
            raise AssertionError(f"{self.__name__} returned something the grader cannot rebuild: {error}") from None
        except (TypeError, ValueError, RuntimeError) as error:  # a module whose arguments or weights do not fit
            raise AssertionError(f"{self.__name__} returned a module the grader cannot rebuild: {error}") from None
        if outputs and leaves and torch.is_grad_enabled():
            order = sorted(outputs)
            if order != list(range(len(order))):
                raise AssertionError(f"{self.__name__}: the worker numbered its outputs wrongly")
            attached = RemoteCall.apply((self, call_id, [tuple(t.shape) for t in leaves]), len(order), *leaves,
                                        *(outputs[i] for i in order))
            swap = {id(outputs[i]): a for i, a in zip(order, attached)}
            value = _swap(value, swap)
        return value

    def backward(self, call_id: int, grads: list) -> list:
        reply = self._request(("backward", call_id, grads))
        if reply[0] == "raise":
            _raise_student_error(reply, self.__name__)
        if reply[0] != "ok" or len(reply) != 2 or type(reply[1]) is not list:
            raise ProtocolError("an unexpected reply to backward")
        return [None if g is None else g.detach() for g in reply[1]]

    def __repr__(self) -> str:
        return f"<the student's {self.__name__}, run in a worker process>"


def _swap(value: Any, swap: dict) -> Any:
    """``value`` with each differentiable output replaced by its copy attached to the graph."""
    if isinstance(value, torch.Tensor):
        return swap.get(id(value), value)
    if type(value) in (tuple, list):
        return type(value)(_swap(v, swap) for v in value)
    if type(value) is dict:
        return {k: _swap(v, swap) for k, v in value.items()}
    return value
