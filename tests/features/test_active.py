"""Active anomaly detection: labels move the ranking; the simulated expert; the CLI."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from common import cli
from features.active import ActiveRanker, feature_matrix, forest_labels, main, simulate_expert


def blobs(seed: int = 0):
    """1,000 regular points, 30 'wanted' outliers in one corner and 30 'unwanted' ones in another."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1060, 4))
    x[1000:1030, :2] += 6.0  # wanted
    x[1030:, 2:] += 7.0  # unwanted, a bit more isolated: the static forest shows them first
    ids = np.array([f"s{i}" for i in range(len(x))])
    return ids, x, set(ids[1000:1030])


def test_forest_labels():
    assert forest_labels(["variable", "interesting", "boring", "artefact", "known", None]).tolist() == [-1, -1, 1, 1, 1, 0]


def test_feedback_finds_the_wanted_kind():
    ids, x, wanted = blobs()
    oracle = lambda s: "interesting" if s in wanted else "boring"  # noqa: E731
    static = simulate_expert(ActiveRanker(ids, x, "aad", seed=1), oracle, 40, feedback=False)
    active = simulate_expert(ActiveRanker(ids, x, "aad", seed=1), oracle, 40, feedback=True)
    assert len(set(active)) == 40  # nothing shown twice
    assert sum(s in wanted for s in active) >= sum(s in wanted for s in static) + 10


def test_next_excludes_labelled_and_unknown_ids_are_ignored():
    ids, x, _ = blobs(1)
    r = ActiveRanker(ids, x, "pine", seed=0)
    top = r.next(3)
    r.update([top[0], "not-a-source"], ["boring", "variable"])
    assert top[0] not in r.next(50) and r.labelled.sum() == 1
    with pytest.raises(ValueError, match="unknown forest"):
        ActiveRanker(ids, x, "svm")


def test_feature_matrix_fills_missing():
    frame = pl.DataFrame({"source_id": ["a", "b", "c"], "variable_fpp": [1e-5, None, 0.5], "hr_12": [0.1, float("nan"), 0.3],
                          "net_counts_b1": [10.0, 20.0, 30.0], "mu_0": [0.0, 1.0, 2.0]})
    x, names = feature_matrix(frame)
    assert names == ["sig_variable_fpp", "hr_12", "log_net_counts", "mu_0"] and np.isfinite(x).all()
    assert x[0, 0] == pytest.approx(5.0)
    with pytest.raises(ValueError, match="no features"):
        feature_matrix(pl.DataFrame({"source_id": ["a"]}))


def test_cli(explorer_store, tmp_path, capsys):
    ids = pl.read_parquet(f"{explorer_store}/catalog.parquet")["source_id"].to_list()
    csv = tmp_path / "l.csv"
    csv.write_text(f"source_id,label\n{ids[0]},boring\n")
    out = tmp_path / "rank.parquet"
    assert cli.run(main, ["--store", explorer_store, "--labels", str(csv), "--n", "5", "--out", str(out)]) == 0
    ranking = pl.read_parquet(out)
    assert ranking.height == len(ids) - 1 and ids[0] not in ranking["source_id"].to_list()
    assert "next 5 candidates" in capsys.readouterr().out
    assert cli.run(main, ["--store", str(tmp_path / "none")]) == 2
