"""The ``build-features`` flow: the variability sets, and with a checkpoint the VAE sets.

(Not named features.py: Prefect loads flow files by path, and that name would shadow the
top-level ``features`` package.)

The ``poisson_variability`` set (and its simulated constant sources) is the expensive part: it
is computed in parts of :data:`PART_SOURCES` sources, each a Prefect task on the flow's task
runner: threads by default, or Dask (a temporary LocalCluster, or a scheduler's address) as for
ingest.
"""

from __future__ import annotations

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from etl.store import open_store
from features.build import build_poisson_variability, build_variability
from features.featurestore import build_lock
from features.poisson_variability import extract_poisson_variability
from flows.runners import RunnerKind, make_task_runner

#: Sources per ``poisson-variability-part`` task (~10 s of work on one core).
PART_SOURCES = 5_000


@task(name="variability-features", retries=1)
def variability_task(store: str, min_points: int) -> dict:
    meta, created = build_variability(store, min_points)
    return {**meta, "created": created}


@task(name="poisson-variability-part", retries=1)
def poisson_part_task(store: str, start: int, stop: int) -> pl.DataFrame:
    """Uncalibrated AMPL/NEV/bexvar columns of ok sources ``start:stop`` (store order) of a (null) store."""
    return extract_poisson_variability(open_store(store), n_jobs=1, rows=(start, stop))


def runner_extract(runner, part_sources: int | None = None):
    """An ``extract`` for :func:`features.build.build_poisson_variability` that runs parts on ``runner``."""
    part_sources = part_sources or PART_SOURCES

    def extract(store, progress: bool = False) -> pl.DataFrame:
        n_ok = store.catalog().filter(pl.col("status") == "ok").select(pl.len()).collect().item()
        futures = [runner.submit(poisson_part_task, {"store": store.url, "start": lo, "stop": min(lo + part_sources, n_ok)})
                   for lo in range(0, n_ok, part_sources)]
        parts = [f.result() for f in futures]
        return pl.concat(parts) if parts else extract_poisson_variability(store)  # none: the empty frame's schema

    return extract


@task(name="model-features", retries=1)
def model_features_task(store: str, checkpoint: str, n_null: int | None) -> list[dict]:
    from training.score import build_model_features  # torch: only when a checkpoint is given

    return [{**meta, "created": created} for meta, created in build_model_features(store, checkpoint, progress=False, n_null=n_null)]


@flow(name="build-features", log_prints=True)
def build_features(store: str, checkpoint: str | None = None, min_points: int = 3, n_null: int | None = None,
                   task_runner: RunnerKind = "threads", workers: int = 2, dask_address: str | None = None) -> list[dict]:
    """Build (or reuse) the store's feature sets; returns their name, version and whether built.

    Parameters
    ----------
    n_null : int, optional
        Simulated constant sources for the false-positive probabilities (default: 10 per source,
        4,000 to 50,000).
    task_runner, workers, dask_address
        Where the ``poisson_variability`` parts run (:func:`flows.runners.make_task_runner`).
    """
    logger = get_run_logger()

    def waiting(holder: str) -> None:
        logger.info("another feature build holds %s (%s); waiting for it", store, holder)

    with build_lock(open_store(store), on_wait=waiting):  # the same lock as python -m features.build
        results = [variability_task(store, min_points)]
        with make_task_runner(task_runner, workers, dask_address) as runner:
            meta, created = build_poisson_variability(store, n_null=n_null, extract=runner_extract(runner))
        results.append({**meta, "created": created})
        if checkpoint:
            results += model_features_task(store, checkpoint, n_null)
    rows = ["| set | version | sources | columns | |", "|---|---:|---:|---:|---|"]
    for r in results:
        rows.append(f"| {r['name']} | {r['version']} | {r['rows']} | {len(r['columns'])} | {'built' if r['created'] else 'reused'} |")
        logger.info("%s@%d: %d sources (%s)", r["name"], r["version"], r["rows"], "built" if r["created"] else "reused")
    create_markdown_artifact("\n".join(rows), key="feature-sets", description=f"feature sets of {store}")
    return [{"name": r["name"], "version": r["version"], "rows": r["rows"], "created": r["created"]} for r in results]
