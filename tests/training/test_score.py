"""Model-derived feature sets: every ok source is scored, whatever sample the model was trained on."""

from __future__ import annotations

import numpy as np
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
    """A model trained on a --limit N sample scores every ok source, and the null table uses every constant."""
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

    scores, parts = score_checkpoint(open_store(train_store), sample_model)
    parts.discard()
    per_value = scores["recon_loss"] / scores["n_values"].cast(pl.Float64)
    assert (per_value - scores["anomaly_score"]).abs().max() < 1e-5  # mse loss: the score is the term per value


DISCOVERY = ["--config", "configs/discovery.toml", "--epochs", "2", "--hidden", "16", "--latent", "4", "--wandb-mode", "disabled",
             "--no-progress", "--no-evaluate"]


@pytest.fixture(scope="module")
def rare_store(tmp_path_factory):
    """300 sources, a fifth of them with rare morphologies, and their classical sets."""
    from features.builders import build_morphology, build_poisson_variability

    root = tmp_path_factory.mktemp("rare")
    make_archive(root / "a", n=300, seed=7, flavour="rebinned", rare=0.2, progress=False)
    ingest(root / "a", root / "s", progress=False)
    build_poisson_variability(root / "s", n_null=2000)
    build_morphology(root / "s", n_null=2000)
    return str(root / "s")


def test_discovery_set_build_reuse_and_versions(rare_store, tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    import os

    cwd = os.getcwd()
    os.chdir(root)  # the config path is relative to the repository, as the README writes it
    try:
        assert cli.run(fit, ["--store", rare_store, "--run-dir", str(tmp_path / "run"), *DISCOVERY]) == 0
    finally:
        os.chdir(cwd)
    ckpt = str(tmp_path / "run" / "checkpoints" / "best.h5")
    results = build_model_features(rare_store, ckpt, progress=False, n_null=2000)
    assert [(m["name"], created) for m, created in results] == [("vae_latent", True), ("vae_anomaly", True), ("discovery", True)]
    meta, data = get_feature_set(rare_store, "discovery")
    frame = data.collect()
    assert frame.height == 300 and meta["metrics"]["soft_band"] == "0.2-0.6 keV"
    for col in ("discovery_score", "discovery_score_classical", "surprise_b1", "surprise_fpp_b3", "surprise_bin_b2", "discovery_reason"):
        assert col in frame.columns, col
    assert (frame["discovery_score"] >= 0).all() and frame["surprise_fpp_b1"].is_between(0, 1).all()
    assert frame["discovery_reason"].str.contains("keV band").all()
    # the score is the smaller of the two significances it names
    poisson = get_feature_set(rare_store, "poisson_variability")[1].collect().select("source_id", "variable_fpp")
    check = frame.join(poisson, on="source_id").with_columns(
        expect=pl.min_horizontal(-pl.col("variable_fpp").fill_null(1.0).log10(), -pl.col("surprise_fpp_b1").log10()))
    np.testing.assert_allclose(check["discovery_score"], check["expect"], rtol=1e-9, atol=1e-12)
    again = build_model_features(rare_store, ckpt, progress=False, n_null=2000)
    assert [(m["name"], m["version"], created) for m, created in again] == [(m["name"], m["version"], False) for m, _ in results]
    # a seed-style model has no band to hide: vae sets only, and a message
    seed_run = tmp_path / "seed"
    assert cli.run(fit, ["--store", rare_store, "--epochs", "1", "--run-dir", str(seed_run), *QUICK]) == 0
    names = [m["name"] for m, _ in build_model_features(rare_store, str(seed_run / "checkpoints" / "best.h5"), progress=False, n_null=2000)]
    assert names == ["vae_latent", "vae_anomaly"] and get_feature_set(rare_store, "vae_anomaly")[0]["version"] == 2
    assert get_feature_set(rare_store, "discovery")[0]["version"] == 1
