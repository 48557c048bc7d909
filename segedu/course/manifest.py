"""The course manifest: which exercises each lesson has, where they are, and what their check cells say.

``python -m segedu release`` writes it beside the student notebooks (``<out>/manifest.json``), and the package
ships the grader's copy (``segedu/course/manifest.json``, rebuilt by ``make manifest``;
``tests/test_manifest.py`` holds it equal to ``build_manifest("lessons")``). Grading takes the list of exercises
and the check cells from the grader's manifest, never from the notebook it grades: a check cell whose source
hashes differently was changed, one that is missing was deleted.

Format (JSON)::

    {"format": "segedu-manifest-v1",
     "lessons": [{"notebook": "00_segmentation_task.ipynb",
                  "setup_cells": ["<cell id>", ...],
                  "exercises": [{"exercise": "check_iou_from_confusion", "function": "iou_from_confusion",
                                 "points": 1, "exercise_cell": "<cell id>", "check_cell": "<cell id>",
                                 "check_sha256": "<check_cell_sha256 of the check cell's source>"}]}]}

Cell roles come from the instructor lessons' cell metadata, ``"segedu": {"role": "setup" | "exercise" |
"check", "exercise": "check_x", "points": n}``. Without marks an exercise is found from the convention
(CONTRIBUTING.md): its check cell calls ``checks.check_x(fn)``, its exercise cell is the nearest code cell
before that holds a ``### BEGIN SOLUTION`` block. Set-up cells come from the marks only. Cells that the
release drops (instructor tags) are not in the manifest.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path

from segedu.course.release import CHECK_CALL, INSTRUCTOR_TAGS, ReleaseError, cell_tags, holds_solution, read_lessons

__all__ = [
    "FORMAT",
    "ROLES",
    "SHIPPED",
    "check_cell_sha256",
    "lesson_manifest",
    "manifest_of",
    "build_manifest",
    "manifest_text",
    "read_manifest",
]

FORMAT = "segedu-manifest-v1"
ROLES = ("setup", "exercise", "check")
SHIPPED = Path(__file__).with_name("manifest.json")  # the grader's copy, package data
# The check call and the name of the function it is given: `checks.check_x(fn)` or `checks.check_x(fn, ...)`.
CHECK_ARGUMENT = re.compile(r"checks\.(check_\w+)\s*\(\s*([A-Za-z_]\w*)\s*[,)]")


def check_cell_sha256(source: str | list[str]) -> str:
    """SHA-256 (hex) of a check cell's source: lines right-stripped, joined by ``\\n``, the whole stripped.

    Spaces at the end of a line and white space around the whole source (what editors and JupyterLab change
    on save) do not count; anything else does. ``source`` may be a string or the list of lines a ``.ipynb`` file stores.
    """
    text = "".join(source) if isinstance(source, list) else source
    normal = "\n".join(line.rstrip() for line in text.splitlines()).strip()
    return hashlib.sha256(normal.encode("utf-8")).hexdigest()


def _mark(cell, notebook: str, index: int) -> dict:
    """The cell's ``segedu`` metadata, its role checked."""
    mark = cell.get("metadata", {}).get("segedu", {})
    if not isinstance(mark, Mapping):
        raise ReleaseError(f"cell metadata 'segedu' must be an object, got {mark!r}", notebook, index, cell.get("id"))
    role = mark.get("role")
    if role is not None and role not in ROLES:
        raise ReleaseError(f"segedu.role must be one of {', '.join(ROLES)}, got {role!r}", notebook, index,
                           cell.get("id"))
    return mark


def _cell_id(cell, notebook: str, index: int) -> str:
    cell_id = cell.get("id")
    if not cell_id:
        raise ReleaseError("the cell has no id (nbformat 4.5): open and save the notebook in JupyterLab 3 or later",
                           notebook, index)
    return cell_id


def _points(check, exercise, notebook: str, index: int) -> int:
    """``segedu.points`` of the check cell, else of the exercise cell, else 1."""
    from segedu import validate

    for cell in (check, exercise):
        mark = cell.get("metadata", {}).get("segedu", {})
        if "points" in mark:
            try:
                return validate.integer(mark["points"], "segedu.points", minimum=0)
            except (TypeError, ValueError) as error:
                raise ReleaseError(str(error), notebook, index, check.get("id")) from None
    return 1


def lesson_manifest(nb, notebook: str) -> dict:
    """The manifest entry of one instructor notebook (an ``nbformat`` node) named ``notebook``.

    Raises ``ReleaseError`` naming the notebook and the cell for a check call whose argument is not a plain
    name, a check without an exercise cell, a check called twice in the lesson or a cell without an id.
    """
    kept = [(index, cell) for index, cell in enumerate(nb.cells) if not INSTRUCTOR_TAGS & cell_tags(cell)]
    marks = {index: _mark(cell, notebook, index) for index, cell in kept}
    setup = [_cell_id(cell, notebook, index) for index, cell in kept if marks[index].get("role") == "setup"]
    exercises = []
    for position, (index, cell) in enumerate(kept):
        if cell.cell_type != "code":
            continue
        calls = CHECK_CALL.findall(cell.source)
        if marks[index].get("role") == "check" and marks[index].get("exercise") not in calls:
            raise ReleaseError(f"the cell is marked as the check of {marks[index].get('exercise')!r} but does not "
                               f"call checks.{marks[index].get('exercise')}(...)", notebook, index, cell.get("id"))
        arguments = dict(CHECK_ARGUMENT.findall(cell.source))
        for name in calls:
            if name not in arguments:
                raise ReleaseError(f"checks.{name}(...) must be given the student's function by name, "
                                   f"as in checks.{name}(my_function)", notebook, index, cell.get("id"))
            marked = [(i, c) for i, c in kept if marks[i].get("role") == "exercise" and marks[i].get("exercise") == name]
            if len(marked) > 1:
                raise ReleaseError(f"{len(marked)} cells are marked as the exercise of {name}", notebook,
                                   marked[1][0], marked[1][1].get("id"))
            if not marked:  # the convention: the nearest code cell before the check that holds a solution
                marked = [(i, c) for i, c in kept[:position] if c.cell_type == "code" and holds_solution(c.source)][-1:]
            if not marked:
                raise ReleaseError(f"checks.{name} has no exercise cell: no code cell before it holds a "
                                   f"solution block or is marked as its exercise", notebook, index, cell.get("id"))
            if any(exercise["exercise"] == name for exercise in exercises):
                raise ReleaseError(f"checks.{name} is called twice in this lesson: each check belongs to one "
                                   f"exercise", notebook, index, cell.get("id"))
            ex_index, ex_cell = marked[0]
            exercises.append({
                "exercise": name,
                "function": arguments[name],
                "points": _points(cell, ex_cell, notebook, index),
                "exercise_cell": _cell_id(ex_cell, notebook, ex_index),
                "check_cell": _cell_id(cell, notebook, index),
                "check_sha256": check_cell_sha256(cell.source),
            })
    return {"notebook": notebook, "setup_cells": setup, "exercises": exercises}


def manifest_of(notebooks: Mapping) -> dict:
    """The manifest of ``{file name: instructor notebook}``, lessons in name order."""
    return {"format": FORMAT, "lessons": [lesson_manifest(notebooks[name], name) for name in sorted(notebooks)]}


def build_manifest(lessons_dir: str | Path) -> dict:
    """The manifest of the instructor lessons in ``lessons_dir`` (every ``*.ipynb``), as a dict."""
    return manifest_of(read_lessons(lessons_dir))


def manifest_text(manifest: Mapping) -> str:
    """The manifest as the JSON text the release writes (stable: one diff line per changed value)."""
    return json.dumps(manifest, indent=1, ensure_ascii=False) + "\n"


def read_manifest(path: str | Path | None = None) -> dict:
    """A manifest file as a dict; by default the package's own copy (``SHIPPED``), the grader's.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for one that is not a segedu manifest.
    """
    path = SHIPPED if path is None else Path(path)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(
            manifest.get("lessons"), list):
        raise ValueError(f"{path} is not a segedu manifest (expected \"format\": \"{FORMAT}\" and a lessons list)")
    return manifest
