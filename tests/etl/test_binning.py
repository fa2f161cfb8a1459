"""Eroday binning at ingest: one bin per survey scan, counts conserved, the rest of the pipeline unchanged."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from common import cli
from etl.binning import SCAN_GAP_S, bin_erodays, scan_index
from etl.ingest import ingest, main
from etl.reader import read_lightcurve
from etl.store import open_store
from etl.synth import make_archive

DR1 = Path(__file__).resolve().parents[1] / "data" / "em01_080156_020_LightCurve_00002_c010.fits"


def test_the_real_dr1_file_becomes_one_bin_per_scan():
    lc = read_lightcurve(DR1)
    binned = bin_erodays(lc)
    scans = scan_index(lc.time, lc.timedel)
    assert binned.n_points == len(np.unique(scans)) and binned.n_points < lc.n_points
    assert np.all(np.diff(binned.time) > SCAN_GAP_S)  # scans are ~4 h apart
    # counts conserved exactly, per band
    np.testing.assert_array_equal(binned.counts.sum(0), lc.counts.sum(0))
    np.testing.assert_allclose(binned.back_counts.sum(0), lc.back_counts.sum(0))
    # exposure = TIMEDEL x FRACEXP still, and the rate is eSASS's formula
    exposure = (lc.timedel[:, None] * lc.fracexp).sum(0)
    np.testing.assert_allclose((binned.timedel[:, None] * binned.fracexp).sum(0), exposure, rtol=1e-5)
    net = binned.counts - binned.back_counts * binned.backratio[:, None]
    np.testing.assert_allclose(binned.rate, net / (binned.timedel[:, None] * binned.fracexp), rtol=1e-4)
    assert np.nanmin(binned.rate_errp) > 0 and np.nanmin(binned.rate_errm) >= 0 and binned.error_convention == "gehrels"
    # a scan's span: first bin start to last bin end
    first = np.searchsorted(scans, np.arange(binned.n_points))
    np.testing.assert_array_equal(binned.time, lc.time[first])


def test_rebinned_files_pass_through():
    lc = read_lightcurve(DR1)
    lc.flavour = "rebinned"
    assert bin_erodays(lc) is lc


@pytest.fixture(scope="module")
def dr1_archive(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dr1")
    make_archive(out, n=80, seed=31, flavour="dr1", progress=False)
    return out


def test_ingest_with_eroday_bins(dr1_archive, tmp_path):
    ingest(dr1_archive, tmp_path / "raw", progress=False)
    summary = ingest(dr1_archive, tmp_path / "binned", progress=False, binning="eroday")
    assert summary.ingested == 80
    raw, binned = open_store(tmp_path / "raw"), open_store(tmp_path / "binned")
    assert binned.attrs["binning"] == "eroday" and raw.attrs["binning"] == "none"
    truth = pl.read_parquet(dr1_archive / "truth.parquet")
    cat = binned.catalog().collect().join(truth.select("source_id", "n_erodays"), on="source_id")
    assert (cat["n_points"] <= cat["n_erodays"]).all() and cat["n_points"].sum() > 0.9 * cat["n_erodays"].sum()
    for sid in raw.source_ids[:20]:  # counts conserved source by source
        np.testing.assert_array_equal(raw.read(sid).counts.sum(0), binned.read(sid).counts.sum(0))
    assert raw.catalog().collect()["n_points"].sum() > 3 * cat["n_points"].sum()


def test_a_store_holds_one_binning(dr1_archive, tmp_path, capsys):
    store = str(tmp_path / "s")
    assert cli.run(main, [str(dr1_archive), "--store", store, "--bin", "eroday", "--quiet"]) == 0
    assert cli.run(main, [str(dr1_archive), "--store", store, "--quiet"]) == 2  # unbinned files into a binned store
    assert "binned 'eroday', not 'none'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        cli.run(main, [str(dr1_archive), "--store", store, "--bin", "weekly"])
    assert info.value.code == 2 and "bin must be one of none, eroday" in capsys.readouterr().err


def test_a_file_whose_scans_have_no_exposure_is_rejected(tmp_path):
    from etl.fitswriter import bintable_fits_bytes
    from etl.observation import simulate_source
    from etl.synth import lightcurve_header

    cols, _ = simulate_source(np.random.default_rng(3), "srctool", 5, "constant")
    cols["FRACEXP"][:] = 0.0
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.fits").write_bytes(bintable_fits_bytes(cols, header=lightcurve_header("x", 1.0, 2.0, cols)))
    summary = ingest(tmp_path / "a", tmp_path / "s", progress=False, binning="eroday", fracexp_min=0.0)
    assert summary.rejected == 1 and summary.rejected_files[0][1].startswith("no_exposed_rows")


def test_statistics_null_model_and_poisson_loss_on_a_binned_store(dr1_archive, tmp_path):
    from features.builders import build_poisson_variability
    from features.featurestore import get_feature_set
    from training.fit import main as fit

    ingest(dr1_archive, tmp_path / "s", progress=False, binning="eroday")
    meta, _ = build_poisson_variability(tmp_path / "s", n_null=2000)
    frame = get_feature_set(tmp_path / "s", "poisson_variability")[1].collect()
    assert frame.height == 80 and frame["bexvar_log_rate_b2"].null_count() < 10 and frame["variable_fpp"].null_count() < 10
    null = open_store(next((tmp_path / "s" / "calibration").glob("null-*.zarr")))
    assert len(null) == 2000 and null.attrs["binning"] == "eroday"
    shutil.rmtree(tmp_path / "run", ignore_errors=True)
    assert cli.run(fit, ["--store", str(tmp_path / "s"), "--epochs", "1", "--loss", "poisson", "--run-dir", str(tmp_path / "run"),
                         "--wandb-mode", "disabled", "--no-progress", "--latent", "4", "--hidden", "8", "--lr", "1e-3"]) == 0
