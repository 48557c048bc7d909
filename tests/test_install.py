"""The extras (pyproject.toml): the base install is exactly what the lessons and the package import.

* every third-party package that a lesson's code cell or a ``segedu`` module imports is a base dependency,
  named directly (not reached through another package, which may drop it), and none is dev-only;
* what the tests and the benchmarks import is in the base or the ``dev`` extra;
* the student install (base + ``lab``) pulls in nothing that is dev-only, nothing to compile included.

Import names map to distributions with ``importlib.metadata.packages_distributions()`` (``PIL`` -> pillow,
``yaml`` -> PyYAML), so this checks the environment the tests run in, where everything is installed.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import json
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _normalize(name: str) -> str:
    """PEP 503: ``jupyter_client``, ``Jupyter-Client`` and ``jupyter.client`` are one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(requirements: list[str]) -> set[str]:
    return {_normalize(Requirement(r).name) for r in requirements} - {"segedu"}


BASE = _names(PROJECT["dependencies"])
LAB = _names(PROJECT["optional-dependencies"]["lab"])
DEV = _names(PROJECT["optional-dependencies"]["dev"])
DEV_ONLY = DEV - BASE - LAB
DISTRIBUTIONS = {name: {_normalize(d) for d in dists} for name, dists in metadata.packages_distributions().items()}


def imported_modules(source: str, filename: str = "<source>") -> dict[str, int]:
    """Top-level names of the absolute imports in ``source`` -> the first line importing each."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            found.setdefault(name.split(".")[0], node.lineno)
    return found


def cell_code(source: str) -> str | None:
    """A code cell's Python: shell (``!pip``) and line-magic (``%pip``) lines blanked, keeping line numbers;
    ``None`` for a cell magic (``%%bash``), which is not Python."""
    if source.lstrip().startswith("%%"):
        return None
    return "\n".join("" if line.lstrip().startswith(("!", "%")) else line for line in source.splitlines())


def third_party(found: dict[str, int]) -> dict[str, int]:
    return {
        name: line
        for name, line in found.items()
        if name not in sys.stdlib_module_names and name not in ("__future__", "segedu")
    }


def lesson_imports() -> dict[str, dict[str, int]]:
    """``{"lessons/07_x.ipynb cell 12": {"torch": 3, ...}}`` over every code cell of every lesson."""
    result = {}
    for path in sorted((ROOT / "lessons").glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        for index, cell in enumerate(cells):
            if cell["cell_type"] != "code":
                continue
            source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            code = cell_code(source)
            if code is not None:
                result[f"{path.relative_to(ROOT)} cell {index}"] = imported_modules(code, path.name)
    return result


def package_imports(folder: str) -> dict[str, dict[str, int]]:
    return {
        str(path.relative_to(ROOT)): imported_modules(path.read_text(encoding="utf-8"), str(path))
        for path in sorted((ROOT / folder).rglob("*.py"))
    }


def undeclared(imports: dict[str, dict[str, int]], allowed: set[str], local: set[str] = frozenset()) -> list[str]:
    """Each import whose distribution is not in ``allowed``, as ``"where line N: name (distribution)"``."""
    problems = []
    for where, found in imports.items():
        for name, line in sorted(third_party(found).items()):
            if name in local:
                continue
            dists = DISTRIBUTIONS.get(name)
            if not dists:
                problems.append(f"{where} line {line}: {name} (no installed distribution provides it)")
            elif not dists & allowed:
                kind = "dev-only" if dists & DEV_ONLY else "undeclared"
                problems.append(f"{where} line {line}: {name} ({kind}: {', '.join(sorted(dists))})")
    return problems


def test_the_checker_reads_cells_and_modules():
    assert third_party(imported_modules("import os, torch.nn\nfrom PIL import Image\nfrom . import x\n")) == {
        "torch": 1,
        "PIL": 2,
    }
    assert cell_code("!pip install x\n%matplotlib inline\nimport numpy") == "\n\nimport numpy"
    assert cell_code("%%bash\nls") is None
    imports = {"lessons/x.ipynb cell 0": {"pydensecrf": 1, "numpy": 2, "nonexistent_module_xyz": 3}}
    problems = undeclared(imports, BASE)
    assert any("pydensecrf (dev-only: pydensecrf2)" in p for p in problems)
    assert any("nonexistent_module_xyz" in p for p in problems)
    assert not any("numpy" in p for p in problems)


def test_lessons_import_only_base_dependencies():
    imports = lesson_imports()
    assert len(imports) > 100, "the lessons' code cells were not found"
    problems = undeclared(imports, BASE)
    assert not problems, "a lesson imports a package that the student install lacks (add it to `dependencies` " \
        "in pyproject.toml, or do without it):\n" + "\n".join(problems)


def test_the_package_imports_only_base_dependencies():
    problems = undeclared(package_imports("segedu"), BASE)
    assert not problems, "segedu imports a package that is not a base dependency in pyproject.toml:\n" + "\n".join(
        problems
    )


def test_tests_and_benchmarks_import_only_declared_packages():
    local = {p.stem for folder in ("tests", "bench") for p in (ROOT / folder).rglob("*.py")}
    imports = {**package_imports("tests"), **package_imports("bench")}
    problems = undeclared(imports, BASE | LAB | DEV, local=local)
    assert not problems, "add these to the dev extra in pyproject.toml:\n" + "\n".join(problems)


def _closure(requirements: list[str]) -> set[str]:
    """The installed distributions that ``requirements`` pull in, through every level, extras included."""
    seen: set[tuple[str, frozenset[str]]] = set()
    names: set[str] = set()
    todo = [(Requirement(r), frozenset()) for r in requirements]
    while todo:
        requirement, parent_extras = todo.pop()
        marker = requirement.marker
        if marker is not None and not any(marker.evaluate({"extra": e}) for e in (parent_extras or {""})):
            continue
        name, extras = _normalize(requirement.name), frozenset(requirement.extras)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        names.add(name)
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            continue  # not for this platform or Python; its own markers said so above, or it is optional
        todo += [(Requirement(r), extras) for r in requires]
    return names


def test_the_student_install_has_nothing_dev_only():
    student = _closure(["segedu[lab]"])
    assert {"torch", "jupyterlab", "ipykernel", "nbclient"} <= student
    # pydensecrf2 builds C++ from source (no wheels for Windows or macOS); the others are test tools
    for package in ("pydensecrf2", "pycocotools", "playwright", "segmentation-models-pytorch", "pytest", "nbval"):
        assert package in DEV_ONLY, f"{package} belongs to the dev extra only"
    # Small general libraries that JupyterLab needs anyway: the dev extra names them because tests import them.
    shared_with_jupyter = {"packaging", "pyyaml"}
    pulled = student & (DEV_ONLY - shared_with_jupyter)
    assert not pulled, f"the student install pulls in dev-only packages: {sorted(pulled)}"


@pytest.mark.parametrize("extra", ["lab", "dev"])
def test_extras_build_on_each_other(extra):
    assert "jupyterlab" in LAB and "ipykernel" in LAB | BASE
    if extra == "dev":
        assert "segedu[lab]" in PROJECT["optional-dependencies"]["dev"], "dev includes lab: `make test` runs JupyterLab"
