"""What Prefect orchestration costs per batch: the ingest-fits flow vs plain etl.ingest.

    python benchmarks/flow_overhead.py [--n 20000] [--batch-size 500]

Same archive, fresh stores, in this run: plain ``ingest`` in this process vs the flow on the
thread runner with one worker (same parallelism: batches parsed one at a time), and plain
``ingest`` with 2 processes vs the flow on a 2-process Dask LocalCluster. The difference
divided by the number of batches is Prefect's cost per batch task. Runs against a temporary
Prefect server (prefect_test_harness).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-bench-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from archives import ensure_archive  # noqa: E402

from etl.ingest import ingest  # noqa: E402


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--dir", type=Path, default=Path("/tmp/bench-ingest"))
    args = p.parse_args()
    archive = ensure_archive(args.dir / f"archive-{args.n}", args.n, seed=7)
    out = Path(tempfile.mkdtemp(prefix="flow-bench-"))
    batches = -(-args.n // args.batch_size)
    from prefect.testing.utilities import prefect_test_harness

    from flows.ingest import ingest_fits

    with prefect_test_harness(server_startup_timeout=120):
        ingest_fits(str(archive), str(out / "warm"), batch_size=args.batch_size, workers=1)  # imports, server warm-up
        plain1 = timed(lambda: ingest(archive, out / "p1", workers=1, batch_size=args.batch_size, progress=False))
        flow1 = timed(lambda: ingest_fits(str(archive), str(out / "f1"), batch_size=args.batch_size, workers=1))
        plain2 = timed(lambda: ingest(archive, out / "p2", workers=2, batch_size=args.batch_size, progress=False))
        dask2 = timed(lambda: ingest_fits(str(archive), str(out / "d2"), batch_size=args.batch_size, workers=2, task_runner="dask"))
    shutil.rmtree(out, ignore_errors=True)
    print(f"{args.n} files, {batches} batches of {args.batch_size}")
    print(f"plain ingest, 1 process    : {plain1:6.1f} s")
    print(f"flow, threads (1 worker)   : {flow1:6.1f} s  -> {(flow1 - plain1) / batches * 1e3:6.0f} ms per batch task")
    print(f"plain ingest, 2 processes  : {plain2:6.1f} s")
    print(f"flow, Dask LocalCluster x2 : {dask2:6.1f} s  -> {(dask2 - plain2) / batches * 1e3:6.0f} ms per batch task "
          f"(includes the cluster's start and stop)")


if __name__ == "__main__":
    main()
