"""One evaluation: any number of snapshot variants against one baseline, ranked, with verdicts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from tqdm.auto import tqdm

from lee.config import ConfigModel
from lee.errors import InputError
from lee.evaluator.data import DownstreamStream
from lee.evaluator.inject import PAIRS, Usage, coverage, inject, null_injection
from lee.evaluator.models import FusionMode, ProxyConfig
from lee.evaluator.retrieval import RetrievalRun, run_retrieval
from lee.evaluator.stats import DeltaCI, RankedScores, paired_delta_ci, rela_impr
from lee.evaluator.stream import StreamRun, run_stream
from lee.snapshot import Snapshot, TableKind

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

    def settings(self) -> dict[str, Any]:
        """Just the shared settings (the fields declared here), as keyword arguments."""
        return {name: getattr(self, name) for name in EvalSettings.model_fields}


class EvalConfig(EvalSettings):
    """What one evaluation does; the same config on the same data gives the same numbers."""

    usage: Usage = Usage.UR_IR
    fusion: FusionMode = FusionMode.CONCAT
    proxy: ProxyConfig = Field(default_factory=ProxyConfig)


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
        return float(np.mean([r.auc for r in self.runs]))

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
    def window_auc(self) -> list[float]:
        return np.nanmean(np.array([r.window_auc for r in self.runs]), axis=0).tolist()

    @property
    def verdict(self) -> str:
        return self.delta.verdict if self.delta is not None else "baseline"

    def row(self) -> dict[str, Any]:
        row = {"variant": self.name, "auc": self.auc, "auc_std": self.auc_std, "gauc": self.gauc,
               "logloss": self.logloss, "delta_auc": self.delta.delta if self.delta else 0.0,
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


@dataclass
class Comparison:
    """Baseline plus variants ranked by ΔAUC, each with its interval and verdict."""

    config: EvalConfig
    baseline: VariantResult
    variants: list[VariantResult]
    n_test: int

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
                      device=device)


def evaluate_baseline(stream: DownstreamStream, cfg: EvalConfig, dims: Mapping[TableKind, int] | Snapshot, *,
                      device: torch.device | str = "cpu") -> VariantResult:
    """The baseline: downstream fields only, in the variants' architecture with a constant in place
    of the representation (for ``retrieval``: the two-tower model over learned id embeddings).

    ``dims`` gives the injected tables' widths, or a snapshot to read them from.
    """
    device = torch.device(device)
    if isinstance(dims, Snapshot):
        dims = {k: dims.info(k).dim for k in PAIRS[cfg.usage]}
    null = None if cfg.fusion == "retrieval" else null_injection(cfg.usage, dict(dims), len(stream.user_ids),
                                                                 len(stream.item_ids))
    return VariantResult("baseline", "downstream fields only", [_run(stream, null, cfg, s, device) for s in cfg.seeds])


def evaluate_variant(stream: DownstreamStream, name: str, snapshot: Snapshot, cfg: EvalConfig,
                     baseline: VariantResult, *, device: torch.device | str = "cpu") -> VariantResult:
    """Inject ``snapshot``, run every seed, and compare with ``baseline`` on the same test events."""
    device = torch.device(device)
    injection = inject(snapshot, cfg.usage, stream.user_ids, stream.item_ids, stream.user_row, stream.item_row)
    runs = [_run(stream, injection, cfg, s, device) for s in cfg.seeds]
    test_lo = runs[0].test_lo
    y = stream.y[test_lo:].numpy()
    base_ranked = [RankedScores(y, r.scores) for r in baseline.runs]
    ranked = [RankedScores(y, r.scores) for r in runs]
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
    return Comparison(cfg, baseline, results, n_test=len(stream) - baseline.runs[0].test_lo)
