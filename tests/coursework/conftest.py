"""The course as grading sees it: a copy of the lessons with their cell roles marked (``segedu.course.roles``)
and the manifest built from it, as ``make manifest`` builds the package's copy. Built here so that these tests
hold whether or not the marks are already written into ``lessons/``."""

import shutil
from pathlib import Path

import pytest

from segedu.course.manifest import build_manifest, manifest_text
from segedu.course.roles import mark_lessons

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def marked_course(tmp_path_factory) -> tuple[Path, Path]:
    """``(lessons folder, manifest.json)``: the instructor lessons (solutions in), marked."""
    lessons = tmp_path_factory.mktemp("marked") / "lessons"
    shutil.copytree(ROOT / "lessons", lessons)
    mark_lessons(lessons)
    manifest = lessons.parent / "manifest.json"
    manifest.write_text(manifest_text(build_manifest(lessons)))
    return lessons, manifest
