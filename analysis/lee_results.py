"""The LEE ranking as a result object: the latest run per (variant, usage, fusion) from a results
store, their per-window AUC curves and, optionally, the layer sweep's AUC-lift-by-layer table.

What ``lee results compare``, the report's LEE section and the dashboard's LEE page show is this
one object (``lee_comparison(db)``), saved and loaded like every other result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lee.errors import InputError
from lee.results import SavedResult, register

RANKING_COLUMNS = ["variant", "event_time", "usage", "fusion", "auc", "baseline_auc", "delta_auc", "ci_low",
                   "ci_high", "rela_impr", "auc_pooled", "calibration", "verdict", "verdict_holm", "p_value", "p_holm",
                   "family_size", "run_id"]
"""The ranking's columns: ``auc`` (headline: the event-weighted mean of per-window AUCs), ``auc_pooled``
(one AUC over all test events pooled across windows, secondary), ``calibration`` (mean predicted over
observed click rate)."""


@register("lee-comparison")
@dataclass
class LeeComparison(SavedResult):
    """``ranking``: one row per (variant, usage, fusion), ranked by ΔAUC within usage and fusion;
    ``windows``: per-window AUC of those runs; ``sweep``: layer × dim ΔAUC (None without a sweep)."""

    source: str
    ranking: pd.DataFrame
    windows: pd.DataFrame
    sweep: pd.DataFrame | None = None

    @property
    def empty(self) -> bool:
        return self.ranking.empty

    def tables(self) -> dict[str, pd.DataFrame]:
        out = {"ranking": self.ranking, "windows": self.windows}
        if self.sweep is not None:
            out["sweep"] = self.sweep.reset_index()
        return out

    def summary(self) -> dict[str, Any]:
        cols = [c for c in RANKING_COLUMNS if c in self.ranking.columns]
        return {"source": self.source, "runs": int(len(self.ranking)),
                "ranking": self.ranking[cols].to_dict(orient="records") if len(self.ranking) else [],
                "sweep_layers": int(len(self.sweep)) if self.sweep is not None else 0,
                "multiplicity": MULTIPLICITY if "verdict_holm" in self.ranking.columns else None}


MULTIPLICITY = ("verdict: each variant's own interval at its level; verdict_holm: Holm step-down over the "
                "variants of each usage x fusion (family_size of them), family-wise error 5%; p_value from the "
                "paired bootstrap interval's normal approximation")
"""How the ranking's multiplicity columns are made (shown beside every ranking that has them)."""


def add_multiplicity(ranking: pd.DataFrame, levels: pd.Series | None = None, *, alpha: float = 0.05) -> pd.DataFrame:
    """The ranking with ``p_value``, ``p_holm``, ``verdict_holm`` and ``family_size`` per (usage, fusion).

    A job usually tests several variants against one baseline at once; each row's ``verdict`` is
    at its own interval's level, so with many variants one "better" or "worse" can be luck. The
    family is every ranked variant of one usage and fusion; its p-values are Holm-adjusted
    (:func:`analysis.multiplicity.adjust_pvalues`, family-wise error ``alpha``). Each two-sided
    p-value is read from the paired bootstrap interval by its normal approximation: se = width /
    (2 z), p = 2 (1 - Phi(|delta| / se)), with the interval's level from ``levels`` (by row; 0.95
    where unknown). A zero-width interval (identical scores) gets p = 1.
    """
    from scipy.stats import norm

    from analysis.multiplicity import adjust_pvalues

    out = ranking.copy()
    if out.empty:
        return out.assign(p_value=pd.Series(dtype=float), p_holm=pd.Series(dtype=float),
                          verdict_holm=pd.Series(dtype=object), family_size=pd.Series(dtype=int))
    level = (levels.reindex(out.index).fillna(0.95) if levels is not None else pd.Series(0.95, index=out.index))
    z = norm.ppf(0.5 + level.to_numpy(np.float64) / 2)
    se = (out["ci_high"].to_numpy(np.float64) - out["ci_low"].to_numpy(np.float64)) / (2 * z)
    delta = out["delta_auc"].to_numpy(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(se > 0, 2 * norm.sf(np.abs(delta) / se), np.where(np.isfinite(delta), 1.0, np.nan))
    out["p_value"] = p
    out["p_holm"] = np.nan
    out["verdict_holm"] = "no different"
    out["family_size"] = 0
    for _, idx in out.groupby(["usage", "fusion"]).groups.items():
        adj = adjust_pvalues(out.loc[idx, "p_value"].to_numpy(), "holm", alpha=alpha)
        out.loc[idx, "p_holm"] = adj.p_adjusted
        out.loc[idx, "family_size"] = adj.family_size
        sig = pd.Series(adj.significant, index=idx)
        out.loc[idx, "verdict_holm"] = np.where(sig, np.where(out.loc[idx, "delta_auc"] > 0, "better", "worse"),
                                                "no different")
    return out


def run_levels(store: Any, ranking: pd.DataFrame) -> pd.Series:
    """Each ranked run's interval level, from its recorded config (NaN where a run does not record it)."""
    levels = [(store.run(r).get("config") or {}).get("level") for r in ranking["run_id"]] if len(ranking) else []
    return pd.Series([float(v) if v is not None else np.nan for v in levels], index=ranking.index, dtype=float)


def lee_comparison(db: str | Path, *, usage: str | None = None, fusion: str | None = None, job: str | None = None,
                   sweep: pd.DataFrame | None = None) -> LeeComparison:
    """The latest LEE run per (variant, usage, fusion) in the results store ``db``, with window curves."""
    from lee.jobs.store import ResultsStore

    db = Path(db)
    if not db.is_file():
        raise InputError(f"{db}: no results store here (run `lee evaluate --config JOB.toml` first)")
    store = ResultsStore(db, readonly=True)  # reading never creates or alters the store
    ranking = store.compare(usage=usage, fusion=fusion, job=job)
    ranking = add_multiplicity(ranking, run_levels(store, ranking))
    windows = store.windows(ranking["run_id"].tolist() if len(ranking) else [])
    return LeeComparison(source=str(db), ranking=ranking, windows=windows, sweep=sweep)
