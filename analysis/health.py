"""Snapshot health monitoring: per-table statistics over a variant's timeline, anomaly flags, rollback.

Each snapshot's tables are summarised in one streaming pass (bounded memory): mean, variance,
mean L1 and L2 row norms, min/max, the share of extreme values, NaN/Inf rows and dead
dimensions. Each snapshot is then judged against a *reference* — the median of the last
``reference_size`` healthy snapshots — so one broken snapshot never becomes the yardstick for
the next, and the most recent snapshot with every table healthy is the one to roll back to. A lasting level
shift (``rebaseline_after`` drift-flagged snapshots in a row, e.g. a model still training) becomes
the new reference, so it is flagged while it happens rather than forever after. Dead dimensions
are judged against the typical spread of the dims that vary at all: a unit dead from the start (a
ReLU that never fires, common in CR tables) is how the table is; a unit that dies is flagged as
broken, and after ``rebaseline_after`` such snapshots in a row it is dead in the reference too
(a unit that died in training does not make every later snapshot broken). NaN rows never become
normal.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import Field
from tqdm.auto import tqdm

from lee.config import ConfigModel
from lee.engine import Engine
from lee.errors import InputError, SnapshotError
from lee.results import SavedResult, register
from lee.snapshot import Snapshot, SnapshotStore, TableKind
from lee.snapshot.reader import DEFAULT_MEMORY_MB
from lee.timeutil import iso

CHUNK_COSTS: dict[str, float] = {"value_bytes": 32.0}
"""Working bytes per value of a chunk beyond the reader's: its float64 copy and two float64
temporaries at a time (squares, absolute values, distances to the reference) plus masks."""


class HealthThresholds(ConfigModel):
    """When a table counts as anomalous, relative to the reference of recent healthy snapshots.

    ``lee analyze health --thresholds FILE`` reads them from TOML (a ``[health]`` table or
    top-level keys) through :func:`lee.config.load_config`: typed, ranged, unknown keys refused.
    """

    config_name: ClassVar[str] = "health thresholds"

    max_nonfinite_share: float = Field(0.0, ge=0, le=1)  # share of rows holding NaN/Inf (0: any such row flags)
    max_scale_ratio: float = Field(1.5, gt=1)            # mean L2 row norm vs the reference, either way
    max_mean_shift: float = Field(0.5, ge=0)             # RMS over dims of (mean_d - ref mean_d) / ref std_d
    extreme_z: float = Field(6.0, ge=0)                  # a value is extreme beyond ref mean_d ± extreme_z · ref std_d
    max_extreme_share: float = Field(0.001, ge=0, le=1)  # extra share of extreme values above the reference's own
    dead_std_ratio: float = Field(0.05, ge=0)            # a dimension is dead when its std < this × the reference's
    max_dead_dims: int = Field(0, ge=0)                  # more dead dims than the reference has flags
    reference_size: int = Field(3, ge=1)                 # healthy snapshots whose median forms the reference
    rebaseline_after: int = Field(3, ge=1)               # drift-flagged snapshots in a row that become the reference


@dataclass
class TableStats:
    """One table of one snapshot, summarised. Statistics are over finite rows only."""

    rows: int
    nonfinite_rows: int
    mean: float
    variance: float
    l1_mean: float
    l2_mean: float
    min: float
    max: float
    extreme_share: float
    dim_mean: np.ndarray = field(repr=False)
    dim_std: np.ndarray = field(repr=False)

    def row(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("dim_mean", "dim_std")}


@dataclass(frozen=True)
class Reference:
    """What a healthy table looks like: medians over recent healthy snapshots."""

    dim_mean: np.ndarray
    dim_std: np.ndarray
    l2_mean: float
    variance: float
    extreme_share: float
    dead_dims: int


def table_stats(snapshot: Snapshot, kind: TableKind | str, *, reference: Reference | None = None,
                extreme_z: float = 6.0, memory_mb: float = DEFAULT_MEMORY_MB,
                chunk_rows: int | None = None) -> TableStats:
    """Summarise one table in streaming passes (checksum verified; NaN/Inf rows counted, not refused).

    Extreme values are counted against ``reference`` when given, else against the table's own
    per-dimension mean and std (which needs a second pass). The passes read chunks sized so that
    they stay within ``memory_mb`` MiB (:meth:`Snapshot.chunk_rows` with :data:`CHUNK_COSTS`),
    whatever the table's size; ``chunk_rows`` sets the chunk size instead.
    """
    kind = TableKind.parse(kind)
    info = snapshot.info(kind)
    d = info.dim
    if chunk_rows is None:
        chunk_rows = snapshot.chunk_rows(kind, memory_mb, what="health statistics", **CHUNK_COSTS)
    s1 = np.zeros(d)
    s2 = np.zeros(d)
    n = bad = 0
    l1 = l2 = 0.0
    lo, hi = np.inf, -np.inf
    extreme = 0
    center = scale = None
    if reference is not None:
        if reference.dim_mean.size != d:
            raise InputError(f"{snapshot.table_path(kind)}: dim {d} differs from the reference's "
                             f"{reference.dim_mean.size}; a variant must keep one dim per table over time")
        # dims dead in the reference (no spread to measure against) never count as extreme
        center = reference.dim_mean
        scale = np.where(_alive(reference.dim_std), _std_floor(reference.dim_std), np.inf)
    for chunk in snapshot.iter_chunks(kind, rows=chunk_rows, allow_nonfinite=True):
        v = chunk.vectors
        finite = np.isfinite(v).all(axis=1)
        if not finite.all():
            bad += int((~finite).sum())
            v = v[finite]
        if not len(v):
            continue
        x = v.astype(np.float64)
        n += len(x)
        s1 += x.sum(0)
        s2 += (x * x).sum(0)
        l1 += float(np.abs(x).sum())
        l2 += float(np.sqrt((x * x).sum(1)).sum())
        lo, hi = min(lo, float(x.min())), max(hi, float(x.max()))
        if center is not None and scale is not None:  # both come from the reference
            extreme += int((np.abs(x - center) > extreme_z * scale).sum())
    if n == 0:
        nan = np.full(d, np.nan)
        return TableStats(info.rows, bad, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, nan, nan)
    dim_mean = s1 / n
    dim_std = np.sqrt(np.maximum(s2 / n - dim_mean**2, 0.0))
    if center is None:  # no reference yet: extremes against the table's own moments
        own = Reference(dim_mean, dim_std, 0.0, 0.0, 0.0, 0)
        return dataclasses.replace(table_stats(snapshot, kind, reference=own, extreme_z=extreme_z,
                                               memory_mb=memory_mb, chunk_rows=chunk_rows), nonfinite_rows=bad)
    mean = float(s1.sum() / (n * d))
    return TableStats(
        rows=info.rows, nonfinite_rows=bad, mean=mean, variance=float(s2.sum() / (n * d) - mean**2),
        l1_mean=l1 / n, l2_mean=l2 / n, min=lo, max=hi, extreme_share=extreme / (n * d),
        dim_mean=dim_mean, dim_std=dim_std,
    )


def _reference(history: list[TableStats], th: HealthThresholds) -> Reference | None:
    recent = history[-th.reference_size:]
    if not recent:
        return None
    dim_std = np.median([s.dim_std for s in recent], axis=0)
    return Reference(
        dim_mean=np.median([s.dim_mean for s in recent], axis=0), dim_std=dim_std,
        l2_mean=float(np.median([s.l2_mean for s in recent])),
        variance=float(np.median([s.variance for s in recent])),
        extreme_share=float(np.median([s.extreme_share for s in recent])),
        dead_dims=int(np.median([_dead_dims(s.dim_std, dim_std, th) for s in recent])),
    )


def _typical_std(ref_std: np.ndarray) -> float:
    """The reference's typical per-dimension std: the median over the dims that vary at all.

    Dims that are constant for every row (a ReLU unit that never fires, common in CR tables read
    from an MLP layer, often more than half of them) are left out: with them in, the median of a
    mostly-dead table is 0, every flickering near-zero unit then counts as 'alive' and dies in the
    next snapshot, and a unit that starts to fire has moved by billions of reference std.
    """
    top = float(ref_std.max()) if ref_std.size else 0.0
    live = ref_std[ref_std > 1e-6 * top] if top > 0 else ref_std[:0]
    return float(np.median(live)) if live.size else 0.0


def _alive(ref_std: np.ndarray) -> np.ndarray:
    """Dims with real spread in the reference: at least 10% of its typical std."""
    typical = _typical_std(ref_std)
    return (ref_std >= 0.1 * typical) & (ref_std > 0) if typical > 0 else np.zeros(ref_std.shape, bool)


def _dead_dims(dim_std: np.ndarray, ref_std: np.ndarray, th: HealthThresholds) -> int:
    """Dims that had real spread in the reference (≥ 10% of its typical std) and lost it. A dim
    that was dead in the reference too (dead from the start) is how the representation is, not a
    fault of this snapshot, and is not counted."""
    return int((_alive(ref_std) & (dim_std < th.dead_std_ratio * ref_std)).sum())


def _std_floor(ref_std: np.ndarray) -> np.ndarray:
    """Per-dim std used as a yardstick: never below 1% of the typical std (near-constant dims would
    make any change look like millions of std)."""
    return np.maximum(ref_std, 0.01 * max(_typical_std(ref_std), 1e-12))


def judge(stats: TableStats, ref: Reference | None, th: HealthThresholds) -> tuple[dict[str, float], list[str]]:
    """Derived measures and the reasons (empty when healthy) a table is flagged."""
    reasons: list[str] = []
    share_bad = stats.nonfinite_rows / max(stats.rows, 1)
    if share_bad > th.max_nonfinite_share:
        reasons.append(f"{stats.nonfinite_rows} row(s) hold NaN/Inf ({share_bad:.2%})")
    if stats.nonfinite_rows == stats.rows:
        return {"scale_ratio": np.nan, "mean_shift": np.nan, "dead_dims": np.nan, "variance_change": np.nan,
                "broken": True}, reasons
    measures = {"scale_ratio": np.nan, "mean_shift": np.nan, "dead_dims": np.nan, "variance_change": np.nan}
    if ref is None:
        # no reference yet: count constant dims, but a unit dead from the start (a ReLU that never
        # fires) is how this representation is, not an anomaly; dims that die later are flagged
        measures["dead_dims"] = float((stats.dim_std <= 1e-6 * max(float(stats.dim_std.max()), 1e-30)).sum())
        measures["broken"] = bool(reasons)
        return measures, reasons
    dead = _dead_dims(stats.dim_std, ref.dim_std, th)  # dims that had spread in the reference and lost it
    measures["dead_dims"] = float(dead)
    if dead > th.max_dead_dims + ref.dead_dims:
        reasons.append(f"{dead} dead dimension(s) (std < {th.dead_std_ratio:g} × reference)")
    measures["broken"] = bool(reasons)  # NaN rows or dead dims: never a new normal
    ratio = stats.l2_mean / max(ref.l2_mean, 1e-30)
    # mean shift over the dims alive in the reference: a unit that was dead and starts to fire has
    # no spread to measure its move against (and a model still learning wakes units up)
    alive = _alive(ref.dim_std)
    z = (stats.dim_mean - ref.dim_mean) / _std_floor(ref.dim_std)
    shift = float(np.sqrt(np.mean(z[alive] ** 2))) if alive.any() else 0.0
    measures.update(scale_ratio=ratio, mean_shift=shift, variance_change=stats.variance / max(ref.variance, 1e-30) - 1)
    if ratio > th.max_scale_ratio or ratio < 1.0 / th.max_scale_ratio:
        reasons.append(f"mean row norm is {ratio:.3g}× the reference's")
    if shift > th.max_mean_shift:
        reasons.append(f"per-dimension means shifted by {shift:.3g} reference std (RMS)")
    if stats.extreme_share - ref.extreme_share > th.max_extreme_share:
        reasons.append(f"{stats.extreme_share:.3%} of values beyond {th.extreme_z:g} reference std")
    return measures, reasons


register("health-thresholds")(HealthThresholds)  # saved inside a report


@register("health")
@dataclass
class HealthReport(SavedResult):
    """Health of every table of every snapshot of one variant, oldest first.

    ``table`` has one row per (snapshot, table) with the statistics, the measures against the
    reference, ``rate_*`` columns (relative change from the previous snapshot), ``healthy`` and
    ``reasons``; ``snapshots`` one row per snapshot.
    """

    variant: str
    thresholds: HealthThresholds
    table: pd.DataFrame

    @property
    def snapshots(self) -> pd.DataFrame:
        g = self.table.groupby("time", sort=True)
        return pd.DataFrame({"healthy": g["healthy"].all(),
                             "reasons": g["reasons"].agg(lambda r: "; ".join(x for x in r if x))}).reset_index()

    @property
    def flagged_times(self) -> list[datetime]:
        s = self.snapshots
        return [t.to_pydatetime() for t in s.loc[~s["healthy"], "time"]]

    @property
    def latest_usable(self) -> datetime | None:
        """The most recent snapshot with no broken table (NaN rows, dead dimensions): drift flags
        warn, but such a snapshot can still be analysed."""
        g = self.table.groupby("time", sort=True)["broken"].any()
        ok = g.index[~g.to_numpy()]
        return ok[-1].to_pydatetime() if len(ok) else None

    @property
    def rollback_target(self) -> datetime | None:
        """The most recent snapshot whose every table is healthy (None if there is none)."""
        s = self.snapshots
        ok = s.loc[s["healthy"], "time"]
        return ok.iloc[-1].to_pydatetime() if len(ok) else None

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"tables": self.table, "snapshots": self.snapshots}

    def summary(self) -> dict[str, Any]:
        s = self.snapshots
        target = self.rollback_target
        return {"variant": self.variant, "snapshots": len(s), "flagged": int((~s["healthy"]).sum()),
                "latest_healthy": bool(s["healthy"].iloc[-1]) if len(s) else None,
                "rollback_target": iso(target) if target is not None else None,
                "latest_usable": iso(self.latest_usable) if self.latest_usable is not None else None,
                "flagged_times": [iso(t) for t in self.flagged_times]}


def flag_table(reports: dict[str, HealthReport]) -> pd.DataFrame:
    """Every flagged (snapshot, table) across variants: variant, time, table, reasons."""
    parts = [r.table.loc[~r.table["healthy"], ["time", "table", "reasons"]].assign(variant=v)
             for v, r in reports.items()]
    cols = ["variant", "time", "table", "reasons"]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def snapshot_health(store: SnapshotStore | str | Path, variant: str, *,
                    thresholds: HealthThresholds | None = None, kinds: list[TableKind | str] | None = None,
                    times: list[datetime] | None = None, progress: bool = False,
                    engine: Engine | None = None, memory_mb: float = DEFAULT_MEMORY_MB) -> HealthReport:
    """Monitor ``variant`` over its snapshots (all, or ``times``), table by table, each table streamed
    within ``memory_mb`` MiB (:func:`table_stats`); with ``engine`` each table's statistics are
    summed by row range on it instead (:func:`table_stats_partitioned`)."""
    th = thresholds or HealthThresholds()
    store = store if isinstance(store, SnapshotStore) else SnapshotStore(store)
    times = list(times) if times is not None else store.times(variant)
    if not times:
        raise InputError(f"variant {variant!r} has no snapshots to monitor")
    history: dict[TableKind, list[TableStats]] = {}
    streak: dict[TableKind, list[TableStats]] = {}  # consecutive drift-only flags, per table
    dead_runs: dict[TableKind, list[TableStats]] = {}  # consecutive dead-unit-only breakages, per table
    previous: dict[TableKind, TableStats] = {}
    rows = []
    for when in tqdm(times, desc=f"health {variant}", disable=not progress):
        try:
            snap = store.open(variant, when)
        except SnapshotError as exc:  # unreadable: flagged as broken (never the rollback target), not a crash
            rows.append({"time": pd.Timestamp(when), "table": "manifest", "healthy": False, "broken": True,
                         "reasons": f"unreadable snapshot: {exc}"})
            continue
        wanted = [TableKind.parse(k) for k in kinds] if kinds is not None else snap.kinds
        for kind in wanted:
            if kind not in snap.kinds:  # a table that vanished is an anomaly, not a crash
                rows.append({"time": pd.Timestamp(when), "table": kind.value, "healthy": False, "broken": True,
                             "reasons": f"the {kind.value} table is missing from this snapshot"})
                continue
            healthy_hist = history.setdefault(kind, [])
            ref = _reference(healthy_hist, th)
            try:
                stats = (table_stats(snap, kind, reference=ref, extreme_z=th.extreme_z, memory_mb=memory_mb)
                         if engine is None else
                         table_stats_partitioned(snap, kind, engine=engine, reference=ref, extreme_z=th.extreme_z))
            except SnapshotError as exc:  # duplicate ids, wrong id type, absurd values, checksum...: broken
                rows.append({"time": pd.Timestamp(when), "table": kind.value, "healthy": False, "broken": True,
                             "reasons": f"unreadable table: {exc}"})
                continue
            measures, reasons = judge(stats, ref, th)
            prev = previous.get(kind)
            rates = {f"rate_{k}": (getattr(stats, k) / getattr(prev, k) - 1.0) if prev is not None and getattr(prev, k)
                     else np.nan for k in ("l2_mean", "variance", "mean")}
            broken = measures.pop("broken")
            rows.append({"time": pd.Timestamp(when), "table": kind.value, **stats.row(), **measures, **rates,
                         "healthy": not reasons, "broken": broken, "reasons": "; ".join(reasons)})
            previous[kind] = stats
            run = streak.setdefault(kind, [])
            if not (broken and stats.nonfinite_rows == 0):
                dead_runs.pop(kind, None)  # a run of dead-unit-only snapshots must be unbroken
            if not reasons:
                healthy_hist.append(stats)
                run.clear()
            elif broken and stats.nonfinite_rows == 0:
                # dead units and nothing else: a ReLU unit that died in training stays dead. Flagged
                # rebaseline_after times in a row, then those snapshots become the reference (where
                # the unit is dead, so no longer counted); NaN/Inf rows never become normal
                dead_run = dead_runs.setdefault(kind, [])
                dead_run.append(stats)
                run.clear()
                if len(dead_run) >= th.rebaseline_after:
                    history[kind] = list(dead_run)
                    dead_run.clear()
            elif broken:
                run.clear()
            else:
                # a level shift rather than a spike: after enough drift-only flags in a row, those
                # snapshots become the reference, so a legitimate change is flagged once, not forever
                run.append(stats)
                if len(run) >= th.rebaseline_after:
                    history[kind] = list(run)
                    run.clear()
    return HealthReport(variant, th, pd.DataFrame(rows))


# --------------------------------------------------------------------------- partitioned statistics (engines)
# table_stats on an engine (lee.engine): each task sums one row range (lee.snapshot.ranges) and the
# driver adds the sums — exact statistics (sums, sums of squares, min, max, counts), so the result
# equals table_stats' up to float64 summation order (well inside 1e-9 relative). Without a
# reference the extreme-value count needs the table's own moments first: a second pass of tasks.

ROWS_PER_TASK = 4 * 131_072   # rows per task (four of the writer's row groups)


@dataclass
class RangeSums:
    """Additive statistics of one row range (finite rows only, except ``bad``)."""

    n: int
    bad: int
    s1: np.ndarray
    s2: np.ndarray
    l1: float
    l2: float
    lo: float
    hi: float
    extreme: int

    def __add__(self, other: RangeSums) -> RangeSums:
        return RangeSums(self.n + other.n, self.bad + other.bad, self.s1 + other.s1, self.s2 + other.s2,
                         self.l1 + other.l1, self.l2 + other.l2, min(self.lo, other.lo), max(self.hi, other.hi),
                         self.extreme + other.extreme)


def range_sums(snapshot: Snapshot, kind: TableKind, lo: int, hi: int, center: np.ndarray | None,
               scale: np.ndarray | None, extreme_z: float, only_extremes: bool = False) -> RangeSums:
    """One task: the sums of rows ``[lo, hi)`` (NaN/Inf rows counted, not refused); the extreme-value
    count against ``center ± extreme_z · scale`` when they are given."""
    from lee.snapshot.ranges import read_rows

    v = read_rows(snapshot, kind, lo, hi, allow_nonfinite=True).vectors
    d = v.shape[1]
    finite = np.isfinite(v).all(axis=1)
    bad = int((~finite).sum())
    x = (v if bad == 0 else v[finite]).astype(np.float64)
    extreme = int((np.abs(x - center) > extreme_z * scale).sum()) if center is not None and scale is not None else 0
    if only_extremes or not len(x):
        return RangeSums(len(x), bad, np.zeros(d), np.zeros(d), 0.0, 0.0, np.inf, -np.inf, extreme)
    return RangeSums(len(x), bad, x.sum(0), (x * x).sum(0), float(np.abs(x).sum()),
                     float(np.sqrt((x * x).sum(1)).sum()), float(x.min()), float(x.max()), extreme)


def _check_table(snapshot: Snapshot, kind: TableKind) -> None:
    """What no range can check alone: the sha256 and page CRCs, duplicate ids across ranges."""
    snapshot.verify_checksum(kind)
    snapshot.load_ids(kind)


def _merged(engine: Engine, items: list[tuple[Any, ...]], labels: list[str]) -> RangeSums:
    parts: list[RangeSums | None] = [None] * len(items)
    for k, sums in engine.map(range_sums, items, labels=labels):
        parts[k] = sums
    total = parts[0]
    assert total is not None
    for p in parts[1:]:   # added in range order, whatever order the tasks finished in
        assert p is not None
        total = total + p
    return total


def _yardstick(reference: Reference) -> tuple[np.ndarray, np.ndarray]:
    """Per-dim center and scale that extremes are counted against, as :func:`table_stats` counts
    them (keep the two in step): dims dead in the reference never count as extreme."""
    return reference.dim_mean, np.where(_alive(reference.dim_std), _std_floor(reference.dim_std), np.inf)


def table_stats_partitioned(snapshot: Snapshot, kind: TableKind | str, *, engine: Engine,
                            reference: Reference | None = None, extreme_z: float = 6.0,
                            rows_per_task: int = ROWS_PER_TASK) -> TableStats:
    """:func:`table_stats` with one ``engine`` task per row range, sums merged exactly."""
    from lee.snapshot.ranges import row_ranges

    kind = TableKind.parse(kind)
    info = snapshot.info(kind)
    d = info.dim
    center = scale = None
    if reference is not None:
        if reference.dim_mean.size != d:
            raise InputError(f"{snapshot.table_path(kind)}: dim {d} differs from the reference's "
                             f"{reference.dim_mean.size}; a variant must keep one dim per table over time")
        center, scale = _yardstick(reference)
    ranges = row_ranges(snapshot, kind, rows_per_task)
    labels = [f"{snapshot.table_path(kind)} rows {lo}..{hi}" for lo, hi in ranges]
    for _ in engine.map(_check_table, [(snapshot, kind)], labels=[str(snapshot.table_path(kind))]):
        pass
    t = _merged(engine, [(snapshot, kind, lo, hi, center, scale, extreme_z) for lo, hi in ranges], labels)
    if t.n == 0:
        nan = np.full(d, np.nan)
        return TableStats(info.rows, t.bad, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, nan, nan)
    dim_mean = t.s1 / t.n
    dim_std = np.sqrt(np.maximum(t.s2 / t.n - dim_mean**2, 0.0))
    extreme = t.extreme
    if center is None:   # no reference: extremes against the table's own moments, a second pass
        own_center, own_scale = _yardstick(Reference(dim_mean, dim_std, 0.0, 0.0, 0.0, 0))
        extreme = _merged(engine, [(snapshot, kind, lo, hi, own_center, own_scale, extreme_z, True)
                                   for lo, hi in ranges], labels).extreme
    mean = float(t.s1.sum() / (t.n * d))
    return TableStats(
        rows=info.rows, nonfinite_rows=t.bad, mean=mean, variance=float(t.s2.sum() / (t.n * d) - mean**2),
        l1_mean=t.l1 / t.n, l2_mean=t.l2 / t.n, min=t.lo, max=t.hi, extreme_share=extreme / (t.n * d),
        dim_mean=dim_mean, dim_std=dim_std,
    )
