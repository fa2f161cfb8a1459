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
