"""Lesson 10's loss explorer redraws for every control and reports what segedu.loss_probe.sweep measures."""

import pytest
import torch
from matplotlib.figure import Figure

from segedu import viz, widgets
from segedu.loss_probe import sweep


def test_loss_explorer_redraws_for_each_control():
    demo = widgets.loss_explorer(loss="dice_loss", ratio=0.05, probability=0.1)
    assert set(demo.result) == {"binary_cross_entropy", "dice_loss"}
    pictures = {demo.update(probability=p) for p in (0.1, 0.5, 0.9)}
    assert len(pictures) == 3, "moving the probability slider must move the marker"
    assert demo.image.value == demo.update(probability=0.9)

    by_ratio = {}
    for ratio in (0.01, 0.1):
        png = demo.update(ratio=ratio, probability=0.05)
        by_ratio[ratio] = (png, demo.result)
    assert by_ratio[0.01][0] != by_ratio[0.1][0]
    # cross-entropy ignores the class ratio; the Dice gradient on a hard positive grows as the class shrinks
    for pixel in ("positive", "negative"):
        bce_rare, bce_common = (by_ratio[r][1]["binary_cross_entropy"][pixel] for r in (0.01, 0.1))
        assert bce_rare == pytest.approx(bce_common)
    rare, common = by_ratio[0.01][1]["dice_loss"]["positive"][1], by_ratio[0.1][1]["dice_loss"]["positive"][1]
    assert rare < common < 0, "a hard positive pixel is pulled up (negative gradient), harder when rare"

    before = demo.image.value
    demo.controls["loss"].value = "focal_loss"  # as a browser does
    assert demo.image.value != before and set(demo.result) == {"binary_cross_entropy", "focal_loss"}
    demo.update(loss="binary_cross_entropy")
    assert set(demo.result) == {"binary_cross_entropy"}
    with pytest.raises(ValueError, match="unknown control"):
        demo.update(gamma=2.0)


def test_draw_loss_curves_reports_the_sweep_at_the_marker():
    fig = Figure(figsize=(8, 3))
    result = widgets.draw_loss_curves(fig, ["binary_cross_entropy", "focal_loss"], ratio=0.02, probability=0.3,
                                      params={"focal_loss": {"alpha": None}})
    cost, gradient = sweep("focal_loss", torch.tensor([0.3]), "negative", ratio=0.02, alpha=None)
    assert result["focal_loss"]["negative"] == pytest.approx((float(cost[0]), float(gradient[0])))
    assert result["binary_cross_entropy"]["positive"][1] == pytest.approx(0.3 - 1.0)
    assert len(fig.axes) == 2 and all(ax.get_yscale() == "log" for ax in fig.axes)
    assert fig.axes[0].get_xlabel() and fig.axes[0].get_ylabel() and fig.legends
    # the parameters reach the loss: the default focal loss (alpha = 0.25) draws another picture
    other = Figure(figsize=(8, 3))
    widgets.draw_loss_curves(other, ["binary_cross_entropy", "focal_loss"], ratio=0.02, probability=0.3)
    assert viz.figure_to_png(fig) != viz.figure_to_png(other)
    # without a marker nothing is reported
    assert widgets.draw_loss_curves(Figure(), "dice_loss") == {}
