"""The whole survey on one machine: time, memory and disk of ``python -m flows.survey`` on DR1-shaped archives.

    python benchmarks/survey.py --n 930000 --out DIR [--compare 100000] [--train-sample 100000] [--epochs N]
                                [--workers 2] [--keep-store] [--no-explorer] [--no-rerun]

1. **Archive**: ``DIR/archive-N``, made once by ``python -m etl.synth --flavour dr1 --rare 0.01
   --layout tiles --workers 2`` (eRASS1 sky tiles in ``RRR/DDD/`` folders, as the release lays
   them out; 10 s bins) and reused afterwards (its ``generator.json`` must match).
2. **The flow**: ``python -m flows.survey DIR/archive-N --store DIR/store-N`` into a new store
   (``--keep-store``: into the existing one, e.g. to measure a resume), as a user runs it. A
   sampler outside the flow's process records the peak memory of its whole process tree (parse
   workers, the Prefect server it starts) every 0.25 s; ``STORE/survey.json`` gives each step's
   wall and CPU time, peak memory and bytes read and written.
3. **Rerun** with nothing new (the whole command, Python's start and the Prefect server included).
4. **Disk**: archive, store (points and catalog, feature sets, simulated constants, models) and
   the HATS export.
5. **Ingest against fitsio**: ingest's seconds per file and worker against ``fitsio.read`` of
   four columns (TIME, RATE, RATE_ERR, FRACEXP) with the header of the same files, one process.
6. **Explorer** on the result: server start, the candidates view's first rows (ranked by
   ``discovery_score``) and a source view in headless Chromium; server side, the table's load,
   the discovery ranking's first page and a ranking by another column.

Prints a table per step and the totals; ``--compare M`` adds each step's seconds per source at
N against those of the run at M read from ``DIR/survey-M.json`` (written by an earlier run with
``--n M``). Everything goes to ``DIR/survey-N.json`` as well.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common.meter import disk_use  # noqa: E402

SYNTH = {"flavour": "dr1", "rare": 0.01, "layout": "tiles", "seed": 2026}
FITSIO_COLUMNS = ["TIME", "RATE", "RATE_ERR", "FRACEXP"]


def ensure_archive(out: Path, n: int, workers: int) -> tuple[Path, float | None]:
    """The archive of ``n`` DR1-shaped files (made once); the seconds it took to make, None when reused."""
    path = out / f"archive-{n}"
    gen = path / "generator.json"
    if gen.is_file() and (path / "truth.parquet").is_file():
        made = json.loads(gen.read_text())
        if all(made.get(k) == v for k, v in SYNTH.items()) and made.get("n") == n:
            return path, None
    shutil.rmtree(path, ignore_errors=True)
    cmd = [sys.executable, "-m", "etl.synth", str(path), "--n", str(n), "--seed", str(SYNTH["seed"]), "--flavour", "dr1",
           "--rare", str(SYNTH["rare"]), "--layout", "tiles", "--workers", str(workers), "--quiet"]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return path, time.perf_counter() - t


class TreeSampler:
    """Peak resident memory of a process and all its descendants, sampled on a thread."""

    def __init__(self, pid: int, every: float = 0.25):
        self.proc = psutil.Process(pid)
        self.every = every
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
            except psutil.Error:
                procs = []
            for p in procs:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.every)

    def __enter__(self) -> "TreeSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_survey(archive: Path, store: Path, args, log: Path) -> dict:
    """``python -m flows.survey`` as a user runs it: wall time, the tree's peak memory, exit status."""
    cmd = [sys.executable, "-m", "flows.survey", str(archive), "--store", str(store), "--workers", str(args.workers),
           "--train-sample", str(args.train_sample)]
    if args.epochs is not None:
        cmd += ["--epochs", str(args.epochs)]
    env = dict(os.environ, PREFECT_HOME=str(store.parent / f"prefect-{store.name}"))
    t = time.perf_counter()
    with open(log, "a") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=env)
        with TreeSampler(proc.pid) as sampler:
            status = proc.wait()
    return {"wall_s": time.perf_counter() - t, "tree_peak_rss_bytes": sampler.peak, "exit": status}


def disk(archive: Path, store: Path) -> dict[str, int]:
    parts = {"archive": disk_use(archive), "store, all": disk_use(store), "points + catalog": disk_use(store / "points") + disk_use(store / "catalog.parquet"),
             "feature sets": disk_use(store / "features"), "simulated constants": disk_use(store / "calibration"),
             "models": disk_use(store / "models"), "HATS export": disk_use(store / "hats")}
    return parts


def ingest_vs_fitsio(archive: Path, record: dict, workers: int, sample: int = 20_000) -> dict:
    """Seconds per file and worker of the ingest step against a one-process fitsio read of 4 columns."""
    import fitsio

    from etl.ingest import discover

    files = discover(str(archive))
    pick = [files[i] for i in np.random.default_rng(0).choice(len(files), min(sample, len(files)), replace=False)]
    t = time.perf_counter()
    for f in pick:
        fitsio.read(f, ext="RATE", columns=FITSIO_COLUMNS, header=True)
    fitsio_per_file = (time.perf_counter() - t) / len(pick)
    step = next(s for s in record["steps"] if s["step"] == "ingest")
    ingest_per_file_worker = step["wall_s"] * workers / max(step["discovered"], 1)
    return {"fitsio_s_per_file": fitsio_per_file, "ingest_s_per_file_per_worker": ingest_per_file_worker,
            "ratio": ingest_per_file_worker / fitsio_per_file, "files_timed_fitsio": len(pick)}


def explorer_timings(store: Path, repeat: int = 3) -> dict:
    """Server-side table timings and headless-Chromium page timings on the survey's store."""
    from explorer_pages import browser_timings, timed

    from etl.store import open_store
    from explorer.table import CandidateTable, Query
    from features.labels import LabelLog

    opened = open_store(str(store))
    t = time.perf_counter()
    table = CandidateTable.from_store(opened, LabelLog.for_store(opened))
    out = {"table load (store + every set into memory)": time.perf_counter() - t}
    first, again, page = timed(lambda: table.page(Query(score="discovery_score")), repeat)
    out["ranking by discovery_score, first page (first call)"] = first
    out["ranking by discovery_score, first page (cached)"] = again
    first, again, _ = timed(lambda: table.page(Query(score="variable_fpp")), repeat)
    out["ranking by variable_fpp, first page (first call)"] = first
    top = page[0]["source_id"][0]
    table = None  # the in-process copy goes before the server loads its own
    out |= browser_timings(store, top, repeat)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--out", type=Path, default=Path("/tmp/bench-survey"))
    p.add_argument("--compare", type=int, default=None, help="a run at this --n (DIR/survey-M.json) to compare seconds per source with")
    p.add_argument("--train-sample", type=int, default=100_000)
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: configs/discovery.toml's)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--keep-store", action="store_true", help="run into the existing store (a resume) instead of a new one")
    p.add_argument("--no-explorer", action="store_true")
    p.add_argument("--no-rerun", action="store_true")
    p.add_argument("--explorer-repeat", type=int, default=3, help="page loads timed per explorer view (the median is printed)")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    archive, made_s = ensure_archive(args.out, args.n, args.workers)
    store = args.out / f"store-{args.n}"
    if not args.keep_store:
        shutil.rmtree(store, ignore_errors=True)
        shutil.rmtree(args.out / f"prefect-{store.name}", ignore_errors=True)
    log = args.out / f"survey-{args.n}.log"
    run = run_survey(archive, store, args, log)
    if run["exit"] != 0:
        sys.exit(f"python -m flows.survey exited with {run['exit']}; see {log}")
    record = json.loads((store / "survey.json").read_text())
    result = {"n": args.n, "archive_made_s": made_s, "run": run, "record": record, "disk": disk(archive, store),
              "ingest_vs_fitsio": ingest_vs_fitsio(archive, record, args.workers)}
    if not args.no_rerun:
        result["rerun"] = run_survey(archive, store, args, log)
        result["rerun_record"] = json.loads((store / "survey.json").read_text())
    if not args.no_explorer:
        result["explorer"] = explorer_timings(store, args.explorer_repeat)
    (args.out / f"survey-{args.n}.json").write_text(json.dumps(result, indent=1))
    report(result, args.out, args.compare)


def report(result: dict, out: Path, compare: int | None) -> None:
    n = result["n"]
    other = None
    if compare:
        path = out / f"survey-{compare}.json"
        other = json.loads(path.read_text()) if path.is_file() else None
        if other is None:
            print(f"(no {path} to compare with: run with --n {compare} first)")
    print(f"\nThe survey flow on {n:,} DR1-shaped files ({result['disk']['archive'] / 2**30:.1f} GiB), "
          f"{os.cpu_count()} cores; archive {'made in %.0f s' % result['archive_made_s'] if result['archive_made_s'] else 'reused'}\n")
    head = "| step | status | wall | CPU | peak memory (tree) | read | written |"
    if other:
        head += f" s/source vs {compare:,} |"
    print(head)
    print("|---|---|---:|---:|---:|---:|---:|" + ("---:|" if other else ""))
    steps_other = {s["step"]: s for s in other["record"]["steps"]} if other else {}
    for s in result["record"]["steps"]:
        if "wall_s" not in s:
            print(f"| {s['step']} | {s['status']} ({s.get('why', '')}) | | | | | |" + (" |" if other else ""))
            continue
        row = (f"| {s['step']} | {s['status']} | {s['wall_s'] / 60:.1f} min | {s['cpu_s'] / 60:.1f} min | "
               f"{s['peak_rss_bytes'] / 2**30:.2f} GiB | {s['read_bytes'] / 2**30:.2f} GiB | {s['write_bytes'] / 2**30:.2f} GiB |")
        if other and s["step"] in steps_other and "wall_s" in steps_other[s["step"]]:
            ratio = (s["wall_s"] / n) / (steps_other[s["step"]]["wall_s"] / compare)
            row += f" {ratio:.2f} |"
        elif other:
            row += " |"
        print(row)
    t = result["record"]["totals"]
    run = result["run"]
    print(f"| **total** (steps) | | **{t['wall_s'] / 60:.1f} min** | {t['cpu_s'] / 60:.1f} min | {t['peak_rss_bytes'] / 2**30:.2f} GiB | "
          f"{t['read_bytes'] / 2**30:.2f} GiB | {t['write_bytes'] / 2**30:.2f} GiB |" + (" |" if other else ""))
    print(f"\nwhole command: {run['wall_s'] / 60:.1f} min; peak memory of its process tree sampled from outside: "
          f"{run['tree_peak_rss_bytes'] / 2**30:.2f} GiB")
    if other:
        total_ratio = (run["wall_s"] / n) / (other["run"]["wall_s"] / compare)
        print(f"seconds per source, whole command: {run['wall_s'] / n * 1e3:.2f} ms at {n:,} vs "
              f"{other['run']['wall_s'] / compare * 1e3:.2f} ms at {compare:,} ({total_ratio:.2f}x)")
    if "rerun" in result:
        r = result["rerun"]
        worked = [s["step"] for s in result["rerun_record"]["steps"] if s.get("status") == "done"]
        print(f"rerun with nothing new: {r['wall_s']:.1f} s for the whole command (steps {result['rerun_record']['totals']['wall_s']:.1f} s;"
              f" steps that did work: {', '.join(worked) or 'none'})")
    print("\ndisk:")
    archive = result["disk"]["archive"]
    for name, size in result["disk"].items():
        print(f"  {name:22s} {size / 2**30:7.2f} GiB  ({size / archive:.1%} of the archive)")
    iv = result["ingest_vs_fitsio"]
    print(f"\ningest: {iv['ingest_s_per_file_per_worker'] * 1e3:.3f} ms per file and worker; fitsio.read of 4 columns + header: "
          f"{iv['fitsio_s_per_file'] * 1e3:.3f} ms per file ({iv['ratio']:.2f}x)")
    if "explorer" in result:
        print("\nexplorer on the survey's store:")
        for name, seconds in result["explorer"].items():
            print(f"  {name:60s} {seconds:7.2f} s")


if __name__ == "__main__":
    main()
