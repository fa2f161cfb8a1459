"""The ``build-features`` flow: the classical sets, and with a checkpoint the model sets (discovery included).

(Not named features.py: Prefect loads flow files by path, and that name would shadow the
top-level ``features`` package.)

The expensive parts run in parts of :data:`PART_SOURCES` sources, each a Prefect task on the flow's
task runner (threads by default, or Dask: a temporary LocalCluster, or a scheduler's address) as
for ingest: the ``poisson_variability`` and ``morphology`` statistics of the store and of its
simulated constant sources, and the model's scores (latents, anomaly, cross-band surprises). The
whole build holds the store's feature-build lock, as ``python -m features.build`` does.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from etl.store import open_store
from features.build import build_morphology, build_poisson_variability, build_variability
from features.featurestore import build_lock
from features.morphology import extract_morphology
from features.poisson_variability import extract_poisson_variability
from flows.runners import RunnerKind, make_task_runner

#: Sources per part task (~10 s of work on one core).
PART_SOURCES = 5_000


@task(name="variability-features", retries=1)
def variability_task(store: str, min_points: int) -> dict:
    meta, created = build_variability(store, min_points)
    return {**meta, "created": created}


@task(name="poisson-variability-part", retries=1)
def poisson_part_task(store: str, start: int, stop: int) -> pl.DataFrame:
    """Uncalibrated AMPL/NEV/bexvar columns of ok sources ``start:stop`` (store order) of a (null) store."""
    return extract_poisson_variability(open_store(store), n_jobs=1, rows=(start, stop))


@task(name="morphology-part", retries=1)
def morphology_part_task(store: str, start: int, stop: int) -> pl.DataFrame:
    """Uncalibrated cross-band statistics of ok sources ``start:stop`` of a (null) store."""
    return extract_morphology(open_store(store), n_jobs=1, rows=(start, stop))


@task(name="model-scores-part", retries=1)
def score_part_task(store: str, checkpoint: str, start: int, stop: int) -> pl.DataFrame:
    """The model's scores, latents and cross-band surprises of ok sources ``start:stop`` of a (null) store."""
    from training.score import score_rows  # torch: only when a checkpoint is given

    return score_rows(open_store(store), checkpoint, (start, stop), device="cpu")


def in_parts(runner, part: Callable, part_sources: int | None = None, **fixed):
    """``(store, progress=False) -> DataFrame``: ``part`` run on ``runner`` for every slice of the store's ok sources."""
    size = part_sources or PART_SOURCES

    def run(store, progress: bool = False) -> pl.DataFrame:
        futures = [runner.submit(part, {"store": store.url, **fixed, "start": lo, "stop": min(lo + size, len(store))})
                   for lo in range(0, len(store), size)]
        parts = [f.result() for f in futures]
        return pl.concat(parts) if parts else part.fn(store.url, **fixed, start=0, stop=0)  # none: the empty frame's schema

    return run


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
        Where the parts run (:func:`flows.runners.make_task_runner`).
    """
    logger = get_run_logger()

    def waiting(holder: str) -> None:
        logger.info("another feature build holds %s (%s); waiting for it", store, holder)

    with build_lock(open_store(store), on_wait=waiting):  # the same lock as python -m features.build
        results = [variability_task(store, min_points)]
        with make_task_runner(task_runner, workers, dask_address) as runner:
            for build, part in ((build_poisson_variability, poisson_part_task), (build_morphology, morphology_part_task)):
                meta, created = build(store, n_null=n_null, extract=in_parts(runner, part))
                results.append({**meta, "created": created})
            if checkpoint:
                from training.score import build_model_features

                score = in_parts(runner, score_part_task, checkpoint=checkpoint)
                results += [{**meta, "created": created}
                            for meta, created in build_model_features(store, checkpoint, progress=False, n_null=n_null, score=score)]
    rows = ["| set | version | sources | columns | |", "|---|---:|---:|---:|---|"]
    for r in results:
        rows.append(f"| {r['name']} | {r['version']} | {r['rows']} | {len(r['columns'])} | {'built' if r['created'] else 'reused'} |")
        logger.info("%s@%d: %d sources (%s)", r["name"], r["version"], r["rows"], "built" if r["created"] else "reused")
    create_markdown_artifact("\n".join(rows), key="feature-sets", description=f"feature sets of {store}")
    return [{"name": r["name"], "version": r["version"], "rows": r["rows"], "created": r["created"]} for r in results]
