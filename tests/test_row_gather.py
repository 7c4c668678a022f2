"""RowGather copies whole rows from the mapped file: into a contiguous buffer or any strided one."""

from __future__ import annotations

import numpy as np

from lee.snapshot import EmbeddingTable, Snapshot, TableKind, write_snapshot


def test_row_gather_whole_rows_into_contiguous_and_strided_buffers(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((30_000, 7)).astype(np.float32)  # 28-byte rows: not 8-byte aligned
    path = write_snapshot(tmp_path, "v", 1_767_225_600, {TableKind.UR: EmbeddingTable(
        ids=np.arange(30_000, dtype=np.int64), vectors=vectors)})
    gather = Snapshot.open(path).row_gather("UR")
    assert gather is not None
    rows = rng.integers(0, 30_000, size=4_000)
    rows[:2] = [0, 29_999]
    got = gather.take(rows, np.empty((4_000, 7), np.float32))
    np.testing.assert_array_equal(got.view(np.uint32), vectors[rows].view(np.uint32))
    wide = np.full((4_100, 10), np.nan, np.float32)
    strided = gather.take(rows, wide[:, 2:9])  # rows of the buffer are not contiguous
    np.testing.assert_array_equal(strided.view(np.uint32), vectors[rows].view(np.uint32))
    assert np.shares_memory(strided, wide) and np.isnan(wide[:, :2]).all() and np.isnan(wide[4_000:]).all()
    assert gather.take(rows[:0], np.empty((1, 7), np.float32)).shape == (0, 7)
