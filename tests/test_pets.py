"""segedu.data.pets: the Oxford-IIIT Pet reader and writer, and the dataset in transforms, fit, evaluate and
`python -m segedu train --data pets:PATH`. The folders are written here by ``write_pets``; nothing is
downloaded."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
from PIL import Image

from segedu import zoo
from segedu.__main__ import main
from segedu.data.pets import (
    PETS_CLASSES, OxfordPets, pets_folder, scan_pets, trimap_to_mask, write_pets,
)
from segedu.data.transforms import eval_transforms, train_transforms
from segedu.train import evaluate, fit


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    connect = socket.socket.connect

    def guarded(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "localhost", "::1"):
            raise AssertionError(f"a test tried to reach {address}: tests must stay offline")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


def pets(n: int, size: int = 40, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` scenes of one bright disk (the pet, species 1 or 2) on a dark background, a 255 band around it."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    items = []
    for i in range(n):
        cy, cx, r = (torch.randint(12, size - 12, (2,), generator=g).tolist() + [8 + i % 4])
        distance = ((yy - cy) ** 2 + (xx - cx) ** 2).float().sqrt()
        mask = torch.zeros(size, size, dtype=torch.int64)
        mask[distance < r + 1.5] = 255
        mask[distance < r] = 1 + i % 2
        image = 0.2 + 0.1 * torch.rand(3, size, size, generator=g)
        image[:, mask == 1 + i % 2] += 0.6
        items.append((image.clamp(0, 1), mask))
    return items


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("pets") / "oxford-iiit-pet"
    items = pets(16)
    write_pets(items, root, "trainval", range(12))
    write_pets(items, root, "test", range(12, 16))
    return root


def test_the_written_folder_has_the_real_layout(folder):
    assert (folder / "images" / "pet_0.jpg").is_file()
    trimap = np.array(Image.open(folder / "annotations" / "trimaps" / "pet_0.png"))
    assert set(np.unique(trimap)) == {1, 2, 3}  # pet, background, border
    lines = (folder / "annotations" / "test.txt").read_text().splitlines()
    assert lines == ["pet_12 1 1 1", "pet_13 2 2 1", "pet_14 1 1 1", "pet_15 2 2 1"]  # id class species breed


def test_items_follow_the_course_convention(folder):
    data = OxfordPets(folder.parent, "trainval")  # the data root works as well as the dataset folder
    assert len(data) == 12 and data.classes == PETS_CLASSES and data.root == folder
    image, mask = data[1]
    assert image.dtype == torch.float32 and image.shape == (3, 40, 40) and 0 <= image.min() and image.max() <= 1
    assert mask.dtype == torch.int64 and set(mask.unique().tolist()) == {0, 1, 255}
    expected = pets(16)[1][1]
    assert torch.equal(mask, torch.where((expected != 0) & (expected != 255), 1, expected))
    species = OxfordPets(folder, "trainval", classes="species")
    assert species.species[:2] == [1, 2] and torch.equal(species[1][1], expected)
    assert "items=12" in repr(data)


def test_the_trimap_mapping():
    trimap = torch.tensor([[1, 2], [3, 2]])
    assert trimap_to_mask(trimap).tolist() == [[1, 0], [255, 0]]
    assert trimap_to_mask(trimap, pet_label=2).tolist() == [[2, 0], [255, 0]]
    with pytest.raises(ValueError, match=r"only 1 \(pet\), 2 \(background\) and 3 \(border\), got values \[0, 255\]"):
        trimap_to_mask(torch.tensor([[0, 255]]))
    with pytest.raises(TypeError, match="trimap must be an integer tensor"):
        trimap_to_mask(torch.zeros(2, 2))


def test_missing_and_bad_files_are_named(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m segedu download pets"):
        OxfordPets(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"split file not found: .*val.txt \(available: \['test', 'trainval'\]\)"):
        OxfordPets(folder, "val")
    with pytest.raises(ValueError, match="classes must be one of"):
        OxfordPets(folder, classes="breeds")
    bad = tmp_path / "pets"
    write_pets(pets(2), bad, "trainval")
    Image.new("L", (7, 5), 2).save(bad / "annotations" / "trimaps" / "pet_1.png")
    with pytest.raises(ValueError, match=r"pet_1.png has size .*\(5, 7\) but its image pet_1.jpg has size \(40, 40\)"):
        scan_pets(bad)
    (bad / "images" / "pet_1.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="pet_1.jpg cannot be read"):
        OxfordPets(bad)[1]
    with pytest.raises(IndexError):
        OxfordPets(bad)[2]


def test_scan_counts_the_pixels(folder):
    report = scan_pets(folder, "test")
    assert report["images"] == 4 and report["num_classes"] == 2
    masks = [m for _, m in pets(16)[12:]]
    assert report["void"] == sum(int((m == 255).sum()) for m in masks)
    assert report["pixels"][1] == sum(int(((m != 0) & (m != 255)).sum()) for m in masks)


def test_the_writer_refuses_what_a_trimap_cannot_hold(tmp_path):
    image = torch.rand(3, 8, 8)
    two_pets = torch.zeros(8, 8, dtype=torch.int64)
    two_pets[0, 0], two_pets[1, 1] = 1, 2
    with pytest.raises(ValueError, match=r"dataset\[0\]: mask must hold .* one pet label.*got labels \[1, 2\]"):
        write_pets([(image, two_pets)], tmp_path)
    with pytest.raises(ValueError, match=r"mask must have the image's size \[8, 8\]"):
        write_pets([(image, torch.zeros(4, 4, dtype=torch.int64))], tmp_path)
    with pytest.raises(ValueError, match="must lie in"):
        write_pets([(image * 3, two_pets * 0)], tmp_path)
    # writing the same items twice lists each id once
    write_pets([(image, two_pets * 0)], tmp_path)
    write_pets([(image, two_pets * 0)], tmp_path)
    assert len(OxfordPets(tmp_path)) == 1


def test_transforms_fit_and_evaluate(folder):
    train = OxfordPets(folder, "trainval", train_transforms(32))
    val = OxfordPets(folder, "test", eval_transforms(32))
    image, mask = train[0]
    assert image.shape == (3, 32, 32) and mask.shape == (32, 32)
    model = zoo.build_model("unet", 2, width=4, depth=2)
    history = fit(model, train, torch.nn.CrossEntropyLoss(ignore_index=255), 3, val_data=val, batch_size=4,
                  lr=3e-3, progress=False, device="cpu")
    assert len(history.loss) == 3 and history.val[-1]["images"] == 4
    metrics = evaluate(model, val, num_classes=2, batch_size=2)
    assert metrics["images"] == 4 and 0 <= metrics["miou"] <= 1


def test_the_train_command_reads_pets(folder, tmp_path, capsys):
    out = tmp_path / "unet.pt"
    rc = main(["train", "--model", "unet", "--data", f"pets:{folder.parent}", "--steps", "2", "--out", str(out),
               "--image-size", "32", "--batch-size", "4", "--width", "4", "--device", "cpu", "--quiet",
               "--schedule", "constant"])
    assert rc == 0, capsys.readouterr().err
    assert "unet: 2 steps on 1 process(es)" in capsys.readouterr().out
    model, extra = zoo.load_model(out)
    assert extra["classes"] == list(PETS_CLASSES) and extra["val"]["images"] == 4
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 2, 32, 32)


def test_the_train_command_names_a_missing_or_bad_pets_folder(folder, tmp_path, capsys):
    assert main(["train", "--model", "unet", "--data", f"pets:{tmp_path}", "--steps", "1",
                 "--out", str(tmp_path / "x.pt")]) == 2
    assert "--data pets:" in capsys.readouterr().err
    bad = tmp_path / "bad"
    write_pets(pets(2), bad, "trainval")
    (bad / "images" / "pet_0.jpg").write_bytes(b"broken")
    assert main(["train", "--model", "unet", "--data", f"pets:{bad}", "--steps", "1", "--out",
                 str(tmp_path / "y.pt"), "--quiet"]) == 2
    assert "pet_0.jpg cannot be read" in capsys.readouterr().err and not (tmp_path / "y.pt").exists()


def test_pets_folder_accepts_both_levels(folder):
    assert pets_folder(folder) == pets_folder(folder.parent) == folder
    with pytest.raises(TypeError, match="root must be a path"):
        pets_folder(3)
