"""The model-derived feature sets of a store: ``vae_latent`` and ``vae_anomaly`` from a checkpoint.

    python -m training.score --store STORE --checkpoint RUN/checkpoints/best.h5 [--null-sources N] [--seed 0]

(``python -m features.build --checkpoint`` runs this after the classical sets.) Every ok source
of the store is scored (a model trained on a ``--limit`` sample scores them all):

* ``vae_latent``: the latent means ``mu_0`` ... ``mu_{L-1}``;
* ``vae_anomaly``: ``anomaly_score`` (the loss's reconstruction term per valid value, so
  comparable across lengths), ``anomaly_chi2``, ``recon_loss``, ``n_values``, ``n_steps``,
  ``split``, and ``anomaly_fpp``, the false-positive probability of ``anomaly_score`` among the
  store's simulated constant sources (:mod:`features.null_model`) scored by the same model and
  tabulated by total net counts and number of time steps (:class:`features.calibration.NullTable`),
  with ``vae_variable_3sigma`` (FPP <= 0.135 %).

This layer sits above ``features/``: it writes its sets through the feature store, under the
store's feature-build lock, with the checkpoint (path, content hash, config) in their lineage.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import polars as pl

from common import cli
from features.build import (
    BuildError,
    build_poisson_variability,
    null_lineage,
    null_store,
    total_net_counts,
    uncalibrated_poisson,
)
from features.calibration import FPP_3SIGMA, NullTable
from features.featurestore import as_store, build_lock, file_hash, find_version, get_feature_set, write_feature_set
from training.checkpoint import read_checkpoint_info
from training.evaluate import pick_device, score_store
from training.model import load_model

MODEL_SETS = ("vae_latent", "vae_anomaly")


def score_checkpoint(store, checkpoint: str, device: str = "auto", progress: bool = False) -> pl.DataFrame:
    """Every ok source of ``store`` scored by the model of ``checkpoint`` (scores and latent means)."""
    dev = pick_device(device)
    model, cfg = load_model(checkpoint, store, dev)
    return score_store(model, cfg, store, "all", dev, progress)[0]


def model_lineage(store, checkpoint: str, null: dict) -> dict:
    """What the model sets were computed from: the store's snapshot, the checkpoint and the null."""
    return {"catalog_hash": store.snapshot_hash(), "checkpoint": checkpoint, "checkpoint_hash": file_hash(checkpoint),
            "config": read_checkpoint_info(checkpoint)["config"], "null": null}


def build_model_features(store, checkpoint: str, progress: bool = True, n_null: int | None = None, seed: int = 0,
                         device: str = "auto") -> list[tuple[dict, bool]]:
    """Register ``vae_latent`` and ``vae_anomaly`` from a checkpoint (reused when already built).

    Returns
    -------
    list of (meta, created)
    """
    store = as_store(store)
    checkpoint = str(Path(checkpoint).resolve())
    if not Path(checkpoint).is_file():
        raise BuildError(f"checkpoint {checkpoint} does not exist")
    null = null_lineage(store, n_null, seed)
    lineage = model_lineage(store, checkpoint, null)
    with build_lock(store):
        found = [find_version(store, name, lineage) for name in MODEL_SETS]
        if all(found):
            return [(meta, False) for meta in found]
        poisson_meta, _ = build_poisson_variability(store, progress=progress, n_null=n_null, seed=seed)
        constants = null_store(store, null, progress)
        null_scores = score_checkpoint(constants, checkpoint, device, progress).join(
            total_net_counts(uncalibrated_poisson(constants, progress)), on="source_id")
        table = NullTable.build(null_scores["anomaly_score"].to_numpy(), null_scores["net_counts"].to_numpy(),
                                null_scores["n_steps"].to_numpy())
        net = total_net_counts(get_feature_set(store, f"poisson_variability@{poisson_meta['version']}")[1].collect())
        scores = score_checkpoint(store, checkpoint, device, progress).join(net, on="source_id", how="left")
        fpp = table.fpp(scores["anomaly_score"].to_numpy(), scores["net_counts"].to_numpy(), scores["n_steps"].to_numpy())
        scores = scores.with_columns(pl.Series("anomaly_fpp", fpp).fill_nan(None)).with_columns(
            vae_variable_3sigma=pl.col("anomaly_fpp").fill_null(1.0) <= FPP_3SIGMA)
        latent = scores.select("source_id", pl.col("^mu_\\d+$"))
        anomaly = scores.select("source_id", "anomaly_score", "anomaly_chi2", "recon_loss", "n_values", "n_steps", "split",
                                "anomaly_fpp", "vae_variable_3sigma")
        return [write_feature_set(store, "vae_latent", latent, lineage),
                write_feature_set(store, "vae_anomaly", anomaly, lineage)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.score", description="The model-derived feature sets of a store.")
    p.add_argument("--store", required=True, help="store path or URL")
    p.add_argument("--checkpoint", required=True, help="GRU-VAE checkpoint (.h5)")
    p.add_argument("--null-sources", type=int, default=None, help="simulated constant sources to calibrate on")
    p.add_argument("--seed", type=int, default=0, help="seed of the constant-source simulation")
    p.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu', 'cuda'")
    p.add_argument("--no-wait", action="store_true", help="exit 2 at once when another feature build holds the store")
    args = p.parse_args(argv)
    store = as_store(args.store)

    def waiting(holder: str) -> None:
        print(f"another feature build holds {store.url} ({holder}); waiting for it", file=sys.stderr, flush=True)

    with build_lock(store, wait=0.0 if args.no_wait else math.inf, on_wait=waiting):
        results = build_model_features(store, args.checkpoint, progress=True, n_null=args.null_sources, seed=args.seed,
                                       device=args.device)
    for meta, created in results:
        print(f"{meta['name']}@{meta['version']}: {meta['rows']} sources, {len(meta['columns'])} columns "
              f"({'built' if created else 'unchanged, reused'})")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
