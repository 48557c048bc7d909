"""segedu.data.voc: the VOC palette, write_voc -> VOCSegmentation round trips, the shipped sample, errors."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segedu.data.shapes import ShapesDataset
from segedu.data.voc import (
    MINI_SEED,
    MINI_SIZE,
    MINI_TRAIN,
    MINI_VAL,
    VOC_CLASSES,
    VOC_PALETTE,
    VOCSegmentation,
    make_shapes_voc_mini,
    read_ids,
    read_mask,
    scan_voc,
    write_voc,
)

SHIPPED = Path(__file__).resolve().parents[1] / "data" / "shapes-voc-mini"
JPEG_MEAN_ERROR = 0.02  # mean |read - written| of a quality-95 JPEG on [0, 1] images (measured ~0.005-0.013)


class SemanticFake:
    """Tiny semantic dataset: smooth images, masks with classes 0..3 and a void border row."""

    classes = ("background", "red", "green", "blue")

    def __init__(self, length=3, height=20, width=30):
        self.length, self.height, self.width = length, height, width

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        # Smooth images (low-frequency noise) compress like photos; white noise would be JPEG's worst case.
        image = torch.nn.functional.interpolate(
            torch.rand(1, 3, 5, 5, generator=g), size=(self.height, self.width), mode="bilinear"
        )[0]
        mask = torch.randint(0, 4, (self.height, self.width), generator=g)
        mask[0] = 255
        return image, mask


class InstanceFake:
    """Tiny instance dataset: torchvision detection targets, the last two masks overlap."""

    classes = ("background", "square", "bar")

    def __len__(self):
        return 2

    def __getitem__(self, i):
        masks = torch.zeros(3, 16, 16, dtype=torch.uint8)
        masks[0, 1:5, 1:5] = 1
        masks[1, 8:12, 2:14] = 1
        masks[2, 10:15, 10:15] = 1  # overlaps object 1: the later object must win
        labels = torch.tensor([1, 2, 1 + i])
        image = torch.full((3, 16, 16), 0.25 + 0.25 * i)
        return image, {"boxes": torch.zeros(3, 4), "labels": labels, "masks": masks}


def _reference_palette():
    """The devkit's VOClabelcolormap.m, one label at a time (the vectorized version must agree)."""
    colours = []
    for label in range(256):
        r = g = b = 0
        c = label
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours.append((r, g, b))
    return tuple(colours)


def test_palette_and_classes():
    assert VOC_PALETTE == _reference_palette()
    assert len(VOC_PALETTE) == 256 and len(set(VOC_PALETTE)) == 256  # every label its own colour
    assert VOC_PALETTE[0] == (0, 0, 0) and VOC_PALETTE[1] == (128, 0, 0) and VOC_PALETTE[15] == (192, 128, 128)
    assert VOC_PALETTE[255] == (224, 224, 192)  # the cream-white of VOC's void borders
    assert len(VOC_CLASSES) == 21 and VOC_CLASSES[0] == "background" and VOC_CLASSES[15] == "person"


def test_semantic_round_trip_is_exact(tmp_path):
    data = SemanticFake()
    ids = write_voc(data, tmp_path, split="train")
    assert ids == ["shapes_000000", "shapes_000001", "shapes_000002"]
    assert read_ids(tmp_path / "ImageSets" / "Segmentation" / "train.txt") == ids
    # A semantic mask cannot say which pixels form one object: no object PNG (the documented rule).
    assert not any((tmp_path / "SegmentationObject").iterdir())
    with Image.open(tmp_path / "SegmentationClass" / "shapes_000000.png") as png:
        assert png.mode == "P"
        assert png.getpalette()[: 3 * 256] == [v for rgb in VOC_PALETTE for v in rgb]

    read = VOCSegmentation(tmp_path, split="train")
    assert len(read) == 3 and read.ids == ids and read.classes == SemanticFake.classes
    for i in range(3):
        image, mask = read[i]
        want_image, want_mask = data[i]
        assert image.dtype == torch.float32 and image.shape == (3, 20, 30)
        assert 0.0 <= image.min() and image.max() <= 1.0
        assert mask.dtype == torch.int64 and torch.equal(mask, want_mask)  # exact, 255 kept
        assert (image - want_image).abs().mean() < JPEG_MEAN_ERROR


def test_instance_round_trip_writes_objects(tmp_path):
    write_voc(InstanceFake(), tmp_path, split="val", prefix="inst")
    read = VOCSegmentation(tmp_path, split="val")
    assert read.ids == ["inst_000000", "inst_000001"]
    for i in range(2):
        _, target = InstanceFake()[i]
        objects = read_mask(tmp_path / "SegmentationObject" / f"inst_{i:06d}.png")
        want = torch.zeros(16, 16, dtype=torch.int64)
        for k, m in enumerate(target["masks"].bool(), start=1):  # painter's order: later objects on top
            want[m] = k
        assert torch.equal(objects, want)
        _, mask = read[i]
        assert torch.equal(mask, torch.cat([torch.tensor([0]), target["labels"]])[want])
        assert mask[12, 12] == target["labels"][2]  # overlap pixel: the later object's class


def test_append_does_not_duplicate_ids(tmp_path):
    data = SemanticFake(length=4)
    assert write_voc(data, tmp_path, indices=[0, 1]) == ["shapes_000000", "shapes_000001"]
    assert write_voc(data, tmp_path, indices=[1, 3]) == ["shapes_000001", "shapes_000003"]
    assert read_ids(tmp_path / "ImageSets" / "Segmentation" / "train.txt") == [
        "shapes_000000",
        "shapes_000001",
        "shapes_000003",
    ]
    # Another split in the same root shares the image folders but keeps its own list.
    write_voc(data, tmp_path, split="val", indices=[2])
    assert VOCSegmentation(tmp_path, "val").ids == ["shapes_000002"] and len(VOCSegmentation(tmp_path)) == 3


def test_rewriting_an_id_as_semantic_removes_its_stale_object_png(tmp_path):
    write_voc(InstanceFake(), tmp_path, indices=[0])
    stale = tmp_path / "SegmentationObject" / "shapes_000000.png"
    assert stale.is_file()

    class Semantic16:  # same id, semantic item, compatible classes file
        classes = InstanceFake.classes

        def __getitem__(self, i):
            return torch.zeros(3, 16, 16), torch.zeros(16, 16, dtype=torch.int64)

    write_voc(Semantic16(), tmp_path, indices=[0])
    assert not stale.exists()


def test_classes_file_conflict_raises(tmp_path):
    write_voc(SemanticFake(length=1), tmp_path)
    with pytest.raises(ValueError, match="classes"):
        write_voc(InstanceFake(), tmp_path)


def _fake_real_voc(root: Path) -> Path:
    """A folder shaped like VOCdevkit/VOC2012: VOC ids, no classes.txt, a greyscale JPEG."""
    for folder in ("JPEGImages", "SegmentationClass", "SegmentationObject", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    Image.fromarray(np.full((6, 8), 90, np.uint8)).save(root / "JPEGImages" / "2007_000032.jpg")  # mode "L"
    mask = Image.fromarray(np.array([[0, 1, 15, 255]] * 6, np.uint8).repeat(2, axis=1))
    mask.putpalette([v for rgb in VOC_PALETTE for v in rgb])
    mask.save(root / "SegmentationClass" / "2007_000032.png")
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000032\n\n")
    return root


def test_reads_real_voc_layout_and_applies_transforms(tmp_path):
    root = _fake_real_voc(tmp_path / "VOC2012")
    read = VOCSegmentation(root, split="val")
    assert read.classes == VOC_CLASSES and read.ids == ["2007_000032"]
    image, mask = read[0]
    assert image.shape == (3, 6, 8) and torch.allclose(image, torch.full_like(image, 90 / 255), atol=2 / 255)
    assert mask.tolist()[0] == [0, 0, 1, 1, 15, 15, 255, 255]

    flipped = VOCSegmentation(root, split="val", transforms=lambda x, m: (x.flip(-1), m.flip(-1)))
    assert flipped[0][1].tolist()[0] == [255, 255, 15, 15, 1, 1, 0, 0]


def test_missing_paths_raise_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        VOCSegmentation(tmp_path / "nowhere")
    root = _fake_real_voc(tmp_path / "VOC2012")
    with pytest.raises(FileNotFoundError, match=r"train\.txt.*available splits: \['val'\]"):
        VOCSegmentation(root, split="train")
    (root / "JPEGImages" / "2007_000032.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="2007_000032.jpg"):
        VOCSegmentation(root, split="val")[0]
    (root / "JPEGImages").rmdir()
    with pytest.raises(FileNotFoundError, match="JPEGImages"):
        VOCSegmentation(root, split="val")
    with pytest.raises(FileNotFoundError, match="no_such.png"):
        read_mask(tmp_path / "no_such.png")


def test_bad_masks_raise_value_error(tmp_path):
    root = _fake_real_voc(tmp_path / "VOC2012")
    png = root / "SegmentationClass" / "2007_000032.png"
    Image.fromarray(np.zeros((5, 8), np.uint8)).save(png)  # one row short of its 6 x 8 image
    with pytest.raises(ValueError, match=r"2007_000032\.png.*\(5, 8\).*\(6, 8\)"):
        VOCSegmentation(root, split="val")[0]
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(png)  # colours are not labels
    with pytest.raises(ValueError, match="'RGB'"):
        VOCSegmentation(root, split="val")[0]


def test_write_rejects_bad_items(tmp_path):
    def one(image, target):
        class One:
            def __getitem__(self, i):
                return image, target

        return write_voc(One(), tmp_path, indices=[0])

    good_image, good_mask = torch.rand(3, 4, 5), torch.zeros(4, 5, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"image must lie in \[0, 1\]"):
        one(good_image * 2, good_mask)
    with pytest.raises(ValueError, match=r"image must have shape \[3, H, W\], got \(4, 5\)"):
        one(good_image[0], good_mask)
    with pytest.raises(ValueError, match=r"mask must have the image's size \[H, W\] = \[4, 5\], got \[5, 4\]"):
        one(good_image, good_mask.T)
    with pytest.raises(TypeError, match="mask must hold integer labels"):
        one(good_image, good_mask.float())
    with pytest.raises(ValueError, match=r"0\.\.255.*\[0, 300\]"):
        one(good_image, good_mask + torch.tensor([[0, 0, 0, 0, 300]]))
    with pytest.raises(ValueError, match="'masks' and 'labels'"):
        one(good_image, {"boxes": torch.zeros(0, 4)})
    with pytest.raises(TypeError, match="pair"):
        write_voc([good_image], tmp_path)
    with pytest.raises(ValueError, match="quality"):
        write_voc(SemanticFake(), tmp_path, quality=0)
    with pytest.raises(ValueError, match="split"):
        write_voc(SemanticFake(), tmp_path, split="../train")


def test_arguments_follow_the_rule(tmp_path):
    """Wrong type -> TypeError, wrong value -> ValueError, checked before anything is written."""
    for bad, error in ((True, TypeError), (2.5, TypeError), (-1, ValueError), (0, ValueError), (101, ValueError)):
        with pytest.raises(error, match="quality"):
            write_voc(SemanticFake(), tmp_path, quality=bad)
    for bad, error in (([0, True], TypeError), ([0, 2.5], TypeError), ([0, -1], ValueError)):
        with pytest.raises(error, match="indices"):
            write_voc(SemanticFake(), tmp_path, indices=bad)
    with pytest.raises(TypeError, match="split"):
        write_voc(SemanticFake(), tmp_path, split=1)
    with pytest.raises(TypeError, match="prefix"):
        write_voc(SemanticFake(), tmp_path, prefix=None)
    with pytest.raises(ValueError, match="prefix"):
        write_voc(SemanticFake(), tmp_path, prefix="a b")
    assert not (tmp_path / "JPEGImages").exists()

    def one(target):
        class One:
            def __getitem__(self, i):
                return torch.rand(3, 4, 5), target

        return write_voc(One(), tmp_path, indices=[0])

    with pytest.raises(TypeError, match=r"target\['masks'\]"):
        one({"masks": [[0]], "labels": torch.ones(1, dtype=torch.int64)})
    with pytest.raises(TypeError, match=r"target\['labels'\]"):
        one({"masks": torch.zeros(1, 4, 5, dtype=torch.uint8), "labels": [1]})
    with pytest.raises(ValueError, match=r"target\['masks'\] must be \[N, H, W\]"):
        one({"masks": torch.zeros(4, 5, dtype=torch.uint8), "labels": torch.ones(1, dtype=torch.int64)})

    write_voc(SemanticFake(), tmp_path, split="val")
    with pytest.raises(TypeError, match="split"):
        VOCSegmentation(tmp_path, split=None)
    with pytest.raises(ValueError, match="split"):
        VOCSegmentation(tmp_path, split="")
    data = VOCSegmentation(tmp_path, split="val")
    for bad in (True, 1.5):
        with pytest.raises(TypeError, match="index"):
            data[bad]
    with pytest.raises(IndexError, match="out of range"):
        data[3]


# ----------------------------------------------------------------------------------------------------
# the synthetic shapes through the VOC layout, and the shipped sample
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["semantic", "context"])
def test_shapes_round_trip_is_exact(tmp_path, variant):
    shapes = ShapesDataset(4, size=48, seed=5, variant=variant)
    write_voc(shapes, tmp_path)
    read = VOCSegmentation(tmp_path)
    assert read.classes == shapes.classes
    for i in range(4):
        (image, mask), (want_image, want_mask) = read[i], shapes[i]
        assert torch.equal(mask, want_mask)
        assert (image - want_image).abs().mean() < JPEG_MEAN_ERROR


def test_shapes_instance_round_trip_is_exact(tmp_path):
    shapes = ShapesDataset(4, size=48, seed=5, variant="instance")
    semantic = ShapesDataset(4, size=48, seed=5, variant="semantic")  # the same scenes, as class masks
    write_voc(shapes, tmp_path, indices=[1, 3])
    read = VOCSegmentation(tmp_path)
    assert read.ids == ["shapes_000001", "shapes_000003"]
    for position, i in enumerate([1, 3]):
        _, target = shapes[i]
        assert torch.equal(read[position][1], semantic[i][1])
        objects = read_mask(tmp_path / "SegmentationObject" / f"{read.ids[position]}.png")
        numbers = torch.arange(1, len(target["labels"]) + 1).view(-1, 1, 1)
        assert torch.equal(objects, (target["masks"].long() * numbers).sum(0))  # masks do not overlap


@pytest.fixture(scope="module")
def mini_scenes():
    """The scenes of the shipped sample, rendered in one vectorized batch (item i equals shapes[i])."""
    shapes = ShapesDataset(MINI_TRAIN + MINI_VAL, size=MINI_SIZE, seed=MINI_SEED, variant="instance")
    images, targets = shapes.batch(range(len(shapes)))
    return list(zip(images, targets))


def _assert_same_voc(read: VOCSegmentation, scenes, indices):
    assert read.ids == [f"shapes_{i:06d}" for i in indices]
    for position, i in enumerate(indices):
        (image, mask), (want_image, target) = read[position], scenes[i]
        assert image.shape == (3, MINI_SIZE, MINI_SIZE)
        numbers = torch.arange(1, len(target["labels"]) + 1).view(-1, 1, 1)
        objects = (target["masks"].long() * numbers).sum(0)
        assert torch.equal(mask, torch.cat([torch.tensor([0]), target["labels"]])[objects])
        assert torch.equal(read_mask(read.root / "SegmentationObject" / f"{read.ids[position]}.png"), objects)
        assert (image - want_image).abs().mean() < JPEG_MEAN_ERROR


def test_shipped_sample_equals_a_fresh_render(mini_scenes):
    # If this fails after a change to segedu.data.shapes, regenerate the sample (see data/README.md).
    _assert_same_voc(VOCSegmentation(SHIPPED, "train"), mini_scenes, range(MINI_TRAIN))
    _assert_same_voc(VOCSegmentation(SHIPPED, "val"), mini_scenes, range(MINI_TRAIN, MINI_TRAIN + MINI_VAL))
    assert VOCSegmentation(SHIPPED).classes == ShapesDataset(1).classes
    size = sum(f.stat().st_size for f in SHIPPED.rglob("*") if f.is_file())
    assert size <= 2 * 1024 * 1024, f"data/shapes-voc-mini is {size / 2**20:.2f} MB, more than 2 MB"


def test_make_shapes_voc_mini_reproduces_the_shipped_files(tmp_path):
    fresh = make_shapes_voc_mini(tmp_path / "mini")
    shipped_files = sorted(f.relative_to(SHIPPED) for f in SHIPPED.rglob("*") if f.is_file())
    assert sorted(f.relative_to(fresh) for f in fresh.rglob("*") if f.is_file()) == shipped_files
    for split in ("train", "val"):
        ours, theirs = VOCSegmentation(fresh, split), VOCSegmentation(SHIPPED, split)
        assert ours.ids == theirs.ids
        for (our_image, our_mask), (their_image, their_mask) in zip(ours, theirs):
            assert torch.equal(our_mask, their_mask)
            # Same pixels, same encoder settings: equal up to libjpeg differences between Pillow builds.
            assert (our_image - their_image).abs().max() <= 2 / 255


# ----------------------------------------------------------------------------------------------------
# scan_voc: every file of a split read once, before training; the error names the file
# ----------------------------------------------------------------------------------------------------


def _written(tmp_path, length=3):
    """A fresh VOC folder of SemanticFake items (classes 0..3, a void row); returns (root, dataset)."""
    root = tmp_path / "voc"
    write_voc(SemanticFake(length=length), root)
    return root, VOCSegmentation(root)


def _save_mask(path, values):
    png = Image.fromarray(np.asarray(values, np.uint8))
    png.putpalette([v for rgb in VOC_PALETTE for v in rgb])
    png.save(path)


def test_scan_reports_a_good_split(tmp_path):
    root, data = _written(tmp_path)
    report = scan_voc(root, "train")
    assert report["images"] == 3 and report["num_classes"] == 4 and report["split"] == "train"
    assert sum(report["pixels"]) + report["void"] == 3 * 20 * 30 and report["void"] == 3 * 30
    assert scan_voc(SHIPPED, "val", progress=True)["images"] == MINI_VAL


def test_scan_names_a_label_beyond_the_classes(tmp_path):
    root, data = _written(tmp_path)
    mask = read_mask(data.mask_path(1)).numpy()
    mask[5, 5] = 21  # 4 classes: labels 0..3 and 255
    _save_mask(data.mask_path(1), mask)
    with pytest.raises(ValueError, match=rf"{data.mask_path(1).name}.*labels \[21\].*4 classes.*0\.\.3"):
        scan_voc(root, "train")
    with pytest.raises(ValueError, match=rf"{data.mask_path(1).name}.*labels \[21\]"):
        data[1]  # the dataset itself names the file too (mid-run that was a bare IndexError in the loss)
    assert scan_voc(root, "train", num_classes=22)["pixels"][21] == 1


def test_scan_names_a_corrupt_or_missing_file(tmp_path):
    root, data = _written(tmp_path)
    png = data.mask_path(2)
    png.write_bytes(png.read_bytes()[:40])  # truncated
    with pytest.raises(ValueError, match=rf"mask .*{png.name} cannot be read"):
        scan_voc(root, "train")
    with pytest.raises(ValueError, match=rf"{png.name} cannot be read"):
        data[2]
    root, data = _written(tmp_path / "b")
    data.image_path(0).write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=rf"image .*{data.image_path(0).name} cannot be read"):
        scan_voc(root, "train")
    data.image_path(0).unlink()
    with pytest.raises(FileNotFoundError, match=data.image_path(0).name):
        scan_voc(root, "train")


def test_scan_names_a_mask_of_another_size(tmp_path):
    root, data = _written(tmp_path)
    _save_mask(data.mask_path(0), np.zeros((20, 29), np.uint8))
    with pytest.raises(ValueError, match=rf"{data.mask_path(0).name}.*\(20, 29\).*\(20, 30\)"):
        scan_voc(root, "train")


def test_scan_refuses_binary_masks_stored_as_255(tmp_path):
    root, data = _written(tmp_path)
    for i in range(3):
        mask = read_mask(data.mask_path(i)).numpy()
        _save_mask(data.mask_path(i), np.where(mask > 0, 255, 0))  # a black/white mask: objects are "void"
    with pytest.raises(ValueError, match=r"only 0 and 255.*foreground as 1"):
        scan_voc(root, "train")


def test_scan_explains_an_empty_split(tmp_path):
    root, _ = _written(tmp_path)
    (root / "ImageSets" / "Segmentation" / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match=r"split 'empty' .* has no images: .*empty\.txt lists no ids"):
        scan_voc(root, "empty")
    with pytest.raises(FileNotFoundError, match="available splits"):
        scan_voc(root, "val")


def test_scan_arguments_follow_the_rule(tmp_path):
    root, _ = _written(tmp_path)
    for bad, error in ((True, TypeError), (2.5, TypeError), (-1, ValueError), (0, ValueError), (256, ValueError)):
        with pytest.raises(error, match="num_classes"):
            scan_voc(root, "train", num_classes=bad)
