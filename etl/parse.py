"""The worker side of ingest: hash, read and validate files; pack the good ones' points.

This is what runs in spawned pool workers and Prefect tasks, so it imports only what parsing
needs (numpy, xxhash, the reader): a worker is ready in ~0.1 s instead of the ~1 s that
polars, zarr and fsspec would cost it.

Shape legend: P = points of a batch, B = bands.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import xxhash

from common.location import is_url
from etl.binning import bin_erodays
from etl.errors import InvalidLightCurveError
from etl.lightcurve import POINT_COLUMNS, SECONDS_PER_DAY, STATUS_OK, STATUS_REJECTED, mean_rate_columns, mean_rates
from etl.naming import iau_name, source_id_of
from etl.reader import FALLBACKS, MAX_FILE_BYTES, check_size, read_lightcurve, read_regular_file


@dataclass
class FileResult:
    """What parsing one file gave: unchanged, ok (with points) or rejected (with a reason)."""

    file: str
    content_hash: str | None
    file_size: int
    status: str  # "unchanged", "ok" or "rejected"
    row: dict = field(default_factory=dict)
    columns: dict[str, np.ndarray] | None = None
    span: tuple[int, int] | None = None  # (start, n) in ParsedBatch.columns once packed


@dataclass
class ParsedBatch:
    """Parse results of a batch with the ok files' points packed into one array per column.

    Packing in the worker makes a batch cross the process boundary as nine arrays instead of
    nine per file, and keeps the ingest buffer's memory close to the points' own size.
    """

    results: list[FileResult]
    columns: dict[str, np.ndarray]
    fallbacks: int = 0  # files read through cfitsio's general path (see etl.reader.FALLBACKS)

    def points(self, res: FileResult) -> dict[str, np.ndarray]:
        """The points of one ok result (views)."""
        start, n = res.span
        return {name: arr[start : start + n] for name, arr in self.columns.items()}


def hash_bytes(data: bytes) -> str:
    """Content hash used by the catalog (xxh3, 128 bit, hex)."""
    return xxhash.xxh3_128_hexdigest(data)


def catalog_path(file: str) -> str:
    """The path as the catalog records it: the path itself, or with undecodable bytes escaped.

    File names are bytes on POSIX; Python keeps undecodable ones as surrogates, which Parquet
    (UTF-8) cannot hold. Such a name is written with ``\\xNN`` escapes, so the row still
    says which file it is and re-runs recognise it.
    """
    try:
        file.encode("utf-8")
        return file
    except UnicodeEncodeError:
        return os.fsencode(file).decode("utf-8", errors="backslashreplace")


def read_file_bytes(file: str) -> bytes:
    """A file's bytes: local regular files only (checked before opening), or an fsspec URL."""
    if not is_url(file):
        return read_regular_file(file)
    import fsspec  # only for URLs; local reads need no fsspec

    with fsspec.open(file, "rb") as fh:
        return check_size(fh.read(MAX_FILE_BYTES + 1), file)


def file_mtime_ns(file: str) -> int | None:
    """A local file's modification time (ns), None for URLs and files that cannot be stat-ed."""
    if is_url(file):
        return None
    try:
        return os.stat(file).st_mtime_ns
    except OSError:
        return None


def parse_file(file: str, known_hash: str | None, fracexp_min: float, binning: str = "none") -> FileResult:
    """Hash one file and, unless its hash is ``known_hash``, read and validate it (and bin it by
    scan with ``binning="eroday"``, :mod:`etl.binning`).

    Never raises for bad content or odd file-system entries: they become ``rejected``
    results with the path as found.
    """
    shown = catalog_path(file)
    mtime = file_mtime_ns(file)  # before reading: a change while reading shows as a new time next run
    try:
        raw = read_file_bytes(file)
    except Exception as exc:  # noqa: BLE001 - network or permission errors of one file never stop the run
        reason = exc.reason if isinstance(exc, InvalidLightCurveError) else f"unreadable: {type(exc).__name__}: {exc}"
        row = {"file": shown, "source_id": catalog_path(source_id_of(file)), "reason": reason}
        return FileResult(shown, None, 0, STATUS_REJECTED, row)
    digest = hash_bytes(raw)
    if digest == known_hash:
        return FileResult(shown, digest, len(raw), "unchanged", {"file_mtime_ns": mtime})
    base = {"file": shown, "content_hash": digest, "file_size": len(raw), "file_mtime_ns": mtime}
    try:
        lc = read_lightcurve(file, fracexp_min=fracexp_min, raw=raw)
        if binning == "eroday":
            binned = bin_erodays(lc)
            if binned is None:
                raise InvalidLightCurveError(file, "no_exposed_rows", "no survey scan has exposure in any band",
                                             source_id=lc.source_id)
            lc = binned
    except InvalidLightCurveError as exc:
        row = base | {"source_id": catalog_path(exc.source_id or source_id_of(file)), "reason": exc.reason.replace(file, shown)}
        return FileResult(shown, digest, len(raw), STATUS_REJECTED, row)
    cols = lc.columns
    time_ = cols["time"]
    means = mean_rates(cols["rate"])
    t_stop = float(time_[-1] + cols["timedel"][-1])
    row = base | {
        "source_id": catalog_path(lc.source_id),
        "object": catalog_path(lc.object) or None,
        "iau_name": iau_name(lc.ra, lc.dec) or None,
        "flavour": lc.flavour,
        "error_convention": lc.error_convention,
        "n_err_fallback": lc.n_err_fallback,
        "n_rows_file": lc.n_rows_file,
        "n_points": lc.n_points,
        "e_min": lc.e_min.tolist(),
        "e_max": lc.e_max.tolist(),
        "ra": lc.ra,
        "dec": lc.dec,
        "pos_err_arcsec": lc.pos_err if lc.pos_err == lc.pos_err else None,  # NaN (absent) -> null
        "t_start": float(time_[0]),
        "t_stop": t_stop,
        "mjdref": lc.mjdref,
        "timesys": lc.timesys or None,
        "mjd_start": lc.mjdref + float(time_[0]) / SECONDS_PER_DAY,
        "mjd_stop": lc.mjdref + t_stop / SECONDS_PER_DAY,
        **{name: float(v) for name, v in zip(mean_rate_columns(lc.n_bands), means)},
    }
    return FileResult(shown, digest, len(raw), STATUS_OK, row, cols)


def parse_batch(files: list[str], known_hashes: list[str | None], fracexp_min: float, binning: str = "none") -> ParsedBatch:
    """Parse a batch of files (the unit of work of a worker process or a Prefect task)."""
    before = sum(FALLBACKS.values())
    results = [parse_file(f, h, fracexp_min, binning) for f, h in zip(files, known_hashes)]
    ok = [r for r in results if r.columns is not None]
    start = 0
    for r in ok:
        r.span = (start, len(r.columns["time"]))
        start += r.span[1]
    columns = {name: np.concatenate([r.columns[name] for r in ok]) for name in POINT_COLUMNS} if ok else {}
    for r in ok:
        r.columns = None
    return ParsedBatch(results, columns, sum(FALLBACKS.values()) - before)
