"""The ``survey`` flow: a whole eRASS light-curve archive to a ranked, explorable catalogue, resumable.

    python -m flows.survey ARCHIVE --store STORE [--train-sample 100000] [--reference REF] [--workers 2]
                           [--task-runner threads|dask] [--dask-address tcp://HOST:8786] [--epochs N]
    prefect deployment run survey/survey --param archive=ARCHIVE --param store=STORE

One flow chains what the project already does, each step a Prefect task over one plain function:

1. **ingest** the archive (one bin per survey scan for 10 s files: ``bin="auto"`` takes the
   store's binning, ``eroday`` for a new store);
2. **features**: ``variability``, ``poisson_variability`` and ``morphology``, calibrated on the
   store's simulated constant sources;
3. **train** the discovery model (``configs/discovery.toml``) on a sample of ``train_sample``
   sources drawn with a fixed seed (the whole store when it is smaller), copied into a store of
   its own beside the model (``STORE/models/discovery-*/sample.zarr``: the record of what it saw);
4. **model sets** for every source: ``vae_latent``, ``vae_anomaly`` and ``discovery``;
5. **hats**: the catalogue and its sets as a HATS catalogue for LSDB (``STORE/hats``);
6. **crossmatch** against ``reference``, when one is given (``xmatch_<name>``).

A step whose output is current is skipped: ingest finds unchanged files by size and time, the
feature and model sets by their lineage (the store's snapshot, the code, the checkpoint), the
model by its finished run, the export by its manifest; so a rerun with nothing new costs seconds,
and a rerun after a kill or a failure continues where it stopped (ingest commits as it goes, the
sets keep their finished parts, training resumes from its last checkpoint).

Every step's wall and CPU time, peak memory of the process tree and bytes read and written go to
``STORE/survey.json`` (rewritten after each step) and to a Prefect artifact; progress lines with
an ETA go to the run's log (and bars to a terminal). ``task_runner="dask"`` runs the ingest's
parsing, the feature parts and the scoring parts on a Dask cluster (``dask_address``, or a
temporary LocalCluster of ``workers`` processes); the flow's process stays the one writer.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import gc
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from common.extras import check_installed

# Before Prefect is imported: run as a command, a missing extra is one line and exit 2.
check_installed("python -m flows.survey", "prefect", "torch", "h5py", "lsdb", exit_now=__name__ == "__main__")

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from common import cli  # noqa: E402
from common.errors import UserError, out_of_space  # noqa: E402
from common.lifeline import call_in_child  # noqa: E402
from common.location import is_url, resolve  # noqa: E402
from common.meter import disk_use  # noqa: E402
from common.progress import forward_to  # noqa: E402
from common.runlog import RunLog, Step  # noqa: E402
from etl.ingest import check_options  # noqa: E402
from etl.store import open_store  # noqa: E402
from flows.ingest import prefect_batch_runner  # noqa: E402
from flows.runners import RunnerKind, make_task_runner, part_runner  # noqa: E402
from flows.serve import api_for_command, user_errors_in_one_line  # noqa: E402

#: Where the survey keeps what it makes inside the store.
RECORD = "survey.json"
MODELS = "models"
HATS = "hats"
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "discovery.toml"
#: Training options the survey sets whatever the config says (no test-split evaluation: every source is scored next).
SURVEY_TRAINING = {"evaluate": False, "progress": False}
#: Feature sets the HATS export joins (those that exist), and the columns it keeps of them and the catalog:
#: position, brightness and the calibrated scores (``features.export_hats`` exports any others).
HATS_SETS = ("poisson_variability", "morphology", "vae_anomaly", "discovery")
HATS_COLUMNS = ["object", "iau_name", "pos_err_arcsec", "n_points", "mjd_start", "mjd_stop", "mean_rate_b\\d+", "net_counts_b\\d+",
                "variable_fpp", "variable_3sigma", "(ampl_sig|nev|bexvar)_fpp", "lbo_fpp_b\\d+", "anomaly_score", "anomaly_fpp",
                "vae_variable_3sigma", "discovery_score", "discovery_score_classical", "surprise_fpp_b\\d+", "xmatch_.*"]


class SurveyError(UserError):
    """A survey run cannot start or go on (a missing archive or config, a store of another binning, a full disk)."""


def store_binning(store: str, requested: str) -> str:
    """The binning to ingest with: ``auto`` is the store's own, or ``eroday`` for a new store."""
    if requested != "auto":
        return requested
    if not is_url(store) and (Path(store) / "zarr.json").is_file():
        attrs = json.loads((Path(store) / "zarr.json").read_text()).get("attributes", {})
        return attrs.get("binning", "none")
    return "eroday"


def training_values(store: str, config: str | None, train_sample: int, epochs: int | None, seed: int) -> dict:
    """The discovery model's training config for this survey, and its run directory (keyed by the config)."""
    import xxhash

    from training.config import read_toml

    path = Path(config) if config else DEFAULT_CONFIG
    if not path.is_file():
        raise SurveyError(f"training config {path} does not exist (pass --config)")
    values = read_toml(path) | SURVEY_TRAINING | {"store": store, "limit": int(train_sample), "seed": int(seed)}
    if epochs is not None:
        values["epochs"] = int(epochs)
    key = xxhash.xxh3_64_hexdigest(json.dumps({k: v for k, v in values.items() if k != "store"}, sort_keys=True,
                                              default=str).encode())
    values["run_dir"] = str(Path(store) / MODELS / f"discovery-{key[:10]}")
    return values


def checked(store: str, check: Callable) -> tuple[int, object]:
    """The store's ok sources and ``check(opened store)``, with the opened store dropped at once.

    A step decides here whether it has work, then leaves the work to a child process: the catalog
    an opened store holds (about 1 GB at 930,000 sources) must not stay in this process beside it.
    """
    opened = open_store(store)
    try:
        return len(opened), check(opened)
    finally:
        del opened
        gc.collect()  # the store's reference cycles too: its memory goes back before the child starts


def no_space(exc: BaseException, store: str, where: str) -> None:
    """Raise :class:`SurveyError` in place of ``exc`` when it is a file system out of space (else return).

    Every step commits by renames (store batches, set versions, parts, checkpoints, the HATS
    swap), so a refused write loses nothing that was committed: the message says so, and how to
    go on.
    """
    if isinstance(exc, UserError) or not out_of_space(exc):
        return  # a user error says already what to do (the ingest's full disk does)
    raise SurveyError(f"{store}: {os.strerror(errno.ENOSPC)} {where} ({type(exc).__name__}: {exc}); nothing committed "
                      "was lost: free space and run the same command again to continue") from exc


@contextlib.contextmanager
def step_of(log: RunLog, name: str, store: str) -> Iterator[Step]:
    """:meth:`RunLog.step`, with a full disk raised as :class:`SurveyError` inside the step's task
    (so Prefect logs it as one line, not as a task's traceback)."""
    try:
        with log.step(name) as step:
            yield step
    except Exception as exc:
        no_space(exc, store, f"in step {name}")
        raise


@task(name="survey-ingest", cache_policy=NO_CACHE)
def ingest_step(log: RunLog, archive: str, store: str, binning: str, task_runner: str, workers: int,
                dask_address: str | None, rehash: bool, progress: bool) -> dict:
    """Ingest new and changed files (:func:`etl.ingest.ingest`): parsing in processes, or on Dask."""
    from etl.ingest import ingest

    with step_of(log, "ingest", store) as step:
        if task_runner == "dask":
            with make_task_runner("dask", workers, dask_address) as runner:
                summary = ingest(archive, store, binning=binning, progress=progress, rehash=rehash,
                                 batch_runner=prefect_batch_runner(runner, in_flight=2 * workers))
        else:  # parsing in worker processes, the store's side in a child: its memory goes back when it ends
            summary = call_in_child(ingest, archive, store, workers=workers, binning=binning, progress=progress, rehash=rehash)
        step.did_work = summary.ingested + summary.rejected > 0
        step.detail.update(discovered=summary.discovered, ingested=summary.ingested, unchanged=summary.unchanged,
                           rejected=summary.rejected, points=summary.points)
    get_run_logger().info(summary.line())
    return step.detail


def built_in_parts(build: Callable, store: str, task_runner: str, workers: int, dask_address: str | None, progress: bool,
                   jobs: int, **options) -> list[tuple[dict, bool]]:
    """``build(store, runner=..., progress=..., **options)``: its parts on Dask's workers (the build in this
    process, the one writer), or on ``jobs`` threads of a child process whose memory goes back when it ends."""
    from features.builders import PartRunner

    if task_runner == "dask":
        with make_task_runner(task_runner, workers, dask_address) as runner:
            return build(open_store(store), runner=part_runner(runner, task_runner, workers, progress=progress),
                         progress=progress, **options)
    return call_in_child(build, store, runner=PartRunner(jobs=jobs, progress=progress), progress=progress, **options)


def _built(step, results: list[tuple[dict, bool]]) -> None:
    step.did_work = any(created for _, created in results)
    step.detail["sets"] = {m["name"]: {"version": m["version"], "rows": m["rows"], "built": c} for m, c in results}


@task(name="survey-features", cache_policy=NO_CACHE)
def features_step(log: RunLog, store: str, n_null: int | None, seed: int, task_runner: str, workers: int,
                  dask_address: str | None, progress: bool) -> None:
    """The calibrated classical sets (:func:`features.builders.build_classical`): parts on Dask's workers, or on
    ``workers`` threads of a child process (whose memory goes back when it ends)."""
    from features.builders import build_classical, classical_current

    with step_of(log, "features", store) as step:
        step.detail["sources"], current = checked(store, functools.partial(classical_current, n_null=n_null, seed=seed))
        if current:  # nothing to compute: no child process, no cluster
            _built(step, [(meta, False) for meta in current])
            return
        _built(step, built_in_parts(build_classical, store, task_runner, workers, dask_address, progress, jobs=workers,
                                    n_null=n_null, seed=seed))


@task(name="survey-train", cache_policy=NO_CACHE)
def train_step(log: RunLog, store: str, values: dict, train_sample: int, seed: int, progress: bool) -> str:
    """Train the discovery model on the seeded sample, resume it, or find it done (:func:`training.fit.fit_once`).

    The sample is copied into its own store beside the model (``sample.zarr``, built once): its
    light curves back to back, so an epoch reads a compact store whatever the archive's size, and
    the sample the model saw stays on record.
    """
    from etl.subset import build_sample
    from training.config import config_from_values
    from training.lineage import finished_run

    with step_of(log, "train", store) as step:
        sample = str(Path(values["run_dir"]) / "sample.zarr")
        epochs = config_from_values(values).epochs
        done = finished_run(values["run_dir"], epochs)
        if done:  # a finished run of this config: no torch, no child process
            step.did_work = False
            step.detail.update(run_dir=values["run_dir"], checkpoint=done, sample=sample, seed=seed, epochs=epochs, epochs_now=0)
            return done
        from training.fit import fit_once

        # each in a child process: the memory that reading the store and training take goes back when it ends
        picked, built = call_in_child(build_sample, store, train_sample, seed, sample, progress=progress)
        cfg = config_from_values(values | {"store": sample, "limit": 0}).validate()
        checkpoint, trained, info = call_in_child(fit_once, cfg)
        step.did_work = trained or built
        step.detail.update(run_dir=cfg.run_dir, checkpoint=checkpoint, sample=sample, sample_sources=picked, seed=seed, **info)
    return checkpoint


@task(name="survey-model-sets", cache_policy=NO_CACHE)
def model_sets_step(log: RunLog, store: str, checkpoint: str, n_null: int | None, seed: int, task_runner: str,
                    workers: int, dask_address: str | None, progress: bool) -> None:
    """Every source scored by the model (:func:`training.score.build_model_features`): parts on Dask's workers, or
    in a child process (one part at a time on torch's threads)."""
    from training.lineage import model_sets_current

    with step_of(log, "model_sets", store) as step:
        _, current = checked(store, lambda opened: model_sets_current(opened, checkpoint, n_null, seed))  # without torch
        if current:
            _built(step, [(meta, False) for meta in current])
            return
        from training.score import build_model_features  # torch: only when there is scoring to do

        _built(step, built_in_parts(functools.partial(build_model_features, checkpoint=checkpoint), store, task_runner,
                                    workers, dask_address, progress, jobs=1, n_null=n_null, seed=seed))


@task(name="survey-crossmatch", cache_policy=NO_CACHE)
def crossmatch_step(log: RunLog, store: str, reference: str, radius: float) -> None:
    """``xmatch_reference`` (:func:`features.crossmatch.crossmatch`)."""
    from features.crossmatch import crossmatch

    with step_of(log, "crossmatch", store) as step:
        meta, created = crossmatch(store, reference, radius, "reference")
        step.did_work = created
        step.detail.update(set=f"{meta['name']}@{meta['version']}", **meta.get("metrics", {}))


@task(name="survey-hats", cache_policy=NO_CACHE)
def hats_step(log: RunLog, store: str, out: str, progress: bool) -> None:
    """The HATS catalogue of the store and its sets (:func:`features.export_hats.export_hats`, updated in place)."""
    from features.export_hats import ExportResult, export_current, export_hats
    from features.featurestore import list_feature_sets

    def current(opened) -> tuple[list[str], int | None]:
        present = set(list_feature_sets(opened)["name"].to_list())
        sets = [name for name in HATS_SETS if name in present] + sorted(n for n in present if n.startswith("xmatch_"))
        return sets, export_current(opened, out, sets, columns=HATS_COLUMNS)

    with step_of(log, "hats", store) as step:
        _, (sets, sources) = checked(store, current)
        if sources is not None:
            result = ExportResult(sources, False)
        else:  # in a child: lsdb holds a few copies of the table while it partitions it
            result = call_in_child(export_hats, store, out, sets, lightcurves=False, update=True, progress=progress,
                                   columns=HATS_COLUMNS)
        step.did_work = result.written
        step.detail.update(out=out, sources=result.sources, feature_sets=sets, bytes=disk_use(out))


@flow(name="survey", log_prints=True)
def survey(archive: str, store: str, train_sample: int = 100_000, reference: str | None = None, bin: str = "auto",
           config: str | None = None, epochs: int | None = None, task_runner: RunnerKind = "threads", workers: int = 2,
           dask_address: str | None = None, n_null: int | None = None, seed: int = 0, radius: float = 15.0,
           hats: str | None = None, rehash: bool = False, progress: bool = False) -> dict:
    """A whole eRASS light-curve archive to a ranked, explorable catalogue (module docstring).

    Parameters
    ----------
    archive : str
        Folder of light-curve files (any depth: the release's tile folders).
    store : str
        Store folder (created when missing); the survey's record, models and HATS export live in it.
    train_sample : int
        Sources the discovery model trains on (a seeded sample; the whole store when smaller).
    reference : str, optional
        A reference catalogue to cross-match (Parquet/FITS/CSV table or HATS catalog).
    bin : {"auto", "eroday", "none"}
        Binning of a new store (``auto``: the store's own, else one bin per survey scan).
    config : str, optional
        Training config (default ``configs/discovery.toml``); ``epochs`` overrides its epochs.
    task_runner, workers, dask_address
        ``threads`` (parsing in ``workers`` processes, parts on ``workers`` threads) or ``dask``
        (a scheduler's address, or a LocalCluster of ``workers`` processes).
    n_null, seed
        Simulated constant sources of the calibration (default: 10 per source, 4,000 to 50,000) and
        the seed of the simulation and of the training sample.
    radius : float
        Cross-match radius (arcsec).
    hats : str, optional
        Where the HATS catalogue goes (default ``STORE/hats``).
    rehash : bool
        Read and hash every archive file, also those whose size and time did not change.
    progress : bool
        Draw progress bars on the terminal (``python -m flows.survey`` does when it has one).

    Returns
    -------
    dict
        The run's record, as written to ``STORE/survey.json``.
    """
    logger = get_run_logger()
    store = resolve(store)
    archive = resolve(archive)
    check_options(workers=workers)
    if task_runner not in ("threads", "dask"):
        raise SurveyError(f"task_runner must be 'threads' or 'dask', not {task_runner!r}")
    if isinstance(train_sample, bool) or not isinstance(train_sample, int) or train_sample < 1:
        raise SurveyError(f"train_sample must be a whole number >= 1, not {train_sample!r}")
    if is_url(store):
        raise SurveyError(f"{store}: the survey keeps its models and record beside the store: give a local folder "
                          "(the steps run on object storage one by one: etl.ingest, features.build, ...)")
    if not os.path.isdir(archive):
        raise SurveyError(f"archive {archive} does not exist or is not a folder")
    binning = store_binning(store, bin)
    values = training_values(store, config, train_sample, epochs, seed)  # a bad config fails before any work
    log = None
    try:
        log = RunLog(Path(store) / RECORD, {"archive": archive, "store": store, "train_sample": train_sample,
                                            "task_runner": task_runner, "workers": workers, "binning": binning})
        with forward_to(logger):
            ingest_step(log, archive, store, binning, task_runner, workers, dask_address, rehash, progress)
            features_step(log, store, n_null, seed, task_runner, workers, dask_address, progress)
            checkpoint = train_step(log, store, values, train_sample, seed, progress)
            model_sets_step(log, store, checkpoint, n_null, seed, task_runner, workers, dask_address, progress)
            if reference:
                crossmatch_step(log, store, reference, radius)
            else:
                log.skip("crossmatch", "no reference catalogue given")
            hats_step(log, store, hats or str(Path(store) / HATS), progress)
        record = log.finish(store_bytes=disk_use(store), archive_bytes=disk_use(archive))
    except Exception as exc:
        no_space(exc, store, "writing the run's record")
        raise
    create_markdown_artifact(log.markdown(f"survey of {archive}"), key="survey", description=f"survey into {store}")
    logger.info("done: python -m explorer --store %s", store)
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flows.survey",
                                description="A whole eRASS light-curve archive to a ranked, explorable catalogue (resumable).")
    p.add_argument("archive", help="folder of light-curve FITS files (searched recursively)")
    p.add_argument("--store", required=True, help="store folder (created when missing)")
    p.add_argument("--train-sample", type=int, default=100_000, help="sources the discovery model trains on (default 100,000)")
    p.add_argument("--reference", default=None, help="reference catalogue to cross-match (table or HATS catalog)")
    p.add_argument("--radius", type=float, default=15.0, help="cross-match radius in arcsec (default 15)")
    p.add_argument("--bin", default="auto", choices=("auto", "eroday", "none"),
                   help="binning of a new store (auto: the store's own, else eroday: one bin per survey scan)")
    p.add_argument("--config", default=None, help="training config (default configs/discovery.toml)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the config's)")
    p.add_argument("--task-runner", default="threads", choices=("threads", "dask"),
                   help="threads (this machine; default) or dask (a cluster: --dask-address, else a LocalCluster)")
    p.add_argument("--workers", type=int, default=2, help="parse processes and part threads, or LocalCluster workers (default 2)")
    p.add_argument("--dask-address", default=None, help="tcp://HOST:8786 of a running Dask scheduler")
    p.add_argument("--null-sources", type=int, default=None, help="simulated constant sources (default: 10 per source, 4,000-50,000)")
    p.add_argument("--hats", default=None, help="HATS export folder (default STORE/hats)")
    p.add_argument("--rehash", action="store_true", help="read and hash every file, also unchanged ones")
    p.add_argument("--seed", type=int, default=0, help="seed of the training sample and of the simulated constants")
    args = p.parse_args(argv)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with api_for_command() as api_url, temporary_settings({PREFECT_API_URL: api_url} if api_url else {}), \
            user_errors_in_one_line():
        record = survey(archive=args.archive, store=args.store, train_sample=args.train_sample, reference=args.reference,
                        bin=args.bin, config=args.config, epochs=args.epochs, task_runner=args.task_runner,
                        workers=args.workers, dask_address=args.dask_address, n_null=args.null_sources, seed=args.seed,
                        radius=args.radius, hats=args.hats, rehash=args.rehash, progress=sys.stderr.isatty())
    t = record["totals"]
    worked = [s["step"] for s in record["steps"] if s["status"] == "done"]
    print(f"survey done in {t['wall_s']:.0f} s (CPU {t['cpu_s']:.0f} s, peak memory {t['peak_rss_bytes'] / 2**30:.2f} GiB; "
          f"{'steps that worked: ' + ', '.join(worked) if worked else 'everything was current'}); record: "
          f"{Path(args.store) / RECORD}")
    print(f"next: python -m explorer --store {args.store}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
