"""Read and write the PASCAL VOC segmentation layout.

PASCAL VOC 2012 (Everingham et al., "The PASCAL Visual Object Classes Challenge", IJCV 2010) stores a
segmentation dataset as plain files, and most segmentation code reads that layout::

    root/
      JPEGImages/<id>.jpg                  the photo
      SegmentationClass/<id>.png           class index per pixel (palette PNG, 255 = void)
      SegmentationObject/<id>.png          instance index per pixel: 0 background, 1..N objects, 255 void
      ImageSets/Segmentation/<split>.txt   one id per line (train.txt, val.txt, ...)
      classes.txt                          optional (not in VOC itself): one class name per line

The PNGs are *palette* images (PIL mode ``"P"``): each pixel stores an index into a 256-colour table. The
index is the label; the colour is only for looking at. So a mask is read with its indices (never converted
to RGB), and 255 - drawn cream-white by the palette - marks "void" pixels (object borders, unclear regions)
that training and evaluation ignore.

``write_voc`` writes any segmentation dataset in this layout (the synthetic shapes, or your own data);
``VOCSegmentation`` reads it back - or a real ``VOCdevkit/VOC2012`` folder, unchanged - as
``(image float32 [3, H, W] in [0, 1], mask int64 [H, W])`` pairs. ``scan_voc`` reads a whole split once and
names the first bad file (unreadable, mismatched sizes, labels beyond the classes), so that a training run
does not find it hours in.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from tqdm.auto import tqdm

from segedu import validate

__all__ = [
    "VOID",
    "VOC_CLASSES",
    "VOC_PALETTE",
    "read_mask",
    "read_ids",
    "VOCSegmentation",
    "scan_voc",
    "write_voc",
    "MINI_TRAIN",
    "MINI_VAL",
    "MINI_SIZE",
    "MINI_SEED",
    "make_shapes_voc_mini",
]

VOID = 255
"""The label of pixels that are ignored (object borders in VOC); also ``ignore_index`` of the losses."""

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
"""The 21 labels of PASCAL VOC 2012 segmentation: background (0) and 20 object classes (1..20)."""


def _voc_palette(num_colors: int = 256) -> tuple[tuple[int, int, int], ...]:
    """The VOC colour map, built as in the devkit's ``VOClabelcolormap.m``.

    The bits of the label are dealt out in turn to red, green and blue, most significant colour bit first:
    bit 0 of the label -> bit 7 of red, bit 1 -> bit 7 of green, bit 2 -> bit 7 of blue, bit 3 -> bit 6 of
    red, and so on. Neighbouring labels therefore get very different colours.
    """
    labels = np.arange(num_colors)
    rgb = np.zeros((num_colors, 3), dtype=np.int64)
    for bit in range(8):  # 8 bits of colour depth: a loop over bits, vectorized over all labels
        for channel in range(3):
            label_bit = (labels >> (3 * bit + channel)) & 1
            rgb[:, channel] |= label_bit << (7 - bit)
    return tuple(tuple(int(v) for v in row) for row in rgb)


VOC_PALETTE: tuple[tuple[int, int, int], ...] = _voc_palette()
"""The standard 256-entry VOC colour map: ``VOC_PALETTE[label] = (r, g, b)``.

0 is black (background), 15 (person) is (192, 128, 128), 255 (void) is (224, 224, 192).
``torch.tensor(VOC_PALETTE)[mask]`` colours a mask; ``np.asarray(VOC_PALETTE, np.uint8)`` gives ``[256, 3]``.
"""

_FLAT_PALETTE = [value for rgb in VOC_PALETTE for value in rgb]  # PIL's putpalette wants r0,g0,b0,r1,...
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # a file name stem, no separators or spaces


# ----------------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------------


def read_mask(path: str | os.PathLike) -> torch.Tensor:
    """Read a label PNG as int64 ``[H, W]``: the palette *index* of every pixel, 255 kept as void.

    Works for ``SegmentationClass`` and ``SegmentationObject`` files. Palette (``"P"``) and greyscale
    (``"L"``) PNGs hold indices; an RGB PNG holds colours, which are not labels, so it raises ``ValueError``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask file not found: {path}")
    try:
        with Image.open(path) as png:
            mode = png.mode
            # np.array on a "P" image gives the indices; .convert("RGB") would give the colours instead.
            indices = np.array(png, dtype=np.uint8) if mode in ("P", "L") else None
    except (OSError, SyntaxError) as error:  # PIL: unidentified, truncated or broken files
        raise ValueError(f"mask {path} cannot be read ({error}): a corrupt or truncated PNG?") from error
    if indices is None:
        raise ValueError(
            f"mask {path} must be a palette ('P') or greyscale ('L') PNG holding class indices, "
            f"got mode {mode!r}; a colour (RGB) mask has to be mapped back to indices first"
        )
    return torch.from_numpy(indices).to(torch.int64)


def _read_image(path: Path) -> np.ndarray:
    """An image file as uint8 ``[H, W, 3]``; a missing file raises ``FileNotFoundError``, an unreadable one
    ``ValueError``, both naming the file."""
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as jpeg:
            # convert("RGB"): some real-world JPEGs are greyscale or CMYK; every item has 3 channels anyway.
            return np.array(jpeg.convert("RGB"), dtype=np.uint8)
    except (OSError, SyntaxError) as error:  # PIL: unidentified, truncated or broken files
        raise ValueError(f"image {path} cannot be read ({error}): a corrupt or truncated file?") from error


def _check_labels(mask: torch.Tensor, mask_path: Path, image_size: tuple, image_path: Path,
                  num_classes: int) -> torch.Tensor:
    """``mask`` ``[H, W]`` must have the image's size and hold labels ``0..num_classes - 1`` or 255 (void).

    ``ValueError`` names the file otherwise: a label beyond the classes would fail mid-run as an index error
    inside the loss (a device-side assert on CUDA) that names no file. Returns the per-label pixel counts
    ``[256]``.
    """
    if tuple(mask.shape) != tuple(image_size):
        raise ValueError(
            f"mask {mask_path} has size (H, W) = {tuple(mask.shape)} but its image {image_path.name} "
            f"has size {tuple(image_size)}"
        )
    counts = torch.bincount(mask.flatten(), minlength=VOID + 1)
    bad = [v for v in counts.nonzero().flatten().tolist() if num_classes <= v < VOID]
    if bad:
        raise ValueError(
            f"mask {mask_path} holds labels {bad[:8]} but the data has {num_classes} classes (labels "
            f"0..{num_classes - 1}, 255 = void): list every class in classes.txt or map the labels to 0..C-1"
        )
    return counts


def read_ids(split_file: str | os.PathLike) -> list[str]:
    """The ids listed in an ``ImageSets/Segmentation/<split>.txt`` file, in order (blank lines skipped)."""
    split_file = Path(split_file)
    if not split_file.is_file():
        raise FileNotFoundError(f"split file not found: {split_file}")
    return [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]


class VOCSegmentation(Dataset):
    """A VOC-layout folder as a dataset of ``(image float32 [3, H, W] in [0, 1], mask int64 [H, W])``.

    ``root`` is the folder holding ``JPEGImages``, ``SegmentationClass`` and ``ImageSets`` - for the real
    dataset that is ``.../VOCdevkit/VOC2012``. ``split`` names ``ImageSets/Segmentation/<split>.txt``
    (VOC 2012 has ``train``, ``val`` and ``trainval``). Masks keep 255 for void pixels.

    ``transforms`` is an optional callable ``(image, mask) -> (image, mask)`` applied to every item, e.g.
    ``segedu.data.transforms.train_transforms(size)``.

    Attributes: ``root``, ``split``, ``ids`` (list of str), ``classes`` (names from ``root/classes.txt`` when
    present, else ``VOC_CLASSES``).

    Missing folders or files raise ``FileNotFoundError`` naming the path; an unreadable file, a mask whose
    size differs from its image (both sizes named) or a label beyond ``classes`` (255 aside) raises
    ``ValueError`` naming the file. ``scan_voc`` runs these checks over a whole split at once.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        transforms: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> None:
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a path (str or os.PathLike), got {type(root).__name__}")
        if not isinstance(split, str):
            raise TypeError(f"split must be a non-empty str such as 'train' or 'val', got {type(split).__name__}")
        if not split:
            raise ValueError(f"split must be a non-empty str such as 'train' or 'val', got {split!r}")
        if transforms is not None and not callable(transforms):
            raise TypeError(
                f"transforms must be callable (image, mask) -> (image, mask), got {type(transforms).__name__}"
            )
        self.root = Path(root)
        self.split = split
        self.transforms = transforms
        if not self.root.is_dir():
            raise FileNotFoundError(f"VOC root folder not found: {self.root}")
        for folder in ("JPEGImages", "SegmentationClass"):
            if not (self.root / folder).is_dir():
                raise FileNotFoundError(f"VOC folder not found: {self.root / folder} (is root the VOC2012 folder?)")
        split_file = self.root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not split_file.is_file():
            available = sorted(p.stem for p in split_file.parent.glob("*.txt")) if split_file.parent.is_dir() else []
            raise FileNotFoundError(f"split file not found: {split_file} (available splits: {available})")
        self.ids = read_ids(split_file)
        classes_file = self.root / "classes.txt"
        if classes_file.is_file():
            self.classes = tuple(line.strip() for line in classes_file.read_text().splitlines() if line.strip())
        else:
            self.classes = VOC_CLASSES

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, index: int) -> Path:
        return self.root / "JPEGImages" / f"{self.ids[index]}.jpg"

    def mask_path(self, index: int) -> Path:
        return self.root / "SegmentationClass" / f"{self.ids[index]}.png"

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = validate.integer(index, "index")
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items in split {self.split!r}")
        image_path, mask_path = self.image_path(index), self.mask_path(index)
        pixels = _read_image(image_path)  # [H, W, 3]
        image = torch.from_numpy(pixels).permute(2, 0, 1).to(torch.float32) / 255.0
        mask = read_mask(mask_path)
        _check_labels(mask, mask_path, pixels.shape[:2], image_path, len(self.classes))
        if self.transforms is not None:
            image, mask = self.transforms(image, mask)
        return image, mask

    def __repr__(self) -> str:
        return (
            f"VOCSegmentation(root={str(self.root)!r}, split={self.split!r}, "
            f"items={len(self)}, classes={len(self.classes)})"
        )


def scan_voc(root: str | os.PathLike, split: str = "train", num_classes: int | None = None, *,
             progress: bool = False) -> dict:
    """Read every image and mask of a split once, before training, and name the first bad file.

    Checks: the folders and the split file exist (``FileNotFoundError``); the split lists at least one id;
    every image and mask exists and decodes; each mask has its image's size and holds labels
    ``0..num_classes - 1`` or 255 (void). A split whose masks hold only 0 and 255 is refused too: that is a
    binary mask saved black/white, and since 255 means void every object would be ignored (store the
    foreground as 1). Anything wrong raises ``ValueError`` naming the file.

    Args:
        num_classes: C; default ``len(VOCSegmentation(root, split).classes)``.
        progress: a ``tqdm`` bar over the files (a real VOC split has thousands).

    Returns:
        ``{"root", "split", "images": N, "num_classes": C, "pixels": [pixels of each label 0..C-1],
        "void": void pixels}``.
    """
    data = VOCSegmentation(root, split)
    num_classes = validate.integer(len(data.classes) if num_classes is None else num_classes, "num_classes",
                                   minimum=1, maximum=VOID)
    split_file = data.root / "ImageSets" / "Segmentation" / f"{data.split}.txt"
    if not data.ids:
        raise ValueError(f"split {data.split!r} of {data.root} has no images: {split_file} lists no ids")
    counts = torch.zeros(VOID + 1, dtype=torch.int64)
    for index in tqdm(range(len(data)), desc=f"scan {data.split}", unit="file", disable=not progress):
        image_path, mask_path = data.image_path(index), data.mask_path(index)
        size = _read_image(image_path).shape[:2]
        counts += _check_labels(read_mask(mask_path), mask_path, size, image_path, num_classes)
    if counts[VOID] > 0 and counts[1:VOID].sum() == 0:
        raise ValueError(
            f"every mask of {split_file} holds only 0 and 255: 255 means void (ignored), so no object would be "
            "learned; a binary mask must store the foreground as 1, not 255"
        )
    return {"root": str(data.root), "split": data.split, "images": len(data), "num_classes": num_classes,
            "pixels": counts[:num_classes].tolist(), "void": int(counts[VOID])}


# ----------------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------------


def _to_uint8_image(image: object, where: str) -> np.ndarray:
    """float ``[3, H, W]`` in [0, 1] (or uint8) -> uint8 ``[H, W, 3]`` for PIL."""
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{where}: image must be a torch.Tensor [3, H, W], got {type(image).__name__}")
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"{where}: image must have shape [3, H, W], got {tuple(image.shape)}")
    image = image.detach().cpu()
    if image.dtype == torch.uint8:
        return image.permute(1, 2, 0).numpy()
    if not image.is_floating_point():
        raise TypeError(f"{where}: image must be float in [0, 1] or uint8, got dtype {image.dtype}")
    low, high = image.min().item(), image.max().item()
    if low < 0.0 or high > 1.0:
        raise ValueError(f"{where}: float image must lie in [0, 1], got values in [{low:.3g}, {high:.3g}]")
    return (image * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()


def _check_label_map(mask: object, name: str, where: str, size: tuple[int, int]) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{where}: {name} must be a torch.Tensor [H, W], got {type(mask).__name__}")
    if mask.dtype.is_floating_point or mask.dtype == torch.bool:
        raise TypeError(f"{where}: {name} must hold integer labels (int64), got dtype {mask.dtype}")
    if tuple(mask.shape) != size:
        raise ValueError(f"{where}: {name} must have the image's size [H, W] = {list(size)}, got {list(mask.shape)}")
    mask = mask.detach().cpu().to(torch.int64)
    if mask.numel() and (mask.min() < 0 or mask.max() > VOID):
        raise ValueError(
            f"{where}: {name} values must lie in 0..255 (a PNG index; 255 = void), "
            f"got range [{mask.min().item()}, {mask.max().item()}]"
        )
    return mask


def _instance_maps(target: Mapping, where: str, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision detection target -> (semantic int64 [H, W], object ids int64 [H, W]: 0 bg, 1..N).

    Masks are painted in order, so where two masks overlap the later one wins (the painter's algorithm, as
    in ``segedu.data.tasks``); the shapes scenes never overlap, so nothing is lost there.
    """
    for key in ("masks", "labels"):
        if key not in target:
            raise ValueError(f"{where}: an instance target must have 'masks' and 'labels', got keys {sorted(target)}")
    masks = validate.tensor(target["masks"], f"{where}: target['masks']", layout="[N, H, W]")
    labels = validate.tensor(target["labels"], f"{where}: target['labels']", layout="[N]")
    if masks.dim() != 3 or tuple(masks.shape[1:]) != size:
        shape = tuple(masks.shape)
        raise ValueError(f"{where}: target['masks'] must be [N, H, W] with [H, W] = {list(size)}, got {shape}")
    if labels.shape != (masks.shape[0],):
        raise ValueError(f"{where}: target['labels'] must be [N] with N = {masks.shape[0]}, got {tuple(labels.shape)}")
    count = masks.shape[0]
    if count >= VOID:
        raise ValueError(f"{where}: at most 254 objects fit in a VOC object PNG (255 = void), got {count}")
    labels = labels.detach().cpu().to(torch.int64)
    if count and (labels.min() < 1 or labels.max() >= VOID):
        raise ValueError(f"{where}: target['labels'] must lie in 1..254, got {labels.tolist()}")
    numbers = torch.arange(1, count + 1, dtype=torch.int64).view(-1, 1, 1)
    # Max over objects of (object number where the mask is on, else 0): the later object wins overlaps.
    objects = (masks.detach().cpu().bool() * numbers).amax(dim=0) if count else torch.zeros(size, dtype=torch.int64)
    semantic = torch.cat([torch.zeros(1, dtype=torch.int64), labels])[objects]
    return semantic, objects


def _save_png(label_map: torch.Tensor, path: Path) -> None:
    png = Image.fromarray(label_map.to(torch.uint8).numpy())  # mode "L": the indices themselves
    png.putpalette(_FLAT_PALETTE)  # attaching a palette turns it into a "P" image with the same indices
    png.save(path, optimize=True)


def write_voc(
    dataset: Sequence,
    root: str | os.PathLike,
    split: str = "train",
    indices: Iterable[int] | None = None,
    quality: int = 95,
    *,
    prefix: str = "shapes",
) -> list[str]:
    """Write items of ``dataset`` into the VOC layout under ``root``; returns the ids written, in order.

    ``dataset[i]`` is either ``(image, mask)`` - image float ``[3, H, W]`` in [0, 1] (or uint8), mask int64
    ``[H, W]`` with labels 0..254 and 255 = void - or ``(image, target)`` with a torchvision detection target
    ``{"masks": uint8 [N, H, W], "labels": int64 [N], ...}`` (the instance variant of
    ``segedu.data.shapes.ShapesDataset``).

    Item ``i`` becomes id ``f"{prefix}_{i:06d}"`` and the files

    * ``JPEGImages/<id>.jpg`` (JPEG ``quality``, no chroma subsampling),
    * ``SegmentationClass/<id>.png`` (palette PNG, VOC palette),
    * ``SegmentationObject/<id>.png`` for instance targets only: object ``k`` of the target gets index ``k+1``.
      A semantic mask does not say which pixels form one object (two touching objects of one class look
      like one), so for ``(image, mask)`` items no object PNG is written - and a stale one from an earlier
      write of the same id is removed.

    The ids are appended to ``ImageSets/Segmentation/<split>.txt``; ids already listed are not repeated, so
    writing the same items twice leaves one entry each. When ``dataset`` has a ``classes`` attribute it is
    written to ``root/classes.txt`` (and must agree with one already there).
    """
    if not isinstance(split, str):
        raise TypeError(f"split must be a str, a plain name such as 'train' or 'val', got {type(split).__name__}")
    if not _ID_PATTERN.match(split):
        raise ValueError(f"split must be a plain name such as 'train' or 'val', got {split!r}")
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str, a plain file-name stem such as 'shapes', got {type(prefix).__name__}")
    if not _ID_PATTERN.match(prefix):
        raise ValueError(f"prefix must be a plain file-name stem such as 'shapes', got {prefix!r}")
    quality = validate.integer(quality, "quality (the JPEG quality)", minimum=1, maximum=100)
    if indices is None:
        indices = range(len(dataset))
    indices = [validate.integer(i, "indices") for i in indices]
    if any(i < 0 for i in indices):
        raise ValueError(f"indices must be non-negative (they name the files), got {[i for i in indices if i < 0]}")

    root = Path(root)
    folders = {name: root / name for name in ("JPEGImages", "SegmentationClass", "SegmentationObject")}
    split_dir = root / "ImageSets" / "Segmentation"
    for folder in (*folders.values(), split_dir):
        folder.mkdir(parents=True, exist_ok=True)

    classes = getattr(dataset, "classes", None)
    if classes is not None:
        classes = [str(name) for name in classes]
        classes_file = root / "classes.txt"
        if classes_file.is_file():
            existing = [line.strip() for line in classes_file.read_text().splitlines() if line.strip()]
            if existing != classes:
                raise ValueError(f"dataset.classes {classes} differ from {classes_file}: {existing}")
        else:
            classes_file.write_text("\n".join(classes) + "\n")

    written = []
    for index in indices:
        item_id = f"{prefix}_{index:06d}"
        where = f"dataset[{index}]"
        item = dataset[index]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError(f"{where} must be a pair (image, mask) or (image, target), got {type(item).__name__}")
        image, target = item
        pixels = _to_uint8_image(image, where)
        size = tuple(pixels.shape[:2])
        if isinstance(target, Mapping):
            semantic, objects = _instance_maps(target, where, size)
        else:
            semantic, objects = _check_label_map(target, "mask", where, size), None

        # 4:4:4 (no chroma subsampling): halving the colour resolution would smear colours across object
        # boundaries - exactly the pixels a segmentation model is judged on.
        Image.fromarray(pixels).save(folders["JPEGImages"] / f"{item_id}.jpg", quality=quality, subsampling=0)
        _save_png(semantic, folders["SegmentationClass"] / f"{item_id}.png")
        object_path = folders["SegmentationObject"] / f"{item_id}.png"
        if objects is not None:
            _save_png(objects, object_path)
        else:
            object_path.unlink(missing_ok=True)
        written.append(item_id)

    split_file = split_dir / f"{split}.txt"
    listed = read_ids(split_file) if split_file.is_file() else []
    known = set(listed)
    new = [item_id for item_id in dict.fromkeys(written) if item_id not in known]
    split_file.write_text("".join(f"{item_id}\n" for item_id in [*listed, *new]))
    return written


# ----------------------------------------------------------------------------------------------------
# the shipped sample
# ----------------------------------------------------------------------------------------------------

MINI_TRAIN, MINI_VAL, MINI_SIZE, MINI_SEED = 24, 8, 128, 0


def make_shapes_voc_mini(root: str | os.PathLike) -> Path:
    """Write the shipped sample ``data/shapes-voc-mini``: instance shapes scenes in the VOC layout.

    ``MINI_TRAIN`` (24) train and ``MINI_VAL`` (8) val scenes of
    ``ShapesDataset(MINI_TRAIN + MINI_VAL, size=MINI_SIZE, seed=MINI_SEED, variant="instance")``: train are
    items 0..23 (ids ``shapes_000000``..), val items 24..31, so the two splits never share a scene.
    Returns ``Path(root)``. Files already under ``root`` are overwritten, never deleted: regenerate into an
    empty folder. Regenerate the shipped copy with
    ``python -c "from segedu.data.voc import make_shapes_voc_mini; make_shapes_voc_mini('data/shapes-voc-mini')"``.
    """
    from segedu.data.shapes import ShapesDataset  # imported here: voc.py reads real data without it

    dataset = ShapesDataset(MINI_TRAIN + MINI_VAL, size=MINI_SIZE, seed=MINI_SEED, variant="instance")
    # One vectorized render of all scenes (much faster than one at a time); item i is the same either way.
    images, targets = dataset.batch(range(len(dataset)))
    scenes = _Rendered(zip(images, targets), classes=dataset.classes)
    write_voc(scenes, root, split="train", indices=range(MINI_TRAIN))
    write_voc(scenes, root, split="val", indices=range(MINI_TRAIN, MINI_TRAIN + MINI_VAL))
    return Path(root)


class _Rendered(list):
    """Pre-rendered ``(image, target)`` items, with the ``classes`` that ``write_voc`` records."""

    def __init__(self, items: Iterable, classes: Sequence[str]) -> None:
        super().__init__(items)
        self.classes = classes
