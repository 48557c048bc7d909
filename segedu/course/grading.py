"""Checking a student's notebooks (``python -m segedu check``): every exercise graded by the grader's own code.

What is trusted and what is not (issue 17). The exercise list, the check cells' hashes and the set-up cells come
from the grader's manifest (``segedu.course.manifest``), never from the notebook being graded; the checks are the
grader's own ``segedu.checks``, imported in the grader's process. The student's code - the lesson's set-up cells
and the exercise cells, never the experiments and never the check cells - runs in a fresh worker process per
notebook (``segedu.course.worker``), and each check runs here against a stand-in for the student's function
(``segedu.course.proxy.StudentFunction``). A pass is recorded when the check function returns; nothing the
student's code prints, and nothing it changes in its own process (the checks module, IPython, torch), counts.

Per exercise the status is one of ``STATUSES``:

* ``passed`` - the check returned; the exercise's points;
* ``failed`` - the check raised (its message, or the exception the student's function raised);
* ``not attempted`` - the student's function still raises ``NotImplementedError``;
* ``error`` - a set-up cell or the exercise cell raised, the notebook cannot be read, or the worker died;
* ``timeout`` - a set-up cell, the exercise cell or the check's calls ran past ``timeout`` seconds: the
  worker's process group was killed (whatever the cell does with ``KeyboardInterrupt``);
* ``tampered`` - the check cell's source differs from the manifest's hash; ``missing`` - it is gone.

Every status but ``passed`` scores 0 points.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from segedu.course.manifest import check_cell_sha256

# segedu.course.proxy (torch) is imported where it is used: `from segedu import course` stays light.

__all__ = [
    "STATUSES",
    "DEFAULT_TIMEOUT",
    "STARTUP",
    "INTERNAL_ERROR",
    "ExerciseResult",
    "lesson_entry",
    "grade_notebook",
    "check_notebook",
    "check_notebooks",
    "execute_notebook",
]

STATUSES = ("passed", "failed", "not attempted", "error", "timeout", "tampered", "missing")
DEFAULT_TIMEOUT = 120  # seconds for each set-up cell, each exercise cell and each check
STARTUP = 120  # seconds a worker process may take to start (import torch), on top of the cells' limits
NOT_ATTEMPTED = "replace `raise NotImplementedError()` with your code, in the exercise cell itself"
ONLY_THESE_CELLS = ("grading runs only the lesson's set-up cells and its exercise cells: define what your function "
                    "needs in its exercise cell")
INTERNAL_ERROR = "internal error"  # how a fault of the grader itself is worded (python -m segedu check: exit code 2)
# One check at a time in a grader process: checks share torch's global state (default generator, modes).
# The workers' start-up and cells, most of the time, still run side by side.
_CHECK_LOCK = threading.Lock()


@dataclass(frozen=True)
class ExerciseResult:
    notebook: str
    exercise: str  # the check's name, or "(notebook)" for a notebook that could not be graded at all
    status: str  # one of STATUSES
    message: str = ""
    points: int = 0  # earned
    max_points: int = 0  # what the exercise is worth (the manifest's points)


def lesson_entry(manifest: dict, notebook: str) -> dict | None:
    """The manifest's entry for the notebook file named ``notebook``, or ``None``."""
    return next((lesson for lesson in manifest["lessons"] if lesson["notebook"] == notebook), None)


def _read(path: Path):
    """The notebook at ``path``; ``ValueError`` (with a reason a student understands) if it cannot be read."""
    import nbformat

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read the file ({error})") from None
    if re.search(r"^(<<<<<<<|>>>>>>>) ", text, re.M):
        raise ValueError("the file holds git merge-conflict markers (<<<<<<< ... >>>>>>>): resolve the conflict")
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # nbformat's validation warnings
            nb = nbformat.reads(text, as_version=4)
    except Exception as error:  # invalid JSON, not a notebook, an unknown nbformat
        reason = " ".join(str(error).split())[:200]
        raise ValueError(f"not a readable notebook ({type(error).__name__}: {reason})") from None
    return nb


def _code_cells(nb) -> list:
    return [c for c in nb.cells if c.get("cell_type") == "code" and isinstance(c.get("source"), str)]


def _mark(cell) -> dict:
    mark = cell.get("metadata", {}).get("segedu", {})
    return mark if isinstance(mark, dict) else {}


def _find_check(cells: list, exercise: dict):
    """``(cell or None, status)``: the exercise's check cell and ``"ok"``, ``"tampered"`` or ``"missing"``. By
    id first, then by its mark; a check cell deleted and pasted back from the release (a new id) is found by its
    hash."""
    name, digest = exercise["exercise"], exercise["check_sha256"]
    cell = next((c for c in cells if c.get("id") == exercise["check_cell"]), None)
    if cell is None:
        cell = next((c for c in cells if _mark(c).get("role") == "check" and _mark(c).get("exercise") == name), None)
    if cell is None:
        cell = next((c for c in cells if check_cell_sha256(c.source) == digest), None)
    if cell is None:
        return None, "missing"
    return cell, "ok" if check_cell_sha256(cell.source) == digest else "tampered"


def _find_exercise(cells: list, exercise: dict, check) -> dict | None:
    """The exercise cell: by id, by its mark, else the last cell before the check (or anywhere, without one)
    that defines the function."""
    name = exercise["exercise"]
    cell = next((c for c in cells if c.get("id") == exercise["exercise_cell"]), None)
    if cell is None:
        cell = next((c for c in cells if _mark(c).get("role") == "exercise" and _mark(c).get("exercise") == name), None)
    if cell is None:
        before = cells[: cells.index(check)] if check is not None else cells
        define = re.compile(rf"^\s*def\s+{re.escape(exercise['function'])}\s*\(", re.M)
        cell = next((c for c in reversed(before) if define.search(c.source)), None)
    return cell


def _error_text(reply: tuple) -> str:
    return f"{reply[2]}: {reply[3]}" if len(reply) == 4 else "an unreadable error"


def _verdict(check, proxy: StudentFunction) -> tuple[str, str]:
    """Run ``check(proxy)`` here, in the grader: ``(status, message)``. Passed means the check returned."""
    from segedu.course.protocol import ProtocolError
    from segedu.course.proxy import WorkerGone

    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):  # the check's PASSED line: not needed, not believed
            check(proxy)
        status, message = "passed", ""
    except WorkerGone as gone:
        status, message = gone.status, gone.message
    except NotImplementedError:
        status, message = "not attempted", NOT_ATTEMPTED
    except AssertionError as error:
        status, message = "failed", str(error)
    except ProtocolError as error:
        status, message = "error", f"the worker process broke the protocol: {error}"
    except Exception as error:  # the student's function raised, or returned something the check chokes on
        status, message = "failed", f"{getattr(error, 'segedu_type', type(error).__name__)}: {error}"
        if isinstance(error, NameError):
            message += f" ({ONLY_THESE_CELLS})"
    if proxy.gone is not None:  # however the check handled it, a timeout or a dead worker decides
        status, message = proxy.gone.status, proxy.gone.message
    return status, message


class _Session:
    """The worker of one notebook, started on demand; after a kill, a new one gets the cells that ran before."""

    def __init__(self, cwd: Path, timeout: float, threads: int | None):
        self.cwd, self.timeout, self.threads = cwd, timeout, threads
        self.worker: Worker | None = None
        self.history: list[str] = []

    def fresh(self) -> Worker:
        from segedu.course.proxy import Worker

        if self.worker is None or self.worker.gone is not None:
            if self.worker is not None:
                self.worker.close()
            self.worker = Worker(self.cwd, threads=self.threads)
            self.worker.wait_ready(time.monotonic() + max(self.timeout, STARTUP))
            for source in self.history:  # errors were reported the first time
                self.worker.request(("cell", source), time.monotonic() + self.timeout, "re-running a cell")
        return self.worker

    def run_cell(self, source: str, what: str) -> tuple:
        """The worker's reply to running ``source`` (``WorkerGone`` past the deadline)."""
        reply = self.fresh().request(("cell", source), time.monotonic() + self.timeout, what)
        self.history.append(source)
        return reply

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()


def _result(notebook: str, exercise: dict, status: str, message: str = "") -> ExerciseResult:
    points = exercise.get("points", 1)
    return ExerciseResult(notebook, exercise["exercise"], status, message, points if status == "passed" else 0, points)


def grade_notebook(path: str | Path, lesson: dict | None, timeout: float = DEFAULT_TIMEOUT,
                   threads: int | None = None, name: str | None = None) -> list[ExerciseResult]:
    """Grade the notebook at ``path`` against its manifest entry ``lesson`` (``lesson_entry``): one result per
    exercise of the manifest, in its order. ``name`` is the notebook's name in the results (default: the file's).
    Never raises for a bad notebook: it becomes ``error`` rows."""
    from segedu import checks, validate
    from segedu.course.proxy import WorkerGone

    timeout = validate.positive_number(timeout, "timeout")
    threads = None if threads is None else validate.positive_int(threads, "threads")
    path = Path(path)
    name = name or path.name
    if lesson is None:
        return [ExerciseResult(name, "(notebook)", "error", "not a lesson of this course: the manifest has no "
                               f"notebook named {path.name}")]
    exercises = lesson["exercises"]
    try:
        cells = _code_cells(_read(path))
    except ValueError as error:
        return [_result(name, ex, "error", f"{path.name}: {error}") for ex in exercises]
    by_id = {c.get("id"): c for c in cells if c.get("id")}
    session = _Session(path.parent, timeout, threads)
    results = []
    try:
        setup_error = None
        for number, cell_id in enumerate(lesson["setup_cells"], start=1):
            cell = by_id.get(cell_id)
            if cell is None:
                continue  # a deleted set-up cell: what it defined will be missing below
            try:
                reply = session.run_cell(cell.source, f"set-up cell {number}")
            except WorkerGone as gone:
                setup_error = (gone.status, gone.message)
                break
            if reply[0] != "ok":
                setup_error = ("error", f"set-up cell {number} (id {cell_id}) raised {_error_text(reply)}")
                break
        for exercise in exercises:
            check_cell, found = _find_check(cells, exercise)
            cell = _find_exercise(cells, exercise, check_cell)
            status, message = _grade_exercise(session, exercise, cell, found, setup_error, checks)
            results.append(_result(name, exercise, status, message))
    finally:
        session.close()
    return results


def _grade_exercise(session: _Session, exercise: dict, cell, found: str, setup_error, checks) -> tuple[str, str]:
    """``(status, message)`` of one exercise; its cell runs even when its check cell is flagged (a later
    exercise may call its function)."""
    from segedu.course.proxy import StudentFunction, WorkerGone

    function = exercise["function"]
    flagged = {"missing": ("missing", "the check cell is gone: copy it back from the release, unchanged"),
               "tampered": ("tampered", "the check cell differs from the release: copy it back, unchanged")}.get(found)
    if setup_error is not None:
        return flagged or setup_error
    if cell is None:
        return flagged or ("error", f"no cell defines {function}: the exercise cell is gone")
    try:
        reply = session.run_cell(cell.source, "the exercise cell")
    except WorkerGone as gone:
        return flagged or (gone.status, gone.message)
    if flagged:
        return flagged
    if reply[0] != "ok":
        if len(reply) == 4 and reply[1] == "NotImplementedError":
            return "not attempted", NOT_ATTEMPTED
        return "error", f"the exercise cell raised {_error_text(reply)}"
    check = getattr(checks, exercise["exercise"], None)
    if check is None:
        return "error", f"this grader's segedu.checks has no {exercise['exercise']}: update the course package"
    try:
        worker = session.fresh()  # the same worker, unless an earlier check killed it
    except WorkerGone as gone:
        return gone.status, gone.message
    with _CHECK_LOCK:
        deadline = time.monotonic() + session.timeout
        try:
            reply = worker.request(("lookup", function), deadline, "looking up the function")
        except WorkerGone as gone:
            return gone.status, gone.message
        if reply != ("ok", True):
            return "error", f"the exercise cell does not define a function named {function} ({ONLY_THESE_CELLS})"
        return _verdict(check, StudentFunction(worker, function, deadline))


def check_notebooks(paths: list, manifest: dict, timeout: float = DEFAULT_TIMEOUT, jobs: int = 1,
                    progress=None) -> list[ExerciseResult]:
    """Grade each notebook in ``paths`` (``str``/``Path``, or ``(name, path)`` pairs) against ``manifest``,
    ``jobs`` notebooks at a time (one worker process each); results in the order of ``paths``.
    ``progress(name, results, seconds)`` is called as each notebook finishes."""
    from segedu import validate

    timeout = validate.positive_number(timeout, "timeout")
    jobs = validate.positive_int(jobs, "jobs")
    items = [(p if isinstance(p, tuple) else (Path(p).name, Path(p))) for p in paths]
    jobs = min(jobs, len(items) or 1)
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None

    def one(item):
        name, path = item
        start = time.perf_counter()
        try:
            results = grade_notebook(path, lesson_entry(manifest, Path(path).name), timeout, threads, name)
        except Exception as error:  # a fault of the grader's: one error row (exit code 2), the others still graded
            message = f"{INTERNAL_ERROR}: {type(error).__name__}: {error}"
            results = [ExerciseResult(name, "(notebook)", "error", message)]
        if progress is not None:
            progress(name, results, time.perf_counter() - start)
        return results

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        try:
            return [r for results in pool.map(one, items) for r in results]
        except KeyboardInterrupt:  # Ctrl-C: the workers live in sessions of their own, so kill them here
            from segedu.course.proxy import kill_workers

            kill_workers()
            raise


def _current_env_kernel_manager():
    """A kernel manager class that starts the kernel with this Python interpreter (``sys.executable``), like
    nbval's ``--nbval-current-env``: a notebook is run in the environment that runs it, whatever kernel its
    metadata names or other kernelspecs the machine has."""
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
    ``cwd`` (the benchmarks and the release tests; grading does not run whole notebooks). Errors are allowed and
    a cell that runs past ``timeout`` seconds is interrupted (a ``KeyboardInterrupt`` error). Returns ``nb``."""
    from nbclient import NotebookClient

    client = NotebookClient(
        nb, timeout=timeout, allow_errors=True, interrupt_on_timeout=True,
        kernel_manager_class=_current_env_kernel_manager(), resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()
    return nb


def check_notebook(path: str | Path, manifest: dict | None = None,
                   timeout: float = DEFAULT_TIMEOUT) -> list[ExerciseResult]:
    """Grade one notebook against ``manifest`` (default: the package's own, ``read_manifest()``)."""
    from segedu.course.manifest import read_manifest

    manifest = read_manifest() if manifest is None else manifest
    return grade_notebook(path, lesson_entry(manifest, Path(path).name), timeout)
