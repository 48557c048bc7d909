"""Lesson 11's model comparison redraws for every control and reports each model's per-image scores."""

import pytest
import torch
import torch.nn.functional as F

from segedu import widgets
from segedu.data.shapes import ShapesDataset

CLASSES = ("background", "object")


def scenes(n=3, size=32):
    images, masks = ShapesDataset(n, size=size, seed=5).batch(range(n))
    return images, (masks > 0).long()


def fake_models(masks):
    onehot = F.one_hot(masks, 2).permute(0, 3, 1, 2).float()
    cells = F.max_pool2d(onehot, 8)  # an object in an 8x8 cell claims the cell, background only by its share
    cells[:, 0] = F.avg_pool2d(onehot[:, :1], 8)[:, 0]
    coarse = F.interpolate(cells, size=masks.shape[-2:], mode="bilinear", align_corners=False)
    return {
        "perfect": (6 * onehot).softmax(1),
        "coarse": (3 * coarse).softmax(1),
        "background": torch.stack([torch.full(masks.shape, 0.9), torch.full(masks.shape, 0.1)], 1),
    }


def test_model_comparison_scores_and_redraws():
    images, masks = scenes()
    crf_params = dict(iterations=5, w_bilateral=5.0, theta_alpha=8.0, theta_beta=13.0, w_gaussian=3.0, theta_gamma=1.0)
    demo = widgets.model_comparison(images, masks, fake_models(masks), CLASSES, crf_params=crf_params)
    r = demo.result
    assert set(r) == {"perfect", "coarse", "background"}
    assert r["perfect"]["miou"] == 1.0 and r["perfect"]["boundary_f1"] == 1.0
    assert r["coarse"]["boundary_f1"] < 0.9 and r["background"]["miou"] < 0.6
    first = demo.update()
    second = demo.update(index=1)
    assert second != first and demo.result != r                  # another image, other scores
    scores = demo.result
    errors = demo.update(view="errors")
    assert errors != second and demo.result == scores             # same predictions, another picture
    demo.update(view="prediction")
    before = demo.result
    with_crf = demo.update(crf=True)
    assert with_crf != second
    assert demo.result["perfect"]["miou"] == 1.0                  # a confident correct map stays correct
    assert demo.result["coarse"]["boundary_f1"] > before["coarse"]["boundary_f1"]  # the CRF snaps to the edges


def test_model_comparison_rejects_bad_inputs():
    images, masks = scenes()
    with pytest.raises(ValueError, match=r"probs\['bad'\] must be \[3, C, 32, 32\]"):
        widgets.model_comparison(images, masks, {"bad": torch.rand(2, 2, 32, 32)}, CLASSES)
    with pytest.raises(ValueError, match="probs must map"):
        widgets.model_comparison(images, masks, {}, CLASSES)
    demo = widgets.model_comparison(images, masks, fake_models(masks), CLASSES)
    with pytest.raises(ValueError, match="unknown control"):
        demo.update(model="unet")
