"""The student release and the exercise checker (python -m segedu release / check)."""

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from segedu import course

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons").glob("*.ipynb"))

SOLVED = '''def double(x):
    """Twice x."""
    ### BEGIN SOLUTION
    y = x + x
    return y
    ### END SOLUTION'''


def test_strip_solutions_keeps_indentation_and_drops_markers():
    out = course.strip_solutions(SOLVED, course.CODE_PLACEHOLDER)
    assert out.splitlines() == [
        "def double(x):",
        '    """Twice x."""',
        "    # YOUR CODE HERE",
        "    raise NotImplementedError()",
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("### BEGIN SOLUTION\nx = 1", "without ### END"),
        ("x = 1\n### END SOLUTION", "without ### BEGIN"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside another"),
    ],
)
def test_strip_solutions_rejects_unbalanced_markers(text, message):
    with pytest.raises(ValueError, match=message):
        course.strip_solutions(text, "pass")


def _notebook():
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell(SOLVED)
    code.outputs = [nbformat.v4.new_output("stream", text="secret output")]
    code.execution_count = 3
    answer = nbformat.v4.new_markdown_cell("Why?\n\n### BEGIN SOLUTION\nBecause of the secret.\n### END SOLUTION")
    hidden = nbformat.v4.new_code_cell("print('instructor only')")
    hidden.metadata["tags"] = ["instructor"]
    check = nbformat.v4.new_code_cell("from segedu import checks\nchecks.check_double(double)")
    nb.cells = [code, answer, hidden, check]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"value": "secret state"}}}
    return nb


def test_release_notebook_removes_every_trace_of_the_solution():
    student = course.release_notebook(_notebook())
    text = nbformat.writes(student)
    for secret in ("x + x", "secret", "BEGIN SOLUTION", "END SOLUTION", "instructor only"):
        assert secret not in text
    assert "raise NotImplementedError()" in student.cells[0].source
    assert course.ANSWER_PLACEHOLDER in student.cells[1].source
    assert [c.source.splitlines()[0] for c in student.cells] == ["def double(x):", "Why?", "from segedu import checks"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in student.cells if c.cell_type == "code")


def test_release_notebook_locks_check_cells_and_lists_the_exercises():
    student = course.release_notebook(_notebook())
    assert student.metadata["segedu"] == {"exercises": ["check_double"]}
    check_cell = student.cells[-1]
    assert check_cell.metadata["editable"] is False and check_cell.metadata["deletable"] is False
    assert "editable" not in student.cells[0].metadata  # the student's cell stays editable
    nbformat.validate(student)


def _blocks(source: str) -> list[str]:
    """The solution blocks of a cell, in order."""
    blocks, current = [], None
    for line in source.splitlines():
        if line.strip() == course.BEGIN_SOLUTION:
            current = []
        elif line.strip() == course.END_SOLUTION:
            blocks.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def _restore(student_source: str, blocks: list[str], placeholder: str) -> str:
    """Put solution blocks back where the placeholders are (what a student who solved everything hands in)."""
    lines, out, k = student_source.splitlines(), [], 0
    rows = placeholder.splitlines()
    i = 0
    while i < len(lines):
        if [line.strip() for line in lines[i : i + len(rows)]] == rows:
            indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
            out += [indent + course.BEGIN_SOLUTION, *blocks[k].splitlines(), indent + course.END_SOLUTION]
            k, i = k + 1, i + len(rows)
        else:
            out.append(lines[i])
            i += 1
    assert k == len(blocks), "a solution block has no placeholder in the released cell"
    return "\n".join(out)


def test_restore_puts_back_what_release_took():
    released = course.release_notebook(_notebook())
    original = [c for c in _notebook().cells if "instructor" not in c.metadata.get("tags", [])]
    for cell, before in zip(released.cells, original):
        placeholder = course.CODE_PLACEHOLDER if cell.cell_type == "code" else course.ANSWER_PLACEHOLDER
        assert _restore(cell.source, _blocks(before.source), placeholder) == before.source


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_released_lessons_hide_solutions_and_restore_exactly(path):
    """Nothing of a solution survives the release, and putting the solution blocks back gives the instructor's
    lesson cell by cell. The instructor lessons pass nbval in `make test`, so the restored ones pass too."""
    instructor = nbformat.read(path, as_version=4)
    student = course.release_notebook(instructor)
    kept = [c for c in instructor.cells if not course.INSTRUCTOR_TAGS & set(c.metadata.get("tags", []))]
    assert len(kept) == len(student.cells)
    restored = []
    for original, released in zip(kept, student.cells):
        blocks = _blocks(original.source)
        assert "SOLUTION" not in released.source
        assert not released.get("outputs") and released.get("execution_count") is None
        for block in blocks:
            for line in block.splitlines():
                if len(line.strip()) > 12 and line.strip() not in original.source.replace(block, ""):
                    assert line.strip() not in released.source, f"{path.name}: solution line survived: {line!r}"
        placeholder = course.CODE_PLACEHOLDER if released.cell_type == "code" else course.ANSWER_PLACEHOLDER
        restored.append((released.cell_type, _restore(released.source, blocks, placeholder)))
    assert restored == [(c.cell_type, c.source) for c in kept], "putting the solutions back restores the lesson"
    calls = [name for c in kept if c.cell_type == "code" for name in course.CHECK_CALL.findall(c.source)]
    assert student.metadata["segedu"]["exercises"] == calls
    assert calls, f"{path.name} has no exercise"


def test_release_command_writes_every_lesson(tmp_path):
    out = tmp_path / "release"
    result = subprocess.run(
        [sys.executable, "-m", "segedu", "release", str(ROOT / "lessons"), "--out", str(out)],
        capture_output=True, text=True, check=True,
    )
    assert sorted(p.name for p in out.glob("*.ipynb")) == [p.name for p in LESSONS]
    assert "wrote" in result.stdout
    for path in out.glob("*.ipynb"):
        assert "### BEGIN SOLUTION" not in path.read_text()
    with pytest.raises(ValueError, match="differ"):
        course.release(ROOT / "lessons", ROOT / "lessons")


def test_check_command_reports_each_exercise(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from segedu import checks\nimport torch\n"
            "def iou_from_confusion(m):\n    m = m.double(); tp = m.diagonal()\n    return tp / (m.sum(0) + m.sum(1) - tp)"
        ),
        nbformat.v4.new_code_cell("checks.check_iou_from_confusion(iou_from_confusion)"),
        nbformat.v4.new_code_cell("def wrong(m):\n    return m.diagonal().double() / m.sum(1)"),
        nbformat.v4.new_code_cell("checks.check_iou_from_confusion(wrong)"),
        nbformat.v4.new_code_cell("def todo(m):\n    # YOUR CODE HERE\n    raise NotImplementedError()"),
        nbformat.v4.new_code_cell("checks.check_iou_from_confusion(todo)"),
    ]
    path = tmp_path / "student.ipynb"
    nbformat.write(nb, path)
    summary = tmp_path / "summary.md"
    result = subprocess.run(
        [sys.executable, "-m", "segedu", "check", str(path), "--summary", str(summary)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert result.returncode == 1
    rows = [line for line in result.stdout.splitlines() if line.startswith("student.ipynb")]
    assert [row.split()[2] for row in rows] == ["passed", "failed", "not"]
    assert "recall" in rows[1]  # the check's own message reaches the student
    assert "1 passed, 1 failed, 1 not attempted" in result.stdout
    assert "check_iou_from_confusion" in summary.read_text()


def test_check_command_succeeds_when_everything_passes(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from segedu import checks\n"
            "def f(m):\n    m = m.double(); tp = m.diagonal()\n    return tp / (m.sum(0) + m.sum(1) - tp)\n"
            "checks.check_iou_from_confusion(f)"
        )
    ]
    path = tmp_path / "ok.ipynb"
    nbformat.write(nb, path)
    result = subprocess.run([sys.executable, "-m", "segedu", "check", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _executed(source: str, outputs: list) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    cell.outputs = outputs
    return cell


def test_grade_executed_reads_each_check_cell_and_notices_a_deleted_one():
    nb = nbformat.v4.new_notebook()
    nb.metadata["segedu"] = {"exercises": ["check_a", "check_b", "check_c", "check_d"]}
    error = nbformat.v4.new_output
    nb.cells = [
        _executed("checks.check_a(f)", [error("stream", text="a: 3 cases - PASSED\n")]),
        _executed("checks.check_b(g)", [error("error", ename="NotImplementedError", evalue="", traceback=[])]),
        _executed("checks.check_c(h)", [error("error", ename="AssertionError", evalue="entry 2 | is 0", traceback=[])]),
        _executed("x = undefined_name", [error("error", ename="NameError", evalue="name 'undefined_name'", traceback=[])]),
        _executed("print('the student rewrote the check cell')", [error("stream", text="PASSED\n")]),
    ]
    results = course.grade_executed(nb, "l.ipynb")
    assert [(r.exercise, r.status) for r in results] == [
        ("check_a", "passed"), ("check_b", "not attempted"), ("check_c", "failed"), ("cell 3", "failed"),
        ("check_d", "failed"),
    ]
    assert results[2].message == "AssertionError: entry 2 | is 0"
    assert "copy the check cell back" in results[4].message
    text = course.format_results(results)
    assert text.splitlines()[-1] == "1 passed, 3 failed, 1 not attempted"
    assert "AssertionError: entry 2 | is 0" in text  # the check's whole message, not a cut
    markdown = course.format_markdown(results)
    assert "entry 2 \\| is 0" in markdown  # a | in a message must not split the Markdown table
    assert markdown.count("\n| l.ipynb |") == 5


def test_a_check_cell_that_printed_nothing_is_not_passed():
    nb = nbformat.v4.new_notebook()
    nb.cells = [_executed("checks.check_a(f)", [])]  # never ran, or the check was replaced by `pass`
    [result] = course.grade_executed(nb, "l.ipynb")
    assert result.status == "failed" and "no PASSED line" in result.message


def test_a_cell_past_the_timeout_is_interrupted_and_the_rest_still_runs(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import time\ntime.sleep(120)"), nbformat.v4.new_code_cell("print('after')")]
    course.execute_notebook(nb, cwd=tmp_path, timeout=3)
    assert nb.cells[1].outputs[0].text == "after\n"
    [result] = course.grade_executed(nb, "slow.ipynb")
    assert (result.exercise, result.status) == ("cell 0", "failed")
    assert result.message.startswith("KeyboardInterrupt")


def test_a_dead_kernel_fails_the_notebook_and_every_exercise_it_did_not_reach(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["segedu"] = {"exercises": ["check_iou_from_confusion"]}
    nb.cells = [nbformat.v4.new_code_cell("import os\nos._exit(1)"),
                nbformat.v4.new_code_cell("checks.check_iou_from_confusion(f)")]
    path = tmp_path / "dies.ipynb"
    nbformat.write(nb, path)
    results = course.check_notebook(path, timeout=60)
    assert [(r.exercise, r.status) for r in results] == [("(notebook)", "failed"), ("check_iou_from_confusion", "failed")]
    assert "DeadKernelError" in results[0].message
