"""Turning Arrow columns into a snapshot's ids and vectors, for the importers of tables and text files.

Two pieces every columnar layout shares: the id column read as the id type the user asked for
(``integer``, ``text``, or ``auto``, the rule ``lee data import`` uses, so snapshot ids match a
dataset's ids), and a list column (``list``, ``large_list`` or ``fixed_size_list`` of numbers, as
Spark, BigQuery exports, pandas columns of arrays and lee's own snapshot files hold it) turned into
one ``(rows, dim)`` float32 matrix. Both work on whole columns with Arrow compute, never a Python
loop over rows, and every refusal names the file, the row (or line) and its id.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lee.errors import InputError

IdType = Literal["integer", "text", "auto"]
ID_TYPES: tuple[str, ...] = ("integer", "text", "auto")

# An integer written the canonical way (no sign '+', no leading zeros, at most 18 digits): the rule
# lee.data.importers.base.IdColumn applies to a dataset's ids, repeated here so both agree.
CANONICAL_INT = r"^(0|-?[1-9][0-9]{0,17})$"
_ANY_INT = r"^\s*-?[0-9]+\s*$"  # what Arrow casts to int64 (no sign "+")

Locate = Callable[[int], str]
"""Says where row ``k`` (0-based) of the table is in the file, e.g. ``"line 7"`` or ``"row 6"``."""


def rows_locator(prefix: str = "row") -> Locate:
    """``row k`` counted from 0, the way Parquet/Arrow readers number rows."""
    return lambda k: f"{prefix} {k}"


def check_id_type(id_type: str | None, path: Path) -> IdType | None:
    """``id_type`` when it is one of :data:`ID_TYPES` (or None)."""
    if id_type is not None and id_type not in ID_TYPES:
        raise InputError(f"{path}: unknown id type {id_type!r}; choose one of {', '.join(ID_TYPES)}")
    return cast("IdType | None", id_type)


def _first_true(mask: pa.Array | pa.ChunkedArray) -> int:
    return int(pc.index(mask, True).as_py())


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def typed_ids(col: pa.ChunkedArray | pa.Array, id_type: IdType | None, path: Path, column: str,
              locate: Locate) -> np.ndarray:
    """The id column as int64 or an object array of str.

    ``id_type`` None keeps the column's own type (integers stay integers, text stays text);
    ``integer`` requires every id to be an integer; ``text`` keeps ids as written (numbers become
    their decimal text); ``auto`` makes integers of text ids only when every one is written the
    canonical way (so ``007`` keeps its zeros as text).
    """
    t = col.type
    if col.null_count:
        k = _first_true(pc.is_null(col))
        raise InputError(f"{path}: {locate(k)} has no id ({column!r} is empty or missing there); every row "
                         "needs one")
    if pa.types.is_dictionary(t):
        col = col.cast(t.value_type)
        t = col.type
    if not (pa.types.is_integer(t) or _is_text(t)):
        if id_type == "text" and (pa.types.is_floating(t) or pa.types.is_decimal(t)):
            pass  # written as text below
        else:
            raise InputError(f"{path}: ids in column {column!r} must be integers or text; got {t} "
                             "(a float column of ids often means a missing value turned them into floats)")
    if id_type == "text" or (id_type is None and _is_text(t)):
        text = col if _is_text(t) else pc.cast(col, pa.string())
        return np.asarray(text.to_numpy(zero_copy_only=False), dtype=object)
    if pa.types.is_integer(t):
        if pa.types.is_uint64(t) and len(col) and pc.max(col).as_py() > np.iinfo(np.int64).max:
            k = _first_true(pc.greater(col, np.iinfo(np.int64).max))
            raise InputError(f"{path}: {locate(k)}: id {col[k].as_py()} exceeds the int64 range")
        return np.asarray(pc.cast(col, pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
    # text ids, integer or auto
    canonical = pc.match_substring_regex(col, CANONICAL_INT)
    if id_type == "auto" and not pc.all(canonical).as_py():
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=object)
    ok = pc.match_substring_regex(col, _ANY_INT)
    if not pc.all(ok).as_py():
        k = _first_true(pc.invert(ok))
        raise InputError(f"{path}: {locate(k)}: id {_show(col[k].as_py())} is not an integer, but the ids were "
                         "asked for as integers; import them as text (--id-type text)")
    try:
        ints = pc.cast(pc.utf8_trim_whitespace(col), pa.int64())
    except pa.ArrowInvalid:  # error path only: find the first id beyond int64
        lo, hi = np.iinfo(np.int64).min, np.iinfo(np.int64).max
        k = next(i for i, v in enumerate(col.to_pylist()) if not lo <= int(v) <= hi)
        raise InputError(f"{path}: {locate(k)}: id {_show(col[k].as_py())} is beyond the int64 range; "
                         "import the ids as text (--id-type text)") from None
    return np.asarray(ints.to_numpy(zero_copy_only=False), dtype=np.int64)


def is_list_type(t: pa.DataType) -> bool:
    """A ``list``, ``large_list`` or ``fixed_size_list`` column: one vector per row."""
    return bool(pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t))


def pick_list_column(schema: pa.Schema, vectors_key: str | None, path: Path, *, flag: str = "--vectors-key") -> str:
    """The vectors column: ``vectors_key`` when given (it must be a list column), else the single list
    column of ``schema``; several list columns are an error listing them."""
    names = schema.names
    if vectors_key is not None:
        if vectors_key not in names:
            raise InputError(f"{path}: no column {vectors_key!r} ({flag}); columns: {', '.join(names[:12]) or 'none'}"
                             f"{' ...' if len(names) > 12 else ''}")
        t = schema.field(vectors_key).type
        if not is_list_type(t):
            raise InputError(f"{path}: column {vectors_key!r} ({flag}) is {t}, not a list of numbers; the vectors "
                             "column must hold one list (array) per row")
        return vectors_key
    lists = [n for n in names if is_list_type(schema.field(n).type)]
    if len(lists) != 1:
        raise InputError(f"{path}: {len(lists)} list columns ({', '.join(lists)}); name the vectors column with "
                         f"{flag}")
    return lists[0]


def list_vectors(col: pa.ChunkedArray | pa.Array, ids: np.ndarray, path: Path, column: str,
                 locate: Locate) -> np.ndarray:
    """A list column of numbers as a C-contiguous ``(rows, dim)`` float32 matrix.

    Every row must hold a list (no null row), of one length (no ragged rows), of numbers (no null
    element); the first row that breaks this is named with its id.
    """
    def where(k: int) -> str:
        return f"{locate(k)} (id {_show(ids[k])})"

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    t = col.type
    value_type = t.value_type
    if not (pa.types.is_integer(value_type) or pa.types.is_floating(value_type)):
        raise InputError(f"{path}: column {column!r} holds lists of {value_type}; vectors must be lists of numbers")
    n = len(col)
    if n == 0:
        raise InputError(f"{path}: no rows; a table needs at least one vector")
    if col.null_count:
        k = _first_true(pc.is_null(col))
        raise InputError(f"{path}: {where(k)} has no vector (column {column!r} is null there); every id needs one")
    if pa.types.is_fixed_size_list(t):
        dim = int(t.list_size)
    else:
        lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
        dim = int(lengths[0])
        ragged = np.flatnonzero(lengths != dim)
        if ragged.size:
            k = int(ragged[0])
            got = int(lengths[k])
            raise InputError(f"{path}: {where(k)} has {got} value{'' if got == 1 else 's'} in column {column!r}, "
                             f"but {where(0)} has {dim}; every vector must have the same length")
    values = pc.list_flatten(col)
    if len(values) != n * dim:  # fixed_size_list slices keep their parents' values; list_flatten honours offsets
        raise InputError(f"{path}: column {column!r} holds {len(values)} values for {n} rows of {dim}")
    if values.null_count:
        flat = _first_true(pc.is_null(values))
        k, j = divmod(flat, dim) if dim else (0, 0)
        raise InputError(f"{path}: {where(k)} has an empty (null) value at position {j} of column {column!r}; "
                         "every vector needs a number in every dimension")
    if dim == 0:
        raise InputError(f"{path}: column {column!r} holds empty lists; vectors need at least one dimension")
    flat_np = values.to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(flat_np.reshape(n, dim), dtype=np.float32)


def columns_matrix(columns: list[pa.ChunkedArray]) -> np.ndarray:
    """Numeric columns side by side as a C-contiguous ``(rows, len(columns))`` float32 matrix.

    Each column is copied into one row of a ``(dim, rows)`` buffer (contiguous writes) and the
    buffer transposed once: filling the row-major matrix column by column instead strides through
    memory and is ~4x slower at 1M x 64. Integer columns go through float64, as numpy's
    ``astype(float64).astype(float32)`` would.
    """
    rows = len(columns[0]) if columns else 0
    by_column = np.empty((len(columns), rows), dtype=np.float32)
    for j, col in enumerate(columns):
        start = 0
        for chunk in col.chunks:
            values = chunk.to_numpy(zero_copy_only=False)
            if values.dtype.kind in "iu":
                values = values.astype(np.float64)
            by_column[j, start:start + len(values)] = values
            start += len(values)
    return np.ascontiguousarray(by_column.T)
