"""Fidelity benchmark: does LEE rank representations as full downstream training would, and how much faster?

Runs ``lee fidelity``'s computation (:func:`analysis.fidelity.run_fidelity`) on

* **planted** — a generated planted world (``--scale``, ``--world-seed``, optional ``--events`` to cut the
  event count) with every variant family: the planted oracle, its rank-2/4/8 projections, graded noise
  levels, random and id-shuffled; upstream snapshots at successive times (the upstream model trained on
  the events before the first test window only) and the CR of each upstream layer;
* **movielens** — MovieLens latest-small through the generic path (``lee data import --format movielens``:
  click = rating >= 4, the later 30% of each user's ratings downstream), variants: upstream snapshots at
  successive times and per-layer CRs of the upstream model trained on the upstream part, rank-k and
  noise versions of the latest upstream snapshot, a random snapshot shaped like it.

Per dataset it prints and writes (``--out DIR/<name>/fidelity.json``) Kendall's tau and Spearman's rho with
their bootstrap intervals (over test events, user-clustered), the verdict agreement, the wall-time ratio
(full / LEE, summed over every model run), the pairs the two rankings order differently and the machine's
load before and after. torch runs one thread (``--threads``): on a 2-core box shared with other work two
threads stall at every parallel region; both protocols run under the same setting.

    nice -n 10 python benchmarks/fidelity.py                                   # planted (tiny) + MovieLens
    nice -n 10 python benchmarks/fidelity.py --only planted --scale small --seeds 0,1,2 --full-seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MOVIELENS = ROOT / "fixtures" / "real" / "movielens-latest-small"


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def _settings(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = json.loads(value)
    return out


def _code_version() -> dict[str, Any]:
    """The commit the run used and whether lee/ had uncommitted edits (the engine changes under a long run)."""
    import subprocess

    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()
        except OSError:
            return ""

    return {"commit": git("rev-parse", "HEAD"), "lee_dirty": bool(git("status", "--porcelain", "--", "lee"))}


def planted_world(out: Path, scale: str, seed: int, events: int | None, click_model: str) -> Path:
    """Generate the planted world into ``out`` (a world directory opens as a dataset)."""
    from lee.world.config import config_for_scale
    from lee.world.generate import generate_world
    from lee.world.io import save_world

    overrides: dict[str, Any] = {"click_model": click_model, **({"n_events": events} if events else {})}
    world = generate_world(config_for_scale(scale, seed=seed, **overrides))
    save_world(world, out, overwrite=True)
    return out


def movielens_data(out: Path, src: Path) -> Path:
    """``lee data import --format movielens`` (the generic path, default conventions) into ``out``."""
    from lee.data.importers import ImportOptions, import_dataset

    import_dataset("movielens", src, out, ImportOptions(split="user:0.3"), overwrite=True)
    return out


def summarize(name: str, res: Any) -> dict[str, Any]:
    m = res.metrics
    t = res.variants
    return {
        "dataset": name, "usage": res.config["usage"], "n_variants": m["n_variants"], "kendall_tau": m["kendall_tau"],
        "kendall_tau_ci": m["kendall_tau_ci"], "spearman_rho": m["spearman_rho"],
        "spearman_rho_ci": m["spearman_rho_ci"], "kendall_tau_test_windows": m["kendall_tau_test_windows"],
        "verdict_agreement": m["verdict_agreement"], "cohen_kappa": m["cohen_kappa"],
        "time_ratio": m["time_ratio"], "lee_seconds": m["lee_seconds"], "full_seconds": m["full_seconds"],
        "baselines": {k: res.baselines[k] for k in ("lee_auc", "lee_auc_test_windows", "full_auc", "stronger")},
        "pairs": t[["variant", "family", "usage", "lee_delta_auc", "lee_verdict", "full_delta_auc", "full_verdict",
                    "lee_rank", "full_rank", "full_epochs"]].to_dict(orient="records"),
        "swaps": res.swaps.head(10).to_dict(orient="records"), "upstream": {
            k: res.upstream.get(k) for k in ("snapshots", "holdout_auc", "train_events", "seconds")},
        "machine": res.machine, "notes": res.notes, "seconds": res.seconds,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=["planted", "movielens"], help="one dataset (default: both)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "fidelity")
    ap.add_argument("--scale", default="tiny", help="planted world scale (tiny, small, medium)")
    ap.add_argument("--world-seed", type=int, default=0)
    ap.add_argument("--events", type=int, help="planted world: override n_events")
    ap.add_argument("--click-model", default="balanced", help="planted world: legacy or balanced")
    ap.add_argument("--usage", default="auto", help="auto (UR+IR where a variant has both, else CR), CR, UR+IR, ...")
    ap.add_argument("--movielens", type=Path, default=MOVIELENS)
    ap.add_argument("--seeds", default="0", help="LEE proxy seeds")
    ap.add_argument("--full-seeds", default="0", help="full model seeds")
    ap.add_argument("--windows", type=int, default=10)
    ap.add_argument("--test-windows", type=int, default=3)
    ap.add_argument("--max-epochs", type=int, default=8)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--upstream-times", type=int, default=4)
    ap.add_argument("--variants", help="comma-separated families or name patterns (default: all)")
    ap.add_argument("--full", action="append", default=[], metavar="KEY=VALUE",
                    help="full model setting (FullConfig), value as JSON: --full sparse_lr=0.01")
    ap.add_argument("--proxy", action="append", default=[], metavar="KEY=VALUE",
                    help="LEE proxy setting (ProxyConfig), value as JSON: --proxy epochs_per_window=2")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from analysis.fidelity import FidelityConfig, run_fidelity
    from analysis.fidelity_variants import CatalogueConfig

    cfg = FidelityConfig(usage=args.usage, seeds=_ints(args.seeds), full_seeds=_ints(args.full_seeds),
                         windows=args.windows,
                         test_windows=args.test_windows, n_boot=args.boot,
                         full={"max_epochs": args.max_epochs, **_settings(args.full)},
                         proxy=_settings(args.proxy))
    cat = CatalogueConfig(upstream_times=args.upstream_times)
    select = [x for x in args.variants.split(",") if x] if args.variants else None
    todo = [args.only] if args.only else ["planted", "movielens"]
    out: dict[str, Any] = {}
    code = _code_version()
    print(f"code {code}", flush=True)
    for name in todo:
        base = args.out / name
        base.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        if name == "planted":
            data = planted_world(base / "world", args.scale, args.world_seed, args.events, args.click_model)
            label = (f"planted {args.scale} ({args.click_model} click model, seed {args.world_seed}"
                     f"{f', {args.events} events' if args.events else ''})")
        else:
            data = movielens_data(base / "data", args.movielens)
            label = "MovieLens latest-small (generic path)"
        res = run_fidelity(data, base / "run", cfg=cfg, catalogue=cat, select=select,
                           log=lambda s: print(f"  {s}", flush=True))
        out[name] = {"label": label, "wall_seconds": time.perf_counter() - t0, **summarize(name, res)}
        s = out[name]
        print(f"{label}: tau {s['kendall_tau']:+.3f} {[round(x, 3) for x in s['kendall_tau_ci']]}, rho "
              f"{s['spearman_rho']:+.3f}, verdicts agree {s['verdict_agreement']:.0%}, full/LEE time "
              f"{s['time_ratio']:.1f}x; load {os.getloadavg()}", flush=True)
    out["code"] = {"start": code, "end": _code_version()}
    (args.out / "summary.json").write_text(json.dumps(out, indent=1, default=str) + "\n")
    print(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
