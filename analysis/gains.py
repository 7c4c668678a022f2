"""Who gains from a representation: per-segment lift of the injected proxy over the baseline, no experiment needed.

LEE answers "is this snapshot better?" for the downstream events as a whole. This analysis asks
*for whom*: it trains the baseline and the injected proxy exactly as LEE does (same seeds, and
for each seed identical initial weights and batches, :func:`lee.evaluator.compare.evaluate_baseline`
/ :func:`~lee.evaluator.compare.evaluate_variant`), takes both models' scores on the same
held-out events (streaming test-then-train: every event from window 1 on is scored before it is
trained on) and splits those events by any user or item attribute of the dataset.

Per segment (a level of the attribute; a numeric attribute is cut into ``bins`` quantile bins
over the segment's entities present in the scored events, each entity counted once):

* **ΔAUC** = AUC(variant) − AUC(baseline) within the segment, averaged over seeds, where an AUC
  is LEE's headline AUC: the event-weighted mean of the AUCs of the test windows (a stream's click
  rate drifts, and one AUC pooled over windows ranks one window's events against another's); **ΔLogLoss**
  likewise (negative is better); and, when the dataset declares a ``value`` column, the
  **value-weighted ΔAUC**: each positive event counts in proportion to its value, each negative
  once — how well a model ranks the clicks that carry value above the non-clicks.
* **intervals and p-values** exactly as LEE's :func:`~lee.evaluator.stats.paired_delta_ci`: a
  paired cluster bootstrap that reweights the scored events by user (Poisson(1) per user,
  identical for every seed, both models and every segment), giving the test-sample variance
  ``V_data``; with several seeds the spread of the per-seed deltas gives ``V_seed = var(Δ_s)/S``;
  ``Δ / sqrt(V_data + V_seed)`` is referred to Student's t with Welch–Satterthwaite degrees of
  freedom, ``(S-1)·(V/V_seed)²``. (With one seed: the normal distribution and ``V_data`` alone, and
  the training randomness is then not in the interval — a note says so.) The ``all`` row over
  every scored event is LEE's own ΔAUC and interval.
* **multiplicity** (:mod:`analysis.multiplicity`): the family is the tested segments (not the
  ``all`` row), one family per metric; Holm by default, Benjamini–Hochberg on request. A segment
  is significant when its adjusted p-value is below ``alpha``. ``ci_low``/``ci_high`` are
  *unadjusted* intervals at ``level``; ``ci_low_adj``/``ci_high_adj`` are the family-adjusted ones
  (Bonferroni-simultaneous for Holm, FCR-adjusted for BH).
* **sizes**: users (distinct users with scored events in the segment), events, positives and,
  with a value column, the value total.
* **share of the overall lift**: each window's AUC is exactly the sum over its events of a
  per-event credit — a positive earns half the share of the window's negatives it outranks over
  ``P``, a negative half the share of its positives ranked above it over ``N`` (ties count half),
  i.e. ``AUC = ½·mean over positives of F_neg(s) + ½·mean over negatives of (1 − F_pos(s))`` —
  and the headline AUC weighs each window by its share of events, so the
  segment's ``contribution`` (the sum of its events' credit differences, variant minus baseline,
  averaged over seeds) adds up over segments to the overall ΔAUC, and ``share_of_lift`` is the
  contribution divided by the overall ΔAUC. Unlike the within-segment ΔAUC it counts pairs across
  segments too; shares can be negative (a segment that lost) or above 1.

**Minimum segment size**: a level with fewer than ``min_users`` users, or fewer than
``min_positives`` positives (or negatives) among its scored events, is pooled with the other small
levels into one ``(other)`` segment (its ``members`` column lists them) instead of being reported
with an interval that means nothing. If ``(other)`` is itself below the minimum it is shown with
its sizes and no test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from scipy import stats

from analysis.multiplicity import DEFAULT_ADJUST, Adjusted, adjust_pvalues, parse_adjust
from analysis.segments import ALL, MISSING, OTHER
from lee.data.dataset import Dataset
from lee.errors import InputError
from lee.evaluator.data import DownstreamStream
from lee.evaluator.stats import RankedScores
from lee.results import SavedResult, register

DEFAULT_BINS = 4
DEFAULT_MIN_USERS = 50
DEFAULT_MIN_POSITIVES = 20
DEFAULT_N_BOOT = 200
_EPS = 1e-7  # probability clipping, as lee.metrics.log_loss

METRICS = ("auc", "logloss", "value_auc")
_PREFIX = {"auc": "", "logloss": "logloss_", "value_auc": "value_"}

INTERVAL_METHOD = ("paired cluster bootstrap over users (Poisson(1) weights, identical for both models, every seed "
                   "and every segment) for the test-sample variance, plus var(per-seed delta)/S for the training "
                   "randomness; Student t with Welch-Satterthwaite degrees of freedom (as LEE's paired_delta_ci)")
P_VALUE_METHOD = "two-sided t-test of delta = 0 with the same standard error and degrees of freedom as the interval"
SHARE_DEFINITION = ("contribution = sum over the segment's scored events of (variant - baseline) per-event AUC "
                    "credit, averaged over seeds, where within a test window a positive's credit is (share of the "
                    "window's negatives it outranks, ties half) / (2P) and a negative's is (share of the window's "
                    "positives ranked above it, ties half) / (2N), times the window's share of the events; credits "
                    "sum to the headline AUC, so contributions sum to the overall delta AUC; "
                    "share_of_lift = contribution / overall delta AUC")
VALUE_AUC_DEFINITION = "AUC with every positive event weighted by its value and every negative by 1"


# ----------------------------------------------------------------------------- the result


@register("gains")
@dataclass
class GainsResult(SavedResult):
    """Per-segment lift of a representation; ``table`` has one row per segment, then ``(other)``, then ``all``."""

    table: pd.DataFrame
    by: str
    entity: str                       # "user" or "item": whose attribute defines the segments
    variant: str
    usage: str
    fusion: str
    seeds: tuple[int, ...]
    n_boot: int
    level: float
    alpha: float
    adjust: str
    min_users: int
    min_positives: int
    bins: int | None
    binned: bool
    value_column: str | None
    test_events: int
    multiplicity: dict[str, dict[str, Any]] = field(default_factory=dict)   # metric -> Adjusted.describe()
    lee_overall: dict[str, Any] = field(default_factory=dict)               # LEE's ΔAUC for the whole stream
    pooled: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    snapshot: str = ""
    windows: int | None = None
    interval_method: str = INTERVAL_METHOD
    p_value_method: str = P_VALUE_METHOD
    share_definition: str = SHARE_DEFINITION

    def row(self, segment: str) -> pd.Series:
        """The table row of ``segment`` (``'all'`` for every scored event)."""
        hit = self.table.loc[self.table["segment"] == segment]
        if hit.empty:
            raise InputError(f"segment {segment!r} not in the table; segments: {', '.join(self.table['segment'])}")
        return hit.iloc[0]

    def segments(self) -> pd.DataFrame:
        """The segment rows (without ``all``)."""
        return self.table.loc[self.table["segment"] != ALL]

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"gains": self.table}

    def summary(self) -> dict[str, Any]:
        segs = self.segments()
        sig = segs.loc[segs["significant"]]
        overall = self.row(ALL)
        tested = segs.loc[segs["tested"]]
        top = tested.loc[tested["contribution"].idxmax(), "segment"] if len(tested) else None
        return {
            "by": self.by, "entity": self.entity, "binned": self.binned, "bins": self.bins,
            "variant": self.variant, "snapshot": self.snapshot, "usage": self.usage, "fusion": self.fusion,
            "seeds": list(self.seeds), "windows": self.windows, "n_boot": self.n_boot, "level": self.level,
            "alpha": self.alpha, "adjust": self.adjust, "test_events": self.test_events,
            "minimum_segment": {"users": self.min_users, "positives": self.min_positives,
                                "negatives": self.min_positives},
            "segments": int(len(segs)), "tested_segments": int(len(tested)), "pooled_into_other": list(self.pooled),
            "overall": {k: _py(overall[k]) for k in ("delta_auc", "ci_low", "ci_high", "p_value", "delta_logloss",
                                                     "logloss_ci_low", "logloss_ci_high")},
            "lee_overall": dict(self.lee_overall),
            "gains": [str(s) for s in sig.loc[sig["delta_auc"] > 0, "segment"]],
            "loses": [str(s) for s in sig.loc[sig["delta_auc"] < 0, "segment"]],
            "largest_contribution_segment": str(top) if top is not None else None,
            "multiplicity": dict(self.multiplicity),
            "intervals": {"ci_low/ci_high": f"unadjusted, per segment, at level {self.level}",
                          "ci_low_adj/ci_high_adj": (self.multiplicity.get("auc") or {}).get("interval_kind", "")},
            "value_column": self.value_column,
            "value_auc_definition": VALUE_AUC_DEFINITION if self.value_column else None,
            "notes": list(self.notes),
            "interval_method": self.interval_method, "p_value_method": self.p_value_method,
            "share_definition": self.share_definition,
        }


def _py(x: Any) -> Any:
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return float(x)
    return x


# ----------------------------------------------------------------------------- segments of events


@dataclass(frozen=True)
class EventSegments:
    """A segment code per event (index into ``levels``) and where the attribute came from."""

    codes: np.ndarray
    levels: tuple[str, ...]
    column: str
    entity: str
    binned: bool


def _resolve_column(ds: Dataset, by: str) -> tuple[str, str, pd.DataFrame]:
    """(entity, column, side table) of ``by``: ``user:col``, ``item:col`` or a column of exactly one side table."""
    if not isinstance(by, str) or not by.strip():
        raise InputError(f"by: expected a user or item attribute column name; got {by!r}")
    sides = {"user": ds.users, "item": ds.items}
    ids = {"user": ds.user_col, "item": ds.item_col}
    entity, _, col = by.partition(":") if by.split(":", 1)[0] in sides and ":" in by else ("", "", by)
    where = str(ds.path) if ds.path else "the dataset"

    def listing() -> str:
        parts = []
        for e, frame in sides.items():
            cols = [c for c in frame.columns if c != ids[e]] if frame is not None else []
            parts.append(f"{e}s: {', '.join(map(str, cols)) or 'none'}" if frame is not None
                         else f"no {e}s table")
        return "; ".join(parts)

    if entity:
        frame = sides[entity]
        if frame is None:
            raise InputError(f"by: {where} has no {entity}s table, so {by!r} cannot be found; "
                             f"segments come from user or item attributes ({listing()})")
        if col not in frame.columns:
            raise InputError(f"by: column {col!r} is not in the {entity}s table of {where}; attributes: {listing()}")
    else:
        hits = [e for e, frame in sides.items() if frame is not None and col in frame.columns]
        if not hits:
            raise InputError(f"by: column {col!r} is not a user or item attribute of {where}; attributes: {listing()}")
        if len(hits) > 1:
            raise InputError(f"by: column {col!r} is in both the users and the items table of {where}; "
                             f"write user:{col} or item:{col}")
        entity, frame = hits[0], sides[hits[0]]
    assert frame is not None
    if col == ids[entity]:
        raise InputError(f"by: {col!r} is the {entity} id column of {where}, not an attribute; attributes: {listing()}")
    return entity, col, frame


def segment_events(ds: Dataset, stream: DownstreamStream, by: str, *, bins: int | None = DEFAULT_BINS,
                   start: int = 0) -> EventSegments:
    """The segment of each stream event from ``start`` on, by the user or item attribute ``by``.

    Numeric attributes with more than ``bins`` distinct values (among the entities of those
    events) are cut into ``bins`` quantile bins over those entities, each counted once (ties can
    merge bins); other attributes keep one segment per value; missing values form ``(missing)``.
    """
    if bins is not None and (isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2):
        raise InputError(f"bins: expected an integer of at least 2 (quantile bins for a numeric attribute); "
                         f"got {bins!r}")
    entity, col, frame = _resolve_column(ds, by)
    rows = (stream.user_row if entity == "user" else stream.item_row)[start:]
    values = frame[col]
    present = np.unique(rows)
    dtype = values.dtype
    numeric = (pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
               and not isinstance(dtype, pd.CategoricalDtype))
    binned = False
    if numeric:
        x = values.to_numpy(np.float64)
        distinct = np.unique(x[present][np.isfinite(x[present])])
        if bins is not None and distinct.size > bins:
            binned = True
            _, edges = pd.qcut(x[present], q=int(bins), retbins=True, duplicates="drop")
            cat = pd.cut(x, bins=edges, include_lowest=True)
            codes = np.asarray(cat.codes, dtype=np.int64)
            levels = [str(c) for c in cat.categories]
        else:
            codes_, uniques = pd.factorize(values, sort=True)
            codes, levels = codes_.astype(np.int64), [_fmt(u) for u in uniques]
    elif isinstance(dtype, pd.CategoricalDtype):
        codes, levels = values.cat.codes.to_numpy(np.int64), [str(c) for c in dtype.categories]
    else:
        codes_, uniques = pd.factorize(values.astype(object).where(values.notna(), None), sort=True)
        codes, levels = codes_.astype(np.int64), [str(u) for u in uniques]
    if (codes < 0).any():
        codes = np.where(codes < 0, len(levels), codes)
        levels = [*levels, MISSING]
    return EventSegments(codes=codes[rows], levels=tuple(levels), column=col, entity=entity, binned=binned)


def _fmt(v: Any) -> str:
    f = float(v)
    return str(int(f)) if f.is_integer() else f"{f:g}"


# ----------------------------------------------------------------------------- statistics


def auc_credit(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-event credit whose sum is the AUC (ties half): a positive gets (negatives below it +
    ½ tied) / (2·P·N), a negative (positives above it + ½ tied) / (2·P·N)."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    out = np.zeros(s.size)
    if n_pos == 0 or n_neg == 0:
        return out
    neg, pos = np.sort(s[~y]), np.sort(s[y])
    sp, sn = s[y], s[~y]
    lo, hi = np.searchsorted(neg, sp, "left"), np.searchsorted(neg, sp, "right")
    out[y] = (lo + 0.5 * (hi - lo)) / (2.0 * n_pos * n_neg)
    lo, hi = np.searchsorted(pos, sn, "left"), np.searchsorted(pos, sn, "right")
    out[~y] = ((n_pos - hi) + 0.5 * (hi - lo)) / (2.0 * n_pos * n_neg)
    return out


def windowed_auc_credit(labels: np.ndarray, scores: np.ndarray, windows: Sequence[tuple[int, int]]) -> np.ndarray:
    """Per-event credit whose sum is the window-weighted AUC: :func:`auc_credit` within each window,
    times the window's share of the events of the windows where the AUC is defined."""
    y = np.asarray(labels)
    out = np.zeros(y.size)
    defined = [(a, b) for a, b in windows if 0 < y[a:b].sum() < b - a]
    total = sum(b - a for a, b in defined)
    for a, b in defined:
        out[a:b] = auc_credit(y[a:b], scores[a:b]) * (b - a) / total
    return out


class WindowedAUC:
    """One model's scores on some events, AUC = event-weighted mean of the per-window AUCs (windows
    where it is undefined drop out), the headline AUC of LEE; duck-types :class:`RankedScores`
    (``auc``, ``bind_clusters``, ``auc_clustered``) so the paired bootstrap can use it. Under event
    or cluster weights a window weighs the total weight of its events."""

    def __init__(self, labels: np.ndarray, scores: np.ndarray, windows: Sequence[tuple[int, int]]) -> None:
        y = np.asarray(labels, dtype=np.float64)
        s = np.asarray(scores, dtype=np.float64)
        self.bounds = [(int(a), int(b)) for a, b in windows if b > a]
        self.parts = [RankedScores(y[a:b], s[a:b]) for a, b in self.bounds]
        self.sizes = np.array([b - a for a, b in self.bounds], dtype=np.float64)
        self._codes: list[np.ndarray] = []

    @staticmethod
    def _mean(values: np.ndarray, weights: np.ndarray) -> float:
        ok = np.isfinite(values) & (weights > 0)
        return float((values[ok] * weights[ok]).sum() / weights[ok].sum()) if ok.any() else float("nan")

    def auc(self, weights: np.ndarray | None = None) -> float:
        if weights is None:
            return self._mean(np.array([p.auc() for p in self.parts]), self.sizes)
        return self._mean(np.array([p.auc(weights[a:b]) for p, (a, b) in zip(self.parts, self.bounds)]),
                          np.array([weights[a:b].sum() for a, b in self.bounds]))

    def bind_clusters(self, codes: np.ndarray) -> None:
        self._codes = [codes[a:b] for a, b in self.bounds]
        for p, c in zip(self.parts, self._codes):
            p.bind_clusters(c)

    def auc_clustered(self, cluster_weights: np.ndarray) -> float:
        return self._mean(np.array([p.auc_clustered(cluster_weights) for p in self.parts]),
                          np.array([cluster_weights[c].sum() for c in self._codes]))


class GroupedAUC:
    """The AUC of every group of events (e.g. segment x test window) of one score vector, all groups in
    one O(n) pass per weighting: events are sorted once by (group, score), and each weighting is a
    gather, two tie-group sums and a cumulative sum. Numerically the same as one
    :class:`RankedScores` per group, at a fraction of the Python calls inside the bootstrap."""

    def __init__(self, labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, n_groups: int) -> None:
        s = np.asarray(scores, dtype=np.float64)
        g = np.asarray(groups, dtype=np.int64)
        self.order = np.lexsort((s, g))
        gs, ss = g[self.order], s[self.order]
        self.starts = np.flatnonzero(np.r_[True, (gs[1:] != gs[:-1]) | (ss[1:] != ss[:-1])]) if gs.size \
            else np.zeros(0, dtype=np.int64)
        self.tie_group = gs[self.starts]
        self.y = np.asarray(labels, dtype=np.float64)[self.order]
        self.n_groups = int(n_groups)

    def aucs(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per group: the AUC under per-event ``weights`` (NaN without both classes) and the total weight."""
        G = self.n_groups
        if not self.starts.size:
            return np.full(G, np.nan), np.zeros(G)
        w = np.asarray(weights, dtype=np.float64)[self.order]
        wp = np.add.reduceat(w * self.y, self.starts)
        wn = np.add.reduceat(w * (1.0 - self.y), self.starts)
        pos = np.bincount(self.tie_group, weights=wp, minlength=G)
        neg = np.bincount(self.tie_group, weights=wn, minlength=G)
        before = np.cumsum(wn) - wn - (np.cumsum(neg) - neg)[self.tie_group]   # negatives below, same group
        num = np.bincount(self.tie_group, weights=wp * (before + 0.5 * wn), minlength=G)
        with np.errstate(invalid="ignore", divide="ignore"):
            auc = np.where((pos > 0) & (neg > 0), num / (pos * neg), np.nan)
        return auc, pos + neg


def _window_means(aucs: np.ndarray, sizes: np.ndarray, n_windows: int) -> np.ndarray:
    """Per row of a (groups = row x window) layout: the size-weighted mean of the defined window AUCs."""
    a, w = aucs.reshape(-1, n_windows), sizes.reshape(-1, n_windows)
    ok = np.isfinite(a) & (w > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok.any(1), (np.where(ok, a, 0.0) * np.where(ok, w, 0.0)).sum(1) / np.where(ok, w, 0.0).sum(1),
                        np.nan)


def _sub_windows(mask: np.ndarray, windows: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """``windows`` (index ranges over all events) as index ranges over the events ``mask`` selects."""
    idx = np.flatnonzero(mask)
    return [(int(np.searchsorted(idx, a)), int(np.searchsorted(idx, b))) for a, b in windows]


def _event_logloss(labels: np.ndarray, logits: np.ndarray) -> np.ndarray:
    p = np.clip(1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64))), _EPS, 1 - _EPS)
    return -(labels * np.log(p) + (1 - labels) * np.log1p(-p))


@dataclass(frozen=True)
class _Inference:
    delta: float
    se: float
    df: float
    p: float

    def interval(self, level: float) -> tuple[float, float]:
        if not (np.isfinite(self.delta) and np.isfinite(self.se)):
            return float("nan"), float("nan")
        q = 1.0 - (1.0 - level) / 2.0
        crit = stats.norm.ppf(q) if not np.isfinite(self.df) else stats.t.ppf(q, self.df)
        return self.delta - crit * self.se, self.delta + crit * self.se


def _infer(per_seed: np.ndarray, boot: np.ndarray) -> _Inference:
    """Point, standard error, degrees of freedom and two-sided p-value, as paired_delta_ci combines them."""
    per_seed = np.asarray(per_seed, dtype=np.float64)
    if not np.isfinite(per_seed).all():
        return _Inference(float("nan"), float("nan"), float("nan"), float("nan"))
    point = float(per_seed.mean())
    finite = boot[np.isfinite(boot)]
    v_data = float(np.var(finite, ddof=1)) if finite.size >= 2 else float("nan")
    if per_seed.size == 1:
        v_seed, df = 0.0, float("inf")
    else:
        v_seed = float(per_seed.var(ddof=1) / per_seed.size)
        total = v_data + v_seed
        df = (per_seed.size - 1) * (total / v_seed) ** 2 if v_seed > 0 else float("inf")
    total = v_data + v_seed
    if not np.isfinite(total) or total <= 0:
        return _Inference(point, float("nan"), df, float("nan"))
    se = float(np.sqrt(total))
    z = abs(point) / se
    p = float(2 * (stats.norm.sf(z) if not np.isfinite(df) else stats.t.sf(z, df)))
    return _Inference(point, se, float(df), p)


def _sizes(codes: np.ndarray, n_codes: int, y: np.ndarray, clusters: np.ndarray,
           value: np.ndarray | None) -> pd.DataFrame:
    events = np.bincount(codes, minlength=n_codes)
    pos = np.bincount(codes, weights=y, minlength=n_codes).round().astype(np.int64)
    base = int(clusters.max()) + 1 if clusters.size else 1
    pairs = np.unique(codes.astype(np.int64) * base + clusters)        # distinct (segment, user) pairs
    users = np.bincount(pairs // base, minlength=n_codes)
    out = pd.DataFrame({"users": users.astype(np.int64), "events": events.astype(np.int64), "positives": pos,
                        "negatives": (events - pos).astype(np.int64)})
    if value is not None:
        out["value"] = np.bincount(codes, weights=value, minlength=n_codes)
    return out


def gains_from_scores(
    labels: np.ndarray,
    base_scores: Sequence[np.ndarray],
    variant_scores: Sequence[np.ndarray],
    clusters: np.ndarray,
    segments: EventSegments,
    *,
    value: np.ndarray | None = None,
    value_column: str | None = None,
    windows: Sequence[tuple[int, int]] | None = None,
    min_users: int = DEFAULT_MIN_USERS,
    min_positives: int = DEFAULT_MIN_POSITIVES,
    n_boot: int = DEFAULT_N_BOOT,
    level: float = 0.95,
    alpha: float | None = None,
    adjust: str = DEFAULT_ADJUST,
    seed: int = 0,
    bins: int | None = DEFAULT_BINS,
    variant: str = "variant",
    usage: str = "",
    fusion: str = "",
    seeds: Sequence[int] = (),
) -> GainsResult:
    """The per-segment table from two models' held-out scores (one array per seed each, paired by
    position): see the module docstring. ``clusters`` (e.g. user ids) are the bootstrap's
    resampling units; ``segments.codes`` gives each event's segment; ``windows`` (index ranges
    tiling the events in time order, e.g. the streaming test windows) make every AUC the
    event-weighted mean of per-window AUCs, as LEE's headline AUC (None: one window, the pooled AUC)."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    n = y.size
    if len(base_scores) != len(variant_scores) or not base_scores:
        raise InputError("gains: the baseline and the variant need the same (non-zero) number of seeds")
    for s in (*base_scores, *variant_scores):
        if np.asarray(s).shape != (n,):
            raise InputError(f"gains: every score array must hold one score per event ({n}); got {np.asarray(s).shape}")
    codes_in = np.asarray(segments.codes, dtype=np.int64)
    if codes_in.shape != (n,) or np.asarray(clusters).shape[0] != n:
        raise InputError(f"gains: segment codes and clusters must have one entry per event ({n})")
    if not (isinstance(n_boot, (int, np.integer)) and not isinstance(n_boot, bool) and n_boot >= 2):
        raise InputError(f"n_boot: expected an integer of at least 2; got {n_boot!r}")
    if not (isinstance(level, (int, float)) and 0.5 < float(level) < 1.0):
        raise InputError(f"level: expected a number strictly between 0.5 and 1; got {level!r}")
    for name, v in (("min_users", min_users), ("min_positives", min_positives)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise InputError(f"{name}: expected a positive integer; got {v!r}")
    alpha = float(1.0 - level if alpha is None else alpha)
    method = parse_adjust(adjust)
    windows = [(0, n)] if windows is None else [(int(a), int(b)) for a, b in windows]
    if not windows or windows[0][0] != 0 or windows[-1][1] != n or any(
            w[1] != v[0] for w, v in zip(windows, windows[1:])):
        raise InputError(f"gains: windows {windows} do not tile the {n} scored events")
    cl_codes, cl_uniques = pd.factorize(np.asarray(clusters))
    notes: list[str] = []
    S = len(base_scores)
    if S == 1:
        notes.append("one seed: intervals and p-values hold the test-sample variance only, not the training "
                     "randomness; run several seeds")

    # --- value weights
    vw: np.ndarray | None = None
    if value is not None:
        v = np.asarray(value, dtype=np.float64).ravel()
        if v.shape != (n,) or not np.isfinite(v).all():
            raise InputError(f"value column {value_column!r}: expected one finite number per event")
        pos_v = v[y == 1]
        if (pos_v < 0).any():
            notes.append(f"value column {value_column!r} holds negative values on positive events: "
                         "value-weighted AUC not computed")
        elif not (pos_v > 0).any():
            notes.append(f"value column {value_column!r} is zero on every positive scored event: "
                         "value-weighted AUC not computed")
        else:
            vw = np.where(y == 1, v, 1.0)

    # --- pool small levels into (other)
    levels = list(segments.levels)
    raw = _sizes(codes_in, len(levels), y, cl_codes, None)
    small = ((raw["users"] < min_users) | (raw["positives"] < min_positives)
             | (raw["negatives"] < min_positives)).to_numpy()
    seen = (raw["events"] > 0).to_numpy()
    keep = [k for k in range(len(levels)) if seen[k] and not small[k]]
    pooled = [levels[k] for k in range(len(levels)) if seen[k] and small[k]]
    remap = np.full(len(levels), -1, dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    names = [levels[k] for k in keep]
    members = [""] * len(keep)
    if pooled:
        remap[[k for k in range(len(levels)) if seen[k] and small[k]]] = len(keep)
        names.append(OTHER)
        members.append(", ".join(pooled))
    codes = remap[codes_in]
    K = len(names)
    sizes = _sizes(codes, K, y, cl_codes, value if vw is not None else None)
    tested = ((sizes["users"] >= min_users) & (sizes["positives"] >= min_positives)
              & (sizes["negatives"] >= min_positives)).to_numpy()
    if pooled and not tested[-1]:
        notes.append(f"{OTHER} (pooled: {', '.join(pooled)}) is still below the minimum segment size: "
                     "shown, not tested")

    # --- per seed, per segment (index K is the 'all' row); AUCs per (segment, window), then window means
    W = len(windows)
    win = np.repeat(np.arange(W), [b - a for a, b in windows])
    seg_groups, all_groups = codes * W + win, win
    models: list[tuple[GroupedAUC, GroupedAUC, GroupedAUC, GroupedAUC]] = []   # per seed: (base, var) x (seg, all)

    def windowed(pair: tuple[GroupedAUC, GroupedAUC], weights: np.ndarray) -> np.ndarray:
        seg = _window_means(*pair[0].aucs(weights), W)
        return np.r_[seg, _window_means(*pair[1].aucs(weights), W)]

    auc_seed = np.full((S, K + 1), np.nan)
    base_auc = np.full((S, K + 1), np.nan)
    var_auc = np.full((S, K + 1), np.nan)
    vauc_seed = np.full((S, K + 1), np.nan)
    ll_seed = np.zeros((S, K + 1))
    base_ll = np.zeros((S, K + 1))
    contrib_seed = np.zeros((S, K + 1))
    dll_mean = np.zeros(n)
    ev_counts = np.bincount(codes, minlength=K).astype(np.float64)
    ones = np.ones(n)
    for s_idx, (b, v_) in enumerate(zip(base_scores, variant_scores)):
        b = np.asarray(b, dtype=np.float64)
        v_ = np.asarray(v_, dtype=np.float64)
        gb = (GroupedAUC(y, b, seg_groups, K * W), GroupedAUC(y, b, all_groups, W))
        gv = (GroupedAUC(y, v_, seg_groups, K * W), GroupedAUC(y, v_, all_groups, W))
        models.append((*gb, *gv))
        base_auc[s_idx], var_auc[s_idx] = windowed(gb, ones), windowed(gv, ones)
        if vw is not None:
            vauc_seed[s_idx] = windowed(gv, vw) - windowed(gb, vw)
        auc_seed[s_idx] = var_auc[s_idx] - base_auc[s_idx]
        lb, lv = _event_logloss(y, b), _event_logloss(y, v_)
        d = lv - lb
        dll_mean += d / S
        ll_seed[s_idx, :K] = np.bincount(codes, weights=d, minlength=K) / np.maximum(ev_counts, 1)
        ll_seed[s_idx, K] = d.mean()
        base_ll[s_idx, :K] = np.bincount(codes, weights=lb, minlength=K) / np.maximum(ev_counts, 1)
        base_ll[s_idx, K] = lb.mean()
        dc = windowed_auc_credit(y, v_, windows) - windowed_auc_credit(y, b, windows)
        contrib_seed[s_idx, :K] = np.bincount(codes, weights=dc, minlength=K)
        contrib_seed[s_idx, K] = dc.sum()
    untested = [k for k in range(K) if not tested[k]]
    for arr in (auc_seed, base_auc, var_auc, vauc_seed):
        arr[:, untested] = np.nan

    # --- the paired cluster bootstrap: one Poisson(1) weight per cluster, shared by everything
    rng = np.random.default_rng(seed)
    boot = {m: np.full((n_boot, K + 1), np.nan) for m in METRICS}
    for it in range(n_boot):
        cw = rng.poisson(1.0, size=len(cl_uniques)).astype(np.float64)
        w = cw[cl_codes]
        boot["auc"][it] = np.mean([windowed((m[2], m[3]), w) - windowed((m[0], m[1]), w) for m in models], axis=0)
        if vw is not None:
            ww = vw * w
            boot["value_auc"][it] = np.mean([windowed((m[2], m[3]), ww) - windowed((m[0], m[1]), ww)
                                             for m in models], axis=0)
        wsum = np.bincount(codes, weights=w, minlength=K)
        with np.errstate(invalid="ignore", divide="ignore"):
            boot["logloss"][it, :K] = np.bincount(codes, weights=w * dll_mean, minlength=K) / wsum
            boot["logloss"][it, K] = (w * dll_mean).sum() / w.sum() if w.sum() > 0 else np.nan

    per_seed = {"auc": auc_seed, "logloss": ll_seed, "value_auc": vauc_seed}
    inf: dict[str, list[_Inference | None]] = {}
    for metric in METRICS:
        if metric == "value_auc" and vw is None:
            continue
        inf[metric] = [_infer(per_seed[metric][:, k], boot[metric][:, k]) if (k == K or tested[k]) else None
                       for k in range(K + 1)]

    # --- multiplicity: one family per metric, the tested segments
    adjusted: dict[str, Adjusted] = {}
    for metric, rows in inf.items():
        p = np.array([r.p if r is not None else np.nan for r in rows[:K]])
        adjusted[metric] = adjust_pvalues(p, method, alpha=alpha)

    # --- the table
    contrib = contrib_seed.mean(0)
    overall = contrib[K]
    table_rows: list[dict[str, Any]] = []
    for k in range(K + 1):
        is_all = k == K
        row: dict[str, Any] = {"segment": ALL if is_all else names[k], "members": "" if is_all else members[k]}
        if is_all:
            all_sizes = _sizes(np.zeros(n, dtype=np.int64), 1, y, cl_codes, value if vw is not None else None)
            row.update({c: all_sizes[c].iloc[0] for c in all_sizes.columns})
        else:
            row.update({c: sizes[c].iloc[k] for c in sizes.columns})
        row["tested"] = bool(is_all or tested[k])
        row["auc_baseline"] = float(np.mean(base_auc[:, k])) if row["tested"] else np.nan
        row["auc_variant"] = float(np.mean(var_auc[:, k])) if row["tested"] else np.nan
        row["logloss_baseline"] = float(np.mean(base_ll[:, k]))
        for metric in inf:
            pre, r, adj = _PREFIX[metric], inf[metric][k], adjusted[metric]
            delta_name = "delta_auc" if metric == "auc" else ("delta_logloss" if metric == "logloss"
                                                              else "value_delta_auc")
            if r is None:
                row.update({delta_name: np.nan, f"{pre}ci_low": np.nan, f"{pre}ci_high": np.nan,
                            f"{pre}ci_low_adj": np.nan, f"{pre}ci_high_adj": np.nan, f"{pre}p_value": np.nan,
                            f"{pre}p_adjusted": np.nan, f"{pre}significant": False})
                continue
            lo, hi = r.interval(level)
            if is_all:   # a family of one: the pre-specified overall test
                alo, ahi, padj, sig = lo, hi, r.p, bool(np.isfinite(r.p) and r.p < alpha)
            else:
                alo, ahi = r.interval(adj.interval_level)
                padj, sig = float(adj.p_adjusted[k]), bool(adj.significant[k])
            row.update({delta_name: r.delta, f"{pre}ci_low": lo, f"{pre}ci_high": hi, f"{pre}ci_low_adj": alo,
                        f"{pre}ci_high_adj": ahi, f"{pre}p_value": r.p, f"{pre}p_adjusted": padj,
                        f"{pre}significant": sig})
        row["contribution"] = float(contrib[k])
        row["share_of_lift"] = float(contrib[k] / overall) if overall != 0 else np.nan
        row["share_of_events"] = float(row["events"] / n)
        note = []
        if not row["tested"]:
            note.append(f"below the minimum segment size ({min_users} users, {min_positives} positives and "
                        f"negatives): not tested")
        if k < K and names[k] == OTHER:
            note.append(f"pooled: {members[k]}")
        row["note"] = "; ".join(note)
        table_rows.append(row)
    table = pd.DataFrame(table_rows)
    for c in ("users", "events", "positives", "negatives"):
        table[c] = table[c].astype(np.int64)
    if len(keep) == 0:
        notes.append("no level of the attribute reaches the minimum segment size: every level is pooled")
    return GainsResult(
        table=table, by=segments.column, entity=segments.entity, variant=variant, usage=usage, fusion=fusion,
        seeds=tuple(int(s) for s in seeds) or tuple(range(S)), n_boot=int(n_boot), level=float(level), alpha=alpha,
        adjust=method.value, min_users=int(min_users), min_positives=int(min_positives), bins=bins,
        binned=segments.binned, value_column=value_column if vw is not None else None, test_events=int(n),
        multiplicity={m: a.describe() for m, a in adjusted.items()}, pooled=tuple(pooled), notes=tuple(notes),
    )


# ----------------------------------------------------------------------------- end to end


def gains_for_snapshot(
    data: Dataset | str | Path,
    snapshot: Any,
    *,
    by: str,
    usage: str = "UR+IR",
    fusion: str = "concat",
    seeds: Sequence[int] = (0, 1, 2),
    windows: int = 10,
    proxy: Any = None,
    bins: int | None = DEFAULT_BINS,
    min_users: int = DEFAULT_MIN_USERS,
    min_positives: int = DEFAULT_MIN_POSITIVES,
    n_boot: int = DEFAULT_N_BOOT,
    level: float = 0.95,
    alpha: float | None = None,
    adjust: str = DEFAULT_ADJUST,
    bootstrap_seed: int = 0,
    device: Any = "cpu",
    variant: str | None = None,
    stream: DownstreamStream | None = None,
    baseline: Any = None,
) -> GainsResult:
    """Train the baseline and ``snapshot``'s injected proxy as LEE does (``usage``, ``fusion``,
    ``seeds``, ``windows``, ``proxy``) on the dataset's downstream events and split their
    held-out scores by the attribute ``by`` (see the module docstring).

    ``data`` is a :class:`~lee.data.dataset.Dataset` or a dataset (or world) directory.
    ``stream`` (the dataset's encoded downstream stream) and ``baseline`` (an
    :func:`~lee.evaluator.compare.evaluate_baseline` result for the same config) may be passed to
    reuse them across snapshots.
    """
    from lee.evaluator.compare import EvalConfig, evaluate_baseline, evaluate_variant
    from lee.evaluator.data import stream_from_dataset
    from lee.evaluator.models import FUSIONS, ProxyConfig

    ds = data if isinstance(data, Dataset) else Dataset.open(data)
    if fusion not in [f.value for f in FUSIONS]:
        raise InputError(f"fusion: gains needs a CTR proxy's scores; choose one of "
                         f"{', '.join(f.value for f in FUSIONS)}; got {fusion!r}")
    cfg = EvalConfig(usage=usage, fusion=fusion, seeds=tuple(seeds), windows=windows, n_boot=max(int(n_boot), 2),
                     level=level, bootstrap_seed=bootstrap_seed, proxy=proxy or ProxyConfig())
    stream = stream if stream is not None else stream_from_dataset(ds)
    test_lo = stream.window_bounds(cfg.windows)[1][0]
    segs = segment_events(ds, stream, by, bins=bins, start=test_lo)   # fail fast, before any training
    if baseline is None:
        baseline = evaluate_baseline(stream, cfg, snapshot, device=device)
    name = variant or str(getattr(snapshot, "path", "variant"))
    var = evaluate_variant(stream, name, snapshot, cfg, baseline, device=device)
    if var.runs[0].test_lo != test_lo or baseline.runs[0].test_lo != test_lo:
        raise InputError("gains: the baseline was trained with other windows than this evaluation")
    value_col = ds.spec.roles.value
    value = (stream.extra or {}).get("value") if value_col else None
    test_windows = [(a - test_lo, b - test_lo) for a, b in var.runs[0].window_edges[1:]]
    res = gains_from_scores(
        stream.y[test_lo:].numpy(), [r.scores for r in baseline.runs], [r.scores for r in var.runs],
        stream.user_row[test_lo:], segs, value=value[test_lo:] if value is not None else None,
        value_column=value_col, windows=test_windows, min_users=min_users, min_positives=min_positives,
        n_boot=n_boot, level=level, alpha=alpha, adjust=adjust, seed=bootstrap_seed, bins=bins, variant=name,
        usage=str(cfg.usage), fusion=str(cfg.fusion), seeds=cfg.seeds)
    res.snapshot = str(getattr(snapshot, "path", ""))
    res.windows = cfg.windows
    d = var.delta
    res.lee_overall = {"delta_auc": d.delta, "ci_low": d.low, "ci_high": d.high, "verdict": d.verdict,
                       "auc_baseline": baseline.auc, "auc_variant": var.auc,
                       "coverage": {k: float(c.get("event_coverage", 1.0)) for k, c in var.missing.items()}} \
        if d is not None else {}
    return res


# ----------------------------------------------------------------------------- figure


def gains_figure(res: GainsResult) -> go.Figure:
    """ΔAUC per segment with its unadjusted interval (thin) and family-adjusted interval (thick)."""
    from analysis.figures import safe

    t = res.table.loc[res.table["tested"]]
    kind = (res.multiplicity.get("auc") or {}).get("method", res.adjust)
    fig = go.Figure()
    fig.update_layout(title=safe(f"Who gains from {res.variant}: ΔAUC per {res.entity} segment of {res.by}"),
                      template="plotly_white", margin=dict(l=60, r=20, t=50, b=50), height=420,
                      yaxis_title="ΔAUC (variant − baseline)")
    x = safe(t["segment"])
    fig.add_trace(go.Scatter(
        x=x, y=t["delta_auc"], mode="markers", name=f"adjusted interval ({kind})", marker=dict(size=10),
        error_y=dict(type="data", symmetric=False, array=t["ci_high_adj"] - t["delta_auc"],
                     arrayminus=t["delta_auc"] - t["ci_low_adj"], thickness=3),
        customdata=np.c_[t["p_value"], t["p_adjusted"], t["users"], t["positives"]],
        hovertemplate="%{x}: ΔAUC %{y:.4f} (p=%{customdata[0]:.3g}, adjusted %{customdata[1]:.3g}; "
                      "%{customdata[2]} users, %{customdata[3]} positives)<extra></extra>"))
    fig.add_trace(go.Scatter(
        x=x, y=t["delta_auc"], mode="markers", name=f"unadjusted {res.level:.0%} interval", marker=dict(size=1),
        error_y=dict(type="data", symmetric=False, array=t["ci_high"] - t["delta_auc"],
                     arrayminus=t["delta_auc"] - t["ci_low"], thickness=1, width=8), hoverinfo="skip"))
    fig.add_hline(y=0, line_color="grey")
    return fig
