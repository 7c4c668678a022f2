"""The bridge between a :class:`~lee.world.model.World` (the planted generator's and the upstream
model's in-memory form) and the dataset format.

* :func:`world_spec` describes a world's fixed columns as a dataset: label ``click``, value
  ``gmv``, fields category and advertiser (item), scenario and position (context), hour of day
  (derived), activity (user); the downstream events are the ad events (``domain == 1``) and,
  when the world has a ``part`` column (imported real data), its downstream part.
* :func:`world_from_dataset` goes the other way for the upstream model, which reads a world: each
  of the world's fixed columns is filled from a declared field when the dataset has a matching
  one, and otherwise with one constant value — the mapping it used is returned with it, so what
  the model saw is stated, never silent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lee.data.dataset import Dataset, check_dataset, complete_spec
from lee.data.spec import DatasetSpec, Derived, FieldRole, FieldSpec, FieldType, Roles, SplitKind, SplitSpec, Where
from lee.errors import InputError
from lee.world.model import World


def world_spec(world: World, *, name: str | None = None) -> DatasetSpec:
    """``dataset.json`` for a world's fixed columns (see the module docstring)."""
    has_part = "part" in world.events.columns
    fields = (
        FieldSpec(name="category", role=FieldRole.ITEM, table="items", column="category"),
        FieldSpec(name="advertiser", role=FieldRole.ITEM, table="items", column="advertiser_id"),
        FieldSpec(name="scenario", role=FieldRole.CONTEXT, column="scenario"),
        FieldSpec(name="position", role=FieldRole.CONTEXT, column="position"),
        FieldSpec(name="hour", role=FieldRole.CONTEXT, derived=Derived.HOUR_OF_DAY),
        FieldSpec(name="activity", role=FieldRole.USER, table="users", column="activity_level"),
    )
    split = SplitSpec(kind=SplitKind.PART) if has_part else SplitSpec()
    return DatasetSpec(
        name=name or str(world.meta.get("kind", "world")),
        roles=Roles(label="click", user_id="user_id", item_id="item_id", ts="ts", value="gmv",
                    part="part" if has_part else None),
        fields=fields, split=split, downstream_where=Where(column="domain", values=(1,)),
        source={"format": "world", "kind": world.meta.get("kind"),
                **({"label_rule": world.meta["label_rule"]} if "label_rule" in world.meta else {})},
    )


def dataset_from_world(world: World, *, path: str | Path | None = None) -> Dataset:
    """A world seen as a dataset (no copy of its tables)."""
    ds = Dataset(spec=world_spec(world), events=world.events, users=world.users, items=world.items,
                 path=Path(path) if path is not None else None, world=world)
    ds.spec = complete_spec(ds)
    check_dataset(ds, where=str(path or "world"))
    return ds


# the world's fixed columns the upstream model reads, and what may fill each from a dataset
_WORLD_SLOTS = {"scenario": FieldRole.CONTEXT, "category": FieldRole.ITEM, "activity_level": FieldRole.USER}


def _pick(spec: DatasetSpec, role: FieldRole, preferred: str) -> FieldSpec | None:
    """The declared categorical field for a slot: one named like it, else the lowest-cardinality one."""
    cands = [f for f in spec.fields_of(role) if f.type == FieldType.CATEGORICAL and f.derived is None]
    for f in cands:
        if f.name == preferred or f.source == preferred:
            return f
    cands = [f for f in cands if f.cardinality]
    return min(cands, key=lambda f: f.cardinality or 0) if cands else None


def world_from_dataset(ds: Dataset) -> tuple[World, dict[str, Any]]:
    """A world the upstream model can train on, and the mapping used (slot -> field or constant).

    Every event keeps its time, ids and label; upstream/downstream becomes the ``part`` column
    (``downstream`` events are those :meth:`Dataset.part_mask` selects). All events are one
    domain (``ad``) unless the dataset is itself a world.
    """
    if {"domain", "scenario", "position"} <= set(ds.events.columns) and ds.users is not None \
            and {"label", "activity_level"} <= set(ds.users.columns) and ds.items is not None \
            and {"domain", "category", "advertiser_id", "price"} <= set(ds.items.columns):
        from lee.world.model import World as _World

        return _World(users=ds.users, items=ds.items, events=ds.events, meta={"kind": ds.spec.name}), \
            {"source": "the dataset is a world"}
    r = ds.spec.roles
    ev = ds.events
    users_ids = ds.entity_ids("user")
    item_ids = ds.entity_ids("item")
    mapping: dict[str, Any] = {}

    def values_for(slot: str, role: FieldRole, n: int, base: pd.DataFrame | None, id_col: str,
                   ids: np.ndarray) -> np.ndarray:
        f = _pick(ds.spec, role, slot)
        if f is None:
            mapping[slot] = "constant (no categorical field of that role)"
            return np.zeros(n, dtype=np.int64)
        mapping[slot] = f"field {f.name}"
        if f.table == "events":
            return ev[f.source].astype(str).to_numpy()
        frame = ds.users if f.table == "users" else ds.items
        assert frame is not None
        return frame.set_index(id_col)[f.source].reindex(ids).astype(str).to_numpy()

    part = np.where(ds.part_mask("downstream"), "downstream", "upstream")
    events = pd.DataFrame({
        "ts": ev[r.ts].to_numpy(np.int64), "user_id": ev[r.user_id].to_numpy(), "item_id": ev[r.item_id].to_numpy(),
        "domain": np.ones(len(ev), dtype=np.int8),
        "scenario": values_for("scenario", FieldRole.CONTEXT, len(ev), None, "", np.empty(0)),
        "position": np.ones(len(ev), dtype=np.int16), "click": ev[r.label].to_numpy(np.int8),
        "conversion": np.zeros(len(ev), dtype=np.int8),
        "gmv": ev[r.value].to_numpy(np.float64) if r.value else np.zeros(len(ev)),
        "part": part,
    })
    items = pd.DataFrame({"item_id": item_ids, "domain": np.ones(len(item_ids), dtype=np.int8),
                          "category": values_for("category", FieldRole.ITEM, len(item_ids), ds.items, r.item_id,
                                                 item_ids),
                          "advertiser_id": np.zeros(len(item_ids), dtype=np.int64), "price": np.zeros(len(item_ids))})
    counts = ev[r.user_id].value_counts().reindex(users_ids).fillna(0).to_numpy()
    q = np.quantile(counts, [1 / 3, 2 / 3]) if len(counts) else [0, 0]
    activity = np.where(counts <= q[0], "low", np.where(counts <= q[1], "mid", "high"))
    users = pd.DataFrame({"user_id": users_ids,
                          "label": values_for("label", FieldRole.USER, len(users_ids), ds.users, r.user_id,
                                              users_ids),
                          "activity_level": activity})
    mapping["activity_level"] = "event-count tertiles (low / mid / high)"
    if not len(events):
        raise InputError("the dataset holds no events")
    return World(users=users, items=items, events=events, meta={"kind": ds.spec.name, "mapping": mapping}), mapping
