"""The exercises as a whole: every check is exported, belongs to exactly one lesson's exercise, has mutation
tests, and the lessons hold enough exercises (issue 9: one or more per lesson, two or more in lessons 02-10,
20 or more in all). The checks live in the modules of the ``segedu.checks`` package (``lesson00`` ... and
``common``); every rule reads all of them.

The lesson list comes from ``lessons/*.ipynb``, so a lesson that lands later is held to the same rules.
"""

import ast
import importlib
import inspect
import pkgutil
import re
from collections import Counter
from pathlib import Path

import nbformat
import pytest

from segedu import checks, course

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons").glob("*.ipynb"))
# Where mutation tests live: tests/test_checks.py and the per-lesson tests/test_lesson*_checks.py files.
CHECK_TESTS = sorted((ROOT / "tests").glob("test_*checks.py"))


# The modules of the segedu.checks package: lesson00 ... lesson11 and common.
CHECK_MODULES = [
    importlib.import_module(f"{checks.__name__}.{info.name}") for info in pkgutil.iter_modules(checks.__path__)
]


def _defined_checks() -> dict[str, object]:
    """Every ``check_*`` function defined in a module of the segedu.checks package (imports excluded), by name."""
    return {
        name: obj for module in CHECK_MODULES for name, obj in vars(module).items()
        if name.startswith("check_") and inspect.isfunction(obj) and obj.__module__ == module.__name__
    }


def _public_checks() -> list[str]:
    """The names of every ``check_*`` function defined in the segedu.checks package."""
    return sorted(_defined_checks())


def _has_solution(source: str) -> bool:
    return any(line.strip() == course.BEGIN_SOLUTION for line in source.splitlines())


def _exercises(path: Path) -> list[tuple[str, int]]:
    """``(exercise, cell index)`` of a lesson: each ``checks.check_*`` call in a code cell is one exercise, and
    each markdown cell with a written answer between the solution markers is one (named ``written answer``)."""
    found = []
    for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
        if cell.cell_type == "code":
            found += [(name, index) for name in course.CHECK_CALL.findall(cell.source)]
        elif cell.cell_type == "markdown" and _has_solution(cell.source):
            found.append(("written answer", index))
    return found


def _lesson_number(path: Path) -> int:
    return int(path.name.split("_")[0])


# --- the checks module ------------------------------------------------------------------------------------------


def test_checks_module_exports_every_check():
    defined = _public_checks()
    assert len(defined) >= 19, "segedu.checks lost its checks"
    missing = sorted(set(defined) - set(checks.__all__))
    assert not missing, f"add these to segedu.checks.__all__: {missing}"
    unexported = sorted(name for name, fn in _defined_checks().items() if getattr(checks, name, None) is not fn)
    assert not unexported, f"import these from their lesson module into segedu/checks/__init__.py: {unexported}"
    dangling = [name for name in checks.__all__ if not hasattr(checks, name)]
    assert not dangling, f"segedu.checks.__all__ names functions that do not exist: {dangling}"
    assert len(checks.__all__) == len(set(checks.__all__)), "segedu.checks.__all__ lists a name twice"


def test_every_check_is_used_by_exactly_one_exercise():
    uses = Counter()
    where = {}
    for path in LESSONS:
        for name, index in _exercises(path):
            if name != "written answer":
                uses[name] += 1
                where.setdefault(name, []).append(f"{path.name} cell {index}")
    unknown = sorted(set(uses) - set(checks.__all__))
    assert not unknown, f"lessons call checks that segedu.checks does not export: {unknown}"
    twice = {name: where[name] for name, n in uses.items() if n > 1}
    assert not twice, f"a check belongs to one exercise, these are used more than once: {twice}"
    # Every check belongs to the lesson its docstring names; a check whose lesson is not in lessons/ yet (being
    # written) has nothing to belong to.
    present = {_lesson_number(path) for path in LESSONS}
    unused = [name for name in _public_checks() if uses[name] == 0 and _check_lesson(name) in present]
    assert not unused, f"checks that no exercise cell uses: {unused}"
    elsewhere = {name: places for name, places in where.items() if not places[0].startswith(f"{_check_lesson(name):02d}_")}
    assert not elsewhere, f"checks used outside the lesson their docstring names: {elsewhere}"


def _check_lesson(name: str) -> int | None:
    """The lesson a check's docstring names (``Lesson 05: ...``), or None."""
    match = re.match(r"\s*Lesson (\d+)", _defined_checks()[name].__doc__ or "")
    return int(match.group(1)) if match else None


def test_every_check_names_its_lesson():
    """The docstring of each check starts with ``Lesson NN:`` (the unused-check rule above relies on it)."""
    nameless = [name for name in _public_checks() if _check_lesson(name) is None]
    assert not nameless, f"start these checks' docstrings with 'Lesson NN: ...': {nameless}"


def test_every_check_lives_in_its_lessons_module():
    """One module per lesson: ``check_x`` of lesson NN is defined in ``segedu.checks.lessonNN`` and listed in its
    ``__all__``; every module of the package has an ``__all__`` naming only what it holds."""
    misplaced = {name: fn.__module__ for name, fn in _defined_checks().items()
                 if _check_lesson(name) is not None  # test_every_check_names_its_lesson reports those
                 and fn.__module__ != f"{checks.__name__}.lesson{_check_lesson(name):02d}"}
    assert not misplaced, f"move these checks to segedu.checks.lessonNN, NN the lesson they name: {misplaced}"
    for module in CHECK_MODULES:
        assert isinstance(getattr(module, "__all__", None), list), f"{module.__name__} has no __all__"
        unlisted = sorted(name for name, fn in _defined_checks().items()
                          if fn.__module__ == module.__name__ and name not in module.__all__)
        assert not unlisted, f"add these to {module.__name__}.__all__: {unlisted}"
        dangling = [name for name in module.__all__ if not hasattr(module, name)]
        assert not dangling, f"{module.__name__}.__all__ names what it does not define: {dangling}"


def _not_written_yet(*args, **kwargs):
    # YOUR CODE HERE
    raise NotImplementedError()


@pytest.mark.parametrize("name", _public_checks())
def test_every_check_lets_not_implemented_through(name):
    """A released exercise raises NotImplementedError, which the grader reports as "not attempted": a check
    must not turn it into an AssertionError (note that NotImplementedError is a RuntimeError)."""
    with pytest.raises(NotImplementedError):
        getattr(checks, name)(_not_written_yet)


# --- the lessons ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_follows_the_exercise_convention(path):
    """A solution code cell is immediately followed by the cell that calls its check, and a check cell
    immediately follows a solution cell (so the release leaves every check next to a placeholder)."""
    cells = nbformat.read(path, as_version=4).cells
    for index, cell in enumerate(cells):
        course.strip_solutions(cell.source, "pass")  # balanced markers, or ValueError
        if cell.cell_type != "code":
            continue
        if _has_solution(cell.source):
            after = cells[index + 1] if index + 1 < len(cells) else None
            assert after is not None and after.cell_type == "code" and course.CHECK_CALL.search(after.source), (
                f"{path.name} cell {index}: a solution cell must be followed by a cell calling checks.check_*(...)"
            )
            assert not course.CHECK_CALL.search(cell.source), f"{path.name} cell {index}: check in the solution cell"
        if course.CHECK_CALL.search(cell.source):
            before = cells[index - 1] if index else None
            assert before is not None and before.cell_type == "code" and _has_solution(before.source), (
                f"{path.name} cell {index}: a check cell must follow the solution cell it checks"
            )


def test_exercise_counts():
    counts = {path.name: len(_exercises(path)) for path in LESSONS}
    for path in LESSONS:
        needed = 2 if 2 <= _lesson_number(path) <= 10 else 1
        assert counts[path.name] >= needed, f"{path.name} has {counts[path.name]} exercise(s), needs {needed}"
    # Lessons 00-07, 09, 10 hold 19; lesson 08 brings two more. This fails until lesson 08 is in lessons/.
    assert sum(counts.values()) >= 20, f"the course needs 20 or more exercises, has {sum(counts.values())}: {counts}"


# --- mutation tests ---------------------------------------------------------------------------------------------


def _decorator_skips(node: ast.FunctionDef) -> bool:
    text = " ".join(ast.unparse(d) for d in node.decorator_list)
    return any(mark in text for mark in ("mark.skip", "mark.xfail"))


def _calls_skip(node: ast.FunctionDef) -> bool:
    return any(isinstance(n, ast.Call) and ast.unparse(n.func) in ("pytest.skip", "pytest.xfail") for n in ast.walk(node))


def _raises_assertion(node: ast.With) -> bool:
    for item in node.items:
        call = item.context_expr
        if (isinstance(call, ast.Call) and ast.unparse(call.func) == "pytest.raises" and call.args
                and ast.unparse(call.args[0]) == "AssertionError"):
            return True
    return False


def check_references(source: str) -> tuple[set[str], set[str]]:
    """``(rejected, accepted)``: the ``checks.check_*`` names a test module calls inside a
    ``with pytest.raises(AssertionError...)`` block (a wrong answer the check must reject), and the ones it
    references anywhere else (the reference it must accept, or a parametrize list of them). Only ``test_*``
    functions that are not skipped or xfailed count."""
    rejected, accepted = set(), set()

    def visit(node: ast.AST, inside_raises: bool) -> None:
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "checks"
                and node.attr.startswith("check_")):
            (rejected if inside_raises else accepted).add(node.attr)
        inside = inside_raises or (isinstance(node, ast.With) and _raises_assertion(node))
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            if not (_decorator_skips(node) or _calls_skip(node)):
                visit(node, False)
    return rejected, accepted


def test_check_references_reads_raises_blocks():
    """The scanner below must tell a mutation test from a mere mention, and ignore skipped tests."""
    source = '''
import pytest
from segedu import checks

def test_rejects():
    with pytest.raises(AssertionError, match="x"):
        checks.check_a(lambda m: None)

def test_accepts():
    checks.check_b(reference)

def test_wrong_exception():
    with pytest.raises(ValueError):
        checks.check_c(lambda m: None)

@pytest.mark.skip(reason="later")
def test_skipped():
    with pytest.raises(AssertionError):
        checks.check_d(lambda m: None)

def test_skips_itself():
    pytest.skip("later")
    with pytest.raises(AssertionError):
        checks.check_e(lambda m: None)

def helper():
    with pytest.raises(AssertionError):
        checks.check_f(lambda m: None)

@pytest.mark.parametrize("check", [checks.check_g])
def test_parametrized(check):
    check(reference)
'''
    rejected, accepted = check_references(source)
    assert rejected == {"check_a"}
    assert accepted == {"check_b", "check_c", "check_g"}


def test_every_check_has_mutation_tests():
    """For every check, some test passes it a wrong answer inside ``pytest.raises(AssertionError)`` (the
    mutation test) and some test gives it the reference. Those tests run in the unit stage; this one makes sure
    that a new check cannot land without them."""
    assert CHECK_TESTS, "no tests/test_*checks.py files"
    rejected, accepted = set(), set()
    for path in CHECK_TESTS:
        r, a = check_references(path.read_text())
        rejected |= r
        accepted |= a
    names = _public_checks()
    no_mutation = [name for name in names if name not in rejected]
    no_reference = [name for name in names if name not in accepted]
    assert not no_mutation, (
        f"write a mutation test (`with pytest.raises(AssertionError): checks.<name>(wrong)`) in "
        f"tests/test_*checks.py for: {no_mutation}"
    )
    assert not no_reference, f"no test passes the reference solution to: {no_reference}"
