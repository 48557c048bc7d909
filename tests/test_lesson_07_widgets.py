"""Lesson 07's demos redraw when a control moves and report what they show."""

import math

import pytest
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


def _row(n=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    intensities = torch.where(torch.arange(n) < n // 2, 50.0, 190.0) + 12 * torch.randn(n, generator=g)
    values = (torch.sigmoid((torch.arange(n) - n / 3) / 2.0) + 0.15 * torch.randn(n, generator=g)).clamp(0, 1)
    return intensities, values


def test_lattice_steps_one_at_a_time_are_the_filter():
    from segedu.ops.permutohedral import PermutohedralLattice

    for d in (2, 5):
        features = torch.randn(60, d, generator=torch.Generator().manual_seed(d)) * 3
        lattice = PermutohedralLattice(features)
        values = torch.rand(60, 3)
        lattice_values = lattice.splat(values)
        assert lattice_values.shape == (lattice.num_points, 3)
        for axis in range(d + 1):
            lattice_values = lattice.blur_axis(lattice_values, axis)
        assert torch.allclose(lattice.slice(lattice_values), lattice.filter(values), atol=1e-6)
        # the decoded lattice points: on the plane sum = 0, coordinates congruent mod d+1, and each pixel is the
        # barycentric combination of its d+1 corners (the weights the splat and slice use)
        points = lattice.point_coordinates()
        assert points.shape == (lattice.num_points, d + 1) and bool((points.sum(1) == 0).all())
        assert bool(((points - points[:, :1]) % (d + 1) == 0).all())
        rebuilt = (lattice.barycentric[:, :, None].double() * points[lattice.offsets].double()).sum(1)
        assert torch.allclose(rebuilt, lattice.elevated.double(), atol=1e-4)  # float32 elevation
    with pytest.raises(ValueError, match="axis"):
        lattice.blur_axis(lattice_values, d + 1)


def test_lattice_viewer_draws_the_real_lattice():
    from segedu.ops.permutohedral import PermutohedralLattice

    intensities, values = _row()
    demo = widgets.lattice_viewer(intensities, values, theta_alpha=3.0, theta_beta=40.0)
    result = demo.result
    features = torch.stack([torch.arange(20.0) / 3.0, intensities / 40.0], 1)
    assert result["pixels"] == 20 and result["points"] == PermutohedralLattice(features).num_points
    assert result["points"] <= 3 * 20 and result["blur_pairs"] > 0
    assert result["max_error"] < 0.1  # the lattice approximates the exact normalised filter (a few per cent)
    wide = demo.update(theta_beta=300.0)  # colour hardly matters: the two sides share lattice points
    assert demo.update(theta_beta=10.0) != wide and demo.result["points"] > 0
