"""The ``train-vae`` flow: one task that runs :mod:`training.fit` with the given settings."""

from __future__ import annotations

from typing import Any

from prefect import flow, task


@task(name="fit-gru-vae")
def fit_task(argv: list[str]) -> dict:
    from training.fit import Trainer, resolve

    cfg, resume_from = resolve(argv)
    return Trainer(cfg, resume_from).fit()


@flow(name="train-vae", log_prints=True)
def train_vae(store: str, epochs: int = 2, run_dir: str | None = None, options: dict[str, Any] | None = None) -> dict:
    """Train the GRU-VAE on ``store``; ``options`` holds any other training.fit key (``{"lr": 1e-3}``)."""
    argv = ["--store", store, "--epochs", str(epochs), "--no-progress"]
    if run_dir:
        argv += ["--run-dir", run_dir]
    for key, value in (options or {}).items():
        argv += [f"--{key}", str(value)]
    return fit_task(argv)
