"""Boundary-based losses: errors weighted by distances to a boundary (Jadon 2020, Sec. III-C).

``hausdorff_dt_loss`` (the distance-transform form of the Hausdorff-distance loss) and
``shape_aware_loss``. Each takes logits and a target as described in ``segedu.losses``; the
distances come from the thresholded prediction (z > 0, or argmax) and the target, through the exact
Euclidean distance transform ``segedu.ops.distance.edt``, and carry no gradient.
``reduction="none"`` gives the per-pixel map ``[B, H, W]`` (0 at ignored pixels), ``"sum"`` its
sum, ``"mean"`` its mean over the non-ignored pixels.

Reference: Jadon, "A survey of loss functions for semantic segmentation", CIBCB 2020.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from segedu import validate
from segedu.losses.common import Batch, log_prob_of_target, one_hot, prepare, probabilities, reduce_pixels
from segedu.ops.distance import edt

__all__ = ["hausdorff_dt_loss", "shape_aware_loss"]


@torch.no_grad()
def _hard_masks(b: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Thresholded prediction and target as bool ``[B, K, H, W]`` masks.

    Prediction: z > 0 (binary) or argmax == c. Ignored pixels are False in
    both, so the distance maps built from them do not depend on the logits
    of ignored pixels.
    """
    if b.mode == "binary":
        pred = b.logits > 0
        true = b.labels[:, None] == 1
    else:
        classes = torch.arange(b.num_classes, device=b.logits.device)[None, :, None, None]
        pred = b.logits.argmax(dim=1, keepdim=True) == classes
        true = b.labels[:, None] == classes
    keep = b.valid[:, None]
    return pred & keep, true & keep


def _edt_dtype(dtype: torch.dtype) -> torch.dtype:
    """Distances in double for double logits, else float32 (also under AMP)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


@torch.no_grad()
def _distance_to_boundary(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Unsigned distance to the other side of the boundary, ``[..., H, W]``.

    For a pixel inside the mask: distance to the nearest pixel outside; for
    a pixel outside: distance to the nearest pixel inside. An image with no
    boundary (empty or full) gets 0 everywhere, as in MONAI's
    HausdorffDTLoss: there is nothing to measure a distance to.
    """
    flat = mask.reshape(-1, *mask.shape[-2:])
    distance = edt(flat, _edt_dtype(dtype)) + edt(~flat, _edt_dtype(dtype))
    # (one of the two terms is 0 at every pixel)
    return torch.nan_to_num(distance, posinf=0.0).reshape(mask.shape).to(dtype)


@torch.no_grad()
def _contour(mask: torch.Tensor) -> torch.Tensor:
    """Inner contour of bool ``[B, K, H, W]`` masks: mask pixels with a pixel
    outside the mask among their 8 neighbours (a 3x3 morphological erosion;
    max_pool2d pads with -inf, so the image border is not a contour)."""
    m = mask.float()
    eroded = -F.max_pool2d(-m, kernel_size=3, stride=1, padding=1)
    return mask & (eroded < 0.5)


def hausdorff_dt_loss(
    logits, target, mode="multiclass", ignore_index=255, reduction="mean", alpha=2.0
):
    r"""Hausdorff-distance loss, distance-transform form.

    Formula, per pixel i and class c:
        HD_i = mean_c (p_ic - g_ic)^2 (d_p(i)^alpha + d_g(i)^alpha),  loss = mean_i HD_i,
    where d_g is the distance from pixel i to the boundary of the target
    mask of class c and d_p the same for the thresholded prediction (z > 0,
    or argmax). Errors far from either boundary cost more, which is what
    the Hausdorff distance measures. Distances are constants (no gradient);
    an image without a boundary in a mask has distance 0 there. Ignored
    pixels count as outside every mask when the distances are built.

    Binary mode uses the foreground class only; without ignored pixels, two
    multiclass channels [0, z] give the binary loss of z (the distance to
    the boundary is the same for a mask and its complement).

    Reference: Karimi & Salcudean, "Reducing the Hausdorff distance in
    medical image segmentation with convolutional neural networks", IEEE TMI
    2019 (eq. 8); Jadon (2020), Sec. III-C.

    Shapes: see the module text. ``reduction="none"`` -> ``[B, H, W]``.
    """
    alpha = validate.number(alpha, "alpha", minimum=0.0)
    b = prepare(logits, target, mode, ignore_index, reduction)
    pred, true = _hard_masks(b)
    d_pred = _distance_to_boundary(pred, b.logits.dtype)
    d_true = _distance_to_boundary(true, b.logits.dtype)
    weight = d_pred**alpha + d_true**alpha
    p, g = probabilities(b), one_hot(b)
    return reduce_pixels(((p - g) ** 2 * weight).mean(dim=1), b, reduction)


def shape_aware_loss(logits, target, mode="multiclass", ignore_index=255, reduction="mean"):
    r"""Shape-aware loss: cross-entropy weighted by contour distance.

    Formula: loss = mean_i (1 + E_i) CE_i, with CE_i the pixel's
    cross-entropy (as ``binary_cross_entropy``) and E_i the Euclidean
    distance from pixel i to the target contour of its predicted class when
    i lies on the contour of the predicted region (E_i = 0 elsewhere).
    Jadon writes it -sum CE - sum E_i CE with CE = y log p; here both terms
    are positive. A predicted outline that strays far from the true outline
    is penalized in proportion to how far it strays.

    Contours are the inner contours (8-neighbour erosion) of the thresholded
    prediction and of the target, class by class (binary mode: background
    and foreground, which makes it equal to two multiclass channels [0, z]).
    A class with no target contour gives E = 0 (nothing to measure against).
    Ignored pixels belong to no class when contours are drawn.

    Reference: Jadon (2020), Sec. III-C; after Hayder, He, Salzmann,
    "Boundary-aware instance segmentation" (shape-aware), CVPR 2017.

    Shapes: see the module text. ``reduction="none"`` -> ``[B, H, W]``.
    """
    b = prepare(logits, target, mode, ignore_index, reduction)
    with torch.no_grad():
        if b.mode == "binary":
            classes = torch.arange(2, device=b.logits.device)[None, :, None, None]
            keep = b.valid[:, None]
            pred = ((b.logits > 0).long() == classes) & keep
            true = (b.labels[:, None] == classes) & keep
        else:
            pred, true = _hard_masks(b)
        true_contour = _contour(true)  # [B, C, H, W]
        distance = edt(true_contour.flatten(0, 1), _edt_dtype(b.logits.dtype))
        distance = distance.reshape(true_contour.shape)
        distance = torch.nan_to_num(distance, posinf=0.0)  # class with no contour
        # Each pixel has one predicted class, so at most one term is non-zero.
        e = (distance * _contour(pred)).sum(dim=1).to(b.logits.dtype)  # [B, H, W]
    return reduce_pixels((1.0 + e) * -log_prob_of_target(b), b, reduction)
