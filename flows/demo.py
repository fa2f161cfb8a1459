"""The main job on embedded defaults, through the real Prefect stack, leaving nothing running.

    python -m flows.demo [--dir demo] [--n 2000] [--epochs 2]

1. builds a synthetic eRASS1-like archive (once) in ``DIR/archive``;
2. starts ``python -m flows.serve`` (which starts a local Prefect server on SQLite when none
   answers at PREFECT_API_URL / prefect.toml);
3. runs the deployments as a user would, ``prefect deployment run ... --watch``:
   ``ingest-fits`` -> ``train-vae`` (``configs/discovery.toml`` for 2 epochs, wandb offline) ->
   ``build-features`` (with the checkpoint: the discovery set too) -> ``cross-match`` (against the
   archive's reference catalogue of known objects);
4. prints a Polars query over the catalog and the feature sets, and the most significant
   sources that have no known counterpart;
5. stops the serving process and the server it started.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from common.extras import check_installed

# Before anything that imports them: run as a command, a missing extra is one line and exit 2.
check_installed("python -m flows.demo", "prefect", "torch", "h5py", "lsdb", exit_now=__name__ == "__main__")

import polars as pl  # noqa: E402

from common import cli  # noqa: E402
from common.errors import UserError  # noqa: E402
from etl.demo import build_archive, ensure_reference, summarize  # noqa: E402
from flows.serve import DEFAULT_API, _toml_api_url  # noqa: E402
from training.config import read_toml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: A flow run's progress line in the serving process's output: "... | Flow run 'name' - <what>: n/N ... ETA h:mm:ss".
PROGRESS_LINE = re.compile(r"\| (?:Flow|Task) run '[^']+' - (.+ETA \d+:\d\d:\d\d.*)$")


class DemoError(UserError):
    """A step of the demo failed; the message holds its output."""


def run_deployment(name: str, params: dict, env: dict, timeout: int = 900) -> None:
    cmd = [sys.executable, "-m", "prefect", "deployment", "run", name, "--watch", "--watch-timeout", str(timeout)]
    for key, value in params.items():
        cmd += ["--param", f"{key}={json.dumps(value) if isinstance(value, (dict, list)) else value}"]
    print(f"\n$ prefect deployment run {name} ...", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    tail = [line for line in proc.stdout.splitlines() if "Flow run finished" in line or "Failed" in line]
    print(f"  {tail[-1].strip() if tail else proc.stdout.strip()[-300:]} ({time.perf_counter() - start:.1f} s)", flush=True)
    if proc.returncode != 0:
        raise DemoError(f"deployment {name} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flows.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", type=Path, default=Path("demo"))
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args(argv)
    directory = args.dir.resolve()
    archive, store, run_dir = directory / "archive", directory / "store.zarr", directory / "runs" / "demo"
    build_archive(archive, args.n)

    api = os.environ.get("PREFECT_API_URL") or _toml_api_url() or DEFAULT_API
    env = dict(os.environ, PREFECT_API_URL=api, PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
               WANDB_MODE=os.environ.get("WANDB_MODE", "offline"), WANDB_ERROR_REPORTING="false", WANDB_SILENT="true")
    env.setdefault("PREFECT_HOME", str(ROOT / ".prefect"))
    serve = subprocess.Popen([sys.executable, "-m", "flows.serve", "--home", env["PREFECT_HOME"]], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    ready = threading.Event()
    log = directory / "serve.log"
    log.parent.mkdir(parents=True, exist_ok=True)

    def pump():
        with log.open("w") as fh:
            for line in serve.stdout:
                fh.write(line)
                fh.flush()
                if line.startswith(("starting a Prefect server", "serving ", "stopping", "error")):
                    print(f"[serve] {line.rstrip()}", flush=True)
                progress = PROGRESS_LINE.search(line)
                if progress:  # the flow runs' progress lines (ETA), as the Prefect UI shows them
                    print(f"    {progress[1]}", flush=True)
                if line.startswith("serving "):
                    ready.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        while not ready.wait(1.0):
            if serve.poll() is not None:
                raise DemoError(f"flows.serve exited with code {serve.returncode}; see {log}")
        run_deployment("ingest-fits/ingest-fits", {"archive": str(archive), "store": str(store)}, env)
        discovery = read_toml(ROOT / "configs" / "discovery.toml")  # the recommended training, for a few epochs
        options = {k: v for k, v in discovery.items() if k not in ("epochs",)} | {"wandb_mode": env["WANDB_MODE"]}
        run_deployment("train-vae/train-vae", {"store": str(store), "epochs": args.epochs, "run_dir": str(run_dir),
                                               "options": options}, env)
        run_deployment("build-features/build-features", {"store": str(store), "checkpoint": str(run_dir / "checkpoints" / "best.h5")}, env)
        reference = ensure_reference(archive)
        run_deployment("cross-match/cross-match", {"store": str(store), "reference": str(reference), "radius": 15,
                                                   "name": "known", "columns": ["kind"]}, env)
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGTERM)
            serve.wait(timeout=60)
    summarize(archive, store)
    from features import get_features

    truth = pl.read_parquet(archive / "truth.parquet").select("source_id", "class")
    top = (get_features(store, ["poisson_variability", "discovery"]).join(truth.lazy(), on="source_id", how="left")
           .sort("discovery_score", descending=True, nulls_last=True)
           .select("source_id", "class", "n_points", "variable_fpp", "surprise_fpp_b1", "discovery_score", "discovery_score_classical")
           .head(10).collect())
    with pl.Config(tbl_width_chars=160, fmt_float="mixed"):
        top = with_readable_fpps(top)
        print(f"\nten highest discovery scores ({args.epochs}-epoch model; classes from the archive's truth table, rare ones: "
              "qpe, eclipse, absorption, step):")
        print(top)
    new = (get_features(store, ["poisson_variability", "vae_anomaly", "xmatch_known"]).join(truth.lazy(), on="source_id", how="left")
           .filter(pl.col("xmatch_known_id").is_null())
           .sort(pl.min_horizontal("variable_fpp", "anomaly_fpp"), nulls_last=True)
           .select("source_id", "class", "ra", "dec", "variable_fpp", "anomaly_fpp", "variable_3sigma", "vae_variable_3sigma")
           .head(10).collect())
    with pl.Config(tbl_width_chars=140, fmt_float="mixed"):
        new = with_readable_fpps(new)
        print("\nten most significant variable or anomalous sources with no counterpart within 15 arcsec (new):")
        print(new)
    print(f"\nrun directory: {run_dir}   (plots in training_plots/, scores in scores_test.parquet)")
    print(f"next, browse, inspect and label the sources: python -m explorer --store {store}")
    return 0


def with_readable_fpps(table: pl.DataFrame) -> pl.DataFrame:
    """False-positive probabilities as text with two significant digits: 1.3e-06 and 2.8e-37 keep them."""
    fpps = [c for c in table.columns if "fpp" in c and table.schema[c].is_float()]
    return table.with_columns(pl.col(c).map_elements(lambda v: f"{v:.2g}", return_dtype=pl.String) for c in fpps)


if __name__ == "__main__":
    sys.exit(cli.run(main))
