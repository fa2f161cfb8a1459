"""HATS export: lsdb opens it, and its cone search and cross-match agree with store.cone and astropy."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord, match_coordinates_sky

from etl.export_hats import main as export_main
from etl.ingest import ingest
from etl.store import open_store


@pytest.fixture(scope="module")
def exported(tmp_path_factory, rebinned_archive):
    from features.build import build_variability

    root = tmp_path_factory.mktemp("hats")
    ingest(rebinned_archive, root / "s", progress=False)
    build_variability(root / "s")
    assert export_main([str(root / "s"), str(root / "hats"), "--feature-sets", "variability", "--lightcurves"]) == 0
    return open_store(str(root / "s")), root / "hats"


def test_lsdb_opens_the_export_with_features_and_light_curves(exported):
    import lsdb

    store, out = exported
    frame = lsdb.open_catalog(out).compute()
    assert len(frame) == len(store) and {"reduced_chi2_b2", "source_id", "lc"} <= set(frame.columns)
    row = frame[frame["source_id"] == store.source_ids[3]].iloc[0]
    lc = store.read(store.source_ids[3])
    np.testing.assert_array_equal(row["lc"]["time"].to_numpy(), lc.time)
    np.testing.assert_array_equal(row["lc"]["rate_b2"].to_numpy(), lc.rate[:, 1])


def test_lsdb_cone_search_equals_store_cone(exported):
    import lsdb

    store, out = exported
    catalog = lsdb.open_catalog(out)
    first = store.catalog().filter(pl.col("status") == "ok").collect().row(0, named=True)
    for ra, dec, radius in ((first["ra"], first["dec"], 20 * 3600.0),
                            (359.9, 5.0, 30 * 3600.0)):
        mine = set(store.cone(ra, dec, radius).collect()["source_id"])
        theirs = set(catalog.cone_search(ra=ra, dec=dec, radius_arcsec=radius).compute()["source_id"])
        assert mine == theirs


def test_lsdb_crossmatch_agrees_with_astropy(exported, tmp_path):
    import lsdb
    import pandas as pd

    store, out = exported
    ok = store.catalog().filter(pl.col("status") == "ok").collect()
    rng = np.random.default_rng(3)
    src = SkyCoord(ok["ra"].to_numpy() * u.deg, ok["dec"].to_numpy() * u.deg)
    moved = src[:120].directional_offset_by(rng.uniform(0, 360, 120) * u.deg, rng.uniform(0, 6, 120) * u.arcsec)
    field = SkyCoord(rng.uniform(0, 360, 500) * u.deg, np.degrees(np.arcsin(rng.uniform(-1, 1, 500))) * u.deg)
    ref = pd.DataFrame({"ref_id": np.arange(620), "ra": np.r_[moved.ra.deg, field.ra.deg], "dec": np.r_[moved.dec.deg, field.dec.deg]})
    reference = lsdb.from_dataframe(ref, ra_column="ra", dec_column="dec", catalog_name="ref", margin_threshold=20.0)
    pairs = lsdb.open_catalog(out).crossmatch(reference, n_neighbors=1, radius_arcsec=10.0, suffixes=("", "_ref")).compute()
    idx, sep, _ = match_coordinates_sky(src, SkyCoord(ref["ra"].to_numpy() * u.deg, ref["dec"].to_numpy() * u.deg))
    expected = {sid: int(i) for sid, i, s in zip(ok["source_id"], idx, sep.arcsec) if s <= 10.0}
    got = dict(zip(pairs["source_id"], pairs["ref_id_ref"].astype(int)))
    assert got == expected and len(expected) >= 120


def test_export_refuses_to_overwrite_and_unknown_sets(exported, capsys):
    store, out = exported
    assert export_main([store.url, str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert export_main([store.url, str(out) + "-2", "--feature-sets", "nope"]) == 2
    assert "no feature set 'nope'" in capsys.readouterr().err
