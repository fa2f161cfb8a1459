"""Plotly figures of one source: light curve per band, background and exposure, hardness ratio, thumbnails.

Shape legend: T = time bins of one source, K = energy bands.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from etl.lightcurve import SECONDS_PER_DAY

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


def times(lc: dict, mjdref: float | None, unit: str) -> tuple[np.ndarray, str]:
    """Bin centres (T,) in MJD (needs the source's MJDREF) or days since the first bin."""
    t = (lc["time"] + 0.5 * lc["timedel"]) / SECONDS_PER_DAY
    if unit == "mjd" and mjdref is not None and np.isfinite(mjdref):
        return t + mjdref, "MJD"
    return t - t[0] if len(t) else t, "days since first bin"


def lightcurve_figure(lc: dict, bands: list[str], mjdref: float | None, unit: str = "mjd",
                      recon: np.ndarray | None = None, highlight: int | None = None) -> go.Figure:
    """Rate per band with asymmetric 1-sigma errors (one marker trace per band), the VAE's reconstruction dashed.

    Parameters
    ----------
    lc : per-point columns of one source (``rate``/``rate_errm``/``rate_errp`` (T, K), ``time``, ``timedel`` (T,)).
    recon : (T, K) reconstruction in ct/s, or None.
    highlight : index of a bin to mark (where the discovery model was most surprised), or None.
    """
    t, label = times(lc, mjdref, unit)
    fig = go.Figure()
    for k, name in enumerate(bands):
        colour = COLOURS[k % len(COLOURS)]
        fig.add_trace(go.Scatter(x=t, y=lc["rate"][:, k], mode="markers", name=name, legendgroup=name,
                                 marker={"color": colour, "size": 6},
                                 error_y={"type": "data", "symmetric": False, "array": lc["rate_errp"][:, k],
                                          "arrayminus": lc["rate_errm"][:, k], "thickness": 1, "width": 0}))
        if recon is not None:
            fig.add_trace(go.Scatter(x=t, y=recon[:, k], mode="lines", name=f"VAE {name}", legendgroup=name,
                                     line={"color": colour, "dash": "dash", "width": 1.5}))
    if highlight is not None and 0 <= highlight < len(t):
        fig.add_vline(x=float(t[highlight]), line={"color": "#f9a825", "width": 2, "dash": "dot"},
                      annotation_text="most surprising bin", annotation_position="top left")
    fig.update_layout(margin={"l": 60, "r": 10, "t": 30, "b": 40}, height=330, template="plotly_white",
                      title={"text": "light curve", "font": {"size": 13}}, legend={"orientation": "h", "y": -0.25},
                      xaxis_title=label, yaxis_title="rate (ct/s)", xaxis_tickformat=".2f")
    return fig


def context_figure(lc: dict, bands: list[str], mjdref: float | None, unit: str = "mjd") -> go.Figure:
    """Three panels sharing time: background rate in the source aperture, FRACEXP, hardness ratios.

    Background (ct/s) = BACK_COUNTS x BACKRATIO / (TIMEDEL x FRACEXP), on the scale of RATE.
    Hardness ratio of adjacent bands (H - S) / (H + S) of the rates, where H + S > 0.
    """
    t, label = times(lc, mjdref, unit)
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=("background (ct/s, source aperture)", "fractional exposure", "hardness ratio"))
    exposure = lc["timedel"][:, None] * np.where(lc["fracexp"] > 0, lc["fracexp"], np.nan)
    background = lc["back_counts"] * lc["backratio"][:, None] / exposure
    for k, name in enumerate(bands):
        colour = COLOURS[k % len(COLOURS)]
        fig.add_trace(go.Scatter(x=t, y=background[:, k], mode="lines+markers", name=f"bkg {name}", legendgroup=name,
                                 marker={"size": 3, "color": colour}, line={"width": 1, "color": colour}, showlegend=False), row=1, col=1)
        fig.add_trace(go.Scatter(x=t, y=lc["fracexp"][:, k], mode="lines+markers", name=f"fracexp {name}", legendgroup=name,
                                 marker={"size": 3, "color": colour}, line={"width": 1, "color": colour}, showlegend=False), row=2, col=1)
    rate = lc["rate"]
    for k in range(len(bands) - 1):
        s, h = rate[:, k], rate[:, k + 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            hr = np.where(s + h > 0, (h - s) / (s + h), np.nan)
        fig.add_trace(go.Scatter(x=t, y=np.clip(hr, -1, 1), mode="markers", name=f"HR {k + 1}{k + 2}",
                                 marker={"size": 5, "color": COLOURS[(k + 1) % len(COLOURS)]}), row=3, col=1)
    fig.update_yaxes(range=[-1.05, 1.05], row=3, col=1)
    fig.update_xaxes(title_text=label, row=3, col=1)
    fig.update_xaxes(tickformat=".2f")
    fig.update_layout(margin={"l": 60, "r": 10, "t": 30, "b": 40}, height=420, template="plotly_white",
                      legend={"orientation": "h", "y": -0.15})
    return fig


def thumbnail_figure(lc: dict) -> go.Figure:
    """Band-summed rate against days since the first bin: a sparkline for "more like this"."""
    t, _ = times(lc, None, "days")
    fig = go.Figure(go.Scatter(x=t, y=lc["rate"].sum(axis=1), mode="lines+markers", marker={"size": 3},
                               line={"width": 1, "color": "#444"}))
    fig.update_layout(margin={"l": 2, "r": 2, "t": 2, "b": 2}, height=70, width=150, template="plotly_white",
                      showlegend=False, xaxis={"visible": False}, yaxis={"visible": False})
    return fig
