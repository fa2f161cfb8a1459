"""False-positive probabilities: the null table, the band and statistic corrections, and the
calibration check on simulated constant sources the tables never saw."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from features.calibration import FPP_3SIGMA, NullTable, empirical_fpp


def binomial_band(p: float, n: int, sigmas: float = 3.0) -> tuple[float, float]:
    """The range a flagged fraction of n null sources falls in, at ``sigmas`` binomial errors."""
    err = np.sqrt(p * (1 - p) / n)
    return p - sigmas * err, p + sigmas * err


def test_3sigma_level():
    assert FPP_3SIGMA == pytest.approx(0.0013499, rel=1e-4)


def test_body_is_empirical_and_tail_follows_an_exponential_null():
    rng = np.random.default_rng(0)
    null = rng.exponential(size=40_000)
    table = NullTable.build(null, np.full(null.size, 50.0), np.full(null.size, 8))
    t = np.array([0.5, 1.0, 2.0, 8.0, 11.0])
    fpp = table.fpp(t, np.full(t.size, 50.0), np.full(t.size, 8))
    assert fpp[:3] == pytest.approx(np.exp(-t[:3]), rel=0.05)  # the empirical part
    # beyond every null value (exp(-11) = 1.7e-5 with 40,000 draws): the fitted tail. Each of the
    # 8 cells fits it on 250 exceedances (6 % error in the scale, more in the Pareto shape) and
    # extrapolates over ~8 scales, taking the heavier law: within a factor 3, never below
    assert np.all(fpp[3:] >= 0.7 * np.exp(-t[3:])) and np.all(fpp[3:] <= 3 * np.exp(-t[3:]))


def test_tail_is_conservative_for_a_gaussian_null():
    rng = np.random.default_rng(1)
    null = rng.normal(size=40_000)
    table = NullTable.build(null, np.full(null.size, 50.0), np.full(null.size, 8))
    fpp = table.fpp(np.array([3.5, 4.5, 6.0]), np.full(3, 50.0), np.full(3, 8))
    assert np.all(fpp >= stats.norm.sf([3.5, 4.5, 6.0]))  # errs towards fewer false detections
    assert fpp[0] < 3e-3  # yet resolves the 3-sigma region


def test_fpp_is_uniform_on_independent_null_sources_whose_spread_depends_on_counts_and_bins():
    rng = np.random.default_rng(2)

    def draw(n):
        net = 10 ** rng.uniform(0.5, 3.5, n)
        bins = rng.integers(3, 40, n)
        score = rng.normal(size=n) * (1 + np.log10(net)) + np.sqrt(bins)  # depends on both axes
        return score, net, bins

    table = NullTable.build(*draw(30_000))
    score, net, bins = draw(30_000)
    fpp = table.fpp(score, net, bins)
    for level in (0.01, 0.05, 0.2, 0.5):
        lo, hi = binomial_band(level, score.size, 4.0)
        assert lo <= np.mean(fpp <= level) <= hi + 0.01 * level, level


def test_undefined_scores():
    table = NullTable.build(np.array([np.nan] * 500 + list(range(500)), float), np.full(1000, 20.0), np.full(1000, 5))
    fpp = table.fpp(np.array([np.nan, 499.0, -1.0]), np.full(3, 20.0), np.full(3, 5))
    assert np.isnan(fpp[0])  # an undefined score has no FPP
    assert fpp[1] == pytest.approx(2 / 1001)  # the NaN null values counted as never exceeding
    assert fpp[2] == pytest.approx(501 / 1001)  # only the 500 defined null values can exceed


def test_empirical_fpp_by_hand():
    null = np.array([0.1, 0.2, 0.3])
    fpp = empirical_fpp(null, np.array([0.2, 0.1, 0.05, np.nan, 1.0]))
    assert fpp[:2] == pytest.approx([3 / 4, 2 / 4])
    assert fpp[2] == pytest.approx(1 / 4 * 0.05 / 0.1)  # below every null value: in proportion
    assert np.isnan(fpp[3]) and fpp[4] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def calibrated_store(tmp_path_factory):
    from etl.ingest import ingest
    from etl.synth import make_archive
    from features.builders import build_poisson_variability

    root = tmp_path_factory.mktemp("calibration")
    make_archive(root / "a", n=300, seed=41, flavour="mixed", progress=False)
    ingest(root / "a", root / "s", progress=False)
    meta, _ = build_poisson_variability(root / "s", n_null=12000)
    return root / "s", meta


def test_flags_on_constants_never_seen_match_the_3sigma_rate(calibrated_store):
    """The calibration check: 6,000 new constant sources (another seed) against the store's tables."""
    from features.builders import null_lineage, null_store, uncalibrated_poisson
    from features.featurestore import as_store
    from features.poisson_variability import STATISTICS, calibrate

    store = as_store(calibrated_store[0])
    tables = uncalibrated_poisson(null_store(store, null_lineage(store, 12000, 0)))
    check = uncalibrated_poisson(null_store(store, null_lineage(store, 6000, 9)))
    assert set(check["source_id"]).isdisjoint(set(store.source_ids)) and check.height == 6000
    cal = calibrate(check, tables, 3)
    _, hi = binomial_band(FPP_3SIGMA, cal.height)
    for flag in [f"{s}_variable_3sigma" for s in STATISTICS] + ["variable_3sigma"]:
        flagged = cal[flag].mean()
        assert flagged <= hi, (flag, flagged)  # never more false detections than promised
        # nor far fewer: at n = 6,000 the 3-sigma band's lower edge is below zero, so the lower
        # bound is the binomial tail itself (8.1 expected; 0 flagged has probability 3e-4)
        assert stats.binom.cdf(int(cal[flag].sum()), cal.height, FPP_3SIGMA) > 1e-3, (flag, flagged)
    combined = cal["variable_fpp"].to_numpy()
    for level in (0.01, 0.05, 0.2):  # the combined FPP is calibrated on the null itself: uniform
        lo, hi = binomial_band(level, combined.size, 4.0)
        assert lo <= np.mean(combined <= level) <= hi, level


def test_calibrated_columns_and_variables_found(calibrated_store):
    import polars as pl

    from features.featurestore import get_feature_set

    path, meta = calibrated_store
    assert meta["lineage"]["null"]["n"] == 12000
    frame = get_feature_set(path, "poisson_variability")[1].collect()
    for name in ("ampl_sig_fpp_b1", "nev_fpp_b3", "bexvar_fpp_b2", "ampl_sig_fpp", "bexvar_variable_3sigma",
                 "variable_fpp", "variable_3sigma", "net_counts_b1"):
        assert name in frame.columns
    fpp = frame["ampl_sig_fpp_b1"].drop_nulls()
    assert ((fpp > 0) & (fpp <= 1)).all()
    truth = pl.read_parquet(path.parent / "a" / "truth.parquet").select("source_id", "class")
    counts = frame.join(truth, on="source_id").group_by(pl.col("class") == "constant").agg(
        pl.col("variable_3sigma").sum().alias("flagged"), pl.len().alias("n"))
    (flagged_c, n_c), (flagged_v, n_v) = [tuple(counts.filter(pl.col("class") == c).select("flagged", "n").row(0)) for c in (True, False)]
    # constants: no more flags than the promised 0.135 % allows (binomial tail), variables: many more
    assert stats.binom.sf(flagged_c - 1, n_c, FPP_3SIGMA) > 1e-3, (flagged_c, n_c)
    assert stats.binom.sf(flagged_v - 1, n_v, FPP_3SIGMA) < 1e-4, (flagged_v, n_v)  # far more than chance
