"""Autoencoders (lesson 01): shapes, gradients, the linear AE = PCA result, PSNR, the denoising data."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.image import peak_signal_noise_ratio
from torchvision.transforms import v2

from segedu.data.shapes import ShapesDataset
from segedu.models.autoencoder import (
    ConvAutoencoder,
    MLPAutoencoder,
    ReconstructionData,
    noisy_copy,
    pca_reconstruction,
    psnr,
    reconstruct,
)
from segedu.train import fit


def _low_rank_data(n=200, d=12, rank=4, noise=0.05, seed=0):
    """Points near a rank-4 affine subspace of R^12, with a non-zero mean (so centring matters)."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(rank, d, generator=g)
    scale = torch.tensor([3.0, 2.0, 1.0, 0.5])[:rank, None]  # distinct variances: a unique PCA subspace
    return 2.0 + torch.randn(n, rank, generator=g) @ (scale * basis) + noise * torch.randn(n, d, generator=g)


# --------------------------------------------------------------------------- MLPAutoencoder


def test_mlp_autoencoder_shapes_and_layers():
    model = MLPAutoencoder(3 * 5 * 7, hidden=(32, 16), bottleneck=4)
    x = torch.rand(6, 3, 5, 7)
    assert model(x).shape == x.shape  # images in, images out
    assert model.encode(x).shape == (6, 4)
    assert model.decode(model.encode(x)).shape == (6, 105)
    assert model(x.flatten(1)).shape == (6, 105)  # flat vectors work too
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(105, 32), (32, 16), (16, 4), (4, 16), (16, 32), (32, 105)]
    # ReLU between layers, but not on the code nor on the output: 2 in the encoder, 2 in the decoder
    assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == 4
    assert not isinstance(model.encoder[-1], nn.ReLU) and not isinstance(model.decoder[-1], nn.ReLU)


def test_linear_autoencoder_is_an_affine_map_of_rank_k():
    model = MLPAutoencoder(10, hidden=(8,), bottleneck=3, linear=True)
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    x, y = torch.randn(5, 10), torch.randn(5, 10)
    # affine: f(a x + (1 - a) y) = a f(x) + (1 - a) f(y)
    assert torch.allclose(model(0.3 * x + 0.7 * y), 0.3 * model(x) + 0.7 * model(y), atol=1e-5)
    # the Jacobian (the linear part) has rank k
    jac = torch.autograd.functional.jacobian(lambda v: model(v[None])[0], torch.zeros(10))
    assert int(torch.linalg.matrix_rank(jac)) == 3


def test_mlp_autoencoder_gradients_reach_every_parameter():
    model = MLPAutoencoder(20, hidden=(16,), bottleneck=4)
    x = torch.randn(8, 20)
    F.mse_loss(model(x), x).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"in_features": 0}, ValueError, "in_features"),
        ({"in_features": 4.0}, TypeError, "in_features"),
        ({"in_features": 4, "bottleneck": 0}, ValueError, "bottleneck"),
        ({"in_features": 4, "hidden": 8}, TypeError, "hidden"),
        ({"in_features": 4, "hidden": (8, -1)}, ValueError, r"hidden\[1\]"),
        ({"in_features": 4, "linear": "yes"}, TypeError, "linear"),
    ],
)
def test_mlp_autoencoder_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        MLPAutoencoder(**kwargs)


def test_mlp_autoencoder_rejects_bad_input():
    model = MLPAutoencoder(12, bottleneck=2)
    with pytest.raises(ValueError, match="12 values per item"):
        model(torch.randn(3, 13))
    with pytest.raises(ValueError, match="code must be"):
        model.decode(torch.randn(3, 5))
    with pytest.raises(TypeError, match="torch.Tensor"):
        model([[0.0] * 12])


# --------------------------------------------------------------------------- PCA and the linear autoencoder


def test_pca_reconstruction_error_is_the_sum_of_the_discarded_eigenvalues():
    x = _low_rank_data().double()
    centred = x - x.mean(0)
    eigenvalues = torch.linalg.eigvalsh(centred.T @ centred).flip(0)  # descending
    for k in (0, 1, 3, 6, 12):
        squared_error = (pca_reconstruction(x, k) - x).pow(2).sum()
        assert torch.allclose(squared_error, eigenvalues[k:].sum(), rtol=1e-8, atol=1e-8), k
    assert torch.allclose(pca_reconstruction(x, 0), x.mean(0).expand_as(x))  # k = 0: the mean
    assert torch.allclose(pca_reconstruction(x, 12), x)  # all components: exact


def test_pca_reconstruction_keeps_shape_and_dtype_and_fits_on_other_data():
    train = torch.rand(30, 2, 3, 3)
    held_out = torch.rand(5, 2, 3, 3)
    recon = pca_reconstruction(held_out, 4, fit_on=train)
    assert recon.shape == held_out.shape and recon.dtype == torch.float32
    # the reconstruction lies in the training set's affine subspace: reconstructing it again changes nothing
    assert torch.allclose(pca_reconstruction(recon, 4, fit_on=train), recon, atol=1e-5)
    with pytest.raises(ValueError, match="k must be in"):
        pca_reconstruction(train, 19)
    with pytest.raises(TypeError, match="k must be an int"):
        pca_reconstruction(train, 2.0)
    with pytest.raises(ValueError, match="fit_on"):
        pca_reconstruction(held_out, 2, fit_on=torch.rand(5, 17))
    with pytest.raises(TypeError, match="floating-point"):
        pca_reconstruction(torch.ones(4, 3, dtype=torch.long), 1)


def test_linear_autoencoder_with_pca_weights_reproduces_pca_exactly():
    """The closed-form solution written into the network: encoder V_k (x - mean), decoder mean + V_k^T z."""
    x = _low_rank_data()
    k = 3
    centred = x.double() - x.double().mean(0)
    components = torch.linalg.svd(centred, full_matrices=False)[2][:k].float()
    mean = x.mean(0)
    model = MLPAutoencoder(12, hidden=(), bottleneck=k, linear=True)
    with torch.no_grad():
        model.encoder[0].weight.copy_(components)
        model.encoder[0].bias.copy_(-components @ mean)
        model.decoder[0].weight.copy_(components.T)
        model.decoder[0].bias.copy_(mean)
    assert torch.allclose(model(x), pca_reconstruction(x, k), atol=1e-4)


def test_linear_autoencoder_trained_by_gradient_descent_reaches_pca():
    """Baldi & Hornik (1989): the linear AE's minimum is PCA's error, and it cannot go below it."""
    x = _low_rank_data()
    k = 2
    pca_error = F.mse_loss(pca_reconstruction(x, k), x).item()
    model = MLPAutoencoder(12, hidden=(), bottleneck=k, linear=True)
    steps = 600
    history = fit(
        model, [(x, x)], F.mse_loss, steps, lr=0.02, progress=False, device="cpu",
        scheduler=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps),
    )
    with torch.no_grad():
        ae_error = F.mse_loss(model(x), x).item()
    assert history.loss[0] > 2 * pca_error  # it started far away ...
    assert 1 - 1e-4 < ae_error / pca_error < 1.01  # ... and ends at PCA's error, not below
    # the decoder spans the principal subspace: all principal angles ~ 0
    centred = x.double() - x.double().mean(0)
    principal = torch.linalg.svd(centred, full_matrices=False)[2][:k]  # [k, D]
    decoder_basis = torch.linalg.qr(model.decoder[0].weight.detach().double())[0]  # [D, k]
    cosines = torch.linalg.svdvals(principal @ decoder_basis)
    assert cosines.min() > 0.99


# --------------------------------------------------------------------------- ConvAutoencoder


@pytest.mark.parametrize("size", [(64, 64), (37, 50), (5, 9), (1, 1), (17, 8)])
def test_conv_autoencoder_output_size_equals_input_size(size):
    model = ConvAutoencoder(3, widths=(4, 8, 8))
    x = torch.rand(2, 3, *size)
    assert model(x).shape == x.shape
    code = model.encode(x)
    assert code.shape == (2, 8, -(-size[0] // 8), -(-size[1] // 8))  # ceil(H / 8), ceil(W / 8)


def test_conv_autoencoder_structure_and_segmentation_head():
    model = ConvAutoencoder(1, widths=(4, 8), out_channels=5)
    assert model.total_stride == 4
    assert model(torch.rand(3, 1, 10, 11)).shape == (3, 5, 10, 11)
    strided = [m.stride for m in model.encoder.modules() if isinstance(m, nn.Conv2d) and m.stride != (1, 1)]
    assert strided == [(2, 2), (2, 2)]  # one stride-2 convolution per level
    ups = [m for m in model.decoder.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(m.kernel_size, m.stride) for m in ups] == [((4, 4), (2, 2))] * 2  # kernel % stride == 0
    assert not any(isinstance(m, nn.Linear) for m in model.modules())  # fully convolutional


def test_conv_autoencoder_pads_then_crops_so_pixels_stay_aligned():
    """Output pixel (i, j) of an odd-sized image is the same as when that image sits in a padded canvas."""
    torch.manual_seed(0)
    model = ConvAutoencoder(3, widths=(4, 8)).eval()
    x = torch.rand(1, 3, 13, 10)
    padded = F.pad(x, (0, 2, 0, 3), mode="replicate")  # 16 x 12: what the model does inside
    assert torch.allclose(model(x), model(padded)[..., :13, :10], atol=1e-6)


def test_conv_autoencoder_gradients_reach_every_parameter():
    model = ConvAutoencoder(3, widths=(4, 8))
    x = torch.rand(2, 3, 15, 9, requires_grad=True)
    F.mse_loss(model(x), x.detach()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_conv_autoencoder_rejects_bad_input():
    with pytest.raises(ValueError, match="widths"):
        ConvAutoencoder(3, widths=())
    with pytest.raises(ValueError, match=r"widths\[0\]"):
        ConvAutoencoder(3, widths=(0, 4))
    with pytest.raises(ValueError, match="out_channels"):
        ConvAutoencoder(3, out_channels=0)
    model = ConvAutoencoder(3, widths=(4,))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model(torch.rand(3, 8, 8))


# --------------------------------------------------------------------------- data and PSNR


def test_reconstruction_data_pairs_a_transformed_input_with_the_clean_target():
    images = torch.rand(10, 3, 6, 6)
    plain = ReconstructionData(images)
    x, y = plain.batch([1, 4])
    assert len(plain) == 10 and torch.equal(x, images[[1, 4]]) and torch.equal(y, images[[1, 4]])
    noisy = ReconstructionData(images, v2.GaussianNoise(sigma=0.2))
    a, clean = noisy.batch(torch.tensor([0, 1, 2]))
    b, _ = noisy.batch(torch.tensor([0, 1, 2]))
    assert torch.equal(clean, images[:3])
    assert 0.1 < (a - clean).std() < 0.3  # corrupted ...
    assert not torch.equal(a, b)  # ... with fresh noise at every call
    with pytest.raises(TypeError, match="images"):
        ReconstructionData(torch.zeros(4, 3, dtype=torch.uint8))
    with pytest.raises(TypeError, match="transform"):
        ReconstructionData(images, transform="noise")
    with pytest.raises(TypeError, match="batch"):
        ReconstructionData([images])


def test_reconstruction_data_renders_from_a_dataset_on_demand():
    scenes = ShapesDataset(5, size=12, seed=3)
    data = ReconstructionData(scenes)
    x, y = data.batch([2, 0])
    assert len(data) == 5 and x.shape == (2, 3, 12, 12)
    assert torch.equal(y, scenes.batch([2, 0])[0])  # the images, the masks dropped


def test_denoising_autoencoder_trains_through_fit():
    images = torch.rand(8, 3, 8, 8)
    model = ConvAutoencoder(3, widths=(4,))
    data = ReconstructionData(images, v2.GaussianNoise(sigma=0.1))
    history = fit(model, data, F.mse_loss, 30, batch_size=4, lr=1e-2, progress=False, device="cpu")
    assert history.steps == 30 and history.loss[-1] < history.loss[0]


def test_psnr_values_and_torchmetrics_agreement():
    reference = torch.rand(4, 3, 8, 8)
    x = reference + 0.1  # MSE 0.01 -> 20 dB
    assert torch.allclose(psnr(x, reference), torch.full((4,), 20.0), atol=1e-4)
    assert psnr(reference, reference).isinf().all()
    noisy = reference + 0.05 * torch.randn_like(reference)
    want = peak_signal_noise_ratio(noisy, reference, data_range=1.0, reduction="none", dim=(1, 2, 3))
    assert torch.allclose(psnr(noisy, reference), want, atol=1e-4)
    # data_range scales the peak: images in [0, 255] give the same PSNR
    assert torch.allclose(psnr(255 * noisy, 255 * reference, data_range=255.0), want, atol=1e-3)
    assert psnr(noisy, reference).shape == (4,) and psnr(noisy, reference).dtype == torch.float32


def test_psnr_rejects_bad_input():
    with pytest.raises(ValueError, match="one shape"):
        psnr(torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 5))
    with pytest.raises(TypeError, match="reference"):
        psnr(torch.rand(2, 4), torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="data_range"):
        psnr(torch.rand(2, 4), torch.rand(2, 4), data_range=0)


@pytest.mark.parametrize("bad, error", [(True, TypeError), (2.5, TypeError), (-1, ValueError)])
@pytest.mark.parametrize("make", [
    lambda v: MLPAutoencoder(v),
    lambda v: MLPAutoencoder(12, hidden=(8, v)),
    lambda v: MLPAutoencoder(12, bottleneck=v),
    lambda v: ConvAutoencoder(v),
    lambda v: ConvAutoencoder(3, widths=(4, v)),
    lambda v: ConvAutoencoder(3, out_channels=v),
    lambda v: pca_reconstruction(torch.rand(6, 4), v),
])
def test_counts_follow_the_validation_rule(make, bad, error):
    """A bool or a float where a count is expected is a TypeError, a negative count a ValueError."""
    with pytest.raises(error):
        make(bad)


def test_wrong_ranks_are_value_errors_and_wrong_types_type_errors():
    with pytest.raises(ValueError, match="at least 2-D"):
        pca_reconstruction(torch.rand(5), 1)
    with pytest.raises(ValueError, match="at least 2-D"):
        psnr(torch.rand(4), torch.rand(4))
    with pytest.raises(ValueError, match="at least 2-D"):
        ReconstructionData(torch.rand(4))
    with pytest.raises(TypeError, match="fit_on"):
        pca_reconstruction(torch.rand(5, 3), 1, fit_on=[[0.0] * 3])
    with pytest.raises(TypeError, match="code"):
        MLPAutoencoder(12, bottleneck=2).decode([[0.0, 0.0]])
    with pytest.raises(TypeError, match="data_range"):
        psnr(torch.rand(2, 4), torch.rand(2, 4), data_range=True)
    with pytest.raises(TypeError, match="linear"):
        MLPAutoencoder(12, linear=1)


def test_reconstruct_clips_without_gradients_and_returns_to_the_images_device():
    torch.manual_seed(0)
    model = ConvAutoencoder(3, (4,))
    images = torch.rand(2, 3, 8, 8)
    out = reconstruct(model, images)
    with torch.no_grad():
        want = model(images).clamp(0, 1)
    assert torch.equal(out, want) and not out.requires_grad and out.device == images.device
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        reconstruct(lambda x: x, images)
    with pytest.raises(ValueError, match="images"):
        reconstruct(model, torch.rand(3))


def test_noisy_copy_is_fixed_per_seed_clipped_and_zero_noise_is_the_identity():
    images = torch.rand(2, 3, 8, 8)
    a, b = noisy_copy(images, 0.3, seed=1), noisy_copy(images, 0.3, seed=1)
    assert torch.equal(a, b) and not torch.equal(a, noisy_copy(images, 0.3, seed=2))
    assert a.min() >= 0 and a.max() <= 1
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, (images + 0.3 * noise).clamp(0, 1))
    assert torch.equal(noisy_copy(images, 0.0), images)
    # the noise has the requested spread where no clipping happens
    flat = torch.full((1, 1, 256, 256), 0.5)
    assert abs(float((noisy_copy(flat, 0.05) - flat).std()) - 0.05) < 0.002  # 65,536 draws: std error ~0.0001
    with pytest.raises(ValueError, match="sigma"):
        noisy_copy(images, -0.1)
    with pytest.raises(TypeError, match="seed"):
        noisy_copy(images, 0.1, seed=1.5)
