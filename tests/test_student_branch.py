"""Fixes reach students (issue 17, point 9): the `student` branch that `make release` writes, run with the
commands INSTRUCTORS.md documents, in temporary git repositories: instructor -> student branch -> a student's
clone with a solved exercise -> a fix in another cell, released again -> `git pull` keeps the work and brings
the fix."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from segedu import course

ROOT = Path(__file__).resolve().parents[1]
LESSON = ROOT / "lessons" / "00_segmentation_task.ipynb"
DOCS = (ROOT / "INSTRUCTORS.md").read_text()
# The documented commands; COURSEWORK_URL and ALICE_URL stand for the two repositories' addresses.
PUBLISH = ["git remote add coursework COURSEWORK_URL", "make release", "git push coursework student:main"]
START = ["git clone --origin course COURSEWORK_URL coursework", "cd coursework", "git remote add origin ALICE_URL",
         "git push -u origin main"]
FIX = ['git commit -am "Lesson 00: fix a typo"', "make release", "git push coursework student:main"]
PULL = ["git pull --no-rebase course main", "git push"]
MAKE_RELEASE = "$(PY) -m segedu.course.student_branch"  # the line of `make release` that writes the branch

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _documented(command: str) -> str:
    text = command.replace("COURSEWORK_URL", "https://github.com/your-course/coursework.git")
    text = text.replace("ALICE_URL", "git@github.com:alice/coursework.git")
    assert text in DOCS, f"INSTRUCTORS.md no longer documents {text!r}"
    return text


class Shell:
    """Runs the documented commands in temporary repositories, with a git configured for the test only."""

    def __init__(self, tmp_path: Path):
        self.urls = {"COURSEWORK_URL": str(tmp_path / "coursework.git"), "ALICE_URL": str(tmp_path / "alice.git")}
        # No global or system git configuration (signing, hooks, default branch); Python must not put the
        # repository folder first on sys.path (PYTHONSAFEPATH): it runs the installed segedu, as `make` does.
        self.env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
                    "GIT_TERMINAL_PROMPT": "0", "PYTHONSAFEPATH": "1"}
        for url in self.urls.values():
            # GitHub's new repositories: empty, default branch main
            self.git(Path(url).parent, "init", "--quiet", "--bare", "-b", "main", Path(url).name)

    def run(self, cwd: Path, args: list[str], check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(args, cwd=cwd, env=self.env, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed in {cwd}:\n{result.stdout}\n{result.stderr}")
        return result

    def git(self, cwd: Path, *args: str, check: bool = True) -> str:
        return self.run(cwd, ["git", *args], check).stdout.strip()

    def identity(self, repo: Path, name: str) -> None:
        self.git(repo, "config", "user.name", name)
        self.git(repo, "config", "user.email", f"{name}@example.org")

    def documented(self, cwd: Path, commands: list[str]) -> Path:
        """Run each documented command (``make release`` as its branch-writing line); returns the last cwd."""
        for command in commands:
            _documented(command)
            text = command
            for placeholder, url in self.urls.items():
                text = text.replace(placeholder, url)
            if text == "make release":
                self.run(cwd, [sys.executable, "-m", "segedu.course.student_branch"])
            elif text.startswith("cd "):
                cwd = cwd / text[3:]
            elif text.startswith("git commit -am"):
                self.git(cwd, "commit", "--quiet", "-am", text.split('"')[1])
            else:
                self.run(cwd, text.split())
        return cwd


def _instructor_repo(shell: Shell, tmp_path: Path) -> Path:
    """A small course: lesson 00 with its solution, a test holding a reference solution, the guide, and the
    package's manifest of the lesson, committed on `main`."""
    repo = tmp_path / "instructor"
    (repo / "lessons").mkdir(parents=True)
    shutil.copy(LESSON, repo / "lessons" / LESSON.name)
    (repo / "tests").mkdir()
    (repo / "tests" / "test_solution.py").write_text("REFERENCE = 'the answer'\n")
    (repo / "INSTRUCTORS.md").write_text("# for instructors\n")
    (repo / "README.md").write_text("# The course\n")
    (repo / "segedu" / "course").mkdir(parents=True)
    manifest = course.build_manifest(repo / "lessons")
    (repo / "segedu" / "course" / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    shell.git(tmp_path, "init", "--quiet", "-b", "main", "instructor")
    shell.identity(repo, "teacher")
    shell.git(repo, "add", ".")
    shell.git(repo, "commit", "--quiet", "-m", "The course")
    return repo


def _cells(text: str) -> list:
    return nbformat.reads(text, as_version=4).cells


def test_make_release_writes_the_branch():
    recipe = (ROOT / "Makefile").read_text().split("\nrelease:", 1)[1].split("\n\n", 1)[0]
    assert MAKE_RELEASE in recipe and "segedu release lessons --out release" in recipe


def test_a_fix_reaches_a_student_who_keeps_their_work(tmp_path):
    shell = Shell(tmp_path)
    repo = _instructor_repo(shell, tmp_path)
    (repo / "lessons" / LESSON.name).write_text((repo / "lessons" / LESSON.name).read_text().replace(
        "### END SOLUTION", "### END SOLUTION\\n    # an unfinished idea"))  # uncommitted: not released
    dirty = shell.git(repo, "status", "--porcelain")

    shell.documented(repo, PUBLISH)
    # The instructor's working tree, index and branch are as they were; the branch holds the release only.
    assert shell.git(repo, "status", "--porcelain") == dirty
    assert shell.git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    files = shell.git(repo, "ls-tree", "-r", "--name-only", "student").splitlines()
    assert sorted(files) == ["README.md", f"lessons/{LESSON.name}", "lessons/manifest.json",
                             "segedu/course/manifest.json"]
    released = shell.git(repo, "show", f"student:lessons/{LESSON.name}")
    assert "BEGIN SOLUTION" not in released and "unfinished idea" not in released
    assert shell.git(repo, "rev-list", "--count", "student") == "1"
    no_solution_in_history = ["git", "merge-base", "--is-ancestor", "main", "student"]
    assert shell.run(repo, no_solution_in_history, check=False).returncode == 1, "main is not in student's history"
    shell.git(repo, "checkout", "--quiet", "--", ".")  # the instructor drops the unfinished idea

    # A student starts from the published branch and solves the exercise (in JupyterLab: source and outputs).
    student = shell.documented(tmp_path, START[:3])
    shell.identity(student, "alice")
    shell.documented(student, START[3:])
    manifest = course.read_manifest(student / "lessons" / "manifest.json")
    exercise = next(e for e in manifest["lessons"][0]["exercises"] if e["exercise"] == "check_iou_from_confusion")
    path = student / "lessons" / LESSON.name
    nb = nbformat.read(path, as_version=4)
    solution = "def iou_from_confusion(matrix):\n    tp = matrix.double().diagonal()\n    return tp  # alice's try"
    for cell in nb.cells:
        if cell.id == exercise["exercise_cell"]:
            cell.source = solution
        if cell.id == exercise["check_cell"]:
            cell.execution_count = 7
            cell.outputs = [nbformat.v4.new_output("stream", text="check_iou_from_confusion: 9 cases - PASSED\n")]
    nbformat.write(nb, path)
    shell.git(student, "commit", "--quiet", "-am", "Lesson 00: my IoU")
    shell.git(student, "push", "--quiet")

    # The instructor fixes a typo in another cell, commits and releases again.
    lesson = repo / "lessons" / LESSON.name
    instructor_nb = nbformat.read(lesson, as_version=4)
    title = next(cell for cell in instructor_nb.cells if cell.source.startswith("# Lesson"))
    title.source = title.source.replace("\n", " (typo fixed)\n", 1)
    nbformat.write(instructor_nb, lesson)
    shell.documented(repo, FIX)
    assert shell.git(repo, "rev-list", "--count", "student") == "2"

    # The student pulls: their work and the fix, merged, and pushed to their own repository.
    shell.documented(student, PULL)
    merged = {cell.id: cell for cell in nbformat.read(path, as_version=4).cells}
    assert merged[exercise["exercise_cell"]].source == solution
    assert merged[exercise["check_cell"]].outputs[0]["text"].endswith("PASSED\n")
    assert merged[title.id].source == title.source
    assert "BEGIN SOLUTION" not in path.read_text()
    assert shell.git(student, "status", "--porcelain") == ""
    assert shell.git(student, "rev-parse", "HEAD") == shell.git(student, "rev-parse", "origin/main")


def test_an_unchanged_course_makes_no_commit_and_the_branch_refuses_what_would_leak(tmp_path):
    shell = Shell(tmp_path)
    repo = _instructor_repo(shell, tmp_path)
    make_release = [sys.executable, "-m", "segedu.course.student_branch"]
    first = shell.run(repo, make_release).stdout
    again = shell.run(repo, make_release).stdout
    assert "unchanged" in again and again.split()[1] == first.split()[1]

    # A check cell changed without `make manifest`: refused, the branch stays where it was.
    lesson = repo / "lessons" / LESSON.name
    lesson.write_text(lesson.read_text().replace("checks.check_iou_from_confusion(iou_from_confusion)",
                                                 "checks.check_iou_from_confusion(iou_from_confusion)  # run me"))
    shell.git(repo, "commit", "--quiet", "-am", "a check cell changed")
    before = shell.git(repo, "rev-parse", "student")
    result = shell.run(repo, make_release, check=False)
    assert result.returncode == 2 and "make manifest" in result.stderr and result.stderr.count("\n") == 1
    assert shell.git(repo, "rev-parse", "student") == before

    # The instructor's branch merged into `student` would hand out the solutions: refused.
    shell.git(repo, "checkout", "--quiet", "student")
    result = shell.run(repo, make_release, check=False)
    assert result.returncode == 2 and "checked out" in result.stderr
    shell.git(repo, "merge", "--quiet", "--allow-unrelated-histories", "-X", "theirs", "-m", "oops", "main")
    shell.git(repo, "checkout", "--quiet", "main")
    result = shell.run(repo, make_release, check=False)
    assert result.returncode == 2 and "contains the instructor commit" in result.stderr
