"""Opt-in downloads of real data and pretrained weights: ``python -m segedu download NAME``.

Nothing in the course downloads by itself: the lessons run on synthetic scenes, and a download happens only
when a user asks for one (this module, the ``download`` command, ``download=True``). What can be fetched is
one table, ``RESOURCES``: PASCAL VOC 2012 (segmentation part), Oxford-IIIT Pet with its trimaps, and
torchvision's pretrained weights. The addresses and checksums are torchvision's own (``VOCSegmentation``,
``OxfordIIITPet`` and the ``*_Weights`` enums; ``tests/test_download.py`` compares them), and the archives are
unpacked with torchvision's ``extract_archive``. What torchvision's ``download_url`` lacks, and a student on a
slow or absent connection needs, is added here:

* a progress bar (``tqdm``) that starts where a partial download stopped;
* resuming: a download goes to ``<file>.part`` and an interrupted one continues with an HTTP ``Range``
  request (a server that ignores it sends the whole file again);
* without a network, an error that says what to download by hand and where to put it (``how_to_get``): a
  file placed there is checked and unpacked by the next ``python -m segedu download NAME``;
* a checksum failure deletes the bad file and says so (md5 for the datasets, as torchvision; the SHA-256
  prefix in the file name for weights, as ``torch.hub``);
* an archive member that would land outside the data folder (an absolute path, ``..``, a link, a device)
  is refused before anything is unpacked;
* unpacking goes to a temporary folder that is renamed into place when complete, so a half-unpacked dataset
  never looks present (``available``).

The table of what can be fetched and the data folder live in ``segedu.data.resources`` (re-exported here).

Tests point the code at a local server: ``with_mirror(resource, url)`` (``--mirror URL``) fetches every file
from ``URL/<file name>``, and ``download`` accepts a ``Resource`` of one's own.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import warnings
from pathlib import Path

from segedu.data.resources import (
    DATA_ENV, RESOURCES, RemoteFile, Resource, data_root, default_root, install_path, resource, weights_resource,
    with_mirror,
)

__all__ = [
    "DATA_ENV", "USER_AGENT", "RemoteFile", "Resource", "RESOURCES", "DownloadError", "NetworkError",
    "ChecksumError", "UnsafeArchiveError", "default_root", "data_root", "resource", "weights_resource",
    "with_mirror", "install_path", "available", "how_to_get", "status", "check_archive", "download",
    "load_weights",
]

USER_AGENT = "segedu (torchvision datasets)"


class DownloadError(OSError):
    """A download failed (HTTP error, interrupted transfer); the message says what to do next."""


class NetworkError(DownloadError):
    """No connection to any of a file's addresses (refused, no DNS, timeout): the message says how to get the
    file by hand."""


class ChecksumError(DownloadError):
    """A file's checksum differs from the expected one; the bad file has been deleted."""


class UnsafeArchiveError(ValueError):
    """An archive holds a member that would be written outside its folder (nothing was unpacked)."""


class _BrokenOff(DownloadError):
    """A transfer that stopped part-way: the partial file is kept for the next call to resume."""


# --------------------------------------------------------------------------- what is here


def _torch_hub_file(filename: str) -> Path | None:
    """A weights file torchvision has already downloaded into torch's hub cache (no need to fetch it twice)."""
    import torch.hub

    path = Path(torch.hub.get_dir()) / "checkpoints" / filename
    return path if path.is_file() else None


def available(name: str | Resource, root: str | os.PathLike | None = None) -> Path | None:
    """The path of ``name`` if it is present and complete, else ``None``; never touches the network.

    A dataset counts when its folder holds every ``required`` path (a download unpacks into a temporary folder
    and renames it into place, so a half-unpacked one never counts); weights when their file is in
    ``<root>/weights`` or in torch's hub cache (``torch.hub.get_dir()/checkpoints``, where torchvision keeps
    them).
    """
    item = resource(name)
    path = install_path(item, root)
    if item.kind == "weights":
        return path if path.is_file() else _torch_hub_file(path.name)
    return path if path.is_dir() and all((path / p).exists() for p in item.required) else None


def how_to_get(name: str | Resource, root: str | os.PathLike | None = None) -> str:
    """How to get ``name``: the command, and how to fetch its files by hand and where to put them."""
    item = resource(name)
    root = data_root(root)
    target = root / ("downloads" if item.kind == "dataset" else item.folder)
    where = f" --root {root}" if root != data_root() else ""
    lines = [f"{item.name}: {item.title} ({item.size} download).",
             f"Get it with:  python -m segedu download {item.name}{where}",
             f"(it goes to {install_path(item, root)}). Without a network on this machine, download by hand:"]
    for f in item.files:
        check = f"md5 {f.md5}" if f.md5 else f"sha256 starting {f.sha256_prefix}" if f.sha256_prefix else "no checksum"
        lines.append(f"  {' or '.join(f.urls)}  ({check})")
    lines.append(f"into {target}/ and run the command above: it checks "
                 + ("and unpacks them." if item.kind == "dataset" else "the file."))
    if item.home:
        lines.append(f"About the data and its terms of use: {item.home}")
    return "\n".join(lines)


def status(root: str | os.PathLike | None = None) -> list[dict]:
    """One dict per entry of ``RESOURCES``: ``{"name", "kind", "size", "title", "path": Path or None}``."""
    return [{"name": r.name, "kind": r.kind, "size": r.size, "title": r.title, "path": available(r, root)}
            for r in RESOURCES.values()]


# --------------------------------------------------------------------------- one file


def _checksum_error(f: RemoteFile, path: Path) -> str | None:
    """Why ``path`` is not the expected file (``None`` when it is). MD5 through torchvision's
    ``calculate_md5``; SHA-256 prefixes as ``torch.hub``'s ``check_hash``."""
    if f.md5:
        from torchvision.datasets.utils import calculate_md5

        got = calculate_md5(path)
        return None if got == f.md5 else f"md5 {got}, expected {f.md5}"
    if f.sha256_prefix:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        got = digest.hexdigest()
        return None if got.startswith(f.sha256_prefix) else f"sha256 {got[:16]}..., expected {f.sha256_prefix}..."
    return None


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": USER_AGENT, **({"Range": f"bytes={offset}-"} if offset else {})}
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _fetch(url: str, part: Path, progress: bool, timeout: float) -> None:
    """Append the rest of ``url`` to ``part`` (a ``Range`` request when ``part`` has bytes already).

    ``NetworkError`` when there is no connection, ``DownloadError`` for an HTTP error or an interrupted
    transfer (``part`` keeps what arrived: the next call resumes)."""
    from tqdm.auto import tqdm

    offset = part.stat().st_size if part.is_file() else 0
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # "range not satisfiable": the part is already whole; checked next
            return
        raise DownloadError(f"{url}: the server answered HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:  # refused, unknown host, timeout
        raise NetworkError(f"{url}: {getattr(error, 'reason', error)}") from None
    with response:
        if offset and getattr(response, "status", None) != 206:  # Range ignored: the whole file comes again
            offset = 0
        elif offset and not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
            raise DownloadError(f"{url}: the server sent another part of the file than the one asked for "
                                f"(bytes {offset}-); delete {part} and run the download again")
        expected = getattr(response, "length", None)  # bytes still to come (None when the server does not say)
        received = 0
        with open(part, "ab" if offset else "wb") as out, tqdm(
                total=None if expected is None else offset + expected, initial=offset, unit="B", unit_scale=True,
                unit_divisor=1024, desc=part.name.removesuffix(".part"), disable=not progress) as bar:
            try:
                while block := response.read(1 << 16):
                    out.write(block)
                    received += len(block)
                    bar.update(len(block))
            except OSError as error:  # connection reset mid-transfer
                raise _BrokenOff(f"{url}: the transfer broke off after {offset + received} bytes ({error}); "
                                    f"the partial file {part} is kept: run the download again to resume") from None
    if expected is not None and received < expected:
        raise _BrokenOff(f"{url}: the transfer broke off after {offset + received} of {offset + expected} "
                            f"bytes; the partial file {part} is kept: run the download again to resume")


def _get_file(item: Resource, f: RemoteFile, folder: Path, progress: bool, timeout: float) -> Path:
    """``folder/<file name>``, checked: kept if already there and right, else fetched (resumed from
    ``<file name>.part``); a file with a wrong checksum is deleted and ``ChecksumError`` raised."""
    final, part = folder / f.filename, folder / f"{f.filename}.part"
    if final.is_file():
        if _checksum_error(f, final) is None:
            return final
        final.unlink()  # a bad or truncated copy (copied by hand?): fetch it afresh
        print(f"{final} did not match its checksum and was deleted; downloading it again", file=sys.stderr)
    folder.mkdir(parents=True, exist_ok=True)
    failures: list[DownloadError] = []
    for url in f.urls:  # the next address only when this one cannot be reached or refuses the file
        try:
            _fetch(url, part, progress, timeout)
            break
        except _BrokenOff:
            raise
        except DownloadError as error:
            failures.append(error)
    else:
        kind = NetworkError if all(isinstance(e, NetworkError) for e in failures) else DownloadError
        reasons = "; ".join(str(e) for e in failures)
        raise kind(f"cannot download {item.name}: {reasons}.\n\n{how_to_get(item, folder.parent)}")
    problem = _checksum_error(f, part)
    if problem is not None:
        part.unlink()
        raise ChecksumError(f"{item.name}: {f.filename} has the wrong checksum ({problem}); the bad file was "
                            f"deleted. Run the download again; if it fails again, the server (or a proxy) sends "
                            f"another file: fetch it by hand from {f.urls[0]}")
    os.replace(part, final)
    return final


# --------------------------------------------------------------------------- archives


_DRIVE = re.compile(r"^[A-Za-z]:")  # a Windows drive letter: absolute on Windows


def check_archive(path: str | os.PathLike) -> int:
    """Refuse an archive that would write outside the folder it is unpacked into; returns its member count.

    Every member must be a plain file or folder with a relative path that stays inside (no absolute path,
    no ``..`` leading out, no drive letter); links (which could point anywhere and be written through) and
    device files are refused. ``UnsafeArchiveError`` names the first bad member; nothing is unpacked.
    """
    count = 0
    with tarfile.open(path) as archive:  # read member by member: a 2 GB tar is never held in memory
        for member in archive:
            name = member.name.replace("\\", "/")
            normal = posixpath.normpath(name)
            if name.startswith("/") or _DRIVE.match(name) or normal == ".." or normal.startswith("../"):
                raise UnsafeArchiveError(f"{path}: member {member.name!r} would be written outside the folder "
                                         "it is unpacked into; refused, nothing was unpacked")
            if not (member.isfile() or member.isdir()):
                what = "a link" if member.issym() or member.islnk() else "not a plain file or folder"
                raise UnsafeArchiveError(f"{path}: member {member.name!r} is {what} (the datasets' archives hold "
                                         "only files and folders): refused, nothing was unpacked")
            count += 1
    return count


def _unpack(item: Resource, archives: list[tuple[RemoteFile, Path]], root: Path) -> Path:
    """Unpack the archives into a temporary folder under ``root`` and rename ``item.folder`` into place."""
    from torchvision.datasets.utils import extract_archive

    destination = root / item.folder
    if destination.exists():
        raise FileExistsError(f"{destination} exists but is incomplete (it lacks one of {', '.join(item.required)}):"
                              f" move it away or delete it, then run the download again")
    for _, archive in archives:
        check_archive(archive)
    staging = Path(tempfile.mkdtemp(prefix=f".unpack-{item.name}-", dir=root))
    try:
        for f, archive in archives:
            print(f"unpacking {archive.name} ...", file=sys.stderr)
            with warnings.catch_warnings():  # Python >= 3.12 warns about tar filters: check_archive has checked
                warnings.simplefilter("ignore", DeprecationWarning)
                extract_archive(str(archive), str(staging / f.extract_to))
        unpacked = staging / item.folder
        missing = [p for p in item.required if not (unpacked / p).exists()]
        if missing:
            raise DownloadError(f"{item.name}: the archives do not hold {item.folder}/{missing[0]}: not the "
                                "expected files?")
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(unpacked, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination


# --------------------------------------------------------------------------- the command


def download(name: str | Resource, root: str | os.PathLike | None = None, *, mirror: str | None = None,
             progress: bool = True, keep_archives: bool = False, timeout: float = 60.0) -> Path:
    """Download (and unpack) ``name`` into ``data_root(root)``; returns its path (``install_path``).

    Does nothing when a dataset is already ``available``; weights already in ``<root>/weights`` are checked
    against their checksum (and fetched again when wrong), weights in torch's hub cache are used. ``mirror``: fetch from ``<mirror>/<file name>`` instead
    (``with_mirror``). Archives go to ``<root>/downloads`` and are deleted once unpacked unless
    ``keep_archives``. ``timeout``: seconds to wait for the server at each step.

    Raises ``NetworkError`` (no connection: the message is ``how_to_get``), ``DownloadError`` (HTTP error, or
    an interrupted transfer: the partial file is kept and the next call resumes it), ``ChecksumError`` (the
    file was deleted), ``UnsafeArchiveError`` (nothing unpacked).
    """
    item = with_mirror(name, mirror) if mirror is not None else resource(name)
    root = data_root(root)
    present = available(item, root)
    if present is not None and (item.kind == "dataset" or present != install_path(item, root)):
        return present
    root.mkdir(parents=True, exist_ok=True)
    if item.kind == "weights":  # a file already there is checked first (a few seconds at most)
        return _get_file(item, item.files[0], root / item.folder, progress, timeout)
    archives = [(f, _get_file(item, f, root / "downloads", progress, timeout)) for f in item.files]
    path = _unpack(item, archives, root)
    if not keep_archives:
        for _, archive in archives:
            archive.unlink(missing_ok=True)
    return path


_fetch_resource = download  # load_weights has an argument called download


def load_weights(name: str | Resource, root: str | os.PathLike | None = None, *, download: bool = False,
                 mirror: str | None = None, progress: bool = True) -> dict:
    """The state dict of weights ``name`` (``torch.load(..., weights_only=True)`` on the CPU).

    Read from ``available(name, root)``; when absent, fetched only with ``download=True``, else
    ``FileNotFoundError`` with ``how_to_get``. The checksum is checked when the file is downloaded.
    """
    import torch

    item = resource(name)
    if item.kind != "weights":
        raise ValueError(f"name must name weights, got the {item.kind} {item.name!r}")
    path = available(item, root)
    if path is None:
        if not download:
            raise FileNotFoundError(f"the weights {item.name} are not in {install_path(item, root).parent}; nothing "
                                    f"is downloaded unless asked (download=True).\n{how_to_get(item, root)}")
        path = _fetch_resource(item, root, mirror=mirror, progress=progress)
    return torch.load(path, map_location="cpu", weights_only=True)
