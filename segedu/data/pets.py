"""The Oxford-IIIT Pet dataset as segmentation pairs: ``OxfordPets(root, split)``.

Parkhi, Vedaldi, Zisserman and Jawahar, "Cats and Dogs", CVPR 2012: 7,349 photos of 37 cat and dog breeds,
each with a *trimap* - a mask that marks every pixel as pet, background or "not classified", the band
along the pet's outline where the annotator could not say. The course's convention for such pixels is the
VOC one: label 255, ignored by the losses and metrics. So a trimap becomes a mask with 0 = background,
1 = pet (or 1 = cat, 2 = dog with ``classes="species"``) and 255 = the border band.

The layout, as ``python -m segedu download pets`` unpacks it (torchvision's ``OxfordIIITPet`` reads the same)::

    oxford-iiit-pet/
      images/<id>.jpg                   the photo (ids such as Abyssinian_1 - cats capitalised - or beagle_12)
      annotations/trimaps/<id>.png      1 = pet, 2 = background, 3 = not classified (border)
      annotations/trainval.txt          "<id> <class 1..37> <species 1 cat, 2 dog> <breed id>" per line
      annotations/test.txt              the same for the test split

``write_pets`` writes ``(image, mask)`` items in this layout (the tests serve such a folder as archives);
``scan_pets`` reads a whole split once and names the first bad file, before a training run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from segedu import validate

__all__ = [
    "VOID", "PETS_FOLDER", "PETS_SPLITS", "TRIMAP_PET", "TRIMAP_BACKGROUND", "TRIMAP_BORDER", "PETS_CLASSES",
    "PETS_SPECIES_CLASSES", "pets_folder", "read_split", "trimap_to_mask", "OxfordPets", "scan_pets", "write_pets",
]

VOID = 255  # the course's ignore label (segedu.data.voc.VOID)
PETS_FOLDER = "oxford-iiit-pet"
PETS_SPLITS = ("trainval", "test")
TRIMAP_PET, TRIMAP_BACKGROUND, TRIMAP_BORDER = 1, 2, 3
PETS_CLASSES: tuple[str, ...] = ("background", "pet")
PETS_SPECIES_CLASSES: tuple[str, ...] = ("background", "cat", "dog")  # species 1 = cat, 2 = dog in the lists


def pets_folder(root: str | os.PathLike) -> Path:
    """The folder holding ``images/`` and ``annotations/``: ``root`` itself or ``root/oxford-iiit-pet``
    (the data root of ``python -m segedu download``, as torchvision's ``root``). ``FileNotFoundError``
    names what is missing."""
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path (str or os.PathLike), got {type(root).__name__}")
    root = Path(root).expanduser()
    for folder in (root, root / PETS_FOLDER):
        if (folder / "images").is_dir() and (folder / "annotations").is_dir():
            return folder
    raise FileNotFoundError(f"Oxford-IIIT Pet folder not found: {root} has no images/ and annotations/ (nor has "
                            f"{root / PETS_FOLDER}); get it with `python -m segedu download pets`")


def read_split(folder: Path, split: str) -> tuple[list[str], list[int]]:
    """The ids of ``annotations/<split>.txt`` and their species (1 cat, 2 dog); ``#`` lines skipped."""
    if not isinstance(split, str):
        raise TypeError(f"split must be a str such as 'trainval' or 'test', got {type(split).__name__}")
    split_file = folder / "annotations" / f"{split}.txt"
    if not split_file.is_file():
        available = sorted(p.stem for p in (folder / "annotations").glob("*.txt"))
        raise FileNotFoundError(f"split file not found: {split_file} (available: {available})")
    ids, species = [], []
    for number, line in enumerate(split_file.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) < 3 or fields[2] not in ("1", "2"):
            raise ValueError(f"{split_file}, line {number}: expected '<id> <class> <species 1 or 2> <breed>', "
                             f"got {line!r}")
        ids.append(fields[0])
        species.append(int(fields[2]))
    return ids, species


def trimap_to_mask(trimap: torch.Tensor, pet_label: int = 1) -> torch.Tensor:
    """A trimap (1 pet, 2 background, 3 border) -> the course's mask: int64, 0 background, ``pet_label`` pet,
    255 border. Any other value raises ``ValueError`` (it is not a trimap)."""
    validate.tensor(trimap, "trimap", 2, dtype="integer", layout="[H, W]")
    pet_label = validate.integer(pet_label, "pet_label", minimum=1, maximum=VOID - 1)
    bad = ~torch.isin(trimap, torch.tensor([TRIMAP_PET, TRIMAP_BACKGROUND, TRIMAP_BORDER], device=trimap.device))
    if bool(bad.any()):
        raise ValueError(f"trimap must hold only 1 (pet), 2 (background) and 3 (border), got values "
                         f"{sorted(set(trimap[bad].tolist()))[:8]}")
    mask = torch.zeros(trimap.shape, dtype=torch.int64, device=trimap.device)
    mask[trimap == TRIMAP_PET] = pet_label
    mask[trimap == TRIMAP_BORDER] = VOID
    return mask


def _read_pixels(path: Path, what: str, mode: str | None) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        with Image.open(path) as picture:
            if mode is None and picture.mode not in ("P", "L"):
                raise ValueError(f"{what} {path} must be a greyscale or palette PNG of 1, 2, 3, got mode "
                                 f"{picture.mode!r}")
            return np.array(picture.convert(mode) if mode else picture, dtype=np.uint8)
    except (OSError, SyntaxError) as error:  # PIL: unidentified, truncated or broken files
        raise ValueError(f"{what} {path} cannot be read ({error}): a corrupt or truncated file?") from error


class OxfordPets(Dataset):
    """Oxford-IIIT Pet as ``(image float32 [3, H, W] in [0, 1], mask int64 [H, W])`` pairs.

    Args:
        root: the ``oxford-iiit-pet`` folder or the folder above it (``pets_folder``), e.g.
            ``segedu.data.download.available("pets")``.
        split: ``"trainval"`` (3,680 images) or ``"test"`` (3,669), or any ``annotations/<split>.txt``.
        transforms: optional ``(image, mask) -> (image, mask)``, e.g. ``segedu.data.transforms.train_transforms``
            (the photos have different sizes: batching needs it).
        classes: ``"binary"`` (0 background, 1 pet) or ``"species"`` (0 background, 1 cat, 2 dog).

    The trimap's border band is 255 (void) in every mask. Attributes: ``root`` (the resolved folder),
    ``split``, ``ids``, ``species`` (1 cat, 2 dog per item), ``classes`` (``PETS_CLASSES`` or
    ``PETS_SPECIES_CLASSES``). Missing files raise ``FileNotFoundError``, unreadable ones or a trimap whose
    size differs from its photo ``ValueError``, naming the file.
    """

    def __init__(self, root: str | os.PathLike, split: str = "trainval",
                 transforms: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
                 *, classes: str = "binary") -> None:
        if transforms is not None and not callable(transforms):
            raise TypeError(f"transforms must be callable (image, mask) -> (image, mask), got "
                            f"{type(transforms).__name__}")
        self.mode = validate.choice(classes, "classes", ("binary", "species"))
        self.root = pets_folder(root)
        self.split = split
        self.transforms = transforms
        self.ids, self.species = read_split(self.root, split)
        self.classes = PETS_CLASSES if self.mode == "binary" else PETS_SPECIES_CLASSES

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, index: int) -> Path:
        return self.root / "images" / f"{self.ids[index]}.jpg"

    def trimap_path(self, index: int) -> Path:
        return self.root / "annotations" / "trimaps" / f"{self.ids[index]}.png"

    def read(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Item ``index`` before ``transforms``: uint8 ``[3, H, W]`` and the mask."""
        index = validate.integer(index, "index")
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items in split {self.split!r}")
        image_path, trimap_path = self.image_path(index), self.trimap_path(index)
        pixels = _read_pixels(image_path, "image", "RGB")  # a few photos are greyscale or CMYK
        trimap = _read_pixels(trimap_path, "trimap", None)
        if trimap.shape != pixels.shape[:2]:
            raise ValueError(f"trimap {trimap_path} has size (H, W) = {trimap.shape} but its image "
                             f"{image_path.name} has size {pixels.shape[:2]}")
        try:
            mask = trimap_to_mask(torch.from_numpy(trimap).to(torch.int64),
                                  self.species[index] if self.mode == "species" else 1)
        except ValueError as error:
            raise ValueError(f"{trimap_path}: {error}") from None
        return torch.from_numpy(pixels).permute(2, 0, 1), mask

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.read(index)
        image = image.to(torch.float32) / 255.0
        if self.transforms is not None:
            image, mask = self.transforms(image, mask)
        return image, mask

    def __repr__(self) -> str:
        return f"OxfordPets(root={str(self.root)!r}, split={self.split!r}, items={len(self)}, classes={self.classes})"


def scan_pets(root: str | os.PathLike, split: str = "trainval", *, progress: bool = False) -> dict:
    """Read every photo and trimap of a split once (before training) and name the first bad file.

    Returns ``{"root", "split", "images": N, "num_classes": 2, "pixels": [background, pet], "void": border
    pixels}``; ``ValueError`` names an unreadable file, a size mismatch or a value that is not 1, 2 or 3.
    """
    data = OxfordPets(root, split)
    if not data.ids:
        raise ValueError(f"split {split!r} of {data.root} lists no images")
    counts = torch.zeros(VOID + 1, dtype=torch.int64)
    for index in tqdm(range(len(data)), desc=f"scan {split}", unit="file", disable=not progress):
        counts += torch.bincount(data.read(index)[1].flatten(), minlength=VOID + 1)
    return {"root": str(data.root), "split": split, "images": len(data), "num_classes": len(data.classes),
            "pixels": counts[: len(data.classes)].tolist(), "void": int(counts[VOID])}


def _uint8_image(image: object, where: str) -> np.ndarray:
    """float ``[3, H, W]`` in [0, 1] or uint8 -> uint8 ``[H, W, 3]``."""
    validate.tensor(image, f"{where}: image", 3, layout="[3, H, W]")
    if image.shape[0] != 3:
        raise ValueError(f"{where}: image must have shape [3, H, W], got {tuple(image.shape)}")
    image = image.detach().cpu()
    if image.dtype != torch.uint8:
        if not image.is_floating_point():
            raise TypeError(f"{where}: image must be float in [0, 1] or uint8, got dtype {image.dtype}")
        if image.numel() and (image.min() < 0 or image.max() > 1):
            raise ValueError(f"{where}: a float image must lie in [0, 1], got [{image.min():.3g}, {image.max():.3g}]")
        image = (image * 255).round().to(torch.uint8)
    return image.permute(1, 2, 0).numpy()


def _trimap(mask: object, where: str, size: tuple[int, ...]) -> tuple[np.ndarray, int]:
    """mask (0 background, 255 border, k >= 1 the pet of species k) -> (trimap uint8, species)."""
    validate.tensor(mask, f"{where}: mask", 2, dtype="integer", layout="[H, W]")
    if tuple(mask.shape) != size:
        raise ValueError(f"{where}: mask must have the image's size {list(size)}, got {list(mask.shape)}")
    mask = mask.detach().cpu().to(torch.int64)
    labels = set(torch.unique(mask).tolist()) - {0, VOID}
    if not labels <= {1, 2} or len(labels) > 1:
        raise ValueError(f"{where}: mask must hold 0 (background), 255 (border) and one pet label, 1 (cat) or 2 "
                         f"(dog), got labels {sorted(labels)}")
    species = labels.pop() if labels else 1
    trimap = np.full(size, TRIMAP_BACKGROUND, dtype=np.uint8)
    trimap[(mask == species).numpy()] = TRIMAP_PET
    trimap[(mask == VOID).numpy()] = TRIMAP_BORDER
    return trimap, species


def write_pets(dataset: Sequence, root: str | os.PathLike, split: str = "trainval",
               indices: Iterable[int] | None = None, quality: int = 95, *, prefix: str = "pet") -> list[str]:
    """Write ``(image, mask)`` items in the Oxford-IIIT Pet layout under ``root``; returns the ids written.

    ``image``: float ``[3, H, W]`` in [0, 1] or uint8; ``mask``: int64 ``[H, W]`` with 0 background, 255 the
    border band and one pet label - 1 (cat) or 2 (dog): that is the item's species. Item ``i`` becomes id
    ``f"{prefix}_{i}"``: ``images/<id>.jpg`` (JPEG ``quality``, no chroma subsampling), the trimap
    ``annotations/trimaps/<id>.png`` (1 pet, 2 background, 3 border) and the line ``"<id> <species> <species>
    1"`` in ``annotations/<split>.txt`` (the writer knows no breeds: the class is the species). Ids already
    listed are not repeated.
    """
    for value, name, example in ((prefix, "prefix", "'pet'"), (split, "split", "'trainval' or 'test'")):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str, a plain name such as {example}, got {type(value).__name__}")
        if not value.isidentifier():
            raise ValueError(f"{name} must be a plain name such as {example}, got {value!r}")
    quality = validate.integer(quality, "quality (the JPEG quality)", minimum=1, maximum=100)
    indices = range(len(dataset)) if indices is None else [validate.integer(i, "indices", minimum=0) for i in indices]
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "trimaps").mkdir(parents=True, exist_ok=True)
    split_file = root / "annotations" / f"{split}.txt"
    lines = split_file.read_text().splitlines() if split_file.is_file() else []
    listed = {line.split()[0] for line in lines if line.strip()}
    written = []
    for index in indices:
        where, item_id = f"dataset[{index}]", f"{prefix}_{index}"
        image, mask = dataset[index]
        pixels = _uint8_image(image, where)
        trimap, species = _trimap(mask, where, tuple(pixels.shape[:2]))
        Image.fromarray(pixels).save(root / "images" / f"{item_id}.jpg", quality=quality, subsampling=0)
        Image.fromarray(trimap).save(root / "annotations" / "trimaps" / f"{item_id}.png")
        if item_id not in listed:
            lines.append(f"{item_id} {species} {species} 1")
            listed.add(item_id)
        written.append(item_id)
    split_file.write_text("".join(f"{line}\n" for line in lines))
    return written
