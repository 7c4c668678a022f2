"""The LEE ranking states its multiplicity: Holm over the variants of each usage x fusion."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from statsmodels.stats.multitest import multipletests

from analysis.lee_results import add_multiplicity


def _ranking() -> pd.DataFrame:
    # five variants of one family, one of another; deltas and 95% intervals with known z
    z95 = norm.ppf(0.975)
    rows = []
    for name, delta, z in [("a", 0.010, 5.0), ("b", 0.004, 2.2), ("c", 0.001, 0.5), ("d", -0.003, -2.1),
                           ("e", 0.0, 0.0)]:
        se = abs(delta / z) if z else 0.002
        rows.append({"variant": name, "usage": "UR+IR", "fusion": "concat", "delta_auc": delta,
                     "ci_low": delta - z95 * se, "ci_high": delta + z95 * se,
                     "verdict": ("better" if delta > 0 else "worse") if abs(z) > z95 else "no different"})
    half = z95 * 0.004 / 2.2
    rows.append({"variant": "b", "usage": "CR", "fusion": "concat", "delta_auc": 0.004, "ci_low": 0.004 - half,
                 "ci_high": 0.004 + half, "verdict": "better"})
    return pd.DataFrame(rows)


def test_p_values_from_the_interval_and_holm_per_family_match_scipy_and_statsmodels():
    out = add_multiplicity(_ranking())
    fam = out[out["usage"] == "UR+IR"]
    expected_p = 2 * norm.sf(np.abs([5.0, 2.2, 0.5, 2.1, 0.0]))
    np.testing.assert_allclose(fam["p_value"], expected_p, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(fam["p_holm"], multipletests(expected_p, method="holm")[1], rtol=1e-12)
    assert list(fam["family_size"]) == [5] * 5
    # b and d pass at their own 95% level (|z| > 1.96) but not after Holm over five variants
    assert list(fam["verdict"]) == ["better", "better", "no different", "worse", "no different"]
    assert list(fam["verdict_holm"]) == ["better", "no different", "no different", "no different", "no different"]
    # the CR family has one member: no adjustment, its own verdict
    cr = out[out["usage"] == "CR"].iloc[0]
    assert cr["family_size"] == 1 and cr["p_holm"] == pytest.approx(2 * norm.sf(2.2)) and cr["verdict_holm"] == "better"


def test_the_interval_level_of_each_run_is_used():
    one = _ranking().iloc[[1]].reset_index(drop=True)
    at90 = add_multiplicity(one, pd.Series([0.90]))
    # the same interval read as a 90% one means a larger standard error: a smaller |z|, a larger p
    z = 0.004 / ((one["ci_high"][0] - one["ci_low"][0]) / (2 * norm.ppf(0.95)))
    assert at90["p_value"][0] == pytest.approx(2 * norm.sf(z), rel=1e-9)
    assert at90["p_value"][0] > add_multiplicity(one)["p_value"][0]
