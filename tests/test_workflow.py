"""The student repositories' CI, `.github/workflows/coursework.yml`: valid YAML, triggered once per change (on
push, not also on pull request), pinned actions, the student install (no test-only packages), a check that is
green unless an attempted exercise fails, and every command it runs exists here (make targets, `python -m segedu`
sub-commands and their arguments, programs, paths). GitHub cannot be run in a test; this is what can go wrong
offline."""

import glob
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from segedu.__main__ import build_parser

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "coursework.yml"
SHELL_BUILTINS = {"echo", "cd", "test", "export", "set", "true", "false", "["}


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _steps() -> list[dict]:
    return [step for job in _workflow()["jobs"].values() for step in job["steps"]]


def _commands() -> list[list[str]]:
    """Every simple command of every `run:` block, as words (redirections and what follows them dropped)."""
    commands = []
    for step in _steps():
        for line in step.get("run", "").splitlines():
            for part in re.split(r"&&|\|\||;", line):
                words = shlex.split(part, comments=True)
                for i, word in enumerate(words):
                    if word.startswith(">") or word.startswith("<"):
                        words = words[:i]
                        break
                if words:
                    commands.append(words)
    return commands


def _make_targets() -> set[str]:
    targets = set()
    for line in (ROOT / "Makefile").read_text().splitlines():
        match = re.match(r"^([A-Za-z][\w .-]*):(?!=)", line)
        if match:
            targets.update(match.group(1).split())
    return targets


def test_workflow_is_valid_yaml_with_jobs_and_steps():
    workflow = _workflow()
    assert workflow["name"] and workflow["jobs"]
    for name, job in workflow["jobs"].items():
        assert job["runs-on"].startswith("ubuntu"), name
        assert job["steps"], name
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), f"a step has either `uses` or `run`: {step}"


def test_workflow_runs_once_per_change():
    workflow = _workflow()
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads the key `on` as True
    assert set(triggers) == {"push", "workflow_dispatch"}, "push only: a pull request's commits are pushes already"
    assert "cancel-in-progress" in str(workflow["concurrency"])


def test_actions_are_pinned_to_a_major_version():
    uses = [step["uses"] for step in _steps() if "uses" in step]
    assert {u.split("@")[0] for u in uses} >= {"actions/checkout", "actions/setup-python", "actions/upload-artifact"}
    for action in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", action), f"pin {action} to a major version (name@vN)"


def test_python_is_311_and_the_profile_is_quick():
    setup = next(step for step in _steps() if step.get("uses", "").startswith("actions/setup-python"))
    assert str(setup["with"]["python-version"]) == "3.11"
    env = next(iter(_workflow()["jobs"].values()))["env"]
    assert env["SEGEDU_PROFILE"] == "quick"


def test_install_is_the_student_install():
    """`make install` installs the `lab` extra, never `dev` (pydensecrf2's compile, Playwright, ...)."""
    assert ["make", "install"] in _commands()
    assert "make install" in (ROOT / "README.md").read_text()
    dry = subprocess.run(["make", "-n", "install", "VENV=/nonexistent/venv"], capture_output=True, text=True, cwd=ROOT)
    assert dry.returncode == 0, dry.stderr
    assert re.search(r"pip install -e \"?\.\[lab\]", dry.stdout), dry.stdout
    assert "[dev]" not in dry.stdout


def test_the_summary_is_written_shown_and_uploaded_even_on_failure():
    steps = _steps()
    check = next(s for s in steps if "segedu check" in s.get("run", ""))
    assert "--summary summary.md" in check["run"]  # the lessons: check's default, lessons/*.ipynb
    shown = next(s for s in steps if "GITHUB_STEP_SUMMARY" in s.get("run", ""))
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert "summary.md" in shown["run"] and upload["with"]["path"] == "summary.md"
    for step in (shown, upload):
        assert step["if"].startswith("always()"), "the table matters most when the check fails"
    assert steps.index(check) < steps.index(shown) < steps.index(upload)


def test_green_unless_an_attempted_exercise_fails():
    """Not attempted yet is not red; failed, error, timeout, tampered and missing are (exit code 1)."""
    check = next(s for s in _steps() if "segedu check" in s.get("run", ""))
    assert "--ignore-not-attempted" in check["run"]
    assert "continue-on-error" not in check and "|| true" not in check["run"]


def test_every_command_exists():
    segedu = build_parser()
    sub_commands = next(a for a in segedu._actions if a.dest == "command").choices
    seen_segedu = False
    for words in _commands():
        program = words[0]
        if program == "make":
            missing = set(words[1:]) - _make_targets()
            assert not missing, f"{' '.join(words)}: no such make target {missing}"
        elif program in ("python", ".venv/bin/python") and words[1:3] == ["-m", "segedu"]:
            seen_segedu = True
            assert words[3] in sub_commands, f"{' '.join(words)}: no sub-command {words[3]!r}"
            args = []
            for word in words[3:]:  # the shell expands globs: so do we, and a pattern must match something
                if any(ch in word for ch in "*?["):
                    matches = sorted(glob.glob(word, root_dir=ROOT))
                    assert matches, f"{word} matches no file in the repository"
                    args += matches
                else:
                    args.append(word)
            try:
                parsed = segedu.parse_args(args)
            except SystemExit:
                pytest.fail(f"`{' '.join(words)}` is not a valid segedu command line")
            for notebook in getattr(parsed, "notebooks", []):
                assert (ROOT / notebook).exists(), notebook
        else:
            assert program in SHELL_BUILTINS or shutil.which(program), f"{program}: no such program"
    assert seen_segedu, "the workflow must run `python -m segedu check`"
