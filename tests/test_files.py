"""segedu.files.atomic_save: exclusive temporary file, never through a planted link, nothing left on failure."""

import os

import pytest
import torch

from segedu.files import atomic_save, sha256_file


def test_atomic_save_round_trip_and_no_temporary_left(tmp_path):
    path = atomic_save({"w": torch.arange(3)}, tmp_path / "m.pt")
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
    assert (path.stat().st_mode & 0o777) == 0o644


def test_a_planted_link_at_the_old_temporary_name_is_never_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "m.pt.tmp").symlink_to(victim)  # the name the old code wrote through
    atomic_save({"w": torch.zeros(1)}, tmp_path / "m.pt")
    assert victim.read_text() == "precious"
    assert (tmp_path / "m.pt.tmp").is_symlink()  # left alone, not replaced


def test_a_failed_save_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "m.pt"
    path.write_bytes(b"old checkpoint")

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_save({"w": Unpicklable()}, path)
    assert path.read_bytes() == b"old checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_a_missing_folder_is_an_error_and_writes_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_save({}, tmp_path / "no" / "m.pt")
    assert list(tmp_path.iterdir()) == []


def test_sha256_file(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha256_file(path, chunk=1) == sha256_file(path)
    assert os.path.getsize(path) == 3
