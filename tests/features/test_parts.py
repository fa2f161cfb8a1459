"""Parts: a computation over a store in slices, whose finished slices survive a failure or a kill."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from etl.ingest import ingest
from etl.store import open_store
from etl.synth import make_archive
from features.builders import PartRunner, build_poisson_variability, poisson_part
from features.parts import PARTS_DIR, PartRun, parts_key


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("parts")
    make_archive(root / "a", n=230, seed=6, flavour="rebinned", progress=False)
    ingest(root / "a", root / "s", progress=False)
    return open_store(root / "s")


def ids(store, start: int, stop: int) -> pl.DataFrame:
    return pl.DataFrame({"source_id": store.ok_sources()["source_id"][start:stop], "start": start})


def test_parts_cover_the_store_in_order(store):
    run = PartRun(store, "ids", parts_key(x=1), part_sources=50)
    assert run.spans() == [(0, 50), (50, 100), (100, 150), (150, 200), (200, 230)]
    frame = run.run(ids, jobs=2)
    assert frame["source_id"].to_list() == store.ok_sources()["source_id"].to_list()
    assert len(run.done()) == 5
    run.discard()
    assert not (store_path(store) / "features" / PARTS_DIR).exists() or not any((store_path(store) / "features" / PARTS_DIR).iterdir())


def store_path(store):
    from pathlib import Path

    return Path(store.url)


def test_a_failed_run_keeps_its_finished_parts_and_the_next_computes_only_the_rest(store):
    calls, failed = [], []

    def flaky(s, start, stop):
        calls.append(start)
        if start == 150 and not failed:  # the first attempt at part 150 only
            failed.append(start)
            raise RuntimeError("a worker died")
        return ids(s, start, stop)

    run = PartRun(store, "flaky", parts_key(y=2), part_sources=50)
    with pytest.raises(RuntimeError, match="a worker died"):
        run.run(flaky, jobs=1)
    assert set(run.done()) == {(0, 50), (50, 100), (100, 150)}
    calls.clear()
    frame = PartRun(store, "flaky", parts_key(y=2), part_sources=50).run(flaky, jobs=1)
    assert sorted(set(calls)) == [150, 200] and frame.height == 230  # (200 may have been in flight when 150 failed)
    assert frame["source_id"].to_list() == store.ok_sources()["source_id"].to_list()


def test_parts_of_another_key_are_never_reused(store):
    PartRun(store, "keyed", parts_key(snapshot="a"), part_sources=100).run(lambda s, a, b: ids(s, a, b).with_columns(tag=pl.lit("a")))
    again = PartRun(store, "keyed", parts_key(snapshot="b"), part_sources=100)
    assert again.done() == []
    assert set(again.run(lambda s, a, b: ids(s, a, b).with_columns(tag=pl.lit("b")))["tag"]) == {"b"}
    again.discard()  # every key of the label goes
    assert PartRun(store, "keyed", parts_key(snapshot="a"), part_sources=100).done() == []


def test_a_set_built_in_parts_equals_the_set_built_whole(store, tmp_path):
    whole = poisson_part(store, 0, len(store))
    in_parts = PartRunner(jobs=2, part_sources=37).run(store, "poisson_variability", parts_key(z=3), poisson_part)[0]
    # equal up to float32 rounding: BLAS sums the bexvar grids in another order for other batch shapes
    assert_frame_equal(in_parts, whole, check_exact=False, rel_tol=1e-4, abs_tol=1e-6)
    meta, created = build_poisson_variability(store, n_null=2000, runner=PartRunner(jobs=2, part_sources=60))
    assert created and meta["rows"] == 230
    assert not any((store_path(store) / "features" / PARTS_DIR).glob("poisson_variability-*"))  # discarded once written
