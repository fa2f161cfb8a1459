"""Feature-store speed: variability and poisson_variability features for N sources, and a three-set join.

    python benchmarks/feature_build.py [--n 100000] [--null N] [--dir /tmp/bench-read] [--bexvar-reference 3]

Builds (once) a synthetic store of ``--n`` rebinned sources, times the ``variability``
extraction from the store (targets: 100,000 sources in under a minute on 2 cores), the
``poisson_variability`` set as ``features.build`` makes it, step by step (the simulated
constant sources, their statistics, the store's statistics, the calibration; target: all of it
for 100,000 sources in under 10 minutes) with its peak memory, the reference ``bexvar`` package's time per light curve and band for comparison (on
``--bexvar-reference`` light curves, when the package is installed), and
``get_features`` joining three feature sets with the catalog (target: well under a second).
The two extra sets hold random numbers shaped like the VAE sets (40 latents, 6 score columns).
Then the discovery path as ``features.build --checkpoint`` runs it: the ``poisson_variability``
and ``morphology`` sets, and the model sets (``vae_latent``, ``vae_anomaly``, ``discovery``:
every source and the simulated constants scored; target for ``discovery``: 100,000 sources in
under 2 minutes) with the model of ``--checkpoint`` (default: one epoch of
``configs/discovery.toml`` on 2,000 of the sources; scoring time does not depend on how well it
was trained; ``--checkpoint none`` leaves this part out).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from archives import ROOT, ensure_checkpoint, ensure_store  # noqa: E402

from etl.store import open_store  # noqa: E402
from features import get_features  # noqa: E402
from features.builders import build_morphology, build_poisson_variability, null_lineage, null_store, uncalibrated_poisson  # noqa: E402
from features.featurestore import write_feature_set  # noqa: E402
from features.poisson_variability import calibrate, extract_poisson_variability  # noqa: E402
from features.variability import extract_variability  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dir", type=Path, default=Path("/tmp/bench-read"))
    p.add_argument("--null", type=int, default=None, help="simulated constant sources (default: features.build's)")
    p.add_argument("--bexvar-reference", type=int, default=3, help="light curves timed with the reference package (0: skip)")
    p.add_argument("--checkpoint", default=None, help="discovery model to score with ('none': skip; default: a quick one)")
    args = p.parse_args()
    store_path = ensure_store(args.dir, args.n, seed=3)
    shutil.rmtree(store_path / "features", ignore_errors=True)
    shutil.rmtree(store_path / "calibration", ignore_errors=True)
    store = open_store(store_path)
    t = time.perf_counter()
    variability = extract_variability(store)
    extract_s = time.perf_counter() - t
    ids = variability["source_id"]
    steps = {}
    t = time.perf_counter()
    null = null_lineage(store, args.null, 0)
    constants = null_store(store, null)
    steps["simulate constants"] = time.perf_counter() - t
    t = time.perf_counter()
    null_frame = uncalibrated_poisson(constants)
    steps["their statistics"] = time.perf_counter() - t
    t = time.perf_counter()
    poisson = extract_poisson_variability(store)
    steps["the store's statistics"] = time.perf_counter() - t
    t = time.perf_counter()
    calibrated = calibrate(poisson, null_frame, len(store.e_min))
    steps["calibration"] = time.perf_counter() - t
    poisson_s = steps["the store's statistics"]
    total_s = sum(steps.values())
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    reference_s = reference_seconds(store, args.bexvar_reference)
    rng = np.random.default_rng(0)
    write_feature_set(store, "variability", variability, {"bench": 1})
    write_feature_set(store, "vae_latent", pl.DataFrame({"source_id": ids, **{f"mu_{j}": rng.normal(size=len(ids)) for j in range(40)}}), {"bench": 1})
    write_feature_set(store, "vae_anomaly", pl.DataFrame({"source_id": ids, **{f"s{j}": rng.random(len(ids)) for j in range(6)}}), {"bench": 1})
    timings = []
    for _ in range(3):
        t = time.perf_counter()
        df = get_features(store, ["variability", "vae_latent", "vae_anomaly"]).collect()
        timings.append(time.perf_counter() - t)
    t = time.perf_counter()
    picked = get_features(store, ["variability", "vae_anomaly"]).filter(pl.col("reduced_chi2_b2") > 3).select("source_id", "s0").collect()
    query_s = time.perf_counter() - t
    print(f"variability features: {len(ids)} sources in {extract_s:.1f} s ({len(ids) / extract_s:,.0f} sources/s; target < 60 s for 100k)")
    print(f"poisson_variability (AMPL, NEV, bexvar x {len(store.e_min)} bands): {poisson.height} sources in {poisson_s:.1f} s "
          f"({poisson.height / poisson_s:,.0f} sources/s, {poisson_s / max(poisson.height, 1) / len(store.e_min) * 1e3:.3f} ms per "
          f"light curve and band; peak RSS {peak_mib:.0f} MiB)")
    print(f"poisson_variability calibrated on {null['n']:,} simulated constants: {calibrated.height} sources, "
          f"{calibrated.width - 1} columns in {total_s:.1f} s in all (target < 600 s for 100k): "
          + ", ".join(f"{k} {v:.1f} s" for k, v in steps.items()))
    if reference_s is not None:
        print(f"reference bexvar package (UltraNest): {reference_s:.2f} s per light curve and band "
              f"({reference_s / (poisson_s / max(poisson.height, 1) / len(store.e_min)):,.0f}x slower)")
    print(f"get_features, 3 sets joined with the catalog: {df.height} rows x {df.width} columns in "
          f"{min(timings) * 1e3:.0f} ms (best of 3; target well under 1 s)")
    print(f"filtered query (chi2_b2 > 3, 2 sets): {picked.height} rows in {query_s * 1e3:.0f} ms")
    if args.checkpoint != "none":
        time_discovery(store, args.checkpoint or quick_checkpoint(store_path, args.dir), args.null)


def quick_checkpoint(store_path: Path, out: Path) -> Path:
    """One epoch of ``configs/discovery.toml`` on 2,000 sources: a model of the discovery architecture."""
    run = out / "run-discovery-quick"
    shutil.rmtree(run, ignore_errors=True)
    return ensure_checkpoint(run, store_path, ["--config", str(ROOT / "configs" / "discovery.toml"), "--epochs", "1",
                                               "--limit", "2000"], "a quick discovery model", quiet=True)


def time_discovery(store, checkpoint, n_null: int | None) -> None:
    """The sets ``features.build --checkpoint`` makes after ``variability``, timed one by one."""
    from training.score import build_model_features

    times = {}
    for name, build in (("poisson_variability", lambda: build_poisson_variability(store, n_null=n_null)),
                        ("morphology", lambda: build_morphology(store, n_null=n_null)),
                        ("vae_latent + vae_anomaly + discovery", lambda: build_model_features(store, checkpoint, False, n_null))):
        t = time.perf_counter()
        build()
        times[name] = time.perf_counter() - t
    n = len(store.ok_sources())
    print(f"discovery path with {checkpoint}: {n} sources; " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items())
          + f"; model sets {n / times['vae_latent + vae_anomaly + discovery']:,.0f} sources/s (target: 100k in < 120 s)")


def reference_seconds(store, n: int) -> float | None:
    """Seconds per light curve and band of the reference bexvar package (test-only dependency)."""
    if n <= 0:
        return None
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "data"))
        from make_bexvar_reference import load_oracle, reference
        oracle = load_oracle()
    except (ImportError, FileNotFoundError, OSError):
        print("reference bexvar package not installed: pip install bexvar (test-only, AGPL)")
        return None
    ids = store.source_ids[:n]
    t = time.perf_counter()
    for sid in ids:
        lc = store.read(sid)
        reference(oracle, lc.counts[:, 1].astype("f8"), lc.back_counts[:, 1].astype("f8"), lc.backratio,
                  lc.fracexp[:, 1].astype("f8"), lc.timedel)
    return (time.perf_counter() - t) / len(ids)


if __name__ == "__main__":
    main()
