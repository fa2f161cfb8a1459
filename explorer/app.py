"""The Dash app: candidates view (``/``) and source view (``/source/<id>``).

Dash because it is what the field's brokers use for this job (Fink's science portal), its
DataTable pages, sorts and filters on the server (``*_action="custom"``) so a million rows never
reach the browser, and it serves its JavaScript bundles and our ``assets/`` from the package:
nothing comes from a CDN.
"""

from __future__ import annotations

import logging
import threading
import urllib.parse
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import polars as pl
from astropy.coordinates import SkyCoord
import dash_ag_grid as dag
from dash import ClientsideFunction, Dash, Input, Output, State, ctx, dcc, html, no_update

from etl.lightcurve import band_labels, softest_band
from explorer import figures
from explorer.guard import guard
from explorer.reconstruction import reconstruction
from explorer.table import ASCENDING, LABEL_STATES, CandidateTable, FilterError, Query
from features.active import feature_matrix, make_ranker
from features.featurestore import get_feature_set
from features.feedback import import_classifier
from features.labels import LABELS, LabelError

log = logging.getLogger(__name__)
ASSETS = Path(__file__).with_name("assets")
PAGE_SIZE = 25
GRID_HEIGHT_PX = 26 * PAGE_SIZE + 30 + 32 + 60  # a page of rows, the header, the filters and the paging bar
#: AG Grid's filter types -> the table's filter operators (terms of a filter_query)
GRID_FILTERS = {"equals": "=", "notEqual": "!=", "lessThan": "<", "lessThanOrEqual": "<=", "greaterThan": ">",
                "greaterThanOrEqual": ">=", "contains": "contains"}
N_SIMILAR = 6
KEYS = {"variable": "1", "interesting": "2", "artefact": "3", "known": "4", "boring": "5"}


class Explorer:
    """The app's state: the candidates table, the store, the label-driven ranker (built on first use)."""

    def __init__(self, store, table: CandidateTable, user: str):
        self.store, self.table, self.user = store, table, user
        self.bands = band_labels(store.e_min, store.e_max)
        self._ranker = None
        self._ranker_lock = threading.Lock()  # Flask serves on threads: one re-fit at a time
        self.vae_lineage = None
        if "vae_anomaly" in table.sets:
            self.vae_lineage = get_feature_set(store, f"vae_anomaly@{table.sets['vae_anomaly']}")[0]["lineage"]

    def next_candidate(self) -> str | None:
        """The highest unlabelled source of the ranking re-fitted from every label so far
        (``features.feedback.LabelRanker``: ``discovery_score`` until the first "interesting" label)."""
        with self._ranker_lock:
            if self._ranker is None:
                x, _ = feature_matrix(self.table.frame)
                if self.table.latents is not None:
                    x = np.hstack([x, np.nan_to_num(self.table.latents, posinf=0.0, neginf=0.0)])
                self._ranker = make_ranker(self.table.frame, x)
            labels = self.table.labelled()
            self._ranker.update(labels["source_id"].to_list(), labels["label"].to_list())
            ids = self._ranker.next(1)
        return ids[0] if ids else None


def source_path(source_id: str) -> str:
    return "/source/" + urllib.parse.quote(source_id, safe="")


def source_from_path(pathname: str | None) -> str | None:
    if pathname and pathname.startswith("/source/"):
        return urllib.parse.unquote(pathname[len("/source/"):])
    return None


def header(ex: Explorer) -> html.Div:
    return html.Div(className="header", children=[
        html.A("eROSITA light-curve explorer", href="/", className="title"),
        html.Span(f"{ex.store.url} · {ex.table.frame.height:,} sources · feature sets: "
                  + (", ".join(f"{k}@{v}" for k, v in ex.table.sets.items()) or "none"), className="subtitle"),
        html.Div(className="nav", children=[
            html.Button("◀ previous (k)", id="btn-prev", n_clicks=0),
            html.Button("next (j) ▶", id="btn-next", n_clicks=0),
            html.Button("next candidate (n)", id="btn-active", n_clicks=0, className="primary",
                        title="the highest unlabelled source of the ranking re-fitted from your labels (discovery_score until the first interesting one)"),
            html.A("candidates", href="/", className="navlink"),
        ]),
    ])


def candidates_layout(ex: Explorer) -> html.Div:
    t = ex.table
    return html.Div(id="candidates-view", children=[
        html.Div(className="controls", children=[
            html.Label(["rank by", dcc.Dropdown(id="score", options=t.score_columns(), value=t.default_score(),
                                                clearable=False, style={"width": "260px"})]),
            html.Label(["labels", dcc.Dropdown(id="label-state", options=list(LABEL_STATES), value="any",
                                               clearable=False, style={"width": "150px"})]),
            html.Label(["cone RA", dcc.Input(id="cone-ra", type="text", placeholder="deg", style={"width": "80px"})]),
            html.Label(["Dec", dcc.Input(id="cone-dec", type="text", placeholder="deg", style={"width": "80px"})]),
            html.Label(["radius", dcc.Input(id="cone-radius", type="text", placeholder="arcsec", style={"width": "80px"})]),
            html.Button("apply cone", id="cone-apply", n_clicks=0),
            html.Button("export CSV", id="export-csv", n_clicks=0),
            html.Button("export Parquet", id="export-parquet", n_clicks=0),
            dcc.Download(id="download"),
        ]),
        html.Div(className="controls", children=[
            html.Label(["filter on any column (terms joined by &&)",
                        dcc.Input(id="expr-filter", type="text", debounce=True, style={"width": "640px"},
                                  placeholder="{bexvar_fpp} < 0.001 && {abs_gal_b} > 20 && {net_counts_b2} >= 30")]),
        ]),
        html.Div(id="table-message", className="message"),
        html.Div(id="table-count", className="count"),
        dcc.Store(id="grid-refresh"),
        dag.AgGrid(
            id="candidates", rowModelType="infinite", columnDefs=grid_columns(t, t.default_score()),
            defaultColDef={"sortable": True, "resizable": True, "filter": True, "floatingFilter": True, "minWidth": 90},
            dashGridOptions={"pagination": True, "paginationPageSize": PAGE_SIZE, "cacheBlockSize": PAGE_SIZE,
                             "paginationPageSizeSelector": False, "maxBlocksInCache": 40, "rowBuffer": 0,
                             "infiniteInitialRowCount": PAGE_SIZE, "multiSortKey": "ctrl", "animateRows": False,
                             "suppressCellFocus": True, "rowHeight": 26, "headerHeight": 30, "floatingFiltersHeight": 32},
            style={"height": f"{GRID_HEIGHT_PX}px"}, className="ag-theme-quartz",
        ),
        html.P("Column filters: a number filter under net_counts_b1 (greater than 100), under variable_fpp (less than or "
               "equal 0.001), a text filter under source_id (contains J12); terms are joined with AND. Click a header to "
               "rank by it (ctrl-click adds a second key). Click a source id to open it.", className="hint"),
    ])


def grid_columns(table: CandidateTable, score: str | None) -> list[dict]:
    """AG Grid column definitions of the columns the table shows for ``score`` (numbers as %.4g, ids as links)."""
    schema = table.schema()
    out = []
    for c in table.columns(score):
        dtype = schema.get(c, pl.String)
        col = {"field": c, "headerName": c}
        if c == "source_id":
            col |= {"cellRenderer": "markdown", "filter": "agTextColumnFilter", "pinned": "left", "minWidth": 200}
        elif dtype.is_numeric():  # typed into the filter row: at least (scores, counts), at most (FPPs)
            col |= {"filter": "agNumberColumnFilter",
                    "filterParams": {"defaultOption": "lessThanOrEqual" if ASCENDING.match(c) else "greaterThanOrEqual"}}
            if dtype.is_float():
                col["valueFormatter"] = {"function": "params.value == null ? '' : d3.format('.4~g')(params.value)"}
        else:
            col["filter"] = "agTextColumnFilter"
        if c == score:
            col["cellClass"] = "score"
        out.append(col)
    return out


def fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return "nan" if not np.isfinite(v) else f"{v:.4g}"
    return str(v)


def features_block(ex: Explorer, source_id: str) -> html.Details:
    rows = []
    for name, values in ex.table.feature_values(source_id).items():
        if all(v is None for _, v in values):  # the set has no row for this source
            continue
        rows.append(html.Tr([html.Th(f"{name}@{ex.table.sets[name]}", colSpan=2, className="set")]))
        rows += [html.Tr([html.Td(c), html.Td(fmt(v))]) for c, v in values]
    return html.Details(open=True, children=[html.Summary("feature values (set@version)"),
                                             html.Table(rows, className="features")])


def similar_block(ex: Explorer, source_id: str) -> html.Div:
    space = "VAE latent space" if ex.table.latents is not None else "standardised feature space"
    items = []
    for other, dist in ex.table.similar(source_id, N_SIMILAR):
        lc = ex.store.read(other, columns=("time", "timedel", "rate")).columns
        items.append(html.Div(className="thumb", children=[
            dcc.Graph(figure=figures.thumbnail_figure(lc), config={"staticPlot": True, "displayModeBar": False}),
            html.A(other, href=source_path(other), className="thumblink"), html.Span(f" d={dist:.2f}"),
        ]))
    return html.Div([html.H4(f"more like this ({space})"), html.Div(items, className="thumbs")])


def _pos_err(row: dict) -> str:
    """`` ± 3.2"`` (the file's radial 1-sigma POS_ERR) or nothing when the file carried none."""
    err = row.get("pos_err_arcsec")
    return f" ± {err:.1f}\"" if err is not None and err == err else ""


def why_block(row: dict) -> html.Div:
    """Why the source ranks where it does (the discovery set's reason), or nothing without that set."""
    reason = row.get("discovery_reason")
    if not reason:
        return html.Div(id="why")
    score, classical = row.get("discovery_score"), row.get("discovery_score_classical")
    figures_ = f"discovery_score {fmt(score)} (classical, without the model: {fmt(classical)})"
    return html.Div(id="why", className="why", children=[html.B("Why it ranks here: "), reason, html.Br(), figures_])


def source_layout(ex: Explorer, source_id: str) -> html.Div:
    row = ex.table.source(source_id)
    if row is None:
        return html.Div(id="source-error", className="error",
                        children=f"No source {source_id!r} in this store. Go back to the candidates.")
    c = SkyCoord(row["ra"], row["dec"], unit="deg", frame="icrs").galactic
    label = row.get("label")
    return html.Div(id="source-view", children=[
        dcc.Store(id="source-id", data=source_id),
        html.H2(source_id, id="source-title"),
        html.Div(className="position", children=[
            f"{row.get('object') or ''}  RA {row['ra']:.5f}°  Dec {row['dec']:+.5f}°{_pos_err(row)}  ·  l {c.l.deg:.4f}°  b {c.b.deg:+.4f}°"
            + (f"  ·  MJD {row['mjd_start']:.2f}–{row['mjd_stop']:.2f}" if row.get("mjd_start") is not None else "")]),
        why_block(row),
        html.Div(className="labels", children=[
            *[html.Button(f"{name} ({KEYS[name]})", id=f"label-{name}", n_clicks=0, className="label") for name in LABELS],
            dcc.Input(id="label-comment", type="text", placeholder="comment (optional)", debounce=False,
                      style={"width": "360px"}),
            html.Span(id="label-status", className="status",
                      children=f"label: {label} by {row.get('label_user')} at {row.get('label_time')}" if label else "unlabelled"),
        ]),
        dcc.RadioItems(id="time-unit", options=[{"label": "MJD", "value": "mjd"}, {"label": "days", "value": "days"}],
                       value="mjd", inline=True),
        dcc.Graph(id="lc-graph", config={"displaylogo": False}),
        dcc.Graph(id="context-graph", config={"displaylogo": False}),
        similar_block(ex, source_id),
        features_block(ex, source_id),
    ])


def build_app(ex: Explorer) -> Dash:
    """The Dash app of one store; ``app.server`` is its Flask server."""
    # plotly imports PIL lazily while serialising a figure; two callbacks doing that at once on
    # Flask's threads saw a half-imported module. Serialise one figure here, before any request.
    figures.thumbnail_figure({"time": np.zeros(1), "timedel": np.ones(1), "rate": np.zeros((1, 1))}).to_json()
    import_classifier()  # the same for what "next candidate" imports (scikit-learn, and with it pandas)
    app = Dash(__name__, assets_folder=str(ASSETS), title="eROSITA explorer", suppress_callback_exceptions=True,
               serve_locally=True, update_title=None)
    app.layout = html.Div([dcc.Location(id="url"), header(ex), html.Div(id="page")])
    register_pages(app, ex)
    register_candidates(app, ex)
    register_source_view(app, ex)
    register_navigation(app, ex)
    guard(app)
    return app


def register_pages(app: Dash, ex: Explorer) -> None:
    """The URL decides the view: ``/`` the candidates, ``/source/<id>`` one source (a message for an unknown one)."""
    @app.callback(Output("page", "children"), Input("url", "pathname"))
    def render(pathname):
        source_id = source_from_path(pathname)
        if source_id is None:
            return candidates_layout(ex)
        try:
            return source_layout(ex, source_id)
        except Exception as exc:  # noqa: BLE001 - a broken source shows a message, never a traceback page
            log.warning("source view of %s: %s: %s", source_id, type(exc).__name__, exc)
            return html.Div(className="error", id="source-error", children=f"{source_id}: cannot show this source ({exc})")


def query_of(score, label_state, expr, ra, dec, radius, grid_request: dict | None = None) -> Query:
    """The table's query for the candidate view's controls and the grid's sort and filter models.

    One definition for the page of rows and for the export, so an export holds what the grid shows.

    Raises
    ------
    FilterError
        A filter the table cannot apply (unknown operator, OR of conditions, a cone that is not numbers).
    """
    request = grid_request or {}
    start, stop = int(request.get("startRow") or 0), int(request.get("endRow") or PAGE_SIZE)
    size = max(stop - start, 1)
    sort_by = [{"column_id": s["colId"], "direction": s["sort"]} for s in request.get("sortModel") or []]
    filters = grid_filter_query(request.get("filterModel") or {})
    return Query(score=score, filter_query=joined(filters, expr), label_state=label_state or "any", sort_by=sort_by,
                 page=start // size, page_size=size, cone=cone_of(ra, dec, radius))


def grid_filter_query(model: dict) -> str:
    """AG Grid's filter model as the table's filter_query (``{col} op value`` terms joined by &&)."""
    terms = []
    for column, spec in model.items():
        if "conditions" in spec:  # two conditions on one column
            if str(spec.get("operator", "AND")).upper() != "AND":
                raise FilterError(f"{column}: only conditions joined with AND can be applied")
            conditions = spec["conditions"]
        else:
            conditions = [spec]
        for cond in conditions:
            kind = cond.get("type")
            if kind == "inRange":
                terms += [f"{{{column}}} >= {cond.get('filter')}", f"{{{column}}} <= {cond.get('filterTo')}"]
            elif kind in GRID_FILTERS and cond.get("filter") is not None:
                terms.append(f"{{{column}}} {GRID_FILTERS[kind]} {cond['filter']}")
            elif kind in GRID_FILTERS:
                continue  # an empty filter box
            else:
                raise FilterError(f"{column}: the filter {kind!r} is not supported (use equals, less/greater than, in range, contains)")
    return " && ".join(terms)


def register_candidates(app: Dash, ex: Explorer) -> None:
    """The ranked, filtered table (rows fetched a page at a time) and its exports."""
    controls = [State("score", "value"), State("label-state", "value"), State("expr-filter", "value"), State("cone-ra", "value"),
                State("cone-dec", "value"), State("cone-radius", "value")]

    @app.callback(Output("candidates", "getRowsResponse"), Output("table-message", "children"),
                  Output("table-count", "children"), Input("candidates", "getRowsRequest"), *controls)
    def rows(request, score, label_state, expr, ra, dec, radius):
        if not request:
            return no_update, no_update, no_update
        try:
            q = query_of(score, label_state, expr, ra, dec, radius, request)
            page, total = ex.table.page(q)
        except FilterError as exc:
            return {"rowData": [], "rowCount": 0}, f"⚠ {exc}", ""
        except Exception as exc:  # noqa: BLE001 - whatever a query hits is a message on the page, never a dead table
            log.warning("query %s: %s: %s", request.get("filterModel"), type(exc).__name__, exc)
            return {"rowData": [], "rowCount": 0}, f"⚠ cannot run this query: {exc.__class__.__name__}: {exc}", ""
        data = page.with_columns(pl.format("[{}]({})", pl.col("source_id"), pl.col("source_id").map_elements(
            source_path, return_dtype=pl.String)).alias("source_id")).to_dicts()
        return ({"rowData": data, "rowCount": total}, "",
                f"{total:,} sources match · ranked by {q.score or ex.table.default_score()}")

    @app.callback(Output("candidates", "columnDefs"), Input("score", "value"), prevent_initial_call=True)
    def columns(score):
        return grid_columns(ex.table, score)

    # A new ranking, label state, cone or free-text filter: the grid drops its cached pages and asks again.
    app.clientside_callback(ClientsideFunction(namespace="explorer", function_name="refreshGrid"),
                            Output("grid-refresh", "data"), Input("score", "value"), Input("label-state", "value"),
                            Input("cone-apply", "n_clicks"), Input("expr-filter", "value"), prevent_initial_call=True)

    @app.callback(Output("download", "data"), Input("export-csv", "n_clicks"), Input("export-parquet", "n_clicks"),
                  State("candidates", "getRowsRequest"), *controls, prevent_initial_call=True)
    def export(_csv, _parquet, request, score, label_state, expr, ra, dec, radius):
        fmt_ = "csv" if ctx.triggered_id == "export-csv" else "parquet"
        try:
            data = ex.table.export(query_of(score, label_state, expr, ra, dec, radius, request), fmt_)
        except Exception as exc:  # noqa: BLE001 - the table above already shows why this selection is invalid
            log.warning("export: %s: %s", type(exc).__name__, exc)
            return no_update
        return dcc.send_bytes(data, f"candidates.{fmt_}")


def register_source_view(app: Dash, ex: Explorer) -> None:
    """The source view's figures and its label buttons."""
    @app.callback(Output("lc-graph", "figure"), Output("context-graph", "figure"), Input("time-unit", "value"),
                  State("source-id", "data"))
    def graphs(unit, source_id):
        try:
            lc = ex.store.read(source_id)
        except Exception as exc:  # noqa: BLE001 - an unknown id or a damaged shard: a message in the figure, a line in the log
            log.warning("light curve of %s: %s: %s", source_id, type(exc).__name__, exc)
            empty = go.Figure().add_annotation(text=f"cannot read this light curve: {exc}", showarrow=False)
            return empty, empty
        row = ex.table.source(source_id)
        recon = reconstruction(ex.store, ex.vae_lineage, source_id, len(lc.columns["time"])) if ex.vae_lineage else None
        mjdref = row.get("mjdref") if row else None
        soft = softest_band(ex.store.e_min) if len(ex.store.e_min) else 1
        peak = row.get(f"surprise_bin_b{soft}") if row else None
        return (figures.lightcurve_figure(lc.columns, ex.bands, mjdref, unit, recon, peak),
                figures.context_figure(lc.columns, ex.bands, mjdref, unit))

    @app.callback(Output("label-status", "children"), *[Input(f"label-{name}", "n_clicks") for name in LABELS],
                  State("label-comment", "value"), State("source-id", "data"), prevent_initial_call=True)
    def save_label(*args):
        comment, source_id = args[-2], args[-1]
        if not ctx.triggered_id or not any(args[:-2]):
            return no_update
        name = ctx.triggered_id.removeprefix("label-")
        try:
            rec = ex.table.labels.append(source_id, name, comment or "", ex.user)
        except LabelError as exc:
            return f"⚠ not saved: {exc}"
        return f"saved: {rec['label']} by {rec['user']} at {rec['time']}"


def register_navigation(app: Dash, ex: Explorer) -> None:
    """Previous / next in the current ranking, and the next candidate of the label-driven ranking."""
    @app.callback(Output("url", "pathname"), Input("btn-prev", "n_clicks"), Input("btn-next", "n_clicks"),
                  Input("btn-active", "n_clicks"), State("url", "pathname"), prevent_initial_call=True)
    def navigate(_prev, _next, _active, pathname):
        current = source_from_path(pathname)
        if ctx.triggered_id == "btn-active":
            target = ex.next_candidate()
        elif current is None:
            return no_update
        else:
            target = ex.table.neighbour_in_order(current, -1 if ctx.triggered_id == "btn-prev" else 1)
        return source_path(target) if target else no_update


def joined(*filters: str | None) -> str:
    """The table's filter row and the free-text filter as one filter_query."""
    return " && ".join(f for f in filters if f and f.strip())


def cone_of(ra, dec, radius) -> tuple[float, float, float] | None:
    """(ra, dec, radius) from the cone inputs, None when all are empty; FilterError when not numbers."""
    values = [v for v in (ra, dec, radius) if v not in (None, "")]
    if not values:
        return None
    try:
        cone = tuple(float(v) for v in (ra, dec, radius))
    except (TypeError, ValueError):
        raise FilterError(f"cone: RA, Dec and radius must all be numbers (got {ra!r}, {dec!r}, {radius!r})") from None
    if not (-90 <= cone[1] <= 90) or cone[2] <= 0:
        raise FilterError(f"cone: Dec must lie in [-90, 90] and the radius be positive (got {cone})")
    return cone
