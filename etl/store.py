"""Read API of the light-curve store: a Zarr v3 group of CSR (ragged) arrays + its catalog.

Layout (``STORE`` is a local path or any fsspec URL)::

    STORE/zarr.json          group; attributes: schema_version, builder, bands, fracexp_min
    STORE/points/<column>    flat per-point arrays, shape (P,) or (P, B), sharded
    STORE/catalog.parquet    one row per discovered file; ok rows carry offset + n_points

Shape legend: P = points in the store, N = light curves in a batch, T = points of one light
curve, B = bands. Decoded chunks are kept in a bounded LRU cache, so random reads cost
numpy slicing once a chunk is warm and memory does not grow with the store.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl
import xxhash
import zarr

from common.location import is_url, resolve
from common.pool import in_order
from etl.catalog import STATUS_OK, catalog_url, read_catalog
from etl.errors import SchemaVersionError, SourceNotFoundError, StoreError
from etl.lightcurve import POINT_COLUMNS, LightCurve
from etl.sky import HEALPIX_COLUMN, SkyIndex, angular_separation, check_cone, cone_ranges

#: 2: time reference columns in the catalog (mjdref, timesys, mjd_start, mjd_stop), units on
#: the arrays, band edges as coordinate arrays, append-only shards. Version 1 stores are read
#: as they are (the new catalog columns read as null) and upgraded by the next ingest.
#: 3: the catalog's iau_name, error_convention and n_err_fallback; the ``binning`` and ``id_scheme``
#: attributes (ids from eSASS file names in new stores; upgraded stores keep their OBJECT ids).
SCHEMA_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
POINTS_GROUP = "points"
#: Coordinate arrays of the band dimension in the points group (keV).
BAND_ARRAYS = ("e_min", "e_max")
DEFAULT_CACHE_BYTES = 256 * 2**20
#: Pinned copies of catalogs (:meth:`LightCurveStore.pin`).
SNAPSHOTS_DIR = ".snapshots"


@dataclass
class LightCurveBatch:
    """Several light curves in CSR form, as :meth:`LightCurveStore.read_many` returns them.

    Attributes
    ----------
    source_ids : list of str, length N (empty when read by position with ``read_spans``)
    lengths : ndarray of int64, shape (N,)
        Points per light curve.
    offsets : ndarray of int64, shape (N + 1,)
        Light curve ``i`` is ``columns[name][offsets[i]:offsets[i + 1]]``.
    columns : dict of str to ndarray
        Flat arrays, shape (sum T,) or (sum T, B).
    """

    source_ids: list[str]
    lengths: np.ndarray
    offsets: np.ndarray
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        """Columns of light curve ``i`` (views into the flat arrays)."""
        lo, hi = self.offsets[i], self.offsets[i + 1]
        return {name: arr[lo:hi] for name, arr in self.columns.items()}

    def padded(self, column: str, length: int | None = None, fill: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Pad one column to a dense array.

        Parameters
        ----------
        column : str
            Column name.
        length : int, optional
            T of the output (default: the longest light curve); longer curves are cut.
        fill : float
            Value of padded steps.

        Returns
        -------
        values : ndarray, shape (N, T) or (N, T, B)
        mask : ndarray of bool, shape (N, T)
            True on real steps.
        """
        flat = self.columns[column]
        t = int(self.lengths.max(initial=0)) if length is None else int(length)
        lengths = np.minimum(self.lengths, t)
        mask = np.arange(t)[None, :] < lengths[:, None]
        out = np.full((len(self), t) + flat.shape[1:], fill, dtype=flat.dtype)
        rows = np.repeat(np.arange(len(self)), lengths)
        steps = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        src = np.repeat(self.offsets[:-1], lengths) + steps
        out[rows, steps] = flat[src]
        return out, mask


class ChunkCache:
    """LRU cache of decoded chunks, bounded in bytes; safe to share between threads.

    Parameters
    ----------
    max_bytes : int
        Evict least-recently-used chunks beyond this many bytes.

    Notes
    -----
    A lock guards the bookkeeping (as zarr's own LRU store cache does); a chunk is decoded
    outside it, so two threads missing the same chunk at once may both decode it, and one
    copy is kept.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES):
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int], load) -> np.ndarray:
        """The cached array for ``key``, calling ``load()`` on a miss."""
        with self._lock:
            arr = self._items.get(key)
            if arr is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return arr
            self.misses += 1
        arr = load()
        with self._lock:
            if key in self._items:  # another thread loaded it meanwhile
                return self._items[key]
            self._items[key] = arr
            self.nbytes += arr.nbytes
            while self.nbytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self.nbytes -= old.nbytes
        return arr

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.nbytes = 0


class LightCurveStore:
    """A light-curve store opened for reading; see :func:`open_store`."""

    def __init__(self, url: str, cache_bytes: int = DEFAULT_CACHE_BYTES, storage_options: dict | None = None,
                 catalog: str | None = None):
        self.url = resolve(url)
        self.storage_options = storage_options or {}
        self.pinned_catalog = resolve(catalog) if catalog else None
        self.cache = ChunkCache(cache_bytes)
        self._index: dict[str, int] | None = None
        self._sky: SkyIndex | None = None
        self.refresh()

    # -- opening -------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the catalog and array metadata (after another process ingested more)."""
        try:
            self.group = zarr.open_group(store=self.url, mode="r", storage_options=self._zarr_options())
        except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError) as exc:
            raise StoreError(self.url, f"not a light-curve store ({exc.__class__.__name__}: {exc})") from None
        attrs = dict(self.group.attrs)
        version = attrs.get("schema_version")
        if version is None:
            raise StoreError(self.url, "Zarr group has no schema_version attribute: not a light-curve store")
        if int(version) not in READABLE_VERSIONS:
            raise SchemaVersionError(self.url, f"schema version {version}, this code reads {', '.join(map(str, READABLE_VERSIONS))}")
        self.attrs = attrs
        bands = attrs.get("bands") or {}
        self.e_min = np.asarray(bands.get("e_min", []), dtype="f8")
        self.e_max = np.asarray(bands.get("e_max", []), dtype="f8")
        self.chunk_points = int(attrs.get("chunk_points", 0))
        self.arrays: dict[str, zarr.Array] = {}
        if POINTS_GROUP in self.group:
            points = self.group[POINTS_GROUP]
            self.arrays = {name: points[name] for name in POINT_COLUMNS if name in points}
        cat = read_catalog(self.url, self.storage_options, self.pinned_catalog)
        if cat is None:
            if self.pinned_catalog:
                raise StoreError(self.url, f"pinned catalog {self.pinned_catalog} does not exist")
            raise StoreError(self.url, "store has no catalog.parquet (never committed an ingest)")
        # The ok rows (one chunk: row gathers, as in a cone search, stay O(rows)) and the rest, kept
        # apart rather than beside a whole copy: the catalog is most of an opened store's memory
        # (about 350 MB at 930,000 sources).
        is_ok = cat["status"] == STATUS_OK
        self._ok = cat.filter(is_ok).rechunk()
        self._not_ok = cat.filter(~is_ok)
        del cat
        self._in_order = None
        self._index = None
        self._snapshot = None
        self._sky = None  # the sorted sky index, built by the first cone search
        self.cache.clear()

    def _zarr_options(self) -> dict | None:
        return self.storage_options or None if is_url(self.url) else None

    # -- catalog -------------------------------------------------------------------------
    def catalog(self) -> pl.LazyFrame:
        """The catalog as a Polars LazyFrame (the committed snapshot this object opened): the ok rows
        first, then the others (rejected, quarantined), each in the file's order."""
        return pl.concat([self._ok, self._not_ok], rechunk=False).lazy()

    @property
    def catalog_path(self) -> str:
        """Path or URL of the Parquet catalog, for ``pl.scan_parquet``."""
        return catalog_url(self.url)

    @property
    def source_ids(self) -> list[str]:
        """Ids of all ingested (status ok) sources, in store order."""
        return self._ok["source_id"].to_list()

    def __len__(self) -> int:
        return self._ok.height

    def __contains__(self, source_id: str) -> bool:
        return source_id in self._lookup()

    def _lookup(self) -> dict[str, int]:
        if self._index is None:
            ids = self._ok["source_id"].to_list()
            self._index = dict(zip(ids, range(len(ids))))
        return self._index

    def ok_sources(self) -> pl.DataFrame:
        """The ok rows of the catalog in store order (by ``offset``): what batch loops walk through."""
        if self._in_order is None:
            offsets = self._ok["offset"]
            # an ingest appends in catalog order, so this is usually the ok rows themselves, not a second copy
            self._in_order = self._ok if offsets.is_sorted() else self._ok.sort("offset")
        return self._in_order

    def snapshot_hash(self) -> str:
        """xxh3-128 of the ok rows' source ids, content hashes and locations: what data a result saw.

        Two stores (or one store at two moments) with the same hash hold the same light curves at
        the same places; feature sets and exports record it as their lineage. Computed once per
        opened snapshot (a million rows take about a second).
        """
        if self._snapshot is None:
            ok = self._ok.select("source_id", "content_hash", "offset", "n_points").sort("source_id")
            h = xxhash.xxh3_128()
            for col in ok.columns:
                h.update(ok[col].cast(pl.String).str.join("\n").item().encode())
            self._snapshot = h.hexdigest()
        return self._snapshot

    @contextlib.contextmanager
    def pin(self) -> Iterator[str]:
        """A copy of the catalog this object opened, for another process to open the same snapshot.

        Points are only ever appended, so the copy's offsets stay valid while ingests go on:
        ``open_store(url, catalog=path)`` in the other process sees exactly what this one sees.
        The copy (``STORE/.snapshots/``) is removed when the block ends.
        """
        from common.location import filesystem, join

        name = f"catalog-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
        url = join(self.url, SNAPSHOTS_DIR, name)
        fs, path, local = filesystem(url, self.storage_options)
        if local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        with fs.open(path, "wb") as fh:
            self.catalog().collect().write_parquet(fh)
        try:
            yield url
        finally:
            try:
                fs.rm(path)
            except OSError:
                pass

    def map_batches(self, fn: Callable[[pl.DataFrame, "LightCurveBatch"], object], columns: Sequence[str],
                    batch_size: int = 1024, n_jobs: int = 1, rows: np.ndarray | None = None,
                    progress: bool = False, desc: str = "batches") -> Iterator:
        """``fn(sources, batch)`` for consecutive batches of ok sources, results yielded in order.

        Parameters
        ----------
        fn : callable
            Gets the batch's catalog rows (``sources``, a slice of :meth:`ok_sources`) and their
            light curves (a :class:`LightCurveBatch` of ``columns``, ids set).
        rows : ndarray of int, optional
            Positions in :meth:`ok_sources` to visit (repeats allowed), default all of them.
        n_jobs : int
            Threads: reading and numpy release the GIL. At most ``2 * n_jobs`` batches are in
            memory at once, whatever the store's size.
        """
        from common.progress import bar as progress_bar

        table = self.ok_sources() if rows is None else self.ok_sources()[np.asarray(rows, dtype=np.int64)]
        starts = range(0, table.height, batch_size)

        def one(lo: int):
            part = table[lo : lo + batch_size]
            batch = self.read_spans(part["offset"].to_numpy(), part["n_points"].to_numpy(), columns,
                                    part["source_id"].to_list())
            return fn(part, batch)

        bar = progress_bar(len(starts), desc, "batch", show=progress)
        with ThreadPoolExecutor(max(1, n_jobs)) as pool:
            for result in in_order(lambda lo: pool.submit(one, lo), starts, 2 * max(1, n_jobs)):
                bar.update(1)
                yield result
        bar.close()

    def cone(self, ra: float, dec: float, radius_arcsec: float) -> pl.LazyFrame:
        """Ok sources within ``radius_arcsec`` of (``ra``, ``dec``) (deg, ICRS as the files give them).

        Exact on the sphere (poles, RA wrap at 0/360), pruned by the ``_healpix_29`` index
        (:mod:`etl.sky`). Returns the catalog rows plus ``separation_arcsec``, nearest first.

        Raises
        ------
        ValueError
            For a position off the sphere, a non-finite value or a radius <= 0.
        """
        ra, dec, radius = check_cone(ra, dec, radius_arcsec)
        if self._sky is None:
            self._sky = SkyIndex(self._ok[HEALPIX_COLUMN].fill_null(-1).to_numpy())
        rows = self._sky.candidates(cone_ranges(ra, dec, radius))
        found = self._ok[rows]
        sep = angular_separation(ra, dec, found["ra"].to_numpy(), found["dec"].to_numpy()) * 3600.0
        found = found.with_columns(pl.Series("separation_arcsec", sep))
        return found.filter(pl.col("separation_arcsec") <= radius).sort("separation_arcsec").lazy()

    def locate(self, source_ids: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """Offsets and lengths of the given sources.

        Raises
        ------
        SourceNotFoundError
            For an id that is not an ingested source.
        """
        index = self._lookup()
        try:
            rows = np.fromiter((index[s] for s in source_ids), dtype=np.int64)
        except KeyError as exc:
            raise SourceNotFoundError(exc.args[0], self.url) from None
        offsets = self._ok["offset"].to_numpy()
        lengths = self._ok["n_points"].to_numpy()
        return offsets[rows], lengths[rows]

    # -- points --------------------------------------------------------------------------
    def read(self, source_id: str, columns: Sequence[str] | None = None) -> LightCurve:
        """One light curve with every per-point column (or ``columns``) and its metadata."""
        batch = self.read_many([source_id], columns)
        row = self._ok.row(self._lookup()[source_id], named=True)
        return LightCurve(
            source_id=source_id,
            file=row["file"],
            flavour=row["flavour"],
            e_min=np.asarray(row["e_min"]),
            e_max=np.asarray(row["e_max"]),
            ra=row["ra"],
            dec=row["dec"],
            columns=batch[0],
            n_rows_file=row["n_rows_file"],
            mjdref=row["mjdref"] if row["mjdref"] is not None else float("nan"),
            timesys=row["timesys"] or "",
            pos_err=row["pos_err_arcsec"] if row.get("pos_err_arcsec") is not None else float("nan"),
        )

    def read_many(self, source_ids: Sequence[str], columns: Sequence[str] | None = None) -> LightCurveBatch:
        """Several light curves at once (vectorised, for training batches)."""
        ids = list(source_ids)
        starts, lengths = self.locate(ids)
        return self.read_spans(starts, lengths, columns, ids)

    def read_spans(
        self,
        starts: np.ndarray,
        lengths: np.ndarray,
        columns: Sequence[str] | None = None,
        source_ids: list[str] | None = None,
    ) -> LightCurveBatch:
        """Read point ranges ``[start, start + length)`` (catalog ``offset`` / ``n_points``).

        Parameters
        ----------
        starts, lengths : ndarray of int64, shape (N,)
        columns : sequence of str, optional
            Default: every per-point column.
        """
        names = list(columns) if columns is not None else list(self.arrays)
        unknown = [c for c in names if c not in POINT_COLUMNS]
        if unknown:
            raise ValueError(f"unknown column(s) {unknown}; known: {list(POINT_COLUMNS)}")
        starts = np.asarray(starts, dtype=np.int64)
        lengths = np.asarray(lengths, dtype=np.int64)
        offsets = np.zeros(len(starts) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        total = int(offsets[-1])
        size = self.chunk_points
        first = starts // size
        last = (starts + lengths - 1) // size
        out = {}
        for name in names:
            arr = self.arrays[name]
            dst = np.empty((total,) + arr.shape[1:], dtype=arr.dtype)
            for i in range(len(starts)):
                s, o, n = int(starts[i]), int(offsets[i]), int(lengths[i])
                c = int(first[i])
                if c == last[i]:  # the common case: one chunk holds the whole light curve
                    lo = s - c * size
                    dst[o : o + n] = self._chunk(name, c)[lo : lo + n]
                    continue
                pos = s
                while pos < s + n:
                    c = pos // size
                    stop = min(s + n, (c + 1) * size)
                    dst[o + pos - s : o + stop - s] = self._chunk(name, c)[pos - c * size : stop - c * size]
                    pos = stop
            out[name] = dst
        return LightCurveBatch(source_ids if source_ids is not None else [], lengths, offsets, out)

    def _chunk(self, name: str, c: int) -> np.ndarray:
        size = self.chunk_points
        arr = self.arrays[name]
        return self.cache.get((name, c), lambda: arr[c * size : min((c + 1) * size, arr.shape[0])])

    def __repr__(self) -> str:
        bands = ", ".join(f"{lo:g}-{hi:g}" for lo, hi in zip(self.e_min, self.e_max))
        return f"LightCurveStore({self.url!r}, sources={len(self)}, bands=[{bands}] keV)"


def open_store(path_or_url: str, cache_bytes: int = DEFAULT_CACHE_BYTES, storage_options: dict | None = None,
               catalog: str | None = None) -> LightCurveStore:
    """Open a light-curve store for reading.

    Parameters
    ----------
    path_or_url : str
        Local directory or fsspec URL (``s3://bucket/store``).
    cache_bytes : int
        Bound of the decoded-chunk cache (default 256 MiB).
    storage_options : dict, optional
        fsspec options (credentials, ``endpoint_url``...).
    catalog : str, optional
        Open the snapshot of this pinned catalog copy (:meth:`LightCurveStore.pin`) instead of
        the store's current catalog.

    Raises
    ------
    StoreError
        Missing or not a store; :class:`~etl.errors.SchemaVersionError` for another schema.
    """
    return LightCurveStore(str(path_or_url), cache_bytes, storage_options, catalog)
