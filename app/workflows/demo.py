"""The main job: everything the workbench can do, end to end, on a generated world.

``lee demo --out DIR`` runs it; the README's first command calls that. Each capability that
lands adds its step here, so the demo always exercises everything built so far.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.lee_results import lee_comparison
from analysis.report import write_report
from analysis.suite import SuiteConfig, run_suite
from lee.device import resolve_device
from lee.engine import usable_cpus
from lee.errors import InputError, SnapshotError
from lee.features import encode_world
from lee.jobs.config import load_job
from lee.jobs.run import run_job
from lee.jobs.store import ResultsStore
from lee.snapshot import SnapshotStore, validate_snapshot
from lee.upstream.model import UpstreamConfig
from lee.upstream.train import TrainConfig, train_upstream
from lee.world.anomalies import plant_anomalies
from lee.world.config import config_for_scale
from lee.world.generate import generate_world
from lee.world.io import save_world
from lee.world.planted import write_planted_variants

MONITORED = "oracle-monitored"  # a copy of the oracle with planted anomalies, for the health monitor


N_STEPS = 8
REAL_DATA = Path(__file__).resolve().parents[2] / "fixtures" / "real"
DEMO_JOB = """# LEE job written by `lee demo`; run it again with `lee evaluate --config lee-job.toml`
[job]
name = "demo"
snapshots = "snapshots"
data = "world"
results = "results.sqlite"
variants = ["oracle", "noise_*", "random", "id_shuffled", "rank_collapsed", "upstream"]
latest_only = true
device = "{device}"

[eval]
usages = ["UR+IR", "CR"]
fusions = ["concat"]
seeds = [{seeds}]
windows = 10
n_boot = 100

[engine]                 # units evaluated at once, each in a worker process with its share of the cores
workers = {workers}
"""


def demo_workers() -> int:
    """Worker processes for the demo's LEE job: one per core, at most four (each holds the stream
    and its models; the job has 14 units and 2 baselines)."""
    return min(usable_cpus(), 4)


@dataclass(frozen=True)
class DemoPaths:
    """Where the demo puts things under its output directory."""

    out: Path

    @property
    def world(self) -> Path:
        return self.out / "world"

    @property
    def snapshots(self) -> Path:
        return self.out / "snapshots"

    @property
    def job(self) -> Path:
        return self.out / "lee-job.toml"

    @property
    def results(self) -> Path:
        return self.out / "results.sqlite"

    @property
    def analyses(self) -> Path:
        return self.out / "analyses"

    @property
    def lee(self) -> Path:
        return self.out / "lee"

    @property
    def job_report(self) -> Path:
        return self.out / "job-report"

    @property
    def sweep(self) -> Path:
        return self.out / "sweep.csv"

    @property
    def report(self) -> Path:
        return self.out / "report"

    @property
    def summary(self) -> Path:
        return self.out / "summary.json"


def run_demo(
    out: str | Path,
    *,
    scale: str = "small",
    seed: int = 0,
    device: str = "auto",
    overwrite: bool = False,
    progress: bool = True,
    log: Any = print,
    real_data: bool = True,
) -> dict[str, Any]:
    """Generate a world, write the planted variants (and anomalies), train the upstream model,
    validate every snapshot, run LEE on every variant, then every analysis.

    Returns (and writes to ``summary.json``) the numbers of each step, with timings.
    """
    paths = DemoPaths(Path(out))
    if paths.out.exists() and any(paths.out.iterdir()) and not overwrite:
        raise InputError(f"{paths.out}: directory exists and is not empty; pass --overwrite to replace its contents")
    dev = resolve_device(device)
    if overwrite:  # only what the demo itself writes; anything else in ``out`` is left alone
        for stale in (paths.world, paths.snapshots, paths.analyses, paths.report, paths.lee, paths.job_report,
                      paths.out / "movielens", paths.out / "obd",
                      paths.out / "sweep-snapshots"):
            shutil.rmtree(stale, ignore_errors=True)
        for stale_file in (paths.results, paths.results.with_name(paths.results.name + "-wal"),
                           paths.results.with_name(paths.results.name + "-shm")):
            stale_file.unlink(missing_ok=True)
    summary: dict[str, Any] = {"scale": scale, "seed": seed, "device": str(dev), "steps": {}}
    steps = summary["steps"]

    t = time.perf_counter()
    world = generate_world(config_for_scale(scale, seed=seed), progress=progress)
    save_world(world, paths.world, overwrite=overwrite)
    steps["world"] = {**world.summary(), "path": str(paths.world), "seconds": time.perf_counter() - t}
    log(f"[1/{N_STEPS}] world: {len(world.users):,} users, {len(world.items):,} items, {len(world.events):,} events "
        f"-> {paths.world}")

    t = time.perf_counter()
    planted = write_planted_variants(world, paths.snapshots, seed=seed, overwrite=overwrite)
    anomalies = plant_anomalies(paths.snapshots, "oracle", into=MONITORED, seed=seed, overwrite=overwrite)
    steps["planted"] = {"variants": sorted(planted), "snapshots_per_variant": len(next(iter(planted.values()))),
                        "anomalies": {MONITORED: {k: v.isoformat() for k, v in anomalies.items()}},
                        "seconds": time.perf_counter() - t}
    log(f"[2/{N_STEPS}] planted variants: {', '.join(sorted(planted))}; anomalies ({', '.join(anomalies)}) "
        f"in {MONITORED} -> {paths.snapshots}")

    t = time.perf_counter()
    enc = encode_world(world)
    result = train_upstream(enc, paths.snapshots, model_cfg=UpstreamConfig(), train_cfg=TrainConfig(seed=seed),
                            device=dev, progress=progress)
    steps["upstream"] = {
        "holdout_auc_ad": result.holdout_auc_ad,
        "holdout_auc_content": result.holdout_auc_content,
        "train_events": result.train_events,
        "holdout_events": result.holdout_events,
        "snapshots": len(result.snapshots),
        "events_per_second": result.events_per_second,
        "device": result.device,
        "seconds": time.perf_counter() - t,
    }
    log(f"[3/{N_STEPS}] upstream model: held-out ad AUC {result.holdout_auc_ad:.4f}, content AUC "
        f"{result.holdout_auc_content:.4f}, {len(result.snapshots)} snapshots 5 min apart")

    t = time.perf_counter()
    store = SnapshotStore(paths.snapshots)
    checked, refused = 0, []
    for variant in store.variants():
        for when in store.times(variant):
            try:
                validate_snapshot(store.path(variant, when))
                checked += 1
            except SnapshotError as exc:  # the planted NaN snapshot must be refused, nothing else
                refused.append(str(exc))
    steps["validate"] = {"valid": checked, "refused": refused, "variants": store.variants(),
                         "seconds": time.perf_counter() - t}
    log(f"[4/{N_STEPS}] validated {checked} snapshots in {len(store.variants())} variants; refused {len(refused)}"
        + "".join(f"\n      refused: {r}" for r in refused))

    t = time.perf_counter()
    paths.job.write_text(DEMO_JOB.format(device=device, seeds=", ".join(str(seed + k) for k in range(3)),
                                         workers=demo_workers()), encoding="utf-8")
    report = run_job(load_job(paths.job), progress=progress, log=lambda *_: None)
    report.save(paths.job_report)
    ranked = ResultsStore(paths.results).compare()
    steps["lee"] = {
        "job": str(paths.job), "results": str(paths.results), "units": len(report.evaluated),
        "ranking": ranked[["variant", "usage", "fusion", "auc", "baseline_auc", "delta_auc", "ci_low", "ci_high",
                           "verdict"]].to_dict(orient="records"),
        "seconds": time.perf_counter() - t,
    }
    log(f"[5/{N_STEPS}] LEE: {len(report.evaluated)} evaluations -> {paths.results}")
    for usage, part in ranked.groupby("usage", sort=True):
        order = ", ".join(f"{r.variant} {r.delta_auc:+.4f} ({r.verdict})" for r in part.itertuples())
        log(f"      {usage}: {order}")

    t = time.perf_counter()
    from lee.evaluator.compare import EvalConfig
    from lee.evaluator.sweep import layer_sweep

    sweep = layer_sweep(world, paths.out / "sweep-snapshots", dims=(16, 32), device=dev,
                        eval_cfg=EvalConfig(usage="CR", seeds=(seed,), n_boot=50), progress=progress)
    sweep.table.to_csv(paths.sweep, index=False)
    steps["sweep"] = {"csv": str(paths.sweep), "rows": len(sweep.table), "seconds": time.perf_counter() - t,
                      "best": sweep.table.sort_values("delta_auc").iloc[-1][["layer", "dim", "delta_auc"]].to_dict()}
    best = steps["sweep"]["best"]
    log(f"      layer sweep (CR of every upstream layer at dims 16, 32; 1 seed): best {best['layer']} d{best['dim']} "
        f"ΔAUC {best['delta_auc']:+.4f} -> {paths.sweep}")

    t = time.perf_counter()
    suite = run_suite(world, paths.snapshots, out=paths.analyses, config=SuiteConfig(
        map_methods=("pca", "tsne"), map_variants=("oracle", "random", "upstream"), map_sample=2000,
        importance_variants=("oracle", "upstream"), importance_repeats=3, n_boot=100, seed=seed,
        device=str(dev)), log=log, progress=progress)
    steps["analyses"] = {**suite.summary(), "out": str(paths.analyses), "seconds": time.perf_counter() - t}
    health = suite.health[MONITORED].summary()
    log(f"[6/{N_STEPS}] analyses -> {paths.analyses}")
    log(f"      health of {MONITORED}: {health['flagged']} of {health['snapshots']} snapshots flagged, "
        f"roll back to {health['rollback_target']}")
    log("      cluster ARI vs planted groups: " + ", ".join(
        f"{v} {r.ari:.2f}" for v, r in suite.clusters.items() if r.ari is not None))
    collapsed = suite.collapse["UR"].loc[suite.collapse["UR"]["collapsed"], "variant"].tolist()
    log(f"      collapsed UR: {', '.join(collapsed) or 'none'}")
    for v, imp in suite.importance.items():
        log(f"      importance ({v}): {' > '.join(imp.ranking()[:3])}")

    t = time.perf_counter()  # release review: a retrain, the gate and version comparisons (report leads with it)
    from app.workflows.release_step import release_step

    review, steps["release"] = release_step(world, paths.snapshots, paths.results, paths.out / "compare", seed=seed,
                                            monitored=MONITORED, device=dev, progress=progress, log=log)
    steps["release"]["seconds"] = time.perf_counter() - t

    t = time.perf_counter()
    lee = lee_comparison(paths.results, sweep=sweep.figure_data())
    lee.save(paths.lee)
    html_path = write_report(paths.report, suite, lee=lee, review=review, title="LEE Workbench demo report",
                             meta={"scale": scale, "seed": seed})
    steps["report"] = {"html": str(html_path), "data": str(html_path.parent / "data"),
                       "seconds": time.perf_counter() - t}
    log(f"[7/{N_STEPS}] report -> {html_path} (opens offline; JSON/CSV in {html_path.parent / 'data'})")

    if real_data:
        from app.workflows.movielens_case import run_movielens_case
        from app.workflows.obd_case import obd_case_study
        from lee.world.obd import read_obd

        t = time.perf_counter()
        case = run_movielens_case(REAL_DATA / "movielens-latest-small", paths.out / "movielens",
                                  seeds=(seed, seed + 1, seed + 2), device=str(dev), log=lambda *_: None)
        obd = obd_case_study(read_obd(REAL_DATA / "open-bandit-small"), seeds=(seed, seed + 1, seed + 2))
        obd.save(paths.out / "obd")
        steps["real_data"] = {"movielens": case.summary(), "obd": obd.summary(), "seconds": time.perf_counter() - t}
        ur = case.upstream_vs_random.set_index("usage").loc["UR"]
        log(f"[8/{N_STEPS}] real data -> {paths.out / 'movielens'}: MovieLens UR upstream−random ΔAUC "
            f"{ur['delta_auc_upstream_minus_random']:+.4f} [{ur['ci_low']:+.4f}, {ur['ci_high']:+.4f}] "
            f"({ur['verdict']}); report {case.report}")
        a = obd.summary()["auc"]
        log(f"      Open Bandit: proxy AUC {a['mean']:.3f} [{a['ci_low']:.3f}, {a['ci_high']:.3f}] on "
            f"{a['test_clicks']} test clicks")

    paths.summary.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    log(f"summary -> {paths.summary}")
    return summary
