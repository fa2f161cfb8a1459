"""Synthetic archive generator: naming, determinism, length distribution, classes, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from common import cli
from etl.morphology import COMMON_CLASSES
from etl.observation import draw_n_erodays, ecliptic_latitude
from etl.reader import read_lightcurve
from etl.synth import BAD_KINDS, main, make_archive

DATA = Path(__file__).resolve().parents[1] / "data"


def test_cli_writes_files_and_truth(tmp_path, capsys):
    assert cli.run(main, [str(tmp_path), "--n", "30", "--seed", "3", "--bad", "12", "--quiet"]) == 0
    truth = pl.read_parquet(tmp_path / "truth.parquet")
    assert truth.height == 42
    assert sorted(truth.filter(pl.col("expected") != "ok")["expected"].to_list()) == sorted(BAD_KINDS)
    files = sorted(p.name for p in tmp_path.glob("*.fits*"))
    assert len(files) == 42
    good = truth.filter(pl.col("expected") == "ok")
    assert all(f.startswith("em01_") and "_020_LightCurve_" in f and f.endswith("_c010_rebinned.fits") for f in good["file"])
    assert set(good["class"]) <= set(COMMON_CLASSES)
    assert good["source_id"].n_unique() == 30
    assert "wrote 42 files" in capsys.readouterr().out


def test_only_bad_files(tmp_path, capsys):
    """--n 0 --bad 11 writes only bad files, an empty reference catalogue and the truth table."""
    assert cli.run(main, [str(tmp_path), "--n", "0", "--bad", "11", "--quiet"]) == 0
    assert len(list(tmp_path.glob("*.fits*"))) == 11 and "wrote 11 files" in capsys.readouterr().out
    assert pl.read_parquet(tmp_path / "reference.parquet").height == 0


def test_same_seed_same_bytes(tmp_path):
    make_archive(tmp_path / "a", 20, seed=5, flavour="mixed", progress=False)
    make_archive(tmp_path / "b", 20, seed=5, flavour="mixed", progress=False)
    make_archive(tmp_path / "c", 20, seed=6, flavour="mixed", progress=False)
    names = sorted(p.name for p in (tmp_path / "a").glob("*.fits"))
    assert names == sorted(p.name for p in (tmp_path / "b").glob("*.fits"))
    assert all((tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n in names)
    assert names != sorted(p.name for p in (tmp_path / "c").glob("*.fits"))


def test_length_distribution_is_erass_like():
    rng = np.random.default_rng(0)
    ra = rng.uniform(0, 360, 100_000)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, 100_000)))
    n = draw_n_erodays(rng, ecliptic_latitude(ra, dec))
    assert 0.75 < np.mean((n >= 4) & (n <= 12)) < 0.95  # most sources: 4-12 erodays
    assert (n >= 100).sum() > 150 and n.max() > 300  # a tail to hundreds near the ecliptic poles
    assert n.min() >= 4


def test_srctool_flavour_has_zero_exposure_rows(tmp_path):
    truth = make_archive(tmp_path, 5, seed=1, flavour="srctool", progress=False)
    lc = read_lightcurve(tmp_path / truth["file"][0])
    assert lc.flavour == "srctool"
    assert lc.n_rows_file > lc.n_points


def _error_over_gehrels(path) -> tuple[np.ndarray, np.ndarray]:
    """RATE_ERR x exposure / (1 + sqrt(N + 0.75)) of the well-exposed bins, and their counts N."""
    from astropy.io import fits

    data = fits.getdata(path, 1)
    counts, fracexp = np.asarray(data["COUNTS"], float), np.asarray(data["FRACEXP"], float)
    exposure = np.asarray(data["TIMEDEL"], float)[:, None] * fracexp
    ratio = np.asarray(data["RATE_ERR"], float) * exposure / (1 + np.sqrt(counts + 0.75))
    ok = (fracexp > 0.1) & np.isfinite(ratio)
    return ratio[ok], counts[ok]


def test_srctool_errors_behave_like_the_real_files(tmp_path):
    """Empty bins keep a one-count error, as in real srctool output, so chi2 is not inflated."""
    real = [_error_over_gehrels(p) for p in sorted(DATA.glob("srctool_*.fits.gz"))]
    real_ratio = np.concatenate([r for r, _ in real])
    assert 0.95 < np.median(real_ratio) < 1.3  # the fixtures: close to Gehrels' upper error
    truth = make_archive(tmp_path, 20, seed=2, flavour="srctool", progress=False)
    ratio, counts = map(np.concatenate, zip(*(_error_over_gehrels(tmp_path / f) for f in truth["file"])))
    assert (counts == 0).sum() > 10
    np.testing.assert_allclose(ratio, 1.0, rtol=1e-5)  # Gehrels' upper error, empty bins included


def test_brightness_follows_euclidean_lognlogs(tmp_path):
    """Most sources near the detection limit (5-10 counts in all), a minority with hundreds."""
    from etl.synth import ERASS1_RATE_MIN, draw_mean_rate

    rng = np.random.default_rng(0)
    rates = np.array([draw_mean_rate(rng) for _ in range(40_000)])
    assert rates.min() >= ERASS1_RATE_MIN
    for factor in (2.0, 4.0, 10.0):  # N(>S) = (S / S_min)^-1.5
        expected = factor**-1.5
        assert abs((rates > factor * ERASS1_RATE_MIN).mean() - expected) < 4 * np.sqrt(expected / 40_000) + 1e-3
    truth = make_archive(tmp_path, n=600, seed=5, flavour="mixed", progress=False)
    counts = truth["net_counts"].to_numpy()
    assert 5 <= np.median(counts) <= 15
    assert 0.01 <= (counts > 100).mean() <= 0.1
    uniform = make_archive(tmp_path / "u", n=200, seed=5, progress=False, brightness="uniform")
    assert np.median(uniform["net_counts"].to_numpy()) > 3 * np.median(counts)
