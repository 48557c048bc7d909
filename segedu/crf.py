"""The fully connected CRF with Gaussian edge potentials, and its mean-field inference.

Krähenbühl & Koltun, "Efficient Inference in Fully Connected CRFs with Gaussian Edge Potentials",
NeurIPS 2011; used by DeepLab v1/v2 (Chen et al., ICLR 2015, TPAMI 2017) to sharpen the blurry output of a
convnet.

**The model.** Every pixel ``i`` takes a label ``x_i``. The Gibbs energy of a labelling is

    E(x) = sum_i psi_u(x_i) + sum_{i<j} mu(x_i, x_j) k(f_i, f_j)

* unary ``psi_u(x_i) = -log P(x_i)``: the convnet's belief (``probs``);
* Potts compatibility ``mu(l, l') = [l != l']``: a pair pays only when its labels differ;
* the kernel ``k`` is a sum of two Gaussians over features ``f = (position p, colour I)``:

      w_bilateral exp(-|p_i - p_j|^2 / 2 theta_alpha^2 - |I_i - I_j|^2 / 2 theta_beta^2)   (appearance)
    + w_gaussian  exp(-|p_i - p_j|^2 / 2 theta_gamma^2)                                     (smoothness)

  The appearance kernel says "nearby pixels of similar colour should share a label", so label edges move to
  colour edges; the smoothness kernel removes small isolated regions.

**Mean-field inference** replaces ``P(x)`` by a product of per-pixel distributions ``Q_i`` and iterates

    Q_i(l) <- softmax_l( -psi_u(l) + sum_kernels w sum_j k(f_i, f_j) Q_j(l) )

(the Potts term ``-w sum_j k_ij (1 - Q_j(l))`` differs from ``+w sum_j k_ij Q_j(l)`` by a constant per pixel,
which the softmax ignores). The only expensive part is ``sum_j k(f_i, f_j) Q_j``: a Gaussian filter in
feature space, over all N pixels for each of the N pixels, O(N^2). Two ways to compute it live here:

* ``method="naive"``: the exact sum, a dense ``[N, N]`` kernel matrix (kept for small images, recomputed in
  blocks of rows for larger ones): O(N^2) time - for small images and for teaching;
* ``method="permutohedral"``: the permutohedral lattice of Adams, Baek & Davis ("Fast High-Dimensional
  Filtering Using the Permutohedral Lattice", Eurographics 2010), in ``segedu.ops.permutohedral``, O(N d^2):
  *splat* each pixel's values onto the d+1 corners of its enclosing simplex of a lattice in feature space,
  *blur* the lattice with [1 2 1] along its d+1 axes, *slice* the values back at the pixels (barycentric
  interpolation). It approximates ``sum_j exp(-|f_i - f_j|^2 / 2) v_j`` (up to a constant factor and a few
  per cent of error).

**Matching pydensecrf** (the reference implementation, ``pydensecrf2`` on PyPI): the parameters mean the same as
``DenseCRF2D.addPairwiseBilateral(sxy=theta_alpha, srgb=theta_beta, compat=w_bilateral)`` and
``addPairwiseGaussian(sxy=theta_gamma, compat=w_gaussian)``, the unary is
``pydensecrf.utils.unary_from_softmax(probs)`` (``-log`` of the probabilities clipped at 1e-5), the features
are ``(x / theta, y / theta[, r / theta_beta, g / theta_beta, b / theta_beta])`` in that order, and the
kernels are normalised symmetrically as in its default ``NORMALIZE_SYMMETRIC``: the message of kernel ``K``
is ``D^-1/2 K D^-1/2 Q`` with ``D = diag(K 1)``, so each pixel's total kernel weight is about 1 whatever
the image size and the theta (and the lattice's constant factor cancels). The sum includes ``j = i``, as
pydensecrf's filter does. The lattice here performs the same arithmetic as pydensecrf's C++ lattice (same
elevation, rounding, blur order and scaling), written with vectorized torch ops, so both give the same
numbers up to float rounding - except for one quirk of the C++ SSE code that we do not copy: when H * W is
not a multiple of 4 it pads the pixels with zero features and inserts their lattice points, which then
relay blur values (differences of up to ~1% near the zero feature, i.e. dark pixels near the top-left).

Vectorized: no Python loop runs over pixels or lattice points (only over the d+1 lattice axes, the images of
a batch and the mean-field iterations). The lattice is built once per image and reused for every
iteration; its splat, blur and slice are weighted gathers (``F.embedding_bag``), on CPU or CUDA, and the
lattices of the two kernels are stacked so that each iteration runs one splat and one slice
(``LatticeStack``). Every step is differentiable in the probabilities (a CRF-as-RNN layer, Zheng et al.,
ICCV 2015).

Shapes: ``probs`` float ``[B, C, H, W]`` (or ``[C, H, W]``), ``image`` uint8 ``[B, 3, H, W]`` (or
``[3, H, W]``), inside: values ``[N, C]`` with ``N = H * W`` pixels in row-major order, features ``[N, d]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segedu import validate
from segedu.ops.permutohedral import LatticeStack, PermutohedralLattice

__all__ = [
    "dense_crf",
    "DenseCRF",
    "filter_work",
    "crf_energy",
    "gaussian_features",
    "bilateral_features",
    "pairwise_kernel",
    "boundary_contrast",
    "NaiveGaussianFilter",
    "mean_field",
    "METHODS",
    "UNARY_CLIP",
    "NAIVE_MAX_PIXELS",
    "NAIVE_CACHE_PIXELS",
]

METHODS = ("auto", "naive", "permutohedral")
UNARY_CLIP = 1e-5
"""Probabilities are clipped to at least this before ``-log`` (as ``pydensecrf.utils.unary_from_softmax``)."""
NAIVE_MAX_PIXELS = 1024
"""``method="auto"`` uses the exact naive filter up to this many pixels (32 x 32), the lattice above."""
NAIVE_CACHE_PIXELS = 2048
"""The naive filter keeps its ``[N, N]`` kernel matrix up to this many pixels (16 MB in float32)."""
_NAIVE_CHUNK_ELEMENTS = 1 << 22  # rows x N kernel entries computed at once above that (16 MB)


# --------------------------------------------------------------------------- features


def gaussian_features(height: int, width: int, theta_gamma: float, device=None) -> torch.Tensor:
    """Smoothness-kernel features: float32 ``[H * W, 2]`` = ``(x / theta_gamma, y / theta_gamma)`` per pixel,
    pixels in row-major order, x = column index, y = row index (pydensecrf's order)."""
    height = validate.positive_int(height, "height")
    width = validate.positive_int(width, "width")
    theta_gamma = validate.positive_number(theta_gamma, "theta_gamma")
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float32, device=device),
        torch.arange(width, dtype=torch.float32, device=device),
        indexing="ij",
    )
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], 1) / float(theta_gamma)


def bilateral_features(image: torch.Tensor, theta_alpha: float, theta_beta: float) -> torch.Tensor:
    """Appearance-kernel features of one uint8 image ``[3, H, W]``: float32 ``[H * W, 5]`` =
    ``(x / theta_alpha, y / theta_alpha, r / theta_beta, g / theta_beta, b / theta_beta)`` (colours in 0..255)."""
    image = _check_image(image, batched=False)
    theta_alpha = validate.positive_number(theta_alpha, "theta_alpha")
    theta_beta = validate.positive_number(theta_beta, "theta_beta")
    _, height, width = image.shape
    position = gaussian_features(height, width, theta_alpha, image.device)
    colour = image.reshape(3, -1).t().to(torch.float32) / float(theta_beta)
    return torch.cat([position, colour], 1)


def pairwise_kernel(
    image: torch.Tensor,
    pixel: tuple[int, int],
    w_bilateral: float = 10.0,
    theta_alpha: float = 80.0,
    theta_beta: float = 13.0,
    w_gaussian: float = 3.0,
    theta_gamma: float = 3.0,
) -> dict[str, torch.Tensor]:
    """The (unnormalised) pairwise kernel between ``pixel = (row, col)`` and every pixel of ``image``.

    Returns float32 ``[H, W]`` maps ``{"bilateral", "gaussian", "total"}``: ``w_bilateral exp(-...)``,
    ``w_gaussian exp(-...)`` and their sum - the price a pair pays when its labels differ (Potts).
    """
    image = _check_image(image, batched=False)
    _, height, width = image.shape
    if not isinstance(pixel, (tuple, list)):
        raise TypeError(f"pixel must be a pair (row, col) of ints, got {type(pixel).__name__}")
    if len(pixel) != 2:
        raise ValueError(f"pixel must be a pair (row, col) of ints, got {pixel!r}")
    row, col = (validate.integer(v, "pixel") for v in pixel)
    if not (0 <= row < height and 0 <= col < width):
        raise ValueError(f"pixel must be (row, col) inside the {height}x{width} image, got {pixel}")
    index = row * width + col
    maps = {}
    for name, feats, weight in (
        ("bilateral", bilateral_features(image, theta_alpha, theta_beta), w_bilateral),
        ("gaussian", gaussian_features(height, width, theta_gamma, image.device), w_gaussian),
    ):
        maps[name] = (weight * torch.exp(-0.5 * ((feats - feats[index]) ** 2).sum(1))).view(height, width)
    maps["total"] = maps["bilateral"] + maps["gaussian"]
    return maps


def boundary_contrast(mask: torch.Tensor, image: torch.Tensor) -> float:
    """How strongly the boundary of ``mask`` follows edges of ``image``: the mean Sobel gradient magnitude of
    the grey image (0..255 scale) on the mask's inner boundary pixels (4-neighbour, image border excluded).

    ``mask`` bool or integer ``[H, W]`` (non-zero = inside), ``image`` uint8 ``[3, H, W]``. A box drawn
    roughly around an object crosses flat regions (low contrast); the CRF moves the boundary onto the
    object's edges (high contrast). NaN if the mask has no boundary.
    """
    image = _check_image(image, batched=False)
    validate.tensor(mask, "mask", 2, layout="[H, W]")
    if mask.shape != image.shape[1:]:
        raise ValueError(
            f"mask must be [H, W] and image [3, H, W] of the same size, got {tuple(mask.shape)} "
            f"and {tuple(image.shape)}"
        )
    grey = image.float().mean(0)[None, None]
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=image.device) / 8
    gx = F.conv2d(grey, sobel[None, None], padding=1)
    gy = F.conv2d(grey, sobel.t()[None, None], padding=1)
    magnitude = (gx**2 + gy**2).sqrt()[0, 0]
    m = (mask != 0).float()[None, None]
    eroded = torch.minimum(-F.max_pool2d(-m, (1, 3), 1, (0, 1)), -F.max_pool2d(-m, (3, 1), 1, (1, 0)))  # 4-nbrs
    boundary = (m - eroded)[0, 0] > 0
    boundary[0, :] = boundary[-1, :] = boundary[:, 0] = boundary[:, -1] = False  # the border is not an edge
    return float(magnitude[boundary].mean()) if boundary.any() else float("nan")


# --------------------------------------------------------------------------- the exact filter


class NaiveGaussianFilter:
    """The exact Gaussian filter ``out_i = post_i sum_j exp(-|f_i - f_j|^2 / 2) pre_j v_j``, O(N^2).

    ``features`` float ``[N, d]``; ``filter(values [N, C]) -> [N, C]``. Up to ``NAIVE_CACHE_PIXELS`` pixels the
    ``[N, N]`` kernel matrix is computed once and kept (mean field filters the same image again and again);
    above, blocks of rows are recomputed at every call so that memory stays O(chunk x N).
    """

    def __init__(self, features: torch.Tensor, pre=None, post=None, _matrix=None):
        validate.tensor(features, "features", 2, dtype="floating", layout="[N, d]")
        self.features, self.pre, self.post = features, pre, post
        self.num_pixels = n = features.shape[0]
        self.chunk = max(1, _NAIVE_CHUNK_ELEMENTS // max(1, n))
        if _matrix is None and n <= NAIVE_CACHE_PIXELS:
            _matrix = self._rows(0, n)
        self._matrix = _matrix

    def _rows(self, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` of the kernel matrix ``exp(-|f_i - f_j|^2 / 2)``, ``[stop - start, N]``."""
        f = self.features
        # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b: one matmul instead of a [rows, N, d] difference tensor
        sq = (f * f).sum(1)
        dist2 = (sq[start:stop, None] + sq[None, :] - 2.0 * f[start:stop] @ f.t()).clamp_(min=0)
        return torch.exp(-0.5 * dist2)

    @property
    def multiply_adds(self) -> int:
        """The work of one ``filter`` call per value channel: each of the N outputs sums N kernel-weighted values,
        N^2 terms (the per-pixel scalings ``pre``/``post``, 2N, left out). A count, not a clock (lesson 07)."""
        return self.num_pixels**2

    def scaled(self, pre: torch.Tensor, post: torch.Tensor) -> "NaiveGaussianFilter":
        """The same filter with per-pixel scales ``[N]`` applied before and after (used for normalisation)."""
        return NaiveGaussianFilter(self.features, pre, post, self._matrix)

    def filter(self, values: torch.Tensor) -> torch.Tensor:
        v = values if self.pre is None else values * self.pre.to(values.dtype)[:, None]
        if self._matrix is not None:
            out = self._matrix.to(values.dtype) @ v
        else:  # a loop over blocks of rows, not over pixels
            n = self.num_pixels
            blocks = [self._rows(i, min(n, i + self.chunk)).to(values.dtype) @ v for i in range(0, n, self.chunk)]
            out = torch.cat(blocks)
        return out if self.post is None else out * self.post.to(values.dtype)[:, None]


# --------------------------------------------------------------------------- mean field


def mean_field(unary: torch.Tensor, kernels: list, iterations: int) -> torch.Tensor:
    """Mean-field inference: ``Q <- softmax(-unary + sum_k K_k Q)``, starting from ``softmax(-unary)``.

    ``unary`` float ``[N, C]``; ``kernels``: filters with ``filter(values [N, C]) -> [N, C]`` that already
    include their weight and normalisation; returns ``Q`` ``[N, C]``.
    """
    q = torch.softmax(-unary, dim=1)
    if iterations == 0 or not kernels:
        return q
    if len(kernels) > 1 and all(isinstance(k, PermutohedralLattice) for k in kernels):
        kernels = [LatticeStack(kernels)]  # one splat and one slice for all of them
    # The kernels are linear and non-negative and Q sums to 1 over the classes, so every message lies in
    # [0, bound_i] with bound = sum_k K_k 1, and the messages of a pixel sum to bound_i. Hence
    # exp(m - bound - unary) cannot overflow, and the best class keeps at least exp(-bound) * UNARY_CLIP:
    # the softmax needs no per-pixel maximum (a slow reduction over the short class axis). Huge kernel
    # weights (bound > 50, where exp(-bound) nears float32's limits) take the plain softmax.
    bound = sum(kernel.filter(torch.ones_like(q[:, :1])) for kernel in kernels)
    plain = float(bound.max()) > 50.0
    shift = unary + bound
    # Without autograd the buffers are reused in place (fresh 16 MB buffers cost page faults on a CPU).
    in_place = not (torch.is_grad_enabled() and unary.requires_grad)
    for _ in range(iterations):
        message = kernels[0].filter(q)
        for kernel in kernels[1:]:
            message += kernel.filter(q)
        if plain:
            q = torch.softmax(message - unary, dim=1)
        else:
            message = message.sub_(shift).exp_()  # = exp(m - bound) * probabilities
            total = message.sum(1, keepdim=True)
            q = message.div_(total) if in_place else message / total
    return q


def _filters(image, height, width, params, method, dtype) -> list:
    """``(weight, filter)`` for each kernel of non-zero weight of one image ``[3, H, W]``, not yet normalised."""
    if method == "auto":
        method = "naive" if height * width <= NAIVE_MAX_PIXELS else "permutohedral"
    build = NaiveGaussianFilter if method == "naive" else PermutohedralLattice
    filters = []
    for weight, features in (
        (params["w_bilateral"], lambda: bilateral_features(image, params["theta_alpha"], params["theta_beta"])),
        (params["w_gaussian"], lambda: gaussian_features(height, width, params["theta_gamma"], image.device)),
    ):
        if weight != 0:  # the naive filter works in the dtype of the probabilities
            filters.append((weight, build(features().to(dtype))))
    return filters


def _kernels(image, height, width, params, method, dtype) -> list:
    """The normalised, weighted filters of one image ``[3, H, W]``: each ``w D^-1/2 K D^-1/2``."""
    kernels = []
    for weight, kernel in _filters(image, height, width, params, method, dtype):
        ones = torch.ones(height * width, 1, dtype=dtype, device=image.device)
        # symmetric normalisation (pydensecrf's NORMALIZE_SYMMETRIC): D^-1/2 K D^-1/2, D = diag(K 1)
        norm = torch.rsqrt(kernel.filter(ones)[:, 0] + 1e-20)
        kernels.append(kernel.scaled(norm, weight * norm))
    return kernels


def dense_crf(
    probs: torch.Tensor,
    image: torch.Tensor,
    iterations: int = 10,
    w_bilateral: float = 10.0,
    theta_alpha: float = 80.0,
    theta_beta: float = 13.0,
    w_gaussian: float = 3.0,
    theta_gamma: float = 3.0,
    method: str = "auto",
) -> torch.Tensor:
    """Refine softmax probabilities with a fully connected CRF (Krähenbühl & Koltun, NeurIPS 2011).

    Args:
        probs: float ``[C, H, W]`` or ``[B, C, H, W]``, probabilities over C classes (non-negative, summing
            to 1 over C).
        image: uint8 ``[3, H, W]`` or ``[B, 3, H, W]`` (RGB, 0..255), the same B, H, W and device as ``probs``.
        iterations: mean-field iterations (0 returns the clipped, renormalised ``probs``).
        w_bilateral, theta_alpha, theta_beta: weight, position and colour scale (pixels, intensity levels) of
            the appearance kernel (pydensecrf ``addPairwiseBilateral(sxy, srgb, compat)``).
        w_gaussian, theta_gamma: weight and position scale of the smoothness kernel
            (``addPairwiseGaussian(sxy, compat)``).
        method: ``"naive"`` (exact, O(N^2)), ``"permutohedral"`` (the lattice, O(N)) or ``"auto"``
            (naive up to ``NAIVE_MAX_PIXELS`` pixels, else the lattice).

    Returns:
        refined probabilities, the shape and dtype of ``probs``. Differentiable in ``probs``.
    """
    params = dict(
        w_bilateral=w_bilateral, theta_alpha=theta_alpha, theta_beta=theta_beta,
        w_gaussian=w_gaussian, theta_gamma=theta_gamma,
    )  # fmt: skip
    probs, image, batched = _check_inputs(probs, image, iterations, params, method)
    b, c, h, w = probs.shape
    out = []
    for k in range(b):  # one lattice per image
        unary = torch.log(probs[k].reshape(c, h * w).clamp(min=UNARY_CLIP)).neg_().t().contiguous()  # [N, C]
        kernels = _kernels(image[k], h, w, params, method, probs.dtype)
        out.append(mean_field(unary, kernels, iterations).t().reshape(c, h, w))
    return torch.stack(out) if batched else out[0]


def filter_work(
    image: torch.Tensor,
    w_bilateral: float = 10.0,
    theta_alpha: float = 80.0,
    theta_beta: float = 13.0,
    w_gaussian: float = 3.0,
    theta_gamma: float = 3.0,
    method: str = "auto",
) -> int:
    """The counted work of one mean-field message on ``image`` uint8 ``[3, H, W]``: the multiply-adds per class
    of the filters ``dense_crf`` builds for it (their ``multiply_adds``, summed over the kernels of non-zero
    weight): N^2 per kernel for ``"naive"``; for ``"permutohedral"`` at most (d+1)(2 + 3(d+1)) N per kernel,
    d = 5 (appearance) and 2 (smoothness): 153 N for both. ``dense_crf`` runs ``iterations x C`` times this (plus
    one normalising filter per kernel). Unlike a timing it does not change when other programs load the machine
    (lesson 07)."""
    params = dict(
        w_bilateral=w_bilateral, theta_alpha=theta_alpha, theta_beta=theta_beta,
        w_gaussian=w_gaussian, theta_gamma=theta_gamma,
    )  # fmt: skip
    _check_params(0, params, method)
    _, height, width = _check_image(image, batched=False).shape
    return sum(f.multiply_adds for _, f in _filters(image, height, width, params, method, torch.float32))


def crf_energy(
    labels: torch.Tensor,
    probs: torch.Tensor,
    image: torch.Tensor,
    w_bilateral: float = 10.0,
    theta_alpha: float = 80.0,
    theta_beta: float = 13.0,
    w_gaussian: float = 3.0,
    theta_gamma: float = 3.0,
    method: str = "auto",
) -> torch.Tensor:
    """The Gibbs energy ``E(x)`` of labellings under the CRF that ``dense_crf`` runs mean field on.

    ``E(x) = sum_i -log P_i(x_i) + 1/2 sum_{i != j} [x_i != x_j] sum_k w_k Kn_k(i, j)`` with the normalised
    kernels ``Kn = D^-1/2 K D^-1/2`` (every unordered pair once). Computed with two filterings per kernel:
    ``sum_{i,j} [x_i != x_j] Kn_ij = sum_i (Kn 1)_i - sum_i (Kn onehot(x))_i[x_i]`` (the ``i = j`` terms
    cancel). ``labels`` int64 ``[H, W]`` or ``[B, H, W]``; ``probs``/``image`` as in ``dense_crf``; returns
    float ``[B]`` (or a scalar for unbatched input).
    """
    params = dict(
        w_bilateral=w_bilateral, theta_alpha=theta_alpha, theta_beta=theta_beta,
        w_gaussian=w_gaussian, theta_gamma=theta_gamma,
    )  # fmt: skip
    probs, image, batched = _check_inputs(probs, image, 0, params, method)
    b, c, h, w = probs.shape
    validate.tensor(labels, "labels", dtype=torch.int64, layout="[H, W] or [B, H, W]")
    labels = labels if batched else labels.unsqueeze(0)
    if labels.shape != (b, h, w):
        raise ValueError(f"labels must have shape {(b, h, w)[0 if batched else 1:]}, got {tuple(labels.shape)}")
    if labels.min() < 0 or labels.max() >= c:
        raise ValueError(f"labels must lie in [0, {c}), got values in [{int(labels.min())}, {int(labels.max())}]")
    energies = []
    for k in range(b):
        x = labels[k].reshape(-1)
        unary = -torch.log(probs[k].reshape(c, -1).t().clamp(min=UNARY_CLIP))  # [N, C]
        energy = unary.gather(1, x[:, None]).sum()
        onehot = F.one_hot(x, c).to(probs.dtype)
        for kernel in _kernels(image[k], h, w, params, method, probs.dtype):
            same = kernel.filter(onehot).gather(1, x[:, None]).sum()
            total = kernel.filter(torch.ones_like(onehot[:, :1])).sum()
            energy = energy + 0.5 * (total - same)
        energies.append(energy)
    energies = torch.stack(energies)
    return energies if batched else energies[0]


class DenseCRF(nn.Module):
    """``dense_crf`` as a layer: ``DenseCRF(iterations=10, ...)(probs, image) -> refined probs``.

    The parameters are plain attributes (not learned); the call is differentiable in ``probs``.
    """

    def __init__(
        self,
        iterations: int = 10,
        w_bilateral: float = 10.0,
        theta_alpha: float = 80.0,
        theta_beta: float = 13.0,
        w_gaussian: float = 3.0,
        theta_gamma: float = 3.0,
        method: str = "auto",
    ):
        super().__init__()
        self.params = dict(
            iterations=iterations, w_bilateral=w_bilateral, theta_alpha=theta_alpha, theta_beta=theta_beta,
            w_gaussian=w_gaussian, theta_gamma=theta_gamma, method=method,
        )  # fmt: skip
        _check_params(iterations, {k: v for k, v in self.params.items() if k.startswith(("w_", "theta"))}, method)

    def forward(self, probs: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return dense_crf(probs, image, **self.params)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.params.items())


# --------------------------------------------------------------------------- input checks


def _check_params(iterations, params: dict, method) -> None:
    """``iterations`` an int >= 0, the ``w_*`` numbers >= 0, the ``theta_*`` numbers > 0, ``method`` in ``METHODS``."""
    validate.integer(iterations, "iterations", minimum=0)
    for name, value in params.items():
        if name.startswith("w_"):
            validate.number(value, name, minimum=0.0)
        else:
            validate.positive_number(value, name)
    validate.choice(method, "method", METHODS)


def _check_image(image, batched: bool = True) -> torch.Tensor:
    """A uint8 RGB image ``[3, H, W]`` (or a batch ``[B, 3, H, W]`` where ``batched``)."""
    layout = "[3, H, W] or [B, 3, H, W]" if batched else "[3, H, W]"
    validate.tensor(image, "image", (3, 4) if batched else 3, dtype=torch.uint8, layout=f"(RGB 0..255) {layout}")
    if image.shape[-3] != 3:
        raise ValueError(f"image must be {layout} (3 colour channels), got shape {tuple(image.shape)}")
    return image


def _check_inputs(probs, image, iterations, params, method):
    """-> (probs [B, C, H, W], image [B, 3, H, W], batched)."""
    _check_params(iterations, params, method)
    validate.tensor(probs, "probs", (3, 4), dtype="floating", layout="of probabilities [C, H, W] or [B, C, H, W]")
    image = _check_image(image)
    batched = probs.dim() == 4
    if image.dim() != probs.dim() or image.shape[-2:] != probs.shape[-2:] or image.shape[:-3] != probs.shape[:-3]:
        raise ValueError(
            f"image {tuple(image.shape)} must match probs {tuple(probs.shape)} in batch and size "
            f"(expected {tuple(probs.shape[:-3]) + (3,) + tuple(probs.shape[-2:])})"
        )
    if image.device != probs.device:
        raise ValueError(f"image and probs must be on the same device, got {image.device} and {probs.device}")
    if probs.numel() == 0:
        raise ValueError(f"probs must not be empty, got shape {tuple(probs.shape)}")
    with torch.no_grad():
        if not bool(torch.isfinite(probs).all()) or float(probs.min()) < 0:
            raise ValueError("probs must be finite and non-negative (softmax probabilities, not logits)")
        sums = probs.sum(dim=-3)
        worst = float((sums - 1).abs().max())
        if worst > 1e-3:
            raise ValueError(
                f"probs must sum to 1 over the class dimension (dim -3), but a pixel sums to "
                f"{float(sums.flatten()[(sums - 1).abs().argmax()]):.4f}; apply softmax(dim=-3) first"
            )
    if not batched:
        probs, image = probs.unsqueeze(0), image.unsqueeze(0)
    return probs, image, batched
