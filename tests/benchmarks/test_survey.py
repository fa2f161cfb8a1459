"""benchmarks/survey.py on 300 files: every figure it prints comes from the run it measured."""

from __future__ import annotations

import json

import pytest

from tests.benchmarks.test_scripts import number_after, run_script

pytestmark = pytest.mark.slow


def test_survey(tmp_path):
    out = run_script("survey.py", "--n", "300", "--out", str(tmp_path), "--epochs", "1", "--train-sample", "300",
                     "--explorer-repeat", "1")
    result = json.loads((tmp_path / "survey-300.json").read_text())
    steps = {s["step"]: s for s in result["record"]["steps"]}
    assert [steps[k]["status"] for k in ("ingest", "features", "train", "model_sets", "hats")] == ["done"] * 5
    # the printed table is the record's: each step's wall time, in minutes, on its own line
    for name in ("ingest", "features", "train", "model_sets", "hats"):
        assert number_after(out, f"| {name} | done |") == pytest.approx(steps[name]["wall_s"] / 60, abs=0.051), name
    assert result["run"]["exit"] == 0 and result["run"]["tree_peak_rss_bytes"] > 100e6
    assert {s["status"] for s in result["rerun_record"]["steps"]} == {"current", "skipped"}  # nothing new: no work
    assert result["disk"]["archive"] > 0 and result["disk"]["points + catalog"] > 0
    assert result["ingest_vs_fitsio"]["ratio"] > 0 and result["ingest_vs_fitsio"]["files_timed_fitsio"] == 300
    assert number_after(out, "candidates view, page load until the first row") > 0
    tiles = [d for d in (tmp_path / "archive-300").glob("*/*") if d.is_dir()]  # RRR/DDD sky-tile folders
    assert tiles and all(d.parent.name.isdigit() and d.name.isdigit() and len(d.name) == 3 for d in tiles)
