"""Lessons 07 and 08's experiments, on a tiny profile: the keys and types they return, determinism for a fixed
seed, and the registered comparisons naming keys the functions return."""

import dataclasses
import math

import pytest
import torch

from segedu import runtime
from segedu.experiments import lesson07, lesson08
from segedu.experiments.common import Comparison

TINY = dataclasses.replace(runtime.profile("quick"), name="tiny", image_size=32, train_images=16, val_images=4,
                           batch_size=4, ablation_steps=2, train_steps=2, width=4, crf_iterations=1)


def _close(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a if k not in ("images/s", "seconds"))


# --------------------------------------------------------------------------- lesson 07


def test_lesson07_models_scores_and_determinism():
    models, results = lesson07.train_deeplabs(seed=3, profile=TINY, progress=False)
    assert tuple(models) == lesson07.MODELS and set(results) == set(lesson07.MODELS)
    for name, row in results.items():
        assert set(row) == {"params", "miou", "bf", "images/s"} and all(isinstance(v, float) for v in row.values())
        assert not models[name].training
    # the MSc model trains only its head, on top of a copy of the trained v3
    assert results["v3-MSc"]["params"] < results["DeepLab v3"]["params"]
    assert models["v3-MSc"].base is not models["DeepLab v3"]
    again = lesson07.train_deeplabs(seed=3, profile=TINY, names=("DeepLab v3", "v3-MSc"), progress=False)[1]
    assert _close(again["DeepLab v3"], results["DeepLab v3"]) and _close(again["v3-MSc"], results["v3-MSc"])

    images = torch.rand(2, 3, 32, 32)
    masks = torch.randint(0, 3, (2, 32, 32))
    scores = lesson07.score_variants({"DeepLab v3": models["DeepLab v3"]}, images, masks, TINY)
    assert set(scores["DeepLab v3"]) == {"miou", "bf", "miou_ms", "bf_ms", "miou_crf", "bf_crf"}
    assert all(isinstance(v, float) for v in scores["DeepLab v3"].values())


def test_lesson07_registry_names_returned_keys():
    row = lesson07.deeplab_variants(seed=0, profile=TINY)
    assert all(isinstance(v, float) for v in row.values())
    assert lesson07.deeplab_variants(seed=0, profile=TINY) == row
    for comparison in lesson07.COMPARISONS.values():
        assert isinstance(comparison, Comparison) and comparison.function is lesson07.deeplab_variants
        assert comparison.better in row and comparison.worse in row and isinstance(comparison.margin, float)


def test_lesson07_bad_arguments():
    with pytest.raises(ValueError, match="names"):
        lesson07.train_deeplabs(profile=TINY, names=("v3-MSc",))
    with pytest.raises(ValueError, match="name"):
        lesson07.build_model("DeepLab v9", TINY)
    with pytest.raises(TypeError, match="seed"):
        lesson07.deeplab_variants(seed=1.5, profile=TINY)


def test_lesson07_measurements():
    rows = lesson07.stride_costs(torch.rand(1, 3, 32, 32), profile=TINY)
    assert list(rows) == [32, 16, 8] and len({r["params"] for r in rows.values()}) == 1
    assert [r["side"] for r in rows.values()] == [1, 2, 4]
    assert rows[8]["gflops"] > rows[16]["gflops"] > rows[32]["gflops"] > 0

    masks = torch.zeros(2, 32, 32, dtype=torch.long)
    masks[:, 12:20, 12:20] = 2
    probs = lesson07.coarse_prediction(masks, 3)
    assert probs.shape == (2, 3, 32, 32) and torch.allclose(probs.sum(1), torch.ones(2, 32, 32))
    labels = probs.argmax(1)
    assert bool((labels[:, 12:20, 12:20] == 2).all()) and bool((labels[:, :4, :4] == 0).all())
    assert int((labels == 2).sum()) > int((masks == 2).sum())  # the object claims whole cells: blocky

    work, seconds = lesson07.crf_costs([8, 12], "naive", iterations=1, repeats=1)
    assert work == [2 * 8**4, 2 * 12**4] and len(seconds) == 2 and min(seconds) > 0
    lattice_work, _ = lesson07.crf_costs([12], "permutohedral", iterations=1, repeats=1)
    assert lattice_work[0] <= 153 * 12 * 12  # (d+1)(2 + 3(d+1)) N for d = 5 and 2
    assert lesson07.crf_params(TINY)["theta_alpha"] == 8.0


# --------------------------------------------------------------------------- lesson 08


def test_lesson08_models_scores_and_determinism():
    models, results = lesson08.train_context_models(seed=1, profile=TINY, progress=False)
    assert tuple(models) == lesson08.CONTEXT_MODELS
    for row in results.values():
        assert set(row) == {"params", "car", "boat", "vehicle", "miou", "swap", "seconds"}
        assert all(isinstance(v, float) for v in row.values())
    again = lesson08.train_context_models(seed=1, profile=TINY, names=("PSPNet",), progress=False)[1]
    assert _close(again["PSPNet"], results["PSPNet"])
    row = lesson08.context_models(seed=1, profile=TINY)
    for comparison in lesson08.COMPARISONS.values():
        assert comparison.function is lesson08.context_models and comparison.margin > 0
        assert comparison.better in row and comparison.worse in row


def test_lesson08_models_share_the_short_encoder():
    fields = {}
    for name in lesson08.CONTEXT_MODELS:
        model = lesson08.build_context_model(name, TINY).eval()
        assert model.backbone.output_stride == 8 and model(torch.rand(1, 3, 48, 48)).shape == (1, 5, 48, 48)
        fields[name] = sum(p.numel() for p in model.backbone.parameters())
    assert len(set(fields.values())) == 1
    with pytest.raises(ValueError, match="name"):
        lesson08.build_context_model("U-Net", TINY)
    assert lesson08.context_size(TINY) == 48


def test_lesson08_measurements():
    stats = lesson08.object_statistics(scenes=32)
    assert set(stats) == {"car", "boat"} and stats["car"]["colour"].shape == (3,) and 0 < stats["boat"]["area"] < 1
    _, val = lesson08.context_data(TINY)
    distances = lesson08.region_distances(val)
    assert distances.shape == (4,) and bool((distances > 0).all())

    masks = torch.zeros(1, 16, 16, dtype=torch.long)
    masks[0, 8, 8] = 1
    images = torch.rand(1, 3, 16, 16)
    kept = lesson08.keep_near(images, masks, 2)
    assert torch.equal(kept[0, :, 6:11, 8], images[0, :, 6:11, 8])          # within 2 px: kept
    assert torch.allclose(kept[0, :, 0, 0], images[0].mean((1, 2)))         # far: the scene's mean colour

    model = lesson08.build_context_model("plain dilated FCN", TINY)
    fields = lesson08.stage_fields(model, 96, samples=1)
    assert list(fields) == ["stem", "layer1", "layer2", "output"]
    assert fields["layer2"]["support"] == 51 and fields["output"]["support"] == 75
    swaps = lesson08.context_probe({"plain": model.eval()}, val.batch(range(2))[0], val.batch(range(2))[1], [0, 48])
    assert len(swaps["plain"]) == 2

    from segedu.models.fpn import FPN
    from segedu.models.unet import UNet

    with torch.device("meta"):
        costs = lesson08.decoder_costs(FPN(3, "small", width=4, channels=8, head_channels=4), UNet(3, base=4), 64)
    assert set(costs) == {"fpn", "unet", "fpn_decoder", "unet_decoder"}
    assert 0 < costs["fpn_decoder"] < costs["fpn"] and 0 < costs["unet_decoder"] < costs["unet"]
