"""Generate realistic synthetic eRASS1-like light-curve archives with labelled variability.

    python -m etl.synth OUT_DIR --n 1000 --seed 1 [--flavour rebinned|srctool|mixed] [--bad K] [--gzip]

Each source gets a sky position; its number of erodays (4-h survey revolutions that see it)
grows towards the ecliptic poles as on the real survey (most sources 4-12, a tail to hundreds).
Source and background counts are Poisson draws, rates are background-subtracted
``(COUNTS - BACK_COUNTS * BACKRATIO) / (TIMEDEL * FRACEXP)`` and may be negative, exactly as
eSASS computes them. Variability classes: ``constant``, ``flare`` (fast rise, exponential
decay), ``dip`` (eclipse-like box dip) and ``red_noise`` (log-normal Ornstein-Uhlenbeck).
``truth.parquet`` in OUT_DIR lists every file with its class (or, for ``--bad``, the reason
code ingest must give it) and whether it is ``known``: ``reference.parquet`` is a catalogue of
counterparts of 30 % of the sources at realistic position offsets plus unrelated field objects
(:func:`write_reference`), for cross-match demos and tests.
"""

from __future__ import annotations

import argparse
import gzip as gzip_module
import sys
from pathlib import Path

import numpy as np
import polars as pl
from astropy import units as u
from astropy.coordinates import SkyCoord
from tqdm import tqdm

from etl.fitswriter import bintable_fits_bytes

CLASSES = ("constant", "flare", "dip", "red_noise")
CLASS_WEIGHTS = (0.55, 0.15, 0.15, 0.15)
ERASS1_BANDS = ((0.2, 0.6), (0.6, 2.3), (2.3, 5.0))
#: Lower end of the eRASS1-like brightness distribution (ct/s, all bands; see draw_mean_rate).
ERASS1_RATE_MIN = 0.035
MJDREF = 51543.875  # eROSITA's reference: 2000-01-01T21:00 TT
ERASS1_START_S = (58829.0 - MJDREF) * 86400.0
ERASS1_DAYS = 182.0
ERODAY_S = 14400.0
#: Fraction of sources with a counterpart in the synthetic reference catalogue, and its position
#: error per axis (arcsec).
KNOWN_FRACTION = 0.3
POSITION_ERROR_ARCSEC = 2.5  # per axis, for truth tables without pos_err
#: Synthetic POS_ERR (radial 1 sigma, arcsec): a PSF-fit term falling as 1/sqrt(net counts) and a
#: systematic floor; 10 counts give 3.9", 100 counts 1.6", near eRASS1's (Merloni et al. 2024).
POS_ERR_PSF_ARCSEC = 12.0
POS_ERR_FLOOR_ARCSEC = 1.0
BAD_KINDS = (
    "not_fits",
    "empty_file",
    "unreadable",
    "corrupt_gzip",
    "no_rate_extension",
    "missing_columns",
    "single_band",
    "all_nan_rates",
    "no_rows",
    "bad_timedel",
    "unsorted_time",
    "duplicate_source",
)
_UNITS = {
    "TIME": "s", "TIMEDEL": "s", "COUNTS": "count", "RATE": "ct/s", "RATE_ERR": "ct/s",
    "RATE_ERRM": "ct/s", "RATE_ERRP": "ct/s", "BACK_COUNTS": "count", "FRACEXP": "ratio",
    "FRACAREA": "ratio", "FRACTIME": "ratio", "OFFAXIS": "deg", "BACKRATIO": "ratio",
}


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


def iau_name(ra: float, dec: float) -> str:
    """``1eRASS Jhhmmss.s+ddmmss`` as the eRASS1 catalogue names sources."""
    h = ra / 15.0
    hh, mm = int(h), int((h % 1) * 60)
    ss = ((h * 60) % 1) * 60
    sign = "+" if dec >= 0 else "-"
    d = abs(dec)
    dd, dm = int(d), int((d % 1) * 60)
    ds = int(((d * 60) % 1) * 60)
    return f"1eRASS J{hh:02d}{mm:02d}{ss:04.1f}{sign}{dd:02d}{dm:02d}{ds:02d}"


def variability(rng: np.random.Generator, klass: str, t_erodays: np.ndarray) -> tuple[np.ndarray, dict]:
    """Multiplicative rate profile m(t) >= 0 for one source and its parameters.

    Parameters
    ----------
    t_erodays : ndarray, shape (T,)
        Time since the first bin, in erodays.
    """
    span = max(float(t_erodays[-1]), 1.0)
    if klass == "constant":
        return np.ones_like(t_erodays), {}
    if klass == "flare":
        amp = float(np.exp(rng.uniform(np.log(3), np.log(20))))
        tau = float(rng.uniform(0.7, 3.0))
        t0 = float(rng.uniform(0.0, 0.7 * span))
        dt = t_erodays - t0
        rise = np.exp(-0.5 * (dt / (0.25 * tau)) ** 2)
        decay = np.exp(-np.clip(dt, 0, None) / tau)
        return 1.0 + amp * np.where(dt < 0, rise, decay), {"amplitude": amp, "tau": tau, "t0": t0}
    if klass == "dip":
        depth = float(rng.uniform(0.7, 0.97))
        width = float(rng.uniform(1.0, max(1.5, 0.35 * span)))
        t0 = float(rng.uniform(0.0, max(span - width, 0.5)))
        inside = (t_erodays >= t0) & (t_erodays <= t0 + width)
        if not inside.any():  # guarantee the eclipse is sampled at least once
            inside[rng.integers(0, len(t_erodays))] = True
        return np.where(inside, 1.0 - depth, 1.0), {"amplitude": depth, "tau": width, "t0": t0}
    if klass == "red_noise":
        sigma = float(rng.uniform(0.5, 1.1))
        tau = float(rng.uniform(1.5, 8.0))
        x = np.empty_like(t_erodays)
        x[0] = rng.normal()
        steps = np.diff(t_erodays)
        for i, step in enumerate(steps, start=1):
            phi = np.exp(-step / tau)
            x[i] = phi * x[i - 1] + np.sqrt(1 - phi * phi) * rng.normal()
        return np.exp(sigma * x - 0.5 * sigma * sigma), {"amplitude": sigma, "tau": tau, "t0": 0.0}
    raise ValueError(f"unknown variability class {klass!r}")


def draw_mean_rate(rng: np.random.Generator, brightness: str = "erass1") -> float:
    """A source's mean count rate (ct/s, all bands).

    ``erass1``: a Euclidean log N - log S, N(>S) proportional to S^-1.5, above
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
    return float(min(ERASS1_RATE_MIN * (1.0 - u) ** (-1.0 / 1.5), 300.0))


def simulate_source(rng: np.random.Generator, flavour: str, ra: float, dec: float, n_erodays: int, klass: str,
                    brightness: str = "erass1"):
    """Simulate one source's FITS columns and truth parameters.

    Returns
    -------
    columns : dict of str to ndarray
        FITS columns (upper-case names), shapes (N,) or (N, 3).
    truth : dict
        Class parameters (``amplitude``: flare peak factor, dip depth or red-noise sigma), mean
        rate, hardness and ``net_counts``, the expected source counts over all bins and bands.
    """
    mean_rate = draw_mean_rate(rng, brightness)
    soft = rng.uniform(0.15, 0.5)
    hard = rng.uniform(0.02, 0.15)
    fractions = np.array([soft, 1.0 - soft - hard, hard])
    bkg = np.array([0.012, 0.010, 0.006])  # ct/s in the source aperture
    t_first = ERASS1_START_S + rng.uniform(0, ERASS1_DAYS * 86400.0 - n_erodays * ERODAY_S)
    pass_centres = t_first + ERODAY_S * np.arange(n_erodays) + rng.normal(0, 60.0, n_erodays)
    base_exp = rng.uniform(0.03, 1.0, n_erodays)  # vignetting x time on source per pass
    vig = np.array([1.0, 1.01, 0.65])  # hard band is more vignetted, lower FRACEXP

    if flavour == "rebinned":
        time = pass_centres
        timedel = rng.uniform(25.0, 45.0, n_erodays)
        fracexp = np.clip(base_exp[:, None] * vig, 0, 1)
    else:
        # srctool: 10-s bins over each passage, zero-exposure bins either side as eSASS writes.
        offsets = np.arange(-3, 5) * 10.0
        time = (np.round(pass_centres / 10.0) * 10.0)[:, None] + offsets
        time = time.ravel()
        timedel = np.full(time.shape, 10.0)
        profile = np.clip(np.array([0, 0, 0.3, 0.9, 1.0, 0.8, 0.2, 0]) + rng.normal(0, 0.05, (n_erodays, 8)), 0, 1)
        fracexp = np.clip((profile * base_exp[:, None]).ravel()[:, None] * vig, 0, 1)
        order = np.argsort(time, kind="stable")
        time, fracexp = time[order], fracexp[order]
        keep_unique = np.concatenate([[True], np.diff(time) > 0])
        time, fracexp, timedel = time[keep_unique], fracexp[keep_unique], timedel[keep_unique]

    t_erodays = (time - time[0]) / ERODAY_S
    profile, params = variability(rng, klass, t_erodays)
    src_rate = mean_rate * profile[:, None] * fractions  # [N, 3]
    exposure = timedel[:, None] * fracexp
    backratio = rng.uniform(0.005, 0.015) * np.ones(time.shape)
    back_counts = rng.poisson(bkg * exposure / backratio[:, None]).astype("f4")
    counts = rng.poisson((src_rate + bkg) * exposure).astype("i4")
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = (counts - back_counts * backratio[:, None]) / exposure
        err_lo = np.sqrt(np.clip(counts - 0.25, 0, None)) / exposure
        err_hi = (1.0 + np.sqrt(counts + 0.75)) / exposure
    exposed = fracexp > 0
    rate = np.where(exposed, rate, np.nan).astype("f4")
    cols = {"TIME": time.astype("f8"), "TIMEDEL": timedel.astype("f8"), "COUNTS": counts, "RATE": rate}
    if flavour == "rebinned":
        keep = fracexp.max(axis=1) >= 0.1  # eRebin drops bins with FRACEXP < 0.1
        if keep.sum() < 2:
            keep[np.argsort(fracexp.max(axis=1))[-2:]] = True
        cols["RATE_ERRM"] = np.where(exposed, err_lo, np.nan).astype("f4")
        cols["RATE_ERRP"] = np.where(exposed, err_hi, np.nan).astype("f4")
        cols.update(BACK_COUNTS=back_counts, FRACEXP=fracexp.astype("f4"), BACKRATIO=backratio)
        cols = {k: v[keep] for k, v in cols.items()}
    else:
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
    truth = {"mean_rate": mean_rate, "hardness": float(hard), "net_counts": float((src_rate * exposure).sum()),
             **{k: params.get(k, np.nan) for k in ("amplitude", "tau", "t0")}}
    return cols, truth


def position_error(net_counts: float) -> float:
    """Radial 1-sigma position error (arcsec) of a source with ``net_counts`` counts (POS_ERR)."""
    return float(np.hypot(POS_ERR_FLOOR_ARCSEC, POS_ERR_PSF_ARCSEC / np.sqrt(max(net_counts, 1.0))))


def lightcurve_header(source_id: str, ra: float, dec: float, cols: dict, bands=ERASS1_BANDS,
                      pos_err: float | None = None) -> list:
    """OGIP light-curve header cards (position and its error, band edges, time reference)."""
    cards = [
        ("HDUCLASS", "OGIP", ""), ("HDUCLAS1", "LIGHTCURVE", ""), ("HDUCLAS2", "TOTAL", ""),
        ("TELESCOP", "eROSITA", ""), ("INSTRUME", "MERGED", ""), ("OBS_MODE", "SURVEY", ""),
        ("CREATOR", "etl.synth", "synthetic eRASS1-like light curve"),
        ("OBJECT", source_id, ""), ("RA_OBJ", float(ra), "[deg]"), ("DEC_OBJ", float(dec), "[deg]"),
        ("MJDREF", MJDREF, "[d]"), ("TIMESYS", "TT", ""), ("TIMEUNIT", "s", ""),
    ]
    if pos_err is not None:
        cards.append(("POS_ERR", round(float(pos_err), 3), "[arcsec] 1-sigma position error (radial)"))
    if len(cols["TIME"]):
        cards += [("TSTART", float(cols["TIME"][0]), ""), ("TSTOP", float(cols["TIME"][-1] + cols["TIMEDEL"][-1]), "")]
    for i, (lo, hi) in enumerate(bands, start=1):
        cards += [(f"E_MIN{i}", float(lo), "[keV]"), (f"E_MAX{i}", float(hi), "[keV]")]
    return cards


def file_name(flavour: str, tile: int, number: int, gzip: bool) -> str:
    """eRASS1 naming: ``em01_TTTTTT_020_LightCurve_NNNNN_c010[_rebinned].fits[.gz]``."""
    stem = f"em01_{tile:06d}_020_LightCurve_{number:05d}_c010"
    if flavour == "rebinned":
        stem += "_rebinned"
    return stem + ".fits" + (".gz" if gzip else "")


def make_archive(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    flavour: str = "rebinned",
    bad: int = 0,
    gzip: bool = False,
    progress: bool = True,
    brightness: str = "erass1",
) -> pl.DataFrame:
    """Write ``n`` good and ``bad`` malformed light-curve files; return (and save) the truth table.

    Parameters
    ----------
    out_dir : path
        Created if missing.
    n : int
        Good sources.
    seed : int
        Everything is determined by it.
    flavour : {"rebinned", "srctool", "mixed"}
        ``mixed`` draws the flavour per source.
    bad : int
        Malformed files, cycling through :data:`BAD_KINDS`.
    gzip : bool
        Write ``.fits.gz``.
    brightness : {"erass1", "uniform"}
        Mean-rate distribution (:func:`draw_mean_rate`): eRASS1's log N - log S (default) or
        log-uniform 0.03-5 ct/s.
    """
    if flavour not in ("rebinned", "srctool", "mixed"):
        raise ValueError(f"flavour must be rebinned, srctool or mixed, not {flavour!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    n_erodays = draw_n_erodays(rng, ecliptic_latitude(ra, dec))
    classes = rng.choice(len(CLASSES), size=n, p=CLASS_WEIGHTS)
    flavours = rng.choice(["rebinned", "srctool"], size=n) if flavour == "mixed" else np.full(n, flavour)
    tiles = (np.floor(ra).astype(int) * 1000 + np.floor(dec + 90).astype(int))
    rows, used_ids, per_tile = [], set(), {}
    for i in tqdm(range(n), desc="synth", unit="file", disable=not progress, mininterval=0.5):
        source_id = iau_name(ra[i], dec[i])
        while source_id in used_ids:  # two sources closer than 0.1 s of RA: keep ids unique
            source_id += "a"
        used_ids.add(source_id)
        number = per_tile[tiles[i]] = per_tile.get(tiles[i], 0) + 1
        name = file_name(flavours[i], int(tiles[i]), number, gzip)
        klass = CLASSES[classes[i]]
        cols, truth = simulate_source(rng, flavours[i], ra[i], dec[i], int(n_erodays[i]), klass, brightness)
        truth["pos_err"] = round(position_error(truth["net_counts"]), 3)
        header = lightcurve_header(source_id, ra[i], dec[i], cols, pos_err=truth["pos_err"])
        _write(out / name, bintable_fits_bytes(cols, _UNITS, header=header), gzip)
        rows.append({"file": name, "source_id": source_id, "class": klass, "flavour": flavours[i], "ra": ra[i],
                     "dec": dec[i], "n_erodays": int(n_erodays[i]), "expected": "ok", **truth})
    for j in range(bad):
        kind = BAD_KINDS[j % len(BAD_KINDS)]
        rows.append(_write_bad(out, kind, j, rng, rows[: max(n, 0)], gzip))
    truth = pl.DataFrame(rows, infer_schema_length=None)
    truth = write_reference(out, truth, np.random.default_rng([seed, 1]))  # its own stream: the archive is unchanged
    truth.write_parquet(out / "truth.parquet")
    return truth


def scatter_positions(rng: np.random.Generator, ra: np.ndarray, dec: np.ndarray, sigma_arcsec: np.ndarray) -> SkyCoord:
    """Positions moved by a 2-D Gaussian of ``sigma_arcsec`` per axis (one per position), as
    measured positions scatter around true ones: the counterparts of a reference catalogue."""
    offset = np.hypot(*(rng.normal(0.0, 1.0, (2, len(ra))) * sigma_arcsec))
    return SkyCoord(ra * u.deg, dec * u.deg).directional_offset_by(rng.uniform(0, 360, len(ra)) * u.deg, offset * u.arcsec)


def write_reference(out: Path, truth: pl.DataFrame, rng: np.random.Generator, known_fraction: float = KNOWN_FRACTION
                    ) -> pl.DataFrame:
    """Write ``reference.parquet``, a catalogue of "known" objects, and mark them in the truth table.

    A fraction ``known_fraction`` of the good sources get a counterpart at a realistic offset
    (a 2-D Gaussian of each source's ``pos_err`` / sqrt(2) per axis, the radial 1-sigma error
    written as POS_ERR; :data:`POSITION_ERROR_ARCSEC` per axis for a table without it), plus
    twice as many unrelated field objects uniform on the sky. Columns: ``ref_id``, ``ra``, ``dec``, ``kind`` (``counterpart``/``field``), ``mag``.
    The truth table gains ``known`` (the source has a counterpart).
    """
    good = truth["expected"] == "ok" if "expected" in truth.columns else pl.Series([True] * truth.height)
    idx = np.flatnonzero(good.to_numpy())
    known = idx[rng.random(len(idx)) < known_fraction]
    sigma = (truth["pos_err"].to_numpy()[known] / np.sqrt(2.0) if "pos_err" in truth.columns
             else np.full(len(known), POSITION_ERROR_ARCSEC))
    moved = scatter_positions(rng, truth["ra"].to_numpy()[known], truth["dec"].to_numpy()[known], sigma)
    n_field = 2 * len(idx)
    ra = np.r_[moved.ra.deg, rng.uniform(0, 360, n_field)]
    dec = np.r_[moved.dec.deg, np.degrees(np.arcsin(rng.uniform(-1, 1, n_field)))]
    kind = ["counterpart"] * len(known) + ["field"] * n_field
    ref = pl.DataFrame({"ref_id": [f"REF{i:07d}" for i in range(len(ra))], "ra": ra, "dec": dec, "kind": kind,
                        "mag": rng.uniform(10, 21, len(ra))})
    ref.write_parquet(out / "reference.parquet")
    flags = np.zeros(truth.height, bool)
    flags[known] = True
    return truth.with_columns(pl.Series("known", flags))


def _write(path: Path, data: bytes, gzip: bool) -> None:
    if gzip:
        data = gzip_module.compress(data, compresslevel=6, mtime=0)
    path.write_bytes(data)


def _write_bad(out: Path, kind: str, j: int, rng: np.random.Generator, good_rows: list, gzip: bool) -> dict:
    """One malformed file of ``kind``; returns its truth row (``expected`` = reason code)."""
    source_id = f"bad_{kind}_{j:04d}"
    cols, _ = simulate_source(rng, "rebinned", 10.0, 10.0, 6, "constant")
    header = lightcurve_header(source_id, 10.0, 10.0, cols)
    name = f"em01_999999_020_LightCurve_{j:05d}_c010_bad_{kind}.fits"
    extname = "RATE"
    if kind == "not_fits":
        data = b"SIMPLE? this is a text file, not FITS\n" * 10
    elif kind == "empty_file":
        data = b""
    elif kind == "duplicate_source" and good_rows:
        original = good_rows[j % len(good_rows)]
        name = original["file"].replace(".fits", "_copy.fits")
        (out / name).write_bytes((out / original["file"]).read_bytes())
        return {"file": name, "source_id": original["source_id"], "class": None, "flavour": original["flavour"],
                "expected": "duplicate_source"}
    else:
        if kind == "no_rate_extension":
            extname = "EVENTS"
        elif kind == "missing_columns":
            cols.pop("RATE")
        elif kind == "single_band":  # 1-D band columns under a 3-band header
            cols = {k: (v[:, 0] if v.ndim == 2 else v) for k, v in cols.items()}
        elif kind == "all_nan_rates":
            cols["RATE"][:] = np.nan
        elif kind == "no_rows":
            cols = {k: v[:0] for k, v in cols.items()}
            header = [c for c in header if c[0] not in ("TSTART", "TSTOP")]
        elif kind == "bad_timedel":
            cols["TIMEDEL"][1] = -cols["TIMEDEL"][1]
        elif kind == "unsorted_time":
            cols = {k: v[::-1].copy() for k, v in cols.items()}
        data = bintable_fits_bytes(cols, _UNITS, extname=extname, header=header)
        if kind == "unreadable":
            data = data[: len(data) - 2880 + 100]  # cut inside the data block
        elif kind == "corrupt_gzip":
            data = gzip_module.compress(data, mtime=0)
            data = data[: len(data) // 2]
            name += ".gz"
    if gzip and kind not in ("corrupt_gzip", "empty_file", "not_fits", "unreadable"):
        name += ".gz"
        data = gzip_module.compress(data, mtime=0)
    (out / name).write_bytes(data)
    return {"file": name, "source_id": source_id, "class": None, "flavour": None, "expected": kind}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m etl.synth", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--n", type=int, default=1000, help="good sources (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flavour", choices=["rebinned", "srctool", "mixed"], default="rebinned")
    parser.add_argument("--bad", type=int, default=0, help="malformed files to add (default 0)")
    parser.add_argument("--gzip", action="store_true", help="write .fits.gz")
    parser.add_argument("--brightness", choices=["erass1", "uniform"], default="erass1",
                        help="mean rates: eRASS1 log N - log S above 0.035 ct/s (default) or log-uniform 0.03-5 ct/s")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.n < 0 or args.bad < 0:
        parser.error("--n and --bad must be >= 0")
    truth = make_archive(args.out_dir, args.n, args.seed, args.flavour, args.bad, args.gzip, progress=not args.quiet,
                         brightness=args.brightness)
    counts = truth.group_by("class").len().sort("class")
    summary = ", ".join(f"{c or 'bad'}: {k}" for c, k in counts.iter_rows())
    print(f"wrote {truth.height} files to {args.out_dir} ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
