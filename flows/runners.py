"""Task runners: threads by default, Dask on a temporary LocalCluster or an existing scheduler."""

from __future__ import annotations

from typing import Literal

from prefect.task_runners import ThreadPoolTaskRunner

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
