"""Labels: append-only log, crash safety under kill -9, CSV import, the ``labels`` feature set."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import polars as pl
import pytest

from common import cli
from etl.ingest import ingest
from etl.store import open_store
from etl.synth import make_archive
from features import get_features
from features.labels import LabelError, LabelLog, log_path, main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("labels")
    make_archive(root / "a", n=30, seed=4, flavour="rebinned", progress=False)
    ingest(root / "a", root / "s", progress=False)
    return open_store(str(root / "s"))


def test_append_latest_and_feature_set(store, tmp_path):
    log = LabelLog(tmp_path / "labels.jsonl", set(store.source_ids))
    a, b = store.source_ids[:2]
    log.append(a, "interesting", "dip?", user="ann")
    log.append(b, "boring", user="bob")
    log.append(a, "artefact", "ghost of a bright neighbour", user="bob")
    latest = log.latest()
    assert latest.filter(pl.col("source_id") == a).row(0, named=True) | {"label_time": None} == {
        "source_id": a, "label": "artefact", "label_comment": "ghost of a bright neighbour", "label_user": "bob",
        "label_time": None, "n_labels": 2}
    assert log.history().height == 3  # nothing rewritten
    with pytest.raises(LabelError, match="unknown label 'weird'"):
        log.append(a, "weird")
    with pytest.raises(LabelError, match="not a source of this store"):
        log.append("nope", "boring")


def test_get_features_joins_the_store_labels(store):
    log = LabelLog.for_store(store)
    assert log.path == log_path(store.url)
    log.append(store.source_ids[3], "variable", user="ann")
    joined = get_features(store, ["labels"]).collect()
    assert joined.height == len(store.source_ids)
    assert joined.filter(pl.col("label").is_not_null())["source_id"].to_list() == [store.source_ids[3]]
    with pytest.raises(LabelError, match="needs a local store"):
        log_path("s3://bucket/store.zarr")


def test_torn_line_is_skipped_and_the_next_label_kept(tmp_path):
    log = LabelLog(tmp_path / "l.jsonl")
    log.append("a", "boring")
    with open(log.path, "ab") as fh:  # a writer killed mid-line (never acknowledged)
        fh.write(b'{"source_id":"b","lab')
    log.append("c", "variable")
    assert log.history()["source_id"].to_list() == ["a", "c"]


WRITER = """
import sys
from features.labels import LabelLog
log = LabelLog(sys.argv[1])
i = 0
while True:
    log.append(f"s{i}", "boring", "x" * 200)
    print(i, flush=True)  # acknowledged: fsync-ed before this line
    i += 1
"""


def test_kill_9_loses_no_acknowledged_label(tmp_path):
    path = tmp_path / "l.jsonl"
    for round_ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
        acked = []
        deadline = time.monotonic() + 0.3 + 0.2 * round_
        while time.monotonic() < deadline:
            acked.append(proc.stdout.readline().strip())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        stored = set(LabelLog(path).history()["source_id"].to_list())
        assert any(acked), "the writer acknowledged nothing before the kill"
        assert {f"s{i.split()[0]}" for i in acked if i} <= stored


def test_csv_import(store, tmp_path):
    a, b = store.source_ids[5:7]
    csv = tmp_path / "labels.csv"
    csv.write_text(f"source_id,label,comment\n{a},known,SIMBAD: CV\n{b},variable,\n")
    log = LabelLog(tmp_path / "l.jsonl", set(store.source_ids))
    assert len(log.read_csv(csv, user="importer")) == 2
    assert log.latest().sort("source_id")["label_user"].to_list() == ["importer", "importer"]
    bad = tmp_path / "bad.csv"
    bad.write_text(f"source_id,label\n{a},known\n{b},maybe\n")
    with pytest.raises(LabelError, match="line 3"):
        log.read_csv(bad)
    assert log.history().height == 2  # a bad file stores nothing
    with pytest.raises(LabelError, match="lacks column"):
        (tmp_path / "x.csv").write_text("id,label\n1,boring\n")
        log.read_csv(tmp_path / "x.csv")


def test_csv_import_refuses_bad_rows_with_their_line(store, tmp_path):
    """Non-UTF-8 bytes, ragged rows, a non-ISO time, an empty label, a field past csv's limit: refused with the line."""
    a, b = store.source_ids[:2]
    log = LabelLog(tmp_path / "l.jsonl", set(store.source_ids))
    cases = {
        f"source_id,label\n{a},known\n{b},bor\xe9\n".encode("latin-1"): r"line 3: not UTF-8 text \(byte 0xe9\)",
        f"source_id,label,comment\n{a},known,fine\n{b},variable,one,two\n".encode(): "line 3: 4 fields, the header has 3",
        f"source_id,label,time\n{a},known,yesterday\n".encode(): "line 2: time 'yesterday' is not ISO-8601",
        f"source_id,label\n{a},\n".encode(): "line 2: .*empty label",
        f"source_id,label,colour\n{a},known,red\n".encode(): "line 1: unknown column",
    }
    for i, (content, message) in enumerate(cases.items()):
        path = tmp_path / f"bad{i}.csv"
        path.write_bytes(content)
        with pytest.raises(LabelError, match=message):
            log.read_csv(path)
    assert log.history().height == 0  # nothing of a bad file is stored
    good = tmp_path / "good.csv"
    good.write_text(f'source_id,label,comment,time\n{a},known,"SIMBAD: CV, eclipsing",2026-01-02T03:04:05+01:00\n\n')
    (record,) = log.read_csv(good)
    assert record["comment"] == "SIMBAD: CV, eclipsing" and record["time"] == "2026-01-02T02:04:05.000+00:00"


def test_cli_import_and_show(store, tmp_path, capsys):
    csv = tmp_path / "labels.csv"
    csv.write_text(f"source_id,label\n{store.source_ids[8]},interesting\n")
    labels = tmp_path / "cli.jsonl"
    assert cli.run(main, ["import", "--store", store.url, "--labels", str(labels), str(csv)]) == 0
    assert cli.run(main, ["show", "--store", store.url, "--labels", str(labels)]) == 0
    assert "interesting" in capsys.readouterr().out
    assert json.loads(labels.read_text().splitlines()[0])["label"] == "interesting"
    assert cli.run(main, ["import", "--store", str(tmp_path / "none"), str(csv)]) == 2
