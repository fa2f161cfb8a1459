"""The candidates table behind the explorer: every source with its features, filtered, sorted and paged on the server.

The joined frame (catalog + the latest version of every feature set) is read once into memory
(a 1,000,000-row catalog with ~100 numeric columns takes about a gigabyte); the VAE latent
means are kept aside as a float32 (N, L) matrix for nearest neighbours. Labels are joined at
each query, so a label shows at once. A query is a Polars expression over that frame: the
filter row's syntax is Dash DataTable's ``filter_query`` (``{col} > 5 && {object} contains J12``).
"""

from __future__ import annotations

import io
import re
import threading
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from etl.catalog import OK_ROWS
from features.active import combined_score, feature_matrix
from features.featurestore import get_feature_set, list_feature_sets
from features.labels import LABELS, LabelLog

#: Catalog columns shown beside the features (the rest: file paths, hashes, offsets... stay out)
CATALOG_COLUMNS = ("source_id", "object", "ra", "dec", "pos_err_arcsec", "n_points", "mjd_start", "mjd_stop", "mjdref", "flavour")
LABEL_COLUMNS = ("label", "label_comment", "label_user", "label_time", "n_labels")
#: Score columns offered first, in this order, when present (the first is the default ranking)
PREFERRED_SCORES = ("discovery_score", "combined_score", "discovery_score_classical", "anomaly_fpp", "variable_fpp",
                    "anomaly_score", "anomaly_chi2", "bexvar_fpp", "nev_fpp", "ampl_sig_fpp")
#: FPP-like columns: small is remarkable, so they rank ascending
ASCENDING = re.compile(r".*_fpp(_b\d+)?$")
LABEL_STATES = ("any", "unlabelled", "labelled", *LABELS)
OPERATORS = {"=": "eq", "eq": "eq", "!=": "ne", "ne": "ne", "<": "lt", "lt": "lt", "<=": "le", "le": "le",
             ">": "gt", "gt": "gt", ">=": "ge", "ge": "ge", "contains": "contains", "icontains": "contains",
             "scontains": "contains", "datestartswith": "contains"}
TERM = re.compile(r"^\s*\{(?P<col>[^}]+)\}\s+(?P<op>s?(?:!=|<=|>=|=|<|>)|[a-z]+)\s+(?P<value>.+?)\s*$")


class FilterError(ValueError):
    """A filter the table cannot apply: unknown column, unknown operator or a value of the wrong type."""


@dataclass
class Query:
    """What the candidates view asks for (every field has a default: the first page by the default score)."""

    score: str | None = None
    descending: bool | None = None  # None: the score's natural order (FPPs ascending)
    filter_query: str = ""
    label_state: str = "any"
    cone: tuple[float, float, float] | None = None  # (ra, dec, radius arcsec)
    sort_by: list[dict] = field(default_factory=list)  # DataTable's [{"column_id", "direction"}]
    page: int = 0
    page_size: int = 25


def _value(raw: str, dtype: pl.DataType, column: str):
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'`":
        raw = raw[1:-1]
    if dtype.is_numeric():
        try:
            return float(raw)
        except ValueError:
            raise FilterError(f"column {column!r} is numeric: {raw!r} is not a number") from None
    if dtype == pl.Boolean:
        if raw.lower() not in ("true", "false", "1", "0"):
            raise FilterError(f"column {column!r} is true/false: {raw!r} is neither")
        return raw.lower() in ("true", "1")
    return raw


def filter_expression(filter_query: str, schema: dict[str, pl.DataType]) -> pl.Expr | None:
    """A Polars expression for DataTable's ``filter_query`` (terms joined by ``&&``)."""
    exprs = []
    for part in filter(None, (p.strip() for p in (filter_query or "").split("&&"))):
        m = TERM.match(part)
        if not m:
            raise FilterError(f"cannot read the filter {part!r} (expected e.g. {{n_bins}} > 5)")
        col, op, raw = m["col"], m["op"].removeprefix("s") if m["op"] not in OPERATORS else m["op"], m["value"]
        if col not in schema:
            raise FilterError(f"no column {col!r} to filter on")
        if op not in OPERATORS:
            raise FilterError(f"unknown filter operator {op!r} in {part!r}")
        kind, dtype = OPERATORS[op], schema[col]
        if kind == "contains":
            exprs.append(pl.col(col).cast(pl.String).str.contains(re.escape(_value(raw, pl.String, col)), literal=False))
            continue
        value = _value(raw, dtype, col)
        c = pl.col(col)
        exprs.append({"eq": c == value, "ne": c != value, "lt": c < value, "le": c <= value, "gt": c > value,
                      "ge": c >= value}[kind])
    return pl.all_horizontal(exprs) if exprs else None


def galactic(ra: np.ndarray, dec: np.ndarray) -> list[pl.Series]:
    """Galactic l, b and |b| (degrees) of ICRS positions: a sky-region filter the field uses (|b| > 20)."""
    from astropy.coordinates import SkyCoord

    g = SkyCoord(ra, dec, unit="deg", frame="icrs").galactic
    b = g.b.deg
    return [pl.Series("gal_l", g.l.deg), pl.Series("gal_b", b), pl.Series("abs_gal_b", np.abs(b))]


class CandidateTable:
    """All sources of a store with their features, for ranking, filtering and paging.

    Parameters
    ----------
    frame : one row per source: ``source_id``, catalog and feature columns.
    latents : (N, L) float32 VAE latent means in the rows' order, or None.
    labels : the store's label log.
    sets : ``{name: version}`` of the feature sets joined.
    store : the LightCurveStore (for cone searches), or None.
    """

    def __init__(self, frame: pl.DataFrame, labels: LabelLog, latents: np.ndarray | None = None,
                 sets: dict[str, int] | None = None, store=None, set_columns: dict[str, list[tuple[str, str]]] | None = None,
                 shadowed: pl.DataFrame | None = None):
        score = combined_score(frame.columns)
        frame = frame.with_columns(score) if score is not None else frame
        if {"ra", "dec"} <= set(frame.columns) and "gal_b" not in frame.columns:
            frame = frame.with_columns(galactic(frame["ra"].to_numpy(), frame["dec"].to_numpy()))
        self.frame = frame
        self.labels = labels
        self.latents = latents
        self.sets = sets or {}
        # where each set's values sit: (column, "frame" | a column of `shadowed` | "mu:<j>" in latents)
        self.set_columns = set_columns or {}
        self.shadowed = shadowed  # a set's columns another set already put in the frame, same rows
        self.store = store
        self.row = {s: i for i, s in enumerate(self.frame["source_id"].to_list())}
        self.numeric = [c for c, d in self.frame.schema.items() if d.is_numeric() and c != "_healpix_29"]
        self._lock = threading.Lock()
        self._order, self._cache, self._labels_cache = None, {}, None
        self._indexed = self.frame.with_row_index("_row")  # shares the columns: row numbers for the cached orders

    @classmethod
    def from_store(cls, store, labels: LabelLog) -> "CandidateTable":
        """Every ok source of ``store`` joined with the latest version of each feature set."""
        catalog = store.catalog().filter(OK_ROWS)
        present = [c for c in CATALOG_COLUMNS if c in catalog.collect_schema().names()]
        frame = catalog.select(present + [c for c in catalog.collect_schema().names() if c.startswith("mean_rate_b")])
        sets, latents, mu, where, shadowed = {}, None, [], {}, []
        for name in sorted(set(list_feature_sets(store)["name"].to_list())):
            meta, data = get_feature_set(store, name)
            sets[name] = meta["version"]
            have = frame.collect_schema().names()
            names = [c for c in data.collect_schema().names() if c != "source_id"]
            cols = [c for c in names if c not in have]
            # latent means: kept aside for "more like this", not as table columns
            mu += [c for c in cols if re.fullmatch(r"mu_\d+", c)] if name == "vae_latent" else []
            cols = [c for c in cols if name == "vae_latent" or not re.fullmatch(r"mu_\d+", c)]
            # a column an earlier set already has is kept aside under its own name, so the source
            # view shows every set's own values from memory
            twice = [c for c in names if c in have]
            shadowed += [f"{c}@{name}" for c in twice]
            frame = frame.join(data.select("source_id", *cols, *[pl.col(c).alias(f"{c}@{name}") for c in twice]),
                               on="source_id", how="left")
            where[name] = [(c, f"{c}@{name}" if c in twice else "frame") for c in names]
        frame = frame.collect()
        if mu:
            latents = np.nan_to_num(frame.select(mu).to_numpy().astype(np.float32), nan=np.inf)
            frame = frame.drop(mu)
            where = {name: [(c, f"mu:{mu.index(c)}" if c in mu else w) for c, w in cols] for name, cols in where.items()}
        side = frame.select(shadowed) if shadowed else None
        return cls(frame.drop(shadowed), labels, latents, sets, store, where, side)

    # -- columns ----------------------------------------------------------------------------
    def score_columns(self) -> list[str]:
        """Numeric columns to rank by, the preferred scores first."""
        first = [c for c in PREFERRED_SCORES if c in self.numeric]
        return first + [c for c in self.numeric if c not in first]

    def default_score(self) -> str:
        return self.score_columns()[0] if self.numeric else "source_id"

    def columns(self, score: str | None) -> list[str]:
        """The columns the table shows: id, the ranking score, position, counts, labels and the main scores."""
        main = [c for c in ("ra", "dec", "abs_gal_b", "n_bins", "n_points") if c in self.frame.columns]
        nets = [c for c in self.frame.columns if c.startswith("net_counts_b")]
        extra = [c for c in ("discovery_score", "combined_score", "variable_fpp", "anomaly_fpp", "anomaly_score", "hr_12", "hr_23")
                 if c in self.frame.columns]
        cols = ["source_id", *([score] if score and score != "source_id" else []), *main, *nets, *extra, "label"]
        return list(dict.fromkeys(cols))

    def schema(self) -> dict[str, pl.DataType]:
        return dict(self.frame.schema) | {c: pl.String for c in LABEL_COLUMNS if c != "n_labels"} | {"n_labels": pl.Int64}

    # -- queries ----------------------------------------------------------------------------
    def _label_stamp(self) -> int:
        path = self.labels.path
        return path.stat().st_size if path.exists() else 0  # append-only: a new label changes the size

    def labelled(self) -> pl.DataFrame:
        """Latest label per source, re-read from the log only when it has grown (every page asks)."""
        stamp = self._label_stamp()
        with self._lock:
            if self._labels_cache is not None and self._labels_cache[0] == stamp:
                return self._labels_cache[1]
        latest = self.labels.latest()
        with self._lock:
            self._labels_cache = (stamp, latest)
        return latest

    def select(self, q: Query, with_labels: bool = True, base: pl.DataFrame | None = None) -> pl.DataFrame:
        """Every source that ``q`` keeps, in its order (the full selection, not a page).

        Labels are joined to the selection only when asked (``with_labels``) or filtered on: the
        join of a million rows is what a page must not pay for.
        """
        score = q.score or self.default_score()
        if score not in self.frame.columns:
            raise FilterError(f"no score column {score!r}")
        if q.label_state not in LABEL_STATES:
            raise FilterError(f"unknown label state {q.label_state!r} (one of {', '.join(LABEL_STATES)})")
        expr = filter_expression(q.filter_query, self.schema())
        by = [s["column_id"] for s in q.sort_by]
        needs_labels = (expr is not None and any(c in LABEL_COLUMNS for c in expr.meta.root_names())) or \
            any(c in LABEL_COLUMNS for c in by)
        labels = self.labelled()
        base = self.frame if base is None else base
        frame = base.join(labels, on="source_id", how="left") if needs_labels else base
        if expr is not None:
            frame = frame.filter(expr)
        if q.label_state in ("unlabelled", "labelled"):
            keep = pl.col("source_id").is_in(labels["source_id"].implode())
            frame = frame.filter(~keep if q.label_state == "unlabelled" else keep)
        elif q.label_state != "any":
            frame = frame.filter(pl.col("source_id").is_in(labels.filter(pl.col("label") == q.label_state)["source_id"].implode()))
        if q.cone is not None:
            frame = frame.filter(pl.col("source_id").is_in(pl.Series(self.cone_ids(*q.cone), dtype=pl.String).implode()))
        if by:
            unknown = [c for c in by if c not in frame.columns]
            if unknown:
                raise FilterError(f"cannot sort by unknown column(s) {unknown}")
            frame = frame.sort(by, descending=[s.get("direction") == "desc" for s in q.sort_by], nulls_last=True)
        else:
            descending = q.descending if q.descending is not None else not ASCENDING.fullmatch(score)
            frame = frame.sort(score, descending=descending, nulls_last=True, maintain_order=True)
        if with_labels and not needs_labels:
            frame = frame.join(labels, on="source_id", how="left", maintain_order="left")
        return frame

    def _rows(self, q: Query) -> np.ndarray:
        """Row numbers of ``q``'s selection in its order, cached: paging through a million rows is a slice."""
        stamp = self._label_stamp()
        key = (q.score, q.descending, q.filter_query, q.label_state, q.cone, tuple((s["column_id"], s.get("direction")) for s in q.sort_by), stamp)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        rows = self.select(q, with_labels=False, base=self._indexed)["_row"].to_numpy()
        with self._lock:
            self._cache[key] = rows
            while len(self._cache) > 8:
                self._cache.pop(next(iter(self._cache)))
        return rows

    def page(self, q: Query) -> tuple[pl.DataFrame, int]:
        """(rows of page ``q.page``, number of rows the query keeps); remembers the order for next/previous."""
        rows = self._rows(q)
        with self._lock:
            self._order = rows
        lo = max(q.page, 0) * q.page_size
        part = self.frame[rows[lo:lo + q.page_size]].join(self.labelled(), on="source_id", how="left", maintain_order="left")
        return part.select([c for c in self.columns(q.score or self.default_score()) if c in part.columns]), len(rows)

    def neighbour_in_order(self, source_id: str, step: int) -> str | None:
        """The source ``step`` places after ``source_id`` in the last query's order (the default ranking if none)."""
        with self._lock:
            order = self._order
        if order is None:
            order = self._rows(Query())
        hits = np.flatnonzero(order == self.row.get(source_id, -1))
        if len(hits) == 0:
            return self.frame["source_id"][int(order[0])] if len(order) else None
        i = int(hits[0]) + step
        return self.frame["source_id"][int(order[i])] if 0 <= i < len(order) else None

    def cone_ids(self, ra: float, dec: float, radius_arcsec: float) -> list[str]:
        """Sources within ``radius_arcsec`` of (ra, dec), exact on the sphere (the store's sky index)."""
        if self.store is None:
            raise FilterError("a cone needs the store's sky index")
        try:
            return self.store.cone(float(ra), float(dec), float(radius_arcsec)).select("source_id").collect()["source_id"].to_list()
        except (TypeError, ValueError) as exc:
            raise FilterError(f"cone: {exc}") from None

    def source(self, source_id: str) -> dict | None:
        """One source's row (catalog + features + label), or None if the store has no such source."""
        i = self.row.get(source_id)
        if i is None:
            return None
        row = self.frame.slice(i, 1).to_dicts()[0]
        label = self.labelled().filter(pl.col("source_id") == source_id)
        return row | (label.to_dicts()[0] if label.height else {c: None for c in LABEL_COLUMNS})

    def feature_values(self, source_id: str) -> dict[str, list[tuple[str, object]]]:
        """Every feature set's own values for one source, ``{set: [(column, value), ...]}``, from memory."""
        i = self.row.get(source_id)
        if i is None:
            return {}
        row = self.frame.row(i, named=True)
        side = self.shadowed.row(i, named=True) if self.shadowed is not None else {}
        out = {}
        for name, cols in self.set_columns.items():
            values = []
            for column, where in cols:
                if where == "frame":
                    value = row[column]
                elif where.startswith("mu:"):
                    value = float(self.latents[i, int(where[3:])])
                    value = None if not np.isfinite(value) else value  # inf marks a source without latents
                else:
                    value = side[where]
                values.append((column, value))
            out[name] = values
        return out

    def similar(self, source_id: str, k: int = 6) -> list[tuple[str, float]]:
        """The ``k`` nearest sources in the VAE latent space (else in the standardised features)."""
        i = self.row.get(source_id)
        if i is None:
            return []
        space = self.latents if self.latents is not None else self._feature_space()
        d = np.sum((space - space[i]) ** 2, axis=1)
        d[i] = np.inf
        d = np.nan_to_num(d, nan=np.inf)
        k = min(k, len(d) - 1)
        if k <= 0:
            return []
        top = np.argpartition(d, k - 1)[:k]
        top = top[np.argsort(d[top])]
        ids = self.frame["source_id"]
        return [(ids[int(j)], float(np.sqrt(d[j]))) for j in top if np.isfinite(d[j])]

    def _feature_space(self) -> np.ndarray:
        if getattr(self, "_space", None) is None:
            x, _ = feature_matrix(self.frame)
            sd = x.std(axis=0)
            self._space = ((x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)).astype(np.float32)
        return self._space

    def export(self, q: Query, fmt: str) -> bytes:
        """The whole selection of ``q`` (every column) as CSV or Parquet bytes."""
        frame = self.select(q)
        buf = io.BytesIO()
        if fmt == "csv":
            frame.select([c for c in frame.columns if frame.schema[c] != pl.Object]).write_csv(buf)
        elif fmt == "parquet":
            frame.write_parquet(buf, compression="zstd")
        else:
            raise FilterError(f"unknown export format {fmt!r} (csv or parquet)")
        return buf.getvalue()
