"""The store side of ingest: apply parsed batches to a store (ids, bands, buffering, commits).

Split from the parsing (:mod:`etl.parse`) so that a Prefect flow can run
:func:`etl.parse.parse_batch` as tasks and feed the results here.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from common.location import resolve
from etl.catalog import STATUS_OK, STATUS_REJECTED, catalog_frame, empty_catalog, read_catalog, write_catalog
from etl.lightcurve import CHUNK_POINTS, FRACEXP_MIN, POINT_COLUMNS, SHARD_POINTS, mean_rate_columns, mean_rates
from etl.naming import source_id_of, stem
from etl.parse import FileResult, ParsedBatch, catalog_path
from etl.writer import StoreWriter


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


class Ingestor:
    """Applies parsed batches to a store: source ids, band checks, buffering and commits.

    Split from the parsing so that a Prefect flow can run :func:`parse_batch` as tasks and
    feed the results here. Use :meth:`known_hashes` to skip unchanged files, :meth:`add`
    for each batch result and :meth:`commit` at the end (it also commits when the buffer
    holds ``flush_points`` points or ``flush_seconds`` have passed).
    """

    def __init__(self, store: str, fracexp_min: float = FRACEXP_MIN, storage_options: dict | None = None,
                 flush_points: int = SHARD_POINTS, flush_seconds: float = 30.0, chunk_points: int = CHUNK_POINTS,
                 binning: str = "none"):
        self.store = resolve(store)
        self.storage_options = storage_options or {}
        self.writer = StoreWriter(self.store, fracexp_min, self.storage_options, chunk_points, binning)
        self.id_scheme = self.writer.attrs.get("id_scheme", "object")
        bands = self.writer.bands
        self.n_bands = 0 if bands is None else len(bands[0])
        catalog = read_catalog(self.store, self.storage_options)
        self.catalog = catalog if catalog is not None else empty_catalog(self.n_bands)
        ok = self.catalog.filter(pl.col("status") == STATUS_OK)
        self.end = int((ok["offset"] + ok["n_points"]).max() or 0) if ok.height else 0
        self.start = self.writer.append_start(self.end)
        self.hash_of = dict(zip(self.catalog["file"].to_list(), self.catalog["content_hash"].to_list()))
        signed = self.catalog.filter(pl.col("file_mtime_ns").is_not_null() & pl.col("content_hash").is_not_null())
        self.signature_of = {f: (s, m) for f, s, m in signed.select("file", "file_size", "file_mtime_ns").iter_rows()}
        self.retimed: dict[str, int] = {}  # unchanged files whose recorded time is new
        rejected = self.catalog.filter(pl.col("status") == STATUS_REJECTED)
        self.reason_of = dict(zip(rejected["file"].to_list(), rejected["reason"].to_list()))
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

    def skip_unchanged(self, files: list[str]) -> list[str]:
        """The files that need reading: those whose size and modification time differ from their row.

        A local file whose size and time are those recorded when it was read is counted unchanged
        without reading it (as make and rsync decide), so a rerun over a million files costs a
        ``stat`` each instead of reading the archive; ``ingest(..., rehash=True)`` reads and hashes
        every file instead.
        """
        if not self.signature_of:
            return files
        todo = []
        for f in files:
            try:
                st = os.stat(f)
            except OSError:
                todo.append(f)
                continue
            if self.signature_of.get(catalog_path(f)) == (st.st_size, st.st_mtime_ns):
                self.summary.discovered += 1
                self.summary.unchanged += 1
            else:
                todo.append(f)
        return todo

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
                mtime = res.row.get("file_mtime_ns")
                if mtime is not None and self.signature_of.get(res.file, (None, None))[1] != mtime:
                    self.retimed[res.file] = mtime
                continue
            if (res.status == STATUS_REJECTED and self.reason_of.get(res.file) == res.row.get("reason")
                    and self.hash_of.get(res.file) == res.content_hash):
                self.summary.unchanged += 1  # refused again for the same reason (a FIFO, a link loop): nothing new
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
                    row = {k: row.get(k) for k in ("file", "content_hash", "file_size", "file_mtime_ns", "source_id", "ingested_at")}
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

    def add_lightcurves(self, rows: list[dict], columns: dict[str, np.ndarray], lengths: np.ndarray) -> None:
        """Add light curves made by code instead of read from files (simulations, derived stores).

        Parameters
        ----------
        rows : list of dict
            One catalog row per light curve: ``source_id`` and ``file`` (unique names), any other
            catalog column (:data:`etl.catalog.CATALOG_SCHEMA`); ``n_points`` and the per-band
            ``mean_rate_b{k}`` are filled in from the points.
        columns : dict of str to ndarray
            Every column of :data:`etl.lightcurve.POINT_COLUMNS`, the light curves back to back,
            shape (P,) or (P, B).
        lengths : ndarray of int, shape (N,)
            Points per light curve (sum P).
        """
        lengths = np.asarray(lengths, dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        results = []
        for row, lo, n in zip(rows, offsets[:-1].tolist(), lengths.tolist()):
            rates = mean_rates(columns["rate"][lo : lo + n])
            full = {**dict(zip(mean_rate_columns(len(rates)), rates.tolist())), **row, "n_points": n}
            results.append(FileResult(row["file"], row.get("content_hash"), int(row.get("file_size") or 0), STATUS_OK, full,
                                      span=(lo, n)))
        self.add(ParsedBatch(results, columns))

    def _release(self, file: str) -> None:
        """A changed file gives up its old id (its old points become dead space)."""
        old = self.id_of_file.pop(file, None)
        if old is not None and self.ids.get(old, (None,))[0] == file:
            del self.ids[old]

    @property
    def _band_lists(self) -> tuple[list[float], list[float]] | None:
        bands = self.writer.attrs.get("bands")
        return (bands["e_min"], bands["e_max"]) if bands else None

    def _admit(self, res: FileResult, row: dict) -> str | None:
        """Fix the band system / check it, and choose the source id; a reason when rejected."""
        bands = self.writer.bands
        if bands is None:
            self.writer.set_bands(np.asarray(row["e_min"]), np.asarray(row["e_max"]))
            self.n_bands = len(row["e_min"])
        elif (row["e_min"], row["e_max"]) != self._band_lists:  # the exact test first: np.allclose per file cost ~0.15 ms
            if len(bands[0]) != len(row["e_min"]) or not (np.allclose(bands[0], row["e_min"]) and np.allclose(bands[1], row["e_max"])):
                store_bands = ", ".join(f"{a:g}-{b:g}" for a, b in zip(*bands))
                file_bands = ", ".join(f"{a:g}-{b:g}" for a, b in zip(row["e_min"], row["e_max"]))
                return f"band_mismatch: file bands [{file_bands}] keV differ from the store's [{store_bands}] keV"
        if self.id_scheme != "name":  # a store from before name-derived ids keeps making ids its way
            row["source_id"] = source_id_of(res.file, row.get("object") or "", self.id_scheme)
        wanted = row["source_id"]
        holder = self.ids.get(wanted)
        if holder is None:
            return None
        if holder[1] == res.content_hash:
            return f"duplicate_source: identical content to {holder[0]} (source {wanted})"
        candidate = f"{wanted}@{stem(res.file)}"
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
        if self.retimed:  # unchanged content, new time: recorded so the next run skips them by stat
            times = pl.DataFrame({"file": list(self.retimed), "_t": list(self.retimed.values())},
                                 schema={"file": pl.String, "_t": pl.Int64})
            self.catalog = (self.catalog.join(times, on="file", how="left", maintain_order="left")
                            .with_columns(file_mtime_ns=pl.coalesce("_t", "file_mtime_ns")).drop("_t"))
            self.retimed = {}
            if not self.pending:
                write_catalog(self.store, self.catalog, self.storage_options)
        if self.pending:
            keep = self.catalog.filter(~pl.col("file").is_in(list(self.pending_files)))
            merged = pl.concat([keep, *self.pending], how="diagonal_relaxed")
            self.catalog = merged.select(empty_catalog(self.n_bands).columns)
            write_catalog(self.store, self.catalog, self.storage_options)
            self.pending, self.pending_files = [], set()
        elif read_catalog(self.store, self.storage_options) is None:
            write_catalog(self.store, self.catalog, self.storage_options)
        self.last_commit = time.monotonic()
