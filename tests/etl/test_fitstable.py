"""The in-memory table parser agrees with cfitsio, and unusual files fall back to cfitsio."""

from __future__ import annotations

import gzip

import fitsio
import numpy as np
import polars as pl
import pytest
from astropy.io import fits

from etl import fitstable, reader
from etl.reader import read_lightcurve


def _fitsio_lc(path, fracexp_min=0.1):
    with open(path, "rb") as fh:
        data = reader.fits_bytes(fh.read(), str(path))
    return reader._read_with_fitsio(str(path), data, fracexp_min)


def _assert_same(a, b):
    assert (a.source_id, a.flavour, a.n_rows_file) == (b.source_id, b.flavour, b.n_rows_file)
    np.testing.assert_array_equal(a.e_min, b.e_min)
    assert a.ra == b.ra and a.dec == b.dec
    for name in a.columns:
        assert a.columns[name].dtype == b.columns[name].dtype
        np.testing.assert_array_equal(a.columns[name], b.columns[name], err_msg=name)


def test_fast_path_equals_fitsio(real_files, rebinned_archive, srctool_archive):
    truth = pl.read_parquet(rebinned_archive / "truth.parquet").filter(pl.col("expected") == "ok")
    paths = list(real_files) + [rebinned_archive / f for f in truth["file"][:20]]
    paths += [srctool_archive / f for f in pl.read_parquet(srctool_archive / "truth.parquet")["file"][:10]]
    for path in paths:
        _assert_same(read_lightcurve(path), _fitsio_lc(path))


def test_header_values(real_files):
    data = gzip.decompress(real_files[0].read_bytes())
    primary, header, start = fitstable.find_extension(data, "rate")
    ref = fitsio.read_header(str(real_files[0]), ext="RATE")
    assert primary["SIMPLE"] is True
    for key in ("OBJECT", "RA_OBJ", "E_MIN1", "NAXIS2", "TFORM3", "HDUCLAS1", "MJDREF"):
        assert header[key] == ref[key], key
    rows = fitstable.read_rows(data, header, start)
    np.testing.assert_array_equal(rows["RATE"], fitsio.read(str(real_files[0]), ext="RATE")["RATE"])
    assert fitstable.find_extension(data, "EVENTS") is None


def test_quotes_and_exponents():
    assert fitstable._parse_value("'it''s ok'           / c") == "it's ok"
    assert fitstable._parse_value("               1.5D3 / c") == 1500.0
    assert fitstable._parse_value("                  -7") == -7
    assert fitstable._parse_value("                   F") is False


def test_scaled_column_falls_back_to_cfitsio(tmp_path, rebinned_archive):
    # A TZERO-scaled unsigned COUNTS column: outside the fast path, cfitsio applies the scaling.
    truth = pl.read_parquet(rebinned_archive / "truth.parquet").filter(pl.col("expected") == "ok")
    src = rebinned_archive / truth["file"][0]
    with fits.open(src) as hdul:
        cols = [c if c.name != "COUNTS" else fits.Column(name="COUNTS", format="3I", bzero=32768,
                array=np.asarray(hdul[1].data["COUNTS"]).astype("u2")) for c in hdul[1].columns]
        table = fits.BinTableHDU.from_columns(cols, header=hdul[1].header)
        path = tmp_path / "scaled.fits"
        fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)
    data = path.read_bytes()
    _, header, _ = fitstable.find_extension(data, "RATE")
    with pytest.raises(fitstable.Unsupported):
        fitstable.table_dtype(header)
    lc = read_lightcurve(path)
    np.testing.assert_array_equal(lc.counts, read_lightcurve(src).counts)


def test_truncated_table_is_unreadable(tmp_path, real_files):
    data = gzip.decompress(real_files[0].read_bytes())
    path = tmp_path / "cut.fits"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(reader.InvalidLightCurveError) as info:
        read_lightcurve(path)
    assert info.value.code == "unreadable"
    path.write_bytes(data[:3000])  # inside the extension header
    with pytest.raises(reader.InvalidLightCurveError) as info:
        read_lightcurve(path)
    assert info.value.code == "unreadable"
