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


def _with_column(src, path, name, **column_kw):
    """Copy of ``src`` with column ``name`` rewritten by astropy (scaling keywords and all)."""
    with fits.open(src) as hdul:
        cols = [c if c.name != name else fits.Column(name=name, **column_kw) for c in hdul["RATE"].columns]
        table = fits.BinTableHDU.from_columns(cols, header=hdul["RATE"].header)
        fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)
    return path


def test_scaled_columns_are_read_in_memory(tmp_path, rebinned_archive):
    # A TZERO-scaled unsigned COUNTS column (the FITS unsigned-integer convention).
    truth = pl.read_parquet(rebinned_archive / "truth.parquet").filter(pl.col("expected") == "ok")
    src = rebinned_archive / truth["file"][0]
    counts = np.asarray(fits.getdata(src, "RATE")["COUNTS"])
    path = _with_column(src, tmp_path / "scaled.fits", "COUNTS", format="3I", bzero=32768, array=counts.astype("u2"))
    data = path.read_bytes()
    _, header, start = fitstable.find_extension(data, "RATE")
    rows = fitstable.read_rows(data, header, start)
    np.testing.assert_array_equal(fitstable.column(rows, "COUNTS", fitstable.column_scaling(header)), counts)
    before = dict(reader.FALLBACKS)
    lc = read_lightcurve(path)
    assert reader.FALLBACKS == before  # no detour through cfitsio
    np.testing.assert_array_equal(lc.counts, read_lightcurve(src).counts)


def _astropy_columns(path):
    with fits.open(path) as hdul:
        data = hdul["RATE"].data
        keep = np.nanmax(np.asarray(data["FRACEXP"]), axis=1) >= 0.1
        return {name: np.asarray(data[name])[keep] for name in data.columns.names}


@pytest.mark.parametrize("keyword, value", [("TSCAL", 2.0), ("TZERO", 5.0), ("TSCAL", 0.5)])
def test_tscal_tzero_on_real_file_match_astropy(tmp_path, real_files, keyword, value):
    """TSCAL/TZERO on a real file's columns are applied as astropy applies them, every other column untouched."""
    raw = gzip.decompress(real_files[2].read_bytes())
    _, header, _ = fitstable.find_extension(raw, "RATE")
    index = next(i for i in range(1, header["TFIELDS"] + 1) if header[f"TTYPE{i}"].strip() == "COUNTS")
    with fits.open(real_files[2]) as hdul:
        hdul["RATE"].header[f"{keyword}{index}"] = value  # the stored integers stay, their meaning changes
        path = tmp_path / "scaled.fits"
        hdul.writeto(path, output_verify="silentfix")
    ref = _astropy_columns(path)
    lc = read_lightcurve(path)
    assert lc.n_points == len(ref["TIME"]) == 31
    np.testing.assert_array_equal(lc.counts, ref["COUNTS"].astype("f4"))
    np.testing.assert_array_equal(lc.rate_errm, ref["RATE_ERR"])
    np.testing.assert_array_equal(lc.back_counts, ref["BACK_COUNTS"])
    np.testing.assert_array_equal(lc.time, ref["TIME"])


def test_tzero_on_float_column_is_exact(tmp_path, real_files):
    """A TZERO on a float column is applied in float64, not one float step off."""
    raw = gzip.decompress(real_files[2].read_bytes())
    _, header, _ = fitstable.find_extension(raw, "RATE")
    index = next(i for i in range(1, header["TFIELDS"] + 1) if header[f"TTYPE{i}"].strip() == "TIME")
    with fits.open(real_files[2]) as hdul:
        hdul["RATE"].header[f"TZERO{index}"] = 1000.0
        path = tmp_path / "tzero.fits"
        hdul.writeto(path, output_verify="silentfix")
    ref = _astropy_columns(path)
    np.testing.assert_array_equal(read_lightcurve(path).time, ref["TIME"])


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


def test_header_is_a_mapping_of_every_card():
    """A Header is a Mapping of every card: keys, values and items agree from the first call."""
    header = fitstable.Header({"NAXIS": "                   2 / axes", "OBJECT": "'00002   '", "FLAG": "T"})
    assert list(header.values()) == [2, "00002", True]
    assert dict(header) == {"NAXIS": 2, "OBJECT": "00002", "FLAG": True}
    assert list(header.items())[1] == ("OBJECT", "00002") and len(header) == 3 and "FLAG" in header
    assert header.get("MISSING", 7) == 7
