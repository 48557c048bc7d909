"""What can be downloaded and where it goes: the table ``RESOURCES`` and the data folder ``data_root()``.

Each entry is a ``Resource``: a dataset (archives to unpack) or a weights file, with its addresses and
checksums - torchvision's own (``torchvision.datasets.VOCSegmentation``, ``OxfordIIITPet`` and the models'
``*_Weights`` enums; ``tests/test_download.py`` compares them with the installed torchvision). Fetching them is
``segedu.data.download``'s job; this module only says what and where, and imports nothing heavy.

Where files go: one per-user data folder, ``data_root()`` (``$SEGEDU_DATA``; default ``default_root()``)::

    <root>/VOCdevkit/VOC2012/      voc2012: read it with segedu.data.voc.VOCSegmentation
    <root>/oxford-iiit-pet/        pets: read it with segedu.data.pets.OxfordPets
    <root>/weights/<file>.pth      weights (torchvision's file names)
    <root>/downloads/              archives while they download (deleted once unpacked)
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DATA_ENV", "RemoteFile", "Resource", "RESOURCES", "default_root", "data_root", "resource",
    "weights_resource", "with_mirror", "install_path",
]

DATA_ENV = "SEGEDU_DATA"
"""The environment variable that names the data folder (overrides ``default_root()``)."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a resource.

    Attributes:
        urls: where to fetch it, tried in order (the first is torchvision's; later ones are fallbacks).
        md5: the expected MD5 (datasets, as torchvision checks them) or ``None``.
        sha256_prefix: the expected start of the SHA-256 (weights: ``torch.hub``'s convention, the hex digits
            after the last ``-`` of the file name) or ``None``.
        extract_to: for an archive, the folder under the data root it unpacks into (``""``: the root itself);
            ``None`` for a file that is kept as it is (weights).
    """

    urls: tuple[str, ...]
    md5: str | None = None
    sha256_prefix: str | None = None
    extract_to: str | None = None

    @property
    def filename(self) -> str:
        return posixpath.basename(urllib.parse.urlparse(self.urls[0]).path)


@dataclass(frozen=True)
class Resource:
    """Something ``download`` can fetch: a dataset (archives to unpack) or a weights file.

    Attributes:
        name: the name on the command line (``voc2012``).
        kind: ``"dataset"`` or ``"weights"``.
        title: one line on what it is.
        files: the ``RemoteFile`` s.
        folder: where it lives under the data root (a dataset's folder; ``"weights"`` for weights).
        required: paths under ``folder`` that a complete dataset has (``available`` checks them).
        size: the download size, for people (``"1.9 GB"``).
        home: the page with the data's description and terms of use.
        torchvision: the torchvision name of the weights (``"ResNet50_Weights.IMAGENET1K_V2"``) or dataset.
    """

    name: str
    kind: str
    title: str
    files: tuple[RemoteFile, ...]
    folder: str
    required: tuple[str, ...] = ()
    size: str = ""
    home: str = ""
    torchvision: str = ""


def _weights(name: str, torchvision_name: str, url: str, size: str, title: str) -> Resource:
    prefix = url.rsplit("-", 1)[1].split(".")[0]  # torch.hub.HASH_REGEX: resnet18-f37072fd.pth -> f37072fd
    return Resource(name, "weights", title, (RemoteFile((url,), sha256_prefix=prefix),), "weights", size=size,
                    home="https://pytorch.org/vision/stable/models.html", torchvision=torchvision_name)


_TORCH_MODELS = "https://download.pytorch.org/models/"
RESOURCES: dict[str, Resource] = {r.name: r for r in (
    Resource(
        "voc2012", "dataset", "PASCAL VOC 2012 trainval: 1,464 train + 1,449 val images with segmentation masks "
        "(21 classes, 255 = void)",
        (RemoteFile(("https://thor.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
                     "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"),
                    md5="6cd6e144f989b92b3379bac3b3de84fd", extract_to=""),),
        "VOCdevkit/VOC2012", ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation/train.txt",
                              "ImageSets/Segmentation/val.txt"),
        "1.9 GB", "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/", "torchvision.datasets.VOCSegmentation"),
    Resource(
        "pets", "dataset", "Oxford-IIIT Pet: 3,680 trainval + 3,669 test photos of 37 cat and dog breeds, with "
        "trimaps (pet, background, border)",
        (RemoteFile(("https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz",
                     "https://thor.robots.ox.ac.uk/datasets/pets/images.tar.gz"),
                    md5="5c4f3ee8e5d25df40f4fd59a7f44e54c", extract_to="oxford-iiit-pet"),
         RemoteFile(("https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz",
                     "https://thor.robots.ox.ac.uk/datasets/pets/annotations.tar.gz"),
                    md5="95a8c909bbe2e81eed6a22bccdf3f68f", extract_to="oxford-iiit-pet")),
        "oxford-iiit-pet", ("images", "annotations/trimaps", "annotations/trainval.txt", "annotations/test.txt"),
        "810 MB", "https://www.robots.ox.ac.uk/~vgg/data/pets/", "torchvision.datasets.OxfordIIITPet"),
    _weights("deeplabv3_resnet50", "DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1",
             _TORCH_MODELS + "deeplabv3_resnet50_coco-cd0a2569.pth", "161 MB",
             "DeepLab v3, ResNet-50, output stride 8, trained on COCO with the 21 VOC labels (segedu.zoo.pretrained)"),
    _weights("deeplabv3_resnet101", "DeepLabV3_ResNet101_Weights.COCO_WITH_VOC_LABELS_V1",
             _TORCH_MODELS + "deeplabv3_resnet101_coco-586e9e4e.pth", "233 MB",
             "DeepLab v3, ResNet-101, output stride 8, trained on COCO with the 21 VOC labels"),
    _weights("resnet18", "ResNet18_Weights.IMAGENET1K_V1", _TORCH_MODELS + "resnet18-f37072fd.pth", "45 MB",
             "ResNet-18 trained on ImageNet-1K (top-1 69.8 %), an encoder to fine-tune"),
    _weights("resnet34", "ResNet34_Weights.IMAGENET1K_V1", _TORCH_MODELS + "resnet34-b627a593.pth", "83 MB",
             "ResNet-34 trained on ImageNet-1K (top-1 73.3 %)"),
    _weights("resnet50", "ResNet50_Weights.IMAGENET1K_V2", _TORCH_MODELS + "resnet50-11ad3fa6.pth", "98 MB",
             "ResNet-50 trained on ImageNet-1K (top-1 80.9 %)"),
    _weights("resnet101", "ResNet101_Weights.IMAGENET1K_V2", _TORCH_MODELS + "resnet101-cd907fc2.pth", "171 MB",
             "ResNet-101 trained on ImageNet-1K (top-1 81.9 %)"),
)}
"""Everything ``python -m segedu download`` knows, by name. Any other torchvision weights can be named as
torchvision names them (``ResNet50_Weights.IMAGENET1K_V1``): see ``resource``."""

# --------------------------------------------------------------------------- where things are


def default_root() -> Path:
    """The per-user data folder: ``$XDG_DATA_HOME/segedu`` (``~/.local/share/segedu``), on Windows
    ``%LOCALAPPDATA%/segedu/data``."""
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "segedu" / "data"
    base = os.environ.get("XDG_DATA_HOME")
    return (Path(base) if base else Path.home() / ".local" / "share") / "segedu"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """``root`` when given, else ``$SEGEDU_DATA``, else ``default_root()`` (``~`` expanded; not created)."""
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a folder path (str or os.PathLike) or None, got {type(root).__name__}")
    chosen = root if root is not None else os.environ.get(DATA_ENV) or default_root()
    return Path(chosen).expanduser()


def weights_resource(weights: Any) -> Resource:
    """The ``Resource`` of a torchvision weights enum (``ResNet50_Weights.IMAGENET1K_V1``): the entry of
    ``RESOURCES`` with the same file when there is one, else one named as torchvision names it."""
    url = getattr(weights, "url", None)
    if not isinstance(url, str):
        raise TypeError(f"weights must be a torchvision weights enum (with a url), got {type(weights).__name__}")
    for entry in RESOURCES.values():
        if entry.kind == "weights" and entry.files[0].urls[0] == url:
            return entry
    size = weights.meta.get("_file_size")
    return _weights(str(weights), str(weights), url, f"{size:.0f} MB" if size else "", str(weights))


def resource(name: str | Resource) -> Resource:
    """The ``Resource`` called ``name``: a key of ``RESOURCES``, or torchvision weights by their torchvision
    name (``"ResNet50_Weights.IMAGENET1K_V1"``). A ``Resource`` is returned as it is. ``ValueError`` lists the
    names for an unknown one."""
    if isinstance(name, Resource):
        return name
    if not isinstance(name, str):
        raise TypeError(f"name must be a str (one of {', '.join(RESOURCES)}) or a Resource, got {type(name).__name__}")
    if name in RESOURCES:
        return RESOURCES[name]
    if "_Weights." in name:
        from torchvision.models import get_weight

        try:
            return weights_resource(get_weight(name))
        except (KeyError, ValueError, AttributeError):
            pass
    raise ValueError(f"name must be one of {', '.join(RESOURCES)} or torchvision weights such as "
                     f"'ResNet50_Weights.IMAGENET1K_V1', got {name!r}")


def with_mirror(item: str | Resource, mirror: str) -> Resource:
    """The resource with every file fetched from ``<mirror>/<file name>`` only (a local server, a copy on an
    institute's web server); checksums unchanged."""
    item = resource(item)
    if not isinstance(mirror, str) or not mirror:
        raise TypeError(f"mirror must be a URL str such as 'http://127.0.0.1:8000/', got {mirror!r}")
    files = tuple(dataclasses.replace(f, urls=(f"{mirror.rstrip('/')}/{f.filename}",)) for f in item.files)
    return dataclasses.replace(item, files=files)


def install_path(item: str | Resource, root: str | os.PathLike | None = None) -> Path:
    """Where ``item`` lives once downloaded: the dataset's folder or the weights file under ``data_root(root)``."""
    item = resource(item)
    folder = data_root(root) / item.folder
    return folder / item.files[0].filename if item.kind == "weights" else folder
