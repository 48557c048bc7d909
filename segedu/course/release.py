"""The student release: solutions replaced by placeholders (``python -m segedu release``).

Exercise convention (see CONTRIBUTING.md): a code cell holds the student's function with the reference
solution between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` lines; the next cell calls a
``segedu.checks`` function on it. The student release replaces each solution block by
``raise NotImplementedError()``. (The markers and the release follow nbgrader's, without its database: a
course here is a git repository.)

The release is careful with what it is given, because its mistakes cost work or leak answers:

* a line that looks like a marker but is not exactly one (``## BEGIN SOLUTION``, ``### begin solution``,
  ``### BEGIN SOLUTION here``) is refused, not copied: a near-miss would put the solution in the release;
* unbalanced markers are refused, naming the notebook, the cell (index and id) and the line;
* every notebook is converted in memory before anything is written, and the files are written into a temporary
  folder that is then moved in place, so a failure leaves ``--out`` as it was;
* files already in ``--out`` (a student's work, an earlier release) are replaced only with ``force=True``, and
  a folder holding instructor notebooks (the two arguments swapped) is never written, even with ``force``.

Besides the notebooks, the release writes ``manifest.json`` (``segedu.course.manifest``): the exercises, their
check cells and the hash of each check cell's source, which grading compares with.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import tempfile
from pathlib import Path

__all__ = [
    "BEGIN_SOLUTION",
    "END_SOLUTION",
    "CODE_PLACEHOLDER",
    "ANSWER_PLACEHOLDER",
    "INSTRUCTOR_TAGS",
    "CHECK_CALL",
    "MARKER_LIKE",
    "ReleaseError",
    "strip_solutions",
    "holds_solution",
    "cell_tags",
    "read_lessons",
    "release_notebook",
    "release",
]

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
CODE_PLACEHOLDER = "# YOUR CODE HERE\nraise NotImplementedError()"
ANSWER_PLACEHOLDER = "YOUR ANSWER HERE"
INSTRUCTOR_TAGS = frozenset({"instructor", "solution-only", "remove"})
CHECK_CALL = re.compile(r"checks\.(check_\w+)\s*\(")
# Anything a person may have meant as a marker: any case, any number of #, `_` or `-` for the space, extra words.
# A line that matches and is not exactly a marker is refused; better a false alarm than a leaked solution.
MARKER_LIKE = re.compile(r"\b(?:begin|end)[\s_-]*solution\b|\bsolution[\s_-]*(?:begin|end)\b", re.IGNORECASE)


class ReleaseError(ValueError):
    """A lesson the release refuses (bad markers, an unreadable notebook, an unsafe ``--out``).

    ``notebook``, ``cell`` (index in the instructor notebook), ``cell_id`` and ``line`` (1-based, in the cell)
    say where, when known; ``str(error)`` is one line that names them.
    """

    def __init__(self, problem: str, notebook: str | None = None, cell: int | None = None,
                 cell_id: str | None = None, line: int | None = None):
        self.problem, self.notebook, self.cell, self.cell_id, self.line = problem, notebook, cell, cell_id, line
        place = []
        if cell is not None:
            place.append(f"cell {cell}" + (f" (id {cell_id})" if cell_id else ""))
        elif cell_id:
            place.append(f"cell id {cell_id}")
        if line is not None:
            place.append(f"line {line}")
        super().__init__(": ".join(part for part in (notebook, ", ".join(place), problem) if part))

    def located(self, notebook: str, cell: int | None = None, cell_id: str | None = None) -> ReleaseError:
        """The same error with the notebook and cell filled in (``strip_solutions`` only knows the line)."""
        return ReleaseError(self.problem, notebook, cell if self.cell is None else self.cell,
                            cell_id if self.cell_id is None else self.cell_id, self.line)


def strip_solutions(text: str, placeholder: str) -> str:
    """Replace every ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` block by ``placeholder``.

    The placeholder takes the indentation of the BEGIN line, so a solution inside a function body becomes
    ``raise NotImplementedError()`` inside that body. Unbalanced markers, and a line that looks like a marker
    without being exactly one (see ``MARKER_LIKE``), raise ``ReleaseError`` (a ``ValueError``) with its line.
    """
    out: list[str] = []
    inside, opened = False, 0
    for number, line in enumerate(text.splitlines(), start=1):
        marker = line.strip()
        if marker == BEGIN_SOLUTION:
            if inside:
                raise ReleaseError(f"{BEGIN_SOLUTION} inside another solution block (opened on line {opened})",
                                   line=number)
            inside, opened = True, number
            indent = line[: len(line) - len(line.lstrip())]
            out.extend(indent + row for row in placeholder.splitlines())
        elif marker == END_SOLUTION:
            if not inside:
                raise ReleaseError(f"{END_SOLUTION} without {BEGIN_SOLUTION}", line=number)
            inside = False
        elif MARKER_LIKE.search(line):
            raise ReleaseError(f"{marker[:60]!r} looks like a solution marker but is not exactly {BEGIN_SOLUTION!r} "
                               f"or {END_SOLUTION!r} on a line of its own; write the marker exactly", line=number)
        elif not inside:
            out.append(line)
    if inside:
        raise ReleaseError(f"{BEGIN_SOLUTION} without {END_SOLUTION}", line=opened)
    return "\n".join(out)


def holds_solution(source: str) -> bool:
    """Whether a cell's source has a ``### BEGIN SOLUTION`` line (an exercise cell of an instructor lesson)."""
    return any(line.strip() == BEGIN_SOLUTION for line in source.splitlines())


def cell_tags(cell) -> set[str]:
    """The cell's JupyterLab tags (``metadata.tags``)."""
    return set(cell.get("metadata", {}).get("tags", []))


def read_lessons(lessons_dir: str | Path) -> dict:
    """Every ``*.ipynb`` of ``lessons_dir`` as ``{file name: nbformat node}``, in name order.

    Raises ``FileNotFoundError`` for a missing folder and ``ReleaseError`` for a folder without notebooks or a
    notebook that cannot be read (invalid JSON, a merge conflict), naming it.
    """
    import nbformat

    src = Path(lessons_dir)
    if not src.is_dir():
        raise FileNotFoundError(f"lessons directory not found: {src}")
    paths = sorted(src.glob("*.ipynb"))
    if not paths:
        raise ReleaseError(f"no notebooks (*.ipynb) in {src}")
    notebooks = {}
    for path in paths:
        try:
            notebooks[path.name] = nbformat.read(path, as_version=4)
        except Exception as error:  # invalid JSON, a merge conflict, not a notebook: one line naming the file
            raise ReleaseError(f"cannot read the notebook ({type(error).__name__}: "
                               f"{str(error).splitlines()[0] if str(error) else ''})", notebook=path.name) from None
    return notebooks


def release_notebook(nb, name: str = "notebook"):
    """A student copy of an instructor notebook (an ``nbformat`` node): solutions replaced by placeholders,
    instructor-tagged cells dropped, outputs, execution counts and saved widget state cleared.

    Check cells (those calling ``checks.check_*``) are locked in JupyterLab (read-only, not deletable), and the
    notebook's metadata lists its exercises (``nb.metadata.segedu.exercises``). Cell metadata, the cell-role
    marks (``segedu.role``) included, and cell ids are kept: the manifest names cells by id. Bad markers, or a
    check cell holding a solution, raise ``ReleaseError`` naming ``name`` and the cell.
    """
    student = copy.deepcopy(nb)
    cells, exercises = [], []
    for index, cell in enumerate(student.cells):
        if INSTRUCTOR_TAGS & cell_tags(cell):
            continue
        placeholder = CODE_PLACEHOLDER if cell.cell_type == "code" else ANSWER_PLACEHOLDER
        original = cell.source
        try:
            cell.source = strip_solutions(original, placeholder)
        except ReleaseError as error:
            raise error.located(name, index, cell.get("id")) from None
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            calls = CHECK_CALL.findall(cell.source)
            if calls:
                if cell.source != original:  # a locked cell the student would have to edit; a changed hash
                    raise ReleaseError("a check cell may not hold a solution block: put the solution in the "
                                       "exercise cell before it", name, index, cell.get("id"))
                exercises += calls
                cell.metadata.update(editable=False, deletable=False)
        cells.append(cell)
    student.cells = cells
    student.metadata.pop("widgets", None)  # saved widget state can hold values computed by a solution
    student.metadata["segedu"] = {"exercises": exercises}
    return student


def _instructor_notebooks(folder: Path) -> list[str]:
    """The notebooks in ``folder`` whose text holds anything like a solution marker (instructor copies)."""
    found = []
    for path in sorted(folder.glob("*.ipynb")):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if MARKER_LIKE.search(text):
            found.append(path.name)
    return found


def _names(paths: list[str], limit: int = 6) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def release(lessons_dir: str | Path, out_dir: str | Path, force: bool = False) -> list[Path]:
    """Write the student release of every notebook in ``lessons_dir``, and its ``manifest.json``, to
    ``out_dir``; returns the paths written.

    Nothing is written unless every notebook converts. Raises ``FileExistsError`` when a file to be written is
    already in ``out_dir`` and ``force`` is false (naming the files), ``ReleaseError`` (a ``ValueError``) when
    ``out_dir`` is ``lessons_dir`` or holds instructor notebooks (even with ``force``: the arguments are
    probably swapped) and for a notebook that does not convert, ``FileNotFoundError`` for a missing
    ``lessons_dir``. Other files in ``out_dir`` are left alone.
    """
    import nbformat

    from segedu.course.manifest import manifest_of, manifest_text

    src, out = Path(lessons_dir), Path(out_dir)
    if not src.is_dir():
        raise FileNotFoundError(f"lessons directory not found: {src}")
    if out.resolve() == src.resolve():
        raise ReleaseError("out_dir must differ from lessons_dir: the release would overwrite the solutions")
    if out.exists() and not out.is_dir():
        raise ReleaseError(f"--out {out} is a file, not a folder")
    if out.is_dir():
        instructor = _instructor_notebooks(out)
        if instructor:
            raise ReleaseError(f"{out} holds instructor notebooks with solution markers ({_names(instructor)}): "
                               f"are the two arguments swapped? The release never writes there, even with --force")

    # Everything in memory first: a notebook that does not convert stops the release before any write.
    notebooks = read_lessons(src)
    files = {name: nbformat.writes(release_notebook(nb, name)) for name, nb in notebooks.items()}
    files = {name: text if text.endswith("\n") else text + "\n" for name, text in files.items()}
    files["manifest.json"] = manifest_text(manifest_of(notebooks))

    existing = sorted(name for name in files if os.path.lexists(out / name))
    if existing and not force:
        raise FileExistsError(f"{out} already holds {_names(existing)}: the release would overwrite them "
                              f"(a student's work, an earlier release); pass --force to replace them")

    # Write into a temporary folder beside --out, then move: a failed write leaves --out untouched.
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.release-", dir=out.parent))
    umask = os.umask(0o022)
    os.umask(umask)
    try:
        staging.chmod(0o777 & ~umask)  # mkdtemp's folder is private (0700); it may become --out itself
        for name, text in files.items():
            (staging / name).write_text(text, encoding="utf-8")
        if not out.exists():
            os.replace(staging, out)
        else:
            for name in files:
                os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out / name for name in files]
