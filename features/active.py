"""Active learning: rank unlabelled sources by a model updated from experts' labels.

    python -m features.active --store STORE [--labels FILE] [--n 20] [--model learn|aad|pine]

The default model, ``learn`` (:class:`features.feedback.LabelRanker`), starts from the store's
unsupervised ranking (``discovery_score``, else the combined variability significance) and
re-ranks by a positive-unlabelled classifier of the labels: what finds the most rare sources per
label in ``benchmarks/discovery.py``. The forests are the alternatives: coniferest's Active
Anomaly Discovery forest (``AADForest``; Das et al. 2017,
"Incorporating expert feedback into tree-based anomaly detection", arXiv:1708.09441, as used
by SNAD on ZTF: Ishida et al. 2021, A&A 650, A195) or its ``PineForest`` (Korolev et al. 2024,
tree filtering from labels). Both start as an isolation forest (Liu et al. 2008) on the
source's features and re-weight (AAD) or re-select (Pine) trees so that sources labelled
*anomalous* score high and *regular* ones low.

Labels map to the forest's two kinds: ``variable`` and ``interesting`` are the anomalies a
user wants more of; ``boring``, ``artefact`` and ``known`` are regular (not what the search is
for, even when physically unusual). Features (``feature_matrix``): the calibrated
significances -log10 FPP of the classical statistics and of the VAE, the raw VAE score, hardness
ratios, total net counts, number of bins, the cross-band tests (``morphology``, ``discovery``) and the
VAE latent means where those sets exist.

The same loop runs without a browser (``ActiveRanker``, ``simulate_expert``, the CLI) so it
can be benchmarked (``benchmarks/active_learning.py``).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable

import numpy as np
import polars as pl

from common import cli
from common.errors import UserError
from common.extras import require
from features.calibration import significance
from features.feedback import ANOMALY_LABELS, REGULAR_LABELS, LabelRanker, Ranking

FPP_COLUMNS = ("variable_fpp", "ampl_sig_fpp", "nev_fpp", "bexvar_fpp", "anomaly_fpp")
#: Per-band FPPs of the cross-band tests (morphology's lbo, discovery's surprise), used when present.
BAND_FPP = re.compile(r"^(lbo|surprise)_fpp_b\d+$")
LOG_COLUMNS = ("anomaly_score", "anomaly_chi2")
PLAIN_COLUMNS = ("hr_12", "hr_23", "n_bins", "time_span_d", "mean_fracexp", "discovery_score")
MODELS = ("learn", "aad", "pine")
#: The unsupervised scores a ``learn`` ranking starts from, first present wins (higher = more wanted).
PRIOR_COLUMNS = ("discovery_score", "combined_score")
#: The feature sets a ranking reads, when the store has them.
RANKING_SETS = ("variability", "poisson_variability", "morphology", "vae_anomaly", "vae_latent", "discovery")
#: The forest's inputs clip significances here: beyond it a source is "certainly variable", and a
#: feature spanning 1e-12 to 1e-300 would let that one axis isolate everything.
FOREST_MIN_FPP = 1e-12
def combined_score(columns: list[str]) -> pl.Expr | None:
    """The larger of the classical and the VAE significance: one score to rank everything by.

    Not capped: two sources with FPPs of 1e-13 and 1e-45 rank in that order.
    """
    present = [c for c in ("variable_fpp", "anomaly_fpp") if c in columns]
    if not present:
        return None
    return pl.max_horizontal([significance(c) for c in present]).alias("combined_score")


def feature_columns(columns: list[str]) -> list[pl.Expr]:
    """The forest's inputs available among ``columns`` (a joined feature frame's columns)."""
    exprs = [significance(c, FOREST_MIN_FPP, undefined=None).alias(f"sig_{c}") for c in [*FPP_COLUMNS, *filter(BAND_FPP.match, columns)]
             if c in columns]
    exprs += [pl.col(c).clip(1e-9).log10().alias(f"log_{c}") for c in LOG_COLUMNS if c in columns]
    exprs += [pl.col(c).cast(pl.Float64) for c in PLAIN_COLUMNS if c in columns]
    nets = [c for c in columns if c.startswith("net_counts_b")]
    if nets:
        exprs.append(pl.sum_horizontal(nets).clip(1.0).log10().alias("log_net_counts"))
    exprs += [pl.col(c) for c in columns if c.startswith("mu_")]
    return exprs


def feature_matrix(frame: pl.DataFrame) -> tuple[np.ndarray, list[str]]:
    """(N, F) float matrix of the forest's features, missing values set to the column median."""
    exprs = feature_columns(frame.columns)
    if not exprs:
        raise RankingError("no features to rank by: build poisson_variability / variability / vae_anomaly first")
    x = frame.select(exprs)
    x = x.with_columns(pl.col(c).cast(pl.Float64).fill_nan(None).fill_null(pl.col(c).median()).fill_null(0.0) for c in x.columns)
    return x.to_numpy(), x.columns


class RankingError(UserError, ValueError):
    """Nothing to rank by, or a ranking asked for that cannot be made."""


def _coniferest():
    require("active anomaly detection", "coniferest")
    from coniferest.aadforest import AADForest
    from coniferest.label import Label
    from coniferest.pineforest import PineForest

    return {"aad": AADForest, "pine": PineForest}, Label


def forest_labels(labels: list[str] | np.ndarray) -> np.ndarray:
    """coniferest's labels for ours: -1 anomaly, 1 regular, 0 unknown."""
    _, Label = _coniferest()
    out = np.zeros(len(labels), dtype=int)
    out[np.isin(labels, ANOMALY_LABELS)] = Label.ANOMALY
    out[np.isin(labels, REGULAR_LABELS)] = Label.REGULAR
    return out


class ActiveRanker(Ranking):
    """A forest over ``x`` re-fitted from labels; ranks the unlabelled sources.

    Parameters
    ----------
    source_ids : (N,) source ids, in the rows' order of ``x``.
    x : (N, F) features (``feature_matrix``).
    model : ``"aad"`` (AADForest) or ``"pine"`` (PineForest); ``"learn"`` is :func:`make_ranker`'s.
    seed : random seed of the forest.
    """

    def __init__(self, source_ids, x: np.ndarray, model: str = "aad", seed: int = 0, n_trees: int = 100,
                 n_jobs: int = 2):
        if model not in MODELS[1:]:
            raise ValueError(f"unknown forest {model!r} (one of {', '.join(MODELS[1:])})")
        forests, self._label = _coniferest()
        self.source_ids = np.asarray(source_ids)
        self.row = {s: i for i, s in enumerate(self.source_ids.tolist())}
        self.x = np.ascontiguousarray(x, dtype=np.float64)
        self.forest = forests[model](n_trees=n_trees, random_seed=seed, n_jobs=n_jobs)
        self.forest.fit(self.x)
        self.labelled = np.zeros(len(self.x), dtype=bool)
        self.anomaly = self._score()

    def _score(self) -> np.ndarray:
        return -self.forest.score_samples(self.x)  # coniferest: lower = more anomalous

    def update(self, source_ids, labels) -> np.ndarray:
        """Re-fit from every label so far (ids unknown to the ranker are ignored); (N,) scores."""
        rows, labels = self._mark(source_ids, labels)
        kinds = forest_labels(labels)
        if np.any(kinds != self._label.UNKNOWN):
            self.forest.fit_known(self.x, self.x[rows], kinds)
            self.anomaly = self._score()
        return self.anomaly


def prior_score(frame: pl.DataFrame) -> np.ndarray | None:
    """(N,) the unsupervised score a ``learn`` ranking starts from (``PRIOR_COLUMNS``), None without one."""
    score = combined_score(frame.columns)
    if score is not None and "combined_score" not in frame.columns:
        frame = frame.with_columns(score)
    for column in PRIOR_COLUMNS:
        if column in frame.columns:
            return frame[column].cast(pl.Float64).fill_nan(None).to_numpy()
    return None


def make_ranker(frame: pl.DataFrame, x: np.ndarray, model: str = "learn", seed: int = 0) -> Ranking:
    """The ranker ``model`` names over ``frame``'s sources (rows of ``x`` (N, F), the same order)."""
    if model == "learn":
        return LabelRanker(frame["source_id"], x, prior_score(frame), seed)
    return ActiveRanker(frame["source_id"], x, model, seed)


def simulate_expert(ranker: Ranking, oracle: Callable[[str], str], n_shown: int,
                    feedback: bool = True, after: Callable[[list[str]], None] | None = None) -> list[str]:
    """Show ``n_shown`` candidates one at a time; ``oracle(source_id)`` labels each.

    With ``feedback`` the ranker is re-fitted after every label (what the explorer's "next
    candidate" does), and ``after(shown)`` is called once it is (the benchmark looks at the
    ranking there); without, the candidates are the unsupervised ranking's top ``n_shown``.
    """
    if not feedback:
        return ranker.next(n_shown)
    shown, labels = [], []
    for _ in range(n_shown):
        (source,) = ranker.next(1)
        shown.append(source)
        labels.append(oracle(source))
        ranker.update(shown, labels)
        if after is not None:
            after(shown)
    return shown


def main(argv: list[str] | None = None) -> int:
    from etl.store import open_store
    from features.featurestore import get_features, list_feature_sets
    from features.labels import LabelLog, read_label_rows

    p = argparse.ArgumentParser(prog="python -m features.active", description=__doc__.split("\n\n")[0])
    p.add_argument("--store", required=True)
    p.add_argument("--labels", default=None,
                   help="labels: the store's log (default), another JSONL log, or a CSV with source_id,label")
    p.add_argument("--n", type=int, default=20, help="candidates to print")
    p.add_argument("--model", choices=MODELS, default="learn",
                   help="learn: the unsupervised ranking re-ranked by a classifier of the labels; aad, pine: forests")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the ranking of every unlabelled source here (Parquet or CSV)")
    args = p.parse_args(argv)
    store = open_store(args.store)
    available = set(list_feature_sets(store)["name"].to_list())
    sets = [s for s in RANKING_SETS if s in available]
    frame = get_features(store, sets, catalog_columns=["source_id"]).collect()
    if args.labels and args.labels.endswith(".csv"):
        rows = [r for _, r in read_label_rows(args.labels)]
        labels = pl.DataFrame({"source_id": [r["source_id"] for r in rows], "label": [r["label"] for r in rows]},
                              schema={"source_id": pl.String, "label": pl.String})
    else:  # the store's log, or the JSONL log given
        labels = LabelLog.for_store(store, args.labels).latest()
    x, names = feature_matrix(frame)
    ranker = make_ranker(frame, x, args.model, args.seed)
    ranker.update(labels["source_id"].to_list(), labels["label"].to_list())
    order = np.argsort(-np.where(ranker.labelled, -np.inf, ranker.anomaly), kind="stable")
    order = order[~ranker.labelled[order]]
    ranking = pl.DataFrame({"rank": np.arange(1, len(order) + 1), "source_id": ranker.source_ids[order],
                            "active_score": ranker.anomaly[order]})
    print(f"{len(labels)} labelled sources, {len(names)} features ({', '.join(names[:8])}{', ...' if len(names) > 8 else ''}); "
          f"next {min(args.n, ranking.height)} candidates ({args.model}):")
    with pl.Config(tbl_rows=args.n):
        print(ranking.head(args.n))
    if args.out:
        (ranking.write_csv if args.out.endswith(".csv") else ranking.write_parquet)(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
