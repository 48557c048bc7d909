"""From pixel embeddings to instances: seed, mean-shift, threshold (lesson 12).

A network trained with the discriminative loss (``segedu.losses.discriminative``; De Brabandere, Neven & Van
Gool, CVPR Workshops 2017) puts the embeddings of one instance within ``delta_v`` of their centre and the
centres ``2 delta_d`` apart. The paper's post-processing (Sec. 3.2) turns that into instances without knowing
how many there are:

1. **seed**: take an embedding that no instance claims yet (here the first one in raster order, so the result
   is deterministic; the paper picks one at random);
2. **mean-shift** it to the centre of its cluster: replace the point by the mean of the unclaimed embeddings
   within the ``bandwidth`` of it, until it stops moving (a flat kernel; Comaniciu & Meer, TPAMI 2002);
3. **threshold**: every unclaimed embedding within ``bandwidth`` of that centre joins the instance;
4. repeat until every embedding is claimed.

The paper sets the bandwidth to ``delta_v``. A trained network is never perfect: a few embeddings stray
beyond the bandwidth and would seed tiny extra clusters. Two rules clean that up. A cluster with fewer than
``min_pixels`` embeddings, or whose centre lies closer than ``merge`` to an earlier centre (for a trained
network, centres of two instances are about ``2 delta_d`` apart), is not an instance. Then every foreground
pixel is labelled with its **nearest** remaining centre: with ``delta_d > delta_v`` an embedding is closer
to its own centre than to any other (the paper's Sec. 3.1), so this is what the thresholds meant.

Each step works on all the embeddings of an image at once (distances to one centre are one vector
operation); the only Python loops run over instances and mean-shift iterations, never over pixels.

``principal_projection`` looks at embeddings of more than two dimensions: their projection on the k directions
of largest variance (PCA), which lesson 12's widget draws.
"""

from __future__ import annotations

import torch

from segedu import validate

__all__ = ["mean_shift_mode", "seed_and_threshold", "cluster_embeddings", "principal_projection"]


def _check_points(points: torch.Tensor) -> None:
    validate.tensor(points, "points", 2, dtype="floating", layout="[N, D]")


def mean_shift_mode(
    points: torch.Tensor,
    start: torch.Tensor,
    bandwidth: float,
    max_iterations: int = 50,
    tolerance: float = 1e-4,
) -> torch.Tensor:
    """Flat-kernel mean-shift from ``start`` ``[D]`` over ``points`` ``[N, D]``: the mode it climbs to, ``[D]``.

    Each step moves the point to the mean of the ``points`` within ``bandwidth`` of it (Euclidean); it stops
    after a step shorter than ``tolerance`` or after ``max_iterations`` steps, or when no point is within
    reach (then the point stays where it is).
    """
    _check_points(points)
    validate.tensor(start, "start", 1, dtype="floating", layout="[D]")
    if start.shape[0] != points.shape[1]:
        raise ValueError(f"start must be [D] = [{points.shape[1]}] like the points, got shape {tuple(start.shape)}")
    bandwidth = validate.positive_number(bandwidth, "bandwidth")
    max_iterations = validate.integer(max_iterations, "max_iterations", minimum=0)
    tolerance = validate.number(tolerance, "tolerance", minimum=0)
    centre = start.to(points.dtype)
    for _ in range(max_iterations):
        near = (points - centre).norm(dim=1) <= bandwidth
        if not bool(near.any()):
            break
        moved = points[near].mean(0)
        step = float((moved - centre).norm())
        centre = moved
        if step < tolerance:
            break
    return centre


def seed_and_threshold(
    points: torch.Tensor,
    bandwidth: float,
    min_pixels: int = 1,
    merge: float = 0.0,
    max_instances: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster ``points`` ``[N, D]``: ``(labels int64 [N] in 0..K-1, centres [K, D])``.

    Seeds, mean-shifts and thresholds as in the module text, then drops the clusters smaller than
    ``min_pixels`` and those whose centre is within ``merge`` of an earlier kept centre, and labels every point
    with its nearest kept centre. ``max_instances`` bounds the number of seeds (a guard against an untrained
    network, whose embeddings form no clusters). With no points: ``([], [0, D])``.
    """
    _check_points(points)
    bandwidth = validate.positive_number(bandwidth, "bandwidth")
    min_pixels = validate.positive_int(min_pixels, "min_pixels")
    merge = validate.number(merge, "merge", minimum=0)
    max_instances = validate.positive_int(max_instances, "max_instances")
    N, D = points.shape
    if N == 0:
        return torch.zeros(0, dtype=torch.int64, device=points.device), points.new_zeros(0, D)
    unclaimed = torch.ones(N, dtype=torch.bool, device=points.device)
    centres, sizes = [], []
    while len(centres) < max_instances:
        left = unclaimed.nonzero()[:, 0]
        if len(left) == 0:
            break
        seed = int(left[0])
        centre = mean_shift_mode(points[unclaimed], points[seed], bandwidth)
        members = unclaimed & ((points - centre).norm(dim=1) <= bandwidth)
        members[seed] = True  # the seed always joins: every round claims at least one point
        unclaimed &= ~members
        centres.append(centre)
        sizes.append(int(members.sum()))
    kept: list[torch.Tensor] = []
    for centre, size in sorted(zip(centres, sizes), key=lambda cs: -cs[1]):  # largest first: they win merges
        if not kept or (size >= min_pixels and all(float((centre - k).norm()) >= merge for k in kept)):
            kept.append(centre)
    kept_centres = torch.stack(kept)
    labels = torch.cdist(points, kept_centres).argmin(dim=1)  # nearest centre: the paper's Sec. 3.1 property
    return labels, kept_centres


def cluster_embeddings(
    embeddings: torch.Tensor,
    foreground: torch.Tensor,
    bandwidth: float = 0.5,
    min_pixels: int = 8,
    merge: float | None = None,
    max_instances: int = 64,
) -> torch.Tensor:
    """Instance ids from pixel embeddings: ``[B, D, H, W]`` and bool ``[B, H, W]`` -> int64 ``[B, H, W]``.

    Only ``foreground`` pixels are clustered (``seed_and_threshold`` on the embeddings of each image); they get
    ids ``1 .. K`` (in the order of the size of their seed clusters, largest first), every other pixel 0. ``bandwidth`` is the paper's ``delta_v``
    (0.5 with its defaults); ``merge`` defaults to ``2 * bandwidth``, twice the radius of a cluster, well below
    the ``2 delta_d`` = 3 between centres that the loss asks for. ``[D, H, W]`` with ``[H, W]`` works too
    (one image, ``[H, W]`` out).
    """
    validate.tensor(embeddings, "embeddings", (3, 4), dtype="floating", layout="[B, D, H, W]")
    validate.tensor(foreground, "foreground", (2, 3), dtype="bool", layout="[B, H, W]")
    single = embeddings.dim() == 3
    x, fg = (embeddings[None], foreground[None]) if single else (embeddings, foreground)
    if fg.dim() != 3 or fg.shape != x.shape[:1] + x.shape[2:]:
        raise ValueError(f"foreground must be [B, H, W] = {(x.shape[0], *x.shape[2:])} like the embeddings "
                         f"{tuple(embeddings.shape)}, got shape {tuple(foreground.shape)}")
    bandwidth = validate.positive_number(bandwidth, "bandwidth")
    merge = 2 * bandwidth if merge is None else validate.number(merge, "merge", minimum=0)
    ids = torch.zeros(fg.shape, dtype=torch.int64, device=x.device)
    for b in range(x.shape[0]):  # images one by one: each has its own number of instances
        points = x[b].detach().permute(1, 2, 0)[fg[b].to(x.device)]  # [N, D]
        labels, _ = seed_and_threshold(points, bandwidth, min_pixels, merge, max_instances)
        ids[b][fg[b].to(x.device)] = labels + 1
    return ids[0] if single else ids


def principal_projection(points: torch.Tensor, k: int = 2) -> tuple[torch.Tensor, float]:
    """PCA: ``points`` ``[N, D]`` projected on their ``k`` principal directions, ``([N, k], explained)``.

    The points are centred and projected on the top ``k`` right singular vectors of the centred matrix
    (Pearson 1901; the same as ``segedu.models.autoencoder.pca_reconstruction``); ``explained`` is the fraction
    of the total variance the ``k`` directions keep (1.0 when ``D <= k``, where nothing is lost; the
    projection is then padded with zero columns). A projection never lengthens a distance, so clusters that
    look apart in the picture are apart in the embedding space, not necessarily the other way round.
    """
    _check_points(points)
    k = validate.positive_int(k, "k")
    N, D = points.shape
    x = points.detach().double()
    centred = x - x.mean(0) if N else x
    if N == 0:
        return points.new_zeros(0, k), 1.0
    _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
    projected = centred @ vh[:k].T
    if projected.shape[1] < k:
        projected = torch.cat([projected, projected.new_zeros(N, k - projected.shape[1])], dim=1)
    total = float((singular**2).sum())
    explained = float((singular[:k] ** 2).sum()) / total if total > 0 else 1.0
    return projected.to(points.dtype), explained
