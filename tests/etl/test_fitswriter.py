"""The direct FITS writer produces standard files that astropy and fitsio read identically."""

from __future__ import annotations

import fitsio
import numpy as np
import pytest
from astropy.io import fits

from etl.fitswriter import BLOCK, bintable_fits_bytes, format_card


def test_cards_are_fixed_format():
    assert format_card("NAXIS", 2) == b"NAXIS   =                    2".ljust(80)
    assert format_card("OBJECT", "o'k") == b"OBJECT  = 'o''k    '".ljust(80)
    assert format_card("SIMPLE", True)[:30] == b"SIMPLE  =                    T"
    assert format_card("RA_OBJ", 10.0, "[deg]").rstrip() == b"RA_OBJ  =                 10.0 / [deg]"
    with pytest.raises(ValueError):
        format_card("TOOLONGKEY", 1)
    with pytest.raises(ValueError):
        format_card("X", float("nan"))


def test_table_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    cols = {
        "TIME": np.cumsum(rng.uniform(1, 2, 7)),
        "COUNTS": rng.integers(0, 50, (7, 3)).astype("i4"),
        "RATE": rng.normal(size=(7, 3)).astype("f4"),
        "FLAG": rng.integers(0, 3, 7).astype("i2"),
    }
    cols["RATE"][2, 1] = np.nan
    data = bintable_fits_bytes(cols, {"TIME": "s"}, header=[("OBJECT", "src 1", ""), ("E_MIN1", 0.2, "")])
    assert len(data) % BLOCK == 0
    path = tmp_path / "t.fits"
    path.write_bytes(data)
    with fits.open(path) as hdul:
        hdul.verify("exception")
        table = hdul["RATE"]
        assert table.header["OBJECT"] == "src 1"
        assert table.header["TUNIT1"] == "s"
        for name, arr in cols.items():
            np.testing.assert_array_equal(np.asarray(table.data[name]), arr)
    back = fitsio.read(str(path), ext="RATE")
    for name, arr in cols.items():
        np.testing.assert_array_equal(back[name], arr)


def test_zero_rows(tmp_path):
    path = tmp_path / "empty.fits"
    path.write_bytes(bintable_fits_bytes({"TIME": np.zeros(0), "RATE": np.zeros((0, 3), "f4")}))
    with fits.open(path) as hdul:
        hdul.verify("exception")
        assert len(hdul[1].data) == 0
