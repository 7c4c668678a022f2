"""What every importer shares: its interface, its options, and column converters that name the line.

An importer reads one source format and hands over the dataset in three parts: its events in
chunks (:meth:`Importer.events`, consumed once and in order, so a log of any length streams), the
description that the events read so far satisfy (:attr:`Importer.spec`, for the writer's checks),
and, once the last chunk is read, the final description, side tables and the conventions it
applied (:meth:`Importer.result`). :func:`lee.data.importers.import_dataset` drives it into a
:class:`~lee.data.chunked.ChunkedDatasetWriter`.

The converters turn one column of a chunk (an Arrow array, usually text) into the type the format
needs, fast when every value is well formed; otherwise they find the first bad value and raise an
:class:`~lee.errors.InputError` naming the file, the line (or row) and the column, what was
expected and what came.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from lee.config import ConfigModel
from lee.data.chunked import DEFAULT_MEMORY_MB, DEFAULT_SPILL_ROWS
from lee.data.entity_columns import ENTITY_TOLERANCE
from lee.data.rules import LabelRule, parse_split
from lee.data.spec import DatasetSpec, SplitKind, SplitSpec
from lee.errors import InputError

OPTION_FLAGS = {"mapping": "--mapping", "field_map": "--field-map", "user_field": "--user-field",
                "item_field": "--item-field", "positive": "--positive", "split": "--split", "campaign": "--campaign"}
"""Options that only some formats read, and their command-line flags."""


class ImportOptions(ConfigModel):
    """Every option of ``lee data import``; each format reads the ones in its ``accepts``."""

    config_name: ClassVar[str] = "import options"

    mapping: Path | None = None            # csv, parquet: the TOML mapping (columns -> roles and fields)
    field_map: Path | None = None          # libfm, libsvm: lines `field:value<TAB>index` (or `field<TAB>index`)
    user_field: str | None = None          # which field holds the user id (libfm, libsvm, criteo, recbole)
    item_field: str | None = None          # which field holds the item id
    positive: str | None = None            # click rule, e.g. "rating>=4"
    split: str | None = None               # none | part | user:F | time:T
    campaign: str | None = None            # obd: all | men | women
    name: str | None = None                # the dataset's name (default: the source's name)
    chunk_mb: int = Field(16, ge=1, le=1024)          # bytes of text parsed per chunk
    spill_rows: int = Field(DEFAULT_SPILL_ROWS, ge=0)  # events kept in memory before sorting out of core
    memory_mb: int = Field(DEFAULT_MEMORY_MB, ge=64)   # DuckDB's memory limit for the out-of-core sort
    entity_tolerance: float = Field(ENTITY_TOLERANCE, gt=0.5, le=1.0)  # a user/item field's share of events that
    # must hold its id's most frequent value to become a users/items column (lee.data.entity_columns)


@dataclass
class ImportedTables:
    """What an importer hands over after its last chunk: final description, side tables, conventions."""

    spec: DatasetSpec
    users: pd.DataFrame | None = None
    items: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)


class Importer(ABC):
    """One source format (see the module docstring).

    Subclasses set ``name`` (the ``--format`` value), ``description`` (one line for help and docs)
    and ``accepts`` (the keys of :data:`OPTION_FLAGS` they read), validate the source and options
    in ``__init__`` (before any event is read), set :attr:`spec` before yielding their first chunk,
    and return everything else from :meth:`result`.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    accepts: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, src: Path, options: ImportOptions) -> None:
        self.src = src
        self.options = options
        self.spec: DatasetSpec | None = None
        self.notes: list[str] = []

    @abstractmethod
    def events(self) -> Iterator[pd.DataFrame]:
        """The events in chunks, in the source's order."""

    @abstractmethod
    def result(self) -> ImportedTables:
        """Called once :meth:`events` is exhausted."""

    # ------------------------------------------------------------------ helpers for subclasses

    def label_rule(self, default: str | None = None) -> LabelRule | None:
        """``--positive`` parsed (else ``default``), or None when the source's own 0/1 label is used."""
        text = self.options.positive or default
        return LabelRule.parse(text) if text else None

    def split(self, default: str = "none") -> SplitSpec:
        """``--split`` parsed (else ``default``); ``part`` needs a part column, which only a mapping can name."""
        text = self.options.split or default
        spec = parse_split(text)
        if spec.kind == SplitKind.PART:
            raise InputError(f"--split {text}: --format {self.name} has no upstream/downstream part column; use "
                             "user:FRACTION or time:T")
        return spec

    @property
    def dataset_name(self) -> str:
        return self.options.name or self.src.name.split(".")[0] or "dataset"


# ----------------------------------------------------------------------------------------------
# where a row came from
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rows:
    """Names row ``k`` of a chunk in messages: ``FILE: line N`` (text) or ``FILE: row N`` (Parquet)."""

    path: Path
    first: int                          # the line (row) number of the chunk's first row, 1-based
    unit: Literal["line", "row"] = "line"

    def __call__(self, k: int) -> str:
        return f"{self.path}: {self.unit} {self.first + int(k)}"


def _first(mask: np.ndarray | pa.Array | pa.ChunkedArray) -> int:
    arr = mask.to_numpy(zero_copy_only=False) if not isinstance(mask, np.ndarray) else mask
    return int(np.flatnonzero(arr)[0])


def _show(value: object) -> str:
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= 60 else text[:59] + "…'"


def _value(arr: pa.Array | pa.ChunkedArray, k: int) -> object:
    return arr[k].as_py()


def require_present(arr: pa.Array | pa.ChunkedArray, rows: Rows, column: str, what: str) -> None:
    """An error naming the first empty value of a column that must hold one on every row."""
    if arr.null_count:
        k = _first(pc.is_null(arr))
        raise InputError(f"{rows(k)}: column {column} is empty; expected {what} on every row")


def _numeric(arr: pa.Array | pa.ChunkedArray, rows: Rows, column: str, what: str) -> np.ndarray:
    """float64 values, NaN where empty; the first value that is not a number is named."""
    t = arr.type
    if pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
    if pa.types.is_null(t):
        return np.full(len(arr), np.nan)
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        raise InputError(f"{rows.path}: column {column} holds {t} values; expected {what}")
    try:
        return pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        pass
    s = arr.to_pandas()
    num = pd.to_numeric(s, errors="coerce").to_numpy(np.float64)
    bad = np.isnan(num) & s.notna().to_numpy()
    if bad.any():
        k = _first(bad)
        raise InputError(f"{rows(k)}: column {column} holds {_show(s.iloc[k])}; expected {what}")
    return num


def numbers(arr: pa.Array | pa.ChunkedArray, rows: Rows, column: str) -> np.ndarray:
    """A numeric field: float64, NaN where empty."""
    return _numeric(arr, rows, column, "a number (or nothing)")


def integers(arr: pa.Array | pa.ChunkedArray, rows: Rows, column: str, what: str = "an integer") -> np.ndarray:
    """int64 on every row; an empty or non-integer value is named."""
    require_present(arr, rows, column, what)
    if pa.types.is_integer(arr.type):
        return pc.cast(arr, pa.int64()).to_numpy(zero_copy_only=False)
    num = _numeric(arr, rows, column, what)
    bad = ~np.isfinite(num) | (num != np.round(num))
    if bad.any():
        k = _first(bad)
        raise InputError(f"{rows(k)}: column {column} holds {_show(_value(arr, k))}; expected {what}")
    return num.astype(np.int64)


def labels(arr: pa.Array | pa.ChunkedArray, rows: Rows, column: str, *, signed: bool = False) -> np.ndarray:
    """0/1 labels (int8); with ``signed``, -1 also means 0 (the libsvm convention)."""
    what = "a label 0 or 1" + (" (or -1)" if signed else "") + " — or give a click rule such as --positive 'rating>=4'"
    require_present(arr, rows, column, "a label 0 or 1")
    num = _numeric(arr, rows, column, what)
    ok = (num == 0) | (num == 1) | ((num == -1) if signed else False)
    if not ok.all():
        k = _first(~ok)
        raise InputError(f"{rows(k)}: column {column} holds {_show(_value(arr, k))}; expected {what}")
    return (num == 1).astype(np.int8)


def text(arr: pa.Array | pa.ChunkedArray) -> pd.Series:
    """Text values (pandas' string dtype), empty where missing."""
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pc.cast(arr, pa.string())
    return arr.to_pandas().astype("str")


_CANONICAL_INT = r"^(0|-?[1-9][0-9]{0,17})$"


class IdColumn:
    """One id column: ``integer`` (int64), ``text``, or ``auto`` — integers when the first chunk's ids all are
    (written without leading zeros), else text; later chunks must agree."""

    def __init__(self, column: str, kind: Literal["auto", "integer", "text"] = "auto") -> None:
        self.column = column
        self.kind = kind

    def __call__(self, arr: pa.Array | pa.ChunkedArray, rows: Rows, *,
                 label: str | None = None) -> np.ndarray | pd.Series:
        name = label or self.column
        require_present(arr, rows, name, "an id")
        t = arr.type
        if self.kind == "auto":
            if pa.types.is_integer(t):
                self.kind = "integer"
            elif pa.types.is_string(t) or pa.types.is_large_string(t):
                self.kind = "integer" if pc.all(pc.match_substring_regex(arr, _CANONICAL_INT)).as_py() else "text"
            else:
                self.kind = "text"
        if self.kind == "text":
            return text(arr)
        if pa.types.is_integer(t):
            return pc.cast(arr, pa.int64()).to_numpy(zero_copy_only=False)
        ok = pc.match_substring_regex(arr, _CANONICAL_INT) if not pa.types.is_floating(t) else None
        if ok is not None and not pc.all(ok).as_py():
            k = _first(pc.invert(ok))
            raise InputError(f"{rows(k)}: column {name} holds {_show(_value(arr, k))}, but the ids read so far are "
                             "integers; declare the ids as text (ids = \"text\" in a mapping)")
        return integers(arr, rows, name, "an integer id")


TimeUnit = Literal["s", "ms", "us", "ns", "iso", "format"]
_SCALE = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _timestamp_seconds(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Epoch seconds (floored) of an Arrow timestamp or date column."""
    if pa.types.is_date(arr.type):
        arr = pc.cast(arr, pa.timestamp("s"))
    scale = _SCALE[arr.type.unit]
    return pc.cast(arr, pa.int64()).to_numpy(zero_copy_only=False) // scale


def times(arr: pa.Array | pa.ChunkedArray, rows: Rows, column: str, unit: TimeUnit = "s",
          fmt: str | None = None) -> np.ndarray:
    """Epoch seconds (int64, floored) from numbers in ``unit`` or from text (``iso``, or ``format`` with a
    strptime pattern); text without a time zone is UTC."""
    if unit in _SCALE:
        require_present(arr, rows, column, f"a time in epoch {unit}")
        if pa.types.is_timestamp(arr.type) or pa.types.is_date(arr.type):
            return _timestamp_seconds(arr)
        if pa.types.is_integer(arr.type):
            return pc.cast(arr, pa.int64()).to_numpy(zero_copy_only=False) // _SCALE[unit]
        try:
            whole = pc.cast(arr, pa.int64()).to_numpy(zero_copy_only=False)  # exact for ns-sized integers
            return whole // _SCALE[unit]
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            num = _numeric(arr, rows, column, f"a time in epoch {unit} (a number)")
            return np.floor(num / _SCALE[unit]).astype(np.int64)
    require_present(arr, rows, column, "a time")
    if pa.types.is_timestamp(arr.type) or pa.types.is_date(arr.type):
        return _timestamp_seconds(arr)
    s = text(arr)
    if unit == "iso":
        parsed = pd.to_datetime(s, utc=True, errors="coerce", format="ISO8601")
        expected = "ISO 8601 text such as 2019-11-15T08:55:44Z"
    else:
        parsed = pd.to_datetime(s, utc=True, errors="coerce", format=fmt)
        expected = f"a time in the format {fmt!r}"
    bad = parsed.isna().to_numpy()
    if bad.any():
        k = _first(bad)
        raise InputError(f"{rows(k)}: column {column} holds {_show(s.iloc[k])}; expected {expected}")
    return ((parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)


CALENDAR = (631_152_000, 4_102_444_800)
"""Epoch seconds of 1990-01-01 and 2100-01-01: where the times of a click log can lie."""

_DATE_LAYOUTS = (("%Y%m%d%H%M%S", 14), ("%Y%m%d%H", 10), ("%Y%m%d", 8), ("%y%m%d%H", 8))
"""Dates written as digits (KuaiRec's ``date`` 20200705, Avazu's ``hour`` 14102100), by digit count."""


def describe_seconds(seconds: float) -> str:
    """An epoch-seconds value as a date, or as a year when no calendar holds it."""
    if -9e9 < seconds < 9e9:
        return pd.Timestamp(int(seconds), unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"about the year {int(1970 + seconds / 31_556_952):,}"


class TimeScale:
    """Checks that a time column read in its declared unit lands on calendar dates (1990–2100).

    A numeric time column carries no unit, and a wrong one is silently wrong by a factor of
    1,000: RetailRocket's epoch milliseconds read as seconds are the year 47,000, Avazu's
    ``hour`` 14102100 (YYMMDDHH) read as seconds is 1970-06-13. When most values of a chunk fall
    outside the calendar in the declared unit and another reading puts (almost) all of them inside
    it, the import stops and names that reading; ``fix`` says how to declare it (e.g. ``set [time]
    unit = "ms" in map.toml``). Values outside the calendar that no reading explains (relative
    seconds, a few corrupt rows) are kept as read and counted; :meth:`notes` states them.
    """

    def __init__(self, column: str, unit: str, fix: str, *, default_unit: bool = False) -> None:
        self.column, self.unit, self.fix, self.default_unit = column, unit, fix, default_unit
        self.rows = 0
        self.outside = 0
        self.first_outside: str | None = None
        self.low: int | None = None
        self.high: int | None = None

    def _alternative(self, raw: np.ndarray, text: pd.Series | None) -> tuple[str, str] | None:
        """A reading (and how to declare it) that puts >= 99% of the values inside the calendar."""
        lo, hi = CALENDAR
        finite = raw[np.isfinite(raw)]
        if len(finite) == 0:
            return None
        for unit, scale in _SCALE.items():
            if unit != self.unit and np.mean((finite / scale >= lo) & (finite / scale < hi)) >= 0.99:
                return f"epoch {_UNIT_WORDS[unit]}", f'unit = "{unit}"'
        if text is not None and (finite == np.round(finite)).all() and (finite > 0).all():
            digits = text.str.strip().str.len()
            for fmt, n in _DATE_LAYOUTS:
                if (digits == n).all():
                    parsed = pd.to_datetime(text.str.strip(), format=fmt, errors="coerce", utc=True)
                    inside = (parsed >= pd.Timestamp(lo, unit="s", tz="UTC")) & (parsed < pd.Timestamp(hi, unit="s",
                                                                                                        tz="UTC"))
                    if inside.mean() >= 0.99:
                        return f"dates written as digits ({fmt})", f'unit = "format" and format = "{fmt}"'
        return None

    def __call__(self, seconds: np.ndarray, arr: pa.Array | pa.ChunkedArray, rows: Rows) -> None:
        """Check one chunk's converted ``seconds`` against its source values ``arr``."""
        if len(seconds) == 0:
            return
        lo, hi = CALENDAR
        out = (seconds < lo) | (seconds >= hi)
        self.rows += len(seconds)
        self.low = int(seconds.min()) if self.low is None else min(self.low, int(seconds.min()))
        self.high = int(seconds.max()) if self.high is None else max(self.high, int(seconds.max()))
        if not out.any():
            return
        k = _first(out)
        if out.mean() > 0.5 and self.unit in _SCALE and not (pa.types.is_timestamp(arr.type)
                                                              or pa.types.is_date(arr.type)):
            if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
                text_values: pd.Series | None = arr.to_pandas()
                raw = pd.to_numeric(text_values, errors="coerce").to_numpy(np.float64)
            else:
                raw = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
                whole = np.isfinite(raw).all() and (raw == np.round(raw)).all()
                text_values = pd.Series(raw.astype(np.int64).astype(str)) if whole else None
            alt = self._alternative(raw, text_values)
            if alt is not None:
                declared = (f"the {'default' if self.default_unit else 'declared'} unit, epoch "
                            f"{_UNIT_WORDS[self.unit]}")
                raise InputError(
                    f"{rows(k)}: column {self.column} holds {_show(_value(arr, k))}, which read in {declared}, "
                    f"is {describe_seconds(float(seconds[k]))}; {out.mean():.0%} of this chunk's values fall "
                    f"outside 1990–2100 that way, and they look like {alt[0]}: {self.fix.format(alt[1])}")
        self.outside += int(out.sum())
        if self.first_outside is None:
            self.first_outside = (f"{rows(k)} holds {_show(_value(arr, k))}, read as "
                                  f"{describe_seconds(float(seconds[k]))}")

    def notes(self) -> list[str]:
        """What the import should state about the times: values outside the calendar, if any."""
        if not self.outside:
            return []
        assert self.low is not None and self.high is not None
        if self.outside == self.rows:
            return [f"time: every value of column {self.column} lies outside 1990–2100 "
                    f"({describe_seconds(self.low)} .. {describe_seconds(self.high)}); they are kept as "
                    "relative times (seconds from 1970-01-01), not calendar dates — if they are dates, "
                    f"{self.fix.format('the unit they are written in')}"]
        return [f"time: {self.outside:,} of {self.rows:,} values of column {self.column} lie outside 1990–2100, "
                f"kept as read (first: {self.first_outside})"]


_UNIT_WORDS = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}


def apply_rule(rule: LabelRule, frame: pd.DataFrame, rows: Rows) -> np.ndarray:
    """The rule's 0/1 labels for a chunk; the rule's column must be one the format has."""
    if rule.column not in frame.columns:
        raise InputError(f"--positive {rule.column}{rule.op}...: {rows.path} has no column {rule.column}; "
                         f"columns: {', '.join(map(str, frame.columns))}")
    return rule.apply(frame[rule.column], where=rows)


def check_name(name: str, what: str) -> str:
    """A field or column name the dataset can use (no empty or control-character names)."""
    if not name or re.search(r"[\x00-\x1f]", name):
        raise InputError(f"{what}: {name!r} is not a usable column name")
    return name
