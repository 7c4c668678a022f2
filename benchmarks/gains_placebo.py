"""Placebo check of the segment analyses' multiplicity control: how often does noise look like a segment effect?

Two placebos, each split into 20 segments (``segment``, s00..s19, uniform over users):

* **gains** (``analysis.gains``): for run r, a planted dataset (world seed r; clicks depend on a
  user-item affinity for segment s00 only) and a *random* snapshot (UR and IR of standard-normal
  vectors, seed r): the representation carries no information, so no segment should gain or
  lose. Baseline and variant are trained as LEE trains them (concat, UR+IR, proxy seeds 0..S-1,
  default windows), and the segment table is adjusted with Holm (default) or BH.
* **A/B** (``analysis.segments.segment_lift``): for run r, users of a planted dataset assigned to
  two arms at random (seed r), clicks per user as the metric: no segment has a lift.

Reported per placebo: the share of runs with *any* adjusted-significant segment (Holm bounds it
by alpha = 5%), beside the share with any unadjusted p < 0.05 (what the workbench reported before
the adjustment: about 1 - 0.95^20 = 64% for independent segments), with a Clopper-Pearson 95%
interval.

    python benchmarks/gains_placebo.py [--runs 40] [--ab-runs 400] [--adjust holm] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy.stats import binomtest

from analysis.gains import gains_for_snapshot
from analysis.segments import segment_lift
from lee.data.dataset import Dataset
from lee.errors import SmallSampleWarning
from lee.evaluator.models import ProxyConfig
from lee.snapshot import SnapshotStore
from lee.world.gains_log import generate_gains_log, generate_user_ab_log, write_random_snapshot


def _rate(hits: int, runs: int) -> dict[str, object]:
    ci = binomtest(hits, runs).proportion_ci(0.95) if runs else None
    return {"hits": hits, "runs": runs, "rate": hits / runs if runs else float("nan"),
            "ci95": [round(ci.low, 4), round(ci.high, 4)] if ci else None}


def gains_placebo(args: argparse.Namespace) -> dict[str, object]:
    hits = {"auc": 0, "logloss": 0, "value_auc": 0, "auc_unadjusted": 0}
    rows = []
    for r in range(args.runs):
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="lee-gains-placebo-") as tmp:
            planted = generate_gains_log(n_users=args.users, n_items=args.items, n_events=args.events,
                                         n_segments=args.segments, strength=args.strength, seed=r)
            planted.write(Path(tmp) / "data")
            write_random_snapshot(Path(tmp) / "snapshots", planted.users["user_id"], planted.items["item_id"],
                                  seed=r)
            res = gains_for_snapshot(Dataset.open(Path(tmp) / "data"),
                                     SnapshotStore(Path(tmp) / "snapshots").latest("random"),
                                     by="segment", seeds=tuple(range(args.proxy_seeds)), windows=args.windows,
                                     n_boot=args.boot, adjust=args.adjust, bootstrap_seed=r, variant="random",
                                     proxy=ProxyConfig(), min_users=args.min_users)
        segs = res.segments()
        tested = segs.loc[segs["tested"]]
        row = {"run": r, "tested": int(len(tested)), "seconds": round(time.perf_counter() - t0, 1),
               "overall_delta_auc": round(float(res.row("all")["delta_auc"]), 5),
               "min_p_adjusted": round(float(tested["p_adjusted"].min()), 4),
               "significant": [str(s) for s in tested.loc[tested["significant"], "segment"]],
               "significant_logloss": [str(s) for s in tested.loc[tested["logloss_significant"], "segment"]],
               "significant_value_auc": [str(s) for s in tested.loc[tested["value_significant"], "segment"]],
               "unadjusted_p_below_05": int((tested["p_value"] < 0.05).sum())}
        hits["auc"] += bool(row["significant"])
        hits["logloss"] += bool(row["significant_logloss"])
        hits["value_auc"] += bool(row["significant_value_auc"])
        hits["auc_unadjusted"] += row["unadjusted_p_below_05"] > 0
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {"rows": rows, **{k: _rate(v, args.runs) for k, v in hits.items()}}


def ab_placebo(args: argparse.Namespace) -> dict[str, object]:
    planted = generate_gains_log(n_users=args.ab_users, n_items=50, n_events=10, n_segments=args.segments, seed=0)
    hits = {"adjusted": 0, "unadjusted": 0}
    segments_tested = []
    for r in range(args.ab_runs):
        log = generate_user_ab_log(planted.users, seed=r)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SmallSampleWarning)
            res = segment_lift(log, by="segment", metric="clicks", n_boot=10, adjust=args.adjust, seed=r)
        segs = res.table.loc[res.table["segment"] != "all"]
        segments_tested.append(int(segs["p_value"].notna().sum()))
        hits["adjusted"] += bool(segs["significant"].any())
        hits["unadjusted"] += bool((segs["p_value"] < 0.05).any())
    return {"segments_tested": [min(segments_tested), max(segments_tested)],
            **{k: _rate(v, args.ab_runs) for k, v in hits.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=40, help="gains placebo runs (dataset + random snapshot seeds)")
    ap.add_argument("--ab-runs", type=int, default=400, help="A/B placebo runs (random arm seeds)")
    ap.add_argument("--segments", type=int, default=20)
    ap.add_argument("--users", type=int, default=4000)
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--events", type=int, default=60_000)
    ap.add_argument("--strength", type=float, default=3.0, help="planted affinity strength of segment s00")
    ap.add_argument("--proxy-seeds", type=int, default=3)
    ap.add_argument("--windows", type=int, default=10)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--min-users", type=int, default=50)
    ap.add_argument("--ab-users", type=int, default=20_000)
    ap.add_argument("--adjust", default="holm", choices=["holm", "bh"])
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
               f"(1 thread), numpy {np.__version__}")
    print(f"machine: {machine}\nsettings: {json.dumps(vars(args))}", flush=True)
    t0 = time.perf_counter()
    ab = ab_placebo(args)
    print("A/B placebo:", json.dumps(ab), flush=True)
    gains = gains_placebo(args) if args.runs else {}
    out = {"machine": machine, "settings": vars(args), "ab": ab,
           "gains": {k: v for k, v in gains.items() if k != "rows"}, "seconds": round(time.perf_counter() - t0)}
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({**out, "gains_rows": gains.get("rows", [])}, indent=2),
                                   encoding="utf-8")


if __name__ == "__main__":
    main()
