"""Run a LEE job: find the snapshots not yet evaluated under this config, evaluate, record.

Idempotent (a unit already in the store is skipped), exclusive (a lock file stops an overlapping
run), and crash-safe (each unit is recorded in one transaction once complete; a killed run loses
only the units in flight, which the next run redoes). Units run on the job's engine (``[engine]``:
this process, or Ray tasks); this process alone writes the store.

A unit is one snapshot (variant and event time) under one usage and fusion; its key also holds
the content (config, stream, table checksums), so a changed snapshot or config is a new unit. Two
variants whose tables are byte-identical are two units: within one run the second reuses the
first's evaluation ("evaluated once, recorded for both", said in its report line and recorded in
its ``extra.same_content_as``); in a later run it would be evaluated again.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import os
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from lee import __version__
from lee.data.dataset import Dataset
from lee.data.worlds import dataset_from_world
from lee.device import Device, resolve_device
from lee.engine import Engine, make_engine, usable_cpus
from lee.errors import DeviceError, InputError, LeeError
from lee.evaluator.compare import (
    EvalConfig,
    VariantResult,
    coverage_warning,
    window_info,
    window_table,
)
from lee.evaluator.data import DOMAINS, DownstreamStream, stream_from_dataset
from lee.evaluator.inject import PAIRS
from lee.jobs.config import JobConfig
from lee.jobs.lock import JobLock
from lee.jobs.store import ResultsStore, RunRecord
from lee.jobs.tasks import UnitOutcome, baseline_task, variant_task
from lee.results import SavedResult, register
from lee.snapshot import Snapshot, SnapshotStore
from lee.timeutil import epoch_seconds, iso
from lee.versions import warn_skew
from lee.world.model import World

if TYPE_CHECKING:
    import torch


def code_version() -> str:
    """Package version plus the git commit when run from a checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+{sha}" if sha else __version__


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stream_hash(stream: DownstreamStream) -> str:
    """Content hash of the downstream stream (fields, labels, times)."""
    h = hashlib.sha256()
    for arr in (stream.x.numpy(), stream.y.numpy(), stream.ts):
        h.update(np.ascontiguousarray(arr).view(np.uint8).data)
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Unit:
    """One thing to evaluate: a snapshot under one usage and fusion."""

    snapshot: Snapshot
    cfg: EvalConfig

    @property
    def checksums(self) -> dict[str, str]:
        return {k.value: self.snapshot.info(k).sha256 for k in PAIRS[self.cfg.usage]}

    @property
    def label(self) -> str:
        return f"{self.snapshot.variant}@{iso(self.snapshot.event_time)}"

    def content_key(self, data_hash: str) -> str:
        """What the evaluation depends on: config, stream and table contents (not the names), and under
        ``iim`` the baseline's stand-in (a random code per id since issue 14; results stored against the
        earlier constant stand-in are not reused: the next run re-evaluates them)."""
        doc: dict[str, Any] = {"config": self.cfg.to_dict(), "data": data_hash, "tables": self.checksums}
        if self.cfg.fusion == "iim":
            doc["baseline"] = "random code per id"
        return _hash(doc)

    def key(self, data_hash: str) -> str:
        """The unit's identity in the store: its content plus which variant and snapshot it is."""
        return _hash({"content": self.content_key(data_hash), "variant": self.snapshot.variant,
                      "event_time": iso(self.snapshot.event_time)})


@register("job-report")
@dataclass
class JobReport(SavedResult):
    """What one run of a job did: units evaluated (one line each), skipped as already done, not applicable."""

    evaluated: list[str] = field(default_factory=list)
    skipped: int = 0
    not_applicable: list[str] = field(default_factory=list)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)   # version skew among the tables a unit combines

    def summary(self) -> dict[str, Any]:
        return {"evaluated": len(self.evaluated), "already_done": self.skipped,
                "not_applicable": len(self.not_applicable), "seconds": self.seconds}

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"evaluated": pd.DataFrame({"unit": self.evaluated}),
                "not_applicable": pd.DataFrame({"unit": self.not_applicable})}


def pending_units(job: JobConfig, store: ResultsStore, data_hash: str) -> tuple[list[Unit], int, list[str]]:
    """Units of this job that the store does not hold yet; plus the skipped count and misfits."""
    spec = job.job
    snaps = SnapshotStore(spec.snapshots)
    variants = [v for v in snaps.variants() if any(fnmatch.fnmatchcase(v, p) for p in spec.variants)]
    if not variants:
        raise InputError(f"{spec.snapshots}: no variant matches {', '.join(spec.variants)}; "
                         f"variants present: {', '.join(snaps.variants()) or 'none'}")
    units, skipped, misfits = [], 0, [p.skipped() for p in snaps.problems()]  # named, never silently dropped
    for v in variants:
        times = snaps.times(v)
        for t in times[-1:] if spec.latest_only else times:
            snap = snaps.open(v, t)
            for cfg in job.eval_configs():
                if not set(PAIRS[cfg.usage]) <= set(snap.kinds):
                    misfits.append(f"{v}@{iso(t)} lacks {cfg.usage}")
                    continue
                unit = Unit(snap, cfg)
                if store.has_unit(unit.key(data_hash)):
                    skipped += 1
                else:
                    units.append(unit)
    return units, skipped, misfits


def _metrics(result: VariantResult, model: str) -> list[tuple[str, int, int, str, float]]:
    """Per seed: the headline metrics (window 0) and each test window's (window k >= 1)."""
    out = []
    for r in result.runs:
        out += [(model, r.seed, 0, "auc", r.auc), (model, r.seed, 0, "auc_pooled", r.auc_pooled),
                (model, r.seed, 0, "gauc", r.gauc), (model, r.seed, 0, "logloss", r.logloss),
                (model, r.seed, 0, "calibration", r.calibration), (model, r.seed, 0, "seconds", r.seconds),
                (model, r.seed, 0, "samples_per_second", r.samples_per_second)]
        for metric in ("auc", "gauc", "logloss", "pred_ctr"):
            out += [(model, r.seed, w + 1, metric, v) for w, v in enumerate(getattr(r, f"window_{metric}"))]
        for k, v in getattr(r, "recall", {}).items():
            out.append((model, r.seed, 0, f"recall@{k}", v))
        for k, v in getattr(r, "ndcg", {}).items():
            out.append((model, r.seed, 0, f"ndcg@{k}", v))
    return out


def window_records(info: pd.DataFrame, base: VariantResult, res: VariantResult) -> list[dict[str, Any]]:
    """Per test window: start and end event time, events, positives, click rate, and the baseline's
    and the variant's AUC, GAUC, LogLoss and mean predicted click rate (means over seeds)."""
    table = window_table(info, {"baseline": base, "variant": res})
    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}
            for row in table.to_dict(orient="records")]


def job_dataset(job: JobConfig, data: Dataset | World | None = None) -> Dataset:
    """The job's dataset (``data``, default: ``[job] data`` opened) under the ``[stream]`` split
    overrides (time cut, user fraction, domain)."""
    s = job.stream
    if data is None:
        ds = Dataset.open(job.job.data)
    elif isinstance(data, World):
        ds = dataset_from_world(data)
    else:
        ds = data
    return ds.with_split(cut=epoch_seconds(s.cut) if s.cut is not None else None, user_fraction=s.user_fraction,
                         domain=DOMAINS[s.domain] if s.domain is not None else None)


def job_stream(job: JobConfig, data: Dataset | World | None = None) -> DownstreamStream:
    """The job's downstream stream: ``[stream]`` part (default: the dataset's downstream events) of
    the dataset under its split overrides, events in [start, end) of event time."""
    start, end = job.stream.start, job.stream.end
    return stream_from_dataset(job_dataset(job, data), part=job.stream.part,
                               start_ts=epoch_seconds(start) if start is not None else None,
                               end_ts=epoch_seconds(end) if end is not None else None)


HEADLINE = ("auc, gauc and delta_auc are event-weighted means of per-window values (GAUC per user within a "
            "window); auc_pooled pools all test events across windows")


def _record(store: ResultsStore, rec: RunRecord, unit: Unit) -> bool:
    """Insert ``rec``; False when the store already holds this unit (another writer got there first).

    Any other failure keeps the store's one-paragraph message (an ``OSError`` for a full disk or a
    read-only file, an :class:`InputError` otherwise) and adds which unit was not recorded.
    """
    try:
        store.add(rec)
    except (LeeError, OSError, sqlite3.Error) as exc:
        try:
            if store.has_unit(rec.unit_key):
                return False
        except (LeeError, OSError):
            pass
        where = (f"{unit.label} {unit.cfg.usage}/{unit.cfg.fusion} was not recorded; the next run "
                 "evaluates it again")
        if isinstance(exc, OSError):
            raise OSError(f"{exc}; {where}") from None
        raise InputError(f"{store.path}: {exc}; {where}" if isinstance(exc, sqlite3.Error)
                         else f"{exc}; {where}") from None
    return True


def run_job(job: JobConfig, *, progress: bool = True, log: Callable[[str], None] = print,
            stop_after: int | None = None,
            on_unit: Callable[[int, int, str], None] | None = None) -> JobReport:
    """Evaluate every pending unit of ``job``; ``stop_after`` limits the units done in this run.

    The units run on the job's engine (``[engine]``: in this process, in ``workers`` local worker
    processes, or as Ray tasks; with several at once, results arrive as they finish); this process
    records each one as it arrives, so it stays the only writer of the results store, under the
    lock. Baselines (one per config and table widths) run first, then one evaluation per distinct
    content (byte-identical tables under two names are evaluated once and recorded for both). A
    unit whose task fails is not recorded (the next run redoes it); in this process its failure
    stops the job at once, on worker processes or Ray it is raised once every other unit is recorded.

    ``on_unit(done, total, label)`` is called at the start, after each recorded unit and once at the
    end (the dashboard's live progress bar).
    """
    started = time.perf_counter()
    spec = job.job
    store = ResultsStore(spec.results)
    with JobLock(spec.results.with_name(spec.results.name + ".lock")):
        # locally the device is this machine's; on Ray each unit's task resolves it where it runs
        device = resolve_device(spec.device) if job.engine.kind == "local" else None
        stream = job_stream(job)
        data_hash = stream_hash(stream)
        units, skipped, misfits = pending_units(job, store, data_hash)
        report = JobReport(skipped=skipped, not_applicable=misfits, warnings=skew_of(units))
        for message in report.warnings:
            log(f"warning: {message}")
        if stop_after is not None:
            units = units[:stop_after]
        on = engine_note(job, len(units), device)
        log(f"job {spec.name}: {len(units)} unit(s) to evaluate{on}, {skipped} already in {spec.results}")
        if on_unit is not None:
            on_unit(0, len(units), "starting")
        if units:
            with make_engine(job.engine) as engine:
                _evaluate_units(job, units, stream, data_hash, store, engine, report, log=log, progress=progress,
                                on_unit=on_unit, device=str(device) if device is not None else spec.device.value)
        if on_unit is not None:
            on_unit(len(units), len(units), "done")
    report.seconds = time.perf_counter() - started
    return report


def engine_note(job: JobConfig, n_units: int, device: torch.device | None) -> str:
    """Where the job's units run, for its first log line: the engine when it is not this process
    alone; on it, with several units for a CPU that has more cores than the units use (one proxy
    thread each, no ``data_parallel``), the hint that ``[engine] workers`` would use them."""
    if job.engine.kind != "local" or job.engine.workers > 1:
        return f" on {job.engine.describe()}"
    cores = usable_cpus()
    if n_units > 1 and cores > 1 and device is not None and device.type == "cpu" and job.eval.data_parallel == 1:
        return f", one at a time ({cores} cores here: [engine] workers or --workers runs several at once)"
    return ""


def skew_of(units: Sequence[Unit]) -> list[str]:
    """Version skew among the tables each unit injects together (e.g. a UR of one checkpoint with an
    IR of another in one snapshot): one message per distinct snapshot and usage, also raised as a
    :class:`~lee.errors.VersionSkewWarning`. The unit is still evaluated; the warning is logged and
    kept with the job's report so a verdict on mismatched tables is never read without it."""
    messages: list[str] = []
    for unit in {(u.snapshot.path, u.cfg.usage): u for u in units}.values():
        messages += warn_skew([(unit.snapshot, k) for k in PAIRS[unit.cfg.usage]],
                              what=f"LEE injection {unit.cfg.usage} of {unit.label}")
    return messages


def _base_key(unit: Unit) -> str:
    """What a baseline depends on: the config and the injected tables' widths."""
    dims = {k.value: unit.snapshot.info(k).dim for k in PAIRS[unit.cfg.usage]}
    return _hash({"cfg": unit.cfg.to_dict(), "dims": dims})


def _gpus_per_unit(device: Device, engine: Engine) -> float:
    """GPUs each unit's task asks the engine for: one when the job runs on ``cuda`` (or ``auto``
    on a cluster that has GPUs), none otherwise; ``cuda`` on a cluster without a GPU is refused
    here rather than left waiting for a GPU that never comes."""
    have = engine.gpus
    if device == Device.CUDA and engine.name != "local" and not have:
        raise DeviceError(f"device cuda was asked for but the {engine.name} cluster has no GPU; "
                          "use device cpu or auto")
    return 1.0 if have and device in (Device.CUDA, Device.AUTO) else 0.0


def _evaluate_units(job: JobConfig, units: list[Unit], stream: DownstreamStream, data_hash: str,
                    store: ResultsStore, engine: Engine, report: JobReport, *, log: Callable[[str], None],
                    progress: bool, on_unit: Callable[[int, int, str], None] | None, device: str) -> None:
    """Run ``units`` on ``engine`` and record each as its result arrives (this process only writes)."""
    spec = job.job
    groups: dict[str, list[Unit]] = {}   # content key -> units with those contents, first one evaluated
    for unit in units:
        groups.setdefault(unit.content_key(data_hash), []).append(unit)
    contents = list(groups)
    needs: dict[str, Unit] = {}
    for content in contents:
        needs.setdefault(_base_key(groups[content][0]), groups[content][0])
    gpus = _gpus_per_unit(spec.device, engine)
    shared = engine.put(stream)
    base_keys = list(needs)
    baselines = {base_keys[k]: res for k, res in engine.map(
        baseline_task, [(shared, u.cfg, u.snapshot, device) for u in needs.values()],
        labels=[f"baseline {u.cfg.usage}/{u.cfg.fusion}" for u in needs.values()], gpus=gpus)}
    shared_bases = {key: engine.put(res) for key, res in baselines.items()}   # shipped once, not per unit
    info = window_info(stream, job.eval.windows)
    firsts = [groups[c][0] for c in contents]
    bar = tqdm(total=len(units), desc=f"LEE {spec.name}", unit="unit", disable=not progress)
    done = 0
    for k, outcome in engine.map(
            variant_task, [(shared, u.cfg, u.snapshot, shared_bases[_base_key(u)], device) for u in firsts],
            labels=[f"{u.label} {u.cfg.usage}/{u.cfg.fusion}" for u in firsts], gpus=gpus):
        group = groups[contents[k]]
        base = baselines[_base_key(group[0])]
        for j, unit in enumerate(group):
            same_as = group[0].label if j else None
            res = outcome.result if not j else dataclasses.replace(
                outcome.result, name=unit.snapshot.variant, source=str(unit.snapshot.path))
            line = _record_unit(job, store, unit, res, base, outcome, data_hash, stream, info, same_as)
            report.evaluated.append(line)
            log(line)
            done += 1
            bar.update(1)
            bar.set_postfix_str(f"{unit.snapshot.variant} {unit.cfg.usage} {unit.cfg.fusion}")
            if on_unit is not None:
                on_unit(done, len(units), f"{unit.snapshot.variant} {unit.cfg.usage} {unit.cfg.fusion}")
    bar.close()


def _where_it_ran(job: JobConfig, outcome: UnitOutcome) -> str:
    """The job's engine in words; with local workers, a unit that ran alone in its stage ran in
    the job's own process (no pool is started for one item), and the record says so."""
    if job.engine.kind == "local" and job.engine.workers > 1 and outcome.pid == os.getpid():
        return "local, in the job's process (the only unit to evaluate; no worker pool for one)"
    return job.engine.describe()


def _record_unit(job: JobConfig, store: ResultsStore, unit: Unit, res: VariantResult, base: VariantResult,
                 outcome: UnitOutcome, data_hash: str, stream: DownstreamStream, info: pd.DataFrame,
                 same_as: str | None) -> str:
    """Record one unit's evaluation in one transaction; its report line."""
    spec = job.job
    content = unit.content_key(data_hash)
    row = res.row()
    recorded = _record(store, RunRecord(
        run_id=uuid.uuid4().hex[:12], job=spec.name, unit_key=unit.key(data_hash),
        config_hash=_hash(unit.cfg.to_dict()), config=unit.cfg.to_dict(), data_hash=data_hash,
        variant=unit.snapshot.variant, event_time=iso(unit.snapshot.event_time),
        snapshot_path=str(unit.snapshot.path), checksums=unit.checksums, usage=unit.cfg.usage,
        fusion=unit.cfg.fusion, code_version=code_version(), started_at=outcome.began.isoformat(),
        finished_at=outcome.finished.isoformat(), seconds=outcome.seconds,
        summary={**row, "baseline_auc": base.auc},
        metrics=_metrics(res, "variant") + _metrics(base, "baseline"),
        extra={"missing": res.missing, "data": str(spec.data), "stream": job.stream.describe(),
               "encoding": stream.encoding, "n_test": len(stream) - res.runs[0].test_lo,
               "device": outcome.device, "engine": _where_it_ran(job, outcome), "headline": HEADLINE,
               "auc_pooled": row["auc_pooled"], "baseline_auc_pooled": base.auc_pooled,
               "calibration": row["calibration"], "baseline_calibration": base.calibration,
               "training": res.runs[0].training, "baseline_training": base.runs[0].training,
               "content_key": content, "same_content_as": same_as,
               "windows": window_records(info, base, res)},
    ), unit)
    warn = coverage_warning(row["coverage_events"])
    line = (f"{unit.label} {unit.cfg.usage}/{unit.cfg.fusion}: ΔAUC {row['delta_auc']:+.4f} "
            f"[{row['ci_low']:+.4f}, {row['ci_high']:+.4f}] {res.verdict}; coverage "
            f"{row['coverage_events']:.0%} of events, {row['coverage_ids']:.0%} of ids"
            + (f" ({warn})" if warn else ""))
    if len(unit.cfg.seeds) == 1:
        line += "; one proxy seed: the interval covers the test sample, not training randomness"
    if same_as is not None:
        line += f"; same tables as {same_as}: evaluated once, recorded for both"
    if not recorded:
        line += "; already recorded by another run: not recorded again"
    return line
