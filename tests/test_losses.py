"""segedu.losses: each loss against an independent float64 NumPy version of
its formula, against segmentation-models-pytorch / torchvision where the
definitions coincide, and on the edge cases (saturated logits, all pixels
ignored, no foreground, ignore_index invariance)."""

import math

import numpy as np
import pytest
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
import torchvision
from scipy import ndimage

from segedu import losses as L

IGNORE = 255
MODES = ["binary", "multiclass"]
NAMES = list(L.LOSSES)
REGION = [n for n, info in L.LOSSES.items() if info.family == "region"]

MODULES = {
    "binary_cross_entropy": L.BinaryCrossEntropyLoss,
    "weighted_cross_entropy": L.WeightedCrossEntropyLoss,
    "balanced_cross_entropy": L.BalancedCrossEntropyLoss,
    "focal_loss": L.FocalLoss,
    "dice_loss": L.DiceLoss,
    "sensitivity_specificity_loss": L.SensitivitySpecificityLoss,
    "tversky_loss": L.TverskyLoss,
    "focal_tversky_loss": L.FocalTverskyLoss,
    "log_cosh_dice_loss": L.LogCoshDiceLoss,
    "hausdorff_dt_loss": L.HausdorffDTLoss,
    "shape_aware_loss": L.ShapeAwareLoss,
    "combo_loss": L.ComboLoss,
    "exp_log_loss": L.ExpLogLoss,
}


def make_batch(mode, seed=0, shape=(2, 3, 12, 14), scale=2.0, ignore_frac=0.15,
               dtype=torch.float64, blobs=True):
    """Random logits and a target with blob-shaped classes (so the boundary
    losses see real contours), some pixels ignored, every class present."""
    gen = torch.Generator().manual_seed(seed)
    b, c, h, w = shape
    if mode == "binary":
        c = 2
    if blobs:
        coarse = torch.randint(0, c, (b, 1, h // 3 + 1, w // 3 + 1), generator=gen)
        target = F.interpolate(coarse.float(), size=(h, w), mode="nearest")[:, 0].long()
    else:
        target = torch.randint(0, c, (b, h, w), generator=gen)
    target[0, 0, :c] = torch.arange(c)  # every class present
    target[torch.rand(b, h, w, generator=gen) < ignore_frac] = IGNORE
    channels = 1 if mode == "binary" else c
    logits = (scale * torch.randn(b, channels, h, w, generator=gen)).to(dtype)
    return logits, target


# --------------------------------------------------------------------------
# Independent float64 NumPy references. Each returns the "none" form.
# --------------------------------------------------------------------------


def np_inputs(logits, target, mode):
    """Class probabilities P [B, C, H, W] (binary: [1-p, p]), labels, valid."""
    x = logits.detach().double().numpy()
    t = target.numpy()
    valid = t != IGNORE
    labels = np.where(valid, t, 0)
    if mode == "binary":
        p = 1.0 / (1.0 + np.exp(-x[:, 0]))
        probs = np.stack([1.0 - p, p], axis=1)
    else:
        e = np.exp(x - x.max(axis=1, keepdims=True))
        probs = e / e.sum(axis=1, keepdims=True)
    return probs, labels, valid


def np_p_true(probs, labels):
    return np.take_along_axis(probs, labels[:, None], axis=1)[:, 0]


def np_region_p_g(probs, labels, valid, mode):
    """Per-class flattened p and g over valid pixels: lists of 1-D arrays."""
    classes = [1] if mode == "binary" else range(probs.shape[1])
    return [(probs[:, c][valid], (labels == c)[valid].astype(float)) for c in classes]


def np_dice(probs, labels, valid, mode, smooth):
    return np.array([
        (2 * (p * g).sum() + smooth) / ((p ** 2).sum() + (g ** 2).sum() + smooth)
        for p, g in np_region_p_g(probs, labels, valid, mode)
    ])


def np_tversky(probs, labels, valid, mode, alpha, beta, smooth):
    out = []
    for p, g in np_region_p_g(probs, labels, valid, mode):
        tp, fp, fn = (p * g).sum(), (p * (1 - g)).sum(), ((1 - p) * g).sum()
        out.append((tp + smooth) / (tp + alpha * fp + beta * fn + smooth))
    return np.array(out)


def ref_bce(logits, target, mode):
    probs, labels, valid = np_inputs(logits, target, mode)
    return np.where(valid, -np.log(np_p_true(probs, labels)), 0.0)


def ref_weighted_ce(logits, target, mode, weights=None):
    probs, labels, valid = np_inputs(logits, target, mode)
    c = probs.shape[1]
    if weights is None:
        counts = np.array([(labels[valid] == k).sum() for k in range(c)], dtype=float)
        weights = valid.sum() / (c * np.maximum(counts, 1))
    w = np.asarray(weights, dtype=float)[labels]
    return np.where(valid, -w * np.log(np_p_true(probs, labels)), 0.0)


def ref_balanced_ce(logits, target, mode, beta=None):
    probs, labels, valid = np_inputs(logits, target, mode)
    pos = labels != 0
    if beta is None:
        beta = 1.0 - pos[valid].mean()
    w = np.where(pos, beta, 1.0 - beta)
    return np.where(valid, -w * np.log(np_p_true(probs, labels)), 0.0)


def ref_focal(logits, target, mode, alpha=0.25, gamma=2.0):
    probs, labels, valid = np_inputs(logits, target, mode)
    pt = np_p_true(probs, labels)
    a = 1.0 if alpha is None else np.where(labels != 0, alpha, 1.0 - alpha)
    return np.where(valid, -a * (1.0 - pt) ** gamma * np.log(pt), 0.0)


def ref_dice(logits, target, mode, smooth=1.0):
    return 1.0 - np_dice(*np_inputs(logits, target, mode), mode, smooth)


def ref_ss(logits, target, mode, r=0.1, smooth=1.0):
    out = []
    for p, g in np_region_p_g(*np_inputs(logits, target, mode), mode):
        sens = ((g - p) ** 2 * g).sum() / (g.sum() + smooth)
        spec = ((g - p) ** 2 * (1 - g)).sum() / ((1 - g).sum() + smooth)
        out.append(r * sens + (1 - r) * spec)
    return np.array(out)


def ref_tversky(logits, target, mode, alpha=0.3, beta=0.7, smooth=1.0):
    return 1.0 - np_tversky(*np_inputs(logits, target, mode), mode, alpha, beta, smooth)


def ref_focal_tversky(logits, target, mode, alpha=0.3, beta=0.7, gamma=0.75, smooth=1.0):
    return (1.0 - np_tversky(*np_inputs(logits, target, mode), mode, alpha, beta, smooth)) ** gamma


def ref_log_cosh_dice(logits, target, mode, smooth=1.0):
    return np.log(np.cosh(1.0 - np_dice(*np_inputs(logits, target, mode), mode, smooth)))


def np_boundary_distance(mask):
    """Per image: distance to the other side of the mask boundary (scipy)."""
    out = np.zeros(mask.shape)
    for i, m in enumerate(mask):
        if m.any() and not m.all():
            out[i] = ndimage.distance_transform_edt(m) + ndimage.distance_transform_edt(~m)
    return out


def ref_hausdorff(logits, target, mode, alpha=2.0):
    probs, labels, valid = np_inputs(logits, target, mode)
    pred = probs.argmax(axis=1)  # binary: p > 0.5 <=> z > 0
    classes = [1] if mode == "binary" else range(probs.shape[1])
    terms = []
    for c in classes:
        g = (labels == c) & valid
        d_p = np_boundary_distance((pred == c) & valid)
        d_g = np_boundary_distance(g)
        terms.append((probs[:, c] - g) ** 2 * (d_p ** alpha + d_g ** alpha))
    return np.where(valid, np.mean(terms, axis=0), 0.0)


def np_contour(m):
    inner = ndimage.binary_erosion(m, structure=np.ones((3, 3)), border_value=1)
    return m & ~inner


def ref_shape_aware(logits, target, mode):
    probs, labels, valid = np_inputs(logits, target, mode)
    pred = probs.argmax(axis=1)
    e = np.zeros(labels.shape)
    for i in range(labels.shape[0]):
        for c in range(probs.shape[1]):
            gt_contour = np_contour((labels[i] == c) & valid[i])
            if not gt_contour.any():
                continue
            dist = ndimage.distance_transform_edt(~gt_contour)
            e[i] += np_contour((pred[i] == c) & valid[i]) * dist
    ce = -np.log(np_p_true(probs, labels))
    return np.where(valid, (1.0 + e) * ce, 0.0)


def ref_combo(logits, target, mode, alpha=0.5, beta=0.5, smooth=1.0):
    probs, labels, valid = np_inputs(logits, target, mode)
    ce = ref_balanced_ce(logits, target, mode, beta=beta)[valid].mean()
    dice = np_dice(probs, labels, valid, mode, smooth).mean()
    return np.array([alpha * ce, (1 - alpha) * (1 - dice)])


def ref_exp_log(logits, target, mode, w_dice=0.8, w_cross=0.2, gamma=0.3, smooth=1.0):
    probs, labels, valid = np_inputs(logits, target, mode)
    counts = np.array([(labels[valid] == k).sum() for k in range(probs.shape[1])], float)
    w = np.sqrt(counts.sum() / np.maximum(counts, 1))[labels]
    cross = (w * (-np.log(np_p_true(probs, labels))) ** gamma)[valid].mean()
    dice = ((-np.log(np_dice(probs, labels, valid, mode, smooth))) ** gamma).mean()
    return np.array([w_cross * cross, w_dice * dice])


REFERENCES = {
    "binary_cross_entropy": (ref_bce, [{}]),
    "weighted_cross_entropy": (ref_weighted_ce, [{}, {"weights": "given"}]),
    "balanced_cross_entropy": (ref_balanced_ce, [{}, {"beta": 0.8}]),
    "focal_loss": (ref_focal, [{}, {"alpha": None, "gamma": 0.5}, {"alpha": 0.7, "gamma": 0.0}]),
    "dice_loss": (ref_dice, [{}, {"smooth": 0.0}]),
    "sensitivity_specificity_loss": (ref_ss, [{}, {"r": 0.6, "smooth": 0.0}]),
    "tversky_loss": (ref_tversky, [{}, {"alpha": 0.5, "beta": 0.5, "smooth": 0.0}]),
    "focal_tversky_loss": (ref_focal_tversky, [{}, {"gamma": 2.0, "alpha": 0.7, "beta": 0.2}]),
    "log_cosh_dice_loss": (ref_log_cosh_dice, [{}, {"smooth": 0.0}]),
    "hausdorff_dt_loss": (ref_hausdorff, [{}, {"alpha": 1.0}]),
    "shape_aware_loss": (ref_shape_aware, [{}]),
    "combo_loss": (ref_combo, [{}, {"alpha": 0.3, "beta": 0.9, "smooth": 0.0}]),
    "exp_log_loss": (ref_exp_log, [{}, {"w_dice": 0.5, "w_cross": 0.5, "gamma": 1.0}]),
}
CASES = [(n, i) for n in NAMES for i in range(len(REFERENCES[n][1]))]


def test_references_cover_the_table():
    assert set(REFERENCES) == set(L.LOSSES) == set(MODULES)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name, case", CASES)
def test_loss_matches_numpy_formula(name, case, mode):
    reference, variants = REFERENCES[name]
    params = dict(variants[case])
    if params.get("weights") == "given":
        params["weights"] = [0.3, 2.0] if mode == "binary" else [0.5, 1.5, 3.0]
    fn, family = L.LOSSES[name].function, L.LOSSES[name].family
    logits, target = make_batch(mode, seed=case)
    expected = reference(logits, target, mode, **params)
    valid = (target != IGNORE).numpy()

    none = fn(logits, target, mode=mode, reduction="none", **params)
    mean = fn(logits, target, mode=mode, **params)
    total = fn(logits, target, mode=mode, reduction="sum", **params)
    np.testing.assert_allclose(none.detach().numpy(), expected, rtol=1e-9, atol=1e-12)
    if family in ("distribution", "boundary"):
        assert none.shape == target.shape
        expected_mean = expected[valid].mean()
        expected_sum = expected.sum()
    elif family == "region":
        assert none.shape == ((1,) if mode == "binary" else (logits.shape[1],))
        expected_mean, expected_sum = expected.mean(), expected.sum()
    else:  # compounded: two reduced terms
        assert none.shape == (2,)
        expected_mean = expected_sum = expected.sum()
    assert mean.dim() == 0 and total.dim() == 0
    assert math.isclose(mean.item(), expected_mean, rel_tol=1e-9)
    assert math.isclose(total.item(), expected_sum, rel_tol=1e-9)


# --------------------------------------------------------------------------
# Cross-checks against the field's reference code.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_cross_entropy_matches_torch(mode):
    logits, target = make_batch(mode, seed=3)
    valid = target != IGNORE
    if mode == "binary":
        expected = F.binary_cross_entropy_with_logits(
            logits[:, 0][valid], target[valid].double())
        w = torch.tensor([0.4, 3.0], dtype=torch.float64)
    else:
        expected = F.cross_entropy(logits, target, ignore_index=IGNORE)
        w = torch.tensor([0.4, 3.0, 1.2], dtype=torch.float64)
    torch.testing.assert_close(L.binary_cross_entropy(logits, target, mode=mode), expected)
    # torch's weighted mean divides by sum(w_y); ours by the pixel count.
    ours = L.weighted_cross_entropy(logits, target, mode=mode, weights=w, reduction="sum")
    two_class = torch.cat([torch.zeros_like(logits), logits], 1) if mode == "binary" else logits
    theirs = F.cross_entropy(two_class, target, weight=w, ignore_index=IGNORE, reduction="sum")
    torch.testing.assert_close(ours, theirs)


def test_binary_cross_entropy_defaults_to_the_binary_form():
    """The function named after binary cross-entropy computes it on [B, 1, H, W] logits."""
    logits, target = make_batch("binary", seed=20, ignore_frac=0.0)
    expected = F.binary_cross_entropy_with_logits(logits[:, 0], target.double())
    torch.testing.assert_close(L.binary_cross_entropy(logits, target), expected)
    torch.testing.assert_close(L.binary_cross_entropy(logits[:, 0], target[:, None].double()), expected)
    torch.testing.assert_close(L.BinaryCrossEntropyLoss()(logits, target), expected)
    assert L.BinaryCrossEntropyLoss().mode == "binary" and L.CrossEntropyLoss().mode == "multiclass"
    assert L.DiceLoss().mode == "multiclass"
    # with ignored pixels: the mean over the others
    logits, target = make_batch("binary", seed=21)
    valid = target != IGNORE
    torch.testing.assert_close(
        L.binary_cross_entropy(logits, target),
        F.binary_cross_entropy_with_logits(logits[:, 0][valid], target[valid].double()))


@pytest.mark.parametrize("ignore_index", [IGNORE, -100, 1])
def test_cross_entropy_is_the_categorical_form(ignore_index):
    logits, target = make_batch("multiclass", seed=22)
    if ignore_index != IGNORE:
        target = torch.where(target == IGNORE, ignore_index, target)
    expected = F.cross_entropy(logits, target, ignore_index=ignore_index)
    torch.testing.assert_close(L.cross_entropy(logits, target, ignore_index=ignore_index), expected)
    torch.testing.assert_close(L.CrossEntropyLoss(ignore_index=ignore_index)(logits, target), expected)
    torch.testing.assert_close(
        L.binary_cross_entropy(logits, target, mode="multiclass", ignore_index=ignore_index), expected)
    # and its binary mode is binary_cross_entropy
    z, y = make_batch("binary", seed=23)
    torch.testing.assert_close(L.cross_entropy(z, y, mode="binary"), L.binary_cross_entropy(z, y))


def test_channel_count_that_contradicts_the_name_is_a_clear_error():
    """[B, C, H, W] logits with C >= 2 could be C sigmoids or one softmax: BCE does not guess."""
    logits, target = make_batch("multiclass", seed=24)
    with pytest.raises(ValueError, match=r"binary_cross_entropy.*\[B, 1, H, W\].*use cross_entropy"):
        L.binary_cross_entropy(logits, target)
    with pytest.raises(ValueError, match=r"binary_cross_entropy.*use cross_entropy"):
        L.BinaryCrossEntropyLoss()(logits, target)
    z, y = make_batch("binary", seed=25)
    with pytest.raises(ValueError, match=r"cross_entropy.*C >= 2.*use binary_cross_entropy"):
        L.cross_entropy(z, y)
    with pytest.raises(ValueError, match="mode='binary' expects logits"):
        L.dice_loss(logits, target, mode="binary")


def test_binary_focal_matches_torchvision():
    logits, target = make_batch("binary", seed=4, ignore_frac=0.0)
    t = target[:, None].double()
    for alpha, gamma in [(0.25, 2.0), (0.6, 1.0), (-1, 3.0)]:
        ours_alpha = None if alpha < 0 else alpha  # torchvision: alpha < 0 = no weighting
        theirs = torchvision.ops.sigmoid_focal_loss(logits, t, alpha=alpha, gamma=gamma,
                                                    reduction="none")
        ours = L.focal_loss(logits, target, mode="binary", ignore_index=None,
                            reduction="none", alpha=ours_alpha, gamma=gamma)
        torch.testing.assert_close(ours, theirs[:, 0])
        torch.testing.assert_close(
            L.focal_loss(logits, target, mode="binary", alpha=ours_alpha, gamma=gamma),
            theirs.mean())


def test_binary_focal_matches_smp():
    logits, target = make_batch("binary", seed=5)
    theirs = smp.losses.FocalLoss("binary", alpha=0.25, gamma=2.0, ignore_index=IGNORE)
    torch.testing.assert_close(L.focal_loss(logits, target, mode="binary"),
                               theirs(logits, target))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("smooth", [0.0, 1.0])
def test_tversky_matches_smp(mode, smooth):
    """smp sums the soft counts over the batch per class and averages over
    classes, like ours (it zeroes absent classes: every class is present)."""
    logits, target = make_batch(mode, seed=6)
    theirs = smp.losses.TverskyLoss(mode, alpha=0.3, beta=0.7, smooth=smooth,
                                    ignore_index=IGNORE)
    torch.testing.assert_close(
        L.tversky_loss(logits, target, mode=mode, smooth=smooth), theirs(logits, target))


def test_focal_tversky_matches_smp_in_binary_mode():
    # smp raises the class mean to gamma; with one class that is per class.
    logits, target = make_batch("binary", seed=7)
    theirs = smp.losses.TverskyLoss("binary", alpha=0.3, beta=0.7, gamma=0.75, smooth=1.0,
                                    ignore_index=IGNORE)
    torch.testing.assert_close(L.focal_tversky_loss(logits, target, mode="binary"),
                               theirs(logits, target))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("smooth", [0.0, 1.0])
def test_dice_matches_smp_on_hard_predictions(mode, smooth):
    """smp's Dice has the linear denominator sum p + sum g (and its smooth on
    TP): it equals the lecture's squared form when p is 0 or 1, with smp's
    smooth = ours / 2."""
    logits, target = make_batch(mode, seed=8)
    if mode == "binary":
        logits = 40.0 * torch.sign(logits)  # p = 0 or 1 to 1e-17
    else:  # one winning channel per pixel
        winner = F.one_hot(logits.argmax(1), logits.shape[1]).permute(0, 3, 1, 2)
        logits = 40.0 * winner.double()
    theirs = smp.losses.DiceLoss(mode, smooth=smooth / 2, ignore_index=IGNORE)
    torch.testing.assert_close(L.dice_loss(logits, target, mode=mode, smooth=smooth),
                               theirs(logits, target))


@pytest.mark.parametrize("mode", MODES)
def test_dice_differs_from_linear_form_on_soft_predictions(mode):
    """The squared denominator is not smp's linear one: on soft predictions
    the two disagree (guards against silently switching forms)."""
    logits, target = make_batch(mode, seed=9, scale=0.5)
    theirs = smp.losses.DiceLoss(mode, smooth=0.0, ignore_index=IGNORE)(logits, target)
    assert abs(L.dice_loss(logits, target, mode=mode, smooth=0.0).item() - theirs.item()) > 1e-3


# --------------------------------------------------------------------------
# Binary mode is the two-channel softmax [0, z] for the per-pixel losses.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, params",
    [("binary_cross_entropy", {}), ("weighted_cross_entropy", {}),
     ("weighted_cross_entropy", {"weights": [0.2, 5.0]}), ("balanced_cross_entropy", {}),
     ("focal_loss", {}), ("hausdorff_dt_loss", {}), ("shape_aware_loss", {})],
)
def test_binary_equals_two_channel_multiclass(name, params):
    ignore = 0.0 if name == "hausdorff_dt_loss" else 0.15  # see its docstring
    z, target = make_batch("binary", seed=10, ignore_frac=ignore)
    two = torch.cat([torch.zeros_like(z), z], dim=1)
    fn = L.LOSSES[name].function
    torch.testing.assert_close(fn(z, target, mode="binary", reduction="none", **params),
                               fn(two, target, mode="multiclass", reduction="none", **params))


def test_binary_accepts_every_documented_layout():
    z, target = make_batch("binary", seed=11, ignore_frac=0.0)
    expected = L.dice_loss(z, target, mode="binary")
    for logits in (z, z[:, 0]):
        for t in (target, target[:, None], target.bool(), target.float()):
            torch.testing.assert_close(L.dice_loss(logits, t, mode="binary"), expected)


# --------------------------------------------------------------------------
# Edge cases, for every loss of the table.
# --------------------------------------------------------------------------


def backward_grad(fn, logits, target, mode, **params):
    x = logits.clone().requires_grad_(True)
    value = fn(x, target, mode=mode, **params)
    value.backward()
    return value.detach(), x.grad


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", NAMES)
def test_saturated_logits_give_finite_values_and_gradients(name, mode):
    fn = L.LOSSES[name].function
    logits, target = make_batch(mode, seed=12, dtype=torch.float32)
    logits = 50.0 * torch.sign(logits)
    for sign in (1.0, -1.0):
        value, grad = backward_grad(fn, sign * logits, target, mode)
        assert torch.isfinite(value).all(), f"{name} value {value}"
        assert torch.isfinite(grad).all(), f"{name} gradient not finite"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", NAMES)
def test_all_ignored_gives_zero_with_a_gradient(name, mode):
    fn = L.LOSSES[name].function
    logits, target = make_batch(mode, seed=13, dtype=torch.float32)
    target = torch.full_like(target, IGNORE)
    extra = [{}] + ([{"smooth": 0.0}] if name in REGION else [])  # 0/0 branch
    for params in extra:
        value, grad = backward_grad(fn, logits, target, mode, **params)
        assert abs(value.item()) < 1e-6, f"{name} {params}: {value.item()}"
        assert torch.isfinite(grad).all() and (grad == 0).all()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", NAMES)
def test_empty_prediction_of_empty_target_is_perfect(name, mode):
    """No foreground anywhere, and a confident all-background prediction:
    every loss (region losses included, thanks to smooth) is about 0."""
    fn = L.LOSSES[name].function
    logits, target = make_batch(mode, seed=14, dtype=torch.float32, ignore_frac=0.0)
    target = torch.zeros_like(target)
    # saturated: exp-log's (-ln p)^0.3 is still 1e-4 at p = 1 - 1e-13
    if mode == "binary":
        logits = torch.full_like(logits, -50.0)
    else:
        logits = torch.full_like(logits, -25.0)
        logits[:, 0] = 25.0
    value, grad = backward_grad(fn, logits, target, mode)
    assert abs(value.item()) < 1e-6, f"{name}: {value.item()}"
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", NAMES)
def test_ignored_pixels_change_neither_value_nor_gradient(name, mode):
    fn = L.LOSSES[name].function
    logits, target = make_batch(mode, seed=15, ignore_frac=0.3)
    ignored = (target == IGNORE)[:, None].expand_as(logits)
    other = torch.where(ignored, 20.0 * torch.randn_like(logits), logits)
    value_a, grad_a = backward_grad(fn, logits, target, mode)
    value_b, grad_b = backward_grad(fn, other, target, mode)
    torch.testing.assert_close(value_a, value_b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_a, grad_b, rtol=1e-12, atol=1e-12)
    assert (grad_a[ignored] == 0).all()
    assert (grad_a[~ignored] != 0).any()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", NAMES)
def test_gradient_matches_finite_differences(name, mode):
    fn = L.LOSSES[name].function
    logits, target = make_batch(mode, seed=16, shape=(1, 3, 6, 7), ignore_frac=0.1)
    # keep logits away from the thresholds where the distance maps jump
    logits = logits + 0.5 * torch.sign(logits)
    if mode == "multiclass":
        logits[:, 0] += 3.0 * (logits[:, 0] > logits[:, 1:].amax(1))
    x = logits.clone().requires_grad_(True)
    # fast_mode: compares the Jacobian along random directions (cheap, still exact to 1e-5)
    assert torch.autograd.gradcheck(lambda v: fn(v, target, mode=mode), (x,), fast_mode=True)


def test_focal_weights_hard_pixels_more_than_easy_ones():
    """The point of the focal term: at gamma=2 an easy pixel (p_t = 0.9)
    loses 100x of its CE, a hard one (p_t = 0.1) keeps 81%."""
    logit = torch.tensor([math.log(9.0), -math.log(9.0)], dtype=torch.float64)
    target = torch.ones(2, dtype=torch.long)
    ce = L.binary_cross_entropy(logit[None, :, None], target[None, :, None], mode="binary",
                                reduction="none")
    fl = L.focal_loss(logit[None, :, None], target[None, :, None], mode="binary",
                      reduction="none", alpha=None)
    torch.testing.assert_close(fl / ce, torch.tensor([[[0.01], [0.81]]], dtype=torch.float64))


# --------------------------------------------------------------------------
# The table, the modules, the errors.
# --------------------------------------------------------------------------


def test_table_lists_every_loss_once_with_family_and_formula():
    functions = {n for n in L.__all__ if n.endswith(("_loss", "_entropy"))}
    # cross_entropy is the categorical form of the binary_cross_entropy row, not a row of its own; the
    # discriminative loss (lesson 12) scores embeddings against instance ids, not logits against labels
    assert functions == set(L.LOSSES) | {"cross_entropy", "discriminative_loss"}
    assert "Reference" in L.cross_entropy.__doc__ and "Formula" in L.cross_entropy.__doc__
    assert {info.family for info in L.LOSSES.values()} == {
        "distribution", "region", "boundary", "compounded"}
    for name, (fn, family, formula) in L.LOSSES.items():
        assert fn.__name__ == name and formula.strip()
        assert "Reference" in fn.__doc__ and "Formula" in fn.__doc__


@pytest.mark.parametrize("name", NAMES)
def test_module_wrapper_equals_function(name):
    logits, target = make_batch("multiclass", seed=17)
    module = MODULES[name](mode="multiclass", reduction="none")
    assert isinstance(module, torch.nn.Module)
    torch.testing.assert_close(module(logits, target),
                               L.LOSSES[name].function(logits, target, mode="multiclass", reduction="none"))
    assert "mode='multiclass'" in repr(module)
    with pytest.raises(TypeError, match="unknown parameter"):
        MODULES[name](not_a_parameter=1)


def test_module_passes_its_parameters():
    logits, target = make_batch("binary", seed=18)
    module = L.TverskyLoss(mode="binary", alpha=0.9, beta=0.1, smooth=0.0)
    assert "alpha=0.9" in repr(module)
    torch.testing.assert_close(
        module(logits, target),
        L.tversky_loss(logits, target, mode="binary", alpha=0.9, beta=0.1, smooth=0.0))
    with pytest.raises(ValueError, match="mode"):
        L.DiceLoss(mode="multilabel")


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda x, t: L.dice_loss(x, t, mode="multilabel"), ValueError, "mode"),
        (lambda x, t: L.dice_loss(x, t, reduction="avg"), ValueError, "reduction"),
        (lambda x, t: L.dice_loss(x.numpy(), t), TypeError, "logits"),
        (lambda x, t: L.dice_loss(x.long(), t), TypeError, "floating"),
        (lambda x, t: L.dice_loss(x, t.float()), TypeError, "integer target"),
        (lambda x, t: L.dice_loss(x[:, :1], t), ValueError, "C >= 2"),
        (lambda x, t: L.dice_loss(x, t[:, :-1]), ValueError, "shape"),
        (lambda x, t: L.dice_loss(x, t.clamp(max=3) + 3), ValueError, "0..2"),
        (lambda x, t: L.dice_loss(x[:, :1], t.clamp(max=2), mode="binary"), ValueError, "0..1"),
        (lambda x, t: L.dice_loss(x[:, :1], t.float() / 3, mode="binary"), ValueError, "0..1"),
        (lambda x, t: L.dice_loss(x, t, ignore_index=2.5), TypeError, "ignore_index"),
        (lambda x, t: L.dice_loss(x, t, ignore_index=True), TypeError, "ignore_index"),
        (lambda x, t: L.DiceLoss(ignore_index=2.5), TypeError, "ignore_index"),
        (lambda x, t: L.dice_loss(x, t, mode=None), TypeError, "mode"),
        (lambda x, t: L.focal_loss(x, t, gamma=True), TypeError, "gamma"),
        (lambda x, t: L.focal_loss(x, t, gamma=-1.0), ValueError, "gamma"),
        (lambda x, t: L.dice_loss(x, t, smooth=-1.0), ValueError, "smooth"),
        (lambda x, t: L.focal_loss(x, t, alpha=1.5), ValueError, "alpha"),
        (lambda x, t: L.focal_loss(x, t, gamma="2"), TypeError, "gamma"),
        (lambda x, t: L.sensitivity_specificity_loss(x, t, r=2.0), ValueError, "r must"),
        (lambda x, t: L.weighted_cross_entropy(x, t, weights=[1.0, 2.0]), ValueError, "weights"),
        (lambda x, t: L.weighted_cross_entropy(x, t, weights=[1, -1, 1]), ValueError, "weights"),
        (lambda x, t: L.combo_loss(x, t, reduction="avg"), ValueError, "reduction"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_message(call, error, words):
    logits, target = make_batch("multiclass", seed=19)
    with pytest.raises(error) as info:
        call(logits, target)
    assert words in str(info.value)
