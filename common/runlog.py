"""A record of a multi-step run: what each step did and what it cost, kept in a JSON file.

    log = RunLog("STORE/survey.json", {"archive": ..., "store": ...})
    with log.step("ingest") as step:
        summary = ingest(...)
        step.did_work = summary.ingested > 0
        step.detail.update(ingested=summary.ingested)
    log.finish()

Every step gets its wall and CPU time, the peak memory of the process tree and the bytes read
and written (:class:`common.meter.Meter`), whether it did work or found its output current, and
what it reports (``detail``). The file is rewritten atomically when a step starts (status
``running``) and ends, so a run killed in its fifth step still says what the first four did and
which one it was in; a step that raised is recorded as failed with its error before the exception
goes on. The previous runs' totals are kept in ``history``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from common.meter import Meter

#: Earlier runs kept in the file (their totals and which steps worked).
HISTORY = 20


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Step:
    """One step's record while it runs: set ``did_work`` and add to ``detail``."""

    name: str
    did_work: bool = True
    detail: dict = field(default_factory=dict)


class RunLog:
    """The record of one run, written to ``path`` (JSON) after every step (module docstring)."""

    def __init__(self, path: str | os.PathLike, meta: dict | None = None):
        self.path = Path(path)
        self.started = _now()
        self.meta = dict(meta or {})
        self.steps: list[dict] = []
        self.status = "running"
        previous = read_runlog(self.path)
        self.history = (previous.get("history", []) + [summarise(previous)])[-HISTORY:] if previous else []
        self.write()

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[Step]:
        """Measure and record the step ``name`` (failed, with its error, if the block raises)."""
        step = Step(name)
        started = _now()
        meter = Meter()
        self.steps.append({"step": name, "status": "running", "started": started})  # what a killed run was doing
        self.write()
        try:
            with meter:
                yield step
        except BaseException as exc:
            self.steps[-1] = {"step": name, "status": "failed", "started": started, **meter.record(),
                              "error": f"{type(exc).__name__}: {exc}", **step.detail}
            self.status = "failed"
            self.write()
            raise
        status = "done" if step.did_work else "current"
        self.steps[-1] = {"step": name, "status": status, "started": started, **meter.record(), **step.detail}
        self.write()

    def skip(self, name: str, why: str) -> None:
        """Record a step that does not apply to this run (e.g. no reference to cross-match)."""
        self.steps.append({"step": name, "status": "skipped", "why": why})
        self.write()

    def totals(self) -> dict:
        measured = [s for s in self.steps if "wall_s" in s]
        return {"wall_s": round(sum(s["wall_s"] for s in measured), 3), "cpu_s": round(sum(s["cpu_s"] for s in measured), 3),
                "peak_rss_bytes": max((s["peak_rss_bytes"] for s in measured), default=0),
                "read_bytes": sum(s["read_bytes"] for s in measured), "write_bytes": sum(s["write_bytes"] for s in measured)}

    def finish(self, **extra) -> dict:
        """Mark the run done (``extra``: more top-level figures, e.g. disk use) and write it."""
        self.status = "done"
        self.meta.update(extra)
        self.write()
        return self.as_dict()

    def as_dict(self) -> dict:
        return {**self.meta, "status": self.status, "started": self.started, "updated": _now(), "steps": self.steps,
                "totals": self.totals(), "history": self.history}

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            tmp.write_text(json.dumps(self.as_dict(), indent=1) + "\n")
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a full disk: no half-written record left beside the last whole one
            raise

    def markdown(self, title: str) -> str:
        """The steps as a Markdown table (a Prefect artifact)."""
        rows = [f"## {title}", "", "| step | status | wall s | CPU s | peak memory MiB | read MiB | written MiB |",
                "|---|---|---:|---:|---:|---:|---:|"]
        for s in self.steps + [{"step": "**total**", "status": self.status, **self.totals()}]:
            if "wall_s" not in s:
                rows.append(f"| {s['step']} | {s['status']}: {s.get('why', '')} | | | | | |")
                continue
            rows.append(f"| {s['step']} | {s['status']} | {s['wall_s']:.1f} | {s['cpu_s']:.1f} | {s['peak_rss_bytes'] / 2**20:,.0f} | "
                        f"{s['read_bytes'] / 2**20:,.0f} | {s['write_bytes'] / 2**20:,.0f} |")
        return "\n".join(rows)


def read_runlog(path: str | os.PathLike) -> dict | None:
    """A run record, or None when there is none (or it cannot be read: a new record replaces it)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def summarise(record: dict) -> dict:
    """What the history keeps of a run: when, its status, totals and each step's status."""
    return {"started": record.get("started"), "status": record.get("status"), "totals": record.get("totals", {}),
            "steps": {s.get("step"): s.get("status") for s in record.get("steps", []) if isinstance(s, dict)}}
