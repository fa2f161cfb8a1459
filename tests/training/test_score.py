"""Model-derived feature sets: every ok source is scored, whatever sample the model was trained on."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from common import cli
from etl.ingest import ingest
from etl.store import open_store
from etl.synth import make_archive
from features import get_feature_set, list_feature_sets
from training.fit import main as fit
from training.score import build_model_features

ROOT = Path(__file__).resolve().parents[2]
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


def _build_with_checkpoint(store: str, checkpoint: str, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "features.build", "--store", store, "--checkpoint", checkpoint, "--null-sources", "2000", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_scoring_dies_with_a_killed_build(train_store, sample_model, tmp_path):
    """kill -9 of ``features.build --checkpoint`` while ``training.score`` runs: the scoring process goes too."""
    import psutil

    store = tmp_path / "store"
    shutil.copytree(train_store, store)
    build = _build_with_checkpoint(str(store), sample_model)
    scorer = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and build.poll() is None and scorer is None:
        scorer = next((c for c in psutil.Process(build.pid).children() if "training.score" in " ".join(c.cmdline())), None)
        time.sleep(0.05)
    assert scorer is not None, build.communicate()[0][-3000:]
    build.kill()
    build.wait(30)
    gone, alive = psutil.wait_procs([scorer], timeout=10)
    assert scorer in gone and not alive
    listed = list_feature_sets(str(store))  # whatever the scoring had written is whole: every set lists its rows
    assert (listed["rows"] == 400).all()


def test_one_build_reads_one_snapshot_beside_an_ingest(tmp_path, sample_model):
    """An ingest committing every fraction of a second beside ``features.build --checkpoint``: every set of
    the build, classical and model, is computed on the same catalog snapshot (the same sources)."""
    make_archive(tmp_path / "a", n=3000, seed=31, flavour="rebinned", progress=False)
    first = tmp_path / "first"
    first.mkdir()
    for f in sorted((tmp_path / "a").glob("*.fits"))[:400]:
        shutil.move(f, first / f.name)
    ingest(first, tmp_path / "s", progress=False)  # 400 sources before the build starts
    writer = subprocess.Popen([sys.executable, "-m", "etl.ingest", str(tmp_path / "a"), "--store", str(tmp_path / "s"),
                               "--flush-seconds", "0.2", "--batch-size", "50", "--quiet"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    build = _build_with_checkpoint(str(tmp_path / "s"), sample_model)
    out = build.communicate(timeout=600)[0]
    writer.communicate(timeout=600)
    assert build.returncode == 0, out[-3000:]
    listed = list_feature_sets(str(tmp_path / "s"))
    hashes = {m["lineage"]["catalog_hash"] for m in (get_feature_set(str(tmp_path / "s"), n)[0] for n in listed["name"])}
    rows = set(listed["rows"].to_list())
    assert len(hashes) == 1 and len(rows) == 1, listed
    assert 400 <= rows.pop() <= 3000


def test_a_build_on_an_empty_or_all_rejected_store_is_one_error_line(tmp_path, capsys):
    from features.build import main as build

    make_archive(tmp_path / "bad", n=0, bad=4, progress=False)
    ingest(tmp_path / "bad", tmp_path / "s", progress=False)
    assert cli.run(build, ["--store", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no ok sources" in err and err.count("\n") == 1
    assert not (tmp_path / "s" / "features").exists()  # nothing written


def test_a_build_on_a_read_only_store_is_one_error_line(train_store, tmp_path, monkeypatch, capsys):
    """The store cannot take the build's lock file (a read-only file system, or a store the user may only read;
    simulated: this suite runs as root, whom permissions do not stop): one error line, exit 2."""
    import errno

    from features.build import main as build

    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if str(path).endswith(".features.lock") and flags & (os.O_RDWR | os.O_WRONLY | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    assert cli.run(build, ["--store", train_store]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Read-only file system" in err and "read-only?" in err and err.count("\n") == 1
