"""The candidates table: filters (and their errors), ranking, paging, label state, cone, export, neighbours."""

from __future__ import annotations

import io

import numpy as np
import polars as pl
import pytest

from etl.store import open_store
from explorer.table import CandidateTable, FilterError, Query, filter_expression
from features.labels import LabelLog


@pytest.fixture()
def table(explorer_store, tmp_path):
    store = open_store(explorer_store)
    return CandidateTable.from_store(store, LabelLog(tmp_path / "labels.jsonl", set(store.source_ids)))


def test_from_store_joins_every_set(table):
    assert table.frame.height == 150 and table.frame["source_id"].is_unique().all()
    assert {"variability", "poisson_variability", "morphology", "vae_anomaly", "vae_latent", "discovery"} <= set(table.sets)
    assert {"discovery_score", "combined_score", "variable_fpp", "anomaly_fpp", "hr_12", "ra"} <= set(table.frame.columns)
    assert table.latents is not None and table.latents.shape == (150, 8)  # mu_* kept aside, not columns
    assert not any(c.startswith("mu_") for c in table.frame.columns)
    assert table.default_score() == "discovery_score"  # the default ranking when the discovery set exists
    from astropy.coordinates import SkyCoord

    row = table.frame.row(7, named=True)
    g = SkyCoord(row["ra"], row["dec"], unit="deg").galactic
    assert (row["gal_l"], row["gal_b"], row["abs_gal_b"]) == pytest.approx((g.l.deg, g.b.deg, abs(g.b.deg)))


def test_ranking_paging_and_fpp_order(table):
    rows, total = table.page(Query(page_size=10))
    assert total == 150 and rows.height == 10
    assert rows["discovery_score"].is_sorted(descending=True, nulls_last=True)
    second, _ = table.page(Query(page=1, page_size=10))
    assert not set(rows["source_id"]) & set(second["source_id"])
    by_fpp, _ = table.page(Query(score="variable_fpp", page_size=150))
    assert by_fpp["variable_fpp"].drop_nulls().is_sorted()  # small FPP = remarkable: ascending
    by_col, _ = table.page(Query(sort_by=[{"column_id": "n_bins", "direction": "desc"}], page_size=150))
    assert by_col["n_bins"].is_sorted(descending=True, nulls_last=True)


def test_filters(table):
    rows, total = table.page(Query(filter_query="{n_bins} >= 10 && {variable_fpp} < 0.01", page_size=150))
    expect = table.frame.filter((pl.col("n_bins") >= 10) & (pl.col("variable_fpp") < 0.01))
    assert total == expect.height and set(rows["source_id"]) == set(expect["source_id"])
    some = table.frame["source_id"][0]
    _, n = table.page(Query(filter_query=f'{{source_id}} contains "{some[-6:]}"'))
    assert n >= 1
    _, n = table.page(Query(filter_query="{n_bins} s> 5"))  # DataTable's strict-typed operator spelling
    assert n == table.frame.filter(pl.col("n_bins") > 5).height
    for bad, message in (("{n_bins} > many", "is numeric"), ("{nope} > 1", "no column 'nope'"),
                         ("{n_bins} between 1", "unknown filter operator"), ("n_bins > 1", "cannot read the filter")):
        with pytest.raises(FilterError, match=message):
            table.page(Query(filter_query=bad))
    with pytest.raises(FilterError, match="no score column"):
        table.page(Query(score="nope"))
    assert filter_expression("", {}) is None


def test_label_state_and_cone(table):
    ids = table.frame["source_id"].to_list()
    table.labels.append(ids[0], "variable")
    table.labels.append(ids[1], "boring")
    assert set(table.select(Query(label_state="labelled"))["source_id"]) == {ids[0], ids[1]}
    assert table.select(Query(label_state="boring"))["source_id"].to_list() == [ids[1]]
    assert table.select(Query(label_state="unlabelled")).height == 148
    with pytest.raises(FilterError, match="unknown label state"):
        table.select(Query(label_state="maybe"))
    ra, dec = table.frame.filter(pl.col("source_id") == ids[2]).select("ra", "dec").row(0)
    assert ids[2] in table.select(Query(cone=(ra, dec, 1.0)))["source_id"].to_list()


def test_export_neighbours_and_source(table):
    q = Query(filter_query="{n_bins} > 5")
    csv = pl.read_csv(io.BytesIO(table.export(q, "csv")))
    parquet = pl.read_parquet(io.BytesIO(table.export(q, "parquet")))
    assert csv.height == parquet.height == table.select(q).height
    assert parquet["source_id"].to_list() == table.select(q)["source_id"].to_list()  # the view's order
    with pytest.raises(FilterError, match="unknown export format"):
        table.export(q, "xlsx")
    sid = table.frame["source_id"][5]
    near = table.similar(sid, 4)
    assert len(near) == 4 and sid not in [s for s, _ in near]
    d = np.linalg.norm(table.latents - table.latents[table.row[sid]], axis=1)
    d[table.row[sid]] = np.inf
    assert [s for s, _ in near] == table.frame["source_id"].gather(np.argsort(d)[:4]).to_list()  # exact kNN
    assert table.source(sid)["source_id"] == sid and table.source("nope") is None
    assert table.neighbour_in_order(table.select(Query())["source_id"][0], 1) == table.select(Query())["source_id"][1]


def test_hostile_queries(table):
    from explorer.app import cone_of, joined, source_from_path, source_path

    with pytest.raises(FilterError, match="radius must be at most 180"):
        table.select(Query(cone=(0.0, 0.0, 1e9)))
    assert cone_of(None, "", None) is None and cone_of("10", "-5", "60") == (10.0, -5.0, 60.0)
    for bad in (("x", "1", "1"), ("1", "95", "1"), ("1", "1", "-3"), ("1", None, "1")):
        with pytest.raises(FilterError):
            cone_of(*bad)
    for weird in ("a/b c+d", "%00", "../../etc/passwd", "ü"):
        assert source_from_path(source_path(weird)) == weird
        assert table.source(weird) is None
    _, n = table.page(Query(filter_query='{source_id} contains "(["'))  # regex characters are literal
    assert n == 0
    assert joined("{a} > 1", None, "  ", "{b} < 2") == "{a} > 1 && {b} < 2"


def test_feature_values_are_each_sets_own_from_memory(table, explorer_store):
    """The source view's values: every column of every set (duplicates and latents included) as its Parquet has them."""
    from features.featurestore import get_feature_set

    store = open_store(explorer_store)
    for source_id in table.frame["source_id"].to_list()[::37]:
        shown = table.feature_values(source_id)
        assert set(shown) == set(table.sets)
        for name, values in shown.items():
            _, data = get_feature_set(store, f"{name}@{table.sets[name]}")
            row = data.filter(pl.col("source_id") == source_id).collect().row(0, named=True)
            assert [c for c, _ in values] == [c for c in row if c != "source_id"]
            for column, value in values:
                expected = row[column]
                if isinstance(expected, float) and not np.isfinite(expected):
                    assert value is None or not np.isfinite(value), (name, column)
                elif isinstance(expected, float):
                    assert value == pytest.approx(expected, rel=1e-6), (name, column)  # latents are kept as float32
                else:
                    assert value == expected, (name, column)
    assert table.feature_values("no such source") == {}


def test_combined_score_keeps_the_order_of_tiny_fpps(tmp_path):
    """The first 20+ rows of the default ranking all showed combined_score = 12 for FPPs from 1e-13 to 1e-45."""
    fpp = np.array([1e-13, 1e-45, 3e-20, 1e-300, 0.5, 1e-30, 0.0])
    ids = [f"s{i}" for i in range(len(fpp))]
    frame = pl.DataFrame({"source_id": ids, "variable_fpp": fpp, "anomaly_fpp": np.full(len(fpp), 0.9)})
    table = CandidateTable(frame, LabelLog(tmp_path / "labels.jsonl"))
    rows, _ = table.page(Query(page_size=10))
    assert rows["source_id"].to_list() == ["s6", "s3", "s1", "s5", "s2", "s0", "s4"]  # 0 first, then by FPP
    assert rows["combined_score"].n_unique() == len(fpp)  # no ties, no cap
