"""Shared fixtures: the real eROSITA files, small synthetic archives built by etl.synth, a store with every feature set."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from common import cli

# Nothing a test starts reaches the network or reports home (wandb offline, Prefect analytics off);
# set here, not in .ci/run, so that the README's plain `python -m pytest` is the whole test command.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

from etl.ingest import ingest  # noqa: E402
from etl.synth import make_archive  # noqa: E402
from features.builders import build_morphology, build_poisson_variability, build_variability  # noqa: E402
from training.fit import main as fit  # noqa: E402
from training.score import build_model_features  # noqa: E402

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[1]
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


EXPLORER_N_NULL = 2000  # simulated constants for the calibration: the smallest it accepts


@pytest.fixture(scope="session")
def explorer_store(tmp_path_factory) -> str:
    """150 synthetic sources (a tenth of them rare; truth.parquet beside the store), the classical sets, a 1-epoch
    discovery model (configs/discovery.toml, small) and its sets: vae_latent, vae_anomaly, discovery."""
    root = tmp_path_factory.mktemp("explorer")
    make_archive(root / "archive", n=150, seed=21, flavour="rebinned", rare=0.1, progress=False)
    store = root / "store.zarr"
    ingest(root / "archive", store, progress=False)
    build_variability(store)
    build_poisson_variability(store, n_null=EXPLORER_N_NULL)
    build_morphology(store, n_null=EXPLORER_N_NULL)
    run = root / "run"
    assert cli.run(fit, ["--store", str(store), "--config", str(ROOT / "configs" / "discovery.toml"), "--epochs", "1",
                         "--run-dir", str(run), "--wandb-mode", "disabled", "--no-progress", "--no-evaluate", "--latent", "8",
                         "--hidden", "16"]) == 0
    for _ in build_model_features(store, str(run / "checkpoints" / "best.h5"), progress=False, n_null=EXPLORER_N_NULL):
        pass
    return str(store)


@pytest.fixture()
def s3_endpoint(monkeypatch):
    """A moto S3 server on 127.0.0.1 with a bucket named 'lcstore'; its URL (also in AWS_ENDPOINT_URL, which s3fs reads)."""
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    # moto keeps its buckets in process-wide state, which outlives a server: an earlier test's
    # objects in this pytest worker would otherwise be seen by this one.
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST")).close()
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()  # fsspec caches file systems: none may point at an earlier test's server
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_ENDPOINT_URL": url}.items():
        monkeypatch.setenv(key, value)
    import boto3

    boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket="lcstore")
    yield url
    s3fs.S3FileSystem.clear_instance_cache()
    server.stop()
