"""Cross-match the store's sources with a reference catalogue: the feature set ``xmatch_<name>``.

    python -m features.crossmatch --store STORE --reference REF --radius 10 --name NAME
        [--ra-column RA --dec-column DEC] [--id-column ID] [--columns c1 c2 ...]
        [--max-sigma K] [--ref-error-column ERR] [--method auto|astropy|lsdb] [--dask-address tcp://host:8786]

REF is a Parquet, FITS or CSV table with positions, or a HATS catalog folder. Position columns
are found by name (``ra``/``dec``, ``RAJ2000``/``DEJ2000``, ``RA_ICRS``/``DE_ICRS``, ... any
case) or given; a table with galactic ``l``/``b`` (or ``glon``/``glat``) and no RA/Dec is
converted to ICRS with astropy (and says so in the set's metadata). Positions must be in degrees:
RA in [0, 360], Dec in [-90, 90]; rows with a missing position are left out and counted, any
out-of-range value is an error (a catalogue in other units or another frame would otherwise match
nothing, silently).

Per ok source of the store: ``xmatch_<name>_id`` (the nearest reference row's id, or its row
number), ``xmatch_<name>_sep_arcsec``, ``xmatch_<name>_n`` (reference rows within the radius) and
the chosen ``--columns`` of the nearest, prefixed; no match leaves them null and ``_n`` 0.
``xmatch_<name>_sep_sigma`` is the separation in units of the pair's combined per-axis position
error, ``sep / sqrt(sigma_src^2 + sigma_ref^2)`` with ``sigma = radial 1-sigma error / sqrt(2)``:
the source's from the catalog's ``pos_err_arcsec`` (POS_ERR; null where the file carried none,
and then ``sep_sigma`` is null), the reference's from ``--ref-error-column`` (radial 1-sigma,
arcsec, e.g. a catalogue's POS_ERR; 0 without it or where empty). For a true counterpart and
Gaussian errors it follows a Rayleigh distribution of unit scale: the normalised distance of de
Ruiter, Willis & Arp 1977 (A&AS 28, 211, Eq. 5). ``--max-sigma K`` keeps only pairs with
``sep_sigma <= K`` (and within ``--radius``; sources without an error keep the radius), which
loses a fraction exp(-K^2/2) of true counterparts: 1.1 % for K = 3.

Matching: astropy (``search_around_sky``, a k-d tree on unit vectors: exact) for tables, or
LSDB's cross-match on Dask for HATS catalogs and with ``--method lsdb`` (the store's sources are
partitioned on the fly; ``--dask-address`` uses an existing scheduler). LSDB returns at most
k neighbours per source: k starts at :data:`LSDB_NEIGHBOURS` and the match is repeated with 4k
while any source fills all k, so ``_n`` is exact as with astropy (up to :data:`LSDB_MAX_NEIGHBOURS`).

The **spurious-match rate** is measured the usual way: the store's positions moved by
:data:`SHIFT_ARCMIN` arcmin (four directions) are matched again; the fraction of shifted sources
that still find a counterpart, divided by the fraction of real ones that do, is the expected
fraction of chance matches. It is stored in the set's ``meta.json`` (``metrics``) and printed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from common import cli
from common.errors import UserError
from common.extras import require
from etl.catalog import OK_ROWS
from features.featurestore import as_store, file_hash, find_version, write_feature_set

SHIFT_ARCMIN = 3.0
LSDB_NEIGHBOURS = 10
LSDB_MAX_NEIGHBOURS = 10_000
_RA_NAMES = ("ra", "raj2000", "ra_icrs", "ra_deg", "radeg", "ra_obj", "_raj2000", "alpha")
_DEC_NAMES = ("dec", "dej2000", "decj2000", "de_icrs", "dec_icrs", "dec_deg", "dedeg", "dec_obj", "_dej2000", "delta")
_GAL_NAMES = (("l", "b"), ("glon", "glat"), ("gal_l", "gal_b"))
_ID_NAMES = ("id", "source_id", "ref_id", "name", "objid", "obj_id", "source", "designation")


class CrossmatchError(UserError, ValueError):
    """A reference that cannot be matched as given (no positions, out-of-range values, bad radius)."""

    def __init__(self, reference: str, message: str):
        super().__init__(f"{reference}: {message}")
        self.reference = reference


def is_hats(path: str | Path) -> bool:
    """A HATS catalog folder (or collection): has hats.properties or collection.properties."""
    path = Path(path)
    return path.is_dir() and ((path / "hats.properties").exists() or (path / "collection.properties").exists())


def read_reference(path: str | Path) -> pl.DataFrame:
    """A Parquet, FITS or CSV table as a DataFrame."""
    path = Path(path)
    if not path.is_file():
        raise CrossmatchError(str(path), "reference does not exist (a table file or a HATS catalog folder)")
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return pl.read_parquet(path)
        if name.endswith((".csv", ".csv.gz", ".tsv")):
            return pl.read_csv(path, separator="\t" if name.endswith(".tsv") else ",", infer_schema_length=10_000)
        if name.endswith((".fits", ".fit", ".fits.gz", ".fz")):
            from astropy.table import Table

            table = Table.read(path)
            return pl.from_pandas(table[[c for c in table.colnames if len(table[c].shape) == 1]].to_pandas())
    except (pl.exceptions.PolarsError, OSError, ValueError, TypeError) as exc:
        raise CrossmatchError(str(path), f"cannot read the reference table ({type(exc).__name__}: {exc})") from None
    raise CrossmatchError(str(path), "reference must be .parquet, .csv, .fits or a HATS catalog folder")


def _find(columns: list[str], names: tuple[str, ...]) -> str | None:
    lower = {c.lower(): c for c in columns}
    found = next((lower[n] for n in names if n in lower), None)
    if found is None and names is _ID_NAMES:  # ids are often <something>_id
        found = next((c for c in columns if c.lower().endswith("_id")), None)
    return found


def reference_positions(ref: pl.DataFrame, reference: str, ra_column: str | None = None, dec_column: str | None = None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """ICRS RA/Dec (deg) of the reference rows with a position, their row numbers, and what was done.

    Raises
    ------
    CrossmatchError
        No position columns, non-numeric ones, or values outside RA [0, 360] / Dec [-90, 90].
    """
    info: dict = {}
    ra_col = ra_column or _find(ref.columns, _RA_NAMES)
    dec_col = dec_column or _find(ref.columns, _DEC_NAMES)
    frame = "icrs"
    if (ra_column or dec_column) and not (ra_col in ref.columns and dec_col in ref.columns):
        raise CrossmatchError(reference, f"position columns {ra_column!r}/{dec_column!r} not in {ref.columns}")
    if ra_col is None or dec_col is None:
        galactic = next(((lower_l, lower_b) for lower_l, lower_b in _GAL_NAMES
                         if _find(ref.columns, (lower_l,)) and _find(ref.columns, (lower_b,))), None)
        if galactic is None:
            raise CrossmatchError(reference, f"no position columns found (looked for RA/Dec or galactic l/b) in {ref.columns}; "
                                             "name them with --ra-column/--dec-column")
        ra_col, dec_col = _find(ref.columns, (galactic[0],)), _find(ref.columns, (galactic[1],))
        frame = "galactic"
    try:
        lon = ref[ra_col].cast(pl.Float64).to_numpy().astype("f8", copy=True)
        lat = ref[dec_col].cast(pl.Float64).to_numpy().astype("f8", copy=True)
    except pl.exceptions.PolarsError:
        raise CrossmatchError(reference, f"position columns {ra_col}/{dec_col} are not numeric (degrees expected)") from None
    has = np.isfinite(lon) & np.isfinite(lat)
    if ((lon[has] < 0) | (lon[has] > 360)).any():
        raise CrossmatchError(reference, f"{int(((lon[has] < 0) | (lon[has] > 360)).sum())} values of {ra_col} outside [0, 360] deg")
    if (np.abs(lat[has]) > 90).any():
        raise CrossmatchError(reference, f"{int((np.abs(lat[has]) > 90).sum())} values of {dec_col} outside [-90, 90] deg")
    if not has.any():
        raise CrossmatchError(reference, f"no row has a position in {ra_col}/{dec_col}")
    rows = np.flatnonzero(has)
    lon, lat = lon[has], lat[has]
    if frame == "galactic":
        from astropy import units as u
        from astropy.coordinates import SkyCoord

        icrs = SkyCoord(l=lon * u.deg, b=lat * u.deg, frame="galactic").icrs
        lon, lat = icrs.ra.deg, icrs.dec.deg
        info["converted"] = f"galactic {ra_col}/{dec_col} -> ICRS (astropy)"
    info |= {"ra_column": ra_col, "dec_column": dec_col, "frame": frame, "rows": ref.height,
             "rows_without_position": int((~has).sum())}
    return lon, lat, rows, info


def _nearest(src: np.ndarray, sep: np.ndarray, n: int, limit: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For pairs (source index, separation): the nearest pair per source (-1 if none), its separation, the count.

    ``limit`` (arcsec, one per pair) drops the pairs farther than their limit first; the
    returned pair indices still index the arrays given.
    """
    if limit is not None:
        keep = np.flatnonzero(sep <= limit)
        pick, best, count = _nearest(src[keep], sep[keep], n)
        return np.where(pick >= 0, keep[np.clip(pick, 0, None)] if len(keep) else -1, -1), best, count
    count = np.bincount(src, minlength=n).astype(np.int64)
    pick = np.full(n, -1, np.int64)
    best = np.full(n, np.nan)
    order = np.lexsort((sep, src))  # by source, nearest first
    if len(order):
        first = order[np.r_[True, src[order][1:] != src[order][:-1]]]
        pick[src[first]] = first
        best[src[first]] = sep[first]
    return pick, best, count


def match_astropy(ra: np.ndarray, dec: np.ndarray, ref_ra: np.ndarray, ref_dec: np.ndarray, radius_arcsec: float,
                  pair_limit=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest reference index (-1 if none), its separation (arcsec, NaN) and the count within the radius
    (and ``pair_limit(i_src, i_ref)``, arcsec per pair, when given), per source."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord, search_around_sky

    src = SkyCoord(ra * u.deg, dec * u.deg)
    ref = SkyCoord(ref_ra * u.deg, ref_dec * u.deg)
    i_src, i_ref, sep, _ = search_around_sky(src, ref, radius_arcsec * u.arcsec)
    limit = pair_limit(i_src, i_ref) if pair_limit is not None else None
    pick, best, count = _nearest(i_src, sep.arcsec, len(ra), limit)
    nearest = np.where(pick >= 0, i_ref[np.clip(pick, 0, None)] if len(i_ref) else -1, -1)
    return nearest, best, count


def match_lsdb(ra: np.ndarray, dec: np.ndarray, right, radius_arcsec: float, columns: list[str],
               dask_address: str | None = None, pair_limit=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Cross-match through LSDB: the nearest match's ``columns`` of ``right`` (an lsdb Catalog) per source.

    Returns the nearest pair's index into the returned column arrays (-1: none), its separation
    (arcsec), the number of matches within the radius (and ``pair_limit(i_src, columns)``,
    arcsec per pair; exact, see the module docstring) and the columns, each an array over pairs.
    """
    import contextlib

    import lsdb
    import pandas as pd

    left = lsdb.from_dataframe(pd.DataFrame({"_row": np.arange(len(ra)), "ra": ra, "dec": dec}), ra_column="ra",
                               dec_column="dec", catalog_name="store")
    client = contextlib.nullcontext()
    if dask_address:
        from dask.distributed import Client

        client = Client(dask_address)
    k = LSDB_NEIGHBOURS
    with client:
        while True:
            pairs = left.crossmatch(right, n_neighbors=k, radius_arcsec=radius_arcsec, suffixes=("", "_ref"),
                                   suffix_method="all_columns").compute()
            src = pairs["_row"].to_numpy().astype(np.int64)
            if np.bincount(src, minlength=1).max() < k or k >= LSDB_MAX_NEIGHBOURS:
                break
            k = min(4 * k, LSDB_MAX_NEIGHBOURS)  # some source may have more within the radius than k
    cols = {c: pairs[f"{c}_ref"].to_numpy() for c in columns}
    limit = pair_limit(src, cols) if pair_limit is not None else None
    pick, best, count = _nearest(src, pairs["_dist_arcsec"].to_numpy().astype("f8"), len(ra), limit)
    return pick, best, count, cols


def _reference_sigma(values, reference: str, column: str) -> np.ndarray:
    """Per-axis sigma (arcsec) from a reference's radial 1-sigma errors: empty -> 0, negative -> error."""
    try:
        err = np.asarray(values, dtype="f8")
    except (TypeError, ValueError):
        raise CrossmatchError(reference, f"error column {column!r} is not numeric (radial 1-sigma arcsec expected)") from None
    if (err[np.isfinite(err)] < 0).any():
        raise CrossmatchError(reference, f"error column {column!r} has negative values")
    return np.where(np.isfinite(err), err, 0.0) / np.sqrt(2.0)


def spurious_rate(match, ra: np.ndarray, dec: np.ndarray, matched_fraction: float) -> dict:
    """Chance-match fraction from positions moved by SHIFT_ARCMIN in four directions."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    src = SkyCoord(ra * u.deg, dec * u.deg)
    fractions = []
    for angle in (0.0, 90.0, 180.0, 270.0):
        moved = src.directional_offset_by(angle * u.deg, SHIFT_ARCMIN * u.arcmin)
        fractions.append(float(np.mean(match(moved.ra.deg, moved.dec.deg)[0] >= 0)))
    shifted = float(np.mean(fractions))
    return {"shift_arcmin": SHIFT_ARCMIN, "shifted_match_fraction": shifted, "match_fraction": matched_fraction,
            "spurious_fraction": shifted / matched_fraction if matched_fraction > 0 else None}


@dataclass
class Matcher:
    """How a reference is matched: ``match(ra, dec) -> (nearest, separation, count, values)``.

    ``values`` holds the reference's columns by name (numpy arrays indexed by ``nearest``);
    ``id_key`` and ``error_key`` name its id and radial-error columns there.
    """

    match: Callable
    id_key: str
    error_key: str | None
    info: dict


def _check(reference: str, radius_arcsec: float, name: str, max_sigma: float | None, method: str) -> None:
    if not np.isfinite(radius_arcsec) or radius_arcsec <= 0:
        raise CrossmatchError(reference, f"radius must be > 0 arcsec, not {radius_arcsec}")
    if not name.replace("_", "").isalnum():
        raise CrossmatchError(reference, f"name must be letters, digits and _, not {name!r}")
    if max_sigma is not None and not (np.isfinite(max_sigma) and max_sigma > 0):
        raise CrossmatchError(reference, f"--max-sigma must be > 0, not {max_sigma}")
    if method not in ("auto", "astropy", "lsdb"):
        raise CrossmatchError(reference, f"method must be auto, astropy or lsdb, not {method!r}")
    if is_hats(reference) and method == "astropy":
        raise CrossmatchError(reference, "a HATS catalog is matched with lsdb (--method lsdb or auto)")


def _hats_matcher(reference: str, radius_arcsec: float, columns: list[str], id_column: str | None,
                  ref_error_column: str | None, dask_address: str | None, limit_of) -> Matcher:
    """A HATS reference, matched by LSDB (its id, chosen columns and radial error carried along)."""
    require("a HATS reference", "lsdb")
    import lsdb

    right = lsdb.open_catalog(reference)
    names = list(right.columns)
    ids = id_column or _find(names, _ID_NAMES)
    if ids is None or ids not in names:
        raise CrossmatchError(reference, f"name the HATS catalog's id column with --id-column (columns: {names})")
    missing = [c for c in columns if c not in names]
    if missing:
        raise CrossmatchError(reference, f"columns {missing} not in the reference ({names})")
    if ref_error_column is not None and ref_error_column not in names:
        raise CrossmatchError(reference, f"error column {ref_error_column!r} not in the reference ({names})")
    carried = [ids, *columns, *([ref_error_column] if ref_error_column and ref_error_column not in columns else [])]

    def ref_sigma_of(cols: dict) -> np.ndarray:
        return _reference_sigma(cols[ref_error_column], reference, ref_error_column) if ref_error_column else 0.0

    pair_limit = None if limit_of is None else (lambda i_src, cols: limit_of(i_src, ref_sigma_of(cols)))
    return Matcher(lambda a, d: match_lsdb(a, d, right, radius_arcsec, carried, dask_address, pair_limit), ids,
                   ref_error_column, {"frame": "icrs (HATS)", "id_column": ids})


def _table_matcher(reference: str, radius_arcsec: float, columns: list[str], ra_column: str | None, dec_column: str | None,
                   id_column: str | None, ref_error_column: str | None, use_lsdb: bool, dask_address: str | None,
                   limit_of) -> Matcher:
    """A table reference (Parquet, FITS, CSV), matched by astropy or, asked for, partitioned once for LSDB."""
    ref = read_reference(Path(reference))
    ref_ra, ref_dec, ref_rows, info = reference_positions(ref, reference, ra_column, dec_column)
    missing = [c for c in columns if c not in ref.columns]
    if missing:
        raise CrossmatchError(reference, f"columns {missing} not in the reference ({ref.columns})")
    if id_column and id_column not in ref.columns:
        raise CrossmatchError(reference, f"id column {id_column!r} not in the reference ({ref.columns})")
    if ref_error_column is not None and ref_error_column not in ref.columns:
        raise CrossmatchError(reference, f"error column {ref_error_column!r} not in the reference ({ref.columns})")
    ids = id_column or _find(ref.columns, _ID_NAMES)
    table = {c: ref[c].to_numpy()[ref_rows] for c in columns}
    table["_id"] = (ref[ids].cast(pl.String).to_numpy() if ids else np.arange(ref.height).astype(str))[ref_rows]
    info["id_column"] = ids or "(row number)"
    ref_sigma = (_reference_sigma(ref[ref_error_column].to_numpy()[ref_rows], reference, ref_error_column)
                 if ref_error_column else np.zeros(len(ref_rows)))
    table["_ref_error"] = ref[ref_error_column].to_numpy()[ref_rows] if ref_error_column else np.zeros(len(ref_rows))
    astropy_limit = None if limit_of is None else (lambda i_src, i_ref: limit_of(i_src, ref_sigma[i_ref]))
    lsdb_limit = None if limit_of is None else (lambda i_src, cols: limit_of(i_src, ref_sigma[cols["_ref_row"]]))
    if use_lsdb:  # partitioned once: the real matching and the four shifted ones share it
        require("--method lsdb", "lsdb")
        import lsdb
        import pandas as pd

        right = lsdb.from_dataframe(pd.DataFrame({"_ref_row": np.arange(len(ref_ra)), "ra": ref_ra, "dec": ref_dec}),
                                    ra_column="ra", dec_column="dec", catalog_name="reference",
                                    margin_threshold=max(radius_arcsec * 1.1, 5.0))

    def match(a, d):
        if use_lsdb:
            pick, best, count, cols = match_lsdb(a, d, right, radius_arcsec, ["_ref_row"], dask_address, lsdb_limit)
            rows = cols["_ref_row"]
            nearest = np.where(pick >= 0, rows[np.clip(pick, 0, None)] if len(pick) and len(rows) else -1, -1)
        else:
            nearest, best, count = match_astropy(a, d, ref_ra, ref_dec, radius_arcsec, astropy_limit)
        return nearest, best, count, table

    return Matcher(match, "_id", "_ref_error", info)


def _set_frame(prefix: str, source_ids: list[str], sigma: np.ndarray, matched: tuple, matcher: Matcher,
               columns: list[str], reference: str, ref_error_column: str | None) -> pl.DataFrame:
    """The ``xmatch_<name>`` columns from the nearest matches (module docstring)."""
    pick, sep, count, values = matched
    has = pick >= 0

    def nearest_of(array):
        return [array[i] if i >= 0 else None for i in pick] if len(array) else [None] * len(pick)

    data = {"source_id": source_ids, f"{prefix}_id": [None if v is None else str(v) for v in nearest_of(values[matcher.id_key])],
            f"{prefix}_sep_arcsec": np.where(has, sep, np.nan)}
    picked_error = (np.array([np.nan if v is None else v for v in nearest_of(values[matcher.error_key])], dtype="f8")
                    if matcher.error_key else np.zeros(len(pick)))
    picked_ref_sigma = _reference_sigma(picked_error, reference, ref_error_column or "")
    data[f"{prefix}_sep_sigma"] = np.where(has, sep, np.nan) / np.hypot(sigma, picked_ref_sigma)
    data[f"{prefix}_n"] = count
    for column in columns:
        data[f"{prefix}_{column}"] = nearest_of(values[column])
    return pl.DataFrame(data, strict=False).with_columns(pl.col(f"{prefix}_sep_arcsec", f"{prefix}_sep_sigma").fill_nan(None))


def crossmatch(store, reference: str, radius_arcsec: float, name: str, columns: list[str] | None = None,
               ra_column: str | None = None, dec_column: str | None = None, id_column: str | None = None,
               method: str = "auto", dask_address: str | None = None, max_sigma: float | None = None,
               ref_error_column: str | None = None) -> tuple[dict, bool]:
    """Build (or reuse) the feature set ``xmatch_<name>``; see the module docstring."""
    store = as_store(store)
    columns = list(columns or [])
    _check(reference, radius_arcsec, name, max_sigma, method)
    hats = is_hats(reference)
    use_lsdb = hats or method == "lsdb"
    properties = Path(reference) / ("hats.properties" if (Path(reference) / "hats.properties").exists() else "collection.properties")
    set_name = f"xmatch_{name}"
    lineage = {"catalog_hash": store.snapshot_hash(), "reference": str(Path(reference).resolve()),
               "reference_hash": file_hash(str(properties if hats else reference)), "radius_arcsec": float(radius_arcsec),
               "columns": columns, "ra_column": ra_column, "dec_column": dec_column, "id_column": id_column,
               "method": "lsdb" if use_lsdb else "astropy", "max_sigma": max_sigma, "ref_error_column": ref_error_column}
    existing = find_version(store, set_name, lineage)
    if existing is not None:
        return existing, False
    ok = store.catalog().filter(OK_ROWS & pl.col("ra").is_not_null() & pl.col("dec").is_not_null()) \
        .select("source_id", "ra", "dec", "pos_err_arcsec").collect()
    ra, dec = ok["ra"].to_numpy(), ok["dec"].to_numpy()
    sigma = ok["pos_err_arcsec"].cast(pl.Float64).fill_null(np.nan).to_numpy() / np.sqrt(2.0)  # per axis

    def limit_of(i_src: np.ndarray, ref_sigma: np.ndarray) -> np.ndarray:
        """Per pair: the radius, or max_sigma combined errors when the source has one."""
        both = np.hypot(sigma[i_src], ref_sigma)
        return np.where(np.isfinite(both), np.minimum(max_sigma * both, radius_arcsec), radius_arcsec)

    limit = None if max_sigma is None else limit_of
    matcher = (_hats_matcher(reference, radius_arcsec, columns, id_column, ref_error_column, dask_address, limit) if hats
               else _table_matcher(reference, radius_arcsec, columns, ra_column, dec_column, id_column, ref_error_column,
                                   use_lsdb, dask_address, limit))
    matched = matcher.match(ra, dec)
    out = _set_frame(set_name, ok["source_id"].to_list(), sigma, matched, matcher, columns, reference, ref_error_column)
    has = matched[0] >= 0
    metrics = {"matched": int(has.sum()), "sources": len(has), "sources_with_pos_err": int(np.isfinite(sigma).sum()),
               "reference": matcher.info} | spurious_rate(matcher.match, ra, dec, float(has.mean()) if len(has) else 0.0)
    return write_feature_set(store, set_name, out, lineage, metrics=metrics)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m features.crossmatch", description=__doc__.split("\n\n")[0])
    p.add_argument("--store", required=True)
    p.add_argument("--reference", required=True, help="Parquet, FITS or CSV table with positions, or a HATS catalog folder")
    p.add_argument("--radius", type=float, required=True, help="match radius, arcsec")
    p.add_argument("--name", required=True, help="the set is called xmatch_<name>")
    p.add_argument("--columns", nargs="*", default=[], help="reference columns to carry over (of the nearest match)")
    p.add_argument("--ra-column")
    p.add_argument("--dec-column")
    p.add_argument("--id-column")
    p.add_argument("--max-sigma", type=float, default=None,
                   help="keep pairs within K x their combined per-axis position error as well (K = 3 loses 1.1%% of true ones)")
    p.add_argument("--ref-error-column", help="reference column of radial 1-sigma position errors, arcsec")
    p.add_argument("--method", default="auto", choices=["auto", "astropy", "lsdb"])
    p.add_argument("--dask-address", help="Dask scheduler for the lsdb method")
    args = p.parse_args(argv)
    meta, created = crossmatch(args.store, args.reference, args.radius, args.name, args.columns, args.ra_column,
                               args.dec_column, args.id_column, args.method, args.dask_address, args.max_sigma,
                               args.ref_error_column)
    m = meta.get("metrics", {})
    print(f"{meta['name']}@{meta['version']}: {m.get('matched')} of {m.get('sources')} sources matched within "
          f"{args.radius:g} arcsec; spurious fraction {m.get('spurious_fraction')} "
          f"(shifted by {SHIFT_ARCMIN:g} arcmin){'' if created else ' (unchanged, reused)'}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
