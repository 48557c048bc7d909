"""Exercise checks: one public function per exercise, taking the student's function.

Each check runs the lecture's worked example (where there is one) and random cases against the reference in
the package, checks shape, dtype and values, and either prints one line ending in ``PASSED`` or raises
``AssertionError`` with a message that says what to look at. A function that returns ``None`` or garbage
never passes. (Style after the CS231n assignments: fixed inputs, ``rel_error``, messages for the student.)
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["rel_error", "check_iou_from_confusion"]


def rel_error(x: torch.Tensor, y: torch.Tensor) -> float:
    """Largest relative error ``|x - y| / max(1e-8, |x| + |y|)``, as in CS231n."""
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    return float(((x - y).abs() / (x.abs() + y.abs()).clamp_min(1e-8)).max())


def _passed(name: str, cases: int) -> None:
    print(f"{name}: {cases} cases - PASSED")


def _expect_tensor(value, name: str, shape: tuple, what: str) -> torch.Tensor:
    if value is None:
        raise AssertionError(f"{name} returned None: did you forget the `return` statement?")
    if not isinstance(value, torch.Tensor):
        raise AssertionError(f"{name} must return a torch.Tensor ({what}), got {type(value).__name__}")
    if tuple(value.shape) != tuple(shape):
        raise AssertionError(f"{name} returned shape {tuple(value.shape)}, expected {tuple(shape)} ({what})")
    return value


def _compare(got: torch.Tensor, want: torch.Tensor, name: str, case: str, atol: float = 1e-6) -> None:
    """Values equal where both are defined, NaN exactly where the reference is NaN."""
    got = got.detach().to(torch.float64).cpu()
    want = want.to(torch.float64).cpu()
    nan_got, nan_want = torch.isnan(got), torch.isnan(want)
    if not torch.equal(nan_got, nan_want):
        where = torch.nonzero(nan_got != nan_want).flatten().tolist()
        raise AssertionError(
            f"{name}, {case}: NaN in the wrong places (entries {where}). A class that is absent from both the "
            "prediction and the target has TP + FP + FN = 0: its IoU is undefined (NaN), every other IoU is a number."
        )
    diff = (got - want).abs().nan_to_num(0.0)
    if diff.max() > atol:
        k = int(diff.argmax())
        raise AssertionError(
            f"{name}, {case}: entry {k} is {got.flatten()[k]:.6f}, expected {want.flatten()[k]:.6f} "
            f"(largest error {diff.max():.2e})."
        )


# --- lesson 00 -------------------------------------------------------------------------------------------


def check_iou_from_confusion(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Lesson 00: ``fn(matrix)`` takes a confusion matrix ``[C, C]`` (rows = target class, columns = predicted
    class) and returns the per-class IoU ``[C]`` as float, NaN for classes absent from both."""
    from segedu.metrics import ConfusionMatrix

    name = "iou_from_confusion"
    # The worked example: 3 classes, written out by hand.
    matrix = torch.tensor([[50, 2, 3], [4, 10, 0], [1, 0, 0]])
    # class 0: TP 50, FN 5, FP 5 -> 50/60; class 1: TP 10, FN 4, FP 2 -> 10/16; class 2: TP 0, FN 1, FP 3 -> 0
    want = torch.tensor([50 / 60, 10 / 16, 0.0])
    got = _expect_tensor(fn(matrix.clone()), name, (3,), "one IoU per class")
    if not got.is_floating_point():
        raise AssertionError(f"{name} returned dtype {got.dtype}: IoU is a fraction, convert the counts to float first.")
    if torch.allclose(got.double(), torch.tensor([50 / 55, 10 / 14, 0.0], dtype=torch.float64), atol=1e-6):
        raise AssertionError(f"{name}: you computed TP / (TP + FN) (recall). IoU also counts false positives: TP / (TP + FP + FN).")
    _compare(got, want, name, "the 3-class worked example")
    # Random cases against the package's ConfusionMatrix, with a class absent from both (NaN).
    gen = torch.Generator().manual_seed(0)
    cases = 1
    for num_classes in (2, 5, 7):
        pred = torch.randint(0, num_classes - 1, (2, 16, 16), generator=gen)  # last class never predicted...
        target = torch.randint(0, num_classes - 1, (2, 16, 16), generator=gen)  # ...nor present: NaN
        cm = ConfusionMatrix(num_classes)
        cm.update(pred, target)
        got = _expect_tensor(fn(cm.matrix.clone()), name, (num_classes,), "one IoU per class")
        _compare(got, cm.iou(), name, f"random {num_classes}-class case")
        cases += 1
    _passed(name, cases)


# --- lessons 05-06: FCN and U-Net ----------------------------------------------------------------------------

__all__ += ["check_fc_to_conv", "check_fuse_scores", "check_center_crop", "check_valid_output_size"]


def _close(got: torch.Tensor, want: torch.Tensor, name: str, case: str, hint: str, atol: float = 1e-5,
           rtol: float = 1e-4) -> None:
    """``got`` equals ``want`` (same shape) up to ``atol + rtol * |want|`` (float32 sums differ in the last
    digits); otherwise say where, by how much, and what to check."""
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    diff = (got - want).abs()
    excess = diff - (atol + rtol * want.abs())
    if not excess.max() <= 0:  # also catches NaN
        where = tuple(int(i) for i in torch.unravel_index(excess.nan_to_num(float("inf")).argmax(), diff.shape))
        raise AssertionError(
            f"{name}, {case}: at index {where} you return {got[where]:.5f}, expected {want[where]:.5f} "
            f"(largest error {diff.max():.2e}). {hint}"
        )


def check_fc_to_conv(fn: Callable) -> None:
    """Lesson 05: ``fn(linear, in_channels, kernel_size)`` returns an ``nn.Conv2d`` computing ``linear`` on every
    ``kernel_size x kernel_size`` window of a ``[B, in_channels, H, W]`` map (``linear.in_features = in_channels
    * k * k``, flattened channel-first). Compared with ``segedu.models.vgg_table.convolutionalize``."""
    from torch import nn

    from segedu.models.vgg_table import convolutionalize

    name = "fc_to_conv"
    gen = torch.Generator().manual_seed(5)
    cases = 0
    # fc6-like (a 7x7 window of many channels), fc7/fc8-like (1x1), and a small 3x3 one.
    for in_channels, k, out in ((6, 7, 5), (16, 1, 4), (3, 3, 2)):
        linear = nn.Linear(in_channels * k * k, out)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(linear.weight.shape, generator=gen))
            linear.bias.copy_(torch.randn(out, generator=gen))
        conv = fn(linear, in_channels, k)
        if conv is None:
            raise AssertionError(f"{name} returned None: did you forget the `return` statement?")
        if not isinstance(conv, nn.Conv2d):
            raise AssertionError(f"{name} must return an nn.Conv2d, got {type(conv).__name__}")
        if tuple(conv.weight.shape) != (out, in_channels, k, k):
            raise AssertionError(
                f"{name}: the conv weight has shape {tuple(conv.weight.shape)}, expected {(out, in_channels, k, k)} "
                "= [out_features, in_channels, k, k]"
            )
        if conv.bias is None:
            raise AssertionError(f"{name}: the conv has no bias, but the linear layer has one: copy it too.")
        if conv.stride != (1, 1) or conv.padding != (0, 0) or conv.dilation != (1, 1):
            raise AssertionError(f"{name}: use stride 1, no padding and no dilation (got stride {conv.stride}, "
                                 f"padding {conv.padding}, dilation {conv.dilation}).")
        x = torch.randn(2, in_channels, k, k, generator=gen)
        with torch.no_grad():
            _close(conv(x).flatten(1), linear(x.flatten(1)), name, f"a {in_channels}x{k}x{k} input",
                   "The linear layer reads x.flatten(1), i.e. channel first, then row, then column: reshape "
                   "linear.weight to [out, in_channels, k, k] in that order (no transposes).")
            big = torch.randn(2, in_channels, k + 3, k + 2, generator=gen)
            _close(conv(big), convolutionalize(linear, in_channels, k)(big), name, "a larger input map",
                   "On a larger map every output position must be the linear layer applied to its window.")
        cases += 1
    _passed(name, cases)


def check_fuse_scores(fn: Callable) -> None:
    """Lesson 05: ``fn(score32, score16, score8)`` returns FCN-8s's fused scores at stride 8: upsample 2x
    (bilinear, ``align_corners=False``) and add, twice. ``[B, K, h, w]``, ``[B, K, 2h, 2w]``,
    ``[B, K, 4h, 4w]`` -> ``[B, K, 4h, 4w]``. Compared with ``segedu.models.fcn.fuse`` using untrained
    (exactly bilinear) ``Upsample`` layers."""
    import torch.nn.functional as F

    from segedu.models.fcn import Upsample, fuse

    name = "fuse_scores"
    gen = torch.Generator().manual_seed(6)
    cases = 0
    for batch, classes, h, w in ((1, 3, 2, 2), (2, 6, 3, 5), (1, 21, 4, 4)):
        s32 = torch.randn(batch, classes, h, w, generator=gen)
        s16 = torch.randn(batch, classes, 2 * h, 2 * w, generator=gen)
        s8 = torch.randn(batch, classes, 4 * h, 4 * w, generator=gen)
        up = Upsample(classes, 2)
        with torch.no_grad():
            want = fuse(fuse(s32, s16, up), s8, up)
        got = _expect_tensor(fn(s32.clone(), s16.clone(), s8.clone()), name, tuple(s8.shape),
                             "the fused scores at stride 8, the size of score8")
        if not got.is_floating_point():
            raise AssertionError(f"{name} returned dtype {got.dtype}: scores are floats.")
        case = f"K={classes}, score32 of {h}x{w}"

        def nearest(x):
            return F.interpolate(x, scale_factor=2, mode="nearest")

        def corners(x):
            return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)

        for wrong, hint in (
            (nearest, "you upsampled with 'nearest': FCN's upsampling starts as bilinear."),
            (corners, "you used align_corners=True; FCN's bilinear kernel matches align_corners=False."),
        ):
            if torch.allclose(got.double(), (wrong(wrong(s32) + s16) + s8).double(), atol=1e-5) and h > 1:
                raise AssertionError(f"{name}, {case}: {hint}")
        _close(got, want, name, case,
               "Fuse from coarse to fine: up2(up2(score32) + score16) + score8, with "
               "F.interpolate(..., scale_factor=2, mode='bilinear', align_corners=False).")
        cases += 1
    _passed(name, cases)


def check_center_crop(fn: Callable) -> None:
    """Lesson 06: ``fn(x, size)`` returns the central ``size = (h, w)`` window of ``x`` ``[B, C, H, W]``;
    when ``H - h`` is odd the extra row goes at the bottom (``top = (H - h) // 2``), likewise for columns.
    Compared with ``segedu.models.unet.center_crop``; the result must pass gradients back to ``x``."""
    from segedu.models.unet import center_crop

    name = "center_crop"
    gen = torch.Generator().manual_seed(7)
    # The paper's level-2 skip (136 -> 104: 16 pixels off every side), then odd and non-square differences.
    cases = [((1, 2, 136, 136), (104, 104)), ((2, 3, 9, 8), (4, 5)), ((1, 1, 7, 12), (6, 3)), ((1, 4, 5, 5), (5, 5))]
    for shape, size in cases:
        x = torch.randn(shape, generator=gen, requires_grad=True)
        got = _expect_tensor(fn(x, size), name, shape[:2] + size, "[B, C, h, w]")
        want = center_crop(x, size)
        hint = "Take top = (H - h) // 2 and left = (W - w) // 2; rows are dim -2, columns dim -1."
        (h, w), (height, width) = size, shape[-2:]
        up_top, up_left = -(-(height - h) // 2), -(-(width - w) // 2)
        if torch.equal(got.detach(), x.detach()[..., up_top : up_top + h, up_left : up_left + w]):
            hint = "When H - h is odd the extra row is cut at the bottom: round the offset down, top = (H - h) // 2."
        elif torch.equal(got.detach(), x.detach()[..., :h, :w]):
            hint = "You kept the top-left corner: start (H - h) // 2 rows down and (W - w) // 2 columns in."
        _close(got, want, name, f"x {shape} -> {size}", hint, atol=0, rtol=0)
        if not got.requires_grad:
            raise AssertionError(f"{name}: the crop lost the gradient (did you go through numpy or .detach()?). "
                                 "Index the tensor with slices instead.")
        got.sum().backward()
        expected_grad = torch.zeros(shape)
        top, left = (shape[-2] - size[0]) // 2, (shape[-1] - size[1]) // 2
        expected_grad[..., top : top + size[0], left : left + size[1]] = 1
        _close(x.grad, expected_grad, name, f"gradient for x {shape}",
               "Gradients must flow back to exactly the cropped pixels of x.", atol=0, rtol=0)
    _passed(name, len(cases))


def check_valid_output_size(fn: Callable[[int, int], int]) -> None:
    """Lesson 06: ``fn(input_size, depth)`` returns the output side of a valid U-Net (unpadded 3x3 convs, two
    per level, 2x2 pools, 2x2 up-convolutions) for a valid input side. 572 -> 388 at depth 4.
    Compared with ``segedu.models.unet.unet_output_size``."""
    from segedu.models.unet import unet_input_size, unet_output_size

    name = "valid_output_size"
    got = fn(572, 4)
    if got is None:
        raise AssertionError(f"{name} returned None: did you forget the `return` statement?")
    if not isinstance(got, int) or isinstance(got, bool):
        raise AssertionError(f"{name} must return an int, got {type(got).__name__} {got!r}")
    hints = {
        452: "You forgot the two convolutions of the bottleneck (-4 once more at the bottom).",
        448: "You forgot the two convolutions after every up-convolution (-4 per decoder level).",
        436: "You forgot the two convolutions before every pool (-4 per encoder level).",
    }
    if got != 388:
        raise AssertionError(f"{name}(572, 4) returned {got}, expected 388 (the paper's Fig. 1). "
                             + hints.get(got, "Per level: -4 (two convs), then //2 (pool); bottleneck -4; "
                                          "per level on the way up: *2 (up-conv), then -4."))
    cases = 1
    for depth in (1, 2, 3, 5):
        for wanted in (1, 30, 97):
            size = unet_input_size(wanted, depth)
            got, want = fn(size, depth), unet_output_size(size, depth)
            if got != want:
                raise AssertionError(f"{name}({size}, {depth}) returned {got}, expected {want}: "
                                     "loop over the depth instead of hard-coding four levels.")
            cases += 1
    _passed(name, cases)


# --- lessons 01-04: autoencoders, upsampling, transposed and dilated convolution -----------------------------

__all__ += [
    "check_psnr", "check_pca_reconstruction", "check_bed_of_nails", "check_bilinear_align_corners",
    "check_transposed_conv_scatter", "check_transposed_output_size", "check_dilate_kernel", "check_receptive_field",
]


def _first_difference(got: torch.Tensor, want: torch.Tensor, name: str, case: str, hint: str,
                      atol: float = 1e-5) -> None:
    """Raise with the position and size of the largest difference (and a hint) unless ``got`` ~= ``want``."""
    got = got.detach().to(torch.float64).cpu()
    want = want.detach().to(torch.float64).cpu()
    if not torch.isfinite(got).all():
        raise AssertionError(f"{name}, {case}: the result holds NaN or inf. {hint}")
    diff = (got - want).abs()
    if diff.max() > atol:
        where = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
        raise AssertionError(
            f"{name}, {case}: at index {where} you return {got[where]:.6g}, expected {want[where]:.6g} "
            f"(largest error {diff.max():.3g}). {hint}"
        )


def _agrees(got, want: torch.Tensor, atol: float = 1e-4) -> bool:
    """True when ``got`` is a tensor of ``want``'s shape with the same values (used to name a known mistake)."""
    return (isinstance(got, torch.Tensor) and got.shape == want.shape
            and bool(torch.allclose(got.detach().double().cpu(), want.double().cpu(), atol=atol)))


# --- lesson 01 ---------------------------------------------------------------------------------------------


def check_psnr(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Lesson 01: ``fn(x, reference)`` -> float ``[B]``, the PSNR of every image in dB for values in [0, 1]."""
    from segedu.models.autoencoder import psnr

    name = "psnr"
    # Worked example: two grey images, one off by 0.1 everywhere (MSE 0.01 -> 20 dB), one by 0.05 (26.02 dB).
    reference = torch.full((2, 3, 4, 4), 0.5)
    x = reference + torch.tensor([0.1, 0.05]).view(2, 1, 1, 1)
    want = torch.tensor([20.0, 10 * torch.log10(torch.tensor(1 / 0.0025)).item()])
    got = fn(x.clone(), reference.clone())
    if isinstance(got, torch.Tensor) and got.dim() == 0:
        raise AssertionError(f"{name} returned one number for the whole batch: average the squared error over "
                             "C, H and W only, so that every image gets its own PSNR (shape [B]).")
    got = _expect_tensor(got, name, (2,), "one PSNR per image")
    if not got.is_floating_point():
        raise AssertionError(f"{name} returned dtype {got.dtype}: PSNR is a real number of decibels.")
    mse = torch.tensor([0.01, 0.0025])
    known = {
        "you used the RMSE (or the mean absolute error) inside 10 log10: PSNR is 10 log10(1 / MSE) = "
        "20 log10(1 / RMSE), with the mean *squared* error.": 10 * torch.log10(1 / mse.sqrt()),
        "you wrote 20 log10(1 / MSE): the factor 20 goes with the RMSE, 10 with the MSE.": 20 * torch.log10(1 / mse),
        "you used the natural logarithm: decibels use log10.": 10 * torch.log(1 / mse),
    }
    for hint, wrong in known.items():
        if _agrees(got, wrong):
            raise AssertionError(f"{name}, worked example: {hint}")
    _first_difference(got, want, name, "worked example (errors 0.1 and 0.05 -> 20.00 and 26.02 dB)",
                      "PSNR = 10 log10(1 / MSE) with the MSE of each image.", atol=1e-3)
    gen = torch.Generator().manual_seed(0)
    cases = 1
    for shape in ((1, 1, 5, 7), (3, 3, 8, 8), (4, 2, 6, 5)):
        reference = torch.rand(shape, generator=gen)
        x = (reference + 0.2 * torch.rand(shape[0], 1, 1, 1, generator=gen) * torch.randn(shape, generator=gen)).clamp(0, 1)
        got = _expect_tensor(fn(x.clone(), reference.clone()), name, (shape[0],), "one PSNR per image")
        _first_difference(got, psnr(x, reference), name, f"random images of shape {shape}",
                          "Average the squared error over every value of one image (all channels).", atol=1e-3)
        cases += 1
    _passed(name, cases)


def check_pca_reconstruction(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """Lesson 01: ``fn(x, k)`` with ``x`` float ``[N, D]`` -> ``[N, D]``: ``x`` rebuilt from its first ``k`` principal
    components (centred data, top right singular vectors)."""
    from segedu.models.autoencoder import pca_reconstruction

    name = "pca_reconstruction"
    # Worked example 1: points exactly on the line y = 2x + 1 need one component - but only around their mean.
    line = torch.tensor([[0.0, 1.0], [1.0, 3.0], [2.0, 5.0], [3.0, 7.0]])
    got = _expect_tensor(fn(line.clone(), 1), name, (4, 2), "one reconstruction per row of x")
    if _agrees(got, line.mean(0).expand(4, 2)):
        raise AssertionError(f"{name}: four points on the line y = 2x + 1 all came back as their mean {got[0].tolist()}: "
                             "you projected on a direction of zero variance. torch.linalg.svd sorts the singular "
                             "values in decreasing order: keep the *first* k rows of Vh.")
    if not _agrees(got, line):
        raise AssertionError(f"{name}: four points on the line y = 2x + 1 should come back exactly with k = 1, got "
                             f"{got.detach().tolist()}. Subtract the mean before the SVD and add it back after: the "
                             "line does not pass through the origin.")
    # Worked example 2: a 4 x 1 rectangle; the long axis (x) is the first component.
    box = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 1.0], [4.0, 1.0]])
    want = torch.tensor([[0.0, 0.5], [4.0, 0.5], [0.0, 0.5], [4.0, 0.5]])
    got = _expect_tensor(fn(box.clone(), 1), name, (4, 2), "one reconstruction per row of x")
    if _agrees(got, box):
        raise AssertionError(f"{name}: with k = 1 the 4 x 1 rectangle came back unchanged, as if every component was "
                             "kept. Keep only the first k rows of Vh (an off-by-one? k + 1 rows?).")
    if _agrees(got, torch.tensor([[2.0, 0.0], [2.0, 0.0], [2.0, 1.0], [2.0, 1.0]])):
        raise AssertionError(f"{name}: you kept the direction of *least* variance (y). torch.linalg.svd sorts the "
                             "singular values in decreasing order: the first k rows of Vh are the top components.")
    _first_difference(got, want, name, "the 4 x 1 rectangle with k = 1",
                      "Project the centred points on the first principal direction (x) and add the mean back.")
    gen = torch.Generator().manual_seed(0)
    cases = 2
    for n, d, k in ((50, 8, 3), (30, 5, 0), (20, 6, 6), (40, 10, 1)):
        x = torch.randn(n, d, generator=gen) @ torch.randn(d, d, generator=gen) + 3 * torch.rand(d, generator=gen)
        got = _expect_tensor(fn(x.clone(), k), name, (n, d), "one reconstruction per row of x")
        want = pca_reconstruction(x, k)
        if 0 < k < d and _agrees(got, pca_reconstruction(x, k + 1)):
            raise AssertionError(f"{name}: with k = {k} you used {k + 1} components (off by one in the slice).")
        _first_difference(got, want, name, f"random data N={n}, D={d}, k={k}",
                          "x_hat = mean + (x - mean) V_k^T V_k with V_k the first k rows of Vh "
                          "(k = 0 gives the mean).", atol=1e-3)
        cases += 1
    _passed(name, cases)

# --- lesson 02 ---------------------------------------------------------------------------------------------


def check_bed_of_nails(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """Lesson 02: ``fn(x, factor)`` -> ``[B, C, H * factor, W * factor]``, ``x`` at the top-left of every block."""
    from segedu.ops.upsample import bed_of_nails, nearest_upsample

    name = "bed_of_nails"
    x = torch.tensor([[1.0, 4.0], [3.0, 2.0]])[None, None]
    want = torch.tensor([[1.0, 0, 4, 0], [0, 0, 0, 0], [3, 0, 2, 0], [0, 0, 0, 0]])[None, None]
    got = _expect_tensor(fn(x.clone(), 2), name, (1, 1, 4, 4), "the lecture's 2x2 -> 4x4 example")
    if _agrees(got, nearest_upsample(x, 2)):
        raise AssertionError(f"{name}: you copied every value into its whole block (nearest neighbour). Bed of nails "
                             "keeps each value once, at the top-left of its block, and zeros elsewhere.")
    if _agrees(got, torch.tensor([[0.0, 0, 0, 0], [0, 1, 0, 4], [0, 0, 0, 0], [0, 3, 0, 2]])[None, None]):
        raise AssertionError(f"{name}: the values sit at the bottom-right of their blocks; put them at "
                             "(i * factor, j * factor), the top-left.")
    _first_difference(got, want, name, "the lecture's example [[1, 4], [3, 2]]",
                      "Expected [[1,0,4,0],[0,0,0,0],[3,0,2,0],[0,0,0,0]].")
    cases = 1
    gen = torch.Generator().manual_seed(0)
    for shape, factor, dtype in (((2, 3, 3, 5), 3, torch.float32), ((1, 2, 4, 1), 2, torch.float64),
                                 ((2, 1, 2, 3), 1, torch.float32), ((1, 1, 3, 3), 4, torch.int64)):
        x = torch.randint(1, 10, shape, generator=gen).to(dtype)
        out_shape = (*shape[:2], shape[2] * factor, shape[3] * factor)
        got = _expect_tensor(fn(x.clone(), factor), name, out_shape, f"factor {factor}")
        if got.dtype != dtype:
            raise AssertionError(f"{name} turned {dtype} into {got.dtype}: create the output with x.new_zeros(...) "
                                 "so it keeps the input's dtype (and device).")
        _first_difference(got, bed_of_nails(x, factor), name, f"input {shape}, factor {factor}",
                          "Each value goes to (i * factor, j * factor); every other entry is 0.")
        cases += 1
    _passed(name, cases)


def check_bilinear_align_corners(fn: Callable[[torch.Tensor, int, int], torch.Tensor]) -> None:
    """Lesson 02: ``fn(x, out_h, out_w)`` -> bilinear interpolation with ``align_corners=True``."""
    from segedu.ops.upsample import bilinear_upsample

    name = "bilinear (align_corners=True)"
    x = torch.arange(1, 10, dtype=torch.float32).view(1, 1, 3, 3)
    want = bilinear_upsample(x, size=(5, 5), align_corners=True)
    got = _expect_tensor(fn(x.clone(), 5, 5), name, (1, 1, 5, 5), "the lecture's 3x3 -> 5x5 table")
    if _agrees(got, bilinear_upsample(x, size=(5, 5), align_corners=False)):
        raise AssertionError(f"{name}: you computed align_corners=False (s = (i + 0.5) * in / out - 0.5). With "
                             "aligned corners s = i * (in - 1) / (out - 1), so output 0 and output out-1 land on the "
                             "corner pixels.")
    _first_difference(got, want, name, "the lecture's 3x3 -> 5x5 table (rows 1.0 1.5 2.0 2.5 3.0 / 2.5 3.0 ...)",
                      "Check the weights: the neighbour at floor(s) gets 1 - w, the next one w = s - floor(s).")
    cases = 1
    gen = torch.Generator().manual_seed(0)
    for shape, out in (((2, 3, 4, 6), (7, 11)), ((1, 2, 5, 5), (3, 2)), ((1, 1, 1, 4), (3, 9)),
                       ((2, 1, 6, 3), (1, 1)), ((1, 3, 2, 2), (8, 8))):
        x = torch.randn(shape, generator=gen)
        got = _expect_tensor(fn(x.clone(), *out), name, (*shape[:2], *out), f"{shape} -> {out}")
        _first_difference(got, bilinear_upsample(x, size=out, align_corners=True), name, f"input {shape} -> {out}",
                          "At the last row/column y1 = min(y0 + 1, H - 1) (no neighbour beyond the edge); with one "
                          "output row the scale is 0; with one input row y0 = y1 = 0.", atol=1e-5)
        cases += 1
    _passed(name, cases)


# --- lesson 03 ---------------------------------------------------------------------------------------------


def _overwrite_placement(x: torch.Tensor, kernel: torch.Tensor, stride: int) -> torch.Tensor:
    """The classic mistake: each placed kernel *overwrites* the canvas instead of adding to it."""
    (h, w), (kh, kw) = x.shape, kernel.shape
    out = torch.zeros((h - 1) * stride + kh, (w - 1) * stride + kw, dtype=torch.float64)
    for i in range(h):
        for j in range(w):
            out[i * stride : i * stride + kh, j * stride : j * stride + kw] = x[i, j] * kernel
    return out


def check_transposed_conv_scatter(fn: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]) -> None:
    """Lesson 03: ``fn(x, kernel, stride)`` with ``x`` ``[H, W]`` and ``kernel`` ``[kh, kw]`` -> the transposed
    convolution ``[(H - 1) * stride + kh, (W - 1) * stride + kw]`` (no padding): scaled kernels, placed, summed."""
    from segedu.ops.upsample import transposed_conv2d

    name = "transposed_conv_scatter"

    def reference(x, kernel, stride):
        return transposed_conv2d(x[None, None].double(), kernel[None, None].double(), stride=stride)[0, 0]

    x = torch.tensor([[0.0, 2.0], [3.0, 1.0]])
    kernel = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    want = torch.tensor([[0.0, 0.0, 2.0], [0.0, 7.0, 7.0], [6.0, 11.0, 3.0]])
    got = _expect_tensor(fn(x.clone(), kernel.clone(), 1), name, (3, 3), "the lecture's example, stride 1")
    if _agrees(got, _overwrite_placement(x, kernel, 1)):
        raise AssertionError(f"{name}: where two placed kernels overlap you kept only the last one. A transposed "
                             "convolution *adds* the overlapping contributions: use += on the output slice.")
    if _agrees(got, reference(x, kernel.flip(0, 1), 1)):
        raise AssertionError(f"{name}: your kernel is flipped. Place x[i, j] * kernel as it is: the top-left tap "
                             "lands on (i * stride, j * stride).")
    _first_difference(got, want, name, "the lecture's example [[0,2],[3,1]] with kernel [[0,1],[2,3]]",
                      "Expected [[0,0,2],[0,7,7],[6,11,3]]: x[i, j] * kernel placed at (i, j), overlaps summed.")
    cases = 1
    gen = torch.Generator().manual_seed(0)
    for (h, w), (kh, kw), stride in (((2, 2), (3, 3), 2), ((3, 4), (2, 3), 2), ((4, 3), (3, 3), 3),
                                     ((1, 5), (4, 2), 1), ((3, 3), (1, 1), 2)):
        x = torch.randn(h, w, generator=gen)
        kernel = torch.randn(kh, kw, generator=gen)
        shape = ((h - 1) * stride + kh, (w - 1) * stride + kw)
        got = _expect_tensor(fn(x.clone(), kernel.clone(), stride), name, shape,
                             f"(H - 1) * stride + kh rows for H={h}, kh={kh}, stride={stride}")
        if _agrees(got, _overwrite_placement(x, kernel, stride)) and stride < max(kh, kw):
            raise AssertionError(f"{name}: with stride {stride} and a {kh}x{kw} kernel the placed kernels overlap; "
                                 "you kept only the last one. Add them up.")
        _first_difference(got, reference(x, kernel, stride), name, f"x {h}x{w}, kernel {kh}x{kw}, stride {stride}",
                          "Kernel number (i, j) starts at (i * stride, j * stride).", atol=1e-5)
        cases += 1
    _passed(name, cases)


def check_transposed_output_size(fn: Callable[..., int]) -> None:
    """Lesson 03: ``fn(size, kernel, stride=1, padding=0, output_padding=0, dilation=1)`` -> the output size of a
    transposed convolution along one axis, as ``nn.ConvTranspose2d`` computes it."""
    import itertools

    name = "transposed_output_size"
    cases = 0
    for size, kernel, stride, padding, output_padding, dilation in itertools.product(
            (1, 2, 5), (1, 3, 4), (1, 2, 3), (0, 1), (0, 1, 2), (1, 2)):
        if output_padding >= max(stride, dilation):
            continue  # torch refuses these
        want = (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1
        if want < 1:
            continue
        got = fn(size, kernel, stride, padding, output_padding, dilation)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if got is None:
            raise AssertionError(f"{name} returned None: did you forget the `return` statement?")
        if isinstance(got, bool) or not isinstance(got, int):
            raise AssertionError(f"{name} must return an int, got {type(got).__name__} {got!r} (use // not /).")
        if got != want:
            args = f"size={size}, kernel={kernel}, stride={stride}, padding={padding}, output_padding={output_padding}, dilation={dilation}"
            hints = {
                (size - 1) * stride - 2 * padding + kernel + output_padding: "the dilated kernel spans dilation * (kernel - 1) + 1 pixels",
                (size - 1) * stride - padding + dilation * (kernel - 1) + output_padding + 1: "padding crops from both sides: subtract 2 * padding",
                (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + 1: "output_padding adds rows at the bottom/right",
                size * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1: "the first kernel starts at 0 and the last at (size - 1) * stride",
            }
            raise AssertionError(f"{name}({args}) returned {got}, expected {want}: {hints.get(got, 'compare with nn.ConvTranspose2d')}.")
        cases += 1
    _passed(name, cases)


# --- lesson 04 ---------------------------------------------------------------------------------------------


def check_dilate_kernel(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """Lesson 04: ``fn(kernel, rate)`` with ``kernel`` ``[kh, kw]`` -> ``[rate * (kh - 1) + 1, rate * (kw - 1) + 1]``,
    the taps ``rate`` apart and zeros between them."""
    from segedu.ops.dilation import dilate_kernel

    name = "dilate_kernel"
    kernel = torch.arange(1, 10, dtype=torch.float32).view(3, 3)
    want = dilate_kernel(kernel[None, None], 2)[0, 0]
    got = fn(kernel.clone(), 2)
    if isinstance(got, torch.Tensor) and tuple(got.shape) == (6, 6):
        raise AssertionError(f"{name}: a 3x3 kernel at rate 2 came back 6x6. Between two taps go rate - 1 zeros, "
                             "and there is nothing after the last tap: the size is rate * (k - 1) + 1 = 5.")
    got = _expect_tensor(got, name, (5, 5), "a 3x3 kernel at rate 2")
    _first_difference(got, want, name, "kernel 1..9 at rate 2",
                      "Tap (i, j) goes to (i * rate, j * rate); everything else is 0.")
    cases = 1
    gen = torch.Generator().manual_seed(0)
    for (kh, kw), rate in (((3, 3), 1), ((3, 3), 4), ((2, 5), 3), ((1, 3), 2), ((4, 1), 5)):
        kernel = torch.randn(kh, kw, generator=gen)
        shape = (rate * (kh - 1) + 1, rate * (kw - 1) + 1)
        got = _expect_tensor(fn(kernel.clone(), rate), name, shape, f"a {kh}x{kw} kernel at rate {rate}")
        _first_difference(got, dilate_kernel(kernel[None, None], rate)[0, 0], name, f"{kh}x{kw} kernel, rate {rate}",
                          "Tap (i, j) goes to (i * rate, j * rate).")
        if got.dtype != kernel.dtype:
            raise AssertionError(f"{name} changed the dtype from {kernel.dtype} to {got.dtype}: use kernel.new_zeros.")
        cases += 1
    # gradients must flow back to the taps: the dilated kernel of a layer is learned
    kernel = torch.randn(3, 3, generator=gen).requires_grad_()
    out = fn(kernel, 2)
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        raise AssertionError(f"{name}: the result does not depend on kernel for autograd. Write the taps into the "
                             "zeros with a slice assignment (out[::rate, ::rate] = kernel), do not copy numbers.")
    out.sum().backward()
    if kernel.grad is None or not torch.equal(kernel.grad, torch.ones(3, 3)):
        raise AssertionError(f"{name}: the gradient with respect to every tap should be 1 for out.sum().")
    cases += 1
    _passed(name, cases)


VGG16_FEATURES = ([(3, 1)] * 2 + [(2, 2)] + [(3, 1)] * 2 + [(2, 2)] + ([(3, 1)] * 3 + [(2, 2)]) * 3)
"""VGG16's ``features`` as ``(kernel, stride)`` tuples: 13 3x3 convolutions and 5 2x2 max-pools."""


def check_receptive_field(fn: Callable[[list], tuple]) -> None:
    """Lesson 04: ``fn(layers)`` with ``layers`` a list of ``(kernel, stride, dilation)`` -> ``(size, jump)``: the
    receptive field of one output of the last layer and the distance between neighbouring outputs, in input pixels."""
    from segedu.ops.dilation import receptive_field

    name = "receptive_field"

    def ask(layers):
        got = fn([tuple(layer) for layer in layers])
        if got is None:
            raise AssertionError(f"{name} returned None: did you forget the `return` statement?")
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise AssertionError(f"{name} must return a pair (size, jump), got {got!r}")
        return tuple(int(v) if isinstance(v, (int, float)) or torch.is_tensor(v) else v for v in got)

    fixed = [
        ([(3, 1, 1)] * 3, (7, 1), "three 3x3 convolutions"),
        ([(3, 1, r) for r in (1, 2, 4, 8)], (31, 1), "3x3 convolutions with rates 1, 2, 4, 8"),
        ([(3, 1, 1), (2, 2, 1), (3, 1, 1)], (8, 2), "conv 3x3, pool 2x2 stride 2, conv 3x3"),
        ([(k, s, 1) for k, s in VGG16_FEATURES], (212, 32), "VGG16's features"),
        ([(k, s, 1) for k, s in VGG16_FEATURES[:-1]], (196, 16), "VGG16 up to conv5_3"),
    ]
    for layers, want, what in fixed:
        got = ask(layers)
        if got != want:
            hint = "size grows by (span - 1) * jump per layer, span = dilation * (kernel - 1) + 1; then jump *= stride."
            if got[0] == 1 + sum(d * (k - 1) for k, _, d in layers):
                hint = "you forgot to multiply by the jump: after a stride-2 layer one step of the next kernel is 2 input pixels."
            elif got[0] == 1 + sum(k - 1 for k, _, _ in layers) and any(d > 1 for _, _, d in layers):
                hint = "you ignored the dilation: a 3x3 kernel at rate d spans 2 d + 1 pixels."
            raise AssertionError(f"{name}, {what}: got (size, jump) = {got}, expected {want}. {hint}")
    cases = len(fixed)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        n = int(torch.randint(1, 7, (1,), generator=gen))
        layers = [tuple(int(v) for v in (torch.randint(1, 6, (1,), generator=gen), torch.randint(1, 4, (1,), generator=gen),
                                         torch.randint(1, 4, (1,), generator=gen))) for _ in range(n)]
        ref = receptive_field(layers)
        if ask(layers) != (ref.size, ref.jump):
            raise AssertionError(f"{name}({layers}) returned {ask(layers)}, expected {(ref.size, ref.jump)}.")
        cases += 1
    _passed(name, cases)


# (end of the lessons 01-04 checks)


# --- lesson 10: losses ----------------------------------------------------------------------------------------

__all__ += ["check_dice_loss", "check_focal_loss"]


def _loss_scalar(value, name: str) -> torch.Tensor:
    """The student's loss must be a 0-dim floating tensor."""
    if value is None:
        raise AssertionError(f"{name} returned None: did you forget the `return` statement?")
    if not isinstance(value, torch.Tensor):
        raise AssertionError(
            f"{name} must return a torch.Tensor (a scalar the optimizer can backpropagate through), "
            f"got {type(value).__name__}. Keep the computation in torch: no .item(), no NumPy."
        )
    if value.dim() != 0:
        raise AssertionError(
            f"{name} returned shape {tuple(value.shape)}, expected a scalar (shape ()): average over the pixels "
            "(or classes) at the end."
        )
    if not value.is_floating_point():
        raise AssertionError(f"{name} returned dtype {value.dtype}: a loss is a floating-point number.")
    return value


def _loss_value_and_grad(fn: Callable, name: str, logits: torch.Tensor, *args, **kwargs):
    """Call ``fn`` on a fresh leaf copy of ``logits``; return the loss (float64) and d loss / d logits."""
    leaf = logits.detach().clone().requires_grad_(True)
    value = _loss_scalar(fn(leaf, *args, **kwargs), name)
    if not value.requires_grad:
        raise AssertionError(
            f"{name}: the loss does not depend on the logits through autograd (no gradient can flow). "
            "Did you call .detach(), .item(), .numpy() or torch.tensor(...) on an intermediate result?"
        )
    (grad,) = torch.autograd.grad(value, leaf)
    return value.detach().double(), grad.double()


def _loss_close(got: torch.Tensor, want: torch.Tensor, rtol: float = 1e-5, atol: float = 1e-8) -> bool:
    return bool(torch.allclose(got.double(), want.double(), rtol=rtol, atol=atol))


def _loss_hint(got: torch.Tensor, mistakes: dict[str, torch.Tensor]) -> str:
    """The hint of the first known mistake whose value the student's answer reproduces, or ''."""
    for hint, value in mistakes.items():
        if _loss_close(got, value, rtol=1e-4):
            return " " + hint
    return ""


# Exercise: multiclass soft Dice loss.


def _loss_dice_terms(probabilities: torch.Tensor, one_hot: torch.Tensor, smooth: float, dims=(0, 2, 3)):
    """Squared-denominator soft Dice per class, the statistics summed over ``dims``."""
    num = 2 * (probabilities * one_hot).sum(dims) + smooth
    den = (probabilities**2).sum(dims) + (one_hot**2).sum(dims) + smooth
    return num / den


def _loss_dice_mistakes(logits: torch.Tensor, target: torch.Tensor, smooth: float) -> dict[str, torch.Tensor]:
    """Plausible wrong Dice losses, each with the hint the student gets when they reproduce it."""
    num_classes = logits.shape[1]
    g = torch.nn.functional.one_hot(target, num_classes).permute(0, 3, 1, 2).double()
    p = torch.softmax(logits.double(), dim=1)
    dice = _loss_dice_terms(p, g, smooth)
    linear = (2 * (p * g).sum((0, 2, 3)) + smooth) / (p.sum((0, 2, 3)) + g.sum((0, 2, 3)) + smooth)
    per_image = _loss_dice_terms(p, g, smooth, dims=(2, 3))
    numerator_only = (2 * (p * g).sum((0, 2, 3)) + smooth) / ((p**2).sum((0, 2, 3)) + (g**2).sum((0, 2, 3)))
    return {
        "You returned the Dice coefficient itself: the loss is 1 - Dice (0 for a perfect prediction).":
            dice.mean(),
        "The lecture's Dice squares the denominator terms: sum p^2 + sum g^2, not sum p + sum g.":
            1 - linear.mean(),
        "Sum the statistics over the whole batch (dims 0, 2, 3) per class, then average over classes - not "
        "one Dice per image.": 1 - per_image.mean(),
        "Apply softmax over the class dimension (dim=1) first: the formula needs probabilities, not logits.":
            1 - _loss_dice_terms(logits.double(), g, smooth).mean(),
        "`smooth` goes into the numerator AND the denominator.": 1 - numerator_only.mean(),
        "Average over ALL classes, background (class 0) included.": 1 - dice[1:].mean(),
    }


def check_dice_loss(fn: Callable) -> None:
    """Lesson 10: ``fn(logits, target, smooth=1.0)`` is the multiclass soft Dice loss of the lecture.

    ``logits`` float ``[B, C, H, W]``, ``target`` int64 ``[B, H, W]`` in ``0..C-1``; with p = softmax over C
    and g the one-hot target, per class c: ``D_c = (2 sum p g + smooth) / (sum p^2 + sum g^2 + smooth)``,
    sums over batch and pixels; the loss is ``1 - mean_c D_c`` (a scalar). Reference:
    ``segedu.losses.dice_loss(mode="multiclass", ignore_index=None)``.
    """
    from segedu.losses import dice_loss

    name = "dice_loss"
    # The worked example: one 2x2 image, 2 classes. Foreground probabilities 0.9, 0.2, 0.6, 0.1 (logits are
    # log-probabilities, so softmax gives them back exactly); the first and third pixels are foreground.
    p1 = torch.tensor([[0.9, 0.2], [0.6, 0.1]], dtype=torch.float64)
    logits = torch.stack([torch.log(1 - p1), torch.log(p1)])[None]  # [1, 2, 2, 2]
    target = torch.tensor([[[1, 0], [1, 0]]])
    # class 1: 2 sum pg = 2 (0.9 + 0.6) = 3.0,  sum p^2 = 0.81 + 0.04 + 0.36 + 0.01 = 1.22,  sum g^2 = 2
    # class 0: 2 sum pg = 2 (0.8 + 0.9) = 3.4,  sum p^2 = 0.01 + 0.64 + 0.16 + 0.81 = 1.62,  sum g^2 = 2
    worked = {0.0: 1 - (3.0 / 3.22 + 3.4 / 3.62) / 2, 1.0: 1 - (4.0 / 4.22 + 4.4 / 4.62) / 2}
    cases = 0
    for smooth, want in worked.items():
        got, _ = _loss_value_and_grad(fn, name, logits, target, smooth=smooth)
        if not _loss_close(got, torch.tensor(want)):
            hint = _loss_hint(got, _loss_dice_mistakes(logits, target, smooth))
            raise AssertionError(
                f"{name}, worked example (2x2 image, smooth={smooth}): got {float(got):.6f}, expected {want:.6f}."
                + (hint or " Check the per-class sums and the mean over classes.")
            )
        cases += 1
    # Random cases against the package, values and gradients.
    gen = torch.Generator().manual_seed(10)
    for shape, smooth in [((2, 3, 5, 7), 1.0), ((1, 2, 8, 8), 0.0), ((3, 4, 6, 5), 0.5), ((2, 5, 4, 4), 1.0)]:
        batch, num_classes, height, width = shape
        logits = 3 * torch.randn(shape, generator=gen, dtype=torch.float64)
        target = torch.randint(0, num_classes, (batch, height, width), generator=gen)
        got, grad = _loss_value_and_grad(fn, name, logits, target, smooth=smooth)
        want, want_grad = _loss_value_and_grad(
            lambda z, y, smooth: dice_loss(z, y, mode="multiclass", ignore_index=None, smooth=smooth),
            "reference", logits, target, smooth=smooth,
        )
        case = f"random case logits {list(shape)}, smooth={smooth}"
        if not _loss_close(got, want):
            hint = _loss_hint(got, _loss_dice_mistakes(logits, target, smooth))
            raise AssertionError(f"{name}, {case}: got {float(got):.6f}, expected {float(want):.6f}.{hint}")
        if not _loss_close(grad, want_grad, rtol=1e-4, atol=1e-9):
            raise AssertionError(
                f"{name}, {case}: the value is right but the gradient is off by up to "
                f"{float((grad - want_grad).abs().max()):.2e}. Avoid in-place edits and non-differentiable steps "
                "(argmax, rounding) inside the loss."
            )
        cases += 1
    # Networks give float32 logits: the loss must work (and stay finite) on them too.
    logits, target = torch.randn(2, 3, 4, 4, generator=gen), torch.randint(0, 3, (2, 4, 4), generator=gen)
    got = _loss_scalar(fn(logits, target), name)
    if not torch.isfinite(got):
        raise AssertionError(f"{name} returned {float(got)} for float32 logits: it must be finite.")
    _passed(name, cases + 1)


# Exercise: binary focal loss.


def _loss_focal_mistakes(logits, target, alpha, gamma) -> dict[str, torch.Tensor]:
    z, y = logits.double(), target.double()
    p = torch.sigmoid(z)
    p_t = p * y + (1 - p) * (1 - y)
    ce = torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none")
    alpha_t = alpha * y + (1 - alpha) * (1 - y)
    return {
        "Sum, then divide by the number of pixels: the loss is the MEAN over pixels, not the sum.":
            (alpha_t * (1 - p_t) ** gamma * ce).sum(),
        "The modulating factor is (1 - p_t)^gamma with p_t the probability of the TRUE class (p for a "
        "positive pixel, 1 - p for a negative one).": (alpha_t * (1 - p) ** gamma * ce).mean(),
        "The modulating factor is (1 - p_t)^gamma, not p_t^gamma: it must shrink the loss of pixels that are "
        "already right.": (alpha_t * p_t**gamma * ce).mean(),
        "alpha weighs the POSITIVE pixels (target 1) and 1 - alpha the negatives, as in Lin et al.":
            ((1 - alpha_t) * (1 - p_t) ** gamma * ce).mean(),
        "Multiply by alpha_t (alpha for positives, 1 - alpha for negatives).": ((1 - p_t) ** gamma * ce).mean(),
    }


def check_focal_loss(fn: Callable) -> None:
    """Lesson 10: ``fn(logits, target, alpha=0.25, gamma=2.0)`` is the binary focal loss, mean over pixels.

    ``logits`` float ``[B, H, W]`` (one foreground logit per pixel), ``target`` float ``[B, H, W]`` of 0/1.
    ``FL = mean_i -alpha_t (1 - p_t)^gamma log p_t`` with p = sigmoid(logits), p_t = p for target 1 and
    1 - p for target 0, alpha_t = alpha for target 1 and 1 - alpha for target 0 (Lin et al., ICCV 2017).
    Reference: ``torchvision.ops.sigmoid_focal_loss(..., reduction="mean")`` (and ``segedu.losses.focal_loss``).
    """
    import math

    from torchvision.ops import sigmoid_focal_loss

    name = "focal_loss"
    # The worked example: three pixels. p = 0.5 on a positive, p = 0.9 on a positive, p = 0.9 on a negative.
    logits = torch.tensor([[[0.0, math.log(9.0), math.log(9.0)]]], dtype=torch.float64)
    target = torch.tensor([[[1.0, 1.0, 0.0]]], dtype=torch.float64)
    # 0.25 * 0.5^2 * ln 2 = 0.043322,  0.25 * 0.1^2 * -ln 0.9 = 0.000263,  0.75 * 0.9^2 * -ln 0.1 = 1.398853
    want = (0.25 * 0.25 * math.log(2) + 0.25 * 0.01 * -math.log(0.9) + 0.75 * 0.81 * -math.log(0.1)) / 3
    got, _ = _loss_value_and_grad(fn, name, logits, target, alpha=0.25, gamma=2.0)
    if not _loss_close(got, torch.tensor(want)):
        hint = _loss_hint(got, _loss_focal_mistakes(logits, target, 0.25, 2.0))
        raise AssertionError(
            f"{name}, worked example (3 pixels): got {float(got):.6f}, expected {want:.6f}."
            + (hint or " Work out the three pixels by hand: -alpha_t (1 - p_t)^gamma log p_t.")
        )
    cases = 1
    # gamma = 0, alpha = 0.5: half the binary cross-entropy.
    gen = torch.Generator().manual_seed(11)
    logits = 2 * torch.randn(2, 6, 6, generator=gen, dtype=torch.float64)
    target = (torch.rand(2, 6, 6, generator=gen) < 0.3).double()
    got, _ = _loss_value_and_grad(fn, name, logits, target, alpha=0.5, gamma=0.0)
    half_bce = 0.5 * torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    if not _loss_close(got, half_bce):
        raise AssertionError(
            f"{name}: with gamma=0 and alpha=0.5 the focal loss is half the binary cross-entropy "
            f"({float(half_bce):.6f}), got {float(got):.6f}."
            + _loss_hint(got, _loss_focal_mistakes(logits, target, 0.5, 0.0))
        )
    cases += 1
    # Random cases against torchvision: values and gradients.
    for shape, alpha, gamma in [((2, 8, 8), 0.25, 2.0), ((1, 5, 9), 0.75, 1.0), ((3, 4, 4), 0.5, 0.5)]:
        logits = 4 * torch.randn(shape, generator=gen, dtype=torch.float64)
        target = (torch.rand(shape, generator=gen) < 0.2).double()
        got, grad = _loss_value_and_grad(fn, name, logits, target, alpha=alpha, gamma=gamma)
        want, want_grad = _loss_value_and_grad(
            lambda z, y, alpha, gamma: sigmoid_focal_loss(z, y, alpha=alpha, gamma=gamma, reduction="mean"),
            "reference", logits, target, alpha=alpha, gamma=gamma,
        )
        case = f"random case {list(shape)}, alpha={alpha}, gamma={gamma}"
        if not _loss_close(got, want):
            hint = _loss_hint(got, _loss_focal_mistakes(logits, target, alpha, gamma))
            raise AssertionError(f"{name}, {case}: got {float(got):.6f}, expected {float(want):.6f}.{hint}")
        if not _loss_close(grad, want_grad, rtol=1e-4, atol=1e-9):
            raise AssertionError(
                f"{name}, {case}: the value is right but the gradient is off by up to "
                f"{float((grad - want_grad).abs().max()):.2e}."
            )
        cases += 1
    # Confident mistakes in float32: sigmoid(40) rounds to 1.0, so log(1 - sigmoid(z)) is log(0) = -inf.
    logits = torch.tensor([[40.0, -40.0, 40.0, -40.0]])
    target = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    got, grad = _loss_value_and_grad(fn, name, logits, target, alpha=0.25, gamma=2.0)
    want = torch.tensor((0.75 * 40.0 + 0.25 * 40.0) / 4)  # two pixels wrong by 40 nats, two right (~0)
    if not (torch.isfinite(got) and torch.isfinite(grad).all()):
        raise AssertionError(
            f"{name}: logits of +-40 in float32 gave loss {float(got)} (gradient finite: "
            f"{bool(torch.isfinite(grad).all())}). sigmoid(40) is exactly 1.0 in float32, so log(1 - p) = -inf. "
            "Compute log p_t from the logits: F.logsigmoid(z) = log p and F.logsigmoid(-z) = log(1 - p) "
            "(or F.binary_cross_entropy_with_logits(..., reduction='none') = -log p_t)."
        )
    if not _loss_close(got, want, rtol=1e-4):
        raise AssertionError(f"{name}: logits of +-40 gave {float(got):.4f}, expected {float(want):.4f}.")
    _passed(name, cases + 1)


# --- lesson 07: DeepLab and the dense CRF ---------------------------------------------------------------------

__all__ += ["check_mean_field_step", "check_aspp_rates"]


def _mean_field_variant(probs, image, params, normalize=True, half=True, sign=1.0, unary=True, pixel_softmax=False):
    """One exact mean-field step, and the plausible mistakes (for the hints of ``check_mean_field_step``)."""
    from segedu.crf import bilateral_features, gaussian_features

    c, h, w = probs.shape
    q = probs.double().reshape(c, -1).t()  # [N, C]
    message = torch.zeros_like(q)
    for weight, f in ((params["w_bilateral"], bilateral_features(image, params["theta_alpha"], params["theta_beta"])),
                      (params["w_gaussian"], gaussian_features(h, w, params["theta_gamma"]))):
        f = f.double()
        k = torch.exp(-(0.5 if half else 1.0) * torch.cdist(f, f) ** 2)
        d = k.sum(1).rsqrt() if normalize else torch.ones(h * w, dtype=torch.float64)
        message += weight * d[:, None] * (k @ (d[:, None] * q))
    logits = (torch.log(q) if unary else 0) + sign * message
    return torch.softmax(logits, dim=0 if pixel_softmax else 1).t().reshape(c, h, w)


def check_mean_field_step(fn: Callable) -> None:
    """Lesson 07: ``fn(probs [C, H, W], image uint8 [3, H, W], w_bilateral, theta_alpha, theta_beta, w_gaussian,
    theta_gamma)`` returns the marginals ``Q [C, H, W]`` after ONE exact mean-field iteration started from
    ``probs``, as ``segedu.crf.dense_crf(..., iterations=1, method="naive")`` computes them."""
    from segedu.crf import dense_crf

    name = "mean_field_step"
    gen = torch.Generator().manual_seed(7)
    keys = ("w_bilateral", "theta_alpha", "theta_beta", "w_gaussian", "theta_gamma")
    cases = []
    # The worked example: a 2 x 4 image, dark on the left and bright on the right; the unary leans the wrong way
    # on column 1 (a dark pixel that looks "bright"). The appearance kernel pulls it back to its dark neighbours.
    image = torch.tensor([[10, 10, 240, 240]] * 2, dtype=torch.uint8).expand(3, 2, 4).contiguous()
    p_dark = torch.tensor([[0.9, 0.4, 0.1, 0.1]] * 2, dtype=torch.float64)
    cases.append(("the 2x4 worked example", torch.stack([p_dark, 1 - p_dark]), image,
                  dict(w_bilateral=5.0, theta_alpha=3.0, theta_beta=20.0, w_gaussian=1.0, theta_gamma=1.0)))
    for c, h, w in ((3, 5, 4), (4, 6, 7), (2, 8, 8)):
        params = dict(zip(keys, (float(torch.empty(1).uniform_(1, 10, generator=gen)),
                                 float(torch.empty(1).uniform_(2, 8, generator=gen)),
                                 float(torch.empty(1).uniform_(10, 60, generator=gen)),
                                 float(torch.empty(1).uniform_(0.5, 4, generator=gen)),
                                 float(torch.empty(1).uniform_(1, 3, generator=gen)))))
        probs = torch.randn(c, h, w, generator=gen, dtype=torch.float64).softmax(0)
        image = torch.randint(0, 256, (3, h, w), generator=gen, dtype=torch.uint8)
        cases.append((f"random case C={c}, {h}x{w}", probs, image, params))
    mistakes = {
        "no symmetric normalisation": (
            dict(normalize=False), "Divide the kernel symmetrically: D^-1/2 K D^-1/2 with D = diag(K 1) (row sums)."
        ),
        "exp(-d^2) instead of exp(-d^2 / 2)": (dict(half=False), "The Gaussian is exp(-|f_i - f_j|^2 / 2)."),
        "message subtracted": (dict(sign=-1.0), "The Potts message is ADDED to the log-probabilities: a label gets "
                                                "likelier when similar pixels hold it."),
        "unary left out": (dict(unary=False), "Keep the unary: softmax(log P + message), not softmax(message)."),
        "softmax over the pixels": (dict(pixel_softmax=True), "Normalise over the classes (each pixel's Q sums to 1)."),
    }
    for case, probs, image, params in cases:
        got = _expect_tensor(fn(probs.clone(), image.clone(), **params), name, tuple(probs.shape), "Q [C, H, W]")
        if not got.is_floating_point():
            raise AssertionError(f"{name} returned dtype {got.dtype}: Q holds probabilities, a floating tensor.")
        want = dense_crf(probs, image, iterations=1, method="naive", **params)
        got64 = got.detach().double().cpu()
        if not torch.allclose(got64, want, atol=2e-5, rtol=1e-4):
            hint = "Check the features (x, y, r, g, b divided by the thetas), the kernel, the weights."
            for mistake, (variant, text) in mistakes.items():
                if torch.allclose(got64, _mean_field_variant(probs, image, params, **variant), atol=2e-5, rtol=1e-4):
                    hint = f"It looks like {mistake}. {text}"
                    break
            if not torch.allclose(got64.sum(0), torch.ones_like(got64[0]), atol=1e-4):
                hint += " Also: each pixel's Q must sum to 1 over the classes."
            _close(got64, want, name, case, hint, atol=2e-5)
    _passed(name, len(cases))


def check_aspp_rates(fn: Callable) -> None:
    """Lesson 07: ``fn(output_stride, base_rates=(6, 12, 18), base_stride=16)`` returns the atrous rates (a tuple
    of ints) that give ASPP the same field of view at ``output_stride`` as ``base_rates`` at ``base_stride``, and
    raises ``ValueError`` when a rate would not be an integer. Compared with ``segedu.models.deeplab.aspp_rates``."""
    from segedu.models.deeplab import aspp_rates

    name = "aspp_rates"
    cases = [((16,), {}), ((8,), {}), ((32,), {}), ((4,), {}),
             ((16,), {"base_rates": (6, 12, 18, 24), "base_stride": 8}),  # DeepLab v2's rates, moved to stride 16
             ((8,), {"base_rates": (1, 2, 3), "base_stride": 8})]
    for args, kwargs in cases:
        case = f"{name}({', '.join([str(a) for a in args] + [f'{k}={v}' for k, v in kwargs.items()])})"
        want = aspp_rates(*args, **kwargs)
        got = fn(*args, **kwargs)
        if got is None:
            raise AssertionError(f"{name} returned None: did you forget the `return` statement?")
        if isinstance(got, torch.Tensor) or not isinstance(got, (tuple, list)):
            raise AssertionError(f"{case}: return a tuple of ints, got {type(got).__name__}")
        if any(isinstance(r, bool) or not isinstance(r, int) for r in got):
            raise AssertionError(f"{case}: the rates must be Python ints (a dilation is a whole number of pixels), "
                                 f"got {[type(r).__name__ for r in got]}. Use integer arithmetic (divmod).")
        if tuple(got) != want:
            base_stride = kwargs.get("base_stride", 16)
            inverted = tuple(r * args[0] // base_stride for r in kwargs.get("base_rates", (6, 12, 18)))
            hint = ("You scaled the wrong way: at a smaller output stride the feature map is LARGER, so the same "
                    "field of view in the image needs LARGER rates (rate x base_stride / output_stride)."
                    if tuple(got) == inverted else "rate x base_stride / output_stride, for every base rate.")
            raise AssertionError(f"{case} returned {tuple(got)}, expected {want}. {hint}")
    try:
        fn(7)
    except ValueError:
        pass
    else:
        raise AssertionError(f"{name}(7) must raise ValueError: 6 x 16 / 7 is not a whole number of pixels.")
    _passed(name, len(cases) + 1)


# --- lesson 09: Mask R-CNN -------------------------------------------------------------------------------------

__all__ += ["check_box_iou", "check_nms"]


def check_box_iou(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Lesson 09: ``fn(boxes1 [N, 4], boxes2 [M, 4])`` -> float ``[N, M]``, the IoU of every pair of boxes
    ``(x1, y1, x2, y2)`` (continuous coordinates: a box [0, 0, 2, 2] has area 4). Compared with
    ``segedu.ops.roi.box_iou`` (equal to ``torchvision.ops.box_iou``)."""
    from segedu.ops.roi import box_iou

    name = "box_iou"
    # Worked examples: overlap 1 of union 7; contained (1/16); disjoint; touching along an edge; identical.
    boxes1 = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 1.0, 1.0]])
    boxes2 = torch.tensor([[1.0, 1.0, 3.0, 3.0], [1.0, 1.0, 2.0, 2.0], [2.0, 2.0, 3.0, 3.0], [1.0, 0.0, 2.0, 1.0],
                           [0.0, 0.0, 2.0, 2.0]])
    want = box_iou(boxes1, boxes2)
    got = fn(boxes1.clone(), boxes2.clone())
    if isinstance(got, torch.Tensor) and tuple(got.shape) == (5, 3):
        raise AssertionError(f"{name} returned shape (5, 3): rows must follow boxes1 (N = 3) and columns boxes2 "
                             "(M = 5), i.e. [N, M]; you have it transposed.")
    got = _expect_tensor(got, name, (3, 5), "one IoU per pair: rows boxes1, columns boxes2")
    if not got.is_floating_point():
        raise AssertionError(f"{name} returned dtype {got.dtype}: IoU is a fraction, return a float tensor.")
    mistakes = {
        "you count a box [0, 0, 2, 2] as 3 x 3 pixels (the '+1' convention of old Pascal code): here coordinates "
        "are continuous, the area is (x2 - x1) * (y2 - y1)": _iou_variant(boxes1, boxes2, plus_one=True),
        "disjoint boxes get a positive 'intersection': clamp the overlap width and height at 0 before "
        "multiplying (two negative sides make a positive product)": _iou_variant(boxes1, boxes2, clamp=False),
        "the union counts the overlap twice: union = area1 + area2 - intersection": _iou_variant(
            boxes1, boxes2, subtract=False),
        "you divide by the smaller area, not by the union": _iou_variant(boxes1, boxes2, by_min=True),
    }
    for hint, wrong in mistakes.items():
        if _agrees(got, wrong, atol=1e-6) and not _agrees(got, want, atol=1e-6):
            raise AssertionError(f"{name}, the worked examples: {hint}.")
    _first_difference(got, want, name, "the worked examples (row 0: [0, 0, 2, 2] vs [1, 1, 3, 3] has IoU 1/7)",
                      "Intersection: max of the top-left corners, min of the bottom-right corners, width and height "
                      "clamped at 0. Union: area1 + area2 - intersection.", atol=1e-6)
    gen = torch.Generator().manual_seed(9)
    cases = 1
    for n, m in ((7, 4), (1, 9), (12, 12)):
        xy = torch.rand(n + m, 2, generator=gen) * 40
        boxes = torch.cat([xy, xy + 1 + torch.rand(n + m, 2, generator=gen) * 20], 1)
        a, b = boxes[:n], boxes[n:]
        got = _expect_tensor(fn(a.clone(), b.clone()), name, (n, m), "one IoU per pair")
        _first_difference(got, box_iou(a, b), name, f"random boxes, N={n}, M={m}",
                          "Compare with the worked examples; broadcast boxes1[:, None] against boxes2[None, :].",
                          atol=1e-6)
        cases += 1
    _passed(name, cases)


def _iou_variant(a: torch.Tensor, b: torch.Tensor, plus_one=False, clamp=True, subtract=True, by_min=False):
    """Box IoU with one classic mistake switched on (to name it in check_box_iou's message)."""
    extra = 1.0 if plus_one else 0.0
    area_a = (a[:, 2] - a[:, 0] + extra) * (a[:, 3] - a[:, 1] + extra)
    area_b = (b[:, 2] - b[:, 0] + extra) * (b[:, 3] - b[:, 1] + extra)
    wh = torch.minimum(a[:, None, 2:], b[None, :, 2:]) - torch.maximum(a[:, None, :2], b[None, :, :2]) + extra
    if clamp:
        wh = wh.clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    if by_min:
        return inter / torch.minimum(area_a[:, None], area_b[None, :])
    return inter / (area_a[:, None] + area_b[None, :] - (inter if subtract else 0))


def check_nms(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> None:
    """Lesson 09: ``fn(boxes [N, 4], scores [N], iou_threshold)`` -> int64 indices of the boxes greedy NMS keeps,
    by decreasing score: visit boxes from the best score down, keep a box unless a box kept before it overlaps it
    with IoU > ``iou_threshold``. Compared with ``segedu.ops.roi.nms`` (equal to ``torchvision.ops.nms``)."""
    from segedu.ops.roi import nms

    name = "nms"

    def run(boxes, scores, threshold, case):
        got = fn(boxes.clone(), scores.clone(), threshold)
        if got is None:
            raise AssertionError(f"{name} returned None: did you forget the `return` statement?")
        if not isinstance(got, torch.Tensor):
            raise AssertionError(f"{name} must return a torch.Tensor of indices (int64), got {type(got).__name__}")
        if got.is_floating_point() or got.dtype == torch.bool or got.dim() != 1:
            raise AssertionError(f"{name}, {case}: return a 1-D tensor of int64 box indices (not a mask, not the "
                                 f"boxes), got dtype {got.dtype} and shape {tuple(got.shape)}")
        return got.cpu().tolist()

    # 1. A chain: A overlaps B, B overlaps C, A and C do not. B is suppressed by A, so it cannot suppress C.
    chain = torch.tensor([[0.0, 0, 10, 10], [3.0, 0, 13, 10], [6.0, 0, 16, 10]])
    got = run(chain, torch.tensor([0.9, 0.8, 0.7]), 0.5, "a chain of three boxes")
    if got == [0]:
        raise AssertionError(f"{name}, a chain of three boxes (A overlaps B, B overlaps C, A and C do not): you keep "
                             "only A. B was suppressed by A, so B must not suppress C - only KEPT boxes suppress "
                             "(dropping C is 'Fast NMS').")
    if got != [0, 2]:
        raise AssertionError(f"{name}, a chain of three boxes: you keep {got}, expected [0, 2].")
    # 2. Order: the best box first, whatever its position in the input.
    apart = torch.tensor([[0.0, 0, 4, 4], [10.0, 10, 14, 14], [20.0, 0, 24, 4]])
    got = run(apart, torch.tensor([0.7, 0.9, 0.8]), 0.5, "three separate boxes")
    if sorted(got) == [0, 1, 2] and got != [1, 2, 0]:
        raise AssertionError(f"{name}, three separate boxes with scores [0.7, 0.9, 0.8]: you return {got}; return "
                             "the kept indices by decreasing score: [1, 2, 0].")
    if got != [1, 2, 0]:
        raise AssertionError(f"{name}, three separate boxes: nothing overlaps, so all are kept; you return {got}, "
                             "expected [1, 2, 0].")
    # 3. The threshold is strict: IoU exactly 0.5 at threshold 0.5 is not suppressed.
    half = torch.tensor([[0.0, 0, 2, 1], [0.0, 0, 1, 1]])
    got = run(half, torch.tensor([0.9, 0.8]), 0.5, "IoU exactly at the threshold")
    if got == [0]:
        raise AssertionError(f"{name}: two boxes with IoU exactly 0.5 and iou_threshold=0.5 must both be kept: "
                             "suppress only when IoU > iou_threshold (not >=).")
    if got != [0, 1]:
        raise AssertionError(f"{name}, IoU exactly at the threshold: you keep {got}, expected [0, 1].")
    # 4. Nothing to do.
    if run(torch.zeros(0, 4), torch.zeros(0), 0.5, "no boxes") != []:
        raise AssertionError(f"{name}: with no boxes, return an empty tensor.")
    # 5. Random clusters against the reference.
    gen = torch.Generator().manual_seed(4)
    cases = 4
    for n, threshold in ((20, 0.3), (40, 0.5), (60, 0.7)):
        centres = torch.rand(4, 2, generator=gen) * 60  # a few clusters, so boxes overlap a lot
        xy = centres[torch.randint(0, 4, (n,), generator=gen)] + torch.randn(n, 2, generator=gen) * 4
        boxes = torch.cat([xy, xy + 8 + torch.rand(n, 2, generator=gen) * 12], 1)
        scores = torch.rand(n, generator=gen)
        got, want = run(boxes, scores, threshold, f"{n} random boxes"), nms(boxes, scores, threshold).tolist()
        if got != want:
            missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
            raise AssertionError(
                f"{name}, {n} random boxes at iou_threshold={threshold}: you keep {len(got)} boxes, expected "
                f"{len(want)}" + (f"; you drop {missing}" if missing else "") + (f"; you keep {extra} wrongly" if extra else "")
                + ("; same boxes, different order: sort by decreasing score" if not missing and not extra else "")
                + ". Check the order of visits (scores.argsort(descending=True)) and that only kept boxes suppress."
            )
        cases += 1
    _passed(name, cases)


# --- lesson 08: PSPNet and FPN -----------------------------------------------------------------------------

__all__ += ["check_pyramid_pooling", "check_lateral_merge"]


def _pyramid_variant(x, bins, reduce, pool="avg", keep_x=True, x_first=True, mode="bilinear", align=False,
                     kernel_pool=False):
    """The pyramid pooling forward, or one of its common mistakes (the flags), to name what a student did."""
    import torch.nn.functional as F

    size = x.shape[-2:]
    pooled = []
    for b, conv in zip(bins, reduce):
        if kernel_pool:  # a b x b *kernel* instead of b x b *bins*
            p = F.avg_pool2d(x, b, ceil_mode=True)
        else:
            p = F.adaptive_avg_pool2d(x, b) if pool == "avg" else F.adaptive_max_pool2d(x, b)
        kwargs = {"align_corners": align} if mode == "bilinear" else {}
        pooled.append(F.interpolate(conv(p), size=size, mode=mode, **kwargs))
    parts = ([x] if keep_x else []) + pooled if x_first else pooled + ([x] if keep_x else [])
    return torch.cat(parts, dim=1)


def _reduce_modules(in_channels: int, out_channels: int, count: int, gen: torch.Generator):
    """``count`` 1x1 conv + BN + ReLU modules in eval mode with random weights and BN statistics."""
    from segedu.models.deeplab import conv_bn_relu

    modules = []
    for _ in range(count):
        m = conv_bn_relu(in_channels, out_channels, 1).eval()
        with torch.no_grad():
            m[0].weight.copy_(torch.randn(m[0].weight.shape, generator=gen) * 0.5)
            m[1].running_mean.copy_(torch.randn(out_channels, generator=gen) * 0.1)
            m[1].running_var.copy_(0.5 + torch.rand(out_channels, generator=gen))
            m[1].bias.copy_(torch.rand(out_channels, generator=gen))  # mostly positive: ReLU keeps the values
        modules.append(m)
    return modules


def check_pyramid_pooling(fn: Callable) -> None:
    """Lesson 08: ``fn(x, bins, reduce)`` is PSPNet's pyramid pooling forward: for each bin size ``b`` (with its
    module ``reduce[i]``) adaptive average pooling of ``x [B, C, h, w]`` to ``b x b``, the module, bilinear
    upsampling back to ``h x w`` (``align_corners=False``); returns ``torch.cat([x, pooled_1, ...], dim=1)``.
    Compared with ``segedu.models.pspnet.pyramid_pool`` on a worked example and random cases, gradients too."""
    from torch import nn

    from segedu.models.pspnet import pyramid_pool

    name = "pyramid_pooling"
    mistakes = {
        "max pooling": dict(pool="max"),
        "the features x are missing from the concatenation": dict(keep_x=False),
        "the pooled maps come before x: concatenate x first, then the bins in order": dict(x_first=False),
        "nearest-neighbour upsampling: use mode='bilinear'": dict(mode="nearest"),
        "align_corners=True: use align_corners=False": dict(align=True),
        "you pool with a b x b kernel (F.avg_pool2d); PSPNet pools to b x b bins (F.adaptive_avg_pool2d)":
            dict(kernel_pool=True),
    }

    def run(x, bins, reduce, case):
        want = pyramid_pool(x, bins, reduce)
        got = fn(x, bins, reduce)
        channels = want.shape[1]  # x's channels + each reduced map's
        if got is not None and isinstance(got, torch.Tensor) and got.shape != want.shape:
            for hint, flags in mistakes.items():
                try:
                    if _agrees(got, _pyramid_variant(x, bins, reduce, **flags)):
                        raise AssertionError(f"{name}, {case}: {hint}.")
                except RuntimeError:
                    pass
        _expect_tensor(got, name, tuple(want.shape),
                       f"[B, C + reduced channels, h, w] = [B, {channels}, h, w]: x followed by one map per bin")
        if not _agrees(got, want, atol=1e-4):
            for hint, flags in mistakes.items():
                if _agrees(got, _pyramid_variant(x, bins, reduce, **flags)):
                    raise AssertionError(f"{name}, {case}: {hint}.")
            _close(got, want, name, case, "Check each step: pool to b x b bins, apply reduce[i], upsample to (h, w), "
                   "concatenate along the channels.")
        return got, want

    # 1. Worked example: one channel 0..15 on a 4x4 map, identity modules, bins 1 and 2.
    x = torch.arange(16.0).view(1, 1, 4, 4)
    got, want = run(x, (1, 2), [nn.Identity(), nn.Identity()], "worked example (x = 0..15 on 4x4, bins (1, 2))")
    cases = 1
    # 2. Random cases: odd sizes, maps smaller than a bin, real reduction modules.
    gen = torch.Generator().manual_seed(8)
    for bins, (b, c, h, w), out in (((1, 2, 3, 6), (2, 8, 7, 9), 2), ((1, 2, 3, 6), (1, 4, 5, 4), 1),
                                    ((2, 4), (2, 6, 12, 10), 3), ((3,), (1, 3, 8, 8), 3)):
        x = torch.randn(b, c, h, w, generator=gen).requires_grad_(True)
        reduce = _reduce_modules(c, out, len(bins), gen)
        got, want = run(x, bins, reduce, f"x of shape {(b, c, h, w)}, bins {bins}")
        # 3. Gradients: the output must stay connected to x (no detach, no NumPy round trip).
        weight = torch.randn(want.shape, generator=gen)
        (want_grad,) = torch.autograd.grad((want * weight).sum(), x)
        if not got.requires_grad:
            raise AssertionError(f"{name}: the result is not connected to x (requires_grad is False): use torch "
                                 "operations only, no .detach(), .numpy() or torch.no_grad().")
        (got_grad,) = torch.autograd.grad((got * weight).sum(), x)
        _close(got_grad, want_grad, name, f"gradient w.r.t. x, {(b, c, h, w)}",
               "The values match but the gradient does not: is some part computed without x?")
        cases += 1
    _passed(name, cases)


def _merge_variant(top, feature, lateral, mode="nearest", use_lateral=True, sign=1.0, on_top=False):
    import torch.nn.functional as F

    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    up = F.interpolate(top, size=feature.shape[-2:], mode=mode, **kwargs)
    if on_top:
        return feature + lateral(up)
    return (lateral(feature) if use_lateral else feature) + sign * up


def check_lateral_merge(fn: Callable) -> None:
    """Lesson 08: ``fn(top, feature, lateral)`` is FPN's lateral connection: the coarser level ``top [B, d, h, w]``
    upsampled by nearest neighbour to ``feature``'s size, plus ``lateral(feature)`` (a 1x1 conv ``c -> d``):
    ``[B, d, H, W]``. Compared with ``segedu.models.fpn.lateral_merge``, odd sizes and gradients included."""
    from torch import nn

    from segedu.models.fpn import lateral_merge

    name = "lateral_merge"
    mistakes = {
        "bilinear upsampling: FPN upsamples the coarser map by nearest neighbour (mode='nearest')":
            dict(mode="bilinear"),
        "you subtract the upsampled map: the lateral connection ADDS it": dict(sign=-1.0),
        "you applied `lateral` to the upsampled top: the 1x1 conv belongs on the backbone feature (c -> d channels)":
            dict(on_top=True),
        "you added the backbone feature itself: pass it through `lateral` first (the 1x1 conv, c -> d channels)":
            dict(use_lateral=False),
    }

    def run(top, feature, lateral, case):
        want = lateral_merge(top, feature, lateral)
        try:
            got = fn(top, feature, lateral)
        except NotImplementedError:  # a RuntimeError too, but it means "not attempted yet": let it through
            raise
        except RuntimeError as err:  # typically a size or channel mismatch in the addition or the conv
            raise AssertionError(
                f"{name}, {case}: your function raised `{err}`. Upsample `top` to feature.shape[-2:] (not by a "
                "factor 2: sizes can be odd), and apply `lateral` to `feature` (c channels), not to `top`."
            ) from err
        if isinstance(got, torch.Tensor) and got.shape != want.shape and got.shape[1] != want.shape[1]:
            raise AssertionError(
                f"{name}, {case}: you return {tuple(got.shape)}, expected {tuple(want.shape)}. FPN adds two maps of "
                "d channels; concatenating them (as U-Net does) doubles the channels.")
        _expect_tensor(got, name, tuple(want.shape), "[B, d, H, W]: the size of feature, the channels of top")
        if not _agrees(got, want, atol=1e-5):
            for hint, flags in mistakes.items():
                if _agrees(got, _merge_variant(top, feature, lateral, **flags), atol=1e-5):
                    raise AssertionError(f"{name}, {case}: {hint}.")
            _close(got, want, name, case,
                   "lateral(feature) + F.interpolate(top, size=feature.shape[-2:], mode='nearest').")
        return got, want

    # 1. Worked example: top [[1, 2], [3, 4]], feature of ones, lateral = 1x1 conv with weight 10, bias 0.
    lateral = nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        lateral.weight.fill_(10.0)
        lateral.bias.zero_()
    top = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    run(top, torch.ones(1, 1, 4, 4), lateral, "worked example (2x2 top, 4x4 feature of ones, lateral x10)")
    cases = 1
    # 2. Random cases, odd sizes, several channels.
    gen = torch.Generator().manual_seed(80)
    for (b, d, h, w), (c, hh, ww) in (((2, 4, 3, 4), (6, 6, 8)), ((1, 3, 3, 4), (5, 5, 7)), ((2, 8, 1, 1), (4, 2, 2))):
        lateral = nn.Conv2d(c, d, 1)
        with torch.no_grad():
            lateral.weight.copy_(torch.randn(lateral.weight.shape, generator=gen))
            lateral.bias.copy_(torch.randn(d, generator=gen))
        top = torch.randn(b, d, h, w, generator=gen).requires_grad_(True)
        feature = torch.randn(b, c, hh, ww, generator=gen).requires_grad_(True)
        got, want = run(top, feature, lateral, f"top {(b, d, h, w)}, feature {(b, c, hh, ww)}")
        weight = torch.randn(want.shape, generator=gen)
        if not got.requires_grad:
            raise AssertionError(f"{name}: the result is not connected to the inputs (requires_grad is False): use "
                                 "torch operations only, no .detach() or torch.no_grad().")
        want_grads = torch.autograd.grad((want * weight).sum(), (top, feature))
        got_grads = torch.autograd.grad((got * weight).sum(), (top, feature))
        for what, g, wg in zip(("top", "feature"), got_grads, want_grads):
            _close(g, wg, name, f"gradient w.r.t. {what}, {(b, d, h, w)}", "Is part of the sum computed without it?")
        cases += 1
    _passed(name, cases)


# --- lesson 11: the capstone ---------------------------------------------------------------------------------

__all__ += ["check_conv2d_flops"]


def _conv_flops_variant(conv, shape, macs=False, groups=True, stride=True, dilation=True, padding=True,
                        bias=False) -> int:
    """``conv2d_flops`` with one thing done wrong (the flags name what), to tell the student which."""
    b, _, h, w = shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    sh, sw = (sh, sw) if stride else (1, 1)
    dh, dw = (dh, dw) if dilation else (1, 1)
    ph, pw = (ph, pw) if padding else (0, 0)
    h_out = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    w_out = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    outputs = b * conv.out_channels * h_out * w_out
    per_output = (conv.in_channels // (conv.groups if groups else 1)) * kh * kw
    return outputs * per_output * (1 if macs else 2) + (outputs if bias else 0)


def check_conv2d_flops(fn: Callable) -> None:
    """Lesson 11: ``fn(conv, input_shape)`` returns the FLOPs of ``nn.Conv2d`` ``conv`` on an input
    ``(B, C_in, H, W)``, as ``torch.utils.flop_counter`` counts them (2 per multiply-add, bias ignored)."""
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    name = "conv2d_flops"
    mistakes = {
        "you counted multiply-adds (MACs); the FLOP counter counts 2 FLOPs per multiply-add": dict(macs=True),
        "each output sees only C_in / groups input channels (a depthwise conv has groups = C_in)": dict(groups=False),
        "the output size shrinks with the stride: H_out = floor((H + 2p - d(k-1) - 1) / s) + 1": dict(stride=False),
        "a dilated kernel spans d(k-1)+1 pixels: use the dilation in the output size": dict(dilation=False),
        "the padding adds 2p pixels to H and W before the kernel slides": dict(padding=False),
        "torch's FLOP counter ignores the bias additions": dict(bias=True),
    }

    def run(conv, shape, case):
        got = fn(conv, shape)
        if got is None:
            raise AssertionError(f"{name} returned None: did you forget the `return` statement?")
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, (int, float)) or not abs(got) < float("inf") or got != int(got):
            raise AssertionError(f"{name}, {case}: return a whole number of FLOPs (an int), got {got!r}")
        with FlopCounterMode(display=False) as counter:
            conv(torch.zeros(shape))
        want = counter.get_total_flops()
        if int(got) != want:
            for hint, flags in mistakes.items():
                if int(got) == _conv_flops_variant(conv, shape, **flags):
                    raise AssertionError(f"{name}, {case}: got {int(got):,}, expected {want:,}: {hint}.")
            raise AssertionError(
                f"{name}, {case}: got {int(got):,}, expected {want:,} (off by a factor {int(got) / want:.3g}). "
                "FLOPs = 2 x B x C_out x H_out x W_out x (C_in / groups) x kh x kw.")

    # 1. Worked example: VGG16's first convolution on a 224 x 224 image: 2 x 64 x 224^2 x 3 x 3 x 3 = 0.17 GFLOP.
    vgg_conv = nn.Conv2d(3, 64, 3, padding=1)
    run(vgg_conv, (1, 3, 224, 224), "VGG16 conv1_1 on 1 x 3 x 224 x 224 (173,408,256 FLOPs)")
    # 2. Fixed cases, one per ingredient of the formula, then random ones.
    fixed = [
        (dict(in_channels=6, out_channels=4, kernel_size=(3, 5), stride=2, padding=(0, 2)), (2, 6, 13, 17)),
        (dict(in_channels=8, out_channels=8, kernel_size=3, dilation=3, padding=3, groups=8), (1, 8, 12, 12)),
        (dict(in_channels=4, out_channels=6, kernel_size=1, stride=3, groups=2, bias=False), (3, 4, 10, 11)),
        (dict(in_channels=5, out_channels=7, kernel_size=3, dilation=2, stride=2), (2, 5, 15, 16)),
    ]
    gen = torch.Generator().manual_seed(11)
    rand = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=gen))  # noqa: E731
    while len(fixed) < 12:
        groups = rand(1, 3)
        k, d, s, p = rand(1, 5), rand(1, 3), rand(1, 3), rand(0, 2)
        h, w = rand(d * (k - 1) + 1, 20), rand(d * (k - 1) + 1, 20)
        fixed.append((dict(in_channels=groups * rand(1, 4), out_channels=groups * rand(1, 4), kernel_size=k,
                           stride=s, padding=p, dilation=d, groups=groups), (rand(1, 3), 0, h, w)))
    for kw, shape in fixed:
        shape = (shape[0], kw["in_channels"], shape[2], shape[3])
        run(nn.Conv2d(**kw), shape, f"Conv2d({', '.join(f'{k}={v}' for k, v in kw.items())}) on {shape}")
    _passed(name, 1 + len(fixed))
