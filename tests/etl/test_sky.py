"""Sky index and cone search, checked against astropy on the sphere (poles, RA wrap)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from common import cli
from etl.catalog import read_catalog, with_sky_index, write_catalog
from etl.cone import main as cone_main
from etl.ingest import ingest
from etl.sky import HEALPIX_COLUMN, healpix_29
from etl.store import open_store

CONES = [  # (ra, dec, radius arcsec): RA wrap both ways, both poles, tiny and wide cones
    (0.001, 0.0, 60.0), (359.999, 10.0, 600.0), (-0.0005, 10.0, 600.0), (180.0, 89.99, 3600.0),
    (33.0, 90.0, 900.0), (0.0, -90.0, 100.0), (200.0, -89.95, 400.0), (10.0, 20.0, 1.0),
    (123.4, -45.6, 36000.0),
]


@pytest.fixture(scope="module")
def sky_store(tmp_path_factory, rebinned_archive):
    """A real store whose catalog is extended to 30,000 rows crowded where cones are hard."""
    root = tmp_path_factory.mktemp("sky")
    ingest(rebinned_archive, root / "s", progress=False)
    cat = read_catalog(str(root / "s"))
    ok = cat.filter(pl.col("status") == "ok")
    rng = np.random.default_rng(5)
    n = 30_000
    centre = np.array([CONES[i][:2] for i in rng.integers(0, len(CONES), n)])
    # scatter around the cones' centres (on the sphere, through a random offset) and the whole sky
    c = SkyCoord(centre[:, 0] * u.deg, centre[:, 1] * u.deg)
    moved = c.directional_offset_by(rng.uniform(0, 360, n) * u.deg, 10 ** rng.uniform(-1, 4.8, n) * u.arcsec)
    ra, dec = moved.ra.deg, moved.dec.deg
    ra[: n // 5] = rng.uniform(0, 360, n // 5)
    dec[: n // 5] = np.degrees(np.arcsin(rng.uniform(-1, 1, n // 5)))
    rows = ok.sample(n, with_replacement=True, seed=1).with_columns(
        pl.Series("source_id", [f"x{i}" for i in range(n)]), pl.Series("ra", ra), pl.Series("dec", dec))
    rows = rows.with_columns(pl.when(pl.int_range(pl.len()) < 20).then(None).otherwise(pl.col("ra")).alias("ra"))  # no position
    write_catalog(str(root / "s"), with_sky_index(pl.concat([cat, rows], how="diagonal_relaxed").select(cat.columns)))
    return open_store(str(root / "s"))


@pytest.mark.parametrize("ra,dec,radius", CONES)
def test_cone_equals_astropy(sky_store, ra, dec, radius):
    ok = sky_store.catalog().filter(pl.col("status") == "ok").collect()
    has = ok["ra"].is_not_null().to_numpy()
    sep = np.full(ok.height, np.inf)
    sep[has] = SkyCoord(ok["ra"].to_numpy()[has] * u.deg, ok["dec"].to_numpy()[has] * u.deg).separation(
        SkyCoord(ra * u.deg, dec * u.deg)).arcsec
    found = sky_store.cone(ra, dec, radius).collect()
    boundary = np.abs(sep - radius) < 1e-6 * radius  # rounding either side of the edge: not a disagreement
    expected = set(ok["source_id"].filter(pl.Series((sep <= radius) & ~boundary)))
    got = set(found["source_id"]) - set(ok["source_id"].filter(pl.Series(boundary)))
    assert got == expected and len(expected) > 0
    np.testing.assert_allclose(np.sort(found["separation_arcsec"].to_numpy()),
                               np.sort(sep[np.isin(ok["source_id"].to_numpy(), found["source_id"].to_numpy())]), atol=1e-6)
    assert found["separation_arcsec"].is_sorted()


def test_index_is_order_29_nested_and_within_a_milliarcsecond():
    from cdshealpix.nested import healpix_to_lonlat

    rng = np.random.default_rng(0)
    ra = np.r_[rng.uniform(0, 360, 1000), 0.0, 359.9999999, 45.0, 45.0]
    dec = np.r_[np.degrees(np.arcsin(rng.uniform(-1, 1, 1000))), 0.0, -30.0, 90.0, -90.0]
    pix = healpix_29(ra, dec)
    assert pix.dtype == np.int64 and (pix >= 0).all() and (pix < 12 * 4**29).all()
    lon, lat = healpix_to_lonlat(pix.astype(np.uint64), 29)
    sep = SkyCoord(ra * u.deg, dec * u.deg).separation(SkyCoord(lon.deg * u.deg, lat.deg * u.deg)).arcsec
    assert sep.max() < 1e-3  # order-29 cells are ~0.4 mas
    assert (healpix_29(np.array([np.nan, 10.0, 10.0]), np.array([0.0, 91.0, np.nan])) == -1).all()


def test_ingest_writes_the_index_and_old_catalogs_gain_it(archive_copy, tmp_path):
    held_back = sorted(archive_copy.glob("*_rebinned.fits"))[0]
    held_back.rename(tmp_path / held_back.name)
    ingest(archive_copy, tmp_path / "s", progress=False)
    cat = pl.read_parquet(tmp_path / "s" / "catalog.parquet")
    ok = cat.filter(pl.col("status") == "ok")
    assert ok[HEALPIX_COLUMN].null_count() == 0
    assert (ok[HEALPIX_COLUMN].to_numpy() == healpix_29(ok["ra"].to_numpy(), ok["dec"].to_numpy())).all()
    cat.drop(HEALPIX_COLUMN).write_parquet(tmp_path / "s" / "catalog.parquet")  # a store from before the index
    store = open_store(str(tmp_path / "s"))
    assert store.catalog().filter(pl.col("status") == "ok").collect()[HEALPIX_COLUMN].null_count() == 0  # computed on open
    row = store.catalog().filter(pl.col("status") == "ok").collect().row(0, named=True)
    assert store.cone(row["ra"], row["dec"], 1.0).collect()["source_id"].to_list() == [row["source_id"]]
    (tmp_path / held_back.name).rename(held_back)
    ingest(archive_copy, tmp_path / "s", progress=False)  # the next commit writes it, for the old rows too
    on_disk = pl.read_parquet(tmp_path / "s" / "catalog.parquet").filter(pl.col("status") == "ok")
    assert on_disk.height == ok.height + 1 and on_disk[HEALPIX_COLUMN].null_count() == 0


@pytest.mark.parametrize("args,message", [
    (("10", "91", "5"), "dec must be within"), (("10", "nan", "5"), "dec must be finite"),
    (("10", "0", "0"), "radius must be > 0"), (("10", "0", "-3"), "radius must be > 0"),
    (("abc", "0", "5"), "ra must be a number"),
])
def test_bad_cones_are_clear_errors(sky_store, capsys, args, message):
    assert cli.run(cone_main, [sky_store.url, *args]) == 2
    assert message in capsys.readouterr().err


def test_cone_on_the_command_line(sky_store, capsys, tmp_path):
    assert cli.run(cone_main, [sky_store.url, "359.999", "10", "600", "--out", str(tmp_path / "m.parquet")]) == 0
    out = capsys.readouterr().out
    n = pl.read_parquet(tmp_path / "m.parquet").height
    assert f"{n} source(s) within 600 arcsec" in out and n > 0
    assert cli.run(cone_main, [str(tmp_path / "nothing"), "1", "1", "1"]) == 2
