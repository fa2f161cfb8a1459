"""False-positive probabilities of variability scores, calibrated on simulated constant sources.

The thresholds the eROSITA variability papers use were calibrated on simulated Poisson light
curves of constant sources, as a function of the number of bins and the count rate
(Buchner et al. 2022, A&A 661, A18, Sect. 3; Bogensberger, Nandra & Buchner 2024, A&A,
doi:10.1051/0004-6361/202346368, Sect. 4). This module does the same for any store, with the
store's own exposure, background and error patterns (:mod:`features.null_model`):

* **Null table.** The null sources' scores are grouped into cells: per band, first by the
  number of bins (up to :data:`N_BIN_GROUPS` groups at quantiles of the null's distribution),
  then within each group by net counts (up to :data:`N_COUNT_CELLS` cells at quantiles, at
  least :data:`MIN_CELL` null sources each). The false-positive probability (FPP) of a score
  ``t`` in a cell of ``n`` null values is ``(1 + #{null >= t}) / (1 + n)`` (the
  ``+1`` makes it a valid p-value: never zero, and P(FPP <= a) <= a under the null), linearly
  interpolated in log net counts between the two nearest cell centres of the source's bin
  group, as the published thresholds are interpolated between simulated count rates.
  A null score that is undefined (NaN, e.g. NEV of a light curve with a non-positive mean) counts
  as not exceeding anything: the FPP is the probability of a null source *flagging*.
* **Tails.** A cell of ``n`` null values cannot resolve FPPs below ``1 / n``, yet a 3-sigma flag
  over three bands needs 0.045 % per band and real variables sit far beyond. Up to the cell's
  largest null value the FPP is the empirical one; beyond it, the survival function is
  extrapolated with the peaks-over-threshold model of extreme-value theory (Coles 2001,
  *An Introduction to Statistical Modeling of Extreme Values*, Sect. 4.2-4.3): the excesses of
  the top ``TAIL_FRACTION`` of the cell over their threshold ``u`` are fitted with a generalised
  Pareto law (maximum likelihood, scipy) and with an exponential (its shape-0 case, scale = the
  mean excess), the heavier of the two is used, and it is scaled to meet the empirical value
  at the largest null value. Taking the heavier tail errs on the side of fewer false detections.
* **Bands and statistics combined.** A source is flagged by a statistic when its *smallest*
  per-band FPP is small, and by the combined flag when the smallest over all statistics and bands
  is. Rather than a Sidak or Bonferroni factor (the bands of one source share its template, and
  the three statistics see the same counts, so neither independence nor the worst case holds),
  each minimum is calibrated on the null's own distribution of that minimum:
  ``<stat>_fpp = (1 + #{m_null <= m}) / (1 + n)`` (:func:`empirical_fpp`), measured on null
  sources that did **not** build the per-band tables (the null is split in two halves), so it
  corrects for exactly the trials made.

A flag at 3 sigma (one-sided, :data:`FPP_3SIGMA` = 1 - Phi(3) = 0.135 %) is ``fpp <= FPP_3SIGMA``.
The calibration holds for sources like the store's own: the null model is a model, and its
check (a second, independent null sample) is part of the test suite and the science report.

Shape legend: N = sources, C = cells of a bin group.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import special, stats

#: Bump when the tabulation or the tail model changes (part of the calibrated sets' lineage).
CALIBRATION_VERSION = 2
#: One-sided 3-sigma false-positive probability, 1 - Phi(3).
FPP_3SIGMA = float(special.ndtr(-3.0))
N_BIN_GROUPS = 3
N_COUNT_CELLS = 8
MIN_CELL = 1000
#: Fraction of each cell's null values above the tail threshold ``u``.
TAIL_FRACTION = 0.05


@dataclass
class NullTable:
    """Sorted null scores per cell, for one score of one band (module docstring).

    Attributes
    ----------
    bin_edges : ndarray
        Inner edges between bin-count groups (a source with ``n`` bins is in group
        ``searchsorted(bin_edges, n, side="right")``).
    centres : list of ndarray
        Per group, the cells' median log10 net counts (increasing).
    values : list of list of ndarray
        Per group and cell, the null scores sorted, NaN as -inf.
    """

    bin_edges: np.ndarray
    centres: list[np.ndarray]
    values: list[list[np.ndarray]]

    @classmethod
    def build(cls, score: np.ndarray, net_counts: np.ndarray, n_bins: np.ndarray) -> "NullTable":
        """Tabulate null scores (N,) with their net counts (N,) and numbers of bins (N,)."""
        score = np.where(np.isfinite(score), score, -np.inf)
        log_net = _log_counts(net_counts)
        n_groups = int(np.clip(len(score) // (MIN_CELL * 2), 1, N_BIN_GROUPS))
        edges = np.unique(np.quantile(n_bins, np.linspace(0, 1, n_groups + 1)[1:-1], method="lower")) if n_groups > 1 else np.array([])
        group = np.searchsorted(edges, n_bins, side="right")
        centres, values = [], []
        for g in range(len(edges) + 1):
            members = group == g
            if not members.any():  # an edge repeated by ties: keep the group index space dense
                centres.append(np.array([0.0]))
                values.append([np.array([-np.inf])])
                continue
            x, s = log_net[members], score[members]
            n_cells = int(np.clip(len(x) // MIN_CELL, 1, N_COUNT_CELLS))
            order = np.argsort(x, kind="stable")
            cells = np.array_split(order, n_cells)
            centres.append(np.array([np.median(x[c]) for c in cells]))
            values.append([np.sort(s[c]) for c in cells])
        return cls(edges, centres, values)

    def fpp(self, score: np.ndarray, net_counts: np.ndarray, n_bins: np.ndarray) -> np.ndarray:
        """False-positive probability of each score (N,); NaN where the score is NaN."""
        score = np.asarray(score, "f8")
        out = np.full(score.shape, np.nan)
        log_net = _log_counts(net_counts)
        group = np.searchsorted(self.bin_edges, np.asarray(n_bins), side="right")
        for g, (centres, cells) in enumerate(zip(self.centres, self.values)):
            rows = np.flatnonzero((group == g) & np.isfinite(score))
            if not len(rows):
                continue
            sf = np.stack([_survival(v, score[rows]) for v in cells])  # (C, n)
            x = np.clip(log_net[rows], centres[0], centres[-1])
            hi = np.clip(np.searchsorted(centres, x, side="left"), 1, len(centres) - 1) if len(centres) > 1 else np.zeros(len(x), int)
            lo = np.maximum(hi - 1, 0)
            span = centres[hi] - centres[lo]
            w = np.where(span > 0, (x - centres[lo]) / np.where(span > 0, span, 1.0), 0.0)
            cols = np.arange(len(rows))
            out[rows] = (1.0 - w) * sf[lo, cols] + w * sf[hi, cols]
        return out


#: The smallest positive double: an FPP of 0 (a tail that underflowed) ranks as 10^-308.
TINY = float(np.finfo(float).tiny)


def significance(fpp: pl.Expr | str, floor: float = TINY, undefined: float | None = 1.0) -> pl.Expr:
    """-log10 FPP as a score (higher = more significant, 0 = unremarkable), the one definition.

    Parameters
    ----------
    fpp : expression or column name
    floor : float
        FPPs below it count as ``floor`` (default: none in practice).
    undefined : float or None
        The FPP an undefined value (null, NaN) counts as: 1 (a score of 0, for rankings), or None
        to keep it undefined (null: for models that fill missing inputs themselves).
    """
    expr = pl.col(fpp) if isinstance(fpp, str) else fpp
    if undefined is None:
        expr = expr.fill_nan(None)
    else:
        expr = expr.fill_null(undefined).fill_nan(undefined)
    return -expr.clip(floor, 1.0).log10()


def column_fpp(null: pl.DataFrame, frame: pl.DataFrame, score: str, n_bins: str, net_counts: str = "net_counts") -> np.ndarray:
    """FPPs (N,) of ``frame[score]`` under the :class:`NullTable` of ``null[score]``.

    Both frames carry the score, the net counts and the number of bins under the same column names.
    """
    table = NullTable.build(null[score].to_numpy(), null[net_counts].to_numpy(), null[n_bins].to_numpy())
    return table.fpp(frame[score].to_numpy(), frame[net_counts].to_numpy(), frame[n_bins].to_numpy())


def _survival(null: np.ndarray, score: np.ndarray) -> np.ndarray:
    """P(null >= score) from sorted null values: empirical up to the largest, a fitted tail beyond."""
    n = len(null)
    empirical = (1.0 + n - np.searchsorted(null, score, side="left")) / (1.0 + n)
    n_tail = int(np.ceil(TAIL_FRACTION * n))
    finite = null[np.isfinite(null)]
    if n_tail < 10 or len(finite) < n_tail + 1:
        return empirical
    u, top = finite[-n_tail - 1], finite[-1]
    excess = finite[-n_tail:] - u
    if not excess.mean() > 0:  # a tail of ties: nothing to extrapolate from
        return empirical
    shape, _, scale = stats.genpareto.fit(excess, floc=0.0)

    def tail(t):  # the heavier of the exponential and the fitted generalised Pareto excess laws
        return np.maximum(np.exp(-(t - u) / excess.mean()), stats.genpareto.sf(t - u, shape, 0.0, scale))

    with np.errstate(divide="ignore", invalid="ignore"):
        beyond = empirical * tail(np.maximum(score, top)) / tail(top)  # continuous at the largest null value
    return np.where(score > top, np.where(np.isfinite(beyond), beyond, empirical), empirical)


def _log_counts(net_counts: np.ndarray) -> np.ndarray:
    """log10 of net counts, with anything below one count (or NaN) put at one count."""
    net = np.asarray(net_counts, "f8")
    return np.log10(np.where(np.isfinite(net), np.maximum(net, 1.0), 1.0))


def empirical_fpp(null_scores: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """FPP of small-is-significant scores (N,) from their null values; NaN stays NaN.

    ``(1 + #{null <= s}) / (1 + n)``; below the smallest null value ``s0`` it continues in
    proportion, ``fpp(s0) x s / s0`` (the scores here are themselves probabilities, and a
    minimum of ``K`` small probabilities scales linearly: ``1 - (1 - p)^K ~ K p``).
    """
    null = np.sort(np.where(np.isfinite(null_scores), null_scores, np.inf))
    scores = np.asarray(scores, "f8")
    finite = np.isfinite(scores)
    count = np.searchsorted(null, np.where(finite, scores, 0.0), side="right")
    fpp = (1.0 + count) / (1.0 + len(null))
    if len(null) and np.isfinite(null[0]) and null[0] > 0:
        fpp = np.where(scores < null[0], fpp * np.maximum(scores, 0.0) / null[0], fpp)
        fpp = np.maximum(fpp, np.finfo(float).tiny)
    return np.where(finite, fpp, np.nan)
