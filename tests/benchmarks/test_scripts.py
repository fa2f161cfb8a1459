"""Every benchmark script runs from a clean checkout, on small inputs, and prints its figures.

The figures themselves are measured by running the scripts at full size (see README); here
they must exist and be numbers. Each script runs as users run it, ``python benchmarks/X.py``,
in its own process: that is how a shadowed import once broke a spawned worker pool.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_script(name: str, *args: str, env: dict | None = None) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def number_after(text: str, label: str) -> float:
    """The first number after ``label`` on the same line (never one from a later line)."""
    match = re.search(re.escape(label) + r"[^0-9\n]*?(-?[0-9][0-9,]*\.?[0-9]*)", text)
    assert match, f"{label!r} with a number after it on its line not in output:\n{text}"
    return float(match.group(1).replace(",", ""))


def test_ingest(tmp_path):
    out = run_script("ingest.py", "--n", "200", "--seed-files", "50", "--repeat", "1", "--dir", str(tmp_path), "--dr1-n", "120")
    assert number_after(out, "(a)/(b)") > 0 and number_after(out, "per-worker cost (b)/(c)") > 0
    raw, binned = number_after(out, "--bin none  :"), number_after(out, "--bin eroday:")
    assert raw > 0 and binned > 0  # files/s of both
    per_raw = float(re.search(r"--bin none  :.*?([\d.]+) points per source", out).group(1))
    per_binned = float(re.search(r"--bin eroday:.*?([\d.]+) points per source", out).group(1))
    assert per_binned < per_raw / 2  # 4-6 ten-second rows a scan became one bin
    assert number_after(out, "ids:") == 120
    assert number_after(out, "found in reversed order:") == 120  # every file keeps its id


def test_read(tmp_path):
    out = run_script("read.py", "--n", "500", "--reads", "200", "--dir", str(tmp_path))
    assert number_after(out, "warm:") > 0 and "peak RSS" in out


def test_feature_build(tmp_path):
    out = run_script("feature_build.py", "--n", "500", "--null", "2000", "--dir", str(tmp_path), "--bexvar-reference", "1")
    assert number_after(out, "poisson_variability (AMPL, NEV, bexvar x 3 bands): 500 sources in") > 0
    assert number_after(out, "poisson_variability calibrated on 2,000 simulated constants:") == 500
    assert number_after(out, "columns in") > 0
    assert number_after(out, "reference bexvar package (UltraNest):") > 0
    rate = re.search(r"variability features: 500 sources in [\d.]+ s \(([\d,]+) sources/s", out)
    assert rate and float(rate.group(1).replace(",", "")) > 0, out
    # every column of the three sets reaches the join: the catalog's, variability's, 40 latents, 6 scores
    from etl.catalog import empty_catalog
    from features.variability import feature_columns

    assert number_after(out, "500 rows x") == empty_catalog(3).width + len(feature_columns(3)) + 40 + 6
    # the discovery path: a quick model of the discovery architecture scores every source
    timed = re.search(r"discovery path with \S+: (\d+) sources; .*vae_latent \+ vae_anomaly \+ discovery ([\d.]+) s", out)
    assert timed and int(timed.group(1)) == 500 and float(timed.group(2)) > 0, out
    from features.featurestore import list_feature_sets

    assert {"morphology", "discovery"} <= set(list_feature_sets(next(tmp_path.glob("*.zarr")))["name"])


def test_cone(tmp_path):
    out = run_script("cone.py", "--rows", "20000", "--queries", "20", "--dir", str(tmp_path))
    assert number_after(out, "catalog:") == 20000
    for radius in ("10", "60", "600"):
        assert number_after(out, f"cone {radius:>5s} arcsec: median") > 0


def test_crossmatch(tmp_path):
    out = run_script("crossmatch.py", "--n", "300", "--reference-rows", "3000", "--dir", str(tmp_path))
    assert number_after(out, "reference rows within 10 arcsec (5 matchings each: the real one and 4 shifted for the "
                             "spurious rate): astropy") > 0
    assert number_after(out, "HATS export with light curves nested:") == 300


def test_train_throughput(tmp_path):
    out = run_script("train_throughput.py", "--sizes", "300", "600", "--seconds", "0.5", "--repeat", "1", "--ablate-gru",
                     "--dir", str(tmp_path))
    for label in ("(a) seed-style, 300 sources", "(b) project train,    300 sources", "(b) project train,    600 sources",
                  "(c) project loader,    600 sources", "(b0) project train with nn.GRU", "(b)/(a) =", "(c)/(b) ="):
        assert number_after(out, label) > 0, label


def test_flow_overhead(tmp_path):
    out = run_script("flow_overhead.py", "--n", "200", "--batch-size", "50", "--dir", str(tmp_path),
                     env={"PREFECT_HOME": str(tmp_path / "prefect")})
    assert number_after(out, "flow, threads (1 worker)") > 0 and "ms per batch task" in out


@pytest.fixture(scope="module")
def science_out(tmp_path_factory) -> Path:
    """One folder for the science check and the active-learning benchmark: the second reuses the
    first's archives, checkpoint and feature sets, as it does at full size."""
    return tmp_path_factory.mktemp("science")


@pytest.mark.slow
def test_science_check(science_out):
    tmp_path = science_out
    out = run_script("science_check.py", "--n", "400", "--epochs", "1", "--loss", "poisson", "--null", "2000", "--check", "2000",
                     "--out", str(tmp_path))
    report = json.loads((tmp_path / "report-1ep" / "science_check.json").read_text())
    scores = report["scores"]
    # the printed table is the report's: each score's AUC as the JSON holds it (a wrong column or line shows here)
    for name in ("reduced chi2 (max over bands)", "logistic on classical + VAE scores (2-fold CV)"):
        assert number_after(out, name) == pytest.approx(scores[name]["auc"], abs=6e-4), name
        assert 0.3 < scores[name]["auc"] < 1.0  # 400 sources, one epoch: better than a coin, never perfect
    flagged = report["flags"]["variable_3sigma"]["fresh_null"]
    assert flagged["n"] == 2000 and flagged["rate"] <= 0.01  # 2,000 fresh constants: at most 20 flagged at the 0.135 % threshold
    assert set(report["scores"]["classical combined (variable_fpp)"]["per_counts"]) == {"10-30", "30-100", "100-1000", "1000-inf"}
    assert report["flags"]["variable_3sigma"]["fresh_null"]["n"] == 2000
    assert (tmp_path / "report-1ep" / "roc.png").exists() and (tmp_path / "report-1ep" / "vae_only.png").exists()


def test_active_learning(science_out):
    tmp_path = science_out
    out = run_script("active_learning.py", "--n", "400", "--epochs", "1", "--loss", "poisson", "--null", "2000", "--seeds", "1",
                     "--models", "aad", "--out", str(tmp_path))
    report = json.loads((tmp_path / "active_learning.json").read_text())
    search = report["searches"]["dips"]
    rows = search["rows"]
    for name in ("aad forest, feedback after every label", "aad forest, no feedback (static)"):
        found = [rows[name][k] for k in ("50", "100", "200")]
        # found among the first k shown: cumulative, and never more than were shown or exist
        assert found == sorted(found) and found[-1] <= min(200, search["n_wanted"]), (name, found, search["n_wanted"])
    assert rows["chance (expected)"]["100"] == pytest.approx(100 * search["n_wanted"] / report["n"], abs=0.05)
    assert report["rerank_100k"]["aad"]["rerank_median_s"] > 0
    assert number_after(out, "re-ranking after a label median") > 0


def test_explorer_pages(tmp_path):
    out = run_script("explorer_pages.py", "--rows", "20000", "--repeat", "1", "--dir", str(tmp_path))
    assert re.search(r"server  first page, default score \(\w+\)\s+\d+ ms\s+\d+ ms", out), out
    assert number_after(out, "candidates view, page load until the first row") > 0
    assert number_after(out, "source view, page load until the light curve") > 0


def test_position_errors():
    out = run_script("position_errors.py", "--n", "600", "--side", "2", "--densities", "2000")
    rows = {rule: (float(found), int(wrong.replace(",", ""))) for rule, found, wrong in
            re.findall(r"2,000/deg2, (.+?): counterparts found [\d,]+ of [\d,]+ \(([\d.]+)\), wrong matches ([\d,]+)", out)}
    assert len(rows) >= 3, out
    found, wrong = rows['radius 15" + max-sigma 3']
    assert found > 0.8  # per-source limits keep most true counterparts
    assert wrong <= rows['radius 15"'][1]  # and never pick up more chance neighbours than the full radius


def test_discovery(tmp_path):
    out = run_script("discovery.py", "--n", "600", "--variants", "1", "--epochs", "1", "--seed-epochs", "1", "--null", "2000",
                     "--active-seeds", "1", "--labels", "10", "30", "--gru-epochs", "1", "--out", str(tmp_path),
                     env={"OMP_NUM_THREADS": "1"})  # the classifiers' OpenMP threads would spin against the other test worker
    report = json.loads((tmp_path / "discovery.json").read_text())
    main = report["archives"]["variant 0, model trained on another archive"]
    assert main["n_rare"] == 6 and set(main["rankings"]) >= {"discovery_score", "discovery_score_classical (ablation: no model)",
                                                             "variable_fpp (classical, calibrated)", "seed VAE anomaly_fpp",
                                                             "isolation forest, classical + latents"}
    for row in main["rankings"].values():
        assert 0 <= row["top"]["50"] <= row["top"]["100"] <= row["top"]["500"] <= 6 and 0 < row["ap"] <= 1
    # the ceiling: supervised rankings, each ranking's fraction of it, and the simulated user's curves
    assert set(main["supervised"]) == {"supervised GBM, every set + latents (5-fold out-of-fold)", "supervised GBM, classical sets only",
                                       "supervised logistic regression, every set + latents", "supervised GRU on the light curves (trained on another archive)"}
    assert main["ceiling"]["top100"] == max(r["top"]["100"] for r in main["supervised"].values())
    fraction = main["fraction_of_ceiling"]["discovery_score"]["overall"]
    assert fraction == main["rankings"]["discovery_score"]["top"]["100"] / max(main["ceiling"]["top100"], 1)
    curves = {name: c for name, c in main["labels"].items() if isinstance(c, dict)}
    assert len(curves) == 3 and all(set(c) == {"10", "30"} for c in curves.values())
    for c in curves.values():
        assert c["10"]["labelled"] <= c["30"]["labelled"] <= 6 and c["30"]["labelled"] <= c["30"]["labelled + next 100"] <= 6
    assert re.search(r"simulated user, label-driven .*30 labels: [\d.]+ labelled, [\d.]+ with the next 100", out), out
    assert (tmp_path / "label_curve.png").stat().st_size > 10_000
    assert "variant 1, model trained on another archive" in report["archives"] and "variant 0, model trained on this archive" in report["archives"]
    assert (tmp_path / "top_ranked.png").stat().st_size > 10_000
    spread = re.search(r"discovery_score top 100 over generators \[0, 1\]: \[(\d+), (\d+)\]", out)
    assert spread and [int(x) for x in spread.groups()] == report["spread"]["discovery_top100"], out
