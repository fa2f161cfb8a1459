"""The validated in-memory light curve and the per-point column schema shared by reader and store.

Shape legend: T = points (kept time bins) of one source, B = energy bands.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Per-point columns: name -> (numpy dtype, banded). Banded columns are shaped [T, B].
#: Rates and band-wise counts are float32 as eSASS writes them ('E'); time-like columns float64.
#: COUNTS ('J' in srctool files) is stored as float32, exact for any count below 2**24.
POINT_COLUMNS: dict[str, tuple[str, bool]] = {
    "time": ("f8", False),
    "timedel": ("f8", False),
    "rate": ("f4", True),
    "rate_errm": ("f4", True),
    "rate_errp": ("f4", True),
    "counts": ("f4", True),
    "back_counts": ("f4", True),
    "fracexp": ("f4", True),
    "backratio": ("f8", False),
}

#: The columns a model needs: rates and their lower/upper errors.
RATE_COLUMNS: tuple[str, ...] = ("rate", "rate_errm", "rate_errp")

FLAVOURS: tuple[str, ...] = ("rebinned", "srctool")

#: Fractional-exposure cut of ingest (eRebin's): keep rows whose best band has FRACEXP >= this.
#: The one definition of the default; the CLI, the flows and the store attributes use it.
FRACEXP_MIN: float = 0.1

#: Units of the per-point columns (FITS/OGIP spelling), written on the Zarr arrays.
POINT_UNITS: dict[str, str] = {
    "time": "s", "timedel": "s", "rate": "ct/s", "rate_errm": "ct/s", "rate_errp": "ct/s",
    "counts": "count", "back_counts": "count", "fracexp": "", "backratio": "",
}

#: What each per-point column is (the Zarr arrays' ``long_name``).
POINT_DESCRIPTIONS: dict[str, str] = {
    "time": "bin start, seconds since the source's MJDREF (catalog column mjdref) in its TIMESYS",
    "timedel": "bin width",
    "rate": "background-subtracted source count rate",
    "rate_errm": "lower 1-sigma error of rate",
    "rate_errp": "upper 1-sigma error of rate",
    "counts": "counts in the source aperture",
    "back_counts": "counts in the background aperture",
    "fracexp": "fractional exposure of the bin",
    "backratio": "source-to-background area ratio (scales back_counts to the source aperture)",
}

SECONDS_PER_DAY = 86400.0
#: One survey revolution ("eroday"): eRASS scans a great circle every 4 h, so a source is seen for
#: ~40 s every 4 h while it lies on the scanned strip.
ERODAY_S = 14400.0

#: Points per chunk (the unit of reading and decoding) and per shard (the unit of writing: one
#: file or object) of a new store. 16384 points of a banded float32 column decode to 192 KiB.
CHUNK_POINTS = 16_384
SHARD_POINTS = 16 * CHUNK_POINTS

#: Catalog row states (owned here, not in etl.catalog, so that parse workers need no polars).
STATUS_OK = "ok"
STATUS_REJECTED = "rejected"


def mean_rate_columns(n_bands: int) -> list[str]:
    """Names of the catalog's per-band mean-rate columns: ``mean_rate_b1`` ... ``mean_rate_b{n}``."""
    return [f"mean_rate_b{i}" for i in range(1, n_bands + 1)]


def mean_rates(rate: np.ndarray) -> np.ndarray:
    """Per-band mean of the finite rates of one light curve, (T, B) -> (B,); NaN for a band with none."""
    finite = np.isfinite(rate)
    sums = np.where(finite, rate, 0.0).sum(axis=0, dtype="f8")
    n_finite = finite.sum(axis=0)
    return np.where(n_finite > 0, sums / np.maximum(n_finite, 1), np.nan)  # an all-NaN band: NaN, no warning


def softest_band(e_min) -> int:
    """k of the lowest-energy band, 1-based as in the ``_b{k}`` column names."""
    return int(np.argmin(e_min)) + 1


def band_labels(e_min, e_max) -> list[str]:
    """``["0.2-0.6 keV", ...]``: how every figure and table names the bands."""
    return [f"{lo:g}-{hi:g} keV" for lo, hi in zip(e_min, e_max)]


@dataclass
class LightCurve:
    """One source's light curve after validation.

    Attributes
    ----------
    source_id : str
        Catalog id (:func:`etl.naming.source_id_of`: tile and number for eSASS names, else the
        OBJECT keyword, else the file name's stem).
    file : str
        Path or URL it was read from.
    flavour : str
        ``"rebinned"`` (eRebin, asymmetric errors) or ``"srctool"`` (raw eSASS output).
    e_min, e_max : ndarray, shape (B,)
        Band edges in keV, from the ``E_MIN{i}`` / ``E_MAX{i}`` keywords.
    ra, dec : float
        Source position (deg), NaN when the header lacks RA_OBJ / DEC_OBJ.
    object : str
        The OBJECT keyword as found (DR1: the source's running number in its sky tile).
    error_convention : str
        Where ``rate_errm`` / ``rate_errp`` came from (:data:`etl.reader.ERROR_CONVENTIONS`).
    n_err_fallback : int
        Exposed values whose error came from a later source in that order (e.g. RATE_ERR or
        Gehrels where the estimated errors are NaN).
    pos_err : float
        1-sigma position error (arcsec, radial: sqrt(sigma_RA^2 + sigma_Dec^2)) from the POS_ERR
        keyword, named as the eRASS1 catalogue's column (Merloni et al. 2024, A&A 682, A34);
        NaN when the file carries none.
    columns : dict of str to ndarray
        Per-point arrays named as in :data:`POINT_COLUMNS`: shape (T,) or (T, B). ``time`` is
        in seconds since ``mjdref`` (the file's TIME + TIMEZERO).
    n_rows_file : int
        Rows in the file before the fractional-exposure cut.
    mjdref : float
        MJD of time zero (MJDREF, or MJDREFI + MJDREFF); NaN when the file has none.
    timesys : str
        Time system of ``time`` and ``mjd`` (TIMESYS, eROSITA: ``TT``); empty when unknown.
    """

    source_id: str
    file: str
    flavour: str
    e_min: np.ndarray
    e_max: np.ndarray
    ra: float
    dec: float
    columns: dict[str, np.ndarray] = field(repr=False)
    n_rows_file: int = 0
    mjdref: float = float("nan")
    timesys: str = ""
    pos_err: float = float("nan")
    object: str = ""
    error_convention: str = ""
    n_err_fallback: int = 0

    def __getattr__(self, name: str) -> np.ndarray:
        # Columns read as attributes (lc.rate, lc.time) without duplicating nine properties.
        columns = self.__dict__.get("columns")
        if columns is not None and name in columns:
            return columns[name]
        raise AttributeError(name)

    @property
    def mjd(self) -> np.ndarray:
        """Bin start times as MJD (float64) in the file's time system :attr:`timesys`.

        ``astropy.time.Time(lc.mjd, format="mjd", scale=lc.timesys.lower())`` turns them into
        any other scale. All NaN when the file carried no MJDREF.
        """
        return self.mjdref + self.columns["time"] / SECONDS_PER_DAY

    def to_timeseries(self):
        """The light curve as an :class:`astropy.timeseries.TimeSeries`, ready for astropy's periodograms and plots.

        ``time`` is each bin's centre as :class:`astropy.time.Time` in the file's time system
        (TIMESYS, ``TT`` for eROSITA; TT when the file named none) from MJDREF; columns are
        :class:`~astropy.units.Quantity`: ``timedel`` (s), and per band ``k`` (1-based, as the
        catalog's ``mean_rate_b{k}``) ``rate_b{k}``, ``rate_errm_b{k}``, ``rate_errp_b{k}`` (ct/s),
        ``counts_b{k}``, ``back_counts_b{k}`` (ct), ``fracexp_b{k}``, plus ``backratio``; each band
        column's description gives its energy range, and ``meta`` the source, bands and MJDREF.
        Only the columns this light curve was read with are present.

        Raises
        ------
        ValueError
            When the light curve has no time reference (no MJDREF in its file).
        """
        import astropy.units as u
        from astropy.time import Time, TimeDelta
        from astropy.timeseries import TimeSeries

        if not np.isfinite(self.mjdref):
            raise ValueError(f"{self.source_id}: no MJDREF, so its times cannot be placed on a time scale")
        scale = (self.timesys or "TT").lower()
        centre = self.columns["time"] + 0.5 * self.columns.get("timedel", np.zeros(self.n_points))
        time = Time(self.mjdref, format="mjd", scale=scale) + TimeDelta(centre, format="sec")
        units = {"rate": u.ct / u.s, "rate_errm": u.ct / u.s, "rate_errp": u.ct / u.s, "counts": u.ct,
                 "back_counts": u.ct, "fracexp": u.dimensionless_unscaled}
        bands = band_labels(self.e_min, self.e_max)
        ts = TimeSeries(time=time, meta={"source_id": self.source_id, "bands": bands, "mjdref": self.mjdref,
                                         "timesys": scale.upper(), "file": self.file})
        if "timedel" in self.columns:
            ts["timedel"] = self.columns["timedel"] * u.s
        for name, unit in units.items():
            if name not in self.columns:
                continue
            for k, label in enumerate(bands):
                ts[f"{name}_b{k + 1}"] = np.asarray(self.columns[name][:, k], dtype="f8") * unit
                ts[f"{name}_b{k + 1}"].info.description = f"{POINT_DESCRIPTIONS[name]}, {label}"
        if "backratio" in self.columns:
            ts["backratio"] = self.columns["backratio"] * u.dimensionless_unscaled
        return ts

    @property
    def n_points(self) -> int:
        """Number of kept time bins T."""
        return int(self.columns["time"].shape[0])

    @property
    def n_bands(self) -> int:
        """Number of energy bands B."""
        return int(self.e_min.shape[0])
