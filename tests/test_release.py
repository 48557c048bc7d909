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
    assert course.read_manifest(out / "manifest.json") == course.build_manifest(ROOT / "lessons")
    with pytest.raises(ValueError, match="differ"):
        course.release(ROOT / "lessons", ROOT / "lessons")


def test_a_cell_past_the_timeout_is_interrupted_and_the_rest_still_runs(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import time\ntime.sleep(120)"), nbformat.v4.new_code_cell("print('after')")]
    course.execute_notebook(nb, cwd=tmp_path, timeout=3)
    assert nb.cells[1].outputs[0].text == "after\n"
    assert any(o.get("ename") == "KeyboardInterrupt" for o in nb.cells[0].outputs)


# --- Issue 17: a safe release (no overwrite without --force, swapped arguments, near-miss markers, all or nothing)


def _lesson_dir(tmp_path, name="lessons", notebooks=None):
    """A folder of instructor notebooks: ``{file name: nbformat node}`` (default: one exercise, ``a.ipynb``)."""
    folder = tmp_path / name
    folder.mkdir()
    for file, nb in (notebooks or {"a.ipynb": _notebook()}).items():
        nbformat.write(nb, folder / file)
    return folder


def _snapshot(folder):
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _with_cell(source, cell_type="code"):
    """The exercise notebook with one more cell (index 4) holding ``source``."""
    nb = _notebook()
    new = nbformat.v4.new_code_cell if cell_type == "code" else nbformat.v4.new_markdown_cell
    nb.cells.append(new(source))
    return nb


NEAR_MISSES = [
    "###BEGIN SOLUTION",
    "## BEGIN SOLUTION",
    "#### BEGIN SOLUTION",
    "# BEGIN SOLUTION",
    "### begin solution",
    "### Begin Solution",
    "### BEGIN SOLUTION here",
    "### BEGIN SOLUTION  # the loop",
    "### BEGIN_SOLUTION",
    "### BEGIN  SOLUTION",
    "BEGIN SOLUTION",
    "### END SOLUTION.",
    "###END SOLUTION",
    "y = 1  ### END SOLUTION",
    "### SOLUTION BEGIN",
]


@pytest.mark.parametrize("marker", NEAR_MISSES)
def test_a_near_miss_marker_is_refused_naming_its_line(marker):
    text = f"def f(x):\n    {marker}\n    return x + 1\n    ### END SOLUTION"
    with pytest.raises(course.ReleaseError, match="looks like a solution marker") as caught:
        course.strip_solutions(text, course.CODE_PLACEHOLDER)
    assert caught.value.line == 2


def test_a_block_between_near_miss_markers_is_not_copied_into_the_release():
    """The old release copied this block, markers and all, into the student's notebook."""
    nb = _with_cell("def g(x):\n    ## BEGIN SOLUTION\n    return 'secret' * x\n    ## END SOLUTION")
    with pytest.raises(course.ReleaseError) as caught:
        course.release_notebook(nb, "03_lesson.ipynb")
    message = str(caught.value)
    assert message.startswith(f"03_lesson.ipynb: cell 4 (id {nb.cells[4].id}), line 2: '## BEGIN SOLUTION'")
    assert (caught.value.notebook, caught.value.cell, caught.value.cell_id, caught.value.line) == (
        "03_lesson.ipynb", 4, nb.cells[4].id, 2)


@pytest.mark.parametrize("cell_type", ["code", "markdown"])
@pytest.mark.parametrize(
    "source, line, problem",
    [
        ("x = 1\n### BEGIN SOLUTION\nx = 2", 2, "### BEGIN SOLUTION without ### END SOLUTION"),
        ("x = 1\n\n### END SOLUTION", 3, "### END SOLUTION without ### BEGIN SOLUTION"),
        ("### BEGIN SOLUTION\nx = 1\n### BEGIN SOLUTION\n### END SOLUTION", 3, "inside another solution block"),
    ],
)
def test_unbalanced_markers_name_the_notebook_the_cell_and_the_line(tmp_path, source, line, problem, cell_type):
    nb = _with_cell(source, cell_type)
    lessons = _lesson_dir(tmp_path, notebooks={"a.ipynb": _notebook(), "b.ipynb": nb})
    with pytest.raises(course.ReleaseError, match=problem) as caught:
        course.release(lessons, tmp_path / "out")
    assert str(caught.value).startswith(f"b.ipynb: cell 4 (id {nb.cells[4].id}), line {line}: ")
    assert not (tmp_path / "out").exists(), "a.ipynb converted, but nothing may be written"


def test_a_check_cell_holding_a_solution_is_refused():
    nb = _with_cell("### BEGIN SOLUTION\ny = double(2)\n### END SOLUTION\nchecks.check_twice(double)")
    with pytest.raises(course.ReleaseError, match="check cell may not hold a solution"):
        course.release_notebook(nb, "a.ipynb")


def test_the_release_refuses_to_overwrite_files_in_out_and_changes_nothing(tmp_path):
    lessons = _lesson_dir(tmp_path, notebooks={"a.ipynb": _notebook(), "b.ipynb": _notebook()})
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.ipynb").write_text("a student's work")
    (out / "notes.txt").write_text("their notes")
    before = _snapshot(out)
    with pytest.raises(FileExistsError, match="already holds a.ipynb: .*--force"):
        course.release(lessons, out)
    assert _snapshot(out) == before, "nothing written: not b.ipynb, not manifest.json"
    # The command: one line on stderr, exit code 2, the files still as they were.
    result = subprocess.run([sys.executable, "-m", "segedu", "release", str(lessons), "--out", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "a.ipynb" in result.stderr and "--force" in result.stderr
    assert _snapshot(out) == before
    # --force replaces the release's own files and nothing else.
    written = course.release(lessons, out, force=True)
    assert sorted(p.name for p in written) == ["a.ipynb", "b.ipynb", "manifest.json"]
    assert (out / "notes.txt").read_text() == "their notes"
    assert "raise NotImplementedError()" in (out / "a.ipynb").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lessons", "out"], "no temporary folder left behind"


def test_swapped_arguments_never_touch_the_solutions(tmp_path):
    lessons = _lesson_dir(tmp_path)
    released = tmp_path / "release"
    course.release(lessons, released)
    before = _snapshot(lessons)
    for force in (False, True):
        with pytest.raises(course.ReleaseError, match="swapped"):
            course.release(released, lessons, force=force)
    result = subprocess.run(
        [sys.executable, "-m", "segedu", "release", str(released), "--out", str(lessons), "--force"],
        capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "swapped" in result.stderr
    assert _snapshot(lessons) == before, "the instructor's notebooks are intact"
    # A release that does not exist yet, or the same folder twice, is refused as well.
    with pytest.raises(FileNotFoundError):
        course.release(tmp_path / "nowhere", lessons, force=True)
    with pytest.raises(course.ReleaseError, match="differ"):
        course.release(lessons, lessons, force=True)
    assert _snapshot(lessons) == before


def test_a_failure_midway_writes_nothing(tmp_path, monkeypatch):
    """A bad notebook after good ones, an unreadable notebook, and a disk error while writing: --out unchanged."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("kept")
    bad = _with_cell("### BEGIN SOLUTION\nx = 1")
    lessons = _lesson_dir(tmp_path, notebooks={"a.ipynb": _notebook(), "b.ipynb": _notebook(), "c.ipynb": bad})
    with pytest.raises(course.ReleaseError, match="c.ipynb: cell 4"):
        course.release(lessons, out, force=True)
    assert _snapshot(out) == {"old.txt": b"kept"}

    (lessons / "c.ipynb").write_text('{"cells": [<<<<<<< HEAD')  # a merge conflict
    with pytest.raises(course.ReleaseError, match="c.ipynb: cannot read the notebook"):
        course.release(lessons, out, force=True)
    assert _snapshot(out) == {"old.txt": b"kept"}

    nbformat.write(_notebook(), lessons / "c.ipynb")
    real_write = Path.write_text
    calls = []

    def disk_full(self, *args, **kwargs):
        calls.append(self.name)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space"):
        course.release(lessons, out, force=True)
    monkeypatch.undo()
    assert _snapshot(out) == {"old.txt": b"kept"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lessons", "out"], "the temporary folder is removed"


def test_the_release_keeps_role_marks_and_writes_the_manifest(tmp_path):
    nb = _notebook()
    nb.cells[0].metadata["segedu"] = {"role": "exercise", "exercise": "check_double"}
    nb.cells[3].metadata["segedu"] = {"role": "check", "exercise": "check_double", "points": 2}
    lessons = _lesson_dir(tmp_path, notebooks={"a.ipynb": nb})
    out = tmp_path / "out"
    course.release(lessons, out)
    student = nbformat.read(out / "a.ipynb", as_version=4)
    assert student.cells[0].metadata["segedu"] == {"role": "exercise", "exercise": "check_double"}
    assert student.cells[-1].metadata["segedu"]["role"] == "check"
    manifest = course.read_manifest(out / "manifest.json")
    assert manifest == course.build_manifest(lessons)
    [exercise] = manifest["lessons"][0]["exercises"]
    assert exercise == {
        "exercise": "check_double", "function": "double", "points": 2,
        "exercise_cell": student.cells[0].id, "check_cell": student.cells[-1].id,
        "check_sha256": course.check_cell_sha256(student.cells[-1].source),  # the student's check cell, as released
    }
