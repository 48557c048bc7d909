"""Run every benchmark script in bench/ (each writes its JSON to bench/results/).

    python bench/run_all.py            # all of them, on the default device
    python bench/run_all.py shapes     # only bench/shapes.py
    (then bench/report.py rewrites bench/README.md from every bench/results/*.json)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOT_BENCHMARKS = {"run_all", "common", "report"}  # this runner, the shared helper, the README writer


def main(argv: list[str]) -> int:
    scripts = sorted(p for p in HERE.glob("*.py") if p.stem not in NOT_BENCHMARKS)
    if argv:
        scripts = [p for p in scripts if p.stem in argv]
    failed = []
    for script in [*scripts, HERE / "report.py"]:  # the report last: it tabulates what the others wrote
        print(f"== {script.name}", flush=True)
        if subprocess.run([sys.executable, str(script)]).returncode != 0:
            failed.append(script.name)
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
