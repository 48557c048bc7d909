"""Checking a student's notebooks (``python -m segedu check``): run them, report each exercise.

Grading runs a notebook with errors allowed and reads each check cell's outcome: passed (a line ending in
``PASSED``), not attempted (``NotImplementedError``) or failed (the message).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segedu.course.release import CHECK_CALL

__all__ = [
    "STATUSES",
    "ExerciseResult",
    "grade_executed",
    "execute_notebook",
    "check_notebook",
    "format_results",
    "format_markdown",
]

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
