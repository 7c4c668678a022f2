"""Content checks shared by the writer (refuse to write bad data) and the reader (refuse to load it).

Each check names the file or table, the column and the first offending id, and what was expected.
All are vectorised: no Python loop over rows.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from lee.errors import ConfigError, SnapshotError

_INT64_MAX = np.iinfo(np.int64).max

DEFAULT_MAX_ABS = 1e6
"""The plausibility bound on every vector value: ``|v| <= 1e6``. Representations live within a few
units of zero; a value beyond a million is a unit mix-up, an overflow or a hostile file, and turns
variances and Gram matrices into inf. Generous on purpose; ``LEE_MAX_ABS_VALUE`` (environment) or
the ``max_abs`` argument of the reader, store and writer change it."""
MAX_ABS_ENV = "LEE_MAX_ABS_VALUE"


def max_abs_bound(value: float | None = None) -> float:
    """The magnitude bound to apply: ``value`` when given, else ``$LEE_MAX_ABS_VALUE``, else 1e6."""
    if value is None:
        text = os.environ.get(MAX_ABS_ENV, "").strip()
        if not text:
            return DEFAULT_MAX_ABS
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{MAX_ABS_ENV}={text!r}: expected a positive number such as 1e6") from None
    if not value > 0:  # also refuses NaN
        raise ConfigError(f"the vector magnitude bound must be a positive number; got {value!r}")
    return float(value)


def check_ids(ids: np.ndarray, *, where: str | Path, id_type: str | None = None) -> None:
    """Ids must be int64 or strings, non-null and unique (and of ``id_type`` when the manifest says one)."""
    if id_type is not None:
        check_id_type(ids, id_type, where=where)
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


def check_id_type(ids: np.ndarray, id_type: str, *, where: str | Path) -> None:
    """The ids' type must be the manifest's ``id_type`` (int64 or string), whichever way round."""
    got = "int64" if ids.dtype.kind in "iu" else "string"
    if got != id_type:
        raise SnapshotError(f"ids are {got} but the manifest says {id_type}", path=where, column="id")


def check_vectors(vectors: np.ndarray, ids: np.ndarray | None, *, where: str | Path, dim: int | None = None,
                  allow_nonfinite: bool = False, max_abs: float | None = None, first_row: int = 0) -> None:
    """Vectors must be a non-empty float32 matrix of the expected width whose values are finite
    (unless ``allow_nonfinite``) and within ``±max_abs`` (:func:`max_abs_bound`; finite values are
    always bounded). ``ids`` (None for a reader without them) name the culprit; ``first_row`` is the
    row number of ``vectors[0]`` in the table, for messages."""
    if vectors.ndim != 2:
        raise SnapshotError(f"vectors must be a 2-D matrix; got shape {vectors.shape}", path=where, column="vector")
    if vectors.dtype != np.float32:
        raise SnapshotError(f"vectors must be float32; got {vectors.dtype}", path=where, column="vector")
    if vectors.shape[0] == 0:
        raise SnapshotError("table is empty (0 rows); a snapshot table needs at least one row", path=where)
    if vectors.shape[1] == 0:
        raise SnapshotError(f"vectors have dim 0 (shape {vectors.shape}); a representation needs at least one "
                            "dimension", path=where, column="vector")
    if ids is not None and vectors.shape[0] != ids.shape[0]:
        raise SnapshotError(
            f"{ids.shape[0]} ids but {vectors.shape[0]} vectors; each row needs one id", path=where, column="id"
        )
    if dim is not None and vectors.shape[1] != dim:
        raise SnapshotError(
            f"vectors have dim {vectors.shape[1]} but the manifest says dim {dim}", path=where, column="vector"
        )
    bound = max_abs_bound(max_abs)
    # fast path: two reductions, no temporary; NaN propagates into max, so any NaN takes the slow path
    if float(vectors.max()) <= bound and float(vectors.min()) >= -bound:
        return
    finite = np.isfinite(vectors)
    if not allow_nonfinite and not finite.all():
        bad = np.flatnonzero(~finite.all(axis=1))
        raise SnapshotError(
            f"{bad.size} row(s) hold NaN or Inf (first at row {first_row + int(bad[0])}); vectors must be finite",
            path=where, column="vector", id=None if ids is None else _plain(ids[bad[0]]),
        )
    with np.errstate(invalid="ignore"):
        beyond = (np.abs(vectors) > bound) & finite
    rows = np.flatnonzero(beyond.any(axis=1))
    if rows.size:
        k = int(rows[0])
        value = float(vectors[k][beyond[k]][0])
        raise SnapshotError(
            f"{rows.size} row(s) hold values beyond the plausibility bound ±{bound:g} (first at row "
            f"{first_row + k}: {value:g}); such values are a unit mix-up or corruption. The bound is set by "
            f"{MAX_ABS_ENV} (default {DEFAULT_MAX_ABS:g})",
            path=where, column="vector", id=None if ids is None else _plain(ids[k]),
        )


def _plain(value: object) -> object:
    """A numpy scalar as a plain Python value, for readable messages."""
    return value.item() if isinstance(value, np.generic) else value
