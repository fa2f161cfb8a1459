"""Label-driven ranking: the unsupervised score first, then what the user's labels teach.

A search for rare sources starts from an unsupervised ranking (``discovery_score``); the user
labels the top candidates. :class:`LabelRanker` re-ranks every unlabelled source after each
label (or batch of labels) by a classifier of *"like what the user called interesting"*:

* **Positive-unlabelled learning** (Elkan & Noto 2008, "Learning classifiers from only positive
  and unlabeled data", KDD, Sec. 2): the labelled positives against every other source, the
  unlabelled ones counting as negatives. When the labelled positives are a random draw of the
  positives (here: the ones the ranking showed), the classifier's score is a monotone function
  of P(positive | x) (their Lemma 1), so the ranking it gives is the one wanted, although
  the unlabelled sources hold positives too. Rare classes are ~1 % of a survey, so treating
  the unlabelled as negative costs little and gives the classifier thousands of examples.
* **Negatives** the user labelled (``boring``, ``artefact``, ``known``) weigh as much together
  as the unlabelled sources: they are the hard cases, high on the ranking and yet not wanted.
* **The prior**, the unsupervised score (as a normal score of its rank, so that its heavy tail
  neither dominates nor is clipped), is one of the classifier's inputs: it keeps what the ranking
  already knew and the labels decide how much it counts. Before any label the ranking is the prior;
  with n positives it is the prior and the classifier mixed, the classifier's share n / (n + 3)
  (both as rank normal scores), because a classifier of two or three positives generalises
  poorly: on the benchmark's three archives this shrinkage found 64 instead of 56 rare sources
  among the labelled plus the next 100 after 10 labels, and 74 instead of 71 after 30.
  With negatives but no positive yet, a classifier of the unlabelled sources against the
  negatives lowers the prior of the sources that look more like the rejected ones than like the
  survey at large (its log-odds where negative, added to the prior's normal score), so a user who
  rejects the strongest flares is shown what the prior ranks next *unlike* them.

The classifier is an L2-regularised logistic regression on robustly standardised features
(every set and the latents, ``features.active.feature_matrix``): with tens of labels it
generalises where trees would memorise, and one re-fit on a sample of ``max_unlabelled`` (5,000)
unlabelled sources takes about 0.1 s at 20,000 sources (all are scored). Its results are
measured with a simulated user in ``benchmarks/discovery.py``.

Shape legend: N = sources, F = features.
"""

from __future__ import annotations

import numpy as np

from common.extras import require

#: Labels that mean "more like this" (the anomalies a user wants) and "not what I look for" (even
#: when physically unusual).
ANOMALY_LABELS = ("variable", "interesting")
REGULAR_LABELS = ("boring", "artefact", "known")
#: Standardised features are clipped here: one extreme value must not decide a linear model.
CLIP = 8.0


def standardise(x: np.ndarray) -> np.ndarray:
    """(N, F) features centred on their medians and scaled by a robust spread (IQR / 1.349, else
    the standard deviation, else 1), clipped to +-``CLIP``."""
    median = np.median(x, axis=0)
    q75, q25 = np.percentile(x, [75, 25], axis=0)
    spread = (q75 - q25) / 1.349
    std = x.std(axis=0)
    spread = np.where(spread > 0, spread, np.where(std > 0, std, 1.0))
    return np.clip((x - median) / spread, -CLIP, CLIP)


def normal_scores(values: np.ndarray) -> np.ndarray:
    """(N,) standard normal quantiles of the ranks of ``values`` (ties share their mean rank; order kept)."""
    from scipy.special import ndtri
    from scipy.stats import rankdata

    return ndtri((rankdata(values) - 0.5) / len(values)) if len(values) else np.zeros(0)


def import_classifier():
    """The classifier's class, imported (scikit-learn's ``LogisticRegression``; the extra named when missing).

    A server calls it before its request threads run: scikit-learn imports pandas, and plotly
    looks pandas up in ``sys.modules`` without importing it, so a figure drawn in one thread while
    the first "next candidate" imported scikit-learn in another saw a half-imported pandas.
    """
    require("the label-driven ranking", "sklearn")
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression


class Ranking:
    """What every ranker of unlabelled sources has: ``source_ids`` (N,), ``row`` (id -> row),
    ``labelled`` (N,) bool and ``anomaly`` (N,) scores, higher = shown first."""

    source_ids: np.ndarray
    row: dict
    labelled: np.ndarray
    anomaly: np.ndarray

    def next(self, k: int = 1, exclude=()) -> list[str]:
        """The ``k`` highest-ranked sources neither labelled nor in ``exclude``."""
        score = np.where(self.labelled, -np.inf, self.anomaly)
        for s in exclude:
            if s in self.row:
                score[self.row[s]] = -np.inf
        k = min(k, int((score > -np.inf).sum()))
        top = np.argpartition(-score, k - 1)[:k] if k else np.array([], dtype=int)
        return self.source_ids[top[np.argsort(-score[top], kind="stable")]].tolist()

    def _mark(self, source_ids, labels) -> tuple[np.ndarray, np.ndarray]:
        """Mark the rows of ``source_ids`` labelled (and no others); their rows and labels, ids unknown
        to the ranker left out."""
        rows = np.array([self.row.get(s, -1) for s in source_ids], dtype=int)
        keep = rows >= 0
        self.labelled[:] = False
        self.labelled[rows[keep]] = True
        return rows[keep], np.asarray(labels, dtype=object)[keep]


class LabelRanker(Ranking):
    """Ranks unlabelled sources by the prior, then by a positive-unlabelled classifier of the labels.

    Parameters
    ----------
    source_ids : (N,) source ids, in the rows' order of ``x``.
    x : (N, F) features (``features.active.feature_matrix``, latents appended where the store has them).
    prior : (N,) the unsupervised score, higher = more wanted (``discovery_score``); None: zeros.
    seed : random seed of the unlabelled sample.
    max_unlabelled : unlabelled sources a re-fit uses at most (a seeded sample; all sources are scored).
    c : inverse regularisation strength of the logistic regression.
    shrink : with n positives the ranking is ``(1 - w) * prior + w * classifier`` (both as normal
        scores of their ranks), ``w = n / (n + shrink)``: one positive moves it a quarter of the way.
    """

    def __init__(self, source_ids, x: np.ndarray, prior: np.ndarray | None = None, seed: int = 0,
                 max_unlabelled: int = 5_000, c: float = 0.1, shrink: float = 3.0):
        self.source_ids = np.asarray(source_ids)
        self.row = {s: i for i, s in enumerate(self.source_ids.tolist())}
        prior = np.zeros(len(x)) if prior is None else np.asarray(prior, dtype=np.float64)
        finite = np.isfinite(prior)
        self.prior = np.where(finite, prior, np.nanmin(prior[finite]) - 1 if finite.any() else 0.0)
        self.prior_z = normal_scores(self.prior)
        self.z = standardise(np.asarray(x, dtype=np.float64))
        self.seed, self.max_unlabelled, self.c, self.shrink = seed, max_unlabelled, c, shrink
        self.labelled = np.zeros(len(self.z), dtype=bool)
        self.anomaly = self.prior_z.copy()

    def update(self, source_ids, labels) -> np.ndarray:
        """Re-fit from every label so far (ids unknown to the ranker and other labels are ignored); (N,) scores."""
        rows, labels = self._mark(source_ids, labels)
        positive = np.unique(rows[np.isin(labels, ANOMALY_LABELS)])
        negative = np.setdiff1d(rows[np.isin(labels, REGULAR_LABELS)], positive)
        if not len(positive) and not len(negative):
            self.anomaly = self.prior_z.copy()
            return self.anomaly
        unlabelled = np.flatnonzero(~self.labelled)
        if len(unlabelled) > self.max_unlabelled:
            unlabelled = np.random.default_rng(self.seed).choice(unlabelled, self.max_unlabelled, replace=False)
        if not len(positive):  # rejected ones only: lower what looks like them
            like_survey = self._fit([(unlabelled, 1), (negative, 0)], self.z)
            self.anomaly = self.prior_z + np.minimum(like_survey.decision_function(self.z), 0.0)
            return self.anomaly
        # positives weigh as much as the rest together; labelled negatives as much as the unlabelled
        z = np.hstack([self.z, self.prior_z[:, None]])
        learned = normal_scores(self._fit([(positive, 1), (negative, 0), (unlabelled, 0)], z).decision_function(z))
        # a few positives say little: the classifier takes over from the prior as they accumulate
        weight = len(positive) / (len(positive) + self.shrink)
        self.anomaly = (1.0 - weight) * self.prior_z + weight * learned
        return self.anomaly

    def _fit(self, groups: list[tuple[np.ndarray, int]], z: np.ndarray):
        """A logistic regression of the rows of ``groups`` ((rows, 0 or 1), ...) of ``z`` (N, F): each
        class weighs one in total, split evenly among its groups and within a group among its rows."""
        LogisticRegression = import_classifier()

        groups = [(g, y) for g, y in groups if len(g)]
        per_class = {y: sum(1 for _, k in groups if k == y) for _, y in groups}
        x = np.vstack([z[g] for g, _ in groups])
        y = np.concatenate([np.full(len(g), y) for g, y in groups])
        weight = np.concatenate([np.full(len(g), 1.0 / per_class[y] / len(g)) for g, y in groups])
        return LogisticRegression(C=self.c, max_iter=500).fit(x, y, sample_weight=weight * len(y))
