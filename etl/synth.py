"""Generate realistic synthetic eRASS1-like light-curve archives with labelled variability.

    python -m etl.synth OUT_DIR --n 1000 --seed 1 [--flavour rebinned|srctool|dr1|mixed] [--rare 0.01]
                                [--variant K] [--bad K] [--gzip] [--brightness erass1|uniform]

Each source gets a sky position; its number of erodays (4-h survey revolutions that see it)
grows towards the ecliptic poles as on the real survey (most sources 4-12, a tail to hundreds).
How the survey observes it (scans, exposure, Poisson counts, each flavour's columns) is
:mod:`etl.observation`; its variability class and profile is :mod:`etl.morphology`: the common
classes ``constant``, ``flare``, ``dip``, ``red_noise`` and, with ``--rare F``, a fraction F of
rare morphologies in equal shares (``qpe``, ``eclipse``, ``absorption``, ``step``), drawn with the
same brightness and length distributions as everything else (so many of them are undetectable,
as in a real survey). ``--variant K`` draws the generator's own knobs (every morphology range,
the common classes' shares, the log N - log S slope, the background level) from a seeded
perturbation of the defaults: another generator, for checking that a method is not tuned to one.

``truth.parquet`` in OUT_DIR lists every file with its class, ``rare``, the drawn parameters
(``amplitude``, ``tau``, ``t0``, ``n_affected``, class-specific extras as JSON in ``params``), the
id ingest gives it (or, for ``--bad``, the reason code ingest must give it) and whether it is
``known``: ``reference.parquet`` is a catalogue of counterparts of 30 % of the sources at realistic
position offsets plus unrelated field objects (:func:`write_reference`), for cross-match demos and
tests. ``generator.json`` records the generator's settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip as gzip_module
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from astropy import units as u
from astropy.coordinates import SkyCoord

from common import cli
from common.progress import bar as progress_bar
from etl.fitswriter import bintable_fits_bytes
from etl.morphology import COMMON_CLASSES, RARE_CLASSES, MorphologyRanges
from etl.naming import iau_name, source_id_of
from etl.observation import (  # noqa: F401 - ERASS1_RATE_MIN, draw_mean_rate: part of this module's API
    ERASS1_BANDS,
    ERASS1_RATE_MIN,
    MJDREF,
    draw_mean_rate,
    draw_n_erodays,
    ecliptic_latitude,
    simulate_source,
)
from etl.sky import sky_tile

FLAVOURS = ("rebinned", "srctool", "dr1", "mixed")
#: Fraction of sources with a counterpart in the synthetic reference catalogue, and its position
#: error per axis (arcsec).
KNOWN_FRACTION = 0.3
POSITION_ERROR_ARCSEC = 2.5  # per axis, for truth tables without pos_err
#: Synthetic POS_ERR (radial 1 sigma, arcsec): a PSF-fit term falling as 1/sqrt(net counts) and a
#: systematic floor; 10 counts give 3.9", 100 counts 1.6", near eRASS1's (Merloni et al. 2024).
POS_ERR_PSF_ARCSEC = 12.0
POS_ERR_FLOOR_ARCSEC = 1.0
BAD_KINDS = (
    "not_fits",
    "empty_file",
    "unreadable",
    "corrupt_gzip",
    "no_rate_extension",
    "missing_columns",
    "single_band",
    "all_nan_rates",
    "no_rows",
    "bad_timedel",
    "unsorted_time",
    "duplicate_source",
)
_UNITS = {
    "TIME": "s", "TIMEDEL": "s", "COUNTS": "count", "RATE": "ct/s", "RATE_ERR": "ct/s",
    "RATE_ERRM": "ct/s", "RATE_ERRP": "ct/s", "BACK_COUNTS": "count", "FRACEXP": "ratio",
    "RATE_ESTPOSERR": "ct/s", "RATE_ESTNEGERR": "ct/s", "FRACFLATAREA": "ratio", "FRACFLATEXP": "ratio",
    "BACKSCAL_SRC": "deg**2", "BACKSCAL_BACK": "deg**2",
    "FRACAREA": "ratio", "FRACTIME": "ratio", "OFFAXIS": "deg", "BACKRATIO": "ratio",
}


def position_error(net_counts: float) -> float:
    """Radial 1-sigma position error (arcsec) of a source with ``net_counts`` counts (POS_ERR)."""
    return float(np.hypot(POS_ERR_FLOOR_ARCSEC, POS_ERR_PSF_ARCSEC / np.sqrt(max(net_counts, 1.0))))


def lightcurve_header(source_id: str, ra: float, dec: float, cols: dict, bands=ERASS1_BANDS,
                      pos_err: float | None = None) -> list:
    """OGIP light-curve header cards (position and its error, band edges, time reference)."""
    cards = [
        ("HDUCLASS", "OGIP", ""), ("HDUCLAS1", "LIGHTCURVE", ""), ("HDUCLAS2", "TOTAL", ""),
        ("TELESCOP", "eROSITA", ""), ("INSTRUME", "MERGED", ""), ("OBS_MODE", "SURVEY", ""),
        ("CREATOR", "etl.synth", "synthetic eRASS1-like light curve"),
        ("OBJECT", source_id, ""), ("RA_OBJ", float(ra), "[deg]"), ("DEC_OBJ", float(dec), "[deg]"),
        ("MJDREF", MJDREF, "[d]"), ("TIMESYS", "TT", ""), ("TIMEUNIT", "s", ""),
    ]
    if pos_err is not None:
        cards.append(("POS_ERR", round(float(pos_err), 3), "[arcsec] 1-sigma position error (radial)"))
    if len(cols["TIME"]):
        cards += [("TSTART", float(cols["TIME"][0]), ""), ("TSTOP", float(cols["TIME"][-1] + cols["TIMEDEL"][-1]), "")]
    for i, (lo, hi) in enumerate(bands, start=1):
        cards += [(f"E_MIN{i}", float(lo), "[keV]"), (f"E_MAX{i}", float(hi), "[keV]")]
    return cards


def file_name(flavour: str, tile: int, number: int, gzip: bool) -> str:
    """eRASS1 naming: ``em01_TTTTTT_020_LightCurve_NNNNN_c010[_rebinned].fits[.gz]``."""
    stem = f"em01_{tile:06d}_020_LightCurve_{number:05d}_c010"
    if flavour == "rebinned":
        stem += "_rebinned"
    return stem + ".fits" + (".gz" if gzip else "")


@dataclass(frozen=True)
class Generator:
    """The synthetic generator's knobs: morphology ranges, log N - log S slope, background scale."""

    ranges: MorphologyRanges = MorphologyRanges()
    slope: float = 1.5
    background: float = 1.0

    @classmethod
    def variant(cls, k: int) -> "Generator":
        """Generator ``k``: 0 is the default; others perturb every knob (seeded by ``k``)."""
        if k == 0:
            return cls()
        rng = np.random.default_rng([k, 78])
        return cls(MorphologyRanges().variant(k), float(1.5 * np.exp(rng.uniform(-0.12, 0.12))),
                   float(np.exp(rng.uniform(-0.5, 0.5))))

    def to_dict(self) -> dict:
        return {"ranges": dataclasses.asdict(self.ranges), "slope": self.slope, "background": self.background}


def make_archive(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    flavour: str = "rebinned",
    bad: int = 0,
    gzip: bool = False,
    progress: bool = True,
    brightness: str = "erass1",
    rare: float = 0.0,
    variant: int = 0,
    layout: str = "flat",
    workers: int = 1,
) -> pl.DataFrame:
    """Write ``n`` good and ``bad`` malformed light-curve files; return (and save) the truth table.

    Parameters
    ----------
    out_dir : path
        Created if missing.
    n : int
        Good sources.
    seed : int
        Everything is determined by it (and ``variant``): each source draws from its own random
        stream, so the archive is the same whatever ``workers``.
    flavour : {"rebinned", "srctool", "dr1", "mixed"}
        ``mixed`` draws rebinned or srctool per source; ``dr1`` writes the public release's shape
        (OBJECT is the source's running number in its sky tile).
    bad : int
        Malformed files, cycling through :data:`BAD_KINDS`.
    gzip : bool
        Write ``.fits.gz``.
    brightness : {"erass1", "uniform"}
        Mean-rate distribution (:func:`etl.observation.draw_mean_rate`).
    rare : float
        Fraction of sources with a rare morphology (:data:`etl.morphology.RARE_CLASSES`, equal shares).
    variant : int
        The generator (:meth:`Generator.variant`): 0 the default.
    layout : {"flat", "tiles"}
        ``tiles``: one folder per eRASS sky tile, ``RRR/DDD/`` as the data release groups its
        products (:func:`etl.sky.sky_tile`); ``flat``: every file in ``out_dir``.
    workers : int
        Processes writing files (spawned; the truth table does not depend on it).
    """
    if flavour not in FLAVOURS:
        raise ValueError(f"flavour must be one of {', '.join(FLAVOURS)}, not {flavour!r}")
    if not 0.0 <= rare <= 1.0:
        raise ValueError(f"rare must be a fraction in [0, 1], not {rare!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    gen = Generator.variant(variant)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    n_erodays = draw_n_erodays(rng, ecliptic_latitude(ra, dec))
    classes = np.array(COMMON_CLASSES, dtype=object)[rng.choice(len(COMMON_CLASSES), size=n, p=gen.ranges.common_weights)]
    flavours = rng.choice(["rebinned", "srctool"], size=n) if flavour == "mixed" else np.full(n, flavour)
    if rare > 0:  # their own stream: an archive without rare sources is unchanged by this option
        pick = np.random.default_rng([seed, 3])
        chosen = pick.choice(n, size=int(round(rare * n)), replace=False)
        classes[chosen] = np.resize(np.array(RARE_CLASSES, dtype=object), len(chosen))[pick.permutation(len(chosen))]
    sources = _plan_sources(ra, dec, n_erodays, classes, flavours, gzip, layout)
    job = _Job(str(out), seed, brightness, gen, gzip)
    chunks = [(lo, min(lo + _CHUNK, n)) for lo in range(0, n, _CHUNK)]
    bar = progress_bar(n, "synth", "file", show=progress)
    parts = []
    for part in _run_chunks(job, sources, chunks, workers):
        parts.append(part)
        bar.update(part.height)
    bar.close()
    good = pl.concat(parts, how="diagonal_relaxed") if parts else pl.DataFrame()
    rows = good.head(bad).rows(named=True) if bad else []
    bad_rows = [_write_bad(out, BAD_KINDS[j % len(BAD_KINDS)], j, rng, rows, gzip) for j in range(bad)]
    truth = pl.concat([good, pl.DataFrame(bad_rows)], how="diagonal_relaxed") if bad_rows else good
    if truth.height == 0:
        truth = pl.DataFrame(schema={"file": pl.String, "source_id": pl.String, "expected": pl.String})
    truth = write_reference(out, truth, np.random.default_rng([seed, 1]))  # its own stream: the archive is unchanged
    truth.write_parquet(out / "truth.parquet")
    (out / "generator.json").write_text(json.dumps({"seed": seed, "n": n, "flavour": flavour, "rare": rare,
                                                    "variant": variant, "brightness": brightness, "layout": layout,
                                                    **gen.to_dict()}, indent=1))
    return truth


#: How files are laid out: all in one folder, or one folder per eRASS sky tile (RRR/DDD/).
LAYOUTS = ("flat", "tiles")
#: Sources per unit of work of a writer process.
_CHUNK = 2_000


@dataclass(frozen=True)
class _Job:
    """What every writer process needs besides its sources (picklable for spawned workers)."""

    out: str
    seed: int
    brightness: str
    gen: Generator
    gzip: bool


def _plan_sources(ra, dec, n_erodays, classes, flavours, gzip: bool, layout: str) -> pl.DataFrame:
    """Every source's position, class, file name and OBJECT, decided before any file is written.

    File numbers count sources within their sky tile in the order drawn (as eSASS numbers a
    tile's sources), so the names do not depend on which process writes which file.
    """
    n = len(ra)
    tiles = sky_tile(ra, dec)
    frame = pl.DataFrame({"tile": tiles}).with_row_index("i")
    number = frame.select((pl.col("i").cum_count().over("tile"))).to_series().to_numpy().astype(np.int64)
    if number.size and number.min() == 0:  # cum_count counts from 0 or 1 depending on the Polars version
        number = number + 1
    names, files, objects, used = [], [], [], set()
    for i in range(n):
        name_id = iau_name(ra[i], dec[i])
        while name_id in used:  # two sources closer than 0.1 s of RA: keep OBJECT unique
            name_id += "a"
        used.add(name_id)
        name = file_name(flavours[i], int(tiles[i]), int(number[i]), gzip)
        tile = f"{int(tiles[i]):06d}"
        files.append(f"{tile[:3]}/{tile[3:]}/{name}" if layout == "tiles" else name)
        objects.append(f"{int(number[i]):05d}" if flavours[i] == "dr1" else name_id)  # DR1: the running number in the tile
        names.append(name)
    return pl.DataFrame({"file": files, "name": names, "object": objects, "class": list(classes), "flavour": list(flavours),
                         "ra": ra, "dec": dec, "n_erodays": np.asarray(n_erodays, np.int64)},
                        schema_overrides={"class": pl.String, "flavour": pl.String})


def _run_chunks(job: _Job, sources: pl.DataFrame, chunks: list[tuple[int, int]], workers: int):
    """Truth frames of ``chunks`` of ``sources``, written here or by ``workers`` spawned processes, in order."""
    if workers <= 1 or len(chunks) <= 1:
        for lo, hi in chunks:
            yield _write_chunk(job, lo, sources[lo:hi])
        return
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    from common.lifeline import die_with_parent
    from common.pool import in_order

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
        yield from in_order(lambda c: pool.submit(_write_chunk, job, c[0], sources[c[0]:c[1]]), chunks, 2 * workers)


def _write_chunk(job: _Job, first: int, sources: pl.DataFrame) -> pl.DataFrame:
    """Simulate and write the files of ``sources`` (rows ``first``... of the plan); their truth rows."""
    out = Path(job.out)
    rows = []
    for k, src in enumerate(sources.iter_rows(named=True)):
        rng = np.random.default_rng([job.seed, 9, first + k])  # the source's own stream
        cols, truth = simulate_source(rng, src["flavour"], src["n_erodays"], src["class"], job.brightness, job.gen.ranges,
                                      job.gen.slope, job.gen.background)
        extras = {key: truth.pop(key) for key in list(truth) if key not in TRUTH_COLUMNS}
        dr1 = src["flavour"] == "dr1"
        pos_err = None if dr1 else round(position_error(truth["net_counts"]), 3)  # DR1 files carry no POS_ERR
        header = lightcurve_header(src["object"], src["ra"], src["dec"], cols, pos_err=pos_err)
        path = out / src["file"]
        if path.parent != out:
            path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, bintable_fits_bytes(cols, _UNITS, header=header), job.gzip)
        rows.append({"file": src["file"], "source_id": source_id_of(src["name"], src["object"]), "object": src["object"],
                     "class": src["class"], "rare": src["class"] in RARE_CLASSES, "flavour": src["flavour"],
                     "ra": src["ra"], "dec": src["dec"], "n_erodays": src["n_erodays"], "expected": "ok", **truth,
                     "params": json.dumps(extras),
                     "pos_err": pos_err if pos_err is not None else position_error(truth["net_counts"])})
    return pl.DataFrame(rows, infer_schema_length=None)


#: Truth columns every good source has (the rest of a morphology's parameters go to ``params``).
TRUTH_COLUMNS = ("mean_rate", "hardness", "net_counts", "amplitude", "tau", "t0", "n_affected")


def scatter_positions(rng: np.random.Generator, ra: np.ndarray, dec: np.ndarray, sigma_arcsec: np.ndarray) -> SkyCoord:
    """Positions moved by a 2-D Gaussian of ``sigma_arcsec`` per axis (one per position), as
    measured positions scatter around true ones: the counterparts of a reference catalogue."""
    offset = np.hypot(*(rng.normal(0.0, 1.0, (2, len(ra))) * sigma_arcsec))
    return SkyCoord(ra * u.deg, dec * u.deg).directional_offset_by(rng.uniform(0, 360, len(ra)) * u.deg, offset * u.arcsec)


def write_reference(out: Path, truth: pl.DataFrame, rng: np.random.Generator, known_fraction: float = KNOWN_FRACTION
                    ) -> pl.DataFrame:
    """Write ``reference.parquet``, a catalogue of "known" objects, and mark them in the truth table.

    A fraction ``known_fraction`` of the good sources get a counterpart at a realistic offset
    (a 2-D Gaussian of each source's ``pos_err`` / sqrt(2) per axis, the radial 1-sigma error
    written as POS_ERR; :data:`POSITION_ERROR_ARCSEC` per axis for a table without it), plus
    twice as many unrelated field objects uniform on the sky. Columns: ``ref_id``, ``ra``, ``dec``, ``kind`` (``counterpart``/``field``), ``mag``.
    The truth table gains ``known`` (the source has a counterpart).
    """
    good = truth["expected"] == "ok" if "expected" in truth.columns else pl.Series([True] * truth.height)
    idx = np.flatnonzero(good.to_numpy()) if "ra" in truth.columns else np.array([], dtype=np.int64)
    known = idx[rng.random(len(idx)) < known_fraction]
    sigma = (truth["pos_err"].to_numpy()[known] / np.sqrt(2.0) if "pos_err" in truth.columns
             else np.full(len(known), POSITION_ERROR_ARCSEC))
    moved = scatter_positions(rng, truth["ra"].to_numpy()[known], truth["dec"].to_numpy()[known], sigma) if len(known) \
        else SkyCoord(np.zeros(0) * u.deg, np.zeros(0) * u.deg)
    n_field = 2 * len(idx)
    ra = np.r_[moved.ra.deg, rng.uniform(0, 360, n_field)]
    dec = np.r_[moved.dec.deg, np.degrees(np.arcsin(rng.uniform(-1, 1, n_field)))]
    kind = ["counterpart"] * len(known) + ["field"] * n_field
    ref = pl.DataFrame({"ref_id": [f"REF{i:07d}" for i in range(len(ra))], "ra": ra, "dec": dec, "kind": kind,
                        "mag": rng.uniform(10, 21, len(ra))},
                       schema={"ref_id": pl.String, "ra": pl.Float64, "dec": pl.Float64, "kind": pl.String, "mag": pl.Float64})
    ref.write_parquet(out / "reference.parquet")
    flags = np.zeros(truth.height, bool)
    flags[known] = True
    return truth.with_columns(pl.Series("known", flags))


def _write(path: Path, data: bytes, gzip: bool) -> None:
    if gzip:
        data = gzip_module.compress(data, compresslevel=6, mtime=0)
    path.write_bytes(data)


def _write_bad(out: Path, kind: str, j: int, rng: np.random.Generator, good_rows: list, gzip: bool) -> dict:
    """One malformed file of ``kind``; returns its truth row (``expected`` = reason code)."""
    source_id = f"bad_{kind}_{j:04d}"
    cols, _ = simulate_source(rng, "rebinned", 6, "constant")
    header = lightcurve_header(source_id, 10.0, 10.0, cols)
    name = f"em01_999999_020_LightCurve_{j:05d}_c010_bad_{kind}.fits"
    extname = "RATE"
    if kind == "not_fits":
        data = b"SIMPLE? this is a text file, not FITS\n" * 10
    elif kind == "empty_file":
        data = b""
    elif kind == "duplicate_source" and good_rows:
        original = good_rows[j % len(good_rows)]
        name = original["file"].replace(".fits", "_copy.fits")
        (out / name).write_bytes((out / original["file"]).read_bytes())
        return {"file": name, "source_id": original["source_id"], "class": None, "flavour": original["flavour"],
                "expected": "duplicate_source"}
    else:
        if kind == "no_rate_extension":
            extname = "EVENTS"
        elif kind == "missing_columns":
            cols.pop("RATE")
        elif kind == "single_band":  # 1-D band columns under a 3-band header
            cols = {k: (v[:, 0] if v.ndim == 2 else v) for k, v in cols.items()}
        elif kind == "all_nan_rates":
            cols["RATE"][:] = np.nan
        elif kind == "no_rows":
            cols = {k: v[:0] for k, v in cols.items()}
            header = [c for c in header if c[0] not in ("TSTART", "TSTOP")]
        elif kind == "bad_timedel":
            cols["TIMEDEL"][1] = -cols["TIMEDEL"][1]
        elif kind == "unsorted_time":
            cols = {k: v[::-1].copy() for k, v in cols.items()}
        data = bintable_fits_bytes(cols, _UNITS, extname=extname, header=header)
        if kind == "unreadable":
            data = data[: len(data) - 2880 + 100]  # cut inside the data block
        elif kind == "corrupt_gzip":
            data = gzip_module.compress(data, mtime=0)
            data = data[: len(data) // 2]
            name += ".gz"
    if gzip and kind not in ("corrupt_gzip", "empty_file", "not_fits", "unreadable"):
        name += ".gz"
        data = gzip_module.compress(data, mtime=0)
    (out / name).write_bytes(data)
    return {"file": name, "source_id": source_id_of(name, source_id), "class": None, "flavour": None, "expected": kind}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m etl.synth", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--n", type=int, default=1000, help="good sources (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flavour", choices=FLAVOURS, default="rebinned",
                        help="rebinned (eRebin), srctool (raw eSASS), dr1 (the eRASS1 DR1 release: 10 s bins, "
                             "estimated asymmetric errors, per-tile OBJECT numbers) or mixed (rebinned and srctool)")
    parser.add_argument("--rare", type=float, default=0.0,
                        help="fraction of sources with a rare morphology: qpe, eclipse, absorption, step (default 0)")
    parser.add_argument("--variant", type=int, default=0,
                        help="the generator: 0 the default, K > 0 a seeded perturbation of all its knobs")
    parser.add_argument("--bad", type=int, default=0, help="malformed files to add (default 0)")
    parser.add_argument("--gzip", action="store_true", help="write .fits.gz")
    parser.add_argument("--brightness", choices=["erass1", "uniform"], default="erass1",
                        help="mean rates: eRASS1 log N - log S above 0.035 ct/s (default) or log-uniform 0.03-5 ct/s")
    parser.add_argument("--layout", choices=LAYOUTS, default="flat",
                        help="flat (every file in OUT_DIR, default) or tiles (RRR/DDD/ folders per eRASS sky tile, as the release)")
    parser.add_argument("--workers", type=int, default=1, help="processes writing files (default 1; same archive for any number)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.n < 0 or args.bad < 0:
        parser.error("--n and --bad must be >= 0")
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    if not 0.0 <= args.rare <= 1.0:
        parser.error("--rare must be a fraction in [0, 1]")
    truth = make_archive(args.out_dir, args.n, args.seed, args.flavour, args.bad, args.gzip, progress=not args.quiet,
                         brightness=args.brightness, rare=args.rare, variant=args.variant, layout=args.layout,
                         workers=args.workers)
    counts = truth.group_by("class").len().sort("class")
    summary = ", ".join(f"{c or 'bad'}: {k}" for c, k in counts.iter_rows())
    print(f"wrote {truth.height} files to {args.out_dir} ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
