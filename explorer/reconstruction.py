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
def _model(checkpoint: str):
    from training.model import load_model

    return load_model(checkpoint)


def reconstruction(store, lineage: dict | None, source_id: str, n_points: int) -> np.ndarray | None:
    """(T, K) reconstruction in ct/s (NaN past the model's max_len), or None without a usable checkpoint."""
    checkpoint = (lineage or {}).get("checkpoint")
    if not checkpoint or not Path(checkpoint).exists():
        return None
    try:
        import torch

        from training.evaluate import reconstruct

        model, cfg = _model(str(checkpoint))
        with torch.no_grad():
            (rec,) = reconstruct(model, store, [source_id], cfg, torch.device("cpu"))
    except Exception as exc:  # a stale or foreign checkpoint must not break the page: no overlay, logged
        log.warning("no reconstruction of %s from %s: %s", source_id, checkpoint, exc)
        return None
    out = np.full((n_points, len(store.e_min)), np.nan)
    n = min(len(rec["recon"]), n_points)
    out[:n] = rec["recon"][:n]
    return out
