"""Multiple-comparison control for segment tables: Holm (family-wise) by default, Benjamini–Hochberg on request.

Testing twenty segments at 5% flags one of them by chance on average, so every segment table of
the workbench (:mod:`analysis.segments`, :mod:`analysis.gains`) adjusts its p-values over the
*family*: the segment rows that carry a p-value (the pooled ``all`` row is one pre-specified test
and is not part of it). A segment is **significant** when its *adjusted* p-value is below
``alpha``.

* **Holm** (``holm``, the default) controls the family-wise error rate: the chance that *any*
  segment without an effect is flagged is at most ``alpha``, whatever the dependence between
  segments. Its intervals are Bonferroni-simultaneous: each at level ``1 - alpha / m`` for a
  family of ``m``, so all ``m`` cover their true values together with probability at least
  ``1 - alpha``.
* **Benjamini–Hochberg** (``bh``) controls the false discovery rate: among the flagged segments,
  the expected share of false ones is at most ``alpha`` (for independent or positively dependent
  tests). Its intervals are the FCR-adjusted ones of Benjamini & Yekutieli (2005), each at level
  ``1 - R * alpha / m`` for ``R`` flagged segments (``R`` taken as 1 when none is flagged).

The adjustment is statsmodels' ``multipletests`` (methods ``holm`` and ``fdr_bh``);
tests/test_multiplicity.py checks it against the step-down / step-up formulas by hand and
against ``scipy.stats.false_discovery_control``.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from lee.errors import InputError


class Adjust(StrEnum):
    """Which multiplicity adjustment a segment table applies."""

    HOLM = "holm"
    BH = "bh"


DEFAULT_ADJUST = Adjust.HOLM
_STATSMODELS_METHOD = {Adjust.HOLM: "holm", Adjust.BH: "fdr_bh"}
METHOD_TEXT = {
    Adjust.HOLM: "Holm step-down (family-wise error rate)",
    Adjust.BH: "Benjamini-Hochberg step-up (false discovery rate)",
}
INTERVAL_TEXT = {
    Adjust.HOLM: "Bonferroni-simultaneous (all intervals of the family cover together)",
    Adjust.BH: "FCR-adjusted (Benjamini-Yekutieli 2005: at level 1 - R*alpha/m for R flagged segments)",
}


def parse_adjust(method: str | Adjust) -> Adjust:
    """``'holm'`` or ``'bh'`` (also ``'fdr_bh'``, ``'benjamini-hochberg'``) as an :class:`Adjust`."""
    if isinstance(method, Adjust):
        return method
    key = str(method).strip().lower().replace("–", "-")
    if key in ("holm", "fwer"):
        return Adjust.HOLM
    if key in ("bh", "fdr_bh", "fdr", "benjamini-hochberg"):
        return Adjust.BH
    raise InputError(f"adjust: unknown multiplicity adjustment {method!r}; choose holm (family-wise, the default) "
                     f"or bh (Benjamini-Hochberg false discovery rate)")


@dataclass(frozen=True)
class Adjusted:
    """The adjusted p-values of one family and what they imply.

    ``p_adjusted`` and ``significant`` align with the p-values passed in; entries whose p-value
    was NaN (untested rows) are NaN / False and do not count in ``family_size``.
    """

    p_adjusted: np.ndarray
    significant: np.ndarray
    family_size: int
    method: Adjust
    alpha: float
    interval_level: float          # the level of the simultaneous (Holm) or FCR-adjusted (BH) intervals

    @property
    def rejections(self) -> int:
        return int(self.significant.sum())

    def describe(self) -> dict[str, Any]:
        """What a result's summary states about its multiplicity control."""
        return {"method": self.method.value, "method_text": METHOD_TEXT[self.method], "alpha": self.alpha,
                "family_size": self.family_size, "significant": self.rejections,
                "interval_level": self.interval_level, "interval_kind": INTERVAL_TEXT[self.method]}


def adjust_pvalues(p_values: Any, method: str | Adjust = DEFAULT_ADJUST, *, alpha: float = 0.05) -> Adjusted:
    """Adjust the finite entries of ``p_values`` as one family (NaN entries are not tested).

    Returns adjusted p-values (statsmodels' ``multipletests``: Holm's step-down maxima or BH's
    step-up minima, capped at 1), ``significant = p_adjusted < alpha`` and the level of the
    family's adjusted intervals (see the module docstring).
    """
    from statsmodels.stats.multitest import multipletests

    m_ = parse_adjust(method)
    if not (isinstance(alpha, (int, float)) and 0.0 < float(alpha) < 1.0):
        raise InputError(f"alpha: expected a number strictly between 0 and 1; got {alpha!r}")
    alpha = float(alpha)
    p = np.asarray(p_values, dtype=np.float64).reshape(-1)
    tested = np.isfinite(p)
    if ((p[tested] < 0) | (p[tested] > 1)).any():
        k = int(np.flatnonzero(tested & ((p < 0) | (p > 1)))[0])
        raise InputError(f"p-values must lie in [0, 1]; entry {k} is {float(p[k])!r}")
    adj = np.full(p.shape, np.nan)
    m = int(tested.sum())
    if m:
        # statsmodels' Holm branch runs gc.collect() on every call (statsmodels PR #8671 proposed dropping
        # it); in a process holding torch and a trained model that full collection costs 0.1-0.2 s. With the
        # heap frozen first the collection has nothing to scan; everything is unfrozen right after.
        gc.freeze()
        try:
            adj[tested] = multipletests(p[tested], alpha=alpha, method=_STATSMODELS_METHOD[m_])[1]
        finally:
            gc.unfreeze()
    significant = tested & (np.nan_to_num(adj, nan=1.0) < alpha)
    return Adjusted(p_adjusted=adj, significant=significant, family_size=m, method=m_, alpha=alpha,
                    interval_level=adjusted_interval_level(m_, alpha, m, int(significant.sum())))


def adjusted_interval_level(method: Adjust, alpha: float, family_size: int, rejections: int) -> float:
    """Per-interval level that makes a family's intervals simultaneous (Holm: Bonferroni,
    ``1 - alpha/m``) or FCR-adjusted (BH: ``1 - max(R, 1) * alpha / m``); ``1 - alpha`` for m <= 1."""
    m = max(int(family_size), 1)
    if method == Adjust.HOLM:
        return 1.0 - alpha / m
    return 1.0 - max(int(rejections), 1) * alpha / m
