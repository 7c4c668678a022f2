"""LEE evaluation benchmark: proxy training throughput, a full 6-variant evaluation, and AUC vs sklearn.

    python benchmarks/lee_eval.py [--events N] [--seeds 0,1,2] [--threads T] [--json OUT]

What it measures, in one process, on CPU:

1. Data. A planted world (``medium`` scale: 100k users, 25k items) generated with ``n_events``
   chosen so that its *ad* domain holds about ``--events`` events (default 1M; the world's
   ``content_share`` is 0.5, so the world has twice as many events), the six planted variants
   (``write_planted_variants(n_snapshots=1)``, dim 32) in a temporary directory, and the ad
   stream ``stream_from_world(world)``. N is the stream's length; with 10 windows every proxy run
   trains on windows 0..8 (about 0.9 N samples) and scores windows 1..9.
2. Thread probe. A fixed number of steady-state training steps (run_stream's inner loop: index
   slices, forward, backward, Adam + SparseAdam) of the baseline proxy at each of
   ``--probe-threads`` torch thread counts (default: torch's default, and 1). Short on purpose,
   so that it stays cheap where multi-threading collapses on a shared machine.
3. Proxy throughput, at ``--threads`` torch threads (default: torch's default). ``run_stream``
   (index-slice batches of the pre-built tensors) for the baseline (injection None) and for the
   ``oracle`` variant injected with ``UR+IR``/``concat``, one seed, default ``ProxyConfig``,
   against the *same* ProxyCTR model trained by a plain ``torch.utils.data.DataLoader`` loop: per
   window a ``TensorDataset`` over that window's slices, ``shuffle=True``, ``num_workers=0``,
   default collate, the batch size run_stream uses for that window (``ProxyConfig.batch_for``:
   2048, shrunk for small windows; 2000 at N = 1M); the same Adam + SparseAdam optimisers, the
   same test-then-train windows (one pass), the same scoring helper. Both loops are timed the way
   ``StreamRun.seconds`` is (the window loop: scoring + training); scoring is timed on its own
   through a wrapper around ``lee.evaluator.stream.score``, so training-only throughput is
   reported too. One untimed warm-up of both loops on a 50k-event subset comes first.
4. Full evaluation, at ``--threads``. ``compare_snapshots(stream, {6 variants},
   EvalConfig(seeds=...))`` = baseline + 6 variants x seeds proxy runs + a paired cluster
   bootstrap (n_boot 200) per variant; wall time end to end (snapshots opened beforehand).
   Breakdown, exact and free: timing wrappers on the module globals lee calls (``stream.score``,
   ``stream.gauc``, ``compare.inject``, ``compare.RankedScores``, ``compare.paired_delta_ci``),
   installed in this process only; training = the runs' own ``seconds`` minus their scoring.
   Then one variant's statistics step is re-timed with numpy's BLAS pool at its default size
   and at 1 thread (``--no-blas-check`` skips it).
5. AUC. ``lee.metrics.roc_auc``, ``RankedScores(y, s).auc()`` and
   ``sklearn.metrics.roc_auc_score`` on synthetic labels/scores of each of ``--auc-sizes``:
   float32 logits (natural float32 ties), float32 rounded to 0.01 (heavy ties) and float64
   uniform (no ties); max |lee - sklearn| and the median of ``--auc-repeats`` timed calls after
   one warm-up call.

The machine may be shared: the 1/5/15-minute load averages are recorded before and after every
section, and the CPU time used by *other* processes during each section is estimated from
/proc/stat (all busy CPU time minus this process's own CPU time).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import lee.evaluator.compare as compare_mod  # noqa: E402
import lee.evaluator.stream as stream_mod  # noqa: E402
from lee.evaluator.compare import EvalConfig, compare_snapshots  # noqa: E402
from lee.evaluator.data import DownstreamStream, stream_from_world  # noqa: E402
from lee.evaluator.inject import Injection, inject  # noqa: E402
from lee.evaluator.models import ProxyConfig, ProxyCTR, split_params  # noqa: E402
from lee.evaluator.stats import RankedScores, paired_delta_ci  # noqa: E402
from lee.metrics import roc_auc  # noqa: E402
from lee.snapshot import Snapshot  # noqa: E402
from lee.world.config import config_for_scale  # noqa: E402
from lee.world.generate import generate_world  # noqa: E402
from lee.world.planted import write_planted_variants  # noqa: E402

N_WINDOWS = 10

# --------------------------------------------------------------------------- load / CPU accounting


def _busy_cpu_seconds() -> float | None:
    """All CPUs' busy time (user+nice+system+irq+softirq+steal) from /proc/stat, in seconds."""
    try:
        with open("/proc/stat") as fh:
            parts = fh.readline().split()
    except OSError:
        return None
    vals = [int(v) for v in parts[1:]]
    busy = vals[0] + vals[1] + vals[2] + sum(vals[5:8])  # user nice system | irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Section:
    """Wall time, load averages and other processes' CPU use over one part of the benchmark."""

    def __init__(self, name: str, log: list[dict]) -> None:
        self.name, self.log = name, log

    def __enter__(self) -> Section:
        gc.collect()
        self.load_before = os.getloadavg()
        self.busy0, self.own0, self.t0 = _busy_cpu_seconds(), _own_cpu_seconds(), time.perf_counter()
        _err(f"# [{self.name}] start, load average {_fmt_load(self.load_before)}")
        return self

    def __exit__(self, *exc) -> None:
        wall = time.perf_counter() - self.t0
        own = _own_cpu_seconds() - self.own0
        busy1 = _busy_cpu_seconds()
        other = None if busy1 is None or self.busy0 is None else max(0.0, (busy1 - self.busy0) - own)
        self.entry = {
            "section": self.name, "wall_s": wall, "own_cpu_s": own, "other_cpu_s": other,
            "other_cores_avg": None if other is None else other / max(wall, 1e-9),
            "load_before": list(self.load_before), "load_after": list(os.getloadavg()),
        }
        self.log.append(self.entry)
        _err(f"# [{self.name}] {wall:.1f}s wall, own CPU {own:.1f}s, other processes' CPU "
             f"{'n/a' if other is None else f'{other:.1f}s'}, load average {_fmt_load(os.getloadavg())}")


def _fmt_load(load) -> str:
    return "/".join(f"{v:.2f}" for v in load)


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- timing wrappers


class Timed:
    """Replaces ``module.name`` (a function lee calls through its module globals) with a timed wrapper.

    Only this process's module objects change; nothing in lee/ is edited. A name the module lacks
    (the package moved on) is left alone and reported as not installed.
    """

    def __init__(self, module, name: str) -> None:
        self.module, self.name = module, name
        self.seconds = 0.0
        self.calls = 0
        self._orig = getattr(module, name, None)
        self.installed = False

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self._orig(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1

    def reset(self) -> None:
        self.seconds, self.calls = 0.0, 0

    def install(self) -> Timed:
        if self._orig is not None:
            setattr(self.module, self.name, self)
            self.installed = True
        return self

    def uninstall(self) -> None:
        if self.installed:
            setattr(self.module, self.name, self._orig)
            self.installed = False


def _timers() -> dict[str, Timed]:
    return {
        "score": Timed(stream_mod, "score").install(),               # run_stream's window scoring
        "gauc": Timed(stream_mod, "gauc").install(),                 # run_stream's per-run GAUC
        "inject": Timed(compare_mod, "inject").install(),            # evaluate_variant's table loading
        "ranked": Timed(compare_mod, "RankedScores").install(),      # evaluate_variant's sorts
        "bootstrap": Timed(compare_mod, "paired_delta_ci").install(),  # evaluate_variant's bootstrap
    }


# --------------------------------------------------------------------------- the DataLoader reference


def _batch_for(cfg: ProxyConfig, window_events: int) -> int:
    """run_stream's batch size for a window (ProxyConfig.batch_for where the package has it)."""
    fn = getattr(cfg, "batch_for", None)
    return int(fn(window_events)) if fn is not None else cfg.batch_size


def dataloader_stream(stream: DownstreamStream, injection: Injection | None, timer: Timed, *,
                      fusion: str = "concat", cfg: ProxyConfig | None = None, seed: int = 0,
                      n_windows: int = N_WINDOWS) -> dict:
    """run_stream's test-then-train loop with batches from a plain DataLoader over a TensorDataset."""
    from torch.utils.data import DataLoader, TensorDataset

    cfg = cfg or ProxyConfig()
    device = torch.device("cpu")
    bounds = stream.window_bounds(n_windows)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ProxyCTR(stream.cardinalities, cfg, injection, fusion).to(device)
    sparse, dense = split_params(model)
    opts: list[torch.optim.Optimizer] = [torch.optim.Adam(dense, lr=cfg.lr)]
    if sparse:
        opts.append(torch.optim.SparseAdam(sparse, lr=cfg.sparse_lr))
    loss_fn = nn.BCEWithLogitsLoss()
    l2 = getattr(cfg, "fusion_l2", 0.0)
    fusion_params = list(model.fusion.parameters()) if l2 > 0 else []
    rows = stream_mod.rep_rows_for(stream, injection)
    x, y = stream.x, stream.y
    gen = torch.Generator().manual_seed(seed)
    test_lo = bounds[1][0]
    scores = np.empty(len(stream) - test_lo, np.float32)
    trained = 0
    batches = set()
    score_s0 = timer.seconds
    t0 = time.perf_counter()
    for w, (lo, hi) in enumerate(bounds):
        if w > 0:
            scores[lo - test_lo:hi - test_lo] = timer(model, x, rows, lo, hi, device)
        if w == len(bounds) - 1:
            break
        batch = _batch_for(cfg, hi - lo)
        batches.add(batch)
        ds = TensorDataset(x[lo:hi], y[lo:hi], *[r[lo:hi] for r in rows])
        loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=0, generator=gen)
        for xb, yb, *rb in (b for _ in range(getattr(cfg, "epochs_per_window", 1)) for b in loader):
            logit = model(xb, rb)
            loss = loss_fn(logit, yb)
            if fusion_params:
                loss = loss + l2 * sum((p_ ** 2).sum() for p_ in fusion_params)
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in opts:
                opt.step()
            trained += yb.numel()
    seconds = time.perf_counter() - t0
    score_s = timer.seconds - score_s0
    auc = roc_auc(y[test_lo:].numpy(), scores)
    return {"seconds": seconds, "score_seconds": score_s, "train_seconds": seconds - score_s,
            "samples_trained": trained, "auc": auc, "batch_sizes": sorted(batches)}


def lee_stream(stream: DownstreamStream, injection: Injection | None, timer: Timed, *,
               seed: int = 0, cfg: ProxyConfig | None = None) -> dict:
    score_s0 = timer.seconds
    run = stream_mod.run_stream(stream, injection, fusion="concat", cfg=cfg, seed=seed, n_windows=N_WINDOWS)
    score_s = timer.seconds - score_s0
    pc = cfg or ProxyConfig()
    return {"seconds": run.seconds, "score_seconds": score_s, "train_seconds": run.seconds - score_s,
            "samples_trained": run.samples_trained, "auc": run.auc,
            "batch_sizes": sorted({_batch_for(pc, hi - lo) for lo, hi in run.window_edges[:-1]})}


def _rates(r: dict) -> dict:
    r["samples_per_s"] = r["samples_trained"] / r["seconds"]
    r["samples_per_min"] = 60.0 * r["samples_per_s"]
    r["train_only_samples_per_min"] = 60.0 * r["samples_trained"] / max(r["train_seconds"], 1e-9)
    return r


# --------------------------------------------------------------------------- sections


def build_data(args, tmp: Path) -> tuple[DownstreamStream, dict[str, Snapshot], dict]:
    base = config_for_scale(args.scale, seed=args.world_seed)
    n_world = int(round(args.events / (1.0 - base.content_share)))
    cfg = config_for_scale(args.scale, seed=args.world_seed, n_events=n_world)
    t0 = time.perf_counter()
    world = generate_world(cfg)
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    paths = write_planted_variants(world, tmp / "snapshots", n_snapshots=1)
    plant_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    stream = stream_from_world(world)
    stream_s = time.perf_counter() - t0
    snaps = {name: Snapshot.open(p[0]) for name, p in paths.items()}
    bounds = stream.window_bounds(N_WINDOWS)
    info = {
        "scale": args.scale, "world_events": len(world.events), "users": len(world.users),
        "items": len(world.items), "N": len(stream), "click_rate": float(stream.y.mean()),
        "cardinalities": list(stream.cardinalities), "fields": list(stream.fields),
        "train_samples_per_run": int(bounds[-2][1]), "test_samples": len(stream) - bounds[1][0],
        "generate_s": gen_s, "plant_s": plant_s, "stream_s": stream_s, "variants": list(snaps),
    }
    del world
    _err(f"# data: world {info['world_events']:,} events ({gen_s:.1f}s), planted variants ({plant_s:.1f}s), "
         f"ad stream N={info['N']:,} ({stream_s:.1f}s), click rate {info['click_rate']:.4f}")
    return stream, snaps, info


def thread_probe(stream: DownstreamStream, threads: list[int], steps: int, sections: list[dict]) -> list[dict]:
    """Steady-state training steps of the baseline proxy (run_stream's inner loop) per torch thread count.

    Fixed work, so it stays short even where multi-threading collapses: ``steps`` batches of
    ``batch_for(window)`` events drawn by index slices from the first window, after 5 warm-up steps.
    """
    cfg = ProxyConfig()
    lo, hi = stream.window_bounds(N_WINDOWS)[0]
    batch = _batch_for(cfg, hi - lo)
    out = []
    with Section("thread probe", sections):
        for t in threads:
            torch.set_num_threads(t)
            torch.manual_seed(0)
            model = ProxyCTR(stream.cardinalities, cfg)
            sparse, dense = split_params(model)
            opts = [torch.optim.Adam(dense, lr=cfg.lr), torch.optim.SparseAdam(sparse, lr=cfg.sparse_lr)]
            loss_fn = nn.BCEWithLogitsLoss()
            perm = lo + torch.randperm(hi - lo, generator=torch.Generator().manual_seed(0))
            load0, busy0, own0 = os.getloadavg(), _busy_cpu_seconds(), _own_cpu_seconds()
            t0 = 0.0
            for k in range(5 + steps):
                if k == 5:
                    t0 = time.perf_counter()
                    busy0, own0 = _busy_cpu_seconds(), _own_cpu_seconds()
                idx = perm[(k * batch) % (hi - lo - batch):][:batch]
                loss = loss_fn(model(stream.x[idx], []), stream.y[idx])
                for opt in opts:
                    opt.zero_grad(set_to_none=True)
                loss.backward()
                for opt in opts:
                    opt.step()
            dt = time.perf_counter() - t0
            own = _own_cpu_seconds() - own0
            busy1 = _busy_cpu_seconds()
            other = None if busy1 is None or busy0 is None else max(0.0, busy1 - busy0 - own) / dt
            r = {"threads": t, "steps": steps, "batch": batch, "seconds": dt,
                 "samples_per_min": 60.0 * steps * batch / dt, "own_cores_avg": own / dt,
                 "other_cores_avg": other, "load_before": list(load0)}
            out.append(r)
            _err(f"#   probe threads={t}: {steps} steps x {batch} in {dt:.2f}s = {r['samples_per_min'] / 1e6:.2f} M "
                 f"samples/min (own {r['own_cores_avg']:.2f} cores, "
                 f"others {other if other is None else round(other, 2)})")
    return out


def throughput(stream: DownstreamStream, snaps: dict[str, Snapshot], t: int, timers: dict[str, Timed],
               sections: list[dict]) -> list[dict]:
    usage = EvalConfig().usage
    snap = snaps.get("oracle") or next(iter(snaps.values()))
    injection = inject(snap, usage, stream.user_ids, stream.item_ids, stream.user_row, stream.item_row)
    variant_label = f"{snap.path.parent.name} ({usage}, concat)"
    warm = stream.subset(min(len(stream), 50_000))
    timer = timers["score"]
    out = []
    torch.set_num_threads(t)
    with Section(f"throughput threads={t}", sections) as sec:
        lee_stream(warm, injection, timer)        # untimed warm-up (allocator, kernels)
        dataloader_stream(warm, injection, timer)
        for model_label, inj in (("baseline (no injection)", None), (variant_label, injection)):
            for loop, fn in (("lee run_stream", lee_stream), ("DataLoader loop", dataloader_stream)):
                load0 = os.getloadavg()
                r = _rates(fn(stream, inj, timer, seed=0))
                r.update({"threads": t, "model": model_label, "loop": loop, "load_before": list(load0),
                          "load_after": list(os.getloadavg())})
                out.append(r)
                _err(f"#   threads={t} {model_label:28s} {loop:16s} {r['seconds']:7.1f}s "
                     f"{r['samples_per_min'] / 1e6:6.2f} M samples/min (train only "
                     f"{r['train_only_samples_per_min'] / 1e6:.2f} M) AUC {r['auc']:.4f} batch {r['batch_sizes']}")
    for r in out:
        r["section_other_cores_avg"] = sec.entry["other_cores_avg"]
    return out


def _blas_info() -> list[dict]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keep = ("user_api", "internal_api", "num_threads", "version", "filepath")
    return [{k: v for k, v in d.items() if k in keep} for d in threadpool_info()]


def full_eval(stream: DownstreamStream, snaps: dict[str, Snapshot], args, timers: dict[str, Timed],
              sections: list[dict]) -> dict:
    torch.set_num_threads(args.threads_eval)
    cfg = EvalConfig(seeds=tuple(args.seeds), n_boot=args.n_boot)
    for tm in timers.values():
        tm.reset()
    with Section(f"full evaluation threads={args.threads_eval}", sections) as sec:
        t0 = time.perf_counter()
        comp = compare_snapshots(stream, snaps, cfg)
        total = time.perf_counter() - t0
    sec_t = {k: (tm.seconds if tm.installed else None) for k, tm in timers.items()}
    calls = {k: tm.calls for k, tm in timers.items()}
    models = [comp.baseline, *comp.variants]
    runs = [r for m in models for r in m.runs]
    run_s = float(sum(r.seconds for r in runs))
    score_s = sec_t["score"] or 0.0
    stats_s = (sec_t["ranked"] or 0.0) + (sec_t["bootstrap"] or 0.0)
    trained = int(sum(r.samples_trained for r in runs))
    per_run_rate = [60.0 * r.samples_trained / r.seconds for r in runs]
    n_models = len(models)
    res = {
        "threads": args.threads_eval, "seeds": list(cfg.seeds), "n_boot": cfg.n_boot, "n_models": n_models,
        "n_runs": len(runs), "wall_s": total, "runs_s": run_s, "runs_score_s": score_s,
        "runs_train_s": run_s - score_s, "ranked_scores_s": sec_t["ranked"], "bootstrap_s": sec_t["bootstrap"],
        "stats_s": stats_s, "inject_s": sec_t["inject"], "gauc_s": sec_t["gauc"], "timer_calls": calls,
        "other_s": total - run_s - stats_s - (sec_t["inject"] or 0.0) - (sec_t["gauc"] or 0.0),
        "samples_trained_total": trained,
        "per_run_samples_per_min_min": min(per_run_rate),
        "per_run_samples_per_min_median": statistics.median(per_run_rate),
        "per_run_samples_per_min_max": max(per_run_rate),
        "train_only_samples_per_min": 60.0 * trained / max(run_s - score_s, 1e-9),
        "end_to_end_samples_per_min": 60.0 * trained / total,
        "wall_s_per_model": total / n_models,
        "events_per_min_per_model": 60.0 * len(stream) * len(cfg.seeds) / (total / n_models),
        "other_cores_avg": sec.entry["other_cores_avg"],
        "ranking": comp.ranking(),
        "table": [{k: (v if not isinstance(v, np.generic) else v.item()) for k, v in row.items()}
                  for row in comp.table().to_dict(orient="records")],
    }
    _err(f"# full evaluation: {total:.1f}s ({run_s:.1f}s in {len(runs)} runs, of which scoring {score_s:.1f}s; "
         f"statistics {stats_s:.1f}s; other {res['other_s']:.1f}s); ranking {comp.ranking()}")

    if args.blas_check:
        # one variant's statistics step with numpy's BLAS pool at its default size and at 1 thread
        from threadpoolctl import threadpool_limits

        test_lo = comp.baseline.runs[0].test_lo
        y = stream.y[test_lo:].numpy()
        clusters = stream.user_row[test_lo:]
        v0 = comp.variants[0]
        check = {"variant": v0.name, "blas": _blas_info()}
        with Section("statistics BLAS-threads check", sections):
            for label, limit in (("default", None), ("1", 1)):
                with threadpool_limits(limits=limit, user_api="blas") if limit else contextlib.nullcontext():
                    t0 = time.perf_counter()
                    b = [RankedScores(y, r.scores) for r in comp.baseline.runs]
                    v = [RankedScores(y, r.scores) for r in v0.runs]
                    t1 = time.perf_counter()
                    d = paired_delta_ci(b, v, clusters, n_boot=cfg.n_boot, level=cfg.level, seed=cfg.bootstrap_seed)
                    t2 = time.perf_counter()
                check[f"blas_threads_{label}"] = {"ranked_s": t1 - t0, "bootstrap_s": t2 - t1,
                                                  "same_interval": (d.low, d.high) == (v0.delta.low, v0.delta.high)}
                _err(f"#   statistics of {v0.name} with BLAS threads {label}: RankedScores {t1 - t0:.2f}s, "
                     f"paired_delta_ci {t2 - t1:.2f}s")
        res["blas_check"] = check
    return res


def auc_bench(sizes: list[int], repeats: int, sections: list[dict]) -> list[dict]:
    from sklearn.metrics import roc_auc_score

    out = []
    with Section("auc", sections):
        for n in sizes:
            rng = np.random.default_rng(n)
            z = rng.standard_normal(n)
            y = (rng.random(n) < 1.0 / (1.0 + np.exp(-(z - 1.8)))).astype(np.float32)
            cases = {
                "float32 logits (natural ties)": z.astype(np.float32),
                "float32 rounded to 0.01 (heavy ties)": np.round(z, 2).astype(np.float32),
                "float64 uniform (no ties)": rng.random(n),
            }
            for case, s in cases.items():
                distinct = int(np.unique(s).size)
                fns = {
                    "lee.metrics.roc_auc": lambda y=y, s=s: roc_auc(y, s),
                    "RankedScores(y, s).auc()": lambda y=y, s=s: RankedScores(y, s).auc(),
                    "sklearn roc_auc_score": lambda y=y, s=s: roc_auc_score(y, s),
                }
                vals, times = {}, {}
                for name, fn in fns.items():
                    vals[name] = fn()  # warm-up
                    ts = []
                    for _ in range(repeats):
                        gc.collect()
                        t0 = time.perf_counter()
                        fn()
                        ts.append(time.perf_counter() - t0)
                    times[name] = ts
                ref = vals["sklearn roc_auc_score"]
                ref_t = statistics.median(times["sklearn roc_auc_score"])
                for name in fns:
                    med = statistics.median(times[name])
                    out.append({"n": n, "case": case, "dtype": str(s.dtype), "distinct_scores": distinct,
                                "positives": int(y.sum()), "impl": name, "auc": vals[name],
                                "abs_diff_vs_sklearn": abs(vals[name] - ref), "median_s": med,
                                "min_s": min(times[name]), "times_s": times[name],
                                "speed_vs_sklearn": ref_t / med})
                _err(f"#   n={n:,} {case}: lee {statistics.median(times['lee.metrics.roc_auc']):.3f}s, "
                     f"RankedScores {statistics.median(times['RankedScores(y, s).auc()']):.3f}s, "
                     f"sklearn {ref_t:.3f}s; max |diff| "
                     f"{max(abs(vals[k] - ref) for k in vals):.2e}")
    return out


# --------------------------------------------------------------------------- report


def _provenance() -> dict:
    """The commit and whether lee/ differs from it (the numbers belong to the working tree as run)."""
    import hashlib
    import subprocess

    def git(*a: str) -> str | None:
        try:
            return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return None

    head, diff = git("rev-parse", "HEAD"), git("diff", "HEAD", "--", "lee")
    return {"commit": head.strip() if head else None, "lee_dirty": bool(diff),
            "lee_diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if diff else None}


def _machine() -> dict:
    import pandas as pd
    import sklearn

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        mem_gib = None
    return {
        "nproc": os.cpu_count(),
        "sched_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu": cpu, "mem_gib": mem_gib, "python": platform.python_version(), "torch": torch.__version__,
        "torch_default_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
        "numpy": np.__version__, "pandas": pd.__version__, "sklearn": sklearn.__version__,
        "blas_threads": next((d["num_threads"] for d in _blas_info() if d["user_api"] == "blas"), None),
        "threadpools": _blas_info(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "platform": platform.platform(),
    }


def _m(x: float) -> str:
    return f"{x / 1e6:.2f}"


def report(doc: dict) -> None:
    mach, data = doc["machine"], doc["data"]
    if data.get("N"):
        print(f"\n## LEE evaluation benchmark: ad stream N = {data['N']:,} events "
              f"({data['train_samples_per_run']:,} trained / {data['test_samples']:,} scored per proxy run, "
              f"{N_WINDOWS} windows)\n")
    else:
        print("\n## LEE evaluation benchmark: AUC only\n")
    print(f"Machine: nproc={mach['nproc']} (affinity {mach['sched_affinity']}), {mach['cpu']}, "
          f"{mach['mem_gib']} GiB RAM; "
          f"Python {mach['python']}, torch {mach['torch']} (default {mach['torch_default_threads']} threads), "
          f"numpy {mach['numpy']} (BLAS threads {mach['blas_threads']}), pandas {mach['pandas']}, "
          f"sklearn {mach['sklearn']}")
    pv = doc.get("provenance") or {}
    if pv.get("commit"):
        print(f"Code: commit {pv['commit'][:12]}" + (f", lee/ modified (diff sha256 {pv['lee_diff_sha256'][:12]})"
                                                     if pv.get("lee_dirty") else ", lee/ clean"))
    lb, la = doc["load_before"], doc["load_after"]
    print(f"Load average (1/5/15 min): before {_fmt_load(lb)}, after {_fmt_load(la)}\n")

    if doc.get("thread_probe"):
        print("### Thread probe: steady-state training steps of the baseline proxy (run_stream's inner loop)\n")
        print("| torch threads | steps x batch | seconds | M samples/min | own cores (avg) "
              "| other processes' cores (avg) |")
        print("|---:|---|---:|---:|---:|---:|")
        for r in doc["thread_probe"]:
            oc = r["other_cores_avg"]
            print(f"| {r['threads']} | {r['steps']} x {r['batch']} | {r['seconds']:.2f} | {_m(r['samples_per_min'])} "
                  f"| {r['own_cores_avg']:.2f} | {'n/a' if oc is None else f'{oc:.2f}'} |")
        print()

    if doc.get("throughput"):
        t = doc["throughput"][0]["threads"]
        print(f"### Proxy training throughput: one seed, default ProxyConfig, torch threads={t}\n")
        print("| model | loop | batch | window-loop s | samples/s | M samples/min | train-only M samples/min "
              "| scoring s | test AUC |")
        print("|---|---|---|---:|---:|---:|---:|---:|---:|")
        for r in doc["throughput"]:
            print(f"| {r['model']} | {r['loop']} | {'/'.join(map(str, r['batch_sizes']))} | {r['seconds']:.1f} "
                  f"| {r['samples_per_s']:,.0f} | {_m(r['samples_per_min'])} | {_m(r['train_only_samples_per_min'])} "
                  f"| {r['score_seconds']:.1f} | {r['auc']:.4f} |")
        print()
        for model in dict.fromkeys(r["model"] for r in doc["throughput"]):
            pair = {r["loop"]: r for r in doc["throughput"] if r["model"] == model}
            if len(pair) == 2:
                a, b = pair["lee run_stream"], pair["DataLoader loop"]
                print(f"- {model}: run_stream / DataLoader = {a['samples_per_s'] / b['samples_per_s']:.2f}x "
                      "end to end, "
                      f"{a['train_only_samples_per_min'] / b['train_only_samples_per_min']:.2f}x training only")
        print()

    ev = doc.get("evaluation")
    if ev:
        print(f"### Full evaluation: baseline + {ev['n_models'] - 1} variants x {len(ev['seeds'])} seeds "
              f"({ev['n_runs']} proxy runs) + paired bootstrap (n_boot {ev['n_boot']}), "
              f"torch threads={ev['threads']}\n")
        print("| part | seconds | share |")
        print("|---|---:|---:|")
        tot = ev["wall_s"]
        parts = [("proxy runs: training", ev["runs_train_s"]), ("proxy runs: scoring test windows", ev["runs_score_s"]),
                 ("statistics: RankedScores sorts", ev["ranked_scores_s"]),
                 ("statistics: paired_delta_ci (bootstrap)", ev["bootstrap_s"]),
                 ("per-run GAUC", ev["gauc_s"]), ("injection (loading and aligning tables)", ev["inject_s"]),
                 ("other (per-run AUC/logloss, baseline setup, ranking)", ev["other_s"]), ("**total wall time**", tot)]
        for label, sec in parts:
            if sec is not None:
                print(f"| {label} | {sec:.1f} | {100 * sec / tot:.0f}% |")
        print(f"\n- per proxy run: {_m(ev['per_run_samples_per_min_median'])} M samples/min median "
              f"(min {_m(ev['per_run_samples_per_min_min'])}, max {_m(ev['per_run_samples_per_min_max'])}) over "
              f"{ev['n_runs']} runs (window loop: scoring + training); "
              f"training only {_m(ev['train_only_samples_per_min'])} M/min")
        print(f"- end to end: {ev['samples_trained_total']:,} samples trained in {tot:.1f}s = "
              f"{_m(ev['end_to_end_samples_per_min'])} M samples/min; {ev['wall_s_per_model']:.1f}s per model "
              f"({len(ev['seeds'])} seeds over N = {data['N']:,} events) = {_m(ev['events_per_min_per_model'])} M "
              "events/min per variant")
        bc = ev.get("blas_check")
        if bc:
            d, o = bc["blas_threads_default"], bc["blas_threads_1"]
            print(f"- statistics of one variant ({bc['variant']}), numpy BLAS threads default vs 1: RankedScores "
                  f"{d['ranked_s']:.2f}s vs {o['ranked_s']:.2f}s, paired_delta_ci {d['bootstrap_s']:.2f}s vs "
                  f"{o['bootstrap_s']:.2f}s (same interval as in the evaluation: "
                  f"{d['same_interval']}/{o['same_interval']})")
        print("\n| variant | AUC | ΔAUC | CI low | CI high | verdict | seconds (all seeds) |")
        print("|---|---:|---:|---:|---:|---|---:|")
        for row in ev["table"]:
            print(f"| {row['variant']} | {row['auc']:.4f} | {row['delta_auc']:+.4f} | {row['ci_low']:+.4f} "
                  f"| {row['ci_high']:+.4f} | {row['verdict']} | {row['seconds']:.1f} |")
        print()

    if doc.get("auc"):
        print(f"### AUC vs sklearn.metrics.roc_auc_score (median of {doc['config']['auc_repeats']} after a warm-up)\n")
        print("| n | scores | distinct | implementation | median s | min s | × sklearn speed | abs diff vs sklearn |")
        print("|---:|---|---:|---|---:|---:|---:|---:|")
        for r in doc["auc"]:
            print(f"| {r['n']:,} | {r['case']} | {r['distinct_scores']:,} | {r['impl']} | {r['median_s']:.3f} "
                  f"| {r['min_s']:.3f} | {r['speed_vs_sklearn']:.2f} | {r['abs_diff_vs_sklearn']:.1e} |")
        lee_rows = [r for r in doc["auc"] if not r["impl"].startswith("sklearn")]
        print(f"\n- max |lee - sklearn| over all cases: {max(r['abs_diff_vs_sklearn'] for r in lee_rows):.2e} "
              f"(target < 1e-9); slowest lee / sklearn speed ratio: "
              f"{min(r['speed_vs_sklearn'] for r in lee_rows):.2f}x\n")

    print("### Load during each section\n")
    print("| section | wall s | own CPU s | other processes' CPU s (avg cores) | load before | load after |")
    print("|---|---:|---:|---:|---|---|")
    for s in doc["sections"]:
        oc = "n/a" if s["other_cpu_s"] is None else f"{s['other_cpu_s']:.0f} ({s['other_cores_avg']:.2f})"
        print(f"| {s['section']} | {s['wall_s']:.1f} | {s['own_cpu_s']:.1f} | {oc} | {_fmt_load(s['load_before'])} "
              f"| {_fmt_load(s['load_after'])} |")
    print("\nNotes: samples/s = samples trained / the window loop's wall time (scoring the next window + training, "
          "as StreamRun.seconds); 'train-only' leaves out the scoring calls. The DataLoader loop is the same model, "
          "optimisers, windows, batch sizes (ProxyConfig.batch_for) and scoring, with batches drawn by a default "
          "DataLoader (TensorDataset, shuffle=True, num_workers=0, per-sample __getitem__ + default collate); its "
          "batch order differs, so its AUC differs slightly. Full evaluation = wall time of compare_snapshots "
          "(snapshots opened beforehand); its breakdown comes from timing wrappers installed on the module globals "
          "lee calls (stream.score, stream.gauc, compare.inject, compare.RankedScores, compare.paired_delta_ci), in "
          "this process only. 'Other processes' CPU' = all busy CPU time in /proc/stat minus this process's CPU "
          f"time. Total benchmark wall time {doc['total_wall_s']:.0f}s.")
    busy = [s for s in doc["sections"] if (s["other_cores_avg"] or 0) > 0.25]
    if busy:
        print(f"\n**Warning: the machine was shared.** Other processes used on average more than a quarter of a core "
              f"during: {', '.join(s['section'] for s in busy)}. Timings are lower bounds of what an idle machine "
              "gives; multi-threaded torch/BLAS timings suffer most (an OpenMP thread waits at every parallel "
              "region for a peer that is descheduled), see the thread probe.")


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000,
                    help="about this many ad events in the stream (the world gets twice as many events)")
    ap.add_argument("--scale", default="medium", help="world scale for users/items (default medium)")
    ap.add_argument("--world-seed", type=int, default=0)
    ap.add_argument("--seeds", type=_ints, default=[0, 1, 2], help="proxy seeds of the full evaluation")
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads for the throughput and full-evaluation sections (0 = torch's default)")
    ap.add_argument("--probe-threads", default="default,1",
                    help="comma-separated torch thread counts for the thread probe ('default' = torch's)")
    ap.add_argument("--probe-steps", type=int, default=40, help="timed training steps per thread count in the probe")
    ap.add_argument("--no-blas-check", dest="blas_check", action="store_false",
                    help="skip re-timing one variant's statistics with numpy's BLAS at 1 thread")
    ap.add_argument("--auc-sizes", type=_ints, default=[1_000_000, 10_000_000])
    ap.add_argument("--auc-repeats", type=int, default=5)
    ap.add_argument("--parts", default="probe,throughput,eval,auc",
                    help="comma-separated subset of probe,throughput,eval,auc")
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    ap.add_argument("--tmpdir", type=Path, default=None, help="where the planted snapshots go (default: system temp)")
    args = ap.parse_args(argv)

    known = {"probe", "throughput", "eval", "auc"}
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if parts - known:
        ap.error(f"unknown part(s): {', '.join(sorted(parts - known))}")
    if args.events < 1000 or args.n_boot < 1 or args.auc_repeats < 1 or not args.seeds or args.probe_steps < 1:
        ap.error("--events >= 1000, --n-boot >= 1, --auc-repeats >= 1, --probe-steps >= 1 and a seed are required")
    default_threads = torch.get_num_threads()
    args.threads_eval = args.threads or default_threads
    probe_threads = list(dict.fromkeys(default_threads if t.strip() == "default" else int(t)
                                       for t in args.probe_threads.split(",") if t.strip()))

    started = time.perf_counter()
    load_before = os.getloadavg()
    machine = _machine()
    _err(f"# load average before: {_fmt_load(load_before)} on {machine['nproc']} CPUs; torch default threads "
         f"{default_threads}")
    sections: list[dict] = []
    timers = _timers()
    doc: dict = {"config": {"events": args.events, "scale": args.scale, "world_seed": args.world_seed,
                            "seeds": args.seeds, "n_boot": args.n_boot, "n_windows": N_WINDOWS,
                            "threads": args.threads_eval, "probe_threads": probe_threads,
                            "probe_steps": args.probe_steps, "auc_sizes": args.auc_sizes,
                            "auc_repeats": args.auc_repeats, "parts": sorted(parts),
                            "proxy": EvalConfig().to_dict()["proxy"],
                            "timers_installed": [k for k, tm in timers.items() if tm.installed]},
                 "machine": machine, "provenance": _provenance(), "load_before": list(load_before)}
    try:
        if parts & {"probe", "throughput", "eval"}:
            with tempfile.TemporaryDirectory(prefix="lee-eval-bench-", dir=args.tmpdir) as tmp:
                with Section("data", sections):
                    stream, snaps, info = build_data(args, Path(tmp))
                doc["data"] = info
                if "probe" in parts:
                    doc["thread_probe"] = thread_probe(stream, probe_threads, args.probe_steps, sections)
                if "throughput" in parts:
                    doc["throughput"] = throughput(stream, snaps, args.threads_eval, timers, sections)
                if "eval" in parts:
                    doc["evaluation"] = full_eval(stream, snaps, args, timers, sections)
                del stream, snaps
        else:
            doc["data"] = {"N": 0, "train_samples_per_run": 0, "test_samples": 0}
        torch.set_num_threads(default_threads)
        if "auc" in parts:
            doc["auc"] = auc_bench(args.auc_sizes, args.auc_repeats, sections)
    finally:
        for tm in timers.values():
            tm.uninstall()
        torch.set_num_threads(default_threads)
    doc["load_after"] = list(os.getloadavg())
    doc["sections"] = sections
    doc["total_wall_s"] = time.perf_counter() - started
    report(doc)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2, default=float) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
