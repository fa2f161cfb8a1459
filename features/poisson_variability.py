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

A band with fewer than 2 usable bins gets nulls for AMPL/NEV, and without bins for bexvar.
Still to come in this set (issue 10): false-positive probabilities calibrated on simulated
constant sources and the ``variable_3sigma`` flags.

Shape legend: N = light curves in a batch, T = the longest of them, K = bands.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from etl.store import LightCurveBatch, LightCurveStore
from features.bexvar import bexvar

#: Bump when a definition here changes (part of the feature set's lineage).
POISSON_FEATURES_VERSION = 2
BEXVAR = ("bexvar_log_rate", "bexvar_scatt", "bexvar_scatt_lo", "bexvar_scatt_hi", "bexvar_pvar_p1")
PER_BAND = ("ampl_max", "ampl_sig", "nev", "nev_err", "n_var", *BEXVAR, "n_bexvar")
COLUMNS = ("rate", "rate_errm", "rate_errp", "counts", "back_counts", "backratio", "fracexp", "timedel")


def feature_columns(n_bands: int) -> list[str]:
    """Column names of the set, in order (after ``source_id``)."""
    return [f"{name}_b{k}" for k in range(1, n_bands + 1) for name in PER_BAND]


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
    frame = pl.DataFrame(out)
    floats = [c for c, t in frame.schema.items() if t == pl.Float64]
    return frame.with_columns(pl.col(floats).fill_nan(None))


def extract_poisson_variability(store: LightCurveStore, batch_size: int = 1024, progress: bool = False,
                                n_jobs: int = 2) -> pl.DataFrame:
    """The set for every ok source of ``store`` (memory: ``n_jobs`` batches at a time).

    Batches run on ``n_jobs`` threads: the heavy parts (numpy ufuncs, BLAS, sparse products)
    release the GIL, so threads use the cores without the start-up and transfer costs of processes.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    ok = store.catalog().filter(pl.col("status") == "ok").select("source_id", "offset", "n_points").sort("offset").collect()
    ids = ok["source_id"].to_list()
    offsets, lengths = ok["offset"].to_numpy(), ok["n_points"].to_numpy()

    def one(i: int) -> pl.DataFrame:
        batch = store.read_spans(offsets[i : i + batch_size], lengths[i : i + batch_size], COLUMNS)
        return extract_batch(batch, ids[i : i + batch_size])

    starts = range(0, len(ids), batch_size)
    with ThreadPoolExecutor(max(1, n_jobs)) as pool:
        parts = list(tqdm(pool.map(one, starts), total=len(starts), desc="poisson variability", unit="batch",
                          disable=not progress))
    if not parts:
        schema = {"source_id": pl.String} | {c: (pl.Int64 if c.startswith("n_") else pl.Float64)
                                             for c in feature_columns(len(store.e_min))}
        return pl.DataFrame(schema=schema)
    return pl.concat(parts)
