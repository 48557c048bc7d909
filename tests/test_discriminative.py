"""The discriminative loss (De Brabandere, Neven & Van Gool 2017) against the paper's equations.

``paper_terms`` below is the reference: the three equations of the paper's Sec. 3.1 written with Python loops
over images, instances and pixel pairs, in float64. The package computes the same in one vectorised pass.
"""

import math

import pytest
import torch

from segedu import losses
from segedu.losses.discriminative import discriminative_loss, discriminative_terms, safe_norm


def paper_terms(embeddings, instances, delta_v=0.5, delta_d=1.5, ignore_index=255):
    """Per image: (L_var, L_dist, L_reg, C), straight from the paper's equations (float64, loops)."""
    out = []
    for x, ids in zip(embeddings.double(), instances):
        labels = [int(v) for v in torch.unique(ids) if int(v) not in (0, ignore_index)]
        C = len(labels)
        if C == 0:
            out.append((0.0, 0.0, 0.0, 0))
            continue
        points = [x[:, ids == c].T for c in labels]  # each [N_c, D]
        mu = [p.mean(0) for p in points]
        var = sum(
            sum(max(0.0, float(torch.linalg.norm(m - xi)) - delta_v) ** 2 for xi in p) / len(p)
            for p, m in zip(points, mu)
        ) / C
        dist = 0.0
        if C > 1:
            dist = sum(
                max(0.0, 2 * delta_d - float(torch.linalg.norm(mu[a] - mu[b]))) ** 2
                for a in range(C) for b in range(C) if a != b
            ) / (C * (C - 1))
        reg = sum(float(torch.linalg.norm(m)) for m in mu) / C
        out.append((var, dist, reg, C))
    return out


def paper_loss(embeddings, instances, delta_v=0.5, delta_d=1.5, alpha=1.0, beta=1.0, gamma=0.001):
    per_image = [(alpha * v + beta * d + gamma * r, c) for v, d, r, c in paper_terms(embeddings, instances, delta_v, delta_d)]
    present = [value for value, c in per_image if c > 0]
    return sum(present) / max(1, len(present))


def image_of(values, ids):
    """A [1, D, 1, N] embedding map and a [1, 1, N] id map from per-pixel rows (a 1 x N image)."""
    x = torch.tensor(values, dtype=torch.float64)
    if x.dim() == 1:
        x = x[:, None]
    return x.T[None, :, None, :], torch.tensor(ids)[None, None, :]


# --------------------------------------------------------------------------- hand-computed cases


def test_pull_and_regulariser_by_hand():
    # 1-D embeddings. Instance 1: pixels at 0 and 2 (centre 1, both 1 away: hinge (1 - 0.5)^2 = 0.25 each);
    # instance 2: one pixel at 10 (pull 0). Centres 1 and 10 are 9 > 2 * 1.5 apart: no push.
    x, ids = image_of([0.0, 2.0, 10.0], [1, 1, 2])
    terms = discriminative_terms(x, ids)
    assert terms["pull"].item() == pytest.approx((0.25 + 0.0) / 2)
    assert terms["push"].item() == 0.0
    assert terms["reg"].item() == pytest.approx((1.0 + 10.0) / 2)
    assert terms["instances"].tolist() == [2]
    assert torch.allclose(terms["centres"], torch.tensor([[1.0], [10.0]], dtype=torch.float64))
    assert discriminative_loss(x, ids).item() == pytest.approx(0.125 + 0.001 * 5.5)


def test_push_by_hand():
    # Two one-pixel instances at (0, 0) and (1, 0): both ordered pairs give (2 * 1.5 - 1)^2 = 4, / (C (C-1)) = 2.
    x, ids = image_of([[0.0, 0.0], [1.0, 0.0]], [4, 9])
    terms = discriminative_terms(x, ids)
    assert terms["pull"].item() == 0.0
    assert terms["push"].item() == pytest.approx(4.0)
    assert terms["reg"].item() == pytest.approx(0.5)
    # Three instances on a line at 0, 1, 5: pairs (0,1) -> 4, (0,5) -> 0, (1,5) -> 0; twice each, / 6.
    x, ids = image_of([0.0, 1.0, 5.0], [1, 2, 3])
    assert discriminative_terms(x, ids)["push"].item() == pytest.approx(8 / 6)


def test_margins_and_weights_by_hand():
    x, ids = image_of([0.0, 2.0, 2.5], [1, 1, 2])
    # centres 1 and 2.5: pull (1 - 0.2)^2 = 0.64 for instance 1 -> 0.32; push (2 * 1 - 1.5)^2 = 0.25; reg 1.75
    terms = discriminative_terms(x, ids, delta_v=0.2, delta_d=1.0)
    assert terms["pull"].item() == pytest.approx(0.32)
    assert terms["push"].item() == pytest.approx(0.25)
    loss = discriminative_loss(x, ids, delta_v=0.2, delta_d=1.0, alpha=2.0, beta=3.0, gamma=0.5)
    assert loss.item() == pytest.approx(2 * 0.32 + 3 * 0.25 + 0.5 * 1.75)


def test_a_perfect_embedding_costs_only_the_regulariser():
    # Every pixel within delta_v of its centre, centres more than 2 delta_d apart: pull = push = 0.
    x, ids = image_of([0.0, 0.4, 0.2, 3.2, 3.4], [1, 1, 1, 2, 2])
    terms = discriminative_terms(x, ids)
    assert terms["pull"].item() == 0.0 and terms["push"].item() == 0.0


def test_background_and_ignored_pixels_take_no_part():
    x, ids = image_of([0.0, 2.0, 10.0], [1, 1, 2])
    wild_x, wild_ids = image_of([0.0, 2.0, 10.0, 100.0, -50.0, 7.0], [1, 1, 2, 0, 255, 0])
    assert discriminative_loss(wild_x, wild_ids).item() == pytest.approx(discriminative_loss(x, ids).item())
    leaf = wild_x.clone().requires_grad_(True)
    discriminative_loss(leaf, wild_ids).backward()
    assert leaf.grad[..., 3:].abs().max() == 0  # no gradient reaches background or ignored pixels
    # ignore_index=None: 255 is then an instance like any other
    with_void = discriminative_terms(wild_x, wild_ids, ignore_index=None)
    assert with_void["instances"].tolist() == [3]


def test_a_batch_with_different_instance_counts():
    # Image 0: the pull case (2 instances), image 1: the push case (2), image 2: 3 instances, image 3: none.
    x = torch.zeros(4, 2, 1, 3, dtype=torch.float64)
    ids = torch.zeros(4, 1, 3, dtype=torch.long)
    x[0, 0, 0] = torch.tensor([0.0, 2.0, 10.0]); ids[0, 0] = torch.tensor([1, 1, 2])
    x[1, :, 0, :2] = torch.tensor([[0.0, 1.0], [0.0, 0.0]]); ids[1, 0, :2] = torch.tensor([4, 9])
    x[2, 0, 0] = torch.tensor([0.0, 1.0, 5.0]); ids[2, 0] = torch.tensor([1, 2, 3])
    x[3] = 5.0  # background only: no term
    terms = discriminative_terms(x, ids)
    assert terms["instances"].tolist() == [2, 2, 3, 0]
    expected = [0.125 + 0.001 * 5.5, 4.0 + 0.001 * 0.5, 8 / 6 + 0.001 * 2.0, 0.0]
    assert torch.allclose(discriminative_loss(x, ids, reduction="none"), torch.tensor(expected, dtype=torch.float64))
    # the mean runs over the three images that hold instances, not over all four
    assert discriminative_loss(x, ids).item() == pytest.approx(sum(expected) / 3)
    assert discriminative_loss(x, ids, reduction="sum").item() == pytest.approx(sum(expected))
    # the same id in two images names two instances
    assert len(terms["centres"]) == 7


# --------------------------------------------------------------------------- against the reference


@pytest.mark.parametrize("seed", range(6))
def test_equals_the_papers_equations_on_random_batches(seed):
    gen = torch.Generator().manual_seed(seed)
    B, D, H, W = 3, 1 + seed % 4, 6, 7
    x = torch.randn(B, D, H, W, generator=gen, dtype=torch.float64) * (0.5 + seed)
    ids = torch.randint(0, 5, (B, H, W), generator=gen) * (1 + seed % 3)  # gaps in the ids when seed % 3 > 0
    ids[0][torch.rand(H, W, generator=gen) < 0.2] = 255
    ids[B - 1, : H // 2] = 0
    if seed == 5:
        ids[1] = 0  # an image without instances
    delta_v, delta_d = 0.1 + 0.2 * (seed % 3), 0.5 + 0.5 * (seed % 2)
    reference = paper_terms(x, ids, delta_v, delta_d)
    terms = discriminative_terms(x, ids, delta_v, delta_d)
    for name, k in (("pull", 0), ("push", 1), ("reg", 2)):
        want = torch.tensor([r[k] for r in reference], dtype=torch.float64)
        torch.testing.assert_close(terms[name], want, rtol=1e-12, atol=1e-12)
    assert terms["instances"].tolist() == [r[3] for r in reference]
    got = discriminative_loss(x, ids, delta_v, delta_d, alpha=0.7, beta=1.3, gamma=0.01)
    assert got.item() == pytest.approx(paper_loss(x, ids, delta_v, delta_d, 0.7, 1.3, 0.01), rel=1e-12, abs=1e-12)


def test_gradients_match_finite_differences():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    ids = torch.randint(0, 4, (2, 4, 5), generator=gen)
    assert torch.autograd.gradcheck(lambda e: discriminative_loss(e, ids, 0.3, 0.6, gamma=0.1), (x,))


def test_float32_and_half_inputs():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 8, 8, generator=gen)
    ids = torch.randint(0, 4, (2, 8, 8), generator=gen)
    ref = paper_loss(x.double(), ids)
    assert discriminative_loss(x, ids).item() == pytest.approx(ref, rel=1e-5)
    half = discriminative_loss(x.bfloat16(), ids)
    assert half.dtype == torch.float32 and half.item() == pytest.approx(ref, rel=3e-2)  # bfloat16 inputs: 8 bits


def test_coinciding_centres_give_finite_gradients():
    x = torch.zeros(1, 2, 1, 4, dtype=torch.float64, requires_grad=True)  # all embeddings equal: push at its maximum
    ids = torch.tensor([[[1, 1, 2, 2]]])
    loss = discriminative_loss(x, ids)
    loss.backward()
    assert loss.item() == pytest.approx(9.0) and torch.isfinite(x.grad).all()
    assert safe_norm(torch.zeros(3, 2)).tolist() == [0.0, 0.0, 0.0]


def test_no_instances_anywhere_gives_zero_that_backpropagates():
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = discriminative_loss(x, torch.zeros(2, 4, 4, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0 and x.grad.abs().max() == 0


def test_the_losses_package_re_exports_it():
    assert losses.discriminative_loss is discriminative_loss
    assert "discriminative_terms" in losses.__all__
    assert losses.DISCRIMINATIVE_DEFAULTS == dict(delta_v=0.5, delta_d=1.5, alpha=1.0, beta=1.0, gamma=0.001)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda x, i: discriminative_loss(x[0], i), ValueError, "embeddings must be 4-D"),
        (lambda x, i: discriminative_loss(x.long(), i), TypeError, "embeddings must be a floating-point"),
        (lambda x, i: discriminative_loss(x, i.float()), TypeError, "instances must be an integer"),
        (lambda x, i: discriminative_loss(x, i[:, :2]), ValueError, "instances must be"),
        (lambda x, i: discriminative_loss(x, i, delta_v=-0.1), ValueError, "delta_v"),
        (lambda x, i: discriminative_loss(x, i, delta_d=math.inf), ValueError, "delta_d"),
        (lambda x, i: discriminative_loss(x, i, gamma="0.1"), TypeError, "gamma"),
        (lambda x, i: discriminative_loss(x, i, reduction="max"), ValueError, "reduction"),
        (lambda x, i: discriminative_loss(x, i, ignore_index=2.5), TypeError, "ignore_index"),
        (lambda x, i: discriminative_loss(x.tolist(), i), TypeError, "embeddings must be a torch.Tensor"),
    ],
)
def test_bad_arguments(call, error, match):
    x, ids = torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long)
    with pytest.raises(error, match=match):
        call(x, ids)
