import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from segedu import viz


def test_palette_is_vocs():
    pal = viz.palette()
    assert pal.shape == (256, 3) and pal.dtype == np.uint8
    assert tuple(pal[0]) == (0, 0, 0) and tuple(pal[1]) == (128, 0, 0) and tuple(pal[2]) == (0, 128, 0)
    assert tuple(pal[255]) == (224, 224, 192)  # VOC's void colour
    assert len({tuple(c) for c in pal[:21]}) == 21
    with pytest.raises(ValueError, match="num_colors"):
        viz.palette(0)


def test_colorize_and_overlay():
    mask = torch.tensor([[0, 1], [2, 255]])
    rgb = viz.colorize(mask)
    assert rgb.shape == (2, 2, 3) and tuple(rgb[0, 1]) == (128, 0, 0) and tuple(rgb[1, 1]) == (224, 224, 192)
    image = torch.full((3, 2, 2), 0.5)
    out = viz.overlay(image, mask, alpha=1.0)
    assert np.allclose(out[0, 0], 0.5)  # background keeps the image
    assert np.allclose(out[0, 1], [128 / 255, 0, 0])
    with pytest.raises(ValueError, match="mask shape"):
        viz.overlay(image, torch.zeros(3, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="alpha"):
        viz.overlay(image, mask, alpha=2)
    with pytest.raises(ValueError, match="class indices"):
        viz.colorize(torch.tensor([[300]]))


def test_to_numpy_image_layouts():
    t = torch.rand(3, 4, 5)
    assert viz.to_numpy_image(t).shape == (4, 5, 3)
    assert viz.to_numpy_image(torch.rand(1, 4, 5)).shape == (4, 5, 3)
    assert viz.to_numpy_image(np.zeros((4, 5, 3), np.uint8)).shape == (4, 5, 3)
    assert viz.to_numpy_image(torch.full((3, 2, 2), 255, dtype=torch.uint8)).max() == 1.0
    with pytest.raises(ValueError, match="image must be"):
        viz.to_numpy_image(torch.rand(2, 4, 5, 6))


def test_show_grid_draws_images_masks_and_a_legend():
    image = torch.rand(3, 8, 8)
    mask = torch.randint(0, 3, (8, 8))
    fig = viz.show_grid([image, mask], titles=["image", "mask"], class_names=["bg", "a", "b"])
    assert len(fig.axes) == 2 and fig.legends and len(fig.legends[0].get_texts()) == len(mask.unique())
    png = viz.figure_to_png(fig)
    assert png[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="titles"):
        viz.show_grid([image], titles=["a", "b"])
    with pytest.raises(ValueError, match="empty"):
        viz.show_grid([])


def test_instance_and_panoptic_colours_distinguish_objects():
    ids = torch.tensor([[0, 1], [2, 3]])
    rgb = viz.colorize_instances(ids)
    assert tuple(rgb[0, 0]) == (0, 0, 0)
    assert len({tuple(c) for c in rgb.reshape(-1, 3)}) == 4
    pan = torch.zeros(8, 8, dtype=torch.int64)
    pan[:4, :4], pan[4:, 4:] = 1001, 1002  # two instances of class 1
    rgb = viz.colorize_panoptic(pan)
    assert tuple(rgb[1, 1]) != tuple(rgb[6, 6])  # differ inside
    assert tuple(rgb[3, 1]) == (255, 255, 255)  # outlined where the segment ends
    assert tuple(rgb[7, 0]) == (0, 0, 0)  # stuff is not outlined
