"""Eroday binning at ingest: the 10 s bins of one survey scan become one bin.

    python -m etl.ingest ARCHIVE --store STORE --bin eroday

eROSITA scans a great circle every 4 h (an eroday), so a source is seen for ~40 s per scan: a
DR1 srctool light curve holds 4-6 rows of 10 s per scan and, near the ecliptic poles, thousands
of rows. The eRASS1 variability work and the seed's model use one bin per scan, as eRebin makes
them (Arcodia et al.); this module makes them at ingest, after the fractional-exposure cut:

* a scan is a run of kept bins whose gaps (start of a bin minus end of the previous) are shorter
  than :data:`SCAN_GAP_S` (an hour: a quarter of the revolution, far longer than any gap within a
  ~40 s scan and far shorter than the 4 h between scans);
* TIME is the scan's first bin start and TIMEDEL spans the scan to its last bin end;
* COUNTS and BACK_COUNTS are summed per band; the exposure is ``sum(TIMEDEL x FRACEXP)`` per band
  and FRACEXP the scan's mean, ``exposure / TIMEDEL``, so that ``TIMEDEL x FRACEXP`` stays the
  exposure for every consumer (statistics, Poisson loss, null model);
* BACKRATIO is exposure-weighted (weights: the row's exposure summed over bands);
* RATE = (COUNTS - BACK_COUNTS x BACKRATIO) / exposure, as eSASS computes it (NaN without exposure);
* the errors are Gehrels' (1986, ApJ 303, 336; eqs. 7 and 12) approximate 1-sigma Poisson errors
  of the source-aperture counts combined in quadrature with those of the scaled background counts
  (upper: C's upper and B x BACKRATIO's lower error; lower: the other way round), over the exposure;
* a scan with no exposure in any band is dropped (no measurement); a file left without a scan is
  rejected as ``no_exposed_rows``.

eRebin's ``*_rebinned.fits`` files are eroday bins already and pass through unchanged. Counts are
conserved exactly (``tests/etl/test_binning.py``).

Shape legend: T = kept 10 s bins of one source, S = scans, K = bands.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from etl.lightcurve import ERODAY_S, LightCurve
from etl.poisson import exposure as exposure_of
from etl.poisson import gehrels_errors, net_rate

#: What ``--bin`` accepts; a store holds one binning (its ``binning`` attribute).
BINNINGS = ("none", "eroday")
#: Kept bins closer than this (end of one to start of the next) belong to one scan.
SCAN_GAP_S = ERODAY_S / 4


def scan_index(time: np.ndarray, timedel: np.ndarray) -> np.ndarray:
    """Scan number (0, 1, ...) of each bin (T,): a new scan after a gap of :data:`SCAN_GAP_S` or more."""
    gaps = time[1:] - (time[:-1] + timedel[:-1])
    return np.concatenate([[0], np.cumsum(gaps >= SCAN_GAP_S)]).astype(np.int64)


def bin_erodays(lc: LightCurve) -> LightCurve | None:
    """One bin per scan (module docstring); None when no scan has any exposure. Rebinned files pass through."""
    if lc.flavour == "rebinned":
        return lc
    c = lc.columns
    scan = scan_index(c["time"], c["timedel"])
    n = int(scan[-1]) + 1
    fracexp = np.nan_to_num(c["fracexp"].astype("f8"), nan=0.0)
    row_exposure = exposure_of(c["timedel"], fracexp)  # (T, K)
    first = np.searchsorted(scan, np.arange(n), side="left")
    last = np.searchsorted(scan, np.arange(n), side="right") - 1

    def per_scan(values: np.ndarray) -> np.ndarray:  # (T, ...) -> (S, ...)
        return np.add.reduceat(values, first, axis=0)

    exposure = per_scan(row_exposure)
    counts = per_scan(np.nan_to_num(c["counts"].astype("f8")))
    back = per_scan(np.nan_to_num(c["back_counts"].astype("f8")))
    weight = row_exposure.sum(axis=1) * np.isfinite(c["backratio"])
    with np.errstate(invalid="ignore", divide="ignore"):
        backratio = per_scan(weight * np.nan_to_num(c["backratio"])) / per_scan(weight)
    start = c["time"][first]
    timedel = c["time"][last] + c["timedel"][last] - start
    keep = exposure.max(axis=1) > 0
    if not keep.any():
        return None
    exposure, counts, back, backratio = exposure[keep], counts[keep], back[keep], backratio[keep]
    start, timedel = start[keep], timedel[keep]
    c_lo, c_hi = gehrels_errors(counts)
    b_lo, b_hi = gehrels_errors(back)
    scale = np.nan_to_num(backratio)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        errp = np.sqrt(c_hi**2 + (scale * b_lo) ** 2) / exposure
        errm = np.sqrt(c_lo**2 + (scale * b_hi) ** 2) / exposure
    exposed = exposure > 0
    columns = {
        "time": start,
        "timedel": timedel,
        "rate": net_rate(counts, back, np.nan_to_num(backratio), exposure).astype("f4"),
        "rate_errm": np.where(exposed, errm, np.nan).astype("f4"),
        "rate_errp": np.where(exposed, errp, np.nan).astype("f4"),
        "counts": counts.astype("f4"),
        "back_counts": back.astype("f4"),
        "fracexp": (exposure / timedel[:, None]).astype("f4"),
        "backratio": backratio.astype("f8"),
    }
    return dataclasses.replace(lc, columns=columns, error_convention="gehrels", n_err_fallback=0)
