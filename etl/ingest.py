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
from etl.errors import EtlError, InvalidLightCurveError, StoreError
from etl.lightcurve import POINT_COLUMNS
from etl.lock import StoreLock
from etl.reader import read_lightcurve, source_id_from_name
from etl.store import is_url
from etl.writer import CHUNK_POINTS, SHARD_POINTS, StoreWriter

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
    rejected_files: list[tuple[str, str]] = field(default_factory=list)

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        return (
            f"discovered {self.discovered} | ingested {self.ingested} | unchanged {self.unchanged} | "
            f"rejected {self.rejected} | {self.points} points in {self.seconds:.1f} s -> {self.store}"
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


def parse_file(file: str, known_hash: str | None, fracexp_min: float) -> FileResult:
    """Hash one file and, unless its hash is ``known_hash``, read and validate it.

    Never raises for bad content: a bad file becomes a ``rejected`` result.
    """
    try:
        with fsspec.open(file, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        return FileResult(file, None, 0, STATUS_REJECTED, {"reason": f"unreadable: {exc}", "source_id": source_id_from_name(file)})
    digest = hash_bytes(raw)
    if digest == known_hash:
        return FileResult(file, digest, len(raw), "unchanged")
    base = {"file": file, "content_hash": digest, "file_size": len(raw)}
    try:
        lc = read_lightcurve(file, fracexp_min=fracexp_min, raw=raw)
    except InvalidLightCurveError as exc:
        row = base | {"source_id": exc.source_id or source_id_from_name(file), "reason": exc.reason}
        return FileResult(file, digest, len(raw), STATUS_REJECTED, row)
    cols = lc.columns
    time_ = cols["time"]
    with np.errstate(all="ignore"):
        means = np.nanmean(np.where(np.isfinite(cols["rate"]), cols["rate"], np.nan), axis=0)
    row = base | {
        "source_id": lc.source_id,
        "object": lc.source_id,
        "flavour": lc.flavour,
        "n_rows_file": lc.n_rows_file,
        "n_points": lc.n_points,
        "e_min": lc.e_min.tolist(),
        "e_max": lc.e_max.tolist(),
        "ra": lc.ra,
        "dec": lc.dec,
        "t_start": float(time_[0]),
        "t_stop": float(time_[-1] + cols["timedel"][-1]),
        **{name: float(v) for name, v in zip(mean_rate_columns(lc.n_bands), means)},
    }
    return FileResult(file, digest, len(raw), STATUS_OK, row, cols)


def parse_batch(files: list[str], known_hashes: list[str | None], fracexp_min: float) -> ParsedBatch:
    """Parse a batch of files (the unit of work of a worker process or a Prefect task)."""
    results = [parse_file(f, h, fracexp_min) for f, h in zip(files, known_hashes)]
    ok = [r for r in results if r.columns is not None]
    start = 0
    for r in ok:
        r.span = (start, len(r.columns["time"]))
        start += r.span[1]
    columns = {name: np.concatenate([r.columns[name] for r in ok]) for name in POINT_COLUMNS} if ok else {}
    for r in ok:
        r.columns = None
    return ParsedBatch(results, columns)


#: Where parse_batch runs: (batches, known_hashes, fracexp_min) -> ParsedBatch per batch, in order.
BatchRunner = Callable[[list[list[str]], Callable[[list[str]], list], float], Iterator[ParsedBatch]]


class Ingestor:
    """Applies parsed batches to a store: source ids, band checks, buffering and commits.

    Split from the parsing so that a Prefect flow can run :func:`parse_batch` as tasks and
    feed the results here. Use :meth:`known_hashes` to skip unchanged files, :meth:`add`
    for each batch result and :meth:`commit` at the end (it also commits when the buffer
    holds ``flush_points`` points or ``flush_seconds`` have passed).
    """

    def __init__(self, store: str, fracexp_min: float = 0.1, storage_options: dict | None = None,
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
        return [self.hash_of.get(f) for f in files]

    def add(self, batch: ParsedBatch) -> None:
        """Apply one batch of parse results; commits when the buffer is full or old."""
        now = dt.datetime.now(dt.timezone.utc)
        rows = []
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
                    row |= {"status": STATUS_OK, "reason": None, "offset": self.end + self.buffered}
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
            self.end = self.writer.write(self.end, columns)
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
    fracexp_min: float = 0.1,
    batch_size: int = 256,
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
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        yield from in_order(lambda batch: pool.submit(parse_batch, batch, known_hashes(batch), fracexp_min), batches, 2 * workers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m etl.ingest", description="Ingest an eROSITA light-curve FITS archive into a Zarr store + Parquet catalog.")
    parser.add_argument("archive", help="directory (or URL) holding *.fits / *.fits.gz light curves")
    parser.add_argument("--store", required=True, help="store directory or URL (created when missing)")
    parser.add_argument("--workers", type=int, default=1, help="parsing processes (default 1)")
    parser.add_argument("--fracexp-min", type=float, default=0.1, help="keep rows with FRACEXP >= this in some band (default 0.1)")
    parser.add_argument("--batch-size", type=int, default=256, help="files per parsing task (default 256)")
    parser.add_argument("--flush-points", type=int, default=SHARD_POINTS,
                        help=f"commit after this many new points (default {SHARD_POINTS}, one shard)")
    parser.add_argument("--flush-seconds", type=float, default=30.0, help="commit at least this often (default 30 s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
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
