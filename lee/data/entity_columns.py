"""Users and items tables derived from the events, for logs that come without them.

Public click logs (Taobao UserBehavior, Avazu, Amazon reviews, KuaiRec, ...) are one events file:
an item's category, a video's duration or a reviewer's name sit on every event row. The analyses
that group ids by an attribute (cluster labels, who gains) read the users and items tables, so
at import every field the mapping declares on the events with role ``user`` (``item``) is checked
for being an attribute of its id:

* per id, the **modal value** (most frequent; ties broken by the value's text, so the result does
  not depend on the order events arrive in) is the candidate attribute value;
* the field is an attribute when at least ``tolerance`` (default 0.99) of the events hold their
  id's modal value; then it becomes a column of the users (items) table, named as in the log,
  one row per id seen in the events, in the order of each id's first event (the order a dataset without
  the table lists ids in, so the proxy's id rows do not move). How many ids hold more than one value is
  counted and stated.
* otherwise it varies per event and is not moved: it stays an event field (the proxy reads it per
  event either way), and the import says how far from constant it was.

Context fields are never considered, and the declared field itself is unchanged: it still lives
on the events, so the proxy and every LEE number are exactly what they were. When a users (items)
file is given, the derived columns are added to it, except a column the file already has.

What was checked and decided is recorded in ``dataset.json`` (``source.entity_columns``) and stated
in the import's notes; ``lee data show`` lists the derived columns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from lee.data.spec import DatasetSpec, FieldRole, FieldSpec

ENTITY_TOLERANCE = 0.99
"""Default share of events that must hold their id's modal value for a field to be an attribute of the id."""

SOURCE_KEY = "entity_columns"
"""The key of ``dataset.json``'s ``source`` that records the checks."""

FirstSeen = Callable[[str], np.ndarray]
"""``first_seen(id_column)``: every id of the events, in the order of its first event in time (stable): the
order the dataset lists ids in without a side table, kept so that the proxy's rows do not change."""

Counter = Callable[[str, str], pd.DataFrame]
"""``counter(id_column, column)``: a frame with columns ``id``, ``value``, ``n`` — how many events of each
id hold each value (missing values counted as one value)."""


@dataclass(frozen=True)
class EntityColumnCheck:
    """One events field checked for being an attribute of its user (item) id."""

    field: str
    role: str              # user | item
    column: str            # the events column, and the side table's column when derived
    table: str             # users | items
    id_column: str
    ids: int               # ids seen in the events
    ids_with_several_values: int
    events: int
    events_off_modal: int  # events whose value is not their id's modal value
    tolerance: float
    derived: bool
    reason: str = ""       # why it was not derived (empty when it was)

    @property
    def agreement(self) -> float:
        """Share of events holding their id's modal value."""
        return 1.0 - self.events_off_modal / self.events if self.events else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "agreement": round(self.agreement, 6)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> EntityColumnCheck:
        return cls(**{k: v for k, v in raw.items() if k != "agreement"})

    def describe(self) -> str:
        """A short line for ``lee data show`` / ``lee data import``: the column, its source and any disagreement."""
        tail = (f"; {self.ids_with_several_values:,} of {self.ids:,} {self.role}s held other values too, on "
                f"{1 - self.agreement:.2%} of events" if self.ids_with_several_values else "")
        return f"{self.table}.{self.column} from the events' {self.column} (constant per {self.id_column}{tail})"

    def note(self) -> str:
        """One sentence for the import's notes."""
        entity = self.role
        if not self.derived:
            return (f"field {self.field} (role {self.role}) is not a column of the {self.table} table: {self.reason}; "
                    "it stays an event field")
        head = (f"{self.table} table: column {self.column} derived from the events' {self.column} (field {self.field}, "
                f"role {self.role}): ")
        if self.ids_with_several_values:
            return head + (f"{self.ids_with_several_values:,} of {self.ids:,} {entity}s hold more than one value "
                           f"({self.events_off_modal:,} of {self.events:,} events differ from their {entity}'s most "
                           f"frequent value, within the tolerance of {_share(1 - self.tolerance)}); each {entity} "
                           "takes its most frequent value")
        if self.ids == self.events:
            return head + f"{self.ids:,} {entity}s, none with two events, so constancy could not be checked"
        return head + f"one value per {entity} ({self.ids:,} {entity}s)"


@dataclass
class EntityColumns:
    """The side tables with the derived columns, and every check made."""

    users: pd.DataFrame | None
    items: pd.DataFrame | None
    checks: list[EntityColumnCheck]

    def annotate(self, spec: DatasetSpec) -> DatasetSpec:
        """``spec`` with the checks in ``source.entity_columns`` and one note per check in ``source.notes``."""
        if not self.checks:
            return spec
        notes = [*spec.source.get("notes", []), *(c.note() for c in self.checks)]
        return spec.model_copy(update={"source": {**spec.source, SOURCE_KEY: [c.to_dict() for c in self.checks],
                                                  "notes": notes}})


def candidate_fields(spec: DatasetSpec) -> list[FieldSpec]:
    """Fields declared on the events with role user or item (context and derived-from-time fields are not)."""
    return [f for f in spec.fields
            if f.table == "events" and f.derived is None and f.role in (FieldRole.USER, FieldRole.ITEM)
            and f.source not in (spec.roles.user_id, spec.roles.item_id)]


def pandas_first_seen(events: pd.DataFrame, ts_col: str) -> FirstSeen:
    """A :data:`FirstSeen` over an in-memory events frame (not necessarily sorted yet)."""
    order = np.argsort(events[ts_col].to_numpy(), kind="stable")

    def first(id_col: str) -> np.ndarray:
        return pd.unique(events[id_col].to_numpy()[order])

    return first


def pandas_counter(events: pd.DataFrame) -> Counter:
    """A :data:`Counter` over an in-memory events frame."""

    def count(id_col: str, col: str) -> pd.DataFrame:
        grouped = events.groupby([id_col, col], dropna=False, sort=False, observed=True).size()
        out = grouped.reset_index()
        out.columns = ["id", "value", "n"]
        return out

    return count


def _value_key(values: pd.Series) -> pd.Series:
    """A text key for tie-breaking that reads the same whichever path counted (missing: empty text)."""
    obj = values.astype(object)
    return obj.where(values.notna().to_numpy(), "").map(str)


def modal_values(counts: pd.DataFrame) -> tuple[pd.DataFrame, int, int, int]:
    """Each id's most frequent value (``id``, ``value``, sorted by id) from ``counts`` (``id``, ``value``, ``n``),
    with the number of ids holding more than one value, the events, and the events off their id's mode."""
    c = counts.assign(_key=_value_key(counts["value"]))
    c = c.sort_values(["id", "n", "_key"], ascending=[True, False, True], kind="stable")
    modal = c.drop_duplicates("id", keep="first")
    several = int((c.groupby("id", sort=False).size() > 1).sum())
    events = int(c["n"].sum())
    off = events - int(modal["n"].sum())
    return modal[["id", "value"]].reset_index(drop=True), several, events, off


def derive_entity_columns(spec: DatasetSpec, counter: Counter, users: pd.DataFrame | None,
                          items: pd.DataFrame | None, *, dtypes: dict[str, Any], first_seen: FirstSeen,
                          tolerance: float = ENTITY_TOLERANCE) -> EntityColumns:
    """Check every :func:`candidate_fields` field and add the attributes to the side tables (module docstring).

    ``counter`` counts the events (in memory or out of core); ``dtypes`` maps each events column to its
    dtype, so both paths give the same table. A new side table lists the ids in ``first_seen`` order (that of
    a dataset without one); side tables given keep their order and must already hold every id of the events.
    """
    sides: dict[str, pd.DataFrame | None] = {"users": users, "items": items}
    checks: list[EntityColumnCheck] = []
    for f in candidate_fields(spec):
        table = "users" if f.role == FieldRole.USER else "items"
        id_col = spec.roles.user_id if f.role == FieldRole.USER else spec.roles.item_id
        side = sides[table]
        check = EntityColumnCheck(field=f.name, role=f.role.value, column=f.source, table=table, id_column=id_col,
                                  ids=0, ids_with_several_values=0, events=0, events_off_modal=0,
                                  tolerance=float(tolerance), derived=False)
        if any(c.column == f.source and c.table == table and c.derived for c in checks):
            continue   # two fields read the same column
        if side is not None and f.source in side.columns:
            checks.append(replace(check, reason=f"the {table} file already has a column {f.source}, which is kept "
                                                "as given"))
            continue
        modal, several, events, off = modal_values(counter(id_col, f.source))
        check = replace(check, ids=len(modal), ids_with_several_values=several, events=events, events_off_modal=off)
        if check.agreement < tolerance:
            entity = f.role.value
            reason = (f"its value varies within one {entity} ({id_col}): only {_share(check.agreement)} of events "
                      f"hold their {entity}'s most frequent value, and {several:,} of {len(modal):,} {entity}s hold "
                      f"more than one (tolerance: {_share(tolerance)})")
            checks.append(replace(check, reason=reason))
            continue
        checks.append(replace(check, derived=True))
        derived = pd.DataFrame({id_col: _as(modal["id"], dtypes.get(id_col)),
                                f.source: _as(modal["value"], dtypes.get(f.source))})
        if side is None:
            order = pd.Index(derived[id_col]).get_indexer(_as(pd.Series(first_seen(id_col)), dtypes.get(id_col)))
            sides[table] = derived.iloc[order].reset_index(drop=True)
        else:
            merged = side.merge(derived, on=id_col, how="left", validate="one_to_one")
            sides[table] = merged
    return EntityColumns(users=sides["users"], items=sides["items"], checks=checks)


def _share(x: float) -> str:
    """A share as a percentage with as many decimals as it needs (99%, 99.9%, 99.75%), never rounded up to 100%."""
    for digits in (0, 1, 2):
        text = f"{x:.{digits}%}"
        if abs(float(text[:-1]) / 100 - x) < 1e-9 or (digits == 2 and x < 1):
            return text if not (x < 1 and text.startswith("100")) else f"{x:.3%}"
    return f"{x:.2%}"


def _as(values: pd.Series, dtype: Any) -> pd.Series:
    """``values`` in the events column's dtype (DuckDB hands text back as object, counts as int64)."""
    if dtype is None:
        return values.reset_index(drop=True)
    try:
        return values.astype(dtype).reset_index(drop=True)
    except (TypeError, ValueError):
        return values.reset_index(drop=True)


def recorded_checks(spec: DatasetSpec) -> list[EntityColumnCheck]:
    """The checks recorded in ``spec.source`` at import (none for datasets written otherwise)."""
    return [EntityColumnCheck.from_dict(raw) for raw in spec.source.get(SOURCE_KEY, []) if isinstance(raw, dict)]

