"""segedu.data.transforms: joint image + mask augmentation keeps labels exact and aligned with the image."""

import pytest
import torch

from segedu.data.transforms import eval_transforms, train_transforms
from segedu.data.voc import VOCSegmentation, write_voc


def _scene(height=40, width=56):
    """A scene whose mask can be read off the image: bright L-shaped object (class 1) on a dark background.

    The L is not mirror-symmetric, so a flip of the image without the mask (or the reverse) shows.
    """
    mask = torch.zeros(height, width, dtype=torch.int64)
    mask[8:32, 6:14] = 1
    mask[24:32, 6:30] = 1
    mask[4:10, 40:52] = 2  # a second class, also bright
    image = torch.where(mask > 0, 0.9, 0.1).expand(3, -1, -1).clone()
    image[0] += 0.05 * (mask == 2)  # a tint: colour does not give the class away here, brightness does
    return image, mask


def test_train_output_sizes_and_dtypes():
    transform = train_transforms(32)
    for image in (torch.rand(3, 40, 56), (torch.rand(3, 40, 56) * 255).to(torch.uint8)):
        out_image, out_mask = transform(image, torch.zeros(40, 56, dtype=torch.int64))
        assert type(out_image) is torch.Tensor and type(out_mask) is torch.Tensor  # plain tensors, unwrapped
        assert out_image.shape == (3, 32, 32) and out_image.dtype == torch.float32
        assert 0 <= out_image.min() and out_image.max() <= 1
        assert out_mask.shape == (32, 32) and out_mask.dtype == torch.int64


def test_mask_values_stay_in_the_label_set():
    # Per-pixel random labels: any interpolation other than nearest would invent values like 1, 2, 5.
    mask = torch.tensor([0, 3, 7])[torch.randint(0, 3, (37, 45))]
    image = torch.rand(3, 37, 45)
    train, evaluate = train_transforms(32), eval_transforms(24)
    for _ in range(20):
        assert set(train(image, mask)[1].unique().tolist()) <= {0, 3, 7, 255}
    assert set(evaluate(image, mask)[1].unique().tolist()) <= {0, 3, 7}


def test_padding_is_void_in_the_mask_and_zero_in_the_image():
    image, mask = torch.rand(3, 32, 32) * 0.8 + 0.2, torch.ones(32, 32, dtype=torch.int64)
    out_image, out_mask = train_transforms(32, scale=(0.5, 0.5), hflip=False, jitter=0)(image, mask)
    void = out_mask == 255
    assert void.sum() == 32 * 32 - 16 * 16  # shrunk to 16 x 16, the rest is padding
    assert (out_mask[~void] == 1).all()
    assert (out_image[:, void] == 0).all() and (out_image[:, ~void] > 0.1).all()


def _interior(mask, margin=2):
    """Pixels at least ``margin`` pixels from any label edge and from the frame.

    Resampling blends the image across label edges (antialiasing spreads a little further than one pixel
    when shrinking), and at the frame the neighbour across an edge was cropped away; torch's "nearest"
    (which torchvision uses for masks) also sits up to half a pixel off the bilinear image grid.
    """
    labels, window = mask.double()[None, None], 2 * margin + 1
    high = torch.nn.functional.max_pool2d(labels, window, stride=1)
    low = -torch.nn.functional.max_pool2d(-labels, window, stride=1)
    inside = torch.zeros_like(mask, dtype=torch.bool)
    inside[margin:-margin, margin:-margin] = (high == low)[0, 0]
    return inside & (mask != 255)


def test_image_and_mask_stay_aligned_under_augmentation():
    image, mask = _scene()
    transform = train_transforms(40)  # scale, crop, flip and colour jitter all on
    checked = 0
    for _ in range(20):
        out_image, out_mask = transform(image, mask)
        grey, valid = out_image.mean(0), out_mask != 255
        low, high = grey[valid].min(), grey[valid].max()
        if high - low < 0.1:  # the crop caught one region only: it must be one class
            assert (out_mask[valid] > 0).all() or (out_mask[valid] == 0).all()
            continue
        # Read the mask off the augmented image: bright pixels are objects, whatever the jitter did.
        inside = _interior(out_mask)
        derived, is_object = grey[inside] > (low + high) / 2, out_mask[inside] > 0
        assert torch.equal(derived, is_object), f"image and mask disagree on {(derived != is_object).sum()} pixels"
        checked += 1
    assert checked >= 10  # most crops hold both object and background


def test_flip_moves_image_and_mask_together():
    image, mask = _scene(40, 40)
    transform = train_transforms(40, scale=(1.0, 1.0), jitter=0)  # only the flip is random
    flipped_count = 0
    for _ in range(20):
        out_image, out_mask = transform(image, mask)
        if torch.equal(out_mask, mask):
            assert torch.allclose(out_image, image)
        else:
            assert torch.equal(out_mask, mask.flip(-1)) and torch.allclose(out_image, image.flip(-1))
            flipped_count += 1
    assert 0 < flipped_count < 20  # the flip is random: both outcomes occur


def test_eval_is_a_deterministic_center_crop():
    mask = torch.arange(48).repeat(32, 1) % 5  # each column carries its own label pattern
    image = torch.rand(3, 32, 48)
    out_image, out_mask = eval_transforms(32)(image, mask)  # shorter side already 32: no resize
    assert torch.equal(out_mask, mask[:, 8:40]) and torch.allclose(out_image, image[:, :, 8:40])
    again = eval_transforms(32)(image, mask)
    assert torch.equal(again[0], out_image) and torch.equal(again[1], out_mask)
    assert eval_transforms(16)(image, mask)[1].shape == (16, 16)


def test_works_as_voc_dataset_transforms(tmp_path):
    class Scenes:
        def __getitem__(self, i):
            return _scene()

    write_voc(Scenes(), tmp_path, indices=[0, 1])
    data = VOCSegmentation(tmp_path, transforms=train_transforms(24))
    image, mask = data[1]
    assert image.shape == (3, 24, 24) and mask.shape == (24, 24)
    assert set(mask.unique().tolist()) <= {0, 1, 2, 255}


def test_bad_arguments():
    with pytest.raises(ValueError, match="size must be an int >= 1, got 0"):
        train_transforms(0)
    with pytest.raises(ValueError, match="size must be an int >= 1, got -1"):
        eval_transforms(-1)
    for bad in (32.0, 2.5, True):
        with pytest.raises(TypeError, match="size must be an int >= 1"):
            eval_transforms(bad)
        with pytest.raises(TypeError, match="size must be an int >= 1"):
            train_transforms(bad)
    with pytest.raises(ValueError, match="scale must be a pair"):
        train_transforms(32, scale=(2.0, 0.5))
    with pytest.raises(ValueError, match="scale must be a pair"):
        train_transforms(32, scale=(0.5, 1.0, 2.0))
    with pytest.raises(TypeError, match="scale must be a pair"):
        train_transforms(32, scale=0.5)
    with pytest.raises(TypeError, match="scale"):
        train_transforms(32, scale=(0.5, "2"))
    with pytest.raises(ValueError, match="jitter"):
        train_transforms(32, jitter=1.5)
    with pytest.raises(TypeError, match="jitter"):
        train_transforms(32, jitter="0.3")
    transform = eval_transforms(8)
    with pytest.raises(TypeError, match=r"mask must be torch.int64 tensor \[H, W\]"):
        transform(torch.rand(3, 8, 8), torch.zeros(8, 8))
    with pytest.raises(ValueError, match=r"mask must have the image's size \[H, W\] = \[8, 8\], got \[8, 9\]"):
        transform(torch.rand(3, 8, 8), torch.zeros(8, 9, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"image must be 3-D \[3, H, W\]"):
        transform(torch.rand(8, 8), torch.zeros(8, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"image must be a tensor \[3, H, W\]"):
        transform(torch.rand(2, 8, 8), torch.zeros(8, 8, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"image must be a torch.Tensor \[3, H, W\]"):
        transform([[0.0]], torch.zeros(8, 8, dtype=torch.int64))
