"""The package's house rules (DESIGN.md, "The package"), checked on the source with ``ast``.

* no module over 500 lines;
* no private name (``_x``) imported from another module, nor reached as ``module._x``;
* ``__all__`` in every public module, naming only what the module defines or imports;
* matplotlib only in ``viz`` and ``widgets``, ipywidgets only in ``widgets``;
* ``import segedu`` stays light (no torch).
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "segedu"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_LINES = 500  # DESIGN.md: "No module over 500 lines"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _resolve(path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` reads from (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_imports(path: Path) -> list[str]:
    """Every ``from segedu.x import _y`` and ``segedu_module._y`` in one file."""
    found = []
    segedu_aliases = {}  # local name -> segedu module it is bound to
    tree = _tree(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = _resolve(path, node)
            if not module.startswith("segedu"):
                continue
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"line {node.lineno}: from {module} import {alias.name}")
                else:
                    segedu_aliases[alias.asname or alias.name] = f"{module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("segedu"):
                    segedu_aliases[alias.asname or alias.name.split(".")[0]] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and _private(node.attr)
            and isinstance(node.value, ast.Name)
            and node.value.id in segedu_aliases
        ):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_private_import_detector_catches_both_forms(tmp_path):
    pkg = tmp_path / "segedu" / "sub"
    pkg.mkdir(parents=True)
    bad = pkg / "mod.py"
    bad.write_text("from segedu.ops.upsample import _pair\nfrom .other import _x, ok\nfrom segedu import viz\nviz._secret()\n")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        found = private_imports(bad)
    finally:
        ROOT = saved
    assert found == [
        "line 1: from segedu.ops.upsample import _pair",
        "line 2: from segedu.sub.other import _x",
        "line 4: viz._secret",
    ]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_is_at_most_500_lines(path):
    lines = path.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines; split it along an idea (DESIGN.md)"


def test_no_private_name_is_imported_across_modules():
    offences = {str(p.relative_to(ROOT)): private_imports(p) for p in MODULES}
    offences = {k: v for k, v in offences.items() if v}
    assert not offences, f"make these names public in a shared module instead: {offences}"


PUBLIC_MODULES = [p for p in MODULES if not _private(p.stem) or p.name == "__init__.py"]
PUBLIC_MODULES = [p for p in PUBLIC_MODULES if p.name != "__main__.py"]


@pytest.mark.parametrize("path", PUBLIC_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_public_module_declares_all(path):
    name = _module_name(path)
    module = importlib.import_module(name)
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    # a package's __all__ may name its submodules (``from segedu.models import *`` imports them)
    is_submodule = lambda n: path.name == "__init__.py" and (path.parent / f"{n}.py").exists()  # noqa: E731
    missing = [n for n in module.__all__ if not hasattr(module, n) and not is_submodule(n)]
    assert not missing, f"{name}.__all__ names what it does not define: {missing}"
    assert len(set(module.__all__)) == len(module.__all__), f"{name}.__all__ lists a name twice"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_matplotlib_and_ipywidgets_stay_in_the_view_modules():
    for path in MODULES:
        rel = path.relative_to(PACKAGE).as_posix()
        view = rel.startswith(("viz/", "widgets/"))  # the segedu.viz and segedu.widgets packages
        imported = _imports(path)
        if not view:
            assert "matplotlib" not in imported, f"{rel} imports matplotlib (only viz and widgets may)"
        if not rel.startswith("widgets/"):
            assert "ipywidgets" not in imported, f"{rel} imports ipywidgets (only widgets may)"


def test_import_segedu_is_light():
    code = "import sys, segedu; print(sorted(m for m in ('torch', 'matplotlib', 'ipywidgets') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", f"import segedu pulled in {out.stdout.strip()}"
