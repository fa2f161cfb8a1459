"""Label-driven ranking: the prior first, then positives, negatives and the unlabelled move it."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from features.active import make_ranker, prior_score, simulate_expert
from features.feedback import LabelRanker, standardise


def survey(seed: int = 0):
    """2,000 common sources, 20 wanted ones in one corner of feature space and 60 unwanted but
    stronger outliers; the prior (an unsupervised score) ranks the unwanted first and has the
    wanted only a little above the common ones."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2080, 6))
    x[2000:2020, :2] += 4.0  # wanted
    x[2020:, 2:4] += 6.0  # unwanted
    prior = x[:, 2] + x[:, 3] + 0.3 * (x[:, 0] + x[:, 1]) + rng.normal(scale=0.5, size=len(x))
    ids = np.array([f"s{i:04d}" for i in range(len(x))])
    return ids, x, prior, set(ids[2000:2020])


def test_before_a_label_the_ranking_is_the_prior():
    ids, x, prior, _ = survey()
    ranker = LabelRanker(ids, x, prior)
    np.testing.assert_array_equal(ranker.next(len(ids)), ids[np.argsort(-prior, kind="stable")])
    first = ranker.next(1)[0]
    ranker.update([first, "not-a-source"], ["boring", "interesting"])  # unknown ids are ignored
    assert ranker.labelled.sum() == 1 and first not in ranker.next(len(ids))
    ranker.update([], [])
    np.testing.assert_array_equal(ranker.next(len(ids)), ids[np.argsort(-prior, kind="stable")])


def test_labels_find_what_the_prior_buries():
    ids, x, prior, wanted = survey()
    oracle = lambda s: "interesting" if s in wanted else "boring"  # noqa: E731
    by_prior = ids[np.argsort(-prior)[:60]]
    assert sum(s in wanted for s in by_prior) <= 5  # the prior alone shows the unwanted outliers
    shown = simulate_expert(LabelRanker(ids, x, prior), oracle, 60)
    assert len(set(shown)) == 60
    assert sum(s in wanted for s in shown) >= 15


def test_one_positive_moves_its_neighbours_up():
    ids, x, prior, wanted = survey(1)
    ranker = LabelRanker(ids, x, prior)
    before = ranker.next(200)
    positive = sorted(wanted)[0]
    ranker.update([positive], ["interesting"])
    after = ranker.next(20)
    assert positive not in after
    assert sum(s in wanted for s in after) > sum(s in wanted for s in before[:20]) + 5


def test_negatives_push_their_kind_down():
    ids, x, prior, wanted = survey(2)
    unwanted = set(ids[2020:])
    ranker = LabelRanker(ids, x, prior)
    rejected = [s for s in ranker.next(10) if s not in wanted]
    one_wanted = min(wanted)
    ranker.update([one_wanted], ["interesting"])
    with_positive = ranker.next(40)
    ranker.update([one_wanted, *rejected], ["interesting"] + ["boring"] * len(rejected))
    with_negatives = ranker.next(40)
    # the rejected sources' kind loses at least a third of its places; the wanted keep theirs
    assert sum(s in unwanted for s in with_negatives) <= 2 * sum(s in unwanted for s in with_positive) / 3
    assert sum(s in wanted for s in with_negatives) >= sum(s in wanted for s in with_positive)


def test_the_classifier_takes_over_as_positives_accumulate():
    ids, x, prior, wanted = survey(3)
    positives = sorted(wanted)
    share = []
    for n in (1, 5, 15):
        ranker = LabelRanker(ids, x, prior)
        ranker.update(positives[:n], ["interesting"] * n)
        share.append(sum(s in wanted for s in ranker.next(20)) / (len(wanted) - n))  # of the wanted still unlabelled
    assert share[0] < share[1] < share[2] == 1.0, share


def test_standardise_is_robust_and_clipped():
    x = np.array([[0.0, 5.0], [1.0, 5.0], [2.0, 5.0], [3.0, 5.0], [1e9, 5.0]])
    z = standardise(x)
    assert np.isfinite(z).all() and z[:, 1].tolist() == [0.0] * 5 and z[-1, 0] == 8.0


def test_prior_and_model_choice():
    frame = pl.DataFrame({"source_id": ["a", "b", "c"], "variable_fpp": [1e-5, 0.5, None], "discovery_score": [1.0, 3.0, None]})
    assert prior_score(frame)[:2].tolist() == [1.0, 3.0]
    assert prior_score(frame.drop("discovery_score"))[0] == pytest.approx(5.0)  # the combined significance
    assert prior_score(frame.select("source_id")) is None
    ranker = make_ranker(frame, np.zeros((3, 1)))
    assert isinstance(ranker, LabelRanker) and ranker.next(1) == ["b"]
    assert ranker.next(3)[-1] == "c"  # a missing prior ranks last
