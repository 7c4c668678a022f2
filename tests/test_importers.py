"""Importers (.npz, .npy, safetensors) and the CSV/Parquet exporter of ``lee.snapshot.importers``.

Good files must round-trip exactly: import -> ``write_snapshot`` -> ``Snapshot.load`` -> export ->
read back with pandas/pyarrow gives the same ids and bit-identical float32 vectors. Bad files
must raise :class:`InputError` (or :class:`SnapshotError`) naming the file, and never unpickle.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hostile_corpus import corrupt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from safetensors.numpy import save_file as save_safetensors

from lee.errors import InputError, LeeError, SnapshotError
from lee.snapshot import EmbeddingTable, Snapshot, TableKind, write_snapshot
from lee.snapshot.importers import (
    IMPORTERS,
    NpyImporter,
    NpzImporter,
    SafetensorsImporter,
    export_table,
    importer_for,
)

T0 = datetime(2026, 1, 1, 0, 5, 0, tzinfo=UTC)


@pytest.fixture(autouse=True, scope="module")
def _every_finite_float32_is_plausible():
    """These round trips cover every finite float32 (3.4e38 included): lift the reader's
    plausibility bound (default ±1e6, tested in test_hostile_inputs.py) for this module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LEE_MAX_ABS_VALUE", "inf")
        yield

# Awkward but finite float32 values: -0.0, the smallest subnormal, the largest finite, 1/3, 0.1.
AWKWARD = np.array([-0.0, 1e-45, 3.4028235e38, 1 / 3, 0.1, -1.1754944e-38, 16777216.0, -7.5],
                   dtype=np.float32)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def sample_ids(n: int = 5) -> np.ndarray:
    """Distinct int64 ids including both extremes of the int64 range."""
    base = np.array([np.iinfo(np.int64).min, -1, 0, 7, np.iinfo(np.int64).max], dtype=np.int64)
    return base[:n] if n <= base.size else np.arange(n, dtype=np.int64) * 1_000_003


def sample_vectors(n: int = 5, dim: int = 3) -> np.ndarray:
    """A float32 matrix cycling through :data:`AWKWARD` values."""
    return np.resize(AWKWARD, n * dim).reshape(n, dim).astype(np.float32)


def bits(a: np.ndarray) -> np.ndarray:
    """The raw bit pattern of float32 values, so -0.0 and subnormals compare exactly."""
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def assert_same_bits(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    np.testing.assert_array_equal(bits(got), bits(want))


def assert_table(table: EmbeddingTable, ids: np.ndarray, vectors: np.ndarray) -> None:
    """An imported table holds exactly ``ids`` and ``vectors`` (as float32, C-contiguous)."""
    assert table.vectors.dtype == np.float32
    assert table.vectors.flags.c_contiguous
    assert_same_bits(table.vectors, np.asarray(vectors, dtype=np.float32))
    if np.asarray(ids).dtype.kind in "iu":
        assert table.ids.dtype == np.int64
        np.testing.assert_array_equal(table.ids, ids)
    else:
        assert table.ids.dtype == object
        assert list(table.ids) == [str(x) for x in ids]
        assert all(type(x) is str for x in table.ids)
    assert table.updated_at is None


def write_npz(path: Path, **arrays: Any) -> Path:
    np.savez(path, **arrays)
    return path


def write_npy_pair(tmp: Path, ids: np.ndarray, vectors: np.ndarray) -> tuple[Path, Path]:
    """A vectors ``.npy`` and its ids ``.npy``; returns (vectors_path, ids_path)."""
    vec_path, ids_path = tmp / "vectors.npy", tmp / "ids.npy"
    np.save(vec_path, vectors)
    np.save(ids_path, ids)
    return vec_path, ids_path


def write_st(path: Path, **tensors: np.ndarray) -> Path:
    save_safetensors({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path))
    return path


def write_in_format(tmp: Path, fmt: str, ids: np.ndarray, vectors: np.ndarray) -> tuple[Path, dict[str, Any]]:
    """Write ``(ids, vectors)`` as ``fmt``; returns the file and the importer options it needs."""
    if fmt == "npz":
        return write_npz(tmp / "table.npz", ids=ids, vectors=vectors), {}
    if fmt == "npy":
        vec_path, ids_path = write_npy_pair(tmp, ids, vectors)
        return vec_path, {"ids_path": ids_path}
    return write_st(tmp / "table.safetensors", ids=ids, vectors=vectors), {}


def snapshot_of(root: Path, table: EmbeddingTable, kind: TableKind = TableKind.UR) -> Snapshot:
    """Write ``table`` as a one-table snapshot and open it."""
    return Snapshot.open(write_snapshot(root, "imported", T0, {kind: table}))


def read_export(path: Path, fmt: str, *, string_ids: bool = False) -> pd.DataFrame:
    """Read an exported table back with pandas (CSV) or pyarrow (Parquet)."""
    if fmt == "parquet":
        return pq.read_table(path).to_pandas()
    if string_ids:  # pandas would turn "" / "NaN" ids into NaN; pyarrow keeps them as text
        opts = pacsv.ConvertOptions(column_types={"id": pa.string()}, strings_can_be_null=False)
        return pacsv.read_csv(path, parse_options=pacsv.ParseOptions(newlines_in_values=True),
                              convert_options=opts).to_pandas()
    # A column holding only "-0" or "2" would be inferred as integers (losing -0.0): say they are floats.
    header = pd.read_csv(path, nrows=0).columns
    return pd.read_csv(path, dtype={c: "float64" for c in header if c.startswith("v")})


def wide_vectors(frame: pd.DataFrame, dim: int) -> np.ndarray:
    return frame[[f"v{k}" for k in range(dim)]].to_numpy().astype(np.float32)


def tripwire_array(sentinel: Path) -> np.ndarray:
    """An object array whose unpickling would create ``sentinel`` (proof that nothing was unpickled)."""

    class Tripwire:
        def __reduce__(self):  # unpickling calls exec(...), which creates the sentinel file
            return (exec, (f"open({str(sentinel)!r}, 'w').close()",))

    arr = np.empty(3, dtype=object)
    arr[:] = [Tripwire(), Tripwire(), Tripwire()]
    return arr


# --------------------------------------------------------------------------------------------
# NpzImporter
# --------------------------------------------------------------------------------------------


def test_npz_reads_ids_and_vectors_exactly(tmp_path):
    ids, vecs = sample_ids(), sample_vectors()
    table = NpzImporter().read(write_npz(tmp_path / "t.npz", ids=ids, vectors=vecs))
    assert_table(table, ids, vecs)


def test_npz_custom_keys(tmp_path):
    ids, vecs = sample_ids(), sample_vectors()
    path = write_npz(tmp_path / "t.npz", user_id=ids, emb=vecs, ids=ids[::-1])
    table = NpzImporter(ids_key="user_id", vectors_key="emb").read(path)
    assert_table(table, ids, vecs)


def test_npz_string_ids_become_python_str(tmp_path):
    ids = np.array(["u0", "", "日本", "<script>"])
    vecs = sample_vectors(4, 2)
    table = NpzImporter().read(write_npz(tmp_path / "t.npz", ids=ids, vectors=vecs))
    assert_table(table, ids, vecs)


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int32, np.uint8])
def test_npz_numeric_vectors_are_cast_to_float32(tmp_path, dtype):
    vecs = (np.arange(12).reshape(4, 3) * 7 + 1).astype(dtype)
    table = NpzImporter().read(write_npz(tmp_path / "t.npz", ids=np.arange(4), vectors=vecs))
    assert_table(table, np.arange(4), vecs.astype(np.float32))


@pytest.mark.parametrize("id_dtype", [np.int8, np.int32, np.uint16, np.uint64])
def test_npz_integer_ids_of_any_width_become_int64(tmp_path, id_dtype):
    ids = np.array([3, 1, 2], dtype=id_dtype)
    table = NpzImporter().read(write_npz(tmp_path / "t.npz", ids=ids, vectors=sample_vectors(3, 2)))
    assert table.ids.dtype == np.int64
    assert table.ids.tolist() == [3, 1, 2]


def test_npz_fortran_ordered_vectors_come_back_c_contiguous(tmp_path):
    vecs = np.asfortranarray(sample_vectors(5, 4))
    table = NpzImporter().read(write_npz(tmp_path / "t.npz", ids=sample_ids(), vectors=vecs))
    assert_table(table, sample_ids(), np.ascontiguousarray(vecs))


@pytest.mark.parametrize("missing, present", [("ids", "vectors"), ("vectors", "ids")])
def test_npz_missing_key_names_file_and_lists_present_keys(tmp_path, missing, present):
    path = write_npz(tmp_path / "t.npz", **{present: np.arange(3)}, extra=np.arange(2))
    with pytest.raises(InputError) as err:
        NpzImporter().read(path)
    msg = str(err.value)
    assert str(path) in msg
    assert f"no array named '{missing}'" in msg
    assert f"arrays present: {present}, extra" in msg


def test_npz_with_custom_key_missing_lists_default_keys(tmp_path):
    path = write_npz(tmp_path / "t.npz", ids=np.arange(3), vectors=sample_vectors(3, 2))
    with pytest.raises(InputError, match=r"no array named 'emb'; arrays present: ids, vectors"):
        NpzImporter(vectors_key="emb").read(path)


def test_tripwire_fires_when_unpickled(tmp_path):
    """Sanity check of the tripwire itself, so the refusal tests below can really fail."""
    sentinel = tmp_path / "unpickled"
    path = write_npz(tmp_path / "t.npz", ids=tripwire_array(sentinel), vectors=sample_vectors(3, 2))
    with np.load(path, allow_pickle=True) as z:
        z["ids"]
    assert sentinel.exists()


@pytest.mark.parametrize("key", ["ids", "vectors"])
def test_npz_object_array_is_refused_and_never_unpickled(tmp_path, key):
    sentinel = tmp_path / "unpickled"
    arrays = {"ids": np.arange(3), "vectors": sample_vectors(3, 2)}
    arrays[key] = tripwire_array(sentinel)
    path = tmp_path / "evil.npz"
    np.savez(path, **arrays)  # allow_pickle defaults to True when saving
    with pytest.raises(InputError) as err:
        NpzImporter().read(path)
    assert str(path) in str(err.value)
    assert "unpickling" in str(err.value)
    assert not sentinel.exists(), "the importer unpickled an object array"


@pytest.mark.parametrize("vecs, words", [
    (np.arange(6, dtype=np.float32), "2-D"),
    (np.zeros((2, 3, 1), dtype=np.float32), "2-D"),
    (np.array([["a", "b"], ["c", "d"]]), "numeric"),
    (np.ones((2, 2), dtype=bool), "numeric"),
    (np.ones((2, 2), dtype=np.complex64), "numeric"),
])
def test_npz_bad_vectors_are_refused(tmp_path, vecs, words):
    path = write_npz(tmp_path / "t.npz", ids=np.arange(len(vecs)), vectors=vecs)
    with pytest.raises(InputError) as err:
        NpzImporter().read(path)
    assert f"{path}[vectors]" in str(err.value)
    assert words in str(err.value)


@pytest.mark.parametrize("ids, words", [
    (np.array([1.0, 2.0, 3.0]), "integers or strings; got dtype float64"),
    (np.array([True, False, True]), "integers or strings; got dtype bool"),
    (np.array([b"a", b"b", b"c"]), "integers or strings"),
    (np.arange(6).reshape(3, 2), "1-D"),
    (np.array([0, 1, 2**63], dtype=np.uint64), "int64 range"),
])
def test_npz_bad_ids_are_refused(tmp_path, ids, words):
    path = write_npz(tmp_path / "t.npz", ids=ids, vectors=sample_vectors(3, 2))
    with pytest.raises(InputError) as err:
        NpzImporter().read(path)
    assert f"{path}[ids]" in str(err.value)
    assert words in str(err.value)


def test_npz_truncated_file_is_refused(tmp_path):
    path = write_npz(tmp_path / "t.npz", ids=sample_ids(), vectors=sample_vectors())
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(InputError, match=r"not a readable \.npz archive") as err:
        NpzImporter().read(path)
    assert str(path) in str(err.value)


def test_npz_corrupted_member_is_refused(tmp_path):
    """Flipped bytes inside a member: the zip CRC catches it."""
    path = write_npz(tmp_path / "t.npz", ids=np.arange(100), vectors=np.ones((100, 8), np.float32))
    data = bytearray(path.read_bytes())
    data[1500:1510] = bytes(b ^ 0xFF for b in data[1500:1510])
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"not a readable \.npz archive.*CRC"):
        NpzImporter().read(path)


def test_npz_given_a_plain_npy_is_refused(tmp_path):
    """A .npy saved under a .npz name (or read with --format npz) is named, not a TypeError."""
    path = tmp_path / "really_npy.npz"
    with open(path, "wb") as fh:
        np.save(fh, sample_vectors())
    with pytest.raises(InputError, match=r"single \.npy array, not a \.npz archive") as err:
        NpzImporter().read(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("content", [b"", b"hello, not numpy at all\n" * 4])
def test_npz_empty_or_foreign_file_is_refused(tmp_path, content):
    path = tmp_path / "t.npz"
    path.write_bytes(content)
    with pytest.raises(InputError) as err:
        NpzImporter().read(path)
    assert str(path) in str(err.value)


# --------------------------------------------------------------------------------------------
# NpyImporter
# --------------------------------------------------------------------------------------------


def test_npy_reads_matrix_with_separate_ids(tmp_path):
    ids, vecs = sample_ids(), sample_vectors()
    vec_path, ids_path = write_npy_pair(tmp_path, ids, vecs)
    assert_table(NpyImporter(ids_path=ids_path).read(vec_path), ids, vecs)


def test_npy_string_ids(tmp_path):
    ids, vecs = np.array(["b", "a", "é"]), sample_vectors(3, 2)
    vec_path, ids_path = write_npy_pair(tmp_path, ids, vecs)
    assert_table(NpyImporter(ids_path=ids_path).read(vec_path), ids, vecs)


def test_npy_without_ids_path_asks_for_ids(tmp_path):
    vec_path, _ = write_npy_pair(tmp_path, sample_ids(), sample_vectors())
    with pytest.raises(InputError, match=r"needs its ids in a second \.npy file \(--ids FILE\)") as err:
        NpyImporter().read(vec_path)
    assert str(vec_path) in str(err.value)


def test_npy_missing_ids_file_is_named(tmp_path):
    vec_path, _ = write_npy_pair(tmp_path, sample_ids(), sample_vectors())
    missing = tmp_path / "nope.npy"
    with pytest.raises(InputError, match=r"not a readable \.npy file") as err:
        NpyImporter(ids_path=missing).read(vec_path)
    assert str(missing) in str(err.value)


def test_npy_truncated_matrix_is_reported_as_unreadable_not_as_pickle(tmp_path):
    vec_path, ids_path = write_npy_pair(tmp_path, sample_ids(), sample_vectors())
    vec_path.write_bytes(vec_path.read_bytes()[:-7])
    with pytest.raises(InputError) as err:
        NpyImporter(ids_path=ids_path).read(vec_path)
    msg = str(err.value)
    assert msg.startswith(f"{vec_path}: not a readable .npy file")
    assert "pickl" not in msg


def test_npy_object_ids_are_refused_and_never_unpickled(tmp_path):
    sentinel = tmp_path / "unpickled"
    vec_path, ids_path = write_npy_pair(tmp_path, np.arange(3), sample_vectors(3, 2))
    np.save(ids_path, tripwire_array(sentinel), allow_pickle=True)
    with pytest.raises(InputError, match="unpickling") as err:
        NpyImporter(ids_path=ids_path).read(vec_path)
    assert str(ids_path) in str(err.value)
    assert not sentinel.exists()


def test_npy_given_an_npz_archive_is_refused(tmp_path):
    _, ids_path = write_npy_pair(tmp_path, sample_ids(), sample_vectors())
    path = tmp_path / "really_npz.npy"
    with open(path, "wb") as fh:
        np.savez(fh, ids=sample_ids(), vectors=sample_vectors())
    with pytest.raises(InputError, match=r"is a \.npz archive, not a single \.npy array") as err:
        NpyImporter(ids_path=ids_path).read(path)
    assert str(path) in str(err.value)


def test_npy_float_ids_and_1d_vectors_are_refused(tmp_path):
    vec_path, ids_path = write_npy_pair(tmp_path, np.array([1.5, 2.5]), sample_vectors(2, 2))
    with pytest.raises(InputError, match=r"ids must be integers or strings; got dtype float64") as err:
        NpyImporter(ids_path=ids_path).read(vec_path)
    assert str(ids_path) in str(err.value)
    vec_path, ids_path = write_npy_pair(tmp_path, np.arange(4), np.arange(4, dtype=np.float32))
    with pytest.raises(InputError, match=r"vectors must be a 2-D \(rows, dim\) array; got shape \(4,\)"):
        NpyImporter(ids_path=ids_path).read(vec_path)


# --------------------------------------------------------------------------------------------
# SafetensorsImporter
# --------------------------------------------------------------------------------------------


def test_safetensors_reads_ids_and_vectors_exactly(tmp_path):
    ids, vecs = sample_ids(), sample_vectors()
    table = SafetensorsImporter().read(write_st(tmp_path / "t.safetensors", ids=ids, vectors=vecs))
    assert_table(table, ids, vecs)


def test_safetensors_custom_keys_and_float16(tmp_path):
    vecs = np.array([[0.5, -0.0], [1e-7, 65504.0], [-3.25, 1 / 3], [7.0, -1.0]], dtype=np.float16)
    path = write_st(tmp_path / "t.safetensors", uid=np.arange(4, dtype=np.int32), emb=vecs)
    table = SafetensorsImporter(ids_key="uid", vectors_key="emb").read(path)
    assert_table(table, np.arange(4), vecs.astype(np.float32))


def test_safetensors_missing_tensor_lists_present_tensors(tmp_path):
    path = write_st(tmp_path / "t.safetensors", ids=np.arange(3), emb=sample_vectors(3, 2))
    with pytest.raises(InputError) as err:
        SafetensorsImporter().read(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "no tensor named 'vectors'" in msg
    assert "tensors present:" in msg and "emb" in msg and "ids" in msg


def test_safetensors_float_ids_are_refused(tmp_path):
    path = write_st(tmp_path / "t.safetensors", ids=np.arange(3, dtype=np.float32), vectors=sample_vectors(3, 2))
    with pytest.raises(InputError, match=r"\[ids\]: ids must be integers or strings; got dtype float32"):
        SafetensorsImporter().read(path)


@pytest.mark.parametrize("content", [b"", b"\x08\x00\x00\x00\x00\x00\x00\x00{bad json", b"\xff" * 64])
def test_safetensors_corrupt_file_is_refused(tmp_path, content):
    path = tmp_path / "t.safetensors"
    path.write_bytes(content)
    with pytest.raises(InputError, match="not a readable safetensors file") as err:
        SafetensorsImporter().read(path)
    assert str(path) in str(err.value)


def test_safetensors_truncated_file_is_refused(tmp_path):
    path = write_st(tmp_path / "t.safetensors", ids=sample_ids(), vectors=sample_vectors())
    path.write_bytes(path.read_bytes()[:-9])
    with pytest.raises(InputError, match="not a readable safetensors file"):
        SafetensorsImporter().read(path)


def test_safetensors_bfloat16_is_refused_with_a_clear_message(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    path = tmp_path / "bf16.safetensors"
    save_file({"ids": torch.arange(3), "vectors": torch.ones(3, 2, dtype=torch.bfloat16)}, str(path))
    with pytest.raises(InputError, match="dtype numpy cannot read") as err:
        SafetensorsImporter().read(path)
    assert str(path) in str(err.value)


# --------------------------------------------------------------------------------------------
# damaged files of every format: an InputError, never another exception
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["npz", "npz-compressed", "npy", "safetensors"])
def test_randomly_damaged_files_only_ever_raise_input_error(tmp_path, fmt):
    """Truncations and byte flips (zlib errors, bad zip headers, bad .npy headers, ...)."""
    rng = np.random.default_rng(1)
    ids, vecs = np.arange(40), rng.random((40, 6)).astype(np.float32)
    if fmt == "npz-compressed":
        path, opts = tmp_path / "t.npz", {}
        np.savez_compressed(path, ids=ids, vectors=vecs)
    else:
        path, opts = write_in_format(tmp_path, fmt, ids, vecs)
    original = path.read_bytes()
    importer = importer_for(path, **opts)
    outcomes = {"ok": 0, "refused": 0}
    for seed in range(60):
        path.write_bytes(original)
        corrupt(path, seed)
        try:
            importer.read(path)
            outcomes["ok"] += 1  # a flipped byte inside the float data is undetectable here
        except InputError as exc:
            assert str(path) in str(exc)
            outcomes["refused"] += 1
    assert outcomes["refused"] >= 20, outcomes  # every truncation, at least, must be refused


# --------------------------------------------------------------------------------------------
# importer_for
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, cls", [
    ("a.npz", NpzImporter), ("A.NPZ", NpzImporter), ("a.npy", NpyImporter),
    ("a.safetensors", SafetensorsImporter), ("a.v2.SafeTensors", SafetensorsImporter),
])
def test_importer_for_chooses_by_suffix(tmp_path, name, cls):
    path = tmp_path / name
    path.write_bytes(b"x")
    assert type(importer_for(path)) is cls


@pytest.mark.parametrize("fmt, cls", [("npz", NpzImporter), ("npy", NpyImporter),
                                      ("safetensors", SafetensorsImporter)])
def test_importer_for_explicit_format_wins_over_suffix(tmp_path, fmt, cls):
    path = tmp_path / "table.bin"
    path.write_bytes(b"x")
    assert type(importer_for(path, fmt)) is cls


def test_importer_for_explicit_format_reads_unsuffixed_file(tmp_path):
    ids, vecs = sample_ids(), sample_vectors()
    path = tmp_path / "table.data"
    with open(path, "wb") as fh:
        np.savez(fh, ids=ids, vectors=vecs)
    assert_table(importer_for(path, "npz").read(path), ids, vecs)


def test_importer_for_registry_is_complete():
    assert sorted(IMPORTERS) == ["arrow", "csv", "jsonl", "npy", "npz", "parquet", "safetensors", "tsv", "w2v"]


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_exported_tables_import_back_exactly(tmp_path, suffix):
    """CSV and Parquet in the export layout (id, v0..v{d-1}) read back the same ids and vectors."""
    from lee.snapshot import Snapshot, write_snapshot
    from lee.snapshot.format import EmbeddingTable
    from lee.snapshot.importers import export_table

    for ids in (sample_ids(), np.array(["u1", "u22", "x"], dtype=object)):
        vecs = sample_vectors(len(ids)) if len(ids) != 3 else np.arange(12, dtype=np.float32).reshape(3, 4) / 7
        snap = write_snapshot(tmp_path / f"r{len(ids)}", "v", "2024-01-01T00:00:00Z",
                              {"UR": EmbeddingTable(ids=ids, vectors=vecs)})
        out = tmp_path / f"t{len(ids)}.{suffix}"
        export_table(Snapshot.open(snap), "UR", out, fmt=suffix)
        assert_table(importer_for(out).read(out), ids, vecs)


def test_a_csv_with_a_text_dimension_names_the_column(tmp_path):
    path = tmp_path / "v.csv"
    path.write_text("id,v0,v1\n1,0.5,x\n2,1.0,2.0\n")
    with pytest.raises(InputError, match=r"v\.csv: column\(s\) v1 are not numeric"):
        importer_for(path).read(path)


def test_importer_for_unknown_format_lists_choices(tmp_path):
    path = tmp_path / "a.npz"
    path.write_bytes(b"x")
    with pytest.raises(InputError, match=r"unknown import format 'hdf5'; choose one of npz, npy, safetensors"):
        importer_for(path, "hdf5")


def test_importer_for_unknown_suffix_lists_choices(tmp_path):
    path = tmp_path / "a.h5"
    path.write_bytes(b"x")
    with pytest.raises(InputError, match=r"cannot tell the format from the suffix; use one of npz, npy, safetensors") \
            as err:
        importer_for(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("fmt", [None, "npz"])
def test_importer_for_missing_file(tmp_path, fmt):
    path = tmp_path / "nope.npz"
    with pytest.raises(InputError, match="no such file") as err:
        importer_for(path, fmt)
    assert str(path) in str(err.value)


def test_importer_for_directory_is_not_a_file(tmp_path):
    path = tmp_path / "dir.npz"
    path.mkdir()
    with pytest.raises(InputError, match=r"dir\.npz: (no such file|is a directory, not a regular file)"):
        importer_for(path)


@pytest.mark.parametrize("name, options, stray, fmt", [
    ("a.npz", {"ids_path": Path("ids.npy")}, "ids_path", "npz"),
    ("a.safetensors", {"ids_path": Path("ids.npy")}, "ids_path", "safetensors"),
    ("a.npy", {"ids_key": "uid"}, "ids_key", "npy"),
    ("a.npy", {"ids_key": "uid", "vectors_key": "emb"}, "ids_key, vectors_key", "npy"),
    ("a.npz", {"bogus": 1}, "bogus", "npz"),
])
def test_importer_for_refuses_options_of_another_format(tmp_path, name, options, stray, fmt):
    path = tmp_path / name
    path.write_bytes(b"x")
    with pytest.raises(InputError, match=rf"option\(s\) {stray} do not apply to the {fmt} format"):
        importer_for(path, **options)


def test_importer_for_passes_options_and_ignores_none(tmp_path):
    path = tmp_path / "a.npz"
    path.write_bytes(b"x")
    imp = importer_for(path, ids_key="uid", vectors_key=None, ids_path=None)
    assert imp == NpzImporter(ids_key="uid", vectors_key="vectors")
    npy = tmp_path / "a.npy"
    npy.write_bytes(b"x")
    assert importer_for(npy, ids_path=tmp_path / "ids.npy") == NpyImporter(ids_path=tmp_path / "ids.npy")


# --------------------------------------------------------------------------------------------
# export_table
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_wide_layout_round_trips_exactly(tmp_path, fmt):
    ids, vecs = sample_ids(), sample_vectors(5, 4)
    snap = snapshot_of(tmp_path / "root", EmbeddingTable(ids=ids, vectors=vecs))
    out = export_table(snap, "UR", tmp_path / f"ur.{fmt}", fmt)
    assert out == tmp_path / f"ur.{fmt}"
    frame = read_export(out, fmt)
    assert list(frame.columns) == ["id", "v0", "v1", "v2", "v3"]
    assert frame["id"].dtype == np.int64
    np.testing.assert_array_equal(frame["id"].to_numpy(), ids)
    assert_same_bits(wide_vectors(frame, 4), vecs)


def test_export_csv_text_has_header_and_one_row_per_id(tmp_path):
    table = EmbeddingTable(ids=np.array([5, 6], dtype=np.int64), vectors=np.array([[0.5, -2], [0.25, 1]], np.float32))
    out = export_table(snapshot_of(tmp_path / "root", table), TableKind.UR, tmp_path / "ur.csv")
    lines = out.read_text().splitlines()
    assert lines[0].replace('"', "") == "id,v0,v1"
    assert lines[1:] == ["5,0.5,-2", "6,0.25,1"]


def test_export_parquet_column_types(tmp_path):
    snap = snapshot_of(tmp_path / "root", EmbeddingTable(ids=sample_ids(), vectors=sample_vectors(5, 2)))
    schema = pq.read_schema(export_table(snap, "UR", tmp_path / "ur.parquet", "parquet"))
    assert schema.names == ["id", "v0", "v1"]
    assert schema.field("id").type == pa.int64()
    assert schema.field("v0").type == pa.float32() and schema.field("v1").type == pa.float32()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_keeps_updated_at(tmp_path, fmt):
    upd = np.array([0, -5, 1_767_225_600, 2**62, 3], dtype=np.int64)
    table = EmbeddingTable(ids=sample_ids(), vectors=sample_vectors(5, 2), updated_at=upd)
    out = export_table(snapshot_of(tmp_path / "root", table, TableKind.CR_ITEM), "CR_item",
                       tmp_path / f"cr.{fmt}", fmt)
    frame = read_export(out, fmt)
    assert list(frame.columns) == ["id", "v0", "v1", "updated_at"]
    assert frame["updated_at"].dtype == np.int64
    np.testing.assert_array_equal(frame["updated_at"].to_numpy(), upd)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_string_ids(tmp_path, fmt):
    ids = np.array(["u0", "", "NaN", "a,b\"c", "日本"], dtype=object)
    snap = snapshot_of(tmp_path / "root", EmbeddingTable(ids=ids, vectors=sample_vectors(5, 3)))
    frame = read_export(export_table(snap, "UR", tmp_path / f"ur.{fmt}", fmt), fmt, string_ids=True)
    assert frame["id"].tolist() == list(ids)
    assert_same_bits(wide_vectors(frame, 3), sample_vectors(5, 3))


def test_export_creates_parent_dirs_and_leaves_no_temp_file(tmp_path):
    snap = snapshot_of(tmp_path / "root", EmbeddingTable(ids=sample_ids(), vectors=sample_vectors()))
    out = tmp_path / "deep" / "er" / "ur.csv"
    export_table(snap, "UR", out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["ur.csv"]


def test_export_overwrites_an_existing_file(tmp_path):
    snap = snapshot_of(tmp_path / "root", EmbeddingTable(ids=sample_ids(), vectors=sample_vectors()))
    out = tmp_path / "ur.csv"
    out.write_text("stale\n")
    export_table(snap, "UR", out)
    assert len(pd.read_csv(out)) == 5


def test_export_unknown_format_is_refused_before_writing(tmp_path):
    snap = snapshot_of(tmp_path / "root", EmbeddingTable(ids=sample_ids(), vectors=sample_vectors()))
    with pytest.raises(InputError, match=r"unknown export format 'json'; choose one of csv, parquet"):
        export_table(snap, "UR", tmp_path / "out" / "ur.json", "json")
    assert not (tmp_path / "out").exists()


def test_export_missing_table_names_snapshot(tmp_path):
    snap = snapshot_of(tmp_path / "root", EmbeddingTable(ids=sample_ids(), vectors=sample_vectors()))
    with pytest.raises(SnapshotError, match=r"has no IR table; it holds UR") as err:
        export_table(snap, "IR", tmp_path / "ir.csv")
    assert str(snap.path) in str(err.value)
    with pytest.raises(SnapshotError, match=r"unknown table kind 'XX'"):
        export_table(snap, "XX", tmp_path / "xx.csv")


def test_export_refuses_a_corrupted_table(tmp_path):
    snap = snapshot_of(tmp_path / "root", EmbeddingTable(ids=sample_ids(), vectors=sample_vectors()))
    path = snap.table_path("UR")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match="checksum mismatch") as err:
        export_table(snap, "UR", tmp_path / "ur.csv")
    assert str(path) in str(err.value)
    assert not (tmp_path / "ur.csv").exists()


# --------------------------------------------------------------------------------------------
# the whole path: file -> importer -> snapshot -> export -> pandas/pyarrow
# --------------------------------------------------------------------------------------------


def pipeline(tmp: Path, fmt: str, ids: np.ndarray, vecs: np.ndarray, export_fmt: str) -> pd.DataFrame:
    """Import ``(ids, vecs)`` written as ``fmt``, snapshot it, export it, and read it back."""
    path, opts = write_in_format(tmp, fmt, ids, vecs)
    table = importer_for(path, **opts).read(path)
    snap = snapshot_of(tmp / "root", table, TableKind.IR)
    loaded = snap.load(TableKind.IR)
    assert_table(loaded, ids, vecs)
    return read_export(export_table(snap, TableKind.IR, tmp / f"out.{export_fmt}", export_fmt), export_fmt)


@pytest.mark.parametrize("fmt", ["npz", "npy", "safetensors"])
@pytest.mark.parametrize("export_fmt", ["csv", "parquet"])
def test_import_snapshot_export_round_trip(tmp_path, fmt, export_fmt):
    ids, vecs = sample_ids(), sample_vectors(5, 6)
    frame = pipeline(tmp_path, fmt, ids, vecs, export_fmt)
    np.testing.assert_array_equal(frame["id"].to_numpy(), ids)
    assert_same_bits(wide_vectors(frame, 6), vecs)


def test_imported_duplicate_ids_are_refused_by_the_writer(tmp_path):
    path = write_npz(tmp_path / "t.npz", ids=np.array([1, 2, 1]), vectors=sample_vectors(3, 2))
    table = importer_for(path).read(path)
    with pytest.raises(SnapshotError, match="duplicate id"):
        write_snapshot(tmp_path / "root", "v", T0, {"UR": table})


def test_imported_nan_vectors_are_refused_by_the_writer(tmp_path):
    vecs = sample_vectors(3, 2)
    vecs[1, 0] = np.nan
    path = write_npz(tmp_path / "t.npz", ids=np.arange(3), vectors=vecs)
    with pytest.raises(SnapshotError, match=r"NaN or Inf \(first at row 1\)"):
        write_snapshot(tmp_path / "root", "v", T0, {"UR": importer_for(path).read(path)})


def test_imported_length_mismatch_is_refused_by_the_writer(tmp_path):
    path = write_npz(tmp_path / "t.npz", ids=np.arange(4), vectors=sample_vectors(3, 2))
    with pytest.raises(SnapshotError, match="4 ids but 3 vectors"):
        write_snapshot(tmp_path / "root", "v", T0, {"UR": importer_for(path).read(path)})


def test_every_error_is_a_lee_error():
    assert issubclass(InputError, LeeError) and issubclass(SnapshotError, LeeError)


finite_f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@st.composite
def id_vector_pairs(draw) -> tuple[np.ndarray, np.ndarray]:
    rows = draw(st.integers(1, 12))
    dim = draw(st.integers(1, 5))
    ids = np.asarray(draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=rows, max_size=rows, unique=True)),
                     dtype=np.int64)
    vecs = draw(arrays(np.float32, (rows, dim), elements=finite_f32))
    return ids, vecs


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pair=id_vector_pairs(), fmt=st.sampled_from(["npz", "npy", "safetensors"]),
       export_fmt=st.sampled_from(["csv", "parquet"]))
def test_property_import_export_round_trip(pair, fmt, export_fmt):
    """Any unique int64 ids and finite float32 vectors survive every import and export format bit for bit."""
    ids, vecs = pair
    with tempfile.TemporaryDirectory() as tmp:
        frame = pipeline(Path(tmp), fmt, ids, vecs, export_fmt)
    assert list(frame.columns) == ["id"] + [f"v{k}" for k in range(vecs.shape[1])]
    assert frame["id"].dtype == np.int64
    np.testing.assert_array_equal(frame["id"].to_numpy(), ids)
    assert_same_bits(wide_vectors(frame, vecs.shape[1]), vecs)
