"""Reader: real srctool files, synthetic rebinned files and every kind of bad input."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from astropy.io import fits

from etl.errors import InvalidLightCurveError
from etl.fitswriter import bintable_fits_bytes
from etl.poisson import gehrels_errors
from etl.reader import REJECT_CODES, read_lightcurve
from etl.synth import BAD_KINDS, lightcurve_header, simulate_source


def astropy_kept_rows(path, fracexp_min=0.1):
    with fits.open(path) as hdul:
        data = hdul["RATE"].data
        keep = np.nanmax(np.asarray(data["FRACEXP"]), axis=1) >= fracexp_min
        return {name: np.asarray(data[name])[keep] for name in data.columns.names}


@pytest.mark.parametrize(
    "name, source_id, n_points",
    [
        ("srctool_constant_020_LightCurve_00001.fits.gz", "00001", 17),
        ("srctool_loggauss_020_LightCurve_00001.fits.gz", "00001", 17),
        ("srctool_red_020_LightCurve_00022.fits.gz", "00022", 31),
    ],
)
def test_real_srctool_files_match_astropy(real_files, name, source_id, n_points):
    path = next(p for p in real_files if p.name == name)
    lc = read_lightcurve(path)
    ref = astropy_kept_rows(path)
    assert lc.flavour == "srctool"
    assert lc.source_id == source_id
    assert lc.n_points == n_points
    assert lc.n_rows_file == 3740
    np.testing.assert_array_equal(lc.e_min, [0.2, 0.2, 2.3])
    np.testing.assert_array_equal(lc.e_max, [5.0, 2.3, 5.0])
    assert lc.ra == pytest.approx(fits.getheader(path, "RATE")["RA_OBJ"])
    np.testing.assert_array_equal(lc.time, ref["TIME"])
    np.testing.assert_array_equal(lc.timedel, ref["TIMEDEL"])
    np.testing.assert_array_equal(lc.rate, ref["RATE"])
    np.testing.assert_array_equal(lc.rate_errm, ref["RATE_ERR"])
    np.testing.assert_array_equal(lc.rate_errp, ref["RATE_ERR"])
    np.testing.assert_array_equal(lc.counts, ref["COUNTS"])
    np.testing.assert_array_equal(lc.back_counts, ref["BACK_COUNTS"])
    np.testing.assert_array_equal(lc.fracexp, ref["FRACEXP"])
    np.testing.assert_array_equal(lc.backratio, ref["BACKRATIO"])
    assert np.isfinite(lc.rate).all()  # the exposure cut removes every NaN-rate row
    assert (lc.rate < 0).any() or name.startswith("srctool_red")  # background-subtracted rates can be negative


def test_fracexp_threshold_uses_best_band(real_files):
    path = real_files[-1]  # red noise file: 5 rows pass in the soft bands only
    lc = read_lightcurve(path, fracexp_min=0.1)
    assert (lc.fracexp[:, 2] < 0.1).any()
    assert read_lightcurve(path, fracexp_min=0.5).n_points < lc.n_points


def test_rebinned_file_round_trip(rebinned_archive):
    truth = pl.read_parquet(rebinned_archive / "truth.parquet").filter(pl.col("expected") == "ok")
    path = rebinned_archive / truth["file"][0]
    lc = read_lightcurve(path)
    ref = astropy_kept_rows(path)
    assert lc.flavour == "rebinned"
    assert lc.source_id == truth["source_id"][0]
    np.testing.assert_array_equal(lc.rate_errm, ref["RATE_ERRM"])
    np.testing.assert_array_equal(lc.rate_errp, ref["RATE_ERRP"])
    np.testing.assert_array_equal(lc.e_min, [0.2, 0.6, 2.3])
    assert (lc.rate_errp >= lc.rate_errm).all()


def test_srctool_gzip_synthetic(srctool_archive):
    truth = pl.read_parquet(srctool_archive / "truth.parquet")
    path = srctool_archive / truth["file"][0]
    assert path.name.endswith(".fits.gz")
    lc = read_lightcurve(path)
    assert lc.flavour == "srctool"
    assert lc.n_rows_file > lc.n_points  # zero-exposure rows were dropped
    assert np.isfinite(lc.rate).all()


@pytest.mark.parametrize("kind", [k for k in BAD_KINDS if k != "duplicate_source"])
def test_every_bad_kind_is_rejected_with_its_code(rebinned_archive, kind):
    truth = pl.read_parquet(rebinned_archive / "truth.parquet").filter(pl.col("expected") == kind)
    path = rebinned_archive / truth["file"][0]
    with pytest.raises(InvalidLightCurveError) as info:
        read_lightcurve(path)
    assert info.value.code == kind
    assert info.value.code in REJECT_CODES
    assert str(path) in str(info.value)
    assert info.value.reason.startswith(kind + ": ")


def _write(tmp_path, name, cols, header):
    path = tmp_path / name
    path.write_bytes(bintable_fits_bytes(cols, header=header))
    return path


def test_timedel_keyword_instead_of_column(tmp_path):
    rng = np.random.default_rng(0)
    cols, _ = simulate_source(rng, "rebinned", 8, "constant")
    cols.pop("TIMEDEL")
    header = [c for c in lightcurve_header("src", 1.0, 2.0, {"TIME": cols["TIME"], "TIMEDEL": np.array([40.0])})] + [("TIMEDEL", 40.0, "")]
    lc = read_lightcurve(_write(tmp_path, "kw.fits", cols, header))
    assert np.all(lc.timedel == 40.0)


def test_missing_rate_err_falls_back_to_gehrels(tmp_path):
    rng = np.random.default_rng(1)
    cols, _ = simulate_source(rng, "srctool", 6, "constant")
    exposed = np.flatnonzero(cols["FRACEXP"].max(axis=1) >= 0.1)
    cols["RATE_ERR"][exposed[0], 1] = np.nan
    path = _write(tmp_path, "nanerr.fits", cols, lightcurve_header("src", 1.0, 2.0, cols))
    lc = read_lightcurve(path)
    lo, hi = gehrels_errors(cols["COUNTS"][exposed[0], 1])
    exposure = cols["TIMEDEL"][exposed[0]] * cols["FRACEXP"][exposed[0], 1]
    assert lc.rate_errm[0, 1] == pytest.approx(lo / exposure, rel=1e-6)
    assert lc.rate_errp[0, 1] == pytest.approx(hi / exposure, rel=1e-6)
    assert lc.rate_errp[0, 1] > lc.rate_errm[0, 1]
    assert lc.rate_errm[0, 0] == lc.rate_errp[0, 0] == cols["RATE_ERR"][exposed[0], 0]


def test_source_id_falls_back_to_file_name(tmp_path):
    rng = np.random.default_rng(2)
    cols, _ = simulate_source(rng, "rebinned", 6, "constant")
    header = [c for c in lightcurve_header("x", 1.0, 2.0, cols) if c[0] != "OBJECT"]
    path = _write(tmp_path, "em01_123_020_LightCurve_00007_c010.fits", cols, header)
    gz = tmp_path / "em01_123_020_LightCurve_00008_c010.fits.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert read_lightcurve(path).source_id == "em01_123_020_LightCurve_00007_c010"
    assert read_lightcurve(gz).source_id == "em01_123_020_LightCurve_00008_c010"


def test_missing_band_edges_and_mismatched_bands(tmp_path):
    rng = np.random.default_rng(3)
    cols, _ = simulate_source(rng, "rebinned", 6, "constant")
    header = [c for c in lightcurve_header("x", 1.0, 2.0, cols) if not c[0].startswith("E_M")]
    with pytest.raises(InvalidLightCurveError) as info:
        read_lightcurve(_write(tmp_path, "nobands.fits", cols, header))
    assert info.value.code == "missing_band_edges"
    header2 = [c for c in lightcurve_header("x", 1.0, 2.0, cols) if c[0] not in ("E_MIN3", "E_MAX3")]
    with pytest.raises(InvalidLightCurveError) as info:
        read_lightcurve(_write(tmp_path, "twobands.fits", cols, header2))
    assert info.value.code == "band_mismatch"


def test_no_exposed_rows(tmp_path):
    rng = np.random.default_rng(4)
    cols, _ = simulate_source(rng, "rebinned", 6, "constant")
    cols["FRACEXP"][:] = 0.05
    with pytest.raises(InvalidLightCurveError) as info:
        read_lightcurve(_write(tmp_path, "lowexp.fits", cols, lightcurve_header("x", 1.0, 2.0, cols)))
    assert info.value.code == "no_exposed_rows"
    assert info.value.source_id == "x"


def test_duplicate_times_are_unsorted(tmp_path):
    rng = np.random.default_rng(5)
    cols, _ = simulate_source(rng, "rebinned", 6, "constant")
    cols["TIME"][2] = cols["TIME"][1]
    with pytest.raises(InvalidLightCurveError) as info:
        read_lightcurve(_write(tmp_path, "dup.fits", cols, lightcurve_header("x", 1.0, 2.0, cols)))
    assert info.value.code == "unsorted_time"


def test_band_edges_in_primary_header(tmp_path):
    rng = np.random.default_rng(6)
    cols, _ = simulate_source(rng, "rebinned", 6, "constant")
    full = lightcurve_header("x", 1.0, 2.0, cols)
    table = [c for c in full if not c[0].startswith("E_M")]
    primary = [c for c in full if c[0].startswith("E_M")]
    path = tmp_path / "prim.fits"
    path.write_bytes(bintable_fits_bytes(cols, header=table, primary=primary))
    np.testing.assert_array_equal(read_lightcurve(path).e_max, [0.6, 2.3, 5.0])


@pytest.mark.parametrize("cards, expected", [
    ([("POS_ERR", 3.5, "")], 3.5),
    ([("POS_ERR", 2, "")], 2.0),
    ([], None),
])
def test_position_error_keywords(tmp_path, cards, expected):
    rng = np.random.default_rng(7)
    cols, _ = simulate_source(rng, "rebinned", 6, "constant")
    lc = read_lightcurve(_write(tmp_path, "p.fits", cols, lightcurve_header("p", 1.0, 2.0, cols) + cards))
    assert (np.isnan(lc.pos_err) if expected is None else lc.pos_err == expected)


@pytest.mark.parametrize("value", [-1.0, 0.0, 1e4, "3 arcsec", True])
def test_bad_position_error_is_rejected(tmp_path, value):
    """A corrupt position error would widen or narrow every cross-match of the source: rejected, not stored."""
    rng = np.random.default_rng(8)
    cols, _ = simulate_source(rng, "rebinned", 6, "constant")
    path = _write(tmp_path, "bad.fits", cols, lightcurve_header("p", 1.0, 2.0, cols) + [("POS_ERR", value, "")])
    with pytest.raises(InvalidLightCurveError) as info:
        read_lightcurve(path)
    assert info.value.code == "bad_keyword" and "POS_ERR" in info.value.reason


DR1 = Path(__file__).resolve().parents[1] / "data" / "em01_080156_020_LightCurve_00002_c010.fits"


def test_dr1_errors_come_from_the_estimated_columns():
    """DR1 files carry RATE_ERR and RATE_ESTPOSERR/RATE_ESTNEGERR: the estimated ones come first, RATE_ERR and Gehrels' after."""
    from astropy.io import fits

    lc = read_lightcurve(DR1)
    data = fits.getdata(DR1, "RATE")
    keep = np.isin(data["TIME"], lc.time)
    pos, neg, err = (np.asarray(data[c][keep], float) for c in ("RATE_ESTPOSERR", "RATE_ESTNEGERR", "RATE_ERR"))
    exposed = np.asarray(data["FRACEXP"][keep], float) > 0
    assert (neg[np.isfinite(neg)] <= 0).all()  # stored negative
    est = np.isfinite(pos) & exposed
    np.testing.assert_allclose(lc.rate_errp[est], pos[est], rtol=1e-6)
    np.testing.assert_allclose(lc.rate_errm[est], np.abs(neg[est]), rtol=1e-6)
    fallback = ~np.isfinite(pos) & np.isfinite(err) & exposed
    np.testing.assert_allclose(lc.rate_errp[fallback], err[fallback], rtol=1e-6)
    gehrels = ~np.isfinite(pos) & ~np.isfinite(err) & exposed
    assert gehrels.any() and np.all(lc.rate_errp[gehrels] > 0)  # counts-based
    assert lc.error_convention == "estimated" and lc.n_err_fallback == int((~np.isfinite(pos) & exposed).sum())
    assert np.isfinite(lc.rate[exposed]).all() and np.isnan(lc.rate[~exposed]).all()  # +inf where FRACEXP is 0: NaN
    assert lc.object == "00002" and lc.source_id == "em01_080156_00002"


def test_estimated_errors_of_the_wrong_shape_are_rejected(tmp_path):
    rng = np.random.default_rng(5)
    cols, _ = simulate_source(rng, "dr1", 6, "constant")
    cols["RATE_ESTPOSERR"] = cols["RATE_ESTPOSERR"][:, 0]
    path = tmp_path / "em01_000001_020_LightCurve_00001_c010.fits"
    path.write_bytes(bintable_fits_bytes(cols, header=lightcurve_header("00001", 1.0, 2.0, cols)))
    with pytest.raises(InvalidLightCurveError, match="single_band: RATE_ESTPOSERR is 1-D"):
        read_lightcurve(path)


def test_a_flaregti_background_light_curve_is_rejected_clearly(tmp_path):
    """eSASS flaregti writes *_LightCurve_tb20.fits with an HDU LIGHTCRV and no bands: never a source."""
    n = 50
    cols = {"TIME": np.arange(n) * 20.0, "COUNTS": np.ones(n, "i4"), "RATE": np.ones(n, "f4"), "FILTRATE": np.ones(n, "f4"),
            "THRESHOLD": np.full(n, 2.0, "f4"), "EXPOSURE": np.full(n, 20.0, "f4"), "AREA": np.ones(n, "f4"),
            "X": np.zeros(n, "f4"), "Y": np.zeros(n, "f4")}
    path = tmp_path / "em01_080156_020_LightCurve_tb20.fits"
    path.write_bytes(bintable_fits_bytes(cols, extname="LIGHTCRV"))
    with pytest.raises(InvalidLightCurveError) as info:
        read_lightcurve(path)
    assert info.value.code == "background_lightcurve" and "flaregti" in info.value.detail
