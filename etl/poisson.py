"""Poisson count statistics shared by the reader, the eroday binning, the synthetic archives and the
null model: one definition each.

Shape legend: any array shape; the functions are element-wise.
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


def net_rate(counts: np.ndarray, back_counts: np.ndarray, backratio: np.ndarray, exposure: np.ndarray) -> np.ndarray:
    """Background-subtracted rate as eSASS computes it: ``(C - B x BACKRATIO) / exposure`` (NaN where exposure is 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(exposure > 0, (counts - back_counts * backratio) / np.where(exposure > 0, exposure, 1.0), np.nan)
