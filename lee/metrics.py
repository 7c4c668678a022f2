"""Ranking metrics computed exactly and fast (one sort), matching scikit-learn's definitions."""

from __future__ import annotations

import numpy as np

from lee.errors import InputError


def check_scores(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat labels and float64 scores of one length, the scores finite; else a clear error."""
    y = np.asarray(labels).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise InputError(f"labels and scores differ in length: {y.size} vs {s.size}")
    if not np.isfinite(s).all():
        raise InputError("scores hold NaN or Inf; AUC needs finite scores")
    return y, s


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve, ties counted as half (the Mann-Whitney U statistic).

    Equal to ``sklearn.metrics.roc_auc_score`` (to float64 rounding); raises when only one class
    is present, since AUC is then undefined.
    """
    y, s = check_scores(labels, scores)
    if not np.isin(y, (0, 1)).all():
        bad = y[~np.isin(y, (0, 1))][0]
        raise InputError(f"labels must be 0 or 1; found {bad!r}")
    pos = y.astype(bool)
    n_pos = int(pos.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise InputError(f"AUC is undefined with only one class present ({n_pos} positives, {n_neg} negatives)")
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    # average rank of each tie group (1-based)
    boundary = np.r_[True, s_sorted[1:] != s_sorted[:-1]]
    group = np.cumsum(boundary) - 1
    starts = np.flatnonzero(boundary)
    ends = np.r_[starts[1:], s.size]
    avg_rank = (starts + ends + 1) / 2.0
    rank_sum = avg_rank[group][pos[order]].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy, probabilities clipped to [eps, 1 - eps]."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    p = np.clip(np.asarray(probs, dtype=np.float64).ravel(), eps, 1 - eps)
    return float(-(y * np.log(p) + (1 - y) * np.log1p(-p)).mean())
