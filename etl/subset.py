"""Stores derived from another store: some of its sources as they are (a training sample), or light
curves computed from them (the null model's simulated constant sources).

A derived store is a regular store (Zarr arrays and a catalog), written through the ingest's own
:class:`etl.ingestor.Ingestor`, so every reader, statistic and model works on it unchanged. Its
light curves lie back to back in the order of ``picks``: a sample scattered over a million
sources becomes a compact store that a training epoch reads from a few chunks.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from common.lifeline import pid_alive
from common.location import filesystem, is_url, join
from etl.ingestor import Ingestor
from etl.lightcurve import FRACEXP_MIN, POINT_COLUMNS
from etl.store import LightCurveBatch, LightCurveStore

#: Catalog columns a derived light curve keeps from its source (the rest come from its points).
KEPT = ("source_id", "file", "object", "iau_name", "flavour", "error_convention", "n_err_fallback", "content_hash", "file_size",
        "file_mtime_ns", "n_rows_file", "e_min", "e_max", "ra", "dec", "pos_err_arcsec", "t_start", "t_stop", "mjdref",
        "timesys", "mjd_start", "mjd_stop")


def derive_store(store: LightCurveStore, picks: np.ndarray, target: str,
                 columns_of: Callable[[LightCurveBatch], dict[str, np.ndarray]] | None = None,
                 rows_of: Callable[[pl.DataFrame, np.ndarray, int], list[dict]] | None = None,
                 batch_size: int = 2048, progress: bool = False, desc: str = "derived store",
                 storage_options: dict | None = None) -> None:
    """Write the light curves of ok sources ``picks`` of ``store`` (positions in store order) as a new store at ``target``.

    Parameters
    ----------
    picks : ndarray of int
        Positions in :meth:`LightCurveStore.ok_sources` (repeats allowed when ``rows_of`` makes ids unique).
    columns_of : callable, optional
        ``columns_of(batch) -> columns``: the points to store for a batch of picked light curves
        (every column of :data:`etl.lightcurve.POINT_COLUMNS`); default the batch's own. Called
        in pick order on one thread (a seeded generator in it draws reproducibly).
    rows_of : callable, optional
        ``rows_of(sources, lengths, done) -> rows``: catalog rows of a batch (``sources`` are the
        picked catalog rows, ``done`` the light curves written before); default the sources' own
        rows (:data:`KEPT` columns).
    storage_options : dict, optional
        fsspec options of ``target`` (default the source store's).
    """
    columns_of = columns_of or (lambda batch: batch.columns)
    rows_of = rows_of or (lambda sources, lengths, done: sources.select([c for c in KEPT if c in sources.columns])
                          .to_dicts())
    ingestor = Ingestor(target, fracexp_min=float(store.attrs.get("fracexp_min", FRACEXP_MIN)),
                        storage_options=storage_options or store.storage_options or None, flush_seconds=1e9,
                        binning=store.attrs.get("binning", "none"))
    done = 0
    for sources, lengths, columns in store.map_batches(lambda s, b: (s, b.lengths, columns_of(b)), tuple(POINT_COLUMNS),
                                                       batch_size, rows=picks, progress=progress, desc=desc):
        rows = rows_of(sources, lengths, done)
        ingestor.add_lightcurves(rows, columns, lengths)
        done += len(rows)
    ingestor.commit()


def sample_positions(store: LightCurveStore, n: int, seed: int) -> np.ndarray:
    """``n`` ok sources drawn without replacement by ``seed`` (all when the store has fewer), in store order."""
    total = len(store)
    if n >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, n, replace=False))


#: The file a derived store is complete with (written last).
COMPLETE = "complete"


def build_once(url: str, build: Callable[[str], None], note: str, storage_options: dict | None = None) -> bool:
    """Make the derived store at ``url`` with ``build(target)`` unless a complete one is there; True when built.

    Local: built in a side folder ``URL.partial-PID-XXXX``, marked complete, renamed into place, so
    a reader never sees half of one and a killed build leaves only its side folder, removed by the
    next build (its process is gone). Object storage has no renames: the store is written in place
    and is complete once its marker object exists; a build without the marker is removed and
    redone (callers hold the store's feature-build lock, so no other build writes there).
    """
    if is_url(url):
        fs, path, _ = filesystem(url, storage_options)
        marker = join(path, COMPLETE)
        if fs.exists(marker):
            return False
        if fs.exists(path):
            fs.rm(path, recursive=True)
        build(url)
        with fs.open(marker, "wb") as fh:
            fh.write((note + "\n").encode())
        return True
    root = Path(url)
    _remove_dead_side_folders(root)
    if (root / COMPLETE).exists():
        return False
    if root.exists():
        shutil.rmtree(root)  # a build from before side folders, interrupted: no marker
    side = root.with_name(f"{root.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    root.parent.mkdir(parents=True, exist_ok=True)
    try:
        build(str(side))
        (side / COMPLETE).write_text(note + "\n")
        try:
            os.rename(side, root)
        except OSError:  # another build put it in place first (same key: the same store)
            if not (root / COMPLETE).exists():
                raise
    finally:
        shutil.rmtree(side, ignore_errors=True)
    return True


def _remove_dead_side_folders(root: Path) -> None:
    """Side folders of builds whose process is gone (killed mid-build)."""
    for entry in root.parent.glob(f"{root.name}.partial-*-*") if root.parent.is_dir() else ():
        pid = entry.name.rsplit(".partial-", 1)[1].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def build_sample(store: str, n: int, seed: int, target: str, progress: bool = False) -> tuple[int, bool]:
    """A store at ``target`` holding the light curves of ``n`` ok sources of ``store`` drawn by ``seed``
    (:func:`sample_positions`), built once (:func:`build_once`); the number drawn and whether it was built now."""
    from etl.store import open_store

    opened = open_store(store)
    picks = sample_positions(opened, n, seed)
    built = build_once(target, lambda out: derive_store(opened, picks, out, progress=progress, desc="training sample"),
                       f"{len(picks)} sources of {store}, seed {seed}")
    return len(picks), built
