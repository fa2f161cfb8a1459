"""Cross-match against the synthetic reference catalogue: astropy, LSDB and HATS agree; bad references fail clearly."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord, match_coordinates_sky

from common import cli
from features import get_features
from features.crossmatch import CrossmatchError, crossmatch, main
from features.featurestore import get_feature_set


@pytest.fixture(scope="module")
def matched(tmp_path_factory):
    from etl.ingest import ingest
    from etl.synth import make_archive

    root = tmp_path_factory.mktemp("xmatch")
    make_archive(root / "a", n=400, seed=51, progress=False)
    ingest(root / "a", root / "s", progress=False)
    meta, created = crossmatch(root / "s", str(root / "a" / "reference.parquet"), 15.0, "ref", columns=["kind", "mag"])
    assert created
    return root, meta


def test_matches_equal_astropy_and_find_the_known_sources(matched):
    root, meta = matched
    frame = get_features(root / "s", ["xmatch_ref"], catalog_columns=["ra", "dec"]).collect()
    ref = pl.read_parquet(root / "a" / "reference.parquet")
    idx, sep, _ = match_coordinates_sky(SkyCoord(frame["ra"].to_numpy() * u.deg, frame["dec"].to_numpy() * u.deg),
                                        SkyCoord(ref["ra"].to_numpy() * u.deg, ref["dec"].to_numpy() * u.deg))
    within = sep.arcsec <= 15.0
    assert frame["xmatch_ref_id"].is_not_null().to_numpy().tolist() == within.tolist()
    assert frame["xmatch_ref_id"].filter(pl.Series(within)).to_list() == ref["ref_id"].to_numpy()[idx[within]].tolist()
    np.testing.assert_allclose(frame["xmatch_ref_sep_arcsec"].drop_nulls().to_numpy(), sep.arcsec[within], atol=1e-6)
    truth = pl.read_parquet(root / "a" / "truth.parquet").select("source_id", "known")
    joined = frame.join(truth, on="source_id")
    assert (joined["xmatch_ref_id"].is_not_null() == joined["known"]).all()  # known <=> matched
    assert set(joined.filter(pl.col("known"))["xmatch_ref_kind"]) == {"counterpart"}
    m = meta["metrics"]
    assert m["matched"] == joined["known"].sum() and m["spurious_fraction"] < 0.05  # 3' away: (almost) nothing
    assert meta["lineage"]["radius_arcsec"] == 15.0 and len(meta["lineage"]["reference_hash"]) == 32


def test_reused_and_versioned(matched):
    root, meta = matched
    again, created = crossmatch(root / "s", str(root / "a" / "reference.parquet"), 15.0, "ref", columns=["kind", "mag"])
    assert not created and again["version"] == meta["version"]
    wider, created = crossmatch(root / "s", str(root / "a" / "reference.parquet"), 30.0, "ref", columns=["kind", "mag"])
    assert created and wider["version"] == meta["version"] + 1


def test_lsdb_and_hats_reference_give_the_same_matches(matched, tmp_path):
    import lsdb

    root, _ = matched
    ref = pl.read_parquet(root / "a" / "reference.parquet")
    meta, _ = crossmatch(root / "s", str(root / "a" / "reference.parquet"), 15.0, "viaLsdb", method="lsdb")
    lsdb.from_dataframe(ref.to_pandas(), ra_column="ra", dec_column="dec", catalog_name="ref",
                        margin_threshold=20.0).write_catalog(tmp_path / "ref_hats", progress_bar=False)
    hats_meta, _ = crossmatch(root / "s", str(tmp_path / "ref_hats"), 15.0, "viaHats", id_column="ref_id", columns=["kind"])
    frame = get_features(root / "s", ["xmatch_ref@1", "xmatch_viaLsdb", "xmatch_viaHats"], catalog_columns=[]).collect()
    assert frame["xmatch_ref_id"].to_list() == frame["xmatch_viaLsdb_id"].to_list() == frame["xmatch_viaHats_id"].to_list()
    np.testing.assert_allclose(frame["xmatch_ref_sep_arcsec"].drop_nulls().to_numpy(),
                               frame["xmatch_viaHats_sep_arcsec"].drop_nulls().to_numpy(), atol=1e-3)
    assert hats_meta["lineage"]["method"] == "lsdb"


def test_galactic_reference_is_converted(matched, tmp_path):
    root, _ = matched
    ref = pl.read_parquet(root / "a" / "reference.parquet")
    gal = SkyCoord(ref["ra"].to_numpy() * u.deg, ref["dec"].to_numpy() * u.deg).galactic
    ref.drop("ra", "dec").with_columns(pl.Series("l", gal.l.deg), pl.Series("b", gal.b.deg)).write_csv(tmp_path / "gal.csv")
    meta, _ = crossmatch(root / "s", str(tmp_path / "gal.csv"), 15.0, "gal")
    assert "galactic" in meta["metrics"]["reference"]["converted"]
    frame = get_features(root / "s", ["xmatch_ref@1", "xmatch_gal"], catalog_columns=[]).collect()
    assert frame["xmatch_ref_id"].to_list() == frame["xmatch_gal_id"].to_list()


@pytest.mark.parametrize("columns,message", [
    ({"x": [1.0], "y": [2.0]}, "no position columns"),
    ({"ra": [400.0], "dec": [0.0]}, "outside [0, 360]"),
    ({"ra": [10.0], "dec": [-95.0]}, "outside [-90, 90]"),
    ({"ra": [None, None], "dec": [1.0, 2.0]}, "no row has a position"),
    ({"ra": ["a"], "dec": ["b"]}, "not numeric"),
])
def test_bad_references_fail_clearly(matched, tmp_path, capsys, columns, message):
    root, _ = matched
    pl.DataFrame(columns).write_parquet(tmp_path / "bad.parquet")
    assert cli.run(main, ["--store", str(root / "s"), "--reference", str(tmp_path / "bad.parquet"), "--radius", "10", "--name", "bad"]) == 2
    assert message in capsys.readouterr().err


def test_bad_radius_and_missing_rows(matched, tmp_path):
    root, _ = matched
    ref = pl.read_parquet(root / "a" / "reference.parquet")
    with pytest.raises(CrossmatchError, match="radius must be > 0"):
        crossmatch(root / "s", str(root / "a" / "reference.parquet"), 0.0, "r0")
    ref.with_columns(pl.when(pl.int_range(pl.len()) < 5).then(None).otherwise(pl.col("ra")).alias("ra")).write_parquet(tmp_path / "nan.parquet")
    meta, _ = crossmatch(root / "s", str(tmp_path / "nan.parquet"), 15.0, "nan")
    assert meta["metrics"]["reference"]["rows_without_position"] == 5
    assert get_feature_set(root / "s", "xmatch_nan")[1].collect().height == 400


def test_position_errors_normalise_separations_and_bound_the_match(matched):
    """pos_err comes from each file's POS_ERR; sep_sigma of true counterparts is Rayleigh; --max-sigma cuts per source."""
    from astropy.coordinates import search_around_sky

    root, _ = matched
    truth = pl.read_parquet(root / "a" / "truth.parquet").filter(pl.col("expected") == "ok").select("source_id", "known", "pos_err")
    frame = get_features(root / "s", ["xmatch_ref@1"], catalog_columns=["ra", "dec", "pos_err_arcsec"]).collect().join(truth, on="source_id")
    np.testing.assert_allclose(frame["pos_err_arcsec"].to_numpy(), frame["pos_err"].to_numpy())
    sigma = frame["pos_err_arcsec"].to_numpy() / np.sqrt(2)
    np.testing.assert_allclose(frame["xmatch_ref_sep_sigma"].to_numpy(), frame["xmatch_ref_sep_arcsec"].to_numpy() / sigma)
    r = frame.filter(pl.col("known"))["xmatch_ref_sep_sigma"].drop_nulls().to_numpy()
    assert len(r) > 80 and 1.4 < np.mean(r**2) < 2.7  # Rayleigh of unit scale: E[r^2] = 2

    meta, _ = crossmatch(root / "s", str(root / "a" / "reference.parquet"), 15.0, "ref3sig", max_sigma=3.0)
    got = get_features(root / "s", ["xmatch_ref3sig"], catalog_columns=["ra", "dec"]).collect()
    got = got.join(frame.select("source_id", "pos_err_arcsec"), on="source_id")
    ref = pl.read_parquet(root / "a" / "reference.parquet")
    src = SkyCoord(got["ra"].to_numpy() * u.deg, got["dec"].to_numpy() * u.deg)
    i_src, i_ref, sep, _ = search_around_sky(src, SkyCoord(ref["ra"].to_numpy() * u.deg, ref["dec"].to_numpy() * u.deg),
                                             15 * u.arcsec)
    limit = np.minimum(3 * got["pos_err_arcsec"].to_numpy() / np.sqrt(2), 15.0)
    expected = {}
    for s, j, d in sorted(zip(i_src, i_ref, sep.arcsec), key=lambda t: t[2]):
        if d <= limit[s]:
            expected.setdefault(got["source_id"][int(s)], ref["ref_id"][int(j)])
    assert dict(zip(*got.filter(pl.col("xmatch_ref3sig_id").is_not_null())[["source_id", "xmatch_ref3sig_id"]])) == expected
    assert (got["xmatch_ref3sig_sep_sigma"].drop_nulls() <= 3.0).all()
    assert meta["lineage"]["max_sigma"] == 3.0 and meta["metrics"]["sources_with_pos_err"] == got.height
    with pytest.raises(CrossmatchError, match="max-sigma"):
        crossmatch(root / "s", str(root / "a" / "reference.parquet"), 15.0, "bad", max_sigma=0.0)


def test_lsdb_counts_every_neighbour_in_a_crowded_field(matched, tmp_path):
    """30 reference rows within the radius of one source: LSDB's k-nearest search is widened until _n is exact."""
    root, _ = matched
    ok = get_features(root / "s", [], catalog_columns=["ra", "dec"]).collect()
    centre = SkyCoord(ok["ra"][0] * u.deg, ok["dec"][0] * u.deg)
    rng = np.random.default_rng(5)
    crowd = centre.directional_offset_by(rng.uniform(0, 360, 30) * u.deg, rng.uniform(0.5, 14, 30) * u.arcsec)
    ref = pl.DataFrame({"ref_id": [f"C{i}" for i in range(30)], "ra": crowd.ra.deg, "dec": crowd.dec.deg})
    ref.write_parquet(tmp_path / "crowd.parquet")
    for method in ("astropy", "lsdb"):
        crossmatch(root / "s", str(tmp_path / "crowd.parquet"), 15.0, f"crowd_{method}", method=method)
    frame = get_features(root / "s", ["xmatch_crowd_astropy", "xmatch_crowd_lsdb"], catalog_columns=[]).collect().sort("source_id")
    assert frame.filter(pl.col("source_id") == ok["source_id"][0])["xmatch_crowd_astropy_n"].item() == 30
    assert frame["xmatch_crowd_lsdb_n"].to_list() == frame["xmatch_crowd_astropy_n"].to_list()
    assert frame["xmatch_crowd_lsdb_id"].to_list() == frame["xmatch_crowd_astropy_id"].to_list()


def test_reference_errors_combine_with_the_sources(matched, tmp_path):
    """--ref-error-column: sep_sigma = sep / hypot(sigma_src, sigma_ref); astropy and LSDB agree under --max-sigma."""
    root, _ = matched
    ref = pl.read_parquet(root / "a" / "reference.parquet")
    rng = np.random.default_rng(9)
    ref = ref.with_columns(pl.Series("err", rng.uniform(0.5, 8.0, ref.height)))
    ref = ref.with_columns(pl.when(pl.int_range(pl.len()) % 7 == 0).then(None).otherwise(pl.col("err")).alias("err"))  # some empty
    ref.write_parquet(tmp_path / "with_err.parquet")
    for method in ("astropy", "lsdb"):
        crossmatch(root / "s", str(tmp_path / "with_err.parquet"), 20.0, f"err_{method}", method=method, max_sigma=2.0,
                   ref_error_column="err")
    import lsdb

    lsdb.from_dataframe(ref.to_pandas(), ra_column="ra", dec_column="dec", catalog_name="ref",
                        margin_threshold=25.0).write_catalog(tmp_path / "err_hats", progress_bar=False)
    crossmatch(root / "s", str(tmp_path / "err_hats"), 20.0, "err_hats", id_column="ref_id", max_sigma=2.0, ref_error_column="err")
    frame = get_features(root / "s", ["xmatch_err_astropy", "xmatch_err_lsdb", "xmatch_err_hats"],
                         catalog_columns=["pos_err_arcsec"]).collect()
    assert frame["xmatch_err_astropy_id"].to_list() == frame["xmatch_err_lsdb_id"].to_list() == frame["xmatch_err_hats_id"].to_list()
    np.testing.assert_allclose(frame["xmatch_err_hats_sep_sigma"].drop_nulls().to_numpy(),
                               frame["xmatch_err_astropy_sep_sigma"].drop_nulls().to_numpy(), rtol=1e-5)
    matched_rows = frame.filter(pl.col("xmatch_err_astropy_id").is_not_null()).join(
        ref.select(pl.col("ref_id").alias("xmatch_err_astropy_id"), "err"), on="xmatch_err_astropy_id")
    assert matched_rows.height > 50
    both = np.hypot(matched_rows["pos_err_arcsec"].to_numpy(), matched_rows["err"].fill_null(0.0).to_numpy()) / np.sqrt(2)
    np.testing.assert_allclose(matched_rows["xmatch_err_astropy_sep_sigma"].to_numpy(),
                               matched_rows["xmatch_err_astropy_sep_arcsec"].to_numpy() / both, rtol=1e-9)
    np.testing.assert_allclose(frame["xmatch_err_lsdb_sep_sigma"].drop_nulls().to_numpy(),
                               frame["xmatch_err_astropy_sep_sigma"].drop_nulls().to_numpy(), rtol=1e-5)
    assert (matched_rows["xmatch_err_astropy_sep_sigma"] <= 2.0).all()
    bad = ref.with_columns(pl.col("err") - 100.0)
    bad.write_parquet(tmp_path / "bad_err.parquet")
    with pytest.raises(CrossmatchError, match="negative"):
        crossmatch(root / "s", str(tmp_path / "bad_err.parquet"), 20.0, "bad_err", max_sigma=2.0, ref_error_column="err")
    with pytest.raises(CrossmatchError, match="not in the reference"):
        crossmatch(root / "s", str(tmp_path / "with_err.parquet"), 20.0, "no_col", ref_error_column="nope")
