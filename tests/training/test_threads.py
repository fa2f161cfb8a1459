"""Choosing the CPU thread count by timing real batches."""

from __future__ import annotations

import torch

from etl.store import open_store
from training.data import BucketedLightCurves, select_sources
from training.model import RNNVAE
from training.threads import thread_candidates, tune_threads


def test_candidates_are_powers_of_two_and_the_core_count():
    assert thread_candidates(1) == [1]
    assert thread_candidates(2) == [1, 2]
    assert thread_candidates(6) == [1, 2, 4, 6]
    assert thread_candidates(8) == [1, 2, 4, 8]


def test_tuning_leaves_weights_gradients_and_rng_alone(train_store):
    sources = select_sources(open_store(train_store).catalog().collect(), "train")
    ds = BucketedLightCurves(train_store, sources, 16, 64, seed=0)
    torch.manual_seed(0)
    model = RNNVAE()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        rng = torch.get_rng_state()
        best, timings = tune_threads(model, ds, 0.001, n_batches=3, rounds=1)
        assert set(timings) == {1, 2} and all(t > 0 for t in timings.values())
        assert best == min(timings, key=timings.get) == torch.get_num_threads()
        assert torch.equal(torch.get_rng_state(), rng)
    finally:
        torch.set_num_threads(threads)
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert model.training


def _stream(store: str) -> BucketedLightCurves:
    return BucketedLightCurves(store, select_sources(open_store(store).catalog().collect(), "train"), 16, 64, seed=0)


def test_one_thread_is_not_timed(train_store):
    ds = _stream(train_store)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert tune_threads(RNNVAE(), ds, 0.001) == (1, {})
    finally:
        torch.set_num_threads(threads)


def test_budget_bounds_the_time_spent(train_store, monkeypatch):
    """Past its budget the tuner times no further candidate, in this round or a later one.

    The clock is the tuner's own reading of time, advanced by 0.1 s per reading, so what is
    checked is the stopping rule, not how fast this machine runs a batch (timing belongs in
    the benchmarks)."""
    import training.threads as threads_module

    class Clock:
        now = 0.0

        def perf_counter(self) -> float:
            self.now += 0.1
            return self.now

    monkeypatch.setattr(threads_module, "time", Clock())
    ds = _stream(train_store)
    model = RNNVAE()
    passes = []
    hook = model.register_forward_hook(lambda *_: passes.append(1))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        best, timings = tune_threads(model, ds, 0.001, n_batches=4, rounds=40, budget_s=0.5)
    finally:
        torch.set_num_threads(threads)
        hook.remove()
    # readings: start 0.1; candidate 1 checked at 0.2, timed 0.3-0.4; candidate 2 checked at 0.5
    # (within the budget), timed 0.6-0.7; every later check is past 0.5: one round of two
    # candidates, each a warm-up pass and the 4 timed ones, out of 40 rounds
    assert set(timings) == {1, 2} and best in timings
    assert len(passes) == 2 * (4 + 1), len(passes)


def test_budget_stops_timing(train_store):
    """The tuner cost more than it saved on short runs; it now has a time budget."""
    ds = _stream(train_store)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        best, timings = tune_threads(RNNVAE(), ds, 0.001, n_batches=2, rounds=3, budget_s=0.0)
        assert list(timings) == [1] and best == 1  # the first candidate only
    finally:
        torch.set_num_threads(threads)
