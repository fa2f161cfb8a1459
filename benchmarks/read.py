"""Random-access reads from the store: 10,000 random light curves, ``read_many`` 32 at a time.

    python benchmarks/read.py [--n 100000] [--cache-mib 256] [--dir /tmp/bench-read]

Builds (once) a synthetic store of ``--n`` rebinned sources, then times cold and warm passes
and reports the decoded-chunk cache's size, which is bounded by ``--cache-mib`` whatever the
store's size, and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from archives import ensure_store  # noqa: E402

from etl.store import open_store  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--reads", type=int, default=10_000)
    p.add_argument("--cache-mib", type=int, default=256)
    p.add_argument("--dir", type=Path, default=Path("/tmp/bench-read"))
    args = p.parse_args()
    store_path = ensure_store(args.dir, args.n, seed=3)
    # A cache far smaller than the store's decoded size shows the worst case (every read misses).
    for cache_mib, reads in ((args.cache_mib, args.reads), (4, args.reads // 10)):
        store = open_store(store_path, cache_bytes=cache_mib * 2**20)
        rng = np.random.default_rng(0)
        ids = store.source_ids
        for label in ("cold", "warm"):
            picks = rng.choice(len(ids), reads)
            t = time.perf_counter()
            points = 0
            for i in range(0, reads, 32):
                batch = store.read_many([ids[j] for j in picks[i : i + 32]])
                points += int(batch.lengths.sum())
            dt = time.perf_counter() - t
            print(f"cache {cache_mib:4d} MiB, {label}: {reads} random light curves ({points} points) "
                  f"in {dt:.3f} s = {dt / (reads / 32) * 1e3:.2f} ms per read_many(32); "
                  f"cache holds {store.cache.nbytes / 2**20:.1f} MiB")
    print(f"store: {len(ids)} sources; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
