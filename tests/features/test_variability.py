"""Variability features against hand-computed values; nulls for short light curves."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from etl.store import LightCurveBatch
from features.variability import extract_batch, feature_columns


def make_batch(curves):
    """curves: list of dicts with time (T,), rate/errm/errp/fracexp (T, 3)."""
    lengths = np.array([len(c["time"]) for c in curves])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    cols = {name: np.concatenate([c[name] for c in curves]) for name in ("time", "rate", "rate_errm", "rate_errp", "fracexp")}
    cols["timedel"] = np.full(len(cols["time"]), 40.0)
    return LightCurveBatch([f"s{i}" for i in range(len(curves))], lengths, offsets, cols)


def curve(rates, errm=0.5, errp=1.5, fracexp=0.5):
    rates = np.asarray(rates, dtype="f4")
    t = np.arange(len(rates)) * 14400.0
    return {"time": t, "rate": rates, "rate_errm": np.full(rates.shape, errm, "f4"), "rate_errp": np.full(rates.shape, errp, "f4"),
            "fracexp": np.full(rates.shape, fracexp, "f4")}


def test_hand_computed_values():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    rates = np.stack([x, 2 * x, x + 10], axis=1)  # bands 1, 2, 3
    df = extract_batch(make_batch([curve(rates)]), ["s0"]).row(0, named=True)
    # sigma = (errm + errp) / 2 = 1 for every point
    assert df["weighted_mean_b1"] == pytest.approx(2.5)
    assert df["standard_deviation_b1"] == pytest.approx(np.std(x, ddof=1))
    assert df["amplitude_b1"] == pytest.approx(1.5)
    assert df["reduced_chi2_b1"] == pytest.approx(5.0 / 3.0)  # sum((x - 2.5)^2) / (N - 1)
    assert df["excess_variance_b1"] == pytest.approx((np.var(x, ddof=1) - 1.0) / 2.5**2)
    assert df["stetson_k_b1"] == pytest.approx(4.0 / np.sqrt(4 * 5.0))
    assert df["max_deviation_b1"] == pytest.approx(1.5)
    assert df["reduced_chi2_b2"] == pytest.approx(20.0 / 3.0)
    assert df["hr_12"] == pytest.approx((5.0 - 2.5) / (5.0 + 2.5))
    assert df["hr_23"] == pytest.approx((12.5 - 5.0) / (12.5 + 5.0))
    assert df["n_bins"] == 4
    assert df["time_span_d"] == pytest.approx((3 * 14400 + 40) / 86400)
    assert df["mean_fracexp"] == pytest.approx(0.5)


def test_short_and_nan_bands_are_null():
    short = curve(np.ones((2, 3)))
    partial = curve(np.array([[1, 1, np.nan], [2, 2, np.nan], [3, 3, 1.0], [4, 4, np.nan]]))
    df = extract_batch(make_batch([short, partial, curve(np.ones((5, 3)) * [1, 2, 3])]), ["a", "b", "c"])
    assert df.columns == ["source_id", *feature_columns(3)]
    a, b, c = df.rows(named=True)
    assert all(a[f"reduced_chi2_b{k}"] is None for k in (1, 2, 3))  # 2 points < 3
    assert a["hr_12"] == pytest.approx(0.0) and a["n_bins"] == 2  # cross-band values still there
    assert b["reduced_chi2_b1"] is not None and b["reduced_chi2_b3"] is None  # one finite point in band 3
    assert c["reduced_chi2_b1"] == pytest.approx(0.0) and c["excess_variance_b2"] == pytest.approx(-1 / 4)
    floats = [c for c, t in df.schema.items() if t == pl.Float64]
    assert not df.select(pl.any_horizontal(pl.col(floats).is_nan().fill_null(False)).any()).item()  # nulls, never NaN
    assert df["weighted_mean_b1"].null_count() == 1 and df["weighted_mean_b3"].null_count() == 2


def test_hardness_ratios_stay_in_range_with_negative_net_rates():
    """Background-subtracted means can be negative; (b2 - b1)/(b2 + b1) of -0.9 and 1.0 would be 19."""
    rates = [np.array([[-0.9, 1.0, 0.5]] * 4), np.array([[-0.2, -0.1, 0.3]] * 4), np.array([[-1.0, -1.0, -1.0]] * 4)]
    a, b, c = extract_batch(make_batch([curve(r) for r in rates]), ["a", "b", "c"]).rows(named=True)
    assert a["hr_12"] == pytest.approx(1.0) and a["hr_23"] == pytest.approx((0.5 - 1.0) / 1.5)
    assert b["hr_12"] is None and b["hr_23"] == pytest.approx(1.0)  # neither band 1 nor 2 positive
    assert c["hr_12"] is None and c["hr_23"] is None
