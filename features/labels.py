"""Expert labels: an append-only, crash-safe log beside the store, read as a feature set.

    python -m features.labels import --store STORE labels.csv [--user NAME]
    python -m features.labels show --store STORE [--all]

Layout: ``STORE/labels/labels.jsonl``, one JSON object per line (``source_id``, ``label``,
``comment``, ``user``, ``time`` as ISO-8601 UTC). A label is *acknowledged* only after its line
was written with one ``write`` on a file opened ``O_APPEND`` and ``fsync``-ed, so a killed
server loses no acknowledged label and two writers never interleave inside a line (POSIX
appends of one ``write`` are atomic on a local file system). A torn last line — a writer killed
mid-write, never acknowledged — is skipped when read.

Nothing is ever rewritten: a new label for a source supersedes the older one when read
(``latest_labels``), and the whole history stays for audit. ``get_features(store, ["labels"])``
joins the latest label of each source (columns ``label``, ``label_comment``, ``label_user``,
``label_time``, ``n_labels``).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import getpass
import io
import json
import os
import sys
from pathlib import Path

import polars as pl

from common import cli
from common.errors import UserError
from common.location import is_url, resolve
from features.featurestore import register_dynamic_set

LABELS = ("variable", "interesting", "artefact", "known", "boring")
LABELS_DIR = "labels"
LOG_FILE = "labels.jsonl"
LABELS_SET = "labels"  # the feature-set name get_features() resolves to the log
SCHEMA = {"source_id": pl.String, "label": pl.String, "comment": pl.String, "user": pl.String, "time": pl.String}


class LabelError(UserError):
    """A label that cannot be stored or read: unknown label, unknown source, unwritable log."""


def log_path(store_url: str) -> Path:
    """``STORE/labels/labels.jsonl`` of a store on the local file system."""
    if is_url(store_url):
        raise LabelError(f"{store_url}: labels are kept in an append-only file beside the store, "
                         "which needs a local store; pass a local labels file (--labels PATH)")
    return Path(resolve(store_url)) / LABELS_DIR / LOG_FILE


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


class LabelLog:
    """Append and read the labels of one store (or of a labels file given directly).

    Parameters
    ----------
    path : path of the JSONL log; created with its folder on the first append.
    known_sources : optional set of valid source ids; appending another raises LabelError.
    """

    def __init__(self, path: str | os.PathLike, known_sources: set[str] | None = None):
        self.path = Path(path)
        self.known_sources = known_sources

    @classmethod
    def for_store(cls, store, labels_path: str | os.PathLike | None = None) -> "LabelLog":
        return cls(labels_path or log_path(store.url), set(store.source_ids))

    def _check(self, source_id: str, label: str | None) -> None:
        if not source_id:
            raise LabelError("empty source_id")
        if label is None or not str(label).strip():
            raise LabelError(f"{source_id}: empty label (one of {', '.join(LABELS)})")
        if label not in LABELS:
            raise LabelError(f"{source_id}: unknown label {label!r} (one of {', '.join(LABELS)})")
        if self.known_sources is not None and source_id not in self.known_sources:
            raise LabelError(f"{source_id}: not a source of this store")

    def append(self, source_id: str, label: str, comment: str = "", user: str | None = None) -> dict:
        """Store one label durably and return the record; it is safe once this returns."""
        return self.extend([{"source_id": source_id, "label": label, "comment": comment, "user": user}])[0]

    def extend(self, records: list[dict]) -> list[dict]:
        """Store several labels with one fsync (CSV import); every record is checked first."""
        user_default = getpass.getuser()
        out = []
        for r in records:
            self._check(str(r.get("source_id") or ""), r.get("label"))
            out.append({"source_id": str(r["source_id"]), "label": str(r["label"]),
                        "comment": str(r.get("comment") or ""), "user": str(r.get("user") or user_default),
                        "time": str(r.get("time") or now())})
        data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in out).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LabelError(f"{self.path}: cannot open the labels log: {exc}") from exc
        try:
            # a torn previous line (a killed writer) must not swallow this record: start on a new line
            if os.fstat(fd).st_size and not self._ends_with_newline():
                data = b"\n" + data
            view = memoryview(data)
            while view:  # one write in practice; loop only for a short write
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        return out

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"

    def history(self) -> pl.DataFrame:
        """Every stored label in order (columns of ``SCHEMA``); torn or foreign lines are skipped."""
        rows = []
        if self.path.exists():
            for line in self.path.read_bytes().split(b"\n"):
                try:
                    r = json.loads(line)
                except ValueError:
                    continue  # empty, or a torn line from a writer killed before acknowledging
                if isinstance(r, dict) and r.get("label") in LABELS and r.get("source_id"):
                    rows.append({k: str(r.get(k) or "") for k in SCHEMA})
        return pl.DataFrame(rows, schema=SCHEMA)

    def latest(self) -> pl.DataFrame:
        """The latest label of each labelled source, as the ``labels`` feature set's columns."""
        return latest_labels(self.history())

    def read_csv(self, path: str | os.PathLike, user: str | None = None) -> list[dict]:
        """Store the labels of a CSV with columns ``source_id,label[,comment,user,time]``.

        Every row is checked before anything is stored; the first bad one is a
        :class:`LabelError` naming its line: bytes that are not UTF-8, more fields than the header,
        an unknown or empty label, an unknown source, a ``time`` that is not ISO-8601.
        """
        records = [(line, dict(r, user=r.get("user") or user) if user else r) for line, r in read_label_rows(path)]
        for line, r in records:
            try:
                self._check(r["source_id"], r["label"])
            except LabelError as exc:
                raise LabelError(f"{path}, line {line}: {exc}") from None
        return self.extend([r for _, r in records])


def read_label_rows(path: str | os.PathLike) -> list[tuple[int, dict]]:
    """(line number, record) of each data row of a labels CSV; :class:`LabelError` with the line for bad rows."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise LabelError(f"{path}: cannot read labels CSV: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise LabelError(f"{path}, line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip() for h in next(reader, [])]
    missing = {"source_id", "label"} - set(header)
    if missing:
        raise LabelError(f"{path}: labels CSV lacks column(s) {sorted(missing)} (has {header})")
    unknown = set(header) - set(SCHEMA)
    if unknown:
        raise LabelError(f"{path}, line 1: unknown column(s) {sorted(unknown)} (allowed: {', '.join(SCHEMA)})")
    rows = []
    try:
        for line, fields in _numbered(reader):
            rows += _row(path, line, fields, header)
    except csv.Error as exc:  # a field past csv's limit (131,072 characters), a stray NUL...
        raise LabelError(f"{path}, line {reader.line_num}: {exc} (a comment that long is not a label comment)") from None
    return rows


def _numbered(reader):
    for fields in reader:
        yield reader.line_num, fields


def _row(path, line: int, fields: list[str], header: list[str]) -> list[tuple[int, dict]]:
    """The record of one data row (none for a blank line); :class:`LabelError` with the line when it is bad."""
    if not any(f.strip() for f in fields):
        return []  # a blank line
    if len(fields) > len(header):
        raise LabelError(f"{path}, line {line}: {len(fields)} fields, the header has {len(header)} "
                         "(quote a comment that holds commas)")
    record = dict(zip(header, (f.strip() for f in fields)))
    if record.get("time"):
        record["time"] = _iso_time(record["time"], f"{path}, line {line}")
    return [(line, record)]


def _iso_time(text: str, where: str) -> str:
    """An ISO-8601 time as UTC ISO text (a time without zone is taken as UTC); LabelError otherwise."""
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise LabelError(f"{where}: time {text!r} is not ISO-8601 (e.g. 2026-11-29T12:00:00Z)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds")


def latest_labels(history: pl.DataFrame) -> pl.DataFrame:
    """Latest record per source (log order breaks ties), with the number of labels it had."""
    return (history.with_row_index("_order")
            .group_by("source_id").agg(pl.all().sort_by("_order").last(), pl.len().alias("n_labels"))
            .select("source_id", "label", pl.col("comment").alias("label_comment"), pl.col("user").alias("label_user"),
                    pl.col("time").alias("label_time"), pl.col("n_labels").cast(pl.Int64))
            .sort("source_id"))


def labels_feature_set(store) -> tuple[dict, pl.LazyFrame]:
    """The ``labels`` feature set: meta and data, read from the log each time (never stale)."""
    try:
        path = log_path(store.url)
    except LabelError:
        path = None
    history = LabelLog(path).history() if path is not None else pl.DataFrame(schema=SCHEMA)
    frame = latest_labels(history)
    meta = {"name": LABELS_SET, "version": history.height, "rows": frame.height,
            "columns": [c for c in frame.columns if c != "source_id"],
            "lineage": {"log": str(path) if path else None, "records": history.height}}
    return meta, frame.lazy()


def main(argv: list[str] | None = None) -> int:
    from etl.store import open_store

    p = argparse.ArgumentParser(prog="python -m features.labels", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="append the labels of a CSV (source_id,label[,comment,user,time])")
    imp.add_argument("csv", type=Path)
    imp.add_argument("--user", default=None, help="user for rows without one (default: your login)")
    show = sub.add_parser("show", help="print the latest label per source (--all: every record)")
    show.add_argument("--all", action="store_true")
    for s in (imp, show):
        s.add_argument("--store", required=True)
        s.add_argument("--labels", default=None, help="labels log (default: STORE/labels/labels.jsonl)")
    args = p.parse_args(argv)
    log = LabelLog.for_store(open_store(args.store), args.labels)
    if args.command == "import":
        stored = log.read_csv(args.csv, args.user)
        print(f"{len(stored)} labels appended to {log.path}")
    else:
        with pl.Config(tbl_rows=50, fmt_str_lengths=60):
            print(log.history() if args.all else log.latest())
    return 0


register_dynamic_set(LABELS_SET, labels_feature_set)

if __name__ == "__main__":
    sys.exit(cli.run(main))
