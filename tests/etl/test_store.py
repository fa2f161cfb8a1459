"""Store read API: exact values, batches, padding, errors, bounded cache, plain Parquet catalog."""

from __future__ import annotations


import numpy as np
import polars as pl
import pytest
import zarr

from etl.errors import SchemaVersionError, SourceNotFoundError, StoreError
from etl.ingest import ingest
from etl.lightcurve import POINT_COLUMNS
from etl.reader import read_lightcurve
from etl.store import ChunkCache, open_store


@pytest.fixture(scope="module")
def store(rebinned_archive, tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "lc.zarr"
    # tiny chunks and many commits: most light curves straddle chunks, shards are rewritten
    ingest(rebinned_archive, path, progress=False, flush_points=500, chunk_points=64)
    return open_store(path, cache_bytes=64 * 2**10)


def test_read_equals_file(store):
    cat = store.catalog().filter(pl.col("status") == "ok").collect()
    assert cat.height == 200
    for row in cat.iter_rows(named=True):
        lc = store.read(row["source_id"])
        ref = read_lightcurve(row["file"])
        assert lc.flavour == ref.flavour and lc.file == row["file"]
        np.testing.assert_array_equal(lc.e_min, ref.e_min)
        for name in POINT_COLUMNS:
            assert lc.columns[name].dtype == np.dtype(POINT_COLUMNS[name][0])
            np.testing.assert_array_equal(lc.columns[name], ref.columns[name], err_msg=name)


def test_read_many_and_padding(store):
    ids = store.source_ids[5:12]
    batch = store.read_many(ids, columns=["rate", "time"])
    assert set(batch.columns) == {"rate", "time"}
    assert batch.source_ids == ids
    for i, sid in enumerate(ids):
        np.testing.assert_array_equal(batch[i]["rate"], store.read(sid).rate)
    values, mask = batch.padded("rate")
    assert values.shape == (7, batch.lengths.max(), 3)
    assert mask.sum() == batch.lengths.sum()
    assert np.all(values[~mask] == 0)
    cut, cut_mask = batch.padded("rate", length=3)
    assert cut.shape == (7, 3, 3) and cut_mask.all()
    np.testing.assert_array_equal(cut[0], store.read(ids[0]).rate[:3])


def test_light_curves_across_chunk_boundaries(store):
    size = store.chunk_points
    starts, lengths = store.locate(store.source_ids)
    straddling = [s for s, o, n in zip(store.source_ids, starts, lengths) if o // size != (o + n - 1) // size]
    assert len(straddling) > 20
    for sid in straddling[:20]:
        ref = read_lightcurve(store.read(sid).file)
        np.testing.assert_array_equal(store.read(sid).rate, ref.rate)


def test_cache_is_bounded(store):
    rng = np.random.default_rng(0)
    ids = store.source_ids
    for _ in range(50):
        store.read_many(list(rng.choice(ids, 32)))
        assert store.cache.nbytes <= store.cache.max_bytes


def test_cache_lru():
    cache = ChunkCache(max_bytes=3 * 80)
    for k in range(5):
        cache.get(("a", k), lambda: np.zeros(10))
    assert cache.nbytes == 240
    cache.get(("a", 4), lambda: pytest.fail("should be cached"))
    assert cache.hits == 1 and cache.misses == 5


def test_unknown_source_and_column(store):
    with pytest.raises(SourceNotFoundError, match="no ingested source"):
        store.read("nope")
    rejected = store.catalog().filter(pl.col("status") == "rejected").collect()
    bad = rejected.filter(pl.col("reason").str.starts_with("not_fits"))["source_id"][0]
    with pytest.raises(SourceNotFoundError):
        store.read_many([bad])
    with pytest.raises(ValueError, match="unknown column"):
        store.read_many(store.source_ids[:1], columns=["flux"])


def test_catalog_is_plain_parquet(store):
    cat = pl.scan_parquet(store.catalog_path).collect()
    need = {"source_id", "file", "status", "reason", "flavour", "n_points", "ra", "dec", "t_start", "t_stop",
            "offset", "content_hash", "e_min", "e_max", "mean_rate_b1", "mean_rate_b2", "mean_rate_b3"}
    assert need <= set(cat.columns)
    ok = cat.filter(pl.col("status") == "ok")
    assert ok["reason"].null_count() == ok.height
    assert (ok["t_stop"] > ok["t_start"]).all()
    assert ok["offset"].is_unique().all()
    attrs = dict(zarr.open_group(store.url, mode="r").attrs)
    assert attrs["schema_version"] == 3 and attrs["bands"]["e_min"] == [0.2, 0.6, 2.3]
    assert attrs["binning"] == "none" and attrs["id_scheme"] == "name"
    assert attrs["builder"].startswith("etl ")


def test_random_reads_decode_each_chunk_once(store):
    """10,000 random reads: each chunk is decoded once and then served from the cache (what makes them fast;
    python benchmarks/read.py measures the speed itself)."""
    big = open_store(store.url)
    rng = np.random.default_rng(1)
    picks = rng.choice(big.source_ids, 10_000)
    for i in range(0, len(picks), 32):
        batch = big.read_many(picks[i : i + 32])
        assert batch.source_ids == list(picks[i : i + 32])
    n_points = int(big.ok_sources().select((pl.col("offset") + pl.col("n_points")).max()).item())
    chunks = -(-n_points // big.chunk_points) * len(big.arrays)  # every column's chunks
    assert big.cache.misses <= chunks
    assert big.cache.hits >= 10_000 * len(big.arrays) - chunks


def test_open_errors(tmp_path):
    with pytest.raises(StoreError, match="not a light-curve store"):
        open_store(tmp_path / "missing")
    g = zarr.open_group(tmp_path / "other", mode="w")
    with pytest.raises(StoreError, match="schema_version"):
        open_store(tmp_path / "other")
    g.attrs["schema_version"] = 99
    with pytest.raises(SchemaVersionError, match="99"):
        open_store(tmp_path / "other")


def test_times_carry_their_reference(real_files, tmp_path):
    """MJDREF/TIMESYS per source, LightCurve.mjd, units and band coordinates in Zarr."""
    import shutil

    import xarray as xr
    from astropy.io import fits
    from astropy.time import Time

    archive = tmp_path / "a"
    archive.mkdir()
    shutil.copy(real_files[2], archive)
    ingest(archive, tmp_path / "s", progress=False)
    store = open_store(tmp_path / "s")
    row = store.catalog().collect().row(0, named=True)
    header = fits.getheader(real_files[2], "RATE")
    assert row["mjdref"] == header["MJDREF"] == 51543.875 and row["timesys"] == "TT"
    lc = store.read(row["source_id"])
    expected = Time(header["MJDREF"], format="mjd", scale="tt") + np.asarray(lc.time) * __import__("astropy.units").units.s
    np.testing.assert_allclose(lc.mjd, expected.mjd, rtol=0, atol=1e-9)
    assert row["mjd_start"] == pytest.approx(lc.mjd[0], abs=1e-9)
    assert Time(lc.mjd[0], format="mjd", scale=lc.timesys.lower()).utc.isot.startswith("2019-11-0")
    ds = xr.open_zarr(str(tmp_path / "s"), group="points", consolidated=False)
    assert ds["rate"].attrs["units"] == "ct/s" and ds["time"].attrs["units"] == "s"
    assert ds["rate"].dims == ("point", "band")
    np.testing.assert_array_equal(ds["e_min"].values, [0.2, 0.2, 2.3])
    assert "e_min" in ds["rate"].coords and "e_max" in ds["counts"].coords
    np.testing.assert_array_equal(ds["rate"].values[: lc.n_points], lc.rate)


def test_store_shared_between_threads(store):
    """Eight threads reading through one store (one chunk cache) get what one thread gets."""
    from concurrent.futures import ThreadPoolExecutor

    ids = store.source_ids
    expected = {sid: store.read(sid).rate.copy() for sid in ids}
    store.cache.clear()

    def work(k):
        rng = np.random.default_rng(k)
        for _ in range(60):
            pick = [ids[i] for i in rng.integers(0, len(ids), 16)]
            batch = store.read_many(pick, columns=["rate"])
            for i, sid in enumerate(pick):
                np.testing.assert_array_equal(batch[i]["rate"], expected[sid])
        return True

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(work, range(8)))
    assert store.cache.nbytes <= store.cache.max_bytes + max(a.nbytes for a in store.cache._items.values())
