"""bench/seeds.py and its record: every trained-model comparison of the lessons measured over >= 5 seeds, and
each lesson following the verdict (one seed only when mean - margin >= 3 std; else several seeds, asserting on
their mean and worst seed)."""

import importlib
import importlib.util
import json
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
SEEDS_JSON = ROOT / "bench" / "results" / "seeds.json"


def _seeds_module():
    spec = importlib.util.spec_from_file_location("bench_seeds", ROOT / "bench" / "seeds.py")
    module = importlib.util.module_from_spec(spec)
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    spec.loader.exec_module(module)
    return module


def test_rescore_follows_a_changed_margin(tmp_path, monkeypatch):
    seeds = _seeds_module()
    key, (lesson, claim) = next(iter(seeds.registered().items()))
    differences = [0.30, 0.25, 0.35, 0.28, 0.32]
    row = {"comparison": key, "lesson": lesson, "better": claim.better, "worse": claim.worse, "margin": -5.0,
           "seeds": list(range(5)), "differences": differences, **seeds.verdict(differences, -5.0)}
    other = {**row, "comparison": "lesson99/gone"}  # no longer registered: left as it is
    path = tmp_path / "seeds.json"
    path.write_text(json.dumps({"results": [row, other]}))
    assert seeds.rescore(path) == [key]
    rescored, kept = json.loads(path.read_text())["results"]
    assert rescored == {**row, "margin": claim.margin, **seeds.verdict(differences, claim.margin)} and kept == other
    assert seeds.rescore(path) == []  # nothing left to change
    path.write_text(json.dumps({"results": [{**row, "better": "another metric"}]}))
    with pytest.raises(SystemExit, match="another metric"):
        seeds.rescore(path)


def test_verdict_rule():
    seeds = _seeds_module()
    steady = seeds.verdict([0.30, 0.31, 0.29, 0.30, 0.30], margin=0.05)
    assert steady["one_seed_enough"] and steady["holds_on_every_seed"]
    noisy = seeds.verdict([0.30, 0.02, 0.25, 0.10, 0.20], margin=0.05)
    assert not noisy["one_seed_enough"] and not noisy["holds_on_every_seed"]
    assert noisy["worst"] == 0.02 and abs(noisy["mean"] - 0.174) < 1e-12
    few = seeds.verdict([0.3, 0.3, 0.3], margin=0.0)   # too few seeds to tell
    assert not few["one_seed_enough"]


def test_every_registered_comparison_is_measured_over_five_seeds():
    seeds = _seeds_module()
    assert SEEDS_JSON.exists(), "run `python bench/seeds.py` (it writes bench/results/seeds.json)"
    rows = {row["comparison"]: row for row in json.loads(SEEDS_JSON.read_text())["results"]}
    missing = sorted(set(seeds.registered()) - set(rows))
    assert not missing, f"comparisons without a measured spread (run bench/seeds.py --only ...): {missing}"
    found = seeds.registered()
    assert not set(rows) - set(found), f"rows for comparisons no longer registered: {sorted(set(rows) - set(found))}"
    for key, row in rows.items():
        assert len(set(row["seeds"])) >= seeds.MIN_SEEDS, key
        assert row == {**row, **seeds.verdict(row["differences"], row["margin"])}, f"{key}: stale verdict"
        claim = found[key][1]  # the claim measured is the claim registered now (a margin edited later: --rescore)
        assert (row["better"], row["worse"], row["margin"]) == (claim.better, claim.worse, claim.margin), key


@pytest.mark.parametrize("lesson", sorted({key.split("/")[0] for key in _seeds_module().registered()}))
def test_lessons_follow_the_verdict(lesson):
    """A lesson whose comparison needs several seeds runs several (a SEEDS tuple of 3+) and asserts on the worst
    seed; every lesson with a registered comparison cites the measured spread."""
    rows = [row for row in json.loads(SEEDS_JSON.read_text())["results"] if row["lesson"] == lesson]
    notebook = next((ROOT / "lessons").glob(f"{lesson[-2:]}_*.ipynb"))
    code = "\n".join(c.source for c in nbformat.read(notebook, 4).cells if c.cell_type == "code")
    assert "seeds.json" in code, f"{notebook.name}: no assert comment cites bench/results/seeds.json"
    if any(not row["one_seed_enough"] for row in rows):
        several = re.search(r"SEEDS\s*=\s*\(([^)]*)\)", code)
        count = len([s for s in several.group(1).split(",") if s.strip()]) if several else 0
        if not several and re.search(r"SEEDS\b", code):  # the lesson uses the experiment module's SEEDS
            module = importlib.import_module(f"segedu.experiments.{lesson}")
            count = len(getattr(module, "SEEDS", getattr(module, "LESSON_SEEDS", ())))
        assert count >= 3, (
            f"{notebook.name}: {[r['comparison'] for r in rows if not r['one_seed_enough']]} need several seeds")
        assert re.search(r"\bmin\(|worst", code), f"{notebook.name}: assert on the worst seed too"
