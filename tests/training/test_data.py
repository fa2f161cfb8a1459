"""Bucketing invariants, splits, sharding across ranks and workers, featurisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from etl.store import open_store
from training.data import (
    SPLITS,
    BucketedLightCurves,
    DataError,
    SourceTable,
    features_from_batch,
    make_batches,
    select_sources,
    split_of,
)


def realistic_lengths(n, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, 13, n)
    tail = rng.random(n) < 0.02
    lengths[tail] = rng.integers(13, 400, tail.sum())
    return lengths


def test_each_source_once_per_epoch_and_shuffled():
    lengths = realistic_lengths(5000)
    b1 = make_batches(lengths, 32, epoch=1, seed=0)
    b2 = make_batches(lengths, 32, epoch=2, seed=0)
    for batches in (b1, b2):
        rows = np.concatenate(batches)
        assert len(rows) == 5000 and len(np.unique(rows)) == 5000
    assert [b.tolist() for b in b1] != [b.tolist() for b in b2]
    assert [b.tolist() for b in b1] == [b.tolist() for b in make_batches(lengths, 32, epoch=1, seed=0)]


def test_padding_below_five_percent():
    lengths = np.minimum(realistic_lengths(20000), 512)
    batches = make_batches(lengths, 32, epoch=0, seed=0)
    real = sum(lengths[b].sum() for b in batches)
    padded = sum(lengths[b].max() * len(b) for b in batches)
    assert 1 - real / padded < 0.05


@pytest.mark.parametrize("world", [2, 3, 4])
def test_ranks_get_equal_batch_counts_without_duplicates(world):
    lengths = realistic_lengths(1001)
    batches = make_batches(lengths, 32, epoch=3, seed=1, world_size=world)
    assert len(batches) % world == 0
    per_rank = [batches[r::world] for r in range(world)]
    assert len({len(p) for p in per_rank}) == 1
    rows = np.concatenate(batches)
    assert len(rows) == 1001 and len(np.unique(rows)) == 1001


def test_too_few_sources_for_ranks():
    with pytest.raises(DataError):
        make_batches(np.array([5]), 32, 0, 0, world_size=2)


def test_split_is_stable_and_85_5_10():
    ids = [f"src{i}" for i in range(20000)]
    splits = split_of(ids)
    frac = {name: np.mean(splits == name) for name in SPLITS}
    assert abs(frac["train"] - 0.85) < 0.01 and abs(frac["val"] - 0.05) < 0.01 and abs(frac["test"] - 0.10) < 0.01
    grown = split_of(ids[:5000] + [f"new{i}" for i in range(3000)])
    assert (grown[:5000] == splits[:5000]).all()  # adding sources moves nobody


def test_dataset_ranks_and_workers_cover_split_once(train_store):
    store = open_store(train_store)
    sources = select_sources(store.catalog().collect(), "train")
    seen = []
    for rank in range(2):
        ds = BucketedLightCurves(train_store, sources, 8, 64, seed=3, rank=rank, world_size=2)
        ds.set_epoch(4)
        loader = DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="spawn")
        rank_rows = [b["rows"] for b in loader]
        assert len(rank_rows) == len(ds)
        seen.append(torch.cat(rank_rows))
    assert len(seen[0]) > 0 and len(seen[1]) > 0
    rows = torch.cat(seen).numpy()
    assert len(rows) == len(sources) and len(np.unique(rows)) == len(sources)


def test_batches_hold_near_equal_lengths(train_store):
    store = open_store(train_store)
    sources = select_sources(store.catalog().collect(), "train")
    ds = BucketedLightCurves(train_store, sources, 16, 512, seed=0)
    for batch in ds:
        assert batch["x"].shape[1] == batch["lengths"].max()
        assert batch["x"].shape[2] == 9 and batch["y"].shape[2] == 3
        assert torch.isfinite(batch["x"]).all() and torch.isfinite(batch["y"]).all()
    assert ds.padding_fraction() < 0.15  # 400 sources are too few to fill every length


def test_features_scaling_and_nan_masking(train_store):
    store = open_store(train_store)
    sid = store.source_ids[0]
    batch = store.read_many([sid, store.source_ids[1]], columns=["rate", "rate_errm", "rate_errp"])
    batch.columns["rate"][1, 2] = np.nan  # a NaN band measurement
    arrays = features_from_batch(batch, max_len=512)
    rate = batch[0]["rate"]
    s = arrays["scale"][0]
    np.testing.assert_allclose(arrays["y"][0, : len(rate)], np.nan_to_num(rate / s), rtol=1e-5)
    np.testing.assert_allclose(arrays["x"][0, : len(rate), :3], np.nan_to_num(np.arcsinh(rate / s)), rtol=1e-5)
    assert not arrays["target_mask"][0, 1, 2] and arrays["y"][0, 1, 2] == 0 and np.isfinite(arrays["x"]).all()
    assert arrays["target_mask"][0, 0].all()
    assert not arrays["mask"][0, len(rate):].any()


def test_max_len_caps(train_store):
    store = open_store(train_store)
    sources = select_sources(store.catalog().collect(), "train")
    ds = BucketedLightCurves(train_store, sources, 32, 6, seed=0)
    assert max(b["x"].shape[1] for b in ds) == 6


def test_empty_split_is_an_error():
    with pytest.raises(DataError, match="no sources"):
        BucketedLightCurves("x", SourceTable([], np.zeros(0, np.int64), np.zeros(0, np.int64)), 8, 8)


def test_source_scale_hand_computed():
    """s = max(mean_t sum_k rate, sqrt(mean_t sum_k errp^2), 1e-3), over valid steps only."""
    from training.data import source_scale

    rate = np.array([[[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [99.0, 99.0, 99.0]],      # bright: 6 ct/s in all bands
                     [[0.1, -0.1, 0.0], [0.0, 0.0, np.nan], [99.0, 99.0, 99.0]],   # consistent with zero
                     [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])         # nothing at all
    errp = np.array([[[0.1, 0.1, 0.1], [0.1, 0.1, 0.1], [99.0, 99.0, 99.0]],
                     [[3.0, 4.0, 0.0], [0.0, 0.0, np.nan], [99.0, 99.0, 99.0]],
                     [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    mask = np.array([[True, True, False], [True, True, False], [True, True, True]])  # step 3 is padding
    s = source_scale(rate, errp, mask)
    # bright: mean of (6, 6) = 6; error sqrt((0.03 + 0.03) / 2) = 0.17 -> 6
    # faint: mean of (0, 0) = 0; error sqrt((9 + 16 + 0) / 2) = sqrt(12.5) = 3.5355
    # empty: the floor
    np.testing.assert_allclose(s, [6.0, np.sqrt(12.5), 1e-3], rtol=1e-6)
