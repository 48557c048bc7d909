"""segedu.crf: the dense CRF against pydensecrf2 (the reference C++ code), the exact O(N^2) filter and the
energy it minimises; shapes, dtypes, errors and gradients."""

import numpy as np
import pydensecrf.densecrf as dcrf
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode
from pydensecrf.utils import unary_from_softmax

from segedu import crf
from segedu.crf import DenseCRF, NaiveGaussianFilter, crf_energy, dense_crf
from segedu.ops.permutohedral import LatticeStack, PermutohedralLattice
from segedu.data.samples import grace_hopper
from segedu.data.shapes import ShapesDataset

PARAMS = dict(w_bilateral=10.0, theta_alpha=80.0, theta_beta=13.0, w_gaussian=3.0, theta_gamma=3.0)


def coarse_noisy_probs(height, width, classes, seed=0, cell=16, noise=0.5):
    """A coarse unary: random logits on a grid of ``cell``-pixel cells, upsampled, plus pixel noise."""
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(1, classes, height // cell + 1, width // cell + 1, generator=g)
    logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)[0]
    return (logits + noise * torch.randn(classes, height, width, generator=g)).softmax(0)


def reference(probs, image, iterations=10, **params):
    """pydensecrf2 with the same parameters: [C, H, W] float, [3, H, W] uint8 -> Q [C, H, W]."""
    p = {**PARAMS, **params}
    c, h, w = probs.shape
    d = dcrf.DenseCRF2D(w, h, c)
    d.setUnaryEnergy(unary_from_softmax(probs.numpy()))
    d.addPairwiseGaussian(sxy=p["theta_gamma"], compat=p["w_gaussian"])
    rgb = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
    d.addPairwiseBilateral(sxy=p["theta_alpha"], srgb=p["theta_beta"], rgbim=rgb, compat=p["w_bilateral"])
    return torch.from_numpy(np.array(d.inference(iterations))).reshape(c, h, w)


def coarse_shapes(size=32, count=6, seed=3, factor=8):
    """Shapes scenes and a coarse prediction: each class's presence in 8x8 cells, upsampled bilinearly."""
    ds = ShapesDataset(count, size=size, seed=seed)
    images, masks = ds.batch(range(count))
    onehot = F.one_hot(masks, ds.num_classes).permute(0, 3, 1, 2).float()
    cells = F.max_pool2d(onehot, factor)  # an object in a cell claims the cell ...
    cells[:, 0] = F.avg_pool2d(onehot[:, :1], factor)[:, 0]  # ... background only by its share
    probs = (3 * F.interpolate(cells, size=(size, size), mode="bilinear", align_corners=False)).softmax(1)
    return (images * 255).round().to(torch.uint8), masks, probs


# --------------------------------------------------------------------------- the reference


def test_matches_pydensecrf_on_grace_hopper():
    """The issue's agreement target: full-size photo, coarse noisy unary, 10 iterations."""
    image = grace_hopper()  # [3, 600, 512]
    probs = coarse_noisy_probs(*image.shape[1:], classes=5)
    ours = dense_crf(probs, image, iterations=10, method="permutohedral", **PARAMS)
    ref = reference(probs, image, iterations=10)
    agreement = (ours.argmax(0) == ref.argmax(0)).float().mean().item()
    mean_abs = (ours - ref).abs().mean().item()
    print(f"argmax agreement {agreement:.6f}, mean |Q - Q_ref| {mean_abs:.2e}")
    assert agreement >= 0.99 and mean_abs <= 0.02
    # Same arithmetic as the C++ lattice, not just close: only float rounding differs.
    assert agreement >= 0.999 and mean_abs < 1e-5
    # ... and the CRF did something: many labels changed.
    assert (ref.argmax(0) != probs.argmax(0)).float().mean() > 0.1


@pytest.mark.parametrize(
    "params", [dict(), dict(w_bilateral=4.0, theta_alpha=30.0, theta_beta=5.0, w_gaussian=1.0, theta_gamma=1.0)]
)
def test_matches_pydensecrf_other_parameters(params):
    # H * W a multiple of 4: pydensecrf's SSE lattice pads the pixels to a multiple of 4 with zero features
    # and inserts the padding's lattice points, which then relay blur values (a quirk we do not copy).
    image = grace_hopper((88, 76))
    probs = coarse_noisy_probs(88, 76, classes=4, seed=1, cell=8)
    ours = dense_crf(probs, image, iterations=5, method="permutohedral", **{**PARAMS, **params})
    ref = reference(probs, image, iterations=5, **params)
    assert (ours - ref).abs().max() < 1e-4


# --------------------------------------------------------------------------- the exact filter


def test_naive_and_permutohedral_agree_on_shapes():
    images, _, probs = coarse_shapes(size=32)
    params = dict(w_bilateral=5.0, theta_alpha=8.0, theta_beta=13.0, w_gaussian=3.0, theta_gamma=1.0)
    naive = dense_crf(probs, images, method="naive", **params)
    lattice = dense_crf(probs, images, method="permutohedral", **params)
    agreement = (naive.argmax(1) == lattice.argmax(1)).float().mean().item()
    print(f"naive vs permutohedral argmax agreement {agreement:.4f}")
    assert agreement >= 0.99
    assert (naive - lattice).abs().mean() < 0.01


def test_lattice_approximates_the_gaussian_filter():
    """The lattice filters with ~ c exp(-|f_i - f_j|^2 / 2): a few per cent of error in 2-D, a constant c."""
    g = torch.Generator().manual_seed(0)
    features = torch.rand(600, 2, generator=g) * 8
    values = torch.rand(600, 3, generator=g)
    exact = NaiveGaussianFilter(features).filter(values)
    approx = PermutohedralLattice(features).filter(values)
    scale = (approx * exact).sum() / (exact * exact).sum()
    rel = ((approx - scale * exact).norm() / approx.norm()).item()
    assert 0.8 < scale < 1.0 and rel < 0.05, (scale, rel)
    # a wrong width (sigma 1.5 instead of 1) fits clearly worse
    dist2 = torch.cdist(features, features) ** 2
    wide = torch.exp(-dist2 / (2 * 1.5**2)) @ values
    wide_scale = (approx * wide).sum() / (wide * wide).sum()
    assert ((approx - wide_scale * wide).norm() / approx.norm()) > 2 * rel


def test_naive_filter_is_the_exact_sum_in_chunks(monkeypatch):
    g = torch.Generator().manual_seed(1)
    features, values = torch.randn(300, 3, generator=g), torch.randn(300, 2, generator=g)
    want = torch.exp(-0.5 * torch.cdist(features.double(), features.double()) ** 2) @ values.double()
    torch.testing.assert_close(NaiveGaussianFilter(features).filter(values).double(), want, rtol=1e-4, atol=1e-4)
    monkeypatch.setattr(crf, "NAIVE_CACHE_PIXELS", 10)  # the row-block path (no cached matrix)
    monkeypatch.setattr(crf, "_NAIVE_CHUNK_ELEMENTS", 300 * 7)  # 7 rows per block, a partial last block
    chunked = NaiveGaussianFilter(features)
    assert chunked._matrix is None
    torch.testing.assert_close(chunked.filter(values).double(), want, rtol=1e-4, atol=1e-4)


def test_lattice_structure():
    lattice = PermutohedralLattice(crf.bilateral_features(grace_hopper((40, 30)), 20.0, 10.0))
    n, d = 1200, 5
    assert lattice.offsets.shape == (n, d + 1) and lattice.barycentric.shape == (n, d + 1)
    # barycentric weights of a point inside its simplex: non-negative, summing to 1
    assert lattice.barycentric.min() >= -1e-6
    torch.testing.assert_close(lattice.barycentric.sum(1), torch.ones(n))
    # the d+1 corners of a simplex are distinct lattice points; the lattice is far smaller than N (d+1)
    assert (lattice.offsets.sort(1).values.diff(dim=1) > 0).all()
    assert lattice.num_points == int(lattice.offsets.unique().numel()) < n * (d + 1)


def test_lattice_stack_is_the_sum_of_its_lattices():
    image = grace_hopper((30, 26))
    lattices = [PermutohedralLattice(crf.bilateral_features(image, 10.0, 13.0)),
                PermutohedralLattice(crf.gaussian_features(30, 26, 2.0))]
    values = torch.rand(30 * 26, 4, generator=torch.Generator().manual_seed(5))
    want = lattices[0].filter(values) + lattices[1].filter(values)
    torch.testing.assert_close(LatticeStack(lattices).filter(values), want)


def test_lattice_keys_overflow_raises():
    with pytest.raises(ValueError, match="64 bits"):
        PermutohedralLattice(torch.tensor([[0.0] * 5, [3e4] * 5]))


def test_filter_work_counts_the_terms_the_filters_compute(monkeypatch):
    """Lesson 07 asserts O(N^2) against O(N) on these counts, not on a clock: they must be what runs."""
    image = grace_hopper((24, 24))
    n, c = 24 * 24, 5
    # the exact filter: one [N, N] @ [N, C] product per kernel, N^2 multiply-adds per channel (2 FLOPs each)
    naive = NaiveGaussianFilter(crf.bilateral_features(image, 80.0, 13.0))
    with FlopCounterMode(display=False) as flops:
        naive.filter(torch.rand(n, c))
    assert naive.multiply_adds == n * n and flops.get_total_flops() == 2 * n * n * c
    assert crf.filter_work(image, method="naive") == 2 * n * n
    assert crf.filter_work(image, method="naive", w_gaussian=0.0) == n * n  # a kernel of weight 0 is skipped
    assert crf.filter_work(image) == 2 * n * n  # "auto": naive up to NAIVE_MAX_PIXELS
    # the lattice: the (index, weight) pairs its splat, d+1 blurs and slice hand to F.embedding_bag
    lattices = [PermutohedralLattice(crf.bilateral_features(image, 80.0, 13.0)),
                PermutohedralLattice(crf.gaussian_features(24, 24, 3.0))]
    gathered, real_bag = [], F.embedding_bag

    def counting_bag(index, *args, **kwargs):
        gathered.append(index.numel())
        return real_bag(index, *args, **kwargs)

    monkeypatch.setattr(F, "embedding_bag", counting_bag)
    for lattice in lattices:
        gathered.clear()
        lattice.filter(torch.rand(n, c))
        d = lattice.dim
        assert lattice.multiply_adds == sum(gathered) == 2 * n * (d + 1) + 3 * (d + 1) * lattice.num_points
        assert lattice.multiply_adds <= (d + 1) * (2 + 3 * (d + 1)) * n  # M <= N (d+1): O(N)
    monkeypatch.undo()
    assert LatticeStack(lattices).multiply_adds == sum(lat.multiply_adds for lat in lattices)
    assert crf.filter_work(image, method="permutohedral") == LatticeStack(lattices).multiply_adds
    assert crf.filter_work(grace_hopper((40, 40))) == crf.filter_work(grace_hopper((40, 40)), method="permutohedral")
    # growth: the exact filter's work is N^2 exactly; the lattice's grows at most linearly on this photo
    sides = (16, 32, 64)
    naive_work = [crf.filter_work(grace_hopper((s, s)), method="naive") for s in sides]
    lattice_work = [crf.filter_work(grace_hopper((s, s)), method="permutohedral") for s in sides]
    assert naive_work == [2 * s**4 for s in sides]
    assert all(b / a <= 4 for a, b in zip(lattice_work, lattice_work[1:]))  # 4x the pixels, at most 4x the work
    with pytest.raises(TypeError, match="uint8"):
        crf.filter_work(image.float())
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        crf.filter_work(image[None])
    with pytest.raises(ValueError, match="method"):
        crf.filter_work(image, method="fast")
    with pytest.raises(ValueError, match="theta_alpha"):
        crf.filter_work(image, theta_alpha=0.0)
    with pytest.raises(TypeError, match="w_bilateral"):
        crf.filter_work(image, w_bilateral="10")


# --------------------------------------------------------------------------- the model and its energy


def test_crf_lowers_the_energy_and_raises_boundary_f1():
    from segedu.metrics import boundary_f1

    images, masks, probs = coarse_shapes(size=32)
    params = dict(w_bilateral=5.0, theta_alpha=8.0, theta_beta=13.0, w_gaussian=3.0, theta_gamma=1.0)
    refined = dense_crf(probs, images, method="permutohedral", **params)
    before, after = probs.argmax(1), refined.argmax(1)
    e_before = crf_energy(before, probs, images, method="naive", **params)
    e_after = crf_energy(after, probs, images, method="naive", **params)
    assert (e_after < e_before).all(), (e_before, e_after)
    assert boundary_f1(after, masks) > boundary_f1(before, masks) + 0.2


def test_energy_equals_the_sum_over_pairs():
    g = torch.Generator().manual_seed(2)
    image = torch.randint(0, 256, (3, 5, 4), dtype=torch.uint8, generator=g)
    probs = torch.rand(3, 5, 4, generator=g).softmax(0)
    labels = torch.randint(0, 3, (5, 4), generator=g)
    params = dict(w_bilateral=2.0, theta_alpha=3.0, theta_beta=40.0, w_gaussian=1.5, theta_gamma=2.0)
    x = labels.reshape(-1).double()
    want = -torch.log(probs.double().reshape(3, -1).gather(0, labels.reshape(1, -1))).sum()
    for w, f in (
        (2.0, crf.bilateral_features(image, 3.0, 40.0)),
        (1.5, crf.gaussian_features(5, 4, 2.0)),
    ):
        k = torch.exp(-0.5 * torch.cdist(f.double(), f.double()) ** 2)
        norm = k.sum(1).rsqrt()
        kn = norm[:, None] * k * norm[None, :]
        differ = (x[:, None] != x[None, :]).double()
        want = want + w * torch.triu(kn * differ, diagonal=1).sum()  # every unordered pair once
    got = crf_energy(labels, probs.double(), image, method="naive", **params)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_mean_field_update_by_hand():
    """One naive iteration is softmax(log P + sum_k w_k Dk^-1/2 Kk Dk^-1/2 Q0), Q0 = normalised P."""
    g = torch.Generator().manual_seed(3)
    image = torch.randint(0, 256, (3, 6, 5), dtype=torch.uint8, generator=g)
    probs = torch.rand(4, 6, 5, generator=g).softmax(0).double()
    q0 = probs.reshape(4, -1).t()
    message = 0
    for w, f in ((10.0, crf.bilateral_features(image, 80.0, 13.0)), (3.0, crf.gaussian_features(6, 5, 3.0))):
        k = torch.exp(-0.5 * torch.cdist(f.double(), f.double()) ** 2)
        norm = k.sum(1).rsqrt()
        message = message + w * norm[:, None] * (k @ (norm[:, None] * q0))
    want = torch.softmax(torch.log(q0) + message, 1).t().reshape(4, 6, 5)
    torch.testing.assert_close(dense_crf(probs, image, iterations=1, method="naive"), want)


# --------------------------------------------------------------------------- interface


def test_shapes_dtypes_batches_and_methods():
    images, _, probs = coarse_shapes(size=24, count=3)
    out = dense_crf(probs, images, iterations=3)
    assert out.shape == probs.shape and out.dtype == torch.float32
    torch.testing.assert_close(out.sum(1), torch.ones(3, 24, 24))
    # a batch is its images one by one
    torch.testing.assert_close(out[1], dense_crf(probs[1], images[1], iterations=3))
    # float64 in, float64 out
    assert dense_crf(probs[0].double(), images[0], iterations=2).dtype == torch.float64
    # auto: exact up to NAIVE_MAX_PIXELS (24 x 24 = 576), the lattice above (40 x 40 = 1600)
    assert 24 * 24 <= crf.NAIVE_MAX_PIXELS < 40 * 40
    torch.testing.assert_close(dense_crf(probs, images, method="auto"), dense_crf(probs, images, method="naive"))
    big_images, _, big_probs = coarse_shapes(size=40, count=1)
    torch.testing.assert_close(
        dense_crf(big_probs, big_images, method="auto"), dense_crf(big_probs, big_images, method="permutohedral")
    )
    # zero iterations: the (clipped) input; zero weights: nothing moves
    torch.testing.assert_close(dense_crf(probs, images, iterations=0), probs, atol=1e-4, rtol=0)
    torch.testing.assert_close(dense_crf(probs, images, w_bilateral=0.0, w_gaussian=0.0), probs, atol=1e-4, rtol=0)
    # the module is the function
    layer = DenseCRF(iterations=3, theta_alpha=20.0)
    torch.testing.assert_close(layer(probs, images), dense_crf(probs, images, iterations=3, theta_alpha=20.0))
    assert "theta_alpha=20.0" in repr(layer)


def test_huge_weights_take_the_plain_softmax():
    images, _, probs = coarse_shapes(size=16, count=1)
    out = dense_crf(probs, images, w_bilateral=400.0, w_gaussian=300.0, method="permutohedral")
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.sum(1), torch.ones(1, 16, 16))


def test_in_place_and_autograd_paths_agree():
    images, _, probs = coarse_shapes(size=40, count=1)
    plain = dense_crf(probs, images, iterations=3)  # no autograd: buffers reused in place
    tracked = dense_crf(probs.clone().requires_grad_(), images, iterations=3)
    torch.testing.assert_close(tracked.detach(), plain)


def test_gradients_flow_to_the_probabilities():
    g = torch.Generator().manual_seed(4)
    image = torch.randint(0, 256, (3, 5, 4), dtype=torch.uint8, generator=g)
    logits = torch.randn(3, 5, 4, dtype=torch.float64, generator=g, requires_grad=True)
    for method in ("naive", "permutohedral"):
        fn = lambda z: dense_crf(z.softmax(0), image, iterations=2, theta_alpha=3.0, method=method)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (logits,), eps=1e-6, atol=1e-4)


def test_pairwise_kernel():
    image = grace_hopper((30, 20))
    maps = crf.pairwise_kernel(image, (10, 5), w_bilateral=4.0, w_gaussian=2.0)
    assert set(maps) == {"bilateral", "gaussian", "total"} and maps["total"].shape == (30, 20)
    assert maps["total"][10, 5] == pytest.approx(6.0)  # the pixel with itself: both exponentials are 1
    assert maps["gaussian"].argmax() == 10 * 20 + 5 and (maps["total"] <= 6.0 + 1e-6).all()
    with pytest.raises(ValueError, match="pixel"):
        crf.pairwise_kernel(image, (30, 0))


def test_bad_input_raises():
    image = grace_hopper((20, 16))
    probs = torch.full((3, 20, 16), 1 / 3)
    with pytest.raises(ValueError, match="match probs"):
        dense_crf(probs, image[:, :19])
    with pytest.raises(ValueError, match="match probs"):
        dense_crf(probs[None].expand(2, -1, -1, -1), image[None])
    with pytest.raises(TypeError, match="uint8"):
        dense_crf(probs, image.float())
    with pytest.raises(TypeError, match="floating"):
        dense_crf(probs.long(), image)
    with pytest.raises(ValueError, match="sum to 1"):
        dense_crf(probs * 2, image)
    with pytest.raises(ValueError, match="non-negative"):
        dense_crf(probs - 0.5, image)
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        dense_crf(probs[0], image)
    with pytest.raises(ValueError, match="method"):
        dense_crf(probs, image, method="fast")
    with pytest.raises(ValueError, match="iterations"):
        dense_crf(probs, image, iterations=-1)
    with pytest.raises(TypeError, match="iterations"):
        dense_crf(probs, image, iterations=2.5)
    with pytest.raises(ValueError, match="theta_beta"):
        dense_crf(probs, image, theta_beta=0.0)
    with pytest.raises(ValueError, match="w_gaussian"):
        dense_crf(probs, image, w_gaussian=-1.0)
    with pytest.raises(TypeError, match="probs"):
        dense_crf(probs.numpy(), image)
    with pytest.raises(TypeError, match="image"):
        dense_crf(probs, image.numpy())
    with pytest.raises(ValueError, match="labels"):
        crf_energy(torch.zeros(20, 16, dtype=torch.long) + 3, probs, image)
