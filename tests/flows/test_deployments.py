"""The deployment path for real: a Prefect server on a free loopback port, `python -m flows.serve`,
`prefect deployment run ... --watch`, a failing run, a killed serving process, clean shutdown."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from etl.catalog import read_catalog
from flows.serve import api_healthy, start_server, stop_server
from tests.flows.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
PREFECT = [sys.executable, "-m", "prefect"]
pytestmark = pytest.mark.slow


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def start_serve(env: dict, home: Path, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "flows.serve", "--home", str(home)], cwd=ROOT, env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    wait_for(lambda: "serving ingest-fits/ingest-fits" in log.read_text() or proc.poll() is not None, 180, "flows.serve")
    assert proc.poll() is None, log.read_text()
    return proc


def deployment_exists(api: str, name: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api}/deployments/name/{name}", timeout=5) as resp:
            return resp.status == 200
    except OSError:  # 404 (HTTPError is an OSError) or not answering yet
        return False


def flow_run_state(api: str, run_id: str) -> str:
    with urllib.request.urlopen(f"{api}/flow_runs/{run_id}", timeout=5) as resp:
        return json.load(resp)["state"]["type"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    home = tmp_path_factory.mktemp("served-home")
    api = f"http://127.0.0.1:{free_port()}/api"
    env = dict(os.environ, PREFECT_API_URL=api, PREFECT_HOME=str(home), LCVAE_HEARTBEAT_GRACE_S="40",
               PREFECT_LOGGING_LEVEL="INFO")
    env.pop("PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY", None)
    server = start_server(api, home)  # separate from serve, so that the serving process can be killed alone
    serve = start_serve(env, home, home / "serve.log")
    # serve() registers the deployments after its "serving" line: on a loaded machine a run asked
    # for at once found no deployment. Wait until the server knows every one.
    for name in ("ingest-fits/ingest-fits", "build-features/build-features", "train-vae/train-vae", "cross-match/cross-match"):
        wait_for(lambda name=name: deployment_exists(api, name) or serve.poll() is not None, 120, name)
    assert serve.poll() is None, (home / "serve.log").read_text()
    yield {"env": env, "api": api, "serve": serve, "home": home}
    if serve.poll() is None:
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(timeout=30)
    stop_server(server)
    assert not api_healthy(api)


def test_deployment_runs_and_fails_with_exit_codes(served, rebinned_archive, tmp_path):
    store = tmp_path / "s"
    start = time.perf_counter()
    ok = subprocess.run([*PREFECT, "deployment", "run", "ingest-fits/ingest-fits", "--param", f"archive={rebinned_archive}",
                         "--param", f"store={store}", "--watch", "--watch-timeout", "120"],
                        cwd=ROOT, env=served["env"], capture_output=True, text=True, timeout=180)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    print(f"deployment run end to end: {time.perf_counter() - start:.1f} s")
    cat = read_catalog(str(store))
    assert cat.height == 212 and (cat["status"] == "ok").sum() == 200
    bad = subprocess.run([*PREFECT, "deployment", "run", "ingest-fits/ingest-fits", "--param", f"archive={tmp_path / 'nope'}",
                          "--param", f"store={store}", "--watch", "--watch-timeout", "120"],
                         cwd=ROOT, env=served["env"], capture_output=True, text=True, timeout=180)
    assert bad.returncode != 0
    assert "Failed" in bad.stdout + bad.stderr


def test_killed_serving_process_marks_run_crashed(served, rebinned_archive, tmp_path):
    from etl.ingest import ingest

    ingest(rebinned_archive, tmp_path / "s", progress=False)
    started = subprocess.run([*PREFECT, "deployment", "run", "train-vae/train-vae", "--param", f"store={tmp_path / 's'}",
                              "--param", "epochs=100000", "--param", f"run_dir={tmp_path / 'run'}",
                              "--param", 'options={"wandb_mode": "disabled", "lr": 0.001}'],
                             cwd=ROOT, env=served["env"], capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
    run_id = re.search(r"UUID:\s*([0-9a-f-]{36})", started.stdout).group(1)
    api = served["api"]
    wait_for(lambda: flow_run_state(api, run_id) == "RUNNING", 120, "the training run to start")
    wait_for(lambda: (tmp_path / "run" / "metrics.jsonl").exists(), 120, "a first epoch")
    os.killpg(served["serve"].pid, signal.SIGKILL)  # the serving process and the run it started
    served["serve"].wait()
    assert flow_run_state(api, run_id) == "RUNNING"  # nothing told the server
    wait_for(lambda: flow_run_state(api, run_id) == "CRASHED", 180, "the heartbeat automation", interval=2)


def test_serve_starts_and_stops_its_own_server(tmp_path):
    api = f"http://127.0.0.1:{free_port()}/api"
    env = dict(os.environ, PREFECT_API_URL=api, PREFECT_HOME=str(tmp_path))
    serve = start_serve(env, tmp_path, tmp_path / "serve.log")
    assert api_healthy(api)
    os.killpg(serve.pid, signal.SIGTERM)
    assert serve.wait(timeout=60) == 0
    assert not api_healthy(api)
    assert "stopping the Prefect server" in (tmp_path / "serve.log").read_text()


@pytest.mark.parametrize("delay", [0.0, 2.0])
def test_sigterm_while_serving_stops_cleanly(tmp_path, delay):
    """SIGTERM once serve() has registered the deployments and is polling: exit 0, server stopped."""
    api = f"http://127.0.0.1:{free_port()}/api"
    env = dict(os.environ, PREFECT_API_URL=api, PREFECT_HOME=str(tmp_path))
    serve = start_serve(env, tmp_path, tmp_path / "serve.log")
    wait_for(lambda: deployment_exists(api, "cross-match/cross-match"), 120, "the deployments")
    time.sleep(delay)  # at once (serve() still starting its runner) or after a few polls
    os.killpg(serve.pid, signal.SIGTERM)
    assert serve.wait(timeout=60) == 0, (tmp_path / "serve.log").read_text()
    assert "stopping the Prefect server" in (tmp_path / "serve.log").read_text()
    wait_for(lambda: not api_healthy(api), 30, "the server to stop")


def test_killed_serve_takes_its_server_along(tmp_path):
    """Kill -9 of flows.serve takes the Prefect server it started along: the port is free again."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    log = tmp_path / "serve.log"
    proc = subprocess.Popen([sys.executable, "-m", "flows.serve", "--port", str(port), "--home", str(tmp_path / "home")],
                            cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: "serving ingest-fits/ingest-fits" in log.read_text() or proc.poll() is not None, 180, "flows.serve")
        assert api_healthy(api), log.read_text()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        wait_for(lambda: not api_healthy(api, timeout=1.0), 60, "the orphaned server to stop")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
