"""One evaluation: any number of snapshot variants against one baseline, ranked, with verdicts."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

import numpy as np
import pandas as pd
import torch
from pydantic import Field, model_validator
from tqdm.auto import tqdm

from lee.config import ConfigModel
from lee.errors import InputError
from lee.evaluator.data import DownstreamStream
from lee.evaluator.inject import PAIRS, Usage, baseline_injection, coverage, inject
from lee.evaluator.models import FusionMode, ProxyConfig
from lee.evaluator.retrieval import RetrievalRun, run_retrieval
from lee.evaluator.stats import DeltaCI, WindowedScores, paired_delta_ci, rela_impr
from lee.evaluator.stream import StreamRun, run_stream
from lee.snapshot import Snapshot, TableKind
from lee.timeutil import iso, parse_event_time

MODES: tuple[FusionMode, ...] = tuple(FusionMode)


class EvalSettings(ConfigModel):
    """The settings an evaluation has whatever it injects and however it fuses it.

    :class:`EvalConfig` adds the usage, the fusion and the proxy model; a job file's ``[eval]``
    table (``lee.jobs.config``) adds lists of usages and fusions. Each default lives here once.
    """

    config_name: ClassVar[str] = "evaluation config"

    seeds: tuple[Annotated[int, Field(ge=0)], ...] = Field((0, 1, 2), min_length=1)
    windows: int = Field(10, ge=2)          # event-time windows of the streaming test-then-train protocol
    n_boot: int = Field(100, ge=2)          # paired user-bootstrap resamples of the test events
    level: float = Field(0.95, gt=0.5, lt=1.0)
    bootstrap_seed: int = Field(0, ge=0)
    # worker processes per proxy model (lee.evaluator.parallel); the same model up to float
    # summation order, so at 1 (the default) it is left out of to_dict and of every stored key
    data_parallel: int = Field(1, ge=1, le=64)

    def settings(self) -> dict[str, Any]:
        """Just the shared settings (the fields declared here), as keyword arguments."""
        return {name: getattr(self, name) for name in EvalSettings.model_fields}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values; ``data_parallel`` only when above 1, so that configs (and the
        results store's content keys built from them) written before it existed stay the same."""
        out = super().to_dict()
        if out.get("data_parallel") == 1:
            del out["data_parallel"]
        return out


class EvalConfig(EvalSettings):
    """What one evaluation does; the same config on the same data gives the same numbers."""

    usage: Usage = Usage.UR_IR
    fusion: FusionMode = FusionMode.CONCAT
    proxy: ProxyConfig = Field(default_factory=ProxyConfig)

    @model_validator(mode="after")
    def _one_process_retrieval(self) -> EvalConfig:
        if self.data_parallel > 1 and self.fusion == FusionMode.RETRIEVAL:
            raise ValueError(f"data_parallel = {self.data_parallel} applies to the concat, gate and iim "
                             "fusions; the retrieval model trains in one process (set data_parallel = 1)")
        return self


COVERAGE_WARN = 0.5
"""Below this share of downstream events with a vector, a verdict is printed with a warning."""


def coverage_warning(coverage_events: float, *, threshold: float = COVERAGE_WARN) -> str:
    """A plain-text warning when too few downstream events had a vector ('' otherwise)."""
    if coverage_events >= threshold:
        return ""
    return (f"warning: only {coverage_events:.0%} of the downstream events have a vector in this snapshot "
            f"(threshold {threshold:.0%}); the other events see a learned default, so the verdict says little "
            "about the representation")


@dataclass
class VariantResult:
    """One model (baseline or variant) over all seeds."""

    name: str
    source: str
    runs: list[StreamRun]
    delta: DeltaCI | None = None
    missing: dict[str, dict[str, float]] = field(default_factory=dict)
    rela_impr: float = float("nan")

    @property
    def auc(self) -> float:
        """Headline AUC: the event-weighted mean of the per-window AUCs, averaged over seeds."""
        return float(np.mean([r.auc for r in self.runs]))

    @property
    def auc_pooled(self) -> float:
        """One AUC over all test events pooled across windows (secondary: drift makes it misleading)."""
        return float(np.mean([r.auc_pooled for r in self.runs]))

    @property
    def auc_std(self) -> float:
        return float(np.std([r.auc for r in self.runs], ddof=1)) if len(self.runs) > 1 else 0.0

    @property
    def gauc(self) -> float:
        return float(np.mean([r.gauc for r in self.runs]))

    @property
    def logloss(self) -> float:
        return float(np.mean([r.logloss for r in self.runs]))

    @property
    def calibration(self) -> float:
        """Mean predicted click rate over observed click rate on all test events (1 = calibrated)."""
        return float(np.mean([r.calibration for r in self.runs]))

    def _per_window(self, attr: str) -> list[float]:
        values = [getattr(r, attr) for r in self.runs]
        if not all(values):
            return []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a window undefined in every seed stays NaN
            return np.nanmean(np.array(values, dtype=np.float64), axis=0).tolist()

    @property
    def window_auc(self) -> list[float]:
        return self._per_window("window_auc")

    @property
    def window_gauc(self) -> list[float]:
        return self._per_window("window_gauc")

    @property
    def window_logloss(self) -> list[float]:
        return self._per_window("window_logloss")

    @property
    def window_pred_ctr(self) -> list[float]:
        return self._per_window("window_pred_ctr")

    @property
    def verdict(self) -> str:
        return self.delta.verdict if self.delta is not None else "baseline"

    def row(self) -> dict[str, Any]:
        row = {"variant": self.name, "auc": self.auc, "auc_std": self.auc_std, "auc_pooled": self.auc_pooled,
               "gauc": self.gauc, "logloss": self.logloss, "calibration": self.calibration,
               "delta_auc": self.delta.delta if self.delta else 0.0,
               "ci_low": self.delta.low if self.delta else 0.0, "ci_high": self.delta.high if self.delta else 0.0,
               "rela_impr": self.rela_impr if self.delta else 0.0, "verdict": self.verdict,
               "seeds": len(self.runs), "seconds": float(sum(r.seconds for r in self.runs)),
               "missing_events": sum(m["events_with_missing_id"] for m in self.missing.values()),
               "coverage_events": coverage(self.missing)[0], "coverage_ids": coverage(self.missing)[1],
               "source": self.source}
        retrieval = [r for r in self.runs if isinstance(r, RetrievalRun)]  # all runs or none
        if retrieval:
            for k in retrieval[0].recall:
                row[f"recall@{k}"] = float(np.mean([r.recall[k] for r in retrieval]))
                row[f"ndcg@{k}"] = float(np.mean([r.ndcg[k] for r in retrieval]))
        return row


def window_info(stream: DownstreamStream, n_windows: int) -> pd.DataFrame:
    """The test windows (1..W-1) of ``stream``: first and last event time (ISO 8601, UTC), events,
    positives and observed click rate."""
    rows = []
    y = stream.y.numpy()
    for w, (lo, hi) in enumerate(stream.window_bounds(n_windows)[1:], start=1):
        pos = int(y[lo:hi].sum())
        rows.append({"window": w, "start": iso(parse_event_time(int(stream.ts[lo]))),
                     "end": iso(parse_event_time(int(stream.ts[hi - 1]))),
                     "events": int(hi - lo), "positives": pos, "ctr": pos / max(hi - lo, 1)})
    return pd.DataFrame(rows)


def window_table(info: pd.DataFrame, models: Mapping[str, VariantResult]) -> pd.DataFrame:
    """``info`` (:func:`window_info`) with every model's per-window AUC, GAUC, LogLoss and mean
    predicted click rate beside it (columns ``<model>_auc``, ..., averaged over seeds)."""
    out = info.copy()
    for name, res in models.items():
        for metric in ("auc", "gauc", "logloss", "pred_ctr"):
            values = getattr(res, f"window_{metric}")
            out[f"{name}_{metric}"] = values if len(values) == len(out) else np.nan
    return out


@dataclass
class Comparison:
    """Baseline plus variants ranked by ΔAUC, each with its interval and verdict."""

    config: EvalConfig
    baseline: VariantResult
    variants: list[VariantResult]
    n_test: int
    info: pd.DataFrame | None = None     # the test windows (window_info)

    def window_table(self) -> pd.DataFrame:
        """Per test window: time span, events, positives, click rate, and every model's metrics."""
        info = self.info
        if info is None:
            info = pd.DataFrame({"window": range(1, len(self.baseline.window_auc) + 1)})
        return window_table(info, {v.name: v for v in [self.baseline, *self.variants]})

    def table(self) -> pd.DataFrame:
        rows = [self.baseline.row()] + [v.row() for v in self.variants]
        return pd.DataFrame(rows)

    def ranking(self) -> list[str]:
        return [v.name for v in self.variants]

    def get(self, name: str) -> VariantResult:
        for v in [self.baseline, *self.variants]:
            if v.name == name:
                return v
        raise KeyError(name)

    def windows(self) -> pd.DataFrame:
        """Per-window AUC (the fluctuation curve) of every model, averaged over seeds."""
        out = {v.name: v.window_auc for v in [self.baseline, *self.variants]}
        return pd.DataFrame(out).rename_axis("window").reset_index().assign(window=lambda d: d["window"] + 1)


def _run(stream: DownstreamStream, injection, cfg: EvalConfig, seed: int, device: torch.device) -> StreamRun:
    if cfg.fusion == "retrieval":
        return run_retrieval(stream, injection, cfg=cfg.proxy, seed=seed, n_windows=cfg.windows, device=device)
    return run_stream(stream, injection, fusion=cfg.fusion, cfg=cfg.proxy, seed=seed, n_windows=cfg.windows,
                      device=device, data_parallel=cfg.data_parallel)


def evaluate_baseline(stream: DownstreamStream, cfg: EvalConfig, dims: Mapping[TableKind, int] | Snapshot, *,
                      device: torch.device | str = "cpu") -> VariantResult:
    """The baseline: downstream fields only, in the variants' architecture with a learned constant in
    place of the representation (``concat``, ``gate``, ``retrieval``), so that a variant adds only the
    representation's content: a random snapshot adds no structure the baseline lacks.

    Under ``iim`` the stand-in is a random code per id, drawn afresh for each proxy seed
    (:func:`~lee.evaluator.inject.random_code_injection`): the expert turns any per-id code into
    per-id effects, so against a constant a random snapshot was judged "better" (5 of 20 replicates
    on the tiny planted world); against a random code a variant is credited only for what it carries
    beyond identity.

    ``dims`` gives the injected tables' widths, or a snapshot to read them from.
    """
    device = torch.device(device)
    if isinstance(dims, Snapshot):
        dims = {k: dims.info(k).dim for k in PAIRS[cfg.usage]}
    widths, n_users, n_items = dict(dims), len(stream.user_ids), len(stream.item_ids)
    runs = [_run(stream, baseline_injection(cfg.fusion, cfg.usage, widths, n_users, n_items, s), cfg, s, device)
            for s in cfg.seeds]
    what = "downstream fields and a random code per id" if cfg.fusion == FusionMode.IIM else "downstream fields only"
    return VariantResult("baseline", what, runs)


def evaluate_variant(stream: DownstreamStream, name: str, snapshot: Snapshot, cfg: EvalConfig,
                     baseline: VariantResult, *, device: torch.device | str = "cpu") -> VariantResult:
    """Inject ``snapshot``, run every seed, and compare with ``baseline`` on the same test events."""
    device = torch.device(device)
    injection = inject(snapshot, cfg.usage, stream.user_ids, stream.item_ids, stream.user_row, stream.item_row)
    runs = [_run(stream, injection, cfg, s, device) for s in cfg.seeds]
    test_lo = runs[0].test_lo
    y = stream.y[test_lo:].numpy()
    bounds = runs[0].test_bounds
    # headline ΔAUC and its bootstrap: per window, baseline and variant paired inside each window
    base_ranked = [WindowedScores(y, r.scores, bounds) for r in baseline.runs]
    ranked = [WindowedScores(y, r.scores, bounds) for r in runs]
    delta = paired_delta_ci(base_ranked, ranked, stream.user_row[test_lo:], n_boot=cfg.n_boot, level=cfg.level,
                            seed=cfg.bootstrap_seed)
    result = VariantResult(name, str(snapshot.path), runs, delta, injection.counts)
    result.rela_impr = float(np.mean([rela_impr(v.auc, b.auc) for v, b in zip(runs, baseline.runs)]))
    return result


def compare_snapshots(stream: DownstreamStream, snapshots: Mapping[str, Snapshot], cfg: EvalConfig | None = None,
                      *, device: torch.device | str = "cpu", progress: bool = False,
                      baseline: VariantResult | None = None) -> Comparison:
    """Evaluate every snapshot against one baseline and rank them by ΔAUC (best first)."""
    cfg = cfg or EvalConfig()
    bar = tqdm(total=len(snapshots) + (baseline is None), desc="LEE", unit="model", disable=not progress)
    if not snapshots:
        raise InputError("nothing to compare: no snapshots given")
    if baseline is None:
        baseline = evaluate_baseline(stream, cfg, next(iter(snapshots.values())), device=device)
        bar.update(1)
    results = []
    for name, snap in snapshots.items():
        bar.set_postfix_str(name)
        results.append(evaluate_variant(stream, name, snap, cfg, baseline, device=device))
        bar.update(1)
    bar.close()
    results.sort(key=lambda r: r.delta.delta if r.delta else 0.0, reverse=True)
    return Comparison(cfg, baseline, results, n_test=len(stream) - baseline.runs[0].test_lo,
                      info=window_info(stream, cfg.windows))
