"""python -m training.fit end to end: outputs, wandb offline, bad input, NaN, kill -9 + resume, DDP."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import zarr

import training.fit as fit
from common import cli
from training.evaluate import main as evaluate_main

ROOT = Path(__file__).resolve().parents[2]
QUICK = ["--lr", "1e-3", "--no-progress", "--batch-size", "16", "--threads", "1"]


def metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def test_two_epoch_run_with_wandb_offline(train_store, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    run = tmp_path / "run"
    threads = torch.get_num_threads()
    assert cli.run(fit.main, ["--store", train_store, "--epochs", "2", "--run-dir", str(run), "--plot-every", "1", *QUICK]) == 0
    assert torch.get_num_threads() == threads  # the run's choice does not outlive it
    out = capsys.readouterr().out
    assert "done: 2 epochs" in out and "test loss" in out and "best checkpoint" in out
    rows = metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(r["lr"] == 1e-3 and r["val_loss"] > 0 and r["steps_per_s"] > 0 for r in rows)
    assert {"last.h5", "best.h5"} <= {p.name for p in (run / "checkpoints").iterdir()}
    plots = {p.name for p in (run / "training_plots").iterdir()}
    assert {"reconstruction_epoch_000001.png", "reconstruction_epoch_000002.png", "loss_curves.png"} <= plots
    config = (run / "config.toml").read_text()
    assert 'kld_coef = 0.001' in config
    chosen = int(re.search(r"^threads = (\d+)$", config, re.M).group(1))
    assert 1 <= chosen <= threads  # timed at the start and saved, so --resume uses the same
    scores = pl.read_parquet(run / "scores_test.parquet")
    assert {"source_id", "anomaly_score", "mu_0", "mu_39", "n_steps"} <= set(scores.columns)
    assert scores["anomaly_score"].is_finite().all()
    offline = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert offline, "wandb offline run files expected"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_sources"] == scores.height


def test_evaluate_cli(train_store, tmp_path):
    run = tmp_path / "run"
    assert cli.run(fit.main, ["--store", train_store, "--epochs", "1", "--run-dir", str(run), "--wandb-mode", "disabled", "--no-evaluate",
                     "--loss", "chi2", *QUICK]) == 0
    rows = metrics(run)
    assert len(rows) == 1 and rows[0]["train_loss"] > 0
    out = tmp_path / "all.parquet"
    assert cli.run(evaluate_main, ["--checkpoint", str(run / "checkpoints" / "best.h5"), "--split", "all", "--out", str(out), "--top", "4"]) == 0
    scores = pl.read_parquet(out)
    assert set(scores["split"]) == {"train", "val", "test"}
    assert scores["source_id"].is_unique().all()
    assert (tmp_path / "all_worst.png").exists() and (tmp_path / "all_latent_pca.png").exists()


@pytest.mark.parametrize("make_store, message", [
    (lambda p: p / "missing", "not a light-curve store"),
    (lambda p: zarr.open_group(p / "other", mode="w").attrs.update({"schema_version": 9}) or p / "other", "schema version 9"),
])
def test_bad_stores_fail_fast(tmp_path, capsys, make_store, message):
    store = make_store(tmp_path)
    assert cli.run(fit.main, ["--store", str(store), "--epochs", "1", "--run-dir", str(tmp_path / "r"), "--wandb-mode", "disabled"]) == 2
    assert message in capsys.readouterr().err


def test_empty_store_and_no_sources_left(train_store, tmp_path, capsys):
    from etl.ingest import ingest

    (tmp_path / "empty_archive").mkdir()
    ingest(tmp_path / "empty_archive", tmp_path / "empty", progress=False)
    assert cli.run(fit.main, ["--store", str(tmp_path / "empty"), "--run-dir", str(tmp_path / "r1"), "--wandb-mode", "disabled"]) == 2
    assert "no ingested light curves" in capsys.readouterr().err
    assert cli.run(fit.main, ["--store", train_store, "--min-len", "100000", "--run-dir", str(tmp_path / "r2"), "--wandb-mode", "disabled"]) == 2
    assert "no training sources left after filtering" in capsys.readouterr().err


def test_resume_with_other_architecture_fails(train_store, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.run(fit.main, ["--store", train_store, "--epochs", "1", "--run-dir", str(run), "--wandb-mode", "disabled", "--no-evaluate", *QUICK]) == 0
    assert cli.run(fit.main, ["--resume", str(run), "--epochs", "2", "--hidden", "32"]) == 2
    assert "does not match the model's" in capsys.readouterr().err


def test_nan_loss_stops_and_keeps_last_good_checkpoint(train_store, tmp_path, capsys, monkeypatch):
    real = fit.batch_elbo
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        out = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] > 30:  # well into the second epoch
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(fit, "batch_elbo", poisoned)
    run = tmp_path / "run"
    code = cli.run(fit.main, ["--store", train_store, "--epochs", "5", "--run-dir", str(run), "--wandb-mode", "disabled", *QUICK])
    assert code == 3
    err = capsys.readouterr().err
    assert "loss became NaN" in err and "last.h5" in err
    from training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(run / "checkpoints" / "last.h5")
    assert ckpt.epoch >= 1
    assert len(ckpt.model_state) > 10 and all(torch.isfinite(t).all() for t in ckpt.model_state.values())


def _fit_cmd(store, run, epochs):
    return [sys.executable, "-m", "training.fit", "--store", store, "--epochs", str(epochs), "--run-dir", str(run),
            "--wandb-mode", "disabled", "--no-evaluate", "--plot-every", "1000", *QUICK]


@pytest.mark.slow
def test_kill_9_and_resume_reproduces_losses(train_store, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    epochs = 8
    full = subprocess.run(_fit_cmd(train_store, tmp_path / "full", epochs), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr
    run = tmp_path / "killed"
    proc = subprocess.Popen(_fit_cmd(train_store, run, epochs), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        path = run / "metrics.jsonl"
        if path.exists() and len(path.read_text().splitlines()) >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(metrics(run))
    assert done_before < epochs
    resumed = subprocess.run([sys.executable, "-m", "training.fit", "--resume", str(run)], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    a, b = metrics(tmp_path / "full"), metrics(run)
    assert [r["epoch"] for r in b] == list(range(1, epochs + 1))
    for ra, rb in zip(a, b):
        assert ra["train_loss"] == rb["train_loss"], ra["epoch"]
        assert ra["val_loss"] == rb["val_loss"], ra["epoch"]
        assert ra["step"] == rb["step"]


@pytest.mark.slow
def test_ddp_two_cpu_ranks(train_store, tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    run = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", "29533",
                           "-m", "training.fit", "--store", train_store, "--epochs", "2", "--run-dir", str(run),
                           "--wandb-mode", "disabled", *QUICK], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world size 2" in proc.stdout
    rows = metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2]
    single = select_train_count(train_store)
    assert rows[0]["curves"] == single  # every training source once per epoch across both ranks
    assert (run / "checkpoints" / "best.h5").exists()


def select_train_count(store):
    from etl.store import open_store
    from training.data import select_sources

    return len(select_sources(open_store(store).catalog().collect(), "train"))


def test_resume_writes_where_it_points(train_store, tmp_path):
    """After cp -r runs/A runs/B, --resume runs/B continued in runs/A."""
    a, b = tmp_path / "A", tmp_path / "B"
    assert cli.run(fit.main, ["--store", train_store, "--epochs", "1", "--run-dir", str(a), "--wandb-mode", "disabled", "--no-evaluate", *QUICK]) == 0
    shutil.copytree(a, b)
    before = {p: p.stat().st_mtime_ns for p in a.rglob("*") if p.is_file()}
    assert cli.run(fit.main, ["--resume", str(b), "--epochs", "2"]) == 0
    assert [r["epoch"] for r in metrics(b)] == [1, 2]
    assert [r["epoch"] for r in metrics(a)] == [1]
    assert {p: p.stat().st_mtime_ns for p in a.rglob("*") if p.is_file()} == before
    assert 'run_dir = "' + str(b) in (b / "config.toml").read_text()


def test_damaged_checkpoint_is_refused_by_evaluate_and_resume(train_store, tmp_path, capsys):
    """A flipped bit in a weight: training.evaluate and --resume refuse the checkpoint."""
    from tests.training.test_checkpoint import _flip_bit

    run = tmp_path / "run"
    assert cli.run(fit.main, ["--store", train_store, "--epochs", "1", "--run-dir", str(run), "--wandb-mode", "disabled", "--no-evaluate", *QUICK]) == 0
    _flip_bit(run / "checkpoints" / "last.h5", "model/head.weight")
    _flip_bit(run / "checkpoints" / "best.h5", "model/head.weight")
    assert cli.run(evaluate_main, ["--checkpoint", str(run / "checkpoints" / "best.h5"), "--out", str(tmp_path / "x.parquet")]) == 2
    assert "checksum mismatch" in capsys.readouterr().err
    assert cli.run(fit.main, ["--resume", str(run), "--epochs", "2"]) == 2
    assert "checksum mismatch" in capsys.readouterr().err


def test_one_source_store_trains_and_ends_cleanly(tmp_path, capsys):
    """A one-source store trained an epoch, then exited 2 on an empty test split."""
    from etl.fitswriter import bintable_fits_bytes
    from etl.ingest import ingest
    from etl.synth import lightcurve_header, simulate_source
    from training.data import split_of

    sid = next(f"solo{i}" for i in range(100) if split_of([f"solo{i}"])[0] == "train")
    cols, _ = simulate_source(np.random.default_rng(0), "rebinned", 8, "flare")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "solo.fits").write_bytes(bintable_fits_bytes(cols, header=lightcurve_header(sid, 10.0, 10.0, cols)))
    ingest(tmp_path / "a", tmp_path / "s", progress=False)
    assert cli.run(fit.main, ["--store", str(tmp_path / "s"), "--epochs", "1", "--run-dir", str(tmp_path / "r"), "--wandb-mode", "disabled", *QUICK]) == 0
    assert "no sources in the test split" in capsys.readouterr().out
