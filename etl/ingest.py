"""Ingest a FITS light-curve archive into a store: incremental, idempotent and crash safe.

    python -m etl.ingest ARCHIVE_DIR --store STORE [--workers N]

Files are hashed and parsed in batches (in worker processes with ``--workers``); the main
process appends the points to the store and commits the catalog every ``flush_points``
points or ``flush_seconds`` seconds. Each commit is atomic, so a killed ingest loses at most
the work since its last commit and the next run redoes it. A file whose content hash matches
its catalog row is skipped; a changed file replaces its row.

Source ids
----------
For eSASS product names (``emNN_TTTTTT_020_LightCurve_NNNNN_cVVV...``) the id is the tile and
the number, ``emNN_TTTTTT_NNNNN``: unique in the survey as the DR1 catalogue's DETUID, and the
same whatever folder holds the file or in which order files are found (:mod:`etl.naming`).
Other names: the OBJECT keyword, else the file name's stem. Files are taken in the order of
their *names* (not paths), so when two files of an archive carry the same id:

* identical content (a copy): the later name is rejected as ``duplicate_source`` with the
  first file's path in its reason;
* different content (the same source in two processings or flavours, or two files with the
  same OBJECT): both are kept, the later name under ``"{id}@{file stem}"``; the catalog's
  ``object`` column keeps the OBJECT keyword as found.

Committed rows keep their ids, so ids stay stable when an archive grows. Stores written before
schema version 3 keep making ids from OBJECT (their ``id_scheme`` attribute), so nothing
committed changes; ingest into a new store for the name-derived ids.

``--bin eroday`` makes one bin per survey scan at ingest (:mod:`etl.binning`); a store holds one
binning (``binning`` attribute) and refuses files ingested with another (exit 2).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from common import cli
from common.lifeline import die_with_parent
from common.location import filesystem, is_url, resolve
from common.pool import in_order
from etl.binning import BINNINGS
from etl.errors import OptionError, StoreError
from etl.lightcurve import CHUNK_POINTS, FRACEXP_MIN, SHARD_POINTS
from etl.parse import FileResult, ParsedBatch, catalog_path, hash_bytes, parse_batch, parse_file  # noqa: F401 - public API

if TYPE_CHECKING:
    from etl.ingestor import IngestSummary

# Spawned parse workers import this module as their __main__ when ingest runs as
# ``python -m etl.ingest``: its top level imports only what parsing needs. The store side
# (polars, zarr, fsspec, tqdm) is imported inside ingest(), once, in the main process.

#: Files per parsing task (a worker's batch or a Prefect task); the one definition of the default.
BATCH_SIZE = 500

#: File name endings that ingest discovers (case-insensitive).
FITS_SUFFIXES = (".fits", ".fits.gz", ".fit", ".fit.gz", ".fts", ".fts.gz", ".lc", ".lc.gz")


def _by_name(path: str) -> tuple[str, str]:
    return os.path.basename(path), path


def discover(archive: str, storage_options: dict | None = None) -> list[str]:
    """Every light-curve file under ``archive`` (recursively), sorted by file name, then path.

    By name, not path: which of two files with one source id keeps the plain id must not depend
    on the folders they sit in.

    Raises
    ------
    StoreError
        When the archive does not exist or is not a directory.
    """
    archive = resolve(archive)
    if not is_url(archive):
        if not os.path.isdir(archive):
            raise StoreError(archive, "archive directory does not exist")
        return sorted(_walk_local(os.path.abspath(archive)), key=_by_name)
    fs, root, local = filesystem(archive, storage_options)
    if not fs.isdir(root):
        raise StoreError(archive, "archive directory does not exist")
    files = [p for p in fs.find(root) if p.lower().endswith(FITS_SUFFIXES)]
    if local:
        return sorted(files, key=_by_name)
    return sorted((fs.unstrip_protocol(p) for p in files), key=_by_name)


#: Where parse_batch runs: (batches, known_hashes, fracexp_min, binning) -> ParsedBatch per batch, in order.
BatchRunner = Callable[[list[list[str]], Callable[[list[str]], list], float, str], Iterator[ParsedBatch]]


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
    binning: str = "none",
    rehash: bool = False,
) -> "IngestSummary":
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
    binning : {"none", "eroday"}
        ``eroday``: one bin per survey scan (:mod:`etl.binning`); a store holds one binning.
    rehash : bool
        Read and hash every file, also those whose size and modification time match their
        catalog row (by default such files count as unchanged without being read).
    batch_runner : callable, optional
        ``batch_runner(batches, known_hashes, fracexp_min, binning)`` yields one :class:`ParsedBatch`
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
    from common.progress import bar as progress_bar
    from etl.ingestor import Ingestor
    from etl.lock import StoreLock

    started = time.perf_counter()
    archive, store = resolve(archive), resolve(store)
    check_options(workers=workers, batch_size=batch_size, fracexp_min=fracexp_min, flush_points=flush_points,
                  flush_seconds=flush_seconds, chunk_points=chunk_points, binning=binning)
    files = discover(archive, storage_options)
    if not is_url(store):
        try:
            Path(store).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(store, f"cannot create the store directory: {exc}") from None
        if not os.access(store, os.W_OK):
            raise StoreError(store, "store directory is not writable")
    with StoreLock(store, storage_options):
        ing = Ingestor(store, fracexp_min, storage_options, flush_points, flush_seconds, chunk_points, binning)
        bar = progress_bar(len(files), "ingest", "file", show=progress)
        todo = files if rehash or is_url(archive) else ing.skip_unchanged(files)
        bar.update(len(files) - len(todo))
        batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
        try:
            runner = batch_runner or (lambda b, k, f, binned: run_batches_locally(b, k, f, workers, binned))
            for parsed in runner(batches, ing.known_hashes, fracexp_min, binning):
                ing.add(parsed)
                bar.update(len(parsed.results))
                if on_batch is not None:
                    on_batch(ing.summary)
            ing.commit()
        finally:
            bar.close()
    ing.summary.seconds = time.perf_counter() - started
    return ing.summary


def _walk_local(root: str) -> Iterator[str]:
    """Every entry below ``root`` whose name ends like a light curve, whatever its kind.

    ``os.scandir`` (a tenth of fsspec's per-file cost). Entries of any kind are listed, links
    to folders and FIFOs included, so that each becomes a catalog row (the reader rejects what
    is not a regular file); folders are descended without following links, so a link loop
    cannot recurse.
    """
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            elif entry.name.lower().endswith(FITS_SUFFIXES):
                yield entry.path


def check_options(workers: int = 1, batch_size: int = BATCH_SIZE, fracexp_min: float = FRACEXP_MIN,
                  flush_points: int = SHARD_POINTS, flush_seconds: float = 30.0, chunk_points: int = CHUNK_POINTS,
                  binning: str = "none") -> None:
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
    if binning not in BINNINGS:
        raise OptionError(f"bin must be one of {', '.join(BINNINGS)}, got {binning!r}")


def run_batches_locally(batches: list[list[str]], known_hashes, fracexp_min: float, workers: int,
                        binning: str = "none") -> Iterator[ParsedBatch]:
    """Yield parse results batch by batch, in order, with at most 2 x workers batches in flight."""
    if workers <= 1:
        for batch in batches:
            yield parse_batch(batch, known_hashes(batch), fracexp_min, binning)
        return
    # spawn: the parent holds a Zarr event-loop thread, which fork would copy half-alive.
    ctx = multiprocessing.get_context("spawn")
    # Workers exit when this process dies, even by kill -9 (and with them the resource tracker).
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
        yield from in_order(lambda batch: pool.submit(parse_batch, batch, known_hashes(batch), fracexp_min, binning), batches,
                            2 * workers)


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
    parser.add_argument("--bin", default="none", dest="binning",
                        help="'none' (default: the files' own bins) or 'eroday' (one bin per survey scan); a store holds one")
    parser.add_argument("--rehash", action="store_true",
                        help="read and hash every file, also those whose size and modification time are unchanged")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        check_options(args.workers, args.batch_size, args.fracexp_min, args.flush_points, args.flush_seconds,
                      binning=args.binning)
    except OptionError as exc:
        parser.error(str(exc).replace("_", "-"))
    summary = ingest(args.archive, args.store, workers=args.workers, fracexp_min=args.fracexp_min,
                     batch_size=args.batch_size, progress=not args.quiet,
                     flush_points=args.flush_points, flush_seconds=args.flush_seconds, binning=args.binning,
                     rehash=args.rehash)
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
    sys.exit(cli.run(main))
