"""segedu.data.download and `python -m segedu download`, without a network.

A local HTTP server on 127.0.0.1 (started here, with ``Range`` support and a switch that cuts a transfer
short) serves archives in the VOC and Oxford-IIIT Pet layouts written by the course's own writers
(``write_voc``, ``write_pets``) and a small weights file. The download code is pointed at it through public
means only: a ``Resource`` of the test's own, or ``--mirror``. Every other connection is refused by a socket
guard, so no test can reach the real network.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import socket
import tarfile
import threading
from pathlib import Path

import pytest
import torch

from segedu.__main__ import main
from segedu.data import download as dl
from segedu.data.pets import OxfordPets, write_pets
from segedu.data.voc import VOCSegmentation, write_voc

LOCAL = ("127.0.0.1", "localhost", "::1")


@pytest.fixture(autouse=True)
def no_network(monkeypatch, tmp_path):
    """Refuse every connection except to this machine; keep the user's data folder and torch hub out."""
    connect = socket.socket.connect

    def guarded(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOCAL:
            raise AssertionError(f"a test tried to reach {address}: tests must stay offline")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setenv("SEGEDU_DATA", str(tmp_path / "default-data"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


# --------------------------------------------------------------------------- the local server


class Server:
    """Serves ``files`` (name -> bytes) at ``url``; honours ``Range: bytes=N-`` (unless ``ignore_range``);
    ``cut[name] = k`` sends only the first k bytes of the next response for ``name`` (announcing the full
    length), then drops the line."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                server.requests.append((name, self.headers.get("Range")))
                if name not in server.files:
                    self.send_error(404)
                    return
                data, start = server.files[name], 0
                if self.headers.get("Range") and not server.ignore_range:
                    start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if name in server.cut:
                    body = body[: server.cut.pop(name)]
                    self.close_connection = True
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def add(self, name: str, data: bytes) -> str:
        self.files[name] = data
        return f"{self.url}/{name}"


@pytest.fixture
def server():
    s = Server()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def closed_port() -> int:
    with socket.socket() as s:  # bound and closed again: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- archives made by the course's writers


def scenes(n: int, size: int = 24) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` images with one square object each: 0 background, 1 or 2 the object, a 255 band around it."""
    g = torch.Generator().manual_seed(0)
    items = []
    for i in range(n):
        mask = torch.zeros(size, size, dtype=torch.int64)
        mask[3:19, 4 + i % 3 : 20 + i % 3] = 255  # the void band around the object
        mask[4:18, 5 + i % 3 : 19 + i % 3] = 1 + i % 2
        image = torch.rand(3, size, size, generator=g) * 0.2 + 0.6 * (mask == 1 + i % 2)
        items.append((image, mask))
    return items


def tar_bytes(folder: Path, arcnames: dict[str, str], mode: str = "w") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for path, name in arcnames.items():
            tar.add(folder / path, arcname=name)
    return buffer.getvalue()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def voc_archive(tmp_path):
    """The VOC tar's bytes: ``VOCdevkit/VOC2012`` written by ``write_voc`` (4 train, 2 val)."""
    src = tmp_path / "src" / "VOC2012"
    items = scenes(6)
    write_voc(items, src, "train", range(4), prefix="2007")
    write_voc(items, src, "val", range(4, 6), prefix="2007")
    return tar_bytes(src.parent, {"VOC2012": "VOCdevkit/VOC2012"}), src


@pytest.fixture
def pets_archives(tmp_path):
    """The two Pets archives' bytes: ``images/`` and ``annotations/`` written by ``write_pets``."""
    src = tmp_path / "src" / "pets"
    items = scenes(5)
    write_pets(items, src, "trainval", range(3))
    write_pets(items, src, "test", range(3, 5))
    images = tar_bytes(src, {"images": "images"}, "w:gz")
    annotations = tar_bytes(src, {"annotations": "annotations"}, "w:gz")
    return images, annotations, src


def served(item: str, server: Server, payloads: list[bytes]) -> dl.Resource:
    """A copy of ``RESOURCES[item]`` whose files come from ``server`` with the payloads' checksums."""
    entry = dl.RESOURCES[item]
    files = tuple(dataclasses.replace(f, urls=(server.add(f.filename, data),), md5=md5(data))
                  for f, data in zip(entry.files, payloads))
    return dataclasses.replace(entry, files=files)


def weights_resource(server: Server) -> tuple[dl.Resource, dict]:
    """A small weights file named as torch.hub names them (``<name>-<sha256 prefix>.pth``)."""
    state = torch.nn.Conv2d(3, 2, 3).state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    prefix = hashlib.sha256(data).hexdigest()[:8]
    url = server.add(f"tiny-{prefix}.pth", data)
    return dl.Resource("tiny", "weights", "a 3 -> 2 convolution", (dl.RemoteFile((url,), sha256_prefix=prefix),),
                       "weights", size="1 kB"), state


# --------------------------------------------------------------------------- full downloads, read back


def test_voc_download_unpacks_into_the_root_and_reads_back(tmp_path, server, voc_archive):
    data, src = voc_archive
    voc = served("voc2012", server, [data])
    root = tmp_path / "data"
    assert dl.available(voc, root) is None
    path = dl.download(voc, root, progress=False)
    assert path == root / "VOCdevkit" / "VOC2012" == dl.available(voc, root)
    assert not (root / "downloads" / "VOCtrainval_11-May-2012.tar").exists()  # deleted once unpacked
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []  # no staging folder left
    train, val = VOCSegmentation(path, "train"), VOCSegmentation(path, "val")
    assert (len(train), len(val)) == (4, 2)
    for got, written in zip(val[1], VOCSegmentation(src, "val")[1]):  # the files the writer wrote, unchanged
        assert torch.equal(got, written)
    assert torch.equal(val[1][1], scenes(6)[5][1])  # the mask's palette indices, 255 kept
    # a second call finds it present and fetches nothing
    requests = len(server.requests)
    assert dl.download(voc, root, progress=False) == path and len(server.requests) == requests


def test_pets_download_reads_back_with_the_trimap_border_ignored(tmp_path, server, pets_archives):
    images, annotations, src = pets_archives
    pets = served("pets", server, [images, annotations])
    path = dl.download(pets, tmp_path, progress=False, keep_archives=True)
    assert path == tmp_path / "oxford-iiit-pet" and (tmp_path / "downloads" / "images.tar.gz").is_file()
    for root in (tmp_path, path):  # the data root or the dataset folder
        trainval, test = OxfordPets(root, "trainval"), OxfordPets(root, "test")
        assert (len(trainval), len(test)) == (3, 2)
    image, mask = test[0]
    assert torch.equal(image, OxfordPets(src, "test")[0][0])  # the files the writer wrote, unchanged
    expected = scenes(5)[3][1].clone()
    expected[(expected != 0) & (expected != 255)] = 1  # binary: every pet is 1, the border band stays 255
    assert torch.equal(mask, expected) and image.shape == (3, 24, 24)
    species = OxfordPets(tmp_path, "test", classes="species")
    assert torch.equal(species[0][1], scenes(5)[3][1]) and species.classes == ("background", "cat", "dog")


def test_weights_download_and_load(tmp_path, server):
    tiny, state = weights_resource(server)
    with pytest.raises(FileNotFoundError, match="nothing is downloaded unless asked"):
        dl.load_weights(tiny, tmp_path)
    assert server.requests == []  # not even a request without download=True
    loaded = dl.load_weights(tiny, tmp_path, download=True, progress=False)
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)
    assert dl.available(tiny, tmp_path) == tmp_path / "weights" / tiny.files[0].filename


# --------------------------------------------------------------------------- what goes wrong


def test_an_interrupted_download_resumes_with_a_range_request(tmp_path, server):
    tiny, state = weights_resource(server)
    name = tiny.files[0].filename
    size = len(server.files[name])
    server.cut[name] = size // 2
    with pytest.raises(dl.DownloadError, match="broke off after .* run the download again to resume"):
        dl.download(tiny, tmp_path, progress=False)
    part = tmp_path / "weights" / f"{name}.part"
    assert part.stat().st_size == size // 2 and dl.available(tiny, tmp_path) is None
    path = dl.download(tiny, tmp_path, progress=False)
    assert server.requests[-1] == (name, f"bytes={size // 2}-")  # only the rest was asked for
    assert not part.exists() and path.read_bytes() == server.files[name]


def test_a_server_that_ignores_range_sends_the_whole_file_again(tmp_path, server):
    tiny, _ = weights_resource(server)
    part = tmp_path / "weights" / f"{tiny.files[0].filename}.part"
    part.parent.mkdir()
    part.write_bytes(b"x" * 100)  # not even a prefix of the file: only a fresh start can fix it
    server.ignore_range = True
    path = dl.download(tiny, tmp_path, progress=False)
    assert path.read_bytes() == server.files[path.name] and not part.exists()


def test_a_part_that_is_already_whole_is_checked_and_kept(tmp_path, server):
    tiny, _ = weights_resource(server)
    name = tiny.files[0].filename
    part = tmp_path / "weights" / f"{name}.part"
    part.parent.mkdir()
    part.write_bytes(server.files[name])  # e.g. stopped between the last byte and the rename
    assert dl.download(tiny, tmp_path, progress=False).read_bytes() == server.files[name]
    assert server.requests == [(name, f"bytes={len(server.files[name])}-")]  # answered 416


def test_a_bad_partial_file_is_caught_by_the_checksum(tmp_path, server, voc_archive):
    data, _ = voc_archive
    voc = served("voc2012", server, [data])
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    (downloads / "VOCtrainval_11-May-2012.tar.part").write_bytes(b"x" * 100)  # not a prefix of the file
    # the server honours Range: the bad prefix is completed with the rest and the checksum catches it
    with pytest.raises(dl.ChecksumError, match="wrong checksum .* the bad file was deleted"):
        dl.download(voc, tmp_path, progress=False)
    assert not (downloads / "VOCtrainval_11-May-2012.tar.part").exists()
    assert dl.download(voc, tmp_path, progress=False) == tmp_path / "VOCdevkit" / "VOC2012"  # afresh


def test_a_checksum_mismatch_deletes_the_file_and_says_so(tmp_path, server, voc_archive):
    data, _ = voc_archive
    voc = served("voc2012", server, [data])
    server.files["VOCtrainval_11-May-2012.tar"] = data[:1000] + bytes([data[1000] ^ 1]) + data[1001:]  # one bit flipped
    with pytest.raises(dl.ChecksumError) as error:
        dl.download(voc, tmp_path, progress=False)
    message = str(error.value)
    assert f"expected {md5(data)}" in message and "the bad file was deleted" in message
    assert list((tmp_path / "downloads").iterdir()) == [] and dl.available(voc, tmp_path) is None


def test_a_bad_file_already_in_downloads_is_replaced(tmp_path, server, capsys):
    tiny, _ = weights_resource(server)
    bad = tmp_path / "weights" / tiny.files[0].filename
    bad.parent.mkdir()
    bad.write_bytes(b"not the weights")
    path = dl.download(tiny, tmp_path, progress=False)
    assert path.read_bytes() == server.files[path.name] and "did not match its checksum" in capsys.readouterr().err


def test_no_network_says_what_to_download_by_hand_and_where(tmp_path):
    port = closed_port()
    voc = dl.with_mirror("voc2012", f"http://127.0.0.1:{port}/")
    with pytest.raises(dl.NetworkError) as error:
        dl.download(voc, tmp_path, progress=False)
    message = str(error.value)
    assert "Connection refused" in message
    assert f"http://127.0.0.1:{port}/VOCtrainval_11-May-2012.tar" in message and "6cd6e144f989b92b3379" in message
    assert f"into {tmp_path / 'downloads'}/" in message and "python -m segedu download voc2012" in message
    assert not (tmp_path / "VOCdevkit").exists()


def test_a_file_fetched_by_hand_is_checked_and_unpacked(tmp_path, voc_archive):
    data, _ = voc_archive
    entry = dl.with_mirror("voc2012", f"http://127.0.0.1:{closed_port()}/")
    voc = dataclasses.replace(entry, files=(dataclasses.replace(entry.files[0], md5=md5(data)),))
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "VOCtrainval_11-May-2012.tar").write_bytes(data)  # as how_to_get says
    assert dl.download(voc, tmp_path, progress=False) == tmp_path / "VOCdevkit" / "VOC2012"


def test_the_next_address_is_tried_when_one_fails(tmp_path, server):
    tiny, _ = weights_resource(server)
    dead = f"http://127.0.0.1:{closed_port()}/x.pth"
    missing = f"{server.url}/no-such-file.pth"
    f = tiny.files[0]
    moved = dataclasses.replace(tiny, files=(dataclasses.replace(f, urls=(dead, missing, *f.urls)),))
    assert dl.download(moved, tmp_path, progress=False).is_file()
    with pytest.raises(dl.DownloadError, match="HTTP 404") as error:
        dl.download(dataclasses.replace(tiny, files=(dataclasses.replace(f, urls=(missing,)),)), tmp_path / "b")
    assert not isinstance(error.value, dl.NetworkError)


@pytest.mark.parametrize("member", ["../escaped.txt", "/tmp/absolute.txt", "VOCdevkit/../../escaped.txt",
                                    "C:/windows.txt", "link"])
def test_an_archive_that_escapes_the_root_is_refused(tmp_path, server, member):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("VOCdevkit/VOC2012/JPEGImages/ok.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"ok"))
        info = tarfile.TarInfo(member)
        if member == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        else:
            info.size = 4
        tar.addfile(info, io.BytesIO(b"evil") if member != "link" else None)
    voc = served("voc2012", server, [buffer.getvalue()])
    root = tmp_path / "data" / "root"
    with pytest.raises(dl.UnsafeArchiveError, match="refused, nothing was unpacked"):
        dl.download(voc, root, progress=False)
    assert not (tmp_path / "data" / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    assert not (root / "VOCdevkit").exists() and not (root / "link").exists()
    assert [p.name for p in root.iterdir()] == ["downloads"]  # no staging folder left behind


def test_an_archive_without_the_expected_folder_is_refused(tmp_path, server, pets_archives):
    images, _, _ = pets_archives
    pets = served("pets", server, [images, images])  # no annotations/
    with pytest.raises(dl.DownloadError, match="do not hold oxford-iiit-pet/annotations"):
        dl.download(pets, tmp_path, progress=False)
    assert dl.available(pets, tmp_path) is None and not (tmp_path / "oxford-iiit-pet").exists()


# --------------------------------------------------------------------------- the table and the folder


def test_the_table_holds_torchvisions_addresses_and_checksums():
    from torchvision.datasets import OxfordIIITPet
    from torchvision.datasets.voc import DATASET_YEAR_DICT
    from torchvision.models import get_weight

    voc = dl.RESOURCES["voc2012"].files[0]
    assert (voc.urls[0], voc.md5, voc.filename) == (DATASET_YEAR_DICT["2012"]["url"], DATASET_YEAR_DICT["2012"]["md5"],
                                                    DATASET_YEAR_DICT["2012"]["filename"])
    pets = [(f.urls[0], f.md5) for f in dl.RESOURCES["pets"].files]
    assert pets == [tuple(r) for r in OxfordIIITPet._RESOURCES]  # noqa: SLF001 (torchvision's table)
    for item in dl.RESOURCES.values():
        if item.kind == "weights":
            weights = get_weight(item.torchvision)
            assert item.files[0].urls == (weights.url,) and weights.url.endswith(f"-{item.files[0].sha256_prefix}.pth")
            assert dl.weights_resource(weights) is item
    assert dl.resource("ResNet50_Weights.IMAGENET1K_V1").files[0].sha256_prefix == "0676ba61"


def test_the_data_folder_and_names(tmp_path, monkeypatch):
    assert dl.data_root() == tmp_path / "default-data"  # $SEGEDU_DATA (set by the fixture)
    assert dl.data_root(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("SEGEDU_DATA")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert dl.data_root() == dl.default_root() == tmp_path / "xdg" / "segedu"
    with pytest.raises(ValueError, match="name must be one of voc2012, pets, .*got 'imagenet'"):
        dl.resource("imagenet")
    with pytest.raises(TypeError, match="root must be a folder path"):
        dl.data_root(3)
    mirrored = dl.with_mirror("pets", "http://127.0.0.1:8000/mirror/")
    assert [f.urls for f in mirrored.files] == [("http://127.0.0.1:8000/mirror/images.tar.gz",),
                                                ("http://127.0.0.1:8000/mirror/annotations.tar.gz",)]
    assert [f.md5 for f in mirrored.files] == [f.md5 for f in dl.RESOURCES["pets"].files]


def test_available_finds_weights_in_torch_hub_cache(tmp_path):
    assert dl.available("resnet18", tmp_path) is None
    cached = tmp_path / "torch-home" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")
    assert dl.available("resnet18", tmp_path) == cached


def test_how_to_get_names_the_command_the_files_and_the_folder(tmp_path):
    text = dl.how_to_get("pets", tmp_path)
    assert f"python -m segedu download pets --root {tmp_path}" in text
    assert "images.tar.gz" in text and "95a8c909bbe2e81eed6a22bccdf3f68f" in text
    assert str(tmp_path / "downloads") in text and "https://www.robots.ox.ac.uk/~vgg/data/pets/" in text
    assert "sha256 starting cd0a2569" in dl.how_to_get("deeplabv3_resnet50")


# --------------------------------------------------------------------------- the command


def test_the_command_lists_the_folder_and_what_is_present(tmp_path, server, capsys):
    assert main(["download", "--list", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"data folder: {tmp_path} (--root" in out and "voc2012" in out and "not downloaded" in out
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "resnet18-f37072fd.pth").write_bytes(b"")
    assert main(["download", "--list"]) == 0  # $SEGEDU_DATA
    assert "$SEGEDU_DATA" in capsys.readouterr().out
    assert main(["download", "--list", "--root", str(tmp_path)]) == 0
    assert f"present: {tmp_path / 'weights' / 'resnet18-f37072fd.pth'}" in capsys.readouterr().out
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    for required in dl.RESOURCES["voc2012"].required:
        (voc / required).parent.mkdir(parents=True, exist_ok=True)
        (voc / required).mkdir() if "." not in required else (voc / required).write_text("")
    assert main(["download", "voc2012", "--root", str(tmp_path)]) == 0
    assert f"already present in {voc}" in capsys.readouterr().out and not server.requests


def test_the_command_fails_with_a_clear_message(tmp_path, server, capsys):
    assert main(["download", "imagenet", "--root", str(tmp_path)]) == 2
    assert "python -m segedu download: error: name must be one of" in capsys.readouterr().err
    assert main(["download", "voc2012", "--root", str(tmp_path), "--mirror", f"http://127.0.0.1:{closed_port()}"]) == 1
    err = capsys.readouterr().err
    assert "Connection refused" in err and "download by hand" in err
    server.add("resnet18-f37072fd.pth", b"not resnet18")  # the mirror serves a wrong file
    assert main(["download", "resnet18", "--root", str(tmp_path), "--mirror", server.url, "--quiet"]) == 1
    assert "wrong checksum" in capsys.readouterr().err and not list((tmp_path / "weights").iterdir())
