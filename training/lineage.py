"""What the model-derived sets of a checkpoint are and what they are computed from, without torch.

Deciding whether a store's model sets are current, or a training run is finished, needs only the
checkpoint's metadata (h5py) and the feature store: a flow asks here before it starts a process
that imports torch, so a rerun with nothing new costs milliseconds, not a torch import.
"""

from __future__ import annotations

from pathlib import Path

from features.builders import null_lineage
from features.featurestore import as_store, file_hash, find_version
from training.checkpoint import read_checkpoint_info
from training.config import config_from_dict

MODEL_SETS = ("vae_latent", "vae_anomaly")
#: Bump when the discovery set's definitions change (part of its lineage).
DISCOVERY_VERSION = 1


def model_lineage(store, checkpoint: str, null: dict) -> dict:
    """What the model sets were computed from: the store's snapshot, the checkpoint and the null."""
    return {"catalog_hash": store.snapshot_hash(), "checkpoint": checkpoint, "checkpoint_hash": file_hash(checkpoint),
            "config": read_checkpoint_info(checkpoint)["config"], "null": null}


def model_set_lineages(store, checkpoint: str, n_null: int | None = None, seed: int = 0) -> dict[str, dict]:
    """Set name -> the lineage its current version has: ``vae_latent``, ``vae_anomaly`` and, for a model that
    predicts hidden bands on a store of several bands, ``discovery``."""
    store = as_store(store)
    checkpoint = str(Path(checkpoint).resolve())
    lineage = model_lineage(store, checkpoint, null_lineage(store, n_null, seed))
    out = {name: lineage for name in MODEL_SETS}
    if config_from_dict(read_checkpoint_info(checkpoint)["config"]).predicts_hidden_bands and len(store.e_min) > 1:
        out["discovery"] = lineage | {"discovery_version": DISCOVERY_VERSION}
    return out


def model_sets_current(store, checkpoint: str, n_null: int | None = None, seed: int = 0) -> list[dict] | None:
    """The metadata of every model set when all are current for this store and checkpoint, else None."""
    store = as_store(store)
    found = [find_version(store, name, lineage) for name, lineage in model_set_lineages(store, checkpoint, n_null, seed).items()]
    return found if all(found) else None


def finished_run(run_dir: str | Path, epochs: int) -> str | None:
    """The best checkpoint of a run directory whose training reached ``epochs`` and ended, else None."""
    run = Path(run_dir)
    last = run / "checkpoints" / "last.h5"
    if last.is_file() and (run / "summary.json").is_file() and read_checkpoint_info(last)["epoch"] >= epochs:
        return str(run / "checkpoints" / "best.h5")
    return None
