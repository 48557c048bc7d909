"""Lessons take their real-data path when the files are in the data folder, and say how to get them when not.

Each lesson marks the cells of that path with ``metadata.segedu.real_data``. The test runs a lesson's set-up
cells, then a cell that shrinks the profile (the test checks which path is taken, not the numbers), then its
real-data cells, in a kernel whose ``SEGEDU_DATA`` is a temporary data folder: empty, and then holding files
placed as a user would place them by hand - a VOC-layout dataset written by the course's own writer and weights
files with random values under the real file names. The cells print ``real-data path: taken`` or ``... not
taken``. No network is used: nothing is downloaded, the files are just there.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import torch
import torchvision

from segedu.course.grading import execute_notebook
from segedu.data.download import available
from segedu.data.shapes import ShapesDataset
from segedu.data.voc import write_voc

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons").glob("*.ipynb"))
SHRINK = "P = P.replace(ablation_steps=2, val_images=2, batch_size=2, crf_size=48, crf_iterations=2)"


def _real_data_lessons() -> list[Path]:
    return [p for p in LESSONS if any(c.metadata.get("segedu", {}).get("real_data")
                                      for c in nbformat.read(p, 4).cells)]


def _run_real_data_cells(path: Path) -> str:
    """Run the set-up cells, SHRINK and the real-data cells of a lesson; return their text output."""
    nb = nbformat.read(path, 4)
    setup = [c for c in nb.cells if c.metadata.get("segedu", {}).get("role") == "setup"]
    real = [c for c in nb.cells if c.metadata.get("segedu", {}).get("real_data")]
    nb.cells = setup + [nbformat.v4.new_code_cell(SHRINK)] + real
    execute_notebook(nb, cwd=path.parent, timeout=900)
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                raise AssertionError(f"{path.name}: {out['ename']}: {out['evalue']}\n" + "\n".join(out["traceback"][-3:]))
            text.append(out.get("text", ""))
    return "".join(text)


@pytest.fixture(scope="module")
def data_folder(tmp_path_factory):
    """A data folder as a user fills it by hand: VOC 2012 in its layout, ResNet-18 and DeepLab v3 weights."""
    root = tmp_path_factory.mktemp("segedu-data")
    voc = root / "VOCdevkit" / "VOC2012"
    scenes = ShapesDataset(12, size=64, seed=5)
    write_voc(scenes, voc, "train", indices=range(8))
    write_voc(scenes, voc, "val", indices=range(8, 12), prefix="val")
    weights = root / "weights"
    weights.mkdir()
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights / "resnet18-f37072fd.pth")
    deeplab = torchvision.models.segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None, aux_loss=True)
    torch.save(deeplab.state_dict(), weights / "deeplabv3_resnet50_coco-cd0a2569.pth")
    for name in ("voc2012", "resnet18", "deeplabv3_resnet50"):
        assert available(name, root) is not None, f"the fake {name} is not where the download would put it"
    return root


def test_lessons_with_a_real_data_path():
    names = {p.name[:2] for p in _real_data_lessons()}
    assert {"07", "11"} <= names, f"lessons 07 and 11 must mark their real-data cells, found {sorted(names)}"


@pytest.mark.parametrize("path", _real_data_lessons(), ids=lambda p: p.stem)
def test_without_the_files_the_lesson_says_how_to_get_them(path, tmp_path, monkeypatch):
    monkeypatch.setenv("SEGEDU_DATA", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no weights from torch's own cache either
    out = _run_real_data_cells(path)
    assert "real-data path: not taken" in out and "python -m segedu download" in out


@pytest.mark.parametrize("path", _real_data_lessons(), ids=lambda p: p.stem)
def test_with_the_files_the_lesson_takes_the_real_data_path(path, data_folder, monkeypatch):
    monkeypatch.setenv("SEGEDU_DATA", str(data_folder))
    monkeypatch.setenv("TORCH_HOME", str(data_folder / "torch-home"))
    out = _run_real_data_cells(path)
    assert "real-data path: taken" in out and "not taken" not in out
