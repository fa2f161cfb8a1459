"""Export a store's ok sources as a HATS catalog that LSDB opens.

    python -m etl.export_hats STORE OUT [--feature-sets variability poisson_variability ...] [--lightcurves]
                                        [--name erosita_lc] [--overwrite]

Written with lsdb/hats themselves (``lsdb.from_dataframe(...).write_catalog(OUT)``): HEALPix-partitioned
Parquet with the HATS metadata, so ``lsdb.open_catalog(OUT)`` gives cone searches, cross-matches
against other HATS catalogs (Gaia, ZTF, ...) and Dask scale-out. Columns: the catalog's (minus
the store-internal ``offset``, ``e_min``/``e_max`` as lists stay), each chosen feature set joined
on ``source_id``, and with ``--lightcurves`` a nested column ``lc`` (nested-pandas) holding each
source's points: ``time`` (s since ``mjdref``), ``timedel``, and per band ``rate_b{k}``,
``rate_errm_b{k}``, ``rate_errp_b{k}``, ``counts_b{k}``, ``fracexp_b{k}``.

The export is rewritten as a whole (``--overwrite``) when the store has grown; it is not
incremental yet. Exit codes: 0; 2 for a bad store, an unknown feature set, or an existing OUT
without ``--overwrite``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import polars as pl

from etl.errors import EtlError
from etl.store import LightCurveStore, open_store

#: Points read per light-curve batch for the nested column.
BATCH_SOURCES = 20_000
_DROP = ("offset", "status", "reason")


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


def export_hats(store: LightCurveStore | str, out: str | Path, feature_sets: list[str] | None = None,
                lightcurves: bool = False, name: str = "erosita_lc", overwrite: bool = False) -> int:
    """Write the HATS catalog; returns the number of sources exported."""
    try:
        import lsdb
        import nested_pandas as npd
    except ImportError as exc:
        raise ImportError(f"the HATS export needs lsdb and hats: pip install 'erosita-lcvae[hats]' ({exc})") from None

    store = store if isinstance(store, LightCurveStore) else open_store(str(store))
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists: pass --overwrite to replace it")
    if feature_sets:
        from features.featurestore import get_features  # the feature layer sits on the store; only asked-for sets

        frame = get_features(store, feature_sets).collect()
    else:
        frame = store.catalog().filter(pl.col("status") == "ok").collect()
    frame = frame.filter(pl.col("ra").is_not_null() & pl.col("dec").is_not_null())
    frame = frame.drop([c for c in _DROP if c in frame.columns])
    if frame.height == 0:
        raise ValueError(f"{store.url}: no ok sources with a position to export")
    table = npd.NestedFrame(frame.to_pandas(use_pyarrow_extension_array=True))
    if lightcurves:
        table = table.join_nested(lightcurve_points(store, frame["source_id"].to_list()), "lc")
    catalog = lsdb.from_dataframe(table, ra_column="ra", dec_column="dec", catalog_name=name)
    catalog.write_catalog(out, catalog_name=name, overwrite=overwrite, progress_bar=False)
    return frame.height


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m etl.export_hats", description="Export a store as a HATS catalog for LSDB.")
    p.add_argument("store", help="store path or URL")
    p.add_argument("out", help="HATS catalog folder to write")
    p.add_argument("--feature-sets", nargs="*", default=[], help="feature sets to join (name or name@version)")
    p.add_argument("--lightcurves", action="store_true", help="add each light curve as the nested column 'lc'")
    p.add_argument("--name", default="erosita_lc", help="catalog name (default erosita_lc)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export")
    args = p.parse_args(argv)
    try:
        n = export_hats(args.store, args.out, args.feature_sets, args.lightcurves, args.name, args.overwrite)
    except (EtlError, LookupError, ValueError, FileExistsError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{n} sources -> {args.out} (lsdb.open_catalog({str(args.out)!r}))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
