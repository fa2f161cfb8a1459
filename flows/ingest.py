"""The ``ingest-fits`` flow: discover -> skip unchanged -> parse in batches (tasks) -> write -> commit.

A thin layer over :func:`etl.ingest.ingest`: the flow only decides where each batch is parsed
(a Prefect task per batch of several hundred files, retried with backoff) and reports to
Prefect (a log line per batch, a markdown artifact, the summary as return value). A rejected
file is a catalog row, not a task failure.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from common.location import filesystem
from common.pool import in_order
from common.progress import forward_to
from etl.ingest import BATCH_SIZE, check_options, ingest
from etl.ingestor import IngestSummary
from etl.lightcurve import FRACEXP_MIN
from etl.parse import ParsedBatch, parse_batch
from flows.runners import RunnerKind, make_task_runner

MAX_REJECTED_IN_ARTIFACT = 200


@task(name="parse-batch", retries=3, retry_delay_seconds=[2, 10, 30], task_run_name="parse-batch-{index}")
def parse_batch_task(files: list[str], known_hashes: list[str | None], fracexp_min: float, binning: str = "none",
                     index: int = 0) -> ParsedBatch:
    """Hash, read and validate one batch of files (see :func:`etl.ingest.parse_batch`)."""
    return parse_batch(files, known_hashes, fracexp_min, binning)


def prefect_batch_runner(runner, in_flight: int):
    """A :data:`etl.ingest.BatchRunner` that submits each batch as a Prefect task to ``runner``."""

    def run(batches, known_hashes, fracexp_min, binning):
        def submit(item):
            index, files = item
            return runner.submit(parse_batch_task, {"files": files, "known_hashes": known_hashes(files),
                                                    "fracexp_min": fracexp_min, "binning": binning, "index": index})

        return in_order(submit, enumerate(batches), in_flight)

    return run


def check_paths(archive: str, store: str, storage_options: dict | None) -> None:
    """Fail the run at once, with a clear message, when the archive is missing."""
    fs, path, _ = filesystem(archive, storage_options)
    if not fs.isdir(path):
        raise ValueError(f"archive {archive!r} does not exist or is not a directory")
    if not store:
        raise ValueError("store must be a path or URL")


def summary_markdown(summary: IngestSummary) -> str:
    lines = [
        f"## ingest-fits: {summary.store}",
        "",
        "| discovered | ingested | unchanged | rejected | points | seconds |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {summary.discovered} | {summary.ingested} | {summary.unchanged} | {summary.rejected} | {summary.points} | {summary.seconds:.1f} |",
    ]
    if summary.rejected_files:
        lines += ["", "### Rejected files", "", "| file | reason |", "|---|---|"]
        for file, reason in summary.rejected_files[:MAX_REJECTED_IN_ARTIFACT]:
            lines.append(f"| {file} | {reason.replace('|', '/')} |")
        if len(summary.rejected_files) > MAX_REJECTED_IN_ARTIFACT:
            lines.append(f"| ... | {len(summary.rejected_files) - MAX_REJECTED_IN_ARTIFACT} more in the catalog |")
    return "\n".join(lines)


@flow(name="ingest-fits", log_prints=True)
def ingest_fits(
    archive: str,
    store: str,
    batch_size: int = BATCH_SIZE,
    fracexp_min: float = FRACEXP_MIN,
    task_runner: RunnerKind = "threads",
    workers: int = 2,
    dask_address: str | None = None,
    storage_options: dict[str, Any] | None = None,
    bin: str = "none",
) -> dict:
    """Ingest an eROSITA light-curve FITS archive into a Zarr store + Parquet catalog.

    Parameters
    ----------
    archive : str
        Directory or fsspec URL searched recursively for ``*.fits[.gz]``.
    store : str
        Store path or fsspec URL (``s3://bucket/store``); created when missing.
    batch_size : int
        Files per task (a task run costs ~10 ms in threads and ~200 ms on Dask).
    fracexp_min : float
        Fractional-exposure cut.
    task_runner : {"threads", "dask"}
        Where batches are parsed; ``dask`` uses ``dask_address`` or a temporary LocalCluster.
    workers : int
        Threads, or LocalCluster worker processes.
    dask_address : str, optional
        ``tcp://host:8786`` of an existing Dask scheduler.
    storage_options : dict, optional
        fsspec options for URLs (``{"endpoint_url": ...}`` for S3-compatible servers).
    bin : {"none", "eroday"}
        ``eroday``: one bin per survey scan (``--bin`` of ``python -m etl.ingest``); a store holds one.

    Returns
    -------
    dict
        discovered, ingested, unchanged, rejected, points, seconds, store, rejected_files.
    """
    logger = get_run_logger()
    check_options(workers=workers, batch_size=batch_size, fracexp_min=fracexp_min, binning=bin)
    check_paths(archive, store, storage_options)

    def progress(summary: IngestSummary) -> None:
        logger.info("batch done: %d files seen, %d ingested, %d unchanged, %d rejected",
                    summary.discovered, summary.ingested, summary.unchanged, summary.rejected)

    with make_task_runner(task_runner, workers, dask_address) as runner, forward_to(logger):
        summary = ingest(archive, store, batch_size=batch_size, fracexp_min=fracexp_min, progress=False,
                         storage_options=storage_options, on_batch=progress, binning=bin,
                         batch_runner=prefect_batch_runner(runner, in_flight=2 * workers))
    logger.info(summary.line())
    create_markdown_artifact(summary_markdown(summary), key="ingest-summary", description=f"ingest-fits into {store}")
    return {"store": summary.store, "discovered": summary.discovered, "ingested": summary.ingested,
            "unchanged": summary.unchanged, "rejected": summary.rejected, "points": summary.points,
            "seconds": summary.seconds, "rejected_files": [list(x) for x in summary.rejected_files]}
