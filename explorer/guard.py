"""What the page accepts from a browser: well-formed callback requests with values of the right type.

The page has no login and binds this machine only, but whatever reaches it must be answered
as a web server should: a request Dash's own routing cannot serve (a library that is not
registered, ``/_dash-component-suites/../../etc/passwd``) is ``404 Not Found``, and a callback
request whose body is malformed, names an input the page does not have, or carries a value of
the wrong type (a pathname that is a number or an object) is ``400 Bad Request``, checked before
any callback runs. Neither reaches the log as a traceback.
"""

from __future__ import annotations

from dash.exceptions import DependencyException
from flask import abort, jsonify, request

#: The types a browser may send for each property the page's callbacks read (None always allowed).
PROPERTY_TYPES: dict[str, tuple[type, ...]] = {
    "n_clicks": (int,), "page_current": (int,), "page_size": (int,), "sort_by": (list,), "pathname": (str,),
    "filter_query": (str,), "value": (str, int, float), "data": (str,), "getRowsRequest": (dict,),
}


def guard(app) -> None:
    """Install the checks on ``app``'s server; call after every callback is declared."""
    server = app.server
    allowed = {(item["id"], item["property"]) for spec in app.callback_map.values()
               for item in [*spec.get("inputs", []), *spec.get("state", [])]}
    update_path = app.config.requests_pathname_prefix + "_dash-update-component"

    @server.errorhandler(DependencyException)
    def not_a_dependency(exc):
        return jsonify(error="not found"), 404

    @server.before_request
    def check_callback_request():
        if request.path != update_path:
            return None
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("inputs", []), list) \
                or not isinstance(body.get("state", []), list):
            abort(400, "a callback request is a JSON object with lists 'inputs' and 'state'")
        for item in [*body.get("inputs", []), *body.get("state", [])]:
            if not isinstance(item, dict) or (item.get("id"), item.get("property")) not in allowed:
                abort(400, "unknown callback input")
            value, types = item.get("value"), PROPERTY_TYPES.get(item["property"], (str,))
            if value is not None and (not isinstance(value, types) or isinstance(value, bool) and bool not in types):
                abort(400, f"{item['id']}.{item['property']}: a value of type {type(value).__name__} is not accepted")
        return None
