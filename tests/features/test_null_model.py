"""Simulated constant sources on the store's own bins (features.null_model)."""

from __future__ import annotations

import numpy as np
import pytest

from etl.lightcurve import POINT_COLUMNS
from features.null_model import build_null_store, null_store_url, simulate_constants


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from etl.ingest import ingest
    from etl.store import open_store
    from etl.synth import make_archive

    root = tmp_path_factory.mktemp("null")
    make_archive(root / "a", n=80, seed=43, flavour="mixed", progress=False)
    ingest(root / "a", root / "s", progress=False)
    return open_store(str(root / "s"))


def test_simulations_keep_the_bins_and_the_error_convention(store):
    batch = store.read_many(store.source_ids, tuple(POINT_COLUMNS))
    sim = simulate_constants(batch, np.random.default_rng(0))
    for name in ("time", "timedel", "fracexp", "backratio"):
        np.testing.assert_array_equal(sim[name], batch.columns[name])
    assert np.array_equal(np.isnan(sim["rate"]), np.isnan(batch.columns["rate"]))  # no rate where the template has none
    conv = batch.columns["timedel"][:, None] * batch.columns["fracexp"]
    ok = np.isfinite(sim["rate"])
    expected = (sim["counts"] - sim["back_counts"] * batch.columns["backratio"][:, None]) / conv
    np.testing.assert_allclose(sim["rate"][ok], expected[ok], rtol=1e-5, atol=1e-6)  # eSASS's rate
    catalog = store.catalog().collect()
    for j in range(len(batch)):
        pts = batch[j]
        flavour = catalog.filter(catalog["source_id"] == batch.source_ids[j])["flavour"].item()
        rows = slice(batch.offsets[j], batch.offsets[j + 1])
        if flavour == "srctool":  # one symmetric RATE_ERR in the file: kept symmetric
            np.testing.assert_array_equal(sim["rate_errm"][rows], sim["rate_errp"][rows])
        else:
            counted = np.isfinite(sim["rate"][rows]) & (sim["counts"][rows] >= 1)
            assert (sim["rate_errm"][rows][counted] < sim["rate_errp"][rows][counted]).all()
        assert pts["rate"].shape == sim["rate"][rows].shape
    for name, (dtype, _) in POINT_COLUMNS.items():
        assert sim[name].dtype == np.dtype(dtype)


def test_background_and_brightness_follow_the_template(store):
    batch = store.read_many(store.source_ids, tuple(POINT_COLUMNS))
    use = batch.columns["fracexp"] > 0.1
    template_back = np.where(use, batch.columns["back_counts"], 0).sum()
    rng = np.random.default_rng(1)
    sims = [simulate_constants(batch, rng) for _ in range(40)]
    back = np.mean([np.where(use, s["back_counts"], 0).sum() for s in sims])
    assert back == pytest.approx(template_back, rel=0.03)  # B ~ Poisson(the template's own background level)
    # a constant source: per-bin rates scatter around one mean as their errors say
    source = np.repeat(np.arange(len(batch)), batch.lengths)
    rate = np.stack([s["rate"][:, 1] for s in sims])  # (40, P) the 0.6-2.3 keV band
    mean_rate = np.nanmean(rate, axis=0)
    per_source = np.array([np.nanstd(mean_rate[source == i]) for i in range(len(batch))])
    spread = np.array([np.nanmean(np.nanstd(rate[:, source == i], axis=0)) for i in range(len(batch))])
    finite = np.isfinite(per_source) & np.isfinite(spread) & (spread > 0)
    # time-averaged over 40 draws the curve is flat in rate, up to exposure noise (no injected variability)
    assert np.median(per_source[finite] / spread[finite]) < 0.5


def test_null_store_is_built_once_and_rebuilt_after_an_interruption(store, tmp_path):
    import shutil

    from etl.store import open_store

    local = open_store(str(shutil.copytree(store.url, tmp_path / "s")))
    null = build_null_store(local, "k", n=500, seed=3)
    assert len(null) == 500 and null.url == null_store_url(local, "k")
    objects = set(null.catalog().collect()["object"])
    assert objects <= set(local.source_ids)  # every simulation names its template
    marker = tmp_path / "s" / "calibration" / "null-k.zarr" / "complete"
    stamp = marker.stat().st_mtime_ns
    assert len(build_null_store(local, "k", n=500, seed=3)) == 500 and marker.stat().st_mtime_ns == stamp  # reused
    marker.unlink()  # as if killed before the end
    assert len(build_null_store(local, "k", n=300, seed=3)) == 300 and marker.exists()
