"""The ``student`` branch: the course as students get it, with a git history of its own (``make release``).

Each release is one commit on the branch ``student`` of the instructor's repository: the tree of an
instructor commit (``HEAD`` by default) with the lessons replaced by their student release (and its
``manifest.json``) and the instructor-only paths removed (``tests/`` holds reference solutions). The parent is
the previous release, never an instructor commit, so the branch's history holds no solution. Students'
repositories start from that branch and keep its history; a fix then reaches them with
``git pull --no-rebase course main``, which merges it with their work (INSTRUCTORS.md, section 2).

It is written with git plumbing (a temporary index, ``commit-tree``, ``update-ref``): the instructor's working
tree, index and checked-out branch are left as they are, and the release is made from what is committed.

    python -m segedu.course.student_branch [--repo .] [--branch student] [--source HEAD] [-m MESSAGE]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from segedu.course.release import ReleaseError, release

__all__ = ["INSTRUCTOR_PATHS", "write_student_branch", "main"]

# Never in a student's repository: reference solutions (tests/), the benchmarks, the instructors' CI and guide.
INSTRUCTOR_PATHS = ("tests", "bench", ".ci", "INSTRUCTORS.md")
SHIPPED_MANIFEST = "segedu/course/manifest.json"


def _git(repo: Path, *args: str, env: dict | None = None, input: bytes | None = None, check: bool = True) -> str:
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, env=env, input=input)
    if check and result.returncode != 0:
        raise ReleaseError(f"git {' '.join(args[:3])} failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout.decode(errors="replace").strip()


def _extract(repo: Path, commit: str, folder: str, into: Path) -> Path:
    """``folder`` of ``commit`` unpacked under ``into`` (``git archive``: what is committed, not the work tree)."""
    archive = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", commit, "--", folder],
                             capture_output=True)
    if archive.returncode != 0:
        raise ReleaseError(f"{folder}/ is not in {commit[:12]}: {archive.stderr.decode(errors='replace').strip()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        if hasattr(tarfile, "data_filter"):  # Python 3.11.4+: refuse links and paths outside `into`
            tar.extractall(into, filter="data")
        else:  # the archive comes from the instructor's own repository
            tar.extractall(into)
    return into / folder


def write_student_branch(repo: str | Path = ".", branch: str = "student", lessons: str = "lessons",
                         source: str = "HEAD", message: str | None = None,
                         remove: tuple[str, ...] = INSTRUCTOR_PATHS) -> tuple[str, bool]:
    """Commit the student release of ``source`` onto ``branch`` of ``repo``; returns ``(commit, changed)``.

    The new commit's tree is ``source``'s with every ``lessons/*.ipynb`` replaced by its release, the release's
    ``lessons/manifest.json`` added and the ``remove`` paths dropped; its parent is the branch's previous
    commit. When nothing changed, no commit is made and ``changed`` is false. Raises ``ReleaseError`` when a
    lesson does not convert (nothing is written), when ``segedu/course/manifest.json`` in ``source`` is stale
    (run ``make manifest`` and commit), when ``branch`` is checked out, or when its history holds ``source``
    (an instructor commit merged into the student branch would hand out the solutions).
    """
    repo = Path(repo)
    commit = _git(repo, "rev-parse", "--verify", f"{source}^{{commit}}")
    ref = f"refs/heads/{branch}"
    if _git(repo, "symbolic-ref", "-q", "HEAD", check=False) == ref:
        raise ReleaseError(f"{branch} is checked out here; check out the instructor branch first")
    parent = _git(repo, "rev-parse", "--verify", "-q", ref, check=False) or None
    if parent and subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor", commit, parent]).returncode == 0:
        raise ReleaseError(f"{branch} contains the instructor commit {commit[:12]} (and so its solutions): "
                           f"rebuild it from scratch (git branch -D {branch})")

    with tempfile.TemporaryDirectory(prefix="segedu-student-") as tmp:
        tmp = Path(tmp)
        out = tmp / "release"
        release(_extract(repo, commit, lessons, tmp / "source"), out)
        shipped = _git(repo, "cat-file", "-p", f"{commit}:{SHIPPED_MANIFEST}", check=False)
        built = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        if shipped and json.loads(shipped) != built:
            raise ReleaseError(f"{SHIPPED_MANIFEST} in {commit[:12]} differs from the manifest of {lessons}/ "
                               f"(a check cell changed): run `make manifest`, commit, and release again")

        # A temporary index: the instructor's own index and working tree are never touched.
        env = {**os.environ, "GIT_INDEX_FILE": str(tmp / "index")}
        _git(repo, "read-tree", commit, env=env)
        tracked = _git(repo, "ls-files", "-z", env=env).split("\0")
        stale = [path for path in tracked if path and (
            PurePosixPath(path).parent == PurePosixPath(lessons) and path.endswith(".ipynb")
            or any(path == top or path.startswith(f"{top}/") for top in remove))]
        if stale:
            _git(repo, "update-index", "--force-remove", "-z", "--stdin", env=env,
                 input="".join(f"{path}\0" for path in stale).encode())
        for file in sorted(out.iterdir()):
            blob = _git(repo, "hash-object", "-w", "--no-filters", "--", str(file))
            _git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{lessons}/{file.name}", env=env)
        tree = _git(repo, "write-tree", env=env)

    if parent and _git(repo, "rev-parse", f"{parent}^{{tree}}") == tree:
        return parent, False
    text = message or f"Course release from {commit[:12]}"
    new = _git(repo, "commit-tree", tree, *(["-p", parent] if parent else []), "-m", text)
    _git(repo, "update-ref", "-m", f"segedu student branch: {text}", ref, new, parent or "")
    return new, True


def main(argv: list[str] | None = None) -> int:
    """``python -m segedu.course.student_branch``: exit 0 with the branch's commit, 2 with one line on refusal."""
    parser = argparse.ArgumentParser(prog="python -m segedu.course.student_branch",
                                     description="commit the student release onto the student branch")
    parser.add_argument("--repo", default=".", help="the instructor's repository (default: here)")
    parser.add_argument("--branch", default="student", help="the branch students' repositories track")
    parser.add_argument("--lessons", default="lessons", help="folder of instructor notebooks in the repository")
    parser.add_argument("--source", default="HEAD", help="the instructor commit to release (default: HEAD)")
    parser.add_argument("-m", "--message", help="commit message (default: 'Course release from <commit>')")
    args = parser.parse_args(argv)
    try:
        commit, changed = write_student_branch(args.repo, args.branch, args.lessons, args.source, args.message)
    except (ValueError, OSError) as error:
        print(f"python -m segedu.course.student_branch: error: {error}", file=sys.stderr)
        return 2
    print(f"{args.branch}: {commit[:12]}" + ("" if changed else " (unchanged: nothing new to release)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
