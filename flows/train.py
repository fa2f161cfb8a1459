"""The ``train-vae`` flow: one task that runs :mod:`training.fit` with the given settings."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task

from common.progress import forward_to


@task(name="fit-gru-vae")
def fit_task(values: dict) -> dict:
    """Train with a config built from ``values`` (TrainConfig keys), resuming when asked; epochs and ETA in the run's log."""
    from training.config import config_from_values
    from training.fit import Trainer, resolve_config

    cfg, resume_from = resolve_config(config_from_values(values), lambda saved: config_from_values({**saved, **values}))
    with forward_to(get_run_logger()):
        return Trainer(cfg, resume_from).fit()


@flow(name="train-vae", log_prints=True)
def train_vae(store: str, epochs: int = 2, run_dir: str | None = None, options: dict[str, Any] | None = None) -> dict:
    """Train the GRU-VAE on ``store``; ``options`` holds any other training.fit key (``{"lr": 1e-3}``)."""
    values = {"store": store, "epochs": epochs, "progress": False, **(options or {})}
    if run_dir:
        values["run_dir"] = run_dir
    return fit_task(values)
