"""The widgets of lessons 01-04 redraw when a control moves and report what they show."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from segedu import widgets  # noqa: E402
from segedu.models.autoencoder import ConvAutoencoder, MLPAutoencoder  # noqa: E402
from segedu.ops.upsample import UPSAMPLING_METHODS  # noqa: E402


def test_bottleneck_explorer_compares_pca_and_the_autoencoder_at_each_k():
    torch.manual_seed(0)
    fit_on = torch.rand(30, 1, 6, 6)
    images = fit_on[:4]  # images PCA was fitted on: more components never fit worse
    models = {k: MLPAutoencoder(36, (8,), k) for k in (1, 2, 4)}
    demo = widgets.bottleneck_explorer(images, fit_on, models)
    assert demo.result["k"] == 4  # starts at the largest bottleneck
    pictures, pca_errors = {}, []
    for k in (1, 2, 4):
        pictures[k] = demo.update(k=k)
        pca_errors.append(demo.result["pca_mse"])
        assert demo.result["k"] == k and demo.result["ae_mse"] > 0
    assert len(set(pictures.values())) == 3
    assert pca_errors[0] >= pca_errors[1] >= pca_errors[2]
    assert demo.update(index=3) != pictures[4]
    with pytest.raises(ValueError, match="models"):
        widgets.bottleneck_explorer(images, fit_on, {})


def test_denoising_viewer_reports_psnr_that_falls_with_the_noise():
    demo = widgets.denoising_viewer(ConvAutoencoder(3, (4,)), torch.rand(3, 3, 16, 16))
    scores = []
    pictures = set()
    for sigma in (0.1, 0.3, 0.5):
        pictures.add(demo.update(sigma=sigma))
        scores.append(demo.result["noisy"])
    assert len(pictures) == 3
    assert scores[0] > scores[1] > scores[2]
    demo.update(sigma=0.0)
    assert demo.result["noisy"] == float("inf")  # no noise: the noisy image is the clean one
    assert demo.update(index=2) != demo.update(index=1)


def test_upsampling_viewer_redraws_for_each_method_and_factor():
    ramp = torch.linspace(0, 1, 32)
    image = torch.stack([ramp[:, None] * ramp[None, :], ramp[:, None].expand(32, 32), ramp[None, :].expand(32, 32)])
    demo = widgets.upsampling_viewer(image)
    pictures, scores = set(), {}
    for method in UPSAMPLING_METHODS:
        pictures.add(demo.update(method=method, factor=4))
        scores[method] = demo.result["psnr"]
    assert len(pictures) == len(UPSAMPLING_METHODS)
    assert scores["bilinear"] > scores["nearest"] > scores["bed of nails"]  # a smooth image favours interpolation
    demo.update(method="nearest", factor=2)
    assert demo.result["shape"] == (1, 3, 32, 32)
    demo.update(factor=3)
    assert demo.result["shape"] == (1, 3, 30, 30)


def test_show_matrices_writes_every_value():
    fig = widgets.show_matrices([torch.tensor([[1, 3], [2, 0]]), torch.rand(3, 3)], ["a", "b"])
    first, second = fig.axes
    assert [t.get_text() for t in first.texts] == ["1", "3", "2", "0"]
    assert len(second.texts) == 9 and all("." in t.get_text() for t in second.texts)
    assert "a" in first.get_title() and "2x2" in first.get_title()
    big = widgets.show_matrices([torch.zeros(20, 20)])
    assert not big.axes[0].texts  # too large to annotate
    matplotlib.pyplot.close("all")


def test_checkerboard_viewer_flags_uneven_overlaps():
    demo = widgets.checkerboard_viewer()
    assert demo.result == {"uniform": False, "min": 1, "max": 4}  # kernel 3, stride 2
    pictures = set()
    for kernel, stride in ((3, 2), (4, 2), (5, 3), (6, 3), (3, 1)):
        pictures.add(demo.update(kernel=kernel, stride=stride))
        assert demo.result["uniform"] == (kernel % stride == 0), (kernel, stride)
    assert len(pictures) == 5
    demo.update(kernel=6, stride=3)
    assert demo.result["min"] == demo.result["max"] == 4


def test_dilation_viewer_shows_field_and_gridding():
    demo = widgets.dilation_viewer()
    assert demo.result == {"size": 15, "seen": 1.0}  # rates 1, 2, 4
    grid = demo.update(rate1=2, rate2=2, rate3=2)
    assert demo.result["size"] == 13 and demo.result["seen"] == pytest.approx(49 / 169)
    mixed = demo.update(rate1=1, rate2=2, rate3=5)
    assert demo.result == {"size": 17, "seen": 1.0}
    assert grid != mixed


def test_sample_positions_figure_draws_both_conventions():
    from matplotlib.figure import Figure

    fig = Figure()
    drawn = widgets.draw_sample_positions(fig, n_in=3, n_out=5)
    assert drawn[True].tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert drawn[False].tolist() == pytest.approx([-0.2, 0.4, 1.0, 1.6, 2.2])
    assert len(fig.axes) == 1 and len(fig.axes[0].collections) == 3   # input centres and two rows of samples
    assert widgets.sample_positions_figure().axes
    matplotlib.pyplot.close("all")


def test_probe_patterns_show_a_flat_answer_for_resize_convolution():
    from matplotlib.figure import Figure

    from segedu.experiments.lesson03 import probe_network

    models = {m: probe_network(m).eval() for m in ("transposed", "resize_conv")}
    images = torch.rand(2, 3, 16, 16)
    fig = Figure()
    drawn = widgets.draw_probe_patterns(fig, models, torch.nn.functional.avg_pool2d(images, 2), images)
    assert len(fig.axes) == 2 * 2 + 2                                  # two rows of panels and two colour bars
    assert float(drawn["flat"]["resize_conv"].abs().max()) < 1e-6      # flat in, flat out
    assert float(drawn["flat"]["transposed"].abs().max()) > 1e-4       # the untrained transposed conv's pattern
    for phase in drawn["phase"].values():
        assert phase.shape == (2, 2) and abs(float(phase.sum())) < 1e-6
    assert widgets.probe_patterns_figure(models, images[:, :, ::2, ::2], images).axes
    matplotlib.pyplot.close("all")
