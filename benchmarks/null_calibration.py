"""How often does LEE call a random snapshot "better" or "worse"? (It should be "no different".)

A random snapshot — a Gaussian vector per user and per item, nothing learned — carries no
information about clicks. Judged at the nominal 95% level, LEE may call it "better" or "worse" in
at most 5% of independent replicates. For each replicate r (0..R-1), each dataset and each fusion
mode (concat, gate, iim, retrieval), a fresh random snapshot (seed r, UR and IR of ``--dim``) is
evaluated as ``UR+IR`` against the baseline with proxy seeds 3r, 3r+1, 3r+2 (so replicates share
no training randomness), with the default ``EvalConfig`` otherwise. Reported per (dataset, mode):
replicates, "better", "worse", the false-verdict rate with its Clopper-Pearson 95% interval, the
one-sided binomial p-value of "rate <= 5%" (small = the rate is shown to exceed 5%), the mean and
spread of ΔAUC, and seconds.

    python benchmarks/null_calibration.py [--replicates 20] [--world-scale small] [--modes concat,gate,iim,retrieval]
                                          [--datasets world,movielens] [--json out.json]

Datasets: the planted world (``--world-scale``, seed 0, ad events) and MovieLens latest-small
(``fixtures/real``, imported with the default per-user split).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch

from lee.data.dataset import Dataset
from lee.data.importers import import_dataset
from lee.evaluator.compare import EvalConfig
from lee.evaluator.data import DownstreamStream, stream_from_dataset, stream_from_world
from lee.evaluator.nulls import null_verdict, random_snapshot, summarise
from lee.world.config import config_for_scale
from lee.world.generate import generate_world

REPO = Path(__file__).resolve().parents[1]
MODES = ("concat", "gate", "iim", "retrieval")


def calibrate(stream: DownstreamStream, name: str, modes: list[str], replicates: int, dim: int,
              cfg: EvalConfig, root: Path, log: Any = print) -> dict[str, Any]:
    """Every mode over ``replicates`` random snapshots of ``stream``."""
    out: dict[str, Any] = {}
    snaps = [random_snapshot(stream, root / name, r, dim) for r in range(replicates)]
    for mode in modes:
        rows = []
        for r, snap in enumerate(snaps):
            rows.append(null_verdict(stream, snap, mode, r, cfg))
            log(json.dumps({"dataset": name, "mode": mode, **{k: (round(v, 5) if isinstance(v, float) else v)
                                                               for k, v in rows[-1].items()}}))
        out[mode] = {"summary": summarise(rows), "rows": rows}
    return out


def machine() -> str:
    load = os.getloadavg()
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
            f"({torch.get_num_threads()} thread(s)), load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=20)
    ap.add_argument("--world-scale", default="small")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--datasets", default="world,movielens")
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    modes = [m for m in args.modes.split(",") if m]
    cfg = EvalConfig(usage="UR+IR")
    print(f"# null calibration: random snapshots judged at the {cfg.level:.0%} level\nmachine: {machine()}")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="lee-null-") as tmp:
        root = Path(tmp)
        for name in args.datasets.split(","):
            if name == "world":
                stream = stream_from_world(generate_world(config_for_scale(args.world_scale, seed=0)))
                label = f"planted world ({args.world_scale}, seed 0)"
            elif name == "movielens":
                import_dataset("movielens", REPO / "fixtures/real/movielens-latest-small", root / "ml")
                stream = stream_from_dataset(Dataset.open(root / "ml"))
                label = "MovieLens latest-small"
            else:
                raise SystemExit(f"unknown dataset {name!r}: world or movielens")
            results[label] = calibrate(stream, name, modes, args.replicates, args.dim, cfg, root)
    print(f"\nmachine at the end: {machine()}\n")
    print("| dataset | fusion | replicates | better | worse | false rate [95% CI] | p(rate > 5%) "
          "| ΔAUC mean ± sd | s |")
    print("|---|---|---:|---:|---:|---|---:|---|---:|")
    for label, per_mode in results.items():
        for mode, r in per_mode.items():
            s = r["summary"]
            print(f"| {label} | {mode} | {s['replicates']} | {s['better']} | {s['worse']} | {s['false_rate']:.0%} "
                  f"[{s['ci_low']:.0%}, {s['ci_high']:.0%}] | {s['p_rate_above_nominal']:.3f} | "
                  f"{s['delta_mean']:+.4f} ± {s['delta_sd']:.4f} | {s['seconds']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
