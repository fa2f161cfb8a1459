"""Versioned feature sets stored beside a light-curve store, keyed by source id.

Layout (``STORE`` is the store's path or URL)::

    STORE/features/<name>/v0001/data.parquet   source_id + feature columns
    STORE/features/<name>/v0001/meta.json      name, version, created, rows, columns, lineage

``meta.json`` names its data file relative to its own folder (``"path": "data.parquet"``), and
readers resolve it against the store's URL as opened, so a store can be read from any
working directory, moved, copied or served from object storage.

A set's *lineage* says what it was computed from: the store's snapshot
(:meth:`etl.store.LightCurveStore.snapshot_hash`: every ok row's source id, content hash and
location) for the classical set; the checkpoint file, its content hash and its training config
too for model-derived sets. Building a set whose lineage equals an existing version's reuses
that version; anything else makes a new version and the old ones stay readable (``name@1``).

**Concurrency.** A version is written whole into a side folder and renamed into place as
``vNNNN``; the rename fails when another writer took that number first, and the version is
renamed to the next free number instead. So a reader never sees a half-written version, two
writers never share a number, and no write is lost (object stores have no directory rename:
there the data file goes first and ``meta.json`` last, and two writers at the same moment can
still collide). Feature *builds* also take the store's feature-build lock (:func:`build_lock`),
so the expensive work is not done twice at once.

Sets that are not Parquet versions but read live from elsewhere (the experts' ``labels``, read
from their log) register a reader with :func:`register_dynamic_set`.
"""

from __future__ import annotations

import datetime as dt
import errno
import importlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import fsspec
import polars as pl
import xxhash

from common.errors import UserError
from common.location import filesystem, is_url
from etl.catalog import OK_ROWS
from etl.lock import FEATURES_LOCK_FILE, StoreLock
from etl.store import LightCurveStore, open_store

FEATURES_DIR = "features"
DATA_FILE = "data.parquet"
META_FILE = "meta.json"
#: name -> reader(store) returning (meta, LazyFrame): sets read live instead of from versions
_DYNAMIC: dict[str, Callable] = {}
#: name -> the module that registers it when imported (imported when the set is first asked for)
_DYNAMIC_MODULES = {"labels": "features.labels"}


class FeatureSetError(UserError, LookupError):
    """A feature set (or version) does not exist, or a query names an unknown one."""


class FeatureDataError(UserError, ValueError):
    """A frame cannot be stored as a feature set (no unique ``source_id`` column)."""


def register_dynamic_set(name: str, reader: Callable) -> None:
    """Make ``get_feature_set(store, name)`` return ``reader(store)``: ``(meta, LazyFrame)`` read live."""
    _DYNAMIC[name] = reader


def build_lock(store: LightCurveStore, wait: float = math.inf, on_wait=None) -> StoreLock:
    """The store's feature-build lock (re-entrant in one process): one build at a time, CLI and flows alike."""
    return StoreLock(store.url, store.storage_options, name=FEATURES_LOCK_FILE, purpose="feature build", wait=wait,
                     reentrant=True, on_wait=on_wait)


def _root(store: LightCurveStore) -> str:
    return store.url.rstrip("/") + "/" + FEATURES_DIR


def _fs(store: LightCurveStore, path: str):
    fs, local_path, _ = filesystem(path, store.storage_options)
    return fs, local_path


def as_store(store: LightCurveStore | str | os.PathLike) -> LightCurveStore:
    return store if isinstance(store, LightCurveStore) else open_store(os.fspath(store))


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
        if entry.rstrip("/").rsplit("/", 1)[-1].startswith("."):
            continue  # a side folder being written
        meta_path = f"{entry}/{META_FILE}"
        if fs.exists(meta_path):
            try:
                with fs.open(meta_path, "r") as fh:
                    meta = json.load(fh)
            except ValueError:  # a version torn by a writer from before side folders
                continue
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
        raise FeatureDataError(f"feature set {name!r} needs a unique source_id column")
    existing = find_version(store, name, lineage)
    if existing is not None:
        return existing, False
    meta = {"name": name, "version": 0, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "rows": frame.height, "columns": [c for c in frame.columns if c != "source_id"], "lineage": lineage,
            "path": DATA_FILE}
    if metrics is not None:
        meta["metrics"] = metrics
    base = f"{_root(store)}/{name}"
    if is_url(base):
        return _write_remote(store, base, frame, meta), True
    return _write_local(Path(base), frame, meta), True


def _next_version(base: Path) -> int:
    """One past the highest ``vNNNN`` folder (with or without a meta.json: a number is never reused)."""
    numbers = [int(p.name[1:]) for p in base.glob("v[0-9][0-9][0-9][0-9]*") if p.name[1:].isdigit()]
    return max(numbers, default=0) + 1


def _write_local(base: Path, frame: pl.DataFrame, meta: dict) -> dict:
    """Write into a side folder, then rename it to the first free ``vNNNN``: never half visible, never shared."""
    base.mkdir(parents=True, exist_ok=True)
    side = base / f".v-partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    side.mkdir()
    try:
        frame.sort("source_id").write_parquet(side / DATA_FILE, compression="zstd")
        version = _next_version(base)
        while True:
            meta["version"] = version
            (side / META_FILE).write_text(json.dumps(meta, indent=2))
            try:
                os.rename(side, base / f"v{version:04d}")  # fails when the target exists and is not empty
                return meta
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                version = max(version + 1, _next_version(base))
    finally:
        shutil.rmtree(side, ignore_errors=True)


def _write_remote(store: LightCurveStore, base: str, frame: pl.DataFrame, meta: dict) -> dict:
    """Object stores: data first, meta.json last (a version without it is invisible and overwritten)."""
    meta["version"] = max((m["version"] for m in _versions(store, meta["name"])), default=0) + 1
    fs, path = _fs(store, f"{base}/v{meta['version']:04d}")
    fs.makedirs(path, exist_ok=True)
    with fs.open(f"{path}/{DATA_FILE}", "wb") as fh:
        frame.sort("source_id").write_parquet(fh, compression="zstd")
    with fs.open(f"{path}/{META_FILE}", "w") as fh:
        json.dump(meta, fh, indent=2)
    return meta


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

    A set registered with :func:`register_dynamic_set` (the experts' ``labels``) is read live.
    """
    store = as_store(store)
    name, _, version = spec.partition("@")
    if name in _DYNAMIC_MODULES and name not in _DYNAMIC:
        importlib.import_module(_DYNAMIC_MODULES[name])
    if name in _DYNAMIC:
        return _DYNAMIC[name](store)
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
    frame = store.catalog().filter(OK_ROWS)
    if catalog_columns is not None:
        frame = frame.select(["source_id", *[c for c in catalog_columns if c != "source_id"]])
    if sources is not None:
        frame = frame.filter(pl.col("source_id").is_in(list(sources)))
    for spec in names:
        _, data = get_feature_set(store, spec)
        frame = frame.join(data, on="source_id", how="left", suffix=f"_{spec.partition('@')[0]}")
    return frame
