"""Seed, mean-shift, threshold: the paper's post-processing (De Brabandere et al. 2017, Sec. 3.2)."""

import pytest
import torch

from segedu.clustering import cluster_embeddings, mean_shift_mode, seed_and_threshold
from segedu.losses.discriminative import discriminative_terms


def same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Two labelings name the same groups (a bijection between their labels)."""
    pairs = set(zip(a.flatten().tolist(), b.flatten().tolist()))
    return len(pairs) == len(set(a.flatten().tolist())) == len(set(b.flatten().tolist()))


def blobs(gen, centres, sizes, radius):
    """Points uniformly inside balls of ``radius`` around ``centres`` ``[K, D]``; labels ``[N]``."""
    points, labels = [], []
    for k, (c, n) in enumerate(zip(centres, sizes)):
        direction = torch.nn.functional.normalize(torch.randn(n, len(c), generator=gen, dtype=torch.float64), dim=1)
        points.append(c + direction * radius * torch.rand(n, 1, generator=gen, dtype=torch.float64))
        labels += [k] * n
    return torch.cat(points), torch.tensor(labels)


def test_mean_shift_climbs_to_the_blob_mean():
    gen = torch.Generator().manual_seed(0)
    points, labels = blobs(gen, torch.tensor([[0.0, 0.0], [5.0, 0.0]], dtype=torch.float64), [40, 30], 0.4)
    # every point of a blob lies within 0.8 of every other: one step from any of them lands on the blob's mean
    mode = mean_shift_mode(points, points[45], bandwidth=0.8)
    assert torch.allclose(mode, points[labels == 1].mean(0))
    # from a point between the blobs but nearer blob 0, it climbs to blob 0
    mode = mean_shift_mode(points, torch.tensor([0.5, 0.0], dtype=torch.float64), bandwidth=1.0)
    assert torch.allclose(mode, points[labels == 0].mean(0))
    # nothing within reach: it stays
    far = torch.tensor([50.0, 50.0], dtype=torch.float64)
    assert torch.equal(mean_shift_mode(points, far, bandwidth=1.0), far)


def test_mean_shift_needs_several_steps_from_the_edge():
    # 1-D: points 0, 1, 2, ..., 10; from 10 with bandwidth 1.5 the window [8.5, 11.5] holds 9, 10 -> 9.5, then
    # 8..10 -> 9 ... the mode is reached where the window is symmetric, after several steps, not in one.
    points = torch.arange(11, dtype=torch.float64)[:, None]
    one = mean_shift_mode(points, points[10], 1.5, max_iterations=1)
    assert one.item() == pytest.approx(9.5)
    assert mean_shift_mode(points, points[10], 1.5).item() < 9.5


def test_well_separated_clusters_are_found_exactly():
    gen = torch.Generator().manual_seed(1)
    centres = torch.tensor([[0.0, 0, 0], [3.0, 0, 0], [0, 3.0, 0], [0, 0, 3.0]], dtype=torch.float64)
    points, labels = blobs(gen, centres, [50, 20, 35, 9], 0.5)
    found, kept = seed_and_threshold(points, bandwidth=0.5, min_pixels=8)
    assert len(kept) == 4 and same_partition(found, labels)
    # the largest seed cluster gets label 0
    assert (found[labels == 0] == 0).all()


def test_stray_points_join_their_nearest_centre_instead_of_forming_instances():
    gen = torch.Generator().manual_seed(2)
    centres = torch.tensor([[0.0, 0.0], [4.0, 0.0]], dtype=torch.float64)
    points, labels = blobs(gen, centres, [60, 60], 0.5)
    strays = torch.tensor([[0.0, 0.8], [0.1, -0.75], [4.7, 0.2]], dtype=torch.float64)  # beyond delta_v = 0.5
    points, labels = torch.cat([points, strays]), torch.cat([labels, torch.tensor([0, 0, 1])])
    found, kept = seed_and_threshold(points, bandwidth=0.5, min_pixels=8)
    assert len(kept) == 2 and same_partition(found, labels)
    # without the size rule, the strays seed clusters of their own
    _, every = seed_and_threshold(points, bandwidth=0.5, min_pixels=1)
    assert len(every) > 2


def test_a_seed_cluster_next_to_a_kept_centre_is_merged():
    # A ring of points 0.6-0.9 from the centre of a dense blob: beyond the bandwidth, so they seed a second
    # cluster of 16 points; its centre lies within 2 * bandwidth of the first: it is merged, not an instance.
    gen = torch.Generator().manual_seed(3)
    core, _ = blobs(gen, torch.zeros(1, 2, dtype=torch.float64), [80], 0.3)
    angle = torch.linspace(0, 1.2, 16, dtype=torch.float64)
    ring = torch.stack([angle.cos(), angle.sin()], 1) * 0.75
    points = torch.cat([core, ring])
    merged, kept = seed_and_threshold(points, bandwidth=0.5, min_pixels=8, merge=1.0)
    assert len(kept) == 1 and (merged == 0).all()
    _, apart = seed_and_threshold(points, bandwidth=0.5, min_pixels=8, merge=0.0)
    assert len(apart) == 2


def test_no_points_and_one_point():
    labels, centres = seed_and_threshold(torch.zeros(0, 3), bandwidth=0.5)
    assert labels.shape == (0,) and centres.shape == (0, 3)
    labels, centres = seed_and_threshold(torch.ones(1, 3), bandwidth=0.5, min_pixels=8)
    assert labels.tolist() == [0] and len(centres) == 1  # one small cluster is still the one instance


def embedding_map(gen, instance_maps, dim=4, radius=0.45, spacing=3.2):
    """Embeddings [B, D, H, W] in which every instance lies within ``radius`` of a centre and centres are at
    least ``spacing`` apart (the loss's optimum for delta_v = 0.5 and delta_d = 1.5); background is noise."""
    B, H, W = instance_maps.shape
    x = torch.randn(B, dim, H, W, generator=gen, dtype=torch.float64) * 5
    for b in range(B):
        ids = [int(v) for v in instance_maps[b].unique() if v > 0]
        for k, i in enumerate(ids):
            centre = torch.zeros(dim, dtype=torch.float64)
            centre[k % dim] = spacing * (1 + k // dim)
            mask = instance_maps[b] == i
            direction = torch.nn.functional.normalize(torch.randn(int(mask.sum()), dim, generator=gen,
                                                                  dtype=torch.float64), dim=1)
            x[b, :, mask] = (centre + direction * radius * torch.rand(int(mask.sum()), 1, generator=gen,
                                                                      dtype=torch.float64)).T
    return x


def test_embeddings_at_the_loss_optimum_are_clustered_exactly():
    from segedu.data.shapes import ShapesDataset
    from segedu.data.tasks import instance_ids

    gen = torch.Generator().manual_seed(4)
    _, targets = ShapesDataset(5, size=32, seed=7, variant="instance", max_objects=6).batch(range(5))
    truth = torch.stack([instance_ids(t["masks"]) for t in targets])
    x = embedding_map(gen, truth)
    terms = discriminative_terms(x, truth)
    assert terms["pull"].abs().max() == 0 and terms["push"].abs().max() == 0  # the loss's optimum
    found = cluster_embeddings(x, truth > 0, bandwidth=0.5, min_pixels=1)
    assert found.shape == truth.shape and found.dtype == torch.int64
    assert ((found > 0) == (truth > 0)).all()
    for b in range(len(truth)):
        assert same_partition(found[b][truth[b] > 0], truth[b][truth[b] > 0]), b
    # one image at a time gives the same
    assert torch.equal(cluster_embeddings(x[2], truth[2] > 0, min_pixels=1), found[2])


def test_a_far_smaller_bandwidth_splits_instances():
    gen = torch.Generator().manual_seed(5)
    truth = torch.zeros(1, 12, 12, dtype=torch.long)
    truth[0, :6] = 1
    x = embedding_map(gen, truth, radius=0.45)
    assert cluster_embeddings(x, truth > 0, bandwidth=0.5).unique().tolist() == [0, 1]
    assert len(cluster_embeddings(x, truth > 0, bandwidth=0.05, min_pixels=1).unique()) > 2


def test_empty_foreground():
    x = torch.randn(2, 3, 5, 5)
    assert cluster_embeddings(x, torch.zeros(2, 5, 5, dtype=torch.bool)).abs().sum() == 0


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: cluster_embeddings(torch.randn(3, 5, 5), torch.ones(4, 5, dtype=torch.bool)), ValueError, "foreground"),
        (lambda: cluster_embeddings(torch.randn(1, 3, 5, 5), torch.ones(1, 5, 5)), TypeError, "foreground must be a bool"),
        (lambda: cluster_embeddings(torch.randn(1, 3, 5, 5), torch.ones(1, 5, 5, dtype=torch.bool), bandwidth=0),
         ValueError, "bandwidth"),
        (lambda: cluster_embeddings(torch.randn(1, 3, 5, 5), torch.ones(1, 5, 5, dtype=torch.bool), min_pixels=0),
         ValueError, "min_pixels"),
        (lambda: seed_and_threshold(torch.randn(5), 0.5), ValueError, "points must be 2-D"),
        (lambda: mean_shift_mode(torch.randn(5, 2), torch.randn(3), 0.5), ValueError, "start must be"),
        (lambda: mean_shift_mode(torch.randn(5, 2), torch.randn(2), True), TypeError, "bandwidth"),
    ],
)
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_principal_projection_keeps_the_directions_of_largest_variance():
    from segedu.clustering import principal_projection

    gen = torch.Generator().manual_seed(6)
    # variance 9 along x, 1 along y, 0.01 along z: the plane (x, y) keeps almost everything
    points = torch.randn(500, 3, generator=gen, dtype=torch.float64) * torch.tensor([3.0, 1.0, 0.1], dtype=torch.float64)
    projected, explained = principal_projection(points)
    assert projected.shape == (500, 2) and projected.dtype == torch.float64
    assert explained == pytest.approx(10 / 10.01, abs=0.01)
    assert float(projected[:, 0].var()) == pytest.approx(float(points[:, 0].var()), rel=0.02)  # the x axis
    # distances never grow
    d_full = (points[:50, None] - points[None, :50]).norm(dim=-1)
    d_proj = (projected[:50, None] - projected[None, :50]).norm(dim=-1)
    assert (d_proj <= d_full + 1e-9).all()
    # two dimensions already: a rotation, all variance kept; one dimension: padded
    flat, all_of_it = principal_projection(points[:, :2])
    assert all_of_it == pytest.approx(1.0) and torch.allclose(flat.norm(dim=1), (points[:, :2] - points[:, :2].mean(0)).norm(dim=1))
    line, _ = principal_projection(points[:, :1])
    assert line.shape == (500, 2) and (line[:, 1] == 0).all()
    empty, _ = principal_projection(torch.zeros(0, 4))
    assert empty.shape == (0, 2)
