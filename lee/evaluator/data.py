"""The downstream click stream the proxy models learn from, encoded once as tensors.

Fields are integer codes (one embedding table each): the two ids (``user``, ``item``: rows in
the dataset's user and item lists, which is how a snapshot's representations are looked up) and
every field the dataset declares, encoded by :mod:`lee.evaluator.fields`. A multi-valued field
takes several columns of ``x`` (``slots``). Events are in event-time order and split into
equal-count windows for streaming test-then-train.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from lee.data.dataset import Dataset
from lee.data.spec import FieldRole
from lee.errors import InputError
from lee.evaluator.fields import EncodingConfig, encode_field
from lee.world.model import World

DOMAINS = {"ad": (1,), "content": (0,), "all": (0, 1)}
FIELDS = ("user", "item", "category", "advertiser", "scenario", "position", "hour", "activity")  # a planted world's


@dataclass
class DownstreamStream:
    """Encoded downstream events: ``x`` (N, F) field codes, ``y`` (N,) clicks, ``ts`` (N,) seconds."""

    x: torch.Tensor
    y: torch.Tensor
    ts: np.ndarray
    user_row: np.ndarray         # (N,) row in ``user_ids``
    item_row: np.ndarray         # (N,) row in ``item_ids``
    user_ids: np.ndarray         # (U,) ids of the world's users
    item_ids: np.ndarray         # (I,)
    cardinalities: tuple[int, ...]
    fields: tuple[str, ...] = FIELDS
    extra: dict[str, np.ndarray] | None = None  # per-event attributes for analyses (gmv, segment...)
    slots: tuple[int, ...] | None = None        # columns of ``x`` per field (None: one each)
    roles: dict[str, str] = field(default_factory=dict)      # field -> user / item / context
    encoding: dict[str, Any] = field(default_factory=dict)   # how each field was coded (stated with runs)

    @property
    def field_slots(self) -> tuple[int, ...]:
        return self.slots if self.slots is not None else (1,) * len(self.fields)

    def field_columns(self) -> list[tuple[int, int]]:
        """For each field, the [start, end) columns of ``x`` it occupies."""
        out, at = [], 0
        for s in self.field_slots:
            out.append((at, at + s))
            at += s
        return out

    def __len__(self) -> int:
        return int(self.y.numel())

    def window_bounds(self, n_windows: int) -> list[tuple[int, int]]:
        """``n_windows`` consecutive event ranges of (nearly) equal size, in event-time order."""
        if n_windows < 2:
            raise InputError(f"streaming evaluation needs at least 2 windows; got {n_windows}")
        if len(self) < 10 * n_windows:
            raise InputError(f"the downstream stream has {len(self)} events, too few for {n_windows} windows")
        outcomes = torch.unique(self.y)
        if outcomes.numel() < 2:
            raise InputError(
                f"every one of the {len(self):,} downstream events has label {float(outcomes[0]):g}: AUC compares "
                "events with and without a click, so with one outcome no verdict exists. Map a label that "
                "takes both values (`label = COLUMN` or `positive = \"COLUMN==VALUE\"` in the mapping, "
                "docs/data-format.md), or choose a downstream part that holds both")
        edges = np.linspace(0, len(self), n_windows + 1).round().astype(int)
        return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]

    def subset(self, n: int) -> DownstreamStream:
        """The first ``n`` events (for quick runs)."""
        s = slice(0, n)
        return DownstreamStream(self.x[s], self.y[s], self.ts[s], self.user_row[s], self.item_row[s],
                                self.user_ids, self.item_ids, self.cardinalities, self.fields,
                                {k: v[s] for k, v in (self.extra or {}).items()}, self.slots, dict(self.roles),
                                dict(self.encoding))


def stream_from_world(world: World, *, domain: str = "ad", start_ts: int | None = None,
                      end_ts: int | None = None) -> DownstreamStream:
    """Encode ``world``'s events of ``domain`` ('ad', 'content' or 'all') within [start_ts, end_ts)
    (a world's downstream part only, when it has a ``part`` column)."""
    from lee.data.spec import Where
    from lee.data.worlds import dataset_from_world

    if domain not in DOMAINS:
        raise InputError(f"unknown downstream domain {domain!r}; choose one of {', '.join(DOMAINS)}")
    ds = dataset_from_world(world)
    ds.spec = ds.spec.model_copy(update={"downstream_where": Where(column="domain", values=DOMAINS[domain])})
    return stream_from_dataset(ds, start_ts=start_ts, end_ts=end_ts)


def stream_from_dataset(ds: Dataset, *, part: str = "downstream", start_ts: int | None = None,
                        end_ts: int | None = None, encoding: EncodingConfig | None = None) -> DownstreamStream:
    """Encode the ``part`` events of ``ds`` (default: its downstream events) within [start_ts, end_ts).

    Every declared field becomes one field of the stream (after ``user`` and ``item``), in the
    order the dataset declares them; how each was coded is in ``stream.encoding``.
    """
    cfg = encoding or EncodingConfig()
    keep = ds.part_mask(part).copy()
    ts_all = ds.ts
    if start_ts is not None:
        keep &= ts_all >= start_ts
    if end_ts is not None:
        keep &= ts_all < end_ts
    if not keep.any():
        where = f" in [{start_ts}, {end_ts})" if start_ts is not None or end_ts is not None else ""
        raise InputError(f"no {part} events{where}: the downstream stream is empty "
                         f"({ds.spec.split.describe()})")
    r = ds.spec.roles
    ev = ds.events.loc[keep]
    user_ids, item_ids = ds.entity_ids("user"), ds.entity_ids("item")
    u_index, i_index = pd.Index(user_ids), pd.Index(item_ids)
    u = u_index.get_indexer(ev[r.user_id].to_numpy())
    i = i_index.get_indexer(ev[r.item_id].to_numpy())
    for rows, name, col in ((u, "users", r.user_id), (i, "items", r.item_id)):
        if (rows < 0).any():
            bad = ev[col].to_numpy()[rows < 0]
            raise InputError(f"events reference {int((rows < 0).sum())} {col} value(s) missing from the {name} "
                             f"table (first: {bad[0]!r})")
    ts = ev[r.ts].to_numpy(np.int64)
    names, cols, cards, slots = ["user", "item"], [u.astype(np.int64), i.astype(np.int64)], \
        [len(user_ids), len(item_ids)], [1, 1]
    roles = {"user": FieldRole.USER.value, "item": FieldRole.ITEM.value}
    notes: dict[str, Any] = {"config": cfg.to_dict(), "fields": {}}
    for f in ds.spec.fields:
        if f.derived is not None:
            values: Any = None
        elif f.table == "events":
            values = ev[f.source].to_numpy()
        else:
            side = ds.users if f.table == "users" else ds.items
            assert side is not None
            values = side[f.source].to_numpy()[u if f.table == "users" else i]
        enc = encode_field(f, values, ts, cfg)
        names.append(f.name)
        cols.append(enc.codes)
        cards.append(enc.cardinality)
        slots.append(enc.slots)
        roles[f.name] = f.role.value
        notes["fields"][f.name] = enc.note
    x = np.column_stack([c if c.ndim == 2 else c[:, None] for c in cols])
    extra: dict[str, np.ndarray] = {"user_id": ev[r.user_id].to_numpy()}
    if r.value:
        extra["value"] = ev[r.value].to_numpy(np.float64)
        extra["gmv"] = extra["value"]
    return DownstreamStream(
        x=torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64)),
        y=torch.from_numpy(ev[r.label].to_numpy(np.float32).copy()),
        ts=ts, user_row=u.astype(np.int64), item_row=i.astype(np.int64),
        user_ids=u_index.to_numpy(), item_ids=i_index.to_numpy(),
        cardinalities=tuple(int(c) for c in cards), fields=tuple(names), extra=extra,
        slots=tuple(slots) if any(s > 1 for s in slots) else None, roles=roles, encoding=notes,
    )
