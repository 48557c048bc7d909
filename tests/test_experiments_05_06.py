"""Lessons 05-06's experiments at a tiny size: the keys the lessons and bench/seeds.py read, plain floats, the
same numbers for the same seed, and registries whose keys the functions return."""

import pytest
import torch

from segedu import runtime
from segedu.experiments import common, lesson05, lesson06
from segedu.experiments.common import Comparison
from segedu.models.segnet import SegNet
from segedu.models.unet import MirrorContext, UNet

TINY = runtime.profile("quick").replace(image_size=32, train_images=16, val_images=8, batch_size=4,
                                        ablation_steps=2, width=4)


def test_object_task_pieces():
    masks = torch.tensor([[[0, 1], [5, 0]]])
    assert torch.equal(lesson05.foreground(masks), torch.tensor([[[0, 1], [1, 0]]]))
    logits = torch.zeros(1, 2, 2, 2)
    assert float(lesson05.object_loss(logits, masks)) == pytest.approx(float(torch.log(torch.tensor(2.0))))
    train, images, val_masks = lesson05.object_data(TINY)
    assert len(train) == 16 and images.shape == (8, 3, 32, 32) and val_masks.shape == (8, 32, 32)
    batches = lesson05.object_validation(images, val_masks, 3)
    assert [len(b[0]) for b in batches] == [3, 3, 2] and int(batches[0][1].max()) <= 1
    assert common.resolve_profile("quick").name == "quick" and common.resolve_profile(TINY) is TINY
    with pytest.raises(TypeError, match="profile"):
        common.resolve_profile(3)


def test_fcn_variants_trains_three_models_and_repeats_for_a_seed():
    models, results = lesson05.train_fcn_variants(0, TINY, progress=False)
    assert set(models) == set(results) == {"32s", "16s", "8s"}
    for r in results.values():
        assert set(r) == {"params", "miou", "bf", "images/s"} and all(isinstance(v, float) for v in r.values())
        assert 0 <= r["bf"] <= 1 and 0 <= r["miou"] <= 1
    row = lesson05.fcn_variants(seed=0, profile=TINY)
    assert set(row) == {f"{m}_{v}" for m in ("bf", "miou") for v in ("32s", "16s", "8s")}
    assert row["bf_8s"] == results["8s"]["bf"]  # the same training as train_fcn_variants' with the same seed
    lesson05._scores.cache_clear()
    assert lesson05.fcn_variants(seed=0, profile=TINY) == row  # trained again: deterministic on a CPU
    with pytest.raises(ValueError, match="variants"):
        lesson05.train_fcn_variants(0, TINY, variants=("4s",))
    with pytest.raises(TypeError, match="seed"):
        lesson05.fcn_variants(seed=0.5, profile=TINY)


def test_decoders_train_five_models():
    models, results = lesson06.train_decoders(1, TINY, progress=False)
    assert tuple(models) == lesson06.DECODERS
    assert isinstance(models["U-Net valid"], MirrorContext) and isinstance(models["SegNet"], SegNet)
    assert isinstance(models["no skips"], UNet) and not models["no skips"].skips
    for r in results.values():
        assert all(isinstance(v, float) for v in r.values()) and 0 <= r["bf"] <= 1
    row = lesson06.decoders(seed=1, profile=TINY)
    assert row["bf_SegNet"] == results["SegNet"]["bf"] and len(row) == 2 * len(lesson06.DECODERS)
    subset, _ = lesson06.train_decoders(1, TINY, names=("FCN-8s",), progress=False)
    assert list(subset) == ["FCN-8s"]
    with pytest.raises(ValueError, match="names"):
        lesson06.train_decoders(1, TINY, names=("DeepLab",))
    with pytest.raises(ValueError, match="name"):
        lesson06.build_decoder("unet", TINY)


@pytest.mark.parametrize("module, function", [(lesson05, lesson05.fcn_variants), (lesson06, lesson06.decoders)])
def test_registries_name_keys_the_functions_return(module, function):
    row = function(seed=0 if module is lesson05 else 1, profile=TINY)  # cached by the tests above
    for name, comparison in module.COMPARISONS.items():
        assert isinstance(comparison, Comparison) and comparison.function is function
        assert comparison.better in row and comparison.worse in row and comparison.margin >= 0
