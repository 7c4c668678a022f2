"""Two variants against each other, not only each against the baseline: a paired interval of AUC(A) − AUC(B).

LEE records, for every run, each seed's test AUC in every streaming window (``metrics`` rows
``model='variant', window >= 1, metric='auc'``). Two variants evaluated under the same usage,
fusion, evaluation config and downstream stream saw the same windows of the same events, and
seed ``s`` of one started from the same downstream weights and batches as seed ``s`` of the other.
So their window AUCs pair up by (seed, window), and the question "is A better than B?" has a
paired answer that needs no re-run.

Method (stated in every result as :data:`METHOD`): for every (seed, window) both runs scored,
``d = AUC_A − AUC_B``; the seeds' differences are averaged within each window (the seeds score the
same events, so they are not independent replicates); ``Δ`` is the mean of those W window means and
its interval is Student's t: ``Δ ± t(W−1) · sd / √W``. Verdict: ``better`` when the interval lies
above 0, ``worse`` below, else ``no different``.

Assumption: the W window differences are independent draws around one Δ. The windows are disjoint
slices of the event stream, but the proxies carry their weights from window to window, so the
differences can be serially correlated; a positive correlation makes the interval too narrow. The
lag-1 autocorrelation of the window differences is reported beside it to judge that. Δ weighs every
window equally; the difference of the pooled (all test events) AUCs is reported as ``pooled_delta``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from lee.errors import InputError
from lee.results import SavedResult, register

METHOD = ("paired by seed and test window (same usage, fusion, eval config and downstream data); the seeds' "
          "AUC differences averaged within each window; Δ = mean over the W windows, Student t-interval with "
          "W−1 df: Δ ± t·sd/√W")
ASSUMPTION = ("the W window differences are independent draws around one Δ; the proxies carry their weights from "
              "window to window, so a positive serial correlation (lag-1 autocorrelation reported) makes the "
              "interval too narrow. Δ weighs windows equally; pooled_delta is the difference of the pooled AUCs")
KEY = ["usage", "fusion", "config_hash", "data_hash"]


@register("variant-compare")
@dataclass
class VariantComparison(SavedResult):
    """``table``: one row per (usage, fusion, eval config, data) that both variants were evaluated
    under — Δ = AUC(a) − AUC(b) with its interval and verdict; ``pairs``: every paired (seed,
    window) AUC behind it."""

    a: str
    b: str
    source: str
    level: float
    table: pd.DataFrame
    pairs: pd.DataFrame

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"compare": self.table, "pairs": self.pairs}

    def summary(self) -> dict[str, Any]:
        cols = ["usage", "fusion", "delta", "ci_low", "ci_high", "verdict", "windows", "seeds", "pooled_delta",
                "lag1_autocorr", "baselines_identical", "run_a", "run_b"]
        return {"a": self.a, "b": self.b, "source": self.source, "level": self.level,
                "question": f"AUC({self.a}) − AUC({self.b})", "method": METHOD, "assumption": ASSUMPTION,
                "rows": self.table[cols].to_dict(orient="records")}


def paired_t_interval(diffs: np.ndarray, *, level: float = 0.95) -> tuple[float, float, float, int]:
    """Mean of ``diffs`` with its Student t-interval: (mean, low, high, df). One value: (d, nan, nan, 0)."""
    d = np.asarray(diffs, dtype=np.float64)
    if d.size == 0:
        raise InputError("no paired differences to build an interval from")
    mean = float(d.mean())
    if d.size < 2:
        return mean, float("nan"), float("nan"), 0
    half = float(student_t.ppf(0.5 + level / 2.0, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size))
    return mean, mean - half, mean + half, int(d.size - 1)


def _verdict(low: float, high: float) -> str:
    if low > 0:
        return "better"
    if high < 0:
        return "worse"
    return "no different"


def _lag1(x: np.ndarray) -> float:
    if x.size < 3 or np.std(x) == 0:
        return float("nan")
    c = x - x.mean()
    return float((c[1:] * c[:-1]).sum() / (c * c).sum())


def _window_auc(metrics: pd.DataFrame, model: str) -> pd.Series:
    m = metrics[(metrics["model"] == model) & (metrics["metric"] == "auc")]
    return m.set_index(["seed", "window"])["value"].astype(np.float64)


def _pooled(metrics: pd.DataFrame) -> float:
    """Seed-mean AUC over all test events pooled: ``auc_pooled`` (window 0), or for runs recorded before
    that metric existed their window-0 ``auc``, which was the pooled AUC then."""
    m = metrics[(metrics["model"] == "variant") & (metrics["window"] == 0)]
    name = "auc_pooled" if (m["metric"] == "auc_pooled").any() else "auc"
    return float(m.loc[m["metric"] == name, "value"].astype(np.float64).mean())


def _latest(runs: pd.DataFrame, variant: str, store: Any) -> pd.DataFrame:
    """The variant's latest run per (usage, fusion, eval config, downstream data)."""
    mine = runs[runs["variant"] == variant].copy()
    mine["data_hash"] = [store.run(r)["data_hash"] for r in mine["run_id"]]
    return mine.sort_values(["event_time", "finished_at"]).groupby(KEY, dropna=False).tail(1)


def _describe(runs: pd.DataFrame) -> str:
    if runs.empty:
        return "no runs"
    return ", ".join(sorted({f"{u}/{f}" for u, f in zip(runs["usage"], runs["fusion"])}))


def compare_variants(db: str | Path, a: str, b: str, *, usage: str | None = None, fusion: str | None = None,
                     job: str | None = None, level: float = 0.95) -> VariantComparison:
    """Paired Δ = AUC(``a``) − AUC(``b``) from the results store ``db`` (see the module docstring).

    Each variant's latest run per (usage, fusion, eval config, data) is used; ``usage``, ``fusion``
    and ``job`` narrow the runs considered. A clear error names what each variant has when they
    share no comparable run.
    """
    from lee.jobs.store import ResultsStore

    db = Path(db)
    if not db.is_file():
        raise InputError(f"{db}: no results store here (run `lee evaluate --config JOB.toml` first)")
    if a == b:
        raise InputError(f"compare needs two different variants; got {a!r} twice")
    if not 0.0 < level < 1.0:
        raise InputError(f"level must lie strictly between 0 and 1; got {level!r}")
    store = ResultsStore(db, readonly=True)  # comparing never creates or alters the store
    runs = store.runs(job=job)
    present = sorted(set(runs["variant"]))
    for v in (a, b):
        if v not in present:
            raise InputError(f"{db}: no run of variant {v!r}{f' in job {job!r}' if job else ''}; variants present: "
                             f"{', '.join(present) or 'none'}")
    if usage:
        runs = runs[runs["usage"] == usage]
    if fusion:
        runs = runs[runs["fusion"] == fusion]
    ra, rb = _latest(runs, a, store), _latest(runs, b, store)
    both = ra.merge(rb, on=KEY, suffixes=("_a", "_b"))
    if both.empty:
        narrowed = "".join(f" {k} {v!r}" for k, v in (("usage", usage), ("fusion", fusion)) if v)
        raise InputError(
            f"{db}: variants {a!r} and {b!r} have no comparable runs{' with' + narrowed if narrowed else ''} (same "
            f"usage, fusion, eval config and downstream data): {a} has {_describe(ra)}; {b} has {_describe(rb)}; "
            "evaluate both in one job so their runs pair up")
    rows, pair_frames = [], []
    for r in both.itertuples(index=False):
        ma, mb = store.run(r.run_id_a)["metrics"], store.run(r.run_id_b)["metrics"]
        wa, wb = _window_auc(ma[ma["window"] >= 1], "variant"), _window_auc(mb[mb["window"] >= 1], "variant")
        joined = pd.concat({"auc_a": wa, "auc_b": wb}, axis=1, join="inner").dropna()
        if joined.empty:
            raise InputError(f"{db}: runs {r.run_id_a} ({a}) and {r.run_id_b} ({b}) share no (seed, window) with an "
                             "AUC on both sides (windows without both classes have none)")
        joined["diff"] = joined["auc_a"] - joined["auc_b"]
        per_window = joined["diff"].groupby(level="window").mean()
        delta, low, high, df = paired_t_interval(per_window.to_numpy(), level=level)
        ba, bb = _window_auc(ma, "baseline"), _window_auc(mb, "baseline")
        common = ba.index.intersection(bb.index)
        same_base = bool(len(common) and np.allclose(ba.loc[common], bb.loc[common], equal_nan=True, rtol=0, atol=0))
        pooled = _pooled(ma) - _pooled(mb)
        seeds = sorted({int(s) for s in joined.index.get_level_values("seed")})
        rows.append({"usage": r.usage, "fusion": r.fusion, "delta": delta, "ci_low": low, "ci_high": high,
                     "verdict": _verdict(low, high) if df else "no different", "windows": int(per_window.size),
                     "seeds": len(seeds), "pairs": int(len(joined)), "df": df,
                     "sd_window": float(per_window.std(ddof=1)) if per_window.size > 1 else float("nan"),
                     "lag1_autocorr": _lag1(per_window.to_numpy()), "pooled_delta": float(pooled),
                     "baselines_identical": same_base, "run_a": r.run_id_a, "run_b": r.run_id_b,
                     "event_time_a": r.event_time_a, "event_time_b": r.event_time_b,
                     "config_hash": r.config_hash, "data_hash": r.data_hash})
        pf = joined.reset_index()
        pf.insert(0, "fusion", r.fusion)
        pf.insert(0, "usage", r.usage)
        pair_frames.append(pf)
    table = pd.DataFrame(rows).sort_values(["usage", "fusion"], ignore_index=True)
    pairs = pd.concat(pair_frames, ignore_index=True)
    return VariantComparison(a=a, b=b, source=str(db), level=float(level), table=table, pairs=pairs)
