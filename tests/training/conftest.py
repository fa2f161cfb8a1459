"""A small ingested store shared by the training tests."""

from __future__ import annotations

import pytest

from etl.ingest import ingest
from etl.synth import make_archive


@pytest.fixture(scope="session")
def train_store(tmp_path_factory) -> str:
    """400 synthetic sources of both flavours (labelled in truth.parquet beside the store)."""
    root = tmp_path_factory.mktemp("train")
    make_archive(root / "archive", n=400, seed=5, flavour="mixed", progress=False)
    store = root / "store.zarr"
    ingest(root / "archive", store, progress=False)
    return str(store)
