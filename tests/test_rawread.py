"""The raw page reader must equal Arrow's decoder value for value, and step aside for anything else."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lee.snapshot import EmbeddingTable, Snapshot, write_snapshot
from lee.snapshot.rawread import raw_vectors


def _arrow(path, dim):
    return pq.read_table(path, columns=["vector"]).column(0).combine_chunks().flatten().to_numpy().reshape(-1, dim)


@pytest.mark.parametrize("rows,dim,ids", [(1, 3, "int"), (5000, 7, "str"), (300_000, 16, "int")])
def test_equals_arrow_on_writer_output(tmp_path, rows, dim, ids):
    rng = np.random.default_rng(rows)
    x = rng.standard_normal((rows, dim)).astype(np.float32)
    x[0, 0] = -0.0
    x[-1, -1] = np.float32(3.4e38)
    id_arr = np.arange(rows) * 3 if ids == "int" else np.array([f"u{k}" for k in range(rows)], dtype=object)
    path = write_snapshot(tmp_path, "v", "2026-01-01T00:00:00Z",
                          {"UR": EmbeddingTable(id_arr, x, updated_at=np.arange(rows))}, max_abs=np.inf)
    file = Snapshot.open(path, max_abs=np.inf).table_path("UR")
    raw = raw_vectors(file, dim)
    assert raw is not None and len(raw.pages) >= 1
    got = raw.matrix()
    assert got.shape == (rows, dim)
    np.testing.assert_array_equal(got.view(np.uint32), _arrow(file, dim).view(np.uint32))  # bit for bit


def _write(path, x, **kw):
    dim = x.shape[1]
    vec = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), dim)
    pq.write_table(pa.table({"id": pa.array(np.arange(len(x))), "vector": vec}), path, **kw)


def test_data_page_v2_and_small_pages(tmp_path):
    x = np.random.default_rng(0).standard_normal((20_000, 8)).astype(np.float32)
    for name, kw in {"v2": dict(compression="none", data_page_version="2.0", use_dictionary=False),
                     "tiny-pages": dict(compression="none", data_page_size=1000, use_dictionary=False)}.items():
        path = tmp_path / f"{name}.parquet"
        _write(path, x, **kw)
        raw = raw_vectors(path, 8)
        assert raw is not None, name
        np.testing.assert_array_equal(raw.matrix(), x)


@pytest.mark.parametrize("case", ["zstd", "dictionary", "nulls", "not-parquet", "no-vector"])
def test_steps_aside(tmp_path, case):
    """Anything the fast path cannot read exactly gives None (the caller then uses Arrow)."""
    x = np.random.default_rng(1).standard_normal((100, 4)).astype(np.float32)
    path = tmp_path / "t.parquet"
    if case == "zstd":
        _write(path, x, compression="zstd")
    elif case == "dictionary":
        _write(path, np.round(x), compression="none", use_dictionary=True)
    elif case == "nulls":
        flat = pa.array(x.reshape(-1), mask=np.arange(400) % 7 == 0)
        pq.write_table(pa.table({"vector": pa.FixedSizeListArray.from_arrays(flat, 4)}), path, compression="none",
                       use_dictionary=False)
    elif case == "not-parquet":
        path.write_bytes(b"PAR1" + b"\x00" * 100)
    else:
        pq.write_table(pa.table({"id": [1, 2]}), path)
    assert raw_vectors(path, 4) is None


def test_corrupt_page_header_is_not_a_crash(tmp_path):
    x = np.random.default_rng(2).standard_normal((1000, 4)).astype(np.float32)
    path = tmp_path / "t.parquet"
    _write(path, x, compression="none", use_dictionary=False)
    off = pq.ParquetFile(path).metadata.row_group(0).column(1).data_page_offset
    raw = bytearray(path.read_bytes())
    raw[off: off + 6] = b"\xff" * 6
    path.write_bytes(bytes(raw))
    assert raw_vectors(path, 4) is None


def test_ragged_list_is_not_regrouped(tmp_path):
    """Levels are never decoded, so a variable-length list column must be refused by its schema."""
    path = tmp_path / "ragged.parquet"
    vec = pa.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0], [7.0, 8.0, 9.0], [1.0, 2.0, 3.0]], type=pa.list_(pa.float32()))
    pq.write_table(pa.table({"id": [1, 2, 3, 4], "vector": vec}), path, compression="none", use_dictionary=False)
    assert raw_vectors(path, 3) is None
