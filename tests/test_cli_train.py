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
               "--val-images", "8", "--device", "cpu", "--digest", str(digests), "--out", str(out), *TINY,
               "--save-every", "10", "--val-every", "15"]  # every rank takes part in saves and validations
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
    from segedu.runlog import read_log

    train_rows = read_log(tmp_path / "fcn.log.csv", "train")  # rank 0's log: its losses, both validations
    assert train_rows["step"] == list(range(1, 31)) and train_rows["loss"] == ranks[0]["loss"]
    assert read_log(tmp_path / "fcn.log.csv", "val")["step"] == [15, 30]


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


# ----------------------------------------------------------------------------------------------------
# bad inputs (issue 18): each is refused up front with one line and exit code 2, and nothing is lost:
# every file under tmp_path - a file already at --out included - keeps its bytes, and no file appears
# (no <out>.tmp, no log, no folder).
# ----------------------------------------------------------------------------------------------------

SHAPES = ["--model", "unet", "--data", "shapes", "--steps", "2", "--device", "cpu", "--quiet"]


def _files(root: Path) -> dict:
    """Every file and folder under ``root`` with its bytes (``None`` for a folder)."""
    return {p.relative_to(root): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


def _refused(tmp_path, capsys, args, message, out=None) -> str:
    out = tmp_path / "run" / "model.pt" if out is None else out
    before = _files(tmp_path)
    rc = main(["train", *args, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("python -m segedu train: error:") and len(err.strip().splitlines()) == 1, err
    assert re.search(message, err), err
    assert _files(tmp_path) == before  # nothing written, nothing replaced, no temporary file left
    return err


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "steps must be an int >= 1, got 0"),
    (["--batch-size", "0"], "batch_size must be an int >= 1, got 0"),
    (["--image-size", "0"], "image_size must be an int >= 1, got 0"),
    (["--lr", "-1"], r"lr must be a finite number > 0, got -1\.0"),
    (["--lr", "nan"], "lr must be a finite number > 0, got nan"),
    (["--lr", "inf"], "lr must be a finite number > 0, got inf"),
    (["--workers", "-1"], "workers must be an int >= 0, got -1"),
    (["--device", "bogus"], "device must name a torch device such as 'cpu' or 'cuda', got 'bogus'"),
    (["--device", "meta"], "device must be cpu, cuda or mps"),
    (["--train-images", "0"], "train_images must be an int >= 1, got 0"),
    (["--save-every", "0"], "save_every must be an int >= 1, got 0"),
    (["--val-every", "-3"], "val_every must be an int >= 1, got -3"),
    # BatchNorm on one image: torch failed mid-run ("Expected more than 1 value per channel")
    (["--batch-size", "1"], "batch_size must be >= 2 for unet, which uses BatchNorm.*--batch-size 2"),
    # 7 px scenes hold almost no objects: the run reported val mIoU 1.000 on empty masks
    (["--image-size", "7"], "image_size must be >= 32 for unet on shapes data.*lose most of their objects.*got 7"),
    (["--image-size", "24"], "image_size must be >= 32"),
    (["--resume", "/no/such/run.pt"], "no such checkpoint: /no/such/run.pt"),
    (["--val-every", "2", "--val-images", "0"], "val_every .* needs validation data"),
])
def test_bad_arguments_are_refused_before_anything_is_written(tmp_path, capsys, args, message):
    out = tmp_path / "model.pt"
    out.write_bytes(b"an earlier file the run must not touch")
    _refused(tmp_path, capsys, [*SHAPES, *args], message, out=tmp_path / "run" / "model.pt")
    _refused(tmp_path, capsys, [*SHAPES, *args], message, out=out)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_missing_gpu_is_refused(tmp_path, capsys):
    _refused(tmp_path, capsys, [*SHAPES[:-3], "--device", "cuda", "--quiet"], "CUDA is not available")


def test_the_image_size_rule_follows_the_model_stride(tmp_path, capsys):
    # FCN-8s and FPN see the image at stride 32: a 16 px VOC crop is one cell of their coarsest map, padded
    for model in ("fcn8s", "fpn"):
        _refused(tmp_path, capsys, ["--model", model, "--data", f"voc:{VOC_MINI}", "--steps", "1", "--quiet",
                                    "--image-size", "16"], f"image_size must be >= 32 for {model}.*total stride 32")
    # PSPNet (stride 8) takes a 16 px crop of real data; the synthetic scenes still need 32 px
    from segedu import runs
    assert runs.SHAPES_MIN_SIZE == 32
    with torch.device("meta"):
        assert runs.model_stride(zoo.build_model("pspnet", 2)) == 8
        assert runs.model_stride(zoo.build_model("unet", 2, depth=3)) == 8
        assert runs.has_batchnorm(zoo.build_model("deeplabv3", 2))


def test_train_images_is_for_shapes_only(tmp_path, capsys):
    _refused(tmp_path, capsys, ["--model", "unet", "--data", f"voc:{VOC_MINI}", "--steps", "1", "--quiet",
                                "--train-images", "5"], "applies to --data shapes only")


def test_out_never_replaces_a_file_that_is_not_a_checkpoint(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("my thesis, chapter 3")
    for extra in ([], ["--force"]):  # not even with --force
        _refused(tmp_path, capsys, [*SHAPES, *extra], r"notes\.txt exists and is not a segedu checkpoint", out=notes)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    _refused(tmp_path, capsys, [*SHAPES, "--force"], "not a segedu checkpoint", out=empty)


def test_out_replaces_a_checkpoint_only_with_force(tmp_path, capsys):
    from segedu.checkpoint import save_checkpoint

    out = tmp_path / "model.pt"
    save_checkpoint(out, torch.nn.Conv2d(1, 1, 1), note="an earlier run")
    _refused(tmp_path, capsys, SHAPES, r"already holds a segedu checkpoint: pass --force.*--resume", out=out)
    assert main(["train", *SHAPES, *TINY, "--val-images", "2", "--out", str(out), "--force"]) == 0
    model, extra = zoo.load_model(out)
    assert "note" not in extra and extra["steps"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.log.csv", "model.pt"]  # no temporary file


def test_out_must_be_a_writable_file_path(tmp_path, capsys):
    folder = tmp_path / "runs"
    folder.mkdir()
    _refused(tmp_path, capsys, SHAPES, "is a folder: give a file name such as .*model.pt", out=folder)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    _refused(tmp_path, capsys, SHAPES, "cannot create folder .*blocker is a file", out=blocker / "sub" / "m.pt")
    if os.geteuid() != 0:  # root writes into a read-only folder: there, try a read-only file system
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        try:
            _refused(tmp_path, capsys, SHAPES, "cannot write in .*locked", out=locked / "m.pt")
        finally:
            locked.chmod(0o755)
    elif Path("/proc").is_dir():
        _refused(tmp_path, capsys, SHAPES, "cannot write in /proc", out=Path("/proc/segedu-test.pt"))


def test_a_digest_folder_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "digests").write_text("not a folder")
    _refused(tmp_path, capsys, [*SHAPES, "--digest", str(tmp_path / "digests")], "--digest .*digests is a file")


def test_the_log_beside_out_is_protected_too(tmp_path, capsys):
    out = tmp_path / "model.pt"
    log = tmp_path / "model.log.csv"
    log.write_text("date,weight\n2024-01-01,70\n")  # someone's CSV, not a training log
    _refused(tmp_path, capsys, [*SHAPES, "--force"], r"model\.log\.csv, where this run would write its log, exists and "
                                                     "is not a segedu training log", out=out)
    log.write_text("kind,step,seconds,loss,lr,miou,pixel_accuracy,boundary_f1,images\ntrain,1,0.1,1.0,0.1,,,,\n")
    _refused(tmp_path, capsys, SHAPES, r"log .*model\.log\.csv already exists: pass --force", out=out)


def _voc_copy(tmp_path) -> tuple[Path, "VOCSegmentation"]:
    import shutil

    from segedu.data.voc import VOCSegmentation

    root = tmp_path / "voc"
    shutil.copytree(VOC_MINI, root)
    return root, VOCSegmentation(root, "train")


def _save_png(path, array):
    from PIL import Image

    from segedu.data.voc import VOC_PALETTE

    png = Image.fromarray(array.astype("uint8"))
    png.putpalette([v for rgb in VOC_PALETTE for v in rgb])
    png.save(path)


def test_voc_data_is_scanned_before_training(tmp_path, capsys):
    from segedu.data.voc import VOCSegmentation, read_mask

    root, data = _voc_copy(tmp_path)
    out = tmp_path / "model.pt"
    out.write_bytes(b"an earlier file")  # refused anyway; the point is that it keeps its bytes
    args = ["--model", "unet", "--data", f"voc:{root}", "--steps", "1", "--quiet", *TINY[:4]]
    good = out.with_name("fresh.pt")

    mask = read_mask(data.mask_path(3)).numpy()
    mask[0, 0] = 21  # the folder has 6 classes: a raw IndexError (CUDA: device-side assert) mid-run
    _save_png(data.mask_path(3), mask)
    _refused(tmp_path, capsys, args, rf"{data.mask_path(3).name} holds labels \[21\] but the data has 6 classes",
             out=good)

    root, data = _voc_copy(tmp_path / "b")
    png = data.mask_path(5)
    png.write_bytes(png.read_bytes()[:100])  # a corrupt PNG
    _refused(tmp_path, capsys, [*args[:3], f"voc:{root}", *args[4:]], rf"mask .*{png.name} cannot be read", out=good)

    root, data = _voc_copy(tmp_path / "c")
    for i in range(len(data)):  # binary masks saved black / white: every object would be "void"
        _save_png(data.mask_path(i), (read_mask(data.mask_path(i)).numpy() > 0) * 255)
    _refused(tmp_path, capsys, [*args[:3], f"voc:{root}", *args[4:]], "only 0 and 255.*foreground as 1", out=good)

    root, data = _voc_copy(tmp_path / "d")
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("")  # an empty split
    _refused(tmp_path, capsys, [*args[:3], f"voc:{root}", *args[4:]], r"split 'train' .* has no images", out=good)

    root, data = _voc_copy(tmp_path / "e")
    val = VOCSegmentation(root, "val")
    _save_png(val.mask_path(0), read_mask(val.mask_path(0)).numpy()[:-1])  # the val split is scanned too
    _refused(tmp_path, capsys, [*args[:3], f"voc:{root}", *args[4:]], rf"{val.mask_path(0).name} has size", out=good)
    assert out.read_bytes() == b"an earlier file"
