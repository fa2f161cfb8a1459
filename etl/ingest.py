"""Ingest a FITS light-curve archive into a store: incremental, idempotent and crash safe.

    python -m etl.ingest ARCHIVE_DIR --store STORE [--workers N]

Files are hashed and parsed in batches (in worker processes with ``--workers``); the main
process appends the points to the store and commits the catalog every ``flush_points``
points or ``flush_seconds`` seconds. Each commit is atomic, so a killed ingest loses at most
the work since its last commit and the next run redoes it. A file whose content hash matches
its catalog row is skipped; a changed file replaces its row.

Source ids
----------
The id is the OBJECT keyword (the file name stem when OBJECT is empty). When two files of an
archive carry the same id:

* identical content (a copy): the later file, in path order, is rejected as
  ``duplicate_source`` with the first file's path in its reason;
* different content (e.g. srctool's per-tile source numbers, or the same source in two
  processings): both are kept, the later one under ``"{OBJECT}@{file stem}"``, and the
  catalog's ``object`` column keeps the original OBJECT for both.

Earlier rows keep their ids, so ids stay stable when an archive grows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import fsspec
import numpy as np
import polars as pl
import xxhash
from tqdm import tqdm

from etl.catalog import STATUS_OK, STATUS_REJECTED, catalog_frame, empty_catalog, mean_rate_columns, read_catalog, write_catalog
from etl.errors import EtlError, InvalidLightCurveError, OptionError, StoreError
from etl.lightcurve import FRACEXP_MIN, POINT_COLUMNS, SECONDS_PER_DAY
from etl.lifeline import die_with_parent
from etl.lock import StoreLock
from etl.reader import FALLBACKS, MAX_FILE_BYTES, read_lightcurve, read_regular_file, source_id_from_name
from etl.store import is_url
from etl.writer import CHUNK_POINTS, SHARD_POINTS, StoreWriter

#: Files per parsing task (a worker's batch or a Prefect task); the one definition of the default.
BATCH_SIZE = 500

#: File name endings that ingest discovers (case-insensitive).
FITS_SUFFIXES = (".fits", ".fits.gz", ".fit", ".fit.gz", ".fts", ".fts.gz", ".lc", ".lc.gz")


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


@dataclass
class IngestSummary:
    """Counts of one ingest run; ``discovered == ingested + unchanged + rejected``."""

    store: str
    discovered: int = 0
    ingested: int = 0
    unchanged: int = 0
    rejected: int = 0
    points: int = 0
    seconds: float = 0.0
    fallbacks: int = 0  # files the in-memory FITS parser left to cfitsio
    rejected_files: list[tuple[str, str]] = field(default_factory=list)

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        general = f" | {self.fallbacks} read by cfitsio" if self.fallbacks else ""
        return (
            f"discovered {self.discovered} | ingested {self.ingested} | unchanged {self.unchanged} | "
            f"rejected {self.rejected} | {self.points} points in {self.seconds:.1f} s{general} -> {self.store}"
        )


def discover(archive: str, storage_options: dict | None = None) -> list[str]:
    """Every light-curve file under ``archive`` (recursively), sorted by path.

    Raises
    ------
    StoreError
        When the archive does not exist or is not a directory.
    """
    fs, root = fsspec.core.url_to_fs(archive, **(storage_options or {}))
    if not fs.isdir(root):
        raise StoreError(archive, "archive directory does not exist")
    files = [p for p in fs.find(root) if p.lower().endswith(FITS_SUFFIXES)]
    if "file" in fs.protocol:
        return sorted(files)
    return sorted(fs.unstrip_protocol(p) for p in files)


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
    with fsspec.open(file, "rb") as fh:
        return fh.read(MAX_FILE_BYTES + 1)


def parse_file(file: str, known_hash: str | None, fracexp_min: float) -> FileResult:
    """Hash one file and, unless its hash is ``known_hash``, read and validate it.

    Never raises for bad content or odd file-system entries: they become ``rejected``
    results with the path as found.
    """
    shown = catalog_path(file)
    try:
        raw = read_file_bytes(file)
    except InvalidLightCurveError as exc:
        row = {"file": shown, "source_id": catalog_path(source_id_from_name(file)), "reason": exc.reason}
        return FileResult(shown, None, 0, STATUS_REJECTED, row)
    except Exception as exc:  # noqa: BLE001 - network or permission errors of one file never stop the run
        row = {"file": shown, "source_id": catalog_path(source_id_from_name(file)), "reason": f"unreadable: {type(exc).__name__}: {exc}"}
        return FileResult(shown, None, 0, STATUS_REJECTED, row)
    digest = hash_bytes(raw)
    if digest == known_hash:
        return FileResult(shown, digest, len(raw), "unchanged")
    base = {"file": shown, "content_hash": digest, "file_size": len(raw)}
    try:
        lc = read_lightcurve(file, fracexp_min=fracexp_min, raw=raw)
    except InvalidLightCurveError as exc:
        row = base | {"source_id": catalog_path(exc.source_id or source_id_from_name(file)), "reason": exc.reason.replace(file, shown)}
        return FileResult(shown, digest, len(raw), STATUS_REJECTED, row)
    cols = lc.columns
    time_ = cols["time"]
    finite = np.isfinite(cols["rate"])
    sums = np.where(finite, cols["rate"], 0.0).sum(axis=0, dtype="f8")
    n_finite = finite.sum(axis=0)
    means = np.where(n_finite > 0, sums / np.maximum(n_finite, 1), np.nan)  # an all-NaN band: NaN, no warning
    t_stop = float(time_[-1] + cols["timedel"][-1])
    row = base | {
        "source_id": catalog_path(lc.source_id),
        "object": catalog_path(lc.source_id),
        "flavour": lc.flavour,
        "n_rows_file": lc.n_rows_file,
        "n_points": lc.n_points,
        "e_min": lc.e_min.tolist(),
        "e_max": lc.e_max.tolist(),
        "ra": lc.ra,
        "dec": lc.dec,
        "t_start": float(time_[0]),
        "t_stop": t_stop,
        "mjdref": lc.mjdref,
        "timesys": lc.timesys or None,
        "mjd_start": lc.mjdref + float(time_[0]) / SECONDS_PER_DAY,
        "mjd_stop": lc.mjdref + t_stop / SECONDS_PER_DAY,
        **{name: float(v) for name, v in zip(mean_rate_columns(lc.n_bands), means)},
    }
    return FileResult(shown, digest, len(raw), STATUS_OK, row, cols)


def parse_batch(files: list[str], known_hashes: list[str | None], fracexp_min: float) -> ParsedBatch:
    """Parse a batch of files (the unit of work of a worker process or a Prefect task)."""
    before = sum(FALLBACKS.values())
    results = [parse_file(f, h, fracexp_min) for f, h in zip(files, known_hashes)]
    ok = [r for r in results if r.columns is not None]
    start = 0
    for r in ok:
        r.span = (start, len(r.columns["time"]))
        start += r.span[1]
    columns = {name: np.concatenate([r.columns[name] for r in ok]) for name in POINT_COLUMNS} if ok else {}
    for r in ok:
        r.columns = None
    return ParsedBatch(results, columns, sum(FALLBACKS.values()) - before)


#: Where parse_batch runs: (batches, known_hashes, fracexp_min) -> ParsedBatch per batch, in order.
BatchRunner = Callable[[list[list[str]], Callable[[list[str]], list], float], Iterator[ParsedBatch]]


class Ingestor:
    """Applies parsed batches to a store: source ids, band checks, buffering and commits.

    Split from the parsing so that a Prefect flow can run :func:`parse_batch` as tasks and
    feed the results here. Use :meth:`known_hashes` to skip unchanged files, :meth:`add`
    for each batch result and :meth:`commit` at the end (it also commits when the buffer
    holds ``flush_points`` points or ``flush_seconds`` have passed).
    """

    def __init__(self, store: str, fracexp_min: float = FRACEXP_MIN, storage_options: dict | None = None,
                 flush_points: int = SHARD_POINTS, flush_seconds: float = 30.0, chunk_points: int = CHUNK_POINTS):
        self.store = str(store)
        self.storage_options = storage_options or {}
        self.writer = StoreWriter(self.store, fracexp_min, self.storage_options, chunk_points)
        bands = self.writer.bands
        self.n_bands = 0 if bands is None else len(bands[0])
        catalog = read_catalog(self.store, self.storage_options)
        self.catalog = catalog if catalog is not None else empty_catalog(self.n_bands)
        ok = self.catalog.filter(pl.col("status") == STATUS_OK)
        self.end = int((ok["offset"] + ok["n_points"]).max() or 0) if ok.height else 0
        self.start = self.writer.append_start(self.end)
        self.hash_of = dict(zip(self.catalog["file"].to_list(), self.catalog["content_hash"].to_list()))
        # source id -> (file, content hash) of every ok row, committed or pending
        self.ids = {s: (f, h) for s, f, h in ok.select("source_id", "file", "content_hash").iter_rows()}
        self.id_of_file = dict(zip(ok["file"].to_list(), ok["source_id"].to_list()))
        self.pending: list[pl.DataFrame] = []  # catalog rows of committed-to-be files, per batch
        self.pending_files: set[str] = set()
        self.buffer: list[dict[str, np.ndarray]] = []
        self.buffered = 0
        self.flush_points = flush_points
        self.flush_seconds = flush_seconds
        self.last_commit = time.monotonic()
        self.summary = IngestSummary(self.store)

    def known_hashes(self, files: Iterable[str]) -> list[str | None]:
        """Catalog content hash of each file (None for files never seen)."""
        return [self.hash_of.get(catalog_path(f)) for f in files]

    def add(self, batch: ParsedBatch) -> None:
        """Apply one batch of parse results; commits when the buffer is full or old."""
        now = dt.datetime.now(dt.timezone.utc)
        rows = []
        self.summary.fallbacks += batch.fallbacks
        for res in batch.results:
            self.summary.discovered += 1
            if res.status == "unchanged":
                self.summary.unchanged += 1
                continue
            self._release(res.file)
            row = res.row | {"ingested_at": now}
            if res.status == STATUS_OK:
                reason = self._admit(res, row)
                if reason is None:
                    row |= {"status": STATUS_OK, "reason": None, "offset": self.start + self.buffered}
                    self.buffer.append(batch.points(res))
                    self.buffered += row["n_points"]
                    self.ids[row["source_id"]] = (res.file, res.content_hash)
                    self.id_of_file[res.file] = row["source_id"]
                    self.summary.ingested += 1
                    self.summary.points += row["n_points"]
                else:
                    row = {k: row.get(k) for k in ("file", "content_hash", "file_size", "source_id", "ingested_at")}
                    row["reason"] = reason
                    res.status = STATUS_REJECTED
            if res.status == STATUS_REJECTED:
                row |= {"status": STATUS_REJECTED, "offset": None, "n_points": None}
                self.summary.rejected += 1
                self.summary.rejected_files.append((res.file, row["reason"]))
            rows.append(row)
            self.pending_files.add(res.file)
            self.hash_of[res.file] = res.content_hash
        if rows:
            self.pending.append(catalog_frame(rows, self.n_bands))
        if self.buffered >= self.flush_points or time.monotonic() - self.last_commit >= self.flush_seconds:
            self.commit()

    def _release(self, file: str) -> None:
        """A changed file gives up its old id (its old points become dead space)."""
        old = self.id_of_file.pop(file, None)
        if old is not None and self.ids.get(old, (None,))[0] == file:
            del self.ids[old]

    def _admit(self, res: FileResult, row: dict) -> str | None:
        """Fix the band system / check it, and choose the source id; a reason when rejected."""
        bands = self.writer.bands
        if bands is None:
            self.writer.set_bands(np.asarray(row["e_min"]), np.asarray(row["e_max"]))
            self.n_bands = len(row["e_min"])
        else:
            if len(bands[0]) != len(row["e_min"]) or not (np.allclose(bands[0], row["e_min"]) and np.allclose(bands[1], row["e_max"])):
                store_bands = ", ".join(f"{a:g}-{b:g}" for a, b in zip(*bands))
                file_bands = ", ".join(f"{a:g}-{b:g}" for a, b in zip(row["e_min"], row["e_max"]))
                return f"band_mismatch: file bands [{file_bands}] keV differ from the store's [{store_bands}] keV"
        wanted = row["source_id"]
        holder = self.ids.get(wanted)
        if holder is None:
            return None
        if holder[1] == res.content_hash:
            return f"duplicate_source: identical content to {holder[0]} (source {wanted})"
        stem = source_id_from_name(res.file)
        candidate = f"{wanted}@{stem}"
        if candidate in self.ids:
            candidate = f"{candidate}@{res.content_hash[:8]}"
        row["source_id"] = candidate
        return None

    def commit(self) -> None:
        """Write buffered points, then atomically replace the catalog."""
        if self.buffer:
            columns = {name: np.concatenate([b[name] for b in self.buffer]) for name in POINT_COLUMNS}
            self.end = self.writer.write(self.start, columns)
            self.start = self.writer.append_start(self.end)
            self.buffer, self.buffered = [], 0
        if self.pending:
            keep = self.catalog.filter(~pl.col("file").is_in(list(self.pending_files)))
            merged = pl.concat([keep, *self.pending], how="diagonal_relaxed")
            self.catalog = merged.select(empty_catalog(self.n_bands).columns)
            write_catalog(self.store, self.catalog, self.storage_options)
            self.pending, self.pending_files = [], set()
        elif read_catalog(self.store, self.storage_options) is None:
            write_catalog(self.store, self.catalog, self.storage_options)
        self.last_commit = time.monotonic()


def ingest(
    archive: str | os.PathLike,
    store: str | os.PathLike,
    workers: int = 1,
    fracexp_min: float = FRACEXP_MIN,
    batch_size: int = BATCH_SIZE,
    progress: bool = True,
    storage_options: dict | None = None,
    flush_points: int = SHARD_POINTS,
    flush_seconds: float = 30.0,
    on_batch: Callable[[IngestSummary], None] | None = None,
    chunk_points: int = CHUNK_POINTS,
    batch_runner: BatchRunner | None = None,
) -> IngestSummary:
    """Ingest every light-curve file under ``archive`` into ``store``.

    Parameters
    ----------
    archive : path or URL
        Directory searched recursively for :data:`FITS_SUFFIXES`.
    store : path or URL
        Created when missing.
    workers : int
        Parsing processes (1: parse in this process).
    fracexp_min : float
        Fractional-exposure cut (see :func:`etl.reader.read_lightcurve`).
    batch_size : int
        Files per parsing task.
    progress : bool
        Show a progress bar.
    flush_points, flush_seconds : int, float
        Commit after this many buffered points or seconds.
    on_batch : callable, optional
        Called with the running summary after each batch (progress lines in flows).
    chunk_points : int
        Points per Zarr chunk of a new store (see :mod:`etl.writer`).
    batch_runner : callable, optional
        ``batch_runner(batches, known_hashes, fracexp_min)`` yields one :class:`ParsedBatch`
        per batch, in order; it decides where :func:`parse_batch` runs. Default: this process
        (``workers=1``) or a pool of ``workers`` spawned processes. Prefect flows pass one
        that submits Prefect tasks (threads, Dask...).

    Returns
    -------
    IngestSummary

    Raises
    ------
    StoreError
        Missing archive, unusable store; :class:`~etl.errors.StoreLockedError` when another
        ingest holds the store.
    """
    started = time.perf_counter()
    archive, store = os.fspath(archive), os.fspath(store)
    check_options(workers=workers, batch_size=batch_size, fracexp_min=fracexp_min, flush_points=flush_points,
                  flush_seconds=flush_seconds, chunk_points=chunk_points)
    files = discover(archive, storage_options)
    if not is_url(store):
        try:
            Path(store).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(store, f"cannot create the store directory: {exc}") from None
        if not os.access(store, os.W_OK):
            raise StoreError(store, "store directory is not writable")
    with StoreLock(store, storage_options):
        ing = Ingestor(store, fracexp_min, storage_options, flush_points, flush_seconds, chunk_points)
        batches = [files[i : i + batch_size] for i in range(0, len(files), batch_size)]
        bar = tqdm(total=len(files), desc="ingest", unit="file", disable=not progress, mininterval=0.5)
        try:
            runner = batch_runner or (lambda b, k, f: run_batches_locally(b, k, f, workers))
            for parsed in runner(batches, ing.known_hashes, fracexp_min):
                ing.add(parsed)
                bar.update(len(parsed.results))
                if on_batch is not None:
                    on_batch(ing.summary)
            ing.commit()
        finally:
            bar.close()
    ing.summary.seconds = time.perf_counter() - started
    return ing.summary


def check_options(workers: int = 1, batch_size: int = BATCH_SIZE, fracexp_min: float = FRACEXP_MIN,
                  flush_points: int = SHARD_POINTS, flush_seconds: float = 30.0, chunk_points: int = CHUNK_POINTS) -> None:
    """Refuse option values that cannot work, before anything is touched.

    Raises
    ------
    OptionError
        A count below 1, a NaN or out-of-range fractional-exposure cut, a negative flush time.
    """
    for name, value in (("workers", workers), ("batch_size", batch_size), ("flush_points", flush_points), ("chunk_points", chunk_points)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise OptionError(f"{name} must be an integer >= 1, got {value!r}")
    if not (isinstance(fracexp_min, (int, float)) and 0.0 <= fracexp_min <= 1.0):  # False for NaN
        raise OptionError(f"fracexp_min must be a number in [0, 1], got {fracexp_min!r}")
    if not flush_seconds >= 0:
        raise OptionError(f"flush_seconds must be >= 0, got {flush_seconds!r}")


def in_order(submit: Callable, items: Iterable, in_flight: int) -> Iterator:
    """Submit ``items`` with at most ``in_flight`` pending; yield their results in order.

    ``submit(item)`` returns a future (``concurrent.futures`` or Prefect's: anything with
    ``.result()``). Bounding what is in flight bounds memory whatever the archive's size.
    """
    todo = iter(items)
    window: deque = deque(submit(item) for item in itertools.islice(todo, max(in_flight, 1)))
    while window:
        result = window.popleft().result()
        for item in itertools.islice(todo, 1):
            window.append(submit(item))
        yield result


def run_batches_locally(batches: list[list[str]], known_hashes, fracexp_min: float, workers: int) -> Iterator[ParsedBatch]:
    """Yield parse results batch by batch, in order, with at most 2 x workers batches in flight."""
    if workers <= 1:
        for batch in batches:
            yield parse_batch(batch, known_hashes(batch), fracexp_min)
        return
    # spawn: the parent holds a Zarr event-loop thread, which fork would copy half-alive.
    ctx = multiprocessing.get_context("spawn")
    # Workers exit when this process dies, even by kill -9 (and with them the resource tracker).
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
        yield from in_order(lambda batch: pool.submit(parse_batch, batch, known_hashes(batch), fracexp_min), batches, 2 * workers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m etl.ingest", description="Ingest an eROSITA light-curve FITS archive into a Zarr store + Parquet catalog.")
    parser.add_argument("archive", help="directory (or URL) holding *.fits / *.fits.gz light curves")
    parser.add_argument("--store", required=True, help="store directory or URL (created when missing)")
    parser.add_argument("--workers", type=int, default=1, help="parsing processes (default 1)")
    parser.add_argument("--fracexp-min", type=float, default=FRACEXP_MIN,
                        help=f"keep rows with FRACEXP >= this in some band (default {FRACEXP_MIN})")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help=f"files per parsing task (default {BATCH_SIZE})")
    parser.add_argument("--flush-points", type=int, default=SHARD_POINTS,
                        help=f"commit after this many new points (default {SHARD_POINTS}, one shard)")
    parser.add_argument("--flush-seconds", type=float, default=30.0, help="commit at least this often (default 30 s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        check_options(args.workers, args.batch_size, args.fracexp_min, args.flush_points, args.flush_seconds)
    except OptionError as exc:
        parser.error(str(exc).replace("_", "-"))
    try:
        summary = ingest(args.archive, args.store, workers=args.workers, fracexp_min=args.fracexp_min,
                         batch_size=args.batch_size, progress=not args.quiet,
                         flush_points=args.flush_points, flush_seconds=args.flush_seconds)
    except EtlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary.line())
    if summary.rejected_files:
        shown = summary.rejected_files[:10]
        print(f"rejected files (reasons in the catalog's 'reason' column){':' if shown else ''}")
        for file, reason in shown:
            print(f"  {Path(file).name}: {reason}")
        if len(summary.rejected_files) > len(shown):
            print(f"  ... and {len(summary.rejected_files) - len(shown)} more")
    return 0


if __name__ == "__main__":
    sys.exit(main())
