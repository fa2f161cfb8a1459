"""The source catalog: one Parquet file per store, one row per discovered file.

The catalog is the store's manifest: a light curve is visible only once a catalog row
points at its points, and the catalog is replaced atomically (temporary file + rename, or a
single object PUT on object storage). A plain ``pl.scan_parquet(STORE + "/catalog.parquet")``
reads it.
"""

from __future__ import annotations

import io
import os
import uuid

import numpy as np
import polars as pl

from common.location import filesystem, join
from etl.errors import StoreError
from etl.lightcurve import STATUS_OK, STATUS_REJECTED, mean_rate_columns  # noqa: F401 - re-exported
from etl.naming import iau_name
from etl.sky import HEALPIX_COLUMN, healpix_29

CATALOG_FILE = "catalog.parquet"
#: The catalog rows of ingested light curves (``frame.filter(OK_ROWS)``).
OK_ROWS = pl.col("status") == STATUS_OK

#: Columns every catalog has, in order. ``mean_rate_b{i}`` (one per band) follow them.
CATALOG_SCHEMA: dict[str, pl.DataType] = {
    "source_id": pl.String,
    "status": pl.String,  # "ok" or "rejected"
    "reason": pl.String,  # "code: detail" for rejected rows, null for ok rows
    "file": pl.String,
    "flavour": pl.String,  # "rebinned" or "srctool"
    "object": pl.String,  # OBJECT keyword as found (DR1: the running number in the sky tile)
    "iau_name": pl.String,  # 1eRASS Jhhmmss.s+ddmmss of (ra, dec), truncated as the eRASS1 catalogue's names
    "error_convention": pl.String,  # where rate_errm/rate_errp came from (etl.reader.ERROR_CONVENTIONS)
    "n_err_fallback": pl.Int64,  # exposed values whose error fell back to a later source (RATE_ERR, Gehrels)
    "content_hash": pl.String,  # xxh3-128 of the file's bytes
    "file_size": pl.Int64,
    "file_mtime_ns": pl.Int64,  # the file's modification time when read (local files): with file_size, skips unchanged files
    "n_rows_file": pl.Int64,
    "n_points": pl.Int64,
    "offset": pl.Int64,  # first point in the store's flat arrays
    "e_min": pl.List(pl.Float64),
    "e_max": pl.List(pl.Float64),
    "ra": pl.Float64,
    "dec": pl.Float64,
    "pos_err_arcsec": pl.Float64,  # 1-sigma radial position error (POS_ERR keyword), null when the file has none
    "t_start": pl.Float64,  # s since mjdref (first bin start)
    "t_stop": pl.Float64,  # s since mjdref (last bin end)
    "mjdref": pl.Float64,  # MJD of time zero (MJDREF or MJDREFI + MJDREFF)
    "timesys": pl.String,  # time system of t_*/mjd_* (TIMESYS; eROSITA: TT)
    "mjd_start": pl.Float64,
    "mjd_stop": pl.Float64,
    "ingested_at": pl.Datetime("us", "UTC"),
    HEALPIX_COLUMN: pl.Int64,  # nested HEALPix order 29 of (ra, dec), the HATS spatial index (etl.sky)
}



def empty_catalog(n_bands: int = 0) -> pl.DataFrame:
    """A catalog with no rows and the full schema."""
    schema = dict(CATALOG_SCHEMA) | {c: pl.Float64 for c in mean_rate_columns(n_bands)}
    return pl.DataFrame(schema=schema)


def catalog_frame(rows: list[dict], n_bands: int) -> pl.DataFrame:
    """Build catalog rows with the catalog's schema (missing keys become nulls).

    Built column by column (polars builds a column from one list much faster than a frame
    from many dicts; this runs once per batch of files in the ingest's main process).
    """
    schema = empty_catalog(n_bands).schema
    lists = [name for name, dtype in schema.items() if isinstance(dtype, pl.List)]
    frame = pl.DataFrame({name: [row.get(name) for row in rows] for name in schema if name not in lists},
                         schema={k: v for k, v in schema.items() if k not in lists})
    frame = frame.with_columns(_list_column(name, [row.get(name) for row in rows]) for name in lists)
    return with_sky_index(frame).select(list(schema))


def with_sky_index(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with ``_healpix_29`` computed from ``ra``/``dec`` (null where a position is unusable)."""
    pix = healpix_29(frame["ra"].cast(pl.Float64).fill_null(np.nan).to_numpy(), frame["dec"].cast(pl.Float64).fill_null(np.nan).to_numpy())
    return frame.with_columns(pl.Series(HEALPIX_COLUMN, pix, pl.Int64).replace(-1, None))


def _list_column(name: str, values: list) -> pl.Series:
    """A List(Float64) column from per-row lists (band edges): one 2-D array when all rows have
    the same length, which polars takes ~20x faster than a list of lists."""
    present = [v for v in values if v is not None]
    if present and len({len(v) for v in present}) == 1 and len(present[0]):
        width = len(present[0])
        dense = np.array([v if v is not None else [np.nan] * width for v in values], dtype="f8")
        series = pl.Series(name, dense).cast(pl.List(pl.Float64))
        missing = pl.Series([v is None for v in values])
        return series.zip_with(~missing, pl.Series(name, [None] * len(values), dtype=pl.List(pl.Float64)))
    return pl.Series(name, values, dtype=pl.List(pl.Float64))


def catalog_url(store_url: str) -> str:
    """Where a store's catalog lives."""
    return join(store_url, CATALOG_FILE)


def read_catalog(store_url: str, storage_options: dict | None = None, path: str | None = None) -> pl.DataFrame | None:
    """The committed catalog, or None when the store has none yet.

    Columns added by later schema versions are added as nulls to older catalogs, so every
    catalog reads with the current columns. ``path``: read this copy of a catalog instead (a
    snapshot pinned by :meth:`etl.store.LightCurveStore.pin`).
    """
    fs, path, _ = filesystem(path or catalog_url(store_url), storage_options)
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as fh:
        cat = pl.read_parquet(fh)
    missing = {k: v for k, v in CATALOG_SCHEMA.items() if k not in cat.columns}
    if missing:
        cat = cat.with_columns(pl.lit(None, dtype=v).alias(k) for k, v in missing.items())
    if HEALPIX_COLUMN in missing:  # a catalog from before the sky index: computed on open, written by the next commit
        cat = with_sky_index(cat)
    if "iau_name" in missing:  # likewise the name from the position (schema 3)
        names = iau_name(cat["ra"].cast(pl.Float64).fill_null(np.nan).to_numpy(), cat["dec"].cast(pl.Float64).fill_null(np.nan).to_numpy())
        cat = cat.with_columns(pl.Series("iau_name", names, pl.String).replace("", None))
    return cat


def write_catalog(store_url: str, catalog: pl.DataFrame, storage_options: dict | None = None) -> None:
    """Replace the catalog atomically: readers see the old or the new one, never a mix.

    Raises
    ------
    StoreError
        When the file system refuses the write (disk full...); the old catalog stays.
    """
    try:
        _write_catalog(store_url, catalog, storage_options)
    except OSError as exc:
        raise StoreError(store_url, f"cannot write the catalog ({exc.strerror or exc}); the last committed catalog "
                                    "is intact, free space and re-run to finish") from None


def _write_catalog(store_url: str, catalog: pl.DataFrame, storage_options: dict | None) -> None:
    buffer = io.BytesIO()
    catalog.write_parquet(buffer, compression="zstd", statistics=True)
    data = buffer.getvalue()
    fs, path, local = filesystem(catalog_url(store_url), storage_options)
    if local:
        tmp = f"{path}.{uuid.uuid4().hex}.partial"
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    else:
        fs.pipe_file(path, data)  # one PUT: object stores make it visible atomically
