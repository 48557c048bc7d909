"""Course plumbing: show the package's real code in a lesson, the lesson index, the student release and the
exercise grader behind ``python -m segedu release`` and ``python -m segedu check``.

Lessons never copy code: ``show(fn)`` prints the source of the function or class a lesson is about, straight
from the package, so what students read is what runs and what the tests check.

Exercise convention (see CONTRIBUTING.md): a code cell holds the student's function with the reference
solution between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` lines; the next cell calls a
``segedu.checks`` function on it. The student release replaces each solution block by
``raise NotImplementedError()``; grading runs a notebook with errors allowed and reads each check cell's
outcome: passed (a line ending in ``PASSED``), not attempted (``NotImplementedError``) or failed (the message).
(The markers and the release follow nbgrader's, without its database: a course here is a git repository.)
"""

from __future__ import annotations

import inspect
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BEGIN_SOLUTION",
    "END_SOLUTION",
    "source",
    "show",
    "Lesson",
    "LESSONS",
    "lesson_index",
    "CODE_PLACEHOLDER",
    "ANSWER_PLACEHOLDER",
    "INSTRUCTOR_TAGS",
    "CHECK_CALL",
    "strip_solutions",
    "release_notebook",
    "release",
    "STATUSES",
    "ExerciseResult",
    "grade_executed",
    "execute_notebook",
    "check_notebook",
    "format_results",
    "format_markdown",
]

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"


def source(obj) -> str:
    """The source code of a function, class, method or module, dedented."""
    try:
        text = inspect.getsource(obj)
    except (TypeError, OSError) as err:
        raise TypeError(f"show() needs a function, class, method or module written in Python, got {obj!r}") from err
    return textwrap.dedent(text).rstrip() + "\n"


def show(obj):
    """Display the source of ``obj`` with syntax highlighting in a notebook (plain text elsewhere).

    Returns an ``IPython.display.Code`` object: put ``show(fn)`` last in a cell to render it.
    """
    from IPython.display import Code

    return Code(source(obj), language="python")


@dataclass(frozen=True)
class Lesson:
    number: int
    filename: str
    title: str


LESSONS: tuple[Lesson, ...] = (
    Lesson(0, "00_segmentation_task.ipynb", "The segmentation task"),
    Lesson(1, "01_autoencoders.ipynb", "Autoencoders"),
    Lesson(2, "02_upsampling.ipynb", "Upsampling"),
    Lesson(3, "03_transposed_convolution.ipynb", "Transposed convolution"),
    Lesson(4, "04_dilated_convolution.ipynb", "Dilated convolution"),
    Lesson(5, "05_fcn.ipynb", "Fully convolutional networks"),
    Lesson(6, "06_unet.ipynb", "U-Net"),
    Lesson(7, "07_deeplab_crf.ipynb", "DeepLab and the dense CRF"),
    Lesson(8, "08_pspnet_context.ipynb", "PSPNet and context"),
    Lesson(9, "09_mask_rcnn.ipynb", "Mask R-CNN"),
    Lesson(10, "10_losses.ipynb", "Losses"),
    Lesson(11, "11_capstone.ipynb", "Capstone"),
)


def lesson_index(lessons_dir: str | Path = "lessons") -> list[Lesson]:
    """The lessons that exist in ``lessons_dir``, in course order."""
    root = Path(lessons_dir)
    return [lesson for lesson in LESSONS if (root / lesson.filename).exists()]


# --- the student release -----------------------------------------------------------------------------------

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


# --- checking a student's notebooks ------------------------------------------------------------------------

STATUSES = ("passed", "failed", "not attempted")


@dataclass(frozen=True)
class ExerciseResult:
    notebook: str
    exercise: str  # the check's name, or "cell N" for an error outside the exercises
    status: str  # one of STATUSES
    message: str = ""


def _cell_error(cell) -> tuple[str, str] | None:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return output["ename"], output["evalue"]
    return None


def _cell_text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def grade_executed(nb, name: str) -> list[ExerciseResult]:
    """Per-exercise results of an executed notebook: each cell that calls ``checks.check_*`` is one exercise;
    an error anywhere else (other than a not-yet-written exercise's NotImplementedError) is reported too, and so
    is every exercise the release listed (``nb.metadata.segedu.exercises``) whose check cell is gone."""
    results = []
    for number, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        error = _cell_error(cell)
        calls = CHECK_CALL.findall(cell.source)
        passed_lines = sum(line.rstrip().endswith("PASSED") for line in _cell_text(cell).splitlines())
        for exercise in calls:
            if error is None:
                ok = passed_lines >= len(calls)  # every check prints one line ending in PASSED
                status, message = ("passed", "") if ok else ("failed", "the check printed no PASSED line: was the cell run?")
            elif error[0] == "NotImplementedError":
                status, message = "not attempted", "replace `raise NotImplementedError()` with your code"
            else:
                status, message = "failed", f"{error[0]}: {error[1]}"
            results.append(ExerciseResult(name, exercise, status, message))
        if not calls and error is not None and error[0] != "NotImplementedError":
            results.append(ExerciseResult(name, f"cell {number}", "failed", f"{error[0]}: {error[1]}"))
    found = {r.exercise for r in results}
    for exercise in nb.metadata.get("segedu", {}).get("exercises", []):
        if exercise not in found:
            message = f"no cell calls checks.{exercise}(...) any more: copy the check cell back from the release"
            results.append(ExerciseResult(name, exercise, "failed", message))
    return results


def _current_env_kernel_manager():
    """A kernel manager class that starts the kernel with this Python interpreter (``sys.executable``), like
    nbval's ``--nbval-current-env``: a notebook is checked in the environment that runs the check, whatever
    kernel its metadata names or other kernelspecs the machine has."""
    from ipykernel.kernelspec import RESOURCES, get_kernel_dict
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager

    class CurrentEnvKernelManager(AsyncKernelManager):
        @property
        def kernel_spec(self) -> KernelSpec:
            return KernelSpec(resource_dir=RESOURCES, **get_kernel_dict())

    return CurrentEnvKernelManager


def execute_notebook(nb, cwd: str | Path, timeout: int = 1800):
    """Run an ``nbformat`` notebook in place, top to bottom, in a kernel of the current interpreter, started in
    ``cwd``. Errors are allowed (every exercise gets tried) and a cell that runs past ``timeout`` seconds is
    interrupted (a ``KeyboardInterrupt`` error) instead of stopping the run. Returns ``nb``."""
    from nbclient import NotebookClient

    client = NotebookClient(
        nb, timeout=timeout, allow_errors=True, interrupt_on_timeout=True,
        kernel_manager_class=_current_env_kernel_manager(), resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()
    return nb


def check_notebook(path: str | Path, timeout: int = 1800) -> list[ExerciseResult]:
    """Run a notebook top to bottom (errors allowed, so every exercise is tried) and grade it. A kernel that
    dies is reported as a failure of the notebook; the exercises it did not reach fail too."""
    import nbformat

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"notebook not found: {path}")
    nb = nbformat.read(path, as_version=4)
    try:
        execute_notebook(nb, path.parent, timeout)
    except Exception as err:  # a dead kernel, a broken notebook: report it, then check the other notebooks
        return [ExerciseResult(path.name, "(notebook)", "failed", f"{type(err).__name__}: {err}")] + grade_executed(nb, path.name)
    return grade_executed(nb, path.name)


def _one_line(message: str) -> str:
    return " ".join(message.split())


def format_results(results: list[ExerciseResult]) -> str:
    """A plain-text table, one row per exercise with the check's whole message, and a closing count line."""
    rows = [("notebook", "exercise", "status", "message")]
    rows += [(r.notebook, r.exercise, r.status, _one_line(r.message)) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[3]]).rstrip() for row in rows]
    lines.insert(1, "  ".join(["-" * w for w in widths] + ["-" * len("message")]))
    lines.append(_counts(results))
    return "\n".join(lines)


def format_markdown(results: list[ExerciseResult]) -> str:
    """The same table in Markdown (for ``--summary``: a CI job summary, or a grading sheet)."""
    icon = {"passed": "✅", "failed": "❌", "not attempted": "⬜"}
    lines = ["| notebook | exercise | status | message |", "|---|---|---|---|"]
    for r in results:
        message = _one_line(r.message).replace("|", "\\|")
        lines.append(f"| {r.notebook} | `{r.exercise}` | {icon.get(r.status, '')} {r.status} | {message} |")
    return "\n".join(["## Exercises", "", *lines, "", _counts(results), ""])


def _counts(results: list[ExerciseResult]) -> str:
    counts = {s: sum(r.status == s for r in results) for s in STATUSES}
    return f"{counts['passed']} passed, {counts['failed']} failed, {counts['not attempted']} not attempted"
