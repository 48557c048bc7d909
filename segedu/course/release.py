"""The student release: solutions replaced by placeholders (``python -m segedu release``).

Exercise convention (see CONTRIBUTING.md): a code cell holds the student's function with the reference
solution between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` lines; the next cell calls a
``segedu.checks`` function on it. The student release replaces each solution block by
``raise NotImplementedError()``. (The markers and the release follow nbgrader's, without its database: a
course here is a git repository.)
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = [
    "BEGIN_SOLUTION",
    "END_SOLUTION",
    "CODE_PLACEHOLDER",
    "ANSWER_PLACEHOLDER",
    "INSTRUCTOR_TAGS",
    "CHECK_CALL",
    "strip_solutions",
    "release_notebook",
    "release",
]

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
CODE_PLACEHOLDER = "# YOUR CODE HERE\nraise NotImplementedError()"
ANSWER_PLACEHOLDER = "YOUR ANSWER HERE"
INSTRUCTOR_TAGS = frozenset({"instructor", "solution-only", "remove"})
CHECK_CALL = re.compile(r"checks\.(check_\w+)\s*\(")


def strip_solutions(text: str, placeholder: str) -> str:
    """Replace every ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` block by ``placeholder``.

    The placeholder takes the indentation of the BEGIN line, so a solution inside a function body becomes
    ``raise NotImplementedError()`` inside that body. Unbalanced markers raise ``ValueError``.
    """
    out: list[str] = []
    inside = False
    for number, line in enumerate(text.splitlines(), start=1):
        marker = line.strip()
        if marker == BEGIN_SOLUTION:
            if inside:
                raise ValueError(f"line {number}: {BEGIN_SOLUTION} inside another solution block")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.extend(indent + row for row in placeholder.splitlines())
        elif marker == END_SOLUTION:
            if not inside:
                raise ValueError(f"line {number}: {END_SOLUTION} without {BEGIN_SOLUTION}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{BEGIN_SOLUTION} without {END_SOLUTION}")
    return "\n".join(out)


def release_notebook(nb):
    """A student copy of an instructor notebook (an ``nbformat`` node): solutions replaced by placeholders,
    instructor-tagged cells dropped, outputs, execution counts and saved widget state cleared.

    Check cells (those calling ``checks.check_*``) are locked in JupyterLab (read-only, not deletable), and the
    notebook's metadata lists its exercises (``nb.metadata.segedu.exercises``) so that grading notices a check
    cell that was deleted or changed.
    """
    import copy

    student = copy.deepcopy(nb)
    cells, exercises = [], []
    for cell in student.cells:
        if INSTRUCTOR_TAGS & set(cell.get("metadata", {}).get("tags", [])):
            continue
        placeholder = CODE_PLACEHOLDER if cell.cell_type == "code" else ANSWER_PLACEHOLDER
        cell.source = strip_solutions(cell.source, placeholder)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            calls = CHECK_CALL.findall(cell.source)
            if calls:
                exercises += calls
                cell.metadata.update(editable=False, deletable=False)
        cells.append(cell)
    student.cells = cells
    student.metadata.pop("widgets", None)  # saved widget state can hold values computed by a solution
    student.metadata["segedu"] = {"exercises": exercises}
    return student


def release(lessons_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Write the student release of every notebook in ``lessons_dir`` to ``out_dir``; returns the paths."""
    import nbformat

    src, out = Path(lessons_dir), Path(out_dir)
    if not src.is_dir():
        raise FileNotFoundError(f"lessons directory not found: {src}")
    if out.resolve() == src.resolve():
        raise ValueError("out_dir must differ from lessons_dir: the release would overwrite the solutions")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(src.glob("*.ipynb")):
        student = release_notebook(nbformat.read(path, as_version=4))
        target = out / path.name
        nbformat.write(student, target)
        written.append(target)
    return written
