"""The form every lesson keeps (DESIGN.md, "Lessons"; issue 19): short code cells, at least as much prose as
code, no exercise whose answer was shown before it, a prediction before a measurement, a source for every
threshold, and architecture diagrams drawn from the models in lessons 05-09.

The lesson list comes from ``lessons/*.ipynb``, so a lesson that lands later is held to the same rules. Each
rule is a function over a notebook's cells, so the tests at the end also check that each rule catches what it
exists to catch (a rule that cannot fail is no rule).
"""

from __future__ import annotations

import ast
import difflib
import importlib
import inspect
import io
import re
import tokenize
from pathlib import Path

import nbformat
import pytest

from segedu import checks, course

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons").glob("*.ipynb"))
IDS = [path.stem for path in LESSONS]

MAX_CODE_LINES = 30          # DESIGN.md: "No code cell over 30 lines"
SHOWN_SHARE = 0.5            # an exercise is "shown" when earlier code holds half of its solution's tokens
MIN_BLOCK = 6                # common runs shorter than this many tokens (`x.shape[-1]`) are not copying
DIAGRAM_LESSONS = range(5, 10)  # issue 19: U-Net, FCN, ASPP, PPM, FPN, Mask R-CNN drawn in lessons 05-09


def _cells(path: Path):
    return nbformat.read(path, as_version=4).cells


def _role(cell) -> str | None:
    return cell.metadata.get("segedu", {}).get("role")


def _is_colab_cell(cell) -> bool:
    return "colab" in cell.source.lower() and (cell.cell_type == "markdown" or "google.colab" in cell.source)


def _only_shows(source: str) -> bool:
    """Whether a code cell does nothing but ``course.show(...)`` (a listing of package code, not lesson code)."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return False
    return bool(body) and all(
        isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and _call_name(node.value) == "show"
        for node in body
    )


def _call_name(call: ast.Call) -> str | None:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def _python(source: str) -> str:
    """A code cell without its IPython magics (``%matplotlib inline``), so ``ast`` can read it."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


# --- rule 1 and 2: short cells, prose >= code -------------------------------------------------------------------


def long_cells(cells) -> list[tuple[int, int]]:
    """``(cell index, lines)`` of every code cell longer than ``MAX_CODE_LINES``."""
    return [(i, len(c.source.splitlines())) for i, c in enumerate(cells)
            if c.cell_type == "code" and len(c.source.splitlines()) > MAX_CODE_LINES]


def word_counts(cells) -> tuple[int, int]:
    """``(prose words, code words)``: markdown against code, whitespace-separated words, without the Colab
    cells and without cells that only list package code with ``course.show``."""
    prose = code = 0
    for cell in cells:
        if _is_colab_cell(cell):
            continue
        words = len(cell.source.split())
        if cell.cell_type == "markdown":
            prose += words
        elif cell.cell_type == "code" and not _only_shows(_python(cell.source)):
            code += words
    return prose, code


@pytest.mark.parametrize("path", LESSONS, ids=IDS)
def test_no_code_cell_over_30_lines(path):
    too_long = long_cells(_cells(path))
    assert not too_long, f"{path.name}: code cells (index, lines) over {MAX_CODE_LINES} lines: {too_long}"


@pytest.mark.parametrize("path", LESSONS, ids=IDS)
def test_at_least_as_much_prose_as_code(path):
    prose, code = word_counts(_cells(path))
    assert prose >= code, f"{path.name}: {prose} words of prose for {code} words of code"


# --- rule 3: no answer shown before its exercise ----------------------------------------------------------------


def _tokens(source: str) -> list[str]:
    """The Python tokens of ``source`` without comments, layout and strings' quotes normalised."""
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENDMARKER, tokenize.ENCODING}
    try:
        return [t.string for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type not in skip]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return source.split()


def _solution(source: str) -> str:
    """The code between the solution markers."""
    inside, kept = False, []
    for line in source.splitlines():
        if line.strip() == course.BEGIN_SOLUTION:
            inside = True
        elif line.strip() == course.END_SOLUTION:
            inside = False
        elif inside:
            kept.append(line.strip())
    return "\n".join(kept)


def _without_solutions(source: str) -> str:
    """A cell as a student sees it after the release: solution blocks removed."""
    inside, kept = False, []
    for line in source.splitlines():
        if line.strip() in (course.BEGIN_SOLUTION, course.END_SOLUTION):
            inside = line.strip() == course.BEGIN_SOLUTION
        elif not inside:
            kept.append(line.strip())
    return "\n".join(kept)


def copied_share(solution: str, earlier: str) -> float:
    """The share of ``solution``'s tokens in runs of at least ``MIN_BLOCK`` tokens that ``earlier`` also has."""
    ours, theirs = _tokens(solution), _tokens(earlier)
    if not ours or not theirs:
        return 0.0
    blocks = difflib.SequenceMatcher(None, ours, theirs, autojunk=False).get_matching_blocks()
    return sum(b.size for b in blocks if b.size >= MIN_BLOCK) / len(ours)


def _imports(cells) -> dict[str, str]:
    """Name -> dotted path of every ``from segedu... import name`` / ``import segedu...`` in a lesson."""
    names = {}
    for cell in cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(_python(cell.source))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("segedu"):
                names.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
            elif isinstance(node, ast.Import):
                names.update({a.asname or a.name: a.name for a in node.names if a.name.startswith("segedu")})
    return names


def _resolve(dotted: str):
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def shown_objects(source: str, imports: dict[str, str]) -> list[tuple[str, object]]:
    """``(name, object)`` for every ``course.show(expr)`` / ``show(expr)`` call in a code cell."""
    found = []
    try:
        tree = ast.parse(_python(source))
    except SyntaxError:
        return found
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node) == "show" and node.args:
            expr = ast.unparse(node.args[0])
            head, _, rest = expr.partition(".")
            if head in imports:
                try:
                    found.append((expr.rsplit(".", 1)[-1], _resolve(imports[head] + ("." + rest if rest else ""))))
                except (ImportError, AttributeError):
                    pass
    return found


def _segedu_imports(fn) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(inspect.getsource(fn))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("segedu") \
                and not node.module.startswith("segedu.checks"):
            names.update(a.name for a in node.names)
    return names


def check_references(check_name: str) -> set[str]:
    """The package names a check compares with: what it (and the helpers of its module it calls) import from
    ``segedu``. Where some of them share a word with the check's name (``check_bed_of_nails`` imports
    ``bed_of_nails`` and, to name a known mistake, ``nearest_upsample``), only those: the others are there
    to build inputs or recognise mistakes."""
    fn = getattr(checks, check_name)
    module = inspect.getmodule(fn)
    names = _segedu_imports(fn)
    called = {n.func.id for n in ast.walk(ast.parse(inspect.getsource(fn)))
              if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    for name in called:
        helper = getattr(module, name, None)
        if inspect.isfunction(helper) and helper.__module__ == module.__name__:
            names |= _segedu_imports(helper)
    words = set(check_name.split("_")[1:])
    named = {name for name in names if words & set(name.lower().split("_"))}
    return named or names


def _check_cell(cells, start: int, name: str) -> int:
    for i in range(start, len(cells)):
        if cells[i].cell_type == "code" and f"checks.{name}(" in cells[i].source:
            return i
    raise AssertionError(f"no cell calls checks.{name}(...) after its exercise (cell {start})")


def answers_shown(cells) -> list[str]:
    """Every exercise whose answer a student could read before its check: the check's reference shown with
    ``course.show``, or half of the solution's code in an earlier cell or an earlier shown function."""
    imports, problems = _imports(cells), []
    for index, cell in enumerate(cells):
        if _role(cell) != "exercise":
            continue
        name = cell.metadata["segedu"]["exercise"]
        solution = _solution(cell.source)
        until = _check_cell(cells, index, name)
        references = check_references(name) if hasattr(checks, name) else set()
        for i in range(until):
            earlier = cells[i]
            if earlier.cell_type != "code" or i == index:
                continue
            for shown_name, obj in shown_objects(earlier.source, imports):
                if shown_name in references:
                    problems.append(f"{name}: cell {i} shows {shown_name}, the function the check compares with")
                try:
                    listing = inspect.getsource(obj)
                except (TypeError, OSError):
                    continue
                share = copied_share(solution, listing)
                if share >= SHOWN_SHARE:
                    problems.append(f"{name}: cell {i} shows {shown_name}, which holds {share:.0%} of the solution")
            share = copied_share(solution, _without_solutions(earlier.source))
            if share >= SHOWN_SHARE:
                problems.append(f"{name}: cell {i} holds {share:.0%} of the solution's code")
    return problems


@pytest.mark.parametrize("path", LESSONS, ids=IDS)
def test_no_exercise_answer_is_shown_before_it(path):
    problems = answers_shown(_cells(path))
    assert not problems, f"{path.name}: " + "; ".join(problems)


# --- rule 4: predict, then measure ------------------------------------------------------------------------------


def predictions(cells) -> list[tuple[int, int]]:
    """``(predict cell, reveal cell)`` pairs: a ``predict(...)`` call and, in a later cell, a ``.reveal(...)``
    on the name it was assigned to."""
    pairs = []
    for i, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        for match in re.finditer(r"^\s*(\w+)\s*=\s*(?:\w+\.)?predict\(", cell.source, re.M):
            reveal = re.compile(rf"\b{match.group(1)}\.reveal\(")
            later = [j for j in range(i + 1, len(cells)) if cells[j].cell_type == "code"
                     and reveal.search(cells[j].source)]
            if later:
                pairs.append((i, later[0]))
    return pairs


@pytest.mark.parametrize("path", LESSONS, ids=IDS)
def test_every_lesson_asks_for_a_prediction_before_measuring(path):
    pairs = predictions(_cells(path))
    assert pairs, (f"{path.name}: no `guess = predict(...)` cell followed by a later cell with "
                   "`guess.reveal(...)` (segedu.widgets.predict)")
    assert any(reveal - ask >= 2 for ask, reveal in pairs), (
        f"{path.name}: predict and reveal are adjacent: put the measuring cell(s) between them")


# --- rule 5: thresholds with a source --------------------------------------------------------------------------


def _numbers(node: ast.AST) -> list[float]:
    """The numeric constants of an expression, except indices (``loss[-5:]`` holds no threshold)."""
    if isinstance(node, ast.Constant):
        return [node.value] if isinstance(node.value, (int, float)) and not isinstance(node.value, bool) else []
    if isinstance(node, ast.Subscript):
        return _numbers(node.value)
    return [value for child in ast.iter_child_nodes(node) for value in _numbers(child)]


def has_threshold(test: ast.AST) -> bool:
    """Whether an assert's test compares with a numeric threshold: an ordering comparison with a non-zero
    number in it, or a tolerance keyword (``atol=``, ``rtol=``)."""
    for node in ast.walk(test):
        if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Lt, ast.Gt, ast.LtE, ast.GtE)) for op in node.ops):
            if any(value != 0 for value in _numbers(node)):
                return True
        if isinstance(node, ast.keyword) and node.arg in ("atol", "rtol"):
            return True
    return False


def unexplained_thresholds(source: str) -> list[int]:
    """Line numbers (1-based, in the cell) of asserts with a threshold and no comment on their lines or on the
    comment line(s) directly above."""
    lines = source.splitlines()
    try:
        tree = ast.parse(_python(source))
    except SyntaxError:
        return []
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert) and has_threshold(node.test):
            own = lines[node.lineno - 1: node.end_lineno]
            above = lines[node.lineno - 2].strip() if node.lineno >= 2 else ""
            if not any("#" in line for line in own) and not above.startswith("#"):
                bad.append(node.lineno)
    return bad


@pytest.mark.parametrize("path", LESSONS, ids=IDS)
def test_every_threshold_says_where_it_comes_from(path):
    bad = [(i, lines) for i, c in enumerate(_cells(path)) if c.cell_type == "code"
           for lines in [unexplained_thresholds(c.source)] if lines]
    assert not bad, (f"{path.name}: asserts with a threshold and no comment saying where it comes from "
                     f"(cell, lines): {bad}")


# --- rule 6: diagrams drawn from the models --------------------------------------------------------------------


@pytest.mark.parametrize("path", [p for p in LESSONS if int(p.name[:2]) in DIAGRAM_LESSONS],
                         ids=lambda p: p.stem)
def test_architecture_lessons_draw_their_models(path):
    drawn = [i for i, c in enumerate(_cells(path)) if c.cell_type == "code" and re.search(r"\barchitecture\(", c.source)]
    assert drawn, f"{path.name}: no diagram drawn from a model with segedu.viz.architecture(model, input_size)"


# --- the rules catch what they exist to catch -------------------------------------------------------------------


def _code(source, **segedu):
    cell = nbformat.v4.new_code_cell(source)
    if segedu:
        cell.metadata["segedu"] = segedu
    return cell


def test_rules_catch_their_cases():
    assert long_cells([_code("x = 1\n" * 31)]) == [(0, 31)] and not long_cells([_code("x = 1\n" * 30)])
    prose, code = word_counts([nbformat.v4.new_markdown_cell("one two"), _code("a = b + c"),
                               _code("course.show(fn)")])
    assert (prose, code) == (2, 5)
    assert unexplained_thresholds("assert worst < 1e-5") == [1]
    assert unexplained_thresholds("# float32 rounding\nassert worst < 1e-5") == []
    assert unexplained_thresholds("assert torch.allclose(a, b, atol=1e-4)  # float32 sums") == []
    assert unexplained_thresholds("assert torch.allclose(a, b, atol=1e-4)") == [1]
    assert unexplained_thresholds("assert a == b\nassert n > 0\nassert sum(x[-5:]) < sum(x[:5])") == []
    solution = "out = x.new_zeros(b, c, h * f, w * f)\nout[..., ::f, ::f] = x\nreturn out"
    assert copied_share(solution, "y = 1\n" + solution) == 1.0
    assert copied_share(solution, "y = torch.zeros(3)") == 0.0
    exercise = _code(f"def f(x):\n    {course.BEGIN_SOLUTION}\n    return x.flip(-1).cumsum(-1).mean()\n"
                     f"    {course.END_SOLUTION}", role="exercise", exercise="check_bed_of_nails")
    check = _code("checks.check_bed_of_nails(f)", role="check", exercise="check_bed_of_nails")
    leak = _code("y = x.flip(-1).cumsum(-1).mean()")
    assert answers_shown([leak, exercise, check]) and not answers_shown([exercise, check, leak])
    shows = [_code("from segedu.ops.upsample import bed_of_nails"), _code("course.show(bed_of_nails)")]
    assert any("compares with" in p for p in answers_shown(shows + [exercise, check]))
    assert not answers_shown([exercise, check] + shows)
    ask, measure, reveal = _code("guess = predict('Q?', choices=['a', 'b'])"), _code("m = 1"), _code("guess.reveal(m, answer='a')")
    assert predictions([ask, measure, reveal]) == [(0, 2)] and predictions([reveal, measure, ask]) == []
