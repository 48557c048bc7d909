"""Lesson 01 (autoencoders): how much survives a k-number bottleneck, and what a denoising autoencoder recovers.

``bottleneck_explorer`` compares ``segedu.models.autoencoder.pca_reconstruction`` with trained autoencoders at
each bottleneck size; ``denoising_viewer`` scores a denoising autoencoder with ``segedu.models.autoencoder.psnr``.
"""

from __future__ import annotations

import ipywidgets as W
from matplotlib.figure import Figure

from segedu.widgets.frame import FigureDemo, draw_image

__all__ = ["draw_bottleneck", "bottleneck_explorer", "draw_denoising", "denoising_viewer"]


def draw_bottleneck(fig: Figure, images, fit_on, models: dict, errors: dict, k: int, index: int) -> dict:
    """Lesson 01: image ``index`` next to its PCA reconstruction with ``k`` components (fitted on ``fit_on``) and
    the reconstruction by ``models[k]``, an autoencoder with a ``k``-unit code; right: ``errors`` (from
    ``bottleneck_explorer``) against k with the chosen k marked."""
    from segedu.models.autoencoder import pca_reconstruction, reconstruct

    x = images[index : index + 1]
    pca = pca_reconstruction(x, k, fit_on=fit_on)
    ae = reconstruct(models[k], x)
    grid = fig.add_gridspec(1, 4, width_ratios=[1, 1, 1, 1.6], wspace=0.7)  # room for the plot's tick labels
    pictures = [(x[0], "input"), (pca[0].clamp(0, 1), f"PCA, k={k}\nMSE {float((pca - x).pow(2).mean()):.4f}"),
                (ae[0], f"autoencoder, k={k}\nMSE {float((ae - x).pow(2).mean()):.4f}")]
    for column, (picture, title) in enumerate(pictures):
        draw_image(fig.add_subplot(grid[0, column]), picture, title)
    ax = fig.add_subplot(grid[0, 3])
    ks = sorted(errors["pca"])
    ax.plot(ks, [errors["pca"][q] for q in ks], "o-", label="PCA")
    ax.plot(ks, [errors["ae"][q] for q in ks], "s-", label="autoencoder")
    ax.axvline(k, color="gray", linestyle=":")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("bottleneck size k")
    ax.set_ylabel("MSE")
    ax.set_title("mean squared error (all images)", fontsize=9)
    ax.legend(fontsize=8)
    return {"k": k, "pca_mse": float((pca - x).pow(2).mean()), "ae_mse": float((ae - x).pow(2).mean())}


def bottleneck_explorer(images, fit_on, models: dict) -> FigureDemo:
    """Lesson 01: slide the bottleneck size k; compare PCA and a trained autoencoder at each k.

    ``images`` float ``[N, C, h, w]`` to show, ``fit_on`` the training set PCA is fitted on, ``models`` maps k to
    an autoencoder with a k-unit code (``MLPAutoencoder``).
    """
    from segedu.models.autoencoder import pca_reconstruction, reconstruct

    if not models:
        raise ValueError("models must map bottleneck sizes k to trained autoencoders")
    errors = {"pca": {}, "ae": {}}
    for k, model in models.items():  # the curve is computed once, not at every redraw
        errors["ae"][k] = float((reconstruct(model, images) - images).pow(2).mean())
        errors["pca"][k] = float((pca_reconstruction(images, k, fit_on=fit_on) - images).pow(2).mean())
    ks = sorted(models)
    controls = {
        "k": W.SelectionSlider(options=ks, value=ks[-1], description="k"),
        "index": W.IntSlider(value=0, min=0, max=len(images) - 1, description="image"),
    }
    return FigureDemo(lambda fig, **v: draw_bottleneck(fig, images, fit_on, models, errors, **v), controls,
                      figsize=(10, 2.8), title="How much survives a k-number bottleneck?")


def draw_denoising(fig: Figure, model, images, sigma: float, index: int) -> dict:
    """Lesson 01: clean image ``index``, a noisy copy (Gaussian noise of std ``sigma``, clipped to [0, 1], fixed per
    image) and the denoising autoencoder's output, with the PSNR of each against the clean image."""
    from segedu.models.autoencoder import noisy_copy, psnr, reconstruct

    clean = images[index : index + 1].float().cpu()
    noisy = noisy_copy(clean, sigma, seed=index)  # fixed per image: the picture does not flicker on redraw
    denoised = reconstruct(model, noisy)
    scores = {"noisy": float(psnr(noisy, clean)[0]), "denoised": float(psnr(denoised, clean)[0])}
    axes = fig.subplots(1, 4)
    draw_image(axes[0], clean[0], "clean")
    draw_image(axes[1], noisy[0], f"noisy, sigma={sigma:.2f}\nPSNR {scores['noisy']:.1f} dB")
    draw_image(axes[2], denoised[0], f"denoised\nPSNR {scores['denoised']:.1f} dB")
    shown = axes[3].imshow((denoised - clean)[0].abs().mean(0).numpy(), cmap="magma", vmin=0, vmax=0.5)
    axes[3].set_title("|denoised - clean|", fontsize=9)
    axes[3].axis("off")
    fig.colorbar(shown, ax=axes[3], fraction=0.046, label="error")
    return scores


def denoising_viewer(model, images) -> FigureDemo:
    """Lesson 01: move the noise level and the image; see what a denoising autoencoder recovers."""
    controls = {
        "sigma": W.FloatSlider(value=0.3, min=0.0, max=0.6, step=0.05, description="noise std"),
        "index": W.IntSlider(value=0, min=0, max=len(images) - 1, description="image"),
    }
    return FigureDemo(lambda fig, **v: draw_denoising(fig, model, images, **v), controls, figsize=(9, 2.6),
                      title="A denoising autoencoder at work")
