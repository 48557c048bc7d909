"""Lesson 01's experiments: the autoencoders it trains, and the claims it makes about them, one seed at a time.

The lesson makes two claims that compare trained models with a baseline:

* a **nonlinear** autoencoder (one hidden ReLU layer on each side, Hinton & Salakhutdinov, Science 2006) rebuilds
  held-out silhouettes better than PCA with the same k numbers (``nonlinear_vs_pca``);
* a **denoising** convolutional autoencoder (Vincent et al., ICML 2008) raises the PSNR of noisy scenes
  (``denoising_gain``).

Each is a function of a ``seed`` (the initial weights and the order of the batches; the data stay the same), so
``bench/seeds.py`` can measure how much the margin moves from seed to seed (``COMPARISONS``). The trained models
are kept for the rest of the Python process (``nonlinear_autoencoder``, ``denoising_autoencoder``): the lesson
draws pictures and widgets from the very models its asserts measured, without training them twice.

``boundary_errors`` measures where the denoiser's reconstruction error lives (section 6 of the lesson): by
distance to the nearest object boundary, and how much edge contrast survives the bottleneck.

Images are float ``[B, C, H, W]`` in [0, 1]; silhouettes ``[N, 1, S / 4, S / 4]`` for the profile's side ``S``.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from segedu import runtime, validate
from segedu.data.shapes import ShapesDataset
from segedu.experiments.common import Comparison
from segedu.models.autoencoder import (ConvAutoencoder, MLPAutoencoder, ReconstructionData, noisy_copy,
                                       pca_reconstruction, psnr, reconstruct)
from segedu.ops.distance import edt
from segedu.train import fit

__all__ = [
    "NOISE_SIGMA",
    "HIDDEN",
    "silhouettes",
    "silhouette_sets",
    "nonlinear_autoencoder",
    "nonlinear_vs_pca",
    "conv_widths",
    "denoising_autoencoder",
    "denoising_gain",
    "BoundaryErrors",
    "boundary_errors",
    "boundary_blur",
    "COMPARISONS",
]

NOISE_SIGMA = 0.3  # the noise the denoiser is trained and scored on (images in [0, 1])
HIDDEN = (256,)    # the nonlinear autoencoder's hidden layer on each side of the code


def _profile(profile) -> runtime.Profile:
    if profile is None:
        return runtime.profile()
    if not isinstance(profile, runtime.Profile):
        raise TypeError(f"profile must be a segedu.runtime.Profile or None, got {type(profile).__name__}")
    return profile


def silhouettes(n: int, image_size: int, seed: int, device=None) -> torch.Tensor:
    """``n`` single-shape scenes as soft silhouettes: float ``[n, 1, image_size // 4, image_size // 4]`` in [0, 1].

    The mask of a ``ShapesDataset`` scene with exactly one object ("is there an object here?"), averaged down 4x
    so its edges are soft. Few numbers describe one (kind of shape, position, size, angle): data a short code
    can capture.
    """
    n = validate.positive_int(n, "n")
    image_size = validate.positive_int(image_size, "image_size")
    if image_size < 4:
        raise ValueError(f"image_size must be at least 4 (it is averaged down 4x), got {image_size}")
    _, masks = ShapesDataset(n, size=image_size, seed=seed, min_objects=1, max_objects=1,
                             device=device if device is not None else "cpu").batch(range(n))
    return F.avg_pool2d((masks > 0).float()[:, None], 4)


@functools.lru_cache(maxsize=4)
def _silhouette_sets(p: runtime.Profile, device: torch.device):
    return (silhouettes(p.train_images, p.image_size, seed=0, device=device),
            silhouettes(p.val_images, p.image_size, seed=1, device=device))


def silhouette_sets(profile=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train, val)`` silhouettes of the profile: ``train_images`` scenes of seed 0 and ``val_images`` of seed 1,
    on ``runtime.device()``. Rendered once per process; every seed trains on the same data."""
    return _silhouette_sets(_profile(profile), runtime.device())


@functools.lru_cache(maxsize=32)
def _nonlinear(k: int, seed: int, p: runtime.Profile) -> MLPAutoencoder:
    train, _ = silhouette_sets(p)
    runtime.seed_everything(seed)  # the initial weights
    model = MLPAutoencoder(train[0].numel(), hidden=HIDDEN, bottleneck=k)
    fit(model, ReconstructionData(train), F.mse_loss, p.ae_steps, batch_size=128, progress=False, seed=seed)
    return model


def nonlinear_autoencoder(k: int, seed: int = 0, profile=None) -> MLPAutoencoder:
    """The nonlinear autoencoder with a ``k``-unit code, trained on the profile's training silhouettes.

    ``MLPAutoencoder(D, hidden=HIDDEN, bottleneck=k)``, initial weights from ``seed``; ``profile.ae_steps`` Adam
    steps of 128 silhouettes, mean squared error, the batches drawn with ``seed``. Trained once per
    ``(k, seed, profile)`` and kept: later calls return the same (eval-mode) model object.
    """
    k = validate.positive_int(k, "k")
    seed = validate.integer(seed, "seed", minimum=0)
    return _nonlinear(k, seed, _profile(profile))


def _db(mse: float) -> float:
    """A mean squared error as a PSNR in dB (images in [0, 1]): higher is better, +3 dB halves the error."""
    return 10 * math.log10(1 / mse)


def nonlinear_vs_pca(seed: int = 0, profile=None, k: int | None = None) -> dict[str, float]:
    """PCA against the nonlinear autoencoder with the same ``k`` numbers (default ``profile.ae_bottleneck``).

    Both rebuild the held-out silhouettes (PCA fitted on the training set), neither clipped to [0, 1] (clipping
    is a nonlinearity of its own, which would flatter a linear method). Returns the mean squared errors
    ``"pca_mse"``, ``"autoencoder_mse"`` and the same as PSNR in dB, ``"pca_db"``, ``"autoencoder_db"``
    (``10 log10(1 / MSE)``: a difference in dB is a ratio of errors, 0.97 dB = 1.25x).
    """
    p = _profile(profile)
    k = p.ae_bottleneck if k is None else validate.positive_int(k, "k")
    train, val = silhouette_sets(p)
    model = nonlinear_autoencoder(k, seed, p)
    with torch.no_grad():  # the raw outputs of both, neither clipped to [0, 1]: PCA's are not either
        autoencoder = F.mse_loss(model(val.to(next(model.parameters()).device)).to(val.device), val).item()
    pca = F.mse_loss(pca_reconstruction(val, k, fit_on=train), val).item()
    return {"pca_mse": pca, "autoencoder_mse": autoencoder, "pca_db": _db(pca), "autoencoder_db": _db(autoencoder)}


def conv_widths(profile=None) -> tuple[int, ...]:
    """The convolutional autoencoder's widths: ``profile.width`` doubling per level, as many levels as leave an
    8 x 8 bottleneck (``image_size / 8`` = 2 ** levels)."""
    p = _profile(profile)
    depth = max(1, int(math.log2(p.image_size // 8)))
    return tuple(p.width * 2**i for i in range(depth))


@functools.lru_cache(maxsize=8)
def _denoiser(seed: int, p: runtime.Profile) -> ConvAutoencoder:
    scenes = ShapesDataset(p.train_images, size=p.image_size, seed=0, device=runtime.device())
    runtime.seed_everything(seed)
    model = ConvAutoencoder(3, widths=conv_widths(p))
    fit(model, ReconstructionData(scenes, v2.GaussianNoise(sigma=NOISE_SIGMA)), F.mse_loss, p.ae_steps,
        seed=seed, progress=False)
    return model


def denoising_autoencoder(seed: int = 0, profile=None) -> ConvAutoencoder:
    """The denoising ``ConvAutoencoder(3, conv_widths(profile))``, trained to map noisy scenes to clean ones.

    The inputs are ``ShapesDataset`` training scenes (seed 0) with fresh Gaussian noise of std ``NOISE_SIGMA``
    every batch (clipped to [0, 1]), the targets the clean scenes; ``profile.ae_steps`` Adam steps of
    ``profile.batch_size`` scenes, initial weights and batches from ``seed``. Trained once per
    ``(seed, profile)`` and kept: later calls return the same (eval-mode) model object.
    """
    seed = validate.integer(seed, "seed", minimum=0)
    return _denoiser(seed, _profile(profile))


def _validation_scenes(p: runtime.Profile) -> tuple[torch.Tensor, torch.Tensor]:
    return ShapesDataset(p.val_images, size=p.image_size, seed=1).batch(range(p.val_images))


def denoising_gain(seed: int = 0, profile=None) -> dict[str, float]:
    """The mean PSNR (dB) of the noisy validation scenes and of the denoiser's outputs for them.

    The noisy copies are fixed (``noisy_copy(images, NOISE_SIGMA, seed=1)``, whatever ``seed`` trained the
    model). Returns ``{"noisy_db": ..., "denoised_db": ...}``.
    """
    p = _profile(profile)
    model = denoising_autoencoder(seed, p)
    clean, _ = _validation_scenes(p)
    noisy = noisy_copy(clean, NOISE_SIGMA, seed=1)
    return {"noisy_db": psnr(noisy, clean).mean().item(),
            "denoised_db": psnr(reconstruct(model, noisy), clean).mean().item()}


class BoundaryErrors(NamedTuple):
    """What ``boundary_errors`` measures: ``per_distance`` float ``[far + 1]``, the mean squared error of the
    pixels at distance 0, 1, ..., ``far`` (or more) from the nearest boundary; ``kept_contrast``, the mean
    gradient magnitude of the reconstruction on boundary pixels over that of the input; ``reconstruction``,
    the output ``[B, 3, H, W]`` (clipped to [0, 1]); ``boundary`` bool ``[B, H, W]``."""

    per_distance: torch.Tensor
    kept_contrast: float
    reconstruction: torch.Tensor
    boundary: torch.Tensor


def _gradient_magnitude(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W] -> [B, H - 1, W - 1]``: the length of the forward-difference gradient, summed over channels."""
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]
    return (dy.pow(2) + dx.pow(2)).sum(1).sqrt()


def boundary_errors(model: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor, far: int = 6) -> BoundaryErrors:
    """Where an autoencoder's reconstruction error lives, by distance to the nearest object boundary.

    Args:
        model: an image-to-image network (``[B, 3, H, W] -> [B, 3, H, W]``), run without gradients.
        images: float ``[B, 3, H, W]`` in [0, 1], the clean inputs.
        masks: int ``[B, H, W]`` label maps of ``images``. A boundary pixel is one whose 3 x 3 neighbourhood
            holds two labels; distances come from ``segedu.ops.distance.edt``, rounded to whole pixels.
        far: distances of ``far`` pixels or more share the last bin.
    """
    validate.images(images, "images")
    validate.tensor(masks, "masks", 3, layout="[B, H, W]")
    far = validate.positive_int(far, "far")
    if masks.shape != (images.shape[0], *images.shape[-2:]):
        raise ValueError(f"masks must be [B, H, W] = {(images.shape[0], *images.shape[-2:])}, got {tuple(masks.shape)}")
    recon = reconstruct(model, images)
    m = masks[:, None].float()
    boundary = (F.max_pool2d(m, 3, 1, 1) != -F.max_pool2d(-m, 3, 1, 1))[:, 0]  # max != min: two labels nearby
    distance = edt(boundary).round().long().clamp(max=far).flatten()  # 0, 1, ..., far (= far or more)
    error = (recon - images).pow(2).mean(1).flatten()
    counts = torch.bincount(distance, minlength=far + 1).clamp_min(1)
    per_distance = torch.zeros(far + 1, dtype=error.dtype).index_add_(0, distance, error) / counts
    on_edge = boundary[:, :-1, :-1]
    kept = _gradient_magnitude(recon)[on_edge].mean() / _gradient_magnitude(images)[on_edge].mean()
    return BoundaryErrors(per_distance, float(kept), recon, boundary)


def boundary_blur(seed: int = 0, profile=None, far: int = 6) -> dict[str, float]:
    """``boundary_errors`` of the denoiser of ``seed`` on the clean validation scenes, as numbers:
    ``"boundary_mse"`` (distance 0), ``"far_mse"`` (``far`` pixels or more), ``"kept_contrast"``."""
    p = _profile(profile)
    images, masks = _validation_scenes(p)
    found = boundary_errors(denoising_autoencoder(seed, p), images, masks, far)
    return {"boundary_mse": float(found.per_distance[0]), "far_mse": float(found.per_distance[-1]),
            "kept_contrast": found.kept_contrast}


# The lesson's claims about trained models. Margins are what the lesson asserts on better - worse:
# the nonlinear AE's error at most 0.8x PCA's (10 log10(1 / 0.8) = 0.97 dB), the denoiser 2 dB above the noisy input.
COMPARISONS = {
    "nonlinear_vs_pca": Comparison(function=nonlinear_vs_pca, better="autoencoder_db", worse="pca_db",
                                   margin=10 * math.log10(1 / 0.8)),
    "denoising_gain": Comparison(function=denoising_gain, better="denoised_db", worse="noisy_db", margin=2.0),
}
