"""Build the bexvar reference table the tests compare ``features.bexvar`` with.

    python tests/data/make_bexvar_reference.py [--n 100] [--out tests/data/bexvar_reference.parquet]

The reference is the ``bexvar`` package itself (Buchner et al. 2022; AGPL, a test-only
dependency): its installed ``bexvar_ero.py`` script's functions are loaded (only the function
definitions, not the script part that reads ``sys.argv``) and run exactly as the script runs
them: its per-source log-rate grid, its background-marginalised per-bin posteriors (998
quantiles) and UltraNest nested sampling of (log mean, log scatter). No code of it enters the
project. Light curves: the three real eROSITA files in this folder (every band) and ``--n``
synthetic ones from ``etl.synth`` (one band each, cycling through the bands, all classes and
brightnesses), written to ``bexvar_reference_lcs/`` beside the table so the test reads the
same bins. Takes a few seconds per light curve.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import os
import shutil
import sys
import sysconfig
from pathlib import Path

import numpy as np
import polars as pl
import scipy.stats

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))


def load_oracle() -> dict:
    """The function definitions of the installed ``bexvar_ero.py`` (imports included)."""
    script = Path(sysconfig.get_path("scripts")) / "bexvar_ero.py"
    tree = ast.parse(script.read_text())
    keep = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef))
            or (isinstance(node, ast.Assign) and any(getattr(t, "id", "") in ("N", "M", "quantiles") for t in node.targets))]
    namespace: dict = {}
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(script), "exec"), namespace)
    return namespace


def reference(oracle: dict, counts, back_counts, backratio, fracexp, timedel) -> dict:
    """bexvar's own result for one band of one light curve (the bins it would keep)."""
    keep = fracexp > 0.1
    c, bc = counts[keep], back_counts[keep]
    bgarea = 1.0 / backratio[keep]
    conversion = fracexp[keep] * timedel[keep]
    grid = oracle["lscg_gen"](c, bc, bgarea, conversion, 100)
    pdfs = np.array([oracle["estimate_source_cr_marginalised"](grid, ci, bci, ai, ki) for ci, bci, ai, ki in zip(c, bc, bgarea, conversion)])
    with contextlib.redirect_stdout(io.StringIO()):  # UltraNest's progress
        log_mean, scatter = oracle["bexvar"](grid, pdfs)
    lo, mid, hi = scipy.stats.mstats.mquantiles(scatter, oracle["quantiles"])  # as the script reports them
    return {"bexvar_log_rate": float(log_mean.mean()), "bexvar_scatt": float(mid), "bexvar_scatt_lo": float(lo),
            "bexvar_scatt_hi": float(hi), "bexvar_pvar_p1": float(np.mean(scatter > 0.1)), "n_bins": int(keep.sum()),
            "grid_lo": float(grid[0]), "grid_hi": float(grid[-1])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--seed", type=int, default=404)
    p.add_argument("--out", type=Path, default=HERE / "bexvar_reference.parquet")
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from etl.reader import read_lightcurve
    from etl.synth import make_archive

    oracle = load_oracle()
    lcs_dir = args.out.parent / "bexvar_reference_lcs"
    shutil.rmtree(lcs_dir, ignore_errors=True)
    make_archive(lcs_dir, n=args.n, seed=args.seed, flavour="mixed", gzip=True, progress=False)
    (lcs_dir / "truth.parquet").unlink()
    jobs = [(f, b) for f in sorted(HERE.glob("*.fits.gz")) for b in range(3)]
    jobs += [(f, i % 3) for i, f in enumerate(sorted(lcs_dir.glob("*.fits.gz")))]
    rows = []
    for i, (path, band) in enumerate(jobs):
        lc = read_lightcurve(path)
        ref = reference(oracle, lc.counts[:, band].astype("f8"), lc.back_counts[:, band].astype("f8"), lc.backratio,
                        lc.fracexp[:, band].astype("f8"), lc.timedel)
        rows.append({"file": str(path.relative_to(HERE)), "band": band + 1, **ref})
        print(f"{i + 1}/{len(jobs)} {path.name} band {band + 1}: scatt_lo {ref['bexvar_scatt_lo']:.3f}", flush=True)
    pl.DataFrame(rows).write_parquet(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
