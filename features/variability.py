"""Classical per-source variability features, computed from the store in vectorised batches.

Per band ``b`` (1-based, as in the catalog's ``mean_rate_b{b}``), from the light-curve package
(Rust, parallel): ``weighted_mean_b``, ``standard_deviation_b``, ``amplitude_b`` (half the
peak-to-peak range), ``reduced_chi2_b`` (against the weighted mean), ``excess_variance_b``
(normalised excess variance, (S^2 - <err^2>) / <rate>^2) and ``stetson_k_b``; plus
``max_deviation_b`` = max |rate - weighted mean| / sigma. Cross-band: hardness ratios
``hr_12`` = (b2 - b1) / (b2 + b1) and ``hr_23`` = (b3 - b2) / (b3 + b2) of the mean net rates,
a band's negative mean (background over-subtracted where the source has no counts) taken as 0 so
the ratio stays in [-1, 1] (null when neither band is positive), and
``n_bins``, ``time_span_d`` (days from first bin start to last bin end) and ``mean_fracexp``.

Asymmetric errors become one sigma per point: ``(rate_errm + rate_errp) / 2``, the mean of the
lower and upper 1-sigma errors (the extractors take symmetric Gaussian errors). Points with a
non-finite rate or sigma <= 0 are left out of their band; a band with fewer than
``min_points`` usable points gets nulls, never NaN noise.
"""

from __future__ import annotations

import warnings

import light_curve as lc
import numpy as np
import polars as pl

from etl.store import LightCurveStore
from features.extraction import extract_by_batch

EXTRACTOR_NAMES = ("weighted_mean", "standard_deviation", "amplitude", "reduced_chi2", "excess_variance", "stetson_k")
PER_BAND = EXTRACTOR_NAMES + ("max_deviation",)
MIN_POINTS = 3
#: Bump when a definition here changes (part of the `variability` set's lineage).
VARIABILITY_VERSION = 1


def _extractor() -> lc.Extractor:
    return lc.Extractor(lc.WeightedMean(), lc.StandardDeviation(), lc.Amplitude(), lc.ReducedChi2(),
                        lc.ExcessVariance(), lc.StetsonK())


def feature_columns(n_bands: int) -> list[str]:
    """Column names of the variability set, in order (after ``source_id``)."""
    per_band = [f"{name}_b{b}" for b in range(1, n_bands + 1) for name in PER_BAND]
    hardness = [f"hr_{b}{b + 1}" for b in range(1, n_bands)]
    return per_band + hardness + ["n_bins", "time_span_d", "mean_fracexp"]


def extract_batch(batch, source_ids: list[str], min_points: int = MIN_POINTS, n_jobs: int = 2) -> pl.DataFrame:
    """Features of one :class:`~etl.store.LightCurveBatch` (all per-point columns needed).

    Returns
    -------
    polars.DataFrame
        ``source_id`` plus :func:`feature_columns`, nulls where a band has too few points.
    """
    n = len(batch)
    n_bands = batch.columns["rate"].shape[1]
    time = batch.columns["time"]
    sigma_all = 0.5 * (batch.columns["rate_errm"].astype("f8") + batch.columns["rate_errp"].astype("f8"))
    rate_all = batch.columns["rate"].astype("f8")
    starts = batch.offsets[:-1]
    out: dict[str, np.ndarray] = {"source_id": np.asarray(source_ids, dtype=object)}
    ext = _extractor()
    for b in range(n_bands):
        usable = np.isfinite(rate_all[:, b]) & np.isfinite(sigma_all[:, b]) & (sigma_all[:, b] > 0)
        counts = np.add.reduceat(usable.astype(np.int64), starts) if len(rate_all) else np.zeros(n, np.int64)
        counts[batch.lengths == 0] = 0
        eligible = np.flatnonzero(counts >= min_points)
        values = np.full((n, len(EXTRACTOR_NAMES)), np.nan)
        max_dev = np.full(n, np.nan)
        if len(eligible):
            curves = []
            for i in eligible:
                sl = slice(batch.offsets[i], batch.offsets[i + 1])
                keep = usable[sl]
                curves.append((time[sl][keep], rate_all[sl, b][keep], sigma_all[sl, b][keep]))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                values[eligible] = ext.many(curves, n_jobs=n_jobs, sorted=True, check=False, fill_value=np.nan)
            wmean = values[eligible, 0]
            for k, (i, (_, m, s)) in enumerate(zip(eligible, curves)):
                max_dev[i] = np.max(np.abs(m - wmean[k]) / s)
        for j, name in enumerate(EXTRACTOR_NAMES):
            out[f"{name}_b{b + 1}"] = values[:, j]
        out[f"max_deviation_b{b + 1}"] = max_dev
    mean_rate = np.stack([_segment_nanmean(rate_all[:, b], batch.offsets) for b in range(n_bands)], axis=1)
    for b in range(1, n_bands):
        # A negative mean net rate is a band without source counts, not "negative flux": as 0 it
        # gives HR = +-1 instead of values like 8 when the two rates nearly cancel.
        lo, hi = np.clip(mean_rate[:, b - 1], 0, None), np.clip(mean_rate[:, b], 0, None)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[f"hr_{b}{b + 1}"] = np.where(lo + hi > 0, (hi - lo) / (hi + lo), np.nan)
    last = batch.offsets[1:] - 1
    out["n_bins"] = batch.lengths.astype(np.int64)
    out["time_span_d"] = (time[last] + batch.columns["timedel"][last] - time[starts]) / 86400.0
    out["mean_fracexp"] = _segment_nanmean(np.nanmean(batch.columns["fracexp"].astype("f8"), axis=1), batch.offsets)
    frame = pl.DataFrame(out)
    floats = [c for c, t in frame.schema.items() if t == pl.Float64]
    return frame.with_columns(pl.col(floats).fill_nan(None))


def _segment_nanmean(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    finite = np.isfinite(values)
    sums = np.add.reduceat(np.where(finite, values, 0.0), offsets[:-1])
    counts = np.add.reduceat(finite.astype(np.int64), offsets[:-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def extract_variability(store: LightCurveStore, batch_size: int = 8192, min_points: int = MIN_POINTS,
                        n_jobs: int = 2, progress: bool = False, rows: tuple[int, int] | None = None) -> pl.DataFrame:
    """Variability features of every ok source of ``store`` (``rows``: a part, in store order; memory: one batch at a time)."""
    columns = ("time", "timedel", "rate", "rate_errm", "rate_errp", "fracexp")
    schema = {"source_id": pl.String, **{c: pl.Float64 for c in feature_columns(len(store.e_min))}}
    # one batch at a time: the light-curve package runs each batch on n_jobs threads itself
    return extract_by_batch(store, lambda batch, ids: extract_batch(batch, ids, min_points, n_jobs), columns, schema,
                            batch_size, rows=rows, progress=progress, desc="variability")
