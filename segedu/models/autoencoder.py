"""Autoencoders: learn a code by reconstructing the input through a bottleneck (lesson 01).

* ``MLPAutoencoder`` - fully connected encoder and decoder around a ``bottleneck``-unit code. With
  ``linear=True`` it is a linear map of rank ``bottleneck``, and its best reconstruction error is PCA's
  (Baldi & Hornik, "Neural networks and principal component analysis", Neural Networks 1989); with
  nonlinearities it is the deep autoencoder of Hinton & Salakhutdinov ("Reducing the dimensionality of
  data with neural networks", Science 2006), a nonlinear generalisation of PCA.
* ``ConvAutoencoder`` - only convolutions: stride-2 convolutions shrink the map while the channels grow,
  transposed convolutions grow it back. It runs on any input size, and the same network with
  ``out_channels = num_classes`` is the plain encoder-decoder segmenter whose low-resolution bottleneck
  blurs boundaries (the reason for skip connections, lessons 05-06).
* Denoising (Vincent et al., "Extracting and composing robust features with denoising autoencoders",
  ICML 2008) is not a model: it is a change of the *data*. ``ReconstructionData(images, transform)`` feeds
  ``(transform(clean), clean)`` pairs to ``segedu.train.fit``, e.g. with ``transforms.v2.GaussianNoise``.
* ``pca_reconstruction`` (the closed-form baseline) and ``psnr`` (the measure of reconstruction quality).

Images are float ``[B, C, H, W]``.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segedu import validate
from segedu.models.common import check_images, int_tuple

__all__ = [
    "MLPAutoencoder",
    "ConvAutoencoder",
    "ReconstructionData",
    "reconstruct",
    "noisy_copy",
    "pca_reconstruction",
    "psnr",
]


# --------------------------------------------------------------------------- fully connected


class MLPAutoencoder(nn.Module):
    """A fully connected autoencoder: ``in_features -> *hidden -> bottleneck -> *reversed(hidden) -> in_features``.

    Args:
        in_features: D, the number of values in one input (e.g. ``3 * 16 * 16`` for small images).
        hidden: widths of the hidden layers of the encoder (the decoder mirrors them); ``()`` for none.
        bottleneck: k, the size of the code.
        linear: no nonlinearities at all. The network is then an affine map whose linear part has rank
            <= k, and the minimum of its mean squared reconstruction error is PCA's with k components
            (Baldi & Hornik 1989; a deep linear network has no other local minima, Kawaguchi, NeurIPS 2016).
            The layers keep their biases: they let the network subtract the data mean and add it back,
            which is what PCA does (it works on centred data). Without biases the optimum would be the
            uncentred SVD of the data, a worse fit whenever the mean is not zero.

    Otherwise a ReLU follows every layer except the code layer (the code is a linear readout, as in
    Hinton & Salakhutdinov 2006) and the output layer (the reconstruction is not squashed).

    ``forward(x)``: ``x`` of shape ``[B, *]`` with ``D`` values per item (images ``[B, C, H, W]`` are
    flattened); returns the reconstruction, same shape. ``encode``: ``[B, *] -> [B, k]``;
    ``decode``: ``[B, k] -> [B, D]``.
    """

    def __init__(self, in_features: int, hidden: Sequence[int] = (256,), bottleneck: int = 16, linear: bool = False):
        super().__init__()
        self.in_features = validate.positive_int(in_features, "in_features")
        self.hidden = int_tuple(hidden, "hidden")
        self.bottleneck = validate.positive_int(bottleneck, "bottleneck")
        self.linear = validate.flag(linear, "linear")
        sizes = [self.in_features, *self.hidden, self.bottleneck]
        self.encoder = self._stack(sizes)
        self.decoder = self._stack(sizes[::-1])

    def _stack(self, sizes: list[int]) -> nn.Sequential:
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(n_in, n_out))
            if not self.linear and i < len(sizes) - 2:  # no activation after the last layer
                layers.append(nn.ReLU(inplace=True))
        return nn.Sequential(*layers)

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 2 or math.prod(x.shape[1:]) != self.in_features:
            raise ValueError(
                f"x must be [B, *] with {self.in_features} values per item, got shape {tuple(x.shape)}"
            )
        return x.flatten(1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, *]`` (D values per item) -> code ``[B, k]``."""
        return self.encoder(self._flat(x))

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """Code ``[B, k]`` -> reconstruction ``[B, D]``."""
        validate.tensor(code, "code", layout=f"[B, {self.bottleneck}]")
        if code.dim() != 2 or code.shape[1] != self.bottleneck:
            raise ValueError(f"code must be [B, {self.bottleneck}], got shape {tuple(code.shape)}")
        return self.decoder(code)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x)).view(x.shape)


# --------------------------------------------------------------------------- convolutional


def _conv_block(n_in: int, n_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(n_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(n_out, n_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(n_out),
        nn.ReLU(inplace=True),
    )


def _up_block(n_in: int, n_out: int) -> nn.Sequential:
    # Kernel 4 with stride 2: a multiple of the stride, so every output pixel receives the same number of
    # kernel taps and the transposed convolution makes no checkerboard (Odena et al., Distill 2016; lesson 03).
    return nn.Sequential(
        nn.ConvTranspose2d(n_in, n_out, 4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(n_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(n_out, n_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(n_out),
        nn.ReLU(inplace=True),
    )


class ConvAutoencoder(nn.Module):
    """A fully convolutional autoencoder (no skip connections): any input size, output at the input's size.

    Encoder: for every width ``w`` in ``widths`` a stride-2 3x3 convolution to ``w`` channels and a 3x3
    convolution, so the map shrinks by ``total_stride = 2 ** len(widths)`` while the channels grow.
    Decoder: the mirror image, a stride-2 transposed convolution (kernel 4) per level, then a 1x1
    convolution to ``out_channels`` (default ``in_channels``: a reconstruction; ``num_classes``: a
    segmentation head, the plain encoder-decoder). Every convolution but the last is followed by batch
    normalisation (Ioffe & Szegedy, ICML 2015: a few hundred steps are enough to train it on a CPU) and a
    ReLU; call ``model.eval()`` before using it (``segedu.train.fit`` leaves it in eval mode).

    Any size: a stride-2 layer rounds odd sizes up (37 -> 19) and the transposed convolution doubles
    (19 -> 38), so the decoder would not return to 37. The input is therefore padded at the bottom and
    right to a multiple of ``total_stride`` (replicating the border pixels, which adds no fake edge) and
    the output cropped back. Resampling the output to the input size would work too, but it would
    interpolate: output pixel (i, j) would no longer sit exactly on input pixel (i, j).

    ``forward``: float ``[B, in_channels, H, W] -> [B, out_channels, H, W]``. ``encode`` returns the
    bottleneck ``[B, widths[-1], ceil(H / s), ceil(W / s)]`` with ``s = total_stride``.
    (Masci et al., "Stacked convolutional auto-encoders", ICANN 2011; the encoder-decoder of
    Noh et al., ICCV 2015 and SegNet, Badrinarayanan et al., TPAMI 2017, without their unpooling.)
    """

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = (16, 32, 64), out_channels: int | None = None):
        super().__init__()
        self.in_channels = validate.positive_int(in_channels, "in_channels")
        self.widths = int_tuple(widths, "widths")
        if not self.widths:
            raise ValueError("widths must name at least one level, got ()")
        self.out_channels = (self.in_channels if out_channels is None
                             else validate.positive_int(out_channels, "out_channels"))
        self.total_stride = 2 ** len(self.widths)
        channels = [self.in_channels, *self.widths]
        self.encoder = nn.Sequential(*[_conv_block(a, b, stride=2) for a, b in zip(channels[:-1], channels[1:])])
        ups = list(reversed(self.widths))  # 64, 32, 16 -> the decoder ends with widths[0] channels
        self.decoder = nn.Sequential(*[_up_block(a, b) for a, b in zip(ups, ups[1:] + [self.widths[0]])])
        self.head = nn.Conv2d(self.widths[0], self.out_channels, 1)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        s = self.total_stride
        pad_h, pad_w = -x.shape[-2] % s, -x.shape[-1] % s
        return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in_channels, H, W]`` -> bottleneck ``[B, widths[-1], ceil(H / s), ceil(W / s)]``."""
        check_images(x, self.in_channels)
        return self.encoder(self._pad(x))

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """Bottleneck ``[B, widths[-1], h, w]`` -> ``[B, out_channels, h * s, w * s]`` (not cropped)."""
        return self.head(self.decoder(code))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = check_images(x, self.in_channels).shape[-2:]
        return self.decode(self.encode(x))[..., :height, :width]


# --------------------------------------------------------------------------- data, baseline, measure


def _check_batch(x, name: str, layout: str) -> None:
    """A floating-point batch of at least 2 dimensions, ``[N, ...]``: one item per row."""
    validate.tensor(x, name, dtype="floating", layout=layout)
    if x.dim() < 2:
        raise ValueError(f"{name} must be a floating-point tensor {layout} (at least 2-D), got shape {tuple(x.shape)}")


class ReconstructionData:
    """``(input, target)`` batches for training an autoencoder with ``segedu.train.fit``.

    ``batch(indices)`` returns ``(transform(clean), clean)``: the target is always the clean image; the
    input is the clean image itself (a plain autoencoder) or a corrupted copy (a denoising autoencoder,
    Vincent et al. 2008), e.g. with ``torchvision.transforms.v2.GaussianNoise(sigma=0.2)``. A random
    transform draws new noise at every call, so the network never sees the same corruption twice.

    Args:
        images: float ``[N, C, H, W]`` (or ``[N, D]``) held in memory, or a dataset with
            ``batch(indices) -> (images, ...)`` and ``len()`` (e.g. ``ShapesDataset``: scenes rendered on
            demand, labels dropped), for sets too big to hold.
        transform: ``[B, ...] -> [B, ...]`` applied to a whole batch, or None.
    """

    def __init__(self, images, transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        if isinstance(images, torch.Tensor):
            _check_batch(images, "images", "[N, ...]")
        elif not (callable(getattr(images, "batch", None)) and hasattr(images, "__len__")):
            raise TypeError(
                f"images must be a tensor [N, ...] or a dataset with batch(indices) and len(), got {type(images).__name__}"
            )
        if len(images) < 1:
            raise ValueError("images is empty")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable or None, got {type(transform).__name__}")
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(self.images, torch.Tensor):
            clean = self.images[torch.as_tensor(indices, dtype=torch.long, device=self.images.device)]
        else:
            clean = self.images.batch(indices)[0]
        return (self.transform(clean) if self.transform is not None else clean), clean


def reconstruct(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The autoencoder's output for ``images`` ``[N, ...]`` in [0, 1], clipped to [0, 1], without gradients.

    The model runs on its own device; the result comes back on ``images``' device, so it can be compared
    with ``images`` or a PCA reconstruction directly (lesson 01's bottleneck and denoising views).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_batch(images, "images", "[N, ...]")
    device = next(model.parameters(), torch.empty(0)).device
    with torch.no_grad():
        return model(images.to(device)).to(images.device).clamp(0, 1)


def noisy_copy(images: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """``images`` plus Gaussian noise of standard deviation ``sigma``, clipped to [0, 1], the same for one ``seed``.

    The corruption of a denoising autoencoder (Vincent et al., ICML 2008), drawn from its own generator so a
    picture does not change when it is redrawn; training uses ``torchvision.transforms.v2.GaussianNoise``,
    which draws fresh noise every batch.
    """
    _check_batch(images, "images", "[N, ...]")
    sigma = validate.number(sigma, "sigma", minimum=0)
    seed = validate.integer(seed, "seed")
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed), dtype=images.dtype)
    return (images + sigma * noise.to(images.device)).clamp(0, 1)


def pca_reconstruction(x: torch.Tensor, k: int, fit_on: torch.Tensor | None = None) -> torch.Tensor:
    """Reconstruct ``x`` from its first ``k`` principal components (the closed-form linear autoencoder).

    The components are the top ``k`` right singular vectors of the centred ``fit_on`` (default ``x``):
    ``x_hat = mean + (x - mean) V_k V_k^T``. Among all ranks-``k`` affine reconstructions this has the
    smallest squared error on ``fit_on`` (Eckart & Young 1936), the bound a linear autoencoder reaches.

    Args:
        x: ``[N, *]``, D values per item (images are flattened).
        k: number of components, ``0 <= k <= D`` (0 gives the mean).
        fit_on: ``[M, *]`` with the same D; the data the components come from (e.g. the training set
            when ``x`` is held out).

    Returns a tensor of ``x``'s shape and dtype (computed in float64).
    """
    _check_batch(x, "x", "[N, *]")
    fit_on = x if fit_on is None else fit_on
    validate.tensor(fit_on, "fit_on", layout="[M, *]")
    if fit_on.dim() < 2 or fit_on[0].numel() != x[0].numel():
        raise ValueError(f"fit_on must be [M, *] with {x[0].numel()} values per item like x, got {tuple(fit_on.shape)}")
    dim = x[0].numel()
    k = validate.integer(k, "k")
    if not 0 <= k <= dim:
        raise ValueError(f"k must be in [0, {dim}] (the values per item), got {k}")
    data = fit_on.flatten(1).double()
    mean = data.mean(0)
    # Rows of vh are the principal directions, sorted by singular value (explained variance).
    _, _, vh = torch.linalg.svd(data - mean, full_matrices=False)
    components = vh[:k]  # [k, D]
    centred = x.flatten(1).double().to(mean.device) - mean
    recon = mean + centred @ components.T @ components
    return recon.to(x.dtype).view(x.shape).to(x.device)


def psnr(x: torch.Tensor, reference: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio of every image, in decibels: ``10 log10(data_range^2 / MSE)``.

    Args:
        x, reference: float ``[B, C, H, W]`` (or any ``[B, *]``) of one shape; values in a range of
            width ``data_range`` (1 for images in [0, 1]).

    Returns float32 ``[B]`` (``inf`` where an image equals its reference). Higher is better; +6 dB
    means the error's RMS halved. Average it over images with ``.mean()``.
    """
    for name, t in (("x", x), ("reference", reference)):
        _check_batch(t, name, "[B, *]")
    if x.shape != reference.shape:
        raise ValueError(f"x and reference must have one shape, got {tuple(x.shape)} and {tuple(reference.shape)}")
    data_range = validate.positive_number(data_range, "data_range")
    mse = (x.double() - reference.double()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(data_range**2 / mse)).float()
