"""Build feature sets for a store.

    python -m features.build --store STORE [--checkpoint RUN/checkpoints/best.h5] [--min-points 3]
                             [--null-sources N] [--seed 0] [--no-wait]

Always builds (or reuses) the classical ``variability`` set, ``poisson_variability``
(AMPL_MAX/AMPL_SIG, the normalised excess variance and the Bayesian excess variance per band,
with false-positive probabilities calibrated on simulated constant sources: see
:mod:`features.poisson_variability`, :mod:`features.calibration`, :mod:`features.null_model`) and
``morphology`` (does a band vary as the others do: :mod:`features.morphology`, calibrated on the
same constants). With ``--checkpoint`` it then hands the model-derived sets (``vae_latent``,
``vae_anomaly``, ``discovery``) to ``python -m training.score`` in a subprocess: this package never
imports torch or the training layer, which sits above it.

The simulated constants live in ``STORE/calibration/null-<key>.zarr`` (a store of their own,
built once per catalog snapshot, size and seed). One feature build runs at a time per store
(:func:`features.featurestore.build_lock`, shared with the ``build-features`` flow and model
scoring): a second one waits for the first and then reuses what it built, or with ``--no-wait``
stops with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import light_curve
import numpy as np
import polars as pl
import xxhash

from common import cli
from common.errors import UserError
from features.calibration import CALIBRATION_VERSION, MIN_CELL
from features.featurestore import as_store, build_lock, find_version, get_feature_set, write_feature_set
from features.morphology import MORPHOLOGY_VERSION, extract_morphology
from features.morphology import calibrate as calibrate_morphology
from features.null_model import N_NULL, NULL_MODEL_VERSION, build_null_store
from features.poisson_variability import POISSON_FEATURES_VERSION, calibrate, extract_poisson_variability
from features.variability import MIN_POINTS, extract_variability

FEATURES_VERSION = 1  # bump when the definitions in features/variability.py change


class BuildError(UserError):
    """A feature build asked for something that cannot work (too few null sources, a missing checkpoint)."""


def build_variability(store, min_points: int = MIN_POINTS, n_jobs: int = 2, progress: bool = False) -> tuple[dict, bool]:
    """Build the ``variability`` set, or reuse the version built from the same catalog and code."""
    store = as_store(store)
    lineage = {"catalog_hash": store.snapshot_hash(), "min_points": min_points, "features_version": FEATURES_VERSION,
               "light_curve": light_curve.__version__}
    with build_lock(store):
        existing = find_version(store, "variability", lineage)
        if existing is not None:
            return existing, False
        frame = extract_variability(store, min_points=min_points, n_jobs=n_jobs, progress=progress)
        return write_feature_set(store, "variability", frame, lineage)


def null_size(store) -> int:
    """Default number of null sources: ten per ok source, between 4,000 and :data:`N_NULL`."""
    n_ok = store.catalog().filter(pl.col("status") == "ok").select(pl.len()).collect().item()
    return int(np.clip(10 * n_ok, 4_000, N_NULL))


def null_lineage(store, n_null: int | None, seed: int) -> dict:
    """What a calibration against simulated constants depends on (part of the sets' lineage)."""
    n = null_size(store) if n_null is None else int(n_null)
    if n < 2 * MIN_CELL:
        raise BuildError(f"n_null={n}: calibration needs at least {2 * MIN_CELL} null sources")
    return {"n": n, "seed": int(seed), "model": NULL_MODEL_VERSION, "calibration": CALIBRATION_VERSION}


def null_store(store, null: dict, progress: bool = False):
    """The store's null store for calibration ``null`` (:func:`null_lineage`), built on first use."""
    simulation = {k: null[k] for k in ("n", "seed", "model")}  # the tabulation does not change the simulations
    key = xxhash.xxh3_64_hexdigest(json.dumps([store.snapshot_hash(), simulation], sort_keys=True).encode())
    with build_lock(store):
        return build_null_store(store, key, null["n"], null["seed"], progress=progress)


def uncalibrated(store, name: str, version: int, extract, progress: bool = False) -> pl.DataFrame:
    """A set's uncalibrated columns of a (null) store, kept as its own feature set there (computed once)."""
    lineage = {"catalog_hash": store.snapshot_hash(), "features_version": version, "calibrated": False}
    with build_lock(store):
        meta = find_version(store, name, lineage)
        if meta is None:
            meta, _ = write_feature_set(store, name, extract(store, progress=progress), lineage)
    return get_feature_set(store, f"{name}@{meta['version']}")[1].collect()  # rows by source_id


def uncalibrated_poisson(store, progress: bool, extract=extract_poisson_variability) -> pl.DataFrame:
    """``poisson_variability``'s uncalibrated columns of a (null) store (:func:`uncalibrated`)."""
    return uncalibrated(store, "poisson_variability", POISSON_FEATURES_VERSION, extract, progress)


def build_poisson_variability(store, progress: bool = False, n_null: int | None = None, seed: int = 0,
                              extract=extract_poisson_variability) -> tuple[dict, bool]:
    """Build the calibrated ``poisson_variability`` set, or reuse the version of this catalog, code and null.

    Parameters
    ----------
    n_null : int, optional
        Simulated constant sources to calibrate on (default :func:`null_size`).
    seed : int
        Seed of the simulation.
    extract : callable, optional
        ``extract(store, progress=...) -> DataFrame`` of the uncalibrated columns (default: threads
        in this process; the ``build-features`` flow passes one that spreads parts over its task
        runner, e.g. Dask).
    """
    def make(store, null: dict) -> pl.DataFrame:
        null_frame = uncalibrated_poisson(null_store(store, null, progress), progress, extract)
        return calibrate(extract(store, progress=progress), null_frame, len(store.e_min))

    return build_calibrated(store, "poisson_variability", POISSON_FEATURES_VERSION, n_null, seed, make)


def build_morphology(store, progress: bool = False, n_null: int | None = None, seed: int = 0,
                     extract=extract_morphology) -> tuple[dict, bool]:
    """Build the calibrated ``morphology`` set (:mod:`features.morphology`), or reuse the version of this catalog, code and null.

    ``extract`` as for :func:`build_poisson_variability` (parts on a flow's task runner).
    """
    def make(store, null: dict) -> pl.DataFrame:
        poisson, _ = build_poisson_variability(store, progress=progress, n_null=n_null, seed=seed)  # its net counts
        constants = null_store(store, null, progress)
        null_frame = uncalibrated(constants, "morphology", MORPHOLOGY_VERSION, extract, progress)
        frame = extract(store, progress=progress)
        net = total_net_counts(get_feature_set(store, f"poisson_variability@{poisson['version']}")[1].collect())
        null_net = total_net_counts(uncalibrated_poisson(constants, progress))
        return calibrate_morphology(frame, null_frame, net, null_net, len(store.e_min))

    return build_calibrated(store, "morphology", MORPHOLOGY_VERSION, n_null, seed, make)


def build_calibrated(store, name: str, features_version: int, n_null: int | None, seed: int, make) -> tuple[dict, bool]:
    """Build a set calibrated on the store's simulated constants, or reuse the version of this catalog, code and null.

    ``make(store, null_lineage) -> DataFrame`` computes the set; it runs under the store's
    feature-build lock and only when no version has this lineage.
    """
    store = as_store(store)
    null = null_lineage(store, n_null, seed)
    lineage = {"catalog_hash": store.snapshot_hash(), "features_version": features_version, "null": null}
    with build_lock(store):
        existing = find_version(store, name, lineage)
        if existing is not None:
            return existing, False
        return write_feature_set(store, name, make(store, null), lineage)


def total_net_counts(frame: pl.DataFrame) -> pl.DataFrame:
    """source_id and the net counts summed over bands, from ``poisson_variability`` columns."""
    return frame.select("source_id", pl.sum_horizontal(pl.col("^net_counts_b\\d+$").fill_null(0.0)).alias("net_counts"))


def score_command(store: str, checkpoint: str, n_null: int | None, seed: int) -> list[str]:
    """The command that builds the model-derived sets: :mod:`training.score`, above this layer."""
    cmd = [sys.executable, "-m", "training.score", "--store", store, "--checkpoint", checkpoint, "--seed", str(seed)]
    return cmd + (["--null-sources", str(n_null)] if n_null is not None else [])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m features.build", description="Build versioned per-source feature sets.")
    p.add_argument("--store", required=True, help="store path or URL")
    p.add_argument("--checkpoint", help="GRU-VAE checkpoint (.h5) for the model-derived sets (python -m training.score)")
    p.add_argument("--min-points", type=int, default=MIN_POINTS, help=f"usable points a band needs (default {MIN_POINTS})")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="threads for the feature extractors")
    p.add_argument("--null-sources", type=int, default=None,
                   help=f"simulated constant sources to calibrate on (default: 10 per source, 4,000 to {N_NULL:,})")
    p.add_argument("--seed", type=int, default=0, help="seed of the constant-source simulation")
    p.add_argument("--no-wait", action="store_true", help="exit 2 at once when another feature build holds the store")
    args = p.parse_args(argv)
    store = as_store(args.store)
    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise BuildError(f"checkpoint {args.checkpoint} does not exist")

    def waiting(holder: str) -> None:
        print(f"another feature build holds {store.url} ({holder}); waiting for it (--no-wait to stop instead)",
              file=sys.stderr, flush=True)

    with build_lock(store, wait=0.0 if args.no_wait else float("inf"), on_wait=waiting):
        results = [build_variability(store, args.min_points, args.jobs, progress=True),
                   build_poisson_variability(store, progress=True, n_null=args.null_sources, seed=args.seed),
                   build_morphology(store, progress=True, n_null=args.null_sources, seed=args.seed)]
    for meta, created in results:
        print(f"{meta['name']}@{meta['version']}: {meta['rows']} sources, {len(meta['columns'])} columns "
              f"({'built' if created else 'unchanged, reused'})", flush=True)
    if args.checkpoint:  # the model layer scores in its own process; it takes the lock itself
        cmd = score_command(store.url, str(Path(args.checkpoint).resolve()), args.null_sources, args.seed)
        status = subprocess.run(cmd + (["--no-wait"] if args.no_wait else [])).returncode
        if status != 0:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
