"""The segmentation losses of lesson 10, as functions and ``nn.Module`` s.

The table follows Jadon, "A survey of loss functions for semantic
segmentation" (CIBCB 2020), in its four families, one module each:

* distribution-based (a loss per pixel, averaged; ``distribution``):
  ``binary_cross_entropy`` (and its categorical form ``cross_entropy``),
  ``weighted_cross_entropy``, ``balanced_cross_entropy``, ``focal_loss``;
* region-based (soft overlap counts per class; ``region``): ``dice_loss``,
  ``sensitivity_specificity_loss``, ``tversky_loss``, ``focal_tversky_loss``,
  ``log_cosh_dice_loss``;
* boundary-based (errors weighted by distances; ``boundary``):
  ``hausdorff_dt_loss``, ``shape_aware_loss``;
* compounded (a distribution term plus a region term; ``compound``):
  ``combo_loss``, ``exp_log_loss``.

Lesson 12 adds ``discriminative`` (``discriminative_loss``, ``discriminative_terms``): not a loss of
logits against labels but of pixel embeddings against instance ids (De Brabandere et al., 2017), so it
has its own signature (see that module) and is not a row of ``LOSSES``.

``LOSSES`` (``table``) maps each name to ``LossInfo(function, family, formula)``;
``modules`` holds the ``nn.Module`` forms (``DiceLoss``, ...); ``common`` the
input checks and the pieces every loss shares (``prepare``, ``soft_counts``, ...).

Every loss has the signature::

    loss(logits, target, mode="multiclass", ignore_index=255, reduction="mean", **params)

except ``binary_cross_entropy``, whose default is ``mode="binary"`` (the
function named after binary cross-entropy computes it; ``cross_entropy`` is
the categorical form, default ``mode="multiclass"``). Logits in: the sigmoid
or softmax happens inside, where it can be computed stably.

Shapes:

* ``mode="binary"``: logits ``[B, 1, H, W]`` or ``[B, H, W]`` (one
  foreground logit per pixel, p = sigmoid); target ``[B, H, W]`` or
  ``[B, 1, H, W]`` holding 0, 1 and ``ignore_index``.
* ``mode="multiclass"``: logits ``[B, C, H, W]`` with C >= 2 (p = softmax over
  C); target integer ``[B, H, W]`` in ``0..C-1`` or ``ignore_index``. Class 0
  is the background, as in PASCAL VOC: the losses with a positive/negative
  weight (balanced CE, focal's alpha, Combo's beta) treat classes >= 1 as
  positive.

A channel count that does not fit the mode raises a ``ValueError`` that says
which mode (or which function) fits: ``[B, C, H, W]`` logits given to
``binary_cross_entropy`` could mean one sigmoid per channel or a softmax over
C, so it does not guess.

Pixels whose target is ``ignore_index`` contribute nothing: neither to the
value nor to any gradient. A batch whose pixels are all ignored gives 0 (a
tensor still attached to the graph, so ``backward()`` works).

Notation in the formulas: p = predicted probability, g = one-hot target,
sums run over every non-ignored pixel of the whole batch, per class c.
Soft counts: TP_c = sum p g, FP_c = sum p (1 - g), FN_c = sum (1 - p) g.

``reduction`` by family:

* distribution- and boundary-based: ``"none"`` is the per-pixel map
  ``[B, H, W]`` (0 at ignored pixels), ``"sum"`` its sum, ``"mean"`` its mean
  over the non-ignored pixels;
* region-based: ``"none"`` is the per-class loss ``[K]`` (K = C classes in
  multiclass mode, K = 1 in binary mode, where the foreground is the only
  class), ``"sum"`` / ``"mean"`` the sum / mean over classes (as
  segmentation-models-pytorch does, statistics summed over the batch first);
* compounded: ``"none"`` is the two weighted terms ``[2]`` (distribution term,
  Dice term); ``"mean"`` and ``"sum"`` both return their sum, the loss (each
  term is already reduced).

Arguments follow ``segedu.validate``: a wrong type (a non-tensor, integer
logits, a ``bool`` or ``float`` ``ignore_index``, a string ``gamma``) raises
``TypeError``; a wrong value (an unknown ``mode`` or ``reduction``, a shape
that does not fit, a label out of range, ``alpha=1.5``) raises ``ValueError``.
"""

# Every public name of the family modules, the wrappers and the table, re-exported: segedu.losses.dice_loss.
from segedu.losses import boundary, common, compound, discriminative, distribution, modules, region, table
from segedu.losses.boundary import *  # noqa: F403
from segedu.losses.compound import *  # noqa: F403
from segedu.losses.discriminative import *  # noqa: F403
from segedu.losses.distribution import *  # noqa: F403
from segedu.losses.modules import *  # noqa: F403
from segedu.losses.region import *  # noqa: F403
from segedu.losses.table import *  # noqa: F403
from segedu.losses.common import MODES, REDUCTIONS

__all__ = [
    "MODES",
    "REDUCTIONS",
    *table.__all__,
    *distribution.__all__,
    *region.__all__,
    *boundary.__all__,
    *compound.__all__,
    *modules.__all__,
    *discriminative.__all__,
]
