"""Turning a world into integer-coded tensors for the upstream model and the proxy models.

Ids are mapped to row numbers of the users and items tables once, here, so the training loops
only slice contiguous ranges of pre-built tensors (no DataLoader, no per-row Python).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from lee.errors import InputError
from lee.world.model import World


def _codes(series: pd.Series) -> tuple[np.ndarray, int]:
    """Integer codes 0..K-1 of a categorical-like column and K."""
    cat = series.astype("category")
    return cat.cat.codes.to_numpy(np.int64), max(len(cat.cat.categories), 1)


@dataclass(frozen=True)
class EncodedWorld:
    """Integer-coded view of a world: per-event tensors, per-user and per-item feature tensors."""

    user_ids: np.ndarray        # (U,) original ids, row k <-> index k
    item_ids: np.ndarray        # (I,)
    ts: torch.Tensor            # (N,) int64 epoch seconds, sorted
    user: torch.Tensor          # (N,) row in users
    item: torch.Tensor          # (N,) row in items
    domain: torch.Tensor        # (N,) 0 content, 1 ad
    scenario: torch.Tensor      # (N,) code
    position: torch.Tensor      # (N,) code
    hour: torch.Tensor          # (N,) 0..23
    click: torch.Tensor         # (N,) float32 0/1
    user_activity: torch.Tensor # (U,) code
    item_category: torch.Tensor # (I,) code
    item_advertiser: torch.Tensor  # (I,) code, 0 = none
    item_domain: torch.Tensor   # (I,)
    cardinalities: dict[str, int]

    @property
    def n_events(self) -> int:
        return int(self.ts.numel())


def encode_world(world: World) -> EncodedWorld:
    """Encode ``world``; every event's user and item must exist in the users and items tables."""
    users, items, ev = world.users, world.items, world.events
    user_index = pd.Index(users["user_id"].to_numpy())
    item_index = pd.Index(items["item_id"].to_numpy())
    u = user_index.get_indexer(ev["user_id"].to_numpy())
    i = item_index.get_indexer(ev["item_id"].to_numpy())
    if (u < 0).any():
        raise InputError(f"events: user_id {ev['user_id'].to_numpy()[u < 0][0]!r} is not in the users table")
    if (i < 0).any():
        raise InputError(f"events: item_id {ev['item_id'].to_numpy()[i < 0][0]!r} is not in the items table")
    scen, n_scen = _codes(ev["scenario"])
    pos, n_pos = _codes(ev["position"])
    act, n_act = _codes(users["activity_level"])
    cat, n_cat = _codes(items["category"])
    adv_raw = items["advertiser_id"].to_numpy()
    adv_vals, adv = np.unique(adv_raw, return_inverse=True)
    ts = ev["ts"].to_numpy(np.int64)
    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(a, copy=True))  # own, writable memory

    return EncodedWorld(
        user_ids=user_index.to_numpy(), item_ids=item_index.to_numpy(),
        ts=t(ts), user=t(u.astype(np.int64)), item=t(i.astype(np.int64)),
        domain=t(ev["domain"].to_numpy(np.int64)), scenario=t(scen), position=t(pos),
        hour=t(((ts // 3600) % 24).astype(np.int64)), click=t(ev["click"].to_numpy(np.float32)),
        user_activity=t(act), item_category=t(cat), item_advertiser=t(adv.astype(np.int64)),
        item_domain=t(items["domain"].to_numpy(np.int64)),
        cardinalities={"users": len(users), "items": len(items), "scenario": n_scen, "position": n_pos,
                       "hour": 24, "activity": n_act, "category": n_cat, "advertiser": len(adv_vals), "domain": 2},
    )
