"""HATS export: lsdb opens it, and its cone search and cross-match agree with store.cone and astropy."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord, match_coordinates_sky

from common import cli
from etl.ingest import ingest
from etl.store import open_store
from features.export_hats import main as export_main
from features.export_hats import read_manifest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, rebinned_archive):
    from features.builders import build_variability

    root = tmp_path_factory.mktemp("hats")
    ingest(rebinned_archive, root / "s", progress=False)
    build_variability(root / "s")
    assert cli.run(export_main, [str(root / "s"), str(root / "hats"), "--feature-sets", "variability", "--lightcurves"]) == 0
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
    assert cli.run(export_main, [store.url, str(out)]) == 2
    assert "--update" in capsys.readouterr().err
    assert cli.run(export_main, [store.url, str(out) + "-2", "--feature-sets", "nope"]) == 2
    assert "no feature set 'nope'" in capsys.readouterr().err


@pytest.fixture()
def growing(tmp_path, rebinned_archive):
    """A store of half the archive's files, the other half ready to be ingested later."""
    files = sorted(rebinned_archive.glob("*.fits*"))
    archive = tmp_path / "archive"
    archive.mkdir()
    for f in files[::2]:
        shutil.copy(f, archive)
    ingest(archive, tmp_path / "s", progress=False)
    return archive, files[1::2], tmp_path / "s", tmp_path / "hats"


def test_update_is_a_noop_until_the_store_grows_then_rewrites_it_whole(growing, capsys):
    import lsdb

    archive, later, store_path, out = growing
    assert cli.run(export_main, [str(store_path), str(out), "--lightcurves"]) == 0
    first = read_manifest(out)
    assert first["made_from"]["lightcurves"] and first["sources"] == len(open_store(str(store_path)))
    capsys.readouterr()
    assert cli.run(export_main, [str(store_path), str(out), "--update"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert read_manifest(out)["written_at"] == first["written_at"]

    for f in later:
        shutil.copy(f, archive)
    ingest(archive, store_path, progress=False)
    store = open_store(str(store_path))
    assert len(store) > first["sources"]
    assert cli.run(export_main, [str(store_path), str(out), "--update"]) == 0  # options from the manifest: light curves kept
    frame = lsdb.open_catalog(out).compute()
    ok = store.catalog().filter(pl.col("status") == "ok").collect()
    assert sorted(frame["source_id"]) == sorted(ok["source_id"]) and "lc" in frame.columns
    newest = ok["source_id"][-1]
    row = frame[frame["source_id"] == newest].iloc[0]
    np.testing.assert_array_equal(row["lc"]["rate_b1"].to_numpy(), store.read(newest).rate[:, 0])
    assert not list(out.parent.glob(f".{out.name}.*"))  # no partial or old folder left


def test_update_refuses_a_folder_that_is_not_an_export(tmp_path, exported, capsys):
    store, _ = exported
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert cli.run(export_main, [store.url, str(tmp_path / "mine"), "--update"]) == 2
    assert "not an export" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_kill9_mid_export_leaves_the_previous_export_whole(growing):
    """kill -9 at a random moment of an --overwrite: OUT is still the old export, and the next run cleans up."""
    import lsdb

    _, _, store_path, out = growing
    assert cli.run(export_main, [str(store_path), str(out), "--lightcurves"]) == 0
    before = read_manifest(out)
    rng = np.random.default_rng()
    cmd = [sys.executable, "-m", "features.export_hats", str(store_path), str(out), "--overwrite"]
    for delay in rng.uniform(0.5, 8.0, 2):
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.kill()
        proc.wait()
        now = read_manifest(out)
        assert now is not None and lsdb.open_catalog(out).compute().shape[0] == now["sources"]
        # old (light curves) or new (none, if the run got as far as the swap): never a mix
        assert now["made_from"]["lightcurves"] == ("lc" in lsdb.open_catalog(out).columns)
    assert now["written_at"] >= before["written_at"]
    assert cli.run(export_main, [str(store_path), str(out), "--overwrite"]) == 0
    assert not list(out.parent.glob(f".{out.name}.*"))


def test_dask_tokens_of_nested_light_curves_are_cheap_and_tell_data_apart():
    import nested_pandas as npd
    import pandas as pd
    from dask.base import tokenize

    from features.export_hats import _tokenize_nested_by_arrow

    _tokenize_nested_by_arrow()

    def frame(value):
        base = npd.NestedFrame(pd.DataFrame({"a": [1, 2]}))
        return base.join_nested(pd.DataFrame({"t": [0.0, 1.0, 2.0], "r": [1.0, value, 3.0]}, index=[0, 0, 1]), "lc")

    assert tokenize(frame(2.0)) == tokenize(frame(2.0))
    assert tokenize(frame(2.0)) != tokenize(frame(2.5))


def test_a_kill_between_the_two_renames_is_repaired_by_the_next_run(growing):
    """No OUT, the old export as .OUT.old-<dead pid>, the new one as a complete .OUT.partial-<dead pid>."""
    _, _, store_path, out = growing
    assert cli.run(export_main, [str(store_path), str(out)]) == 0
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    shutil.copytree(out, out.parent / f".{out.name}.partial-{dead}-0a1b2c3d")  # complete: has its manifest
    (out.parent / f".{out.name}.partial-{dead}-0a1b2c3d" / "erosita_export.json").write_text(
        (out / "erosita_export.json").read_text().replace('"written_at": "', '"written_at": "new '))
    out.rename(out.parent / f".{out.name}.old-{dead}-4e5f6a7b")
    assert cli.run(export_main, [str(store_path), str(out), "--update"]) == 0
    assert read_manifest(out)["written_at"].startswith("new ")  # the new one was put in place, and is current
    assert not list(out.parent.glob(f".{out.name}.*"))
