"""Backward compatibility: can consumers trained on version k take version k+1 without retraining?

The LEE proxy stands in for a downstream consumer. Protocol, on the downstream stream cut into
``windows`` event-time windows:

1. a consumer is trained (streaming test-then-train, :func:`lee.evaluator.stream.run_stream`) on
   the first ``windows − test_windows`` windows with version k injected, and another, same seed,
   with version k+1 injected;
2. on the remaining ``test_windows`` windows — never trained on — four scores are taken:
   ``keep`` (the k consumer with k, what runs today), ``swap`` (the k consumer with k+1 injected in
   place of k, nothing retrained), ``swap aligned`` (the same with k+1 first mapped into k's space
   by the orthogonal Procrustes map of :mod:`analysis.compare.paired`, fitted on the ids both
   versions hold) and ``retrained`` (the k+1 consumer with k+1);
3. ΔAUC of swapping = AUC(swap) − AUC(retrained), raw and aligned, averaged over seeds, with the
   evaluator's paired user-bootstrap interval (:func:`lee.evaluator.stats.paired_delta_ci`); and,
   as the release risk, AUC(swap) − AUC(keep): does serving k+1 to today's consumers make them
   worse than they are today?

ΔAUC against retraining ≈ 0 means consumers can take k+1 as is; clearly negative means they must
be retrained to get what k+1 offers (or be fed the aligned vectors, when the aligned ΔAUC is ≈ 0);
against keeping, clearly negative means shipping k+1 under them breaks them. Injection is the evaluator's: vectors
looked up by id and z-scored per column with the injected table's own statistics; an id the
injected version lacks gets the consumer's learned default vector.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from analysis.compare.paired import FIT_SAMPLE, Alignment, fit_alignment, sample_positions
from lee.errors import InputError
from lee.evaluator.data import DownstreamStream
from lee.evaluator.inject import PAIRS, InjectedTable, Injection, inject
from lee.evaluator.models import ProxyConfig, RepLookup
from lee.evaluator.stats import DeltaCI, RankedScores, paired_delta_ci
from lee.evaluator.stream import rep_rows_for, run_stream, score
from lee.results import SavedResult, register
from lee.snapshot import Snapshot, TableKind
from lee.timeutil import time_dirname
from lee.versions import warn_skew

READING = ("_vs_retrained: consumers trained on the incumbent and served the candidate without retraining, "
           "against consumers retrained on the candidate (strict backward compatibility); _vs_keep: the same "
           "consumers against keeping the incumbent (the release risk: are they worse than today?); an interval "
           "entirely below 0 is 'incompatible' or 'worse'")


def snapshot_label(snapshot: Snapshot) -> str:
    """``variant@<event time>``, how a version is named in results and messages."""
    return f"{snapshot.variant}@{time_dirname(snapshot.event_time)}"


@register("backward-compat")
@dataclass
class CompatResult(SavedResult):
    """ΔAUC of swapping version k+1 into consumers trained on k, against consumers retrained on k+1."""

    before: str
    after: str
    usage: str
    fusion: str
    seeds: list[int]
    trained_events: int
    test_events: int
    auc_keep: float
    auc_swap: float
    auc_swap_aligned: float
    auc_retrained: float
    delta_raw: float
    raw_low: float
    raw_high: float
    delta_aligned: float
    aligned_low: float
    aligned_high: float
    level: float
    n_boot: int
    alignment: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    vs_keep: dict[str, list[float]] = field(default_factory=dict)  # raw / aligned: [Δ, low, high] of swap − keep

    def summary(self) -> dict[str, Any]:
        """Every number, each named by what it is measured against: ``_vs_retrained`` (the swap against
        consumers retrained on the candidate: strict backward compatibility) or ``_vs_keep`` (against
        keeping the incumbent: the release risk). The two can disagree: a better candidate is often
        incompatible against retraining (retrained consumers gain more) and yet no worse than keeping."""
        nan3 = [float("nan")] * 3
        keep_raw, keep_aligned = self.vs_keep.get("raw", nan3), self.vs_keep.get("aligned", nan3)
        return {"before": self.before, "after": self.after, "usage": self.usage, "fusion": self.fusion,
                "seeds": self.seeds, "trained_events": self.trained_events, "test_events": self.test_events,
                "auc_keep": self.auc_keep, "auc_swap": self.auc_swap, "auc_swap_aligned": self.auc_swap_aligned,
                "auc_retrained": self.auc_retrained,
                "delta_auc_swap_vs_retrained": self.delta_raw,
                "delta_auc_swap_vs_retrained_ci": [self.raw_low, self.raw_high],
                "delta_auc_swap_aligned_vs_retrained": self.delta_aligned,
                "delta_auc_swap_aligned_vs_retrained_ci": [self.aligned_low, self.aligned_high],
                "delta_auc_swap_vs_keep": keep_raw[0],
                "delta_auc_swap_vs_keep_ci": keep_raw[1:],
                "delta_auc_swap_aligned_vs_keep": keep_aligned[0],
                "delta_auc_swap_aligned_vs_keep_ci": keep_aligned[1:],
                "level": self.level,
                "verdict_vs_retrained": self._against_retrained(self.raw_low, self.raw_high),
                "verdict_aligned_vs_retrained": self._against_retrained(self.aligned_low, self.aligned_high),
                "verdict_vs_keep": self._against_keep(*keep_raw[1:]),
                "verdict_aligned_vs_keep": self._against_keep(*keep_aligned[1:]),
                "reading": READING, "notes": self.notes}

    @staticmethod
    def _verdict(low: float, high: float) -> str:
        if not np.isfinite(low) or not np.isfinite(high):
            return "not applicable"
        return "incompatible" if high < 0 else "compatible"

    @classmethod
    def _against_retrained(cls, low: float, high: float) -> str:
        verdict = cls._verdict(low, high)
        return verdict if verdict == "not applicable" else f"{verdict} against retraining on the candidate"

    @staticmethod
    def _against_keep(low: float, high: float) -> str:
        if not np.isfinite(low) or not np.isfinite(high):
            return "not applicable"
        return "worse than keeping the incumbent" if high < 0 else "no worse than keeping the incumbent"

    @property
    def verdict(self) -> str:
        """``incompatible`` when the raw swap is significantly worse than retraining on the candidate, else
        ``compatible`` (against retraining, not against keeping the incumbent: see ``vs_keep``)."""
        return self._verdict(self.raw_low, self.raw_high)

    @property
    def verdict_aligned(self) -> str:
        """:attr:`verdict` of the aligned swap (against retraining on the candidate)."""
        return self._verdict(self.aligned_low, self.aligned_high)

    def tables(self) -> dict[str, pd.DataFrame]:
        rows = [{"scenario": "keep k (what runs today)", "auc": self.auc_keep},
                {"scenario": "swap k+1 in, no retraining", "auc": self.auc_swap},
                {"scenario": "swap aligned k+1 in, no retraining", "auc": self.auc_swap_aligned},
                {"scenario": "retrained on k+1", "auc": self.auc_retrained}]
        return {"compat": pd.DataFrame(rows)}


def injected_table(kind: TableKind, ids: np.ndarray, vectors: np.ndarray, stream: DownstreamStream) -> InjectedTable:
    """In-memory vectors injected exactly as :func:`lee.evaluator.inject.inject` injects a snapshot table:
    rows looked up by the stream's ids, z-scored per column over the ids present, a zero 'missing' row."""
    world_ids, ev_rows = (stream.user_ids, stream.user_row) if kind.entity == "user" else (stream.item_ids,
                                                                                             stream.item_row)
    rows = pd.Index(ids).get_indexer(world_ids)
    present = rows >= 0
    if not present.any():
        raise InputError(f"no id of the {kind.value} vectors matches a downstream {kind.entity} id")
    mat = np.zeros((world_ids.size, vectors.shape[1]), np.float32)
    mat[present] = vectors[rows[present]]
    mu = mat[present].mean(0)
    sd = mat[present].std(0) + 1e-6
    mat = np.where(present[:, None], (mat - mu) / sd, 0.0).astype(np.float32)
    full = np.vstack([mat, np.zeros((1, mat.shape[1]), np.float32)])
    return InjectedTable(kind, torch.from_numpy(full), present, int((~present[ev_rows]).sum()))


def aligned_injection(before: Snapshot, after: Snapshot, usage: str, stream: DownstreamStream, *,
                      fit_sample: int = FIT_SAMPLE, seed: int = 0) -> tuple[Injection, dict[str, Alignment]]:
    """``after``'s tables of ``usage`` mapped into ``before``'s space (orthogonal Procrustes on the shared
    ids of each table) and injected; with the alignment of each table."""
    tables, alignments = [], {}
    for kind in PAIRS[usage]:
        ta, tb = before.load(kind), after.load(kind)
        pos = pd.Index(ta.ids).get_indexer(tb.ids)
        shared = np.flatnonzero(pos >= 0)
        if shared.size < 2:
            raise InputError(f"{after.path}: the {kind.value} table shares {shared.size} id(s) with {before.path}; "
                             "an alignment needs at least 2")
        fit = shared[sample_positions(shared.size, fit_sample, seed)]
        al = fit_alignment(ta.vectors[pos[fit]], tb.vectors[fit])
        alignments[kind.value] = al
        tables.append(injected_table(kind, tb.ids, al.apply(tb.vectors), stream))
    return Injection(tables, source=f"{after.path} aligned to {before.path}"), alignments


def _swapped(model: nn.Module, injection: Injection) -> nn.Module:
    """A copy of a trained consumer whose injected tables are replaced by ``injection``'s (same dims);
    its learned default vectors for missing ids are kept."""
    reps = getattr(model, "reps", None)
    if not isinstance(reps, RepLookup):
        raise InputError("the consumer model has no injected tables to swap")
    dims = [t.dim for t in injection.tables]
    if dims != reps.dims:
        raise InputError(f"cannot swap tables of dims {dims} into a consumer built for dims {reps.dims}")
    out = copy.deepcopy(model)
    device = next(reps.defaults.parameters()).device
    new = RepLookup(injection).to(device)       # on the consumer's device (the tables come from the CPU)
    new.defaults = copy.deepcopy(reps.defaults)  # the consumer's learned default vectors for missing ids
    out.reps = new
    return out


def _score_from(stream: DownstreamStream, model: nn.Module, injection: Injection, lo: int,
                device: torch.device) -> np.ndarray:
    """Logits of events ``lo:`` (the test windows) with ``injection``'s tables looked up."""
    return score(model, stream.x, rep_rows_for(stream, injection), lo, len(stream), device)


def _ranked(y: np.ndarray, scores: list[np.ndarray]) -> list[RankedScores]:
    return [RankedScores(y, s) for s in scores]


def backward_compatibility(stream: DownstreamStream, before: Snapshot, after: Snapshot, *, usage: str = "UR+IR",
                           fusion: str = "concat", seeds: Sequence[int] = (0,), windows: int = 10,
                           test_windows: int = 3, n_boot: int = 100, level: float = 0.95,
                           proxy: ProxyConfig | None = None, fit_sample: int = FIT_SAMPLE, bootstrap_seed: int = 0,
                           device: torch.device | str = "cpu", progress: bool = False) -> CompatResult:
    """ΔAUC of serving ``after`` (k+1) to consumers trained on ``before`` (k) instead of retraining them
    (see the module docstring for the protocol)."""
    if usage not in PAIRS:
        raise InputError(f"unknown usage {usage!r}; choose one of {', '.join(PAIRS)}")
    if not 1 <= test_windows < windows:
        raise InputError(f"test_windows must lie in 1..windows-1; got {test_windows} with windows={windows}")
    if not seeds:
        raise InputError("backward compatibility needs at least one seed")
    device = torch.device(device)
    cfg = proxy or ProxyConfig()
    notes = warn_skew([(before, k) for k in PAIRS[usage]], what=f"version k ({snapshot_label(before)})")
    notes += warn_skew([(after, k) for k in PAIRS[usage]], what=f"version k+1 ({snapshot_label(after)})")
    ids = (stream.user_ids, stream.item_ids, stream.user_row, stream.item_row)
    inj_before, inj_after = inject(before, usage, *ids), inject(after, usage, *ids)
    inj_aligned, alignments = aligned_injection(before, after, usage, stream, fit_sample=fit_sample)
    same_dims = [t.dim for t in inj_before.tables] == [t.dim for t in inj_after.tables]
    if not same_dims:
        notes.append(f"dims differ ({[t.dim for t in inj_before.tables]} vs {[t.dim for t in inj_after.tables]}): "
                     "a consumer built for k cannot take k+1 as is; only the aligned swap is measured")
    bounds = stream.window_bounds(windows)
    train_windows = windows - test_windows
    sub = stream.subset(bounds[train_windows][1])
    keep, swap, swap_al, retrained = [], [], [], []
    test_lo = None
    for s in seeds:
        run_k, run_k1 = (run_stream(sub, inj, fusion=fusion, cfg=cfg, seed=s, n_windows=train_windows + 1,
                                    device=device, keep_model=True, progress=progress, desc=f"consumer {v} (seed {s})")
                         for inj, v in ((inj_before, "k"), (inj_after, "k+1")))
        assert run_k.model is not None and run_k1.model is not None  # keep_model=True
        test_lo = run_k.window_edges[-1][0]
        keep.append(_score_from(stream, run_k.model, inj_before, test_lo, device))
        retrained.append(_score_from(stream, run_k1.model, inj_after, test_lo, device))
        swap_al.append(_score_from(stream, _swapped(run_k.model, inj_aligned), inj_aligned, test_lo, device))
        if same_dims:
            swap.append(_score_from(stream, _swapped(run_k.model, inj_after), inj_after, test_lo, device))
    assert test_lo is not None
    y = stream.y[test_lo:].numpy()
    if not 0 < y.sum() < y.size:
        raise InputError(f"the {test_windows} test window(s) hold {int(y.sum())} click(s) in {y.size} events; "
                         "an AUC needs both classes")
    clusters = stream.user_row[test_lo:]

    def delta(variant: list[np.ndarray], reference: list[np.ndarray] = retrained) -> DeltaCI | None:
        if not variant:
            return None
        return paired_delta_ci(_ranked(y, reference), _ranked(y, variant), clusters, n_boot=n_boot, level=level,
                               seed=bootstrap_seed)

    raw, aligned = delta(swap), delta(swap_al)
    assert aligned is not None
    vs_keep = {name: [d.delta, d.low, d.high] for name, d in (("raw", delta(swap, keep)),
                                                              ("aligned", delta(swap_al, keep))) if d is not None}

    def auc(scores: list[np.ndarray]) -> float:
        return float(np.mean([r.auc() for r in _ranked(y, scores)])) if scores else float("nan")

    nan = float("nan")
    return CompatResult(
        before=snapshot_label(before), after=snapshot_label(after), usage=str(usage), fusion=str(fusion),
        seeds=[int(s) for s in seeds], trained_events=int(test_lo), test_events=int(len(stream) - test_lo),
        auc_keep=auc(keep), auc_swap=auc(swap), auc_swap_aligned=auc(swap_al), auc_retrained=auc(retrained),
        delta_raw=raw.delta if raw else nan, raw_low=raw.low if raw else nan, raw_high=raw.high if raw else nan,
        delta_aligned=aligned.delta, aligned_low=aligned.low, aligned_high=aligned.high, level=level, n_boot=n_boot,
        alignment={k: f"{a.method}; fitted on {a.fit_rows:,} shared ids (mean aligned cosine {a.fit_cosine:.3f})"
                   for k, a in alignments.items()},
        notes=notes, vs_keep=vs_keep)
