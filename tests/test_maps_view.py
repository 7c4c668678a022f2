"""The dashboard's map figure: every point of a large map as typed arrays, a stated subset when the
figure would exceed the message-size budget, the rich hover figure for small maps."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis import figures
from analysis.map_view import RICH_HOVER_MAX, bytes_per_point, map_figure, points_that_fit


def _frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, 5, n)
    return pd.DataFrame({"id": np.arange(n, dtype=np.int64) * 7 + 9_000_000_001, "x": rng.standard_normal(n),
                         "y": rng.standard_normal(n), "cluster": cluster,
                         "cluster_ctr": (0.01 * (cluster + 1)).astype(float),
                         "label": np.array(["a", "b", "<b>c</b>"])[cluster % 3]})


def _points(fig) -> pd.DataFrame:
    """(id, x, y) of every drawn point, decoded from the figure's data (typed arrays included)."""
    out = []
    for t in fig.data:
        ids = np.asarray(t.customdata).reshape(len(t.x), -1)[:, 0]
        out.append(pd.DataFrame({"id": ids.astype(np.int64), "x": np.asarray(t.x), "y": np.asarray(t.y)}))
    return pd.concat(out, ignore_index=True)


def test_small_maps_keep_the_rich_hover_figure():
    f = _frame(500)
    view = map_figure(f, "label")
    assert not view.lean and view.drawn == view.total == 500
    assert view.figure.to_json() == figures.cluster_map(f, "label", title="Clusters").to_json()


@pytest.mark.parametrize("color", ["cluster", "label", "cluster_ctr"])
def test_large_map_draws_every_point_as_typed_arrays(color):
    n = RICH_HOVER_MAX + 1_000
    f = _frame(n)
    view = map_figure(f, color)
    assert view.lean and view.drawn == view.total == n
    got = _points(view.figure).sort_values("id").reset_index(drop=True)
    want = f[["id", "x", "y"]].sort_values("id").reset_index(drop=True)
    np.testing.assert_array_equal(got["id"].to_numpy(), want["id"].to_numpy())  # ids exact (float64 < 2^53)
    np.testing.assert_allclose(got[["x", "y"]].to_numpy(), want[["x", "y"]].to_numpy(), rtol=1e-6)  # float32
    text = view.figure.to_json()
    assert '"bdata"' in text
    # the size estimate that the subset rule relies on holds (within the fixed allowance)
    assert len(text) <= n * bytes_per_point(color) + 200_000
    if color == "label":
        names = sorted(t.name for t in view.figure.data)
        assert names == sorted(figures.safe(["a", "b", "<b>c</b>"]))
        assert len(view.figure.data) == 3
    if color == "cluster":
        assert [t.name for t in view.figure.data] == ["0", "1", "2", "3", "4"]
        assert "CTR 0.030" in view.figure.data[2].hovertemplate


def test_a_map_over_the_budget_draws_a_stated_seeded_subset():
    n = RICH_HOVER_MAX + 20_000
    f = _frame(n, seed=3)
    budget = 1_000_000.0
    keep = points_that_fit(budget, "cluster")
    assert 0 < keep < n
    view = map_figure(f, "cluster", limit_bytes=budget, seed=5)
    again = map_figure(f, "cluster", limit_bytes=budget, seed=5)
    assert view.drawn == keep and view.total == n
    assert f"{keep:,} of the {n:,}" in view.note() and "server.maxMessageSize" in view.note()
    pts = _points(view.figure)
    assert pts["id"].is_unique and pts["id"].isin(f["id"]).all()
    assert pts.equals(_points(again.figure))
    assert len(view.figure.to_json()) <= budget
    # a uniform subset: every cluster keeps about its share
    share = f.set_index("id").loc[pts["id"], "cluster"].value_counts(normalize=True).sort_index()
    np.testing.assert_allclose(share.to_numpy(), f["cluster"].value_counts(normalize=True).sort_index(), atol=0.03)


def test_unknown_colour_is_refused():
    with pytest.raises(ValueError, match="color must be one of"):
        map_figure(_frame(10), "segment")


def test_figure_json_parses():
    view = map_figure(_frame(RICH_HOVER_MAX + 10), "cluster_ctr")
    spec = json.loads(view.figure.to_json())
    assert spec["data"][0]["type"] == "scattergl"
