"""Synthetic archives and stores shared by the benchmark scripts, built once and reused."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The repository goes first, ahead of this folder: spawned worker processes re-run a script's
# imports with this folder at the front of sys.path.
if str(ROOT) in sys.path:
    sys.path.remove(str(ROOT))
sys.path.insert(0, str(ROOT))

from etl.ingest import ingest  # noqa: E402
from etl.synth import make_archive  # noqa: E402


def ensure_archive(path: Path, n: int, seed: int, flavour: str = "rebinned") -> Path:
    """A synthetic archive of ``n`` files at ``path`` (kept when its truth table exists)."""
    if not (path / "truth.parquet").exists():
        make_archive(path, n, seed=seed, flavour=flavour, progress=False)
    return path


def ensure_store(root: Path, n: int, seed: int = 3, name: str | None = None) -> Path:
    """``root/<name or store-n>.zarr`` ingested (with 2 workers) from a synthetic archive beside it."""
    label = name or f"store-{n}"
    store = root / f"{label}.zarr"
    if not (store / "catalog.parquet").exists():
        archive = ensure_archive(root / (f"{name}-archive" if name else f"archive-{n}"), n, seed)
        print(ingest(archive, store, workers=2, progress=False).line())
    return store
