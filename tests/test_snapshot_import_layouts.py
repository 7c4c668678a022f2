"""The embedding layouts users bring to ``lee snapshots import`` beyond npz/npy/safetensors/wide tables.

Each file is written by the tool that writes it in the wild (pyarrow, pandas, json; word2vec text by
hand per its documented layout, as gensim's ``save_word2vec_format`` and the word2vec C tool write
it), imported, written as a snapshot and read back: ids and float32 vectors must come back exactly.
Bad files must be refused with an :class:`InputError` naming the file, the line (or row) and id,
and what was expected.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from hostile_corpus import corrupt

from app.cli import snapshots as cli_snapshots
from app.cli.main import main
from lee.errors import InputError, LeeError
from lee.snapshot import EmbeddingTable, Snapshot, write_snapshot
from lee.snapshot.import_columns import ID_TYPES
from lee.snapshot.importers import (
    IMPORTERS,
    ArrowImporter,
    CsvImporter,
    JsonlImporter,
    ParquetImporter,
    TsvImporter,
    Word2vecImporter,
    importer_for,
)

WORDS = ["the", ",", "007", "7", "naïve", "</s>", '"quoted', "C++"]


def vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """float32 values of many magnitudes (and -0.0), so printing and parsing must be exact."""
    rng = np.random.default_rng(seed)
    v = (rng.standard_normal((n, dim)) * 10.0 ** rng.integers(-6, 6, (n, dim))).astype(np.float32)
    v[0, 0] = -0.0
    return v


def text(x: np.float32) -> str:
    """A float32 printed so that it parses back to the same float32 (shortest round trip, as gensim does)."""
    return repr(float(x))


def round_trip(tmp_path: Path, table: EmbeddingTable) -> EmbeddingTable:
    """Write ``table`` as a snapshot (with every writer check) and load it back."""
    snap = write_snapshot(tmp_path / "root", "v", "2024-01-01T00:00:00Z", {"UR": table}, overwrite=True)
    return Snapshot.open(snap).load("UR")


def assert_same(table: EmbeddingTable, ids: np.ndarray | list, vecs: np.ndarray) -> None:
    want_ids = np.asarray(ids, dtype=object if isinstance(ids, list) or ids.dtype.kind in "OU" else np.int64)
    assert table.ids.dtype == want_ids.dtype
    assert table.ids.tolist() == want_ids.tolist()
    assert table.vectors.dtype == np.float32 and table.vectors.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(table.vectors.view(np.uint32), np.asarray(vecs, np.float32).view(np.uint32))


def imported(tmp_path: Path, path: Path, fmt: str | None = None, **options: object) -> EmbeddingTable:
    return round_trip(tmp_path, importer_for(path, fmt, **options).read(path))


def refused(path: Path, fmt: str | None = None, **options: object) -> str:
    with pytest.raises(InputError) as err:
        importer_for(path, fmt, **options).read(path)
    message = str(err.value)
    assert message.startswith(str(path)), message
    return message


# --------------------------------------------------------------------------------------------
# Parquet and Arrow IPC / Feather with a list column of vectors
# --------------------------------------------------------------------------------------------


def list_array(vecs: np.ndarray, kind: str) -> pa.Array:
    n, dim = vecs.shape
    flat = pa.array(vecs.reshape(-1))
    if kind == "fixed_size_list":
        return pa.FixedSizeListArray.from_arrays(flat, dim)
    offsets = np.arange(0, n * dim + 1, dim)
    if kind == "large_list":
        return pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), flat)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), flat)


@pytest.mark.parametrize("kind", ["list", "large_list", "fixed_size_list"])
def test_parquet_list_column_of_each_list_type(tmp_path, kind):
    vecs = vectors(6, 5)
    ids = np.array([10, -3, 0, 2**62, 7, 8], dtype=np.int64)
    path = tmp_path / "emb.parquet"
    pq.write_table(pa.table({"id": ids, "features": list_array(vecs, kind), "note": ["x"] * 6}), path,
                   row_group_size=4)  # two row groups: the column arrives in chunks
    table = imported(tmp_path, path)
    assert_same(table, ids, vecs)
    stored = pq.read_schema(path).field("features").type
    assert {"list": pa.types.is_list, "large_list": pa.types.is_large_list,
            "fixed_size_list": pa.types.is_fixed_size_list}[kind](stored)


def test_pandas_column_of_arrays_written_by_pandas(tmp_path):
    """pandas.DataFrame.to_parquet of a column of float64 arrays: list<double>, cast to float32."""
    vecs64 = np.random.default_rng(3).standard_normal((4, 3))
    path = tmp_path / "users.parquet"
    pd.DataFrame({"user_id": ["u1", "u2", "u3", "007"], "embedding": list(vecs64)}).to_parquet(path)
    assert pa.types.is_list(pq.read_schema(path).field("embedding").type)
    table = imported(tmp_path, path, ids_key="user_id")
    assert_same(table, ["u1", "u2", "u3", "007"], vecs64.astype(np.float32))


def test_lee_snapshot_file_imports_as_a_list_table(tmp_path):
    """A snapshot's own UR.parquet (id, vector: fixed_size_list<float>, updated_at) imports as is."""
    vecs = vectors(5, 4)
    ids = np.array(["a", "b", "c", "d", "e"], dtype=object)
    snap = write_snapshot(tmp_path / "src", "v", "2024-01-01T00:00:00Z",
                          {"UR": EmbeddingTable(ids=ids, vectors=vecs, updated_at=np.arange(5, dtype=np.int64))})
    assert_same(imported(tmp_path, snap / "UR.parquet"), list(ids), vecs)


@pytest.mark.parametrize("writer", ["feather-v2", "feather-v2-uncompressed", "ipc-file", "ipc-stream", "pandas"])
def test_arrow_ipc_and_feather(tmp_path, writer):
    vecs = vectors(5, 3)
    ids = ["k0", "k1", "k2", "k3", "k4"]
    table = pa.table({"id": ids, "vec": list_array(vecs, "list")})
    path = tmp_path / ("emb.arrows" if writer == "ipc-stream" else "emb.feather")
    if writer == "feather-v2":
        feather.write_feather(table, path)  # lz4-compressed by default
    elif writer == "feather-v2-uncompressed":
        feather.write_feather(table, path, compression="uncompressed")
    elif writer == "pandas":
        pd.DataFrame({"id": ids, "vec": list(vecs)}).to_feather(path)
    else:
        with pa.OSFile(str(path), "wb") as sink:
            new = pa.ipc.new_file if writer == "ipc-file" else pa.ipc.new_stream
            with new(sink, table.schema) as w:
                w.write_table(table, max_chunksize=2)
    assert type(importer_for(path)) is ArrowImporter
    assert_same(imported(tmp_path, path), ids, vecs)


@pytest.mark.filterwarnings("ignore:Feather V1 files are deprecated:DeprecationWarning")
def test_feather_v1_wide_layout(tmp_path):
    """Feather v1 holds no list columns; the wide layout id, v0..v{d-1} reads as from Parquet."""
    vecs = vectors(4, 3)
    path = tmp_path / "old.feather"
    feather.write_feather(pa.table({"id": [1, 2, 3, 4], **{f"v{j}": vecs[:, j] for j in range(3)}}), path, version=1)
    assert_same(imported(tmp_path, path), np.array([1, 2, 3, 4]), vecs)


def test_vectors_key_picks_among_several_list_columns(tmp_path):
    a, b = vectors(3, 2, seed=1), vectors(3, 4, seed=2)
    path = tmp_path / "two.parquet"
    pq.write_table(pa.table({"id": [1, 2, 3], "user_vec": list_array(a, "list"), "item_vec": list_array(b, "list")}),
                   path)
    message = refused(path)
    assert "2 list columns (user_vec, item_vec); name the vectors column with --vectors-key" in message
    assert_same(imported(tmp_path, path, vectors_key="item_vec"), np.array([1, 2, 3]), b)


def test_vectors_key_must_name_a_list_column(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": [1, 2], "v": list_array(vectors(2, 2), "list"), "score": [0.5, 0.1]}), path)
    assert "column 'score' (--vectors-key) is double, not a list of numbers" in refused(path, vectors_key="score")
    assert "no column 'nope' (--vectors-key); columns: id, v, score" in refused(path, vectors_key="nope")


def test_ragged_rows_name_the_first_bad_row_and_its_id(tmp_path):
    path = tmp_path / "ragged.parquet"
    pd.DataFrame({"id": ["a", "b", "c", "d"],
                  "emb": [np.ones(3), np.ones(3), np.ones(2), np.ones(4)]}).to_parquet(path)
    message = refused(path)
    assert "row 2 (id 'c') has 2 values in column 'emb', but row 0 (id 'a') has 3" in message


def test_null_vector_and_null_element_name_the_id(tmp_path):
    path = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c"], "emb": pa.array([[1.0, 2.0], None, [3.0, 4.0]])}), path)
    assert "row 1 (id 'b') has no vector (column 'emb' is null there)" in refused(path)
    pq.write_table(pa.table({"id": ["a", "b", "c"], "emb": pa.array([[1.0, 2.0], [1.0, 2.0], [3.0, None]])}), path)
    assert "row 2 (id 'c') has an empty (null) value at position 1 of column 'emb'" in refused(path)
    pq.write_table(pa.table({"id": ["a", None, "c"], "emb": pa.array([[1.0], [2.0], [3.0]])}), path)
    assert "row 1 has no id ('id' is empty or missing there)" in refused(path)


def test_list_of_text_is_refused(tmp_path):
    path = tmp_path / "tags.parquet"
    pq.write_table(pa.table({"id": [1], "tags": pa.array([["x", "y"]])}), path)
    assert "column 'tags' holds lists of string; vectors must be lists of numbers" in refused(path)


def test_non_finite_and_duplicate_ids_are_refused_by_the_snapshot_checks(tmp_path):
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "emb": pa.array([[1.0, float("nan")], [1.0, 2.0]])}), path)
    with pytest.raises(LeeError, match=r"'a'") as err:
        round_trip(tmp_path, importer_for(path).read(path))
    assert "NaN" in str(err.value) or "finite" in str(err.value)
    pq.write_table(pa.table({"id": ["a", "a"], "emb": pa.array([[1.0, 0.0], [1.0, 2.0]])}), path)
    with pytest.raises(LeeError, match="duplicate id"):
        round_trip(tmp_path, importer_for(path).read(path))


@pytest.mark.parametrize("id_type, want", [
    (None, ["007", "12"]), ("text", ["007", "12"]), ("auto", ["007", "12"]), ("integer", np.array([7, 12])),
])
def test_id_type_of_text_ids(tmp_path, id_type, want):
    path = tmp_path / "ids.parquet"
    vecs = vectors(2, 2)
    pq.write_table(pa.table({"id": ["007", "12"], "e": list_array(vecs, "list")}), path)
    assert_same(imported(tmp_path, path, id_type=id_type), want, vecs)


def test_id_type_auto_makes_integers_of_canonical_text_and_text_of_integers(tmp_path):
    path = tmp_path / "ids.parquet"
    vecs = vectors(2, 2)
    pq.write_table(pa.table({"id": ["-5", "12"], "e": list_array(vecs, "list")}), path)
    assert_same(imported(tmp_path, path, id_type="auto"), np.array([-5, 12]), vecs)
    pq.write_table(pa.table({"id": [5, 12], "e": list_array(vecs, "list")}), path)
    assert_same(imported(tmp_path, path, id_type="text"), ["5", "12"], vecs)
    pq.write_table(pa.table({"id": ["5", "u12"], "e": list_array(vecs, "list")}), path)
    assert "row 1: id 'u12' is not an integer" in refused(path, id_type="integer")
    pq.write_table(pa.table({"id": ["5", "99999999999999999999"], "e": list_array(vecs, "list")}), path)
    assert "row 1: id '99999999999999999999' is beyond the int64 range" in refused(path, id_type="integer")


# --------------------------------------------------------------------------------------------
# word2vec / GloVe / fastText text
# --------------------------------------------------------------------------------------------


def write_word_vectors(path: Path, words: list[str], vecs: np.ndarray, *, header: bool, sep: str = " ",
                       trailing: bool = False) -> None:
    """The documented layout: optional 'N D' line, then 'word v1 .. vD' (the C tool and fastText end
    each line with the separator; gensim and GloVe do not)."""
    lines = [f"{len(words)} {vecs.shape[1]}"] if header else []
    for word, row in zip(words, vecs, strict=True):
        lines.append(sep.join([word, *(text(x) for x in row)]) + (sep if trailing else ""))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("name, header, sep, trailing", [
    ("gensim.vec", True, " ", False),       # gensim save_word2vec_format(binary=False)
    ("c-tool.txt", True, " ", True),        # word2vec.c -binary 0, fastText .vec
    ("glove.6B.50d.txt", False, " ", False),  # GloVe: no header
    ("tabs.vec", True, "\t", False),
])
def test_word_vector_text_layouts(tmp_path, name, header, sep, trailing):
    vecs = vectors(len(WORDS), 7)
    path = tmp_path / name
    write_word_vectors(path, WORDS, vecs, header=header, sep=sep, trailing=trailing)
    assert type(importer_for(path)) is Word2vecImporter
    table = imported(tmp_path, path)
    assert_same(table, WORDS, vecs)  # words as text: '007' and '7' both kept, '"quoted' read verbatim


def test_word_vectors_with_crlf_and_blank_lines(tmp_path):
    vecs = vectors(3, 2)
    path = tmp_path / "win.txt"
    path.write_bytes(("3 2\r\n" + "".join(f"w{k} {text(vecs[k, 0])} {text(vecs[k, 1])}\r\n\r\n" for k in range(3)))
                     .encode())
    assert_same(imported(tmp_path, path), ["w0", "w1", "w2"], vecs)


def test_word_vectors_with_a_byte_order_mark(tmp_path):
    """Saved by a Windows editor: a UTF-8 BOM before the header."""
    vecs = vectors(2, 3)
    path = tmp_path / "bom.vec"
    write_word_vectors(path, ["a", "b"], vecs, header=True)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert_same(imported(tmp_path, path), ["a", "b"], vecs)


def test_word_vectors_id_type(tmp_path):
    """item2vec-style files hold numeric item ids: integers on request, text (the words) by default."""
    vecs = vectors(3, 2)
    path = tmp_path / "items.vec"
    write_word_vectors(path, ["31", "4", "159"], vecs, header=True)
    assert_same(imported(tmp_path, path), ["31", "4", "159"], vecs)
    assert_same(imported(tmp_path, path, id_type="integer"), np.array([31, 4, 159]), vecs)
    assert_same(imported(tmp_path, path, id_type="auto"), np.array([31, 4, 159]), vecs)
    write_word_vectors(path, ["31", "04", "159"], vecs, header=True)
    assert_same(imported(tmp_path, path, id_type="auto"), ["31", "04", "159"], vecs)


def test_no_header_reads_line_one_as_a_vector(tmp_path):
    path = tmp_path / "one_d.txt"
    path.write_text("10 5\n11 6\n")
    assert "header on line 1 says 5" in refused(path)  # read as 'N D' = '10 5' by default
    assert_same(imported(tmp_path, path, header=False), ["10", "11"], np.array([[5], [6]], np.float32))


@pytest.mark.parametrize("content, phrase", [
    ("3 2\na 1 2\nb 3 4\n", "the header on line 1 says 3 vectors, but the file holds 2 (of dimension 2)"),
    ("2 3\na 1 2\nb 3 4\n", "line 2 has 2 values after its word, but the header on line 1 says 3"),
    ("3 2\na 1 2\nb 3 4\nc 5\n", "line 4 has 1 value after its word; expected the word and 2 numbers separated by "
                                 "spaces (as on line 2)"),
    ("3 2\na 1 2\n\n\nb 3 4 5\nc 5 6\n", "line 5 has 3 values after its word; expected the word and 2 numbers"),
    ("a 1 2\nb 3 4\nc 5 abc\n", "line 3, value 2 is 'abc'; expected a number"),
    ("a 1 2\nb 3 4\nc 5  6\n", "line 3 has 3 values after its word"),
    ("2 2\na 1 2 \nb 3 4\n", "line 3 does not end with a separator, unlike line 2"),
    ("a\tb\tc\n", "line 1, value 1 is 'b'; expected a number"),
    ("1,2,3\n4,5,6\n", "line 1 is '1,2,3'; expected a word and its values separated by spaces or tabs "
                       "(comma-separated? use --format csv"),
    ("", "is empty; expected word vectors"),
    ("0 5\n", "the header on line 1 says 0 vectors"),
    ("4 2\n", "holds no vectors"),
])
def test_word_vector_errors_name_the_line(tmp_path, content, phrase):
    path = tmp_path / "bad.vec"
    path.write_text(content)
    assert phrase in refused(path)


def test_word_vectors_not_utf8(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("a 1 2\nb 3 4\ncaf\u00e9 5 6\n".encode("latin-1"))
    assert "line 3 is not UTF-8 text" in refused(path)


def test_word_vectors_error_far_into_a_file_names_its_line(tmp_path):
    """Past Arrow's first parse block and thread: the line is counted from the file, not the block."""
    n, dim = 60_000, 8
    rng = np.random.default_rng(0)
    body = "\n".join(f"w{k} " + " ".join(f"{x:.4f}" for x in row) for k, row in enumerate(rng.random((n, dim))))
    lines = body.split("\n")
    lines[54_321] = lines[54_321].rsplit(" ", 1)[0] + " 0x1p3z"
    path = tmp_path / "big.vec"
    path.write_text(f"{n} {dim}\n" + "\n".join(lines) + "\n")
    assert "line 54323, value 8 is '0x1p3z'; expected a number" in refused(path)


def test_word_vectors_nan_and_duplicates_are_refused_by_the_snapshot_checks(tmp_path):
    path = tmp_path / "nan.vec"
    path.write_text("2 2\nok 1 2\nbad nan 1\n")
    with pytest.raises(LeeError, match="'bad'"):
        round_trip(tmp_path, importer_for(path).read(path))
    path.write_text("2 2\nsame 1 2\nsame 3 4\n")
    with pytest.raises(LeeError, match="duplicate id"):
        round_trip(tmp_path, importer_for(path).read(path))


# --------------------------------------------------------------------------------------------
# JSON lines
# --------------------------------------------------------------------------------------------


def test_jsonl_written_with_json_dumps(tmp_path):
    vecs = vectors(5, 4)
    path = tmp_path / "emb.jsonl"
    with open(path, "w") as fh:
        for k in range(5):
            fh.write(json.dumps({"id": f"u{k}", "meta": {"n": k}, "embedding": [float(x) for x in vecs[k]]}) + "\n")
    assert type(importer_for(path)) is JsonlImporter
    assert_same(imported(tmp_path, path), [f"u{k}" for k in range(5)], vecs)


def test_jsonl_written_by_pandas_with_integer_ids_and_other_keys(tmp_path):
    vecs64 = np.random.default_rng(1).standard_normal((4, 3))
    path = tmp_path / "items.ndjson"
    pd.DataFrame({"item": [3, 1, 4, 1_000_000_007], "vec": list(vecs64), "tags": [["a"], [], ["b"], ["c"]]}).to_json(
        path, orient="records", lines=True, double_precision=15)
    assert "has 2 array keys (vec, tags); name the vectors key with --vectors-key" in refused(path, ids_key="item")
    table = imported(tmp_path, path, ids_key="item", vectors_key="vec")
    assert table.ids.tolist() == [3, 1, 4, 1_000_000_007] and table.ids.dtype == np.int64
    np.testing.assert_allclose(table.vectors, vecs64.astype(np.float32), rtol=0, atol=0)


def test_jsonl_with_a_byte_order_mark_and_blank_lines(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": "a", "e": [1, 2]}\n\n{"id": "b", "e": [3, 4.5]}\n')
    assert_same(imported(tmp_path, path), ["a", "b"], np.array([[1, 2], [3, 4.5]]))


def test_jsonl_error_far_into_a_file_names_its_line(tmp_path):
    """Past the first 4 MiB piece that the diagnosis re-reads: lines are counted from the file's start."""
    rng = np.random.default_rng(0)
    lines = [json.dumps({"id": f"u{k}", "e": [round(float(x), 6) for x in rng.random(8)]}) for k in range(70_000)]
    lines[65_432] = lines[65_432].replace('"e": [', '"e": [true, ')
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size > 5 << 20
    assert "line 65433 (id 'u65432'): value 0 of 'e' is 'true'; expected a finite number" in refused(path)


def test_jsonl_ids_as_text(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text('{"id": 5, "embedding": [1, 2.5]}\n{"id": 6, "embedding": [3, 4]}\n')
    assert_same(imported(tmp_path, path, id_type="text"), ["5", "6"], np.array([[1, 2.5], [3, 4]]))


@pytest.mark.parametrize("lines, phrase, options", [
    (['{"id": "a", "embedding": [1, 2]}', '{"id": "b", "embedding": [1, 2}'], "line 2 is not valid JSON", {}),
    (['{"id": "a", "embedding": [1, 2]}', '[1, 2]'], "line 2 is a JSON list, not an object", {}),
    (['{"id": "a", "embedding": [1, 2]}', "", '{"id": 3, "embedding": [1, 2]}'],
     "line 3: id '3' under 'id' is not a string like the id on line 1", {}),
    (['{"id": "a", "embedding": [1, 2]}', '{"id": "b", "embedding": [1, "x"]}'],
     "line 2 (id 'b'): value 1 of 'embedding' is '\"x\"'; expected a finite number", {}),
    (['{"id": "a", "embedding": [1, 2]}', '{"id": "b", "embedding": "1 2"}'],
     "line 2 (id 'b'): 'embedding' is '\"1 2\"'; expected an array of numbers", {}),
    (['{"id": "a", "embedding": [1, 2]}', '', '  ', '{"id": "b"}'], "line 4 (id 'b') has no vector", {}),
    (['{"id": "a", "embedding": [1, 2]}', '{"embedding": [1, 2]}'], "line 2 has no id", {}),
    (['{"id": "a", "embedding": [1, 2]}', '{"id": "b", "embedding": [1, 2]}', '{"id": "c", "embedding": [1]}'],
     "line 3 (id 'c') has 1 value in column 'embedding', but line 1 (id 'a') has 2", {}),
    (['{"id": "a", "embedding": [1, null]}'], "line 1 (id 'a') has an empty (null) value at position 1", {}),
    (['{"id": "a", "embedding": [1e400, 1]}'],
     "line 1 (id 'a'): value 0 of 'embedding' is beyond the range of a double", {}),
    (['{"uid": "a", "embedding": [1, 2]}'], "line 1 has no key 'id' (--ids-key); keys: uid, embedding", {}),
    (['{"id": "a", "embedding": [1, 2]}'], "line 1 has no key 'emb' (--vectors-key)", {"vectors_key": "emb"}),
    (['{"id": [1], "e": [1, 2]}'], "is neither a string nor an integer", {"vectors_key": "e"}),
    (['', 'oops'], "line 2 is not JSON", {}),
    ([''], "is empty; expected JSON lines", {}),
])
def test_jsonl_errors_name_the_line(tmp_path, lines, phrase, options):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert phrase in refused(path, **options)


# --------------------------------------------------------------------------------------------
# CSV / TSV without a header (PyTorch-BigGraph's TSV export)
# --------------------------------------------------------------------------------------------


def test_pytorch_biggraph_tsv_export(tmp_path):
    """PBG's export_to_tsv: 'entity<TAB>v1<TAB>...' per line, no header."""
    vecs = vectors(4, 6)
    names = ["ent_0001", "Q42", "007", "x y"]
    path = tmp_path / "entity_embeddings.tsv"
    path.write_text("".join("\t".join([n, *(text(x) for x in row)]) + "\n" for n, row in zip(names, vecs,
                                                                                          strict=True)))
    assert type(importer_for(path)) is TsvImporter
    message = refused(path)
    assert "the first line looks like data, not a header: for a file without one, pass --no-header" in message
    assert_same(imported(tmp_path, path, header=False, id_type="text"), names, vecs)


def test_headerless_csv_written_by_pandas(tmp_path):
    vecs = vectors(5, 3)
    ids = np.array([5, 1, 9, 2, 8])
    path = tmp_path / "plain.csv"
    pd.DataFrame(vecs, index=ids).to_csv(path, header=False, float_format="%.9g")
    assert_same(imported(tmp_path, path, header=False), ids, vecs)


def test_tsv_with_a_header_and_text_ids_keeping_zeros(tmp_path):
    vecs = vectors(3, 2)
    path = tmp_path / "h.tsv"
    pd.DataFrame({"key": ["007", "08", "9"], "a": vecs[:, 0], "b": vecs[:, 1]}).to_csv(
        path, sep="\t", index=False, float_format="%.9g")
    assert_same(imported(tmp_path, path, ids_key="key", id_type="text"), ["007", "08", "9"], vecs)
    assert_same(imported(tmp_path, path, ids_key="key"), np.array([7, 8, 9]), vecs)  # Arrow's inference, as for CSV
    assert_same(imported(tmp_path, path, ids_key="key", id_type="auto"), ["007", "08", "9"], vecs)
    assert_same(imported(tmp_path, path, ids_key="key", id_type="integer"), np.array([7, 8, 9]), vecs)


def test_no_header_refuses_an_ids_key(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_text("a\t1\nb\t2\n")
    assert "--ids-key names a header column" in refused(path, header=False, ids_key="entity")


def test_headerless_text_column_is_named(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("a,1,x\nb,2,y\n")
    assert "column(s) v1 are not numeric" in refused(path, header=False)


# --------------------------------------------------------------------------------------------
# registry, options and the command line
# --------------------------------------------------------------------------------------------


def test_cli_choices_match_the_registry():
    assert cli_snapshots.IMPORT_FORMATS == tuple(IMPORTERS)
    assert cli_snapshots.ID_TYPES == ID_TYPES


@pytest.mark.parametrize("cls, suffix", [
    (Word2vecImporter, ".vec"), (Word2vecImporter, ".txt"), (JsonlImporter, ".jsonl"), (JsonlImporter, ".ndjson"),
    (TsvImporter, ".tsv"), (ArrowImporter, ".arrow"), (ArrowImporter, ".feather"), (ParquetImporter, ".parquet"),
    (CsvImporter, ".csv"),
])
def test_suffixes(tmp_path, cls, suffix):
    path = tmp_path / f"t{suffix}"
    path.write_bytes(b"x")
    assert type(importer_for(path)) is cls


@pytest.mark.parametrize("name, options, stray", [
    ("a.npz", {"header": False}, "header"),
    ("a.npz", {"id_type": "text"}, "id_type"),
    ("a.vec", {"ids_key": "word"}, "ids_key"),
    ("a.vec", {"vectors_key": "v"}, "vectors_key"),
    ("a.jsonl", {"header": False}, "header"),
])
def test_options_of_another_format_are_refused(tmp_path, name, options, stray):
    path = tmp_path / name
    path.write_bytes(b"x")
    with pytest.raises(InputError, match=rf"option\(s\) {stray} do not apply"):
        importer_for(path, **options)


def test_unknown_id_type(tmp_path):
    path = tmp_path / "a.vec"
    path.write_text("a 1\n")
    assert "unknown id type 'float'; choose one of integer, text, auto" in refused(path, id_type="float")


def cli(capsys, *args: object) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_imports_each_layout(capsys, tmp_path):
    vecs = vectors(3, 4)
    w2v, jsonl, tsv, pqt = (tmp_path / n for n in ("u.vec", "i.jsonl", "c.tsv", "d.parquet"))
    write_word_vectors(w2v, ["01", "02", "03"], vecs, header=True, trailing=True)
    jsonl.write_text("".join(json.dumps({"item": k, "emb": [float(x) for x in vecs[k]]}) + "\n" for k in range(3)))
    tsv.write_text("".join("\t".join([f"e{k}", *(text(x) for x in vecs[k])]) + "\n" for k in range(3)))
    pq.write_table(pa.table({"id": [7, 8, 9], "a": list_array(vecs, "list"), "b": list_array(vecs[::-1], "list")}),
                   pqt)
    root = tmp_path / "root"
    rc, out, err = cli(capsys, "snapshots", "import", "--root", root, "--variant", "v", "--time", "2024-03-15",
                       "--table", f"UR={w2v}", "--id-type", "integer", "--json")
    assert rc == 0, err
    assert json.loads(out)["tables"] == {"UR": {"rows": 3, "dim": 4}}
    snap = Snapshot.open(json.loads(out)["snapshot"])
    assert_same(snap.load("UR"), np.array([1, 2, 3]), vecs)
    for n, (table, extra) in enumerate([(f"IR={jsonl}", ["--ids-key", "item"]),
                                        (f"CR_user={tsv}", ["--no-header"]),
                                        (f"CR_item={pqt}", ["--vectors-key", "b"])]):
        rc, out, err = cli(capsys, "snapshots", "import", "--root", root, "--variant", f"v{n}", "--time",
                           "2024-03-15", "--table", table, *extra, "--json")
        assert rc == 0, err
    assert_same(Snapshot.open(root / "v0" / "20240315T000000Z").load("IR"), np.array([0, 1, 2]), vecs)
    assert_same(Snapshot.open(root / "v1" / "20240315T000000Z").load("CR_user"), ["e0", "e1", "e2"], vecs)
    assert_same(Snapshot.open(root / "v2" / "20240315T000000Z").load("CR_item"), np.array([7, 8, 9]), vecs[::-1])


def test_cli_errors_are_one_paragraph(capsys, tmp_path):
    path = tmp_path / "bad.vec"
    path.write_text("2 2\na 1 2\nb 1 x\n")
    rc, out, err = cli(capsys, "snapshots", "import", "--root", tmp_path / "root", "--variant", "v", "--time",
                       "2024-03-15", "--table", f"UR={path}")
    assert rc == 2 and out == ""
    assert err.startswith("error: ") and "Traceback" not in err
    assert f"{path}: line 3, value 2 is 'x'; expected a number" in " ".join(err.split())
    np_path = tmp_path / "u.npz"
    np.savez(np_path, ids=np.arange(2), vectors=np.ones((2, 2)))
    rc, _, err = cli(capsys, "snapshots", "import", "--root", tmp_path / "root", "--variant", "v", "--time",
                     "2024-03-15", "--table", f"UR={np_path}", "--no-header")
    assert rc == 2 and "option(s) header do not apply to the npz format" in " ".join(err.split())


# --------------------------------------------------------------------------------------------
# damaged and empty files: an InputError naming the file, never another exception
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["e.parquet", "e.feather", "e.arrows", "e.vec", "e.jsonl", "e.tsv"])
def test_damaged_files_only_ever_raise_input_error(tmp_path, name):
    vecs = vectors(30, 4)
    ids = [f"id{k}" for k in range(30)]
    path = tmp_path / name
    table = pa.table({"id": ids, "emb": list_array(vecs, "list")})
    if name.endswith(".parquet"):
        pq.write_table(table, path)
    elif name.endswith(".feather"):
        feather.write_feather(table, path)
    elif name.endswith(".arrows"):
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
    elif name.endswith(".vec"):
        write_word_vectors(path, ids, vecs, header=True)
    elif name.endswith(".jsonl"):
        path.write_text("".join(json.dumps({"id": i, "emb": [float(x) for x in v]}) + "\n" for i, v in zip(ids, vecs,
                                                                                                          strict=True)))
    else:
        path.write_text("".join("\t".join([i, *(text(x) for x in v)]) + "\n" for i, v in zip(ids, vecs, strict=True)))
    opts = {"header": False} if name.endswith(".tsv") else {}
    original = path.read_bytes()
    outcomes = {"ok": 0, "refused": 0}
    for seed in range(45):
        path.write_bytes(original)
        corrupt(path, seed)
        try:
            importer_for(path, **opts).read(path)
            outcomes["ok"] += 1  # a changed digit, or a truncation at a line end, is still a readable file
        except InputError as exc:
            assert str(path) in str(exc)
            outcomes["refused"] += 1
    assert outcomes["refused"] >= 30, outcomes


@pytest.mark.parametrize("name, write", [
    ("empty.parquet", lambda p: pq.write_table(pa.table({"id": pa.array([], pa.string()),
                                                         "emb": pa.array([], pa.list_(pa.float32()))}), p)),
    ("empty.vec", lambda p: p.write_text("\n\n")),
    ("empty.jsonl", lambda p: p.write_text("")),
    ("empty.feather", lambda p: p.write_bytes(b"")),
])
def test_empty_files_are_refused(tmp_path, name, write):
    path = tmp_path / name
    write(path)
    message = refused(path)
    assert any(w in message for w in ("empty", "no rows", "not a readable")), message
