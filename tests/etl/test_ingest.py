"""Ingest: counts, quarantine, idempotence, replacement, duplicates, bands, workers, lock, kill -9."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from common import cli
from etl.catalog import read_catalog
from etl.errors import StoreError, StoreLockedError
from etl.fitswriter import bintable_fits_bytes
from etl.ingest import ingest, main
from etl.lock import StoreLock
from etl.reader import read_lightcurve
from etl.store import open_store
from etl.synth import lightcurve_header, make_archive, simulate_source

ROOT = Path(__file__).resolve().parents[2]


def assert_store_matches_files(store_path):
    """Every ok row reads back exactly as its file; offsets never overlap."""
    store = open_store(store_path)
    ok = store.catalog().filter(pl.col("status") == "ok").sort("offset").collect()
    ends = (ok["offset"] + ok["n_points"]).to_numpy()
    assert np.all(ok["offset"].to_numpy()[1:] >= ends[:-1])
    for row in ok.iter_rows(named=True):
        ref = read_lightcurve(row["file"])
        got = store.read(row["source_id"])
        for name, arr in ref.columns.items():
            np.testing.assert_array_equal(got.columns[name], arr, err_msg=f"{row['file']} {name}")
    return store


def test_counts_and_every_bad_kind(rebinned_archive, tmp_path):
    summary = ingest(rebinned_archive, tmp_path / "s", progress=False)
    truth = pl.read_parquet(rebinned_archive / "truth.parquet")
    assert summary.discovered == truth.height == 212
    assert (summary.ingested, summary.unchanged, summary.rejected) == (200, 0, 12)
    cat = read_catalog(str(tmp_path / "s"))
    assert cat.height == summary.discovered
    assert cat["file"].is_unique().all()
    joined = cat.with_columns(pl.col("file").str.split("/").list.last().alias("name")).join(
        truth.select(pl.col("file").alias("name"), "expected"), on="name")
    got = joined.select(pl.when(pl.col("status") == "ok").then(pl.lit("ok"))
                        .otherwise(pl.col("reason").str.split(":").list.first()).alias("code"), "expected")
    assert (got["code"] == got["expected"]).all(), got.filter(pl.col("code") != pl.col("expected"))
    assert "discovered 212 | ingested 200 | unchanged 0 | rejected 12" in summary.line()
    assert_store_matches_files(tmp_path / "s")


def test_rerun_is_idempotent(rebinned_archive, tmp_path):
    ingest(rebinned_archive, tmp_path / "s", progress=False)
    before = read_catalog(str(tmp_path / "s"))
    again = ingest(rebinned_archive, tmp_path / "s", progress=False)
    assert (again.discovered, again.ingested, again.unchanged, again.rejected) == (212, 0, 212, 0)
    after = read_catalog(str(tmp_path / "s"))
    assert after.equals(before)


def _rewrite(path: Path, seed: int, source_id: str):
    rng = np.random.default_rng(seed)
    cols, _ = simulate_source(rng, "rebinned", 9, "flare")
    path.write_bytes(bintable_fits_bytes(cols, header=lightcurve_header(source_id, 10.0, 20.0, cols)))


def test_changed_and_new_files(archive_copy, tmp_path):
    store = tmp_path / "s"
    ingest(archive_copy, store, progress=False)
    truth = pl.read_parquet(archive_copy / "truth.parquet").filter(pl.col("expected") == "ok")
    name, sid = truth["file"][3], truth["source_id"][3]
    _rewrite(archive_copy / name, 99, sid)
    _rewrite(archive_copy / "em01_000000_020_LightCurve_99999_c010_rebinned.fits", 98, "1eRASS Jnew")
    summary = ingest(archive_copy, store, progress=False)
    assert (summary.discovered, summary.ingested, summary.unchanged, summary.rejected) == (213, 2, 211, 0)
    cat = read_catalog(str(store))
    assert cat.height == 213 and cat["file"].is_unique().all()
    assert cat.filter(pl.col("source_id") == sid).height == 1  # replaced, not duplicated
    s = assert_store_matches_files(store)
    np.testing.assert_array_equal(s.read(sid).rate, read_lightcurve(archive_copy / name).rate)
    assert "em01_000000_99999" in s and s.catalog().filter(pl.col("object") == "1eRASS Jnew").collect().height == 1


def test_real_fixtures_with_shared_object(real_files, tmp_path):
    archive = tmp_path / "a"
    archive.mkdir()
    for f in real_files:
        shutil.copy(f, archive)
    summary = ingest(archive, tmp_path / "s", progress=False)
    assert (summary.ingested, summary.rejected) == (3, 0)
    cat = read_catalog(str(tmp_path / "s")).sort("file")
    assert cat["source_id"].to_list() == ["00001", "00001@srctool_loggauss_020_LightCurve_00001", "00022"]
    assert cat["object"].to_list() == ["00001", "00001", "00022"]
    assert cat["flavour"].to_list() == ["srctool"] * 3
    assert cat["n_points"].to_list() == [17, 17, 31]
    assert cat["e_max"][0].to_list() == [5.0, 2.3, 5.0]
    store = assert_store_matches_files(tmp_path / "s")
    np.testing.assert_array_equal(store.e_min, [0.2, 0.2, 2.3])
    # a copy with identical content is a duplicate and is quarantined
    shutil.copy(real_files[2], archive / "zz_copy_020_LightCurve_00022.fits.gz")
    summary = ingest(archive, tmp_path / "s", progress=False)
    assert (summary.ingested, summary.unchanged, summary.rejected) == (0, 3, 1)
    assert summary.rejected_files[0][1].startswith("duplicate_source: identical content to ")


def test_band_system_mismatch_is_rejected(rebinned_archive, real_files, tmp_path):
    ingest(rebinned_archive, tmp_path / "s", progress=False)
    archive = tmp_path / "real"
    archive.mkdir()
    shutil.copy(real_files[0], archive)
    summary = ingest(archive, tmp_path / "s", progress=False)
    assert summary.rejected == 1
    assert summary.rejected_files[0][1].startswith("band_mismatch: file bands [0.2-5, 0.2-2.3, 2.3-5] keV")


def test_srctool_gzip_archive(srctool_archive, tmp_path):
    summary = ingest(srctool_archive, tmp_path / "s", progress=False)
    assert (summary.ingested, summary.rejected) == (60, 0)
    cat = read_catalog(str(tmp_path / "s"))
    assert set(cat["flavour"]) == {"srctool"}
    assert (cat["n_rows_file"] > cat["n_points"]).all()
    assert_store_matches_files(tmp_path / "s")


def test_two_workers_give_the_same_store(rebinned_archive, tmp_path):
    ingest(rebinned_archive, tmp_path / "one", progress=False, batch_size=16)
    ingest(rebinned_archive, tmp_path / "two", workers=2, progress=False, batch_size=16)
    cols = ["file", "source_id", "status", "reason", "offset", "n_points", "content_hash"]
    one = read_catalog(str(tmp_path / "one")).select(cols).sort("file")
    two = read_catalog(str(tmp_path / "two")).select(cols).sort("file")
    assert one.equals(two)
    assert_store_matches_files(tmp_path / "two")


def test_locked_store_fails_fast(rebinned_archive, tmp_path):
    store = tmp_path / "s"
    with StoreLock(str(store)):
        start = time.perf_counter()
        with pytest.raises(StoreLockedError, match=f"pid {os.getpid()}"):
            ingest(rebinned_archive, store, progress=False)
        assert time.perf_counter() - start < 5
    assert ingest(rebinned_archive, store, progress=False).ingested == 200  # released on exit


def test_cli_errors(tmp_path, capsys):
    assert cli.run(main, [str(tmp_path / "nope"), "--store", str(tmp_path / "s"), "--quiet"]) == 2
    assert "archive directory does not exist" in capsys.readouterr().err
    (tmp_path / "a").mkdir()
    (tmp_path / "file").write_text("x")
    assert cli.run(main, [str(tmp_path / "a"), "--store", str(tmp_path / "file" / "s"), "--quiet"]) == 2
    assert "cannot create the store directory" in capsys.readouterr().err
    with pytest.raises(StoreError):
        ingest(tmp_path / "a", tmp_path / "file" / "s", progress=False)


def test_cli_summary_and_rejects(rebinned_archive, tmp_path, capsys):
    assert cli.run(main, [str(rebinned_archive), "--store", str(tmp_path / "s"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "discovered 212 | ingested 200 | unchanged 0 | rejected 12" in out
    assert "not_fits" in out and "and 2 more" in out


def _ingest_cmd(archive, store, *extra):
    return [sys.executable, "-m", "etl.ingest", str(archive), "--store", str(store), "--quiet", *extra]


@pytest.fixture(scope="module")
def big_archive(tmp_path_factory):
    out = tmp_path_factory.mktemp("big")
    make_archive(out, n=2500, seed=21, flavour="mixed", bad=12, progress=False)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.6, 1.5])
def test_kill_9_then_rerun_completes(big_archive, tmp_path, delay):
    store = tmp_path / "s"
    proc = subprocess.Popen(_ingest_cmd(big_archive, store, "--flush-points", "2000", "--batch-size", "64"),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    catalog = store / "catalog.parquet"
    deadline = time.monotonic() + 60
    while delay and not catalog.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(delay)
    assert proc.poll() is None, "ingest finished before it could be killed; enlarge the archive"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if catalog.exists():
        partial = read_catalog(str(store))
        assert partial.height < 2512
        assert_store_matches_files(store)  # nothing half-written is visible
    done = subprocess.run(_ingest_cmd(big_archive, store), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    cat = read_catalog(str(store))
    assert cat.height == 2512 and cat["file"].is_unique().all()
    assert cat.filter(pl.col("status") == "ok").height == 2500
    assert not list(store.rglob("*.partial"))
    assert_store_matches_files(store)


@pytest.mark.slow
def test_second_concurrent_ingest_fails_and_first_is_unharmed(big_archive, tmp_path):
    store = tmp_path / "s"
    first = subprocess.Popen(_ingest_cmd(big_archive, store, "--flush-points", "5000"), cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = store / ".ingest.lock"
    deadline = time.monotonic() + 60
    while not (lock.exists() and lock.read_text()) and time.monotonic() < deadline:
        time.sleep(0.01)
    second = subprocess.run(_ingest_cmd(big_archive, store), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert first.poll() is None, "first ingest ended before the second started"
    assert second.returncode == 2
    assert "another ingest holds the store lock" in second.stderr
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert "discovered 2512 | ingested 2500 | unchanged 0 | rejected 12" in out
    assert_store_matches_files(store)


def test_in_order_bounds_what_is_in_flight():
    from concurrent.futures import Future

    from etl.ingest import in_order

    pending = []

    def submit(x):
        pending.append(x)
        f = Future()
        f.set_result(x * 10)
        return f

    out = []
    for value in in_order(submit, range(7), in_flight=3):
        out.append(value)
        assert len(pending) - len(out) <= 3
    assert out == [0, 10, 20, 30, 40, 50, 60]


def _dr1_archive(root: Path, n: int = 300) -> pl.DataFrame:
    return make_archive(root, n=n, seed=17, flavour="dr1", progress=False)


def test_dr1_ids_are_unique_and_do_not_depend_on_folder_or_order(tmp_path):
    """OBJECT is the running number in a sky tile ('00002' in every tile): ids come from the file name's tile
    and number, unique, and the same whatever folder holds the archive or in which order files are found."""
    truth = _dr1_archive(tmp_path / "a")
    assert truth["object"].n_unique() < truth.height / 10  # OBJECT repeats across tiles
    ingest(tmp_path / "a", tmp_path / "s1", progress=False)
    cat1 = read_catalog(str(tmp_path / "s1")).filter(pl.col("status") == "ok")
    assert cat1.height == 300 and cat1["source_id"].is_unique().all()
    assert set(cat1["source_id"]) == set(truth["source_id"])  # the synthetic truth predicts them
    assert cat1["source_id"][0].startswith("em01_") and cat1["object"].to_list() == cat1["object"].to_list()
    # the same files elsewhere, spread over folders whose names sort the other way round
    files = sorted((tmp_path / "a").glob("*.fits"))
    for i, f in enumerate(files):
        folder = tmp_path / "b" / f"z{len(files) - i:04d}"
        folder.mkdir(parents=True)
        shutil.copy(f, folder / f.name)
    ingest(tmp_path / "b", tmp_path / "s2", progress=False)
    cat2 = read_catalog(str(tmp_path / "s2")).filter(pl.col("status") == "ok")
    pairs = lambda cat: set(zip(cat["file"].map_elements(lambda p: Path(p).name, return_dtype=pl.String), cat["source_id"]))  # noqa: E731
    assert pairs(cat1) == pairs(cat2)
    assert cat1["iau_name"].str.starts_with("1eRASS J").all() and (cat1["error_convention"] == "estimated").all()


def test_two_files_of_one_source_get_ids_by_name_not_by_folder(tmp_path):
    """Same tile and number, different content (two processings): the first by file name keeps the plain id."""
    truth = _dr1_archive(tmp_path / "src", 3)
    first = tmp_path / "src" / truth["file"][0]
    for layout in ("x", "y"):
        (tmp_path / layout / "b").mkdir(parents=True)
        (tmp_path / layout / "a").mkdir(parents=True)
        older, newer = ("a", "b") if layout == "x" else ("b", "a")  # the folders swap
        shutil.copy(first, tmp_path / layout / older / first.name)
        _rewrite(tmp_path / layout / newer / first.name.replace("_c010", "_c020"), 5, "00001")
        ingest(tmp_path / layout, tmp_path / f"s{layout}", progress=False)
    ids = [sorted(zip(read_catalog(str(tmp_path / f"s{x}"))["file"].map_elements(lambda p: Path(p).name, return_dtype=pl.String),
                      read_catalog(str(tmp_path / f"s{x}"))["source_id"])) for x in "xy"]
    assert ids[0] == ids[1]
    assert dict(ids[0])[first.name] == truth["source_id"][0]
    assert dict(ids[0])[first.name.replace("_c010", "_c020")] == f"{truth['source_id'][0]}@{first.name.replace('_c010', '_c020')[:-5]}"


def test_a_store_from_before_name_ids_keeps_its_ids(tmp_path):
    """A schema 2 store (ids from OBJECT) keeps making ids that way after the upgrade: nothing committed changes."""
    import zarr

    _dr1_archive(tmp_path / "a", 40)
    ingest(tmp_path / "a", tmp_path / "s", progress=False)
    group = zarr.open_group(str(tmp_path / "s"), mode="a")
    for key in ("binning", "id_scheme"):
        del group.attrs[key]
    group.attrs["schema_version"] = 2
    cat = read_catalog(str(tmp_path / "s"))
    old = cat.with_columns(source_id=pl.col("object") + "@" + pl.col("file").str.extract(r"(em01_\d+)_020"))
    from etl.catalog import write_catalog

    write_catalog(str(tmp_path / "s"), old.drop("iau_name", "error_convention", "n_err_fallback"))
    make_archive(tmp_path / "b", n=5, seed=99, flavour="dr1", progress=False)
    for f in (tmp_path / "b").glob("*.fits"):
        shutil.copy(f, tmp_path / "a" / f"em01_99{f.name[7:]}")
    ingest(tmp_path / "a", tmp_path / "s", progress=False)
    after = read_catalog(str(tmp_path / "s"))
    group = zarr.open_group(str(tmp_path / "s"), mode="r")
    assert group.attrs["schema_version"] == 3 and group.attrs["id_scheme"] == "object" and group.attrs["binning"] == "none"
    kept = after.join(old.select("file", "source_id"), on="file", suffix="_before")
    assert kept.height == 40 and (kept["source_id"] == kept["source_id_before"]).all()  # committed ids unchanged
    new = after.filter(~pl.col("file").is_in(old["file"].implode()))
    assert new.height == 5 and not new["source_id"].str.starts_with("em01_").any()  # OBJECT-based, as the store always did
