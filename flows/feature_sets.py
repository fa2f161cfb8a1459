"""The ``build-features`` flow: the variability set, and with a checkpoint the VAE sets.

(Not named features.py: Prefect loads flow files by path, and that name would shadow the
top-level ``features`` package.)
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from features.build import build_model_features, build_poisson_variability, build_variability


@task(name="variability-features", retries=1)
def variability_task(store: str, min_points: int) -> dict:
    meta, created = build_variability(store, min_points)
    return {**meta, "created": created}


@task(name="poisson-variability-features", retries=1)
def poisson_variability_task(store: str) -> dict:
    meta, created = build_poisson_variability(store)
    return {**meta, "created": created}


@task(name="model-features", retries=1)
def model_features_task(store: str, checkpoint: str) -> list[dict]:
    return [{**meta, "created": created} for meta, created in build_model_features(store, checkpoint, progress=False)]


@flow(name="build-features", log_prints=True)
def build_features(store: str, checkpoint: str | None = None, min_points: int = 3) -> list[dict]:
    """Build (or reuse) the store's feature sets; returns their name, version and whether built."""
    logger = get_run_logger()
    results = [variability_task(store, min_points), poisson_variability_task(store)]
    if checkpoint:
        results += model_features_task(store, checkpoint)
    rows = ["| set | version | sources | columns | |", "|---|---:|---:|---:|---|"]
    for r in results:
        rows.append(f"| {r['name']} | {r['version']} | {r['rows']} | {len(r['columns'])} | {'built' if r['created'] else 'reused'} |")
        logger.info("%s@%d: %d sources (%s)", r["name"], r["version"], r["rows"], "built" if r["created"] else "reused")
    create_markdown_artifact("\n".join(rows), key="feature-sets", description=f"feature sets of {store}")
    return [{"name": r["name"], "version": r["version"], "rows": r["rows"], "created": r["created"]} for r in results]
