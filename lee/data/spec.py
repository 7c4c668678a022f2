"""The dataset format's description file, ``dataset.json``: roles, fields, tables, split, provenance.

A dataset directory holds an events table and, optionally, users and items side tables (Parquet),
plus ``dataset.json`` describing them (see docs/data-format.md):

- **roles** name the events columns every capability needs: ``label`` (0/1), ``user_id``,
  ``item_id``, ``ts`` (int64 epoch seconds, sorted), and optionally ``value`` (GMV, revenue, dwell:
  what value-weighted metrics and segment lifts use) and ``part`` (``upstream`` / ``downstream``).
- **fields** are the features a downstream model sees besides the two ids: each has a ``role``
  (user, item or context), a ``type`` (categorical, numeric, multi — a multi-valued categorical
  held as text with a separator), the ``table`` it lives in (events, users or items; side-table
  fields are joined by id) and its ``cardinality``; a field may instead be ``derived`` from the
  time column (hour of day, day of week).
- **split** says which events the upstream model may train on and which ones a downstream proxy
  is scored on: a ``part`` column, a time ``cut``, the later ``fraction`` of each user's events,
  or ``none`` (every event is downstream; the embeddings came from elsewhere).
- **downstream_where** optionally restricts the downstream events to some values of one column
  (the planted world scores ad events only).

The format is versioned (``format_version``); the reader refuses versions it does not know.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar, Final, Literal

from pydantic import Field, model_validator

from lee.config import ConfigModel

FORMAT: Final = "lee-dataset"
FORMAT_VERSION = 1
SPEC_FILE = "dataset.json"
TABLES = ("events", "users", "items")


class FieldRole(StrEnum):
    """Whose attribute a field is: the user's, the item's, or the event's context."""

    USER = "user"
    ITEM = "item"
    CONTEXT = "context"


class FieldType(StrEnum):
    """How a field is encoded for a model."""

    CATEGORICAL = "categorical"   # one value per row; embedded (hashed above a stated cardinality)
    NUMERIC = "numeric"           # bucketised by quantiles, then embedded
    MULTI = "multi"               # several categorical values per row (text joined by ``separator``), pooled


class Derived(StrEnum):
    """Fields computed from the time column instead of read from a table."""

    HOUR_OF_DAY = "hour_of_day"
    DAY_OF_WEEK = "day_of_week"


class SplitKind(StrEnum):
    """How upstream and downstream events are told apart."""

    NONE = "none"              # every event is downstream
    PART = "part"              # the ``part`` role column holds upstream / downstream
    TIME = "time"              # events at or after ``cut`` (epoch seconds) are downstream
    USER_FRACTION = "user_fraction"  # the later ``fraction`` of each user's events is downstream


class FieldSpec(ConfigModel):
    """One feature column (or a derived one) and how a model should read it."""

    config_name: ClassVar[str] = "dataset field"

    name: str = Field(min_length=1)
    role: FieldRole
    type: FieldType = FieldType.CATEGORICAL
    table: Literal["events", "users", "items"] = "events"
    column: str | None = None            # the source column (default: ``name``)
    derived: Derived | None = None       # computed from ``ts`` instead of read from ``column``
    separator: str = "|"                 # for multi-valued fields
    cardinality: int | None = Field(None, ge=0)  # distinct values (filled in by the writer)

    @property
    def source(self) -> str:
        return self.column or self.name

    @model_validator(mode="after")
    def _consistent(self) -> FieldSpec:
        if self.derived is not None and (self.table != "events" or self.type != FieldType.CATEGORICAL):
            raise ValueError(f"field {self.name}: a derived field is a categorical of the events table")
        if self.table == "users" and self.role != FieldRole.USER:
            raise ValueError(f"field {self.name}: a users-table field has role user")
        if self.table == "items" and self.role != FieldRole.ITEM:
            raise ValueError(f"field {self.name}: an items-table field has role item")
        return self


class Roles(ConfigModel):
    """Which events columns play the roles every capability needs."""

    config_name: ClassVar[str] = "dataset roles"

    label: str = "label"
    user_id: str = "user_id"
    item_id: str = "item_id"
    ts: str = "ts"
    value: str | None = None
    part: str | None = None


class SplitSpec(ConfigModel):
    """Which events are downstream (scored by LEE) and which the upstream model may train on."""

    config_name: ClassVar[str] = "dataset split"

    kind: SplitKind = SplitKind.NONE
    cut: int | None = None                                   # TIME: epoch seconds of the first downstream event
    fraction: float | None = Field(None, gt=0, lt=1)         # USER_FRACTION: share of each user's later events
    upstream_value: str = "upstream"                         # PART: the values of the part column
    downstream_value: str = "downstream"

    @model_validator(mode="after")
    def _complete(self) -> SplitSpec:
        if self.kind == SplitKind.TIME and self.cut is None:
            raise ValueError("a time split needs cut (epoch seconds of the first downstream event)")
        if self.kind == SplitKind.USER_FRACTION and self.fraction is None:
            raise ValueError("a user_fraction split needs fraction (0 < fraction < 1)")
        return self

    def describe(self) -> str:
        if self.kind == SplitKind.PART:
            return f"part column: '{self.downstream_value}' rows are downstream, '{self.upstream_value}' upstream"
        if self.kind == SplitKind.TIME:
            from lee.timeutil import iso, parse_event_time

            assert self.cut is not None  # the validator above requires it
            return f"time: events from {iso(parse_event_time(self.cut))} on are downstream"
        if self.kind == SplitKind.USER_FRACTION:
            return f"per user: the later {self.fraction:.0%} of each user's events are downstream"
        return "none: every event is downstream"


class Where(ConfigModel):
    """Rows whose ``column`` holds one of ``values``."""

    config_name: ClassVar[str] = "dataset filter"

    column: str
    values: tuple[Any, ...] = Field(min_length=1)


class TableSpec(ConfigModel):
    """One Parquet file of the dataset."""

    config_name: ClassVar[str] = "dataset table"

    file: str
    rows: int = Field(ge=0)
    id_column: str | None = None


class DatasetSpec(ConfigModel):
    """The whole ``dataset.json``."""

    config_name: ClassVar[str] = "dataset.json"

    format: Literal["lee-dataset"] = FORMAT
    format_version: int = FORMAT_VERSION
    name: str = "dataset"
    roles: Roles = Roles()
    fields: tuple[FieldSpec, ...] = ()
    tables: dict[str, TableSpec] = {}
    split: SplitSpec = SplitSpec()
    downstream_where: Where | None = None
    time_span: tuple[int, int] | None = None                 # first and last ts (epoch seconds)
    label_rate: float | None = None
    source: dict[str, Any] = {}                              # provenance: format, path, rules applied

    @model_validator(mode="after")
    def _consistent(self) -> DatasetSpec:
        if self.format_version != FORMAT_VERSION:
            raise ValueError(f"format_version {self.format_version} is not one this version reads ({FORMAT_VERSION})")
        names = [f.name for f in self.fields]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"field name(s) {', '.join(dup)} declared twice")
        reserved = {"user", "item"} & set(names)
        if reserved:
            raise ValueError(f"field name(s) {', '.join(sorted(reserved))} are reserved for the two ids")
        unknown = sorted(set(self.tables) - set(TABLES))
        if unknown:
            raise ValueError(f"unknown table(s) {', '.join(unknown)}; a dataset has {', '.join(TABLES)}")
        if self.tables:  # empty while an importer is still building the spec; the writer fills it in
            if "events" not in self.tables:
                raise ValueError("tables needs an events entry")
            for f in self.fields:
                if f.table not in self.tables:
                    raise ValueError(f"field {f.name} lives in the {f.table} table, which the dataset does not have")
        if self.split.kind == SplitKind.PART and not self.roles.part:
            raise ValueError("a part split needs roles.part (the column holding upstream / downstream)")
        return self

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def fields_of(self, role: FieldRole) -> list[FieldSpec]:
        return [f for f in self.fields if f.role == role]
