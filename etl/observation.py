"""How eROSITA's all-sky survey observes one synthetic source: scans, exposure, counts, and the FITS
columns of each light-curve flavour.

A source on the survey's scanned strip is seen for ~40 s every 4 h (an eroday) for as many
consecutive erodays as its ecliptic latitude gives (:func:`draw_n_erodays`). Source and background
counts are Poisson draws; rates are background-subtracted ``(COUNTS - BACK_COUNTS x BACKRATIO) /
(TIMEDEL x FRACEXP)`` and may be negative, exactly as eSASS computes them. Three flavours:

* ``rebinned`` (eRebin): one bin per scan, bins with FRACEXP < 0.1 dropped, RATE_ERRM/RATE_ERRP;
* ``srctool`` (raw eSASS, as the bexvar example files): 10 s bins over each scan with
  zero-exposure bins either side, RATE_ERR (Gehrels' upper error, as the real files have it);
* ``dr1`` (the public eRASS1 DR1 release): 10 s bins within scans of ~40 s (4-6 rows each, some
  barely exposed), RATE_ERR *and* the estimated asymmetric RATE_ESTPOSERR / RATE_ESTNEGERR (the
  latter negative), FRACFLATAREA, FRACFLATEXP, BACKSCAL_SRC/BACK; RATE NaN where no band is
  exposed, +inf where one band's FRACEXP is exactly 0, thousands of ct/s (either sign) where it is
  ~1e-6; RATE_ERR NaN on rows with fewer than 2 counts, BACKRATIO NaN where nothing is exposed.

Shape legend: N = rows of the file, S = scans, K = bands (3: 0.2-0.6, 0.6-2.3, 2.3-5.0 keV).
"""

from __future__ import annotations

import numpy as np

from etl.lightcurve import ERODAY_S, FRACEXP_MIN
from etl.morphology import MorphologyRanges, profile
from etl.poisson import exposure, gehrels_errors, net_rate

FLAVOURS = ("rebinned", "srctool", "dr1")
ERASS1_BANDS = ((0.2, 0.6), (0.6, 2.3), (2.3, 5.0))
#: Lower end of the eRASS1-like brightness distribution (ct/s, all bands; see draw_mean_rate).
ERASS1_RATE_MIN = 0.035
MJDREF = 51543.875  # eROSITA's reference: 2000-01-01T21:00 TT
ERASS1_START_S = (58829.0 - MJDREF) * 86400.0
ERASS1_DAYS = 182.0
#: Background in the source aperture per band (ct/s) and the hard band's extra vignetting.
BACKGROUND = np.array([0.012, 0.010, 0.006])
VIGNETTING = np.array([1.0, 1.01, 0.65])
#: srctool's 10 s bins over one passage: FRACEXP profile across the field of view.
PASSAGE = np.array([0, 0, 0.3, 0.9, 1.0, 0.8, 0.2, 0])


def ecliptic_latitude(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """Ecliptic latitude (deg) of equatorial J2000 positions (obliquity 23.4393 deg)."""
    eps = np.radians(23.4393)
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    sin_beta = np.sin(dec) * np.cos(eps) - np.cos(dec) * np.sin(eps) * np.sin(ra)
    return np.degrees(np.arcsin(np.clip(sin_beta, -1, 1)))


def draw_n_erodays(rng: np.random.Generator, beta_deg: np.ndarray) -> np.ndarray:
    """Erodays per source: ~8 on the ecliptic, rising as 1/cos(beta) to hundreds at the poles."""
    expected = 7.0 / np.maximum(np.cos(np.radians(beta_deg)), 0.015)
    n = rng.poisson(np.minimum(expected, 450.0)) + rng.integers(-2, 3, size=beta_deg.shape)
    return np.clip(n, 4, 500)


def draw_mean_rate(rng: np.random.Generator, brightness: str = "erass1", slope: float = 1.5) -> float:
    """A source's mean count rate (ct/s, all bands).

    ``erass1``: a log N - log S, N(>S) proportional to S^-slope (Euclidean: 1.5), above
    :data:`ERASS1_RATE_MIN` (capped at 300 ct/s): with the survey's ~20 s of exposure per eroday
    and 4-12 erodays, most sources get 5-10 counts in all, as eRASS1's sources near the detection
    limit do, and a minority hundreds or more. ``uniform``: log-uniform in 0.03-5 ct/s (the
    generator's earlier, bright-heavy default).
    """
    u = rng.uniform()
    if brightness == "uniform":
        return float(np.exp(np.log(0.03) + (np.log(5.0) - np.log(0.03)) * u))
    if brightness != "erass1":
        raise ValueError(f"brightness must be 'erass1' or 'uniform', not {brightness!r}")
    return float(min(ERASS1_RATE_MIN * (1.0 - u) ** (-1.0 / slope), 300.0))


def simulate_source(rng: np.random.Generator, flavour: str, n_erodays: int, klass: str, brightness: str = "erass1",
                    ranges: MorphologyRanges = MorphologyRanges(), slope: float = 1.5, background: float = 1.0):
    """Simulate one source's FITS columns and truth parameters.

    Parameters
    ----------
    flavour : {"rebinned", "srctool", "dr1"}
    klass : str
        A class of :mod:`etl.morphology`.
    ranges, slope, background
        The generator's knobs: morphology ranges, log N - log S slope, background scale.

    Returns
    -------
    columns : dict of str to ndarray
        FITS columns (upper-case names), shapes (N,) or (N, 3).
    truth : dict
        The morphology's parameters (:func:`etl.morphology.profile`), mean rate, hardness and
        ``net_counts``, the expected source counts over all bins and bands.
    """
    if flavour not in FLAVOURS:
        raise ValueError(f"flavour must be one of {', '.join(FLAVOURS)}, not {flavour!r}")
    mean_rate = draw_mean_rate(rng, brightness, slope)
    soft = rng.uniform(0.15, 0.5)
    hard = rng.uniform(0.02, 0.15)
    fractions = np.array([soft, 1.0 - soft - hard, hard])
    bkg = BACKGROUND * background
    t_first = ERASS1_START_S + rng.uniform(0, ERASS1_DAYS * 86400.0 - n_erodays * ERODAY_S)
    pass_centres = t_first + ERODAY_S * np.arange(n_erodays) + rng.normal(0, 60.0, n_erodays)
    base_exp = rng.uniform(0.03, 1.0, n_erodays)  # vignetting x time on source per pass

    if flavour == "rebinned":
        time = pass_centres
        timedel = rng.uniform(25.0, 45.0, n_erodays)
        fracexp = np.clip(base_exp[:, None] * VIGNETTING, 0, 1)
    else:
        time, fracexp = _passages(rng, pass_centres, base_exp, flavour)
        timedel = np.full(time.shape, 10.0)

    m, params = profile(rng, klass, time - time[0], len(fractions), ranges)
    src_rate = mean_rate * m * fractions  # (N, K)
    expo = exposure(timedel, fracexp)
    backratio = rng.uniform(0.005, 0.015) * np.ones(time.shape)
    back_counts = rng.poisson(bkg * expo / backratio[:, None]).astype("f4")
    counts = rng.poisson((src_rate + bkg) * expo).astype("i4")
    lower, upper = gehrels_errors(counts)
    rate = net_rate(counts, back_counts, backratio, expo)
    with np.errstate(divide="ignore", invalid="ignore"):
        err_lo = lower / expo
        err_hi = upper / expo
    exposed = fracexp > 0
    cols = {"TIME": time.astype("f8"), "TIMEDEL": timedel.astype("f8"), "COUNTS": counts,
            "RATE": np.where(exposed, rate, np.nan).astype("f4")}
    if flavour == "rebinned":
        keep = fracexp.max(axis=1) >= FRACEXP_MIN  # eRebin drops bins below the cut
        if keep.sum() < 2:
            keep[np.argsort(fracexp.max(axis=1))[-2:]] = True
        cols["RATE_ERRM"] = np.where(exposed, err_lo, np.nan).astype("f4")
        cols["RATE_ERRP"] = np.where(exposed, err_hi, np.nan).astype("f4")
        cols.update(BACK_COUNTS=back_counts, FRACEXP=fracexp.astype("f4"), BACKRATIO=backratio)
        cols = {k: v[keep] for k, v in cols.items()}
    elif flavour == "srctool":
        # Real srctool RATE_ERR is close to Gehrels' upper error, not sqrt(N): in the three
        # fixture files RATE_ERR x exposure is 1.05-1.2 x (1 + sqrt(N + 0.75)) for N = 0..10,
        # so an empty bin keeps a one-count error instead of almost none.
        cols["RATE_ERR"] = np.where(exposed, err_hi, np.nan).astype("f4")
        cols["BACK_COUNTS"] = back_counts
        cols["FRACAREA"] = np.where(exposed, 1.0, 0.0).astype("f4")
        cols["FRACTIME"] = fracexp[:, 0].clip(0, 1).astype("f4")
        cols["FRACEXP"] = fracexp.astype("f4")
        cols["OFFAXIS"] = rng.uniform(0, 0.5, time.shape).astype("f4")
        cols["BACKRATIO"] = np.where(exposed[:, 0] | exposed[:, 2], backratio, np.nan)
    else:
        cols = _dr1_columns(rng, cols, counts, back_counts, backratio, fracexp, exposed, err_lo, err_hi)
    truth = {"mean_rate": mean_rate, "hardness": float(hard), "net_counts": float((src_rate * expo).sum()), **params}
    return cols, truth


def _passages(rng: np.random.Generator, pass_centres: np.ndarray, base_exp: np.ndarray, flavour: str
              ) -> tuple[np.ndarray, np.ndarray]:
    """10 s bins over each passage: times (N,) and FRACEXP (N, K), sorted and unique."""
    n = len(pass_centres)
    if flavour == "srctool":
        offsets = np.arange(-3, 5) * 10.0
        shape = np.clip(PASSAGE + rng.normal(0, 0.05, (n, len(PASSAGE))), 0, 1)
    else:  # dr1: 4-6 rows per scan, the outer ones barely exposed (FRACEXP ~1e-4 to 1e-7) or not at all
        width = rng.integers(4, 7, n)[:, None]
        j = np.arange(6)[None, :]
        offsets = np.arange(6) * 10.0 - 20.0
        shape = np.clip(1.0 - ((j - (width - 1) / 2.0) / (width / 2.0)) ** 2 + rng.normal(0, 0.05, (n, 6)), 0, 1)
        edge = (rng.random((n, 6)) < 0.3) & (shape < 0.25)
        shape = np.where(edge, 10.0 ** rng.uniform(-7, -4, (n, 6)), shape)
        shape = np.where(j < width, shape, -1.0)  # beyond the scan: no row
    time = ((np.round(pass_centres / 10.0) * 10.0)[:, None] + offsets).ravel()
    fracexp = (shape * base_exp[:, None]).ravel()[:, None] * VIGNETTING
    present = (shape.ravel() >= 0) if flavour == "dr1" else np.ones(time.shape, bool)
    time, fracexp = time[present], np.clip(fracexp[present], 0, 1)
    order = np.argsort(time, kind="stable")
    time, fracexp = time[order], fracexp[order]
    unique = np.concatenate([[True], np.diff(time) > 0])
    if flavour == "dr1":  # exactly zero in one band now and then: eSASS writes +inf there
        zero = rng.random(fracexp.shape) < 0.03
        fracexp = np.where(zero & (fracexp < 0.3), 0.0, fracexp)
    return time[unique], fracexp[unique]


def _dr1_columns(rng, cols, counts, back_counts, backratio, fracexp, exposed, err_lo, err_hi) -> dict:
    """The eRASS1 DR1 release's columns and quirks (module docstring)."""
    rate = cols["RATE"]
    any_exposed = exposed.any(axis=1)
    rate = np.where(~exposed & any_exposed[:, None], np.inf, rate).astype("f4")  # one band at exactly 0
    n = len(rate)
    enough = counts >= 2
    rate_err = np.where(exposed & (enough | (rng.random(counts.shape) < 0.1)), err_hi, np.nan).astype("f4")
    estimated = exposed & enough
    cols.update(
        RATE=rate,
        RATE_ERR=rate_err,
        RATE_ESTPOSERR=np.where(estimated, err_hi * rng.uniform(0.97, 1.03, counts.shape), np.nan).astype("f4"),
        RATE_ESTNEGERR=np.where(estimated, -err_lo * rng.uniform(0.97, 1.03, counts.shape), np.nan).astype("f4"),
        BACK_COUNTS=back_counts,
        FRACAREA=np.where(exposed, 1.0, 0.0).astype("f4"),
        FRACFLATAREA=np.where(any_exposed, 1.0, 0.0).astype("f4"),
        FRACTIME=np.clip(fracexp[:, 0] * 1.05, 0, 1).astype("f4"),
        FRACEXP=fracexp.astype("f4"),
        FRACFLATEXP=np.clip(fracexp[:, 1] * 1.02, 0, 1).astype("f4"),
        OFFAXIS=rng.uniform(0, 0.5, n).astype("f4"),
        BACKSCAL_SRC=np.full(n, 1.4e-5, "f4"),
        BACKSCAL_BACK=(1.4e-5 / backratio).astype("f4"),
        BACKRATIO=np.where(any_exposed, backratio, np.nan),
    )
    return cols
