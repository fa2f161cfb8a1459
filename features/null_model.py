"""Simulated constant sources that share the store's own exposure, background and error patterns.

The variability statistics of :mod:`features.poisson_variability` and the VAE's anomaly score are
calibrated against these: a *null store* beside the real one, holding light curves of sources
whose true rate never changes, each drawn on a real source of the store (its *template*):

* the template's time bins, TIMEDEL, FRACEXP and BACKRATIO are kept as they are;
* the background expected in the background region is the template's own mean background per
  unit exposure, spread over its bins in proportion to exposure (``mu_B``); the background counts
  are drawn ``B ~ Poisson(mu_B)``;
* the source gets a constant rate per band: a total of ``N`` net counts (the template's own
  observed net counts moved by a random factor of up to ``10**JITTER_DEX`` either way, so the
  simulations follow the store's brightness distribution and cover its edges), split over the
  bands as the template's observed net counts are (plus one count each, so no band is empty);
  the source-aperture counts are drawn ``C ~ Poisson(rate x TIMEDEL x FRACEXP + mu_B x BACKRATIO)``;
* RATE is ``(C - B x BACKRATIO) / (TIMEDEL x FRACEXP)`` as eSASS computes it, and the errors
  follow the template's convention: Gehrels' (1986, ApJ 303, 336, eqs. 7 and 12) approximate
  upper ``1 + sqrt(C + 0.75)`` and lower ``sqrt(C - 0.25)`` count errors, scaled by the median
  ratio of the template's own errors to them (eSASS's errors are within a few per cent of
  Gehrels' but not equal; srctool files carry one symmetric RATE_ERR, kept symmetric).

The null store is a regular light-curve store (``STORE/calibration/null-<key>.zarr``), so every
statistic, and the VAE, computes on it with exactly the code that runs on the real sources. Its
catalog's ``object`` column names each simulation's template.

Shape legend: P = points of a batch, K = bands, N = light curves.
"""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl

from common.errors import UserError
from etl.lightcurve import FRACEXP_MIN, POINT_COLUMNS
from etl.poisson import aperture_background, exposure, gehrels_errors, net_counts, net_rate
from etl.store import LightCurveBatch, LightCurveStore, open_store
from etl.subset import build_once, derive_store

#: Null light curves of a calibration, by default.
N_NULL = 50_000
#: The simulated net counts are the template's times 10**U(-JITTER_DEX, JITTER_DEX).
JITTER_DEX = 0.5
CALIBRATION_DIR = "calibration"
#: Bump when the simulation changes (part of every calibrated set's lineage).
NULL_MODEL_VERSION = 1


class NullModelError(UserError, ValueError):
    """Constants cannot be simulated for this store (it has no ok source to take as a template)."""


def _per_source(values: np.ndarray, source: np.ndarray, n: int) -> np.ndarray:
    """Sum (P, K) values per source: (N, K)."""
    out = np.zeros((n, values.shape[1]))
    np.add.at(out, source, values)
    return out


def _error_scale(errors: np.ndarray, model: np.ndarray, usable: np.ndarray, source: np.ndarray, n: int) -> np.ndarray:
    """Median ratio of a template's errors to the Gehrels model, per source and band (N, K); 1 where undefined."""
    ratio = np.where(usable & (model > 0) & np.isfinite(errors) & (errors > 0), errors / np.where(model > 0, model, 1.0), np.nan)
    out = np.ones((n, errors.shape[1]))
    order = np.argsort(source, kind="stable")
    starts = np.searchsorted(source[order], np.arange(n))
    stops = np.searchsorted(source[order], np.arange(n), side="right")
    for i in np.flatnonzero(stops > starts):  # a few thousand sources per batch: cheap
        block = ratio[order[starts[i] : stops[i]]]
        with warnings.catch_warnings():  # a band without a usable error is expected: it keeps 1
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(block, axis=0)
        out[i] = np.where(np.isfinite(med), med, 1.0)
    return out


def simulate_constants(batch: LightCurveBatch, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Constant-source light curves on the bins of ``batch`` (module docstring).

    Parameters
    ----------
    batch : LightCurveBatch
        Templates, read with every column of :data:`etl.lightcurve.POINT_COLUMNS`.
    rng : numpy Generator

    Returns
    -------
    dict of str to ndarray
        The point columns, flat as in ``batch`` (P,) or (P, K), float types as stored.
    """
    cols = batch.columns
    n = len(batch)
    source = np.repeat(np.arange(n), batch.lengths)
    fracexp = cols["fracexp"].astype("f8")
    backratio = np.nan_to_num(cols["backratio"].astype("f8"), nan=0.0)
    counts = cols["counts"].astype("f8")
    back = cols["back_counts"].astype("f8")
    conversion = exposure(cols["timedel"], fracexp)  # (P, K) s
    exposed = np.isfinite(conversion) & (conversion > 0)
    usable = exposed & (fracexp > FRACEXP_MIN) & np.isfinite(counts) & np.isfinite(back)
    conv_u = np.where(usable, conversion, 0.0)
    sum_conv = _per_source(conv_u, source, n)  # (N, K)
    sum_back = _per_source(np.where(usable, back, 0.0), source, n)
    net = _per_source(np.where(usable, net_counts(counts, back, backratio), 0.0), source, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        back_per_s = np.where(sum_conv > 0, sum_back / sum_conv, 0.0)  # background-region counts per s of exposure
    mu_back = back_per_s[source] * np.where(exposed, conversion, 0.0)  # (P, K)

    total = np.clip(net, 0.0, None).sum(axis=1)
    target = np.maximum(total, 1.0) * 10.0 ** rng.uniform(-JITTER_DEX, JITTER_DEX, n)  # (N,)
    share = np.clip(net, 0.0, None) + 1.0
    share = np.where(sum_conv > 0, share, 0.0)
    share /= np.maximum(share.sum(axis=1, keepdims=True), 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate_true = np.where(sum_conv > 0, target[:, None] * share / sum_conv, 0.0)  # (N, K) ct/s

    sim_back = rng.poisson(mu_back).astype("f8")
    sim_counts = rng.poisson(rate_true[source] * np.where(exposed, conversion, 0.0)
                             + aperture_background(mu_back, backratio)).astype("f8")
    lower, upper = gehrels_errors(sim_counts)  # in counts
    t_lower, t_upper = gehrels_errors(counts)
    errp_t = cols["rate_errp"].astype("f8") * conversion
    errm_t = cols["rate_errm"].astype("f8") * conversion
    same = np.where(exposed, np.isclose(cols["rate_errm"], cols["rate_errp"], rtol=1e-6, equal_nan=True), True).all(axis=1)
    symmetric = np.ones(n, bool)
    np.logical_and.at(symmetric, source, same)
    scale_p = _error_scale(errp_t, t_upper, exposed, source, n)
    scale_m = np.where(symmetric[:, None], scale_p, _error_scale(errm_t, t_lower, exposed & (counts >= 1), source, n))
    sym_pt = symmetric[source][:, None]
    rate = net_rate(sim_counts, sim_back, backratio, conversion)
    with np.errstate(divide="ignore", invalid="ignore"):
        errp = scale_p[source] * upper / conversion
        errm = scale_m[source] * np.where(sym_pt, upper, lower) / conversion
    keep = exposed & np.isfinite(cols["rate"])  # where the template has no rate, neither does the simulation
    out = {name: cols[name] for name in ("time", "timedel", "fracexp", "backratio")}
    out["counts"] = np.where(exposed, sim_counts, cols["counts"]).astype(POINT_COLUMNS["counts"][0])
    out["back_counts"] = np.where(exposed, sim_back, cols["back_counts"]).astype(POINT_COLUMNS["back_counts"][0])
    for name, values in (("rate", rate), ("rate_errm", errm), ("rate_errp", errp)):
        out[name] = np.where(keep, values, np.nan).astype(POINT_COLUMNS[name][0])
    return out


def null_store_url(store: LightCurveStore, key: str) -> str:
    """Where the null store of calibration ``key`` lives: inside the store's folder."""
    return f"{store.url.rstrip('/')}/{CALIBRATION_DIR}/null-{key}.zarr"


def build_null_store(store: LightCurveStore, key: str, n: int = N_NULL, seed: int = 0, batch_size: int = 2048,
                     progress: bool = False) -> LightCurveStore:
    """The null store of ``store`` for calibration ``key``: built once, then reused.

    ``n`` simulated constant sources, templates drawn uniformly with replacement from the ok
    sources (seeded by ``seed``; bins with FRACEXP at or below :data:`etl.lightcurve.FRACEXP_MIN`
    carry no weight in a template's background and net counts, the bexvar cut). The store is
    built in a side folder and renamed into place when complete, so a reader never sees a half
    built one and a killed build leaves only a side folder, removed by the next build.
    """
    url = null_store_url(store, key)
    if store.ok_sources().height == 0:
        raise NullModelError(f"{store.url}: no ok sources to draw null templates from")
    build_once(url, lambda target: _simulate_into(store, target, n, seed, batch_size, progress),
               f"{n} constant sources, seed {seed}, null model v{NULL_MODEL_VERSION}", store.storage_options)
    return open_store(url, storage_options=store.storage_options or None)


def _simulate_into(store: LightCurveStore, target: str, n: int, seed: int, batch_size: int, progress: bool) -> None:
    """Write ``n`` simulated constants drawn on ``store``'s ok sources as a new store at ``target``."""
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.integers(0, len(store), n))  # sorted: templates read in store order
    copied = ("ra", "dec", "e_min", "e_max", "flavour", "t_start", "t_stop", "mjdref", "timesys", "mjd_start", "mjd_stop")

    def rows_of(templates: pl.DataFrame, lengths: np.ndarray, done: int) -> list[dict]:
        rows = []
        for j, row in enumerate(templates.select("source_id", *copied).iter_rows(named=True)):
            name = f"null{done + j:07d}"
            rows.append({k: row[k] for k in copied} | {"file": name, "source_id": name, "object": row["source_id"],
                                                       "content_hash": f"{seed}:{done + j}", "file_size": 0,
                                                       "n_rows_file": int(lengths[j])})
        return rows

    # one thread (derive_store's): the generator's draws stay in pick order
    derive_store(store, picks, target, lambda batch: simulate_constants(batch, rng), rows_of, batch_size, progress,
                 "null sources")
