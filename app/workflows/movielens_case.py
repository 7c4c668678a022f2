"""The MovieLens case study: the whole workbench on real data nobody here wrote.

``run_movielens_case`` imports ``ml-latest-small`` (click = rating ≥ 4; per-user time split),
trains the upstream model on the upstream part with a snapshot per simulated year of event time,
writes a random snapshot of the same shape beside the latest one, runs LEE on UR, IR and CR for
both against the baseline (plus the paired upstream-vs-random interval, the acceptance question),
runs every analysis of the suite on the downstream part, measures how pure the clusters' top
genres are against several random snapshots, and writes the HTML report. ``lee casestudy
movielens`` runs it; ``docs/case-study.md`` discusses its numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import normalized_mutual_info_score

from analysis.clusters import kmeans
from analysis.lee_results import LeeComparison
from analysis.report import write_report
from analysis.suite import SuiteConfig, SuiteResult, run_suite
from lee.evaluator.compare import EvalConfig, compare_snapshots
from lee.evaluator.data import stream_from_world
from lee.evaluator.stats import RankedScores, paired_delta_ci
from lee.features import encode_world
from lee.results import SavedResult, plain, register
from lee.snapshot import EmbeddingTable, Snapshot, SnapshotStore, write_snapshot
from lee.upstream.model import UpstreamConfig
from lee.upstream.train import TrainConfig, train_upstream
from lee.world.io import save_world
from lee.world.model import World
from lee.world.movielens import import_movielens, part

YEAR_MINUTES = 365 * 24 * 60
USAGES = ("UR", "IR", "CR")


def write_random_like(snapshot: Snapshot, root: str | Path, variant: str = "random", *, seed: int = 0) -> Path:
    """A snapshot of ``snapshot``'s shape (same ids, dims, per-dimension mean and std) whose vectors
    are Gaussian noise: the 'no information' yardstick for real data."""
    rng = np.random.default_rng(seed)
    tables = {}
    for kind in snapshot.kinds:
        t = snapshot.load(kind)
        mu, sd = t.vectors.mean(0), t.vectors.std(0) + 1e-6
        tables[kind] = EmbeddingTable(t.ids, (mu + sd * rng.standard_normal(t.vectors.shape)).astype(np.float32))
    return write_snapshot(root, variant, snapshot.event_time, tables, source_layer="random-like",
                          extra={"random_like": str(snapshot.path), "seed": seed}, overwrite=True)


@register("movielens-case-study")
@dataclass
class MovieLensCase(SavedResult):
    """Everything the case study measured; ``summary()`` is what docs/case-study.md quotes."""

    world: dict[str, Any]
    upstream: dict[str, Any]
    lee: pd.DataFrame
    upstream_vs_random: pd.DataFrame
    purity: pd.DataFrame
    suite: SuiteResult
    report: Path
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return plain({"world": self.world, "upstream": self.upstream,
                      "lee": self.lee.to_dict(orient="records"),
                      "upstream_vs_random": self.upstream_vs_random.to_dict(orient="records"),
                      "purity": self.purity.to_dict(orient="records"), "suite": self.suite.summary(),
                      "report": str(self.report), "seconds": self.seconds})

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"lee": self.lee, "upstream_vs_random": self.upstream_vs_random, "purity": self.purity}


def genre_profiles(world: World, events: pd.DataFrame) -> pd.DataFrame:
    """Each user's genre mix: share of their positive ratings per genre (multi-genre films split)."""
    pos = events[events["click"] == 1]
    genres = world.items.set_index("item_id")["genres"].str.split("|")
    x = pos.assign(genre=genres.reindex(pos["item_id"].to_numpy()).to_numpy()).explode("genre")
    x["w"] = 1.0 / x.groupby(level=0)["genre"].transform("size")
    prof = x.pivot_table(index="user_id", columns="genre", values="w", aggfunc="sum", fill_value=0.0)
    return prof.div(prof.sum(axis=1), axis=0)


def _js(p: np.ndarray, q: np.ndarray) -> float:
    m = (p + q) / 2.0

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        nz = a > 0
        return float((a[nz] * np.log(a[nz] / b[nz])).sum())

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def cluster_genre_measures(vectors: np.ndarray, ids: np.ndarray, labels: pd.Series, profiles: pd.DataFrame, *,
                           k: int, seed: int = 0) -> dict[str, float]:
    """How genre-specific K-means clusters of a user table are, three ways:

    * ``genre_mix_divergence`` — size-weighted mean Jensen–Shannon divergence between each cluster's
      mean genre profile and the overall profile (0: every cluster has the population's mix);
    * ``purity`` — size-weighted share of each cluster's most common top-genre label;
    * ``nmi`` — normalised mutual information between cluster and top-genre label.
    """
    fit = kmeans(vectors, k, seed=seed, n_init=10)
    has = np.isin(ids, profiles.index.to_numpy())  # users with no positive rating have no genre mix
    P = profiles.reindex(ids[has]).to_numpy()
    cl = fit.labels[has]
    overall = P.mean(0)
    div = sum((cl == c).sum() * _js(P[cl == c].mean(0), overall) for c in np.unique(cl)) / has.sum()
    lab = labels.reindex(ids).astype(str).to_numpy()
    tab = pd.crosstab(fit.labels, lab)
    purity = float(tab.max(axis=1).sum() / tab.to_numpy().sum())
    return {"genre_mix_divergence": float(div), "purity": purity,
            "nmi": float(normalized_mutual_info_score(lab, fit.labels))}


def run_movielens_case(data: str | Path, out: str | Path, *, users: int | None = None,
                       seeds: tuple[int, ...] = (0, 1, 2), n_boot: int = 200, random_seeds: int = 20,
                       split: str = "per-user", device: str = "cpu", batch_size: int = 256, epochs: int = 5,
                       log: Callable[[str], Any] = print, progress: bool = False) -> MovieLensCase:
    """Run the case study on ``data`` (ml-latest-small) into ``out``; ``users`` subsamples (CI)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    world = import_movielens(data, split=split, users=users)
    save_world(world, out / "world", overwrite=True)
    up, down = part(world, "upstream"), part(world, "downstream")
    wsum = {**world.summary(), "upstream_events": len(up.events), "downstream_events": len(down.events),
            "downstream_positive_rate": float(down.events["click"].mean()),
            "downstream_users_seen_upstream": float(down.events["user_id"].isin(up.events["user_id"]).mean()),
            "downstream_items_seen_upstream": float(down.events["item_id"].isin(up.events["item_id"]).mean()),
            **{k: world.meta[k] for k in ("label_rule", "split", "user_label_rule", "item_category_rule")}}
    seconds["import"] = time.perf_counter() - t
    log(f"[1/5] MovieLens: {wsum['users']} users, {wsum['items']} movies, {wsum['events']:,} ratings "
        f"({wsum['upstream_events']:,} upstream / {wsum['downstream_events']:,} downstream, {split} split)")

    t = time.perf_counter()
    root = out / "snapshots"
    res = train_upstream(encode_world(up), root, model_cfg=UpstreamConfig(),
                         train_cfg=TrainConfig(snapshot_every_minutes=YEAR_MINUTES, holdout_fraction=0.1,
                                               tau_seconds=30 * 24 * 3600.0, seed=seeds[0], batch_size=batch_size,
                                               epochs_per_interval=epochs),
                         device=device, progress=progress)
    store = SnapshotStore(root)
    latest = store.latest("upstream")
    write_random_like(latest, root, "random", seed=0)
    upsum = {"holdout_auc": res.holdout_auc_ad, "snapshots": len(res.snapshots), "train_events": res.train_events,
             "latest": latest.event_time.isoformat()}
    seconds["upstream"] = time.perf_counter() - t
    log(f"[2/5] upstream model: {len(res.snapshots)} yearly snapshots, held-out AUC {res.holdout_auc_ad:.4f}")

    t = time.perf_counter()
    stream = stream_from_world(down)
    rows, paired = [], []
    for usage in USAGES:
        cfg = EvalConfig(usage=usage, seeds=seeds, n_boot=n_boot)
        cmp = compare_snapshots(stream, {"upstream": latest, "random": store.latest("random")}, cfg, device=device)
        base = cmp.baseline
        for v in cmp.variants:
            assert v.delta is not None, "compare_snapshots pairs every variant with the baseline"
            rows.append({"variant": v.name, "usage": usage, "fusion": cfg.fusion, "auc": v.auc,
                         "baseline_auc": base.auc, "delta_auc": v.delta.delta, "ci_low": v.delta.low,
                         "ci_high": v.delta.high, "rela_impr": v.rela_impr, "verdict": v.verdict})
        u, r = cmp.get("upstream"), cmp.get("random")
        y = stream.y[u.runs[0].test_lo:].numpy()
        d = paired_delta_ci([RankedScores(y, x.scores) for x in r.runs], [RankedScores(y, x.scores) for x in u.runs],
                            stream.user_row[u.runs[0].test_lo:], n_boot=n_boot, level=cfg.level)
        paired.append({"usage": usage, "delta_auc_upstream_minus_random": d.delta, "ci_low": d.low, "ci_high": d.high,
                       "level": d.level, "verdict": d.verdict})
    lee_table = pd.DataFrame(rows)
    vs_random = pd.DataFrame(paired)
    seconds["lee"] = time.perf_counter() - t
    log("[3/5] LEE on the downstream part: " + "; ".join(
        f"{p['usage']} upstream−random {p['delta_auc_upstream_minus_random']:+.4f} "
        f"[{p['ci_low']:+.4f}, {p['ci_high']:+.4f}] {p['verdict']}" for p in paired))

    t = time.perf_counter()
    variants = ("upstream", "random")
    suite = run_suite(world, root, config=SuiteConfig(variants=variants, map_methods=("pca", "tsne"),
                                                      importance_variants=("upstream",), n_boot=n_boot,
                                                      segments=False, device=device),
                      out=out / "analyses", events=down.events, stream=stream, log=log, progress=progress)
    labels = world.user_labels()
    k = world.default_k()
    profiles = genre_profiles(world, up.events)
    ur = latest.load("UR")
    mu, sd = ur.vectors.mean(0), ur.vectors.std(0)
    pur = [{"variant": "upstream", **cluster_genre_measures(ur.vectors, ur.ids, labels, profiles, k=k)}]
    rng = np.random.default_rng(1)
    for draw in range(random_seeds):  # random embeddings of the same shape, drawn in memory
        noise = (mu + sd * rng.standard_normal(ur.vectors.shape)).astype(np.float32)
        pur.append({"variant": f"random draw {draw}", **cluster_genre_measures(noise, ur.ids, labels, profiles, k=k)})
    purity = pd.DataFrame(pur)
    seconds["analyses"] = time.perf_counter() - t
    rnd = purity[purity["variant"] != "upstream"]
    log("[4/5] analyses; UR clusters vs " + f"{len(rnd)} random draws: " + "; ".join(
        f"{m} {purity[m].iloc[0]:.4f} vs {rnd[m].mean():.4f} (max {rnd[m].max():.4f})"
        for m in ("genre_mix_divergence", "purity", "nmi")))

    t = time.perf_counter()
    lee = LeeComparison(source="MovieLens case study (in memory)", ranking=lee_table, windows=pd.DataFrame())
    report = write_report(out / "report", suite, lee=lee, title="LEE Workbench · MovieLens case study",
                          meta={"data": str(data), "label rule": world.meta["label_rule"], "split": split})
    seconds["report"] = time.perf_counter() - t
    log(f"[5/5] report -> {report}")
    case = MovieLensCase(wsum, upsum, lee_table, vs_random, purity, suite, report, seconds)
    case.save(out / "case-study")
    return case
