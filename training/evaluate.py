"""Score light curves with a trained GRU-VAE: test loss, anomaly scores and latent means.

    python -m training.evaluate --checkpoint RUN/checkpoints/best.h5 [--split test|val|train|all] [--out FILE]

``--split all`` scores every ok source of the store (the training run's ``--limit`` sample and
``--min-len`` do not apply: a model encodes any light curve). Writes Parquet keyed by
``source_id``: ``split``, ``n_steps``, ``recon_loss`` (the training loss's reconstruction term:
masked squared error in scaled units, chi2 with ``--loss chi2``, the Poisson negative
log-likelihood with ``--loss poisson``), ``n_values`` (valid elements), ``anomaly_score`` (per
valid element, comparable across lengths: recon_loss / n_values, or with ``--loss poisson`` the
Poisson deviance per usable bin), ``anomaly_chi2`` (the
reduced chi2 of the band rates against the reconstruction, residuals divided by the mean of
the lower and upper errors: the same score weighted by the measurement errors, so that faint,
noisy sources do not dominate it) and ``mu_0`` ...
``mu_{L-1}`` (latent means). Also saves a PCA of the latents and the worst-reconstructed light
curves as PNG beside it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import polars as pl
import torch

from common import cli
from common.progress import track
from etl.lightcurve import band_labels
from etl.store import open_store
from training.checkpoint import read_checkpoint_info
from training.data import (
    SPLITS,
    BucketedLightCurves,
    DataError,
    SourceTable,
    feature_options,
    features_from_batch,
    hide_band,
    model_inputs,
    read_columns,
    select_splits,
)
from training.model import RNNVAE, batch_elbo, expected_counts, load_model, per_step, pick_device, poisson_deviance

#: Light curves per batch when scoring (at least): no gradients are kept, so batches larger than
#: training's cost little memory and spread the per-batch overhead of the Python loop.
SCORE_BATCH = 512


@torch.no_grad()
def score_dataset(model: RNNVAE, ds: BucketedLightCurves, device: torch.device, kld_coef: float,
                  split: str = "", progress: bool = False, loss: str = "mse", surprise: bool = False) -> tuple[pl.DataFrame, float]:
    """Per-source scores and latents of every source of ``ds``, and the mean loss per light curve.

    With ``surprise`` (a model that can hide bands: ``TrainConfig.predicts_hidden_bands``) also, per band k,
    ``surprise_b{k}``: the Poisson deviance of band k's counts when band k is hidden from the
    encoder, i.e. how surprising the band is given the other bands (the model's cross-band
    prediction), and ``surprise_bin_b{k}``: the bin where it is largest.
    """
    model.eval()
    parts, loss_sum, count = [], 0.0, 0
    for batch in track(ds, len(ds), f"score {split}".strip(), "batch", show=progress, leave=False):
        x, lengths, cond, steps = model_inputs(batch, device)
        recon, mu, logvar = model(x, lengths, cond, steps)
        out = batch_elbo(recon, mu, logvar, batch, device, kld_coef, loss)
        b = x.shape[0]
        loss_sum += float(out["loss"]) * b
        count += b
        recon_loss = out["per_source_recon"].cpu().numpy()
        k = batch["sigma"].shape[-1]  # bands: the first K outputs are the band rates
        chi2 = weighted_chi2(recon.float().cpu()[..., :k], batch["y"][..., :k], batch["target_mask"][..., :k], batch["sigma"])
        n_values = out["per_source_count"].cpu().numpy()
        # the anomaly score is the training loss's reconstruction term per valid value; for the
        # Poisson loss its deviance per bin (comparable across lengths and brightness)
        per_value = out["per_source_deviance"].cpu().numpy() if loss == "poisson" else recon_loss
        frame = {
            "source_id": [ds.sources.source_ids[i] for i in batch["rows"].tolist()],
            "n_steps": batch["lengths"].numpy(),
            "recon_loss": recon_loss,
            "n_values": n_values,
            "anomaly_score": per_value / np.maximum(n_values, 1),
            "anomaly_chi2": chi2,
        }
        mu_np = mu.float().cpu().numpy()
        frame.update({f"mu_{j}": mu_np[:, j] for j in range(mu_np.shape[1])})
        if surprise:
            frame.update(band_surprise(model, batch, device, (x, lengths, cond, steps)))
        parts.append(pl.DataFrame(frame))
    df = pl.concat(parts).with_columns(pl.lit(split).alias("split")) if parts else pl.DataFrame()
    return df, loss_sum / max(count, 1)


def band_surprise(model: RNNVAE, batch: dict, device, inputs: tuple) -> dict[str, np.ndarray]:
    """``surprise_b{k}`` (B,) and ``surprise_bin_b{k}`` (B,) of each band (see :func:`score_dataset`)."""
    x, lengths, cond, steps = inputs
    n_bands = cond.shape[1] // 2
    counts, mask = batch["counts"].to(device), batch["count_mask"].to(device)
    out = {}
    for k in range(n_bands):
        xh, ch = hide_band(x, cond, torch.full((x.shape[0],), k, device=device))
        recon, _, _ = model(xh, lengths, ch, steps)
        expected = expected_counts(recon, batch["scale"].to(device), batch["background"].to(device), batch["exposure"].to(device), mask)
        dev = poisson_deviance(counts, expected, mask)[..., k]  # (B, T)
        out[f"surprise_b{k + 1}"] = dev.sum(1).cpu().numpy()
        out[f"surprise_bin_b{k + 1}"] = dev.argmax(1).cpu().numpy().astype(np.int64)
    return out


def weighted_chi2(recon: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, sigma: torch.Tensor) -> np.ndarray:
    """Per-source reduced chi2 of targets against reconstructions.

    Parameters
    ----------
    recon, target, sigma : Tensor, shape (B, T, K)
    mask : Tensor of bool, shape (B, T, K)

    Returns
    -------
    ndarray, shape (B,)
        sum(((recon - target) / sigma)^2) / n over valid elements with sigma > 0 (NaN if none).
    """
    use = mask & (sigma > 0)
    resid = torch.where(use, (recon - target) / torch.where(use, sigma, torch.ones(())), torch.zeros(()))
    n = use.sum(dim=(1, 2)).numpy()
    total = (resid * resid).sum(dim=(1, 2)).numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)


@torch.no_grad()
def reconstruct(model: RNNVAE, store, source_ids: list[str], cfg, device: torch.device) -> list[dict]:
    """Inputs and reconstructions in ct/s for plotting (time in days since the first bin)."""
    model.eval()
    options = feature_options(cfg) | {"poisson": False}  # the rates alone: the reconstruction is in ct/s
    batch = store.read_many(source_ids, columns=tuple(dict.fromkeys(("time",) + read_columns(time_inputs=cfg.time_inputs))))
    arrays = features_from_batch(batch, cfg.max_len, cfg.target, **options)
    recon, _, _ = model(*model_inputs({k: torch.from_numpy(v) for k, v in arrays.items()}, device))
    k = arrays["sigma"].shape[-1]
    recon = recon.float().cpu().numpy()[..., :k] * per_step(arrays["scale"])
    out = []
    for i, sid in enumerate(source_ids):
        n = int(arrays["lengths"][i])
        cols = batch[i]
        t = cols["time"][:n]
        out.append({"source_id": sid, "time": (t - t[0]) / 86400.0, "rate": cols["rate"][:n],
                    "errm": cols["rate_errm"][:n], "errp": cols["rate_errp"][:n], "recon": recon[i, :n]})
    return out


def sources_to_score(store, cfg, split: str, rows: tuple[int, int] | None = None) -> dict[str, SourceTable]:
    """The sources of ``split`` as training drew them, or for ``"all"`` every ok source of the store
    (``rows``: only ok sources ``start:stop`` in store order)."""
    if split == "all":  # every source: no sample, no minimum length (a model encodes any light curve)
        catalog = store.catalog().collect() if rows is None else store.ok_sources()[rows[0] : rows[1]]
        return select_splits(catalog, limit=0, seed=cfg.seed, min_len=1)
    return {split: select_splits(store.catalog().collect(), cfg.limit, cfg.seed, cfg.min_len)[split]}


def score_store(model: RNNVAE, cfg, store, split: str = "all", device: torch.device | str = "cpu",
                progress: bool = False, surprise: bool = False, rows: tuple[int, int] | None = None) -> tuple[pl.DataFrame, float]:
    """Scores and latents of ``split``'s sources (``"all"``: every ok source), and the mean loss per light curve.

    ``surprise``: add the cross-band surprises (:func:`score_dataset`). ``rows``: only the ok sources
    ``start:stop`` in store order (a part of a flow's work; ``split`` must be ``"all"``).

    Raises
    ------
    DataError
        When the store has no light curves, or the split none.
    """
    if len(store) == 0:
        raise DataError(f"{store.url}: the store has no ingested light curves to score")
    frames, losses, counts = [], [], []
    for name, sources in sources_to_score(store, cfg, split, rows).items():
        if len(sources) == 0:
            continue
        ds = BucketedLightCurves(store.url, sources, max(cfg.batch_size, SCORE_BATCH), cfg.max_len, cfg.target, shuffle=False,
                                 cache_mib=cfg.cache_mib, storage_options=store.storage_options or None, store=store,
                                 **feature_options(cfg))
        df, loss = score_dataset(model, ds, torch.device(device), cfg.kld_coef, name, progress, cfg.loss, surprise)
        frames.append(df)
        losses.append(loss * len(sources))
        counts.append(len(sources))
    if not frames:
        raise DataError(f"{store.url}: no sources in split {split!r}")
    return pl.concat(frames).sort("anomaly_score", descending=True), sum(losses) / max(sum(counts), 1)


def evaluate_checkpoint(checkpoint: str, store_url: str | None = None, split: str = "test", out: str | None = None,
                        top: int = 16, device: str = "auto", progress: bool = True) -> tuple[Path, pl.DataFrame, float]:
    """Score one split (or ``all``) with a checkpoint; write Parquet and figures.

    Returns
    -------
    (parquet path, scores, mean loss per light curve)
    """
    info = read_checkpoint_info(checkpoint)
    store = open_store(store_url or info["config"]["store"], cache_bytes=int(info["config"].get("cache_mib", 256)) * 2**20)
    if len(store) == 0:
        raise DataError(f"{store.url}: the store has no ingested light curves to score")
    dev = pick_device(device)
    model, cfg = load_model(checkpoint, store, dev)
    scores, loss = score_store(model, cfg, store, split, dev, progress)
    path = Path(out) if out else Path(checkpoint).resolve().parent.parent / f"scores_{split}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    scores.write_parquet(path)
    if top:
        write_figures(model, cfg, store, scores, path, split, top, dev)
    return path, scores, loss


def write_figures(model: RNNVAE, cfg, store, scores: pl.DataFrame, path: Path, split: str, top: int, device) -> None:
    """The latent PCA and the ``top`` worst reconstructions as PNG beside ``path``."""
    from training import plots

    mu = scores.select(pl.col("^mu_\\d+$")).to_numpy()
    if len(scores) >= 3:
        plots.save(plots.latent_figure(mu, scores["anomaly_score"].to_numpy(), "anomaly score"), path.with_name(f"{path.stem}_latent_pca.png"))
    worst = scores["source_id"][: min(top, len(scores))].to_list()
    records = reconstruct(model, store, worst, cfg, device)
    for rec, score in zip(records, scores["anomaly_score"][: len(worst)]):
        rec["score"] = float(score)
    bands = band_labels(store.e_min, store.e_max)
    plots.save(plots.reconstruction_figure(records, bands, f"{len(worst)} highest anomaly scores ({split})"), path.with_name(f"{path.stem}_worst.png"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description="Anomaly scores and latents of a trained GRU-VAE.")
    p.add_argument("--checkpoint", required=True, help="checkpoint .h5 (e.g. RUN/checkpoints/best.h5)")
    p.add_argument("--store", help="store path or URL (default: the one the model was trained on)")
    p.add_argument("--split", default="test", choices=[*SPLITS, "all"], help="'all': every ok source of the store")
    p.add_argument("--out", help="output Parquet (default RUN/scores_<split>.parquet)")
    p.add_argument("--top", type=int, default=16, help="worst-reconstructed light curves to plot (0: no figures)")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    path, scores, loss = evaluate_checkpoint(args.checkpoint, args.store, args.split, args.out, args.top, args.device)
    print(f"{args.split}: {len(scores)} sources, loss per light curve {loss:.4g}; scores -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
