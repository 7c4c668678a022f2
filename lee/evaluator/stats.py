"""AUC-family metrics and the paired bootstrap behind LEE's verdicts.

:class:`RankedScores` sorts a score vector once; every weighted AUC after that (one per bootstrap
resample) is a single O(n) pass with no further sort, which is what makes a few hundred paired
resamples over a million test events affordable. Resampling is by cluster (by default the user),
because one user's events are not independent.

**Headline metrics are per window.** A stream's click rate drifts; scores pooled across windows
rank one window's events against another's, so a pooled AUC can lie below every window's AUC
(measured: 0.462 pooled on a stream whose windows scored 0.48-0.64). The headline AUC is
therefore the event-weighted mean of the per-window AUCs (:class:`WindowedScores`), GAUC is
computed per user within each window, and the paired bootstrap compares baseline and variant
window by window. The pooled AUC stays available, labelled "pooled".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.stats import t as student_t

from lee.errors import InputError
from lee.metrics import check_scores, log_loss


class RankedScores:
    """Scores sorted once, with their tie groups, for repeated (weighted) AUC evaluation."""

    def __init__(self, labels: np.ndarray, scores: np.ndarray) -> None:
        y, s = check_scores(labels, scores)
        self.order = np.argsort(s, kind="stable")
        s_sorted = s[self.order]
        self.starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
        self.ties = self.starts.size < s.size
        self.y_sorted = y[self.order].astype(np.float64)
        self._clusters_sorted: np.ndarray | None = None

    def auc(self, weights: np.ndarray | None = None) -> float:
        """AUC with ties counted as half; ``weights`` are per-event (e.g. bootstrap multiplicities)."""
        if weights is None:
            return self._auc_sorted(np.ones_like(self.y_sorted))
        return self._auc_sorted(weights[self.order])

    def bind_clusters(self, codes: np.ndarray) -> None:
        """Remember each event's cluster code (in sorted order) for :meth:`auc_clustered`."""
        self._clusters_sorted = codes[self.order]

    def auc_clustered(self, cluster_weights: np.ndarray) -> float:
        """AUC with every event weighted by its cluster's weight (one gather, no re-sort)."""
        if self._clusters_sorted is None:
            raise InputError("bind_clusters must be called before auc_clustered")
        return self._auc_sorted(cluster_weights[self._clusters_sorted])

    def _auc_sorted(self, w: np.ndarray) -> float:
        wp = w * self.y_sorted
        wn = w - wp
        if self.ties:
            wp = np.add.reduceat(wp, self.starts)
            wn = np.add.reduceat(wn, self.starts)
        total_p, total_n = wp.sum(), wn.sum()
        if total_p <= 0 or total_n <= 0:
            return float("nan")
        # each positive beats the (weighted) negatives below it and ties half of its own group
        # (a * b).sum() rather than np.dot: BLAS threads only add contention on a 2-core box
        return float((wp * (np.cumsum(wn) - 0.5 * wn)).sum() / (total_p * total_n))


class WindowedScores:
    """One model's test scores cut into test windows: AUC = event-weighted mean of per-window AUCs.

    Duck-types :class:`RankedScores` (``auc``, ``bind_clusters``, ``auc_clustered``), so the paired
    bootstrap resamples clusters once and compares both models inside every window. Under a
    resample a window weighs the total weight of its events; a window whose AUC is undefined (one
    class only, in the data or in the resample) drops out and the others are reweighted.
    """

    def __init__(self, labels: np.ndarray, scores: np.ndarray, bounds: list[tuple[int, int]]) -> None:
        y, s = check_scores(labels, scores)
        if not bounds or bounds[0][0] != 0 or bounds[-1][1] != y.size or any(
                a[1] != b[0] for a, b in zip(bounds, bounds[1:])):
            raise InputError(f"windows {bounds} do not tile the {y.size} scored events")
        self.bounds = [(int(a), int(b)) for a, b in bounds]
        self.parts = [RankedScores(y[a:b], s[a:b]) for a, b in self.bounds]
        self.sizes = np.array([b - a for a, b in self.bounds], dtype=np.float64)
        self._codes: list[np.ndarray] | None = None

    def window_auc(self, weights: np.ndarray | None = None) -> np.ndarray:
        """Per-window AUC (NaN where undefined), optionally under per-event ``weights``."""
        return np.array([p.auc(None if weights is None else weights[a:b])
                         for p, (a, b) in zip(self.parts, self.bounds)])

    def auc(self, weights: np.ndarray | None = None) -> float:
        """Event-weighted mean of the per-window AUCs (the headline AUC)."""
        sizes = self.sizes if weights is None else np.array([weights[a:b].sum() for a, b in self.bounds])
        return window_mean(self.window_auc(weights), sizes)

    def bind_clusters(self, codes: np.ndarray) -> None:
        """Remember each event's cluster code for :meth:`auc_clustered`."""
        self._codes = [codes[a:b] for a, b in self.bounds]
        for p, c in zip(self.parts, self._codes):
            p.bind_clusters(c)

    def auc_clustered(self, cluster_weights: np.ndarray) -> float:
        """Headline AUC with every event weighted by its cluster's weight."""
        if self._codes is None:
            raise InputError("bind_clusters must be called before auc_clustered")
        aucs = np.array([p.auc_clustered(cluster_weights) for p in self.parts])
        sizes = np.array([cluster_weights[c].sum() for c in self._codes])
        return window_mean(aucs, sizes)


def window_mean(values: ArrayLike, weights: ArrayLike) -> float:
    """Weighted mean of per-window values over the windows where the value is defined (NaN if none)."""
    v = np.asarray(values, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    ok = np.isfinite(v) & (w > 0)
    if not ok.any():
        return float("nan")
    return float((v[ok] * w[ok]).sum() / w[ok].sum())


@dataclass(frozen=True)
class WindowMetrics:
    """One model's metrics on every test window (lists in window order) and their headline means."""

    events: list[int]
    positives: list[int]
    auc: list[float]
    gauc: list[float]
    logloss: list[float]
    pred_ctr: list[float]        # mean predicted click probability (sigmoid of the logit)

    @property
    def headline_auc(self) -> float:
        return window_mean(self.auc, self.events)

    @property
    def headline_gauc(self) -> float:
        return window_mean(self.gauc, self.events)

    @property
    def headline_logloss(self) -> float:
        return window_mean(self.logloss, self.events)


def window_metrics(labels: np.ndarray, logits: np.ndarray, users: np.ndarray,
                   bounds: list[tuple[int, int]]) -> WindowMetrics:
    """Per-window AUC, GAUC (per user within the window), LogLoss and mean predicted click rate of
    ``logits`` on the events ``bounds`` (index ranges into ``labels``/``logits``/``users``)."""
    y = np.asarray(labels, dtype=np.float64)
    s = np.asarray(logits, dtype=np.float64)
    probs = 1.0 / (1.0 + np.exp(-s))
    out: dict[str, list] = {k: [] for k in ("events", "positives", "auc", "gauc", "logloss", "pred_ctr")}
    for a, b in bounds:
        yw, sw = y[a:b], s[a:b]
        pos = int(yw.sum())
        out["events"].append(int(b - a))
        out["positives"].append(pos)
        out["auc"].append(RankedScores(yw, sw).auc() if 0 < pos < b - a else float("nan"))
        out["gauc"].append(gauc(users[a:b], yw, sw))
        out["logloss"].append(log_loss(yw, probs[a:b]) if b > a else float("nan"))
        out["pred_ctr"].append(float(probs[a:b].mean()) if b > a else float("nan"))
    return WindowMetrics(**out)


def gauc(users: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> float:
    """Group AUC: per-user AUC weighted by the user's impressions, over users with both classes."""
    df = pd.DataFrame({"u": users, "y": np.asarray(labels, dtype=np.float64), "s": scores})
    df["rp"] = df.groupby("u", sort=False)["s"].rank(method="average") * df["y"]  # ranks of positives
    g = df.groupby("u", sort=False).agg(n=("y", "size"), p=("y", "sum"), rp=("rp", "sum"))
    g = g[(g["p"] > 0) & (g["p"] < g["n"])]
    if g.empty:
        return float("nan")
    neg = g["n"] - g["p"]
    auc_u = (g["rp"] - g["p"] * (g["p"] + 1) / 2) / (g["p"] * neg)
    return float((auc_u * g["n"]).sum() / g["n"].sum())


def rela_impr(auc_model: float, auc_base: float) -> float:
    """RelaImpr = ((AUC_model - 0.5) / (AUC_base - 0.5) - 1) x 100%."""
    return float(((auc_model - 0.5) / (auc_base - 0.5) - 1.0) * 100.0)


@dataclass(frozen=True)
class DeltaCI:
    """A paired ΔAUC estimate with its bootstrap interval and the verdict it implies."""

    delta: float
    low: float
    high: float
    level: float
    n_boot: int

    @property
    def verdict(self) -> str:
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "no different"


class PairedScores(Protocol):
    """What the paired bootstrap needs of one model's scores (:class:`RankedScores`, :class:`WindowedScores`)."""

    def auc(self, weights: np.ndarray | None = None) -> float: ...

    def bind_clusters(self, codes: np.ndarray) -> None: ...

    def auc_clustered(self, cluster_weights: np.ndarray) -> float: ...


def paired_delta_ci(base: Sequence[PairedScores], variant: Sequence[PairedScores], clusters: np.ndarray, *,
                    n_boot: int = 100, level: float = 0.95, seed: int = 0) -> DeltaCI:
    """ΔAUC = mean over seeds of AUC(variant, s) - AUC(base, s), with an interval covering both
    the test sample and the training randomness.

    Seed ``s`` of the variant is paired with seed ``s`` of the baseline (same initial weights, same
    batch order). The test-sample part comes from a paired cluster bootstrap: each resample
    reweights the test events by cluster (Poisson(1) per cluster, e.g. per user), identically for
    every seed and both models. With one seed the interval is that bootstrap's percentile interval.
    With several, the seed part is the spread of the per-seed deltas, var(Δ_s)/S, and the two are
    combined as Δ ± t·sqrt(V_data + V_seed) with Welch-Satterthwaite degrees of freedom — so three
    seeds that disagree give an honestly wide interval rather than one that pretends to know.

    Given :class:`WindowedScores` (what LEE passes), Δ is the difference of headline AUCs — each
    the event-weighted mean of per-window AUCs — and every resample compares the two models inside
    each window, so a drifting click rate cannot enter the comparison through between-window ranking.
    """
    if len(base) != len(variant) or not base:
        raise InputError("paired bootstrap needs the same (non-zero) number of seeds for both models")
    per_seed = np.array([v.auc() - b.auc() for b, v in zip(base, variant)])
    point = float(per_seed.mean())
    codes, uniques = pd.factorize(clusters)
    for r in (*base, *variant):
        r.bind_clusters(codes)
    rng = np.random.default_rng(seed)
    deltas = np.empty(n_boot)
    for k in range(n_boot):
        cw = rng.poisson(1.0, size=len(uniques)).astype(np.float64)
        deltas[k] = np.mean([v.auc_clustered(cw) - b.auc_clustered(cw) for b, v in zip(base, variant)])
    alpha = (1.0 - level) / 2.0
    if len(base) == 1:
        lo, hi = np.nanquantile(deltas, [alpha, 1.0 - alpha])
        return DeltaCI(delta=point, low=float(lo), high=float(hi), level=level, n_boot=n_boot)
    v_data = float(np.nanvar(deltas, ddof=1))
    v_seed = float(per_seed.var(ddof=1) / per_seed.size)
    total = v_data + v_seed
    df = (per_seed.size - 1) * (total / v_seed) ** 2 if v_seed > 0 else np.inf
    half = float(student_t.ppf(1.0 - alpha, df) * np.sqrt(total)) if total > 0 else 0.0
    return DeltaCI(delta=point, low=point - half, high=point + half, level=level, n_boot=n_boot)
