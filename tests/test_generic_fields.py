"""The proxy uses a dataset's own fields: every declared field becomes an input, encoded by its type,
and feature-masking importance finds the one field a generated log's clicks depend on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.importance import default_groups, importance_for_snapshot
from lee.data.dataset import Dataset, write_dataset
from lee.data.spec import DatasetSpec, Derived, FieldRole, FieldSpec, FieldType, Roles
from lee.evaluator.data import stream_from_dataset
from lee.evaluator.models import ProxyConfig, ProxyCTR

N_EVENTS, N_USERS, N_ITEMS = 12_000, 300, 120


def generated_log(tmp: Path, seed: int = 0) -> Dataset:
    """Clicks depend on one context field (``channel``: 'search' triples the odds of a click);
    every other field is noise."""
    rng = np.random.default_rng(seed)
    u = rng.integers(0, N_USERS, N_EVENTS)
    i = rng.integers(0, N_ITEMS, N_EVENTS)
    channel = rng.choice(["search", "feed", "email", "push"], N_EVENTS)
    logit = -1.8 + 1.6 * (channel == "search")
    events = pd.DataFrame({
        "t": np.sort(rng.integers(1_700_000_000, 1_700_000_000 + 20 * 86_400, N_EVENTS)),
        "uid": [f"u{k}" for k in u], "iid": i, "click": (rng.random(N_EVENTS) < 1 / (1 + np.exp(-logit))).astype(int),
        "channel": channel, "device": rng.choice(["ios", "android", "web"], N_EVENTS),
        "slot": rng.integers(1, 6, N_EVENTS), "basket": rng.lognormal(3, 1, N_EVENTS).round(2),
        "tags": ["|".join(rng.choice(["a", "b", "c", "d", "e"], rng.integers(0, 4), replace=False))
                 for _ in range(N_EVENTS)],
    })
    users = pd.DataFrame({"uid": [f"u{k}" for k in range(N_USERS)], "age": rng.integers(18, 80, N_USERS),
                          "country": rng.choice(["de", "fr", "nl"], N_USERS)})
    items = pd.DataFrame({"iid": np.arange(N_ITEMS), "brand": rng.choice([f"b{k}" for k in range(7)], N_ITEMS),
                          "stars": rng.uniform(1, 5, N_ITEMS).round(1)})
    fields = (
        FieldSpec(name="channel", role=FieldRole.CONTEXT),
        FieldSpec(name="device", role=FieldRole.CONTEXT),
        FieldSpec(name="slot", role=FieldRole.CONTEXT),
        FieldSpec(name="basket", role=FieldRole.CONTEXT, type=FieldType.NUMERIC),
        FieldSpec(name="tags", role=FieldRole.CONTEXT, type=FieldType.MULTI),
        FieldSpec(name="hour", role=FieldRole.CONTEXT, derived=Derived.HOUR_OF_DAY),
        FieldSpec(name="weekday", role=FieldRole.CONTEXT, derived=Derived.DAY_OF_WEEK),
        FieldSpec(name="age", role=FieldRole.USER, type=FieldType.NUMERIC, table="users"),
        FieldSpec(name="country", role=FieldRole.USER, table="users"),
        FieldSpec(name="brand", role=FieldRole.ITEM, table="items"),
        FieldSpec(name="stars", role=FieldRole.ITEM, type=FieldType.NUMERIC, table="items"),
    )
    spec = DatasetSpec(name="generated", roles=Roles(label="click", user_id="uid", item_id="iid", ts="t"),
                       fields=fields)
    write_dataset(tmp / "ds", spec, events, users, items)
    return Dataset.open(tmp / "ds")


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> Dataset:
    return generated_log(tmp_path_factory.mktemp("fields"))


def test_every_declared_field_is_an_input(log: Dataset) -> None:
    s = stream_from_dataset(log)
    names = [f.name for f in log.spec.fields]
    assert len(names) >= 8 and s.fields == ("user", "item", *names)
    card = dict(zip(s.fields, s.cardinalities, strict=True))
    assert card["user"] == N_USERS and card["item"] == N_ITEMS
    assert card["channel"] == 4 and card["device"] == 3 and card["slot"] == 5 and card["country"] == 3
    assert card["hour"] == 24 and card["weekday"] == 7 and card["basket"] == 10   # 10 quantile buckets
    assert card["tags"] == 5 + 1                                                  # 5 tags + padding
    slots = dict(zip(s.fields, s.field_slots, strict=True))
    assert slots["tags"] == 8 and sum(s.field_slots) == s.x.shape[1]
    # the multi-valued column holds each event's tags (codes 1..5 in sorted order, 0 pads)
    a, b = s.field_columns()[s.fields.index("tags")]
    first = log.events["tags"].iloc[0]
    want = sorted("abcde".index(t) + 1 for t in first.split("|")) if first else []
    assert sorted(int(c) for c in s.x[0, a:b] if c) == want
    # numeric buckets follow the value order: a larger basket never gets a lower bucket
    a, _ = s.field_columns()[s.fields.index("basket")]
    codes = s.x[:, a].numpy()
    values = log.events["basket"].to_numpy()
    order = np.argsort(values, kind="stable")
    assert (np.diff(codes[order]) >= 0).all() and set(codes) == set(range(10))


def test_the_proxy_trains_on_all_fields(log: Dataset) -> None:
    s = stream_from_dataset(log)
    model = ProxyCTR(s.cardinalities, ProxyConfig(), slots=s.slots)
    out = model(s.x[:64])
    assert out.shape == (64,) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(e.weight.grad is not None for e in model.emb)          # every field's table is used


def test_groups_follow_the_declared_roles(log: Dataset) -> None:
    g = default_groups(stream_from_dataset(log))
    assert g["user side"] == ("user", "age", "country") and g["item side"] == ("item", "brand", "stars")
    assert "channel" in g["context"] and "weekday" in g["context"]


def test_importance_ranks_the_informative_field_first(log: Dataset) -> None:
    s = stream_from_dataset(log)
    res = importance_for_snapshot(s, None, mode="permutation", n_repeats=2, n_boot=30, seed=0)
    features = res.table[res.table["kind"] == "feature"].sort_values("drop", ascending=False)
    assert features["target"].iloc[0] == "channel"
    top = features.iloc[0]
    assert top["ci_low"] > 0 and top["drop"] > 3 * max(features["drop"].iloc[1], 1e-3)
