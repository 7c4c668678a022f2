"""AUC and LogLoss equal scikit-learn's to 1e-9, ties included; bad input is refused clearly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

from lee.errors import InputError
from lee.metrics import log_loss, roc_auc


@settings(max_examples=200, deadline=None)
@given(data=st.lists(st.tuples(st.integers(0, 1), st.integers(-5, 5)), min_size=2, max_size=300))
def test_auc_equals_sklearn_with_heavy_ties(data):
    y = np.array([d[0] for d in data])
    s = np.array([d[1] for d in data], dtype=np.float64) / 3.0
    if y.min() == y.max():
        return
    assert abs(roc_auc(y, s) - roc_auc_score(y, s)) < 1e-9


def test_auc_equals_sklearn_on_a_million_scores():
    rng = np.random.default_rng(0)
    y = rng.random(1_000_000) < 0.1
    s = rng.standard_normal(y.size).astype(np.float32) + 0.5 * y  # float32: many exact ties
    assert abs(roc_auc(y, s) - roc_auc_score(y, s)) < 1e-9


def test_auc_closed_form_cases():
    assert roc_auc([0, 1], [0.1, 0.9]) == 1.0
    assert roc_auc([0, 1], [0.9, 0.1]) == 0.0
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert roc_auc([0, 0, 1], [1.0, 2.0, 1.5]) == 0.5


@pytest.mark.parametrize(
    "labels, scores, pattern",
    [
        ([1, 1, 1], [0.1, 0.2, 0.3], "only one class"),
        ([0, 1], [0.1, np.nan], "NaN or Inf"),
        ([0, 1, 1], [0.1, 0.2], "differ in length"),
        ([0, 2], [0.1, 0.2], "labels must be 0 or 1"),
    ],
)
def test_auc_bad_input(labels, scores, pattern):
    with pytest.raises(InputError, match=pattern):
        roc_auc(labels, scores)


def test_log_loss_equals_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 10_000)
    p = rng.uniform(0.001, 0.999, y.size)
    assert abs(log_loss(y, p) - sk_log_loss(y, p)) < 1e-9
