"""segedu.checkpoint: checkpoints that load with weights_only=True, hold only plain metadata, are written
atomically (never through a planted link), and are refused when they are not segedu checkpoints."""

import dataclasses
import os

import pytest
import torch
from torch import nn

from segedu import files
from segedu.checkpoint import is_checkpoint, load_checkpoint, read_checkpoint, save_checkpoint
from segedu.train import fit

CE = nn.CrossEntropyLoss(ignore_index=255)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 1))


def batches():
    images = torch.rand(8, 3, 16, 16)
    return [(images[:4], images[:4].argmax(1)), (images[4:], images[4:].argmax(1))]


def test_checkpoint_round_trip_loads_with_weights_only(tmp_path):
    model = tiny_model(1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = fit(model, batches(), CE, 2, optimizer=optimizer, batch_size=4, device="cpu", progress=False)
    path = save_checkpoint(tmp_path / "sub" / "model.pt", model, optimizer, step=2, classes=["bg", "a", "b"],
                           history=dataclasses.asdict(history))
    raw = torch.load(path, weights_only=True)  # no pickled objects inside
    assert set(raw) == {"format", "model", "optimizer", "extra"}
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # the temporary file was renamed away

    fresh = tiny_model(2)
    fresh_optimizer = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    extra = load_checkpoint(path, fresh, fresh_optimizer)
    assert extra["step"] == 2 and extra["classes"] == ["bg", "a", "b"] and extra["history"]["loss"] == history.loss
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value)
    assert fresh_optimizer.state_dict()["state"][0]["step"] == 2

    with pytest.raises(TypeError, match=r"extra\['history'\] is a History"):
        save_checkpoint(tmp_path / "bad.pt", model, history=history)
    save_checkpoint(tmp_path / "no_opt.pt", model)
    with pytest.raises(ValueError, match="holds no optimizer state"):
        load_checkpoint(tmp_path / "no_opt.pt", fresh, fresh_optimizer)
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a segedu checkpoint"):
        load_checkpoint(tmp_path / "other.pt", fresh)


def test_read_checkpoint_returns_the_whole_file(tmp_path):
    model = tiny_model()
    path = save_checkpoint(tmp_path / "m.pt", model, step=7)
    state = read_checkpoint(path)
    assert state["format"] == "segedu-checkpoint-v1" and state["optimizer"] is None and state["extra"] == {"step": 7}
    assert state["model"].keys() == model.state_dict().keys()
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="not a segedu checkpoint"):
        read_checkpoint(tmp_path / "list.pt")


def test_a_model_must_be_a_module(tmp_path):
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got dict"):
        save_checkpoint(tmp_path / "m.pt", {"weight": torch.zeros(1)})
    assert not (tmp_path / "m.pt").exists()
    path = save_checkpoint(tmp_path / "m.pt", tiny_model())
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        load_checkpoint(path, "net")



def test_a_link_planted_at_the_old_temporary_name_is_never_written_through(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("someone else's file")
    out = tmp_path / "model.pt"
    os.symlink(victim, tmp_path / "model.pt.tmp")  # the name the old save wrote to, in a shared folder
    save_checkpoint(out, tiny_model(), step=1)
    assert victim.read_text() == "someone else's file"
    assert (tmp_path / "model.pt.tmp").is_symlink() and read_checkpoint(out)["extra"] == {"step": 1}
    assert not out.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model.pt.tmp", "victim.txt"]


def test_a_failed_save_leaves_the_old_checkpoint_and_no_temporary_file(tmp_path, monkeypatch):
    out = save_checkpoint(tmp_path / "model.pt", tiny_model(1), step=1)
    before = out.read_bytes()

    def full_disk(obj, handle):
        handle.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(out, tiny_model(2), step=2)
    assert out.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_resume_state_and_is_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "r.pt", tiny_model(), resume_state={"step": 3, "rng": torch.zeros(2)})
    assert read_checkpoint(path)["resume"]["step"] == 3
    assert read_checkpoint(save_checkpoint(tmp_path / "p.pt", tiny_model()))["resume"] is None
    with pytest.raises(TypeError, match=r"resume_state\['f'\] is a function"):
        save_checkpoint(tmp_path / "bad.pt", tiny_model(), resume_state={"f": lambda: 0})
    (tmp_path / "text.txt").write_text("hello")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    assert is_checkpoint(path) and not is_checkpoint(tmp_path / "text.txt")
    assert not is_checkpoint(tmp_path / "other.pt") and not is_checkpoint(tmp_path / "missing.pt")
    assert not is_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="not a segedu checkpoint"):
        read_checkpoint(tmp_path / "text.txt")
