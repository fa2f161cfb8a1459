"""The light curve in astropy's terms: a TimeSeries with Time (TIMESYS, MJDREF) and Quantity columns per band."""

from __future__ import annotations

from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.time import Time

from etl.reader import read_lightcurve

DR1 = Path(__file__).resolve().parents[1] / "data" / "em01_080156_020_LightCurve_00002_c010.fits"


def test_to_timeseries_of_a_real_dr1_light_curve():
    lc = read_lightcurve(DR1)
    ts = lc.to_timeseries()
    assert len(ts) == lc.n_points and ts.time.scale == "tt"
    first = Time(51543.875, format="mjd", scale="tt") + (lc.time[0] + lc.timedel[0] / 2) * u.s
    assert abs((ts.time[0] - first).to_value(u.s)) < 1e-3  # bin centre from MJDREF, in TT
    assert ts["rate_b2"].unit == u.ct / u.s and ts["counts_b1"].unit == u.ct and ts["timedel"].unit == u.s
    np.testing.assert_array_equal(ts["rate_b3"].value, lc.rate[:, 2])
    assert "0.6-2.3 keV" in ts["rate_b2"].info.description and ts.meta["bands"][0] == "0.2-0.6 keV"
    from astropy.timeseries import LombScargle  # it drops into astropy's periodograms

    finite = np.isfinite(ts["rate_b2"].value)
    power = LombScargle(ts.time[finite], ts["rate_b2"][finite]).power(np.array([1.0, 2.0]) / u.day)
    assert np.all(np.isfinite(power))


def test_to_timeseries_needs_a_time_reference():
    lc = read_lightcurve(DR1)
    lc.mjdref = float("nan")
    with pytest.raises(ValueError, match="no MJDREF"):
        lc.to_timeseries()
