"""Training, evaluation and plots on stores of 1, 2 and 4 energy bands."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

import training.fit as fit
from common import cli
from etl.fitswriter import bintable_fits_bytes
from etl.ingest import ingest
from etl.store import open_store
from etl.synth import lightcurve_header, simulate_source
from training.evaluate import main as evaluate_main

QUICK = ["--lr", "1e-3", "--no-progress", "--batch-size", "16", "--threads", "1", "--wandb-mode", "disabled"]
BANDS = {1: ((0.2, 2.3),), 2: ((0.2, 2.3), (2.3, 5.0)), 4: ((0.2, 0.6), (0.6, 1.2), (1.2, 2.3), (2.3, 5.0))}


def band_store(root, k: int, n: int = 120) -> str:
    """A store of ``n`` synthetic sources with ``k`` bands (columns built from the 3-band simulator)."""
    rng = np.random.default_rng(k)
    archive = root / f"archive{k}"
    archive.mkdir()
    for i in range(n):
        cols, _ = simulate_source(rng, "rebinned", int(rng.integers(4, 14)), "flare" if i % 3 else "constant")
        out = {}
        for name, arr in cols.items():
            if arr.ndim == 2:
                arr = {1: arr[:, 1], 2: arr[:, 1:], 4: np.concatenate([arr, arr[:, 2:]], axis=1)}[k]
            out[name] = arr
        header = lightcurve_header(f"src{k}_{i:04d}", 10.0 + i * 0.01, 20.0, cols, bands=BANDS[k])
        (archive / f"em01_000000_020_LightCurve_{i:05d}_c010_rebinned.fits").write_bytes(bintable_fits_bytes(out, header=header))
    store = root / f"store{k}.zarr"
    summary = ingest(archive, store, progress=False)
    assert summary.ingested == n, summary.rejected_files[:3]
    return str(store)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("bands")
    return {k: band_store(root, k) for k in BANDS}


@pytest.mark.parametrize("k", [1, 2, 4])
def test_train_evaluate_and_plot_any_band_count(stores, tmp_path, k):
    run = tmp_path / f"run{k}"
    assert cli.run(fit.main, ["--store", stores[k], "--epochs", "1", "--run-dir", str(run), "--plot-every", "1", *QUICK]) == 0
    assert (run / "training_plots" / "reconstruction_epoch_000001.png").exists()
    scores = pl.read_parquet(run / "scores_test.parquet")
    assert scores["anomaly_chi2"].is_finite().all() and scores.height > 0
    assert len(open_store(stores[k]).e_min) == k
    out = tmp_path / f"all{k}.parquet"
    assert cli.run(evaluate_main, ["--checkpoint", str(run / "checkpoints" / "best.h5"), "--split", "all", "--out", str(out), "--top", "3"]) == 0
    assert pl.read_parquet(out).height == 120


def test_checkpoint_of_other_band_count_is_refused(stores, tmp_path, capsys):
    run = tmp_path / "run2"
    assert cli.run(fit.main, ["--store", stores[2], "--epochs", "1", "--run-dir", str(run), "--no-evaluate", *QUICK]) == 0
    ckpt = str(run / "checkpoints" / "best.h5")
    assert cli.run(evaluate_main, ["--checkpoint", ckpt, "--store", stores[4], "--out", str(tmp_path / "x.parquet")]) == 2
    assert "trained on a 2-band store" in capsys.readouterr().err
    assert cli.run(fit.main, ["--resume", str(run), "--store", stores[4], "--epochs", "2"]) == 2
    assert "trained on a 2-band store" in capsys.readouterr().err
