"""The evaluator's acceptance check on the planted world, over 10 world seeds.

For world seed k (small scale), LEE compares oracle, noise_low, noise_high, random and
id_shuffled against the baseline (concat fusion, proxy seeds 0..2, default EvalConfig) as UR+IR
and as CR. A seed passes when ΔAUC ranks oracle > noise_low > noise_high > random, random is
judged "no different" and id_shuffled is not judged "better". Target: 9 of 10 seeds per usage.

    python benchmarks/planted_ranking.py [--seeds 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from lee.evaluator.compare import EvalConfig, compare_snapshots
from lee.evaluator.data import stream_from_world
from lee.snapshot import SnapshotStore
from lee.world.config import config_for_scale
from lee.world.generate import generate_world
from lee.world.planted import write_planted_variants

VARIANTS = ("oracle", "noise_low", "noise_high", "random", "id_shuffled")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--fusion", default="concat")
    ap.add_argument("--json")
    args = ap.parse_args()
    rows, passed = [], {"UR+IR": 0, "CR": 0}
    t_all = time.perf_counter()
    for seed in range(args.seeds):
        world = generate_world(config_for_scale("small", seed=seed))
        root = tempfile.mkdtemp(prefix="lee-rank-")
        write_planted_variants(world, root, n_snapshots=1, seed=seed, variants=VARIANTS)
        store = SnapshotStore(root)
        stream = stream_from_world(world)
        for usage in passed:
            t0 = time.perf_counter()
            comp = compare_snapshots(stream, {v: store.latest(v) for v in VARIANTS},
                                     EvalConfig(usage=usage, fusion=args.fusion))
            d = {v.name: v for v in comp.variants}
            deltas = [d[v].delta.delta for v in ("oracle", "noise_low", "noise_high", "random")]
            ok = (all(a > b for a, b in zip(deltas, deltas[1:])) and d["random"].verdict == "no different"
                  and d["id_shuffled"].verdict != "better")
            passed[usage] += ok
            row = {"seed": seed, "usage": usage, "pass": ok, "seconds": round(time.perf_counter() - t0, 1)}
            for v in VARIANTS:
                row[v] = f"{d[v].delta.delta:+.4f} [{d[v].delta.low:+.4f}, {d[v].delta.high:+.4f}] {d[v].verdict}"
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\npassed: UR+IR {passed['UR+IR']}/{args.seeds}, CR {passed['CR']}/{args.seeds} "
          f"({time.perf_counter() - t_all:.0f} s)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"rows": rows, "passed": passed, "seeds": args.seeds}, fh, indent=2)


if __name__ == "__main__":
    main()
