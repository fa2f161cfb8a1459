"""Serve every deployment against a Prefect server, starting a local one when none answers.

    python -m flows.serve [--port PORT] [--home DIR]

Uses the server that ``PREFECT_API_URL`` (or the committed ``prefect.toml``) names;
``--port`` names ``http://127.0.0.1:PORT/api`` instead. When it does not answer and points at
this machine, a ``prefect server start`` child is started on 127.0.0.1 with ``PREFECT_HOME``
(``--home``, else the environment's ``PREFECT_HOME``, else ``./.prefect`` as ``prefect.toml``
says: SQLite) and analytics off, and stopped again on exit (Ctrl-C or SIGTERM) and when this
process dies, even by ``kill -9``. From a second terminal in the repository::

    prefect deployment run ingest-fits/ingest-fits --param archive=demo/archive \
        --param store=demo/store.zarr --watch --watch-timeout 600

Runs send a heartbeat every 30 s; an automation installed here marks a run Crashed when its
heartbeats stop for 90 s (its serving process was killed), so no run stays Running forever.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

from common import cli
from common.errors import UserError
from common.extras import require
from common.lifeline import set_parent_death_signal

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_API = "http://127.0.0.1:4200/api"
CRASH_AUTOMATION = "crash-runs-without-heartbeat"
HEARTBEAT_SECONDS = 30  # Prefect's minimum
#: A run is Crashed after this long without a heartbeat; must exceed HEARTBEAT_SECONDS.
HEARTBEAT_GRACE = timedelta(seconds=float(os.environ.get("LCVAE_HEARTBEAT_GRACE_S", "90")))


class ServeError(UserError):
    """The Prefect server cannot be reached or started."""


def api_healthy(api_url: str, timeout: float = 2.0) -> bool:
    """True when the Prefect API at ``api_url`` answers its health check."""
    try:
        with urllib.request.urlopen(api_url.rstrip("/") + "/health", timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def server_env(home: Path) -> dict:
    env = dict(os.environ)
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
               PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT="false")
    env.pop("PREFECT_API_URL", None)
    return env


def start_server(api_url: str, home: Path, timeout: float = 180.0) -> subprocess.Popen:
    """Start ``prefect server start`` on the loopback host/port of ``api_url``; wait until healthy."""
    parsed = urlparse(api_url)
    if parsed.hostname not in ("127.0.0.1", "localhost"):
        raise ServeError(f"no Prefect server answers at {api_url}, and it is not on this machine; start it first")
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / "server.log", "ab")
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(parsed.port or 4200)]
    # Its own session (Ctrl-C in the terminal reaches this process only, which stops it in
    # order), and SIGTERM from the kernel if this process dies, even by kill -9.
    proc = subprocess.Popen(cmd, env=server_env(home), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=lambda: set_parent_death_signal(signal.SIGTERM))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServeError(f"prefect server exited with code {proc.returncode}; see {home / 'server.log'}")
        if api_healthy(api_url):
            return proc
        time.sleep(0.5)
    stop_server(proc)
    raise ServeError(f"prefect server did not answer within {timeout:.0f} s; see {home / 'server.log'}")


def stop_server(proc: subprocess.Popen | None) -> None:
    """SIGTERM the server's process group, SIGKILL after 20 s."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


@contextlib.contextmanager
def api_for_command(home: Path | None = None):
    """The Prefect API a command runs its flow against: the configured one, started here when it is down.

    ``PREFECT_API_URL``, else ``prefect.toml`` in the working folder; when that names a server on
    this machine that does not answer, one is started (``PREFECT_HOME`` = ``home``, else
    ``$PREFECT_HOME``, else ``./.prefect``) and stopped again when the block ends. Without either,
    Prefect runs the flow against a temporary server of its own. Yields the URL (or None).
    """
    api_url = os.environ.get("PREFECT_API_URL") or _toml_api_url()
    server = None
    if api_url and not api_healthy(api_url):
        home = home or Path(os.environ.get("PREFECT_HOME") or ".prefect")
        print(f"starting a Prefect server at {api_url} (PREFECT_HOME={home}) ...", file=sys.stderr, flush=True)
        server = start_server(api_url, home)
    try:
        yield api_url
    finally:
        if server is not None:
            try:  # the run's last log lines reach the server before it stops
                from prefect.logging.handlers import APILogHandler

                APILogHandler().flush()
            except Exception:  # noqa: BLE001 - never keep a server running over a log line
                pass
        stop_server(server)


class _UserErrorsInOneLine(logging.Filter):
    """A user's error (bad input, a busy store, a full disk) logged by Prefect as one line, not a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, UserError):
            record.msg, record.args = f"{record.getMessage().rstrip(': ')} ({type(exc).__name__}: {exc})", ()
            record.exc_info = record.exc_text = None
        return True


@contextlib.contextmanager
def user_errors_in_one_line():
    """While inside, Prefect's log handlers print a :class:`UserError` as one line (the command then
    ends with its own ``error:`` line and exit status 2); bugs keep their tracebacks."""
    quiet = _UserErrorsInOneLine()
    handlers = {h for name in ["prefect", *logging.root.manager.loggerDict] if name.startswith("prefect")
                for h in logging.getLogger(name).handlers}
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)


def install_crash_automation() -> None:
    """Mark flow runs Crashed when their heartbeats stop (idempotent: one automation by name)."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    try:
        if Automation.read(name=CRASH_AUTOMATION):
            return
    except ValueError:
        pass
    Automation(
        name=CRASH_AUTOMATION,
        description="Runs whose serving process died stop sending heartbeats; mark them Crashed.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                    "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"},
            match={"prefect.resource.id": ["prefect.flow-run.*"]},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=HEARTBEAT_GRACE,
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message=f"No heartbeat for {HEARTBEAT_GRACE.total_seconds():.0f} s: the serving process died.")],
    ).create()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("PREFECT_HOME") or ".prefect"),
                        help="PREFECT_HOME of a server started here (default: $PREFECT_HOME, else ./.prefect)")
    parser.add_argument("--port", type=int, help="serve against http://127.0.0.1:PORT/api (starting a server there if none answers)")
    args = parser.parse_args(argv)

    if args.port is not None:
        api_url = f"http://127.0.0.1:{args.port}/api"
    else:
        api_url = os.environ.get("PREFECT_API_URL") or _toml_api_url() or DEFAULT_API
    # Settings for this process and the flow-run subprocesses serve() starts; set before Prefect is
    # first imported (below), which reads them once.
    os.environ["PREFECT_API_URL"] = api_url
    os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", "2")
    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(HEARTBEAT_SECONDS))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    require("python -m flows.serve", "prefect")
    server = None
    if not api_healthy(api_url):
        print(f"starting a Prefect server at {api_url} (PREFECT_HOME={args.home}) ...", flush=True)
        server = start_server(api_url, args.home)

    def terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        from prefect import serve

        from flows.crossmatch import cross_match
        from flows.feature_sets import build_features
        from flows.ingest import ingest_fits
        from flows.survey import survey
        from flows.train import train_vae

        install_crash_automation()
        deployments = [f.to_deployment(name=f.name) for f in (ingest_fits, build_features, train_vae, cross_match, survey)]
        print(f"serving {', '.join(f'{d.flow_name}/{d.name}' for d in deployments)} against {api_url}", flush=True)
        serve(*deployments, print_starting_message=False)
    except KeyboardInterrupt:
        pass
    finally:
        # Prefect's runner installs its own SIGTERM handler and may interrupt the main thread
        # again while it shuts down; ignore both signals so the server below is always stopped.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if server is not None:
            print("stopping the Prefect server", flush=True)
            stop_server(server)
    return 0


def _toml_api_url() -> str | None:
    path = Path.cwd() / "prefect.toml"
    if not path.exists():
        return None
    import tomllib

    return tomllib.loads(path.read_text()).get("api", {}).get("url")


if __name__ == "__main__":
    sys.exit(cli.run(main))
