"""A case study on real logs: the Open Bandit Dataset through the workbench's generic path.

The log is a dataset as ``lee data import --format obd`` writes it (:func:`run_obd_case` runs that
import; :func:`obd_dataset` builds the same tables in memory from a :func:`lee.world.obd.read_obd`
log): both behaviour policies of one campaign, ``user_key`` as the user id, the declared fields
(position, arm, hour; four user and four item features) encoded by the generic downstream stream
(:func:`lee.evaluator.data.stream_from_dataset`) and importance groups from their declared roles.
OBD has no upstream/downstream split and no representation to inject (every event is downstream),
so there is no upstream model here: 80 clicks could not train one.

Three questions, each answered with its uncertainty:

1. **How well does the light proxy CTR model rank clicks?** The baseline proxy (fields only, no
   injected representation) is trained by streaming test-then-train (:func:`run_stream`) once per
   seed. AUC is over every test event (windows 1..n-1, each scored before it was trained on).
   Interval: a cluster bootstrap of the test events by ``user_key`` (Poisson(1) weight per key,
   the same weights for every seed; each replicate is the seed-mean AUC) combined with the seed
   spread exactly as :func:`lee.evaluator.stats.paired_delta_ci` combines them — AUC ± t·sqrt(V_data
   + V_seed) with Welch–Satterthwaite degrees of freedom, or the bootstrap percentile interval
   with one seed. ``user_key`` lumps together users who share the four hashed features, so the
   clusters are unions of real users: conservative, never too narrow on that account.
2. **Which inputs does it rely on?** Feature-masking importance
   (:func:`analysis.importance.masking_importance`; every field, and the groups user side / item
   side / context from the declared roles) of each seed's final model on the last window —
   events that model scored but never trained on. When that window holds fewer than
   ``importance_min_clicks`` clicks, earlier windows are added (and the summary says that the
   model trained on them). Per target: the mean drop over seeds, each seed's drop, and the union
   of the per-seed intervals (conservative).
3. **Does the Bernoulli-Thompson-sampling policy get more clicks per impression than the random
   one?** :func:`analysis.segments.segment_lift` on one row per impression (``bts`` is the
   treatment, ``random`` the control), overall and per position: relative CTR lift, a bootstrap
   interval and a Welch p-value. That bootstrap treats impressions as independent; a second
   interval resamples ``user_key`` clusters (both arms together) as a check. The two policies
   show different mixes of items, so this compares *policies* (what they chose to show), not items.

Honest scale: the small OBD release has ~0.4% CTR, so 20,000 impressions hold ~80 clicks; the
intervals are wide, and the report says how many clicks every number rests on.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from analysis.importance import default_groups, mask_targets, masking_importance
from analysis.segments import SegmentLift, segment_lift
from lee.data.dataset import Dataset, check_dataset, complete_spec
from lee.data.importers import ImportOptions, import_dataset
from lee.data.importers.obd import ObdImporter
from lee.errors import InputError, SmallSampleWarning
from lee.evaluator.data import DownstreamStream, stream_from_dataset
from lee.evaluator.models import ProxyConfig
from lee.evaluator.stats import RankedScores
from lee.evaluator.stream import StreamRun, run_stream
from lee.results import SavedResult, register
from lee.world.obd import POLICIES, _validate_log

# the events columns `lee data import --format obd` keeps (lee.data.importers.obd.ObdImporter.events)
EVENT_COLUMNS = ("ts", "user_key", "item_id", "click", "position", "arm", "campaign", "propensity_score")
CONTROL, TREATMENT = POLICIES          # random -> control, bts -> treatment
AUC_METHOD = ("user_key-cluster bootstrap of the test events (Poisson(1) weight per key, shared by all seeds) "
              "combined with the seed spread: mean ± t·sqrt(V_boot + var(seed AUCs)/S), Welch–Satterthwaite df; "
              "one seed: bootstrap percentile interval")
IMPORTANCE_INTERVAL = "union of the per-seed intervals (each: user_key bootstrap and permutation repeats)"
ARM_NOTE = ("the two behaviour policies choose different items (bts concentrates on a few, random spreads "
            "uniformly), so the lift compares policies, not items")


@register("obd-case-study")
@dataclass
class ObdCaseStudy(SavedResult):
    """Proxy AUC with its interval, feature-masking importance and the bts-vs-random CTR lift."""

    seeds: tuple[int, ...]
    n_windows: int
    level: float
    n_boot: int
    auc_seeds: pd.DataFrame            # seed, auc, gauc, logloss, seconds
    auc: float
    auc_ci: tuple[float, float]
    test_events: int
    test_clicks: int
    windows: pd.DataFrame              # one row per test window
    importance: pd.DataFrame           # one row per mask target
    importance_events: tuple[int, int]
    importance_clicks: int
    importance_note: str
    arms: pd.DataFrame                 # one row per arm: impressions, clicks, CTR, item concentration
    lift: SegmentLift
    lift_ci_user_key: tuple[float, float]
    item_distribution_tv: float        # total-variation distance between the arms' item mixes
    mask_mode: str
    n_repeats: int
    fields: tuple[str, ...] = ()        # the proxy's fields (generic stream of the dataset)
    groups: dict[str, list[str]] = field(default_factory=dict)   # importance groups from the declared roles
    runs: list[StreamRun] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        overall = self.lift.row("all")
        top = self.importance.sort_values("drop", ascending=False)
        return {
            "rows": int(self.arms["impressions"].sum()), "clicks": int(self.arms["clicks"].sum()),
            "seeds": list(self.seeds), "n_windows": self.n_windows, "level": self.level, "n_boot": self.n_boot,
            "fields": list(self.fields), "groups": self.groups,
            "auc": {
                "mean": self.auc, "ci_low": self.auc_ci[0], "ci_high": self.auc_ci[1],
                "per_seed": [float(a) for a in self.auc_seeds["auc"]],
                "test_events": self.test_events, "test_clicks": self.test_clicks, "method": AUC_METHOD,
                "windows_without_clicks": int((self.windows["clicks"] == 0).sum()),
                "interval_excludes_chance": bool(self.auc_ci[0] > 0.5 or self.auc_ci[1] < 0.5),
            },
            "importance": {
                "mode": self.mask_mode, "n_repeats": self.n_repeats, "events": list(self.importance_events),
                "clicks": self.importance_clicks, "note": self.importance_note,
                "top": top["target"].head(3).tolist(),
                "top_features": top.loc[top["kind"] == "feature", "target"].head(3).tolist(),
                "significant": top.loc[top["significant"], "target"].tolist(),
                "interval": IMPORTANCE_INTERVAL,
            },
            "arms": {
                "ctr": {r.arm: float(r.ctr) for r in self.arms.itertuples()},
                "clicks": {r.arm: int(r.clicks) for r in self.arms.itertuples()},
                "control": CONTROL, "treatment": TREATMENT,
                "lift": float(overall["lift"]),
                "ci_low": float(overall["ci_low"]), "ci_high": float(overall["ci_high"]),
                "p_value": float(overall["p_value"]), "significant": bool(overall["significant"]),
                "ci_user_key_low": self.lift_ci_user_key[0], "ci_user_key_high": self.lift_ci_user_key[1],
                "item_distribution_tv": self.item_distribution_tv,
                "interval_method": self.lift.interval_method, "p_value_method": self.lift.p_value_method,
                "note": ARM_NOTE,
            },
        }

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"auc_seeds": self.auc_seeds, "windows": self.windows, "importance": self.importance,
                "arms": self.arms, "arm_lift": self.lift.table}

    def text(self) -> str:
        """A few plain lines for a terminal: every number with its interval and click count."""
        s = self.summary()
        a, imp, arm = s["auc"], s["importance"], s["arms"]
        pct = f"{self.level:.0%}"
        top = self.importance.sort_values("drop", ascending=False).head(3)
        lines = [
            f"OBD: {s['rows']:,} impressions, {s['clicks']} clicks; proxy seeds {list(self.seeds)}, "
            f"{self.n_windows} windows",
            f"proxy AUC {a['mean']:.3f} ({pct} interval {a['ci_low']:.3f}–{a['ci_high']:.3f}) on "
            f"{a['test_events']:,} test events with {a['test_clicks']} clicks; per seed "
            + ", ".join(f"{v:.3f}" for v in a["per_seed"])
            + ("" if a["interval_excludes_chance"] else " — the interval includes 0.5 (chance)"),
            f"importance ({imp['mode']}, events {imp['events'][0]}–{imp['events'][1]}, {imp['clicks']} clicks): "
            + "; ".join(f"{r.target} {r.drop:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]" for r in top.itertuples()),
            f"CTR {TREATMENT} {arm['ctr'][TREATMENT]:.4f} vs {CONTROL} {arm['ctr'][CONTROL]:.4f}: lift "
            f"{arm['lift']:+.1%} ({pct} interval {arm['ci_low']:+.1%} to {arm['ci_high']:+.1%}; by user_key "
            f"{arm['ci_user_key_low']:+.1%} to {arm['ci_user_key_high']:+.1%}), p = {arm['p_value']:.2f}",
            f"note: {ARM_NOTE} (item-mix total variation {self.item_distribution_tv:.2f})",
        ]
        if imp["note"]:
            lines.append(f"note: {imp['note']}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- AUC and its interval


def auc_interval(ranked: Sequence[RankedScores], clusters: np.ndarray, *, n_boot: int, level: float,
                 seed: int) -> tuple[float, float, float]:
    """Seed-mean AUC with an interval over the test sample (cluster bootstrap) and the seeds."""
    per_seed = np.array([r.auc() for r in ranked])
    point = float(per_seed.mean())
    codes, uniques = pd.factorize(clusters)
    for r in ranked:
        r.bind_clusters(codes)
    rng = np.random.default_rng(seed)
    boot = np.empty(n_boot)
    for k in range(n_boot):
        cw = rng.poisson(1.0, size=len(uniques)).astype(np.float64)
        boot[k] = np.mean([r.auc_clustered(cw) for r in ranked])
    alpha = (1.0 - level) / 2.0
    if len(ranked) == 1:
        lo, hi = np.nanquantile(boot, [alpha, 1.0 - alpha])
        return point, float(lo), float(hi)
    v_data = float(np.nanvar(boot, ddof=1))
    v_seed = float(per_seed.var(ddof=1) / per_seed.size)
    total = v_data + v_seed
    df = (per_seed.size - 1) * (total / v_seed) ** 2 if v_seed > 0 else np.inf
    half = float(student_t.ppf(1.0 - alpha, df) * np.sqrt(total)) if total > 0 else 0.0
    return point, point - half, point + half


def _window_table(stream: DownstreamStream, runs: list[StreamRun]) -> pd.DataFrame:
    y = stream.y.numpy()
    rows = []
    for w, (lo, hi) in enumerate(runs[0].window_edges[1:], start=1):
        row: dict[str, Any] = {"window": w, "lo": lo, "hi": hi, "events": hi - lo, "clicks": int(y[lo:hi].sum()),
                               "ctr": float(y[lo:hi].mean())}
        for r in runs:
            row[f"auc_seed_{r.seed}"] = r.window_auc[w - 1]
        vals = np.array([r.window_auc[w - 1] for r in runs], dtype=np.float64)
        row["auc_mean"] = float(np.nanmean(vals)) if np.isfinite(vals).any() else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- importance


def _importance_events(stream: DownstreamStream, edges: list[tuple[int, int]], min_clicks: int) -> tuple[int, int, str]:
    """The last window, widened backwards until it holds ``min_clicks`` clicks (and a non-click)."""
    y = stream.y.numpy()
    hi = edges[-1][1]
    for k in range(len(edges) - 1, 0, -1):     # never into window 0, which is training only
        lo = edges[k][0]
        clicks = int(y[lo:hi].sum())
        if clicks >= min_clicks and clicks < hi - lo:
            break
    used = len(edges) - k
    if clicks == 0 or clicks == hi - lo:
        raise InputError(f"the test windows hold {clicks} clicks in {hi - lo} events: masking importance "
                         "needs both clicks and non-clicks")
    note = "" if used == 1 else (
        f"the last window held too few clicks (< {min_clicks}); importance uses the last {used} windows, "
        f"{used - 1} of which the final model trained on")
    return lo, hi, note


def _combine_importance(results: list, seeds: Sequence[int]) -> pd.DataFrame:
    tables = [r.table.set_index("target") for r in results]
    first = tables[0]
    out = pd.DataFrame({"target": first.index, "kind": first["kind"].to_numpy()}).set_index("target", drop=False)
    drops = np.column_stack([t.loc[out.index, "drop"].to_numpy(np.float64) for t in tables])
    for j, s in enumerate(seeds):
        out[f"drop_seed_{s}"] = drops[:, j]
    out["drop"] = drops.mean(axis=1)
    out["ci_low"] = np.min([t.loc[out.index, "ci_low"].to_numpy(np.float64) for t in tables], axis=0)
    out["ci_high"] = np.max([t.loc[out.index, "ci_high"].to_numpy(np.float64) for t in tables], axis=0)
    out["seeds_positive"] = (drops > 0).sum(axis=1)
    out["significant"] = (out["ci_low"] > 0) | (out["ci_high"] < 0)
    out = out.sort_values("drop", ascending=False, ignore_index=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out


# ----------------------------------------------------------------------------- arms


def _arm_table(log: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    rows = []
    shares = {}
    for arm in POLICIES:
        part = log[log["arm"] == arm]
        share = part["item_id"].value_counts(normalize=True)
        shares[arm] = share
        rows.append({"arm": arm, "role": "control" if arm == CONTROL else "treatment",
                     "impressions": len(part), "clicks": int(part["click"].sum()),
                     "ctr": float(part["click"].mean()), "distinct_items": int(part["item_id"].nunique()),
                     "top_item": int(share.index[0]), "top_item_share": float(share.iloc[0]),
                     "top5_items_share": float(share.head(5).sum()),
                     "mean_propensity": float(part["propensity_score"].mean())})
    a, b = (shares[p] for p in POLICIES)
    tv = float(0.5 * a.sub(b, fill_value=0.0).abs().sum())
    return pd.DataFrame(rows), tv


def _lift_ci_by_key(log: pd.DataFrame, *, n_boot: int, level: float, seed: int) -> tuple[float, float]:
    """Percentile interval of CTR(bts)/CTR(random) - 1 resampling user_key clusters (Poisson(1) weight
    per key, applied to the key's impressions in both arms)."""
    codes, uniques = pd.factorize(log["user_key"])
    treated = (log["arm"] == TREATMENT).to_numpy()
    click = log["click"].to_numpy(np.float64)
    m = len(uniques)
    n_c, n_t = (np.bincount(codes[sel], minlength=m).astype(np.float64) for sel in (~treated, treated))
    k_c, k_t = (np.bincount(codes[sel], weights=click[sel], minlength=m) for sel in (~treated, treated))
    w = np.random.default_rng([seed, 2]).poisson(1.0, size=(n_boot, m)).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        reps = (w @ k_t / (w @ n_t)) / (w @ k_c / (w @ n_c)) - 1.0
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(reps, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


# ----------------------------------------------------------------------------- the study


def obd_dataset(log: pd.DataFrame) -> Dataset:
    """An OBD exposure log (:func:`lee.world.obd.read_obd`) as the dataset ``lee data import --format obd``
    writes: the importer's description, users and items tables, and its events columns, in memory."""
    _validate_log(log, "log")
    campaigns = sorted(pd.unique(log["campaign"].astype(str)))
    importer = ObdImporter(Path("read_obd log"), ImportOptions(campaign=campaigns[0]))
    importer.log = log
    tables = importer.result()
    ds = Dataset(spec=tables.spec, events=log[list(EVENT_COLUMNS)].reset_index(drop=True), users=tables.users,
                 items=tables.items)
    ds.spec = complete_spec(ds)
    check_dataset(ds, where="OBD log")
    return ds


def _check_arms(ds: Dataset) -> None:
    need = ["arm", "position", "propensity_score", ds.item_col, ds.user_col, ds.spec.roles.label]
    missing = [c for c in need if c not in ds.events.columns]
    if missing:
        raise InputError(f"{ds.path or 'dataset'}: events lack column(s) {', '.join(missing)}; an OBD dataset "
                         "(lee data import --format obd) has them")
    arms_present = set(ds.events["arm"].astype(str).unique())
    if arms_present != set(POLICIES):
        raise InputError(f"{ds.path or 'dataset'}: both arms ({', '.join(POLICIES)}) are needed; "
                         f"present: {', '.join(sorted(arms_present))}")


def run_obd_case(data: str | Path, out: str | Path | None = None, *, campaign: str = "all",
                 **kwargs: Any) -> ObdCaseStudy:
    """``lee data import --format obd DATA`` (into ``out/data``, or a temporary directory without ``out``),
    then :func:`obd_case_study` on the dataset; with ``out`` the result is saved to ``out/case-study``."""
    if out is None:
        with tempfile.TemporaryDirectory(prefix="lee-obd-") as tmp:
            import_dataset("obd", data, Path(tmp) / "data", ImportOptions(campaign=campaign))
            return obd_case_study(Dataset.open(Path(tmp) / "data"), **kwargs)
    out = Path(out)
    import_dataset("obd", data, out / "data", ImportOptions(campaign=campaign), overwrite=True)
    case = obd_case_study(Dataset.open(out / "data"), **kwargs)
    case.save(out / "case-study")
    return case


def obd_case_study(data: Dataset | pd.DataFrame, *, seeds: Sequence[int] = (0, 1, 2), n_windows: int = 5,
                   n_boot: int = 200, mask_mode: str = "permutation", n_repeats: int = 5, level: float = 0.95,
                   importance_min_clicks: int = 10, proxy: ProxyConfig | None = None,
                   progress: bool = False) -> ObdCaseStudy:
    """Run the three parts of the case study (see the module docstring) on an OBD dataset (or a
    :func:`lee.world.obd.read_obd` log, converted by :func:`obd_dataset`).

    ``seeds`` seed the proxy runs (and, with ``seeds[0]``, every bootstrap and permutation), so a
    call is reproducible. Expect a few seconds per seed on the 20,000-row fixture.
    """
    seeds = tuple(int(s) for s in seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise InputError(f"seeds: expected distinct integers, at least one; got {list(seeds)}")
    if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 10):
        raise InputError(f"n_boot: expected an integer of at least 10; got {n_boot!r}")
    if not 0.0 < level < 1.0:
        raise InputError(f"level: expected a number strictly between 0 and 1; got {level!r}")
    ds = data if isinstance(data, Dataset) else obd_dataset(data)
    _check_arms(ds)
    log = ds.events.loc[ds.part_mask("downstream")].reset_index(drop=True)
    if ds.user_col != "user_key":
        log = log.assign(user_key=log[ds.user_col])
    if ds.spec.roles.label != "click":
        log = log.assign(click=log[ds.spec.roles.label])
    stream = stream_from_dataset(ds)
    boot_seed = seeds[0]

    # 1. the proxy's AUC
    runs = [run_stream(stream, None, cfg=proxy, seed=s, n_windows=n_windows, keep_model=True, progress=progress,
                       desc=f"proxy seed {s}") for s in seeds]
    test_lo = runs[0].test_lo
    y_test = stream.y[test_lo:].numpy()
    test_clicks = int(y_test.sum())
    if test_clicks == 0 or test_clicks == y_test.size:
        raise InputError(f"the test windows hold {test_clicks} clicks in {y_test.size} events; AUC is undefined")
    ranked = [RankedScores(y_test, r.scores) for r in runs]
    auc, lo, hi = auc_interval(ranked, stream.user_row[test_lo:], n_boot=n_boot, level=level, seed=boot_seed)
    # "auc": over every test event pooled, the quantity the interval is about; "auc_windows": the proxy run's
    # own headline (per-window AUCs averaged)
    auc_seeds = pd.DataFrame({"seed": [r.seed for r in runs], "auc": [x.auc() for x in ranked],
                              "auc_windows": [r.auc for r in runs], "gauc": [r.gauc for r in runs],
                              "logloss": [r.logloss for r in runs], "seconds": [r.seconds for r in runs]})

    # 2. feature-masking importance of each seed's final model (every field; groups by declared role)
    ev_lo, ev_hi, note = _importance_events(stream, runs[0].window_edges, importance_min_clicks)
    groups = default_groups(stream)
    targets = mask_targets(stream, None, groups=groups)
    results = [masking_importance(r.model, stream, None, mode=mask_mode, targets=targets, events=(ev_lo, ev_hi),
                                  n_repeats=n_repeats, n_boot=n_boot, level=level, seed=boot_seed, progress=progress)
               for r in runs]
    importance = _combine_importance(results, seeds)

    # 3. bts vs random, one row per impression
    frame = pd.DataFrame({"arm": np.where(log["arm"].to_numpy() == TREATMENT, "treatment", "control"),
                          "user_id": np.arange(len(log)), "click": log["click"].to_numpy(np.float64),
                          "position": log["position"].to_numpy()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)   # impressions, not users: the counts are large
        lift = segment_lift(frame, by="position", metric="click", n_boot=n_boot, level=level, seed=boot_seed)
    arms, tv = _arm_table(log)
    key_ci = _lift_ci_by_key(log, n_boot=n_boot, level=level, seed=boot_seed)

    return ObdCaseStudy(
        seeds=seeds, n_windows=n_windows, level=level, n_boot=n_boot, auc_seeds=auc_seeds, auc=auc, auc_ci=(lo, hi),
        test_events=int(y_test.size), test_clicks=test_clicks, windows=_window_table(stream, runs),
        importance=importance, importance_events=(ev_lo, ev_hi),
        importance_clicks=int(stream.y[ev_lo:ev_hi].sum().item()), importance_note=note, arms=arms, lift=lift,
        lift_ci_user_key=key_ci, item_distribution_tv=tv, mask_mode=mask_mode, n_repeats=results[0].n_repeats,
        fields=tuple(stream.fields), groups={g: list(m) for g, m in groups.items()}, runs=runs,
    )
