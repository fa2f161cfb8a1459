"""Cross-band morphology statistics of the ``morphology`` feature set: does a band do what the others do?

The common variability of X-ray sources (flares, dips, red noise) changes the whole spectrum
together, while some of the rarest and most interesting changes happen in one band: quasi-periodic
eruptions and supersoft outbursts in the soft band, absorption episodes that take the soft band
away and leave the hard one (Miniutti et al. 2019; Arcodia et al. 2021). This set asks, per band,
how surprising the band's light curve is given the others:

* **profile from the other bands.** The counts of the other bands follow
  ``lambda_jt = e_jt a_j m_t + b_jt`` (exposure ``e = TIMEDEL x FRACEXP``, background
  ``b = BACK_COUNTS x BACKRATIO``, band normalisations ``a_j`` and one time profile ``m_t`` shared
  by the bands): a rank-one Poisson model, fitted by its EM (multiplicative) updates, as
  non-negative matrix factorisation with a Poisson likelihood is (Lee & Seung 2001; with a known
  additive background as in Richardson-Lucy deconvolution);
* **band k under that profile.** Band k's counts are modelled as ``e_kt a_k m_t + b_kt`` with
  only its normalisation ``a_k`` free, and ``lbo_b{k}`` is the Poisson deviance of that fit
  (Cash 1979): large when band k varies in a way the other bands do not (leave-band-out);
* calibrated on the store's simulated constant sources (:mod:`features.null_model`) as the other
  statistics are (:class:`features.calibration.NullTable`, by number of bins and net counts):
  ``lbo_fpp_b{k}``.

This is the classical counterpart of the model's cross-band surprise (:mod:`training.score`): the
same question, answered with a free per-bin profile instead of a learned one. It is what
``discovery_score_classical`` uses, so the deep model's contribution is measured against it.

Shape legend: N = light curves in a batch, T = the longest of them, K = bands.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from etl.poisson import padded_counts
from etl.store import LightCurveBatch, LightCurveStore
from features.calibration import column_fpp
from features.extraction import extract_by_batch

#: Bump when a definition here changes (part of the set's lineage).
MORPHOLOGY_VERSION = 1
COLUMNS = ("counts", "back_counts", "backratio", "fracexp", "timedel")
EM_ITERATIONS = 40


def poisson_deviance(counts: np.ndarray, expected: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """Element-wise Poisson deviance ``2 (C log(C / m) - (C - m))`` (Cash 1979), 0 where not usable."""
    m = np.maximum(expected, 1e-12)
    c_log = np.where(counts > 0, counts * np.log(np.where(counts > 0, counts, 1.0) / m), 0.0)
    return np.where(usable, 2.0 * (c_log - (counts - m)), 0.0)


def shared_profile(c: np.ndarray, b: np.ndarray, e: np.ndarray, usable: np.ndarray, iterations: int = EM_ITERATIONS
                   ) -> np.ndarray:
    """The time profile m (N, T) of the rank-one model ``e a_j m_t + b`` fitted to bands (N, T, J) by EM."""
    a = (np.clip(c - b, 0.0, None).sum(1) + 0.5) / np.maximum(e.sum(1), 1e-12)  # (N, J)
    m = np.ones(c.shape[:2])
    for _ in range(iterations):
        lam = e * a[:, None, :] * m[..., None] + b
        ratio = np.where(usable, c / np.maximum(lam, 1e-12), 0.0)
        m *= (ratio * e * a[:, None, :]).sum(2) / np.maximum((e * a[:, None, :]).sum(2), 1e-12)
        lam = e * a[:, None, :] * m[..., None] + b
        ratio = np.where(usable, c / np.maximum(lam, 1e-12), 0.0)
        a *= (ratio * e * m[..., None]).sum(1) / np.maximum((e * m[..., None]).sum(1), 1e-12)
    return m


def leave_band_out(c: np.ndarray, b: np.ndarray, e: np.ndarray, usable: np.ndarray, k: int) -> np.ndarray:
    """Deviance (N,) of band k under the profile of the other bands, its normalisation fitted (module docstring)."""
    others = [j for j in range(c.shape[2]) if j != k]
    m = shared_profile(c[..., others], b[..., others], e[..., others], usable[..., others])
    ck, bk, ek, uk = c[..., k], b[..., k], e[..., k], usable[..., k]
    ak = (np.clip(ck - bk, 0.0, None).sum(1) + 0.5) / np.maximum((ek * m).sum(1), 1e-12)
    for _ in range(EM_ITERATIONS):
        lam = ek * ak[:, None] * m + bk
        ratio = np.where(uk, ck / np.maximum(lam, 1e-12), 0.0)
        ak *= (ratio * ek * m).sum(1) / np.maximum(np.where(uk, ek * m, 0.0).sum(1), 1e-12)
    return poisson_deviance(ck, ek * ak[:, None] * m + bk, uk).sum(1)


def extract_batch(batch: LightCurveBatch, source_ids: list[str]) -> pl.DataFrame:
    """``source_id``, ``n_morph`` (bins with exposure) and ``lbo_b{k}`` of one batch read with :data:`COLUMNS`."""
    c, b, e, usable = padded_counts(batch)
    out: dict[str, object] = {"source_id": source_ids, "n_morph": usable.any(2).sum(1).astype(np.int64)}
    n_bands = c.shape[2]
    for k in range(n_bands):
        out[f"lbo_b{k + 1}"] = leave_band_out(c, b, e, usable, k) if n_bands > 1 else np.full(len(source_ids), np.nan)
    return pl.DataFrame(out)


def extract_morphology(store: LightCurveStore, batch_size: int = 512, progress: bool = False, n_jobs: int = 2,
                       rows: tuple[int, int] | None = None) -> pl.DataFrame:
    """The set's uncalibrated columns for the ok sources of ``store`` (``rows``: a part, in store order)."""
    schema = {"source_id": pl.String, "n_morph": pl.Int64} | {f"lbo_b{k}": pl.Float64 for k in range(1, len(store.e_min) + 1)}
    return extract_by_batch(store, extract_batch, COLUMNS, schema, batch_size, n_jobs, rows, progress, "morphology")


def calibrate(frame: pl.DataFrame, null: pl.DataFrame, net: pl.DataFrame, null_net: pl.DataFrame, n_bands: int) -> pl.DataFrame:
    """Add ``lbo_fpp_b{k}``: each deviance's false-positive probability among the simulated constants.

    ``net`` / ``null_net``: ``source_id`` and ``net_counts`` (all bands) of the store and of the null.
    """
    frame = frame.join(net, on="source_id", how="left")
    null = null.join(null_net, on="source_id", how="left")
    out = {f"lbo_fpp_b{k}": column_fpp(null, frame, f"lbo_b{k}", "n_morph") for k in range(1, n_bands + 1)}
    return frame.drop("net_counts").with_columns(pl.Series(name, values).fill_nan(None) for name, values in out.items())
