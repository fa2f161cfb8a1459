"""Write side of the store: create the Zarr group, append points, never touch committed data.

Append-only shards: every commit starts writing at the first *shard* boundary at or after the
committed end (the largest ``offset + n_points`` of the catalog's ok rows), so a shard that
holds committed points is never written again. Readers therefore never see a shard change
under them (zarr reads a shard's index and its chunks with separate reads; a shard replaced
between the two once made concurrent readers fail to decompress), and a writer killed at any
moment cannot damage committed points. The gap a commit leaves at the end of a shard costs no
disk: chunks that were never written are not stored and read back as the fill value. What
lies past the committed end is invisible until the catalog that points at it is committed,
and the next ingest simply writes over it (zarr writes each shard to a temporary file and
renames it; object stores PUT whole objects).

Shape legend: P = points, B = bands.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from common.location import is_url, resolve
from etl import __version__
from etl.errors import StoreError
from etl.lightcurve import CHUNK_POINTS, POINT_COLUMNS, POINT_DESCRIPTIONS, POINT_UNITS, SHARD_POINTS  # noqa: F401
from etl.naming import DEFAULT_ID_SCHEME
from etl.store import BAND_ARRAYS, POINTS_GROUP, READABLE_VERSIONS, SCHEMA_VERSION


class StoreWriter:
    """Appends light-curve points to a store; the caller commits the catalog afterwards.

    Parameters
    ----------
    url : str
        Local path or fsspec URL; the group is created when missing.
    fracexp_min : float
        Fractional-exposure cut of the ingest; a store keeps one (re-ingesting with another
        would mix light curves cut differently).
    storage_options : dict, optional
        fsspec options for URLs.
    chunk_points : int
        Points per chunk of a new store (shards hold 16 chunks); an existing store keeps its own.
    """

    def __init__(self, url: str, fracexp_min: float, storage_options: dict | None = None, chunk_points: int = CHUNK_POINTS,
                 binning: str = "none"):
        self.url = url = resolve(url)
        self.storage_options = storage_options or {}
        opts = self.storage_options or None if is_url(url) else None
        if not is_url(url):
            Path(url).mkdir(parents=True, exist_ok=True)
            _remove_partials(Path(url))
        self.group = zarr.open_group(store=url, mode="a", storage_options=opts)
        attrs = dict(self.group.attrs)
        if not attrs:
            attrs = {
                "schema_version": SCHEMA_VERSION,
                "builder": f"etl {__version__}",
                "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "fracexp_min": float(fracexp_min),
                "binning": binning,
                "id_scheme": DEFAULT_ID_SCHEME,
                "chunk_points": int(chunk_points),
                "shard_points": 16 * int(chunk_points),
                "bands": None,
            }
            self.group.attrs.update(attrs)
        elif int(attrs.get("schema_version", -1)) not in READABLE_VERSIONS:
            raise StoreError(url, f"store has schema version {attrs.get('schema_version')}, this code writes {SCHEMA_VERSION}")
        elif not abs(float(attrs["fracexp_min"]) - float(fracexp_min)) <= 1e-12:
            raise StoreError(url, f"store was built with fracexp_min={attrs['fracexp_min']}, not {fracexp_min}; use a new store")
        elif attrs.get("binning", "none") != binning:
            raise StoreError(url, f"store holds light curves binned '{attrs.get('binning', 'none')}', not '{binning}' "
                                  "(a store holds one binning); use a new store or --bin " + attrs.get("binning", "none"))
        self.attrs = attrs
        self.arrays: dict[str, zarr.Array] = {}
        if POINTS_GROUP in self.group:
            points = self.group[POINTS_GROUP]
            self.arrays = {name: points[name] for name in POINT_COLUMNS}
        if int(attrs["schema_version"]) < SCHEMA_VERSION:
            self._upgrade()

    def _upgrade(self) -> None:
        """Versions 1 and 2 -> 3: units and band coordinate arrays (from 1), the binning and id scheme
        attributes (points and catalog rows stay as they are: such a store keeps making ids from
        OBJECT, so that nothing committed changes and a changed file keeps its id)."""
        for name, arr in self.arrays.items():
            extra = {"units": POINT_UNITS[name], "long_name": POINT_DESCRIPTIONS[name]}
            if arr.ndim == 2:
                extra["coordinates"] = " ".join(BAND_ARRAYS)
            arr.attrs.update(extra)
        if self.bands is not None:
            self._write_band_arrays(self.attrs["bands"])
        extra = {"binning": self.attrs.get("binning", "none"), "id_scheme": self.attrs.get("id_scheme", "object"),
                 "schema_version": SCHEMA_VERSION}
        self.group.attrs.update(extra)
        self.attrs.update(extra)

    def _write_band_arrays(self, bands: dict) -> None:
        points = self.group.require_group(POINTS_GROUP)
        for name in BAND_ARRAYS:
            values = np.asarray(bands[name], dtype="f8")
            edge = points.create_array(name, shape=values.shape, dtype="f8", dimension_names=("band",), overwrite=True,
                                       attributes={"units": "keV", "long_name": f"band {'lower' if name == 'e_min' else 'upper'} edge"})
            edge[:] = values

    def append_start(self, end: int) -> int:
        """Where the next commit writes: the first shard boundary at or after ``end``."""
        shard = int(self.attrs["shard_points"])
        return -(-int(end) // shard) * shard

    @property
    def bands(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The store's band edges (e_min, e_max), or None before the first light curve."""
        bands = self.attrs.get("bands")
        if not bands:
            return None
        return np.asarray(bands["e_min"]), np.asarray(bands["e_max"])

    def set_bands(self, e_min: np.ndarray, e_max: np.ndarray) -> None:
        """Fix the store's band system and create its point arrays (first ok light curve)."""
        if self.bands is not None:
            raise StoreError(self.url, "band edges are already set")
        bands = {"e_min": [float(x) for x in e_min], "e_max": [float(x) for x in e_max]}
        n_bands = len(bands["e_min"])
        points = self.group.require_group(POINTS_GROUP)
        compressor = BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")
        chunk, shard = int(self.attrs["chunk_points"]), int(self.attrs["shard_points"])
        for name, (dtype, banded) in POINT_COLUMNS.items():
            shape = (0, n_bands) if banded else (0,)
            attributes = {"units": POINT_UNITS[name], "long_name": POINT_DESCRIPTIONS[name]}
            if banded:  # CF: the band edges are coordinates of every banded array
                attributes["coordinates"] = " ".join(BAND_ARRAYS)
            self.arrays[name] = points.create_array(
                name,
                shape=shape,
                chunks=(chunk, n_bands) if banded else (chunk,),
                shards=(shard, n_bands) if banded else (shard,),
                dtype=dtype,
                fill_value=np.nan,
                compressors=compressor,
                dimension_names=("point", "band") if banded else ("point",),
                attributes=attributes,
                overwrite=True,
            )
        self._write_band_arrays(bands)
        # Attributes last: a store with bands set always has its arrays.
        self.group.attrs["bands"] = bands
        self.attrs["bands"] = bands

    def write(self, start: int, columns: dict[str, np.ndarray]) -> int:
        """Write points ``[start, start + P)`` of every column; returns the new end.

        Parameters
        ----------
        start : int
            The committed end (nothing visible lies at or after it).
        columns : dict of str to ndarray
            Every column of :data:`POINT_COLUMNS`, shape (P,) or (P, B).

        Raises
        ------
        StoreError
            When the file system refuses the write (disk full, quota, read-only): nothing
            committed is touched, and the message says so.
        """
        n = len(columns["time"])
        end = start + n
        if n == 0:
            return end
        try:
            for name, arr in self.arrays.items():
                if arr.shape[0] < end:
                    arr.resize((end,) + arr.shape[1:])
                arr[start:end] = columns[name]
        except OSError as exc:
            raise StoreError(self.url, f"cannot write points ({exc.strerror or exc}); nothing committed was lost, "
                                       "free space and re-run to finish") from None
        return end


def _remove_partials(root: Path) -> None:
    """Delete temporary files a killed writer left (zarr's and the catalog's ``*.partial``)."""
    for path in root.rglob("*.partial"):
        path.unlink(missing_ok=True)
