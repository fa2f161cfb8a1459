"""Poisson count quantities of eROSITA light curves, one definition each: the exposure, the background
expected in the source aperture, net counts and rates, Gehrels' errors, and the padded count
arrays every Poisson statistic and the Poisson loss start from.

Used by the reader, the eroday binning, the synthetic archives, the null model, the morphology
statistics and the training data. Shape legend: P = points, K = bands, N = light curves, T = the
longest of them; the element-wise functions take any shape, a per-point column broadcasting
against a per-band one as ``(P,)`` against ``(P, K)``.
"""

from __future__ import annotations

import numpy as np


def gehrels_errors(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gehrels (1986, ApJ 303, 336) approximate 1-sigma Poisson errors on counts.

    The upper error is eq. 7's ``1 + sqrt(N + 3/4)`` for S = 1; the lower error is the leading
    term of eq. 12's lower limit, ``sqrt(N - 1/4)`` (0 below a quarter count). eSASS's RATE_ERR
    times the exposure is within a few per cent of the upper error.

    Returns
    -------
    lower, upper : ndarray (float64)
    """
    n = np.asarray(counts, dtype="f8")
    lower = np.sqrt(np.clip(n - 0.25, 0.0, None))
    upper = 1.0 + np.sqrt(np.clip(n, 0.0, None) + 0.75)
    return lower, upper


def exposure(timedel: np.ndarray, fracexp: np.ndarray) -> np.ndarray:
    """Seconds of exposure per bin and band, ``TIMEDEL x FRACEXP``: (P, K) from (P,) and (P, K) (float64).

    What converts a rate into expected counts, for every statistic, the null model and the loss.
    """
    return np.asarray(timedel, "f8")[..., None] * np.asarray(fracexp, "f8")


def aperture_background(back_counts: np.ndarray, backratio: np.ndarray) -> np.ndarray:
    """Background counts expected in the source aperture, ``BACK_COUNTS x BACKRATIO``: (P, K) from (P, K) and (P,)."""
    return np.asarray(back_counts, "f8") * np.asarray(backratio, "f8")[..., None]


def net_counts(counts: np.ndarray, back_counts: np.ndarray, backratio: np.ndarray) -> np.ndarray:
    """Background-subtracted counts, ``C - B x BACKRATIO`` (P, K)."""
    return np.asarray(counts, "f8") - aperture_background(back_counts, backratio)


def net_rate(counts: np.ndarray, back_counts: np.ndarray, backratio: np.ndarray, exposure: np.ndarray) -> np.ndarray:
    """Background-subtracted rate as eSASS computes it: ``(C - B x BACKRATIO) / exposure`` (NaN where exposure is 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(exposure > 0, net_counts(counts, back_counts, backratio) / np.where(exposure > 0, exposure, 1.0), np.nan)


def padded_counts(batch, length: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Counts, aperture background and exposure (N, T, K) of a batch, and where a bin is usable (N, T, K).

    Usable: a real step (not padding) with exposure > 0 and finite counts >= 0 and a finite
    background >= 0; elsewhere the three arrays hold 0, so sums and likelihoods skip those bins
    without masks of their own. ``batch`` is an :class:`etl.store.LightCurveBatch` read with
    counts, back_counts, backratio, fracexp and timedel; ``length`` cuts or pads T.
    """
    length = int(batch.lengths.max(initial=1)) if length is None else int(length)
    counts, mask = batch.padded("counts", length, fill=np.nan)
    back = aperture_background(batch.padded("back_counts", length, fill=np.nan)[0],
                               batch.padded("backratio", length, fill=np.nan)[0])
    expo = exposure(batch.padded("timedel", length, fill=np.nan)[0], batch.padded("fracexp", length, fill=np.nan)[0])
    counts = counts.astype("f8")
    with np.errstate(invalid="ignore"):
        usable = (mask[..., None] & np.isfinite(counts) & (counts >= 0) & np.isfinite(expo) & (expo > 0)
                  & np.isfinite(back) & (back >= 0))
    return np.where(usable, counts, 0.0), np.where(usable, back, 0.0), np.where(usable, expo, 0.0), usable
