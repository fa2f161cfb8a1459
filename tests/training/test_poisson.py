"""The Poisson VAE loss (--loss poisson): value, gradient, masking, deviance, training, resume."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
import torch

import training.fit as fit
from common import cli
from etl.store import open_store
from training.data import features_from_batch, read_columns
from training.model import poisson_elbo

QUICK = ["--lr", "1e-3", "--no-progress", "--batch-size", "16", "--threads", "1", "--wandb-mode", "disabled"]


def _inputs():
    recon = torch.tensor([[[0.5, 2.0], [1.0, 0.1]]], dtype=torch.float32, requires_grad=True)  # (1, 2, 2), rate / s
    scale = torch.tensor([2.0])
    counts = torch.tensor([[[3.0, 10.0], [0.0, 7.0]]])
    background = torch.tensor([[[0.5, 1.0], [0.2, 0.3]]])
    exposure = torch.tensor([[[4.0, 2.0], [5.0, 8.0]]])
    mask = torch.tensor([[[True, True], [True, False]]])  # the last bin is unusable
    return recon, scale, counts, background, exposure, mask


def test_value_and_deviance_by_hand():
    recon, scale, counts, background, exposure, mask = _inputs()
    out = poisson_elbo(recon, scale, counts, background, exposure, mask, torch.zeros(1, 3), torch.zeros(1, 3), 0.0)
    m = np.array([0.5 * 2 * 4 + 0.5, 2.0 * 2 * 2 + 1.0, 1.0 * 2 * 5 + 0.2])  # 4.5, 9.0, 10.2
    c = np.array([3.0, 10.0, 0.0])
    nll = (m - c * np.log(m) + np.array([math.lgamma(x + 1) for x in c])).sum()
    assert out["loss"].item() == pytest.approx(nll, rel=1e-5)
    deviance = 2 * (3 * np.log(3 / 4.5) - (3 - 4.5) + 10 * np.log(10 / 9) - (10 - 9) + (10.2 - 0))
    assert out["per_source_deviance"].item() == pytest.approx(deviance, rel=1e-5)
    assert out["per_source_count"].item() == 3


def test_gradient_is_the_analytic_one_and_masked_bins_get_none():
    recon, scale, counts, background, exposure, mask = _inputs()
    counts[0, 1, 1] = float("nan")  # garbage under the mask must not matter
    out = poisson_elbo(recon, scale, counts, background, exposure, mask, torch.zeros(1, 3), torch.zeros(1, 3), 0.0)
    out["loss"].backward()
    m = recon.detach() * scale[:, None, None] * exposure + background
    analytic = (1 - torch.nan_to_num(counts) / m) * scale[:, None, None] * exposure
    analytic[~mask] = 0.0
    torch.testing.assert_close(recon.grad, analytic, rtol=1e-5, atol=1e-6)
    assert torch.isfinite(out["loss"])


def test_deviance_is_about_one_per_bin_for_the_true_rate():
    rng = np.random.default_rng(0)
    rate = torch.full((200, 30, 3), 0.3)
    exposure = torch.from_numpy(rng.uniform(5, 40, (200, 30, 3)).astype("f4"))
    background = torch.full((200, 30, 3), 0.5)
    counts = torch.from_numpy(rng.poisson((rate * exposure + background).numpy()).astype("f4"))
    mask = torch.ones_like(counts, dtype=torch.bool)
    out = poisson_elbo(rate, torch.ones(200), counts, background, exposure, mask, torch.zeros(200, 2), torch.zeros(200, 2), 0.0)
    per_bin = (out["per_source_deviance"] / out["per_source_count"]).mean().item()
    assert 0.8 < per_bin < 1.2


def test_batches_carry_counts_and_time_inputs(train_store):
    store = open_store(train_store)
    ids = store.source_ids[:8]
    batch = store.read_many(ids, read_columns(poisson=True, time_inputs=True))
    arrays = features_from_batch(batch, 512, poisson=True, time_inputs=True)
    lengths = batch.lengths
    assert arrays["x"].shape[2] == 9 + 2 and np.isfinite(arrays["x"]).all()
    lc = store.read(ids[0])
    n = lengths[0]
    np.testing.assert_array_equal(arrays["counts"][0, :n][arrays["count_mask"][0, :n]], lc.counts[arrays["count_mask"][0, :n]])
    np.testing.assert_allclose(arrays["exposure"][0, :n, 1], lc.fracexp[:, 1] * lc.timedel, rtol=1e-6)
    np.testing.assert_allclose(arrays["x"][0, 1, 9], np.arcsinh((lc.time[1] - lc.time[0]) / 14400.0), rtol=1e-5)
    assert arrays["x"][0, 0, 9] == 0 and not arrays["count_mask"][0, n:].any()


def test_poisson_training_scores_and_resume(train_store, tmp_path):
    args = ["--store", train_store, "--loss", "poisson", "--time-inputs", "--no-evaluate", *QUICK]
    straight, first = tmp_path / "straight", tmp_path / "resumed"
    assert cli.run(fit.main, [*args, "--epochs", "2", "--run-dir", str(straight)]) == 0
    assert cli.run(fit.main, [*args, "--epochs", "1", "--run-dir", str(first)]) == 0
    assert cli.run(fit.main, ["--resume", str(first), "--epochs", "2"]) == 0
    a = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (first / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]  # resume continues exactly
    assert a[1]["train_loss"] < a[0]["train_loss"]
    from training.evaluate import main as evaluate_main

    out = tmp_path / "scores.parquet"
    assert cli.run(evaluate_main, ["--checkpoint", str(straight / "checkpoints" / "best.h5"), "--split", "all", "--out", str(out), "--top", "2"]) == 0
    scores = pl.read_parquet(out)
    assert scores["anomaly_score"].is_finite().all() and scores["anomaly_score"].median() > 0.3  # deviance per bin
