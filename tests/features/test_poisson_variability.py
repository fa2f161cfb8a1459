"""AMPL_MAX/AMPL_SIG and the normalised excess variance, checked against values computed by hand."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from etl.store import LightCurveBatch
from features import get_features
from features.builders import build_poisson_variability
from features.poisson_variability import amplitude_deviation, excess_variance, extract_batch


def test_amplitude_deviation_by_hand():
    # rates 1, 5, 2 with lower errors 0.5, 1, 0.2 and upper errors 0.6, 1.2, 0.3
    x = np.array([[1.0, 5.0, 2.0]])
    lower = np.array([[0.5, 1.0, 0.2]])
    upper = np.array([[0.6, 1.2, 0.3]])
    ampl_max, ampl_sig = amplitude_deviation(x, lower, upper, np.ones((1, 3), bool))
    # highest lower edge: 5 - 1 = 4 (bin 2); lowest upper edge: 1 + 0.6 = 1.6 (bin 1)
    assert ampl_max[0] == pytest.approx(4.0 - 1.6)
    assert ampl_sig[0] == pytest.approx(2.4 / np.hypot(1.0, 0.6))


def test_amplitude_deviation_skips_unusable_bins_and_short_curves():
    x = np.array([[1.0, 50.0, 2.0], [3.0, 0.0, 0.0]])
    err = np.full((2, 3), 0.5)
    usable = np.array([[True, False, True], [True, False, False]])
    ampl_max, ampl_sig = amplitude_deviation(x, err, err, usable)
    assert ampl_max[0] == pytest.approx((2.0 - 0.5) - (1.0 + 0.5))  # the 50 is not usable
    assert np.isnan(ampl_max[1]) and np.isnan(ampl_sig[1])  # one usable bin


def test_excess_variance_by_hand():
    # x = 2, 4, 6: mean 4, S^2 = (4 + 0 + 4) / 2 = 4; errors 1, 1, 1: <e^2> = 1
    x = np.array([[2.0, 4.0, 6.0]])
    err = np.ones((1, 3))
    nev, nev_err = excess_variance(x, err, np.ones((1, 3), bool))
    assert nev[0] == pytest.approx((4.0 - 1.0) / 16.0)
    fvar = np.sqrt(3.0 / 16.0)
    expected = np.sqrt((np.sqrt(2.0 / 3.0) * 1.0 / 16.0) ** 2 + (np.sqrt(1.0 / 3.0) * 2.0 * fvar / 4.0) ** 2)
    assert nev_err[0] == pytest.approx(expected)


def test_excess_variance_of_a_background_dominated_curve_is_null():
    x = np.array([[-0.1, 0.05, -0.02]])
    nev, nev_err = excess_variance(x, np.full((1, 3), 0.1), np.ones((1, 3), bool))
    assert np.isnan(nev[0]) and np.isnan(nev_err[0])


def test_batch_columns_and_bands():
    lengths = np.array([3, 2])
    offsets = np.array([0, 3, 5])
    rate = np.array([[1.0, 2.0], [5.0, 2.0], [2.0, 2.0], [1.0, 1.0], [1.0, np.nan]], dtype="f4")
    err = np.full_like(rate, 0.5)
    counts = np.array([[10, 20], [50, 20], [20, 20], [10, 10], [10, 0]], dtype="f4")
    columns = {"rate": rate, "rate_errm": err, "rate_errp": err, "counts": counts, "back_counts": np.ones_like(counts),
               "backratio": np.full(5, 0.01), "fracexp": np.full((5, 2), 0.9, "f4"), "timedel": np.full(5, 10.0)}
    frame = extract_batch(LightCurveBatch(["a", "b"], lengths, offsets, columns), ["a", "b"])
    assert frame.columns[:6] == ["source_id", "ampl_max_b1", "ampl_sig_b1", "nev_b1", "nev_err_b1", "n_var_b1"]
    assert {f"{c}_b2" for c in ("bexvar_log_rate", "bexvar_scatt_lo", "bexvar_pvar_p1", "n_bexvar")} <= set(frame.columns)
    assert frame["n_bexvar_b1"].to_list() == [3, 2]
    row = frame.row(0, named=True)
    assert row["ampl_max_b1"] == pytest.approx(4.5 - 1.5)
    assert row["ampl_max_b2"] == pytest.approx(-1.0)  # a flat curve: the error bars overlap by 1
    other = frame.row(1, named=True)
    assert other["n_var_b2"] == 1 and other["ampl_max_b2"] is None and other["nev_b2"] is None  # nulls, not NaN


def test_feature_set_joins_with_the_others(tmp_path):
    from etl.ingest import ingest
    from etl.synth import make_archive
    from features.builders import build_variability

    make_archive(tmp_path / "a", n=150, seed=31, flavour="mixed", progress=False)
    ingest(tmp_path / "a", tmp_path / "s", progress=False)
    meta, created = build_poisson_variability(tmp_path / "s")
    assert created and meta["rows"] == 150 and "ampl_sig_b2" in meta["columns"]
    assert build_poisson_variability(tmp_path / "s")[1] is False  # same catalog and code: reused
    build_variability(tmp_path / "s")
    frame = get_features(tmp_path / "s", ["variability", "poisson_variability"]).collect()
    truth = pl.read_parquet(tmp_path / "a" / "truth.parquet").select("source_id", "class")
    frame = frame.join(truth, on="source_id")
    assert frame.height == 150 and frame["ampl_sig_b2"].null_count() < 15
    # flares stand out in AMPL_SIG against constant sources
    median = frame.group_by("class").agg(pl.col("ampl_sig_b2").median()).sort("class")
    values = dict(median.iter_rows())
    assert values["flare"] > values["constant"]
