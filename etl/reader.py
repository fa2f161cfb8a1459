"""Read one eROSITA light-curve FITS file (plain or gzipped, srctool or eroday-rebinned).

The reader validates as it reads and raises :class:`~etl.errors.InvalidLightCurveError`
with a short code for every kind of bad input, so that ingest can quarantine the file in
the catalog with its reason instead of stopping.

Reading is three steps: find the RATE table and its flavour (:func:`_flavour`), check the
header keywords (:func:`_header_values`), then read and filter the rows (:func:`_rows`). Any
exception that escapes them is a reader bug or a damage nobody foresaw; :func:`read_lightcurve`
still turns it into an ``unreadable`` rejection, so one file never stops an ingest.

Shape legend: N = rows in the file, T = rows kept (fractional exposure cut), B = bands.
"""

from __future__ import annotations

import math
import os
import stat
import tempfile
import zlib

import numpy as np

from etl import fitstable
from etl.errors import InvalidLightCurveError
from etl.lightcurve import FRACEXP_MIN, LightCurve
from etl.naming import source_id_of
from etl.poisson import exposure, gehrels_errors

#: The largest FRACEXP accepted (a fraction of the exposure; float rounding allowed).
FRACEXP_MAX = 1.001
#: Every reason code the reader (and ingest) can put in the catalog, with its meaning.
REJECT_CODES: dict[str, str] = {
    "empty_file": "the file has zero bytes",
    "corrupt_gzip": "the gzip stream is truncated or corrupt",
    "not_fits": "the file does not start with a FITS primary header",
    "unreadable": "cfitsio could not read the file (truncated or damaged)",
    "no_rate_extension": "no binary-table extension named RATE",
    "background_lightcurve": "an eSASS flaregti background light curve (HDU LIGHTCRV, no bands), not a source's",
    "missing_columns": "a required column is missing",
    "missing_band_edges": "no E_MIN{i}/E_MAX{i} keywords",
    "single_band": "per-band columns are 1-D while the header gives several bands",
    "band_mismatch": "band columns disagree with each other, the header or the store",
    "no_rows": "the RATE table has zero rows",
    "bad_timedel": "TIMEDEL is zero, negative or not finite",
    "unsorted_time": "TIME is not finite and strictly increasing",
    "all_nan_rates": "every RATE value is NaN",
    "no_exposed_rows": "no row reaches the fractional-exposure threshold",
    "bad_fracexp": "a FRACEXP value outside [0, 1] (negative, or an exposure fraction above one)",
    "duplicate_source": "another file of the archive holds the same source with identical content",
    "not_regular_file": "the path is a directory, FIFO, device or a link to one (never opened)",
    "too_large": "the file (or its gzip content) is larger than any light curve (MAX_FILE_BYTES)",
    "bad_keyword": "a keyword the reader needs (RA_OBJ, TIMEDEL, MJDREF...) is not a valid value",
    "bad_band_edges": "band edges not finite and positive, or E_MIN >= E_MAX",
}

GZIP_MAGIC = b"\x1f\x8b"
FITS_MAGIC = b"SIMPLE  ="
#: A light curve of 100,000 rows of 3 bands is ~10 MB; anything past this is not one (and a
#: gzip bomb or a link to /dev/zero must not be read into memory).
MAX_FILE_BYTES = 256 * 2**20
_COMMON = ("TIME", "RATE", "COUNTS", "BACK_COUNTS", "FRACEXP", "BACKRATIO")
_BANDED = ("RATE", "COUNTS", "BACK_COUNTS", "FRACEXP")


def fits_bytes(raw: bytes, file: str) -> bytes:
    """Return the FITS byte stream of ``raw``, decompressing (and thereby verifying) gzip.

    Concatenated gzip members are read as ``gzip -d`` reads them; bytes after the last
    complete member that do not start another member are ignored (``gzip`` warns "trailing
    garbage ignored", astropy reads such files), but every member's CRC and length are checked.

    Parameters
    ----------
    raw : bytes
        File content as on disk.
    file : str
        Name used in error messages.

    Raises
    ------
    InvalidLightCurveError
        ``empty_file``, ``corrupt_gzip``, ``too_large`` or ``not_fits``.
    """
    if not raw:
        raise InvalidLightCurveError(file, "empty_file", "zero bytes")
    if raw[:2] == GZIP_MAGIC:
        raw = _gunzip(raw, file)
        if not raw:
            raise InvalidLightCurveError(file, "empty_file", "gzip stream holds zero bytes")
    if raw[: len(FITS_MAGIC)] != FITS_MAGIC:
        raise InvalidLightCurveError(file, "not_fits", f"starts with {raw[:16]!r}")
    return raw


def _gunzip(raw: bytes, file: str) -> bytes:
    """Decompress gzip members with zlib (cfitsio reads a truncated gzip silently), bounded in size."""
    out, rest = [], raw
    total = 0
    while rest[:2] == GZIP_MAGIC:
        inflater = zlib.decompressobj(wbits=31)
        try:
            chunk = inflater.decompress(rest, MAX_FILE_BYTES + 1 - total)
        except zlib.error as exc:
            raise InvalidLightCurveError(file, "corrupt_gzip", str(exc)) from None
        total += len(chunk)
        if total > MAX_FILE_BYTES:
            raise InvalidLightCurveError(file, "too_large", f"gzip content exceeds {MAX_FILE_BYTES} bytes")
        if not inflater.eof:
            raise InvalidLightCurveError(file, "corrupt_gzip", "truncated gzip stream (no end of stream, CRC or length)")
        out.append(chunk)
        rest = inflater.unused_data
    return b"".join(out)


def read_lightcurve(path: str | os.PathLike, fracexp_min: float = FRACEXP_MIN, raw: bytes | None = None) -> LightCurve:
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
        Kept rows only, values as in the file with TSCALn/TZEROn applied. Errors:
        ``rate_errm`` / ``rate_errp`` are RATE_ERRM / RATE_ERRP (rebinned) or RATE_ERR twice
        (srctool); a NaN RATE_ERR on a kept row is replaced by Gehrels (1986) 1-sigma count
        errors divided by the exposure ``TIMEDEL * FRACEXP``.

    Raises
    ------
    InvalidLightCurveError
        For every kind of bad input; ``code`` is one of :data:`REJECT_CODES`. Nothing else:
        an unforeseen exception becomes ``unreadable`` with the exception in the detail.
    """
    file = os.fspath(path)
    try:
        if raw is None:
            raw = read_regular_file(file)
        data = fits_bytes(raw, file)
        return _read_fits(file, data, fracexp_min)
    except InvalidLightCurveError:
        raise
    except MemoryError:
        raise InvalidLightCurveError(file, "too_large", "out of memory while reading") from None
    except Exception as exc:  # noqa: BLE001 - one damaged file must never stop an ingest
        raise InvalidLightCurveError(file, "unreadable", f"{type(exc).__name__}: {_short(exc)}") from None


def read_regular_file(file: str) -> bytes:
    """The bytes of a local regular file (links followed), refusing anything else before opening.

    Opening a FIFO blocks forever and reading a link to ``/dev/zero`` never ends, so the kind
    and size of the target are checked with ``stat`` first.
    """
    try:
        info = os.stat(file)
    except OSError as exc:
        what = "dangling symbolic link" if os.path.islink(file) and exc.errno == 2 else exc.strerror or str(exc)
        raise InvalidLightCurveError(file, "unreadable", what) from None
    if not stat.S_ISREG(info.st_mode):
        raise InvalidLightCurveError(file, "not_regular_file", _file_kind(info.st_mode))
    if info.st_size > MAX_FILE_BYTES:
        raise InvalidLightCurveError(file, "too_large", f"{info.st_size} bytes (limit {MAX_FILE_BYTES})")
    try:
        with open(file, "rb") as fh:
            return check_size(fh.read(MAX_FILE_BYTES + 1), file)
    except OSError as exc:
        raise InvalidLightCurveError(file, "unreadable", exc.strerror or str(exc)) from None


def check_size(raw: bytes, file: str) -> bytes:
    """``raw`` unless it is longer than :data:`MAX_FILE_BYTES` (read with one byte to spare)."""
    if len(raw) > MAX_FILE_BYTES:
        raise InvalidLightCurveError(file, "too_large", f"more than {MAX_FILE_BYTES} bytes")
    return raw


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return f"is {name}"
    return "is not a regular file"


def _read_fits(file: str, data: bytes, fracexp_min: float) -> LightCurve:
    try:
        found = fitstable.find_extension(data, "RATE")
    except fitstable.Truncated as exc:
        raise InvalidLightCurveError(file, "unreadable", f"truncated: {exc}") from None
    except (fitstable.BadHeader, fitstable.Unsupported) as exc:
        raise InvalidLightCurveError(file, "unreadable", f"bad header before the RATE table: {exc}") from None
    if found is None:
        if _has_extension(data, "LIGHTCRV"):
            raise InvalidLightCurveError(file, "background_lightcurve", "HDU LIGHTCRV (TIME, COUNTS, RATE, FILTRATE, THRESHOLD...): "
                                                                        "the field's background light curve from eSASS flaregti, "
                                                                        "not a source light curve (srctool's RATE extension)")
        raise InvalidLightCurveError(file, "no_rate_extension", "no HDU with EXTNAME = 'RATE'")
    primary, header, start = found
    try:
        rows = fitstable.read_rows(data, header, start)
        scaling = fitstable.column_scaling(header)
    except fitstable.Truncated as exc:
        raise InvalidLightCurveError(file, "unreadable", f"truncated: {exc}") from None
    except fitstable.NotATable as exc:
        raise InvalidLightCurveError(file, "no_rate_extension", f"the RATE HDU is not a binary table ({exc})") from None
    except fitstable.BadHeader as exc:
        raise InvalidLightCurveError(file, "unreadable", f"malformed RATE table header: {exc}") from None
    except fitstable.Unsupported as exc:
        _check_size(file, data, header, start)
        return _read_with_fitsio(file, data, fracexp_min, str(exc))
    table = _Table(header, set(rows.dtype.names), len(rows),
                   lambda names: {n: fitstable.column(rows, n, scaling) for n in names}, lambda: primary)
    return _validate(file, table, fracexp_min)


def _has_extension(data: bytes, extname: str) -> bool:
    try:
        return fitstable.find_extension(data, extname) is not None
    except (fitstable.Truncated, fitstable.BadHeader, fitstable.Unsupported):
        return False


def _check_size(file: str, data: bytes, header, start: int) -> None:
    """The table a header announces must fit in the bytes before cfitsio allocates it."""
    try:
        need = fitstable.header_int(header, "NAXIS1") * fitstable.header_int(header, "NAXIS2") + fitstable.header_int(header, "PCOUNT", 0)
    except fitstable.BadHeader as exc:
        raise InvalidLightCurveError(file, "unreadable", f"malformed RATE table header: {exc}") from None
    if need < 0 or start + need > len(data):
        raise InvalidLightCurveError(file, "unreadable", f"truncated: table needs {need} bytes, file has {len(data) - start}")


class _Table:
    """What validation needs of a RATE table, whichever library read it.

    ``read(names)`` returns ``{name: array}`` with scaling applied.
    """

    def __init__(self, header, names, n_rows, read, primary_header):
        self.header, self.names, self.n_rows = header, names, n_rows
        self.read, self.primary_header = read, primary_header


#: Counts of reads that took cfitsio's general path in this process, by the reason the
#: in-memory parser gave (ingest reports them in its summary).
FALLBACKS: dict[str, int] = {}


def _read_with_fitsio(file: str, data: bytes, fracexp_min: float, why: str = "requested") -> LightCurve:
    """The general path for FITS layouts the in-memory parser leaves to cfitsio (heaps, odd TFORMs)."""
    import fitsio  # the rare general path: importing cfitsio costs every parse worker 0.15 s

    kind = why.split(" ")[0]
    FALLBACKS[kind] = FALLBACKS.get(kind, 0) + 1
    with tempfile.NamedTemporaryFile(suffix=".fits") as tmp:
        tmp.write(data)
        tmp.flush()

        def clean(exc: Exception) -> str:  # cfitsio names the temporary file: name the archive's
            return _short(exc).replace(tmp.name, file)

        try:
            fits = fitsio.FITS(tmp.name)
        except OSError as exc:
            raise InvalidLightCurveError(file, "unreadable", clean(exc)) from None
        with fits:
            try:
                hdu = fits["RATE"]
                names = set(hdu.get_colnames())
            except (OSError, KeyError, ValueError, AttributeError) as exc:
                raise InvalidLightCurveError(file, "no_rate_extension", clean(exc)) from None

            def read(wanted):  # one column at a time, by name: no reliance on the order cfitsio returns
                return {n: hdu.read_column(n) for n in wanted}

            try:
                table = _Table(hdu.read_header(), names, hdu.get_nrows(), read, lambda: fits[0].read_header())
                return _validate(file, table, fracexp_min)
            except InvalidLightCurveError:
                raise
            except (OSError, ValueError) as exc:
                raise InvalidLightCurveError(file, "unreadable", clean(exc)) from None


def _validate(file: str, table: _Table, fracexp_min: float) -> LightCurve:
    header = table.header
    object_name = _text(header.get("OBJECT", ""))
    source_id = source_id_of(file, object_name)

    def reject(code: str, detail: str) -> InvalidLightCurveError:
        return InvalidLightCurveError(file, code, detail, source_id=source_id)

    flavour, err_cols = _flavour(table, reject)
    values = _header_values(table, reject)
    columns, n_rows, convention, fallbacks = _rows(table, flavour, err_cols, values, fracexp_min, reject)
    return LightCurve(source_id=source_id, object=object_name, file=file, flavour=flavour, e_min=values["e_min"], e_max=values["e_max"],
                      ra=values["ra"], dec=values["dec"], columns=columns, n_rows_file=n_rows,
                      mjdref=values["mjdref"], timesys=values["timesys"], pos_err=values["pos_err"],
                      error_convention=convention, n_err_fallback=fallbacks)


def _flavour(table: _Table, reject) -> tuple[str, tuple[str, ...]]:
    """``rebinned`` (RATE_ERRM/RATE_ERRP) or ``srctool`` (RATE_ERR, and the DR1 release's estimated
    RATE_ESTPOSERR/RATE_ESTNEGERR when present), and the error columns; checks columns."""
    names = table.names
    if {"RATE_ERRM", "RATE_ERRP"} <= names:
        flavour, err_cols = "rebinned", ("RATE_ERRM", "RATE_ERRP")
    elif "RATE_ERR" in names:
        flavour, err_cols = "srctool", ("RATE_ERR", *[c for c in ESTIMATED if c in names])
    else:
        raise reject("missing_columns", "neither RATE_ERR nor RATE_ERRM/RATE_ERRP")
    missing = [c for c in _COMMON if c not in names]
    if "TIMEDEL" not in names and "TIMEDEL" not in table.header:
        missing.append("TIMEDEL")
    if missing:
        raise reject("missing_columns", ", ".join(missing))
    return flavour, err_cols


def _header_values(table: _Table, reject) -> dict:
    """Band edges, position and time reference from the header, each checked before use."""
    header = table.header
    e_min, e_max = _band_edges(header, reject)
    if e_min is None:  # some writers put the band keywords in the primary header only
        e_min, e_max = _band_edges(table.primary_header(), reject)
    if e_min is None:
        raise reject("missing_band_edges", "no E_MIN1/E_MAX1 in the RATE or primary header")
    if not all(math.isfinite(a) and math.isfinite(b) and 0 <= a < b for a, b in zip(e_min.tolist(), e_max.tolist())):
        edges = ", ".join(f"{a:g}-{b:g}" for a, b in zip(e_min, e_max))
        raise reject("bad_band_edges", f"bands [{edges}] keV: each needs finite 0 <= E_MIN < E_MAX")
    ra = _number(header, "RA_OBJ", reject, np.nan)
    dec = _number(header, "DEC_OBJ", reject, np.nan)
    if np.isfinite(ra) and not 0.0 <= ra <= 360.0 or np.isfinite(dec) and not -90.0 <= dec <= 90.0:
        raise reject("bad_keyword", f"position RA_OBJ = {ra}, DEC_OBJ = {dec} outside [0, 360] x [-90, 90] deg")
    pos_err = _position_error(header, reject)
    if "MJDREF" in header:
        mjdref = _number(header, "MJDREF", reject, np.nan)
    else:
        mjdref = _number(header, "MJDREFI", reject, np.nan) + _number(header, "MJDREFF", reject, 0.0)
    unit = _text(header.get("TIMEUNIT", "s")).lower() or "s"
    if unit != "s":
        raise reject("bad_keyword", f"TIMEUNIT = {unit!r}: only seconds are supported")
    return {"e_min": e_min, "e_max": e_max, "ra": ra, "dec": dec, "pos_err": pos_err, "mjdref": mjdref,
            "timesys": _text(header.get("TIMESYS", "")).upper(), "timezero": _number(header, "TIMEZERO", reject, 0.0)}


def _rows(table: _Table, flavour: str, err_cols: tuple[str, ...], values: dict, fracexp_min: float, reject) -> tuple[dict, int]:
    """Read the needed columns, check shapes, times and rates, and keep the exposed rows."""
    header, n_rows = table.header, table.n_rows
    if n_rows == 0:
        raise reject("no_rows", "RATE table has zero rows")
    has_timedel_col = "TIMEDEL" in table.names
    data = table.read(list(_COMMON) + list(err_cols) + (["TIMEDEL"] if has_timedel_col else []))
    n_bands = values["e_min"].shape[0]
    for name in _BANDED + err_cols:
        shape = data[name].shape
        if len(shape) == 1 and n_bands == 1:  # a one-band file may store plain (not vector) columns
            data[name] = data[name][:, None]
            continue
        if len(shape) == 1:
            raise reject("single_band", f"{name} is 1-D, the header gives {n_bands} bands")
        if len(shape) != 2 or shape[1] != n_bands:
            raise reject("band_mismatch", f"{name} has shape {shape[1:]}, header E_MIN/E_MAX give {n_bands} bands")
    for name in ("TIME", "BACKRATIO") + (("TIMEDEL",) if has_timedel_col else ()):
        if data[name].ndim != 1:
            raise reject("band_mismatch", f"{name} has shape {data[name].shape[1:]}, expected one value per row")

    time = data["TIME"].astype("f8") + values["timezero"]
    if has_timedel_col:
        timedel = data["TIMEDEL"].astype("f8")
    else:
        timedel = np.full(n_rows, _number(header, "TIMEDEL", reject, np.nan))
    if not (np.isfinite(timedel) & (timedel > 0)).all():
        raise reject("bad_timedel", f"min TIMEDEL {np.nanmin(timedel) if np.isfinite(timedel).any() else 'NaN'}")
    if not (np.isfinite(time).all() and (np.diff(time) > 0).all()):
        raise reject("unsorted_time", "TIME not finite and strictly increasing")
    rate = data["RATE"].astype("f4")
    if np.isnan(rate).all():
        raise reject("all_nan_rates", f"all {rate.size} RATE values are NaN")

    fracexp = data["FRACEXP"].astype("f4")
    with np.errstate(invalid="ignore"):
        outside = np.isfinite(fracexp) & ((fracexp < 0) | (fracexp > FRACEXP_MAX))
    if outside.any():  # an exposure fraction is in [0, 1]: the file's exposure cannot be trusted
        row, band = np.argwhere(outside)[0]
        raise reject("bad_fracexp", f"{int(outside.sum())} FRACEXP value(s) outside [0, 1], e.g. {float(fracexp[row, band]):g} "
                                    f"in row {int(row) + 1}, band {int(band) + 1}")
    with np.errstate(invalid="ignore"):
        # fmax skips NaN (a row of NaN stays NaN and fails the test)
        keep = np.fmax.reduce(fracexp, axis=1) >= fracexp_min
    if not keep.any():
        raise reject("no_exposed_rows", f"no row with FRACEXP >= {fracexp_min}")
    if np.isnan(rate[keep]).all():
        raise reject("all_nan_rates", "every RATE of the exposed rows is NaN")

    counts = data["COUNTS"][keep].astype("f4")
    timedel_k = timedel[keep]
    fracexp_k = fracexp[keep]
    exposed = fracexp_k > 0
    # a band without exposure in a kept row holds NaN or +inf (eSASS divides by zero): no measurement
    rate_k = np.where(exposed & np.isfinite(rate[keep]), rate[keep], np.nan).astype("f4")
    errm, errp, convention, fallbacks = _errors({c: data[c][keep] for c in err_cols}, counts, timedel_k, fracexp_k)
    errm, errp = np.where(exposed, errm, np.nan).astype("f4"), np.where(exposed, errp, np.nan).astype("f4")
    columns = {
        "time": time[keep],
        "timedel": timedel_k,
        "rate": rate_k,
        "rate_errm": errm,
        "rate_errp": errp,
        "counts": counts,
        "back_counts": data["BACK_COUNTS"][keep].astype("f4"),
        "fracexp": fracexp_k,
        "backratio": data["BACKRATIO"][keep].astype("f8"),
    }
    return columns, int(n_rows), convention, fallbacks


#: The DR1 release's estimated asymmetric errors (RATE_ESTNEGERR stored as negative numbers).
ESTIMATED = ("RATE_ESTPOSERR", "RATE_ESTNEGERR")
#: How a file's errors were read (catalog column ``error_convention``), in the order tried per value.
ERROR_CONVENTIONS = {
    "errm_errp": "RATE_ERRM / RATE_ERRP (eRebin)",
    "estimated": "|RATE_ESTNEGERR| / RATE_ESTPOSERR, else RATE_ERR, else Gehrels (1986) from COUNTS",
    "rate_err": "RATE_ERR on both sides, else Gehrels (1986) from COUNTS",
    "gehrels": "Gehrels (1986) from the summed COUNTS (eroday bins made at ingest)",
}


def _usable(values: np.ndarray, sign: float = 1.0) -> np.ndarray:
    """Where an error column holds an error: finite and of its sign (errors are >= 0; RATE_ESTNEGERR <= 0)."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(values) & (values * sign >= 0)


def _errors(cols: dict[str, np.ndarray], counts: np.ndarray, timedel: np.ndarray, fracexp: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, str, int]:
    """Lower and upper rate errors (T, B), the convention and how many values fell back to a later source.

    Per value, in order: the estimated asymmetric errors where the file has them (RATE_ESTNEGERR
    negated), else RATE_ERR for both sides, else Gehrels' (1986) count errors over the exposure
    ``TIMEDEL x FRACEXP``; eRebin's RATE_ERRM / RATE_ERRP, else Gehrels'. A value is taken only when
    it is an error: finite and of the right sign (a negative RATE_ERR or RATE_ESTPOSERR, a positive
    RATE_ESTNEGERR is not one and falls back, never has its sign changed). The count returned is
    the exposed values (an unexposed band has no rate to err on) where either side fell back.
    """
    lo, hi = gehrels_errors(counts)
    expo = exposure(timedel, fracexp)
    with np.errstate(divide="ignore", invalid="ignore"):
        lo, hi = lo / expo, hi / expo
    if "RATE_ERRM" in cols:
        chains = [[(cols["RATE_ERRM"].astype("f8"), 1.0)], [(cols["RATE_ERRP"].astype("f8"), 1.0)]]
        convention = "errm_errp"
    else:
        err = cols["RATE_ERR"].astype("f8")
        estimated = all(c in cols for c in ESTIMATED)
        if estimated:
            chains = [[(cols["RATE_ESTNEGERR"].astype("f8"), -1.0), (err, 1.0)], [(cols["RATE_ESTPOSERR"].astype("f8"), 1.0), (err, 1.0)]]
        else:
            chains = [[(err, 1.0)], [(err, 1.0)]]
        convention = "estimated" if estimated else "rate_err"
    sides, fell_back = [], np.zeros(counts.shape, bool)
    for chain, gehrels in zip(chains, (lo, hi)):
        value = gehrels.copy()
        for column, sign in reversed(chain):  # the first usable source wins
            ok = _usable(column, sign)
            value = np.where(ok, column * sign, value)
        fell_back |= ~_usable(*chain[0])
        sides.append(value.astype("f4"))
    fallbacks = int(np.sum((fracexp > 0) & fell_back))
    return sides[0], sides[1], convention, fallbacks


def _text(value) -> str:
    return str(value if value is not None else "").strip()


def _number(header, key: str, reject, default: float) -> float:
    """A numeric keyword as float (``default`` when absent); ``bad_keyword`` when text or empty."""
    if key not in header:
        return default
    value = header[key]
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise reject("bad_keyword", f"{key} = {value!r} is not a number")
    return float(value)


#: Position-error keyword: eRASS1's corrected radial 1-sigma error, named as the catalogue's
#: column (Merloni et al. 2024, A&A 682, A34); arcsec. (Its raw RADEC_ERR has 9 characters, too
#: long for a plain FITS keyword.)
POS_ERR_KEYWORD = "POS_ERR"
#: Far larger than any eROSITA position error (PSF 16 arcsec HEW); a value beyond it is corrupt or
#: in another unit (arcmin are not converted: arcsec is documented).
POS_ERR_MAX_ARCSEC = 600.0


def _position_error(header, reject) -> float:
    """The 1-sigma position error in arcsec, NaN when absent; ``bad_keyword`` when not in (0, 600]."""
    if POS_ERR_KEYWORD not in header:
        return float("nan")
    value = _number(header, POS_ERR_KEYWORD, reject, np.nan)
    if not (math.isfinite(value) and 0.0 < value <= POS_ERR_MAX_ARCSEC):
        raise reject("bad_keyword", f"{POS_ERR_KEYWORD} = {value} arcsec: a position error must be in (0, {POS_ERR_MAX_ARCSEC:g}]")
    return value


def _band_edges(header, reject) -> tuple[np.ndarray | None, np.ndarray | None]:
    lo, hi, i = [], [], 1
    while f"E_MIN{i}" in header and f"E_MAX{i}" in header:
        lo.append(_number(header, f"E_MIN{i}", reject, np.nan))
        hi.append(_number(header, f"E_MAX{i}", reject, np.nan))
        i += 1
    if not lo:
        return None, None
    return np.array(lo), np.array(hi)


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__
