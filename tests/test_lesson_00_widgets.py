"""Lesson 00's pictures and widgets, and ``segedu.metrics.boundary_match`` (what boundary F1 looks at, drawn)."""

import pytest
import torch
from matplotlib.figure import Figure

from segedu.metrics import boundary_f1, boundary_match
from segedu.sliding_window import PatchClassifier, layer_costs, patch_macs
from segedu.widgets import (boundary_f1_explorer, draw_boundary_match, draw_boundary_shift, draw_sliding_window,
                            shift_labels)


def _square(top, left, side, size=24):
    mask = torch.zeros(size, size, dtype=torch.long)
    mask[top : top + side, left : left + side] = 1
    return mask


def test_boundary_match_is_what_boundary_f1_averages():
    target, pred = _square(4, 4, 12), _square(5, 7, 11)
    for tolerance in (0, 1, 2, 3.5):
        scores = [boundary_match(pred == c, target == c, tolerance)["f1"] for c in (0, 1)]
        assert boundary_f1(pred, target, tolerance=tolerance) == pytest.approx(sum(scores) / 2)


def test_boundary_match_maps():
    target, pred = _square(4, 4, 12) == 1, _square(4, 7, 12) == 1  # moved 3 px to the right
    m = boundary_match(pred, target, 2)
    assert m["true_boundary"].sum() == 44 and m["pred_boundary"].sum() == 44  # the ring of a 12 x 12 square
    assert torch.equal(m["pred_matched"], m["pred_boundary"] & m["true_band"])
    assert torch.equal(m["true_matched"], m["true_boundary"] & m["pred_band"])
    # By hand, for the predicted ring: its top and bottom rows lie on the true ones but for their last pixel
    # (3 px past the true corner); its right column is 3 px from any true pixel (10 misses); its left column
    # is 3 px from the true left column, but its 2 pixels nearest each corner are within 2 px of the true top or
    # bottom row (6 misses). 18 misses of 44; the true ring mirrors it.
    assert m["precision"] == m["recall"] == pytest.approx((44 - 18) / 44)
    assert boundary_match(pred, target, 3)["f1"] == 1.0
    assert boundary_match(torch.zeros(5, 5, dtype=torch.bool), torch.zeros(5, 5, dtype=torch.bool), 1)["f1"] == 1.0


def test_boundary_match_rejects_bad_input():
    with pytest.raises(TypeError, match="pred_mask"):
        boundary_match(torch.zeros(4, 4), torch.zeros(4, 4, dtype=torch.bool), 1)
    with pytest.raises(ValueError, match="same shape"):
        boundary_match(torch.zeros(4, 4, dtype=torch.bool), torch.zeros(4, 5, dtype=torch.bool), 1)
    with pytest.raises(ValueError, match="tolerance"):
        boundary_match(torch.zeros(4, 4, dtype=torch.bool), torch.zeros(4, 4, dtype=torch.bool), -1)


def test_shift_labels():
    masks = _square(2, 2, 4, size=8)[None]
    moved = shift_labels(masks, 3)
    assert torch.equal(moved[0, 2:6, 5:8], torch.ones(4, 3, dtype=torch.long)) and moved[0, :, :5].sum() == 0
    assert torch.equal(shift_labels(masks, 0), masks)


def test_draw_boundary_match_and_shift():
    target, pred = _square(4, 4, 12), _square(4, 7, 12)
    result = draw_boundary_match(Figure(), pred == 1, target == 1, 2)
    assert result == pytest.approx({k: v for k, v in boundary_match(pred == 1, target == 1, 2).items()
                                    if k in ("precision", "recall", "f1")})
    shifted = draw_boundary_shift(Figure(), target[None], 0, 3, 2)
    assert shifted["f1"] == pytest.approx(result["f1"]) and shifted["iou"] == pytest.approx(9 * 12 / (15 * 12))


def test_boundary_f1_explorer_updates():
    masks = torch.stack([_square(4, 4, 12), _square(2, 6, 8)])
    demo = boundary_f1_explorer(masks)
    assert demo.result["f1"] < 1
    demo.update(shift=0)
    assert demo.result["f1"] == 1.0 and demo.result["iou"] == 1.0
    demo.update(index=1, shift=2, tolerance=2)
    assert demo.result["f1"] == 1.0


def test_draw_sliding_window():
    model = PatchClassifier(6)
    result = draw_sliding_window(Figure(), torch.rand(3, 40, 40), model, (5, 30))
    assert result["shared"] == pytest.approx(14 / 15)
    assert result["ratio"] == pytest.approx(patch_macs(model) / sum(m for _, _, m in layer_costs(model)))
