"""Fidelity: does LEE rank representations as full downstream training would, and at what saving?

The workbench exists because a light proxy is meant to answer in minutes what full downstream
training answers in days. This module measures that claim on a set of variants
(:mod:`analysis.fidelity_variants`):

* **(a) LEE** — every variant and the baseline through the proxy exactly as a job trains them
  (:func:`lee.evaluator.compare.evaluate_baseline` / :func:`~lee.evaluator.compare.evaluate_variant`:
  streaming test-then-train over ``windows`` windows, ``seeds`` seeds, paired bootstrap + seed
  variance, verdicts). Its ΔAUC is the job's headline: the event-weighted mean over windows 1..W-1.
* **(b) full training** — the same variants and baseline through the full model
  (:mod:`lee.evaluator.full_model`: the proxy's architecture scaled up, epochs with early stopping on
  a validation window), scored on the last ``test_windows`` windows, ΔAUC and verdict by the same
  paired bootstrap.

Reported: Kendall's τ (τ-b) and Spearman's ρ between the two rankings of ΔAUC (SciPy), each with a
percentile interval from a **bootstrap over test events**: every resample reweights the test events
by user (Poisson(1) per user, the same weights for every model, seed and both protocols, as LEE's
own bootstrap), recomputes every ΔAUC of both protocols and the rank correlations — the training
seeds are held fixed, so the interval covers the test sample, not training randomness. Also: the
same correlations with LEE restricted to the full model's test windows; agreement of the
better / no different / worse verdicts (share and Cohen's κ, scikit-learn); the pairs of variants
the two rankings order differently; per LEE window, τ between that window's ΔAUC and the full
model's (which windows disagree); and the wall-time ratio, full / LEE, each the sum of its model
runs' seconds (baseline included, every seed).
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from pydantic import Field, field_validator
from scipy.stats import kendalltau, spearmanr
from sklearn.metrics import cohen_kappa_score

from analysis.fidelity_variants import Catalogue, CatalogueConfig, FidelityVariant, build_catalogue
from lee.config import ConfigModel
from lee.data.dataset import Dataset
from lee.errors import InputError
from lee.evaluator.compare import EvalConfig, VariantResult, evaluate_baseline, evaluate_variant
from lee.evaluator.data import DownstreamStream, stream_from_dataset
from lee.evaluator.full_model import FullConfig, FullRun, full_split, run_full
from lee.evaluator.inject import PAIRS, Usage, baseline_injection, inject
from lee.evaluator.models import FusionMode, ProxyConfig
from lee.evaluator.stats import DeltaCI, WindowedScores, paired_delta_ci
from lee.fileio import atomic_write_text, check_output_target
from lee.results import SavedResult, plain, register
from lee.snapshot import Snapshot, TableKind

VERDICTS = ("better", "no different", "worse")
INTERVAL = ("percentile bootstrap over test events: each resample reweights the test events by user "
            "(Poisson(1) per user, the same weights for every model, seed and both protocols) and recomputes "
            "every ΔAUC and the rank correlations; training seeds held fixed")
_Seed = Annotated[int, Field(ge=0)]


class FidelityConfig(ConfigModel):
    """How the two rankings are made and compared."""

    config_name: ClassVar[str] = "fidelity config"

    usage: Usage | Literal["auto"] = "auto"    # auto: UR+IR where a variant has both, else CR (usage_for)
    fusion: FusionMode = FusionMode.CONCAT
    seeds: tuple[_Seed, ...] = Field((0, 1, 2), min_length=1)        # LEE's seeds, as a job's
    full_seeds: tuple[_Seed, ...] | None = None                     # None: the same as ``seeds``
    windows: int = Field(10, ge=4)
    test_windows: int = Field(3, ge=1)
    n_boot: int = Field(200, ge=2)
    level: float = Field(0.95, gt=0.5, lt=1.0)
    bootstrap_seed: int = Field(0, ge=0)
    proxy: ProxyConfig = Field(default_factory=ProxyConfig)
    full: FullConfig = Field(default_factory=FullConfig)

    @field_validator("fusion")
    @classmethod
    def _not_retrieval(cls, value: FusionMode) -> FusionMode:
        if value == FusionMode.RETRIEVAL:
            raise ValueError("one of concat, gate, iim (the full model scales up the CTR proxy)")
        return value

    @property
    def full_seed_list(self) -> tuple[int, ...]:
        return self.full_seeds if self.full_seeds is not None else self.seeds

    def usage_for(self, snap: Snapshot) -> Usage:
        """The usage a variant is evaluated under: ``usage``, or with ``auto`` UR+IR where the snapshot has
        both tables (the planted and upstream ones) and CR otherwise (a layer's CR has only CR tables)."""
        if self.usage != "auto":
            return Usage(self.usage)
        return Usage.UR_IR if {TableKind.UR, TableKind.IR} <= set(snap.kinds) else Usage.CR

    def eval_config(self, usage: Usage | None = None) -> EvalConfig:
        """LEE's evaluation config: what a job with these settings runs (under ``usage``, default ``usage``)."""
        usage = usage or (Usage.CR if self.usage == "auto" else Usage(self.usage))
        return EvalConfig(usage=usage, fusion=self.fusion, seeds=self.seeds, windows=self.windows,
                          n_boot=self.n_boot, level=self.level, bootstrap_seed=self.bootstrap_seed, proxy=self.proxy)


@register("fidelity")
@dataclass
class FidelityResult(SavedResult):
    """Both rankings and how far they agree.

    ``variants``: one row per variant (ΔAUC, interval and verdict under LEE, under LEE on the test
    windows only, and under full training; ranks; seconds; τ without the variant); ``windows``: per LEE
    window, τ between its ΔAUC and the full model's; ``deltas``: ΔAUC per window, variant and protocol;
    ``swaps``: the pairs the two rankings order differently; ``metrics``: the figures (module docstring).
    """

    data: str
    metrics: dict[str, Any]
    variants: pd.DataFrame
    windows: pd.DataFrame
    deltas: pd.DataFrame
    swaps: pd.DataFrame
    boot: pd.DataFrame                         # per resample: kendall_tau, spearman_rho
    baselines: dict[str, Any]
    config: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    upstream: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"variants": self.variants, "windows": self.windows, "deltas": self.deltas, "swaps": self.swaps}

    def pairs(self) -> list[dict[str, Any]]:
        """Per variant: the two ΔAUCs and verdicts (what ``fidelity.json`` lists)."""
        cols = ["variant", "family", "usage", "lee_delta_auc", "lee_ci_low", "lee_ci_high", "lee_verdict",
                "lee_test_delta_auc", "lee_test_verdict", "full_delta_auc", "full_ci_low", "full_ci_high",
                "full_verdict", "lee_rank", "full_rank", "lee_seconds", "full_seconds", "full_epochs", "tau_without"]
        return self.variants[[c for c in cols if c in self.variants.columns]].to_dict(orient="records")

    def summary(self) -> dict[str, Any]:
        return plain({**self.metrics, "pairs": self.pairs(), "baselines": self.baselines, "seconds": self.seconds,
                      "windows": self.windows.to_dict(orient="records"),
                      "swaps": self.swaps.to_dict(orient="records"), "upstream": self.upstream,
                      "machine": self.machine, "config": self.config, "data": self.data, "notes": self.notes})


# ----------------------------------------------------------------------------- measurement


@dataclass
class _Group:
    """Baselines of one set of injected widths (variants of other widths get their own)."""

    lee: VariantResult
    full: list[FullRun]


@dataclass
class _Measured:
    variant: FidelityVariant
    lee: VariantResult
    full: list[FullRun]
    full_delta: DeltaCI
    lee_test_delta: DeltaCI
    group: tuple[Any, ...]                     # (usage, widths...): the baselines it is paired with


def _scores_on(stream: DownstreamStream, run: Any, lo: int, bounds: Sequence[tuple[int, int]]) -> WindowedScores:
    """``run``'s scores on the stream events ``lo:`` cut into ``bounds`` (stream index ranges)."""
    y = stream.y[lo:].numpy()
    return WindowedScores(y, run.scores[lo - run.test_lo:], [(a - lo, b - lo) for a, b in bounds])


def _full_scores(stream: DownstreamStream, runs: Sequence[FullRun]) -> list[WindowedScores]:
    return [_scores_on(stream, r, r.test_lo, [(a, b) for a, b in r.window_edges[1:]]) for r in runs]


def machine_info() -> dict[str, Any]:
    """Where the measurement ran: cores, torch threads, load average (the box may be shared)."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "loadavg_1_5_15": list(load)}


def _rank_corr(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan"), float("nan")
    return float(kendalltau(a[ok], b[ok]).statistic), float(spearmanr(a[ok], b[ok]).statistic)


def measure_fidelity(stream: DownstreamStream, variants: Sequence[FidelityVariant], cfg: FidelityConfig | None = None,
                     *, device: torch.device | str = "cpu", log: Callable[[str], Any] = print,
                     data: str = "") -> FidelityResult:
    """Rank ``variants`` by LEE and by full training on ``stream`` and compare (module docstring)."""
    cfg = cfg or FidelityConfig()
    if len(variants) < 3:
        raise InputError(f"a ranking needs at least 3 variants; got {len(variants)}")
    if cfg.test_windows > cfg.windows - 2:
        raise InputError(f"test_windows ({cfg.test_windows}) must leave a validation window and at least one "
                         f"training window of the {cfg.windows} windows")
    split = full_split(stream, cfg.windows, cfg.test_windows)
    groups: dict[tuple[Any, ...], _Group] = {}
    measured: list[_Measured] = []
    machine = {"start": machine_info()}
    for k, v in enumerate(variants, start=1):
        snap = Snapshot.open(v.path)
        usage = cfg.usage_for(snap)
        kinds = PAIRS[usage]
        missing = [t.value for t in kinds if t not in snap.kinds]
        if missing:
            raise InputError(f"{v.path}: variant {v.name} has no {', '.join(missing)} table for usage {usage}")
        ecfg = cfg.eval_config(usage)
        dims = tuple(snap.info(t).dim for t in kinds)
        key = (str(usage), *dims)
        if key not in groups:
            widths = dict(zip(kinds, dims))
            log(f"baselines for {usage} of widths {dims}: LEE ({len(cfg.seeds)} seed(s)) and full "
                f"({len(cfg.full_seed_list)} seed(s))")
            groups[key] = _Group(
                lee=evaluate_baseline(stream, ecfg, dict(zip(kinds, dims)), device=device),
                full=[run_full(stream, baseline_injection(cfg.fusion, usage, widths, len(stream.user_ids),
                                                          len(stream.item_ids), s),
                               fusion=cfg.fusion, cfg=cfg.full, seed=s, n_windows=cfg.windows,
                               test_windows=cfg.test_windows, device=device) for s in cfg.full_seed_list])
        g = groups[key]
        lee = evaluate_variant(stream, v.name, snap, ecfg, g.lee, device=device)
        injection = inject(snap, usage, stream.user_ids, stream.item_ids, stream.user_row, stream.item_row)
        full = [run_full(stream, injection, fusion=cfg.fusion, cfg=cfg.full, seed=s, n_windows=cfg.windows,
                         test_windows=cfg.test_windows, device=device) for s in cfg.full_seed_list]
        users = stream.user_row[split.test_lo:]
        full_delta = paired_delta_ci(_full_scores(stream, g.full), _full_scores(stream, full), users,
                                     n_boot=cfg.n_boot, level=cfg.level, seed=cfg.bootstrap_seed)
        lee_test_delta = paired_delta_ci([_scores_on(stream, r, split.test_lo, split.test) for r in g.lee.runs],
                                         [_scores_on(stream, r, split.test_lo, split.test) for r in lee.runs],
                                         users, n_boot=cfg.n_boot, level=cfg.level, seed=cfg.bootstrap_seed)
        measured.append(_Measured(v, lee, full, full_delta, lee_test_delta, key))
        assert lee.delta is not None
        log(f"[{k}/{len(variants)}] {v.name}: LEE ΔAUC {lee.delta.delta:+.4f} ({lee.verdict}); full ΔAUC "
            f"{full_delta.delta:+.4f} ({full_delta.verdict}); {sum(r.seconds for r in lee.runs):.0f} s vs "
            f"{sum(r.seconds for r in full):.0f} s")
    machine["end"] = machine_info()
    return _compare(stream, split, groups, measured, cfg, machine, data)


def _joint_bootstrap(stream: DownstreamStream, split: Any, groups: dict[tuple[Any, ...], _Group],
                     measured: list[_Measured], cfg: FidelityConfig) -> tuple[np.ndarray, np.ndarray]:
    """ΔAUC of every variant under both protocols in each of ``n_boot`` shared user resamples: (B, V) twice."""
    codes, uniques = pd.factorize(stream.user_row)
    lee_lo = next(iter(groups.values())).lee.runs[0].test_lo

    def lee_ws(runs: Sequence[Any]) -> list[WindowedScores]:
        out = [_scores_on(stream, r, lee_lo, r.window_edges[1:]) for r in runs]
        for w in out:
            w.bind_clusters(codes[lee_lo:])
        return out

    def full_ws(runs: Sequence[FullRun]) -> list[WindowedScores]:
        out = _full_scores(stream, runs)
        for w in out:
            w.bind_clusters(codes[split.test_lo:])
        return out

    base = {d: (lee_ws(g.lee.runs), full_ws(g.full)) for d, g in groups.items()}
    var = [(lee_ws(m.lee.runs), full_ws(m.full)) for m in measured]
    rng = np.random.default_rng([cfg.bootstrap_seed, 15])
    lee_d = np.empty((cfg.n_boot, len(measured)))
    full_d = np.empty((cfg.n_boot, len(measured)))
    for b in range(cfg.n_boot):
        cw = rng.poisson(1.0, size=len(uniques)).astype(np.float64)
        base_auc = {d: ([w.auc_clustered(cw) for w in lw], [w.auc_clustered(cw) for w in fw])
                    for d, (lw, fw) in base.items()}
        for j, (m, (lw, fw)) in enumerate(zip(measured, var)):
            bl, bf = base_auc[m.group]
            lee_d[b, j] = np.mean([w.auc_clustered(cw) - a for w, a in zip(lw, bl)])
            full_d[b, j] = np.mean([w.auc_clustered(cw) - a for w, a in zip(fw, bf)])
    return lee_d, full_d


def _window_deltas(stream: DownstreamStream, split: Any, groups: dict[tuple[Any, ...], _Group],
                   measured: list[_Measured], cfg: FidelityConfig) -> pd.DataFrame:
    """ΔAUC per window, variant and protocol (LEE on windows 1..W-1, full on the test windows)."""
    bounds = stream.window_bounds(cfg.windows)
    test_first = cfg.windows - cfg.test_windows
    rows = []
    for m in measured:
        g = groups[m.group]
        lee_w = np.nanmean([np.subtract(v.window_auc, b.window_auc) for v, b in zip(m.lee.runs, g.lee.runs)], axis=0)
        full_w = np.nanmean([np.subtract(v.window_auc, b.window_auc) for v, b in zip(m.full, g.full)], axis=0)
        for w in range(1, cfg.windows):
            a, b = bounds[w]
            rows.append({"window": w, "events": b - a, "test": w >= test_first, "variant": m.variant.name,
                         "family": m.variant.family, "lee_delta_auc": float(lee_w[w - 1]),
                         "full_delta_auc": float(full_w[w - test_first]) if w >= test_first else float("nan")})
    return pd.DataFrame(rows)


def _late_delta(deltas: pd.DataFrame, names: Sequence[str], first: int) -> np.ndarray:
    """Per variant (in ``names`` order), LEE's ΔAUC as the event-weighted mean over windows ``first``.. only."""
    part = deltas[deltas["window"] >= first]
    ok = part["lee_delta_auc"].notna()
    part = part[ok].assign(w=part.loc[ok, "events"] * part.loc[ok, "lee_delta_auc"])
    sums = part.groupby("variant")[["w", "events"]].sum()
    return (sums["w"] / sums["events"]).reindex(names).to_numpy(dtype=float)


def _swaps(names: Sequence[str], lee: np.ndarray, full: np.ndarray) -> pd.DataFrame:
    """Pairs ordered one way by LEE and the other way by full training (ties in either count as half-swaps)."""
    rows = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            dl, df = lee[i] - lee[j], full[i] - full[j]
            if np.sign(dl) != np.sign(df):
                hi, lo = (i, j) if df > 0 else (j, i)
                rows.append({"full_prefers": names[hi], "lee_prefers": names[lo], "full_gap": abs(df),
                             "lee_gap": abs(dl), "tie": bool(dl == 0 or df == 0)})
    out = pd.DataFrame(rows, columns=["full_prefers", "lee_prefers", "full_gap", "lee_gap", "tie"])
    return out.sort_values("full_gap", ascending=False).reset_index(drop=True)


def _compare(stream: DownstreamStream, split: Any, groups: dict[tuple[Any, ...], _Group], measured: list[_Measured],
             cfg: FidelityConfig, machine: dict[str, Any], data: str) -> FidelityResult:
    names = [m.variant.name for m in measured]
    lee = np.array([m.lee.delta.delta if m.lee.delta else 0.0 for m in measured])
    lee_test = np.array([m.lee_test_delta.delta for m in measured])
    full = np.array([m.full_delta.delta for m in measured])
    tau, rho = _rank_corr(lee, full)
    tau_t, rho_t = _rank_corr(lee_test, full)
    lee_d, full_d = _joint_bootstrap(stream, split, groups, measured, cfg)
    boot = np.array([_rank_corr(a, b) for a, b in zip(lee_d, full_d)])
    alpha = (1.0 - cfg.level) / 2.0

    def ci(col: int) -> list[float]:
        vals = boot[:, col][np.isfinite(boot[:, col])]
        return [float(x) for x in np.quantile(vals, [alpha, 1 - alpha])] if vals.size else [float("nan")] * 2

    lee_v = [m.lee.verdict for m in measured]
    lee_tv = [m.lee_test_delta.verdict for m in measured]
    full_v = [m.full_delta.verdict for m in measured]
    agree = float(np.mean([a == b for a, b in zip(lee_v, full_v)]))
    agree_t = float(np.mean([a == b for a, b in zip(lee_tv, full_v)]))
    kappa = float(cohen_kappa_score(lee_v, full_v, labels=list(VERDICTS))) if len(set(lee_v) | set(full_v)) > 1 \
        else float("nan")
    confusion = pd.crosstab(pd.Categorical(lee_v, VERDICTS), pd.Categorical(full_v, VERDICTS), dropna=False)
    lee_seconds = sum(r.seconds for g in groups.values() for r in g.lee.runs) + \
        sum(r.seconds for m in measured for r in m.lee.runs)
    full_seconds = sum(r.seconds for g in groups.values() for r in g.full) + \
        sum(r.seconds for m in measured for r in m.full)
    lee_runs = sum(len(g.lee.runs) for g in groups.values()) + sum(len(m.lee.runs) for m in measured)
    full_runs = sum(len(g.full) for g in groups.values()) + sum(len(m.full) for m in measured)
    tau_without = [(_rank_corr(np.delete(lee, j), np.delete(full, j))[0]) for j in range(len(names))]

    table = pd.DataFrame({
        "variant": names, "family": [m.variant.family for m in measured], "usage": [m.group[0] for m in measured],
        "lee_delta_auc": lee, "lee_ci_low": [m.lee.delta.low if m.lee.delta else 0.0 for m in measured],
        "lee_ci_high": [m.lee.delta.high if m.lee.delta else 0.0 for m in measured], "lee_verdict": lee_v,
        "lee_test_delta_auc": lee_test, "lee_test_verdict": lee_tv,
        "full_delta_auc": full, "full_ci_low": [m.full_delta.low for m in measured],
        "full_ci_high": [m.full_delta.high for m in measured], "full_verdict": full_v,
        "lee_rank": pd.Series(lee).rank(ascending=False, method="average").to_numpy(),
        "full_rank": pd.Series(full).rank(ascending=False, method="average").to_numpy(),
        "lee_seconds": [sum(r.seconds for r in m.lee.runs) for m in measured],
        "full_seconds": [sum(r.seconds for r in m.full) for m in measured],
        "full_epochs": [float(np.mean([r.best_epoch for r in m.full])) for m in measured],
        "coverage_events": [m.lee.row()["coverage_events"] for m in measured],
        "tau_without": tau_without, "note": [m.variant.note for m in measured],
    })
    table["rank_gap"] = table["lee_rank"] - table["full_rank"]
    table = table.sort_values("full_delta_auc", ascending=False).reset_index(drop=True)

    deltas = _window_deltas(stream, split, groups, measured, cfg)
    late_from = cfg.windows // 2
    late = _late_delta(deltas, names, late_from)
    tau_late, rho_late = _rank_corr(late, full)
    wrows = []
    for w, part in deltas.groupby("window", sort=True):
        part = part.set_index("variant").reindex(names)
        wt = _rank_corr(part["lee_delta_auc"].to_numpy(), full)[0]
        same = _rank_corr(part["lee_delta_auc"].to_numpy(), part["full_delta_auc"].to_numpy())[0] \
            if bool(part["test"].iloc[0]) else float("nan")
        wrows.append({"window": int(w), "events": int(part["events"].iloc[0]), "test": bool(part["test"].iloc[0]),
                      "tau_lee_window_vs_full": wt, "tau_same_window": same})
    windows = pd.DataFrame(wrows)

    g0 = next(iter(groups.values()))
    baselines = {
        "lee_auc": g0.lee.auc, "lee_auc_test_windows": float(np.mean(
            [_scores_on(stream, r, split.test_lo, split.test).auc() for r in g0.lee.runs])),
        "full_auc": float(np.mean([r.auc for r in g0.full])),
        "full_epochs": [r.epochs for r in g0.full], "full_best_epoch": [r.best_epoch for r in g0.full],
        "full_val_auc": [r.val_auc for r in g0.full],
        "stronger": "full" if np.mean([r.auc for r in g0.full]) > np.mean(
            [_scores_on(stream, r, split.test_lo, split.test).auc() for r in g0.lee.runs]) else "lee",
    }
    metrics = {
        "kendall_tau": tau, "kendall_tau_ci": ci(0), "kendall_p": float(kendalltau(lee, full).pvalue),
        "spearman_rho": rho, "spearman_rho_ci": ci(1),
        "kendall_tau_test_windows": tau_t, "spearman_rho_test_windows": rho_t,
        "kendall_tau_late_windows": tau_late, "spearman_rho_late_windows": rho_late,
        "late_windows": f"LEE's ΔAUC as the event-weighted mean over windows {late_from}..{cfg.windows - 1} only "
        "(the proxy warmed up on the first half of the stream)",
        "verdict_agreement": agree, "verdict_agreement_test_windows": agree_t, "cohen_kappa": kappa,
        "verdict_confusion": {f"lee {a}": {f"full {b}": int(confusion.loc[a, b]) for b in VERDICTS}
                              for a in VERDICTS},
        "time_ratio": full_seconds / max(lee_seconds, 1e-9),
        "time_ratio_per_run": (full_seconds / max(full_runs, 1)) / max(lee_seconds / max(lee_runs, 1), 1e-9),
        "lee_seconds": lee_seconds, "full_seconds": full_seconds, "lee_runs": lee_runs, "full_runs": full_runs,
        "n_variants": len(names), "discordant_pairs": int((~_swaps(names, lee, full)["tie"]).sum()),
        "pairs_total": len(names) * (len(names) - 1) // 2, "interval": INTERVAL, "level": cfg.level,
        "n_boot": cfg.n_boot, "lee_delta": "headline ΔAUC of the LEE job: event-weighted mean over windows "
        f"1..{cfg.windows - 1}", "full_delta": f"ΔAUC on the last {cfg.test_windows} of {cfg.windows} windows "
        f"(windows {cfg.windows - cfg.test_windows}..{cfg.windows - 1}); window {cfg.windows - cfg.test_windows - 1} "
        "validates, earlier windows train",
    }
    return FidelityResult(
        data=data, metrics=metrics, variants=table, windows=windows, deltas=deltas, swaps=_swaps(names, lee, full),
        boot=pd.DataFrame({"kendall_tau": boot[:, 0], "spearman_rho": boot[:, 1]}), baselines=baselines,
        config=cfg.to_dict(), machine=machine)


# ----------------------------------------------------------------------------- end to end


def run_fidelity(data: str | Path, out: str | Path, *, cfg: FidelityConfig | None = None,
                 catalogue: CatalogueConfig | None = None, select: Sequence[str] | None = None,
                 device: str = "cpu", progress: bool = False, log: Callable[[str], Any] = print) -> FidelityResult:
    """Build the variants of ``data`` (a dataset or world directory) under ``out/snapshots``, rank them by LEE
    and by full training, and write ``out/fidelity.json`` and the saved result ``out/fidelity/``."""
    cfg = cfg or FidelityConfig()
    out = check_output_target(out, directory=True)
    check_output_target(out / "fidelity.json")
    t0 = time.perf_counter()
    ds = Dataset.open(data)
    stream = stream_from_dataset(ds)
    split = full_split(stream, cfg.windows, cfg.test_windows)
    cat: Catalogue = build_catalogue(ds, out / "snapshots", test_start=int(stream.ts[split.test_lo]), cfg=catalogue,
                                     select=select, device=device, progress=progress, log=log)
    built = time.perf_counter() - t0
    log(f"{len(cat.variants)} variants: {', '.join(v.name for v in cat.variants)}")
    res = measure_fidelity(stream, cat.variants, cfg, device=device, log=log, data=str(data))
    res.upstream = cat.upstream
    res.notes = [*cat.notes, *res.notes]
    if res.baselines["stronger"] != "full":
        res.notes.append("the full model's baseline scores below LEE's proxy on the test windows: the yardstick is "
                         "weaker than the proxy it judges")
    res.seconds = {"variants": built, "total": time.perf_counter() - t0}
    write_fidelity(res, out)
    return res


def write_fidelity(res: FidelityResult, out: str | Path) -> Path:
    """``out/fidelity.json`` (the summary: figures and per-variant ΔAUC pairs) and ``out/fidelity/`` (the saved
    result); returns the JSON's path."""
    import json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    res.save(out / "fidelity")
    path = out / "fidelity.json"
    atomic_write_text(path, json.dumps(res.summary(), indent=1, allow_nan=False) + "\n")
    return path


# ----------------------------------------------------------------------------- figure


def fidelity_figure(res: FidelityResult) -> go.Figure:
    """LEE's ΔAUC against full training's, per variant with both intervals, coloured by family."""
    from analysis.figures import safe

    m = res.metrics
    t = res.variants
    fig = go.Figure()
    lo, hi = m.get("kendall_tau_ci", [float("nan")] * 2)
    fig.update_layout(
        title=safe(f"LEE vs full downstream training: Kendall τ {m['kendall_tau']:.2f} [{lo:.2f}, {hi:.2f}], "
                   f"Spearman ρ {m['spearman_rho']:.2f}, verdicts agree {m['verdict_agreement']:.0%}, "
                   f"{m['time_ratio']:.1f}× the time"),
        template="plotly_white", margin=dict(l=60, r=20, t=60, b=50), height=480,
        xaxis_title="ΔAUC under full training (test windows)", yaxis_title="ΔAUC under LEE (job headline)")
    for family, part in t.groupby("family", sort=True):
        fig.add_trace(go.Scatter(
            x=part["full_delta_auc"], y=part["lee_delta_auc"], mode="markers+text", name=safe(str(family)),
            text=safe(part["variant"]), textposition="top center", marker=dict(size=9),
            error_x=dict(type="data", symmetric=False, array=part["full_ci_high"] - part["full_delta_auc"],
                         arrayminus=part["full_delta_auc"] - part["full_ci_low"], thickness=1),
            error_y=dict(type="data", symmetric=False, array=part["lee_ci_high"] - part["lee_delta_auc"],
                         arrayminus=part["lee_delta_auc"] - part["lee_ci_low"], thickness=1),
            customdata=np.c_[safe(part["lee_verdict"]), safe(part["full_verdict"])],
            hovertemplate="%{text}: full %{x:.4f} (%{customdata[1]}), LEE %{y:.4f} (%{customdata[0]})<extra></extra>"))
    fig.add_hline(y=0, line_color="grey", line_dash="dot")
    fig.add_vline(x=0, line_color="grey", line_dash="dot")
    return fig
