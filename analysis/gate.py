"""The release gate: "can this snapshot go out tonight?" — ship, hold or roll back, with the reasons.

A candidate snapshot is judged against the incumbent (what consumers use today) by rules, each
reading one analysis; thresholds live in a typed TOML file (:class:`GateRules`, loaded with
:func:`lee.config.load_config`), every one with a documented default:

========== ============================================================ ==============
rule       fires when                                                   default action
========== ============================================================ ==============
health     the candidate is flagged by the health monitor against its   roll back
           own recent history: broken (NaN/Inf rows, dead dimensions),
           rescaled, or refused by the reader; only drifted (means
           shifted, more extreme values): ``drift_action``              (drift: hold)
skew       the candidate's injected tables come from different model    hold
           checkpoints (:mod:`lee.versions`)
lee        LEE ΔAUC of candidate vs incumbent (paired seeds, user       hold
           bootstrap) has its interval's upper end below ``-max_loss``
           (0.001: confidently worse by more than that);
           or the candidate's event coverage is below ``min_coverage``;
           or, with ``require_better``, the interval does not lie above 0
similarity the mean cosine to the incumbent is below                     hold
           ``min_mean_cosine``: same-id cosine (volatility) when both
           come from one training run, else the Procrustes-aligned one
collapse   a table's effective rank is below ``min_rank_ratio`` × the   hold
           incumbent's
compat     swapping the candidate into consumers trained on the         hold
           incumbent (no retraining) loses AUC against keeping the
           incumbent (``reference = "keep"``, the release risk) or
           against retraining (``"retrained"``): the interval's upper
           end below ``-max_loss`` (0.002; ``swap`` = raw or aligned)
========== ============================================================ ==============

The decision is the most severe action among the rules that fired (roll back > hold > ship);
``ship`` when none did. Exit codes of ``lee gate``: 0 ship, 1 hold, 2 roll back. The decision,
each rule's measure, threshold and outcome are recorded in the results store
(:meth:`lee.jobs.store.ResultsStore.add_gate_decision`) and can be saved as a result directory.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from pydantic import Field

from analysis._data import as_dataset
from analysis.collapse import collapse_of_table
from analysis.compare import VersionComparison, compare_versions, open_version, version_label
from analysis.compat import CompatResult, backward_compatibility
from analysis.health import HealthThresholds, Reference, judge, snapshot_health, table_stats
from lee.config import ConfigModel, load_config
from lee.data.dataset import Dataset
from lee.errors import InputError, LeeWarning, SnapshotError
from lee.evaluator.compare import EvalConfig, VariantResult, evaluate_variant
from lee.evaluator.data import DownstreamStream, stream_from_dataset
from lee.evaluator.inject import PAIRS, Usage, inject
from lee.evaluator.models import FusionMode, ProxyConfig
from lee.evaluator.stream import run_stream
from lee.jobs.store import ResultsStore
from lee.results import SavedResult, plain, register
from lee.snapshot import Snapshot, SnapshotStore, TableKind
from lee.timeutil import iso, time_dirname
from lee.versions import same_basis, skew_warnings
from lee.world.model import World


class Decision(StrEnum):
    """What the gate says, from least to most severe."""

    SHIP = "ship"
    HOLD = "hold"
    ROLL_BACK = "roll back"


EXIT_CODES = {Decision.SHIP: 0, Decision.HOLD: 1, Decision.ROLL_BACK: 2}
_SEVERITY = {Decision.SHIP: 0, Decision.HOLD: 1, Decision.ROLL_BACK: 2}


class _Rule(ConfigModel):
    enabled: bool = True
    action: Decision = Decision.HOLD


class LeeRule(_Rule):
    """``[lee]``: the candidate against the incumbent under the LEE proxy (paired seeds, user bootstrap)."""

    usage: Usage = Usage.UR_IR
    fusion: FusionMode = FusionMode.CONCAT
    seeds: tuple[int, ...] = Field((0,), min_length=1)
    windows: int = Field(10, ge=2)
    n_boot: int = Field(100, ge=2)
    level: float = Field(0.95, gt=0.5, lt=1.0)
    max_loss: float = Field(0.001, ge=0)        # hold when the ΔAUC interval's upper end is below -max_loss
    min_coverage: float = Field(0.5, ge=0, le=1)  # hold below this share of downstream events with a vector
    require_better: bool = False                # hold unless the interval lies above 0


class HealthRule(_Rule):
    """``[health]``: the candidate against the median of its variant's recent healthy snapshots.

    ``action`` applies to a broken (NaN/Inf rows, dead dimensions) or rescaled candidate;
    ``drift_action`` to one flagged only for drift (means shifted, more extreme values), which a
    model that is still learning produces and which is worth a look rather than a rollback.
    """

    action: Decision = Decision.ROLL_BACK
    drift_action: Decision = Decision.HOLD
    history: int = Field(6, ge=1)                # snapshots of the candidate's variant up to it that are read
    thresholds: HealthThresholds = Field(default_factory=HealthThresholds)


class SimilarityRule(_Rule):
    """``[similarity]``: how far the candidate moved from the incumbent (volatility or aligned cosine)."""

    table: str = "UR"
    min_mean_cosine: float = Field(0.5, ge=-1, le=1)
    k: int = Field(10, ge=1)                     # kNN overlap@k, reported with the decision
    drift_sample: int = Field(500, ge=5)         # per side, for the drift tests reported with the decision


class CollapseRule(_Rule):
    """``[collapse]``: effective rank of each injected table against the incumbent's."""

    min_rank_ratio: float = Field(0.5, gt=0, le=1)


class CompatRule(_Rule):
    """``[compat]``: consumers trained on the incumbent, served the candidate without retraining.

    ``reference = "keep"`` (default) judges the release risk: served the candidate, are today's
    consumers worse than they are today? ``"retrained"`` judges backward compatibility in the strict
    sense: do they lose against consumers retrained on the candidate?
    """

    swap: str = Field("raw", pattern="^(raw|aligned)$")  # judge the swap as is, or after Procrustes alignment
    reference: str = Field("keep", pattern="^(keep|retrained)$")
    max_loss: float = Field(0.002, ge=0)        # hold when the swap's ΔAUC interval's upper end is below -max_loss
    test_windows: int = Field(3, ge=1)


class SkewRule(_Rule):
    """``[skew]``: the candidate's injected tables written by different model checkpoints."""


class GateRules(ConfigModel):
    """Every rule of the release gate; ``lee gate --rules gate.toml`` reads them (sections as below)."""

    config_name: ClassVar[str] = "gate rules"

    lee: LeeRule = Field(default_factory=LeeRule)
    health: HealthRule = Field(default_factory=HealthRule)
    similarity: SimilarityRule = Field(default_factory=SimilarityRule)
    collapse: CollapseRule = Field(default_factory=CollapseRule)
    compat: CompatRule = Field(default_factory=CompatRule)
    skew: SkewRule = Field(default_factory=SkewRule)


def load_rules(path: str | Path | None) -> GateRules:
    """The rules of a TOML file (strictly typed, unknown keys refused), or the defaults without one."""
    return GateRules() if path is None else load_config(GateRules, path, what="gate rules file")


register("gate-rules")(GateRules)


@register("gate-decision")
@dataclass
class GateDecision(SavedResult):
    """One decision: the candidate, the incumbent, what each rule measured and whether it fired."""

    decision_id: str
    decided_at: str
    candidate: str
    incumbent: str
    decision: Decision
    rules: pd.DataFrame                # rule, measured, threshold, fired, action, reason
    details: dict[str, Any]            # each analysis's summary, as plain JSON
    config: GateRules
    rollback_target: str | None = None
    comparison: VersionComparison | None = None
    compat: CompatResult | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[Decision(self.decision)]

    @property
    def reasons(self) -> list[str]:
        fired = self.rules.loc[self.rules["fired"]]
        return [f"{r.rule} ({r.action}): {r.reason}" for r in fired.itertuples()]

    def summary(self) -> dict[str, Any]:
        return {"decision": str(self.decision), "exit_code": self.exit_code, "candidate": self.candidate,
                "incumbent": self.incumbent, "reasons": self.reasons, "rollback_target": self.rollback_target,
                "decided_at": self.decided_at, "decision_id": self.decision_id,
                "rules": self.rules.to_dict(orient="records"), "details": self.details}

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"rules": self.rules}


# --------------------------------------------------------------------------- the parts


def lee_versus(stream: DownstreamStream, candidate: Snapshot, incumbent: Snapshot, cfg: EvalConfig, *,
               device: torch.device | str = "cpu") -> VariantResult:
    """LEE ΔAUC of ``candidate`` against ``incumbent`` (the incumbent plays the baseline's part: seed s of one
    is paired with seed s of the other, same batches, one user bootstrap), with the candidate's coverage."""
    device = torch.device(device)
    inj = inject(incumbent, cfg.usage, stream.user_ids, stream.item_ids, stream.user_row, stream.item_row)
    runs = [run_stream(stream, inj, fusion=cfg.fusion, cfg=cfg.proxy, seed=s, n_windows=cfg.windows, device=device)
            for s in cfg.seeds]
    inc = VariantResult("incumbent", str(incumbent.path), runs, missing=inj.counts)
    return evaluate_variant(stream, "candidate", candidate, cfg, inc, device=device)


@dataclass
class _Outcome:
    rule: str
    measured: Any
    threshold: Any
    fired: bool
    action: Decision
    reason: str

    def row(self) -> dict[str, Any]:
        return {"rule": self.rule, "measured": _text(self.measured), "threshold": _text(self.threshold),
                "fired": self.fired, "action": str(self.action), "reason": self.reason}


def _text(value: Any) -> str:
    if isinstance(value, float):
        return "–" if not np.isfinite(value) else f"{value + 0.0:.4g}"  # + 0.0: no "-0"
    return str(value)


def _stream_of(data: Dataset | World | DownstreamStream) -> DownstreamStream:
    if isinstance(data, DownstreamStream):
        return data
    return stream_from_dataset(as_dataset(data))


def _dead_against_incumbent(candidate: Snapshot, incumbent: Snapshot, kinds: list[TableKind],
                            th: HealthThresholds) -> list[str]:
    """Dims alive in the incumbent's table and dead in the candidate's, one reason per table that has any.

    The health monitor judges a snapshot against its own variant's earlier snapshots; a candidate
    that is the first of its variant (an imported model version) has none, and a dimension dead
    from the start is then taken for how the representation is. Against the incumbent, which
    consumers read today, a dimension that had spread there and has none in the candidate is a
    breakage. Only dead dimensions are judged here: another model version may rescale or shift
    its vectors legitimately.
    """
    reasons = []
    for kind in kinds:
        if kind not in incumbent.kinds or incumbent.info(kind).dim != candidate.info(kind).dim:
            continue
        ref = table_stats(incumbent, kind)
        reference = Reference(dim_mean=ref.dim_mean, dim_std=ref.dim_std, l2_mean=ref.l2_mean,
                              variance=ref.variance, extreme_share=ref.extreme_share, dead_dims=0)
        measures, _ = judge(table_stats(candidate, kind, reference=reference), reference, th)
        dead = measures.get("dead_dims", float("nan"))
        if np.isfinite(dead) and dead > th.max_dead_dims:
            reasons.append(f"{kind.value}: {int(dead)} dead dimension(s)")
    if reasons:
        reasons[-1] += (f" (std < {th.dead_std_ratio:g} × the incumbent {version_label(incumbent)}'s; the candidate "
                        "has no earlier snapshot of its variant to judge it against)")
    return reasons


def _health(store: SnapshotStore, candidate: Snapshot, kinds: list[TableKind], rule: HealthRule,
            incumbent: Snapshot | None = None) -> tuple[_Outcome, bool, datetime | None, dict[str, Any]]:
    """The health outcome, whether the candidate is broken (cannot be analysed further), the rollback target.

    With no earlier snapshot of the candidate's variant (the first snapshot of an imported
    version), its dead dimensions are judged against the ``incumbent`` instead.
    """
    times = [t for t in store.times(candidate.variant) if t <= candidate.event_time][-rule.history:]
    report = snapshot_health(store, candidate.variant, thresholds=rule.thresholds, kinds=list(kinds), times=times)
    rows = report.table.loc[report.table["time"] == pd.Timestamp(candidate.event_time)]
    flagged = rows.loc[~rows["healthy"]]
    broken = bool(rows["broken"].any())
    if len(times) < 2 and incumbent is not None and not broken:
        dead = _dead_against_incumbent(candidate, incumbent, kinds, rule.thresholds)
        if dead:
            reason = "; ".join(dead)
            detail = {"snapshots_read": len(times), "state": "broken", "flags": reason,
                      "reference": f"the incumbent {version_label(incumbent)}", "rollback_target": None}
            return _Outcome("health", "broken", "healthy", True, rule.action, reason), True, None, detail
    ratio = flagged["scale_ratio"].astype(float) if "scale_ratio" in flagged else pd.Series(dtype=float)
    limit = rule.thresholds.max_scale_ratio
    rescaled = bool(((ratio > limit) | (ratio < 1.0 / limit)).any())
    target = report.rollback_target
    reason = "; ".join(f"{r.table}: {r.reasons}" for r in flagged.itertuples()) or "healthy"
    state = "broken" if broken else "rescaled" if rescaled else "drifted" if len(flagged) else "healthy"
    detail = {"snapshots_read": len(times), "state": state, "flags": reason,
              "rollback_target": iso(target) if target else None}
    action = rule.action if broken or rescaled else rule.drift_action
    return _Outcome("health", state, "healthy", bool(len(flagged)), action, reason), broken, target, detail


def _similarity_outcome(s: dict[str, Any], same: bool | None, rule: SimilarityRule, *,
                        served_aligned: bool = False) -> _Outcome:
    """The similarity rule on a comparison's summary ``s``.

    Same-id cosine is what a consumer reading the vectors by position sees; it is the measure
    unless the manifests say the versions come from different training runs (``same`` False: their
    bases differ by construction and the compat rule judges the swap), where the Procrustes-aligned
    cosine is. With no provenance recorded (``same`` None, e.g. imported snapshots) a low same-id
    cosine beside a high aligned one is named for what it is: the same representation in another basis.
    With ``served_aligned`` (``[compat] swap = "aligned"``: consumers are served the candidate after
    the Procrustes alignment) the aligned cosine is the measure whatever the provenance.
    """
    raw_ok = same is not False and not served_aligned and np.isfinite(s["raw_cosine_mean"])
    value = s["raw_cosine_mean"] if raw_ok else s["aligned_cosine_mean"]
    name = ("same-id cosine" + (" (volatility; one training run)" if same else " (no training run recorded)")
            if raw_ok else "Procrustes-aligned cosine")
    fired = bool(np.isfinite(value) and value < rule.min_mean_cosine)
    n_inc = s["shared_ids"] + s["only_a"]
    over = (f" over {s['shared_ids']:,} shared ids ({s['shared_ids'] / n_inc:.0%} of the incumbent's {n_inc:,})"
            if n_inc else "")
    reason = f"mean {name} to the incumbent {value:.3f} {'<' if fired else '≥'} {rule.min_mean_cosine:g}{over}"
    aligned = s["aligned_cosine_mean"]
    if fired and raw_ok and np.isfinite(aligned) and aligned >= rule.min_mean_cosine:
        reason += (f", while the Procrustes-aligned cosine is {aligned:.3f}: the candidate is the incumbent's "
                   "representation in another basis (a retrain or a new model version); consumers that read the "
                   "vectors by position must be retrained on it first (import each version with its training run, "
                   "'lee snapshots import --model-run NAME', to have a retrain judged by the compat rule instead)")
    return _Outcome("similarity", value, rule.min_mean_cosine, fired, rule.action, reason)


def decide(outcomes: list[_Outcome]) -> Decision:
    """The most severe action among the rules that fired (ship when none did)."""
    fired = [Decision(o.action) for o in outcomes if o.fired]
    return max(fired, key=lambda d: _SEVERITY[d]) if fired else Decision.SHIP


def run_gate(root: str | Path, candidate: str, incumbent: str, data: Dataset | World | DownstreamStream, *,
             rules: GateRules | None = None, db: str | Path | None = None, device: torch.device | str = "cpu",
             progress: bool = False, log: Callable[[str], Any] = lambda *_: None) -> GateDecision:
    """Judge ``candidate`` against ``incumbent`` (both ``VARIANT[@TIME]`` under ``root``) on ``data``'s
    downstream stream; record the decision in the results store ``db`` when given."""
    rules = rules or GateRules()
    store = SnapshotStore(root)
    cand, inc = open_version(candidate, root), open_version(incumbent, root)
    if cand.path == inc.path:
        raise InputError(f"candidate and incumbent are the same snapshot ({cand.path}); name two versions")
    usage_kinds = list(PAIRS[rules.lee.usage])
    sim_kind = TableKind.parse(rules.similarity.table)
    for snap in (cand, inc):
        missing = [k.value for k in usage_kinds + [sim_kind] if k not in snap.kinds]
        if missing:
            raise InputError(f"{snap.path}: has no {', '.join(missing)} table; the gate's rules read "
                             f"{rules.lee.usage} and {sim_kind.value} (set [lee] usage / [similarity] table)")
    outcomes: list[_Outcome] = []
    details: dict[str, Any] = {}
    target = None
    broken = False

    # --- health (and whether the candidate can be read at all)
    if rules.health.enabled:
        log("gate: health")
        try:
            out, broken, target, details["health"] = _health(store, cand, sorted(set(usage_kinds + [sim_kind]),
                                                                                 key=list(TableKind).index),
                                                             rules.health, inc)
        except SnapshotError as exc:  # the reader refuses the candidate: it cannot go out
            out, broken = _Outcome("health", "refused by the reader", "readable", True, rules.health.action,
                                   str(exc)), True
        outcomes.append(out)

    # --- version skew among the injected tables
    if rules.skew.enabled:
        msgs = skew_warnings([(cand, k) for k in usage_kinds], what=f"candidate {version_label(cand)}")
        outcomes.append(_Outcome("skew", "skewed" if msgs else "one checkpoint", "one checkpoint", bool(msgs),
                                 rules.skew.action, msgs[0] if msgs else "all injected tables from one checkpoint "
                                 "(or none recorded)"))

    skipped = "not evaluated: the candidate is broken (see health)"
    comparison = compat = None
    # --- similarity to the incumbent
    if rules.similarity.enabled:
        if broken:
            outcomes.append(_Outcome("similarity", "–", rules.similarity.min_mean_cosine, False,
                                     rules.similarity.action, skipped))
        else:
            log("gate: similarity")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", LeeWarning)  # skew is its own rule
                comparison = compare_versions(inc, cand, sim_kind, k=rules.similarity.k,
                                              drift_sample=rules.similarity.drift_sample, mmd_permutations=200,
                                              classifier_permutations=100, progress=progress)
            s = comparison.summary()
            served_aligned = rules.compat.enabled and rules.compat.swap == "aligned"
            outcomes.append(_similarity_outcome(s, same_basis(inc, cand), rules.similarity,
                                                served_aligned=served_aligned))
            details["similarity"] = s

    # --- collapse
    if rules.collapse.enabled:
        if broken:
            outcomes.append(_Outcome("collapse", "–", rules.collapse.min_rank_ratio, False, rules.collapse.action,
                                     skipped))
        else:
            log("gate: collapse")
            ratios = {}
            for k in usage_kinds:
                rc, ri = collapse_of_table(cand, k), collapse_of_table(inc, k)
                ratios[k.value] = rc.effective_rank / ri.effective_rank if ri.effective_rank > 0 else float("nan")
            worst = min(ratios, key=lambda t: ratios[t])
            fired = bool(ratios[worst] < rules.collapse.min_rank_ratio)
            outcomes.append(_Outcome("collapse", ratios[worst], rules.collapse.min_rank_ratio, fired,
                                     rules.collapse.action,
                                     f"effective rank of {worst} is {ratios[worst]:.2f}× the incumbent's"))
            details["collapse"] = {"effective_rank_ratio": ratios}

    # --- LEE and backward compatibility: the downstream stream
    stream = None
    if (rules.lee.enabled or rules.compat.enabled) and not broken:
        stream = _stream_of(data)
    r = rules.lee
    if r.enabled:
        if broken or stream is None:
            outcomes.append(_Outcome("lee", "–", -r.max_loss, False, r.action, skipped))
        else:
            log("gate: LEE candidate vs incumbent")
            cfg = EvalConfig(usage=r.usage, fusion=r.fusion, seeds=r.seeds, windows=r.windows, n_boot=r.n_boot,
                             level=r.level, proxy=ProxyConfig())
            res = lee_versus(stream, cand, inc, cfg, device=device)
            row = res.row()
            assert res.delta is not None
            d = res.delta
            reasons = []
            if d.high < -r.max_loss:
                reasons.append(f"ΔAUC {d.delta:+.4f} [{d.low:+.4f}, {d.high:+.4f}] vs the incumbent: worse")
            if row["coverage_events"] < r.min_coverage:
                reasons.append(f"only {row['coverage_events']:.0%} of downstream events have a candidate vector "
                               f"(< {r.min_coverage:.0%})")
            if r.require_better and not d.low > 0:
                reasons.append(f"ΔAUC {d.delta:+.4f} [{d.low:+.4f}, {d.high:+.4f}] is not significantly better")
            coverage = (f"coverage {row['coverage_events']:.0%} of downstream events, {row['coverage_ids']:.0%} of "
                        f"ids; {len(r.seeds)} proxy seed(s)")
            outcomes.append(_Outcome("lee", d.delta, -r.max_loss, bool(reasons), r.action,
                                     ("; ".join(reasons) if reasons else
                                      f"ΔAUC {d.delta:+.4f} [{d.low:+.4f}, {d.high:+.4f}] vs the incumbent")
                                     + f" ({coverage})"))
            details["lee"] = {"delta_auc": d.delta, "ci_low": d.low, "ci_high": d.high, "level": d.level,
                              "verdict": d.verdict, "auc_candidate": row["auc"],
                              "auc_incumbent": float(np.mean([x.auc for x in res.runs])) - d.delta,
                              "coverage_events": row["coverage_events"], "coverage_ids": row["coverage_ids"],
                              "seeds": list(r.seeds), "usage": str(r.usage), "fusion": str(r.fusion)}
    c = rules.compat
    if c.enabled:
        if broken or stream is None:
            outcomes.append(_Outcome("compat", "–", -c.max_loss, False, c.action, skipped))
        else:
            log("gate: backward compatibility")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", LeeWarning)
                compat = backward_compatibility(stream, inc, cand, usage=r.usage, fusion=r.fusion, seeds=r.seeds,
                                                windows=r.windows, test_windows=c.test_windows, n_boot=r.n_boot,
                                                level=r.level, device=device, progress=progress)
            if c.reference == "retrained":
                delta, low, high = ((compat.delta_raw, compat.raw_low, compat.raw_high) if c.swap == "raw" else
                                    (compat.delta_aligned, compat.aligned_low, compat.aligned_high))
            else:
                nan3 = [float("nan")] * 3
                delta, low, high = compat.vs_keep.get(c.swap, nan3)
            fired = bool(np.isfinite(high) and high < -c.max_loss) or not np.isfinite(delta)
            what = "swapped in as is" if c.swap == "raw" else "swapped in after Procrustes alignment"
            against = "keeping the incumbent" if c.reference == "keep" else "retraining on the candidate"
            outcomes.append(_Outcome("compat", delta, -c.max_loss, fired, c.action,
                                     f"candidate {what} into consumers trained on the incumbent: ΔAUC {delta:+.4f} "
                                     f"[{low:+.4f}, {high:+.4f}] against {against}"
                                     + (" — consumers must be retrained first" if fired else "")))
            # the comparison the rule judged leads the details, so that a verdict against the other
            # reference (e.g. 'incompatible against retraining' while the rule, against keeping, passes)
            # is not read as contradicting the rule's outcome
            details["compat"] = {"rule": {"judged": f"the {c.swap} swap against {against}",
                                          "reference": c.reference, "swap": c.swap, "delta_auc": delta,
                                          "ci": [low, high], "threshold": -c.max_loss,
                                          "outcome": _compat_outcome(fired, c.action, high, -c.max_loss)},
                                 **compat.summary()}

    decision = decide(outcomes)
    now = datetime.now(UTC)
    rollback = None
    if decision == Decision.ROLL_BACK:  # the latest healthy snapshot of the variant, else the incumbent
        same_variant = target is not None and cand.variant == inc.variant and target != cand.event_time
        rollback = f"{cand.variant}@{time_dirname(target)}" if same_variant and target else version_label(inc)
    result = GateDecision(
        decision_id=uuid.uuid4().hex[:16], decided_at=now.isoformat(timespec="seconds"),
        candidate=version_label(cand), incumbent=version_label(inc), decision=decision,
        rules=pd.DataFrame([o.row() for o in outcomes], columns=["rule", "measured", "threshold", "fired", "action",
                                                                 "reason"]),
        details=plain(details), config=rules,
        rollback_target=rollback,
        comparison=comparison, compat=compat)
    if db is not None:
        record(result, db)
    return result


def _compat_outcome(fired: bool, action: str, high: float, threshold: float) -> str:
    """The compat rule's outcome in words, with the bound it was judged by (the details' ``rule.outcome``)."""
    if fired and not (np.isfinite(high) and high < threshold):
        return f"fired ({action}): no finite measure"
    if not np.isfinite(high):
        return "passed: no interval to judge"
    side = "is below" if fired else "is not below"
    return f"{f'fired ({action})' if fired else 'passed'}: the interval's upper end {high:+.4f} {side} {threshold:+.4f}"


def record(decision: GateDecision, db: str | Path) -> None:
    """Write the decision into the results store's ``gate_decisions`` table."""
    ResultsStore(db).add_gate_decision(
        decision_id=decision.decision_id, decided_at=decision.decided_at, candidate=decision.candidate,
        candidate_variant=decision.candidate.rpartition("@")[0], incumbent=decision.incumbent,
        decision=str(decision.decision), reasons=decision.reasons,
        detail={"rules": decision.rules.to_dict(orient="records"), "rollback_target": decision.rollback_target,
                "details": decision.details, "config": decision.config.model_dump(mode="json")})


def recorded_decisions(db: str | Path, *, latest_per_variant: bool = True) -> list[GateDecision]:
    """The gate decisions recorded in a results store, newest first (the newest per candidate variant
    by default), rebuilt with every rule's measure, threshold and outcome, for the report. The rules'
    configuration is the recorded one; decisions recorded before it was stored carry the defaults."""
    if not Path(db).is_file() or Path(db).stat().st_size == 0:
        return []
    frame = ResultsStore(db, readonly=True).gate_decisions(latest_per_variant=latest_per_variant)
    out = []
    for row in frame.itertuples():
        detail = row.detail if isinstance(row.detail, dict) else {}
        rules = pd.DataFrame(detail.get("rules", []), columns=["rule", "measured", "threshold", "fired", "action",
                                                                "reason"])
        rules["fired"] = rules["fired"].astype(bool)
        try:  # the recorded rules; a record without them (or from an older layout) carries the defaults
            config = GateRules.model_validate(detail.get("config") or {})
        except ValueError:
            config = GateRules()
        out.append(GateDecision(decision_id=row.decision_id, decided_at=row.decided_at, candidate=row.candidate,
                                incumbent=row.incumbent, decision=Decision(row.decision), rules=rules,
                                details=detail.get("details", {}),
                                config=config,
                                rollback_target=detail.get("rollback_target")))
    return out


def decision_table(db: str | Path, *, latest_per_variant: bool = False) -> pd.DataFrame:
    """The gate decisions recorded in a results store, newest first, one row each (variant, decision,
    candidate, incumbent, decided_at, reasons joined into one sentence, decision_id); empty when none or
    no store. ``latest_per_variant`` keeps the newest per candidate variant. What ``lee results ls`` lists
    when a store holds decisions but no LEE runs."""
    cols = ["candidate_variant", "decision", "candidate", "incumbent", "decided_at", "reasons", "decision_id"]
    named = {"candidate_variant": "variant"}
    if not Path(db).is_file() or Path(db).stat().st_size == 0:
        return pd.DataFrame(columns=cols).rename(columns=named)
    frame = ResultsStore(db, readonly=True).gate_decisions(latest_per_variant=latest_per_variant)  # never alters it
    if frame.empty:
        return pd.DataFrame(columns=cols).rename(columns=named)
    frame["reasons"] = ["; ".join(r) if r else "every rule passed" for r in frame["reasons"]]
    return frame[cols].rename(columns=named).reset_index(drop=True)


def latest_decisions(db: str | Path) -> pd.DataFrame:
    """The newest gate decision per candidate variant in a results store (empty when none or no store)."""
    return decision_table(db, latest_per_variant=True).drop(columns="decision_id")

