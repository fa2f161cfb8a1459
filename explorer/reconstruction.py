"""The VAE's reconstruction of one light curve, from the checkpoint that built the store's ``vae_anomaly`` set.

torch is imported only when a model set exists and a source is opened, so the explorer runs on
stores without a model (and starts fast).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=2)
def _model(checkpoint: str, n_bands: int):
    import torch

    from training.checkpoint import load_checkpoint, restore
    from training.config import config_from_dict
    from training.model import build_model

    ckpt = load_checkpoint(checkpoint)
    cfg = config_from_dict(ckpt.config)
    model = build_model(cfg, n_bands)
    restore(ckpt, model, rng=False)
    model.eval()
    return model, cfg, torch.device("cpu")


def reconstruction(store, lineage: dict | None, source_id: str, n_points: int) -> np.ndarray | None:
    """(T, K) reconstruction in ct/s (NaN past the model's max_len), or None without a usable checkpoint."""
    checkpoint = (lineage or {}).get("checkpoint")
    if not checkpoint or not Path(checkpoint).exists():
        return None
    try:
        import torch

        from training.evaluate import reconstruct

        model, cfg, device = _model(str(checkpoint), len(store.e_min))
        with torch.no_grad():
            (rec,) = reconstruct(model, store, [source_id], cfg.max_len, cfg.target, device, cfg.time_inputs)
    except Exception as exc:  # a stale or foreign checkpoint must not break the page: no overlay, logged
        log.warning("no reconstruction of %s from %s: %s", source_id, checkpoint, exc)
        return None
    out = np.full((n_points, len(store.e_min)), np.nan)
    n = min(len(rec["recon"]), n_points)
    out[:n] = rec["recon"][:n]
    return out
