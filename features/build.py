"""Build feature sets for a store: the command (the library is :mod:`features.builders`).

    python -m features.build --store STORE [--checkpoint RUN/checkpoints/best.h5] [--min-points 3]
                             [--null-sources N] [--seed 0] [--jobs N] [--no-wait]

Builds (or reuses) ``variability``, ``poisson_variability`` and ``morphology``
(:mod:`features.builders`). With ``--checkpoint`` it then hands the model-derived sets
(``vae_latent``, ``vae_anomaly``, ``discovery``) to ``python -m training.score`` in a subprocess,
on the same catalog snapshot as the classical sets (a copy of it, so an ingest running beside
the build changes nothing) and killed with this process: this package never imports torch or the
training layer, which sits above it. A missing ``[train]`` extra is reported before any work.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from common import cli
from common.extras import check_installed
from common.lifeline import set_parent_death_signal
from features.builders import BuildError, PartRunner, build_classical
from features.featurestore import as_store, build_lock
from features.null_model import N_NULL
from features.variability import MIN_POINTS


def score_command(store: str, checkpoint: str, n_null: int | None, seed: int, catalog: str | None = None) -> list[str]:
    """The command that builds the model-derived sets: :mod:`training.score`, above this layer."""
    cmd = [sys.executable, "-m", "training.score", "--store", store, "--checkpoint", checkpoint, "--seed", str(seed)]
    cmd += ["--null-sources", str(n_null)] if n_null is not None else []
    return cmd + (["--catalog", catalog] if catalog else [])


def run_scoring(cmd: list[str]) -> int:
    """Run :mod:`training.score`; it dies with this process, even when this one is killed with SIGKILL."""
    proc = subprocess.Popen(cmd, preexec_fn=set_parent_death_signal)
    try:
        return proc.wait()
    finally:
        if proc.poll() is None:  # interrupted (Ctrl-C): the child goes too
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m features.build", description="Build versioned per-source feature sets.")
    p.add_argument("--store", required=True, help="store path or URL")
    p.add_argument("--checkpoint", help="GRU-VAE checkpoint (.h5) for the model-derived sets (python -m training.score)")
    p.add_argument("--min-points", type=int, default=MIN_POINTS, help=f"usable points a band needs (default {MIN_POINTS})")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="parts computed at once, on threads, for every set (default: the CPU count)")
    p.add_argument("--null-sources", type=int, default=None,
                   help=f"simulated constant sources to calibrate on (default: 10 per source, 4,000 to {N_NULL:,})")
    p.add_argument("--seed", type=int, default=0, help="seed of the constant-source simulation")
    p.add_argument("--no-wait", action="store_true", help="exit 2 at once when another feature build holds the store")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error("--jobs must be >= 1")
    if args.checkpoint:
        check_installed("python -m features.build --checkpoint", "torch", "h5py")
        if not Path(args.checkpoint).is_file():
            raise BuildError(f"checkpoint {args.checkpoint} does not exist")
    store = as_store(args.store)

    def waiting(holder: str) -> None:
        print(f"another feature build holds {store.url} ({holder}); waiting for it (--no-wait to stop instead)",
              file=sys.stderr, flush=True)

    runner = PartRunner(jobs=args.jobs, progress=sys.stderr.isatty())
    with build_lock(store, wait=0.0 if args.no_wait else float("inf"), on_wait=waiting):
        results = build_classical(store, args.min_points, args.null_sources, args.seed, runner)
    for meta, created in results:
        print(f"{meta['name']}@{meta['version']}: {meta['rows']} sources, {len(meta['columns'])} columns "
              f"({'built' if created else 'unchanged, reused'})", flush=True)
    if not args.checkpoint:
        return 0
    # The model layer scores in its own process (it takes the lock itself), on this build's snapshot.
    with store.pin() as catalog:
        cmd = score_command(store.url, str(Path(args.checkpoint).resolve()), args.null_sources, args.seed, catalog)
        return run_scoring(cmd + (["--no-wait"] if args.no_wait else []))


if __name__ == "__main__":
    sys.exit(cli.run(main))
