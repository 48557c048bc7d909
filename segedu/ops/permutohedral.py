"""The permutohedral lattice: a fast approximate Gaussian filter in feature space (lesson 07).

The dense CRF (``segedu.crf``) needs, at every mean-field iteration, the Gaussian filter
``out_i = sum_j exp(-|f_i - f_j|^2 / 2) v_j`` over all N pixels for each of the N pixels: O(N^2) done exactly.
Adams, Baek & Davis, "Fast High-Dimensional Filtering Using the Permutohedral Lattice" (Eurographics 2010),
approximate it in O(N d^2) for d-dimensional features (Krähenbühl & Koltun, NeurIPS 2011, use it for the CRF):

* *splat*: each pixel's values go, with barycentric weights, onto the d+1 corners of the simplex of a lattice
  in feature space (the hyperplane ``sum(x) = 0`` of R^{d+1}, tiled by simplices) that holds the pixel;
* *blur*: the lattice values are blurred with [1 2 1] along each of its d+1 axes;
* *slice*: each pixel reads the values back from its d+1 corners (barycentric interpolation).

The result approximates the Gaussian filter up to a constant factor and a few per cent of error. The
arithmetic is that of Krähenbühl's ``permutohedral.cpp`` (pydensecrf: same elevation, rounding, blur order
and scaling), written with vectorized torch ops: the lattice is built once per image, and its splat, blur and
slice are weighted gathers (``F.embedding_bag``) on CPU or CUDA, differentiable in the values. No Python loop
runs over pixels or lattice points (only over the d+1 lattice axes).

Shapes: features float ``[N, d]``, values ``[N, C]``, lattice values ``[M, C]`` for M lattice points in use.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F

from segedu import validate

__all__ = ["PermutohedralLattice", "LatticeStack"]


class PermutohedralLattice:
    """Approximate Gaussian filter ``out_i ~ c post_i sum_j exp(-|f_i - f_j|^2 / 2) pre_j v_j`` in O(N d^2).

    Adams, Baek & Davis, Eurographics 2010, with the arithmetic of Krähenbühl's ``permutohedral.cpp``
    (pydensecrf): the lattice is built once from ``features`` float ``[N, d]``; ``filter(values [N, C])``
    then costs one splat, d+1 blur passes and one slice, each a weighted gather (``F.embedding_bag``).

    Attributes: ``num_points`` (M, lattice points in use), ``offsets`` int64 ``[N, d+1]`` (the simplex corners
    of each pixel, as lattice point ids), ``barycentric`` float32 ``[N, d+1]`` (its interpolation weights).
    The three steps read (and ``LatticeStack`` concatenates): the splat ``splat_pixels`` ``[N (d+1)]`` (the
    pixel of every (pixel, corner) entry, grouped by lattice point), ``splat_bags`` ``[M]`` (where each lattice
    point's entries start) and ``splat_weights`` ``[N (d+1)]``; the slice ``slice_weights`` ``[N, d+1]`` (read at
    ``offsets``); the blur ``blur_index`` int ``[d+1, M, 3]`` and ``blur_weights`` ``[d+1, M, 3]`` (each point,
    its two neighbours along one axis, weights 1, 1/2, 1/2). For pictures (lesson 07's 2-D lattice):
    ``elevated`` float32 ``[N, d+1]`` (each pixel on the plane ``sum(x) = 0``), ``point_coordinates()`` (the
    lattice points on that plane) and the three steps one at a time, ``splat``, ``blur_axis`` and ``slice``.
    """

    def __init__(self, features: torch.Tensor):
        validate.tensor(features, "features", 2, dtype="floating", layout="[N, d]")
        self.num_pixels, self.dim = features.shape
        self._build(features.to(torch.float32))

    # -- construction (once per image) -----------------------------------------------------------------
    def _build(self, f: torch.Tensor) -> None:
        n, d = f.shape
        dev = f.device
        # 1. Elevate the features onto the hyperplane sum(x) = 0 of R^{d+1} (x = E f, Adams et al. p.5),
        #    scaled so that the [1 2 1] blur below has about unit standard deviation in feature units (p.6).
        i = torch.arange(d, dtype=torch.float64, device=dev)
        inv_std = float(torch.tensor(math.sqrt(2.0 / 3.0) * (d + 1), dtype=torch.float32))  # a float in the C++
        scale = (inv_std / torch.sqrt((i + 1) * (i + 2))).to(torch.float32)
        cf = f * scale
        tail = torch.cat([cf.flip(1).cumsum(1).flip(1), cf.new_zeros(n, 1)], 1)  # tail[:, j] = cf[:, j:].sum
        elevated = torch.cat([tail[:, :1], tail[:, 1:] - torch.arange(1, d + 1, device=dev) * cf], 1)  # [n, d+1]

        # 2. The nearest "remainder-0" lattice point (all coordinates multiples of d+1), then the simplex that
        #    holds the pixel: rank[i] = position of coordinate i when the differences are sorted (descending).
        down = 1.0 / (d + 1)
        rounded = torch.round(elevated * down)
        rem0 = rounded * (d + 1)
        diff = elevated - rem0
        rank = rounded.sum(1, keepdim=True).int().repeat(1, d + 1)
        for j in range(d + 1):  # count the coordinates ahead of each one; ties go to the lower index
            rank[:, :j] += diff[:, :j] < diff[:, j : j + 1]
            rank[:, j + 1 :] += diff[:, j + 1 :] <= diff[:, j : j + 1]
        wrap = (rank < 0).int() - (rank > d).int()  # bring the point back onto the plane sum = 0
        rank = (rank + (d + 1) * wrap).long()
        rem0 += (d + 1) * wrap
        q0 = (rounded[:, :d] + wrap[:, :d]).long()  # rem0 / (d + 1)

        # 3. Barycentric coordinates of the pixel in its simplex (p.10).
        v = (elevated - rem0) * down
        bary = torch.zeros(n, d + 2, device=dev)
        bary.scatter_add_(1, d - rank, v)
        bary.scatter_add_(1, d - rank + 1, -v)
        bary[:, 0] += 1.0 + bary[:, d + 1]
        self.barycentric = bary[:, : d + 1].contiguous()
        self.elevated = elevated  # [n, d+1]: each pixel's position on the plane sum = 0 (for point_coordinates)

        # 4. The d+1 simplex corners as integer keys, packed into one integer each so that sorting can
        #    deduplicate them. Corner r is rem0 + canonical[r] permuted by rank, canonical[r] = (r, .., r,
        #    r-d-1, .., r-d-1): all its coordinates are = r (mod d+1). So a key is stored as its remainder r
        #    plus (d+1) x the mixed-radix number of q_i = (k_i - r) / (d+1) over the first d coordinates (the
        #    last is implied by sum = 0) - (d+1)^d times fewer values than the raw coordinates, which lets most
        #    lattices use int32. Going from corner r-1 to r, q drops by 1 on the coordinate of rank d-r+1.
        low = q0.amin(0) - 2  # corners have q0 or q0 - 1, their blur neighbours one more either way
        span = q0.amax(0) + 2 - low
        bits = math.log2(d + 1) + float(torch.log2(span.double()).sum())
        if bits >= 62:
            raise ValueError(
                f"the lattice keys do not fit in 64 bits (features span {span.tolist()} cells): a theta is too "
                "small for this image; use larger thetas or method='naive'"
            )
        stride = (d + 1) * torch.cumprod(torch.cat([span.new_ones(1), span[:-1]]), 0)
        stride_ext = torch.cat([stride, stride.new_zeros(1)])  # the implied coordinate has no stride
        # the coordinate of rank k loses its stride at corner d - k + 1, i.e. in column d - k of the steps
        drops = torch.zeros(n, d + 1, dtype=stride.dtype, device=dev).scatter_(1, d - rank, stride_ext.expand(n, -1))
        step = 1 - drops[:, :d]  # [n, d]: corner r-1 -> r
        base = ((q0 - low) * stride).sum(1, keepdim=True)
        keys = torch.cat([base, base + step.cumsum(1)], 1)  # [n, d+1]
        if bits < 31:  # most lattices fit in int32, which sorts about 3x faster
            keys, stride_ext = keys.int(), stride_ext.int()

        # 5. Deduplicate: sorted keys -> lattice point ids; the sort order groups the (pixel, corner) entries
        #    by lattice point, which is exactly the bag layout the splat needs.
        sorted_keys, order = torch.sort(keys.reshape(-1), stable=True)  # stable: pixels in order, as pydensecrf
        first = torch.ones_like(sorted_keys, dtype=torch.bool)
        first[1:] = sorted_keys[1:] != sorted_keys[:-1]
        ids = first.cumsum(0) - 1
        points = sorted_keys[first]  # [M] sorted keys of the lattice points
        self.point_keys, self.key_low, self.key_span = points, low, span  # to decode them (point_coordinates)
        self.num_points = m = points.numel()
        self.offsets = torch.empty_like(ids).scatter_(0, order, ids).view(n, d + 1)
        self.splat_pixels = order // (d + 1)
        self.splat_bags = torch.nonzero(first).squeeze(1)  # where each lattice point's entries start
        self.splat_weights = self.barycentric.reshape(-1).index_select(0, order)
        # pydensecrf's "magic scaling constant" (Adams): the lattice gains a factor 1 + 2^-d.
        self.slice_weights = self.barycentric / (1.0 + 2.0 ** (-d))

        # 6. Blur neighbours along each of the d+1 axes: key -+ (1, .., 1, -d, 1, .., 1) (-d at the axis),
        #    found by binary search among the sorted points. Moving by -1 (+1) changes the remainder by one;
        #    from remainder 0 (d) it wraps to d (0), and then every q moves by -1 (+1) too. Each blur pass is
        #    a bag of 3 per point (self 1, neighbours 1/2); a missing neighbour holds zero: weight 0.
        r = points % (d + 1)
        axis = stride_ext[:, None]  # [d+1, 1]
        left = torch.where(r == 0, points + d - stride.sum(), points - 1) + axis  # key - 1, axis + d
        right = torch.where(r == d, points - d + stride.sum(), points + 1) - axis  # key + 1, axis - d
        queries = torch.stack([left, right], 1)  # [d+1, 2, M]
        pos = torch.searchsorted(points, queries.reshape(-1)).clamp_(max=m - 1).view_as(queries)
        found = points.index_select(0, pos.reshape(-1)).view_as(queries) == queries
        itself = torch.arange(m, device=dev).expand(d + 1, 1, m)
        self.blur_index = torch.cat([itself, torch.where(found, pos, 0)], 1).transpose(1, 2).contiguous()
        self.blur_weights = torch.cat([torch.ones_like(itself, dtype=torch.float32), 0.5 * found], 1)
        self.blur_weights = self.blur_weights.transpose(1, 2).contiguous()  # [d+1, M, 3]

    # -- use (every mean-field iteration) --------------------------------------------------------------
    @property
    def multiply_adds(self) -> int:
        """The work of one ``filter`` call per value channel, counted from the gathers it runs: N (d+1) splat
        terms, (d+1) x M x 3 blur terms (a missing neighbour is a term of weight 0) and N (d+1) slice terms.
        Each pixel adds at most d+1 lattice points (M <= N (d+1)), so this is at most (d+1)(2 + 3(d+1)) N:
        O(N) (Adams et al. 2010), against N^2 for the exact filter. A count, not a clock: machine load
        cannot change it (lesson 07 asserts on it and only shows the time)."""
        return self.splat_weights.numel() + self.blur_weights.numel() + self.slice_weights.numel()

    def scaled(self, pre: torch.Tensor, post: torch.Tensor) -> "PermutohedralLattice":
        """The same lattice with per-pixel scales ``[N]`` folded into the splat and slice weights."""
        other = copy.copy(self)
        other.splat_weights = self.splat_weights * pre.index_select(0, self.splat_pixels)
        other.slice_weights = self.slice_weights * post[:, None]
        return other

    def point_coordinates(self) -> torch.Tensor:
        """int64 ``[M, d+1]``: the lattice points in use, as points of the plane ``sum(x) = 0`` of R^{d+1} (the
        frame of ``elevated``), decoded from their keys. Point m's coordinates are all congruent to its
        remainder r modulo d+1: ``k_i = r + (d+1) q_i``, the last one ``-sum`` of the others."""
        d = self.dim
        keys = self.point_keys.long()
        remainder, rest = keys % (d + 1), keys // (d + 1)
        coords = []
        for low, span in zip(self.key_low.tolist(), self.key_span.tolist()):  # the mixed-radix digits q_i - low_i
            coords.append(remainder + (d + 1) * (rest % span + low))
            rest = rest // span
        coords = torch.stack(coords, 1)
        return torch.cat([coords, -coords.sum(1, keepdim=True)], 1)

    def splat(self, values: torch.Tensor) -> torch.Tensor:
        """``[N, C] -> [M, C]``: every lattice point gathers the values of the pixels around it, each weighted
        by its barycentric weight for that corner (the first step of ``filter``)."""
        return F.embedding_bag(self.splat_pixels, values, self.splat_bags, mode="sum",
                               per_sample_weights=self.splat_weights.to(values.dtype))

    def blur_axis(self, lattice: torch.Tensor, axis: int) -> torch.Tensor:
        """``[M, C] -> [M, C]``: one pass of ``blur``, along lattice axis ``axis`` (0..d): each point keeps its
        value and adds half of each neighbour's along that axis (a missing neighbour holds zero)."""
        axis = validate.integer(axis, "axis", 0, self.dim)
        return F.embedding_bag(self.blur_index[axis], lattice, mode="sum",
                               per_sample_weights=self.blur_weights[axis].to(lattice.dtype))

    def slice(self, lattice: torch.Tensor) -> torch.Tensor:
        """``[M, C] -> [N, C]``: every pixel reads its d+1 corners back with its barycentric weights (scaled by
        pydensecrf's constant ``1 / (1 + 2^-d)``; the last step of ``filter``)."""
        return F.embedding_bag(self.offsets, lattice, mode="sum", per_sample_weights=self.slice_weights.to(lattice.dtype))

    def filter(self, values: torch.Tensor) -> torch.Tensor:
        """``[N, C] -> [N, C]``: splat onto the lattice, blur along each axis, slice back."""
        dtype = values.dtype
        # splat: lattice point m gathers sum of w * v over the (pixel, corner) entries that touch it
        lattice = F.embedding_bag(
            self.splat_pixels, values, self.splat_bags, mode="sum", per_sample_weights=self.splat_weights.to(dtype)
        )
        lattice = self.blur(lattice)
        # slice: pixel i reads its d+1 corners with its barycentric weights
        return F.embedding_bag(self.offsets, lattice, mode="sum", per_sample_weights=self.slice_weights.to(dtype))

    def blur(self, lattice: torch.Tensor) -> torch.Tensor:
        """``[M, C] -> [M, C]``: value + (left + right) / 2 along each of the d+1 axes, in pydensecrf's order."""
        for index, weights in zip(self.blur_index, self.blur_weights.to(lattice.dtype)):
            lattice = F.embedding_bag(index, lattice, mode="sum", per_sample_weights=weights)
        return lattice


class LatticeStack:
    """Several lattices over the same N pixels as one filter: ``filter(v) = sum_k K_k v``.

    Their splats become one gather into the stacked lattice points and their slices one gather of
    ``sum_k (d_k + 1)`` corners per pixel: one ``[N, C]`` output per call instead of one per kernel (on a CPU
    every fresh ``[N, C]`` buffer costs page faults, and the sum costs another pass).
    """

    def __init__(self, lattices: list[PermutohedralLattice]):
        self.lattices = lattices
        self.num_pixels = lattices[0].num_pixels
        starts = [0]
        for lattice in lattices:
            starts.append(starts[-1] + lattice.num_points)
        self._starts = starts
        entries = [0] + [lat.splat_pixels.numel() for lat in lattices[:-1]]
        entry_starts = torch.tensor(entries).cumsum(0).tolist()
        self._splat_pixels = torch.cat([lat.splat_pixels for lat in lattices])
        self._splat_bags = torch.cat([lat.splat_bags + e for lat, e in zip(lattices, entry_starts)])
        self._splat_weights = torch.cat([lat.splat_weights for lat in lattices])
        self._offsets = torch.cat([lat.offsets + s for lat, s in zip(lattices, starts)], 1)
        self._slice_weights = torch.cat([lat.slice_weights for lat in lattices], 1)

    @property
    def multiply_adds(self) -> int:
        """The work of one ``filter`` call per value channel: its gathers hold the terms of every lattice."""
        return sum(lattice.multiply_adds for lattice in self.lattices)

    def filter(self, values: torch.Tensor) -> torch.Tensor:
        dtype = values.dtype
        stacked = F.embedding_bag(
            self._splat_pixels, values, self._splat_bags, mode="sum", per_sample_weights=self._splat_weights.to(dtype)
        )
        bounds = zip(self._starts, self._starts[1:])
        stacked = torch.cat([lat.blur(stacked[a:b]) for lat, (a, b) in zip(self.lattices, bounds)])
        return F.embedding_bag(self._offsets, stacked, mode="sum", per_sample_weights=self._slice_weights.to(dtype))

