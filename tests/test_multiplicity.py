"""Multiplicity control (analysis/multiplicity.py): Holm and Benjamini-Hochberg against hand computation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from analysis.multiplicity import Adjust, adjust_pvalues, adjusted_interval_level, parse_adjust
from lee.errors import InputError

P = [0.01, 0.045, 0.033, 0.005, np.nan, 0.2]   # one untested row (NaN): the family has 5 members


def test_holm_by_hand():
    # sorted: 0.005, 0.01, 0.033, 0.045, 0.2 -> x5, x4, x3, x2, x1 = 0.025, 0.04, 0.099, 0.09, 0.2,
    # then the running maximum (step-down): 0.025, 0.04, 0.099, 0.099, 0.2
    a = adjust_pvalues(P, "holm", alpha=0.05)
    np.testing.assert_allclose(a.p_adjusted, [0.04, 0.099, 0.099, 0.025, np.nan, 0.2], rtol=1e-12)
    assert a.family_size == 5 and a.method == Adjust.HOLM
    assert a.significant.tolist() == [True, False, False, True, False, False]
    assert a.interval_level == pytest.approx(1 - 0.05 / 5)          # Bonferroni-simultaneous
    d = a.describe()
    assert d["family_size"] == 5 and d["significant"] == 2 and d["method"] == "holm" and "Holm" in d["method_text"]


def test_bh_by_hand_and_against_scipy():
    # sorted p * m / rank: 0.025, 0.025, 0.055, 0.05625, 0.2, then the running minimum from the top (step-up)
    a = adjust_pvalues(P, "bh", alpha=0.05)
    np.testing.assert_allclose(a.p_adjusted, [0.025, 0.05625, 0.055, 0.025, np.nan, 0.2], rtol=1e-12)
    assert a.significant.tolist() == [True, False, False, True, False, False]
    assert a.interval_level == pytest.approx(1 - 2 * 0.05 / 5)      # FCR-adjusted: R = 2 flagged of m = 5
    finite = np.array([p for p in P if np.isfinite(p)])
    np.testing.assert_allclose(a.p_adjusted[np.isfinite(P)], stats.false_discovery_control(finite, method="bh"))


def test_random_families_match_the_formulas():
    rng = np.random.default_rng(0)
    for _ in range(40):
        m = int(rng.integers(1, 30))
        p = rng.beta(0.5, 2.0, m)
        order = np.argsort(p)
        holm = np.minimum(1, np.maximum.accumulate((m - np.arange(m)) * p[order]))
        bh = np.minimum(1, np.minimum.accumulate((p[order] * m / np.arange(1, m + 1))[::-1])[::-1])
        want_h, want_b = np.empty(m), np.empty(m)
        want_h[order], want_b[order] = holm, bh
        np.testing.assert_allclose(adjust_pvalues(p, "holm").p_adjusted, want_h, rtol=1e-12)
        np.testing.assert_allclose(adjust_pvalues(p, "bh").p_adjusted, want_b, rtol=1e-12)


def test_edge_cases_and_errors():
    empty = adjust_pvalues([np.nan, np.nan])
    assert empty.family_size == 0 and not empty.significant.any() and np.isnan(empty.p_adjusted).all()
    assert adjust_pvalues([0.01]).p_adjusted.tolist() == [0.01]   # a family of one is not adjusted
    assert adjusted_interval_level(Adjust.BH, 0.05, 10, 0) == pytest.approx(0.995)  # R taken as 1 when none
    assert parse_adjust("BH") is Adjust.BH and parse_adjust("fdr_bh") is Adjust.BH
    assert parse_adjust("holm") is Adjust.HOLM
    with pytest.raises(InputError, match="unknown multiplicity adjustment 'bonf'.*holm.*bh"):
        adjust_pvalues([0.1], "bonf")
    with pytest.raises(InputError, match="p-values must lie in .*entry 1 is 1.5"):
        adjust_pvalues([0.1, 1.5])
    with pytest.raises(InputError, match="alpha"):
        adjust_pvalues([0.1], alpha=0.0)
