"""Every bad snapshot or bad write gets a clear SnapshotError naming the file, column and id.

Each test starts from a valid snapshot and introduces exactly one defect. Defects inside a
Parquet file are made with raw pyarrow via :func:`rewrite_table`, which also fixes the manifest's
sha256 (and, unless told otherwise, rows) so that the defect under test is the only one.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lee.errors import LeeError, SnapshotError, SnapshotNotFoundError
from lee.snapshot import EmbeddingTable, Snapshot, SnapshotStore, validate_snapshot, write_snapshot

T0 = datetime(2026, 1, 1, 0, 5, 0, tzinfo=UTC)
DIM = 4
N = 6
INT_IDS = np.array([10, 11, 12, 13, 14, 15], dtype=np.int64)
STR_IDS = np.array(["u0", "u1", "<script>", "日本", "u4", "u5"], dtype=object)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def vectors(n: int = N, dim: int = DIM) -> np.ndarray:
    return (np.arange(n * dim, dtype=np.float32).reshape(n, dim) / 7).astype(np.float32)


FLOAT32 = pa.float32()


def arrow_table(ids: Any = None, vecs: Any = None, *, id_type: pa.DataType | None = None,
                value_type: pa.DataType = FLOAT32, dim: int | None = None,
                updated_at: Any = None, **extra_cols: Any) -> pa.Table:
    """A raw Arrow table in the snapshot layout, with every piece overridable."""
    ids = INT_IDS if ids is None else ids
    vecs = vectors() if vecs is None else np.asarray(vecs)
    dim = vecs.shape[1] if dim is None else dim
    flat = pa.array(np.asarray(vecs).reshape(-1), type=value_type)
    cols: dict[str, Any] = {
        "id": ids if isinstance(ids, pa.Array) else pa.array(ids, type=id_type),
        "vector": pa.FixedSizeListArray.from_arrays(flat, dim),
    }
    if updated_at is not None:
        cols["updated_at"] = updated_at if isinstance(updated_at, pa.Array) else pa.array(updated_at)
    cols.update(extra_cols)
    return pa.table(cols)


def load_manifest(snap: Path) -> dict:
    return json.loads((snap / "manifest.json").read_text(encoding="utf-8"))


def save_manifest(snap: Path, raw: dict) -> None:
    (snap / "manifest.json").write_text(json.dumps(raw, indent=2), encoding="utf-8")


def edit_manifest(snap: Path, fn) -> None:
    raw = load_manifest(snap)
    fn(raw)
    save_manifest(snap, raw)


def fix_sha(snap: Path, kind: str, *, rows: int | None = None) -> None:
    """Make the manifest's sha256 (and optionally rows) for ``kind`` match the file on disk."""
    raw = load_manifest(snap)
    entry = raw["tables"][kind]
    data = (snap / entry["file"]).read_bytes()
    entry["sha256"] = hashlib.sha256(data).hexdigest()
    if "bytes" in entry:
        entry["bytes"] = len(data)
    if rows is not None:
        entry["rows"] = rows
    save_manifest(snap, raw)


def rewrite_table(snap: Path, kind: str, table: pa.Table | bytes, *, fix_rows: bool = True) -> Path:
    """Replace ``kind``'s Parquet file with ``table`` (or raw bytes) and fix sha256 (and rows)."""
    path = snap / f"{kind}.parquet"
    if isinstance(table, bytes):
        path.write_bytes(table)
        fix_sha(snap, kind)
    else:
        pq.write_table(table, path)
        fix_sha(snap, kind, rows=table.num_rows if fix_rows else None)
        has_updated_at = "updated_at" in table.column_names
        edit_manifest(snap, lambda m: m["tables"][kind].__setitem__("has_updated_at", has_updated_at))
    return path


def good_tables() -> dict[str, EmbeddingTable]:
    return {
        "UR": EmbeddingTable(ids=INT_IDS.copy(), vectors=vectors()),
        "IR": EmbeddingTable(ids=STR_IDS.copy(), vectors=vectors(dim=3),
                             updated_at=np.arange(N, dtype=np.int64) + 1_700_000_000),
    }


@pytest.fixture
def snap(tmp_path) -> Path:
    path = write_snapshot(tmp_path / "root", "v1", T0, good_tables(), source_layer="L")
    validate_snapshot(path)  # the starting point is valid; each test adds one defect
    return path


def all_readers(path: Path, kind: str):
    """Each way of reading a table with verification; each must refuse the defect."""
    return {
        "load": lambda: Snapshot.open(path).load(kind),
        "iter_chunks": lambda: list(Snapshot.open(path).iter_chunks(kind, rows=2)),
        "validate": lambda: validate_snapshot(path, chunk_rows=2),
    }


READERS = ["load", "iter_chunks", "validate"]


def raises(fn, match: str, exc_type: type[SnapshotError] = SnapshotError) -> SnapshotError:
    with pytest.raises(exc_type, match=match) as info:
        fn()
    assert isinstance(info.value, LeeError)
    return info.value


# --------------------------------------------------------------------------------------------
# the manifest
# --------------------------------------------------------------------------------------------


def test_missing_manifest(snap):
    (snap / "manifest.json").unlink()
    for fn in (lambda: Snapshot.open(snap), lambda: validate_snapshot(snap)):
        err = raises(fn, r"no manifest\.json found")
        assert err.path == snap
        assert str(snap) in str(err)


def test_not_a_directory(tmp_path):
    err = raises(lambda: Snapshot.open(tmp_path / "missing"), "is not a snapshot directory")
    assert err.path == tmp_path / "missing"


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"", b'{"format_version": 1,', b"\xff\xfe\x00garbage", b"{'single': 'quotes'}"],
    ids=["broken", "empty", "truncated", "binary", "python-dict"],
)
def test_malformed_json_manifest(snap, content):
    (snap / "manifest.json").write_bytes(content)
    err = raises(lambda: Snapshot.open(snap), r"manifest\.json: is not valid JSON")
    assert err.path == snap / "manifest.json"


@pytest.mark.parametrize("content", ["[1, 2]", '"text"', "3", "null"])
def test_manifest_not_an_object(snap, content):
    (snap / "manifest.json").write_text(content)
    err = raises(lambda: Snapshot.open(snap), "must hold a JSON object")
    assert err.path == snap / "manifest.json"


@pytest.mark.parametrize("version", [2, 0, -1, "1", None, [1]], ids=repr)
def test_unknown_format_version(snap, version):
    edit_manifest(snap, lambda m: m.__setitem__("format_version", version))
    err = raises(lambda: Snapshot.open(snap), rf"unknown format_version {re.escape(repr(version))}; "
                                              r"this workbench reads versions 1")
    assert err.path == snap / "manifest.json"


def test_missing_format_version(snap):
    edit_manifest(snap, lambda m: m.pop("format_version"))
    raises(lambda: Snapshot.open(snap), "unknown format_version None")


@pytest.mark.parametrize("key", ["variant", "event_time", "source_layer", "tables"])
def test_manifest_missing_key(snap, key):
    edit_manifest(snap, lambda m: m.pop(key))
    err = raises(lambda: Snapshot.open(snap), rf"is missing the key '{key}'")
    assert err.path == snap / "manifest.json"


@pytest.mark.parametrize("tables", [{}, [], "UR"], ids=repr)
def test_manifest_tables_not_object(snap, tables):
    edit_manifest(snap, lambda m: m.__setitem__("tables", tables))
    raises(lambda: Snapshot.open(snap), "'tables' must be a non-empty object")


def test_unknown_table_kind_in_manifest(snap):
    edit_manifest(snap, lambda m: m["tables"].__setitem__("XR", m["tables"].pop("UR")))
    err = raises(lambda: Snapshot.open(snap),
                 r"unknown table kind 'XR'; expected one of UR, IR, CR_user, CR_item")
    assert err.path == snap / "manifest.json"


def test_unknown_table_kind_requested(snap):
    s = Snapshot.open(snap)
    raises(lambda: s.load("ZZ"), r"unknown table kind 'ZZ'")
    err = raises(lambda: s.load("CR_user"), r"has no CR_user table; it holds UR, IR")
    assert err.path == snap


@pytest.mark.parametrize("field", ["file", "dim", "rows", "id_type", "sha256"])
def test_table_entry_missing_field(snap, field):
    edit_manifest(snap, lambda m: m["tables"]["UR"].pop(field))
    raises(lambda: Snapshot.open(snap), rf"table 'UR' is missing {field}")


@pytest.mark.parametrize(("field", "value"), [("dim", 0), ("dim", -3), ("dim", "4"), ("dim", 4.5),
                                              ("rows", -1), ("rows", "6"), ("rows", None)])
def test_table_entry_bad_numbers(snap, field, value):
    edit_manifest(snap, lambda m: m["tables"]["UR"].__setitem__(field, value))
    raises(lambda: Snapshot.open(snap), r"table 'UR' needs a positive integer dim and a non-negative integer rows")


def test_table_entry_bad_id_type(snap):
    edit_manifest(snap, lambda m: m["tables"]["UR"].__setitem__("id_type", "int32"))
    raises(lambda: Snapshot.open(snap), r"table 'UR' id_type must be 'int64' or 'string'; got 'int32'")


@pytest.mark.parametrize("file", ["../UR.parquet", "sub/UR.parquet", "/etc/passwd"])
def test_table_entry_file_must_be_plain_name(snap, file):
    edit_manifest(snap, lambda m: m["tables"]["UR"].__setitem__("file", file))
    raises(lambda: Snapshot.open(snap), rf"table 'UR' file must be a plain file name; got {re.escape(repr(file))}")


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01T00:00:00Z", None, [2026]], ids=repr)
def test_manifest_bad_event_time(snap, value):
    edit_manifest(snap, lambda m: m.__setitem__("event_time", value))
    err = raises(lambda: Snapshot.open(snap), r"bad event_time: cannot read event time")
    assert err.path == snap / "manifest.json"


# --------------------------------------------------------------------------------------------
# the directory's file list
# --------------------------------------------------------------------------------------------


def test_missing_table_file(snap):
    (snap / "IR.parquet").unlink()
    for fn in (lambda: Snapshot.open(snap), lambda: validate_snapshot(snap)):
        err = raises(fn, r"the manifest lists IR\.parquet but the file is missing")
        assert err.path == snap


@pytest.mark.parametrize("name", ["notes.txt", "CR_user.parquet", ".DS_Store", "UR.parquet.bak"])
def test_extra_file_in_directory(snap, name):
    (snap / name).write_bytes(b"x")
    for fn in (lambda: Snapshot.open(snap), lambda: validate_snapshot(snap)):
        err = raises(fn, rf"holds file\(s\) the manifest does not list: {re.escape(name)}; ")
        assert err.path == snap


def test_extra_directory_in_snapshot(snap):
    (snap / "sub").mkdir()
    raises(lambda: Snapshot.open(snap), r"does not list: sub")


# --------------------------------------------------------------------------------------------
# file contents against the manifest
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_checksum_mismatch(snap, reader, where):
    path = snap / "UR.parquet"
    data = bytearray(path.read_bytes())
    k = {"start": 5, "middle": len(data) // 2, "end": len(data) - 9}[where]
    data[k] ^= 0xFF
    path.write_bytes(bytes(data))
    err = raises(all_readers(snap, "UR")[reader], r"UR\.parquet: checksum mismatch: manifest says sha256 ")
    assert err.path == path
    Snapshot.open(snap).load("IR")  # the other table is unaffected


def test_checksum_mismatch_in_manifest(snap):
    edit_manifest(snap, lambda m: m["tables"]["IR"].__setitem__("sha256", "0" * 64))
    err = raises(lambda: Snapshot.open(snap).load("IR"), "checksum mismatch: manifest says sha256 0000000000000000")
    assert err.path == snap / "IR.parquet"


@pytest.mark.parametrize("reader", READERS)
def test_dim_mismatch_file_rewritten(snap, reader):
    """The file holds dim-5 vectors (checksum correct), the manifest still says dim 4."""
    path = rewrite_table(snap, "UR", arrow_table(vecs=vectors(dim=5)))
    assert load_manifest(snap)["tables"]["UR"]["dim"] == DIM
    err = raises(all_readers(snap, "UR")[reader],
                 r"column 'vector': holds vectors of dim 5 but the manifest says dim 4")
    assert (err.path, err.column) == (path, "vector")


@pytest.mark.parametrize("reader", READERS)
def test_dim_mismatch_manifest_edited(snap, reader):
    """Only the manifest's dim changes; the table file (and its checksum) is untouched."""
    edit_manifest(snap, lambda m: m["tables"]["UR"].__setitem__("dim", 8))
    err = raises(all_readers(snap, "UR")[reader], r"holds vectors of dim 4 but the manifest says dim 8")
    assert (err.path, err.column) == (snap / "UR.parquet", "vector")


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("manifest_rows", [N - 1, N + 1, 0, 10**9])
def test_row_count_mismatch(snap, reader, manifest_rows):
    edit_manifest(snap, lambda m: m["tables"]["UR"].__setitem__("rows", manifest_rows))
    err = raises(all_readers(snap, "UR")[reader], rf"UR\.parquet: holds {N} rows but the manifest says {manifest_rows}")
    assert err.path == snap / "UR.parquet"


def test_row_count_mismatch_file_rewritten(snap):
    path = rewrite_table(snap, "UR", arrow_table(ids=INT_IDS[:4], vecs=vectors(n=4)), fix_rows=False)
    err = raises(lambda: Snapshot.open(snap).load("UR"), rf"holds 4 rows but the manifest says {N}")
    assert err.path == path


def test_id_type_mismatch_found_by_validate(snap):
    edit_manifest(snap, lambda m: m["tables"]["IR"].__setitem__("id_type", "int64"))
    err = raises(lambda: validate_snapshot(snap), r"column 'id': ids are string but the manifest says int64")
    assert (err.path, err.column) == (snap / "IR.parquet", "id")


# --------------------------------------------------------------------------------------------
# non-finite vectors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("ids", [INT_IDS, STR_IDS], ids=["int-ids", "str-ids"])
def test_writer_refuses_non_finite(tmp_path, bad, ids):
    vecs = vectors()
    vecs[3, 2] = bad
    vecs[5, 0] = bad
    with pytest.raises(SnapshotError,
                       match=r"2 row\(s\) hold NaN or Inf \(first at row 3\); vectors must be finite") as info:
        write_snapshot(tmp_path, "v", T0, {"UR": EmbeddingTable(ids=ids.copy(), vectors=vecs)})
    err = info.value
    want = ids.tolist()[3]
    assert err.column == "vector"
    assert err.id == want
    assert type(err.id) is type(want)  # a plain int/str, not a numpy scalar
    assert f"id {want!r}" in str(err) and "table UR" in str(err)
    assert not tmp_path.joinpath("v").exists()


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("row", [0, 4])
def test_crafted_non_finite_refused_on_load(snap, reader, bad, row):
    vecs = vectors()
    vecs[row, 1] = bad
    path = rewrite_table(snap, "UR", arrow_table(vecs=vecs))
    err = raises(all_readers(snap, "UR")[reader], r"1 row\(s\) hold NaN or Inf")
    assert (err.path, err.column, err.id) == (path, "vector", int(INT_IDS[row]))
    assert f"id {int(INT_IDS[row])}" in str(err)


def test_crafted_nan_with_string_ids(snap):
    vecs = vectors(dim=3)
    vecs[2] = np.nan
    path = rewrite_table(snap, "IR", arrow_table(ids=STR_IDS, vecs=vecs))
    err = raises(lambda: Snapshot.open(snap).load("IR"), r"id '<script>'.*NaN or Inf")
    assert (err.path, err.id) == (path, "<script>")


def test_load_without_verify_skips_only_the_checksum(snap):
    """``verify=False`` skips hashing the file, never the content checks (one validation path)."""
    vecs = vectors()
    vecs[0, 0] = np.nan
    rewrite_table(snap, "UR", arrow_table(vecs=vecs))
    raises(lambda: Snapshot.open(snap).load("UR", verify=False), r"1 row\(s\) hold NaN or Inf")
    edit_manifest(snap, lambda m: m["tables"]["IR"].__setitem__("sha256", "0" * 64))
    assert len(Snapshot.open(snap).load("IR", verify=False)) == N  # the stale checksum is not looked at


# --------------------------------------------------------------------------------------------
# duplicate ids
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ids", "dup"),
    [(np.array([1, 2, 3, 2, 5, 3], dtype=np.int64), 2),
     (np.array(["a", "<script>", "c", "d", "<script>", "f"], dtype=object), "<script>")],
    ids=["int", "str"],
)
def test_writer_refuses_duplicate_ids(tmp_path, ids, dup):
    with pytest.raises(SnapshotError,
                       match=r"duplicate id \(found \d duplicated rows, first at row \d\); ids must be unique") as info:
        write_snapshot(tmp_path, "v", T0, {"IR": EmbeddingTable(ids=ids, vectors=vectors())})
    assert (info.value.column, info.value.id) == ("id", dup)
    assert f"id {dup!r}" in str(info.value)
    assert not tmp_path.joinpath("v").exists()


@pytest.mark.parametrize("reader", ["load", "validate"])
@pytest.mark.parametrize(
    ("ids", "dup"),
    [(np.array([10, 11, 12, 13, 14, 10], dtype=np.int64), 10),  # far apart: different chunks in validate
     (np.array(["u0", "u1", "u2", "u3", "u1", "u5"], dtype=object), "u1")],
    ids=["int", "str"],
)
def test_crafted_duplicate_ids_refused(snap, reader, ids, dup):
    path = rewrite_table(snap, "UR", arrow_table(ids=ids))
    id_type = "int64" if ids.dtype != object else "string"
    edit_manifest(snap, lambda m: m["tables"]["UR"].__setitem__("id_type", id_type))
    err = raises(all_readers(snap, "UR")[reader], r"duplicate id .*ids must be unique")
    assert (err.path, err.column, err.id) == (path, "id", dup)


# --------------------------------------------------------------------------------------------
# empty tables
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ids", [np.array([], dtype=np.int64), np.array([], dtype=object)], ids=["int", "str"])
def test_writer_refuses_empty_table(tmp_path, ids):
    with pytest.raises(SnapshotError, match=r"table is empty \(0 rows\)"):
        write_snapshot(tmp_path, "v", T0, {"UR": EmbeddingTable(ids=ids, vectors=np.zeros((0, DIM), np.float32))})
    assert not tmp_path.joinpath("v").exists()


def test_writer_refuses_no_tables(tmp_path):
    with pytest.raises(SnapshotError, match="a snapshot needs at least one table"):
        write_snapshot(tmp_path, "v", T0, {})


@pytest.mark.parametrize("reader", READERS)
def test_crafted_empty_table_refused(snap, reader):
    empty = arrow_table(ids=pa.array([], pa.int64()), vecs=np.zeros((0, DIM), np.float32))
    path = rewrite_table(snap, "UR", empty)
    assert load_manifest(snap)["tables"]["UR"]["rows"] == 0
    err = raises(all_readers(snap, "UR")[reader], r"table is empty \(0 rows\)")
    assert err.path == path


# --------------------------------------------------------------------------------------------
# wrong schema / dtypes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize(
    ("make", "column", "pattern"),
    [
        (lambda: arrow_table(value_type=pa.float64()), "vector",
         r"must be a fixed-size list of float32; got fixed_size_list<\w+: double>\[4\]"),
        (lambda: arrow_table(value_type=pa.float16(), vecs=vectors().astype(np.float16)), "vector",
         r"must be a fixed-size list of float32"),
        (lambda: pa.table({"id": pa.array(INT_IDS), "vector": pa.array(list(vectors()), pa.list_(pa.float32()))}),
         "vector", r"must be a fixed-size list of float32; got list<\w+: float>"),
        (lambda: pa.table({"id": pa.array(INT_IDS), "vector": pa.array(vectors()[:, 0])}),
         "vector", r"must be a fixed-size list of float32; got float"),
        (lambda: arrow_table(id_type=pa.int32()), "id", r"must be int64 or string; got int32"),
        (lambda: arrow_table(id_type=pa.uint64()), "id", r"must be int64 or string; got uint64"),
        (lambda: arrow_table(ids=INT_IDS.astype(np.float64)), "id", r"must be int64 or string; got double"),
        (lambda: arrow_table(ids=[b"a", b"b", b"c", b"d", b"e", b"f"]), "id", r"must be int64 or string; got binary"),
        (lambda: arrow_table(updated_at=pa.array(np.arange(N, dtype=np.int32))), "updated_at",
         r"must be int64 epoch seconds; got int32"),
        (lambda: arrow_table(updated_at=pa.array(np.arange(N, dtype=np.float64))), "updated_at",
         r"must be int64 epoch seconds; got double"),
    ],
    ids=["float64-vectors", "float16-vectors", "variable-list", "scalar-vector", "int32-ids", "uint64-ids",
         "float-ids", "binary-ids", "int32-updated_at", "float-updated_at"],
)
def test_wrong_dtypes(snap, reader, make, column, pattern):
    path = rewrite_table(snap, "UR", make())
    err = raises(all_readers(snap, "UR")[reader], pattern)
    assert (err.path, err.column) == (path, column)
    assert f"column '{column}'" in str(err)


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("missing", ["id", "vector"])
def test_missing_column(snap, reader, missing):
    t = arrow_table()
    path = rewrite_table(snap, "UR", t.drop_columns([missing]))
    err = raises(all_readers(snap, "UR")[reader], r"missing the required column; columns present: ")
    assert (err.path, err.column) == (path, missing)


def test_unexpected_column(snap):
    path = rewrite_table(snap, "UR", arrow_table(label=pa.array(["x"] * N)))
    err = raises(lambda: Snapshot.open(snap).load("UR"),
                 r"unexpected column\(s\) label; allowed: id, vector, updated_at")
    assert err.path == path


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize(
    ("make", "column"),
    [
        (lambda: arrow_table(ids=pa.array([10, None, 12, 13, 14, 15], pa.int64())), "id"),
        (lambda: arrow_table(ids=pa.array(["a", "b", None, "d", "e", "f"], pa.string())), "id"),
        (lambda: arrow_table(updated_at=pa.array([1, 2, None, 4, 5, 6], pa.int64())), "updated_at"),
        (lambda: pa.table({"id": pa.array(INT_IDS),
                           "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors().reshape(-1)), DIM,
                                                                       mask=pa.array([False, True] + [False] * 4))}),
         "vector"),
    ],
    ids=["null-int-id", "null-str-id", "null-updated_at", "null-vector-row"],
)
def test_nulls_refused(snap, reader, make, column):
    table = make()
    path = rewrite_table(snap, "UR", table)
    if pa.types.is_string(table.schema.field("id").type):  # one defect only: the manifest agrees on the type
        edit_manifest(snap, lambda m: m["tables"]["UR"].__setitem__("id_type", "string"))
    err = raises(all_readers(snap, "UR")[reader], r"holds 1 null\(s\); nulls are not allowed")
    assert (err.path, err.column) == (path, column)


@pytest.mark.parametrize("reader", READERS)
def test_null_inside_vector(snap, reader):
    flat = pa.array([None if k == 9 else float(k) for k in range(N * DIM)], pa.float32())
    t = pa.table({"id": pa.array(INT_IDS), "vector": pa.FixedSizeListArray.from_arrays(flat, DIM)})
    path = rewrite_table(snap, "UR", t)
    err = raises(all_readers(snap, "UR")[reader], r"holds 1 null element\(s\) inside vectors")
    assert (err.path, err.column) == (path, "vector")


# --------------------------------------------------------------------------------------------
# unreadable files
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize(
    "content",
    [b"garbage, not parquet" * 20, b"", b"PAR1", b"PAR1" + b"\x00" * 100 + b"PAR1"],
    ids=["garbage", "zero-bytes", "magic-only", "fake-footer"],
)
def test_unreadable_parquet(snap, reader, content):
    path = rewrite_table(snap, "UR", content)
    err = raises(all_readers(snap, "UR")[reader], r"UR\.parquet: is not a readable Parquet file \(")
    assert err.path == path


@pytest.mark.parametrize("reader", READERS)
def test_truncated_parquet(snap, reader):
    path = snap / "UR.parquet"
    data = path.read_bytes()
    rewrite_table(snap, "UR", data[: len(data) // 2])
    err = raises(all_readers(snap, "UR")[reader], r"is not a readable Parquet file|could not be read to the end")
    assert err.path == path


def test_iter_chunks_bad_chunk_size(snap):
    raises(lambda: list(Snapshot.open(snap).iter_chunks("UR", rows=0)), r"chunk size must be positive; got rows=0")


# --------------------------------------------------------------------------------------------
# variant names
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    ["a/b", "/abs", "../escape", "a/../b", "..", ".", ".hidden", "", "a\\b", "a b", "a:b", "a\x00b", "a\nb"],
    ids=repr,
)
def test_bad_variant_names_rejected(tmp_path, variant):
    with pytest.raises(SnapshotError, match=rf"variant name {re.escape(repr(variant))} is not allowed") as info:
        write_snapshot(tmp_path / "root", variant, T0, {"UR": EmbeddingTable(ids=INT_IDS, vectors=vectors())})
    assert info.value.path is None  # nothing on disk is at fault: the name itself is
    assert not (tmp_path / "root").exists()
    assert list(tmp_path.iterdir()) == []


def test_unknown_table_kind_rejected_by_writer(tmp_path):
    with pytest.raises(SnapshotError, match=r"unknown table kind 'XX'; expected one of UR, IR, CR_user, CR_item"):
        write_snapshot(tmp_path, "v", T0, {"XX": EmbeddingTable(ids=INT_IDS, vectors=vectors())})
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_mismatched_lengths(tmp_path):
    with pytest.raises(SnapshotError, match=r"5 ids but 6 vectors") as info:
        write_snapshot(tmp_path, "v", T0, {"UR": EmbeddingTable(ids=INT_IDS[:5], vectors=vectors())})
    assert info.value.column == "id"
    with pytest.raises(SnapshotError, match=r"updated_at.*expected shape \(6,\), got \(3,\)"):
        write_snapshot(tmp_path, "v", T0, {"UR": EmbeddingTable(ids=INT_IDS, vectors=vectors(),
                                                                 updated_at=np.arange(3, dtype=np.int64))})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("table", "pattern"),
    [
        (EmbeddingTable(ids=INT_IDS, vectors=vectors().astype(np.float64)), r"vectors must be float32; got float64"),
        (EmbeddingTable(ids=INT_IDS, vectors=vectors().reshape(-1)), r"vectors must be a 2-D matrix"),
        (EmbeddingTable(ids=INT_IDS.reshape(2, 3), vectors=vectors()), r"ids must be one-dimensional"),
        (EmbeddingTable(ids=INT_IDS.astype(np.float64), vectors=vectors()),
         r"ids must be int64 or string; got dtype float64"),
        (EmbeddingTable(ids=np.array([1, "a", 3, 4, 5, 6], dtype=object), vectors=vectors()),
         r"string ids must all be str; row 0 holds int 1"),
        (EmbeddingTable(ids=np.array(["a", None, "c", "d", "e", "f"], dtype=object), vectors=vectors()),
         r"string ids must all be str; row 1 holds NoneType None"),
    ],
    ids=["float64", "1d-vectors", "2d-ids", "float-ids", "mixed-ids", "none-id"],
)
def test_writer_refuses_bad_dtypes(tmp_path, table, pattern):
    with pytest.raises(SnapshotError, match=pattern):
        write_snapshot(tmp_path, "v", T0, {"UR": table})
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# regressions: bugs once found here (raw exceptions or silent wrong results), now fixed
# --------------------------------------------------------------------------------------------


def test_writer_refuses_nan_updated_at(tmp_path):
    table = EmbeddingTable(ids=INT_IDS, vectors=vectors(), updated_at=np.array([1.0, np.nan, 3, 4, 5, 6]))
    with pytest.raises(SnapshotError, match="updated_at"):
        write_snapshot(tmp_path, "v", T0, {"UR": table})


@pytest.mark.parametrize(
    "updated_at",
    [np.array(["a", "b", "c", "d", "e", "f"]), np.ones((N, 2), dtype=np.int64)],
    ids=["strings", "2-d"],
)
def test_writer_refuses_bad_updated_at(tmp_path, updated_at):
    with pytest.raises(SnapshotError, match="updated_at"):
        write_snapshot(tmp_path, "v", T0, {"UR": EmbeddingTable(ids=INT_IDS, vectors=vectors(), updated_at=updated_at)})


def test_writer_refuses_unencodable_string_id(tmp_path):
    ids = np.array(["ok", "bad\ud800", "c", "d", "e", "f"], dtype=object)
    with pytest.raises(SnapshotError, match="id") as info:
        write_snapshot(tmp_path, "v", T0, {"UR": EmbeddingTable(ids=ids, vectors=vectors())})
    assert info.value.id == "bad\ud800"


def test_writer_refuses_uint64_overflow_id(tmp_path):
    ids = np.array([1, 2, 3, 4, 5, 2**63 + 5], dtype=np.uint64)
    with pytest.raises(SnapshotError, match="id"):
        write_snapshot(tmp_path, "v", T0, {"UR": EmbeddingTable(ids=ids, vectors=vectors())})


def test_writer_non_string_table_kind(tmp_path):
    with pytest.raises(SnapshotError, match="unknown table kind"):
        write_snapshot(tmp_path, "v", T0, {5: EmbeddingTable(ids=INT_IDS, vectors=vectors())})


def test_format_version_bool_rejected(snap):
    edit_manifest(snap, lambda m: m.__setitem__("format_version", True))
    raises(lambda: Snapshot.open(snap), "unknown format_version True")


def test_has_updated_at_disagreement_detected(snap):
    edit_manifest(snap, lambda m: m["tables"]["UR"].__setitem__("has_updated_at", True))
    raises(lambda: validate_snapshot(snap), "updated_at")


def test_store_rejects_path_variant(tmp_path):
    write_snapshot(tmp_path / "other", "v", T0, {"UR": EmbeddingTable(ids=INT_IDS, vectors=vectors())})
    (tmp_path / "root").mkdir()
    store = SnapshotStore(tmp_path / "root")
    with pytest.raises(SnapshotError):
        store.times("../other/v")  # today: returns the other root's times


def test_event_time_before_year_1000(tmp_path):
    when = datetime(999, 1, 1, tzinfo=UTC)
    try:
        write_snapshot(tmp_path, "v", when, {"UR": EmbeddingTable(ids=INT_IDS, vectors=vectors())})
    except LeeError:
        return  # refusing such a time clearly would be fine too
    assert SnapshotStore(tmp_path).times("v") == [when]


def test_subsecond_event_time_can_be_reopened(tmp_path):
    when = datetime(2026, 1, 1, 0, 5, 0, 500_000, tzinfo=UTC)
    try:
        path = write_snapshot(tmp_path, "v", when, {"UR": EmbeddingTable(ids=INT_IDS, vectors=vectors())})
    except LeeError:
        return  # refusing sub-second times clearly would be fine too
    assert SnapshotStore(tmp_path).open("v", when).path == path


def test_not_found_is_a_snapshot_error():
    assert issubclass(SnapshotNotFoundError, SnapshotError)
