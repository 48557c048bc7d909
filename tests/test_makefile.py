"""The Makefile's install: Python >= 3.11 checked before .venv exists, a wrong .venv rebuilt, two stamps.

Each test copies the Makefile into a temporary folder and runs ``make`` there with fake interpreters: a
script that answers ``-c CODE`` by running the code with ``sys.version_info`` set to the version it plays,
``-m venv DIR`` by writing a fake of its own version to ``DIR/bin/python``, and ``-m pip ...`` by doing
nothing. Every call is logged, so the tests see which interpreter ran what, and nothing is installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")

FAKE = """\
#!{python}
import json, os, stat, sys
VERSION = {version!r}
args = sys.argv[1:]
with open({log!r}, "a") as log:
    log.write(json.dumps({{"python": sys.argv[0], "version": VERSION, "args": args}}) + "\\n")
if args[:1] == ["-c"]:
    class VersionInfo(tuple):
        major, minor, micro = (property(lambda self, i=i: self[i]) for i in range(3))
    sys.version_info = VersionInfo((*VERSION, "final", 0))
    sys.version = "%d.%d.%d (fake)" % VERSION
    exec(args[1], {{"__name__": "__main__"}})
elif args == ["--version"]:
    print("Python %d.%d.%d" % VERSION)
elif args[:2] == ["-m", "venv"]:
    bin_dir = os.path.join(args[2], "bin")
    os.makedirs(bin_dir, exist_ok=True)
    with open(__file__) as me, open(os.path.join(bin_dir, "python"), "w") as copy:
        copy.write(me.read())
    os.chmod(os.path.join(bin_dir, "python"), stat.S_IRWXU)
elif args[:2] == ["-m", "pip"]:
    pass  # an install that installs nothing
else:
    sys.exit("fake python: unexpected arguments %r" % (args,))
"""


class Project:
    """A temporary folder with the real Makefile, a pyproject.toml and fake interpreters."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log = root / "calls.jsonl"
        shutil.copy(ROOT / "Makefile", root / "Makefile")
        (root / "pyproject.toml").write_text("[project]\nname = 'fake'\n")
        self.age(root / "pyproject.toml")
        self.bin = root / "bin"
        self.bin.mkdir()

    def fake_python(self, version: tuple[int, int, int], path: Path | None = None) -> Path:
        path = path or self.bin / f"python{version[0]}.{version[1]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(FAKE.format(python=sys.executable, version=version, log=str(self.log)))
        path.chmod(0o755)
        return path

    @staticmethod
    def age(path: Path, seconds: int = 3600) -> None:
        """Make ``path`` older than anything written now (stamps must be newer than pyproject.toml)."""
        old = path.stat().st_mtime - seconds
        os.utime(path, (old, old))

    def make(self, *args: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
        env.pop("PYTHON", None)
        env.pop("VENV", None)
        return subprocess.run(["make", "--no-print-directory", *args], cwd=self.root, env=env,
                              capture_output=True, text=True, timeout=120)

    def calls(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def commands(self) -> list[tuple[str, tuple[int, ...], list[str]]]:
        """(which python, its version, its arguments) of every call but the version queries."""
        def where(python: str) -> str:  # make runs $(PYTHON) by its absolute path, $(PY) as .venv/bin/python
            return str(Path(python).relative_to(self.root)) if Path(python).is_absolute() else python

        return [
            (where(c["python"]), tuple(c["version"]), c["args"])
            for c in self.calls()
            if c["args"][:1] != ["-c"]
        ]


@pytest.fixture
def project(tmp_path):
    return Project(tmp_path)


@pytest.mark.parametrize("target", ["install", "lab", "test"])
def test_an_old_python_is_refused_before_venv_exists(project, target):
    old = project.fake_python((3, 9, 18))
    result = project.make(target, f"PYTHON={old}")
    assert result.returncode != 0
    assert "segedu needs Python >= 3.11, found Python 3.9.18" in result.stderr
    assert "PYTHON=python3.12 make lab" in result.stderr, "say how to pick another interpreter"
    assert not (project.root / ".venv").exists()
    assert project.commands() == [], "nothing but the version check ran"


def test_a_missing_python_is_named(project):
    result = project.make("install", "PYTHON=/nonexistent/python3")
    assert result.returncode != 0
    assert "found no working Python (PYTHON=/nonexistent/python3)" in result.stderr
    assert not (project.root / ".venv").exists()


def test_a_dry_run_creates_nothing(project):
    old = project.fake_python((3, 9, 18))
    result = project.make("-n", "lab", f"PYTHON={old}")
    assert result.returncode == 0, result.stderr
    assert "-m venv .venv" in result.stdout and 'pip install -e ".[lab]"' in result.stdout
    assert not (project.root / ".venv").exists()


def test_a_good_python_creates_venv_and_installs_the_lab_extra(project):
    good = project.fake_python((3, 12, 4))
    result = project.make("install", f"PYTHON={good}")
    assert result.returncode == 0, result.stderr
    venv_python = ".venv/bin/python"
    assert project.commands() == [
        ("bin/python3.12", (3, 12, 4), ["-m", "venv", ".venv"]),
        (venv_python, (3, 12, 4), ["-m", "pip", "install", "--quiet", "--upgrade", "pip"]),
        (venv_python, (3, 12, 4), ["-m", "pip", "install", "-e", ".[lab]"]),
    ]
    assert (project.root / ".venv" / ".segedu-lab").is_file()


@pytest.mark.parametrize("state", ["old", "broken", "no python"])
def test_a_wrong_venv_is_rebuilt(project, state):
    venv = project.root / ".venv"
    if state == "old":  # made by python3.9: its install failed, but the stamps say it is done
        project.fake_python((3, 9, 18), venv / "bin" / "python")
    elif state == "broken":  # an interpreter that no longer runs
        (venv / "bin").mkdir(parents=True)
        (venv / "bin" / "python").write_text("#!/nonexistent/python3.11\n")
        (venv / "bin" / "python").chmod(0o755)
    else:
        venv.mkdir()
    (venv / "left-over").write_text("from the old .venv")
    for stamp in (".segedu-lab", ".segedu-dev"):
        (venv / stamp).touch()  # newer than pyproject.toml: only the interpreter check can notice
    good = project.fake_python((3, 12, 4))
    result = project.make("install", f"PYTHON={good}")
    assert result.returncode == 0, result.stderr
    assert "rebuilding it" in result.stdout
    assert not (venv / "left-over").exists(), "the old .venv is removed, not patched"
    commands = project.commands()
    assert ("bin/python3.12", (3, 12, 4), ["-m", "venv", ".venv"]) in commands
    assert commands[-1] == (".venv/bin/python", (3, 12, 4), ["-m", "pip", "install", "-e", ".[lab]"])


def test_an_old_venv_is_kept_when_the_new_python_is_old_too(project):
    venv_python = project.fake_python((3, 9, 18), project.root / ".venv" / "bin" / "python")
    result = project.make("install", f"PYTHON={project.fake_python((3, 10, 2))}")
    assert result.returncode != 0 and "found Python 3.10.2" in result.stderr
    assert venv_python.exists(), "nothing is removed before a working interpreter is found"


def test_two_stamps_lab_then_dev_then_lab(project):
    good = project.fake_python((3, 12, 4))
    assert project.make("lab", f"PYTHON={good}", "VENV=.venv").returncode != 0  # no jupyter in the fake venv
    project.log.unlink()
    assert project.make("install-dev", f"PYTHON={good}").returncode == 0
    assert [c[2] for c in project.commands()][-1] == ["-m", "pip", "install", "-e", ".[dev]"], "dev is added"
    project.log.unlink()
    assert project.make("install", f"PYTHON={good}").returncode == 0
    assert project.make("install-dev", f"PYTHON={good}").returncode == 0
    assert project.commands() == [], "the dev install includes the lab one: nothing to do"
    # a changed pyproject.toml makes both stale
    (project.root / "pyproject.toml").write_text("[project]\nname = 'fake'\nversion = '2'\n")
    assert project.make("install", f"PYTHON={good}").returncode == 0
    assert [c[2] for c in project.commands()][-1] == ["-m", "pip", "install", "-e", ".[lab]"]


def test_the_make_targets_install_the_right_extra():
    text = (ROOT / "Makefile").read_text()
    rules = {line.split(":")[0]: line.split(":", 1)[1].strip() for line in text.splitlines()
             if line and not line[0].isspace() and ":" in line and "=" not in line.split(":")[0]}
    assert rules["lab"] == "install" and rules["install venv"] == "$(STAMP_LAB)"
    for target in ("test", "unit", "lessons"):
        assert rules[target] == "install-dev", target
    assert rules["bench"] == "$(STAMP_DEV)"
    assert textwrap.dedent("""\
        $(STAMP_DEV): pyproject.toml $(VENV_REBUILD)
        \t$(PY) -m pip install --quiet --upgrade pip
        \t$(PY) -m pip install -e ".[dev]"
        \t@touch $@ $(STAMP_LAB)""") in text
