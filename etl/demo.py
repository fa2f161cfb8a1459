"""The demo: synthetic eRASS1-like archive -> ingest -> a Polars query of the catalog.

    python -m etl.demo [--dir demo] [--n 2000] [--workers 2]

Re-running it is cheap: the archive is rebuilt only when missing and ingest skips unchanged
files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

from common import cli
from etl.catalog import OK_ROWS
from etl.ingest import ingest
from etl.store import open_store
from etl.synth import make_archive


def build_archive(archive: Path, n: int, seed: int = 2026) -> None:
    """The demo archive, built once: n synthetic light curves of both flavours (2 % rare morphologies) + 12 malformed files."""
    if not (archive / "truth.parquet").exists():
        print(f"building a synthetic archive of {n} light curves (2 % rare morphologies, +12 malformed files) in {archive}")
        make_archive(archive, n=n, seed=seed, flavour="mixed", bad=12, rare=0.02)


def ensure_reference(archive: Path) -> Path:
    """The archive's reference catalogue of known objects (written for archives made before it existed)."""
    path = archive / "reference.parquet"
    if not path.exists():
        import numpy as np

        from etl.synth import write_reference

        truth = write_reference(archive, pl.read_parquet(archive / "truth.parquet"), np.random.default_rng([2026, 1]))
        truth.write_parquet(archive / "truth.parquet")
    return path


def run(directory: Path, n: int, workers: int, seed: int = 2026) -> pl.DataFrame:
    """Build (once) and ingest the demo archive; return the query's result."""
    archive, store_path = directory / "archive", directory / "store.zarr"
    build_archive(archive, n, seed)
    summary = ingest(archive, store_path, workers=workers)
    print(summary.line())
    return summarize(archive, store_path)


def summarize(archive: Path, store_path: Path) -> pl.DataFrame:
    """Print (and return) a Polars query of the catalog joined with the archive's truth table."""
    store = open_store(store_path)
    truth = pl.scan_parquet(archive / "truth.parquet").filter(pl.col("expected") == "ok").select("source_id", "class")
    # The kind of question the catalog answers: bright, well-sampled sources per class.
    query = (
        pl.scan_parquet(store.catalog_path)
        .filter(OK_ROWS & (pl.col("n_points") >= 8))
        .join(truth, on="source_id", how="left")
        .group_by("class", "flavour")
        .agg(
            pl.len().alias("sources"),
            pl.col("n_points").median().alias("median_points"),
            pl.col("mean_rate_b2").median().round(3).alias("median_rate_0.6-2.3keV"),
            ((pl.col("t_stop") - pl.col("t_start")) / 86400).max().round(1).alias("longest_days"),
        )
        .sort("class", "flavour")
        .collect()
    )
    rejected = store.catalog().filter(pl.col("status") == "rejected").select("reason").collect()
    with pl.Config(tbl_rows=20, tbl_width_chars=120):
        print("\nwell-sampled sources (>= 8 points) by class and flavour:")
        print(query)
        print(f"\n{rejected.height} quarantined files, e.g. {rejected['reason'][0] if rejected.height else '-'}")
    print(f"\nstore: {store}\ncatalog: pl.scan_parquet({store.catalog_path!r})")
    return query


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m etl.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("demo"), help="working directory (default ./demo)")
    parser.add_argument("--n", type=int, default=2000, help="synthetic sources (default 2000)")
    parser.add_argument("--workers", type=int, default=2, help="parsing processes (default 2)")
    args = parser.parse_args(argv)
    run(args.dir, args.n, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
