"""Lesson 07's demos redraw when a control moves and report what they show."""

import math

import torch

from segedu import widgets
from segedu.data.samples import grace_hopper


def box_probs(image):
    """A coarse 'person' unary: 0.7 inside two boxes around Grace Hopper, 0.2 outside."""
    _, h, w = image.shape
    ys, xs = torch.arange(h)[:, None] / h, torch.arange(w)[None, :] / w
    box = ((xs > 0.29) & (xs < 0.74) & (ys > 0.04) & (ys < 0.56)) | ((xs > 0.04) & (ys > 0.53))
    fg = torch.where(box, 0.7, 0.2)
    return torch.stack([1 - fg, fg])


def test_crf_explorer_redraws_and_snaps_to_edges():
    image = grace_hopper(48)
    demo = widgets.crf_explorer(image, box_probs(image), iterations=5, theta_alpha=12.0, theta_gamma=1.0)
    first = demo.result
    assert first["changed"] > 0.02 and first["contrast_after"] > first["contrast_before"]
    moved = demo.update(iterations=2)
    assert demo.update(iterations=0) != moved and demo.result["changed"] == 0.0  # no iteration: nothing moves
    assert demo.result["contrast_after"] == demo.result["contrast_before"]
    # the weights and thetas change the picture too
    before = demo.update(iterations=5)
    after_beta = demo.update(theta_beta=3.0)
    assert after_beta != before and demo.update(w_bilateral=0.0, w_gaussian=8.0) != after_beta


def test_kernel_viewer_follows_pixel_and_thetas():
    image = grace_hopper(48)
    demo = widgets.kernel_viewer(image, theta_alpha=10.0, theta_beta=13.0, theta_gamma=3.0)
    assert set(demo.result) == {"bilateral", "gaussian"}
    # the smoothness kernel of an interior pixel holds ~ 2 pi theta^2 of mass
    demo.update(row=24, col=20)
    assert math.isclose(demo.result["gaussian"], 2 * math.pi * 9, rel_tol=0.05)
    pictures = {demo.update(row=r) for r in (5, 24, 40)}
    assert len(pictures) == 3
    wide = demo.update(theta_beta=80.0)
    mass_wide = demo.result["bilateral"]
    assert demo.update(theta_beta=3.0) != wide and demo.result["bilateral"] < mass_wide  # colour tolerance
    assert demo.update(col=3) != demo.update(col=30)
