"""Volatility: closed-form cosines, coverage, chunked/blocked joins, DuckDB cross-check, planted drift."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.volatility import cosine_by_id, volatility, volatility_series
from lee.errors import InputError, SnapshotError
from lee.snapshot import EmbeddingTable, Snapshot, SnapshotStore, write_snapshot
from lee.world.planted import write_planted_variants

T0, T1, T2 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z", "2026-01-01T00:10:00Z"


def _rotated_pair(n: int, angles: np.ndarray, dim: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Vectors and copies rotated by ``angles`` (radians) in a random 2-D plane per row: cos = cos(angle)."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((n, dim))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    w = rng.standard_normal((n, dim))
    w -= (w * u).sum(1, keepdims=True) * u
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    scale = rng.uniform(0.5, 3.0, size=(n, 1))  # cosine must not depend on the norm
    v = np.cos(angles)[:, None] * u + np.sin(angles)[:, None] * w
    return (scale * u).astype(np.float32), (2.0 * scale * v).astype(np.float32)


@pytest.fixture()
def rotated(tmp_path):
    n = 2000
    rng = np.random.default_rng(1)
    angles = rng.uniform(0.0, 0.5, size=n)
    a, b = _rotated_pair(n, angles)
    ids = np.arange(n, dtype=np.int64) * 3 + 5
    # later snapshot: drops the first 100 ids, adds 50 new ones, rows shuffled
    keep = np.arange(100, n)
    new_ids = np.arange(50, dtype=np.int64) * 3 + 1
    ids_after = np.r_[ids[keep], new_ids]
    vec_after = np.r_[b[keep], rng.standard_normal((50, 8)).astype(np.float32)]
    perm = rng.permutation(ids_after.size)
    write_snapshot(tmp_path, "v", T0, {"UR": EmbeddingTable(ids, a)})
    write_snapshot(tmp_path, "v", T1, {"UR": EmbeddingTable(ids_after[perm], vec_after[perm])})
    truth = pd.Series(np.cos(angles[keep]), index=ids[keep])
    return tmp_path, truth, ids[:100], new_ids


def test_closed_form_cosines_and_coverage(rotated):
    root, truth, lost, new = rotated
    res = volatility(root, "v", "UR")
    got = pd.Series(res.cosine, index=res.ids).sort_index()
    np.testing.assert_allclose(got.to_numpy(), truth.sort_index().to_numpy(), atol=2e-6)
    assert res.n_shared == len(truth) and res.n_before == 2000 and res.n_after == 1950
    assert sorted(res.lost_ids.tolist()) == sorted(lost.tolist())
    assert sorted(res.new_ids.tolist()) == sorted(new.tolist())
    s = res.summary()
    assert s["share_above_0.99"] == pytest.approx((truth > 0.99).mean(), abs=1e-9)
    assert s["share_above_0.95"] == pytest.approx((truth > 0.95).mean(), abs=1e-9)
    assert s["mean_cosine"] == pytest.approx(truth.mean(), abs=1e-6)
    hist = res.histogram(bins=20)
    assert hist["count"].sum() == res.n_shared
    cdf = res.cdf(points=11)
    assert cdf["cosine"].is_monotonic_increasing
    assert cdf["cosine"].iloc[5] == pytest.approx(truth.median(), abs=1e-6)


@pytest.mark.parametrize("memory_mb,batch_rows", [(4096, 131_072), (1, 64), (1, 1000)])
def test_blocked_join_gives_the_same_answer(rotated, memory_mb, batch_rows):
    """Tiny memory budgets force many blocks and batches; the answer must not change."""
    root, truth, _, _ = rotated
    store = SnapshotStore(root)
    res = cosine_by_id(store.open("v", T0), store.open("v", T1), "UR", batch_rows=batch_rows,
                       block_rows=(memory_mb << 20) // (4 * 8))   # the block that memory_mb MiB of 8-d rows holds
    if memory_mb == 1:
        assert res.blocks == 1  # 2000 x 8 floats fits one block even at 1 MiB...
    got = pd.Series(res.cosine, index=res.ids).sort_index()
    np.testing.assert_allclose(got.to_numpy(), truth.sort_index().to_numpy(), atol=2e-6)


def test_many_blocks(tmp_path):
    """A 1 MiB budget over 64-d rows holds 4096 rows per block: 10k rows -> 3 blocks."""
    rng = np.random.default_rng(3)
    n = 10_000
    a = rng.standard_normal((n, 64)).astype(np.float32)
    b = a + 0.3 * rng.standard_normal((n, 64)).astype(np.float32)
    ids = rng.permutation(n * 2)[:n].astype(np.int64)
    perm = rng.permutation(n)
    write_snapshot(tmp_path, "v", T0, {"IR": EmbeddingTable(ids, a)})
    write_snapshot(tmp_path, "v", T1, {"IR": EmbeddingTable(ids[perm], b[perm])})
    store = SnapshotStore(tmp_path)
    res = cosine_by_id(store.open("v", T0), store.open("v", T1), "IR", block_rows=4096, batch_rows=1500)
    assert res.blocks == 3
    ref = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    got = pd.Series(res.cosine, index=res.ids).reindex(ids).to_numpy()
    np.testing.assert_allclose(got, ref, atol=2e-6)


def test_string_ids_and_zero_vectors(tmp_path):
    ids = np.array(["u-a", "u-b", "u-c", "ü-d"], dtype=object)
    a = np.array([[1, 0], [0, 1], [0, 0], [1, 1]], np.float32)
    b = np.array([[1, 1], [0, -2], [1, 0], [2, 2]], np.float32)
    write_snapshot(tmp_path, "v", T0, {"UR": EmbeddingTable(ids, a)})
    write_snapshot(tmp_path, "v", T1, {"UR": EmbeddingTable(ids[::-1].copy(), b[::-1].copy())})
    res = volatility(tmp_path, "v", "UR")
    got = dict(zip(res.ids, res.cosine.tolist()))
    assert got["u-a"] == pytest.approx(np.sqrt(0.5))
    assert got["u-b"] == pytest.approx(-1.0)
    assert got["u-c"] == 0.0 and res.n_zero_norm == 1   # zero vector: no direction
    assert got["ü-d"] == pytest.approx(1.0)


def test_matches_duckdb(rotated):
    duckdb = pytest.importorskip("duckdb")
    root, _, _, _ = rotated
    store = SnapshotStore(root)
    before, after = store.open("v", T0), store.open("v", T1)
    res = cosine_by_id(before, after, "UR")
    q = (f"SELECT a.id, array_cosine_similarity(a.vector::FLOAT[8], b.vector::FLOAT[8]) AS c "
         f"FROM '{after.table_path('UR')}' a JOIN '{before.table_path('UR')}' b USING (id)")
    ref = duckdb.sql(q).df().set_index("id")["c"]
    got = pd.Series(res.cosine, index=res.ids)
    assert len(ref) == len(got)
    np.testing.assert_allclose(got.reindex(ref.index).to_numpy(), ref.to_numpy(), atol=1e-5)


def test_planted_drift_grows_with_activity(tiny_world, tmp_path):
    """Planted drift per step scales with activity: high-activity users must move the most."""
    write_planted_variants(tiny_world, tmp_path, variants=["oracle"], n_snapshots=3)
    res = volatility(tmp_path, "oracle", "UR")
    assert res.minutes_apart == 5 and res.n_shared == len(tiny_world.users) and res.new_ids.size == 0
    by = res.by_attribute(tiny_world.users, "activity_level").set_index("activity_level")
    assert by.loc["low", "mean_cosine"] > by.loc["mid", "mean_cosine"] > by.loc["high", "mean_cosine"]
    assert by["n"].sum() == res.n_shared
    binned = res.by_attribute(tiny_world.users, "activity", bins=4)
    assert len(binned) == 4 and binned["mean_cosine"].is_monotonic_decreasing
    series = volatility_series(tmp_path, "oracle", "UR")
    assert len(series.table) == 2
    # a random walk: the second step's mean cosine is a little lower than the first's
    assert series.table["mean_cosine"].iloc[1] <= series.table["mean_cosine"].iloc[0] + 1e-4
    assert (series.table["share_above_0.95"] > 0.5).all()


def test_bad_inputs(tmp_path, rotated):
    root, _, _, _ = rotated
    store = SnapshotStore(root)
    # mismatched dims
    write_snapshot(tmp_path / "d", "v", T0, {"UR": EmbeddingTable(np.arange(3), np.ones((3, 4), np.float32))})
    write_snapshot(tmp_path / "d", "v", T1, {"UR": EmbeddingTable(np.arange(3), np.ones((3, 5), np.float32))})
    with pytest.raises(InputError, match="dim 4 .* dim 5"):
        volatility(tmp_path / "d", "v", "UR")
    # no overlapping ids
    write_snapshot(tmp_path / "o", "v", T0, {"UR": EmbeddingTable(np.arange(3), np.ones((3, 4), np.float32))})
    write_snapshot(tmp_path / "o", "v", T1, {"UR": EmbeddingTable(np.arange(3) + 10, np.ones((3, 4), np.float32))})
    with pytest.raises(InputError, match="overlapping ids"):
        volatility(tmp_path / "o", "v", "UR")
    # int vs string ids
    write_snapshot(tmp_path / "s", "v", T0, {"UR": EmbeddingTable(np.arange(3), np.ones((3, 4), np.float32))})
    write_snapshot(tmp_path / "s", "v", T1, {"UR": EmbeddingTable(np.array(["a", "b", "c"], object),
                                                                   np.ones((3, 4), np.float32))})
    with pytest.raises(InputError, match="ids are int64 .* but string"):
        volatility(tmp_path / "s", "v", "UR")
    # a table the snapshot lacks, no previous snapshot, a one-snapshot series
    with pytest.raises(SnapshotError, match="has no IR table"):
        volatility(root, "v", "IR")
    with pytest.raises(SnapshotError, match="no snapshot 5 minutes before"):
        volatility(root, "v", "UR", at=T0, minutes=5)
    with pytest.raises(InputError, match="is the variant's first snapshot"):   # default: the previous one
        volatility(root, "v", "UR", at=T0)
    write_snapshot(tmp_path / "one", "v", T0, {"UR": EmbeddingTable(np.arange(3), np.ones((3, 4), np.float32))})
    with pytest.raises(InputError, match="at least 2"):
        volatility_series(tmp_path / "one", "v", "UR")
    # a NaN row written by a broken upstream: named by id, not a NaN cosine
    bad = np.ones((3, 4), np.float32)
    bad[1, 2] = np.nan
    write_snapshot(tmp_path / "n", "v", T0, {"UR": EmbeddingTable(np.arange(3), np.ones((3, 4), np.float32))})
    write_snapshot(tmp_path / "n", "v", T1, {"UR": EmbeddingTable(np.arange(3) + 7, bad)}, allow_nonfinite=True)
    write_snapshot(tmp_path / "n", "v", T2, {"UR": EmbeddingTable(np.arange(3) + 7, bad)}, allow_nonfinite=True)
    with pytest.raises(SnapshotError, match="id 8.*NaN"):
        volatility(tmp_path / "n", "v", "UR", at=T2)
    # a corrupted file: the checksum catches it and nothing is returned
    after = store.open("v", T1)
    path = after.table_path("UR")
    raw = bytearray(path.read_bytes())
    raw[200] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(SnapshotError, match="checksum"):
        cosine_by_id(store.open("v", T0), Snapshot.open(after.path), "UR")
    # attribute breakdown errors
    res = cosine_by_id(store.open("v", T0), store.open("v", T0), "UR")
    with pytest.raises(InputError, match="missing column"):
        res.by_attribute(pd.DataFrame({"user_id": [1]}), "segment")
    with pytest.raises(InputError, match="pass bins"):
        res.by_attribute(pd.DataFrame({"user_id": res.ids, "x": np.arange(res.n_shared)}), "x")


@pytest.mark.parametrize("which", ["shared", "new"])
def test_duplicate_later_ids_are_named(rotated, monkeypatch, which):
    """A foreign file with a repeated id (the writer refuses them) is an error naming the id."""
    root, truth, _, new = rotated
    store = SnapshotStore(root)
    before, after = store.open("v", T0), store.open("v", T1)
    real = Snapshot.load_ids

    def fake(self, kind):
        ids = real(self, kind).copy()
        if self.path == after.path:
            target = truth.index[0] if which == "shared" else new[0]
            ids[np.flatnonzero(ids != target)[0]] = target
        return ids

    monkeypatch.setattr(Snapshot, "load_ids", fake)
    with pytest.raises(SnapshotError, match="duplicate id"):
        cosine_by_id(before, after, "UR")


def test_arrow_fallback_equals_mapped_path(tmp_path):
    """zstd-compressed tables cannot be mapped: the Arrow path must give the same cosines."""
    rng = np.random.default_rng(5)
    a = rng.standard_normal((3000, 16)).astype(np.float32)
    b = a + 0.2 * rng.standard_normal(a.shape).astype(np.float32)
    ids = np.arange(3000) * 2
    for comp in ("none", "zstd"):
        write_snapshot(tmp_path / comp, "v", T0, {"UR": EmbeddingTable(ids, a)}, compression=comp)
        write_snapshot(tmp_path / comp, "v", T1, {"UR": EmbeddingTable(ids[::-1].copy(), b[::-1].copy())},
                       compression=comp)
    plain, packed = volatility(tmp_path / "none", "v"), volatility(tmp_path / "zstd", "v")
    np.testing.assert_array_equal(plain.ids, packed.ids)
    np.testing.assert_allclose(plain.cosine, packed.cosine, atol=1e-7)
    many = cosine_by_id(SnapshotStore(tmp_path / "zstd").open("v", T0), SnapshotStore(tmp_path / "zstd").open("v", T1),
                        "UR", block_rows=(1 << 20) // (4 * 16), batch_rows=500)
    np.testing.assert_allclose(many.cosine, plain.cosine, atol=1e-7)
