"""The work of one LEE job unit, as plain module-level functions: the job's engine runs them in
this process or as Ray tasks (``lee.engine``). They only compute and return; the driver
(:func:`lee.jobs.run.run_job`) is the only writer of the results store."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lee.device import resolve_device
from lee.evaluator.compare import EvalConfig, VariantResult, evaluate_baseline, evaluate_variant
from lee.evaluator.data import DownstreamStream
from lee.snapshot import Snapshot


@dataclass
class UnitOutcome:
    """A variant's evaluation with when and where it ran."""

    result: VariantResult
    began: datetime
    finished: datetime
    seconds: float
    device: str
    pid: int = field(default_factory=os.getpid)   # the process it ran in (the job's own, or a worker)


def baseline_task(stream: DownstreamStream, cfg: EvalConfig, snapshot: Snapshot, device: str) -> VariantResult:
    """The baseline for ``cfg`` at ``snapshot``'s table widths (``device`` is resolved where the task runs)."""
    return evaluate_baseline(stream, cfg, snapshot, device=resolve_device(device))


def variant_task(stream: DownstreamStream, cfg: EvalConfig, snapshot: Snapshot, baseline: VariantResult,
                 device: str) -> UnitOutcome:
    """``snapshot`` injected under ``cfg`` and compared with ``baseline``: one unit's evaluation."""
    t0 = time.perf_counter()
    began = datetime.now(UTC)
    dev = resolve_device(device)
    res = evaluate_variant(stream, snapshot.variant, snapshot, cfg, baseline, device=dev)
    return UnitOutcome(res, began, datetime.now(UTC), time.perf_counter() - t0, str(dev))
