"""Cone-search speed on a 1,000,000-row catalog.

    python benchmarks/cone.py [--rows 1000000] [--queries 1000] [--dir /tmp/bench-cone]

A real store of 20 synthetic sources whose catalog is then extended to ``--rows`` rows at random
positions over the sphere (the cone search reads only the catalog). Times opening the store,
the first cone (which sorts the order-29 sky index once), and ``--queries`` random cones of 10,
60 and 600 arcsec with ``store.cone`` (target: under 20 ms), against a brute-force exact
separation over every row in the same run.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from archives import ensure_store  # noqa: E402

from etl.catalog import read_catalog, with_sky_index, write_catalog  # noqa: E402
from etl.sky import angular_separation  # noqa: E402
from etl.store import open_store  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--dir", type=Path, default=Path("/tmp/bench-cone"))
    args = p.parse_args()
    base = ensure_store(args.dir, 20, seed=9)
    path = args.dir / f"cone-{args.rows}.zarr"
    if not (path / "catalog.parquet").exists():
        shutil.rmtree(path, ignore_errors=True)
        shutil.copytree(base, path)
        cat = read_catalog(str(path))
        rng = np.random.default_rng(0)
        rows = cat.filter(pl.col("status") == "ok").sample(args.rows, with_replacement=True, seed=0).with_columns(
            pl.Series("source_id", [f"s{i:07d}" for i in range(args.rows)]), pl.Series("ra", rng.uniform(0, 360, args.rows)),
            pl.Series("dec", np.degrees(np.arcsin(rng.uniform(-1, 1, args.rows)))))
        write_catalog(str(path), with_sky_index(rows))
    t = time.perf_counter()
    store = open_store(str(path))
    open_s = time.perf_counter() - t
    ok = store.catalog().filter(pl.col("status") == "ok").collect()
    ra_all, dec_all = ok["ra"].to_numpy(), ok["dec"].to_numpy()
    rng = np.random.default_rng(1)
    t = time.perf_counter()
    store.cone(10.0, 10.0, 60.0).collect()
    first_s = time.perf_counter() - t
    print(f"catalog: {len(store):,} ok rows; open_store {open_s * 1e3:.0f} ms; first cone (sorts the sky index) {first_s * 1e3:.0f} ms")
    for radius in (10.0, 60.0, 600.0):
        ra = rng.uniform(0, 360, args.queries)
        dec = np.degrees(np.arcsin(rng.uniform(-1, 1, args.queries)))
        times, found = [], 0
        for a, d in zip(ra, dec):
            t = time.perf_counter()
            found += store.cone(a, d, radius).collect().height
            times.append(time.perf_counter() - t)
        brute = []
        for a, d in zip(ra[:20], dec[:20]):
            t = time.perf_counter()
            sep = angular_separation(a, d, ra_all, dec_all) * 3600.0
            ok.filter(pl.Series(sep <= radius))
            brute.append(time.perf_counter() - t)
        times = np.array(times) * 1e3
        print(f"cone {radius:>5g} arcsec: median {np.median(times):.2f} ms, p99 {np.quantile(times, 0.99):.2f} ms "
              f"({found / args.queries:.2f} sources per cone; target < 20 ms); brute force over every row "
              f"{np.median(brute) * 1e3:.0f} ms ({np.median(brute) * 1e3 / np.median(times):,.0f}x slower)")


if __name__ == "__main__":
    main()
