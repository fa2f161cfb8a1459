"""Requests the page must refuse politely: paths outside Dash's libraries (404), forged callbacks (400)."""

from __future__ import annotations

import logging

import pytest

from etl.ingest import ingest
from etl.synth import make_archive
from explorer.app import build_app
from explorer.server import load


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("guard")
    make_archive(root / "a", n=12, seed=3, progress=False)
    ingest(root / "a", root / "s", progress=False)
    return build_app(load(str(root / "s"))).server.test_client()


def _render(pathname) -> dict:
    return {"output": "page.children", "outputs": {"id": "page", "property": "children"},
            "inputs": [{"id": "url", "property": "pathname", "value": pathname}], "changedPropIds": ["url.pathname"]}


def test_paths_outside_the_libraries_are_not_found(client, caplog):
    """GET /_dash-component-suites/../../../../etc/passwd is 404, with no traceback in the log."""
    with caplog.at_level(logging.ERROR):
        for path in ("/_dash-component-suites/../../../../etc/passwd", "/_dash-component-suites/dash/../../../../etc/passwd",
                     "/_dash-component-suites/no_such_library/x.js"):
            response = client.get(path)
            assert response.status_code == 404, path
            assert b"root:" not in response.data
    assert not [r for r in caplog.records if r.exc_info]


def test_forged_callbacks_are_bad_requests(client, caplog):
    """A forged /_dash-update-component whose pathname is a number or an object is 400."""
    with caplog.at_level(logging.ERROR):
        for value in (5, {"a": 1}, ["/"], True):
            assert client.post("/_dash-update-component", json=_render(value)).status_code == 400, value
        forged = _render("/")
        forged["inputs"][0]["id"] = "no-such-component"
        assert client.post("/_dash-update-component", json=forged).status_code == 400
        assert client.post("/_dash-update-component", data="{not json", content_type="application/json").status_code == 400
        assert client.post("/_dash-update-component", json=[1, 2]).status_code == 400
    assert not [r for r in caplog.records if r.exc_info]
    assert client.post("/_dash-update-component", json=_render("/")).status_code == 200  # the real request still works
    assert client.post("/_dash-update-component", json=_render(None)).status_code == 200


def _figures_of(source_id) -> dict:
    """The source view's figure callback, as the page sends it, for ``source_id``."""
    return {"output": "..lc-graph.figure...context-graph.figure..",
            "outputs": [{"id": "lc-graph", "property": "figure"}, {"id": "context-graph", "property": "figure"}],
            "inputs": [{"id": "time-unit", "property": "value", "value": "mjd"}],
            "state": [{"id": "source-id", "property": "data", "value": source_id}], "changedPropIds": ["time-unit.value"]}


def test_an_unknown_source_costs_one_log_line(client, caplog):
    """Figures asked for an id the store does not hold: a message in the figure and one warning line each, no traceback."""
    with caplog.at_level(logging.INFO):
        for i in range(20):
            response = client.post("/_dash-update-component", json=_figures_of(f"no-such-source-{i}"))
            assert response.status_code == 200 and b"cannot read this light curve" in response.data
    mine = [r for r in caplog.records if r.name == "explorer.app"]
    assert len(mine) == 20 and all(r.levelno == logging.WARNING and not r.exc_info for r in mine)
    assert all("no-such-source" in r.getMessage() and "\n" not in r.getMessage() for r in mine)


def test_grid_requests_are_checked(client):
    """The candidates grid's row requests: a dict, anything else 400; a filter the table cannot apply is a message."""
    def rows(request):
        return {"output": "..candidates.getRowsResponse...table-message.children...table-count.children..",
                "outputs": [{"id": "candidates", "property": "getRowsResponse"}, {"id": "table-message", "property": "children"},
                            {"id": "table-count", "property": "children"}],
                "inputs": [{"id": "candidates", "property": "getRowsRequest", "value": request}],
                "state": [{"id": i, "property": "value", "value": v} for i, v in
                          (("score", None), ("label-state", "any"), ("expr-filter", None), ("cone-ra", None),
                           ("cone-dec", None), ("cone-radius", None))],
                "changedPropIds": ["candidates.getRowsRequest"]}

    assert client.post("/_dash-update-component", json=rows("startRow=0")).status_code == 400
    ok = client.post("/_dash-update-component", json=rows({"startRow": 0, "endRow": 5, "sortModel": [], "filterModel": {}}))
    body = ok.get_json()["response"]
    assert ok.status_code == 200 and body["candidates"]["getRowsResponse"]["rowCount"] == 12
    assert len(body["candidates"]["getRowsResponse"]["rowData"]) == 5
    either = {"n_points": {"filterType": "number", "operator": "OR", "conditions": [
        {"filterType": "number", "type": "greaterThan", "filter": 3}, {"filterType": "number", "type": "lessThan", "filter": 1}]}}
    refused = client.post("/_dash-update-component", json=rows({"startRow": 0, "endRow": 5, "filterModel": either})).get_json()
    assert "only conditions joined with AND" in refused["response"]["table-message"]["children"]
