"""Interactive Plotly figures built from result objects — never recomputing a number.

The dashboard and the HTML report draw the same figures from the same results. Every text that
comes from data (ids, labels, variant names) goes through :func:`safe` exactly once: Plotly's text
renderer interprets a few HTML-like tags (``<b>``, ``<br>``, ``<a href>``...) and decodes the
entities ``&amp;`` ``&lt;`` ``&gt;`` (and numeric ones), so :func:`safe` writes exactly ``&``,
``<`` and ``>`` as those entities and nothing else: a label such as ``"><script>`` is shown as
those very characters, never interpreted and never as ``&quot;&gt;``. Long texts are clipped to
:data:`LABEL_CHARS` characters with an ellipsis (distinct labels stay distinct on an axis); tables
and data files keep the full text.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis.clusters import ClusterResult
from analysis.collapse import CollapseResult
from analysis.health import HealthReport
from analysis.importance import ImportanceResult
from analysis.segments import SegmentLift
from analysis.volatility import VolatilityResult, VolatilitySeries

_LAYOUT = dict(template="plotly_white", margin=dict(l=60, r=20, t=50, b=50), height=420)

LABEL_CHARS = 48
"""Longest data text (id, label, variant) a figure shows; hover boxes and legends stay readable."""
TITLE_CHARS = 160


def clip(text: object, limit: int = LABEL_CHARS) -> str:
    """``text`` on one line, at most ``limit`` characters (an ellipsis marks a cut)."""
    one = " ".join(str(text).split())
    return one if len(one) <= limit else one[: max(limit - 1, 1)] + "…"


def _literal(text: str) -> str:
    """Plotly shows this as ``text`` itself: ``&``, ``<``, ``>`` as the entities it decodes once."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def safe(values: object, *, limit: int = LABEL_CHARS) -> object:
    """Data text for a Plotly figure, escaped exactly once and clipped to ``limit`` characters:
    a string, or every element of a list/array/Series/Index (a list comes back for those but a
    Series, which keeps its index). Distinct values that clip to the same text get a ``#k``
    suffix, so two long labels never merge into one axis category."""
    if isinstance(values, str):
        return _literal(clip(values, limit))
    if isinstance(values, (pd.Series, list, tuple, np.ndarray, pd.Index)):
        items = [str(v) for v in values]
        shown: dict[str, str] = {}
        taken: dict[str, int] = {}
        for text in dict.fromkeys(items):  # distinct values, first-seen order
            short = clip(text, limit)
            n = taken.get(short, 0)
            taken[short] = n + 1
            shown[text] = short if n == 0 else f"{short} #{n + 1}"
        out = [_literal(shown[t]) for t in items]
        return pd.Series(out, index=values.index) if isinstance(values, pd.Series) else out
    return values


def _fig(title: str, **layout: object) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=safe(title, limit=TITLE_CHARS), **{**_LAYOUT, **layout})
    return fig


def lee_ranking(table: pd.DataFrame, *, title: str = "ΔAUC against the baseline") -> go.Figure:
    """Variants ranked by ΔAUC with their intervals (``ResultsStore.compare()`` or ``Comparison.table()``)."""
    t = table[table["variant"] != "baseline"] if "variant" in table else table
    fig = _fig(title, xaxis_title="ΔAUC (variant − baseline)", height=max(300, 60 + 28 * len(t)))
    group = t["usage"] if "usage" in t else pd.Series([""] * len(t), index=t.index)
    for usage, part in t.groupby(group, sort=True):
        part = part.sort_values("delta_auc")
        fig.add_trace(go.Scatter(
            x=part["delta_auc"], y=safe(part["variant"] + (f" · {usage}" if usage else "")), mode="markers",
            name=safe(str(usage) or "ΔAUC"),
            error_x=dict(type="data", symmetric=False, array=part["ci_high"] - part["delta_auc"],
                         arrayminus=part["delta_auc"] - part["ci_low"]),
            customdata=np.c_[safe(part["verdict"])],
            hovertemplate="%{y}: ΔAUC %{x:.4f} (%{customdata[0]})<extra></extra>"))
    fig.add_vline(x=0, line_dash="dot", line_color="grey")
    return fig


def window_auc(windows: pd.DataFrame, *, title: str = "Per-window test AUC") -> go.Figure:
    """The fluctuation curve: AUC of every model per streaming window (``ResultsStore.windows``)."""
    fig = _fig(title, xaxis_title="window", yaxis_title="AUC")
    for (variant, usage, model), part in windows.groupby(["variant", "usage", "model"], sort=True):
        name = f"{variant} · {usage}" if model == "variant" else f"baseline ({variant} · {usage})"
        fig.add_trace(go.Scatter(x=part["window"], y=part["auc"], mode="lines+markers", name=safe(name),
                                 line=dict(dash="dot" if model == "baseline" else "solid")))
    return fig


def layer_sweep(figure_data: pd.DataFrame, *, title: str = "AUC lift by layer") -> go.Figure:
    """ΔAUC by upstream layer (x) for each dim (one line each): ``SweepResult.figure_data()``."""
    fig = _fig(title, xaxis_title="layer", yaxis_title="ΔAUC")
    for dim in figure_data.columns:
        fig.add_trace(go.Scatter(x=safe(list(figure_data.index)), y=figure_data[dim], mode="lines+markers",
                                 name=safe(f"dim {dim}")))
    return fig


def volatility_histogram(res: VolatilityResult) -> go.Figure:
    h = res.histogram()
    fig = _fig(f"Cosine to 5 minutes earlier · {res.variant} {res.kind.value}", xaxis_title="cosine",
               yaxis_title="share of ids")
    fig.add_trace(go.Bar(x=(h["left"] + h["right"]) / 2, y=h["share"], width=(h["right"] - h["left"]),
                         name="ids", hovertemplate="cos %{x:.4f}: %{y:.2%}<extra></extra>"))
    for t in (0.95, 0.99):
        fig.add_vline(x=t, line_dash="dot", annotation_text=f"{res.share_above(t):.1%} > {t}")
    return fig


def volatility_cdf(results: Mapping[str, VolatilityResult]) -> go.Figure:
    fig = _fig("Cosine CDF", xaxis_title="cosine", yaxis_title="share of ids at or below")
    for name, res in results.items():
        c = res.cdf()
        fig.add_trace(go.Scatter(x=c["cosine"], y=c["share_at_or_below"], mode="lines", name=safe(name)))
    return fig


def volatility_series(series: Mapping[str, VolatilitySeries]) -> go.Figure:
    fig = _fig("Share of ids with cosine > 0.99, snapshot by snapshot", yaxis_title="share", xaxis_title="snapshot")
    for name, s in series.items():
        t = s.table[s.table.get("error", "") == ""] if "error" in s.table else s.table
        fig.add_trace(go.Scatter(x=t["after"], y=t["share_above_0.99"], mode="lines+markers", name=safe(name)))
    return fig


def health_timeline(report: HealthReport, measure: str = "l2_mean") -> go.Figure:
    """One line per table over time; flagged snapshots marked with their reasons on hover."""
    fig = _fig(f"Health of {report.variant}: {measure}", xaxis_title="snapshot time", yaxis_title=measure)
    for table, part in report.table.groupby("table", sort=False):
        fig.add_trace(go.Scatter(x=part["time"], y=part[measure], mode="lines+markers", name=safe(table)))
        bad = part[~part["healthy"]]
        if len(bad):
            fig.add_trace(go.Scatter(
                x=bad["time"], y=bad[measure], mode="markers", name=safe(f"{table} flagged"),
                marker=dict(symbol="x", size=12, color="crimson"), customdata=np.c_[safe(bad["reasons"])],
                hovertemplate="%{x}<br>%{customdata[0]}<extra></extra>"))
    target = report.rollback_target
    if target is not None:
        fig.add_vline(x=pd.Timestamp(target).timestamp() * 1000, line_dash="dot", line_color="green",
                      annotation_text="rollback target")
    return fig


def importance_bars(res: ImportanceResult, *, title: str | None = None) -> go.Figure:
    t = res.table.sort_values("drop")
    fig = _fig(title or f"AUC drop when masked ({res.mode})", xaxis_title="AUC drop",
               height=max(320, 60 + 24 * len(t)))
    colors = t["kind"].map({"feature": "#4c78a8", "group": "#9ecae9", "representation": "#f58518"})
    fig.add_trace(go.Bar(
        x=t["drop"], y=safe(t["target"]), orientation="h", marker_color=colors,
        error_x=dict(type="data", symmetric=False, array=t["ci_high"] - t["drop"], arrayminus=t["drop"] - t["ci_low"]),
        hovertemplate="%{y}: %{x:.4f}<extra></extra>"))
    return fig


def segment_lift(res: SegmentLift) -> go.Figure:
    t = res.table
    fig = _fig(f"{res.metric.upper()} lift per user, treatment vs control", yaxis_title="lift", yaxis_tickformat=".0%")
    fig.add_trace(go.Bar(
        x=safe(t["segment"]), y=t["lift"],
        error_y=dict(type="data", symmetric=False, array=t["ci_high"] - t["lift"], arrayminus=t["lift"] - t["ci_low"]),
        customdata=np.c_[t["p_value"], t["users_control"] + t["users_treatment"]],
        hovertemplate="%{x}: %{y:.1%} (p=%{customdata[0]:.3g}, %{customdata[1]} users)<extra></extra>"))
    fig.add_hline(y=0, line_color="grey")
    return fig


def cluster_map(points: pd.DataFrame, color: str = "cluster", *, title: str = "Clusters") -> go.Figure:
    """Scatter of a 2-D map (``analysis.suite.map_frame``), coloured by cluster, label or CTR;
    hover shows id and label."""
    if color not in ("cluster", "label", "cluster_ctr"):
        raise ValueError(f"color must be cluster, label or cluster_ctr; got {color!r}")
    points = points.reset_index(drop=True)
    fig = _fig(title, xaxis_title="", yaxis_title="", height=520)
    hover = np.c_[safe(points["id"].astype(str)), safe(points["label"]), points["cluster"], points["cluster_ctr"]]
    tmpl = ("id %{customdata[0]}<br>label %{customdata[1]}<br>cluster %{customdata[2]} (CTR %{customdata[3]:.3f})"
            "<extra></extra>")
    if color == "cluster_ctr":
        fig.add_trace(go.Scattergl(x=points["x"], y=points["y"], mode="markers", customdata=hover, hovertemplate=tmpl,
                                   marker=dict(size=5, color=points["cluster_ctr"], colorscale="Viridis",
                                               colorbar=dict(title="cluster CTR"))))
        return fig
    for key, part in points.groupby(color, sort=True):
        fig.add_trace(go.Scattergl(x=part["x"], y=part["y"], mode="markers", name=safe(str(key)),
                                   customdata=hover[part.index.to_numpy()],
                                   hovertemplate=tmpl, marker=dict(size=5)))
    return fig


def cluster_ctr(res: ClusterResult) -> go.Figure:
    t = res.table
    fig = _fig("Ad CTR per cluster", xaxis_title="cluster (top label)", yaxis_title="CTR")
    names = safe([f"{c} · {lab}" for c, lab in zip(t["cluster"], t["top1_label"].fillna(""))])
    colors = t["flag"].map({"above": "#54a24b", "below": "#e45756"}).fillna("#4c78a8")
    fig.add_trace(go.Bar(
        x=names, y=t["ctr"], marker_color=colors,
        error_y=dict(type="data", symmetric=False, array=(t["ctr_high"] - t["ctr"]).fillna(0),
                     arrayminus=(t["ctr"] - t["ctr_low"]).fillna(0)),
        hovertemplate="%{x}: %{y:.4f}<extra></extra>"))
    fig.add_hline(y=res.overall_ctr, line_dash="dot", annotation_text="overall")
    return fig


def spectrum(results: Mapping[str, CollapseResult], *, title: str = "Singular-value spectrum") -> go.Figure:
    fig = _fig(title, xaxis_title="component", yaxis_title="σ / max σ", yaxis_type="log")
    for name, res in results.items():
        s = res.spectrum()
        fig.add_trace(go.Scatter(x=s["component"], y=s["normalised"].clip(lower=1e-8), mode="lines+markers",
                                 name=safe(f"{name} (erank {res.effective_rank:.1f})")))
    return fig


def snapshot_timeline(reports: Mapping[str, HealthReport]) -> go.Figure:
    """Every variant's snapshots on one time axis; unhealthy ones in red with their reasons."""
    fig = _fig("Snapshot timeline", xaxis_title="event time", height=max(260, 80 + 32 * len(reports)))
    for variant, rep in reports.items():
        snaps = rep.snapshots
        colors = np.where(snaps["healthy"], "#4c78a8", "crimson")
        fig.add_trace(go.Scatter(
            x=snaps["time"], y=safe([variant] * len(snaps)), mode="markers", showlegend=False,
            marker=dict(size=11, color=colors, symbol=np.where(snaps["healthy"], "circle", "x")),
            customdata=np.c_[safe(snaps["reasons"].replace("", "healthy"))],
            hovertemplate="%{y} %{x}<br>%{customdata[0]}<extra></extra>"))
    return fig
