"""Does the upstream model learn the planted world? Held-out AUC vs the oracle towers, UR clusters, learning.

For a planted world (``--scale small``, the demo's, by default) the triple-tower model is trained
as ``lee upstream train`` trains it (``TrainConfig`` with the overrides given) and, with the same
training settings, the same mix tower over frozen towers holding the planted ``oracle`` and
``random`` UR/IR (``FrozenTower``). Reported per setting:

- held-out ad AUC (last 20% of the stream, never trained on) of the learned model, the oracle
  towers and the random towers, and the gap oracle − learned;
- the adjusted Rand index between K-means (k = the number of planted groups, scikit-learn,
  10 restarts) on the final UR and the planted groups, for the learned UR and the oracle's;
- over the snapshot timeline: the mean same-id cosine of UR between consecutive snapshots
  (volatility: it should rise as the model settles) and the health monitor's verdict per snapshot;
- the held-out ad AUC of the same mix tower over frozen *centroid* towers (each user at its planted
  group's mean oracle vector, each item at its category's): the share of the oracle a model
  reaches by learning interests alone;
- training seconds (torch threads as given; the tests and the demo use one).

    python benchmarks/upstream_quality.py [--scale small] [--seed 0] [--click-model legacy]
        [--settings "epochs_per_interval=1" "epochs_per_interval=4,lr=0.003"] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from analysis.health import snapshot_health
from lee.features import encode_world
from lee.snapshot import SnapshotStore
from lee.upstream.model import FrozenTower, UpstreamConfig
from lee.upstream.train import TrainConfig, train_upstream
from lee.world.config import config_for_scale
from lee.world.generate import generate_world
from lee.world.planted import write_planted_variants


def parse_setting(text: str) -> tuple[dict, dict]:
    """``key=value,...`` split into TrainConfig and UpstreamConfig overrides (by field name)."""
    train_keys = {f.name: f.type for f in fields(TrainConfig)}
    model_keys = {f.name: f.type for f in fields(UpstreamConfig)}
    tk, mk = {}, {}
    for part in (p for p in text.split(",") if p):
        key, value = part.split("=", 1)
        parsed = json.loads(value) if value[:1] in "[{" else (float(value) if "." in value or "e" in value
                                                                  else int(value))
        if key in train_keys:
            tk[key] = parsed
        elif key in model_keys:
            mk[key] = tuple(parsed) if isinstance(parsed, list) else parsed
        else:
            raise SystemExit(f"unknown setting {key!r}")
    return tk, mk


def _frozen(store: SnapshotStore, variant: str, kind: str, ids: np.ndarray) -> FrozenTower:
    table = store.latest(variant).load(kind)
    rows = pd.Index(table.ids).get_indexer(ids)
    return FrozenTower(torch.from_numpy(table.vectors[rows]))


def _centroid_towers(world, enc, planted: SnapshotStore) -> tuple[FrozenTower, FrozenTower]:
    """The oracle's group part only: every user at its group's centroid, every item at its category's
    (the oracle UR/IR averaged per planted group / category, same embedding). What a model that
    learns each user's interests but nothing idiosyncratic could reach."""
    ur, ir = (_frozen(planted, "oracle", k, ids).table.numpy() for k, ids in (("UR", enc.user_ids),
                                                                             ("IR", enc.item_ids)))
    g = world.users.set_index("user_id")["group"].reindex(enc.user_ids).to_numpy()
    c = world.items.set_index("item_id")["category"].cat.codes.reindex(enc.item_ids).to_numpy()
    mu = np.stack([ur[g == k].mean(0) for k in range(g.max() + 1)])
    mi = np.stack([ir[c == k].mean(0) if (c == k).any() else ir.mean(0) for k in range(g.max() + 1)])
    return FrozenTower(torch.from_numpy(mu[g])), FrozenTower(torch.from_numpy(mi[c]))


def ur_ari(store: SnapshotStore, variant: str, users: pd.DataFrame, k: int, when=None) -> float:
    """ARI between K-means on a UR table and the planted groups (ids without a vector left out)."""
    snap = store.latest(variant) if when is None else store.open(variant, when)
    table = snap.load("UR")
    group = users.set_index("user_id")["group"].reindex(table.ids).to_numpy()
    x = table.vectors.astype(np.float64)
    x = (x - x.mean(0)) / (x.std(0) + 1e-12)
    labels = KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(x)
    return float(adjusted_rand_score(group, labels))


def timeline(store: SnapshotStore, variant: str) -> dict:
    """Same-id UR cosine between consecutive snapshots, and the health monitor's flags."""
    times = store.times(variant)
    cos = []
    for a, b in zip(times, times[1:]):
        ta, tb = store.open(variant, a).load("UR"), store.open(variant, b).load("UR")
        rows = pd.Index(ta.ids).get_indexer(tb.ids)
        keep = rows >= 0
        x, y = ta.vectors[rows[keep]].astype(np.float64), tb.vectors[keep].astype(np.float64)
        c = (x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1) + 1e-12)
        cos.append(round(float(c.mean()), 4))
    health = snapshot_health(store, variant)
    snaps = health.snapshots
    return {"snapshots": len(times), "ur_cosine_next": cos,
            "healthy": [bool(h) for h in snaps["healthy"]],
            "broken": [bool(b) for b in health.table.groupby("time", sort=True)["broken"].any()],
            "reasons": [r for r in snaps["reasons"]]}


def run(world, enc, setting: str, planted: SnapshotStore, with_refs: bool) -> dict:
    tk, mk = parse_setting(setting)
    tcfg, mcfg = TrainConfig(**tk), UpstreamConfig(**mk)
    out: dict = {"setting": setting}
    with tempfile.TemporaryDirectory(prefix="lee-upq-") as root:
        t0 = time.perf_counter()
        res = train_upstream(enc, root, model_cfg=mcfg, train_cfg=tcfg, progress=False)
        out["seconds"] = round(time.perf_counter() - t0, 1)
        out["auc_learned"] = round(res.holdout_auc_ad, 4)
        out["auc_content"] = round(res.holdout_auc_content, 4)
        store = SnapshotStore(root)
        k = int(world.users["group"].max()) + 1
        out["ari_learned"] = round(ur_ari(store, "upstream", world.users, k), 3)
        out |= timeline(store, "upstream")
    if with_refs:
        towers = {v: (_frozen(planted, v, "UR", enc.user_ids), _frozen(planted, v, "IR", enc.item_ids))
                  for v in ("oracle", "random")}
        towers["centroids"] = _centroid_towers(world, enc, planted)
        for name, (ut, it) in towers.items():
            r = train_upstream(enc, None, model_cfg=mcfg, train_cfg=tcfg, progress=False, user_tower=ut, item_tower=it)
            out[f"auc_{name}"] = round(r.holdout_auc_ad, 4)
        out["gap_to_oracle"] = round(out["auc_oracle"] - out["auc_learned"], 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="small")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--click-model", default="legacy")
    ap.add_argument("--settings", nargs="+", default=[""])
    ap.add_argument("--no-refs", action="store_true", help="skip the frozen oracle/random towers")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    world = generate_world(config_for_scale(args.scale, seed=args.seed, click_model=args.click_model))
    enc = encode_world(world)
    rows = []
    with tempfile.TemporaryDirectory(prefix="lee-upq-planted-") as proot:
        write_planted_variants(world, proot, variants=("oracle", "random"), n_snapshots=1, seed=args.seed)
        planted = SnapshotStore(proot)
        k = int(world.users["group"].max()) + 1
        ari_oracle = ur_ari(planted, "oracle", world.users, k)
        print(json.dumps({"world": args.scale, "seed": args.seed, "click_model": args.click_model,
                          "events": len(world.events), "ari_oracle": round(ari_oracle, 3)}), flush=True)
        for setting in args.settings:
            row = run(world, enc, setting, planted, not args.no_refs)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"scale": args.scale, "seed": args.seed, "click_model": args.click_model,
                       "ari_oracle": ari_oracle, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
