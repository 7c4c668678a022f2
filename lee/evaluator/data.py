"""The downstream click stream the proxy models learn from, encoded once as tensors.

Fields are integer codes (one embedding table each); ``user_row``/``item_row`` index the world's
users and items, which is how a snapshot's representations are looked up. Events are in
event-time order and split into equal-count windows for streaming test-then-train.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from lee.encoding import category_codes
from lee.errors import InputError
from lee.world.model import World

DOMAINS = {"ad": (1,), "content": (0,), "all": (0, 1)}
FIELDS = ("user", "item", "category", "advertiser", "scenario", "position", "hour", "activity")


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

    def __len__(self) -> int:
        return int(self.y.numel())

    def window_bounds(self, n_windows: int) -> list[tuple[int, int]]:
        """``n_windows`` consecutive event ranges of (nearly) equal size, in event-time order."""
        if n_windows < 2:
            raise InputError(f"streaming evaluation needs at least 2 windows; got {n_windows}")
        if len(self) < 10 * n_windows:
            raise InputError(f"the downstream stream has {len(self)} events, too few for {n_windows} windows")
        edges = np.linspace(0, len(self), n_windows + 1).round().astype(int)
        return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]

    def subset(self, n: int) -> DownstreamStream:
        """The first ``n`` events (for quick runs)."""
        s = slice(0, n)
        return DownstreamStream(self.x[s], self.y[s], self.ts[s], self.user_row[s], self.item_row[s],
                                self.user_ids, self.item_ids, self.cardinalities, self.fields,
                                {k: v[s] for k, v in (self.extra or {}).items()})


def stream_from_world(world: World, *, domain: str = "ad", start_ts: int | None = None,
                      end_ts: int | None = None) -> DownstreamStream:
    """Encode ``world``'s events of ``domain`` ('ad', 'content' or 'all') within [start_ts, end_ts)."""
    if domain not in DOMAINS:
        raise InputError(f"unknown downstream domain {domain!r}; choose one of {', '.join(DOMAINS)}")
    ev = world.events
    keep = ev["domain"].isin(DOMAINS[domain]).to_numpy(copy=True)  # pandas may hand out a read-only view
    if start_ts is not None:
        keep &= ev["ts"].to_numpy() >= start_ts
    if end_ts is not None:
        keep &= ev["ts"].to_numpy() < end_ts
    ev = ev[keep]
    if len(ev) == 0:
        raise InputError(f"no {domain} events in the chosen time range; the downstream stream is empty")
    users, items = world.users, world.items
    u_index = pd.Index(users["user_id"].to_numpy())
    i_index = pd.Index(items["item_id"].to_numpy())
    u = u_index.get_indexer(ev["user_id"].to_numpy())
    i = i_index.get_indexer(ev["item_id"].to_numpy())
    if (u < 0).any() or (i < 0).any():
        raise InputError("events reference users or items missing from the world's tables")
    ts = ev["ts"].to_numpy(np.int64)
    cols = {
        "user": (u.astype(np.int64), len(users)),
        "item": (i.astype(np.int64), len(items)),
        "category": category_codes(items["category"].astype(str).to_numpy()[i]),
        "advertiser": category_codes(items["advertiser_id"].to_numpy()[i]),
        "scenario": category_codes(ev["scenario"].astype(str).to_numpy()),
        "position": category_codes(ev["position"].to_numpy()),
        "hour": ((ts // 3600) % 24, 24),
        "activity": category_codes(users["activity_level"].astype(str).to_numpy()[u]),
    }
    x = np.stack([cols[f][0] for f in FIELDS], axis=1)
    extra = {"gmv": ev["gmv"].to_numpy(np.float64), "user_id": ev["user_id"].to_numpy()}
    return DownstreamStream(
        x=torch.from_numpy(np.ascontiguousarray(x)),
        y=torch.from_numpy(ev["click"].to_numpy(np.float32).copy()),
        ts=ts, user_row=u.astype(np.int64), item_row=i.astype(np.int64),
        user_ids=u_index.to_numpy(), item_ids=i_index.to_numpy(),
        cardinalities=tuple(int(cols[f][1]) for f in FIELDS), extra=extra,
    )
