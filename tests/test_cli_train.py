"""`python -m segedu train` and segedu.distributed: two torchrun processes on CPU (gloo) end with bit-identical
weights after training on different batches, and their loss goes down; one process on a VOC-layout folder;
clear errors for a bad model name or data path; the per-rank data split and the weight digest."""

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from segedu import distributed, zoo
from segedu.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
VOC_MINI = ROOT / "data" / "shapes-voc-mini"
TINY = ["--image-size", "32", "--batch-size", "8", "--width", "4", "--quiet"]


def test_torchrun_two_cpu_processes_train_one_model(tmp_path):
    out, digests = tmp_path / "fcn.pt", tmp_path / "digests"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SEGEDU_PROFILE": "quick"}  # conftest has removed SEGEDU_CACHE
    # `python -m torch.distributed.run` is the `torchrun` command; --standalone picks a free local port.
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "segedu", "train", "--model", "fcn8s", "--data", "shapes", "--steps", "30", "--lr", "3e-3",
               "--val-images", "8", "--device", "cpu", "--digest", str(digests), "--out", str(out), *TINY]
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "on 2 process(es)" in run.stdout and run.stdout.count("wrote") == 1  # rank 0 alone reports

    ranks = [json.loads((digests / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world_size"] == 2 for r in ranks)
    # Different data on each rank (seed + rank) ...
    assert ranks[0]["loss"] != ranks[1]["loss"]
    # ... yet one model: averaged gradients keep the copies bit-identical (BatchNorm statistics averaged at the end).
    assert ranks[0]["digest"] == ranks[1]["digest"]
    for r in ranks:
        first, last = sum(r["loss"][:5]) / 5, sum(r["loss"][-5:]) / 5
        print(f"rank {r['rank']}: loss {first:.3f} -> {last:.3f}")
        assert last < 0.8 * first, f"rank {r['rank']}: the loss did not go down ({first:.3f} -> {last:.3f})"

    model, extra = zoo.load_model(out)  # the checkpoint rank 0 wrote is the model both ranks hold
    assert distributed.state_digest(model) == ranks[0]["digest"]
    assert extra["world_size"] == 2 and extra["steps"] == 30 and extra["val"]["images"] == 8
    assert extra["spec"]["name"] == "fcn8s" and len(extra["classes"]) == model(torch.rand(1, 3, 32, 32)).shape[1]
    assert extra["schedule"] == "cosine"  # the default: the learning rate decays to 0 over the run


def test_one_process_on_a_voc_folder(tmp_path, capsys):
    out = tmp_path / "unet.pt"
    rc = main(["train", "--model", "unet", "--data", f"voc:{VOC_MINI}", "--steps", "3", "--val-images", "4",
               "--schedule", "constant",
               "--out", str(out), "--device", "cpu", *TINY])
    assert rc == 0
    assert "unet: 3 steps on 1 process(es)" in capsys.readouterr().out
    model, extra = zoo.load_model(out)
    classes = (VOC_MINI / "classes.txt").read_text().split()
    assert extra["classes"] == classes and extra["data"] == f"voc:{VOC_MINI}"
    assert extra["val"]["images"] == 4 and len(extra["loss"]) == 3 and extra["schedule"] == "constant"
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, len(classes), 32, 32)


@pytest.mark.parametrize("args, message", [
    (["--model", "segformer", "--data", "shapes"], "fcn8s, unet, deeplabv3, deeplabv3plus, pspnet, fpn; got 'segformer'"),
    (["--model", "unet", "--data", "voc:/no/such/folder"], "VOC folder not found: /no/such/folder"),
    (["--model", "unet", "--data", "imagenet"], "'shapes' or 'voc:PATH'.*got 'imagenet'"),
    (["--model", "unet", "--data", "shapes", "--width", "0"], "width must be an int >= 1, got 0"),
    (["--model", "unet", "--data", "shapes", "--batch-size", "0"], "batch_size must be an int >= 1, got 0"),
    (["--model", "unet", "--data", "shapes", "--lr", "-1"], "lr must be a finite number.*got -1.0"),
    (["--model", "unet", "--data", "shapes", "--val-images", "-1"], "val_images must be an int >= 0, got -1"),
])
def test_bad_arguments_fail_with_one_clear_line(tmp_path, capsys, args, message):
    out = tmp_path / "never.pt"
    assert main(["train", *args, "--steps", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m segedu train: error:")
    assert re.search(message, err), err
    assert not out.exists()


def test_epoch_loader_splits_each_epoch_between_ranks():
    data = TensorDataset(torch.arange(12).float()[:, None], torch.zeros(12, dtype=torch.int64))
    loaders = [distributed.EpochLoader(data, 3, distributed.Context(rank=r, world_size=2)) for r in (0, 1)]
    epochs = []
    for _ in range(2):
        shares = [torch.cat([x[:, 0] for x, _ in loader]).long().tolist() for loader in loaders]
        assert len(shares[0]) == len(shares[1]) == 6  # equal shares: every rank takes the same number of steps
        assert sorted(shares[0] + shares[1]) == list(range(12))  # disjoint, and together the whole set
        epochs.append(shares[0])
    assert epochs[0] != epochs[1]  # set_epoch: a new order every pass
    assert len(loaders[0]) == 2


def test_state_digest_sees_one_changed_bit():
    model = zoo.build_model("fcn8s", 3, width=4)
    same = copy.deepcopy(model)
    assert distributed.state_digest(model) == distributed.state_digest(same)
    with torch.no_grad():
        w = same.score_pool5.weight
        w.view(-1)[0] = torch.nextafter(w.view(-1)[0], torch.tensor(1.0))  # one ulp
    assert distributed.state_digest(model) != distributed.state_digest(same)


def test_setup_without_torchrun_is_one_process(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = distributed.setup("cpu")
    assert (ctx.rank, ctx.world_size, ctx.backend, ctx.is_main, ctx.distributed) == (0, 1, None, True, False)
    model = zoo.build_model("unet", 2, width=4)
    assert distributed.wrap(model, ctx) is model and distributed.unwrap(model) is model
    distributed.average_buffers(model, ctx)  # nothing to average with
    distributed.teardown(ctx)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK must be in"):
        distributed.setup("cpu")
    monkeypatch.setenv("RANK", "one")
    with pytest.raises(ValueError, match="environment variable RANK must be an int >= 0, got 'one'"):
        distributed.setup("cpu")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "0")
    with pytest.raises(ValueError, match="environment variable WORLD_SIZE must be an int >= 1, got 0"):
        distributed.setup("cpu")


def test_unknown_schedule_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="schedule must be one of"):
        distributed.train("unet", "shapes", 1, tmp_path / "x.pt", schedule="step")
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("kw, error, message", [
    (dict(steps=True), TypeError, "steps must be an int >= 1, got bool True"),
    (dict(steps=2.5), TypeError, "steps must be an int >= 1, got float 2.5"),
    (dict(steps=-1), ValueError, "steps must be an int >= 1, got -1"),
    (dict(width=2.5), TypeError, "width must be an int >= 1, got float 2.5"),
    (dict(image_size=0), ValueError, "image_size must be an int >= 1, got 0"),
    (dict(seed=1.5), TypeError, "seed must be an int, got float 1.5"),
    (dict(workers=-1), ValueError, "workers must be an int >= 0, got -1"),
    (dict(schedule=1), TypeError, "schedule must be one of"),
])
def test_train_checks_every_argument_before_training(tmp_path, kw, error, message):
    with pytest.raises(error, match=message):
        distributed.train("unet", "shapes", out=tmp_path / "x.pt", **{"steps": 1, **kw})
    assert not (tmp_path / "x.pt").exists()
