"""Morphologies of the synthetic archives: each class's defining property, and generators that differ."""

from __future__ import annotations

import numpy as np
import pytest

from etl.lightcurve import ERODAY_S
from etl.morphology import CLASSES, RARE_CLASSES, MorphologyRanges, profile

T_SCANS = np.arange(60) * ERODAY_S + np.random.default_rng(0).normal(0, 60, 60)  # 60 scans of a source near a pole
T_SCANS -= T_SCANS[0]


def draw(klass: str, seed: int, t=T_SCANS, ranges=MorphologyRanges()):
    return profile(np.random.default_rng(seed), klass, t, 3, ranges)


def test_common_classes_vary_all_bands_together():
    flat, _ = draw("constant", 1)
    assert np.all(flat == 1)
    for klass in ("flare", "dip", "red_noise"):
        m, p = draw(klass, 2)
        assert np.allclose(m[:, 0], m[:, 1]) and np.allclose(m[:, 0], m[:, 2]), klass
    flare, p = draw("flare", 3)
    assert flare.max() >= 1 + 0.5 * p["amplitude"]
    dip, _ = draw("dip", 4)
    assert dip.min() < 0.35 and dip.max() == 1.0
    red, _ = draw("red_noise", 5)
    assert red[:, 0].std() > 0.2 and (red > 0).all()


def test_qpe_erupts_in_the_soft_band_only_and_recurs():
    t = np.arange(0, 4 * 86400.0, 600.0)  # densely sampled: the profile itself
    for seed in range(20):
        m, p = draw("qpe", seed, t)
        assert np.all(m[:, 2] == 1.0)  # the hard band never erupts
        assert m[:, 0].max() >= 1 + 0.9 * p["amplitude"] and 10 <= p["amplitude"] <= 100
        assert np.all(m[:, 1] - 1 <= p["second_band"] * (m[:, 0] - 1) + 1e-9)  # band 2: a fraction of the soft band
        peaks = np.flatnonzero((m[1:-1, 0] > m[:-2, 0]) & (m[1:-1, 0] >= m[2:, 0]) & (m[1:-1, 0] > 1 + p["amplitude"] / 2)) + 1
        if p["period_h"] < 40:  # several eruptions in 4 days, one recurrence apart
            assert len(peaks) >= 2 and np.allclose(np.diff(t[peaks]) / 3600, p["period_h"], rtol=0.05)
        assert 0.2 <= p["tau"] / p["period_h"] <= 0.3  # FWHM / recurrence


def test_eclipses_drop_all_bands_periodically():
    t = np.arange(0, 2 * 86400.0, 60.0)
    for seed in range(10):
        m, p = draw("eclipse", seed, t)
        low = m[:, 0] < 1
        assert np.allclose(m[low], 1 - p["amplitude"]) and 0.8 <= p["amplitude"] <= 1.0  # all bands, one depth
        assert 0.1 <= low.mean() / 1.0 <= 0.2 + 0.01  # width 0.1-0.2 of the period
        starts = t[1:][low[1:] & ~low[:-1]]
        assert np.allclose(np.diff(starts) / 3600, p["period_h"], atol=0.02)
    _, p = draw("eclipse", 1)
    assert p["n_affected"] >= 0  # on the survey's 4 h cadence only some scans fall in an eclipse


def test_absorption_is_a_hardness_change():
    for seed in range(10):
        m, p = draw("absorption", seed)
        inside = m[:, 0] < 1
        assert inside.sum() >= 2 and np.all(np.diff(np.flatnonzero(inside)) == 1)  # one contiguous episode
        assert np.all(m[:, 2] == 1.0)  # the hard band stays
        assert np.all(m[inside, 0] < m[inside, 1]) and np.all(m[inside, 1] < 1)  # soft drops most
        assert 0.02 <= p["amplitude"] <= 0.2


def test_a_step_stays():
    for seed in range(10):
        m, p = draw("step", seed)
        level = m[:, 0]
        changes = np.flatnonzero(np.diff(level) != 0)
        assert len(changes) == 1  # one change, never back
        ratio = level[-1] / level[0]
        assert ratio == pytest.approx(p["amplitude"] if p["turn_on"] else 1 / p["amplitude"])
        assert 5 <= p["amplitude"] <= 20 and np.allclose(m[:, 0], m[:, 2])


def test_unknown_class():
    with pytest.raises(ValueError, match="unknown variability class"):
        draw("supernova", 0)
    assert set(RARE_CLASSES) < set(CLASSES)


def test_variants_are_other_generators_with_valid_ranges():
    base = MorphologyRanges()
    assert base.variant(0) == base
    seen = set()
    for k in range(1, 30):
        v = base.variant(k)
        seen.add(v.log_qpe_amplitude)
        for name, (lo, hi) in ((f, getattr(v, f)) for f in v.__dataclass_fields__ if f != "common_weights"):
            assert lo < hi, name
        assert 0 < v.dip_depth[0] and v.eclipse_depth[1] <= 1.0 and v.log_step_factor[0] >= 1.5
        assert abs(sum(v.common_weights) - 1) < 1e-9
        for klass in CLASSES:  # every class draws under every variant
            m, _ = draw(klass, k, ranges=v)
            assert np.all(np.isfinite(m)) and np.all(m >= 0)
    assert len(seen) == 29
