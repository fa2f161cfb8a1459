"""One way to compute a feature set's columns over a store: batch by batch, in store order.

Shape legend: N = light curves in a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import polars as pl

from etl.store import LightCurveBatch, LightCurveStore


def extract_by_batch(store: LightCurveStore, extract_batch: Callable[[LightCurveBatch, list[str]], pl.DataFrame],
                     columns: Sequence[str], schema: dict[str, pl.DataType], batch_size: int, n_jobs: int = 1,
                     rows: tuple[int, int] | None = None, progress: bool = False, desc: str = "batches") -> pl.DataFrame:
    """``extract_batch(batch, source_ids)`` (N rows each) over the ok sources of ``store``, concatenated.

    Parameters
    ----------
    columns : sequence of str
        Store columns each batch is read with.
    schema : dict
        Of the empty frame returned when there is no source to extract.
    n_jobs : int
        Batches in flight on threads (:meth:`etl.store.LightCurveStore.map_batches`).
    rows : (start, stop), optional
        Only these ok sources, counted in store order (the unit of work of a flow's task).
    """
    picks = None if rows is None else np.arange(rows[0], min(rows[1], len(store)))
    parts = list(store.map_batches(lambda sources, batch: extract_batch(batch, sources["source_id"].to_list()), columns,
                                   batch_size, n_jobs, rows=picks, progress=progress, desc=desc))
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)
