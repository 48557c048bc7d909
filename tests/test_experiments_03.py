"""Lesson 03's experiment (segedu.experiments.lesson03), cheaply: the probe networks, the flat-input pattern each
starts with, and checkerboard_probe's keys, types and repeatability with a few training steps."""

import dataclasses
import math

import pytest
import torch

from segedu import runtime
from segedu.experiments import lesson03 as E
from segedu.experiments.common import Comparison


def tiny(name: str) -> runtime.Profile:
    return dataclasses.replace(runtime.profile("quick"), name=name, image_size=16, train_images=16, val_images=2)


@pytest.mark.parametrize("method", E.METHODS)
def test_probe_networks_upsample_twice_and_repeat_for_a_seed(method):
    net = E.probe_network(method, seed=3)
    x = torch.rand(2, 3, 5, 7)
    assert net(x).shape == (2, 3, 10, 14)
    again = E.probe_network(method, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))


def test_only_the_transposed_convolution_starts_with_a_pattern():
    assert E.flat_greys().shape == (9, 3, 16, 16)
    assert E.flat_pattern(E.probe_network("transposed")) > 1e-3
    assert E.flat_pattern(E.probe_network("resize_conv")) < 1e-6    # by construction
    assert E.flat_pattern(E.probe_network("pixel_shuffle")) < 1e-6  # ICNR
    with pytest.raises(ValueError, match="method"):
        E.probe_network("bilinear")


def test_checkerboard_probe_keys_types_and_repeatability(monkeypatch):
    monkeypatch.setitem(E.PROBE, "steps", 2)  # the keys and the plumbing, not the result
    result = E.checkerboard_probe(seed=0, profile=tiny("tiny03-a"))
    names = {f"{m}_{what}" for m in E.METHODS for what in ("flat_init", "flat", "errors", "psnr", "flat_db", "errors_db")}
    assert set(result) == names
    assert all(isinstance(v, float) and math.isfinite(v) for v in result.values())
    assert result["transposed_flat_db"] == pytest.approx(-20 * math.log10(result["transposed_flat"]))
    assert E.checkerboard_probe(seed=0, profile=tiny("tiny03-b")) == result
    models = E.trained_probes(seed=0, profile=tiny("tiny03-a"))
    assert set(models) == set(E.METHODS) and models is E.trained_probes(seed=0, profile=tiny("tiny03-a"))
    assert not any(m.training for m in models.values())


def test_the_comparisons_name_keys_the_probe_returns():
    for comparison in E.COMPARISONS.values():
        assert isinstance(comparison, Comparison) and comparison.function is E.checkerboard_probe
        assert comparison.better.endswith("_db") and comparison.worse.startswith("transposed_")
    assert E.COMPARISONS["shuffle_vs_transposed_flat"].margin == pytest.approx(20 * math.log10(1.2))
    assert E.COMPARISONS["resize_vs_transposed_errors"].margin == pytest.approx(20 * math.log10(1.2))
    assert len(E.LESSON_SEEDS) >= 3
