"""The discriminative loss: pixel embeddings that cluster into instances (lesson 12).

De Brabandere, Neven & Van Gool, "Semantic instance segmentation with a discriminative loss function",
CVPR Workshops 2017. A network maps every pixel ``i`` to a point ``x_i`` in a D-dimensional embedding space.
In one image with ``C`` instances, instance ``c`` has ``N_c`` pixels and the mean embedding ``mu_c``
(its *centre*). Three terms, with the hinge ``[z]_+ = max(0, z)`` and the Euclidean norm:

* pull (the paper's variance term)  ``L_var  = 1/C sum_c 1/N_c sum_{i in c} [||mu_c - x_i|| - delta_v]_+^2``:
  an embedding farther than ``delta_v`` from its centre is pulled towards it;
* push (the distance term)  ``L_dist = 1/(C (C - 1)) sum_{cA != cB} [2 delta_d - ||mu_cA - mu_cB||]_+^2``:
  two centres closer than ``2 delta_d`` are pushed apart (0 when ``C < 2``: nothing to push);
* regularisation  ``L_reg = 1/C sum_c ||mu_c||``: a weak pull of the centres towards the origin, so the
  embeddings stay bounded;

``L = alpha L_var + beta L_dist + gamma L_reg`` (the paper: ``alpha = beta = 1``, ``gamma = 0.001``). The hinges
make the loss 0 as soon as every embedding lies within ``delta_v`` of its centre and the centres are ``2
delta_d`` apart; with ``delta_d > 2 delta_v`` every embedding is then closer to all embeddings of its own
instance than to any embedding of another one, so a threshold of the distances finds the instances
(``segedu.clustering``).

Only instance pixels take part: background (0) and ignored pixels (``ignore_index``, 255) belong to no
instance. Instance ids are any other integers, not necessarily consecutive, and name instances *per image*:
id 3 in image 0 and id 3 in image 1 are two different instances. The terms are computed per image, as in the
paper, and averaged over the images that hold at least one instance (an image without any has no term).

Everything is one pass of ``index_add`` / ``unique`` over the whole batch: no Python loop over pixels, images
or instances. Norms of zero vectors get a zero gradient (``safe_norm``) instead of NaN.
"""

from __future__ import annotations

import torch

from segedu import validate

__all__ = ["DISCRIMINATIVE_DEFAULTS", "safe_norm", "discriminative_terms", "discriminative_loss"]

# The paper's hyper-parameters (Sec. 4: delta_v = 0.5, delta_d = 1.5, alpha = beta = 1, gamma = 0.001).
DISCRIMINATIVE_DEFAULTS = dict(delta_v=0.5, delta_d=1.5, alpha=1.0, beta=1.0, gamma=0.001)


def safe_norm(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Euclidean norm along ``dim`` with a gradient of 0 (not NaN) where the vector is 0.

    ``sqrt`` has an infinite slope at 0; two coinciding centres (a push term at its maximum) would otherwise
    turn every gradient into NaN. The value is exact: ``sqrt`` of the sum of squares.
    """
    squared = (x * x).sum(dim)
    positive = squared > 0
    # The unused branch of ``where`` must stay finite: its gradient is multiplied by 0, and 0 * inf is NaN.
    return torch.where(positive, squared.clamp_min(torch.finfo(squared.dtype).tiny).sqrt(), torch.zeros_like(squared))


def _check(embeddings, instances, ignore_index, delta_v, delta_d, alpha, beta, gamma):
    validate.tensor(embeddings, "embeddings", 4, dtype="floating", layout="[B, D, H, W]")
    validate.tensor(instances, "instances", 3, dtype="integer", layout="[B, H, W] of instance ids")
    if instances.shape != embeddings.shape[:1] + embeddings.shape[2:]:
        raise ValueError(
            f"instances must be [B, H, W] = {(embeddings.shape[0], *embeddings.shape[2:])} to match embeddings "
            f"[B, D, H, W] = {tuple(embeddings.shape)}, got shape {tuple(instances.shape)}"
        )
    if instances.device != embeddings.device:
        raise ValueError(f"instances must be on the embeddings' device {embeddings.device}, got {instances.device}")
    ignore_index = validate.ignore_index(ignore_index)
    delta_v = validate.number(delta_v, "delta_v", minimum=0)
    delta_d = validate.number(delta_d, "delta_d", minimum=0)
    weights = [validate.number(w, name, minimum=0) for w, name in ((alpha, "alpha"), (beta, "beta"), (gamma, "gamma"))]
    return ignore_index, delta_v, delta_d, weights


def discriminative_terms(
    embeddings: torch.Tensor,
    instances: torch.Tensor,
    delta_v: float = 0.5,
    delta_d: float = 1.5,
    ignore_index: int | None = 255,
) -> dict[str, torch.Tensor]:
    """The three terms of the discriminative loss, per image (see the module text for the formulas).

    Args:
        embeddings: float ``[B, D, H, W]``, one D-dimensional embedding per pixel.
        instances: integer ``[B, H, W]``: 0 = background, ``ignore_index`` = ignored, any other value names an
            instance of that image.
        delta_v: the pull margin (embeddings within ``delta_v`` of their centre are not pulled).
        delta_d: the push margin (centres more than ``2 delta_d`` apart are not pushed).
        ignore_index: a label that belongs to no instance (``None``: only 0 is left out).

    Returns:
        ``{"pull", "push", "reg"}``: float ``[B]`` each (0 for an image without instances), ``"instances"``:
        int64 ``[B]``, the number of instances ``C`` of each image, and ``"centres"``: float ``[M, D]``, the
        mean embedding of each of the ``M`` instances of the batch, image by image, ids in increasing order.
    """
    ignore_index, delta_v, delta_d, _ = _check(embeddings, instances, ignore_index, delta_v, delta_d, 1, 1, 1)
    x = embeddings.float() if embeddings.dtype in (torch.float16, torch.bfloat16) else embeddings
    B, D = x.shape[:2]
    points = x.permute(0, 2, 3, 1).reshape(-1, D)  # [B*H*W, D]
    ids = instances.reshape(B, -1).long()
    valid = ids != 0
    if ignore_index is not None:
        valid &= ids != ignore_index
    image = torch.arange(B, device=ids.device)[:, None].expand_as(ids)
    # One cluster per (image, id) pair: unique over keys image * span + (id - lowest id).
    low = ids[valid].min() if bool(valid.any()) else ids.new_zeros(())
    span = (ids[valid].max() - low + 1) if bool(valid.any()) else ids.new_ones(())
    keys = (image * span + ids - low)[valid]
    clusters, member = torch.unique(keys, return_inverse=True)  # sorted: image by image, ids increasing
    M = len(clusters)
    owner = clusters // span  # [M] the image of each cluster
    x_valid = points[valid.reshape(-1)]  # [P, D]
    count = torch.zeros(M, dtype=x.dtype, device=x.device).index_add_(0, member, torch.ones_like(x_valid[:, 0]))
    centres = torch.zeros(M, D, dtype=x.dtype, device=x.device).index_add_(0, member, x_valid) / count[:, None]
    per_image = torch.zeros(B, dtype=torch.int64, device=x.device).index_add_(0, owner, torch.ones_like(owner))
    C = per_image.to(x.dtype)

    # Pull: the hinge per pixel, averaged within each instance, then over the instances of the image.
    hinge = (safe_norm(centres[member] - x_valid) - delta_v).clamp_min(0) ** 2  # [P]
    pull_c = torch.zeros(M, dtype=x.dtype, device=x.device).index_add_(0, member, hinge) / count
    pull = torch.zeros(B, dtype=x.dtype, device=x.device).index_add_(0, owner, pull_c) / C.clamp_min(1)

    # Push: every ordered pair of different instances of one image; M is small (the instances of a batch).
    same_image = (owner[:, None] == owner[None, :]) & ~torch.eye(M, dtype=torch.bool, device=x.device)
    gap = (2 * delta_d - safe_norm(centres[:, None, :] - centres[None, :, :])).clamp_min(0) ** 2  # [M, M]
    pairs = torch.zeros(B, dtype=x.dtype, device=x.device).index_add_(0, owner, (gap * same_image).sum(1))
    push = pairs / (C * (C - 1)).clamp_min(1)  # C < 2: no pair, 0

    reg_c = safe_norm(centres)
    reg = torch.zeros(B, dtype=x.dtype, device=x.device).index_add_(0, owner, reg_c) / C.clamp_min(1)
    return {"pull": pull, "push": push, "reg": reg, "instances": per_image, "centres": centres}


def discriminative_loss(
    embeddings: torch.Tensor,
    instances: torch.Tensor,
    delta_v: float = 0.5,
    delta_d: float = 1.5,
    alpha: float = 1.0,
    beta: float = 1.0,
    gamma: float = 0.001,
    ignore_index: int | None = 255,
    reduction: str = "mean",
) -> torch.Tensor:
    """``alpha L_var + beta L_dist + gamma L_reg`` (De Brabandere et al., 2017; see the module text).

    Args:
        embeddings: float ``[B, D, H, W]``.
        instances: integer ``[B, H, W]`` (0 = background, ``ignore_index`` = ignored, other values: instances).
        delta_v, delta_d: the pull and push margins (the paper: 0.5 and 1.5).
        alpha, beta, gamma: the weights of the pull, push and regularisation terms (the paper: 1, 1, 0.001).
        ignore_index: a label that belongs to no instance (255, VOC's void), or ``None``.
        reduction: ``"mean"`` over the images holding at least one instance (0, still attached to the graph,
            when none does), ``"sum"`` over the images, or ``"none"``: the per-image loss ``[B]``.

    Returns:
        the loss: a scalar, or ``[B]`` with ``reduction="none"``.
    """
    _, _, _, (alpha, beta, gamma) = _check(embeddings, instances, ignore_index, delta_v, delta_d, alpha, beta, gamma)
    validate.choice(reduction, "reduction", ("mean", "sum", "none"))
    terms = discriminative_terms(embeddings, instances, delta_v, delta_d, ignore_index)
    per_image = alpha * terms["pull"] + beta * terms["push"] + gamma * terms["reg"]
    if reduction == "none":
        return per_image
    if reduction == "sum":
        return per_image.sum()
    present = terms["instances"] > 0
    # Without instances every term is an empty sum, still attached to the graph: backward() works on any batch.
    return per_image.sum() / present.sum().clamp_min(1)
