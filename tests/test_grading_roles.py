"""The lessons' cell roles (``segedu.course.roles``): every lesson has its set-up decided, the set-up cells are
imports and small definitions (never training), marking is idempotent and changes only cell metadata, and the
manifest built from the marked lessons lists the set-up cells."""

import re
import shutil
from pathlib import Path

import nbformat
import pytest

from segedu.course.manifest import build_manifest
from segedu.course.roles import SETUP_CELLS, mark_lessons, mark_roles

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons").glob("*.ipynb"))


def test_every_lesson_has_its_set_up_decided_and_the_cells_exist():
    assert sorted(SETUP_CELLS) == [p.name for p in LESSONS]
    for path in LESSONS:
        ids = {c.get("id"): c for c in nbformat.read(path, as_version=4).cells}
        for cell_id in SETUP_CELLS[path.name]:
            assert cell_id in ids, f"{path.name}: no cell {cell_id}: update SETUP_CELLS"
            source = ids[cell_id].source
            assert ids[cell_id].cell_type == "code"
            assert not re.search(r"\bfit\(|\.backward\(|optimizer", source), f"{path.name}: a set-up cell trains"


def test_marking_is_idempotent_and_touches_only_metadata(tmp_path):
    lessons = tmp_path / "lessons"
    shutil.copytree(ROOT / "lessons", lessons)
    mark_lessons(lessons)
    first = {p.name: p.read_text() for p in lessons.glob("*.ipynb")}
    assert mark_lessons(lessons) == []  # nothing left to change
    for path in LESSONS:
        before, after = nbformat.read(path, as_version=4), nbformat.read(lessons / path.name, as_version=4)
        assert [c.source for c in before.cells] == [c.source for c in after.cells]
        roles = [c.metadata.get("segedu", {}).get("role") for c in after.cells]
        assert roles.count("setup") == len(SETUP_CELLS[path.name]) and roles.count("check") == roles.count("exercise")
    assert {p.name: p.read_text() for p in lessons.glob("*.ipynb")} == first
    manifest = build_manifest(lessons)
    assert {lesson["notebook"]: tuple(lesson["setup_cells"]) for lesson in manifest["lessons"]} == SETUP_CELLS


def test_an_unknown_set_up_cell_is_refused():
    nb = nbformat.read(LESSONS[0], as_version=4)
    with pytest.raises(ValueError, match="no cell with id nope"):
        mark_roles(nb, ["nope"], LESSONS[0].name)
