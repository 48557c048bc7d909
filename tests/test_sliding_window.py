"""segedu.sliding_window: the patch classifier at every pixel equals its fully convolutional version, and the
multiply-adds by formula equal the ones PyTorch's FLOP counter counts (lesson 00)."""

import pytest
import torch
import torch.nn.functional as F

from segedu import zoo
from segedu.sliding_window import (
    FullyConvolutional,
    PatchClassifier,
    dense_macs,
    extract_patches,
    fully_convolutional,
    layer_costs,
    patch_macs,
    sliding_window_macs,
    sliding_window_predict,
)


def _model(**kw):
    torch.manual_seed(0)
    return PatchClassifier(**{"num_classes": 4, "patch": 7, "width": 5, "depth": 2, **kw}).eval()


def test_patch_classifier_shapes():
    model = _model()
    assert model.side == 3
    assert model(torch.rand(10, 3, 7, 7)).shape == (10, 4)
    with pytest.raises(ValueError, match="patches must be"):
        model(torch.rand(2, 3, 9, 9))


@pytest.mark.parametrize("kw", [{}, {"depth": 0}, {"patch": 9, "depth": 4, "in_channels": 1}, {"patch": 1, "depth": 0}])
def test_sliding_window_equals_one_fully_convolutional_pass(kw):
    model = _model(**kw)
    images = torch.rand(2, model.in_channels, 11, 13)
    slow = sliding_window_predict(model, images, chunk=17)  # chunks that do not divide H * W
    fast = fully_convolutional(model)(images)
    assert slow.shape == fast.shape == (2, 4, 11, 13)
    # float32: the same products summed in another order (measured max difference ~1e-7)
    torch.testing.assert_close(slow, fast, atol=1e-5, rtol=1e-5)


def test_each_output_pixel_is_the_classifier_on_its_padded_patch():
    model = _model()
    images = torch.rand(1, 3, 9, 8)
    padded = F.pad(images, (3, 3, 3, 3))
    dense = fully_convolutional(model)(images)
    for i, j in [(0, 0), (4, 5), (8, 7)]:
        torch.testing.assert_close(dense[0, :, i, j], model(padded[:, :, i : i + 7, j : j + 7])[0], atol=1e-5, rtol=1e-5)


def test_extract_patches_order_and_content():
    images = torch.arange(2 * 1 * 4 * 5, dtype=torch.float32).view(2, 1, 4, 5)
    patches = extract_patches(images, 3)
    assert patches.shape == (2 * 4 * 5, 1, 3, 3)
    padded = F.pad(images, (1, 1, 1, 1))
    b, i, j = 1, 2, 3
    assert torch.equal(patches[b * 20 + i * 5 + j, 0], padded[b, 0, i : i + 3, j : j + 3])
    assert patches[0, 0, 0, 0] == 0 and patches[0, 0, 1, 1] == images[0, 0, 0, 0]  # zero padding at the corner


def test_the_two_share_their_parameters():
    model = _model()
    dense = fully_convolutional(model)
    assert isinstance(dense, FullyConvolutional)
    assert {id(p) for p in dense.parameters()} == {id(p) for p in model.parameters()}
    # A step on the dense version changes the patch classifier: one set of weights.
    before = model.head.weight.detach().clone()
    dense(torch.rand(1, 3, 8, 8)).sum().backward()
    with torch.no_grad():
        for p in dense.parameters():
            p -= 0.1 * p.grad
    assert not torch.equal(before, model.head.weight)


def test_layer_costs_by_hand():
    model = PatchClassifier(6, patch=15, in_channels=3, width=16, depth=3)
    assert layer_costs(model) == [("conv1", 13, 16 * 3 * 9), ("conv2", 11, 16 * 16 * 9), ("conv3", 9, 16 * 16 * 9),
                                  ("head", 1, 16 * 9 * 9 * 6)]
    assert patch_macs(model) == 13**2 * 432 + 11**2 * 2304 + 9**2 * 2304 + 7776 == 546_192


@pytest.mark.parametrize("kw, size", [({}, (9, 12)), ({"patch": 15, "width": 16, "depth": 3, "num_classes": 6}, (16, 16)),
                                      ({"depth": 0, "patch": 5}, (6, 5))])
def test_macs_by_formula_equal_the_counted_ones(kw, size):
    model = _model(**kw)
    h, w = size
    images = torch.rand(1, 3, h, w)
    counted_sliding = zoo.forward_flops(model, extract_patches(images, model.patch)) // 2  # 2 FLOPs per MAC
    counted_dense = zoo.forward_flops(fully_convolutional(model), images) // 2
    assert counted_sliding == sliding_window_macs(model, h, w)
    assert counted_dense == dense_macs(model, h, w)
    assert counted_sliding / counted_dense == sliding_window_macs(model, h, w) / dense_macs(model, h, w)


def test_ratio_tends_to_the_per_pixel_ratio_on_large_images():
    model = PatchClassifier(6)
    per_pixel = patch_macs(model) / sum(m for _, _, m in layer_costs(model))
    ratios = [sliding_window_macs(model, n, n) / dense_macs(model, n, n) for n in (64, 256, 4096)]
    assert ratios[0] < ratios[1] < ratios[2] < per_pixel
    # theory: the border rows of the dense pass cost O(1/n) of the total
    assert per_pixel - ratios[2] < 0.01 * per_pixel


def test_bad_arguments():
    with pytest.raises(ValueError, match="patch must be odd"):
        PatchClassifier(2, patch=8)
    with pytest.raises(ValueError, match="depth"):
        PatchClassifier(2, patch=5, depth=3)
    with pytest.raises(TypeError, match="num_classes"):
        PatchClassifier(True)
    with pytest.raises(TypeError, match="width"):
        PatchClassifier(2, width=2.5)
    with pytest.raises(ValueError, match="depth"):
        PatchClassifier(2, depth=-1)
    with pytest.raises(TypeError, match="PatchClassifier"):
        fully_convolutional(torch.nn.Conv2d(3, 2, 1))
    with pytest.raises(TypeError, match="images"):
        sliding_window_predict(_model(), torch.zeros(1, 3, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="channels"):
        sliding_window_predict(_model(), torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="chunk"):
        sliding_window_predict(_model(), torch.rand(1, 3, 8, 8), chunk=0)
    with pytest.raises(ValueError, match="patch must be odd"):
        extract_patches(torch.rand(1, 3, 8, 8), 4)
    with pytest.raises(ValueError, match="height"):
        dense_macs(_model(), 0, 4)
    with pytest.raises(TypeError, match="PatchClassifier"):
        patch_macs(torch.nn.Linear(2, 2))


def test_runs_on_the_device_of_its_inputs():
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = _model().to(device)
    images = torch.rand(1, 3, 6, 6, device=device)
    assert sliding_window_predict(model, images).device.type == device
    assert fully_convolutional(model)(images).device.type == device
