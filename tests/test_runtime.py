import dataclasses
import io
import random

import numpy as np
import pytest
import torch

from segedu import runtime


def test_device_is_cpu_without_accelerators():
    dev = runtime.device()
    assert isinstance(dev, torch.device)
    if not torch.cuda.is_available():
        assert dev.type in {"cpu", "mps"}
    else:
        assert dev.type == "cuda"


def test_seed_everything_repeats_random_numbers():
    runtime.seed_everything(123)
    a = torch.rand(5)
    runtime.seed_everything(123)
    assert torch.equal(a, torch.rand(5))
    with pytest.raises(TypeError, match="seed"):
        runtime.seed_everything("1")
    for wrong in (True, 2.5):
        with pytest.raises(TypeError, match="seed must be an int"):
            runtime.seed_everything(wrong)


def test_rng_state_restores_python_numpy_and_torch():
    runtime.seed_everything(5)
    state = runtime.rng_state()
    first = (torch.rand(3), np.random.rand(2).tolist(), random.random())
    runtime.seed_everything(6)  # somewhere else entirely
    runtime.set_rng_state(state)
    second = (torch.rand(3), np.random.rand(2).tolist(), random.random())
    assert torch.equal(first[0], second[0]) and first[1:] == second[1:]
    # only tensors and plain values: a weights_only load reads it back
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    runtime.set_rng_state(torch.load(buffer, weights_only=True))
    assert torch.equal(torch.rand(3), first[0])


def test_profile_default_and_override(monkeypatch):
    monkeypatch.delenv(runtime.ENV_VAR, raising=False)
    expected = "full" if torch.cuda.is_available() else "quick"
    assert runtime.profile().name == expected
    monkeypatch.setenv(runtime.ENV_VAR, "full")
    assert runtime.profile().name == "full"
    monkeypatch.setenv(runtime.ENV_VAR, "QUICK")
    assert runtime.profile().name == "quick"
    assert runtime.profile("full").name == "full"  # an explicit name wins over the variable


def test_unknown_profile_lists_valid_names(monkeypatch):
    monkeypatch.setenv(runtime.ENV_VAR, "huge")
    with pytest.raises(ValueError, match="full, quick"):
        runtime.profile()
    with pytest.raises(TypeError, match="profile name must be a str"):
        runtime.profile(3)


def test_profile_is_frozen_and_full_is_bigger():
    quick, full = runtime.profile("quick"), runtime.profile("full")
    with pytest.raises(dataclasses.FrozenInstanceError):
        quick.image_size = 1
    for field in dataclasses.fields(quick):
        if field.name in {"name", "lr"}:
            continue
        assert getattr(full, field.name) >= getattr(quick, field.name), field.name
    assert quick.replace(train_steps=7).train_steps == 7
