"""Feature sets: build, reuse, versioning, lineage, joined query, model-derived sets, CLI."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import polars as pl
import pytest

from common import cli
from etl.ingest import ingest
from etl.store import open_store
from etl.synth import make_archive
from features import FeatureSetError, get_feature_set, get_features, list_feature_sets
from features.build import main
from features.builders import build_variability
from features.featurestore import write_feature_set


@pytest.fixture()
def store(tmp_path):
    make_archive(tmp_path / "a", n=120, seed=8, flavour="mixed", progress=False)
    ingest(tmp_path / "a", tmp_path / "s", progress=False)
    return tmp_path / "s"


def test_build_reuse_and_new_version(store, tmp_path):
    meta, created = build_variability(store)
    assert created and meta["version"] == 1 and meta["rows"] == 120
    assert "reduced_chi2_b1" in meta["columns"] and "hr_12" in meta["columns"]
    meta2, created2 = build_variability(store)
    assert not created2 and meta2["version"] == 1  # unchanged store: reused, not recomputed
    # the store changes: new sources -> new version, old one still readable
    make_archive(tmp_path / "b", n=10, seed=99, flavour="rebinned", progress=False)
    ingest(tmp_path / "b", store, progress=False)
    meta3, created3 = build_variability(store)
    assert created3 and meta3["version"] == 2 and meta3["rows"] == 130
    assert meta3["lineage"]["catalog_hash"] == open_store(store).snapshot_hash() != meta["lineage"]["catalog_hash"]
    old, data = get_feature_set(store, "variability@1")
    assert old["version"] == 1 and data.collect().height == 120
    listing = list_feature_sets(store)
    assert listing.filter(pl.col("name") == "variability")["version"].to_list() == [1, 2]
    assert json.loads(listing["lineage"][0])["features_version"] == 1


def test_joined_query(store):
    build_variability(store)
    rng = np.random.default_rng(0)
    ids = open_store(store).source_ids
    write_feature_set(store, "vae_anomaly", pl.DataFrame({"source_id": ids, "anomaly_score": rng.random(len(ids))}),
                      {"checkpoint": "x.h5", "checkpoint_hash": "0"})
    lf = get_features(store, ["variability", "vae_anomaly"])
    assert isinstance(lf, pl.LazyFrame)
    chi2 = lf.select("reduced_chi2_b2").collect()["reduced_chi2_b2"]
    cut = float(chi2.median())
    df = lf.filter((pl.col("reduced_chi2_b2") > cut) & (pl.col("anomaly_score") > 0.5)).select(
        "source_id", "ra", "dec", "mean_rate_b2", "reduced_chi2_b2", "anomaly_score").collect()
    wanted = {r["source_id"] for r in lf.collect().iter_rows(named=True)  # the same filter, row by row in Python
              if r["reduced_chi2_b2"] is not None and r["reduced_chi2_b2"] > cut and r["anomaly_score"] > 0.5}
    assert df.height > 0 and set(df["source_id"]) == wanted
    some = get_features(store, ["variability"], sources=ids[:5], catalog_columns=["ra"]).collect()
    assert some.height == 5 and some.columns[:2] == ["source_id", "ra"]
    with pytest.raises(FeatureSetError, match="no feature set 'nope'"):
        get_features(store, ["nope"])
    with pytest.raises(FeatureSetError, match="no version 7"):
        get_features(store, ["variability@7"])


def test_model_derived_sets_via_cli(store, tmp_path, capfd):
    import training.fit as fit

    run = tmp_path / "run"
    assert cli.run(fit.main, ["--store", str(store), "--epochs", "1", "--run-dir", str(run), "--wandb-mode", "disabled",
                     "--no-progress", "--no-evaluate", "--lr", "1e-3"]) == 0
    ckpt = run / "checkpoints" / "best.h5"
    assert cli.run(main, ["--store", str(store), "--checkpoint", str(ckpt), "--null-sources", "2000"]) == 0
    out = capfd.readouterr().out
    assert "variability@1: 120 sources" in out and "vae_latent@1" in out and "vae_anomaly@1" in out
    meta, data = get_feature_set(store, "vae_anomaly")
    assert meta["lineage"]["checkpoint"] == str(ckpt.resolve()) and meta["lineage"]["config"]["latent"] == 40
    assert data.collect().height == 120 and set(data.collect()["split"]) == {"train", "val", "test"}
    assert len(get_feature_set(store, "vae_latent")[0]["columns"]) == 40
    # calibrated on the store's 2,000 simulated constants scored by the same model
    assert meta["lineage"]["null"]["n"] == 2000 and {"anomaly_fpp", "vae_variable_3sigma"} <= set(meta["columns"])
    fpp = data.collect()["anomaly_fpp"].drop_nulls()
    assert fpp.len() >= 110 and ((fpp > 0) & (fpp <= 1)).all()
    assert cli.run(main, ["--store", str(store), "--checkpoint", str(ckpt), "--null-sources", "2000"]) == 0
    assert capfd.readouterr().out.count("unchanged, reused") == 5  # 3 classical sets, 2 model sets
    shutil.copy(ckpt, tmp_path / "other.h5")  # another model file: new lineage, new version
    with open(tmp_path / "other.h5", "ab") as fh:
        fh.write(b"\0")
    assert cli.run(main, ["--store", str(store), "--checkpoint", str(tmp_path / "other.h5"), "--null-sources", "2000"]) == 0
    assert get_feature_set(store, "vae_anomaly")[0]["version"] == 2


def test_cli_errors(tmp_path, capsys):
    assert cli.run(main, ["--store", str(tmp_path / "missing")]) == 2
    assert "not a light-curve store" in capsys.readouterr().err


@pytest.mark.slow
def test_join_of_three_sets_on_many_sources_is_fast(tmp_path):
    """100,000 synthetic rows per set (the store itself stays small)."""
    make_archive(tmp_path / "a", n=5, seed=1, progress=False)
    ingest(tmp_path / "a", tmp_path / "s", progress=False)
    store = open_store(tmp_path / "s")
    ids = [f"x{i}" for i in range(100_000)]
    rng = np.random.default_rng(0)
    for name in ("one", "two", "three"):
        write_feature_set(store, name, pl.DataFrame({"source_id": ids, **{f"{name}_{k}": rng.random(100_000) for k in range(10)}}), {"n": name})
    start = time.perf_counter()
    df = get_features(store, ["one", "two", "three"]).collect()
    assert time.perf_counter() - start < 5  # generous for CI; the benchmark prints the figure
    assert df.height == 5


def test_sets_read_from_another_working_directory(tmp_path, monkeypatch):
    """A set built with a relative --store reads from any working folder."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    work = tmp_path / "a"
    make_archive(work / "archive", n=30, seed=3, progress=False)
    ingest(work / "archive", work / "store", progress=False)
    env = {**__import__("os").environ, "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, "-m", "features.build", "--store", "store"], cwd=work, capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    other = tmp_path / "b"
    other.mkdir()
    monkeypatch.chdir(other)
    frame = get_features("../a/store", ["variability"]).collect()
    assert frame.height == 30 and frame["reduced_chi2_b2"].null_count() < 30
    shutil.copytree(work / "store", tmp_path / "moved")  # a copied store keeps working too
    assert get_features(str(tmp_path / "moved"), ["variability"]).collect().height == 30
    meta = json.loads(next((work / "store" / "features" / "variability").glob("v*/meta.json")).read_text())
    assert meta["path"] == "data.parquet"


def test_features_package_never_imports_torch(tmp_path):
    import subprocess
    import sys

    code = "import sys, features, features.build, features.variability; assert 'torch' not in sys.modules, 'torch imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def _write_versions(store: str, tag: str, n: int) -> None:
    """A writer process: n versions of one set, each with its own lineage and recognisable data."""
    for i in range(n):
        write_feature_set(store, "race", pl.DataFrame({"source_id": [f"{tag}{i}"], "value": [i]}), {"writer": tag, "i": i})


def test_two_writers_at_once_lose_no_version(store):
    """Two processes writing 150 versions each: 300 versions, each with its own data."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_versions, args=(str(store), tag, 150)) for tag in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
        assert p.exitcode == 0
    listed = list_feature_sets(store).filter(pl.col("name") == "race")
    assert sorted(listed["version"].to_list()) == list(range(1, 301))
    for version, lineage in zip(listed["version"].to_list(), listed["lineage"].to_list()):
        lineage = json.loads(lineage)
        data = get_feature_set(store, f"race@{version}")[1].collect()
        assert data.rows() == [(f"{lineage['writer']}{lineage['i']}", lineage["i"])], version
    assert not list((store / "features" / "race").glob(".*"))  # no side folder left behind


def test_two_builds_at_once(store):
    """Two feature builds at once: the second waits for the first and reuses what it built (exit 0 both)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "features.build", "--store", str(store), "--null-sources", "2000"]
    procs = [subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=280) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    assert sum("waiting for it" in err for _, err in outs) == 1
    assert sum("unchanged, reused" in out for out, _ in outs) == 1
    listed = list_feature_sets(store)
    assert listed["name"].to_list() == ["morphology", "poisson_variability", "variability"]
    assert listed["version"].to_list() == [1, 1, 1]
    assert len(list((store / "calibration").iterdir())) == 1  # one null store, complete


def test_a_build_that_may_not_wait_says_who_holds_the_lock(store, capsys):
    import subprocess
    import sys

    hold = ("import sys, time; from etl.store import open_store; from features.featurestore import build_lock\n"
            "with build_lock(open_store(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(store)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert cli.run(main, ["--store", str(store), "--no-wait"]) == 2
    finally:
        holder.kill()
        holder.wait()
    assert f"another feature build holds the store lock (pid {holder.pid}" in capsys.readouterr().err
    assert cli.run(main, ["--store", str(store), "--no-wait", "--null-sources", "2000"]) == 0


def test_features_build_on_an_s3_store(rebinned_archive, s3_endpoint, tmp_path, capsys):
    """``features.build --store s3://...`` builds the calibrated sets there (simulated constants included),
    with the same values as on a local copy of the same ingest."""
    from etl.store import open_store

    options = {"endpoint_url": s3_endpoint}
    url = "s3://lcstore/store"
    ingest(rebinned_archive, url, progress=False, storage_options=options)
    ingest(rebinned_archive, tmp_path / "local", progress=False)
    assert cli.run(main, ["--store", url, "--null-sources", "2000"]) == 0
    assert cli.run(main, ["--store", str(tmp_path / "local"), "--null-sources", "2000"]) == 0
    out = capsys.readouterr().out
    assert out.count("poisson_variability@1: 200 sources") == 2
    remote = open_store(url, storage_options=options)
    names = set(list_feature_sets(remote)["name"])
    assert {"variability", "poisson_variability", "morphology"} <= names
    for name in ("variability", "poisson_variability", "morphology"):
        a = get_feature_set(remote, name)[1].collect().sort("source_id")
        b = get_feature_set(str(tmp_path / "local"), name)[1].collect().sort("source_id")
        assert a.equals(b), name
    import fsspec

    fs = fsspec.filesystem("s3", endpoint_url=s3_endpoint)
    nulls = [p for p in fs.ls("lcstore/store/calibration") if "null-" in p]
    assert len(nulls) == 1 and fs.exists(nulls[0] + "/complete")
    assert cli.run(main, ["--store", url, "--null-sources", "2000"]) == 0  # again: everything reused
    assert out.count("built") >= 6 and "unchanged, reused" in capsys.readouterr().out
