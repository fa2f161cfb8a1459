"""Task runners: threads by default, Dask on a temporary LocalCluster or an existing scheduler."""

from __future__ import annotations

from typing import Literal

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from features.builders import PartRunner
from features.parts import PART_SOURCES

RunnerKind = Literal["threads", "dask"]


def make_task_runner(kind: RunnerKind = "threads", workers: int = 2, dask_address: str | None = None):
    """A Prefect task runner (use as a context manager, then ``runner.submit(task, parameters)``).

    Parameters
    ----------
    kind : {"threads", "dask"}
        ``threads``: a thread pool in the flow's process (parsing releases the GIL in numpy and
        zlib, and avoids the ~200 ms per task a Dask round trip costs). ``dask``: prefect-dask's
        DaskTaskRunner, on ``dask_address`` when given, else a temporary LocalCluster of
        ``workers`` single-threaded processes on 127.0.0.1.
    """
    if kind == "threads":
        return ThreadPoolTaskRunner(max_workers=workers)
    if kind == "dask":
        from prefect_dask import DaskTaskRunner

        if dask_address:
            return DaskTaskRunner(address=dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                                              "host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"})
    raise ValueError(f"task_runner must be 'threads' or 'dask', not {kind!r}")


@task(name="part", retries=1, cache_policy=NO_CACHE, task_run_name="{label}-{start}")
def part_task(label: str, compute, store, start: int, stop: int):
    """One part of a feature set or of the model's scores (:mod:`features.parts`): ``compute(store, start, stop)``."""
    return compute(store, start, stop)


def part_runner(runner, kind: RunnerKind, workers: int, part_sources: int = PART_SOURCES, progress: bool = False) -> PartRunner:
    """A :class:`features.builders.PartRunner` that submits each part as a Prefect task to ``runner``.

    On Dask the parts get the store's URL (each worker opens it once); on threads the flow's opened
    store itself.
    """
    def submit(label, compute, store, start, stop):
        return runner.submit(part_task, {"label": label, "compute": compute, "store": store, "start": start, "stop": stop})

    return PartRunner(submit=submit, jobs=max(1, workers), remote=kind == "dask", part_sources=part_sources, progress=progress)
