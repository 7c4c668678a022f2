"""Exports of analysis results: JSON of every number plus one CSV per table, written atomically.

Every result object has ``summary() -> dict`` (scalars) and ``tables() -> dict[str, DataFrame]``;
an export is a projection of that object, never a recomputation — the dashboard, the jobs and the
HTML report all read the same numbers.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd


class Exportable(Protocol):
    def summary(self) -> dict[str, Any]: ...

    def tables(self) -> dict[str, pd.DataFrame]: ...


class Frames:
    """A few DataFrames plus a summary, seen as one exportable result (comparisons, cluster maps)."""

    def __init__(self, tables: dict[str, pd.DataFrame], summary: dict[str, Any]) -> None:
        self._tables, self._summary = tables, summary

    def summary(self) -> dict[str, Any]:
        return self._summary

    def tables(self) -> dict[str, pd.DataFrame]:
        return self._tables


def plain(value: Any) -> Any:
    """A JSON-safe copy: numpy scalars to Python, NaN/Inf to None, datetimes to ISO text."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (pd.Timestamp, datetime)):
        return value.isoformat()
    if isinstance(value, pd.Interval):
        return str(value)
    return value


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [plain(r) for r in frame.to_dict(orient="records")]


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def export_result(result: Exportable, out_dir: str | Path, name: str) -> dict[str, Path]:
    """Write ``name.json`` (summary and every table) and ``name-<table>.csv`` under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = result.tables()
    written: dict[str, Path] = {}
    for key, frame in tables.items():
        path = out / f"{name}-{key}.csv"
        _atomic_write(path, frame.to_csv(index=False))
        written[key] = path
    doc = {"summary": plain(result.summary()), "tables": {k: frame_records(f) for k, f in tables.items()}}
    path = out / f"{name}.json"
    _atomic_write(path, json.dumps(doc, indent=2, allow_nan=False) + "\n")
    written["json"] = path
    return written
