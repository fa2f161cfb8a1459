"""Command line of the explorer: open the store, build the table, serve the Dash app.

    python -m explorer --store STORE [--port 8050] [--host 127.0.0.1] [--user NAME] [--labels FILE]

Binds 127.0.0.1 unless told otherwise (another host prints a warning: the page writes labels
and has no login). A bad store path is a one-line error and exit status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
import time

from werkzeug.serving import run_simple

from etl.store import open_store
from features.labels import LabelLog

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def load(store_url: str, labels_path: str | None = None, user: str | None = None):
    """The store and its Explorer (table read into memory); raises EtlError for a bad store."""
    from explorer.app import Explorer
    from explorer.table import CandidateTable, Query

    store = open_store(store_url)
    table = CandidateTable.from_store(store, LabelLog.for_store(store, labels_path))
    table.page(Query())  # the default ranking, sorted once before the first visitor asks
    return Explorer(store, table, user or getpass.getuser())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m explorer", description="Browse, inspect and label the sources of a light-curve store.")
    p.add_argument("--store", required=True, help="light-curve store (path)")
    p.add_argument("--port", type=int, default=8050)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--user", default=None, help="name stored with your labels (default: your login)")
    p.add_argument("--labels", default=None, help="labels log (default: STORE/labels/labels.jsonl)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request
    if args.host not in LOCAL_HOSTS:
        print(f"warning: binding {args.host}: anyone who reaches this address can read the store and write labels "
              "(there is no login)", file=sys.stderr)
    t = time.perf_counter()
    ex = load(args.store, args.labels, args.user)
    from explorer.app import build_app

    app = build_app(ex)
    print(f"{ex.table.frame.height:,} sources loaded in {time.perf_counter() - t:.1f} s; "
          f"open http://{args.host if ':' not in args.host else f'[{args.host}]'}:{args.port}/ (Ctrl-C stops)", flush=True)
    # Werkzeug's threaded server directly: Dash's run() prints its own "running on" lines and Flask its
    # banner; the line above says where the page is, once.
    run_simple(args.host, args.port, app.server, threaded=True)
    return 0
