"""Every analysis over one dataset (or world) and snapshot root, in one call: what the demo, the scheduled jobs
and the HTML report run.

:func:`run_suite` returns a :class:`SuiteResult` holding each analysis's own result object and,
given ``out``, saves it there as one result directory (``result.json`` with every number, one CSV
per table; :mod:`lee.results`) that loads back without recomputing. Nothing here computes a number
itself: it only decides what to run on what.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

import pandas as pd
from pydantic import AfterValidator, Field

from analysis._data import as_dataset, id_labels, interactions, planted_truth
from analysis.clusters import ClusterResult, cluster_snapshot
from analysis.collapse import CollapseResult, collapse_of_table, compare_collapse
from analysis.health import HealthReport, HealthThresholds, snapshot_health
from analysis.importance import ImportanceResult, MaskingMode, importance_for_snapshot
from analysis.maps import Map2D, MapMethod, embed_2d
from analysis.segments import SegmentLift, segment_lift
from analysis.volatility import VolatilityResult, VolatilitySeries, cosine_by_id, volatility_series
from lee.config import ConfigModel
from lee.data.dataset import Dataset
from lee.device import Device
from lee.errors import InputError, LeeError, LeeWarning
from lee.evaluator.data import DownstreamStream, stream_from_dataset
from lee.evaluator.inject import Usage
from lee.results import SavedResult, plain, register
from lee.snapshot import Snapshot, SnapshotStore, TableKind
from lee.world.ab_log import generate_ab_log
from lee.world.model import World


def _table_kind(value: str) -> str:
    """A table name the snapshot format knows (UR, IR, CR_user, CR_item), kept as written."""
    if not any(value == k.value or value.upper() == k.value.upper() for k in TableKind):
        raise ValueError(f"a table kind: one of {', '.join(k.value for k in TableKind)}")
    return value


_TableName = Annotated[str, AfterValidator(_table_kind)]


class SuiteConfig(ConfigModel):
    """What the suite runs. ``None`` for a variant list means every variant under the root.

    ``lee report --config suite.toml`` reads it from TOML (top-level keys, thresholds in a
    ``[health]`` table) through :func:`lee.config.load_config`: typed, ranged, unknown keys refused.
    """

    config_name: ClassVar[str] = "suite config"

    variants: tuple[str, ...] | None = None
    tables: tuple[_TableName, ...] = tuple(k.value for k in TableKind)
    cluster_table: _TableName = TableKind.UR.value
    k: int | None = Field(None, ge=2)            # default: the number of distinct user labels
    map_methods: tuple[MapMethod, ...] = (MapMethod.PCA,)
    map_variants: tuple[str, ...] | None = None  # default: every clustered variant
    map_sample: int = Field(5000, gt=0)
    map_place_rest: bool = False  # place every other row by the method's transform (maps of every id)
    importance_variants: tuple[str, ...] = ()
    importance_usage: Usage = Usage.UR_IR
    importance_mode: MaskingMode = MaskingMode.PERMUTATION
    importance_repeats: int = Field(3, ge=1)
    n_boot: int = Field(200, ge=2)
    segments: bool = True
    seed: int = Field(0, ge=0)
    device: Device = Device.CPU
    health: HealthThresholds = Field(default_factory=HealthThresholds)


@register("suite")
@dataclass
class SuiteResult(SavedResult):
    """Each analysis's result object, keyed by variant (and table where it applies)."""

    variants: list[str]
    volatility: dict[str, dict[str, VolatilityResult]] = field(default_factory=dict)
    series: dict[str, dict[str, VolatilitySeries]] = field(default_factory=dict)
    health: dict[str, HealthReport] = field(default_factory=dict)
    collapse: dict[str, pd.DataFrame] = field(default_factory=dict)
    spectra: dict[str, dict[str, CollapseResult]] = field(default_factory=dict)
    clusters: dict[str, ClusterResult] = field(default_factory=dict)
    maps: dict[str, dict[str, Map2D]] = field(default_factory=dict)
    map_frames: dict[str, dict[str, pd.DataFrame]] = field(default_factory=dict)
    importance: dict[str, ImportanceResult] = field(default_factory=dict)
    segments: SegmentLift | None = None
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        vol = {v: {t: {k: r.summary()[k] for k in ("n_shared", "mean_cosine", "share_above_0.99",
                                                    "share_above_0.95", "n_new", "n_lost")}
                   for t, r in by.items()} for v, by in self.volatility.items()}
        return plain({
            "variants": self.variants,
            "volatility": vol,
            "health": {v: r.summary() for v, r in self.health.items()},
            "collapse": {t: f.set_index("variant")[["effective_rank", "information_abundance", "collapsed"]]
                         .to_dict(orient="index") for t, f in self.collapse.items()},
            "clusters": {v: {"k": r.k, "ari": r.ari, "silhouette": r.silhouette, "overall_ctr": r.overall_ctr,
                             "flagged": int((r.table["flag"] != "").sum())} for v, r in self.clusters.items()},
            "importance": {v: r.summary() for v, r in self.importance.items()},
            "segments": self.segments.summary() if self.segments is not None else None,
            "skipped": self.skipped,
        })

    def tables(self) -> dict[str, pd.DataFrame]:
        """Every table of every analysis, named ``<analysis>-<variant>[-<table>]-<name>``."""
        out: dict[str, pd.DataFrame] = {}
        for v, rep in self.health.items():
            out.update({f"health-{v}-{k}": f for k, f in rep.tables().items()})
        for v, by in self.volatility.items():
            for t, r in by.items():
                out.update({f"volatility-{v}-{t}-{k}": f for k, f in r.tables().items()})
        for v, by in self.series.items():
            for t, s in by.items():
                out[f"volatility-series-{v}-{t}"] = s.table
        for t, frame in self.collapse.items():
            out[f"collapse-{t}"] = frame
            out.update({f"collapse-{t}-spectrum-{v}": r.spectrum() for v, r in self.spectra.get(t, {}).items()})
        for v, r in self.clusters.items():
            out[f"clusters-{v}"] = r.table
            out.update({f"map-{v}-{m}": f for m, f in self.map_frames.get(v, {}).items()})
        for v, imp in self.importance.items():
            out[f"importance-{v}"] = imp.table
        if self.segments is not None:
            out["segments"] = self.segments.table
        return out


def cluster_frames(res: ClusterResult) -> dict[str, pd.DataFrame]:
    return {"clusters": res.table}


def map_frame(m: Map2D, clusters: ClusterResult, labels: pd.Series | None) -> pd.DataFrame:
    """One row per mapped id: coordinates, cluster, label and the cluster's CTR (for colouring)."""
    ids = clusters.ids[m.rows]
    cl = clusters.assignment[m.rows]
    ctr = clusters.table.set_index("cluster")["ctr"].reindex(cl).to_numpy()
    frame = pd.DataFrame({"id": ids, "x": m.xy[:, 0], "y": m.xy[:, 1], "cluster": cl, "cluster_ctr": ctr})
    frame["label"] = labels.reindex(ids).fillna("").astype(str).to_numpy() if labels is not None else ""
    return frame


def _id_types(snap: Snapshot, kind: TableKind, events: pd.DataFrame) -> str:
    """Which kind of ids the snapshot table and the log's id column hold, in words (for a skipped analysis)."""
    def words(text: bool) -> str:
        return "text" if text else "integer"

    col = f"{kind.entity}_id"
    snap_text = snap.info(kind).id_type == "string"
    log_text = col in events.columns and not pd.api.types.is_integer_dtype(events[col].dtype)
    return (f"{kind.value} ids are {words(snap_text)}, events.{col} are {words(log_text)}"
            + ("; cluster CTR needs the snapshot's ids in the log" if snap_text != log_text else ""))


def run_suite(data: Dataset | World, root: str | Path, *, config: SuiteConfig | None = None,
              out: str | Path | None = None, ab_log: pd.DataFrame | None = None,
              log: Callable[[str], Any] = print, progress: bool = False, events: pd.DataFrame | None = None,
              stream: DownstreamStream | None = None) -> SuiteResult:
    """Run every analysis on the snapshots under ``root`` against ``data`` (any dataset; a world).

    ``events`` (default: the dataset's downstream interactions: user_id, item_id, click) give the
    clusters' CTR; ``stream`` (default: the dataset's downstream stream) is what the importance
    proxies train on. ``ab_log`` defaults to a planted log when ``data`` is a planted world.
    """
    cfg = config or SuiteConfig()
    ds = as_dataset(data)
    store = SnapshotStore(root)
    variants = list(cfg.variants) if cfg.variants is not None else store.variants()
    missing = sorted(set(variants) - set(store.variants()))
    if missing:
        raise InputError(f"{root}: no variant(s) {', '.join(missing)}; present: {', '.join(store.variants())}")
    res = SuiteResult(variants=variants)
    res.skipped += [p.skipped() for p in store.problems()]  # unreadable directories are named, never dropped

    # --- health first: every later analysis reads each variant's latest snapshot that is not broken
    current = {}
    for v in variants:
        kinds = [t for t in cfg.tables if TableKind.parse(t) in store.latest(v).kinds]
        res.health[v] = snapshot_health(store, v, thresholds=cfg.health, kinds=kinds)
        target = res.health[v].latest_usable
        table = res.health[v].table
        broken = table[table["broken"] & ((table["time"] > pd.Timestamp(target)) if target is not None else True)]
        why = "; ".join(dict.fromkeys(r for r in broken["reasons"] if r))  # each names its file
        if target is None:
            res.skipped.append(f"{v}: every snapshot is broken (NaN rows or dead dimensions); only health is reported"
                               + (f" ({why})" if why else ""))
            continue
        current[v] = store.open(v, target)
        if target != store.times(v)[-1]:
            res.skipped.append(f"{v}: latest snapshot is broken; analyses use {target.isoformat()}"
                               + (f" ({why})" if why else ""))

    # --- volatility, per variant and table: the current snapshot against the one before it
    for v, snap in current.items():
        times = store.times(v)
        k = times.index(snap.event_time)
        if k == 0:
            res.skipped.append(f"volatility {v}: no snapshot before {snap.event_time.isoformat()}")
            continue
        before = store.open(v, times[k - 1])
        for t in [t for t in cfg.tables if TableKind.parse(t) in snap.kinds]:
            try:
                res.volatility.setdefault(v, {})[t] = cosine_by_id(before, snap, t)
                res.series.setdefault(v, {})[t] = volatility_series(store, v, t, skip_errors=True)
            except LeeError as exc:
                res.skipped.append(f"volatility {v} {t}: {exc}")
                continue
    log(f"      health and volatility: {len(variants)} variants")

    # --- collapse, per table across variants
    for t in cfg.tables:
        have = {v: s for v, s in current.items() if TableKind.parse(t) in s.kinds}
        if have:
            res.spectra[t] = {v: collapse_of_table(s, t) for v, s in have.items()}
            res.collapse[t] = compare_collapse(res.spectra[t])

    # --- clusters and 2-D maps
    truth = planted_truth(ds)
    labels = id_labels(ds, "user", "label")
    k = cfg.k or (int(labels.nunique()) if labels is not None else 8)
    ctr_events = interactions(ds) if events is None else events
    items = ds.items if ds.items is not None and {"item_id", "category"} <= set(ds.items.columns) else None
    kind = TableKind.parse(cfg.cluster_table)
    for v, snap in current.items():
        if kind not in snap.kinds:
            res.skipped.append(f"clusters {v}: no {kind.value} table")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", LeeWarning)  # small clusters are flagged in the table itself
                res.clusters[v] = cluster_snapshot(snap, kind, k=k, events=ctr_events, items=items,
                                                   domain=1 if "domain" in ctr_events.columns else None,
                                                   labels=labels if kind.entity == "user" else None,
                                                   truth=truth if kind.entity == "user" else None, seed=cfg.seed)
        except LeeError as exc:  # e.g. text ids against a log of integer ids: the other variants still run
            res.skipped.append(f"clusters {v}: not run ({_id_types(snap, kind, ctr_events)}): {exc}")
            continue
        if cfg.map_variants is None or v in cfg.map_variants:
            table = snap.load(kind)
            order = pd.Index(table.ids).get_indexer(res.clusters[v].ids)
            vectors = table.vectors[order]
            for method in cfg.map_methods:
                m = embed_2d(vectors, method, sample=cfg.map_sample, strata=res.clusters[v].assignment, seed=cfg.seed,
                             place_rest=cfg.map_place_rest)
                res.maps.setdefault(v, {})[method] = m
                frame = map_frame(m, res.clusters[v], labels if kind.entity == "user" else None)
                res.map_frames.setdefault(v, {})[method] = frame
    log(f"      clusters: k={k} on {kind.value} of {len(res.clusters)} variants")

    # --- feature-masking importance
    todo = [v for v in cfg.importance_variants if v in current]
    if todo:
        stream = stream if stream is not None else stream_from_dataset(ds)
        for v in todo:
            try:
                res.importance[v] = importance_for_snapshot(
                    stream, current[v], usage=cfg.importance_usage, mode=cfg.importance_mode,
                    n_repeats=cfg.importance_repeats, n_boot=cfg.n_boot, seed=cfg.seed, device=cfg.device,
                    progress=progress)
            except LeeError as exc:  # the snapshot cannot feed the proxy (ids, tables): the report says why
                res.skipped.append(f"importance {v}: not run: {exc}")
        log(f"      feature-masking importance: {', '.join(todo)}")

    # --- user-segment GMV lift
    if cfg.segments:
        world = data if isinstance(data, World) else ds.world
        planted = world is not None and {"home_ad_actions_10d", "other_ad_actions_60d", "activity"} <= set(
            world.users.columns)
        if ab_log is None and planted:
            ab_log = generate_ab_log(world, seed=cfg.seed)
        if ab_log is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", LeeWarning)
                res.segments = segment_lift(ab_log, n_boot=cfg.n_boot, seed=cfg.seed)
            log("      user-segment GMV lift: 4 quadrants")
        else:
            res.skipped.append("segments: no A/B exposure log")

    if out is not None:
        res.save(out)
    return res
