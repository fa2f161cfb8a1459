"""Shared fixtures: the real eROSITA files and small synthetic archives built by etl.synth."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
os.environ.setdefault("WANDB_SILENT", "true")

from etl.synth import make_archive  # noqa: E402

DATA = Path(__file__).parent / "data"
REAL_FILES = sorted(DATA.glob("*.fits.gz"))


@pytest.fixture(scope="session")
def real_files() -> list[Path]:
    """The three real srctool light curves (bexvar example data)."""
    assert len(REAL_FILES) == 3
    return REAL_FILES


@pytest.fixture(scope="session")
def rebinned_archive(tmp_path_factory) -> Path:
    """200 good rebinned sources plus one malformed file of every kind (read-only: copy to modify)."""
    out = tmp_path_factory.mktemp("rebinned")
    make_archive(out, n=200, seed=11, flavour="rebinned", bad=12, progress=False)
    return out


@pytest.fixture(scope="session")
def srctool_archive(tmp_path_factory) -> Path:
    """60 gzipped raw srctool sources."""
    out = tmp_path_factory.mktemp("srctool")
    make_archive(out, n=60, seed=12, flavour="srctool", gzip=True, progress=False)
    return out


@pytest.fixture()
def archive_copy(rebinned_archive, tmp_path) -> Path:
    """A private, modifiable copy of the rebinned archive."""
    dst = tmp_path / "archive"
    shutil.copytree(rebinned_archive, dst)
    return dst
