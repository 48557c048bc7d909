"""bench/: the shared helper (machine, versions, records, interleaved timing), the README report, the runner's
script list, lesson selection, and a tiny RoI benchmark run end to end."""

import argparse
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import common  # noqa: E402
import lessons as bench_lessons  # noqa: E402
import report  # noqa: E402
import roi as bench_roi  # noqa: E402
import run_all  # noqa: E402


def test_record_says_where_when_and_with_what(tmp_path):
    rec = common.record("demo", "cpu", {"size": 64}, [{"model": "unet", "step_s": {"median": 0.5}}], {"pass": True})
    m, v = rec["machine"], rec["versions"]
    assert m["gpu"] is None and isinstance(m["cpu_count"], int) and m["cpu_model"]
    assert v["torch"] and v["torchvision"] and v["segedu"]
    assert rec["date"][:2] == "20" and rec["device"] == "cpu"
    path = common.write(rec, "demo", tmp_path)
    assert json.loads(path.read_text()) == rec


def test_interleaved_alternates_the_order_and_summarize():
    calls = []
    times = common.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=4,
                               warmup=1)
    assert calls == ["a", "b"] + ["a", "b", "b", "a", "a", "b", "b", "a"]  # warm-up, then turns
    assert [len(t) for t in times.values()] == [4, 4] and all(s >= 0 for s in times["a"])
    assert common.summarize([3.0, 1.0, 2.0, 10.0]) == {"median": 2.5, "best": 1.0, "n": 4}


def test_pick_device_rejects_unknown_devices():
    parser = argparse.ArgumentParser()
    common.add_device_arguments(parser)
    assert common.pick_device(parser, parser.parse_args(["--device", "cpu"])).type == "cpu"
    with pytest.raises(SystemExit):
        common.pick_device(parser, parser.parse_args(["--device", "tpu"]))


def test_report_flattens_rows_and_renders_every_file(tmp_path):
    rec = common.record("demo bench", "cpu", {"size": 64}, [
        {"model": "unet", "step_s": {"median": 0.123456, "best": 0.1}, "cells": [{"cell": 3, "seconds": 1.5}]},
        {"model": "fpn", "extra": True},
    ], {"ratio_median": 1.02, "pass": True}, note="busy machine")
    common.write(rec, "demo", tmp_path)
    (tmp_path / "old.json").write_text(json.dumps({"benchmark": "old style", "torch": "2.0", "machine": {},
                                                   "results": [{"x": 1}]}))
    (tmp_path / "broken.json").write_text("{")
    text = report.render(tmp_path)
    assert "| model | step_s median | step_s best | cells | extra |" in text
    assert "| unet | 0.1235 | 0.1 | 3 1.5 |  |" in text and "| fpn |  |  |  | True |" in text
    assert "**Summary:** ratio_median = 1.02, pass = True" in text and "Note: busy machine" in text
    assert "GPU: none" in text and "torchvision" in text
    assert "## old style" in text and "torch 2.0" in text and "unreadable JSON" in text
    assert text.index("## broken.json") < text.index("## demo bench") < text.index("## old style")  # by file name
    out = report.main(["--results", str(tmp_path), "--out", str(tmp_path / "README.md")])
    assert out.read_text() == text
    assert report.render(BENCH / "results").startswith("# Benchmarks")  # the committed results render


def test_runner_runs_every_benchmark_and_not_the_helpers():
    scripts = {p.stem for p in BENCH.glob("*.py")} - run_all.NOT_BENCHMARKS
    assert {"deeplab_vs_torchvision", "fit_overhead", "throughput", "roi", "lessons", "crf", "shapes"} <= scripts
    assert "common" not in scripts and "report" not in scripts


def test_lesson_selection_and_merge():
    chosen = bench_lessons.select(["02", "00_segmentation_task"])
    assert [p.name for p in chosen] == ["02_upsampling.ipynb", "00_segmentation_task.ipynb"]
    assert len(bench_lessons.select([])) >= 10
    with pytest.raises(ValueError, match="no lesson matches '99'"):
        bench_lessons.select(["99"])
    old = {"results": [{"lesson": "00_a", "seconds": 1}, {"lesson": "01_b", "seconds": 2}]}
    assert bench_lessons.merge(old, [{"lesson": "01_b", "seconds": 5}]) == [
        {"lesson": "00_a", "seconds": 1}, {"lesson": "01_b", "seconds": 5}]


def test_roi_benchmark_end_to_end_tiny():
    import torch

    rec = bench_roi.run(torch.device("cpu"), rois=8, boxes=40, repeats=1, channels=4, side=8)
    rows = {r["op"]: r for r in rec["results"]}
    assert set(rows) == {"roi_align", "roi_pool", "nms"}
    assert rows["roi_align"]["max_abs_difference"] < 1e-5 and rows["roi_pool"]["max_abs_difference"] == 0
    assert rows["nms"]["identical_keep"] and rows["nms"]["kept"] >= 1
    assert rows["nms"]["segedu_s"]["n"] == 1
