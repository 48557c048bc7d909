"""The opt-in result cache of ``fit`` (``SEGEDU_CACHE``): a hit must be indistinguishable from training."""

import linecache
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segedu import cache, runtime
from segedu.data.shapes import ShapesDataset
from segedu.files import sha256_file
from segedu.train import fit


def small_model(seed=0):
    runtime.seed_everything(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Dropout2d(0.2), nn.Conv2d(8, 6, 1))


def run(model=None, **kw):
    data = ShapesDataset(16, size=24, seed=0)
    args = dict(steps=3, batch_size=4, lr=1e-2, progress=False, device="cpu")
    args.update(kw)
    return fit(model or small_model(), data, F.cross_entropy, **args)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
    return tmp_path


def test_off_without_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(cache.ENV_VAR, raising=False)
    assert cache.cache_dir() is None
    assert not run().cached and not run().cached


def test_a_hit_restores_weights_history_and_random_state(cache_dir):
    trained = small_model()
    first = run(trained)
    after_first = (torch.rand(3), np.random.rand(), random.random())
    assert not first.cached and len(list(cache_dir.glob("fit-*.pt"))) == 1

    reused = small_model()
    second = run(reused)
    after_second = (torch.rand(3), np.random.rand(), random.random())
    assert second.cached
    assert second.loss == first.loss and second.steps == first.steps
    for (name, a), b in zip(trained.state_dict().items(), reused.state_dict().values()):
        assert torch.equal(a, b), name
    assert not reused.training  # fit leaves the model in eval mode, cached or not
    assert torch.equal(after_first[0], after_second[0])
    assert after_first[1:] == after_second[1:]


@pytest.mark.parametrize(
    "change",
    [
        dict(steps=4),
        dict(lr=2e-2),
        dict(seed=1),
        dict(batch_size=2),
        dict(model_seed=1),  # other initial weights
    ],
)
def test_anything_that_changes_the_result_changes_the_key(cache_dir, change):
    run()
    model = small_model(change.pop("model_seed", 0))
    assert not run(model, **change).cached


def test_other_data_or_loss_is_a_miss(cache_dir):
    run()
    model = small_model()
    assert not fit(model, ShapesDataset(16, size=24, seed=1), F.cross_entropy, steps=3, batch_size=4, lr=1e-2,
                   progress=False, device="cpu").cached
    smoothed = lambda logits, masks: F.cross_entropy(logits, masks, label_smoothing=0.1)  # noqa: E731
    assert not fit(small_model(), ShapesDataset(16, size=24, seed=0), smoothed, steps=3, batch_size=4, lr=1e-2,
                   progress=False, device="cpu").cached


def test_entry_names_a_file_only_when_the_cache_is_on(tmp_path, monkeypatch):
    monkeypatch.delenv(cache.ENV_VAR, raising=False)
    assert cache.entry("fit", 1, 2) is None
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
    path = cache.entry("fit", 1, 2)
    assert path.parent == tmp_path and path.name == f"fit-{cache.fingerprint('fit', 1, 2)[:32]}.pt"
    assert cache.entry("fit", 1, 3) != path
    assert cache.load(path, nn.Linear(1, 1), None, None) is None  # nothing stored yet
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    assert cache.entry("fit", 1, 2) is None


def test_a_callback_always_trains(cache_dir):
    run()
    seen = []
    history = run(callback=lambda step, model, h: seen.append(step))
    assert not history.cached and seen == [1, 2, 3]


def test_a_distributed_run_always_trains(cache_dir, monkeypatch):
    # Every rank must run every step (they meet in the all-reduces), so fit never answers from the cache there.
    run()
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    assert not run().cached and len(list(cache_dir.glob("fit-*.pt"))) == 1


def notebook_function(source: str, scope: dict, cell: str = "<cell-1>"):
    """Define a function the way IPython runs a cell: compiled from a string kept in linecache."""
    linecache.cache[cell] = (len(source), None, source.splitlines(True), cell)
    exec(compile(source, cell, "exec"), scope)
    return scope["loss"]


def test_notebook_functions_are_keyed_by_source_and_the_globals_they_read():
    scope = {"F": F, "WEIGHT": 1.0}
    notebook_function("def loss(x, y):\n    return WEIGHT * F.cross_entropy(x, y)\n", scope)
    key = cache.fingerprint(scope["loss"])
    assert key is not None and key == cache.fingerprint(scope["loss"])
    scope["WEIGHT"] = 2.0
    assert cache.fingerprint(scope["loss"]) != key
    scope["WEIGHT"] = 1.0
    notebook_function("def loss(x, y):\n    return WEIGHT * F.cross_entropy(x, y, label_smoothing=0.1)\n",
                      scope, "<cell-2>")
    assert cache.fingerprint(scope["loss"]) != key
    # a function whose source is lost (typed at a prompt that kept none) cannot be keyed
    exec("def loss(x, y):\n    return x\n", scope)
    assert cache.fingerprint(scope["loss"]) is None


def test_objects_without_a_stable_description_turn_the_cache_off():
    class Opaque:
        __slots__ = ("x",)

    assert cache.fingerprint(Opaque()) is None
    assert cache.fingerprint(nn.Linear(2, 2)) is not None


def test_tensors_of_every_rank_and_dtype_are_keyed_by_value():
    for a, b in [(torch.tensor(3), torch.tensor(4)), (torch.tensor(True), torch.tensor(False)),
                 (torch.zeros(2, 3), torch.ones(2, 3)), (torch.zeros(0), torch.zeros(0, 2))]:
        assert cache.fingerprint(a) is not None
        assert cache.fingerprint(a) == cache.fingerprint(a.clone()) != cache.fingerprint(b)


# --------------------------------------------------------------------------- a cache never costs a result


def _entry(cache_dir):
    (path,) = cache_dir.glob("fit-*.pt")
    return path


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_each_entry_has_the_digest_recorded_when_it_was_written(cache_dir):
    run()
    path = _entry(cache_dir)
    digest = path.with_suffix(".sha256")
    assert digest.read_text().strip() == sha256_file(path)
    assert not list(cache_dir.glob("*.tmp")) and not list(cache_dir.glob(".*.tmp"))


@pytest.mark.parametrize("damage", ["foreign", "tampered", "truncated", "garbage", "wrong_model"])
def test_an_unusable_entry_is_a_miss_with_a_warning_and_the_run_trains(cache_dir, damage):
    straight = small_model()
    first = run(straight)
    path = _entry(cache_dir)
    digest = path.with_suffix(".sha256")
    if damage == "foreign":  # a file someone put there: no digest of ours
        digest.unlink()
    elif damage == "tampered":  # another file under the recorded name, with its old digest
        state = torch.load(path, weights_only=True)
        state["model"] = {k: torch.zeros_like(v) for k, v in state["model"].items()}
        torch.save(state, path)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
        digest.write_text(sha256_file(path))
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint")
        digest.write_text(sha256_file(path))
    elif damage == "wrong_model":  # verified bytes, but weights that do not fit the model
        state = torch.load(path, weights_only=True)
        state["model"] = {"other.weight": torch.zeros(1)}
        torch.save(state, path)
        digest.write_text(sha256_file(path))
    model = small_model()
    with pytest.warns(UserWarning, match=r"SEGEDU_CACHE"):
        again = run(model)
    assert not again.cached and again.loss == first.loss  # trained, and trained to the same result
    for (name, a), b in zip(straight.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_folder_that_cannot_be_written_means_training_without_the_cache(cache_dir, monkeypatch):
    monkeypatch.setattr(cache.os, "access", lambda path, mode: False)  # as for a read-only folder (root ignores modes)
    with pytest.warns(UserWarning, match="not writable; training without the cache"):
        history = run()
    assert not history.cached and not list(cache_dir.iterdir())


def test_a_cache_path_that_cannot_be_created_means_training_without_the_cache(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv(cache.ENV_VAR, str(blocker / "cache"))  # a folder under a file cannot exist
    with pytest.warns(UserWarning, match="cannot create the cache folder"):
        history = run()
    assert not history.cached and blocker.read_text() == "x"


def test_a_store_that_fails_after_training_is_a_warning_not_an_error(cache_dir, monkeypatch):
    def full_disk(obj, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache, "atomic_save", full_disk)
    model = small_model()
    with pytest.warns(UserWarning, match="could not store"):
        history = run(model)
    assert not history.cached and len(history.loss) == 3 and not list(cache_dir.iterdir())
