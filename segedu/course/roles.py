"""The cell roles of the lessons: which cells grading runs (``python -m segedu.course.roles lessons``).

``python -m segedu check`` runs only what each exercise needs: the lesson's set-up cells, then each exercise
cell, and the check in the grader - never the experiments. A cell's role is marked in its metadata,
``"segedu": {"role": "setup" | "exercise" | "check"}`` (an exercise or check cell also names its exercise,
``"exercise": "check_x"``), and the release keeps the marks; ``segedu.course.manifest`` reads them.

``SETUP_CELLS`` decides each lesson's set-up: its imports, ``P = runtime.profile()`` and the small definitions
an exercise uses (``grid``, ``crf``) - never training. Today that is each lesson's first code cell. The exercise
and check cells follow from the exercise convention (``segedu.course.manifest.lesson_manifest``). Run this
module to write the marks into the lessons after a lesson's set-up changes (it writes only notebooks whose
marks change).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["SETUP_CELLS", "mark_roles", "mark_lessons", "main"]

# lesson notebook -> ids of its set-up cells, in order (a cell id is stable across edits of its source).
SETUP_CELLS: dict[str, tuple[str, ...]] = {
    "00_segmentation_task.ipynb": ("fdda72ef",),
    "01_autoencoders.ipynb": ("0e73a8e7",),
    "02_upsampling.ipynb": ("e61cf5b4",),  # also defines grid()
    "03_transposed_convolution.ipynb": ("85083c1c",),
    "04_dilated_convolution.ipynb": ("b4865d67",),
    "05_fcn.ipynb": ("d9bf0850",),
    "06_unet.ipynb": ("8bdd3269",),
    "07_deeplab_crf.ipynb": ("a3d83498",),  # `crf`, which mean_field_step uses
    "08_pspnet_context.ipynb": ("d50c9356",),
    "09_mask_rcnn.ipynb": ("86f53d78",),
    "10_losses.ipynb": ("3c8e73cc",),
    "11_capstone.ipynb": ("520dee51",),
    "12_instance_embeddings.ipynb": ("c12e5e70",),
}


def _set_role(cell, mark: dict | None) -> None:
    """Give ``cell`` the role ``mark`` (``None``: no role); other ``segedu`` keys (points) are kept."""
    meta = cell.setdefault("metadata", {})
    old = dict(meta.get("segedu", {}))
    new = {k: v for k, v in old.items() if k not in ("role", "exercise")}
    if mark:
        new.update(mark)
    if new:
        meta["segedu"] = new
    else:
        meta.pop("segedu", None)


def mark_roles(nb, setup_cell_ids, name: str = "notebook") -> bool:
    """Mark the cells of the instructor notebook ``nb`` (in place): ``setup_cell_ids`` as set-up, each exercise's
    cell and check cell by the exercise convention, every other cell without a role. Returns whether anything
    changed. Raises ``ValueError`` for a set-up id that is not a cell of ``nb``."""
    from segedu.course.manifest import lesson_manifest

    ids = [cell.get("id") for cell in nb.cells]
    unknown = [i for i in setup_cell_ids if i not in ids]
    if unknown:
        raise ValueError(f"{name}: no cell with id {', '.join(unknown)}: update SETUP_CELLS in segedu/course/roles.py")
    before = [dict(_mark_of(cell)) for cell in nb.cells]
    for cell in nb.cells:  # the convention must not see stale marks
        if _mark_of(cell).get("role") in ("exercise", "check"):
            _set_role(cell, None)
    roles = {i: {"role": "setup"} for i in setup_cell_ids}
    for exercise in lesson_manifest(nb, name)["exercises"]:
        roles[exercise["exercise_cell"]] = {"role": "exercise", "exercise": exercise["exercise"]}
        roles[exercise["check_cell"]] = {"role": "check", "exercise": exercise["exercise"]}
    for cell in nb.cells:
        _set_role(cell, roles.get(cell.get("id")))
    return [dict(_mark_of(cell)) for cell in nb.cells] != before


def _mark_of(cell) -> dict:
    mark = cell.get("metadata", {}).get("segedu", {})
    return mark if isinstance(mark, dict) else {}


def mark_lessons(lessons_dir: str | Path = "lessons", table: dict | None = None) -> list[Path]:
    """Mark every notebook of ``lessons_dir`` named in ``table`` (default ``SETUP_CELLS``); returns the files
    rewritten. A notebook of the folder missing from the table raises ``ValueError`` (decide its set-up)."""
    import nbformat

    table = SETUP_CELLS if table is None else table
    folder = Path(lessons_dir)
    paths = sorted(folder.glob("*.ipynb"))
    missing = [p.name for p in paths if p.name not in table]
    if missing:
        raise ValueError(f"no set-up cells decided for {', '.join(missing)}: add them to SETUP_CELLS")
    written = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if mark_roles(nb, table[path.name], path.name):
            nbformat.write(nb, path)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m segedu.course.roles",
                                     description="Write the cell roles (set-up, exercise, check) into the lessons.")
    parser.add_argument("lessons", nargs="?", default="lessons", help="folder of instructor notebooks")
    args = parser.parse_args(argv)
    try:
        written = mark_lessons(args.lessons)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(f"marked {path}")
    print(f"{len(written)} notebook(s) changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
