"""Derived stores: a sample of a store's sources as they are, built once, complete or absent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from etl.ingest import ingest
from etl.store import open_store
from etl.subset import COMPLETE, build_once, derive_store, sample_positions
from etl.synth import make_archive


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("subset")
    make_archive(root / "a", n=120, seed=4, flavour="mixed", progress=False)
    ingest(root / "a", root / "s", progress=False)
    return open_store(root / "s")


def test_a_sample_store_holds_the_picked_light_curves_as_they_are(store, tmp_path):
    picks = sample_positions(store, 40, seed=3)
    assert len(picks) == 40 and np.all(np.diff(picks) > 0)
    assert np.array_equal(sample_positions(store, 40, seed=3), picks) and len(sample_positions(store, 1000, 3)) == 120
    assert build_once(str(tmp_path / "sample.zarr"), lambda target: derive_store(store, picks, target, batch_size=16), "40")
    sample = open_store(tmp_path / "sample.zarr")
    ids = store.ok_sources()["source_id"].to_numpy()[picks].tolist()
    assert sample.source_ids == ids
    for sid in ids[:10]:
        a, b = sample.read(sid), store.read(sid)
        for name in a.columns:
            np.testing.assert_array_equal(a.columns[name], b.columns[name])
        assert (a.ra, a.dec, a.file, a.mjdref) == (b.ra, b.dec, b.file, b.mjdref)
    assert sample.attrs["binning"] == store.attrs["binning"]
    assert not build_once(str(tmp_path / "sample.zarr"), lambda target: pytest.fail("built twice"), "40")


def test_a_killed_build_leaves_nothing_visible_and_the_next_one_builds(store, tmp_path):
    code = ("import os, signal, sys\n"
            "from etl.store import open_store\nfrom etl.subset import build_once, derive_store\n"
            "s = open_store(sys.argv[1])\n"
            "def build(target):\n    derive_store(s, list(range(len(s))), target)\n    os.kill(os.getpid(), signal.SIGKILL)\n"
            "build_once(sys.argv[2], build, 'x')\n")
    proc = subprocess.run([sys.executable, "-c", code, store.url, str(tmp_path / "d.zarr")], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "d.zarr").exists() and list(tmp_path.glob("d.zarr.partial-*"))  # only its side folder
    assert build_once(str(tmp_path / "d.zarr"), lambda target: derive_store(store, np.arange(5), target), "five")
    assert not list(tmp_path.glob("d.zarr.partial-*")) and (tmp_path / "d.zarr" / COMPLETE).read_text() == "five\n"
    assert len(open_store(tmp_path / "d.zarr")) == 5


def test_on_object_storage_the_marker_makes_it_complete(store, s3_endpoint):
    import fsspec

    options = {"endpoint_url": s3_endpoint}
    remote = open_store(store.url)
    url = "s3://lcstore/derived.zarr"
    fs = fsspec.filesystem("s3", endpoint_url=s3_endpoint)
    fs.pipe("lcstore/derived.zarr/leftover", b"from a killed build")  # no marker: removed and rebuilt
    assert build_once(url, lambda target: derive_store(remote, np.arange(7), target, storage_options=options), "seven", options)
    assert not fs.exists("lcstore/derived.zarr/leftover") and fs.cat("lcstore/derived.zarr/complete") == b"seven\n"
    assert len(open_store(url, storage_options=options)) == 7
    assert not build_once(url, lambda target: pytest.fail("built twice"), "seven", options)
    assert os.environ["AWS_ENDPOINT_URL"] == s3_endpoint
