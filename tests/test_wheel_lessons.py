"""A lesson runs from the built wheel with only ``lessons/`` copied, as on Colab or a JupyterHub image.

The wheel is built from a copy of the package's sources, installed (without dependencies) into a fresh
virtual environment, and lesson 11 - the one that reads the VOC-layout sample - runs in a folder outside the
repository, in a kernel started by that environment's interpreter. The heavy dependencies (torch, ...) are
not installed again: a ``.pth`` file added *after* the install appends this environment's site-packages to
the new one's ``sys.path``. Python runs ``.pth`` files only in a site directory, so the editable install's
import hook in there stays off and ``import segedu`` finds the wheel's copy (asserted, from inside the
kernel). Takes lesson 11's own run time (quick profile) plus about 20 s: 6 minutes in all, measured on a
busy 2-core machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSON = "11_capstone.ipynb"

RUNNER = r"""
import json, sys
import nbformat
from nbclient import NotebookClient

path, report = sys.argv[1], sys.argv[2]
nb = nbformat.read(path, as_version=4)
nb.cells.append(nbformat.v4.new_code_cell(
    "import json, segedu, sys\nprint('WHERE ' + json.dumps([segedu.__file__, sys.executable]))"))
client = NotebookClient(nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": sys.argv[3]}})
error = None
try:
    client.execute()
except Exception as exc:  # CellExecutionError names the cell and the traceback
    error = f"{type(exc).__name__}: {exc}"
where = [o.get("text", "") for o in nb.cells[-1].get("outputs", []) if o.get("output_type") == "stream"]
with open(report, "w") as f:
    json.dump({"error": error, "where": "".join(where)}, f)
"""


def _run(command: list, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    output = f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{output}"
    return result


def _build_wheel(tmp_path: Path) -> Path:
    """The wheel of a copy of the sources (no build folder, no egg-info left in the checkout)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "segedu", source / "segedu", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path / "dist"
    # --no-build-isolation: setuptools from this environment, instead of fetching it for a throwaway one
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
          "-w", str(dist), str(source)], timeout=300)
    (wheel,) = dist.glob("segedu-*.whl")
    return wheel


@pytest.mark.slow
def test_lesson_11_runs_from_the_wheel_outside_the_repository(tmp_path):
    wheel = _build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.startswith(("data/", "lessons/", "tests/"))], "the wheel holds only segedu/"
    package_data = sorted(
        str(p.relative_to(ROOT)).replace(os.sep, "/")
        for p in (ROOT / "segedu").rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc")
    )
    assert set(package_data) <= set(names), "a file the package reads is missing from the wheel (package-data)"
    assert wheel.stat().st_size < 1024 * 1024, f"the wheel is {wheel.stat().st_size / 2**20:.1f} MB"

    # A fresh environment holding the wheel, then this one's packages behind it.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=120)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "--quiet",
          str(wheel)], timeout=300)
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "zz_segedu_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    # Only lessons/ copied, into a folder outside the repository; a kernel of the new environment.
    work = tmp_path / "student"
    shutil.copytree(ROOT / "lessons", work / "lessons", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    kernel = tmp_path / "jupyter" / "kernels" / "python3"
    kernel.mkdir(parents=True)
    (kernel / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "segedu wheel", "language": "python",
    }))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(
        SEGEDU_PROFILE="quick", OMP_NUM_THREADS="1", TQDM_MININTERVAL="10",
        JUPYTER_PATH=str(tmp_path / "jupyter"),  # before the user's and the system's kernels
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),  # where the package writes the data it generates
    )
    runner = tmp_path / "run_lesson.py"
    runner.write_text(RUNNER)
    report = tmp_path / "report.json"
    _run([str(python), str(runner), str(work / "lessons" / LESSON), str(report), str(work / "lessons")],
         cwd=work, env=env, timeout=1800)
    outcome = json.loads(report.read_text())
    assert outcome["error"] is None, f"{LESSON} failed outside the repository:\n{outcome['error'][-4000:]}"

    segedu_file, executable = json.loads(outcome["where"].removeprefix("WHERE ").strip())
    assert Path(segedu_file).is_relative_to(site), f"the lesson imported {segedu_file}, not the wheel's copy"
    assert Path(executable).parent == python.parent
    assert not Path(segedu_file).is_relative_to(ROOT)
    generated = list((tmp_path / "cache" / "segedu").glob("shapes-voc-mini-*"))
    assert generated, "the lesson's VOC sample was not generated into the user's cache"
