"""Content checks shared by the writer (refuse to write bad data) and the reader (refuse to load it).

Each check names the file or table, the column and the first offending id, and what was expected.
All are vectorised: no Python loop over rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from lee.errors import SnapshotError

_INT64_MAX = np.iinfo(np.int64).max


def check_ids(ids: np.ndarray, *, where: str | Path) -> None:
    """Ids must be int64 or strings, non-null and unique."""
    if ids.ndim != 1:
        raise SnapshotError(f"ids must be one-dimensional; got shape {ids.shape}", path=where, column="id")
    if ids.dtype.kind not in "iuOUT":
        raise SnapshotError(f"ids must be int64 or string; got dtype {ids.dtype}", path=where, column="id")
    if ids.dtype.kind == "u" and ids.size and int(ids.max()) > _INT64_MAX:
        k = int(np.argmax(ids > _INT64_MAX))
        raise SnapshotError(
            f"integer ids must fit in int64; row {k} holds {int(ids[k])} > {_INT64_MAX}",
            path=where, column="id", id=int(ids[k]),
        )
    if ids.dtype.kind in "OUT":
        _check_utf8(ids, where)
    if ids.dtype.kind == "O":
        not_str = ~pd.Series(ids, dtype=object).map(type).eq(str).to_numpy()
        if not_str.any():
            k = int(np.flatnonzero(not_str)[0])
            raise SnapshotError(
                f"string ids must all be str; row {k} holds {type(ids[k]).__name__} {ids[k]!r}",
                path=where, column="id",
            )
    dup = pd.Index(ids).duplicated()
    if dup.any():
        k = int(np.flatnonzero(dup)[0])
        raise SnapshotError(
            f"duplicate id (found {int(dup.sum())} duplicated rows, first at row {k}); ids must be unique",
            path=where, column="id", id=_plain(ids[k]),
        )


def _check_utf8(ids: np.ndarray, where: str | Path) -> None:
    """String ids are stored as UTF-8; a lone surrogate cannot be, so name the first such id."""
    try:
        pa.array(ids, type=pa.string())
    except UnicodeEncodeError:
        for k, value in enumerate(ids):  # error path only: find the culprit
            try:
                str(value).encode("utf-8")
            except UnicodeEncodeError:
                raise SnapshotError(
                    f"string id at row {k} is not valid UTF-8 text (it holds a lone surrogate)",
                    path=where, column="id", id=value,
                ) from None
        raise
    except (pa.ArrowException, TypeError):
        pass  # non-str objects: reported with their row by the type check that follows


def check_updated_at(updated_at: np.ndarray | None, n_rows: int, *, where: str | Path) -> None:
    """``updated_at`` is optional; when present it is one int64 epoch-second per row."""
    if updated_at is None:
        return
    arr = np.asarray(updated_at)
    if arr.ndim != 1 or arr.shape[0] != n_rows:
        raise SnapshotError(
            f"must be one value per row: expected shape ({n_rows},), got {arr.shape}", path=where, column="updated_at"
        )
    if arr.dtype.kind not in "iu":
        raise SnapshotError(
            f"must hold integer epoch seconds (int64); got dtype {arr.dtype}", path=where, column="updated_at"
        )
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > _INT64_MAX:
        raise SnapshotError(f"values must fit in int64; max is {int(arr.max())}", path=where, column="updated_at")


def check_vectors(vectors: np.ndarray, ids: np.ndarray, *, where: str | Path, dim: int | None = None,
                  allow_nonfinite: bool = False) -> None:
    """Vectors must be a non-empty finite float32 matrix of the expected width (finite unless allowed)."""
    if vectors.ndim != 2:
        raise SnapshotError(f"vectors must be a 2-D matrix; got shape {vectors.shape}", path=where, column="vector")
    if vectors.dtype != np.float32:
        raise SnapshotError(f"vectors must be float32; got {vectors.dtype}", path=where, column="vector")
    if vectors.shape[0] == 0:
        raise SnapshotError("table is empty (0 rows); a snapshot table needs at least one row", path=where)
    if vectors.shape[0] != ids.shape[0]:
        raise SnapshotError(
            f"{ids.shape[0]} ids but {vectors.shape[0]} vectors; each row needs one id", path=where, column="id"
        )
    if dim is not None and vectors.shape[1] != dim:
        raise SnapshotError(
            f"vectors have dim {vectors.shape[1]} but the manifest says dim {dim}", path=where, column="vector"
        )
    if allow_nonfinite or np.isfinite(vectors).all():  # fast path; the row-wise pass only runs to name the culprit
        return
    finite_rows = np.isfinite(vectors).all(axis=1)
    if not finite_rows.all():
        bad = np.flatnonzero(~finite_rows)
        raise SnapshotError(
            f"{bad.size} row(s) hold NaN or Inf (first at row {int(bad[0])}); vectors must be finite",
            path=where, column="vector", id=_plain(ids[bad[0]]),
        )


def _plain(value: object) -> object:
    """A numpy scalar as a plain Python value, for readable messages."""
    return value.item() if isinstance(value, np.generic) else value
