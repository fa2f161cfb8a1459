"""The ``build-features`` flow: the classical sets, and with a checkpoint the model sets (discovery included).

(Not named features.py: Prefect loads flow files by path, and that name would shadow the
top-level ``features`` package.)

The expensive work runs in parts of :data:`features.parts.PART_SOURCES` sources, each a Prefect
task on the flow's task runner (threads by default, or Dask: a temporary LocalCluster, or a
scheduler's address) as for ingest: every set's statistics, of the store and of its simulated
constant sources, and the model's scores. Finished parts are kept in the store until their set is
written, so a rerun after a crash or a kill resumes with the parts not yet done. The whole build
holds the store's feature-build lock, as ``python -m features.build`` does, and reads one
snapshot of the store from start to end.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from common.progress import forward_to
from etl.store import open_store
from features.builders import build_classical
from features.featurestore import build_lock
from features.parts import PART_SOURCES
from flows.runners import RunnerKind, make_task_runner, part_runner


def build_sets(store, checkpoint: str | None, min_points: int, n_null: int | None, runner) -> list[dict]:
    """The classical sets and, with ``checkpoint``, the model sets of an opened ``store`` (each built or reused)."""
    results = [{**meta, "created": created} for meta, created in build_classical(store, min_points, n_null, runner=runner)]
    if checkpoint:
        from training.score import build_model_features  # torch: only when a checkpoint is given

        results += [{**meta, "created": created}
                    for meta, created in build_model_features(store, checkpoint, n_null=n_null, runner=runner)]
    return results


def sets_markdown(store: str, results: list[dict]) -> str:
    rows = [f"## Feature sets of {store}", "", "| set | version | sources | columns | |", "|---|---:|---:|---:|---|"]
    rows += [f"| {r['name']} | {r['version']} | {r['rows']} | {len(r['columns'])} | {'built' if r['created'] else 'reused'} |"
             for r in results]
    return "\n".join(rows)


@flow(name="build-features", log_prints=True)
def build_features(store: str, checkpoint: str | None = None, min_points: int = 3, n_null: int | None = None,
                   task_runner: RunnerKind = "threads", workers: int = 2, dask_address: str | None = None,
                   part_sources: int = PART_SOURCES) -> list[dict]:
    """Build (or reuse) the store's feature sets; returns their name, version and whether built.

    Parameters
    ----------
    n_null : int, optional
        Simulated constant sources for the false-positive probabilities (default: 10 per source,
        4,000 to 50,000).
    task_runner, workers, dask_address
        Where the parts run (:func:`flows.runners.make_task_runner`).
    part_sources : int
        Sources per part (a Prefect task each; 5,000 is ~10 s of work on one core).
    """
    logger = get_run_logger()
    opened = open_store(store)

    def waiting(holder: str) -> None:
        logger.info("another feature build holds %s (%s); waiting for it", store, holder)

    with forward_to(logger), build_lock(opened, on_wait=waiting):  # the same lock as python -m features.build
        with make_task_runner(task_runner, workers, dask_address) as runner:
            results = build_sets(opened, checkpoint, min_points, n_null,
                                 part_runner(runner, task_runner, workers, part_sources))
    for r in results:
        logger.info("%s@%d: %d sources (%s)", r["name"], r["version"], r["rows"], "built" if r["created"] else "reused")
    create_markdown_artifact(sets_markdown(store, results), key="feature-sets", description=f"feature sets of {store}")
    return [{"name": r["name"], "version": r["version"], "rows": r["rows"], "created": r["created"]} for r in results]
