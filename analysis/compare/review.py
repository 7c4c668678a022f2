"""A release review: several version comparisons and gate decisions, saved and shown together.

What the demo writes (``runs/demo/compare/``), what the dashboard's Compare page opens from a
finished run and what the report's release-gate and comparison sections draw. The figures are
built here from the saved numbers (never recomputed); every data text goes through
:func:`analysis.figures.safe`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis.compare import VersionComparison
from analysis.figures import safe
from analysis.gate import GateDecision
from lee.results import SavedResult, register

_LAYOUT = dict(template="plotly_white", margin=dict(l=60, r=20, t=50, b=50), height=420)

COMPARISON_COLUMNS = ["comparison", "a", "b", "shared_ids", "only_a", "only_b", "same_model_run", "raw_cosine_mean",
                      "aligned_cosine_mean", "cka", "knn_overlap", "cluster_ari", "cluster_ari_baseline_high", "mmd",
                      "mmd_p", "classifier_auc", "classifier_p"]


@register("release-review")
@dataclass
class ReleaseReview(SavedResult):
    """Named version comparisons and named gate decisions."""

    comparisons: dict[str, VersionComparison] = field(default_factory=dict)
    gates: dict[str, GateDecision] = field(default_factory=dict)

    def comparison_table(self) -> pd.DataFrame:
        """One row per comparison: every headline figure (NaN where it does not apply)."""
        rows = []
        for name, c in self.comparisons.items():
            s = c.summary()
            rows.append({"comparison": name, **{k: s[k] for k in COMPARISON_COLUMNS[1:] if k in s},
                         "cluster_ari_baseline_high": s["cluster_ari_baseline_range"][1]})
        return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)

    def gate_table(self) -> pd.DataFrame:
        """One row per gate decision: candidate, incumbent, decision, exit code and the reasons."""
        rows = [{"gate": name, "candidate": g.candidate, "incumbent": g.incumbent, "decision": str(g.decision),
                 "exit_code": g.exit_code, "reasons": "; ".join(g.reasons) or "every rule passed",
                 "rollback_target": g.rollback_target or ""} for name, g in self.gates.items()]
        return pd.DataFrame(rows, columns=["gate", "candidate", "incumbent", "decision", "exit_code", "reasons",
                                           "rollback_target"])

    def summary(self) -> dict[str, Any]:
        return {"comparisons": self.comparison_table().set_index("comparison").to_dict(orient="index"),
                "gates": {n: {"decision": str(g.decision), "exit_code": g.exit_code, "candidate": g.candidate,
                              "incumbent": g.incumbent, "reasons": g.reasons} for n, g in self.gates.items()}}

    def tables(self) -> dict[str, pd.DataFrame]:
        out = {"comparisons": self.comparison_table(), "gates": self.gate_table()}
        for name, g in self.gates.items():
            out[f"gate-{name}-rules"] = g.rules
        for name, c in self.comparisons.items():
            out[f"compare-{name}-measures"] = c.measures()
        return out


def review_from_store(db: str | Path) -> ReleaseReview | None:
    """The gate decisions recorded in a results store (the newest per candidate variant) as a release
    review, so that ``lee report --db`` leads with them as the demo's report does; None when none."""
    from analysis.gate import recorded_decisions

    gates = {f"{g.candidate} vs {g.incumbent}": g for g in recorded_decisions(db)}
    return ReleaseReview(gates=gates) if gates else None


def similarity_figure(review: ReleaseReview, *, title: str = "Version comparisons: similarity") -> go.Figure:
    """Grouped bars per comparison: raw cosine, aligned cosine, linear CKA and kNN overlap (means)."""
    t = review.comparison_table()
    fig = go.Figure()
    names = safe(t["comparison"])
    for col, label in (("raw_cosine_mean", "raw cosine"), ("aligned_cosine_mean", "aligned cosine"),
                       ("cka", "linear CKA"), ("knn_overlap", "kNN overlap")):
        fig.add_bar(name=label, x=names, y=t[col].astype(float))
    fig.update_layout(title=title, barmode="group", yaxis_title="similarity", yaxis_range=[-0.2, 1.05], **_LAYOUT)
    return fig


def cosine_histogram(c: VersionComparison) -> go.Figure:
    """Per-id raw and Procrustes-aligned cosine of one comparison (shares of shared ids)."""
    fig = go.Figure()
    tables = c.tables()
    for key, label in (("raw_cosine_histogram", "raw (same basis assumed)"), ("aligned_cosine_histogram",
                                                                               "aligned (Procrustes)")):
        if key in tables:
            h = tables[key]
            fig.add_bar(name=label, x=(h["left"] + h["right"]) / 2, y=h["share"], opacity=0.7)
    fig.update_layout(title=safe(f"Cosine per shared id · {c.a} → {c.b}", limit=160), barmode="overlay",
                      xaxis_title="cosine", yaxis_title="share of ids", **_LAYOUT)
    return fig


def overlap_histogram(c: VersionComparison) -> go.Figure:
    """kNN overlap@k per id of one comparison."""
    h = c.tables()["knn_overlap_histogram"]
    fig = go.Figure(go.Bar(x=np.arange(len(h)) / c.k, y=h["share"]))  # bin j holds overlap j/k
    fig.update_layout(title=safe(f"kNN overlap@{c.k} per id · {c.a} → {c.b}", limit=160),
                      xaxis_title=f"share of the {c.k} nearest neighbours kept", yaxis_title="share of ids", **_LAYOUT)
    return fig
