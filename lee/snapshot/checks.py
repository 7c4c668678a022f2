"""Content checks shared by the writer (refuse to write bad data) and the reader (refuse to load it).

Each check names the file or table, the column and the first offending id, and what was expected.
All are vectorised: no Python loop over rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lee.errors import SnapshotError


def check_ids(ids: np.ndarray, *, where: str | Path) -> None:
    """Ids must be int64 or strings, non-null and unique."""
    if ids.ndim != 1:
        raise SnapshotError(f"ids must be one-dimensional; got shape {ids.shape}", path=where, column="id")
    if ids.dtype.kind not in "iuOUT":
        raise SnapshotError(f"ids must be int64 or string; got dtype {ids.dtype}", path=where, column="id")
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


def check_vectors(vectors: np.ndarray, ids: np.ndarray, *, where: str | Path, dim: int | None = None) -> None:
    """Vectors must be a non-empty finite float32 matrix of the expected width."""
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
    if np.isfinite(vectors).all():  # fast path; the row-wise pass only runs to name the culprit
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
