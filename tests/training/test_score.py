"""Model-derived feature sets: every ok source is scored, whatever sample the model was trained on."""

from __future__ import annotations

import polars as pl
import pytest

from common import cli
from etl.ingest import ingest
from etl.store import open_store
from etl.synth import make_archive
from features import get_feature_set
from training.fit import main as fit
from training.score import build_model_features

QUICK = ["--wandb-mode", "disabled", "--no-progress", "--no-evaluate", "--latent", "8", "--hidden", "16", "--lr", "1e-3"]


@pytest.fixture(scope="module")
def sample_model(train_store, tmp_path_factory):
    """A model trained on a --limit 50 sample of the 400-source store."""
    run = tmp_path_factory.mktemp("limit") / "run"
    assert cli.run(fit, ["--store", train_store, "--epochs", "1", "--limit", "50", "--run-dir", str(run), *QUICK]) == 0
    return str(run / "checkpoints" / "best.h5")


def test_a_model_trained_on_a_sample_scores_every_source(train_store, sample_model, monkeypatch):
    """--limit N once gave vae_latent / vae_anomaly rows for N random sources, and the null table N constants."""
    import training.plots

    def no_figures(*args, **kwargs):
        raise AssertionError("scoring for a feature set drew a figure nobody sees")

    monkeypatch.setattr(training.plots, "save", no_figures)
    results = build_model_features(train_store, sample_model, progress=False, n_null=2000)
    assert [(m["name"], created) for m, created in results] == [("vae_latent", True), ("vae_anomaly", True)]
    n_ok = len(open_store(train_store))
    anomaly = get_feature_set(train_store, "vae_anomaly")[1].collect()
    assert anomaly.height == n_ok == 400 and anomaly["anomaly_fpp"].null_count() == 0
    assert set(anomaly["split"]) == {"train", "val", "test"}
    assert get_feature_set(train_store, "vae_latent")[1].collect().height == n_ok
    assert "recon_loss" in anomaly.columns and "recon_sse" not in anomaly.columns


def test_evaluate_on_a_store_without_sources(tmp_path, sample_model, capsys):
    """training.evaluate on an empty store talked about "0 bands ( keV)"."""
    from training.evaluate import main as evaluate

    make_archive(tmp_path / "bad", n=0, bad=3, progress=False)
    ingest(tmp_path / "bad", tmp_path / "s", progress=False)
    assert cli.run(evaluate, ["--checkpoint", sample_model, "--store", str(tmp_path / "s")]) == 2
    assert "the store has no ingested light curves" in capsys.readouterr().err


def test_scores_are_the_loss_terms(train_store, sample_model):
    from training.score import score_checkpoint

    scores = score_checkpoint(open_store(train_store), sample_model)
    per_value = scores["recon_loss"] / scores["n_values"].cast(pl.Float64)
    assert (per_value - scores["anomaly_score"]).abs().max() < 1e-5  # mse loss: the score is the term per value
