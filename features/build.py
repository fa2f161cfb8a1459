"""Build feature sets for a store.

    python -m features.build --store STORE [--checkpoint RUN/checkpoints/best.h5] [--min-points 3]
                             [--null-sources N] [--seed 0]

Always builds (or reuses) the classical ``variability`` set and ``poisson_variability``
(AMPL_MAX/AMPL_SIG, the normalised excess variance and the Bayesian excess variance per band,
with false-positive probabilities calibrated on simulated constant sources: see
:mod:`features.poisson_variability`, :mod:`features.calibration`, :mod:`features.null_model`).
With ``--checkpoint`` it also registers the model-derived sets ``vae_latent`` (latent means
mu_0..mu_{L-1}) and ``vae_anomaly`` (anomaly_score: the loss's per-value residual, so comparable
across lengths; anomaly_chi2, recon_sse, n_values, n_steps, split; ``anomaly_fpp`` and
``vae_variable_3sigma`` from the same constant sources scored by the model), scoring with
``python -m training.evaluate`` in a subprocess: this package never imports torch.

The simulated constants live in ``STORE/calibration/null-<key>.zarr`` (a store of their own,
built once per catalog snapshot, size and seed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import light_curve
import numpy as np
import polars as pl
import xxhash

from etl.errors import EtlError
from features.featurestore import as_store, catalog_hash, file_hash, find_version, get_feature_set, write_feature_set
from features.calibration import CALIBRATION_VERSION, FPP_3SIGMA, MIN_CELL, NullTable
from features.null_model import N_NULL, NULL_MODEL_VERSION, build_null_store
from features.poisson_variability import POISSON_FEATURES_VERSION, calibrate, extract_poisson_variability
from features.variability import MIN_POINTS, extract_variability
from training.checkpoint import CheckpointError, read_checkpoint_info  # the format owner; imports no torch

FEATURES_VERSION = 1  # bump when the definitions in features/variability.py change


def build_variability(store, min_points: int = MIN_POINTS, n_jobs: int = 2, progress: bool = False) -> tuple[dict, bool]:
    """Build the ``variability`` set, or reuse the version built from the same catalog and code."""
    store = as_store(store)
    lineage = {"catalog_hash": catalog_hash(store), "min_points": min_points, "features_version": FEATURES_VERSION,
               "light_curve": light_curve.__version__}
    existing = find_version(store, "variability", lineage)
    if existing is not None:
        return existing, False
    return write_feature_set(store, "variability", extract_variability(store, min_points=min_points, n_jobs=n_jobs, progress=progress), lineage)


def null_size(store) -> int:
    """Default number of null sources: ten per ok source, between 4,000 and :data:`N_NULL`."""
    n_ok = store.catalog().filter(pl.col("status") == "ok").select(pl.len()).collect().item()
    return int(np.clip(10 * n_ok, 4_000, N_NULL))


def null_lineage(store, n_null: int | None, seed: int) -> dict:
    """What a calibration against simulated constants depends on (part of the sets' lineage)."""
    n = null_size(store) if n_null is None else int(n_null)
    if n < 2 * MIN_CELL:
        raise ValueError(f"n_null={n}: calibration needs at least {2 * MIN_CELL} null sources")
    return {"n": n, "seed": int(seed), "model": NULL_MODEL_VERSION, "calibration": CALIBRATION_VERSION}


def null_store(store, null: dict, progress: bool = False):
    """The store's null store for calibration ``null`` (:func:`null_lineage`), built on first use."""
    simulation = {k: null[k] for k in ("n", "seed", "model")}  # the tabulation does not change the simulations
    key = xxhash.xxh3_64_hexdigest(json.dumps([catalog_hash(store), simulation], sort_keys=True).encode())
    return build_null_store(store, key, null["n"], null["seed"], progress=progress)


def _uncalibrated_poisson(store, progress: bool, extract=extract_poisson_variability) -> pl.DataFrame:
    """The set's uncalibrated columns of a (null) store, kept as its own feature set there."""
    lineage = {"catalog_hash": catalog_hash(store), "features_version": POISSON_FEATURES_VERSION, "calibrated": False}
    meta = find_version(store, "poisson_variability", lineage)
    if meta is None:
        meta, _ = write_feature_set(store, "poisson_variability", extract(store, progress=progress), lineage)
    return get_feature_set(store, f"poisson_variability@{meta['version']}")[1].collect()  # rows by source_id


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
    store = as_store(store)
    null = null_lineage(store, n_null, seed)
    lineage = {"catalog_hash": catalog_hash(store), "features_version": POISSON_FEATURES_VERSION, "null": null}
    existing = find_version(store, "poisson_variability", lineage)
    if existing is not None:
        return existing, False
    null_frame = _uncalibrated_poisson(null_store(store, null, progress), progress, extract)
    frame = extract(store, progress=progress)
    return write_feature_set(store, "poisson_variability", calibrate(frame, null_frame, len(store.e_min)), lineage)


def checkpoint_config(checkpoint: str) -> dict:
    """The training config stored in a checkpoint (the checkpoint module's reader: no torch, checksums verified)."""
    return read_checkpoint_info(checkpoint)["config"]


def score_with_checkpoint(store, checkpoint: str, progress: bool = True) -> pl.DataFrame:
    """Every ok source of ``store`` scored by ``python -m training.evaluate`` (a subprocess: no torch here)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "scores.parquet"
        cmd = [sys.executable, "-m", "training.evaluate", "--checkpoint", checkpoint, "--store", store.url,
               "--split", "all", "--out", str(out), "--top", "16"]
        proc = subprocess.run(cmd, capture_output=not progress, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"scoring {store.url} with {checkpoint} failed: {(proc.stderr or '').strip()[-2000:]}")
        return pl.read_parquet(out)


def _total_net_counts(frame: pl.DataFrame) -> pl.DataFrame:
    """source_id and the net counts summed over bands, from ``poisson_variability`` columns."""
    return frame.select("source_id", pl.sum_horizontal(pl.col("^net_counts_b\\d+$").fill_null(0.0)).alias("net_counts"))


def build_model_features(store, checkpoint: str, progress: bool = True, n_null: int | None = None,
                         seed: int = 0) -> list[tuple[dict, bool]]:
    """Register ``vae_latent`` and ``vae_anomaly`` from a checkpoint (reused when already built).

    ``vae_anomaly`` carries ``anomaly_fpp``, the false-positive probability of ``anomaly_score``
    among simulated constant sources (the store's null store, :mod:`features.null_model`, scored
    by the same model), tabulated by total net counts and number of time steps
    (:class:`features.calibration.NullTable`), and ``vae_variable_3sigma`` (FPP <= 0.135 %).
    """
    store = as_store(store)
    checkpoint = str(Path(checkpoint).resolve())
    null = null_lineage(store, n_null, seed)
    lineage = {"catalog_hash": catalog_hash(store), "checkpoint": checkpoint, "checkpoint_hash": file_hash(checkpoint),
               "config": checkpoint_config(checkpoint), "null": null}
    found = [find_version(store, name, lineage) for name in ("vae_latent", "vae_anomaly")]
    if all(found):
        return [(meta, False) for meta in found]
    poisson_meta, _ = build_poisson_variability(store, progress=progress, n_null=n_null, seed=seed)
    constants = null_store(store, null, progress)
    null_scores = score_with_checkpoint(constants, checkpoint, progress).join(
        _total_net_counts(_uncalibrated_poisson(constants, progress)), on="source_id")
    table = NullTable.build(null_scores["anomaly_score"].to_numpy(), null_scores["net_counts"].to_numpy(),
                            null_scores["n_steps"].to_numpy())
    net = _total_net_counts(get_feature_set(store, f"poisson_variability@{poisson_meta['version']}")[1].collect())
    scores = score_with_checkpoint(store, checkpoint, progress).join(net, on="source_id", how="left")
    fpp = table.fpp(scores["anomaly_score"].to_numpy(), scores["net_counts"].to_numpy(), scores["n_steps"].to_numpy())
    scores = scores.with_columns(pl.Series("anomaly_fpp", fpp).fill_nan(None)).with_columns(
        vae_variable_3sigma=pl.col("anomaly_fpp").fill_null(1.0) <= FPP_3SIGMA)
    latent = scores.select("source_id", pl.col("^mu_\\d+$"))
    anomaly = scores.select("source_id", "anomaly_score", "anomaly_chi2", "recon_sse", "n_values", "n_steps", "split",
                            "anomaly_fpp", "vae_variable_3sigma")
    return [write_feature_set(store, "vae_latent", latent, lineage), write_feature_set(store, "vae_anomaly", anomaly, lineage)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m features.build", description="Build versioned per-source feature sets.")
    p.add_argument("--store", required=True, help="store path or URL")
    p.add_argument("--checkpoint", help="GRU-VAE checkpoint (.h5) for the model-derived sets")
    p.add_argument("--min-points", type=int, default=MIN_POINTS, help=f"usable points a band needs (default {MIN_POINTS})")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="threads for the feature extractors")
    p.add_argument("--null-sources", type=int, default=None,
                   help=f"simulated constant sources to calibrate on (default: 10 per source, 4,000 to {N_NULL:,})")
    p.add_argument("--seed", type=int, default=0, help="seed of the constant-source simulation")
    args = p.parse_args(argv)
    try:
        store = as_store(args.store)
        if args.checkpoint and not Path(args.checkpoint).is_file():
            raise FileNotFoundError(f"checkpoint {args.checkpoint} does not exist")
        results = [build_variability(store, args.min_points, args.jobs, progress=True),
                   build_poisson_variability(store, progress=True, n_null=args.null_sources, seed=args.seed)]
        if args.checkpoint:
            results += build_model_features(store, args.checkpoint, n_null=args.null_sources, seed=args.seed)
    except (EtlError, CheckpointError, FileNotFoundError, RuntimeError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for meta, created in results:
        print(f"{meta['name']}@{meta['version']}: {meta['rows']} sources, {len(meta['columns'])} columns "
              f"({'built' if created else 'unchanged, reused'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
