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

import fsspec
import polars as pl

CATALOG_FILE = "catalog.parquet"

#: Columns every catalog has, in order. ``mean_rate_b{i}`` (one per band) follow them.
CATALOG_SCHEMA: dict[str, pl.DataType] = {
    "source_id": pl.String,
    "status": pl.String,  # "ok" or "rejected"
    "reason": pl.String,  # "code: detail" for rejected rows, null for ok rows
    "file": pl.String,
    "flavour": pl.String,  # "rebinned" or "srctool"
    "object": pl.String,  # OBJECT keyword as found (source_id differs for duplicates)
    "content_hash": pl.String,  # xxh3-128 of the file's bytes
    "file_size": pl.Int64,
    "n_rows_file": pl.Int64,
    "n_points": pl.Int64,
    "offset": pl.Int64,  # first point in the store's flat arrays
    "e_min": pl.List(pl.Float64),
    "e_max": pl.List(pl.Float64),
    "ra": pl.Float64,
    "dec": pl.Float64,
    "t_start": pl.Float64,
    "t_stop": pl.Float64,
    "ingested_at": pl.Datetime("us", "UTC"),
}

STATUS_OK = "ok"
STATUS_REJECTED = "rejected"


def mean_rate_columns(n_bands: int) -> list[str]:
    """Names of the per-band mean-rate columns: ``mean_rate_b1`` ... ``mean_rate_b{n}``."""
    return [f"mean_rate_b{i}" for i in range(1, n_bands + 1)]


def empty_catalog(n_bands: int = 0) -> pl.DataFrame:
    """A catalog with no rows and the full schema."""
    schema = dict(CATALOG_SCHEMA) | {c: pl.Float64 for c in mean_rate_columns(n_bands)}
    return pl.DataFrame(schema=schema)


def catalog_frame(rows: list[dict], n_bands: int) -> pl.DataFrame:
    """Build catalog rows with the catalog's schema (missing keys become nulls)."""
    schema = empty_catalog(n_bands).schema
    return pl.DataFrame(rows, schema=schema)


def catalog_url(store_url: str) -> str:
    """Where a store's catalog lives."""
    return store_url.rstrip("/") + "/" + CATALOG_FILE


def read_catalog(store_url: str, storage_options: dict | None = None) -> pl.DataFrame | None:
    """The committed catalog, or None when the store has none yet."""
    fs, path = fsspec.core.url_to_fs(catalog_url(store_url), **(storage_options or {}))
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as fh:
        return pl.read_parquet(fh)


def write_catalog(store_url: str, catalog: pl.DataFrame, storage_options: dict | None = None) -> None:
    """Replace the catalog atomically: readers see the old or the new one, never a mix."""
    buffer = io.BytesIO()
    catalog.write_parquet(buffer, compression="zstd", statistics=True)
    data = buffer.getvalue()
    fs, path = fsspec.core.url_to_fs(catalog_url(store_url), **(storage_options or {}))
    if fs.protocol in ("file", ("file", "local")) or "file" in fs.protocol:
        tmp = f"{path}.{uuid.uuid4().hex}.partial"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    else:
        fs.pipe_file(path, data)  # one PUT: object stores make it visible atomically
