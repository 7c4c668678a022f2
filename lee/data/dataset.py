"""A dataset directory: ``dataset.json`` plus Parquet tables, written atomically, read with checks.

:func:`write_dataset` is what every importer (and the planted world) ends with: it checks the
roles and fields against the tables, sorts the events by time (stable), computes each field's
cardinality, the time span and the label rate, and writes everything into a hidden directory that
is renamed into place only when complete. :meth:`Dataset.open` reads it back and checks it again,
naming the file and column at fault.

A world directory written before the dataset format existed (``world.json`` and no
``dataset.json``) still opens: its description is derived from the world's fixed columns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lee.data.spec import SPEC_FILE, DatasetSpec, Derived, FieldRole, FieldSpec, FieldType, SplitKind, TableSpec
from lee.errors import ConfigError, InputError
from lee.fileio import atomic_dir, atomic_write_text

PART_VALUES = ("upstream", "downstream")


@dataclass
class Dataset:
    """A dataset in memory: its description and its tables (events sorted by time)."""

    spec: DatasetSpec
    events: pd.DataFrame
    users: pd.DataFrame | None = None
    items: pd.DataFrame | None = None
    path: Path | None = None
    world: Any = None        # the World this dataset describes, when it is one (planted yardsticks need it)

    # ------------------------------------------------------------------ reading

    @classmethod
    def open(cls, path: str | Path) -> Dataset:
        """Read and check the dataset directory ``path``; a world directory (``world.json``) opens as
        its world, described by its fixed columns (:func:`lee.data.worlds.world_spec`)."""
        path = Path(path)
        if not path.is_dir():
            raise InputError(f"{path}: not a dataset directory (import one with `lee data import`)")
        spec_file = path / SPEC_FILE
        if (path / "world.json").is_file():  # a world (planted or converted): keep the World beside it
            from lee.data.worlds import dataset_from_world
            from lee.world.io import load_world

            return dataset_from_world(load_world(path), path=path)
        if not spec_file.is_file():
            raise InputError(f"{spec_file}: file is missing; a dataset directory holds dataset.json and its tables "
                             "(write one with `lee data import`)")
        spec = read_spec(spec_file)
        tables = {name: _read_table(path / t.file, name) for name, t in spec.tables.items()}
        ds = cls(spec=spec, events=tables["events"], users=tables.get("users"), items=tables.get("items"), path=path)
        check_dataset(ds, where=str(path))
        return ds

    # ------------------------------------------------------------------ roles

    @property
    def label(self) -> np.ndarray:
        return self.events[self.spec.roles.label].to_numpy()

    @property
    def ts(self) -> np.ndarray:
        return self.events[self.spec.roles.ts].to_numpy(np.int64)

    @property
    def user_col(self) -> str:
        return self.spec.roles.user_id

    @property
    def item_col(self) -> str:
        return self.spec.roles.item_id

    def attributes(self, entity: str) -> pd.DataFrame | None:
        """The users or items side table (one row per id): segment attributes and cluster labels."""
        return self.users if entity == "user" else self.items

    def attribute_columns(self, entity: str) -> dict[str, str]:
        """The users (items) table's attribute columns (the id excluded) and their kind: ``categorical``,
        ``multi`` or ``numeric`` — a declared field's type, else a column derived from the events takes its
        field's type, else numeric dtypes (not booleans) are ``numeric`` and the rest ``categorical``."""
        from lee.data.entity_columns import recorded_checks

        side = self.attributes(entity)
        if side is None:
            return {}
        table = f"{entity}s"
        id_col = self.user_col if entity == "user" else self.item_col
        declared = {f.source: f.type.value for f in self.spec.fields if f.table == table and f.derived is None}
        derived = {c.column: self.spec.field(c.field).type.value for c in recorded_checks(self.spec)
                   if c.derived and c.table == table and c.field in {f.name for f in self.spec.fields}}
        out: dict[str, str] = {}
        for col in side.columns:
            if col == id_col:
                continue
            dtype = side[col].dtype
            numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
            out[str(col)] = declared.get(col) or derived.get(col) or ("numeric" if numeric else "categorical")
        return out

    def describe_attributes(self) -> str:
        """Every users and items attribute with its kind, for messages: ``users: a (categorical), ...; no items
        table``; and where derived columns came from."""
        parts = []
        for entity in ("user", "item"):
            if self.attributes(entity) is None:
                parts.append(f"no {entity}s table")
                continue
            cols = self.attribute_columns(entity)
            parts.append(f"{entity}s: " + (", ".join(f"{c} ({k})" for c, k in cols.items()) or "no attribute columns"))
        return "; ".join(parts)

    def why_not_attribute(self, column: str) -> str | None:
        """Why ``column``, a column of the events, is not a users or items attribute (None when it is not an
        events column): the label role and the other roles are the events' own, a user/item field that varied
        per id stayed on the events, and an undeclared column was never checked."""
        from lee.data.entity_columns import recorded_checks

        r = self.spec.roles
        roles = {r.label: "the events' 0/1 outcome (the label role" + (
            f": {self.spec.source['label_rule']})" if self.spec.source.get("label_rule") else ")"),
                 r.user_id: "the user id", r.item_id: "the item id", r.ts: "the events' time"}
        if r.value:
            roles[r.value] = "the events' value column"
        if column in roles:
            return f"{column!r} is {roles[column]}, not a user or item attribute"
        for c in recorded_checks(self.spec):
            if c.column == column and not c.derived:
                return f"{column!r} is an event field: {c.reason}"
        if column in self.events.columns:
            declared = next((f for f in self.spec.fields if f.table == "events" and f.source == column), None)
            if declared is None:
                why = "not a field with role user or item in the mapping, so not checked for being constant per id"
            elif declared.role == FieldRole.CONTEXT:
                why = f"field {declared.name} has role context: a property of each event"
            else:
                why = (f"field {declared.name} has role {declared.role.value} but was not checked at import; "
                       "import the log again to derive it")
            return f"{column!r} is a column of the events only ({why})"
        return None

    def entity_ids(self, entity: str) -> np.ndarray:
        """Every user (item) id the dataset knows: the side table's, else those seen in events."""
        side = self.attributes(entity)
        col = self.user_col if entity == "user" else self.item_col
        if side is not None:
            return side[col].to_numpy()
        return pd.unique(self.events[col].to_numpy())

    # ------------------------------------------------------------------ split

    def part_mask(self, part: str) -> np.ndarray:
        """Boolean mask of the events in ``part``: ``downstream``, ``upstream`` or ``all``.

        ``downstream`` also applies ``downstream_where`` (e.g. only ad events of the planted world).
        """
        n = len(self.events)
        if part == "all":
            return np.ones(n, dtype=bool)
        if part not in PART_VALUES:
            raise InputError(f"unknown part {part!r}; choose downstream, upstream or all")
        split = self.spec.split
        if split.kind == SplitKind.NONE:
            down = np.ones(n, dtype=bool)
        elif split.kind == SplitKind.PART:
            col = self.events[self.spec.roles.part or "part"].astype(str).to_numpy()
            down = col == split.downstream_value
            if part == "upstream":
                return col == split.upstream_value
        elif split.kind == SplitKind.TIME:
            down = self.ts >= int(split.cut or 0)
        else:
            down = later_fraction(self.events[self.user_col].to_numpy(), float(split.fraction or 0.0))
        if part == "upstream":
            return ~down
        where = self.spec.downstream_where
        if where is not None:
            down = down & self.events[where.column].isin(list(where.values)).to_numpy()
        return down

    def with_split(self, *, cut: int | None = None, user_fraction: float | None = None,
                   domain: tuple[Any, ...] | None = None) -> Dataset:
        """The same tables under another split (a time ``cut`` in epoch seconds, or each user's later
        ``user_fraction``) and/or another ``downstream_where`` on the ``domain`` column; no copy."""
        from lee.data.spec import SplitSpec, Where

        update: dict[str, Any] = {}
        if cut is not None:
            update["split"] = SplitSpec(kind=SplitKind.TIME, cut=int(cut))
        elif user_fraction is not None:
            update["split"] = SplitSpec(kind=SplitKind.USER_FRACTION, fraction=float(user_fraction))
        if domain is not None:
            if "domain" not in self.events.columns:
                raise InputError(f"{self.path or 'dataset'}: no domain column; domain applies to planted worlds only")
            update["downstream_where"] = Where(column="domain", values=tuple(domain))
        if not update:
            return self
        return Dataset(spec=self.spec.model_copy(update=update), events=self.events, users=self.users,
                       items=self.items, path=self.path, world=self.world)

    def summary(self) -> dict[str, Any]:
        """What ``lee data show`` prints: roles, fields, sizes, time span, label rate and split."""
        from lee.data.entity_columns import SOURCE_KEY as ENTITY_KEY
        from lee.data.entity_columns import recorded_checks
        from lee.timeutil import iso, parse_event_time

        s = self.spec
        down = self.part_mask("downstream")
        up = self.part_mask("upstream") if s.split.kind != SplitKind.NONE else np.zeros(len(self.events), bool)
        label = self.label
        span = (int(self.ts[0]), int(self.ts[-1])) if len(self.events) else None
        out: dict[str, Any] = {
            "name": s.name, "path": str(self.path) if self.path else None, "format_version": s.format_version,
            "roles": s.roles.to_dict(),
            "fields": [{"name": f.name, "role": f.role.value, "type": f.type.value, "table": f.table,
                        "cardinality": f.cardinality, **({"derived": f.derived.value} if f.derived else {})}
                       for f in s.fields],
            "events": len(self.events),
            "users": int(len(self.entity_ids("user"))), "items": int(len(self.entity_ids("item"))),
            "time_span": [iso(parse_event_time(span[0])), iso(parse_event_time(span[1]))] if span else None,
            "label_rate": float(label.mean()) if len(label) else None,
            "split": s.split.describe(),
            "downstream_events": int(down.sum()), "upstream_events": int(up.sum()),
            "downstream_label_rate": float(label[down].mean()) if down.any() else None,
            "downstream_where": s.downstream_where.to_dict() if s.downstream_where else None,
            "source": {k: v for k, v in s.source.items() if k != ENTITY_KEY},
        }
        derived = [c for c in recorded_checks(s) if c.derived]
        if derived:
            out["entity_columns"] = [c.describe() for c in derived]
        if s.roles.value:
            v = self.events[s.roles.value].to_numpy(np.float64)
            out["value"] = {"column": s.roles.value, "total": float(v.sum()), "nonzero_share": float((v != 0).mean())}
        out["warnings"] = self.warnings(down)
        return out

    def warnings(self, down: np.ndarray | None = None) -> list[str]:
        """What would make a LEE verdict on this dataset meaningless or misleading (lee.data.sanity)."""
        from lee.data.sanity import concentration_warnings, exact_tops

        down = self.part_mask("downstream") if down is None else down
        out = concentration_warnings(exact_tops(self.events, {"user": self.user_col, "item": self.item_col}),
                                     len(self.events))
        label = self.label[down]
        if len(label) and (label.min() == label.max()):
            out.append(f"every downstream event has label {int(label[0])}: AUC is undefined, so no verdict on this "
                       "dataset means anything (a log of positives only needs its negatives)")
        elif not down.any():
            out.append("no event is downstream under this split: LEE has nothing to score")
        return out


def later_fraction(users: np.ndarray, fraction: float) -> np.ndarray:
    """For events sorted by time: True for each user's later ``fraction`` of events (at least one
    event stays upstream for users with two or more)."""
    codes, _ = pd.factorize(users)
    order = np.argsort(codes, kind="stable")          # events grouped by user, time order within
    counts = np.bincount(codes)
    start = np.repeat(np.cumsum(counts) - counts, counts)
    rank = np.empty(len(users), dtype=np.int64)
    rank[order] = np.arange(len(users)) - start        # position of each event within its user
    n = counts[codes]
    n_up = np.maximum(np.ceil(n * (1 - fraction)).astype(np.int64), np.minimum(n, 1))
    return rank >= n_up


# ----------------------------------------------------------------------------------------------
# checks
# ----------------------------------------------------------------------------------------------


def read_spec(path: Path) -> DatasetSpec:
    """``dataset.json`` checked strictly (types, unknown keys, version)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != "lee-dataset":
        raise InputError(f"{path}: not a LEE dataset description (expected \"format\": \"lee-dataset\")")
    try:
        spec = DatasetSpec.from_dict(raw, source=str(path), kind="JSON")
    except ConfigError as exc:
        raise InputError(str(exc)) from None
    if "events" not in spec.tables:
        raise InputError(f"{path}: tables needs an events entry (the events Parquet file)")
    return spec


def _read_table(path: Path, name: str) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"{path}: the {name} table is missing (dataset.json lists it)")
    try:
        return pq.read_table(path).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from None


def _require(frame: pd.DataFrame, columns: Iterable[str], where: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{where}: missing column(s) {', '.join(missing)}; columns present: "
                         f"{', '.join(map(str, frame.columns)) or 'none'}")


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def check_dataset(ds: Dataset, *, where: str) -> None:
    """Every rule of the format, with the file, column and first offending row named."""
    s, ev = ds.spec, ds.events
    ev_where = f"{where}/events"
    r = s.roles
    _require(ev, [c for c in (r.label, r.user_id, r.item_id, r.ts, r.value, r.part) if c], ev_where)
    if len(ev) == 0:
        raise InputError(f"{ev_where}: holds no events")
    ts = ev[r.ts].to_numpy()
    if ts.dtype.kind not in "iu":
        raise InputError(f"{ev_where}: column {r.ts} must hold int64 epoch seconds; got {ts.dtype}")
    back = np.diff(ts) < 0
    if back.any():
        raise InputError(f"{ev_where}: column {r.ts} must be sorted by time; row {_first_bad(back) + 1} goes back")
    label = ev[r.label].to_numpy()
    if label.dtype.kind not in "biuf" or not np.isin(label, (0, 1)).all():
        bad = ~np.isin(label, (0, 1)) if label.dtype.kind in "biuf" else np.ones(len(label), bool)
        k = _first_bad(bad)
        raise InputError(f"{ev_where}: column {r.label} (the label) must hold 0 or 1; row {k} holds {label[k]!r}")
    for col in (r.user_id, r.item_id):
        if ev[col].isna().any():
            row = _first_bad(ev[col].isna().to_numpy())
            raise InputError(f"{ev_where}: column {col} has a missing id at row {row}")
    if r.value:
        v = ev[r.value]
        if not pd.api.types.is_numeric_dtype(v) or not np.isfinite(v.to_numpy(np.float64)).all():
            raise InputError(f"{ev_where}: column {r.value} (the value) must hold finite numbers")
    if r.part and s.split.kind == SplitKind.PART:
        vals = set(ev[r.part].astype(str).unique()) - {s.split.upstream_value, s.split.downstream_value}
        if vals:
            raise InputError(f"{ev_where}: column {r.part} (the part) holds {sorted(vals)[:3]}; expected "
                             f"{s.split.upstream_value!r} or {s.split.downstream_value!r}")
    for name, frame, col in (("users", ds.users, r.user_id), ("items", ds.items, r.item_id)):
        if frame is None:
            continue
        _require(frame, [col], f"{where}/{name}")
        dup = frame[col].duplicated().to_numpy()
        if dup.any():
            raise InputError(f"{where}/{name}: column {col} has duplicate id {frame[col].iloc[_first_bad(dup)]!r}")
    for f in s.fields:
        if f.derived is not None:
            continue
        frame = {"events": ev, "users": ds.users, "items": ds.items}[f.table]
        assert frame is not None  # the spec's validator checks the table exists
        _require(frame, [f.source], f"{where}/{f.table} (field {f.name})")
        if f.type == FieldType.NUMERIC and not pd.api.types.is_numeric_dtype(frame[f.source]):
            raise InputError(f"{where}/{f.table}: field {f.name} is declared numeric but column {f.source} holds "
                             f"{frame[f.source].dtype}")
    if s.downstream_where is not None:
        _require(ev, [s.downstream_where.column], f"{ev_where} (downstream_where)")


# ----------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------


def _cardinality(ds: Dataset, f: FieldSpec) -> int:
    if f.derived == Derived.HOUR_OF_DAY:
        return 24
    if f.derived == Derived.DAY_OF_WEEK:
        return 7
    frame = {"events": ds.events, "users": ds.users, "items": ds.items}[f.table]
    assert frame is not None
    col = frame[f.source]
    if f.type == FieldType.MULTI:
        return int(col.dropna().astype(str).str.split(f.separator, regex=False).explode().replace("", np.nan)
                   .dropna().nunique())
    return int(col.nunique(dropna=True))


def complete_spec(ds: Dataset) -> DatasetSpec:
    """The spec with everything computed from the tables: cardinalities, table sizes, time span, label rate."""
    s = ds.spec
    fields = tuple(f.model_copy(update={"cardinality": _cardinality(ds, f)}) for f in s.fields)
    tables = {"events": TableSpec(file="events.parquet", rows=len(ds.events))}
    if ds.users is not None:
        tables["users"] = TableSpec(file="users.parquet", rows=len(ds.users), id_column=s.roles.user_id)
    if ds.items is not None:
        tables["items"] = TableSpec(file="items.parquet", rows=len(ds.items), id_column=s.roles.item_id)
    ts = ds.events[s.roles.ts].to_numpy()
    return s.model_copy(update={"fields": fields, "tables": tables,
                                "time_span": (int(ts[0]), int(ts[-1])) if len(ts) else None,
                                "label_rate": float(ds.events[s.roles.label].mean()) if len(ts) else None})


def write_dataset(out: str | Path, spec: DatasetSpec, events: pd.DataFrame, users: pd.DataFrame | None = None,
                  items: pd.DataFrame | None = None, *, overwrite: bool = False,
                  extra_files: dict[str, bytes] | None = None) -> Dataset:
    """Check, complete and write a dataset; events are sorted by time (stable) first.

    ``spec`` may leave ``tables``, cardinalities, time span and label rate empty: they are
    computed here. ``extra_files`` (name -> bytes) are written beside the tables (e.g. a world's
    ``world.json``). Returns the dataset as written.
    """
    out = Path(out)
    ts_col = spec.roles.ts
    if ts_col in events.columns and len(events) and not events[ts_col].is_monotonic_increasing:
        events = events.sort_values(ts_col, kind="stable").reset_index(drop=True)
    tables_spec = {"events": TableSpec(file="events.parquet", rows=len(events))}
    if users is not None:
        tables_spec["users"] = TableSpec(file="users.parquet", rows=len(users))
    if items is not None:
        tables_spec["items"] = TableSpec(file="items.parquet", rows=len(items))
    try:
        spec = spec.model_copy(update={"tables": tables_spec})
        DatasetSpec.model_validate(spec.model_dump())   # cross-field rules with the tables now known
    except ValueError as exc:
        raise InputError(f"{out}: {exc}") from None
    ds = Dataset(spec=spec, events=events, users=users, items=items, path=out)
    check_dataset(ds, where=str(out))
    ds.spec = complete_spec(ds)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for name, frame in (("events", events), ("users", users), ("items", items)):
            if frame is not None:
                pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp / f"{name}.parquet",
                               compression="zstd")
        for fname, data in (extra_files or {}).items():
            (tmp / fname).write_bytes(data)
        atomic_write_text(tmp / SPEC_FILE, json.dumps(ds.spec.to_dict(), indent=2) + "\n")
    return ds


def user_item_fields(spec: DatasetSpec) -> dict[str, list[str]]:
    """The declared fields by role: the default feature groups of importance."""
    return {role.value: [f.name for f in spec.fields_of(role)] for role in FieldRole}
