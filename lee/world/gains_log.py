"""A planted click log in which a representation helps one user segment and no other.

Who gains from a representation is only checkable where the answer is known. This generator
writes a dataset (the format of :mod:`lee.data`) whose clicks depend on a user-item affinity
``u · v`` **only for users of the gaining segment(s)**, and a snapshot (variant ``oracle``) holding
exactly those factors as UR and IR. Every other user's clicks depend on item and user biases
alone, which the proxy's id embeddings learn without help, so injecting the oracle can only help
the gaining segment; :func:`write_random_snapshot` writes the placebo (random vectors of the same
shape, no information at all).

Per event: a user (activity-weighted), an item (popularity-weighted), a time, and

    logit = base + b_item + b_user + strength · [segment(u) gains] · u·v / sqrt(dim)
    click ~ Bernoulli(sigmoid(logit)),   value = click · LogNormal(3, 0.6)   (a GMV-like value)

Users carry the categorical attribute ``segment`` (``s00``, ``s01``, ...; uniform) and a numeric
``age`` (uniform 18..70, unrelated to clicks) for quantile bins; items carry ``category``.
Everything is vectorised numpy driven by one seeded generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lee.data.dataset import Dataset, write_dataset
from lee.data.spec import DatasetSpec, FieldRole, FieldSpec, Roles
from lee.errors import InputError
from lee.snapshot import EmbeddingTable, TableKind, write_snapshot

SEGMENT_COL = "segment"
SNAPSHOT_TIME = 1_767_225_600          # 2026-01-01T00:00:00Z: the planted snapshots' event time
START_TS = 1_767_225_600


def segment_names(n_segments: int) -> list[str]:
    """``s00``, ``s01``, ...: the planted segment labels (zero-padded, so they sort as numbers)."""
    return [f"s{k:02d}" for k in range(n_segments)]


@dataclass
class PlantedGains:
    """The planted tables and the factors behind them."""

    spec: DatasetSpec
    events: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame
    user_factors: np.ndarray       # (U, dim), row k belongs to users.user_id[k]
    item_factors: np.ndarray       # (I, dim)
    gaining: tuple[str, ...]

    def write(self, out: str | Path, *, overwrite: bool = False) -> Dataset:
        """Write the dataset directory ``out``."""
        return write_dataset(out, self.spec, self.events, self.users, self.items, overwrite=overwrite)

    def write_oracle(self, root: str | Path, *, variant: str = "oracle", overwrite: bool = False) -> Path:
        """Write the true factors as a snapshot (UR and IR) under ``root/variant``."""
        return write_snapshot(root, variant, SNAPSHOT_TIME, {
            TableKind.UR: EmbeddingTable(self.users["user_id"].to_numpy(np.int64), self.user_factors),
            TableKind.IR: EmbeddingTable(self.items["item_id"].to_numpy(np.int64), self.item_factors),
        }, source_layer="planted factors", overwrite=overwrite)


def write_random_snapshot(root: str | Path, user_ids: np.ndarray, item_ids: np.ndarray, *, dim: int = 8,
                          seed: int = 0, variant: str = "random", overwrite: bool = False) -> Path:
    """A placebo snapshot: standard-normal UR and IR of the given ids, drawn from ``seed`` alone."""
    rng = np.random.default_rng([seed, 17])
    return write_snapshot(root, variant, SNAPSHOT_TIME, {
        TableKind.UR: EmbeddingTable(np.asarray(user_ids, np.int64),
                                     rng.standard_normal((len(user_ids), dim)).astype(np.float32)),
        TableKind.IR: EmbeddingTable(np.asarray(item_ids, np.int64),
                                     rng.standard_normal((len(item_ids), dim)).astype(np.float32)),
    }, source_layer="random (placebo)", overwrite=overwrite)


def generate_gains_log(*, n_users: int = 2000, n_items: int = 300, n_events: int = 40_000, n_segments: int = 5,
                       gaining: Sequence[str] = ("s00",), strength: float = 1.0, dim: int = 8,
                       n_groups: int = 6, noise: float = 0.5, base_logit: float = -1.5,
                       seed: int = 0) -> PlantedGains:
    """The planted tables (see the module docstring). ``gaining`` names the segments whose clicks
    depend on ``u · v``; ``strength`` scales that dependence (0 makes every segment a null)."""
    names = segment_names(n_segments)
    unknown = sorted(set(gaining) - set(names))
    if unknown:
        raise InputError(f"gaining: unknown segment(s) {', '.join(unknown)}; segments are {', '.join(names)}")
    if min(n_users, n_items, n_events) < 1 or n_segments < 1 or dim < 1:
        raise InputError("generate_gains_log: n_users, n_items, n_events, n_segments and dim must be positive")
    rng = np.random.default_rng(seed)
    seg = rng.integers(0, n_segments, n_users)
    users = pd.DataFrame({"user_id": np.arange(n_users, dtype=np.int64),
                          SEGMENT_COL: pd.Categorical.from_codes(seg, categories=names),
                          "age": rng.integers(18, 71, n_users).astype(np.int64)})
    cat = rng.integers(0, n_groups, n_items)
    items = pd.DataFrame({"item_id": np.arange(n_items, dtype=np.int64),
                          "category": pd.Categorical.from_codes(cat, categories=[f"c{k}" for k in range(n_groups)])})
    centroids = rng.standard_normal((n_groups, dim))
    interest = rng.integers(0, n_groups, n_users)           # hidden: no field carries it
    u = (centroids[interest] + noise * rng.standard_normal((n_users, dim))).astype(np.float32)
    v = (centroids[cat] + noise * rng.standard_normal((n_items, dim))).astype(np.float32)
    b_user = rng.normal(0.0, 0.5, n_users)
    b_item = rng.normal(0.0, 0.7, n_items)
    activity = rng.lognormal(0.0, 0.5, n_users)
    pop = rng.lognormal(0.0, 0.7, n_items)
    ev_u = rng.choice(n_users, size=n_events, p=activity / activity.sum())
    ev_i = rng.choice(n_items, size=n_events, p=pop / pop.sum())
    gains = np.isin(np.asarray(names)[seg], list(gaining))
    affinity = np.einsum("ij,ij->i", u[ev_u], v[ev_i]) / np.sqrt(dim)
    logit = base_logit + b_item[ev_i] + b_user[ev_u] + strength * gains[ev_u] * affinity
    click = (rng.random(n_events) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)
    value = click * rng.lognormal(3.0, 0.6, n_events)
    ts = START_TS + np.sort(rng.integers(0, 30 * 86_400, n_events))
    events = pd.DataFrame({"user_id": ev_u.astype(np.int64), "item_id": ev_i.astype(np.int64),
                           "ts": ts.astype(np.int64), "label": click, "value": value})
    spec = DatasetSpec(
        name="planted-gains",
        roles=Roles(label="label", user_id="user_id", item_id="item_id", ts="ts", value="value"),
        fields=(FieldSpec(name=SEGMENT_COL, role=FieldRole.USER, table="users"),
                FieldSpec(name="category", role=FieldRole.ITEM, table="items")),
        source={"format": "planted-gains", "seed": seed, "gaining": list(gaining), "strength": strength,
                "dim": dim, "n_segments": n_segments},
    )
    return PlantedGains(spec, events, users, items, u, v, tuple(gaining))


def generate_user_ab_log(users: pd.DataFrame, *, gaining: Sequence[str] = (), lift: float = 0.0,
                         arms: tuple[str, str] = ("control", "treatment"), clicks_per_user: float = 3.0,
                         seed: int = 0) -> pd.DataFrame:
    """A user-level A/B log over ``users`` (a frame with ``user_id`` and ``segment``): one row per
    user, arms assigned 50/50 at random, ``clicks ~ Poisson(clicks_per_user · a_u · m)`` with a
    per-user activity ``a_u ~ LogNormal(0, 0.5)`` and ``m = 1 + lift`` for treated users of the
    ``gaining`` segments (1 otherwise), ``revenue`` = the sum of one LogNormal(3, 0.6) price per
    click. Every other column of ``users`` is kept as an attribute. With ``lift = 0`` the arms are
    a placebo: no segment differs between them except by chance."""
    if "user_id" not in users.columns or SEGMENT_COL not in users.columns:
        raise InputError(f"generate_user_ab_log: users need columns user_id and {SEGMENT_COL}; "
                         f"got {', '.join(map(str, users.columns))}")
    if not (np.isfinite(lift) and lift > -1):
        raise InputError(f"generate_user_ab_log: lift must be finite and above -1; got {lift}")
    rng = np.random.default_rng([seed, 29])
    n = len(users)
    treated = np.zeros(n, dtype=bool)
    treated[rng.permutation(n)[: n // 2]] = True
    gains = users[SEGMENT_COL].astype(str).isin([str(g) for g in gaining]).to_numpy()
    activity = rng.lognormal(0.0, 0.5, n)
    clicks = rng.poisson(clicks_per_user * activity * np.where(treated & gains, 1.0 + lift, 1.0))
    owner = np.repeat(np.arange(n), clicks)
    revenue = np.bincount(owner, weights=rng.lognormal(3.0, 0.6, owner.size), minlength=n)
    log = pd.DataFrame({"user_id": users["user_id"].to_numpy(),
                        "arm": np.where(treated, arms[1], arms[0]),
                        "clicks": clicks.astype(np.int64), "revenue": revenue})
    for col in users.columns:
        if col != "user_id":
            log[col] = users[col].to_numpy()
    return log
