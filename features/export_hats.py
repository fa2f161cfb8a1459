"""Export a store's ok sources as a HATS catalog that LSDB opens.

    python -m features.export_hats STORE OUT [--feature-sets variability poisson_variability ...] [--lightcurves]
                                        [--name erosita_lc] [--update | --overwrite]

Written with lsdb/hats themselves (``lsdb.from_dataframe(...).write_catalog(OUT)``): HEALPix-partitioned
Parquet with the HATS metadata and a 5-arcsec margin catalog, so ``lsdb.open_catalog(OUT)`` gives
cone searches, cross-matches against other HATS catalogs (Gaia, ZTF, ...) and Dask scale-out.
Columns: the catalog's (minus the store-internal ``offset``, ``e_min``/``e_max`` as lists stay),
each chosen feature set joined on ``source_id``, and with ``--lightcurves`` a nested column ``lc``
(nested-pandas) holding each source's points: ``time`` (s since ``mjdref``), ``timedel``, and per
band ``rate_b{k}``, ``rate_errm_b{k}``, ``rate_errp_b{k}``, ``counts_b{k}``, ``fracexp_b{k}``.

**Keeping it current.** The export records what it was made from in ``OUT/erosita_export.json``
(the store's ok rows by id, file hash and location; each feature set's version; the options).
``--update`` re-exports only when that changed, with the recorded options unless new ones are
given, and otherwise says it is up to date in well under a second. When it did change, the
catalog is written whole: a calibrated feature set (``variable_fpp``, ``anomaly_fpp``...) is
rebuilt against the grown archive, so the rows of *unchanged* sources change too, and appending
the new sources' partitions would leave stale values beside fresh ones. Either way the new export
is written beside OUT and swapped in by two renames, so OUT is the old export or the new one,
never half of each, even after a kill -9. The next run tidies up after a killed one: its
leftover ``.OUT.partial-*`` / ``.OUT.old-*`` folders go, and if the kill fell between the two
renames (no OUT at all), the complete new export, or else the old one, is put back first.

Exit codes: 0; 2 for a bad store, an unknown feature set, or an existing OUT without
``--update``/``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from common import cli
from common.errors import UserError
from common.extras import require
from common.lifeline import pid_alive
from etl.catalog import OK_ROWS
from etl.store import LightCurveStore, open_store
from features.featurestore import get_feature_set, get_features

#: Points read per light-curve batch for the nested column.
BATCH_SOURCES = 20_000
_DROP = ("offset", "status", "reason")
MANIFEST = "erosita_export.json"
_SIDE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>partial|old)-(?P<pid>\d+)-[0-9a-f]+$")


class ExportError(UserError):
    """An export that cannot be written as asked (OUT occupied, nothing to export)."""


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_hats` did: sources in the export, and whether it was (re)written."""

    sources: int
    written: bool


def lightcurve_points(store: LightCurveStore, source_ids: list[str]):
    """The nested ``lc`` column's rows: a pandas frame of points indexed by source position, (P, C)."""
    import pandas as pd

    parts = []
    for lo in range(0, len(source_ids), BATCH_SOURCES):
        batch = store.read_many(source_ids[lo : lo + BATCH_SOURCES],
                                ["time", "timedel", "rate", "rate_errm", "rate_errp", "counts", "fracexp"])
        cols = {"time": batch.columns["time"], "timedel": batch.columns["timedel"]}
        for name in ("rate", "rate_errm", "rate_errp", "counts", "fracexp"):
            for k in range(batch.columns[name].shape[1]):
                cols[f"{name}_b{k + 1}"] = batch.columns[name][:, k]
        parts.append(pd.DataFrame(cols, index=lo + np.repeat(np.arange(len(batch)), batch.lengths)))
    return pd.concat(parts) if parts else None


def _tokenize_nested_by_arrow() -> None:
    """Let dask tokenize a nested column by its Arrow data, as it does pandas' own Arrow columns.

    lsdb computes the catalog it builds (for the margin cache), and dask hashes every
    partition it embeds; for nested-pandas' ``NestedExtensionArray`` (0.7.2 has no
    ``__dask_tokenize__``) dask's fallback is ``np.asarray``, which builds one pandas frame per
    source: 125 s of the 131 s that 30,000 sources with light curves took. Hashing the
    underlying ``pa.ChunkedArray`` (what dask does for ``ArrowExtensionArray``) is deterministic
    and takes milliseconds. Registering twice is harmless.
    """
    from dask.tokenize import normalize_token
    from nested_pandas.series.ext_array import NestedExtensionArray

    @normalize_token.register(NestedExtensionArray)
    def _normalize_nested(arr):
        return type(arr).__name__, str(arr.dtype), normalize_token(arr.list_array)


def read_manifest(out: str | Path) -> dict | None:
    """What an export was made from (``OUT/erosita_export.json``), or None when OUT has none."""
    path = Path(out) / MANIFEST
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _made_from(store: LightCurveStore, feature_sets: list[str], lightcurves: bool, name: str,
               columns: list[str] | None = None) -> dict:
    """The export's inputs: equal for two stores/options exactly when the export would be equal."""
    made = {"catalog_hash": store.snapshot_hash(),
            "feature_sets": {spec: get_feature_set(store, spec)[0]["version"] for spec in feature_sets},
            "lightcurves": bool(lightcurves), "name": name}
    return made | ({"columns": list(columns)} if columns is not None else {})


def export_current(store: LightCurveStore, out: str | Path, feature_sets: list[str], lightcurves: bool = False,
                   name: str = "erosita_lc", columns: list[str] | None = None) -> int | None:
    """The sources of the export at ``out`` when it was made from exactly this store and these options, else None."""
    previous = read_manifest(out)
    if not isinstance(previous, dict) or previous.get("made_from") != _made_from(store, feature_sets, lightcurves, name, columns):
        return None
    return int(previous["sources"])


def select_columns(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """``source_id``, ``ra``, ``dec`` and the columns matching ``columns`` (names or regular expressions), in that order."""
    keep = ["source_id", "ra", "dec"]
    for pattern in columns:
        regex = re.compile(pattern if pattern.startswith("^") else f"^{pattern}$")
        keep += [c for c in frame.columns if regex.match(c) and c not in keep]
    return frame.select(keep)


def _recover(out: Path) -> None:
    """Tidy up after a writer killed mid-export: ``.OUT.partial-<pid>-*`` and ``.OUT.old-<pid>-*``.

    A kill -9 between the two renames of :func:`_swap_in` leaves no OUT: the new export (complete:
    it has its manifest) or else the old one is put back; everything else of dead writers goes.
    """
    dead = []
    for entry in out.parent.glob(f".{out.name}.*-*"):
        m = _SIDE.match(entry.name)
        if m is not None and m["name"] == out.name and not pid_alive(int(m["pid"])):
            dead.append((m["kind"], entry))
    if not out.exists():
        complete = [e for kind, e in dead if kind == "partial" and (e / MANIFEST).exists()]
        olds = [e for kind, e in dead if kind == "old"]
        for entry in complete or olds:
            os.replace(entry, out)
            break
    for _, entry in dead:
        if entry.exists():
            shutil.rmtree(entry, ignore_errors=True)


def _swap_in(partial: Path, out: Path) -> None:
    """Make ``partial`` the export at ``out``: readers see the old folder or the new one."""
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.replace(out, old)
        os.replace(partial, out)  # a kill -9 just before this: _recover puts partial in place next time
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(partial, out)


def export_hats(store: LightCurveStore | str, out: str | Path, feature_sets: list[str] | None = None,
                lightcurves: bool | None = None, name: str | None = None, overwrite: bool = False,
                update: bool = False, progress: bool = False, columns: list[str] | None = None) -> ExportResult:
    """Write (or bring up to date) the HATS catalog at ``out``; see the module docstring.

    With ``update``, options left as None (and ``feature_sets`` None) are taken from the
    existing export's manifest. ``progress`` shows lsdb's bar over the partitions written.
    ``columns``: keep only these columns (names or regular expressions; ``source_id``, ``ra`` and
    ``dec`` always): lsdb holds about three copies of the exported table while it partitions it,
    so a million rows of every column need gigabytes, and of the scores a few hundred megabytes.
    Raises :class:`ExportError` when ``out`` holds something and neither
    ``update`` nor ``overwrite`` is given, or ``update`` finds a folder that is not an export.
    """
    require("the HATS export", "lsdb", "hats", "nested_pandas")
    import lsdb
    import nested_pandas as npd

    _tokenize_nested_by_arrow()
    store = store if isinstance(store, LightCurveStore) else open_store(str(store))
    out = Path(out)
    if out.parent.is_dir():
        _recover(out)
    previous = read_manifest(out)
    previous = previous if isinstance(previous, dict) and isinstance(previous.get("made_from"), dict) else None
    occupied = out.exists() and (not out.is_dir() or any(out.iterdir()))
    if occupied and update and previous is None:
        raise ExportError(f"{out} is not an export of this tool (no {MANIFEST}): pass --overwrite to replace it")
    if occupied and not (update or overwrite):
        raise ExportError(f"{out} exists: pass --update to bring it up to date or --overwrite to replace it")
    recorded = previous["made_from"] if update and previous else {}
    feature_sets = list(recorded.get("feature_sets", {})) if feature_sets is None else list(feature_sets)
    lightcurves = bool(recorded.get("lightcurves", False)) if lightcurves is None else lightcurves
    name = (recorded.get("name") or "erosita_lc") if name is None else name
    columns = recorded.get("columns") if columns is None and update else columns
    made_from = _made_from(store, feature_sets, lightcurves, name, columns)
    if update and previous and previous["made_from"] == made_from:
        return ExportResult(int(previous["sources"]), False)

    if feature_sets:
        frame = get_features(store, feature_sets).collect()
    else:
        frame = store.catalog().filter(OK_ROWS).collect()
    frame = frame.filter(pl.col("ra").is_not_null() & pl.col("dec").is_not_null())
    frame = frame.drop([c for c in _DROP if c in frame.columns])
    if columns is not None:
        frame = select_columns(frame, columns)
    if frame.height == 0:
        raise ExportError(f"{store.url}: no ok sources with a position to export")
    table = npd.NestedFrame(frame.to_pandas(use_pyarrow_extension_array=True))
    if lightcurves:
        table = table.join_nested(lightcurve_points(store, frame["source_id"].to_list()), "lc")
    catalog = lsdb.from_dataframe(table, ra_column="ra", dec_column="dec", catalog_name=name)

    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f".{out.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        catalog.write_catalog(partial, catalog_name=name, progress_bar=progress)
        manifest = {"made_from": made_from, "store": store.url, "sources": frame.height, "written_at": _now()}
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if occupied and not out.is_dir():
            out.unlink()
        _swap_in(partial, out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return ExportResult(frame.height, True)


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m features.export_hats", description="Export a store as a HATS catalog for LSDB.")
    p.add_argument("store", help="store path or URL")
    p.add_argument("out", help="HATS catalog folder to write")
    p.add_argument("--feature-sets", nargs="*", default=None, help="feature sets to join (name or name@version)")
    p.add_argument("--lightcurves", action="store_true", help="add each light curve as the nested column 'lc'")
    p.add_argument("--name", default=None, help="catalog name (default erosita_lc)")
    p.add_argument("--columns", nargs="*", default=None,
                   help="keep only these columns (names or regular expressions, e.g. 'variable_fpp' 'discovery_.*'; default all)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--update", action="store_true",
                      help="re-export only if the store or a feature set changed (options default to the recorded ones)")
    mode.add_argument("--overwrite", action="store_true", help="replace whatever is at OUT")
    args = p.parse_args(argv)
    result = export_hats(args.store, args.out, args.feature_sets, args.lightcurves or None, args.name,
                         args.overwrite, args.update, progress=sys.stderr.isatty(), columns=args.columns)
    if result.written:
        print(f"{result.sources} sources -> {args.out} (lsdb.open_catalog({str(args.out)!r}))")
    else:
        print(f"{args.out} is up to date ({result.sources} sources)")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
