"""The MovieLens case study: the whole workbench on real data nobody here wrote, through the generic path.

``run_movielens_case`` does what a user with a MovieLens download would do with the documented
commands, step by step, and records every number:

1. ``lee data import --format movielens`` (click = rating ≥ 4; the later 30% of each user's ratings
   downstream, or a global time cut) → ``out/data``; users are labelled by genre mix (below);
2. ``lee upstream train --data out/data``: the upstream model on the upstream events only, a snapshot
   every interval the upstream time span gives (:func:`lee.upstream.from_dataset.default_cadence_minutes`);
3. ``lee snapshots random-like``: a random snapshot of the latest one's ids, dims, means and stds;
4. ``lee evaluate --config out/lee-job.toml``: LEE on UR, IR and CR for both against the baseline
   on the downstream events, coverage printed; ``lee results compare --db ... upstream random``:
   the paired upstream-vs-random interval (the acceptance question);
5. every analysis of the suite on the downstream part, and ``lee analyze clusters --label genres
   --against-random N``: purity, NMI and genre-mix divergence of the UR clusters against N random
   draws;
6. the HTML report.

Users get a ``label`` column in the dataset's users table: the genre whose share in the user's
genre mix (the items' ``genres`` of their positive upstream ratings, multi-genre films split) most
exceeds the population's (:func:`analysis.cluster_labels.top_labels`), so the suite's clusters and
the report are labelled with it. It is an attribute, not a declared field: no model reads it. The
genre measures of step 5 use the same mixes (the events the representation was trained on).

``lee casestudy movielens`` runs it; ``docs/case-study.md`` discusses its numbers.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.cluster_labels import ClusterLabelResult, label_mix, snapshot_cluster_labels, top_labels
from analysis.lee_results import lee_comparison
from analysis.report import write_report
from analysis.suite import SuiteConfig, SuiteResult, run_suite
from analysis.variant_compare import ASSUMPTION, METHOD, VariantComparison, compare_variants
from lee.data.dataset import Dataset, write_dataset
from lee.data.importers import ImportOptions, import_dataset
from lee.errors import InputError
from lee.features import encode_world
from lee.jobs.config import load_job
from lee.jobs.run import run_job
from lee.jobs.store import ResultsStore
from lee.results import SavedResult, plain, register
from lee.snapshot import SnapshotStore
from lee.snapshot.random_like import write_random_like
from lee.upstream.from_dataset import default_cadence_minutes, upstream_world
from lee.upstream.model import UpstreamConfig
from lee.upstream.train import TrainConfig, train_upstream

USAGES = ("UR", "IR", "CR")
SPLITS = {"per-user": "user:0.3", "global": None}   # global: a time cut at the 70% quantile of the ratings
LABEL = "genres"                                      # the items column users are labelled and measured by
JOB = """# LEE job written by `lee casestudy movielens`; run it again with `lee evaluate --config lee-job.toml`
[job]
name = "movielens-case"
snapshots = "snapshots"
data = "data"
results = "results.sqlite"
variants = ["upstream", "random"]
latest_only = true
device = "{device}"

[eval]
usages = ["UR", "IR", "CR"]
fusions = ["concat"]
seeds = [{seeds}]
n_boot = {n_boot}
"""


@register("movielens-case-study")
@dataclass
class MovieLensCase(SavedResult):
    """Everything the case study measured; ``summary()`` is what docs/case-study.md quotes.

    ``lee``: the LEE ranking from the results store (each variant against the baseline, with
    coverage); ``upstream_vs_random``: the paired upstream − random interval per usage
    (:mod:`analysis.variant_compare`); ``purity``: purity, NMI and genre-mix divergence of the
    UR clusters and of every random draw (:mod:`analysis.cluster_labels`)."""

    world: dict[str, Any]
    upstream: dict[str, Any]
    lee: pd.DataFrame
    upstream_vs_random: pd.DataFrame
    purity: pd.DataFrame
    suite: SuiteResult
    report: Path
    seconds: dict[str, float] = field(default_factory=dict)
    clusters: ClusterLabelResult | None = None
    compare: VariantComparison | None = None

    def summary(self) -> dict[str, Any]:
        return plain({"world": self.world, "upstream": self.upstream,
                      "lee": self.lee.to_dict(orient="records"),
                      "upstream_vs_random": self.upstream_vs_random.to_dict(orient="records"),
                      "upstream_vs_random_method": {"method": METHOD, "assumption": ASSUMPTION},
                      "purity": self.purity.to_dict(orient="records"),
                      "clusters_vs_random": self.clusters.summary() if self.clusters is not None else None,
                      "suite": self.suite.summary(), "report": str(self.report), "seconds": self.seconds})

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"lee": self.lee, "upstream_vs_random": self.upstream_vs_random, "purity": self.purity}


# ----------------------------------------------------------------------------- the dataset


def _subset_users(ds: Dataset, users: int, seed: int) -> tuple[pd.DataFrame, str]:
    """The events of a seeded random subset of ``users`` users (a reduced run for CI)."""
    if users < 1:
        raise InputError(f"users must be at least 1 (a subset size); got {users}")
    col = ds.user_col
    ids = np.sort(pd.unique(ds.events[col].to_numpy()))
    keep = np.random.default_rng(seed).choice(ids, size=min(users, ids.size), replace=False)
    events = ds.events[ds.events[col].isin(keep)].reset_index(drop=True)
    return events, f"reduced run: {len(keep)} of {ids.size} users (seeded random subset, seed {seed})"


def movielens_dataset(data: str | Path, out: str | Path, *, split: str = "per-user", users: int | None = None,
                      seed: int = 0) -> Dataset:
    """``lee data import --format movielens`` into ``out``, then (optionally) a user subset or a global time
    cut, and a users table whose ``label`` is each user's top genre by excess share (module docstring)."""
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    out = Path(out)
    import_dataset("movielens", data, out, ImportOptions(split=SPLITS[split]), overwrite=True)
    ds = Dataset.open(out)
    notes = list(ds.spec.source.get("notes", []))
    events = ds.events
    if users is not None:
        events, note = _subset_users(ds, users, seed)
        notes.append(note)
        ds = Dataset(spec=ds.spec, events=events, users=ds.users, items=ds.items, path=out)
    if split == "global":
        cut = int(np.quantile(ds.ts, 0.7))
        ds = ds.with_split(cut=cut)
        notes.append("split: global time cut at the 70% quantile of the ratings' times")
    mix = label_mix(ds, "user", LABEL)
    user_ids = np.sort(pd.unique(events[ds.user_col].to_numpy()))
    label = top_labels(mix.mix).reindex(user_ids).fillna("(no positive rating)").astype(str)
    users_table = pd.DataFrame({ds.user_col: user_ids, "label": label.to_numpy()})
    notes.append(f"users.label: {mix.source}; the top genre by excess share over the population's mean mix "
                 "(an attribute for cluster labels, not a field)")
    spec = ds.spec.model_copy(update={"source": {**ds.spec.source, "notes": notes}})
    return write_dataset(out, spec, events, users_table, ds.items, overwrite=True)


# ----------------------------------------------------------------------------- the study


def run_movielens_case(data: str | Path, out: str | Path, *, users: int | None = None,
                       seeds: tuple[int, ...] = (0, 1, 2), n_boot: int = 200, random_seeds: int = 20,
                       split: str = "per-user", device: str = "cpu", batch_size: int = 256, epochs: int = 5,
                       log: Callable[[str], Any] = print, progress: bool = False) -> MovieLensCase:
    """Run the case study on ``data`` (a MovieLens directory) into ``out``; ``users`` subsamples (CI)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("snapshots", "results.sqlite", "results.sqlite-wal", "results.sqlite-shm"):
        p = out / stale
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    seconds: dict[str, float] = {}

    t = time.perf_counter()
    ds = movielens_dataset(data, out / "data", split=split, users=users)
    info = ds.summary()
    up_mask, down_mask = ds.part_mask("upstream"), ds.part_mask("downstream")
    ev = ds.events
    up_users, up_items = set(ev.loc[up_mask, ds.user_col]), set(ev.loc[up_mask, ds.item_col])
    wsum = {"users": info["users"], "items": info["items"], "rated_items": int(ev[ds.item_col].nunique()),
            "events": info["events"], "upstream_events": info["upstream_events"],
            "downstream_events": info["downstream_events"], "positive_rate": info["label_rate"],
            "downstream_positive_rate": info["downstream_label_rate"],
            "downstream_users_seen_upstream": float(ev.loc[down_mask, ds.user_col].isin(up_users).mean()),
            "downstream_items_seen_upstream": float(ev.loc[down_mask, ds.item_col].isin(up_items).mean()),
            "time_span": info["time_span"], "label_rule": ds.spec.source.get("label_rule"), "split": info["split"],
            "fields": [f["name"] for f in info["fields"]], "notes": ds.spec.source.get("notes", [])}
    seconds["import"] = time.perf_counter() - t
    log(f"[1/6] MovieLens via `lee data import`: {wsum['users']} users, {wsum['rated_items']} rated movies, "
        f"{wsum['events']:,} ratings ({wsum['upstream_events']:,} upstream / {wsum['downstream_events']:,} "
        f"downstream; {wsum['split']})")

    t = time.perf_counter()
    root = out / "snapshots"
    world, up_info = upstream_world(ds)
    cadence = default_cadence_minutes(up_info["span_seconds"])
    tcfg = TrainConfig(snapshot_every_minutes=cadence, holdout_fraction=0.1, tau_seconds=30 * 24 * 3600.0,
                       seed=seeds[0], batch_size=batch_size, epochs_per_interval=epochs)
    res = train_upstream(encode_world(world), root, model_cfg=UpstreamConfig(), train_cfg=tcfg, device=device,
                         progress=progress)
    store = SnapshotStore(root)
    latest = store.latest("upstream")
    write_random_like(latest, root, "random", seed=0, overwrite=True)
    upsum = {"holdout_auc": res.holdout_auc_ad, "snapshots": len(res.snapshots), "train_events": res.train_events,
             "holdout_events": res.holdout_events, "latest": latest.event_time.isoformat(),
             "snapshot_every_minutes": cadence, "snapshot_every_days": cadence / 1440.0,
             "cadence": "from the upstream events' time span (about 12 snapshots)",
             "upstream_span_days": up_info["span_seconds"] / 86400.0, "mapping": up_info["mapping"],
             "epochs_per_interval": epochs, "batch_size": batch_size}
    seconds["upstream"] = time.perf_counter() - t
    log(f"[2/6] upstream model on the upstream events: a snapshot every {cadence / 1440:g} days over "
        f"{upsum['upstream_span_days']:.0f} days ({len(res.snapshots)} snapshots), held-out AUC "
        f"{res.holdout_auc_ad:.4f}; random-like snapshot beside the latest")

    t = time.perf_counter()
    job_file = out / "lee-job.toml"
    job_file.write_text(JOB.format(device=device, seeds=", ".join(map(str, seeds)), n_boot=n_boot),
                        encoding="utf-8")
    job = load_job(job_file)
    run_job(job, progress=progress, log=lambda *_: None)
    db = job.job.results
    ranking = ResultsStore(db).compare()
    cols = ["variant", "usage", "fusion", "auc", "baseline_auc", "delta_auc", "ci_low", "ci_high", "rela_impr",
            "verdict", "coverage_events", "coverage_ids", "run_id"]
    lee_table = ranking[cols].reset_index(drop=True)
    cmp = compare_variants(db, "upstream", "random")
    c = cmp.table.set_index("usage").reindex(list(USAGES)).reset_index()
    vs_random = pd.DataFrame({"usage": c["usage"], "delta_auc_upstream_minus_random": c["delta"],
                              "ci_low": c["ci_low"], "ci_high": c["ci_high"], "level": cmp.level,
                              "verdict": c["verdict"], "windows": c["windows"], "seeds": c["seeds"],
                              "pooled_delta": c["pooled_delta"], "lag1_autocorr": c["lag1_autocorr"]})
    seconds["lee"] = time.perf_counter() - t
    for r in lee_table.itertuples():
        log(f"      {r.variant} {r.usage}: ΔAUC {r.delta_auc:+.4f} [{r.ci_low:+.4f}, {r.ci_high:+.4f}] {r.verdict}; "
            f"coverage {r.coverage_events:.1%} of downstream events, {r.coverage_ids:.1%} of ids")
    log("[3/6] LEE job on the downstream part; upstream − random (paired by seed and window): " + "; ".join(
        f"{p.usage} {p.delta_auc_upstream_minus_random:+.4f} [{p.ci_low:+.4f}, {p.ci_high:+.4f}] {p.verdict}"
        for p in vs_random.itertuples()))

    t = time.perf_counter()
    clusters = snapshot_cluster_labels(latest, "UR", ds, LABEL, draws=random_seeds, seed=0)
    purity = clusters.measures.rename(columns={"label_mix_divergence": "genre_mix_divergence"})
    purity["variant"] = purity["variant"].replace({"snapshot": "upstream"})
    seconds["clusters"] = time.perf_counter() - t
    comp = clusters.comparison().set_index("measure")
    log(f"[4/6] UR clusters (k = {clusters.k}) vs {random_seeds} random draws: " + "; ".join(
        f"{m} {comp.loc[m, 'snapshot']:.4f} vs {comp.loc[m, 'random_mean']:.4f} (max {comp.loc[m, 'random_max']:.4f})"
        for m in comp.index))

    t = time.perf_counter()
    suite = run_suite(ds, root, config=SuiteConfig(variants=("upstream", "random"), map_methods=("pca", "tsne"),
                                                   importance_variants=("upstream",), n_boot=n_boot, k=clusters.k,
                                                   segments=False, device=device),
                      out=out / "analyses", log=log, progress=progress)
    seconds["analyses"] = time.perf_counter() - t
    log("[5/6] analyses of the suite on the downstream part")

    t = time.perf_counter()
    report = write_report(out / "report", suite, lee=lee_comparison(db), title="LEE Workbench · MovieLens case study",
                          meta={"data": str(data), "label rule": str(wsum["label_rule"]), "split": wsum["split"]})
    seconds["report"] = time.perf_counter() - t
    log(f"[6/6] report -> {report}")
    case = MovieLensCase(wsum, upsum, lee_table, vs_random, purity, suite, report, seconds, clusters, cmp)
    case.save(out / "case-study")
    return case

