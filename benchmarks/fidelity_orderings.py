"""Do LEE and full downstream training both order the planted yardsticks, on ten world seeds?

Issue 15's first "done when": on the planted world, oracle > rank_8 > rank_4 > rank_2 > random and
oracle > noise_0.25 > noise_0.5 > noise_1 > noise_2, under LEE and under full training, for at least
9 of 10 world seeds. ``benchmarks/planted_yardsticks.py`` measured LEE's side alone; this script runs
``lee fidelity``'s computation (:func:`analysis.fidelity.run_fidelity`, called as
``benchmarks/fidelity.py`` calls it) so that both protocols rank the same variants on the same stream.

Per world seed (``--world-seeds``, default 0..9): the planted world at the settings of
``docs/fidelity.md``'s planted runs (scale ``small`` cut to ``--events`` 100,000, click model
``balanced``), only the planted families (the oracle, rank_2/4/8, the four noise levels, random: no
upstream snapshots or layer CRs, which are not part of this check and cost upstream training), one
LEE seed and one full seed, ``--boot`` bootstrap resamples (the chains are judged on the ΔAUC point
estimates, strictly: a tie breaks a chain). Per protocol it records every ΔAUC, whether each chain
holds, the adjacent pairs that broke, and per seed Kendall's τ between the two rankings, the seconds
and the load before and after.

``--out`` (default ``benchmarks/out/fidelity_orderings.json``) is rewritten after every seed, so a
killed run keeps what it finished; ``--resume`` skips the seeds already in it.

    nice -n 10 python benchmarks/fidelity_orderings.py                        # world seeds 0..9
    nice -n 10 python benchmarks/fidelity_orderings.py --world-seeds 0,1 --events 30000 --out /tmp/o.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RANK_CHAIN = ("oracle", "rank_8", "rank_4", "rank_2", "random")
NOISE_CHAIN = ("oracle", "noise_0.25", "noise_0.5", "noise_1", "noise_2")
CHAINS = {"rank": RANK_CHAIN, "noise": NOISE_CHAIN}
# run_fidelity's --variants: the planted family (the oracle), the graded rank and noise families and the
# null variant random (id_shuffled, the other null variant, is in neither chain and is left out)
SELECT = ("planted", "rank", "noise", "random")
PROTOCOLS = {"lee": "lee_delta_auc", "full": "full_delta_auc"}


@dataclass(frozen=True)
class Settings:
    """One world seed's run: the world, both protocols' seeds and windows, the full model's epochs."""

    scale: str = "small"
    events: int | None = 100_000          # cut the world to this many events (None: the scale's)
    click_model: str = "balanced"
    lee_seed: int = 0
    full_seed: int = 0
    windows: int = 10
    test_windows: int = 3
    max_epochs: int = 8
    boot: int = 50
    full: dict[str, Any] = field(default_factory=dict)   # further FullConfig settings (the CI test's)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def check_chain(delta: dict[str, float], chain: tuple[str, ...]) -> dict[str, Any]:
    """Whether ``delta`` falls strictly along ``chain`` (first the highest), and the adjacent pairs that do not."""
    broken = [f"{a} > {b}" for a, b in zip(chain, chain[1:]) if not delta[a] > delta[b]]
    return {"held": not broken, "broken": broken}


def judge(delta: dict[str, float]) -> dict[str, Any]:
    """Both chains on one protocol's ΔAUCs (plus whether noise_2 stays above random, for information)."""
    out: dict[str, Any] = {"delta_auc": delta}
    for name, chain in CHAINS.items():
        out[f"{name}_chain"] = check_chain(delta, chain)
    out["both_chains"] = all(out[f"{n}_chain"]["held"] for n in CHAINS)
    out["noise_2_above_random"] = delta["noise_2"] > delta["random"]
    return out


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _code_version() -> dict[str, Any]:
    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()
        except OSError:
            return ""

    return {"commit": git("rev-parse", "HEAD"),
            "engine_dirty": bool(git("status", "--porcelain", "--", "lee", "analysis"))}


def one_seed(world_seed: int, st: Settings, work: Path, *, verbose: bool = False) -> dict[str, Any]:
    """Generate world ``world_seed``, run both protocols on the planted variants, judge the chains."""
    from analysis.fidelity import FidelityConfig, run_fidelity
    from analysis.fidelity_variants import CatalogueConfig
    from lee.world.config import config_for_scale
    from lee.world.generate import generate_world
    from lee.world.io import save_world

    t0 = time.perf_counter()
    load_before = _load()
    base = work / f"world_seed_{world_seed}"
    overrides: dict[str, Any] = {"click_model": st.click_model, **({"n_events": st.events} if st.events else {})}
    wcfg = config_for_scale(st.scale, seed=world_seed, **overrides)
    save_world(generate_world(wcfg), base / "world", overwrite=True)
    cfg = FidelityConfig(usage="auto", seeds=(st.lee_seed,), full_seeds=(st.full_seed,), windows=st.windows,
                         test_windows=st.test_windows, n_boot=st.boot, full={"max_epochs": st.max_epochs, **st.full})
    res = run_fidelity(base / "world", base / "run", cfg=cfg, catalogue=CatalogueConfig(), select=list(SELECT),
                       log=(lambda s: print(f"  {s}", flush=True)) if verbose else (lambda s: None))
    table = res.variants.set_index("variant")
    missing = [v for chain in CHAINS.values() for v in chain if v not in table.index]
    if missing:
        raise RuntimeError(f"world seed {world_seed}: run_fidelity wrote no {', '.join(missing)}; it wrote "
                           f"{', '.join(table.index)}")
    m = res.metrics
    return {
        "world_seed": world_seed,
        "world": {"scale": st.scale, "events": int(wcfg.n_events), "click_model": st.click_model},
        **{p: judge({v: float(table.loc[v, col]) for v in table.index}) for p, col in PROTOCOLS.items()},
        "verdicts": {v: {"lee": table.loc[v, "lee_verdict"], "full": table.loc[v, "full_verdict"]}
                     for v in table.index},
        "kendall_tau": m["kendall_tau"], "kendall_tau_ci": m["kendall_tau_ci"], "spearman_rho": m["spearman_rho"],
        "baselines": {k: res.baselines[k] for k in ("lee_auc", "lee_auc_test_windows", "full_auc", "stronger")},
        "full_epochs": {v: float(table.loc[v, "full_epochs"]) for v in table.index},
        "seconds": {"lee": m["lee_seconds"], "full": m["full_seconds"], "total": time.perf_counter() - t0},
        "load_before": load_before, "load_after": _load(),
    }


def summarize(seeds: dict[str, Any]) -> dict[str, Any]:
    """Counts over the finished seeds: both chains under LEE, under full training, under both."""
    done = sorted(seeds.values(), key=lambda r: r["world_seed"])
    lee = [r["world_seed"] for r in done if r["lee"]["both_chains"]]
    full = [r["world_seed"] for r in done if r["full"]["both_chains"]]
    both = [s for s in lee if s in full]
    broken: dict[str, list[str]] = {}
    for r in done:
        for p in PROTOCOLS:
            for c in CHAINS:
                for pair in r[p][f"{c}_chain"]["broken"]:
                    broken.setdefault(f"{p}: {pair}", []).append(str(r["world_seed"]))
    return {"seeds_done": [r["world_seed"] for r in done], "n_seeds": len(done),
            "both_chains_lee": lee, "both_chains_full": full, "both_chains_both": both,
            "count_lee": len(lee), "count_full": len(full), "count_both": len(both),
            "broken_pairs": broken, "target": "both chains under both protocols on at least 9 of 10 world seeds"}


def _line(r: dict[str, Any]) -> str:
    parts = []
    for p in PROTOCOLS:
        j = r[p]
        flags = " ".join(f"{c} {'ok' if j[f'{c}_chain']['held'] else 'BROKEN'}" for c in CHAINS)
        bad = [x for c in CHAINS for x in j[f"{c}_chain"]["broken"]]
        parts.append(f"{p}: {flags}{' (' + '; '.join(bad) + ')' if bad else ''}")
    return (f"world seed {r['world_seed']}: " + " | ".join(parts) + f" | tau {r['kendall_tau']:+.2f}; "
            f"{r['seconds']['total']:.0f} s (LEE {r['seconds']['lee']:.0f}, full {r['seconds']['full']:.0f}); "
            f"load {r['load_before']} -> {r['load_after']}")


def _write(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--world-seeds", default=",".join(map(str, range(10))), help="comma-separated (default 0..9)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "fidelity_orderings.json")
    ap.add_argument("--resume", action="store_true", help="skip the world seeds already in --out")
    ap.add_argument("--scale", default="small")
    ap.add_argument("--events", type=int, default=100_000, help="cut the world to this many events (0: the scale's)")
    ap.add_argument("--click-model", default="balanced")
    ap.add_argument("--lee-seed", type=int, default=0)
    ap.add_argument("--full-seed", type=int, default=0)
    ap.add_argument("--windows", type=int, default=10)
    ap.add_argument("--test-windows", type=int, default=3)
    ap.add_argument("--max-epochs", type=int, default=8)
    ap.add_argument("--boot", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--work", type=Path, help="keep worlds and runs here (default: a temporary directory)")
    ap.add_argument("--verbose", action="store_true", help="print run_fidelity's progress")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    doc: dict[str, Any] = {}
    if args.resume and args.out.exists():
        doc = json.loads(args.out.read_text())
    seeds: dict[str, Any] = doc.get("seeds", {})
    st = Settings(scale=args.scale, events=args.events or None, click_model=args.click_model, lee_seed=args.lee_seed,
                  full_seed=args.full_seed, windows=args.windows, test_windows=args.test_windows,
                  max_epochs=args.max_epochs, boot=args.boot)
    settings = {**asdict(st), "threads": args.threads}
    if seeds and doc.get("settings") != settings:
        raise SystemExit(f"--resume: {args.out} was written with other settings ({doc.get('settings')}); "
                         f"these are {settings}")
    doc.update({
        "what": __doc__.split("\n")[0], "chains": {k: " > ".join(v) for k, v in CHAINS.items()},
        "variants": list(SELECT), "settings": settings,
        "command": "python benchmarks/fidelity_orderings.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(), "nice": os.nice(0)},
        "code": _code_version(),   # at this invocation's start; each seed records its own
        "load": {**doc.get("load", {}), "start": _load()},
    })
    doc["seeds"] = seeds
    args.out.parent.mkdir(parents=True, exist_ok=True)
    todo = [s for s in _ints(args.world_seeds) if not (args.resume and str(s) in seeds)]
    print(f"world seeds to run: {todo} (done already: {sorted(map(int, seeds))}); load {_load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="lee-fid-order-") as tmp:
        work = args.work or Path(tmp)
        for s in todo:
            r = {**one_seed(s, st, work, verbose=args.verbose), "code": _code_version()}
            seeds[str(s)] = r
            doc["summary"] = summarize(seeds)
            doc["load"]["end"] = _load()
            _write(args.out, doc)
            print(_line(r), flush=True)
    doc["summary"] = summarize(seeds)
    _write(args.out, doc)
    sm = doc["summary"]
    print(f"both chains hold on {sm['count_lee']}/{sm['n_seeds']} world seeds under LEE {sm['both_chains_lee']}, "
          f"{sm['count_full']}/{sm['n_seeds']} under full training {sm['both_chains_full']}, "
          f"{sm['count_both']}/{sm['n_seeds']} under both {sm['both_chains_both']}")
    for pair, where in sm["broken_pairs"].items():
        print(f"  broke: {pair} on world seed(s) {', '.join(where)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
