"""A 2-D map of every row as an interactive Plotly figure that a browser can take at a million points.

:func:`analysis.figures.cluster_map` gives every point a hover with its id and label as text,
which costs about 60 bytes and 50 µs per point in the figure's JSON (1M points: 61 MB and ~55 s
to build and encode on the 2-core machine). :func:`map_figure` keeps that figure for maps of up to
:data:`RICH_HOVER_MAX` points and draws larger ones lean: WebGL markers (``Scattergl``) whose
coordinates and hover data travel as typed arrays (Plotly's base64 ``bdata``), 8 bytes of
coordinates plus 4–8 bytes of hover per point; the hover shows the id, cluster and cluster CTR
(and the label when the map is coloured by label, as the trace's name).

A Streamlit page sends the figure in one websocket message, which Streamlit refuses above
``server.maxMessageSize`` (200 MB by default). :func:`points_that_fit` says how many points fit a
byte budget; when a map has more, :func:`map_figure` draws a seeded uniform subset of that many
and says so (``MapView.drawn`` < ``MapView.total``), never a silent cap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis import figures

RICH_HOVER_MAX = 50_000   # points drawn with figures.cluster_map (text hover with label)
BYTES_FIXED = 200_000     # layout, legend and trace overhead of a figure's JSON (generous)
COLOURS = ("cluster", "label", "cluster_ctr")


@dataclass(frozen=True)
class MapView:
    """A map figure and how much of the map it draws."""

    figure: go.Figure
    drawn: int
    total: int
    lean: bool

    def note(self) -> str:
        """One line for the page: points drawn, and why fewer than the map holds when so."""
        hover = "hover: id, cluster, cluster CTR" + (" (label: colour by label)" if self.lean else ", label")
        if self.drawn == self.total:
            return f"Drawing all {self.total:,} mapped points ({hover})."
        return (f"Drawing a seeded uniform subset of {self.drawn:,} of the {self.total:,} mapped points: "
                "more would exceed the message-size limit (raise Streamlit's server.maxMessageSize to draw "
                f"more; {hover}).")


def bytes_per_point(color: str) -> float:
    """Bytes of figure JSON per point of a lean map (base64 of float32 x, y and the hover arrays)."""
    hover = {"cluster": 8, "label": 16, "cluster_ctr": 16}[color]  # float64: id (+ cluster)
    colour = 4 if color == "cluster_ctr" else 0  # float32 marker colour
    # base64 (4/3), and JSON writes each '/' of it as '\u002f' (6 characters): at most ~1/4 more on
    # these arrays (measured 1.08-1.2)
    return (8 + hover + colour) * 4 / 3 * 1.25


def points_that_fit(limit_bytes: float, color: str) -> int:
    """How many points a lean map coloured by ``color`` may hold within ``limit_bytes`` of JSON."""
    return max(0, int((limit_bytes - BYTES_FIXED) / bytes_per_point(color)))


def _ids_as_numbers(ids: pd.Series) -> np.ndarray:
    """Ids as float64 for a typed hover array (exact for integers below 2^53); others: row number."""
    if pd.api.types.is_integer_dtype(ids.dtype) and (ids.abs() < 2**53).all():
        return ids.to_numpy(np.float64)
    return np.arange(len(ids), dtype=np.float64)


def map_figure(points: pd.DataFrame, color: str = "cluster", *, title: str = "Clusters",
               limit_bytes: float | None = None, seed: int = 0) -> MapView:
    """The map ``points`` (``analysis.suite.map_frame``: id, x, y, cluster, cluster_ctr, label)
    coloured by ``color``; all of it when it fits ``limit_bytes`` of figure JSON (None: no limit),
    else a seeded uniform subset of the rows that fit."""
    if color not in COLOURS:
        raise ValueError(f"color must be one of {', '.join(COLOURS)}; got {color!r}")
    total = len(points)
    if total <= RICH_HOVER_MAX:
        return MapView(figures.cluster_map(points, color, title=title), total, total, lean=False)
    keep = total if limit_bytes is None else min(total, points_that_fit(limit_bytes, color))
    if keep < total:
        rows = np.sort(np.random.default_rng(seed).choice(total, size=keep, replace=False))
        points = points.iloc[rows]
    points = points.reset_index(drop=True)
    ids = _ids_as_numbers(points["id"])
    id_word = "id" if pd.api.types.is_integer_dtype(points["id"].dtype) else "row"
    x, y = points["x"].to_numpy(np.float32), points["y"].to_numpy(np.float32)
    cluster = points["cluster"].to_numpy()
    ctr = points["cluster_ctr"].to_numpy(np.float64)
    fig = go.Figure()
    fig.update_layout(title=figures.safe(title, limit=figures.TITLE_CHARS), height=620, xaxis_title="",
                      yaxis_title="", template="plotly_white", margin=dict(l=60, r=20, t=50, b=50),
                      legend=dict(itemsizing="constant"))
    marker = dict(size=2, opacity=0.6)
    if color == "cluster_ctr":
        fig.add_trace(go.Scattergl(
            x=x, y=y, mode="markers", customdata=np.c_[ids, cluster.astype(np.float64)],
            hovertemplate=f"{id_word} %{{customdata[0]}}<br>cluster %{{customdata[1]}} "
                          "(CTR %{marker.color:.3f})<extra></extra>",
            marker=dict(marker, color=ctr.astype(np.float32), colorscale="Viridis",
                        colorbar=dict(title="cluster CTR"))))
    elif color == "cluster":
        for key, idx in pd.Series(cluster).groupby(cluster, sort=True).indices.items():
            c_ctr = float(ctr[idx[0]])
            fig.add_trace(go.Scattergl(
                x=x[idx], y=y[idx], mode="markers", name=str(key), customdata=ids[idx],
                hovertemplate=f"{id_word} %{{customdata}}<br>cluster {key} (CTR {c_ctr:.3f})<extra></extra>",
                marker=marker))
    else:
        labels = points["label"].astype(str).to_numpy()
        for key, idx in pd.Series(labels).groupby(labels, sort=True).indices.items():
            name = figures.safe(str(key))
            fig.add_trace(go.Scattergl(
                x=x[idx], y=y[idx], mode="markers", name=name,
                customdata=np.c_[ids[idx], cluster[idx].astype(np.float64)],
                hovertemplate=f"{id_word} %{{customdata[0]}}<br>cluster %{{customdata[1]}}<br>"
                              "label %{fullData.name}<extra></extra>",
                marker=marker))
    return MapView(fig, len(points), total, lean=True)
