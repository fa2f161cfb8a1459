"""The ``cross-match`` flow: a reference catalogue against the store, as the feature set ``xmatch_<name>``."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from features.crossmatch import crossmatch


@flow(name="cross-match", log_prints=True)
def cross_match(store: str, reference: str, radius: float, name: str, columns: list[str] | None = None,
                ra_column: str | None = None, dec_column: str | None = None, id_column: str | None = None,
                method: str = "auto", dask_address: str | None = None, max_sigma: float | None = None,
                ref_error_column: str | None = None) -> dict:
    """Build (or reuse) ``xmatch_<name>``; returns its version, match counts and spurious-match rate."""
    meta, created = crossmatch(store, reference, radius, name, columns, ra_column, dec_column, id_column, method, dask_address,
                                max_sigma, ref_error_column)
    m = meta.get("metrics", {})
    get_run_logger().info("%s@%d: %s of %s matched, spurious fraction %s (%s)", meta["name"], meta["version"],
                          m.get("matched"), m.get("sources"), m.get("spurious_fraction"), "built" if created else "reused")
    create_markdown_artifact(
        f"| set | version | matched | sources | spurious fraction |\n|---|---:|---:|---:|---:|\n"
        f"| {meta['name']} | {meta['version']} | {m.get('matched')} | {m.get('sources')} | {m.get('spurious_fraction')} |",
        key="cross-match", description=f"{reference} against {store} within {radius} arcsec")
    return {"name": meta["name"], "version": meta["version"], "created": created, "matched": m.get("matched"),
            "spurious_fraction": m.get("spurious_fraction")}
