"""The survey flow end to end on 2,000 DR1-shaped files: outputs, a rerun that does nothing, kills, bad input.

Every run here is ``python -m flows.survey`` in its own process, as a user starts it, against the
session's Prefect server. The reference run is uninterrupted; another store is killed with
SIGKILL once in each step (while the step runs, as ``STORE/survey.json`` says) and run again after
every kill; at the end both stores must hold the same catalog and the same feature values, and the
model sets must come from the killed store's own finished checkpoint.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from etl.catalog import read_catalog
from etl.store import open_store
from etl.synth import make_archive
from features.featurestore import file_hash, get_feature_set, list_feature_sets

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
STEPS = ("ingest", "features", "train", "model_sets", "hats")
#: A small, quick training (the shipped config's model, 2 epochs) and a small calibration.
OPTIONS = ["--epochs", "2", "--null-sources", "2000", "--train-sample", "600"]


@pytest.fixture(scope="module")
def api_env(prefect_server):
    from prefect.settings import PREFECT_API_URL

    return dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value(), WANDB_MODE="disabled")


#: Hostile entries added to the archive: each must become a rejected row, and the flow go on.
HOSTILE = {"fifo.fits": "not_regular_file", "garbage.fits.gz": "corrupt_gzip", "loop.fits": "unreadable"}


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """2,000 DR1-shaped light curves in eRASS sky-tile folders, 1 % rare, one malformed file of each kind,
    a FIFO, a gzip that is not one and a link to itself."""
    out = tmp_path_factory.mktemp("survey") / "archive"
    make_archive(out, n=2000, seed=7, flavour="dr1", rare=0.01, bad=12, layout="tiles", workers=2, progress=False)
    odd = out / "000"
    odd.mkdir(exist_ok=True)
    os.mkfifo(odd / "fifo.fits")
    (odd / "garbage.fits.gz").write_bytes(b"\x1f\x8b not really gzip")
    (odd / "loop.fits").symlink_to(odd / "loop.fits")
    return out


def survey(archive: Path, store: Path, env: dict, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.survey", str(archive), "--store", str(store), *OPTIONS, *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def record(store: Path) -> dict:
    return json.loads((store / "survey.json").read_text())


@pytest.fixture(scope="module")
def reference(archive, api_env, tmp_path_factory) -> Path:
    """The uninterrupted run."""
    store = tmp_path_factory.mktemp("reference") / "store"
    proc = survey(archive, store, api_env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == f"next: python -m explorer --store {store}"
    return store


def test_every_step_leaves_its_output(reference, archive):
    rec = record(reference)
    assert rec["status"] == "done"
    assert [s["step"] for s in rec["steps"]] == ["ingest", "features", "train", "model_sets", "crossmatch", "hats"]
    assert {s["step"]: s["status"] for s in rec["steps"]} == {"ingest": "done", "features": "done", "train": "done",
                                                              "model_sets": "done", "crossmatch": "skipped", "hats": "done"}
    for s in rec["steps"]:
        if s["status"] == "done":
            assert s["wall_s"] > 0 and s["cpu_s"] > 0 and s["peak_rss_bytes"] > 50e6 and s["write_bytes"] > 0, s
    assert rec["store_bytes"] > 0 and rec["archive_bytes"] > rec["store_bytes"] / 10
    ingest = rec["steps"][0]
    assert (ingest["discovered"], ingest["ingested"], ingest["rejected"]) == (2015, 2000, 15)  # bad and hostile: quarantined
    cat = read_catalog(str(reference))
    assert cat.filter(pl.col("status") == "rejected").height == 15 and cat["reason"].drop_nulls().len() == 15
    odd = cat.filter(pl.col("file").map_elements(lambda f: Path(f).name in HOSTILE, return_dtype=pl.Boolean))
    assert {Path(f).name: r.split(":")[0] for f, r in odd.select("file", "reason").iter_rows()} == HOSTILE
    sets = set(list_feature_sets(str(reference))["name"])
    assert {"variability", "poisson_variability", "morphology", "vae_latent", "vae_anomaly", "discovery"} <= sets
    train = rec["steps"][2]
    assert train["sample_sources"] == 600 and train["epochs"] == 2 and Path(train["checkpoint"]).is_file()
    sample = read_catalog(train["sample"])
    assert sample.height == 600 and set(sample["source_id"]) <= set(cat["source_id"])
    hats = rec["steps"][-1]
    assert hats["sources"] == 2000 and (reference / "hats" / "collection.properties").is_file()
    import lsdb

    exported = lsdb.open_catalog(reference / "hats").compute()
    assert len(exported) == 2000 and {"discovery_score", "variable_fpp", "anomaly_fpp"} <= set(exported.columns)
    assert hats["feature_sets"] == ["poisson_variability", "morphology", "vae_anomaly", "discovery"]


def test_the_explorer_opens_the_survey(reference):
    from explorer.server import load
    from explorer.table import Query

    ex = load(str(reference), user="tester")
    rows, total = ex.table.page(Query())
    assert total == 2000 and ex.table.default_score() == "discovery_score"
    assert rows["discovery_score"].is_sorted(descending=True, nulls_last=True)


def test_a_rerun_with_nothing_new_does_no_work(reference, archive, api_env):
    proc = survey(archive, reference, api_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = record(reference)
    assert {s["step"]: s["status"] for s in rec["steps"]} == {"ingest": "current", "features": "current", "train": "current",
                                                              "model_sets": "current", "crossmatch": "skipped", "hats": "current"}
    assert rec["steps"][0]["ingested"] == 0 and rec["steps"][0]["unchanged"] >= 2012  # (the FIFO and the loop are re-checked)
    assert "everything was current" in proc.stdout
    assert rec["history"][-1]["status"] == "done"  # the first run, kept in the history


def kill_during(step: str, archive: Path, store: Path, env: dict) -> bool:
    """Start the survey and SIGKILL it (its whole process group) while ``step`` runs; False if it never got there."""
    proc = subprocess.Popen([sys.executable, "-m", "flows.survey", str(archive), "--store", str(store), *OPTIONS],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                steps = record(store)["steps"]
            except (OSError, ValueError, KeyError):
                steps = []
            if steps and steps[-1]["step"] == step and steps[-1]["status"] == "running":
                time.sleep(0.4)  # well inside the step
                return True
            time.sleep(0.05)
        return False
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


def test_kill_9_in_every_step_then_rerun_on_dask_gives_the_same_outputs(reference, archive, api_env, tmp_path):
    """Killed in each step in turn; the last run finishes on a Dask LocalCluster of two worker processes."""
    store = tmp_path / "store"
    killed = [step for step in STEPS if kill_during(step, archive, store, api_env)]
    assert killed[:3] == ["ingest", "features", "train"], killed  # the long steps are always caught running
    proc = survey(archive, store, api_env, "--task-runner", "dask", "--workers", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert record(store)["status"] == "done"
    # the same catalog (ids, points, status) and the same feature values as the uninterrupted run
    columns = ["source_id", "status", "reason", "n_points", "content_hash"]
    assert read_catalog(str(store)).select(columns).sort("source_id").equals(
        read_catalog(str(reference)).select(columns).sort("source_id"))
    for name in ("variability", "poisson_variability", "morphology"):
        a = get_feature_set(str(store), name)[1].collect().sort("source_id")
        b = get_feature_set(str(reference), name)[1].collect().sort("source_id")
        assert a.equals(b), name
    # the model sets come from this store's own finished checkpoint, and score as the reference's model does
    checkpoint = record(store)["steps"][2]["checkpoint"]
    for name in ("vae_latent", "vae_anomaly", "discovery"):
        meta, data = get_feature_set(str(store), name)
        assert meta["lineage"]["checkpoint"] == checkpoint and meta["lineage"]["checkpoint_hash"] == file_hash(checkpoint)
        ours, theirs = data.collect().sort("source_id"), get_feature_set(str(reference), name)[1].collect().sort("source_id")
        numeric = [c for c in ours.columns if ours.schema[c].is_float()]
        np.testing.assert_allclose(ours.select(numeric).to_numpy(), theirs.select(numeric).to_numpy(), rtol=1e-5, atol=1e-6)
    assert not list((store / "features").glob(".parts/*"))  # parts go once their sets are written


def test_a_store_of_another_schema_is_a_clear_error(archive, api_env, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (store / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {"schema_version": 99}}))
    proc = survey(archive, store, api_env)
    assert proc.returncode == 2 and "schema version 99" in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and json.loads((store / "zarr.json").read_text())["attributes"]["schema_version"] == 99


def test_bad_options_are_one_error_line(archive, api_env, tmp_path):
    for extra, message in ((["--train-sample", "0"], "train_sample must be"), (["--workers", "0"], "workers must be"),
                           (["--config", str(tmp_path / "none.toml")], "does not exist")):
        proc = survey(archive, tmp_path / "store", api_env, *extra)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        assert proc.returncode == 2 and len(errors) == 1 and message in errors[0], (extra, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr
    proc = survey(tmp_path / "missing", tmp_path / "store", api_env)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_a_full_disk_is_a_clear_error_and_loses_nothing(archive, api_env, tmp_path):
    """The store on a small file system that fills up after the ingest: exit 2 with one error line,
    the committed catalog and light curves intact, the run's record whole."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("mounting a small file system needs root")  # a full disk cannot be made otherwise for a child process
    try:
        store = mount / "store"
        ingest = subprocess.run([sys.executable, "-m", "etl.ingest", str(archive), "--store", str(store), "--bin", "eroday",
                                 "--quiet"], cwd=ROOT, env=api_env, capture_output=True, text=True, timeout=300)
        assert ingest.returncode == 0, ingest.stderr[-2000:]
        before = read_catalog(str(store))
        ids = before.filter(pl.col("status") == "ok")["source_id"].head(50).to_list()
        rates = {sid: open_store(store).read(sid).rate for sid in ids}
        with open(mount / "filler", "wb") as fh:  # fill the disk, then leave 64 KiB: room for the run's record only
            try:
                while True:
                    fh.write(b"\0" * 2**20)
                    fh.flush()
            except OSError:
                pass
        os.truncate(mount / "filler", os.path.getsize(mount / "filler") - 2**16)
        proc = survey(archive, store, api_env)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-3000:]
        assert "No space left on device" in errors[0] and "nothing committed was lost" in errors[0], errors
        assert "Traceback" not in proc.stderr
        assert read_catalog(str(store)).sort("file").equals(before.sort("file"))
        s = open_store(store)
        for sid in ids:
            np.testing.assert_array_equal(s.read(sid).rate, rates[sid])
        rec = record(store)  # the last whole record, never a torn one
        assert rec["status"] in ("running", "failed") and not list(store.glob(".survey.json.*"))
    finally:
        subprocess.run(["umount", str(mount)], check=False)
