"""Synthetic archives and stores shared by the benchmark scripts, built once and reused."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The repository goes first, ahead of this folder: spawned worker processes re-run a script's
# imports with this folder at the front of sys.path.
if str(ROOT) in sys.path:
    sys.path.remove(str(ROOT))
sys.path.insert(0, str(ROOT))

from etl.ingest import ingest  # noqa: E402
from etl.synth import make_archive  # noqa: E402


def ensure_archive(path: Path, n: int, seed: int, flavour: str = "rebinned", **synth) -> Path:
    """A synthetic archive of ``n`` files at ``path`` (kept when its truth table exists); ``synth``:
    more options of :func:`etl.synth.make_archive` (``rare``, ``variant``)."""
    if not (path / "truth.parquet").exists():
        make_archive(path, n, seed=seed, flavour=flavour, progress=False, **synth)
    return path


def ensure_store(root: Path, n: int, seed: int = 3, name: str | None = None, **synth) -> Path:
    """``root/<name or store-n>.zarr`` ingested (with 2 workers) from a synthetic archive beside it."""
    label = name or f"store-{n}"
    store = root / f"{label}.zarr"
    if not (store / "catalog.parquet").exists():
        t = time.perf_counter()
        archive = ensure_archive(root / (f"{name}-archive" if name else f"archive-{n}"), n, seed, **synth)
        print(f"{ingest(archive, store, workers=2, progress=False).line()} ({time.perf_counter() - t:.0f} s with synthesis)",
              flush=True)
    return store


def ensure_checkpoint(run: Path, store: Path, args: list[str], label: str, quiet: bool = False) -> Path:
    """``run``'s best checkpoint, trained with ``python -m training.fit ARGS`` on ``store`` when missing
    (``quiet``: without the command's own output)."""
    ckpt = run / "checkpoints" / "best.h5"
    if not ckpt.exists():
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "training.fit", "--store", str(store), "--run-dir", str(run), "--wandb-mode",
                        "disabled", "--no-progress", *args], check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL if quiet else None)
        print(f"training {label}: {time.perf_counter() - t:.0f} s", flush=True)
    return ckpt
