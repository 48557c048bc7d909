"""The project files agree with each other: pyproject, environment.yml, Makefile, CI."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_yml_agrees_with_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    project = _pyproject()["project"]
    assert env["name"] == "segedu"
    deps = env["dependencies"]
    python = [d for d in deps if isinstance(d, str) and d.startswith("python")]
    assert python, "environment.yml must pin a python version range"
    # same minimum Python as requires-python
    minimum = re.search(r">=\s*([\d.]+)", project["requires-python"]).group(1)
    assert python[0].replace(" ", "") == f"python>={minimum}"
    assert "pip" in deps
    pip_entries = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    # everything else comes from pyproject through pip: the student install (lab extra), editable
    assert pip_entries == ["-e .[lab]"]
    assert "lab" in project["optional-dependencies"]


def test_dependencies_are_ranges_not_pins():
    project = _pyproject()["project"]
    deps = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        deps += extra
    for dep in deps:
        name = re.split(r"[<>=!~\[ ;]", dep, maxsplit=1)[0]
        if name in {"torch", "torchvision"}:
            assert "==" not in dep, f"{dep}: torch and torchvision are taken by range"
    torch = next(d for d in project["dependencies"] if d.startswith("torch") and not d.startswith("torchvision"))
    floor = tuple(int(x) for x in re.search(r">=\s*(\d+)\.(\d+)", torch).groups())
    # torch < 2.6 lets a crafted file run code through torch.load(weights_only=True) (CVE-2025-32434)
    assert floor >= (2, 6), f"{torch}: checkpoints rely on weights_only=True, safe from torch 2.6"


def test_makefile_and_ci_use_the_two_commands():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("lab:", "test:", "course:", "release:", "bench:"):
        assert re.search(rf"^{target}", makefile, re.M), target
    assert "--nbval-lax" in makefile and "--nbval-current-env" in makefile
    assert "SEGEDU_PROFILE ?= quick" in makefile
    assert 'pip install -e ".[lab]"' in makefile and 'pip install -e ".[dev]"' in makefile
    assert re.search(r"^lab: install$", makefile, re.M) and re.search(r"^test: install-dev$", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_gives_the_install_measurements_and_the_cpu_wheels():
    readme = (ROOT / "README.md").read_text()
    assert "PYTHON=python3.12 make lab" in readme
    assert "--index-url https://download.pytorch.org/whl/cpu" in readme and "PIP_EXTRA_INDEX_URL" in readme
    for extra in ("[lab]", "[dev]"):
        row = rf"`\.?{re.escape(extra)}`[^\n]*\|\s*[\d.]+ GB\s*\|\s*\d+ s"  # | size | time |
        assert re.search(row, readme), f"README: the measured size and time of {extra}"
    assert "WSL" in readme and r".venv\Scripts\pip install -e .[lab]" in readme


def test_readme_lists_every_lesson():
    from segedu.course import lesson_index

    readme = (ROOT / "README.md").read_text()
    for lesson in lesson_index(ROOT / "lessons"):
        assert lesson.filename in readme, f"README's lesson map misses {lesson.filename}"


def test_lessons_are_committed_without_outputs():
    import json

    for path in sorted((ROOT / "lessons").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs"), f"{path.name} has outputs: strip them before committing"
                assert not cell.get("execution_count"), f"{path.name} has execution counts"
