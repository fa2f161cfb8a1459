"""One helper turns any location into a local path or an fsspec URL; file:// URLs work everywhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.location import is_url, resolve
from etl.store import open_store
from features.builders import build_variability

ROOT = Path(__file__).resolve().parents[2]


def test_resolve():
    assert resolve("file:///tmp/x/store") == "/tmp/x/store"
    assert resolve("file://localhost/tmp/a%20b") == "/tmp/a b"
    assert resolve("relative/store") == "relative/store"
    assert resolve(Path("/tmp/p")) == "/tmp/p"
    assert resolve("s3://bucket/store") == "s3://bucket/store"
    with pytest.raises(ValueError, match="another host"):
        resolve("file://server/x")
    assert is_url("s3://b/x") and not is_url("file:///x") and not is_url("/x")


def test_a_file_url_store_ingests_reads_and_builds_features(rebinned_archive, tmp_path):
    """``--store file:///...`` is the local path it names: ingest, reads and feature builds work, no ``file:`` folder appears."""
    url = (tmp_path / "x" / "store").as_uri()
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run([sys.executable, "-m", "etl.ingest", str(rebinned_archive), "--store", url, "--quiet"], cwd=work,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(work) == []  # no "file:" folder
    store = open_store(url)
    assert store.url == str(tmp_path / "x" / "store") and len(store) == 200
    meta, _ = build_variability(url)
    assert meta["rows"] == 200 and (tmp_path / "x" / "store" / "features" / "variability").is_dir()
