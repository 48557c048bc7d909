"""Lesson 01 · Autoencoders: the exercise checks.

``check_psnr``: the peak signal-to-noise ratio of every image of a batch, compared with
``segedu.models.autoencoder.psnr``; ``check_pca_reconstruction``: data rebuilt from its first k principal
components, the linear autoencoder, compared with ``segedu.models.autoencoder.pca_reconstruction``.
"""

from __future__ import annotations

from typing import Callable

import torch

from segedu.checks.common import agrees, compare, expect_tensor, passed

__all__ = ["check_psnr", "check_pca_reconstruction"]


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
    got = expect_tensor(got, name, (2,), "one PSNR per image")
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
        if agrees(got, wrong):
            raise AssertionError(f"{name}, worked example: {hint}")
    compare(got, want, f"{name}, worked example (errors 0.1 and 0.05 -> 20.00 and 26.02 dB)", atol=1e-3,
            hint="PSNR = 10 log10(1 / MSE) with the MSE of each image.")
    gen = torch.Generator().manual_seed(0)
    cases = 1
    for shape in ((1, 1, 5, 7), (3, 3, 8, 8), (4, 2, 6, 5)):
        reference = torch.rand(shape, generator=gen)
        x = (reference + 0.2 * torch.rand(shape[0], 1, 1, 1, generator=gen) * torch.randn(shape, generator=gen)).clamp(0, 1)
        got = expect_tensor(fn(x.clone(), reference.clone()), name, (shape[0],), "one PSNR per image")
        compare(got, psnr(x, reference), f"{name}, random images of shape {shape}", atol=1e-3,
                hint="Average the squared error over every value of one image (all channels).")
        cases += 1
    passed(name, cases)


def check_pca_reconstruction(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """Lesson 01: ``fn(x, k)`` with ``x`` float ``[N, D]`` -> ``[N, D]``: ``x`` rebuilt from its first ``k`` principal
    components (centred data, top right singular vectors)."""
    from segedu.models.autoencoder import pca_reconstruction

    name = "pca_reconstruction"
    # Worked example 1: points exactly on the line y = 2x + 1 need one component - but only around their mean.
    line = torch.tensor([[0.0, 1.0], [1.0, 3.0], [2.0, 5.0], [3.0, 7.0]])
    got = expect_tensor(fn(line.clone(), 1), name, (4, 2), "one reconstruction per row of x")
    if agrees(got, line.mean(0).expand(4, 2)):
        raise AssertionError(f"{name}: four points on the line y = 2x + 1 all came back as their mean {got[0].tolist()}: "
                             "you projected on a direction of zero variance. torch.linalg.svd sorts the singular "
                             "values in decreasing order: keep the *first* k rows of Vh.")
    if not agrees(got, line):
        raise AssertionError(f"{name}: four points on the line y = 2x + 1 should come back exactly with k = 1, got "
                             f"{got.detach().tolist()}. Subtract the mean before the SVD and add it back after: the "
                             "line does not pass through the origin.")
    # Worked example 2: a 4 x 1 rectangle; the long axis (x) is the first component.
    box = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 1.0], [4.0, 1.0]])
    want = torch.tensor([[0.0, 0.5], [4.0, 0.5], [0.0, 0.5], [4.0, 0.5]])
    got = expect_tensor(fn(box.clone(), 1), name, (4, 2), "one reconstruction per row of x")
    if agrees(got, box):
        raise AssertionError(f"{name}: with k = 1 the 4 x 1 rectangle came back unchanged, as if every component was "
                             "kept. Keep only the first k rows of Vh (an off-by-one? k + 1 rows?).")
    if agrees(got, torch.tensor([[2.0, 0.0], [2.0, 0.0], [2.0, 1.0], [2.0, 1.0]])):
        raise AssertionError(f"{name}: you kept the direction of *least* variance (y). torch.linalg.svd sorts the "
                             "singular values in decreasing order: the first k rows of Vh are the top components.")
    compare(got, want, f"{name}, the 4 x 1 rectangle with k = 1", atol=1e-5,
            hint="Project the centred points on the first principal direction (x) and add the mean back.")
    gen = torch.Generator().manual_seed(0)
    cases = 2
    for n, d, k in ((50, 8, 3), (30, 5, 0), (20, 6, 6), (40, 10, 1)):
        x = torch.randn(n, d, generator=gen) @ torch.randn(d, d, generator=gen) + 3 * torch.rand(d, generator=gen)
        got = expect_tensor(fn(x.clone(), k), name, (n, d), "one reconstruction per row of x")
        want = pca_reconstruction(x, k)
        if 0 < k < d and agrees(got, pca_reconstruction(x, k + 1)):
            raise AssertionError(f"{name}: with k = {k} you used {k + 1} components (off by one in the slice).")
        compare(got, want, f"{name}, random data N={n}, D={d}, k={k}", atol=1e-3,
                hint="x_hat = mean + (x - mean) V_k^T V_k with V_k the first k rows of Vh (k = 0 gives the mean).")
        cases += 1
    passed(name, cases)
