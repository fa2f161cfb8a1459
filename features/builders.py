"""Building the classical feature sets of a store: reuse what is current, compute the rest in parts.

* ``variability`` (:mod:`features.variability`);
* ``poisson_variability`` (AMPL_MAX/AMPL_SIG, the normalised excess variance and the Bayesian
  excess variance per band, with false-positive probabilities calibrated on simulated constant
  sources: :mod:`features.poisson_variability`, :mod:`features.calibration`,
  :mod:`features.null_model`);
* ``morphology`` (does a band vary as the others do: :mod:`features.morphology`, calibrated on the
  same constants).

A set is rebuilt only when no version has the same lineage (the store's snapshot, the code's
version, the null simulation). Its columns are computed in parts (:mod:`features.parts`): on
threads here by default, on a flow's task runner (Dask) when it passes its own, and a killed or
failed build resumes with the parts it has not done. The simulated constants live in
``STORE/calibration/null-<key>.zarr``, built once per catalog snapshot, size and seed. Every step
runs under the store's feature-build lock (:func:`features.featurestore.build_lock`), which the
command, the flows and model scoring share.
"""

from __future__ import annotations

import contextlib
import functools
import json
from dataclasses import dataclass

import light_curve
import numpy as np
import polars as pl
import xxhash
from threadpoolctl import threadpool_limits

from common.errors import UserError
from features.calibration import CALIBRATION_VERSION, MIN_CELL
from features.featurestore import as_store, build_lock, find_version, get_feature_set, write_feature_set
from features.morphology import MORPHOLOGY_VERSION, extract_morphology
from features.morphology import calibrate as calibrate_morphology
from features.null_model import N_NULL, NULL_MODEL_VERSION, build_null_store
from features.parts import PART_SOURCES, PartRun, Submit, parts_key, store_of
from features.poisson_variability import POISSON_FEATURES_VERSION, calibrate, extract_poisson_variability
from features.variability import MIN_POINTS, VARIABILITY_VERSION, extract_variability


class BuildError(UserError):
    """A feature build asked for something that cannot work (too few null sources, a missing checkpoint, no sources)."""


@dataclass
class PartRunner:
    """Where the parts of a build run (:mod:`features.parts`).

    Attributes
    ----------
    submit : callable, optional
        ``submit(label, compute, store, start, stop)`` -> future; default threads of this process.
    jobs : int
        Parts in flight at once (threads when ``submit`` is None).
    remote : bool
        Parts run in other processes: they get the store's URL instead of the opened store.
    progress : bool
        Draw progress bars (ETA lines go to the ``lcvae.progress`` log in any case).
    part_sources : int
        Sources per part (:data:`features.parts.PART_SOURCES`).
    """

    submit: Submit | None = None
    jobs: int = 2
    remote: bool = False
    progress: bool = False
    part_sources: int = PART_SOURCES

    def run(self, store, label: str, key: str, compute) -> tuple[pl.DataFrame, PartRun]:
        """The frame of ``compute`` over every part of ``store``, and the run (to discard once used).

        With several parts at once on this process's threads, BLAS gets one thread each: the
        parts fill the cores, and nested BLAS threads would only contend for them (~15 % slower).
        """
        parts = PartRun(store, label, key, self.part_sources)
        limit = threadpool_limits(1, user_api="blas") if self.jobs > 1 and not self.remote else contextlib.nullcontext()
        with limit:
            frame = parts.run(compute, self.submit, self.jobs, self.progress, target=store.url if self.remote else None)
        return frame, parts


def _runner(runner: PartRunner | None, progress: bool) -> PartRunner:
    return runner if runner is not None else PartRunner(progress=progress)


# -- the part functions (module level: picklable for Dask) ------------------------------------
def variability_part(store, start: int, stop: int, min_points: int = MIN_POINTS) -> pl.DataFrame:
    """``variability`` columns of ok sources ``start:stop`` (store order)."""
    return extract_variability(store_of(store), min_points=min_points, n_jobs=1, rows=(start, stop))


def poisson_part(store, start: int, stop: int) -> pl.DataFrame:
    """Uncalibrated ``poisson_variability`` columns of ok sources ``start:stop``."""
    return extract_poisson_variability(store_of(store), n_jobs=1, rows=(start, stop))


def morphology_part(store, start: int, stop: int) -> pl.DataFrame:
    """Uncalibrated ``morphology`` columns of ok sources ``start:stop``."""
    return extract_morphology(store_of(store), n_jobs=1, rows=(start, stop))


# -- the builds ---------------------------------------------------------------------------------
def build_variability(store, min_points: int = MIN_POINTS, progress: bool = False,
                      runner: PartRunner | None = None) -> tuple[dict, bool]:
    """Build the ``variability`` set, or reuse the version built from the same catalog and code."""
    store = as_store(store)
    runner = _runner(runner, progress)
    lineage = variability_lineage(store, min_points)
    with build_lock(store):
        existing = find_version(store, "variability", lineage)
        if existing is not None:
            return existing, False
        frame, parts = runner.run(store, "variability", parts_key(**lineage),
                                  functools.partial(variability_part, min_points=min_points))
        result = write_feature_set(store, "variability", frame, lineage)
        parts.discard()
        return result


def variability_lineage(store, min_points: int = MIN_POINTS) -> dict:
    """What the ``variability`` set is computed from: the store's snapshot, the options and the code's versions."""
    return {"catalog_hash": store.snapshot_hash(), "min_points": min_points, "features_version": VARIABILITY_VERSION,
            "light_curve": light_curve.__version__}


def calibrated_lineage(store, features_version: int, n_null: int | None, seed: int) -> dict:
    """What a set calibrated on the store's simulated constants is computed from."""
    return {"catalog_hash": store.snapshot_hash(), "features_version": features_version,
            "null": null_lineage(store, n_null, seed)}


CALIBRATED = {"poisson_variability": POISSON_FEATURES_VERSION, "morphology": MORPHOLOGY_VERSION}


def classical_current(store, min_points: int = MIN_POINTS, n_null: int | None = None, seed: int = 0) -> list[dict] | None:
    """The metadata of ``variability``, ``poisson_variability`` and ``morphology`` when all three are current, else None.

    As cheap as reading their ``meta.json`` files: a flow asks before it starts the work.
    """
    store = as_store(store)
    if len(store) == 0:
        return None
    found = [find_version(store, "variability", variability_lineage(store, min_points))]
    found += [find_version(store, name, calibrated_lineage(store, version, n_null, seed)) for name, version in CALIBRATED.items()]
    return found if all(found) else None


def require_sources(store) -> None:
    """Raise :class:`BuildError` for a store without any ok source (nothing to build sets of)."""
    if len(store) == 0:
        raise BuildError(f"{store.url}: no ok sources (an empty store, or every file rejected: see the catalog's "
                         "'reason' column); nothing to build feature sets of")


def null_size(store) -> int:
    """Default number of null sources: ten per ok source, between 4,000 and :data:`N_NULL`."""
    return int(np.clip(10 * len(store), 4_000, N_NULL))


def null_lineage(store, n_null: int | None, seed: int) -> dict:
    """What a calibration against simulated constants depends on (part of the sets' lineage).

    Raises
    ------
    BuildError
        When the store has no ok source to simulate constants on, or ``n_null`` is too small.
    """
    require_sources(store)
    n = null_size(store) if n_null is None else int(n_null)
    if n < 2 * MIN_CELL:
        raise BuildError(f"n_null={n}: calibration needs at least {2 * MIN_CELL} null sources")
    return {"n": n, "seed": int(seed), "model": NULL_MODEL_VERSION, "calibration": CALIBRATION_VERSION}


def null_store(store, null: dict, progress: bool = False):
    """The store's null store for calibration ``null`` (:func:`null_lineage`), built on first use."""
    simulation = {k: null[k] for k in ("n", "seed", "model")}  # the tabulation does not change the simulations
    key = xxhash.xxh3_64_hexdigest(json.dumps([store.snapshot_hash(), simulation], sort_keys=True).encode())
    with build_lock(store):
        return build_null_store(store, key, null["n"], null["seed"], progress=progress)


def uncalibrated(store, name: str, version: int, compute, runner: PartRunner) -> pl.DataFrame:
    """A set's uncalibrated columns of a (null) store, kept as its own feature set there (computed once)."""
    lineage = {"catalog_hash": store.snapshot_hash(), "features_version": version, "calibrated": False}
    with build_lock(store):
        meta = find_version(store, name, lineage)
        if meta is None:
            frame, parts = runner.run(store, name, parts_key(**lineage), compute)
            meta, _ = write_feature_set(store, name, frame, lineage)
            parts.discard()
    return get_feature_set(store, f"{name}@{meta['version']}")[1].collect()  # rows by source_id


def uncalibrated_poisson(store, runner: PartRunner | None = None) -> pl.DataFrame:
    """``poisson_variability``'s uncalibrated columns of a (null) store (:func:`uncalibrated`)."""
    return uncalibrated(store, "poisson_variability", POISSON_FEATURES_VERSION, poisson_part, _runner(runner, False))


def build_poisson_variability(store, progress: bool = False, n_null: int | None = None, seed: int = 0,
                              runner: PartRunner | None = None) -> tuple[dict, bool]:
    """Build the calibrated ``poisson_variability`` set, or reuse the version of this catalog, code and null.

    Parameters
    ----------
    n_null : int, optional
        Simulated constant sources to calibrate on (default :func:`null_size`).
    seed : int
        Seed of the simulation.
    runner : PartRunner, optional
        Where the parts run (default: threads of this process).
    """
    runner = _runner(runner, progress)

    def make(store, null: dict, lineage: dict) -> tuple[pl.DataFrame, list]:
        null_frame = uncalibrated_poisson(null_store(store, null, runner.progress), runner)
        frame, parts = runner.run(store, "poisson_variability", parts_key(**lineage), poisson_part)
        return calibrate(frame, null_frame, len(store.e_min)), [parts]

    return build_calibrated(store, "poisson_variability", POISSON_FEATURES_VERSION, n_null, seed, make)


def build_morphology(store, progress: bool = False, n_null: int | None = None, seed: int = 0,
                     runner: PartRunner | None = None) -> tuple[dict, bool]:
    """Build the calibrated ``morphology`` set (:mod:`features.morphology`), or reuse the version of this catalog, code and null."""
    runner = _runner(runner, progress)

    def make(store, null: dict, lineage: dict) -> tuple[pl.DataFrame, list]:
        poisson, _ = build_poisson_variability(store, n_null=n_null, seed=seed, runner=runner)  # its net counts
        constants = null_store(store, null, runner.progress)
        null_frame = uncalibrated(constants, "morphology", MORPHOLOGY_VERSION, morphology_part, runner)
        frame, parts = runner.run(store, "morphology", parts_key(**lineage), morphology_part)
        net = total_net_counts(get_feature_set(store, f"poisson_variability@{poisson['version']}")[1]
                               .select("source_id", pl.col("^net_counts_b\\d+$")).collect())
        null_net = total_net_counts(uncalibrated_poisson(constants, runner))
        return calibrate_morphology(frame, null_frame, net, null_net, len(store.e_min)), [parts]

    return build_calibrated(store, "morphology", MORPHOLOGY_VERSION, n_null, seed, make)


def build_calibrated(store, name: str, features_version: int, n_null: int | None, seed: int, make) -> tuple[dict, bool]:
    """Build a set calibrated on the store's simulated constants, or reuse the version of this catalog, code and null.

    ``make(store, null_lineage, lineage) -> (DataFrame, part runs)`` computes the set; it runs
    under the store's feature-build lock and only when no version has this lineage. The part runs
    are discarded once the set is written.
    """
    store = as_store(store)
    lineage = calibrated_lineage(store, features_version, n_null, seed)
    null = lineage["null"]
    with build_lock(store):
        existing = find_version(store, name, lineage)
        if existing is not None:
            return existing, False
        frame, parts = make(store, null, lineage)
        result = write_feature_set(store, name, frame, lineage)
        for run in parts:
            run.discard()
        return result


def build_classical(store, min_points: int = MIN_POINTS, n_null: int | None = None, seed: int = 0,
                    runner: PartRunner | None = None, progress: bool = False) -> list[tuple[dict, bool]]:
    """``variability``, ``poisson_variability`` and ``morphology``, each built or reused (:class:`BuildError`
    before anything is written when the store has no ok source)."""
    store = as_store(store)
    require_sources(store)
    runner = _runner(runner, progress)
    return [build_variability(store, min_points, runner=runner),
            build_poisson_variability(store, n_null=n_null, seed=seed, runner=runner),
            build_morphology(store, n_null=n_null, seed=seed, runner=runner)]


def total_net_counts(frame: pl.DataFrame) -> pl.DataFrame:
    """source_id and the net counts summed over bands, from ``poisson_variability`` columns."""
    return frame.select("source_id", pl.sum_horizontal(pl.col("^net_counts_b\\d+$").fill_null(0.0)).alias("net_counts"))
