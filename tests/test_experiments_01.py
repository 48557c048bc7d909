"""Lesson 01's experiments (segedu.experiments.lesson01), on a tiny profile: the keys and types they return, the
same numbers for the same seed, the trained models kept, and boundary_errors on models whose answer is known."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from segedu import runtime
from segedu.experiments import lesson01 as E
from segedu.experiments.common import Comparison


def tiny(name: str = "tiny01") -> runtime.Profile:
    """A profile small enough for a unit test; a new ``name`` is a new key for the kept models."""
    return dataclasses.replace(runtime.profile("quick"), name=name, image_size=16, train_images=24, val_images=4,
                               ae_steps=2, ae_bottleneck=2, batch_size=4, width=4)


def test_silhouettes_are_soft_single_shapes():
    sil = E.silhouettes(5, 32, seed=3)
    assert sil.shape == (5, 1, 8, 8) and sil.dtype == torch.float32
    assert float(sil.min()) >= 0 and float(sil.max()) <= 1
    assert torch.equal(sil, E.silhouettes(5, 32, seed=3))          # a pure function of the seed
    assert (sil.flatten(1).amax(1) > 0).all()                       # every scene holds a shape
    with pytest.raises(ValueError, match="image_size"):
        E.silhouettes(2, 2, seed=0)
    with pytest.raises(TypeError, match="n"):
        E.silhouettes(2.5, 16, seed=0)


def test_silhouette_sets_are_rendered_once():
    p = tiny()
    train, val = E.silhouette_sets(p)
    assert train.shape == (24, 1, 4, 4) and val.shape == (4, 1, 4, 4)
    assert E.silhouette_sets(p)[0] is train
    with pytest.raises(TypeError, match="profile"):
        E.silhouette_sets("quick")


def test_nonlinear_vs_pca_returns_errors_and_db_and_repeats_for_a_seed():
    result = E.nonlinear_vs_pca(seed=0, profile=tiny("tiny01-a"))
    assert set(result) == {"pca_mse", "autoencoder_mse", "pca_db", "autoencoder_db"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in result.values())
    assert result["pca_db"] == pytest.approx(10 * math.log10(1 / result["pca_mse"]))
    assert result["autoencoder_db"] == pytest.approx(10 * math.log10(1 / result["autoencoder_mse"]))
    # another profile key with the same sizes trains again from scratch: the same numbers for the same seed
    assert E.nonlinear_vs_pca(seed=0, profile=tiny("tiny01-b")) == result
    assert E.nonlinear_vs_pca(seed=1, profile=tiny("tiny01-b")) != result
    other_k = E.nonlinear_vs_pca(seed=0, profile=tiny("tiny01-a"), k=1)
    assert other_k["pca_mse"] >= result["pca_mse"]                 # fewer components never fit better


def test_trained_models_are_kept_and_in_eval_mode():
    p = tiny()
    model = E.nonlinear_autoencoder(2, seed=0, profile=p)
    assert model is E.nonlinear_autoencoder(2, seed=0, profile=p)
    assert model is not E.nonlinear_autoencoder(2, seed=1, profile=p)
    assert not model.training and model.bottleneck == 2 and model.hidden == E.HIDDEN
    denoiser = E.denoising_autoencoder(seed=0, profile=p)
    assert denoiser is E.denoising_autoencoder(seed=0, profile=p) and not denoiser.training
    assert denoiser.widths == E.conv_widths(p) == (4,)
    with pytest.raises(ValueError, match="seed"):
        E.denoising_autoencoder(seed=-1, profile=p)
    with pytest.raises(TypeError, match="k"):
        E.nonlinear_autoencoder(True, profile=p)


def test_conv_widths_leave_an_8x8_bottleneck():
    quick = runtime.profile("quick")
    assert E.conv_widths(quick) == (16, 32, 64)                     # 64 px -> 8 x 8 after three halvings
    assert E.conv_widths(dataclasses.replace(quick, image_size=128, width=32)) == (32, 64, 128, 256)


def test_denoising_gain_and_boundary_blur_on_a_tiny_profile():
    p = tiny("tiny01-c")
    gain = E.denoising_gain(seed=0, profile=p)
    assert set(gain) == {"noisy_db", "denoised_db"} and all(isinstance(v, float) for v in gain.values())
    assert gain == E.denoising_gain(seed=0, profile=tiny("tiny01-d"))   # same seed, same numbers
    blur = E.boundary_blur(seed=0, profile=p, far=3)
    assert set(blur) == {"boundary_mse", "far_mse", "kept_contrast"}
    assert all(isinstance(v, float) and v >= 0 for v in blur.values())


def _scenes():
    masks = torch.zeros(2, 16, 16, dtype=torch.long)
    masks[:, 4:12, 4:12] = 1
    images = masks[:, None].float().expand(2, 3, 16, 16).clone()
    return images, masks


def test_boundary_errors_of_a_perfect_copy_and_of_a_blur():
    images, masks = _scenes()
    copy = torch.nn.Identity()
    copy.register_parameter("p", torch.nn.Parameter(torch.zeros(1)))  # reconstruct reads the device from a parameter
    found = E.boundary_errors(copy, images, masks, far=4)
    assert found.per_distance.shape == (5,) and float(found.per_distance.abs().max()) == 0
    assert found.kept_contrast == pytest.approx(1.0)
    assert found.boundary.shape == (2, 16, 16) and found.boundary.dtype == torch.bool

    class Blur(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)

    blurred = E.boundary_errors(Blur(), images, masks, far=4)
    assert float(blurred.per_distance[0]) > float(blurred.per_distance[-1]) == 0.0   # the error sits on the edge
    assert blurred.kept_contrast < 0.5
    with pytest.raises(ValueError, match="masks"):
        E.boundary_errors(Blur(), images, masks[:1], far=4)
    with pytest.raises(TypeError, match="far"):
        E.boundary_errors(Blur(), images, masks, far=2.5)


def test_the_comparisons_name_keys_their_functions_return():
    assert set(E.COMPARISONS) == {"nonlinear_vs_pca", "denoising_gain"}
    outputs = {"nonlinear_vs_pca": {"pca_db", "autoencoder_db"}, "denoising_gain": {"noisy_db", "denoised_db"}}
    for name, comparison in E.COMPARISONS.items():
        assert isinstance(comparison, Comparison)
        assert {comparison.better, comparison.worse} == outputs[name]
        assert comparison.margin > 0
    assert E.COMPARISONS["nonlinear_vs_pca"].margin == pytest.approx(0.969, abs=1e-3)   # error ratio 0.8
