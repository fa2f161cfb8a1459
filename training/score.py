"""The model-derived feature sets of a store: ``vae_latent``, ``vae_anomaly`` and ``discovery``.

    python -m training.score --store STORE --checkpoint RUN/checkpoints/best.h5 [--null-sources N] [--seed 0]
                             [--catalog PINNED.parquet] [--device auto] [--no-wait]

(``python -m features.build --checkpoint`` runs this after the classical sets.) Every ok source
of the store is scored (a model trained on a ``--limit`` sample scores them all):

* ``vae_latent``: the latent means ``mu_0`` ... ``mu_{L-1}``;
* ``vae_anomaly``: ``anomaly_score`` (the loss's reconstruction term per valid value, so
  comparable across lengths), ``anomaly_chi2``, ``recon_loss``, ``n_values``, ``n_steps``,
  ``split``, and ``anomaly_fpp``, the false-positive probability of ``anomaly_score`` among the
  store's simulated constant sources (:mod:`features.null_model`) scored by the same model and
  tabulated by total net counts and number of time steps (:class:`features.calibration.NullTable`),
  with ``vae_variable_3sigma`` (FPP <= 0.135 %);
* ``discovery`` (models that learned to predict a hidden band from the others: ``configs/discovery.toml``,
  ``condition = "band_mean"``, ``hide_band > 0``, Poisson loss): per band ``surprise_b{k}``, the
  Poisson deviance of the band's counts when the band is hidden from the encoder (how surprising it
  is given the other bands), ``surprise_fpp_b{k}`` (calibrated on the simulated constants as
  above), ``surprise_bin_b{k}`` (the bin where it is largest); and

      discovery_score           = min(-log10 variable_fpp, -log10 surprise_fpp of the softest band)
      discovery_score_classical = min(-log10 variable_fpp, -log10 lbo_fpp of the softest band)

  a source ranks high when it is significantly variable *and* its soft band does what the harder
  bands do not lead one to expect: the signature of quasi-periodic eruptions, supersoft outbursts
  and absorption episodes, which the common band-coherent variability (flares, dips, red noise)
  lacks. The classical score asks the same question with the profile of the other bands fitted
  freely per bin (:mod:`features.morphology`), so the difference between the two is what the
  learned prediction adds. ``discovery_reason`` says why a source ranks where it does.

This layer sits above ``features/``: it writes its sets through the feature store, under the
store's feature-build lock, with the checkpoint (path, content hash, config) in their lineage.
Scores are computed in parts (:mod:`features.parts`): a killed scoring resumes with the parts it
has not done.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
from pathlib import Path

import polars as pl

from common import cli
from etl.lightcurve import band_labels, softest_band
from etl.store import open_store
from features.builders import (
    BuildError,
    PartRunner,
    build_morphology,
    build_poisson_variability,
    null_store,
    total_net_counts,
    uncalibrated_poisson,
)
from features.calibration import FPP_3SIGMA, column_fpp, significance
from features.featurestore import as_store, build_lock, file_hash, get_feature_set, write_feature_set
from features.parts import parts_key, store_of
from training.checkpoint import load_checkpoint
from training.evaluate import score_store
from training.lineage import model_set_lineages, model_sets_current
from training.model import check_bands, load_model, pick_device



def score_rows(store, checkpoint: str, rows: tuple[int, int] | None = None, device: str = "auto",
               progress: bool = False) -> pl.DataFrame:
    """Scores, latents and (for a discovery model) cross-band surprises of ok sources ``rows`` (default all)."""
    dev = pick_device(device)
    model, cfg = _model(checkpoint, os.stat(checkpoint).st_mtime_ns, str(dev))
    check_bands(_checkpoint(checkpoint, os.stat(checkpoint).st_mtime_ns), store)
    return score_store(model, cfg, store, "all", dev, progress, surprise=cfg.predicts_hidden_bands, rows=rows)[0]


@functools.lru_cache(maxsize=2)
def _model(checkpoint: str, mtime_ns: int, device: str):
    """The checkpoint's model, loaded once per process for all its parts (keyed by the file's time)."""
    return load_model(checkpoint, None, device)


@functools.lru_cache(maxsize=2)
def _checkpoint(checkpoint: str, mtime_ns: int):
    return load_checkpoint(checkpoint)


def score_part(store, start: int, stop: int, checkpoint: str, device: str = "cpu") -> pl.DataFrame:
    """The model's scores of ok sources ``start:stop`` (store order): a part (:mod:`features.parts`)."""
    return score_rows(store_of(store), checkpoint, (start, stop), device)


def score_checkpoint(store, checkpoint: str, device: str = "auto", runner: PartRunner | None = None):
    """Every ok source of ``store`` scored by the model of ``checkpoint``, in parts: ``(frame, parts)``.

    The parts stay on disk (a killed scoring resumes with them) until ``parts.discard()``.
    """
    runner = runner or PartRunner(jobs=1)
    key = parts_key(catalog_hash=store.snapshot_hash(), checkpoint=checkpoint, checkpoint_hash=file_hash(checkpoint))
    return runner.run(store, "model_scores", key, functools.partial(score_part, checkpoint=checkpoint, device=device))


def build_model_features(store, checkpoint: str, progress: bool = True, n_null: int | None = None, seed: int = 0,
                         device: str = "auto", runner: PartRunner | None = None) -> list[tuple[dict, bool]]:
    """Register ``vae_latent``, ``vae_anomaly`` and, for a discovery model, ``discovery`` (reused when built).

    ``runner``: where the scoring parts run (default: one after the other in this process, each on
    torch's threads; the flows pass their task runner's, e.g. Dask).

    Returns
    -------
    list of (meta, created)
    """
    store = as_store(store)
    checkpoint = str(Path(checkpoint).resolve())
    if not Path(checkpoint).is_file():
        raise BuildError(f"checkpoint {checkpoint} does not exist")
    check_bands(_checkpoint(checkpoint, os.stat(checkpoint).st_mtime_ns), store)
    runner = runner or PartRunner(jobs=1, progress=progress)
    used = []

    def score(target):
        frame, parts = score_checkpoint(target, checkpoint, device, runner)
        used.append(parts)
        return frame

    lineages = model_set_lineages(store, checkpoint, n_null, seed)
    discovery = "discovery" in lineages
    null = lineages["vae_latent"]["null"]
    lineage = lineages["vae_latent"]
    with build_lock(store):
        found = model_sets_current(store, checkpoint, n_null, seed)
        if found:
            return [(meta, False) for meta in found]
        poisson_meta, _ = build_poisson_variability(store, n_null=n_null, seed=seed, runner=runner)
        constants = null_store(store, null, runner.progress)
        null_scores = score(constants).join(total_net_counts(uncalibrated_poisson(constants, runner)), on="source_id")
        # only the columns used: the whole set is ~90 columns of every source
        poisson = (get_feature_set(store, f"poisson_variability@{poisson_meta['version']}")[1]
                   .select("source_id", "variable_fpp", pl.col("^net_counts_b\\d+$")).collect())
        scores = score(store).join(total_net_counts(poisson), on="source_id", how="left")
        fpp = column_fpp(null_scores, scores, "anomaly_score", "n_steps")
        scores = scores.with_columns(pl.Series("anomaly_fpp", fpp).fill_nan(None)).with_columns(
            vae_variable_3sigma=pl.col("anomaly_fpp").fill_null(1.0) <= FPP_3SIGMA)
        latent = scores.select("source_id", pl.col("^mu_\\d+$"))
        vae = scores.select("source_id", "anomaly_score", "anomaly_chi2", "recon_loss", "n_values", "n_steps", "split",
                            "anomaly_fpp", "vae_variable_3sigma")
        results = [write_feature_set(store, "vae_latent", latent, lineage), write_feature_set(store, "vae_anomaly", vae, lineage)]
        if discovery:
            morphology_meta, _ = build_morphology(store, n_null=n_null, seed=seed, runner=runner)
            morphology = (get_feature_set(store, f"morphology@{morphology_meta['version']}")[1]
                          .select("source_id", pl.col("^lbo_fpp_b\\d+$")).collect())
            frame = discovery_frame(scores, null_scores, poisson, morphology, store)
            meta = {"soft_band": band_labels(store.e_min, store.e_max)[softest_band(store.e_min) - 1]}
            results.append(write_feature_set(store, "discovery", frame, lineages["discovery"], metrics=meta))
        elif progress:
            print("discovery: needs a model that predicts a hidden band from the others on counts "
                  "(condition 'band_mean', hide_band > 0, loss 'poisson': configs/discovery.toml) and a store of "
                  "several bands; not built", file=sys.stderr)
        for parts in used:
            parts.discard()
        return results


def discovery_frame(scores: pl.DataFrame, null_scores: pl.DataFrame, poisson: pl.DataFrame, morphology: pl.DataFrame,
                    store) -> pl.DataFrame:
    """The ``discovery`` set's columns (module docstring) from the scores of the store and of its null."""
    n_bands = len(store.e_min)
    soft = softest_band(store.e_min)
    label = band_labels(store.e_min, store.e_max)[soft - 1]
    out = {f"surprise_fpp_b{k}": column_fpp(null_scores, scores, f"surprise_b{k}", "n_steps") for k in range(1, n_bands + 1)}
    frame = (scores.select("source_id", *[c for k in range(1, n_bands + 1) for c in (f"surprise_b{k}", f"surprise_bin_b{k}")])
             .with_columns(pl.Series(name, values).fill_nan(None) for name, values in out.items())
             .join(poisson.select("source_id", "variable_fpp"), on="source_id", how="left")
             .join(morphology.select("source_id", f"lbo_fpp_b{soft}"), on="source_id", how="left"))
    variable, surprise, classical = (significance(pl.col(c)) for c in ("variable_fpp", f"surprise_fpp_b{soft}", f"lbo_fpp_b{soft}"))
    frame = frame.with_columns(discovery_score=pl.min_horizontal(variable, surprise),
                               discovery_score_classical=pl.min_horizontal(variable, classical))
    reasons = [_reason(v, s, b, label) for v, s, b in frame.select("variable_fpp", f"surprise_fpp_b{soft}",
                                                                    f"surprise_bin_b{soft}").iter_rows()]
    return frame.with_columns(pl.Series("discovery_reason", reasons, pl.String)).drop("variable_fpp", f"lbo_fpp_b{soft}")


def _reason(variable_fpp: float | None, surprise_fpp: float | None, peak: int | None, band: str) -> str:
    """Why a source ranks where it does, in words: the weaker of its two conditions decides."""
    var = 1.0 if variable_fpp is None or variable_fpp != variable_fpp else variable_fpp
    sur = 1.0 if surprise_fpp is None or surprise_fpp != surprise_fpp else surprise_fpp
    soft = (f"its {band} band does what the harder bands do not predict (FPP {sur:.1e}, most at bin {peak})"
            if sur < 0.05 else f"its {band} band follows the harder bands (FPP {sur:.2f})")
    variability = f"variable (FPP {var:.1e})" if var < 0.05 else f"not significantly variable (FPP {var:.2f})"
    return f"{variability}; {soft}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.score", description="The model-derived feature sets of a store.")
    p.add_argument("--store", required=True, help="store path or URL")
    p.add_argument("--checkpoint", required=True, help="GRU-VAE checkpoint (.h5)")
    p.add_argument("--null-sources", type=int, default=None, help="simulated constant sources to calibrate on")
    p.add_argument("--seed", type=int, default=0, help="seed of the constant-source simulation")
    p.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu', 'cuda'")
    p.add_argument("--catalog", default=None,
                   help="score the snapshot of this pinned catalog copy (features.build passes its own) instead of the current one")
    p.add_argument("--no-wait", action="store_true", help="exit 2 at once when another feature build holds the store")
    args = p.parse_args(argv)
    store = open_store(args.store, catalog=args.catalog)

    def waiting(holder: str) -> None:
        print(f"another feature build holds {store.url} ({holder}); waiting for it", file=sys.stderr, flush=True)

    with build_lock(store, wait=0.0 if args.no_wait else math.inf, on_wait=waiting):
        results = build_model_features(store, args.checkpoint, progress=sys.stderr.isatty(), n_null=args.null_sources,
                                       seed=args.seed, device=args.device)
    for meta, created in results:
        print(f"{meta['name']}@{meta['version']}: {meta['rows']} sources, {len(meta['columns'])} columns "
              f"({'built' if created else 'unchanged, reused'})")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
