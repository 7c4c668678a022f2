"""Checks at the boundary of every analysis: clear errors naming the frame, column or id.

Analyses validate their inputs once, here, and then compute on plain arrays; a bad log or table
never reaches numpy as something that fails three frames deep.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from lee.errors import InputError


def require_columns(frame: pd.DataFrame, required: Iterable[str], *, name: str) -> None:
    """``frame`` must be a DataFrame holding every column in ``required``."""
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"{name}: expected a pandas DataFrame; got {type(frame).__name__}")
    required = list(required)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        present = ", ".join(map(str, frame.columns)) or "none"
        raise InputError(f"{name}: missing column(s) {', '.join(missing)}; columns present: {present}")


def require_rows(frame: pd.DataFrame, *, name: str, at_least: int = 1) -> None:
    """``frame`` must hold at least ``at_least`` rows."""
    if len(frame) < at_least:
        raise InputError(f"{name}: holds {len(frame)} row(s); at least {at_least} needed")


def require_numeric(frame: pd.DataFrame, columns: Iterable[str], *, name: str, nonnegative: bool = False) -> None:
    """Each column must be numeric, finite and (optionally) non-negative; the first bad row is named."""
    for col in columns:
        values = frame[col]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            raise InputError(f"{name}: column {col} must be numeric; got dtype {values.dtype}")
        arr = values.to_numpy(np.float64)
        bad = ~np.isfinite(arr) | ((arr < 0) if nonnegative else False)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            expect = "finite and non-negative" if nonnegative else "finite"
            raise InputError(f"{name}: column {col} must be {expect}; row {k} holds {arr[k]!r}")


def as_matrix(vectors: np.ndarray, *, name: str, min_rows: int = 1) -> np.ndarray:
    """A finite 2-D float32 matrix with at least ``min_rows`` rows, or a clear error."""
    x = np.asarray(vectors)
    if x.ndim != 2:
        raise InputError(f"{name}: expected a 2-D matrix (rows x dims); got shape {x.shape}")
    if x.shape[0] < min_rows:
        raise InputError(f"{name}: holds {x.shape[0]} row(s); at least {min_rows} needed")
    if x.shape[1] == 0:
        raise InputError(f"{name}: vectors have 0 dimensions")
    if x.dtype.kind not in "fiu":
        raise InputError(f"{name}: vectors must be numeric; got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        k = int(np.flatnonzero(~finite)[0])
        raise InputError(f"{name}: row {k} holds NaN or Inf ({int((~finite).sum())} such rows)")
    return x
