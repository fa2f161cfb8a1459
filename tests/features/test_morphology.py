"""The classical cross-band statistic: a band that varies unlike the others is surprising, coherent variability is not."""

from __future__ import annotations

import numpy as np
import polars as pl

from etl.ingest import ingest
from etl.store import open_store
from etl.synth import make_archive
from features.morphology import extract_morphology, leave_band_out


def _bins(rng, profile: np.ndarray, rates=(0.5, 1.0, 0.2)) -> tuple:
    """Poisson counts (N=1, T, K) of a source whose band rates follow ``profile`` (T, K), 40 s of exposure a bin."""
    t, k = profile.shape
    e = np.full((1, t, k), 40.0)
    b = np.full((1, t, k), 0.3)
    c = rng.poisson(np.asarray(rates)[None, None, :] * profile[None] * e + b).astype(float)
    return c, b, e, np.ones((1, t, k), bool)


def test_a_soft_burst_is_surprising_and_a_flare_is_not():
    rng = np.random.default_rng(0)
    t = np.arange(20)
    flare = 1 + 8 * np.exp(-np.clip(t - 5, 0, None) / 3.0) * (t >= 5)
    coherent = np.repeat(flare[:, None], 3, axis=1)
    soft = np.ones((20, 3))
    soft[[4, 11, 17], 0] = 20.0  # eruptions in the soft band only
    coh = [leave_band_out(*_bins(rng, coherent), 0)[0] for _ in range(20)]
    erupt = [leave_band_out(*_bins(rng, soft), 0)[0] for _ in range(20)]
    assert np.median(erupt) > 10 * np.median(coh)
    assert np.median(coh) < 40  # ~ the number of bins for a good fit


def test_extract_on_a_store(tmp_path):
    make_archive(tmp_path / "a", n=40, seed=3, flavour="mixed", rare=0.25, progress=False)
    ingest(tmp_path / "a", tmp_path / "s", progress=False)
    store = open_store(tmp_path / "s")
    frame = extract_morphology(store)
    assert frame.height == 40 and set(frame.columns) == {"source_id", "n_morph", "lbo_b1", "lbo_b2", "lbo_b3"}
    assert frame["lbo_b1"].null_count() == 0 and (frame["lbo_b1"] >= 0).all()
    part = extract_morphology(store, rows=(10, 20))
    assert part["source_id"].to_list() == store.ok_sources()["source_id"][10:20].to_list()
    whole = frame.filter(pl.col("source_id").is_in(part["source_id"].implode())).sort("source_id")
    np.testing.assert_allclose(part.sort("source_id")["lbo_b2"].to_numpy(), whole["lbo_b2"].to_numpy())
