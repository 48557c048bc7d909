"""segedu.experiments.lesson10: the tiny-object loss comparison, on a tiny budget (the lesson runs the real one)."""

import pytest
import torch

from segedu import runtime
from segedu.experiments import lesson10
from segedu.experiments.common import Comparison

TINY = runtime.profile("quick").replace(image_size=64, train_images=16, val_images=8, ablation_steps=2,
                                         batch_size=4, width=8)


def test_data_is_binary_small_and_deterministic():
    data = lesson10.tiny_object_data(TINY)
    assert len(data.train) == TINY.train_images // 4
    assert data.images.shape == (TINY.val_images, 3, 32, 32) and data.masks.shape == (TINY.val_images, 32, 32)
    assert set(data.masks.unique().tolist()) == {0, 1}  # some foreground, or IoU is undefined
    again = lesson10.tiny_object_data(TINY)
    assert torch.equal(data.images, again.images) and torch.equal(data.masks, again.masks)


def test_every_loss_trains_and_one_seed_repeats_itself():
    first = lesson10.tiny_objects(seed=3, profile=TINY)
    assert set(first) == set(lesson10.LOSS_SETTINGS)
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in first.values())
    assert lesson10.tiny_objects(seed=3, profile=TINY) == first


def test_predictions_and_matrices_agree():
    data = lesson10.tiny_object_data(TINY)
    runs = lesson10.train_losses(data, seed=0, profile=TINY, names=["Dice"], device="cpu")
    matrix, pred = runs["Dice"]
    assert pred.shape == data.masks.shape and pred.dtype == torch.int64
    assert int(matrix.matrix.sum()) == data.masks.numel()


def test_registry_and_bad_name():
    assert set(lesson10.COMPARISONS) == {"dice_vs_bce", "focal_vs_bce", "combo_vs_bce"}
    assert all(isinstance(c, Comparison) and c.worse == "BCE" and c.better in lesson10.LOSS_SETTINGS
               for c in lesson10.COMPARISONS.values())
    with pytest.raises(ValueError, match="name must be one of"):
        lesson10.make_loss("hinge")
