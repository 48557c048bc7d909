"""Long runs (segedu.resume, segedu.runlog, fit's checkpoint / save_every / resume / log) and NaN-safe
training: k steps + resume to N give the weights of N steps straight, bit for bit on a CPU, for every kind
of data source; Ctrl-C saves the last finished step; a non-finite loss leaves the last finite weights."""

import math
import os
import signal

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from segedu import cache, train, zoo
from segedu.checkpoint import read_checkpoint, save_checkpoint
from segedu.data.shapes import ShapesDataset
from segedu.train import evaluate, fit, read_log

CE = nn.CrossEntropyLoss(ignore_index=255)
RUN = dict(batch_size=4, lr=1e-2, device="cpu", progress=False)


class Net(nn.Module):
    """Conv, BatchNorm (running statistics), dropout (the global generator): everything a resume must
    restore. 6 classes, like the shapes scenes."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout2d(0.3),
                                  nn.Conv2d(8, 6, 1))

    def forward(self, x):
        return self.body(x)


def scenes(n=12):
    return ShapesDataset(n, size=16, seed=0)


def tensors(n=10):
    images, masks = scenes(n).batch(torch.arange(n))
    return images, masks


def source(kind):
    """A fresh source of each kind (a resumed run builds its own, as a new process would)."""
    if kind == "batch":
        return scenes()
    images, masks = tensors()
    if kind == "dataset":  # 10 items, batch 4: 2 batches per epoch (the last one dropped)
        return TensorDataset(images, masks)
    if kind == "list":  # 3 batches per pass
        return [(images[i : i + 4], masks[i : i + 4]) for i in (0, 3, 6)]
    if kind == "dataloader":  # a user's shuffled DataLoader: its order comes from the global generator
        return DataLoader(TensorDataset(images, masks), batch_size=3, shuffle=True)
    raise AssertionError(kind)


def adam_cosine(model, steps=7):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def straight_and_resumed(tmp_path, kind, k, n=7, **kw):
    """N steps straight, and k steps + resume to N (a new model, optimizer, scheduler and source, as in a new
    process). Returns both models, histories, a draw of the global generator after each run, and the file."""
    args = {**RUN, **kw, "lr": None}
    straight = Net()
    optimizer, scheduler = adam_cosine(straight, n)
    full = fit(straight, source(kind), CE, n, optimizer, scheduler=scheduler, **args)
    after_straight = torch.rand(3)

    first = Net()
    optimizer, scheduler = adam_cosine(first, n)
    path = tmp_path / "run" / "model.pt"
    fit(first, source(kind), CE, k, optimizer, scheduler=scheduler, checkpoint=path, **args)
    torch.manual_seed(123)  # whatever happens in between
    resumed = Net(seed=5)  # other initial weights: all of them come from the file
    optimizer, scheduler = adam_cosine(resumed, n)
    rest = fit(resumed, source(kind), CE, n, optimizer, scheduler=scheduler, resume=path, **args)
    assert torch.equal(torch.rand(3), after_straight)  # the generators end where the straight run left them
    return straight, full, resumed, rest, path


# --------------------------------------------------------------------------- resume = straight


@pytest.mark.parametrize("kind, k", [("batch", 3), ("dataset", 3), ("dataset", 4), ("list", 2), ("list", 3),
                                     ("dataloader", 2), ("dataloader", 6)])
def test_k_steps_and_resume_give_the_weights_of_n_steps_straight(tmp_path, kind, k):
    straight, full, resumed, rest, path = straight_and_resumed(tmp_path, kind, k)
    same_weights(straight, resumed)
    assert rest.loss == full.loss and rest.steps == full.steps == 7  # the History goes on from the file
    state = read_checkpoint(path)
    assert state["resume"]["step"] == k and state["extra"]["step"] == k  # resumed without checkpoint: not written


class EpochBatches:
    """An iterable that orders its batches by an epoch counter it keeps itself (like
    ``segedu.distributed.EpochLoader``); ``state_dict`` / ``load_state_dict`` let a resumed run restore it."""

    def __init__(self):
        images, masks = tensors()
        self.batches = [(images[i : i + 4], masks[i : i + 4]) for i in (0, 3, 6)]
        self.epoch = 0

    def __iter__(self):
        order = torch.randperm(3, generator=torch.Generator().manual_seed(self.epoch))
        self.epoch += 1
        return iter([self.batches[i] for i in order])

    def state_dict(self):
        return {"epoch": self.epoch}

    def load_state_dict(self, state):
        self.epoch = state["epoch"]


def test_an_iterable_with_its_own_state_is_restored_at_the_start_of_its_pass(tmp_path):
    path = tmp_path / "m.pt"
    straight, first, resumed = Net(), Net(), Net()
    fit(straight, EpochBatches(), CE, 8, **RUN)
    fit(first, EpochBatches(), CE, 7, checkpoint=path, **RUN)  # third pass, one batch in
    fit(resumed, EpochBatches(), CE, 8, resume=path, **RUN)
    same_weights(straight, resumed)


def test_resume_with_validation_and_the_generators_after_the_run(tmp_path):
    straight, full, resumed, rest, _ = straight_and_resumed(tmp_path, "batch", 4, val_data=scenes(4), val_every=2)
    same_weights(straight, resumed)
    assert [v["step"] for v in rest.val] == [v["step"] for v in full.val] == [2, 4, 6, 7]
    assert rest.val == full.val


def test_a_run_can_go_on_past_its_first_target(tmp_path):
    model = Net()
    path = tmp_path / "m.pt"
    fit(model, scenes(), CE, 3, checkpoint=path, **RUN)
    more = fit(Net(), scenes(), CE, 5, resume=path, **RUN)
    straight = fit(Net(), scenes(), CE, 5, **RUN)
    assert more.loss == straight.loss and more.steps == 5


# --------------------------------------------------------------------------- periodic saves, contents


def test_periodic_checkpoints_hold_everything_and_load_with_weights_only(tmp_path):
    path = tmp_path / "m.pt"
    seen = {}

    def peek(step, model, history):
        if path.exists():
            seen[step] = read_checkpoint(path)["resume"]["step"]

    model = zoo.build_model("fcn8s", 6, width=4)
    spec = zoo.model_spec("fcn8s", 6, width=4)
    fit(model, scenes(), CE, 5, checkpoint=path, save_every=2, checkpoint_extra={"spec": spec, "note": "x"},
        callback=peek, **RUN)
    assert seen == {3: 2, 4: 2, 5: 4}  # every 2 steps (written after the step's callback) ...
    assert read_checkpoint(path)["resume"]["step"] == 5  # ... and after the last
    raw = torch.load(path, weights_only=True)  # nothing pickled
    assert set(raw) == {"format", "model", "optimizer", "extra", "resume"}
    assert raw["extra"] == {"spec": spec, "note": "x", "step": 5}
    state = raw["resume"]
    assert {"version", "step", "steps", "batch_size", "seed", "optimizer_class", "scheduler", "scaler", "history",
            "counters", "ranks"} <= set(state)
    assert state["optimizer_class"] == "Adam" and len(state["history"]["loss"]) == 5
    assert set(state["ranks"][0]) == {"rng", "batches"} and state["ranks"][0]["batches"]["kind"] == "batch"
    loaded, extra = zoo.load_model(path)  # the zoo rebuilds it from the spec
    same_weights(loaded, model)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary file left


# --------------------------------------------------------------------------- Ctrl-C


@pytest.fixture
def default_sigint():
    """SIGINT handled as in a Python started from a terminal. A test runner started in the background by a
    non-interactive shell (`cmd &`, as CI scripts do) inherits SIGINT *ignored*, and Python keeps that."""
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, inherited)


def test_ctrl_c_finishes_the_step_saves_it_and_resume_goes_on(tmp_path, capsys, default_sigint):
    path = tmp_path / "m.pt"

    def press_ctrl_c(step, model, history):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # as a terminal (or Jupyter's interrupt) would

    with pytest.raises(KeyboardInterrupt):
        fit(Net(), scenes(), CE, 7, checkpoint=path, save_every=100, callback=press_ctrl_c, **RUN)
    err = capsys.readouterr().err
    assert "stopped after step 3 of 7; resumable checkpoint: " + str(path) in err and "resume=" in err
    assert read_checkpoint(path)["resume"]["step"] == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # fit put the handler back

    resumed, straight = Net(), Net()
    fit(resumed, scenes(), CE, 7, resume=path, **RUN)
    fit(straight, scenes(), CE, 7, **RUN)
    same_weights(resumed, straight)


def test_an_interrupt_between_steps_is_saved_one_inside_a_step_is_not(tmp_path, capsys):
    path = tmp_path / "m.pt"

    def interrupt_after(step, model, history):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(Net(), scenes(), CE, 7, checkpoint=path, callback=interrupt_after, **RUN)
    assert read_checkpoint(path)["resume"]["step"] == 2

    calls = []

    def loss_interrupted_at_step_5(logits, target):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt  # in the middle of step 5: batch drawn, dropout sampled
        return CE(logits, target)

    other = tmp_path / "o.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(Net(), scenes(), loss_interrupted_at_step_5, 7, checkpoint=other, save_every=3, **RUN)
    assert "stopped after step 4 of 7, unsaved; the last checkpoint" in capsys.readouterr().err
    assert read_checkpoint(other)["resume"]["step"] == 3  # the periodic one: half of step 5 is no state to save


def test_a_second_ctrl_c_stops_at_once_without_saving(tmp_path, capsys, default_sigint):
    path = tmp_path / "m.pt"

    def press_twice(step, model, history):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # the second raises KeyboardInterrupt at once

    with pytest.raises(KeyboardInterrupt):
        fit(Net(), scenes(), CE, 7, checkpoint=path, save_every=2, callback=press_twice, **RUN)
    assert read_checkpoint(path)["resume"]["step"] == 2
    assert "stopped after step 3 of 7, unsaved; the last checkpoint" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# --------------------------------------------------------------------------- log


class DictLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, x, y):
        return {"loss_a": (self.scale - 1) ** 2, "loss_b": (self.scale * x.mean() - 1).abs()}


def test_the_log_has_a_row_per_step_and_per_validation(tmp_path):
    path = tmp_path / "log.csv"
    history = fit(Net(), scenes(), CE, 4, val_data=scenes(4), val_every=2, log=path, **RUN)
    text = path.read_text().splitlines()
    assert text[0] == "kind,step,seconds,loss,lr,miou,pixel_accuracy,boundary_f1,images"
    assert [line.split(",")[:2] for line in text[1:]] == [
        ["train", "1"], ["train", "2"], ["val", "2"], ["train", "3"], ["train", "4"], ["val", "4"]]
    rows = read_log(path, "train")
    assert rows["step"] == [1, 2, 3, 4] and rows["loss"] == history.loss and rows["lr"] == [1e-2] * 4
    assert all(math.isnan(v) for v in rows["miou"])
    val = read_log(path, "val")
    assert val["miou"] == [v["miou"] for v in history.val] and val["images"] == [4.0, 4.0]
    seconds = read_log(path)["seconds"]
    assert seconds == sorted(seconds)

    parts = tmp_path / "parts.csv"
    images = torch.rand(4, 3, 8, 8)
    history = fit(DictLoss(), [(images, [{}] * 4)], None, 3, log=parts, **RUN)
    logged = read_log(parts)
    assert logged["part:loss_a"] == history.parts["loss_a"] and logged["part:loss_b"] == history.parts["loss_b"]


def test_a_resumed_run_appends_to_its_log_without_repeating_steps(tmp_path):
    path, log = tmp_path / "m.pt", tmp_path / "log.csv"

    def crash_at_5(step, model, history):
        if step == 5:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):  # checkpoint at 4; the log already has step 5
        fit(Net(), scenes(), CE, 7, checkpoint=path, save_every=2, log=log, callback=crash_at_5, **RUN)
    assert read_log(log)["step"][-1] == 5
    fit(Net(), scenes(), CE, 7, resume=path, log=log, **RUN)
    straight = fit(Net(), scenes(), CE, 7, **RUN)
    rows = read_log(log, "train")
    assert rows["step"] == list(range(1, 8)) and rows["loss"] == straight.loss


# --------------------------------------------------------------------------- the cache stays out of long runs


def test_the_cache_is_skipped_with_a_checkpoint_a_log_or_a_resume(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(cache.ENV_VAR, str(folder))
    fit(Net(), scenes(), CE, 2, **RUN)  # stored
    assert len(list(folder.glob("fit-*.pt"))) == 1
    assert not fit(Net(), scenes(), CE, 2, checkpoint=tmp_path / "m.pt", **RUN).cached
    assert not fit(Net(), scenes(), CE, 2, log=tmp_path / "log.csv", **RUN).cached
    assert not fit(Net(), scenes(), CE, 3, resume=tmp_path / "m.pt", **RUN).cached
    assert len(list(folder.glob("fit-*.pt"))) == 1


# --------------------------------------------------------------------------- argument errors


def test_argument_errors_are_clear_and_touch_nothing(tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("keep me")
    plain = save_checkpoint(tmp_path / "plain.pt", Net())  # no resume state
    done = tmp_path / "done.pt"
    fit(Net(), scenes(), CE, 2, checkpoint=done, **RUN)

    def run(**kw):
        fit(Net(), scenes(), CE, 2, **RUN, **kw)

    cases = [
        (dict(save_every=2), ValueError, "save_every needs checkpoint"),
        (dict(checkpoint=tmp_path / "a.pt", save_every=True), TypeError, "save_every must be an int >= 1, got bool"),
        (dict(checkpoint=tmp_path / "a.pt", save_every=2.5), TypeError, "save_every must be an int >= 1"),
        (dict(checkpoint=tmp_path / "a.pt", save_every=0), ValueError, "save_every must be an int >= 1, got 0"),
        (dict(checkpoint=3), TypeError, "checkpoint must be a path"),
        (dict(checkpoint=tmp_path), ValueError, "checkpoint must name a file, got the folder"),
        (dict(checkpoint=other), ValueError, "is not a segedu checkpoint; refusing to overwrite"),
        (dict(checkpoint=other / "x.pt"), ValueError, "cannot create the folder"),
        (dict(log=other), ValueError, "not a segedu training log; refusing to overwrite"),
        (dict(log=1.5), TypeError, "log must be a path"),
        (dict(checkpoint=tmp_path / "a.pt", log=tmp_path / "a.pt"), ValueError, "must be different files"),
        (dict(resume=tmp_path / "missing.pt"), FileNotFoundError, "no such checkpoint"),
        (dict(resume=other), ValueError, "not a segedu checkpoint"),
        (dict(resume=plain), ValueError, "without the state to resume"),
        (dict(resume=done), ValueError, "is at step 2 and steps=2: nothing is left to train"),
        (dict(checkpoint_extra={"a": 1}), ValueError, "pass checkpoint too"),
        (dict(checkpoint=tmp_path / "a.pt", checkpoint_extra=[1]), TypeError, "checkpoint_extra must be a dict"),
        (dict(checkpoint=tmp_path / "a.pt", checkpoint_extra={"model": Net()}), TypeError,
         r"checkpoint_extra\['model'\] is a Net"),
    ]
    for kw, error, message in cases:
        with pytest.raises(error, match=message):
            run(**kw)
    assert other.read_text() == "keep me" and not (tmp_path / "a.pt").exists()


def test_a_resume_that_does_not_fit_the_run_is_refused(tmp_path):
    path = tmp_path / "m.pt"
    fit(Net(), scenes(), CE, 2, checkpoint=path, **RUN)
    with pytest.raises(ValueError, match="batch_size must be the one the run was saved with, 4, got 2"):
        fit(Net(), scenes(), CE, 4, resume=path, **{**RUN, "batch_size": 2})
    with pytest.raises(ValueError, match="train_data is a 'dataset' source, but the saved batch stream"):
        fit(Net(), TensorDataset(*tensors()), CE, 4, resume=path, **RUN)
    model = Net()
    with pytest.raises(ValueError, match="holds the state of a Adam optimizer, got SGD"):
        fit(model, scenes(), CE, 4, torch.optim.SGD(model.parameters(), lr=0.1), resume=path, device="cpu",
            batch_size=4, progress=False)
    with pytest.raises(ValueError, match="do not fit this model"):
        fit(nn.Conv2d(3, 6, 1), scenes(), CE, 4, resume=path, **RUN)
    with pytest.raises(ValueError, match="saved without a scheduler; pass no scheduler"):
        fit(Net(), scenes(), CE, 4, resume=path, scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, 1), **RUN)


# --------------------------------------------------------------------------- NaN-safe training


def nan_at(k, loss=CE):
    calls = []

    def loss_fn(logits, target):
        calls.append(1)
        value = loss(logits, target)
        return value * float("nan") if len(calls) == k else value

    return loss_fn


@pytest.mark.parametrize("k", [1, 4])
def test_a_nan_loss_stops_before_the_update_and_keeps_the_last_finite_weights(k):
    before = Net()
    if k > 1:
        fit(before, scenes(), CE, k - 1, **RUN)
    model = Net()
    with pytest.raises(FloatingPointError, match=f"loss became nan at step {k}, before its optimizer step"):
        fit(model, scenes(), nan_at(k), 5, **RUN)
    same_weights(model, before)  # BatchNorm running statistics included
    assert all(p.grad is None for p in model.parameters())


def test_a_nan_loss_with_a_grad_scaler_keeps_the_weights_and_optimizer(monkeypatch):
    # float16 autocast with a GradScaler (what fit uses on GPUs without bfloat16), here on the CPU.
    monkeypatch.setattr(train, "_amp_dtype", lambda amp, device: torch.float16)
    before = Net()
    opt_before = torch.optim.Adam(before.parameters(), lr=1e-2)
    fit(before, scenes(), CE, 2, opt_before, device="cpu", batch_size=4, progress=False)
    model = Net()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    with pytest.raises(FloatingPointError, match="at step 3"):
        fit(model, scenes(), nan_at(3), 5, optimizer, device="cpu", batch_size=4, progress=False)
    same_weights(model, before)
    assert optimizer.state_dict()["state"][0]["step"] == opt_before.state_dict()["state"][0]["step"] == 2


def test_evaluate_refuses_non_finite_logits():
    class Broken(nn.Module):
        calls = 0

        def forward(self, x):
            self.calls += 1
            out = torch.zeros(x.shape[0], 6, *x.shape[2:])
            if self.calls == 2:
                out[-1, :, 0, 0] = float("nan")  # one pixel of the second batch: argmax would say class 0
            return out

    with pytest.raises(FloatingPointError, match=r"logits hold 6 of .* NaN or infinite \(batch 1, images 4 to 7\)"):
        evaluate(Broken(), scenes(8), 6, batch_size=4)
