"""Read one eROSITA light-curve FITS file (plain or gzipped, srctool or eroday-rebinned).

The reader validates as it reads and raises :class:`~etl.errors.InvalidLightCurveError`
with a short code for every kind of bad input, so that ingest can quarantine the file in
the catalog with its reason instead of stopping.

Shape legend: N = rows in the file, T = rows kept (fractional exposure cut), B = bands.
"""

from __future__ import annotations

import gzip
import os
import tempfile
import zlib
from pathlib import Path

import fitsio
import numpy as np

from etl import fitstable
from etl.errors import InvalidLightCurveError
from etl.lightcurve import LightCurve

#: Every reason code the reader (and ingest) can put in the catalog, with its meaning.
REJECT_CODES: dict[str, str] = {
    "empty_file": "the file has zero bytes",
    "corrupt_gzip": "the gzip stream is truncated or corrupt",
    "not_fits": "the file does not start with a FITS primary header",
    "unreadable": "cfitsio could not read the file (truncated or damaged)",
    "no_rate_extension": "no binary-table extension named RATE",
    "missing_columns": "a required column is missing",
    "missing_band_edges": "no E_MIN{i}/E_MAX{i} keywords",
    "single_band": "per-band columns are 1-D (one band only)",
    "band_mismatch": "band columns disagree with each other, the header or the store",
    "no_rows": "the RATE table has zero rows",
    "bad_timedel": "TIMEDEL is zero, negative or not finite",
    "unsorted_time": "TIME is not finite and strictly increasing",
    "all_nan_rates": "every RATE value is NaN",
    "no_exposed_rows": "no row reaches the fractional-exposure threshold",
    "duplicate_source": "another file of the archive holds the same source with identical content",
}

GZIP_MAGIC = b"\x1f\x8b"
FITS_MAGIC = b"SIMPLE  ="
_COMMON = ("TIME", "RATE", "COUNTS", "BACK_COUNTS", "FRACEXP", "BACKRATIO")
_BANDED = ("RATE", "COUNTS", "BACK_COUNTS", "FRACEXP")


def fits_bytes(raw: bytes, file: str) -> bytes:
    """Return the FITS byte stream of ``raw``, decompressing (and thereby verifying) gzip.

    Parameters
    ----------
    raw : bytes
        File content as on disk.
    file : str
        Name used in error messages.

    Raises
    ------
    InvalidLightCurveError
        ``empty_file``, ``corrupt_gzip`` or ``not_fits``.
    """
    if not raw:
        raise InvalidLightCurveError(file, "empty_file", "zero bytes")
    if raw[:2] == GZIP_MAGIC:
        # cfitsio silently reads a truncated gzip as a shorter file; zlib checks CRC and length.
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise InvalidLightCurveError(file, "corrupt_gzip", str(exc) or type(exc).__name__)
        if not raw:
            raise InvalidLightCurveError(file, "empty_file", "gzip stream holds zero bytes")
    if raw[: len(FITS_MAGIC)] != FITS_MAGIC:
        raise InvalidLightCurveError(file, "not_fits", f"starts with {raw[:16]!r}")
    return raw


def source_id_from_name(path: str | os.PathLike) -> str:
    """Source id fallback: the file name without ``.fits``/``.fits.gz`` and similar endings."""
    name = Path(path).name
    for suffix in (".gz", ".fits", ".fit", ".fts", ".lc"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def read_lightcurve(path: str | os.PathLike, fracexp_min: float = 0.1, raw: bytes | None = None) -> LightCurve:
    """Read and validate one light-curve file.

    Parameters
    ----------
    path : str or path-like
        Local file, plain or gzipped.
    fracexp_min : float
        Keep rows whose best-exposed band has ``FRACEXP >= fracexp_min`` (eRebin's cut).
        The maximum over bands is used because the hard band's vignetting lowers its
        FRACEXP (about 0.6 of the soft bands') while its rate is still valid.
    raw : bytes, optional
        The file's content when the caller has read it already (ingest hashes it).

    Returns
    -------
    LightCurve
        Kept rows only, values exactly as in the file. Errors: ``rate_errm`` / ``rate_errp``
        are RATE_ERRM / RATE_ERRP (rebinned) or RATE_ERR twice (srctool); a NaN RATE_ERR on
        a kept row is replaced by Gehrels (1986) 1-sigma count errors divided by the
        exposure ``TIMEDEL * FRACEXP``.

    Raises
    ------
    InvalidLightCurveError
        For every kind of bad input; ``code`` is one of :data:`REJECT_CODES`.

    Notes
    -----
    The table is parsed from the bytes in memory (:mod:`etl.fitstable`); files using FITS
    features outside a plain fixed-width table are read with fitsio (cfitsio) instead.
    """
    file = os.fspath(path)
    if raw is None:
        with open(file, "rb") as fh:
            raw = fh.read()
    data = fits_bytes(raw, file)
    try:
        found = fitstable.find_extension(data, "RATE")
        if found is None:
            raise InvalidLightCurveError(file, "no_rate_extension", "no HDU with EXTNAME = 'RATE'")
        primary, header, start = found
        rows = fitstable.read_rows(data, header, start)
    except fitstable.Truncated as exc:
        raise InvalidLightCurveError(file, "unreadable", f"truncated: {exc}")
    except (fitstable.Unsupported, KeyError, ValueError, TypeError):
        return _read_with_fitsio(file, data, fracexp_min)
    table = _Table(header, set(rows.dtype.names), len(rows), lambda names: rows, lambda: primary)
    return _validate(file, table, fracexp_min)


class _Table:
    """What validation needs of a RATE table, whichever library read it."""

    def __init__(self, header, names, n_rows, read, primary_header):
        self.header, self.names, self.n_rows = header, names, n_rows
        self.read, self.primary_header = read, primary_header


def _read_with_fitsio(file: str, data: bytes, fracexp_min: float) -> LightCurve:
    """The general path: cfitsio reads the (decompressed) bytes from a temporary file."""
    with tempfile.NamedTemporaryFile(suffix=".fits") as tmp:
        tmp.write(data)
        tmp.flush()
        try:
            fits = fitsio.FITS(tmp.name)
        except OSError as exc:
            raise InvalidLightCurveError(file, "unreadable", _short(exc))
        return _read_fitsio_table(file, fits, fracexp_min)


def _read_fitsio_table(file: str, fits: fitsio.FITS, fracexp_min: float) -> LightCurve:
    with fits:
        try:
            hdu = fits["RATE"]
        except (OSError, KeyError, ValueError) as exc:
            raise InvalidLightCurveError(file, "no_rate_extension", _short(exc))
        try:
            table = _Table(hdu.read_header(), set(hdu.get_colnames()), hdu.get_nrows(),
                           lambda names: hdu.read(columns=names), lambda: fits[0].read_header())
            return _validate(file, table, fracexp_min)
        except InvalidLightCurveError:
            raise
        except (OSError, ValueError) as exc:
            raise InvalidLightCurveError(file, "unreadable", _short(exc))


def _validate(file: str, table: _Table, fracexp_min: float) -> LightCurve:
    header, names = table.header, table.names
    object_name = str(header.get("OBJECT", "") or "").strip()
    source_id = object_name or source_id_from_name(file)

    def reject(code: str, detail: str) -> InvalidLightCurveError:
        return InvalidLightCurveError(file, code, detail, source_id=source_id)

    if {"RATE_ERRM", "RATE_ERRP"} <= names:
        flavour, err_cols = "rebinned", ("RATE_ERRM", "RATE_ERRP")
    elif "RATE_ERR" in names:
        flavour, err_cols = "srctool", ("RATE_ERR",)
    else:
        raise reject("missing_columns", "neither RATE_ERR nor RATE_ERRM/RATE_ERRP")
    missing = [c for c in _COMMON if c not in names]
    has_timedel_col = "TIMEDEL" in names
    if not has_timedel_col and "TIMEDEL" not in header:
        missing.append("TIMEDEL")
    if missing:
        raise reject("missing_columns", ", ".join(missing))

    e_min, e_max = _band_edges(header)
    if e_min is None:  # some writers put the band keywords in the primary header only
        e_min, e_max = _band_edges(table.primary_header())
    if e_min is None:
        raise reject("missing_band_edges", "no E_MIN1/E_MAX1 in the RATE or primary header")

    n_rows = table.n_rows
    if n_rows == 0:
        raise reject("no_rows", "RATE table has zero rows")
    wanted = list(_COMMON) + list(err_cols) + (["TIMEDEL"] if has_timedel_col else [])
    data = table.read(wanted)

    n_bands = e_min.shape[0]
    for name in _BANDED + err_cols:
        shape = data[name].shape
        if len(shape) == 1:
            raise reject("single_band", f"{name} is 1-D")
        if shape[1] != n_bands:
            raise reject("band_mismatch", f"{name} has {shape[1]} bands, header E_MIN/E_MAX give {n_bands}")

    time = data["TIME"].astype("f8")
    timedel = data["TIMEDEL"].astype("f8") if has_timedel_col else np.full(n_rows, float(header["TIMEDEL"]))
    if not np.all(np.isfinite(timedel) & (timedel > 0)):
        raise reject("bad_timedel", f"min TIMEDEL {np.nanmin(timedel) if np.isfinite(timedel).any() else 'NaN'}")
    if not (np.all(np.isfinite(time)) and np.all(np.diff(time) > 0)):
        raise reject("unsorted_time", "TIME not finite and strictly increasing")
    rate = data["RATE"].astype("f4")
    if np.isnan(rate).all():
        raise reject("all_nan_rates", f"all {rate.size} RATE values are NaN")

    fracexp = data["FRACEXP"].astype("f4")
    with np.errstate(invalid="ignore"):
        keep = np.max(np.nan_to_num(fracexp, nan=0.0), axis=1) >= fracexp_min
    if not keep.any():
        raise reject("no_exposed_rows", f"no row with FRACEXP >= {fracexp_min}")
    if np.isnan(rate[keep]).all():
        raise reject("all_nan_rates", "every RATE of the exposed rows is NaN")

    counts = data["COUNTS"][keep].astype("f4")
    timedel_k = timedel[keep]
    fracexp_k = fracexp[keep]
    if flavour == "rebinned":
        errm = data["RATE_ERRM"][keep].astype("f4")
        errp = data["RATE_ERRP"][keep].astype("f4")
    else:
        err = data["RATE_ERR"][keep].astype("f4")
        errm, errp = err.copy(), err.copy()
        missing_err = np.isnan(err)
        if missing_err.any():
            lo, hi = gehrels_errors(counts)
            exposure = (timedel_k[:, None] * fracexp_k).astype("f4")
            with np.errstate(divide="ignore", invalid="ignore"):
                errm[missing_err] = (lo / exposure)[missing_err]
                errp[missing_err] = (hi / exposure)[missing_err]

    columns = {
        "time": time[keep],
        "timedel": timedel_k,
        "rate": rate[keep],
        "rate_errm": errm,
        "rate_errp": errp,
        "counts": counts,
        "back_counts": data["BACK_COUNTS"][keep].astype("f4"),
        "fracexp": fracexp_k,
        "backratio": data["BACKRATIO"][keep].astype("f8"),
    }
    return LightCurve(
        source_id=source_id,
        file=file,
        flavour=flavour,
        e_min=e_min,
        e_max=e_max,
        ra=float(header.get("RA_OBJ", np.nan)),
        dec=float(header.get("DEC_OBJ", np.nan)),
        columns=columns,
        n_rows_file=int(n_rows),
    )


def gehrels_errors(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gehrels (1986) approximate 1-sigma Poisson errors on counts.

    Returns
    -------
    lower, upper : ndarray
        ``sqrt(N - 0.25)`` (0 for N < 0.25) and ``1 + sqrt(N + 0.75)``.
    """
    n = np.asarray(counts, dtype="f8")
    lower = np.sqrt(np.clip(n - 0.25, 0.0, None))
    upper = 1.0 + np.sqrt(np.clip(n, 0.0, None) + 0.75)
    return lower, upper


def _band_edges(header) -> tuple[np.ndarray | None, np.ndarray | None]:
    lo, hi, i = [], [], 1
    while f"E_MIN{i}" in header and f"E_MAX{i}" in header:
        lo.append(float(header[f"E_MIN{i}"]))
        hi.append(float(header[f"E_MAX{i}"]))
        i += 1
    if not lo:
        return None, None
    return np.array(lo), np.array(hi)


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__
