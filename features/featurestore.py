"""Versioned feature sets stored beside a light-curve store, keyed by source id.

Layout (``STORE`` is the store's path or URL)::

    STORE/features/<name>/v0001/data.parquet   source_id + feature columns
    STORE/features/<name>/v0001/meta.json      name, version, created, rows, columns, lineage

``meta.json`` names its data file relative to its own folder (``"path": "data.parquet"``), and
readers resolve it against the store's URL as opened, so a store can be read from any
working directory, moved, copied or served from object storage.

A set's *lineage* says what it was computed from: the catalog snapshot (a hash of every ok
row's source id, content hash and location) for the classical set; the checkpoint file, its
content hash and its training config too for model-derived sets. Building a set whose lineage
equals an existing version's reuses that version; anything else makes a new version and the
old ones stay readable (``name@1``).
"""

from __future__ import annotations

import datetime as dt
import json
import os

import fsspec
import polars as pl
import xxhash

from etl.location import filesystem
from etl.store import LightCurveStore, open_store
from features.labels import LABELS_SET, labels_feature_set

FEATURES_DIR = "features"
DATA_FILE = "data.parquet"


class FeatureSetError(LookupError):
    """A feature set (or version) does not exist, or a query names an unknown one."""


def _root(store: LightCurveStore) -> str:
    return store.url.rstrip("/") + "/" + FEATURES_DIR


def _fs(store: LightCurveStore, path: str):
    fs, local_path, _ = filesystem(path, store.storage_options)
    return fs, local_path


def as_store(store: LightCurveStore | str | os.PathLike) -> LightCurveStore:
    return store if isinstance(store, LightCurveStore) else open_store(os.fspath(store))


def catalog_hash(store: LightCurveStore) -> str:
    """Hash of the store's ok rows (id, file content hash, location): the data a set saw."""
    ok = store.catalog().filter(pl.col("status") == "ok").select("source_id", "content_hash", "offset", "n_points").sort("source_id").collect()
    h = xxhash.xxh3_128()
    for col in ok.columns:
        h.update(ok[col].cast(pl.String).str.join("\n").item().encode())
    return h.hexdigest()


def file_hash(path: str) -> str:
    """xxh3-128 of a file's bytes (checkpoints)."""
    h = xxhash.xxh3_128()
    with fsspec.open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _versions(store: LightCurveStore, name: str) -> list[dict]:
    base = f"{_root(store)}/{name}"
    fs, path = _fs(store, base)
    if not fs.isdir(path):
        return []
    metas = []
    for entry in sorted(fs.ls(path, detail=False)):
        meta_path = f"{entry}/meta.json"
        if fs.exists(meta_path):
            with fs.open(meta_path, "r") as fh:
                meta = json.load(fh)
            # the data file sits beside meta.json; older sets stored a path relative to the
            # working directory of their build, which is ignored
            meta["path"] = f"{base}/v{int(meta['version']):04d}/{DATA_FILE}"
            metas.append(meta)
    return sorted(metas, key=lambda m: m["version"])


def find_version(store: LightCurveStore, name: str, lineage: dict) -> dict | None:
    """The existing version of ``name`` built from exactly ``lineage``, if any."""
    for meta in _versions(store, name):
        if meta["lineage"] == lineage:
            return meta
    return None


def write_feature_set(store: LightCurveStore | str, name: str, frame: pl.DataFrame, lineage: dict,
                      metrics: dict | None = None) -> tuple[dict, bool]:
    """Store ``frame`` as a new version of ``name`` unless one with this lineage exists.

    ``metrics`` (optional) are figures about the set kept in its ``meta.json`` (e.g. a
    cross-match's spurious-match rate); unlike the lineage they do not decide reuse.

    Returns
    -------
    (meta, created) : (dict, bool)
        ``created`` is False when an existing version was reused.
    """
    store = as_store(store)
    if "source_id" not in frame.columns or not frame["source_id"].is_unique().all():
        raise ValueError(f"feature set {name!r} needs a unique source_id column")
    existing = find_version(store, name, lineage)
    if existing is not None:
        return existing, False
    version = max((m["version"] for m in _versions(store, name)), default=0) + 1
    directory = f"{_root(store)}/{name}/v{version:04d}"
    fs, path = _fs(store, directory)
    fs.makedirs(path, exist_ok=True)
    with fs.open(f"{path}/{DATA_FILE}", "wb") as fh:
        frame.sort("source_id").write_parquet(fh, compression="zstd")
    meta = {"name": name, "version": version, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "rows": frame.height, "columns": [c for c in frame.columns if c != "source_id"], "lineage": lineage,
            "path": DATA_FILE}
    if metrics is not None:
        meta["metrics"] = metrics
    # meta.json last: a version without it (a killed build) is invisible and gets overwritten.
    with fs.open(f"{path}/meta.json", "w") as fh:
        json.dump(meta, fh, indent=2)
    return meta, True


def list_feature_sets(store: LightCurveStore | str) -> pl.DataFrame:
    """Every version of every feature set: name, version, created, rows, columns, lineage."""
    store = as_store(store)
    fs, path = _fs(store, _root(store))
    rows = []
    if fs.isdir(path):
        for entry in sorted(fs.ls(path, detail=False)):
            for meta in _versions(store, entry.rstrip("/").split("/")[-1]):
                rows.append({"name": meta["name"], "version": meta["version"], "created": meta["created"],
                             "rows": meta["rows"], "n_columns": len(meta["columns"]), "lineage": json.dumps(meta["lineage"])})
    schema = {"name": pl.String, "version": pl.Int64, "created": pl.String, "rows": pl.Int64, "n_columns": pl.Int64, "lineage": pl.String}
    return pl.DataFrame(rows, schema=schema)


def get_feature_set(store: LightCurveStore | str, spec: str) -> tuple[dict, pl.LazyFrame]:
    """``"name"`` (latest version) or ``"name@3"``: its meta and a LazyFrame of its data.

    ``"labels"`` is the experts' labels (:mod:`features.labels`), read from their log each time.
    """
    store = as_store(store)
    name, _, version = spec.partition("@")
    if name == LABELS_SET:
        return labels_feature_set(store)
    versions = _versions(store, name)
    if not versions:
        known = sorted(set(list_feature_sets(store)["name"].to_list()))
        raise FeatureSetError(f"{store.url}: no feature set {name!r} (known: {', '.join(known) or 'none'})")
    if version:
        matches = [m for m in versions if m["version"] == int(version)]
        if not matches:
            raise FeatureSetError(f"{store.url}: feature set {name!r} has no version {version} (has {[m['version'] for m in versions]})")
        meta = matches[0]
    else:
        meta = versions[-1]
    return meta, pl.scan_parquet(meta["path"], storage_options=store.storage_options or None)


def get_features(store: LightCurveStore | str, names: list[str], sources: list[str] | None = None,
                 catalog_columns: list[str] | None = None) -> pl.LazyFrame:
    """One LazyFrame: the catalog's ok sources left-joined with each named feature set.

    Parameters
    ----------
    store : LightCurveStore or path
    names : list of str
        Feature sets, ``"name"`` for the latest version or ``"name@N"``.
    sources : list of str, optional
        Restrict to these source ids.
    catalog_columns : list of str, optional
        Catalog columns to keep (default: all).
    """
    store = as_store(store)
    frame = store.catalog().filter(pl.col("status") == "ok")
    if catalog_columns is not None:
        frame = frame.select(["source_id", *[c for c in catalog_columns if c != "source_id"]])
    if sources is not None:
        frame = frame.filter(pl.col("source_id").is_in(list(sources)))
    for spec in names:
        _, data = get_feature_set(store, spec)
        frame = frame.join(data, on="source_id", how="left", suffix=f"_{spec.partition('@')[0]}")
    return frame
