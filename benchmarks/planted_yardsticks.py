"""Graded yardsticks on the planted world: does LEE order rank-k projections and noise levels?

For each world seed (``small`` scale, ``click_model`` balanced by default), the graded planted
variants — the oracle, its rank-8/4/2 projections, the oracle plus Gaussian noise of 0.25, 0.5,
1 and 2 × each dimension's std, and random — are written as one snapshot each and compared by LEE
against the baseline (concat fusion, proxy seeds 0..2, the default EvalConfig otherwise).

A seed passes the rank chain when ΔAUC ranks oracle > rank_8 > rank_4 > rank_2 > random, and
the noise chain when oracle > noise_0.25 > noise_0.5 > noise_1 > noise_2 (the benchmark also
reports whether noise_2 > random). Target: 9 of 10 world seeds per usage.

    python benchmarks/planted_yardsticks.py [--seeds 10] [--usages UR+IR,CR] [--click-model balanced]
                                            [--json benchmarks/out/planted_yardsticks.json]

Run it with ``nice -n 10``; on the 2-core machine one world seed takes about a minute per usage.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from lee.evaluator.compare import EvalConfig, compare_snapshots
from lee.evaluator.data import stream_from_world
from lee.snapshot import SnapshotStore
from lee.world.config import config_for_scale
from lee.world.generate import generate_world
from lee.world.planted import write_planted_variants

RANK_CHAIN = ("oracle", "rank_8", "rank_4", "rank_2", "random")
NOISE_CHAIN = ("oracle", "noise_0.25", "noise_0.5", "noise_1", "noise_2")
VARIANTS = (*RANK_CHAIN, *NOISE_CHAIN[1:])


def _descending(values: list[float]) -> bool:
    return all(a > b for a, b in zip(values, values[1:]))


def one_seed(seed: int, usages: list[str], click_model: str, scale: str) -> list[dict]:
    """Every usage's ΔAUC per variant on world ``seed``, with the chains' pass/fail."""
    world = generate_world(config_for_scale(scale, seed=seed, click_model=click_model))
    rows = []
    with tempfile.TemporaryDirectory(prefix="lee-yard-") as root:
        write_planted_variants(world, root, n_snapshots=1, seed=seed, variants=VARIANTS)
        store = SnapshotStore(root)
        stream = stream_from_world(world)
        for usage in usages:
            t0 = time.perf_counter()
            comp = compare_snapshots(stream, {v: store.latest(v) for v in VARIANTS}, EvalConfig(usage=usage))
            d = {v.name: v for v in comp.variants}
            delta = {v: d[v].delta.delta for v in VARIANTS}
            row = {"seed": seed, "usage": usage,
                   "rank_chain": _descending([delta[v] for v in RANK_CHAIN]),
                   "noise_chain": _descending([delta[v] for v in NOISE_CHAIN]),
                   "noise_2_above_random": delta["noise_2"] > delta["random"],
                   "random_verdict": d["random"].verdict,
                   "seconds": round(time.perf_counter() - t0, 1),
                   "delta": delta,
                   "interval": {v: [d[v].delta.low, d[v].delta.high] for v in VARIANTS},
                   "verdict": {v: d[v].verdict for v in VARIANTS}}
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("seed", "usage", "rank_chain", "noise_chain",
                                                  "noise_2_above_random", "random_verdict", "seconds")})
                  + "  " + " ".join(f"{v} {delta[v]:+.4f}" for v in VARIANTS), flush=True)
    return rows


def summarise(rows: list[dict], usages: list[str]) -> dict:
    out = {}
    for usage in usages:
        mine = [r for r in rows if r["usage"] == usage]
        out[usage] = {
            "seeds": len(mine),
            "rank_chain": sum(r["rank_chain"] for r in mine),
            "noise_chain": sum(r["noise_chain"] for r in mine),
            "both": sum(r["rank_chain"] and r["noise_chain"] for r in mine),
            "noise_2_above_random": sum(r["noise_2_above_random"] for r in mine),
            "random_no_different": sum(r["random_verdict"] == "no different" for r in mine),
            "delta_range": {v: [min(r["delta"][v] for r in mine), max(r["delta"][v] for r in mine)]
                            for v in VARIANTS},
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--usages", default="UR+IR,CR")
    ap.add_argument("--click-model", default="balanced")
    ap.add_argument("--scale", default="small")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared box)")
    ap.add_argument("--json", default=str(Path(__file__).resolve().parent / "out" / "planted_yardsticks.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    usages = [u for u in args.usages.split(",") if u]
    t_all = time.perf_counter()
    rows: list[dict] = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        rows += one_seed(seed, usages, args.click_model, args.scale)
    summary = summarise(rows, usages)
    seconds = time.perf_counter() - t_all
    for usage, s in summary.items():
        print(f"{usage}: rank chain {s['rank_chain']}/{s['seeds']}, noise chain {s['noise_chain']}/{s['seeds']}, "
              f"both {s['both']}/{s['seeds']}, noise_2 > random {s['noise_2_above_random']}/{s['seeds']}, "
              f"random 'no different' {s['random_no_different']}/{s['seeds']}")
        for v, (lo, hi) in s["delta_range"].items():
            print(f"    {v:11s} ΔAUC {lo:+.4f} .. {hi:+.4f}")
    print(f"({seconds:.0f} s, click model {args.click_model}, {args.scale} scale)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"click_model": args.click_model, "scale": args.scale, "seconds": seconds,
                       "summary": summary, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
