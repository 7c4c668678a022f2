"""Dimensional collapse: closed-form spectra, streamed = in-memory = numpy SVD, planted collapse found."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.collapse import (
    collapse_of_matrix,
    collapse_of_table,
    compare_collapse,
    effective_rank,
    information_abundance,
)
from lee.errors import InputError
from lee.snapshot import EmbeddingTable, Snapshot, SnapshotStore, write_snapshot
from lee.world.planted import PLANTED_VARIANTS, write_planted_variants


def test_closed_form_measures():
    assert effective_rank(np.ones(8)) == pytest.approx(8.0)
    assert effective_rank(np.array([5.0, 0, 0])) == pytest.approx(1.0)
    p = np.array([3.0, 1.0]) / 4
    assert effective_rank(np.array([3.0, 1.0])) == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    assert information_abundance(np.array([4.0, 2.0, 1.0, 1.0])) == pytest.approx(2.0)
    assert effective_rank(np.zeros(3)) == 0.0 and information_abundance(np.zeros(3)) == 0.0


def test_known_singular_values():
    """X = U diag(s) V^T with centred orthonormal U: the spectrum must come back exactly."""
    rng = np.random.default_rng(0)
    n, d = 400, 6
    s = np.array([10.0, 5.0, 2.0, 1.0, 0.0, 0.0])
    a = rng.standard_normal((n, d))
    a -= a.mean(0)
    u, _ = np.linalg.qr(a)
    v, _ = np.linalg.qr(rng.standard_normal((d, d)))
    x = (u * s) @ v.T + 3.0  # an offset: the analysis centres
    res = collapse_of_matrix(x)
    np.testing.assert_allclose(res.singular_values, s, atol=1e-5)
    assert res.dims_for_variance(0.99) == 3   # 100+25 of 130 = 96%; +4 = 99.2%
    assert res.effective_rank == pytest.approx(effective_rank(s))
    spec = res.spectrum()
    assert spec["explained_variance_cum"].iloc[-1] == pytest.approx(1.0)


def test_streamed_equals_numpy_svd(tmp_path):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((3000, 16)) * np.linspace(3, 0.1, 16)).astype(np.float32)
    path = write_snapshot(tmp_path, "v", "2026-01-01T00:00:00Z", {"IR": EmbeddingTable(np.arange(3000), x)})
    res = collapse_of_table(Snapshot.open(path), "IR", chunk_rows=257)
    ref = np.linalg.svd(x.astype(np.float64) - x.astype(np.float64).mean(0), compute_uv=False)
    np.testing.assert_allclose(res.singular_values, ref, rtol=1e-7, atol=1e-7)
    assert res.rows == 3000 and res.dim == 16


def test_planted_rank_collapse_detected(tiny_world, tmp_path):
    write_planted_variants(tiny_world, tmp_path, variants=PLANTED_VARIANTS, n_snapshots=1)
    store = SnapshotStore(tmp_path)
    results = {v: collapse_of_table(store.latest(v), "UR") for v in PLANTED_VARIANTS}
    table = compare_collapse(results).set_index("variant")
    assert table["collapsed"].tolist().count(True) == 1 and table.loc["rank_collapsed", "collapsed"]
    assert table.loc["rank_collapsed", "dims_99pct_variance"] == 2
    # the oracle embeds a 16-d latent in 32 dims: its spectrum has (about) 16 non-zero directions
    assert table.loc["oracle", "dims_99pct_variance"] <= 16 < table.loc["random", "dims_99pct_variance"]
    assert table.loc["random", "effective_rank"] > table.loc["oracle", "effective_rank"]


def test_bad_inputs():
    with pytest.raises(InputError, match="at least 2"):
        collapse_of_matrix(np.ones((1, 4)))
    with pytest.raises(InputError, match="2-D"):
        collapse_of_matrix(np.ones(4))
    with pytest.raises(InputError, match="NaN"):
        collapse_of_matrix(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(InputError, match="no collapse results"):
        compare_collapse({})
