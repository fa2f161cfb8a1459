"""Cross-match and HATS-export speed.

    python benchmarks/crossmatch.py [--n 100000] [--reference-rows 1000000] [--dir /tmp/bench-read]

On a synthetic store of ``--n`` sources (built once, shared with feature_build.py): times the
cross-match against a synthetic ``--reference-rows`` reference (30 % of the sources with
counterparts at 2.5" per axis, the rest uniform on the sky) with astropy and with LSDB (a
temporary local Dask cluster of 2 workers), both through ``features.crossmatch`` (spurious-match
measurement included: it matches four shifted copies too), and the HATS export of the store with
its light curves nested (``features.export_hats``) and an ``--update`` that finds nothing to do.
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

from etl.store import open_store  # noqa: E402
from features.crossmatch import crossmatch  # noqa: E402
from features.export_hats import export_hats  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--reference-rows", type=int, default=1_000_000)
    p.add_argument("--dir", type=Path, default=Path("/tmp/bench-read"))
    args = p.parse_args()
    store_path = ensure_store(args.dir, args.n, seed=3)
    store = open_store(str(store_path))
    ok = store.catalog().filter(pl.col("status") == "ok").select("ra", "dec").collect()
    rng = np.random.default_rng(0)
    known = rng.random(ok.height) < 0.3
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    src = SkyCoord(ok["ra"].to_numpy()[known] * u.deg, ok["dec"].to_numpy()[known] * u.deg)
    moved = src.directional_offset_by(rng.uniform(0, 360, known.sum()) * u.deg,
                                      np.hypot(*rng.normal(0, 2.5, (2, known.sum()))) * u.arcsec)
    n_field = max(args.reference_rows - int(known.sum()), 0)
    ref = pl.DataFrame({"ref_id": np.arange(int(known.sum()) + n_field),
                        "ra": np.r_[moved.ra.deg, rng.uniform(0, 360, n_field)],
                        "dec": np.r_[moved.dec.deg, np.degrees(np.arcsin(rng.uniform(-1, 1, n_field)))]})
    reference = args.dir / f"reference-{ref.height}.parquet"
    ref.write_parquet(reference)
    shutil.rmtree(store_path / "features" / "xmatch_benchA", ignore_errors=True)
    shutil.rmtree(store_path / "features" / "xmatch_benchL", ignore_errors=True)
    t = time.perf_counter()
    meta, _ = crossmatch(store, str(reference), 10.0, "benchA", method="astropy")
    astropy_s = time.perf_counter() - t
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster:
        t = time.perf_counter()
        meta_l, _ = crossmatch(store, str(reference), 10.0, "benchL", method="lsdb", dask_address=cluster.scheduler_address)
        lsdb_s = time.perf_counter() - t
    m = meta["metrics"]
    print(f"cross-match {ok.height:,} sources x {ref.height:,} reference rows within 10 arcsec (5 matchings each: "
          f"the real one and 4 shifted for the spurious rate): astropy {astropy_s:.1f} s, lsdb on 2 Dask workers "
          f"{lsdb_s:.1f} s; {m['matched']:,} matched ({meta_l['metrics']['matched']:,} with lsdb), "
          f"spurious fraction {m['spurious_fraction']:.4f}")
    out = args.dir / "hats-export"
    t = time.perf_counter()
    n = export_hats(store, out, lightcurves=True, overwrite=True).sources
    export_s = time.perf_counter() - t
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20
    print(f"HATS export with light curves nested: {n:,} sources in {export_s:.1f} s ({size:.0f} MiB)")
    t = time.perf_counter()
    again = export_hats(store, out, update=True)
    check_s = time.perf_counter() - t
    print(f"HATS export --update with nothing changed: {check_s:.2f} s (rewritten: {again.written})")


if __name__ == "__main__":
    main()
