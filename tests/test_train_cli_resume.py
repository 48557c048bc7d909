"""Long runs through ``python -m segedu train`` (one process): Ctrl-C saves a resumable checkpoint, ``--resume``
continues it to the very weights of an uninterrupted run, ``--save-every`` keeps the last periodic save when a
second Ctrl-C stops at once, and the CSV log beside ``--out`` holds every step and validation exactly once.

Ctrl-C is a real SIGINT, sent to this process while a training batch is being drawn (the run's
``ShapesDataset.batch`` is wrapped to send it), so the handler ``fit`` installs does what it does in a terminal.
Under torchrun every process takes part in each save and the file holds every rank's random state; resuming
there needs the same number of processes (``segedu.distributed.train``'s docstring).
"""

from __future__ import annotations

import os
import signal

import pytest
import torch

from segedu import distributed, zoo
from segedu.__main__ import main
from segedu.checkpoint import read_checkpoint
from segedu.data.shapes import ShapesDataset
from segedu.runlog import read_log

STEPS = 6
RUN = ["train", "--model", "unet", "--data", "shapes", "--steps", str(STEPS), "--image-size", "32",
       "--batch-size", "2", "--width", "4", "--val-images", "2", "--val-every", "3", "--device", "cpu", "--quiet"]


@pytest.fixture
def ctrl_c(monkeypatch):
    """``ctrl_c(step, times=1)``: send SIGINT ``times`` times while the batch of training step ``step`` is drawn."""
    plan = {}
    original = ShapesDataset.batch

    def batch(self, indices):
        if self.seed == distributed.DATA_SEEDS["train"]:  # training scenes (validation has its own seed)
            plan["drawn"] = plan.get("drawn", 0) + 1
            if plan["drawn"] == plan.get("step"):
                for _ in range(plan["times"]):
                    os.kill(os.getpid(), signal.SIGINT)
        return original(self, indices)

    monkeypatch.setattr(ShapesDataset, "batch", batch)

    def arm(step: int, times: int = 1) -> None:
        plan.update(step=step, times=times, drawn=0)

    return arm


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run (saving every 2 steps changes nothing: saving reads the generators, never draws)."""
    out = tmp_path_factory.mktemp("straight") / "unet.pt"
    assert main([*RUN, "--save-every", "2", "--out", str(out)]) == 0
    return out


def test_ctrl_c_then_resume_gives_the_weights_of_the_straight_run(tmp_path, capsys, ctrl_c, straight):
    out = tmp_path / "unet.pt"
    ctrl_c(step=4)  # the first Ctrl-C lets step 4 finish, saves it, then stops
    assert main([*RUN, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert f"--resume {out}" in err  # fit says where the run is and how to go on
    assert err.rstrip().endswith("python -m segedu train: interrupted")
    state = read_checkpoint(out)
    assert state["resume"]["step"] == 4 and state["extra"]["spec"]["name"] == "unet"
    model, _ = zoo.load_model(out)  # an interrupted run's file is a usable model too
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 6, 32, 32)
    assert read_log(out.with_name("unet.log.csv"), "train")["step"] == [1, 2, 3, 4]

    ctrl_c(step=0)  # disarmed
    assert main([*RUN, "--out", str(out), "--resume", str(out)]) == 0
    resumed, extra = zoo.load_model(out)
    reference, reference_extra = zoo.load_model(straight)
    assert distributed.state_digest(resumed) == distributed.state_digest(reference)  # bit-identical weights
    assert extra["loss"] == reference_extra["loss"] and len(extra["loss"]) == STEPS
    torch.testing.assert_close(extra["val"], reference_extra["val"], rtol=0, atol=0, equal_nan=True)

    log, reference_log = read_log(out.with_name("unet.log.csv")), read_log(straight.with_name("unet.log.csv"))
    assert log["kind"] == reference_log["kind"] and log["step"] == reference_log["step"]  # each row once
    assert [k for k, s in zip(log["kind"], log["step"]) if k == "val"] == ["val", "val"]
    train, reference_train = (read_log(p.with_name("unet.log.csv"), "train") for p in (out, straight))
    assert train["loss"] == reference_train["loss"] == extra["loss"]
    assert read_log(out.with_name("unet.log.csv"), "val")["miou"][-1] == extra["val"]["miou"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unet.log.csv", "unet.pt"]  # no temporary file


def test_a_second_ctrl_c_stops_at_once_and_the_periodic_save_remains(tmp_path, capsys, ctrl_c):
    out = tmp_path / "unet.pt"
    ctrl_c(step=3, times=2)  # the second SIGINT interrupts step 3 itself: nothing of it is saved
    assert main([*RUN, "--save-every", "2", "--out", str(out)]) == 130
    assert "python -m segedu train: interrupted" in capsys.readouterr().err
    assert read_checkpoint(out)["resume"]["step"] == 2  # the save of step 2 is intact


def test_resume_refuses_another_run(tmp_path, capsys, ctrl_c, straight):
    """A run resumed with other settings would not be the run it continues; refused before training."""
    saved = tmp_path / "saved.pt"
    ctrl_c(step=4)
    assert main([*RUN, "--out", str(saved)]) == 130
    ctrl_c(step=0)
    capsys.readouterr()
    before = saved.read_bytes()
    target = tmp_path / "other.pt"

    def refused(args, message, resume=saved):
        assert main([*args, "--out", str(target), "--resume", str(resume)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("python -m segedu train: error:") and message in err, err
        assert not target.exists() and saved.read_bytes() == before

    refused([*RUN, "--lr", "0.5"], "other settings (lr")
    refused([*RUN[:2], "fcn8s", *RUN[3:]], "holds unet")
    refused([*RUN, "--width", "8"], "holds unet")
    steps = RUN.index("--steps") + 1
    refused([*RUN[:steps], str(STEPS + 2), *RUN[steps + 1:]], "run_steps 6 -> 8")  # cosine: laid out over the run
    refused(RUN, "nothing is left to train", resume=straight)  # finished: at step 6 of 6
    refused(RUN, "not a segedu checkpoint", resume=saved.with_name("saved.log.csv"))


def test_a_finished_constant_lr_run_can_be_extended(tmp_path):
    out = tmp_path / "unet.pt"
    constant = [*RUN, "--schedule", "constant"]
    assert main([*constant, "--out", str(out)]) == 0
    steps = constant.index("--steps") + 1
    assert main([*constant[:steps], str(STEPS + 2), *constant[steps + 1:], "--out", str(out),
                 "--resume", str(out)]) == 0
    _, extra = zoo.load_model(out)
    assert extra["steps"] == STEPS + 2 and len(extra["loss"]) == STEPS + 2
    assert read_log(out.with_name("unet.log.csv"), "train")["step"] == list(range(1, STEPS + 3))


def test_a_voc_run_resumed_in_its_second_epoch_shuffles_that_epoch_as_the_straight_run(tmp_path):
    # shapes-voc-mini: 24 training images, batch 8 -> 3 steps per epoch; stop after step 4 (epoch 2 begun)
    from segedu.data.voc import make_shapes_voc_mini

    root = make_shapes_voc_mini(tmp_path / "voc")
    run = ["train", "--model", "unet", "--data", f"voc:{root}", "--image-size", "32", "--batch-size", "8",
           "--width", "4", "--val-images", "0", "--schedule", "constant", "--device", "cpu", "--quiet"]
    straight, out = tmp_path / "straight.pt", tmp_path / "resumed.pt"
    assert main([*run, "--steps", "6", "--out", str(straight)]) == 0
    assert main([*run, "--steps", "4", "--out", str(out)]) == 0
    assert main([*run, "--steps", "6", "--out", str(out), "--resume", str(out)]) == 0
    resumed, extra = zoo.load_model(out)
    reference, reference_extra = zoo.load_model(straight)
    assert extra["loss"] == reference_extra["loss"]
    assert distributed.state_digest(resumed) == distributed.state_digest(reference)
