"""Hostile input, as an attacker would bring it: every file becomes one catalog row, the run ends.

Each test brings one kind of attack (its docstring says which and what the ingest does with it). The fuzz test mutates the three real eROSITA files: a few hundred byte flips, header
mutations and truncations, each of which must become exactly one catalog row, and every row
marked ok must hold what astropy reads from the same bytes.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import zarr
from astropy.io import fits

from common import cli
from etl.catalog import read_catalog
from etl.errors import InvalidLightCurveError
from etl.ingest import ingest, main
from etl.reader import read_lightcurve
from etl.store import open_store

ROOT = Path(__file__).resolve().parents[2]


def codes(store) -> dict[str, str]:
    """File name -> "ok" or the reason code of its catalog row."""
    cat = read_catalog(str(store))
    return {Path(f).name: ("ok" if s == "ok" else r.split(":")[0]) for f, s, r in cat.select("file", "status", "reason").iter_rows()}


def real_bytes(real_files, i=2) -> bytes:
    return gzip.decompress(real_files[i].read_bytes())


def set_card(data: bytes, key: str, value_text: str) -> bytes:
    """Replace the value of header card ``key`` (first occurrence after the primary HDU) by raw text."""
    start = data.index(b"XTENSION")
    pos = start
    while True:
        card = data[pos : pos + 80]
        if card[:8].rstrip() == key.encode():
            new = (key.ljust(8) + "= " + value_text).ljust(80)[:80].encode("latin-1")
            return data[:pos] + new + data[pos + 80 :]
        if card[:8].rstrip() == b"END":
            raise KeyError(key)
        pos += 80


@pytest.mark.parametrize("key, text, code", [
    ("RA_OBJ", "'not a number'", "bad_keyword"),
    ("DEC_OBJ", "", "bad_keyword"),
    ("E_MIN1", "'0.2 keV'", "bad_keyword"),
    ("E_MAX2", "", "bad_keyword"),
    ("TIMEDEL", "'ten'", "ok"),  # the TIMEDEL column wins over the keyword
    ("MJDREF", "'yesterday'", "bad_keyword"),
    ("RA_OBJ", "400.0", "bad_keyword"),
    ("E_MIN1", "NaN", "bad_band_edges"),
    ("E_MIN2", "9.0", "bad_band_edges"),
    ("NAXIS2", "1000000000", "unreadable"),
    ("NAXIS2", "'many'", "unreadable"),
    ("TFIELDS", "-3", "unreadable"),
])
def test_text_or_empty_keywords_are_rejected_not_fatal(real_files, tmp_path, key, text, code):
    """Text or empty keywords, out-of-range values and a 17 KB file claiming 10^9 rows: each a rejected row with its code."""
    archive = tmp_path / "a"
    archive.mkdir()
    (archive / "bad.fits").write_bytes(set_card(real_bytes(real_files), key, text))
    shutil.copy(real_files[0], archive / "good.fits.gz")
    summary = ingest(archive, tmp_path / "s", progress=False)
    assert summary.discovered == 2
    assert codes(tmp_path / "s") == {"bad.fits": code, "good.fits.gz": "ok"}


def test_timedel_keyword_text_without_column(tmp_path):
    from etl.fitswriter import bintable_fits_bytes
    from etl.synth import lightcurve_header, simulate_source

    cols, _ = simulate_source(np.random.default_rng(1), "rebinned", 6, "constant")
    cols.pop("TIMEDEL")
    data = bintable_fits_bytes(cols, header=lightcurve_header("x", 10.0, 10.0, {"TIME": []}) + [("TIMEDEL", "ten", "")])
    (tmp_path / "t.fits").write_bytes(data)
    with pytest.raises(InvalidLightCurveError) as info:
        read_lightcurve(tmp_path / "t.fits")
    assert info.value.code == "bad_keyword" and "TIMEDEL" in info.value.detail


def test_rate_hdu_as_image_and_odd_headers(real_files, tmp_path):
    """An IMAGE named RATE and a non-UTF-8 byte in a header card: rejected or read, never fatal."""
    archive = tmp_path / "a"
    archive.mkdir()
    image = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((4, 4), "f4"), name="RATE")])
    buf = io.BytesIO()
    image.writeto(buf)
    (archive / "image.fits").write_bytes(buf.getvalue())
    data = real_bytes(real_files)
    pos = data.index(b"OBJECT  = '00022")
    (archive / "latin1.fits").write_bytes(data[: pos + 12] + b"\xe9\xff" + data[pos + 14 :])
    pos = data.index(b"TELESCOP")
    (archive / "binary_card.fits").write_bytes(data[:pos] + bytes(range(128, 208)) + data[pos + 80 :])
    summary = ingest(archive, tmp_path / "s", progress=False)
    got = codes(tmp_path / "s")
    assert summary.discovered == 3 and got["image.fits"] == "no_rate_extension"
    assert got["binary_card.fits"] == "ok"
    assert got["latin1.fits"] == "ok"  # OBJECT with two replaced characters: a usable source id
    cat = read_catalog(str(tmp_path / "s"))
    assert "not a binary table" in cat.filter(pl.col("file").str.ends_with("image.fits"))["reason"][0]


def test_odd_file_system_entries(real_files, tmp_path):
    """A FIFO and a link to /dev/zero are never opened; dangling links, link loops, links to folders and
    non-UTF-8 file names each become a row naming the file."""
    archive = tmp_path / "a"
    archive.mkdir()
    shutil.copy(real_files[0], archive / "good.fits.gz")
    os.mkfifo(archive / "pipe.fits")
    os.symlink("/dev/zero", archive / "zero.fits")
    os.symlink(archive / "missing.fits", archive / "dangling.fits")
    os.symlink(archive / "loop.fits", archive / "loop.fits")
    (tmp_path / "folder").mkdir()
    os.symlink(tmp_path / "folder", archive / "folder.fits")
    odd = os.fsencode(str(archive)) + b"/caf\xe9_020_LightCurve_1.fits.gz"
    with open(odd, "wb") as fh:
        fh.write(real_files[2].read_bytes())
    summary = subprocess.run([sys.executable, "-m", "etl.ingest", str(archive), "--store", str(tmp_path / "s"), "--quiet"],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert summary.returncode == 0, summary.stderr
    assert "discovered 7 | ingested 2 | unchanged 0 | rejected 5" in summary.stdout
    cat = read_catalog(str(tmp_path / "s"))
    assert cat["file"].null_count() == 0 and cat.height == 7
    got = codes(tmp_path / "s")
    assert got["pipe.fits"] == got["zero.fits"] == got["folder.fits"] == "not_regular_file"
    assert got["dangling.fits"] == got["loop.fits"] == "unreadable"
    assert got["caf\\xe9_020_LightCurve_1.fits.gz"] == "ok"
    assert "dangling symbolic link" in cat.filter(pl.col("file").str.ends_with("dangling.fits"))["reason"][0]
    again = ingest(archive, tmp_path / "s", progress=False)
    # a rerun: the escaped name is recognised, and files refused again for the same reason are nothing new
    assert (again.unchanged, again.ingested, again.rejected) == (7, 0, 0)
    assert read_catalog(str(tmp_path / "s")).equals(cat)


def test_bad_first_file_cannot_fix_the_bands(real_files, tmp_path):
    """A first file with E_MIN1 = NaN (or > E_MAX1) is rejected and never fixes the store's bands."""
    archive = tmp_path / "a"
    archive.mkdir()
    data = real_bytes(real_files)
    (archive / "a_nan.fits").write_bytes(set_card(data, "E_MIN1", "NaN"))
    (archive / "b_inverted.fits").write_bytes(set_card(data, "E_MIN1", "9.0"))
    for i, f in enumerate(real_files):
        shutil.copy(f, archive / f"c_{i}_{f.name}")
    ingest(archive, tmp_path / "s", progress=False)
    got = codes(tmp_path / "s")
    assert got["a_nan.fits"] == got["b_inverted.fits"] == "bad_band_edges"
    assert sum(v == "ok" for v in got.values()) == 3
    text = (tmp_path / "s" / "zarr.json").read_text()
    assert "NaN" not in text
    assert dict(zarr.open_group(str(tmp_path / "s"), mode="r").attrs)["bands"]["e_min"] == [0.2, 0.2, 2.3]


def test_gzip_with_trailing_garbage_is_read(real_files, tmp_path):
    """Minor: gzip -d and astropy read a gzip with trailing garbage; so does the reader."""
    path = tmp_path / "t.fits.gz"
    path.write_bytes(real_files[2].read_bytes() + b"\x00garbage after the stream")
    ref = fits.getdata(path, "RATE")
    lc = read_lightcurve(path)
    assert lc.n_rows_file == len(ref)
    cut = tmp_path / "cut.fits.gz"
    cut.write_bytes(real_files[2].read_bytes()[:-20])  # truncated: still refused
    with pytest.raises(InvalidLightCurveError) as info:
        read_lightcurve(cut)
    assert info.value.code == "corrupt_gzip"


def test_cli_option_edge_cases(rebinned_archive, tmp_path, capsys):
    """--batch-size 0 traceback, -5 ingested nothing with exit 0, --fracexp-min nan stored NaN."""
    store = tmp_path / "s"
    for args in (["--batch-size", "0"], ["--batch-size", "-5"], ["--fracexp-min", "nan"], ["--fracexp-min", "1.5"],
                 ["--workers", "0"], ["--flush-points", "0"]):
        with pytest.raises(SystemExit) as info:
            cli.run(main, [str(rebinned_archive), "--store", str(store), *args])
        assert info.value.code == 2, args
        assert not store.exists(), args
    assert cli.run(main, [str(rebinned_archive), "--store", str(store), "--quiet", "--fracexp-min", "0.2"]) == 0
    assert cli.run(main, [str(rebinned_archive), "--store", str(store), "--quiet", "--fracexp-min", "0.3"]) == 2
    assert "fracexp_min=0.2" in capsys.readouterr().err


def _fuzz_files(real_files, out: Path, n_flips: int, n_headers: int, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    sources = [gzip.decompress(f.read_bytes()) for f in real_files]
    mutations = [b"'junk'", b"", b"NaN", b"-1", b"1000000000", b"T", b"'", b"1E400", b"0"]
    count = 0
    for i in range(n_flips):
        data = bytearray(sources[i % 3])
        table = data.index(b"XTENSION")
        for _ in range(int(rng.integers(1, 8))):
            pos = int(rng.integers(0 if i % 4 == 0 else table, len(data)))
            data[pos] ^= 1 << int(rng.integers(0, 8))
        name = out / f"flip_{i:04d}.fits"
        if i % 5 == 0:  # some gzipped, some truncated
            name.with_suffix(".fits.gz").write_bytes(gzip.compress(bytes(data), mtime=0)[: None if i % 10 else -50])
        else:
            name.write_bytes(bytes(data[: None if i % 7 else int(rng.integers(10, len(data)))]))
        count += 1
    for i in range(n_headers):
        data = sources[i % 3]
        table = data.index(b"XTENSION")
        keys = [data[p : p + 8].rstrip() for p in range(table, data.index(b"END     ", table), 80)]
        key = keys[int(rng.integers(0, len(keys)))].decode()
        try:
            mutated = set_card(data, key, mutations[i % len(mutations)].decode())
        except (KeyError, ValueError):
            continue
        (out / f"header_{i:04d}_{key}.fits").write_bytes(mutated)
        count += 1
    return count


@pytest.mark.filterwarnings("ignore::astropy.io.fits.verify.VerifyWarning", "ignore::astropy.utils.exceptions.AstropyUserWarning")
def test_fuzzed_real_files_each_become_one_row(real_files, tmp_path):
    """A few hundred mutated copies of the real files; every one a row, ok rows equal astropy."""
    archive = tmp_path / "fuzz"
    archive.mkdir()
    n = _fuzz_files(real_files, archive, n_flips=240, n_headers=160)
    summary = ingest(archive, tmp_path / "s", workers=2, progress=False)
    assert summary.discovered == n and summary.ingested + summary.rejected == n
    cat = read_catalog(str(tmp_path / "s"))
    assert cat.height == n and cat["file"].null_count() == 0 and cat["file"].is_unique().all()
    assert not cat.filter(pl.col("status") == "rejected")["reason"].str.contains("/tmp/tmp").any()
    store = open_store(tmp_path / "s")
    ok = cat.filter(pl.col("status") == "ok")
    assert ok.height > 50  # most flips land in data and still read
    checked = 0
    for row in ok.iter_rows(named=True):
        try:
            with fits.open(row["file"]) as hdul:
                data = hdul["RATE"].data
                frac = np.asarray(data["FRACEXP"], dtype="f8")
                keep = np.nanmax(np.where(np.isfinite(frac), frac, 0.0), axis=1) >= 0.1
                ref = {name: np.asarray(data[name])[keep] for name in ("TIME", "RATE", "COUNTS", "BACK_COUNTS", "FRACEXP")}
                timezero = float(hdul["RATE"].header.get("TIMEZERO", 0.0))
        except Exception:  # noqa: BLE001 - astropy refuses some mutations we accept; nothing to compare
            continue
        lc = store.read(row["source_id"])
        np.testing.assert_array_equal(lc.time, ref["TIME"] + timezero)
        np.testing.assert_array_equal(lc.rate, ref["RATE"])
        np.testing.assert_array_equal(lc.counts, ref["COUNTS"].astype("f4"))
        np.testing.assert_array_equal(lc.back_counts, ref["BACK_COUNTS"])
        np.testing.assert_array_equal(lc.fracexp, ref["FRACEXP"])
        checked += 1
    assert checked > 50


def test_disk_full_exits_2_and_loses_nothing(rebinned_archive, tmp_path, capsys, monkeypatch):
    """A full disk: exit 2 with a message, the committed store intact, and a rerun with space finishes."""
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)], capture_output=True).returncode == 0
    try:
        store = mount / "s"
        half = tmp_path / "half"
        half.mkdir()
        truth = pl.read_parquet(rebinned_archive / "truth.parquet").filter(pl.col("expected") == "ok")
        for name in truth["file"][:20]:
            shutil.copy(rebinned_archive / name, half / name)
        assert cli.run(main, [str(half), "--store", str(store), "--quiet"]) == 0
        before = read_catalog(str(store))
        if not mounted:  # no tmpfs (not root): the file system refuses the same way
            import zarr.storage._local as local

            def full(*args, **kwargs):
                raise OSError(28, "No space left on device")

            monkeypatch.setattr(local, "_put", full)
        else:
            filler = mount / "filler"
            with open(filler, "wb") as fh:
                try:
                    fh.write(b"\0" * 10**7)
                except OSError:
                    pass
        code = cli.run(main, [str(rebinned_archive), "--store", str(store), "--quiet", "--flush-points", "50"])
        err = capsys.readouterr().err
        assert code == 2 and "No space left on device" in err and "nothing committed was lost" in err
        after = read_catalog(str(store))
        assert after.filter(pl.col("file").is_in(before["file"].to_list())).sort("file").equals(before.sort("file"))
        s = open_store(store)
        for row in after.filter(pl.col("status") == "ok").iter_rows(named=True):
            np.testing.assert_array_equal(s.read(row["source_id"]).rate, read_lightcurve(row["file"]).rate)
    finally:
        if mounted:
            subprocess.run(["umount", str(mount)], check=False)


def _children(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.add(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_kill_9_leaves_no_orphan_workers(tmp_path):
    """After kill -9 of an ingest with --workers 2, its workers and resource tracker lived on."""
    from etl.synth import make_archive

    make_archive(tmp_path / "a", n=3000, seed=4, progress=False)
    proc = subprocess.Popen([sys.executable, "-m", "etl.ingest", str(tmp_path / "a"), "--store", str(tmp_path / "s"),
                             "--workers", "2", "--quiet", "--batch-size", "20"], cwd=ROOT)
    deadline = time.monotonic() + 60
    children: set[int] = set()
    while time.monotonic() < deadline and len(children) < 3:
        children = _children(proc.pid)
        time.sleep(0.1)
    assert len(children) >= 3, "expected 2 workers and the resource tracker"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(c) for c in children):
        time.sleep(0.1)
    left = [c for c in children if _alive(c)]
    for c in left:
        os.kill(c, signal.SIGKILL)
    assert not left, f"orphans: {left}"


@pytest.mark.slow
def test_reader_beside_a_running_ingest(tmp_path):
    """read_many beside a running ingest always succeeds: committed shards are never written again."""
    from etl.synth import make_archive

    make_archive(tmp_path / "a", n=2500, seed=8, flavour="mixed", progress=False)
    store_path = tmp_path / "s"
    proc = subprocess.Popen([sys.executable, "-m", "etl.ingest", str(tmp_path / "a"), "--store", str(store_path), "--quiet",
                             "--flush-points", "300", "--batch-size", "16"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (store_path / "catalog.parquet").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    reads = errors = 0
    expected: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(0)
    try:
        while proc.poll() is None and time.monotonic() < deadline + 60:
            try:
                store = open_store(store_path, cache_bytes=0)
                ids = store.source_ids
                pick = [ids[i] for i in rng.integers(0, len(ids), size=min(32, len(ids)))] if ids else []
                batch = store.read_many(pick, columns=["rate", "time"])
            except Exception as exc:  # noqa: BLE001 - counted: a reader must never fail on committed data
                errors += 1
                print(repr(exc))
                continue
            reads += 1
            for i, sid in enumerate(pick):
                if sid not in expected:
                    row = store.catalog().filter(pl.col("source_id") == sid).collect()
                    expected[sid] = read_lightcurve(row["file"][0]).rate
                np.testing.assert_array_equal(batch[i]["rate"], expected[sid])
    finally:
        proc.wait(timeout=300)
    assert proc.returncode == 0, proc.stderr.read()
    assert reads > 20 and errors == 0, f"{errors} failed reads of {reads + errors}"


def test_all_nan_band_is_quiet(tmp_path):
    """An all-NaN band gives a null mean rate and no warning."""
    import warnings

    from etl.fitswriter import bintable_fits_bytes
    from etl.synth import lightcurve_header, simulate_source

    cols, _ = simulate_source(np.random.default_rng(2), "rebinned", 8, "constant")
    cols["RATE"][:, 2] = np.nan
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "nanband.fits").write_bytes(bintable_fits_bytes(cols, header=lightcurve_header("nb", 10.0, 10.0, cols)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summary = ingest(tmp_path / "a", tmp_path / "s", progress=False)
    assert summary.ingested == 1
    row = read_catalog(str(tmp_path / "s")).row(0, named=True)
    assert row["mean_rate_b1"] is not None and (row["mean_rate_b3"] is None or np.isnan(row["mean_rate_b3"]))


def test_oversized_file_is_refused_before_and_after_reading(tmp_path, monkeypatch):
    """A file larger than any light curve is refused from its size, and also if it grew while being read."""
    import etl.reader as reader

    monkeypatch.setattr(reader, "MAX_FILE_BYTES", 1000)
    big = tmp_path / "big.fits"
    big.write_bytes(b"SIMPLE  =" + b" " * 2000)
    with pytest.raises(InvalidLightCurveError) as info:
        reader.read_regular_file(str(big))
    assert info.value.code == "too_large"
    with pytest.raises(InvalidLightCurveError) as info:
        reader.check_size(b"x" * 1001, "grown.fits")
    assert info.value.code == "too_large"


DR1_FILE = Path(__file__).resolve().parents[1] / "data" / "em01_080156_020_LightCurve_00002_c010.fits"


def _dr1_with(tmp_path, change) -> Path:
    """A copy of the real DR1 file with ``change(data)`` applied to its RATE table."""
    with fits.open(DR1_FILE) as hdul:
        hdul = fits.HDUList([h.copy() for h in hdul])
    change(hdul["RATE"].data)
    path = tmp_path / "em01_080156_020_LightCurve_00002_c010.fits"
    hdul.writeto(path, overwrite=True)
    return path


def _exposed_errors(lc):
    exposed = np.isfinite(lc.rate)
    return lc.rate_errm[exposed], lc.rate_errp[exposed]


def test_negative_rate_err_is_never_stored(tmp_path):
    """A negative RATE_ERR (with NaN estimated errors) is not an error: Gehrels' errors are stored, each counted."""
    def change(data):
        data["RATE_ERR"][:] = -np.abs(data["RATE_ERR"])
        data["RATE_ESTPOSERR"][:] = np.nan
        data["RATE_ESTNEGERR"][:] = np.nan

    lc = read_lightcurve(_dr1_with(tmp_path, change))
    errm, errp = _exposed_errors(lc)
    assert (errm >= 0).all() and (errp > 0).all()  # Gehrels' count errors (lower: 0 at 0 counts), never negative
    with fits.open(DR1_FILE) as hdul:
        data = hdul["RATE"].data
        keep = np.isin(data["TIME"], lc.time)
        negative = (np.asarray(data["RATE_ERR"][keep], float) != 0) | ~np.isfinite(np.asarray(data["RATE_ERR"][keep], float))
    assert lc.n_err_fallback == int((negative & np.isfinite(lc.rate)).sum()) > 300  # each counted in the catalog


def test_negative_estimated_upper_error_falls_back_instead_of_flipping(tmp_path):
    """A negative RATE_ESTPOSERR is not an error: RATE_ERR is used, its sign is never flipped."""
    with fits.open(DR1_FILE) as hdul:
        original = hdul["RATE"].data

        def change(data):
            data["RATE_ESTPOSERR"][:] = -np.abs(data["RATE_ESTPOSERR"])

        lc_bad = read_lightcurve(_dr1_with(tmp_path, change))
        keep = np.isin(original["TIME"], lc_bad.time)
        err = np.asarray(original["RATE_ERR"][keep], float)
        pos = np.asarray(original["RATE_ESTPOSERR"][keep], float)
    exposed = np.isfinite(lc_bad.rate)
    use_err = exposed & np.isfinite(err) & (err >= 0) & np.isfinite(pos) & (pos > 0)
    np.testing.assert_allclose(lc_bad.rate_errp[use_err], err[use_err], rtol=1e-6)  # not |RATE_ESTPOSERR|
    assert not np.allclose(lc_bad.rate_errp[use_err], pos[use_err])
    assert (lc_bad.rate_errp[exposed] >= 0).all() and (lc_bad.rate_errm[exposed] >= 0).all()


@pytest.mark.parametrize("value", [1e30, 1.5, -0.2, -1e30])
def test_fracexp_outside_zero_one_rejects_the_file(tmp_path, value):
    """A FRACEXP outside [0, 1] (1e30, 1.5, below zero) rejects the file as bad_fracexp, naming the row and band."""
    def change(data):
        data["FRACEXP"][5, 1] = value

    archive = tmp_path / "a"
    archive.mkdir()
    shutil.move(_dr1_with(tmp_path, change), archive / DR1_FILE.name)
    summary = ingest(archive, tmp_path / "s", progress=False)
    assert summary.rejected == 1 and codes(tmp_path / "s") == {DR1_FILE.name: "bad_fracexp"}
    assert "row 6, band 2" in read_catalog(str(tmp_path / "s"))["reason"][0]


def test_fuzzed_errors_and_exposures_are_valid_or_rejected(real_files, tmp_path):
    """Byte flips in the data of the real files: every ok row stores errors >= 0 and FRACEXP in [0, 1]."""
    archive = tmp_path / "fuzz"
    archive.mkdir()
    _fuzz_files(real_files, archive, n_flips=240, n_headers=0)
    shutil.copy(DR1_FILE, archive / "dr1.fits")
    raw = bytearray(DR1_FILE.read_bytes())
    rng = np.random.default_rng(7)
    start = raw.index(b"XTENSION") + 2880 * 4  # past the RATE header: flips land in the table
    for i in range(120):
        data = bytearray(raw)
        for pos in rng.integers(start, len(data), 3):
            data[pos] ^= 1 << int(rng.integers(0, 8))
        (archive / f"dr1_flip{i:03d}.fits").write_bytes(bytes(data))
    ingest(archive, tmp_path / "s", progress=False)
    store = open_store(tmp_path / "s")
    assert len(store) > 100
    for sid in store.source_ids:
        lc = store.read(sid)
        exposed = np.isfinite(lc.rate)
        assert (lc.rate_errm[exposed] >= 0).all() and (lc.rate_errp[exposed] >= 0).all(), sid
        frac = lc.fracexp[np.isfinite(lc.fracexp)]
        assert ((frac >= 0) & (frac <= 1.001)).all(), sid
