"""The grader and its worker process (``segedu.course.protocol``, ``proxy``, ``worker``): what crosses between
them and how. The grader believes only plain data from the worker (``torch.load(weights_only=True)``), rebuilds
modules of allow-listed ``torch.nn`` classes itself, re-raises the student's exceptions as built-in ones, and
keeps autograd working across the process boundary (the checks of lessons 04, 06, 08 and 10 differentiate
through the student's function)."""

from __future__ import annotations

import io
import time

import pytest
import torch
from torch import nn

from segedu.course.protocol import (
    MAX_FRAME,
    ProtocolError,
    build_module,
    describe_exception,
    exception_class,
    module_spec,
    read_frame,
    write_frame,
)
from segedu.course.proxy import Foreign, StudentFunction, Worker, WorkerGone, decode
from segedu.course.worker import encode


def _roundtrip(value):
    outputs: list = []
    tree = encode(value, outputs)
    buffer = io.BytesIO()
    torch.save(tree, buffer)
    return decode(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True), {})


def test_plain_values_keep_their_kinds():
    value = (None, True, 3, 2.5, 1j, "s", b"b", [1, (2, 3)], {"k": torch.arange(3)}, torch.Size([2, 3]),
             torch.float64, torch.device("cpu"))
    back = _roundtrip(value)
    assert back[:8] == value[:8] and type(back[1]) is bool and type(back[2]) is int
    assert torch.equal(back[8]["k"], torch.arange(3)) and back[9] == (2, 3) and type(back[9]) is tuple
    assert back[10] is torch.float64 and back[11] == torch.device("cpu")


def test_other_objects_keep_their_type_name_and_repr_only():
    class Gizmo:
        def __repr__(self):
            return "Gizmo(7)"

    back = _roundtrip(Gizmo())
    assert isinstance(back, Foreign) and type(back).__name__ == "Gizmo" and repr(back) == "Gizmo(7)"
    assert not callable(back)


def test_tensors_cross_as_plain_dense_copies():
    big = torch.arange(1000.0)
    view = big[:3]
    back = _roundtrip(view)
    assert torch.equal(back, view) and back.untyped_storage().nbytes() == 3 * 4  # not the whole storage
    param = nn.Parameter(torch.ones(2))
    back = _roundtrip(param)
    assert type(back) is torch.Tensor and not back.requires_grad


def test_modules_are_rebuilt_from_their_class_arguments_and_weights():
    conv = nn.Conv2d(3, 5, (3, 1), stride=2, padding=(1, 0), groups=1, bias=True).double().eval()

    class Sneaky(nn.Conv2d):  # a subclass crosses as its torch.nn base: torch's forward runs in the grader
        def forward(self, x):
            return torch.zeros(1)

    back = _roundtrip(conv)
    assert type(back) is nn.Conv2d and back.weight.dtype == torch.float64 and not back.training
    assert (back.kernel_size, back.stride, back.padding) == ((3, 1), (2, 2), (1, 0))
    x = torch.randn(1, 3, 6, 6, dtype=torch.float64)
    assert torch.equal(back(x), conv(x))
    sneaky = Sneaky(2, 2, 1)
    assert torch.equal(_roundtrip(sneaky)(torch.ones(1, 2, 1, 1)), nn.Conv2d.forward(sneaky, torch.ones(1, 2, 1, 1)))
    seq = nn.Sequential(nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2), nn.ReLU())
    assert [type(m) for m in _roundtrip(seq)] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert isinstance(_roundtrip(nn.GELU()), Foreign)  # not allow-listed: a name and a repr, nothing to run


def test_a_forged_module_spec_is_refused():
    name, arguments, state, training, children = module_spec(nn.Linear(2, 3))
    with pytest.raises(ProtocolError):
        build_module(("Module", arguments, state, training, children))
    with pytest.raises(ProtocolError):
        build_module((name, {**arguments, "device": "meta"}, state, training, children))
    with pytest.raises(RuntimeError):  # the weights must fit the class
        build_module((name, arguments, {"weight": torch.ones(1)}, training, children))


@pytest.mark.parametrize("node", [("x",), ["i", 1], ("i", 1.5), ("b", 1), ("t", "data", -1),
                                  ("D", [(("L", []), ("n",))]), ("d", "Tensor"), ("T", "no")])
def test_decode_refuses_what_it_does_not_know(node):
    with pytest.raises(ProtocolError):
        decode(node, {})


def test_exceptions_cross_as_their_builtin_base():
    class MyError(KeyError):
        pass

    assert describe_exception(MyError("k")) == ("KeyError", "MyError", "'k'")
    assert exception_class("ValueError") is ValueError and exception_class("NotImplementedError") is NotImplementedError
    assert exception_class("SystemExit") is RuntimeError and exception_class("os.system") is RuntimeError


def test_frames_have_a_size_limit():
    buffer = io.BytesIO()
    write_frame(buffer, b"abc")
    assert read_frame(io.BytesIO(buffer.getvalue())) == b"abc"
    assert read_frame(io.BytesIO(b"")) is None
    with pytest.raises(ProtocolError):
        read_frame(io.BytesIO((MAX_FRAME + 1).to_bytes(8, "big")))
    with pytest.raises(ProtocolError):
        read_frame(io.BytesIO((10).to_bytes(8, "big") + b"short"))


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("GITHUB_TOKEN", "s3cret")
    mp.setenv("SEGEDU_PROFILE", "quick")
    with Worker(tmp_path_factory.mktemp("worker")) as w:
        w.wait_ready(time.monotonic() + 120)
        source = '''
import torch
import torch.nn.functional as F
def crop(x, size):
    return x[..., 1:1 + size, 1:1 + size]
def detached(x):
    return x.detach() * 2
def pair(a, b, scale=1.0):
    return {"sum": a + b * scale, "grad": torch.is_grad_enabled()}
def apply(module, x):
    return module(x)
def make(c):
    conv = torch.nn.Conv2d(c, 2, 1)
    return conv
def fails(kind):
    errors = {"value": ValueError("bad value"), "todo": NotImplementedError(),
              "custom": type("Oops", (IndexError,), {})("i")}
    raise errors[kind]
'''
        assert w.request(("cell", source), time.monotonic() + 60, "set-up") == ("ok",)
        yield w
    mp.undo()


def test_the_worker_is_isolated_from_the_current_folder_and_the_graders_secrets(worker):
    probe = """
import os, sys
def where():
    return {"cwd_on_path": "" in sys.path or os.getcwd() in sys.path, "token": os.environ.get("GITHUB_TOKEN"),
            "profile": os.environ.get("SEGEDU_PROFILE"), "segedu": __import__("segedu").__file__}
"""
    assert worker.request(("cell", probe), time.monotonic() + 60, "probe") == ("ok",)
    found = _fn(worker, "where")()
    assert found["cwd_on_path"] is False and found["token"] is None and found["profile"] == "quick"
    import segedu

    assert found["segedu"] == segedu.__file__


def _fn(worker, name):
    return StudentFunction(worker, name, time.monotonic() + 60)


def test_gradients_flow_back_through_the_worker(worker):
    x = torch.randn(1, 2, 5, 5, requires_grad=True)
    got = _fn(worker, "crop")(x, 3)
    assert got.requires_grad and torch.equal(got.detach(), x.detach()[..., 1:4, 1:4])
    (got * 2).sum().backward()
    want = torch.zeros(1, 2, 5, 5)
    want[..., 1:4, 1:4] = 2
    assert torch.equal(x.grad, want)
    assert not _fn(worker, "detached")(x).requires_grad  # a detached result stays detached


def test_keyword_arguments_and_grad_mode_reach_the_function(worker):
    a, b = torch.ones(2, requires_grad=True), torch.ones(2)
    out = _fn(worker, "pair")(a, b, scale=3.0)
    assert torch.equal(out["sum"].detach(), torch.full((2,), 4.0)) and out["grad"] is True
    (grad,) = torch.autograd.grad(out["sum"].sum(), a)
    assert torch.equal(grad, torch.ones(2))
    with torch.no_grad():
        out = _fn(worker, "pair")(a, b)
    assert out["grad"] is False and not out["sum"].requires_grad


def test_modules_go_to_the_function_and_come_back(worker):
    conv = nn.Conv2d(3, 4, 1)
    x = torch.randn(1, 3, 2, 2)
    with torch.no_grad():
        assert torch.allclose(_fn(worker, "apply")(conv, x), conv(x))
    made = _fn(worker, "make")(5)
    assert type(made) is nn.Conv2d and made.in_channels == 5


def test_the_students_exceptions_are_raised_in_the_grader(worker):
    with pytest.raises(ValueError, match="bad value"):
        _fn(worker, "fails")("value")
    with pytest.raises(NotImplementedError):
        _fn(worker, "fails")("todo")
    with pytest.raises(IndexError) as info:
        _fn(worker, "fails")("custom")
    assert info.value.segedu_type == "Oops"
    with pytest.raises(NameError, match="does not define"):
        _fn(worker, "nowhere")()


def test_a_call_past_its_deadline_kills_the_worker(tmp_path):
    with Worker(tmp_path) as w:
        w.wait_ready(time.monotonic() + 120)
        slow = "import time\ndef slow():\n    time.sleep(600)"
        assert w.request(("cell", slow), time.monotonic() + 60, "") == ("ok",)
        fn = StudentFunction(w, "slow", time.monotonic() + 2)
        with pytest.raises(WorkerGone) as info:
            fn()
        assert info.value.status == "timeout" and fn.gone is info.value
        with pytest.raises(WorkerGone):  # the worker stays gone
            w.request(("lookup", "slow"), time.monotonic() + 5, "")
