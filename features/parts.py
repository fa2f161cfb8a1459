"""Long computations over a store in parts that survive a kill.

A feature set's columns (and the model's scores) are computed in *parts* of
:data:`PART_SOURCES` consecutive ok sources (store order). Each finished part is written to
``STORE/features/.parts/<label>-<key>/`` (local stores), so a build that is killed or fails
resumes with the parts it has not done yet; the folder goes once the set it fed is written
(:meth:`PartRun.discard`). ``key`` hashes everything the values depend on (the store's
snapshot, the code's version, the options), so parts of another snapshot are never reused.

Where a part runs is the caller's choice (``submit``): threads of this process by default, or a
Prefect task runner (threads, Dask) in the flows; the part function is a plain, picklable
``compute(store, start, stop) -> DataFrame`` that accepts an opened store or its URL.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import polars as pl
import xxhash

from common.location import is_url
from common.progress import bar as progress_bar
from etl.store import LightCurveStore, open_store

#: Sources per part: ~5-10 s of work on one core for the classical sets, ~10 s for model scores.
PART_SOURCES = 5_000
PARTS_DIR = ".parts"

#: ``compute(store, start, stop)``: one part's frame (``store`` an opened store or its URL).
Compute = Callable[[object, int, int], pl.DataFrame]
#: ``submit(label, compute, store, start, stop)`` -> a future of the part's frame.
Submit = Callable[[str, Compute, object, int, int], Future]


def store_of(store: LightCurveStore | str) -> LightCurveStore:
    """An opened store: ``store`` itself, or the URL opened once per process and catalog version.

    Part functions run where the caller sends them (a Dask worker opens a store from its URL);
    opening reads the whole catalog, so a process keeps the stores it opened for the next part.
    """
    if isinstance(store, LightCurveStore):
        return store
    return _opened(str(store), _catalog_version(str(store)))


def _catalog_version(url: str) -> str:
    from etl.catalog import catalog_url

    path = catalog_url(url)
    if is_url(path):
        return ""  # remote: trust the URL (a part runs on one snapshot: its store was opened by the flow's step)
    try:
        st = os.stat(path)
    except OSError:
        return ""
    return f"{st.st_mtime_ns}:{st.st_size}"


@functools.lru_cache(maxsize=4)
def _opened(url: str, version: str) -> LightCurveStore:
    return open_store(url)


def parts_key(**lineage) -> str:
    """A short hash of what a run of parts depends on."""
    return xxhash.xxh3_64_hexdigest(json.dumps(lineage, sort_keys=True, default=str).encode())


class PartRun:
    """The parts of one computation over ``store`` (module docstring).

    Parameters
    ----------
    store : LightCurveStore
    label : str
        What is computed (``poisson_variability``): the folder's name and the progress bar's.
    key : str
        :func:`parts_key` of everything the values depend on.
    part_sources : int
        Sources per part.
    """

    def __init__(self, store: LightCurveStore, label: str, key: str, part_sources: int = PART_SOURCES):
        self.store = store
        self.label = label
        self.key = key
        self.size = int(part_sources)
        local = not is_url(store.url)
        self.folder = Path(store.url) / "features" / PARTS_DIR / f"{label}-{key}" if local else None

    def spans(self) -> list[tuple[int, int]]:
        n = len(self.store)
        return [(lo, min(lo + self.size, n)) for lo in range(0, n, self.size)]

    def _path(self, lo: int, hi: int) -> Path:
        return self.folder / f"{lo:010d}-{hi:010d}.parquet"

    def done(self) -> list[tuple[int, int]]:
        """Spans whose part is already on disk."""
        if self.folder is None or not self.folder.is_dir():
            return []
        return [span for span in self.spans() if self._path(*span).is_file()]

    def run(self, compute: Compute, submit: Submit | None = None, jobs: int = 1, progress: bool = False,
            target: LightCurveStore | str | None = None) -> pl.DataFrame:
        """Every part's frame, concatenated in store order; parts on disk are read, the others computed.

        Parameters
        ----------
        compute : callable
            ``compute(store, start, stop)``.
        submit : callable, optional
            Where parts run; default ``jobs`` threads of this process.
        target : store or URL, optional
            What ``compute`` gets as its store (default the opened store; flows sending parts to
            other processes pass its URL).
        """
        spans = self.spans()
        if not spans:
            return compute(self.store, 0, 0)  # no source: the empty frame with its schema
        have = set(self.done())
        todo = [span for span in spans if span not in have]
        frames: dict[tuple[int, int], pl.DataFrame] = {}
        bar = progress_bar(len(spans), self.label.replace("_", " "), "part", show=progress)
        bar.update(len(have))
        if self.folder is not None and todo:
            self.folder.mkdir(parents=True, exist_ok=True)
        arg = self.store if target is None else target
        pool = None
        if submit is None:
            pool = ThreadPoolExecutor(max(1, jobs))
            submit = lambda label, fn, store, lo, hi: pool.submit(fn, store, lo, hi)  # noqa: E731
        try:
            window = 2 * max(1, jobs)  # parts in flight: memory bounded whatever the store's size
            pending: list[tuple[tuple[int, int], Future]] = []
            queue = list(todo)
            while queue or pending:
                while queue and len(pending) < window:
                    span = queue.pop(0)
                    pending.append((span, submit(self.label, compute, arg, *span)))
                span, future = pending.pop(0)
                frame = future.result()
                self._keep(span, frame)
                if self.folder is None:  # no folder to keep it in: in memory
                    frames[span] = frame
                del frame
                bar.update(1)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
        if self.folder is None:
            return pl.concat([frames[span] for span in spans], how="vertical_relaxed")
        # read back from disk in store order: one copy in memory, never the parts and their concatenation at once
        return pl.scan_parquet([self._path(*span) for span in spans]).collect()

    def _keep(self, span: tuple[int, int], frame: pl.DataFrame) -> None:
        if self.folder is None:
            return
        path = self._path(*span)
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
        frame.write_parquet(tmp, compression="lz4")
        os.replace(tmp, path)

    def discard(self) -> None:
        """Remove this run's parts, and those of any other key of this label (older snapshots)."""
        if self.folder is None:
            return
        root = self.folder.parent
        for entry in root.glob(f"{self.label}-*") if root.is_dir() else ():
            shutil.rmtree(entry, ignore_errors=True)
