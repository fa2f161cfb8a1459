"""The eROSITA variability statistics of the ``poisson_variability`` feature set (first part).

Per band ``k`` (1-based, as ``mean_rate_b{k}`` in the catalog), over the bins with a finite rate
and positive errors (``n_var_b{k}`` of them):

* ``ampl_max_b{k}``, ``ampl_sig_b{k}``: the maximum amplitude deviation and its significance,
  as the eRASS1 variability catalogue uses them (Boller et al. 2016, A&A 588, A103, Sect. 5.3
  for 2RXS; Buchner et al. 2022, A&A 661, A18, Sect. 2.2; Boller et al. 2025, A&A 700, A61)::

      AMPL_MAX = max_i (x_i - e-_i) - min_j (x_j + e+_j)
      AMPL_SIG = AMPL_MAX / sqrt(e-_imax^2 + e+_jmin^2)

  with the lower errors ``e-`` (RATE_ERRM) of the bin where ``x - e-`` peaks and the upper
  errors ``e+`` (RATE_ERRP) of the bin where ``x + e+`` is lowest: the gap between the lowest
  upper error bar and the highest lower error bar, in units of the two errors that bound it.
* ``nev_b{k}``, ``nev_err_b{k}``: the normalised excess variance and its error (Vaughan et al.
  2003, MNRAS 345, 1271, eqs. 8-11)::

      S^2      = sum_i (x_i - <x>)^2 / (N - 1)
      NEV      = (S^2 - <e^2>) / <x>^2                                          (eqs. 8, 9)
      NEV_ERR  = sqrt( (sqrt(2/N) <e^2> / <x>^2)^2 + (sqrt(<e^2>/N) 2 F_var / <x>)^2 )  (eq. 11)

  with ``e = (e- + e+) / 2`` and ``F_var = sqrt(max(NEV, 0))``. NEV is null when ``<x> <= 0``
  (background-dominated light curves: the normalisation has no meaning there).

* ``bexvar_log_rate_b{k}``, ``bexvar_scatt_b{k}``, ``bexvar_scatt_lo_b{k}``,
  ``bexvar_scatt_hi_b{k}``, ``bexvar_pvar_p1_b{k}``: the Bayesian excess variance from the
  counts, background counts, BACKRATIO, FRACEXP and TIMEDEL of the bins with FRACEXP > 0.1
  (Buchner et al. 2022, Sect. 2.4; :mod:`features.bexvar`), ``n_bexvar_b{k}`` such bins.

* ``net_counts_b{k}``: the sum of ``COUNTS - BACK_COUNTS x BACKRATIO`` over those bins.

A band with fewer than 2 usable bins gets nulls for AMPL/NEV, and without bins for bexvar.

Calibrated on simulated constant sources (:func:`calibrate`, :mod:`features.calibration`): for
each statistic in :data:`STATISTICS` (``ampl_sig``: AMPL_SIG; ``nev``: NEV / NEV_ERR;
``bexvar``: SCATT_LO, as Buchner et al. 2022 and the eRASS1 catalogue use them) the
false-positive probability ``<stat>_fpp_b{k}`` per band, ``<stat>_fpp`` for its smallest band, the flag
``<stat>_variable_3sigma`` (FPP <= 0.135 %), and over all three ``variable_fpp`` and
``variable_3sigma``.

Shape legend: N = light curves in a batch, T = the longest of them, K = bands.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from etl.store import LightCurveBatch, LightCurveStore
from features.bexvar import bexvar
from features.calibration import FPP_3SIGMA, NullTable, empirical_fpp
from features.extraction import extract_by_batch

#: Bump when a definition here changes (part of the feature set's lineage).
POISSON_FEATURES_VERSION = 3
BEXVAR = ("bexvar_log_rate", "bexvar_scatt", "bexvar_scatt_lo", "bexvar_scatt_hi", "bexvar_pvar_p1")
PER_BAND = ("ampl_max", "ampl_sig", "nev", "nev_err", "n_var", *BEXVAR, "n_bexvar", "net_counts")
#: The calibrated statistics: name -> how its score (large = variable) is read from the set's columns.
STATISTICS = {
    "ampl_sig": lambda f, k: f[f"ampl_sig_b{k}"],
    "nev": lambda f, k: f[f"nev_b{k}"] / f[f"nev_err_b{k}"],
    "bexvar": lambda f, k: f[f"bexvar_scatt_lo_b{k}"],
}
COLUMNS = ("rate", "rate_errm", "rate_errp", "counts", "back_counts", "backratio", "fracexp", "timedel")


def feature_columns(n_bands: int) -> list[str]:
    """Column names of the uncalibrated set, in order (after ``source_id``)."""
    return [f"{name}_b{k}" for k in range(1, n_bands + 1) for name in PER_BAND]


def _smallest(columns: list[np.ndarray]) -> np.ndarray:
    """Row-wise minimum of FPP columns, ignoring NaN (NaN where all are)."""
    stacked = np.stack(columns, axis=1)
    return np.where(np.isfinite(stacked).any(axis=1), np.nanmin(np.where(np.isfinite(stacked), stacked, np.inf), axis=1), np.nan)


def calibrate(frame: pl.DataFrame, null: pl.DataFrame, n_bands: int) -> pl.DataFrame:
    """Add false-positive probabilities and 3-sigma flags from null-source features.

    Parameters
    ----------
    frame : DataFrame
        The set's uncalibrated columns for the store's sources.
    null : DataFrame
        The same columns for simulated constant sources (:mod:`features.null_model`); even rows
        build the per-statistic tables, odd rows calibrate the combined flag
        (:mod:`features.calibration`).

    Returns
    -------
    DataFrame
        ``frame`` with ``<stat>_fpp_b{k}``, ``<stat>_fpp`` (its smallest band, calibrated on the null) and
        ``<stat>_variable_3sigma`` for each of :data:`STATISTICS`, ``variable_fpp`` and
        ``variable_3sigma`` (all statistics, trials calibrated on the null).
    """
    tables_from = null[0::2]
    combined_from = null[1::2]
    out = {}
    minima, minima_null = [], []
    for stat, score in STATISTICS.items():
        per_band, per_band_null = [], []
        for k in range(1, n_bands + 1):
            net, bins = f"net_counts_b{k}", f"n_bexvar_b{k}"
            table = NullTable.build(score(tables_from, k).to_numpy(), tables_from[net].to_numpy(), tables_from[bins].to_numpy())
            out[f"{stat}_fpp_b{k}"] = table.fpp(score(frame, k).to_numpy(), frame[net].to_numpy(), frame[bins].to_numpy())
            per_band.append(out[f"{stat}_fpp_b{k}"])
            per_band_null.append(table.fpp(score(combined_from, k).to_numpy(), combined_from[net].to_numpy(),
                                           combined_from[bins].to_numpy()))
        smallest, smallest_null = _smallest(per_band), _smallest(per_band_null)
        out[f"{stat}_fpp"] = empirical_fpp(smallest_null, smallest)
        out[f"{stat}_variable_3sigma"] = np.nan_to_num(out[f"{stat}_fpp"], nan=1.0) <= FPP_3SIGMA
        minima += per_band
        minima_null += per_band_null
    out["variable_fpp"] = empirical_fpp(_smallest(minima_null), _smallest(minima))
    out["variable_3sigma"] = np.nan_to_num(out["variable_fpp"], nan=1.0) <= FPP_3SIGMA
    # the extracted columns hold no NaN (extract_batch made them null): only the new ones are filled
    return frame.with_columns(pl.Series(name, values).fill_nan(None) if values.dtype.kind == "f" else pl.Series(name, values)
                              for name, values in out.items())


def amplitude_deviation(x: np.ndarray, lower: np.ndarray, upper: np.ndarray, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AMPL_MAX and AMPL_SIG of padded light curves (module docstring).

    Parameters
    ----------
    x, lower, upper : ndarray, shape (N, T)
        Rates and their lower / upper 1-sigma errors.
    usable : ndarray of bool, shape (N, T)

    Returns
    -------
    ampl_max, ampl_sig : ndarray, shape (N,)
        NaN where fewer than 2 bins are usable.
    """
    low_edge = np.where(usable, x - lower, -np.inf)
    high_edge = np.where(usable, x + upper, np.inf)
    imax = np.argmax(low_edge, axis=1)
    jmin = np.argmin(high_edge, axis=1)
    rows = np.arange(x.shape[0])
    ampl_max = low_edge[rows, imax] - high_edge[rows, jmin]
    with np.errstate(invalid="ignore", divide="ignore"):
        ampl_sig = ampl_max / np.hypot(lower[rows, imax], upper[rows, jmin])
    enough = usable.sum(axis=1) >= 2
    return np.where(enough, ampl_max, np.nan), np.where(enough, ampl_sig, np.nan)


def excess_variance(x: np.ndarray, err: np.ndarray, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised excess variance and its error (Vaughan et al. 2003, eqs. 8-11).

    Parameters
    ----------
    x, err : ndarray, shape (N, T)
        Rates and their symmetric 1-sigma errors.
    usable : ndarray of bool, shape (N, T)

    Returns
    -------
    nev, nev_err : ndarray, shape (N,)
        NaN with fewer than 2 usable bins or a mean rate <= 0.
    """
    n = usable.sum(axis=1).astype("f8")
    xs = np.where(usable, x, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = xs.sum(axis=1) / n
        s2 = (np.where(usable, x - mean[:, None], 0.0) ** 2).sum(axis=1) / (n - 1)
        mse = np.where(usable, err * err, 0.0).sum(axis=1) / n
        nev = (s2 - mse) / mean**2
        fvar = np.sqrt(np.clip(nev, 0.0, None))
        nev_err = np.sqrt((np.sqrt(2.0 / n) * mse / mean**2) ** 2 + (np.sqrt(mse / n) * 2.0 * fvar / mean) ** 2)
    valid = (n >= 2) & (mean > 0)
    return np.where(valid, nev, np.nan), np.where(valid, nev_err, np.nan)


def extract_batch(batch: LightCurveBatch, source_ids: list[str]) -> pl.DataFrame:
    """The set's columns for one batch read with :data:`COLUMNS`."""
    length = int(batch.lengths.max(initial=1))
    x, mask = batch.padded("rate", length, fill=np.nan)
    lower = batch.padded("rate_errm", length, fill=np.nan)[0].astype("f8")
    upper = batch.padded("rate_errp", length, fill=np.nan)[0].astype("f8")
    x = x.astype("f8")
    out: dict[str, object] = {"source_id": source_ids}
    source = np.repeat(np.arange(len(batch)), batch.lengths)
    cols = batch.columns
    for k in range(x.shape[2]):
        xk, lo, hi = x[..., k], lower[..., k], upper[..., k]
        usable = mask & np.isfinite(xk) & np.isfinite(lo) & np.isfinite(hi) & (lo > 0) & (hi > 0)
        ampl_max, ampl_sig = amplitude_deviation(xk, lo, hi, usable)
        nev, nev_err = excess_variance(xk, 0.5 * (lo + hi), usable)
        out |= {f"ampl_max_b{k + 1}": ampl_max, f"ampl_sig_b{k + 1}": ampl_sig, f"nev_b{k + 1}": nev,
                f"nev_err_b{k + 1}": nev_err, f"n_var_b{k + 1}": usable.sum(axis=1).astype(np.int64)}
        result = bexvar(cols["counts"][:, k], cols["back_counts"][:, k], cols["backratio"], cols["fracexp"][:, k],
                        cols["timedel"], source, len(batch))
        out |= {f"{name}_b{k + 1}": result[name] for name in BEXVAR}
        out[f"n_bexvar_b{k + 1}"] = result["n_bins"].astype(np.int64)
        out[f"net_counts_b{k + 1}"] = result["net_counts"]
    frame = pl.DataFrame(out)
    floats = [c for c, t in frame.schema.items() if t == pl.Float64]
    return frame.with_columns(pl.col(floats).fill_nan(None))


def extract_poisson_variability(store: LightCurveStore, batch_size: int = 1024, progress: bool = False,
                                n_jobs: int = 2, rows: tuple[int, int] | None = None) -> pl.DataFrame:
    """The set's uncalibrated columns for the ok sources of ``store`` (memory: ``2 n_jobs`` batches at a time).

    Batches run on ``n_jobs`` threads: the heavy parts (numpy ufuncs, BLAS, sparse products)
    release the GIL, so threads use the cores without the start-up and transfer costs of processes.

    Parameters
    ----------
    rows : (start, stop), optional
        Only these ok sources, counted in store order (the unit of work of a flow's task).
    """
    schema = {"source_id": pl.String} | {c: (pl.Int64 if c.startswith("n_") else pl.Float64)
                                         for c in feature_columns(len(store.e_min))}
    return extract_by_batch(store, extract_batch, COLUMNS, schema, batch_size, n_jobs, rows, progress, "poisson variability")
