"""segedu.data.voc_mini: the sample is found in a checkout and regenerated, identical, without one."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segedu.data import voc_mini
from segedu.data.voc import VOCSegmentation
from segedu.data.voc_mini import SAMPLE_NAME, default_cache_dir, repository_copy, shapes_voc_mini

SHIPPED = Path(__file__).resolve().parents[1] / "data" / SAMPLE_NAME


def _files(root: Path) -> list[Path]:
    return sorted(f.relative_to(root) for f in root.rglob("*") if f.is_file())


def test_a_checkout_uses_the_shipped_folder(tmp_path):
    assert repository_copy() == SHIPPED
    assert shapes_voc_mini(tmp_path) == SHIPPED
    assert not any(tmp_path.iterdir()), "nothing is generated when the repository has the sample"


def test_the_generated_copy_equals_the_shipped_one(tmp_path):
    folder = shapes_voc_mini(tmp_path, use_repository=False)
    assert folder.parent == tmp_path and folder.name.startswith(f"{SAMPLE_NAME}-")
    assert [p.name for p in tmp_path.iterdir()] == [folder.name], "no temporary folder is left behind"
    assert _files(folder) == _files(SHIPPED)
    differing = []
    for name in _files(SHIPPED):
        ours, theirs = folder / name, SHIPPED / name
        if ours.read_bytes() == theirs.read_bytes():
            continue
        differing.append(name)
        # Another Pillow build may encode differently: then the content must still agree.
        assert name.suffix in (".png", ".jpg"), f"{name} differs from the shipped file"
        with Image.open(ours) as a, Image.open(theirs) as b:
            assert a.mode == b.mode and a.size == b.size, name
            if name.suffix == ".png":  # the label indices and the palette, exactly
                assert a.getpalette() == b.getpalette(), name
                assert np.array_equal(np.asarray(a), np.asarray(b)), name
            else:  # same pixels, same encoder settings: equal up to libjpeg differences
                diff = np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max()
                assert diff <= 2, f"{name}: pixels differ by {diff}"
    assert len(differing) < len(_files(SHIPPED)), "at least the split and class lists are identical"
    ours, theirs = VOCSegmentation(folder, "val"), VOCSegmentation(SHIPPED, "val")
    assert ours.ids == theirs.ids and ours.classes == theirs.classes


def test_the_cached_copy_is_reused(tmp_path, monkeypatch):
    first = shapes_voc_mini(tmp_path, use_repository=False)
    marker = first / "marker"
    marker.write_text("kept")

    def fail(*args, **kwargs):
        raise AssertionError("the sample was generated again")

    monkeypatch.setattr("segedu.data.voc.make_shapes_voc_mini", fail)
    assert shapes_voc_mini(tmp_path, use_repository=False) == first
    assert marker.read_text() == "kept"


def test_without_the_repository_the_default_is_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(voc_mini, "repository_copy", lambda: None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "segedu"
    folder = shapes_voc_mini()
    assert folder.parent == tmp_path / "xdg" / "segedu"
    assert len(VOCSegmentation(folder, "train")) == 24


def test_arguments_follow_the_error_rule(tmp_path):
    with pytest.raises(TypeError, match="use_repository"):
        shapes_voc_mini(tmp_path, use_repository=1)
    with pytest.raises(TypeError, match="cache_dir"):
        shapes_voc_mini(3)
