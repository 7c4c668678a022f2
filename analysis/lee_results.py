"""The LEE ranking as a result object: the latest run per (variant, usage, fusion) from a results
store, their per-window AUC curves and, optionally, the layer sweep's AUC-lift-by-layer table.

What ``lee results compare``, the report's LEE section and the dashboard's LEE page show is this
one object (``lee_comparison(db)``), saved and loaded like every other result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lee.errors import InputError
from lee.results import SavedResult, register

RANKING_COLUMNS = ["variant", "event_time", "usage", "fusion", "auc", "baseline_auc", "delta_auc", "ci_low",
                   "ci_high", "rela_impr", "auc_pooled", "calibration", "verdict", "run_id"]
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
                "sweep_layers": int(len(self.sweep)) if self.sweep is not None else 0}


def lee_comparison(db: str | Path, *, usage: str | None = None, fusion: str | None = None, job: str | None = None,
                   sweep: pd.DataFrame | None = None) -> LeeComparison:
    """The latest LEE run per (variant, usage, fusion) in the results store ``db``, with window curves."""
    from lee.jobs.store import ResultsStore

    db = Path(db)
    if not db.is_file():
        raise InputError(f"{db}: no results store here (run `lee evaluate --config JOB.toml` first)")
    store = ResultsStore(db, readonly=True)  # reading never creates or alters the store
    ranking = store.compare(usage=usage, fusion=fusion, job=job)
    windows = store.windows(ranking["run_id"].tolist() if len(ranking) else [])
    return LeeComparison(source=str(db), ranking=ranking, windows=windows, sweep=sweep)
