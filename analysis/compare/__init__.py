"""Compare two versions of a representation: rotation-invariant similarity, neighbour churn, drift.

:func:`compare_versions` answers "how different is version B of this table from version A?" when
same-id cosine cannot (a retrain, a new model, a new dimension):

* paired, on the ids both hold (:mod:`analysis.compare.paired`, :mod:`analysis.compare.neighbours`):
  raw and Procrustes-aligned cosine per id, linear CKA, kNN overlap@k per id, cluster stability
  (ARI with its random-partition baseline), and which segments' neighbourhoods changed most;
* unpaired, on samples of all ids of each (:mod:`analysis.drift`): MMD and a domain classifier's
  AUC, each with its p-value and sample sizes.

The result states how each figure was computed (sample sizes, exact or approximate search and its
recall, the alignment, the space the drift tests ran in) and any version-skew warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from analysis.compare.budget import compare_budget, sample_bytes
from analysis.compare.neighbours import EXACT_MAX, churn_by_attribute, cluster_stability, knn_overlap
from analysis.compare.paired import FIT_SAMPLE, gather_rows, join_ids, paired_similarity, sample_positions
from analysis.compare.partitioned import paired_similarity_partitioned
from analysis.drift import SAMPLE, classifier_test, mmd_test, stratified_sample
from lee.engine import Engine
from lee.errors import InputError, LeeError, SnapshotNotFoundError
from lee.results import SavedResult, register
from lee.snapshot import Snapshot, SnapshotStore, TableKind, open_any
from lee.snapshot.reader import DEFAULT_MEMORY_MB
from lee.timeutil import parse_event_time, time_dirname
from lee.versions import checkpoint_of, same_basis, warn_skew

KNN_MAX = 1_000_000
"""The neighbour population: every shared id up to this many, else a seeded uniform sample of this size."""
CLUSTER_MAX = 200_000
"""K-means for cluster stability runs on at most this many ids of the neighbour population (seeded sample)."""

__all__ = ["VersionComparison", "compare_versions", "open_version", "parse_version", "version_label"]


def version_label(snapshot: Snapshot) -> str:
    return f"{snapshot.variant}@{time_dirname(snapshot.event_time)}"


def parse_version(text: str) -> tuple[str, str | None]:
    """``VARIANT[@TIME]`` as ``(variant, time or None)``. Variant names may hold '@': the text after the
    last '@' is a time only when it reads as one (ISO 8601, the directory form or epoch seconds)."""
    if "@" in text:
        variant, _, when = text.rpartition("@")
        try:
            parse_event_time(when)
        except LeeError:
            return text, None
        if variant:
            return variant, when
    return text, None


def open_version(spec: str, root: str | Path | None) -> Snapshot:
    """A snapshot named ``VARIANT[@TIME]`` under ``root`` (the latest when no time is given), or a
    snapshot directory when ``root`` is None."""
    if root is None:
        return open_any(spec)
    store = SnapshotStore(root)
    variant, when = parse_version(spec)
    if when is None and "@" in spec and variant == spec and spec not in store.variants():
        raise SnapshotNotFoundError(
            f"no variant {spec!r}, and {spec.rpartition('@')[2]!r} after its last '@' is not an event time "
            "(write VARIANT@2026-01-01T00:05:00Z or VARIANT@20260101T000500Z)", path=store.root)
    return store.latest(variant) if when is None else store.open(variant, when)


def _mean_ci(x: np.ndarray) -> tuple[float, float, float]:
    """Mean and its normal 95% interval over ids (NaN for an empty array)."""
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    x = x.astype(np.float64)
    m = float(x.mean())
    half = 1.96 * float(x.std(ddof=1)) / np.sqrt(x.size) if x.size > 1 else float("nan")
    return m, m - half, m + half


@register("version-comparison")
@dataclass
class VersionComparison(SavedResult):
    """Version ``a`` (earlier, incumbent) against version ``b`` (later, candidate) of one table.

    Per-id arrays follow ``ids`` (the shared ids, in ``b``'s row order); ``knn_rows`` picks the
    neighbour population out of them (all of them up to :data:`KNN_MAX`).
    """

    a: str
    b: str
    kind: TableKind
    dim_a: int
    dim_b: int
    n_a: int
    n_b: int
    same_run: bool | None
    checkpoint_a: str | None
    checkpoint_b: str | None
    ids: np.ndarray
    raw_cosine: np.ndarray
    aligned_cosine: np.ndarray
    cka: float
    cka_low: float
    cka_high: float
    alignment: str
    alignment_fit_rows: int
    alignment_fit_cosine: float
    k: int
    knn_rows: np.ndarray
    knn_overlap: np.ndarray
    knn_method: str
    knn_recall_a: float
    knn_recall_b: float
    cluster: dict[str, float]
    drift: pd.DataFrame
    drift_space: str
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def n_shared(self) -> int:
        return int(self.ids.size)

    def _drift(self, test: str, column: str) -> float:
        rows = self.drift.loc[self.drift["test"] == test, column] if len(self.drift) else pd.Series(dtype=float)
        return float(rows.iloc[0]) if len(rows) else float("nan")

    def summary(self) -> dict[str, Any]:
        raw = _mean_ci(self.raw_cosine)
        al = _mean_ci(self.aligned_cosine)
        kn = _mean_ci(self.knn_overlap)
        c = self.cluster
        return {
            "a": self.a, "b": self.b, "table": self.kind.value, "dim_a": self.dim_a, "dim_b": self.dim_b,
            "shared_ids": self.n_shared, "only_a": self.n_a - self.n_shared, "only_b": self.n_b - self.n_shared,
            "same_model_run": self.same_run, "checkpoint_a": self.checkpoint_a, "checkpoint_b": self.checkpoint_b,
            "raw_cosine_mean": raw[0], "raw_cosine_ci": [raw[1], raw[2]],
            "aligned_cosine_mean": al[0], "aligned_cosine_ci": [al[1], al[2]],
            "aligned_cosine_p05": float(np.quantile(self.aligned_cosine, 0.05)) if self.n_shared else float("nan"),
            "alignment": self.alignment, "alignment_fit_rows": self.alignment_fit_rows,
            "cka": self.cka, "cka_ci": [self.cka_low, self.cka_high],
            "knn_overlap": kn[0], "knn_overlap_ci": [kn[1], kn[2]], "k": self.k, "knn_ids": int(self.knn_rows.size),
            "knn_method": self.knn_method, "knn_recall": [self.knn_recall_a, self.knn_recall_b],
            "cluster_ari": c.get("ari", float("nan")), "cluster_k": c.get("k", float("nan")),
            "cluster_ari_baseline": c.get("baseline_mean", float("nan")),
            "cluster_ari_baseline_range": [c.get("baseline_low", float("nan")), c.get("baseline_high", float("nan"))],
            "cluster_ari_p": c.get("p_value", float("nan")), "cluster_rows": c.get("rows", 0),
            "mmd": self._drift("mmd", "statistic"), "mmd_p": self._drift("mmd", "p_value"),
            "classifier_auc": self._drift("classifier", "statistic"),
            "classifier_p": self._drift("classifier", "p_value"),
            "drift_sample_a": int(self._drift("mmd", "n_a")) if len(self.drift) else 0,
            "drift_sample_b": int(self._drift("mmd", "n_b")) if len(self.drift) else 0,
            "drift_space": self.drift_space, "warnings": self.warnings, "notes": self.notes,
        }

    def measures(self) -> pd.DataFrame:
        """One row per figure: value, interval (or baseline range) and p-value where there is one."""
        s = self.summary()
        rows = [
            ("raw cosine (mean over shared ids)", s["raw_cosine_mean"], *s["raw_cosine_ci"], np.nan),
            ("aligned cosine (mean over shared ids)", s["aligned_cosine_mean"], *s["aligned_cosine_ci"], np.nan),
            ("linear CKA", s["cka"], *s["cka_ci"], np.nan),
            (f"kNN overlap@{self.k} (mean)", s["knn_overlap"], *s["knn_overlap_ci"], np.nan),
            (f"cluster ARI (k={s['cluster_k']}; low/high: random-partition 95% range)", s["cluster_ari"],
             *s["cluster_ari_baseline_range"], s["cluster_ari_p"]),
            ("MMD² (unbiased)", s["mmd"], np.nan, np.nan, s["mmd_p"]),
            ("domain classifier AUC", s["classifier_auc"], np.nan, np.nan, s["classifier_p"]),
        ]
        return pd.DataFrame(rows, columns=["measure", "value", "low", "high", "p_value"])

    def histogram(self, values: np.ndarray, bins: int = 40, lo: float = -1.0) -> pd.DataFrame:
        counts, edges = np.histogram(np.clip(values, lo, 1.0), bins=bins, range=(lo, 1.0))
        return pd.DataFrame({"left": edges[:-1], "right": edges[1:], "count": counts,
                             "share": counts / max(values.size, 1)})

    def tables(self) -> dict[str, pd.DataFrame]:
        out = {"measures": self.measures(), "aligned_cosine_histogram": self.histogram(self.aligned_cosine),
               "knn_overlap_histogram": self.histogram(self.knn_overlap, bins=self.k + 1, lo=0.0),
               "drift": self.drift}
        if self.raw_cosine.size:
            out["raw_cosine_histogram"] = self.histogram(self.raw_cosine)
        return out

    def per_id(self) -> pd.DataFrame:
        """One row per shared id: raw and aligned cosine, and kNN overlap (NaN outside the neighbour population)."""
        overlap = np.full(self.n_shared, np.nan)
        overlap[self.knn_rows] = self.knn_overlap
        frame = pd.DataFrame({"id": self.ids, "aligned_cosine": self.aligned_cosine, "knn_overlap": overlap})
        if self.raw_cosine.size:
            frame.insert(1, "raw_cosine", self.raw_cosine)
        return frame

    def by_attribute(self, attributes: pd.DataFrame, column: str, *, id_column: str | None = None,
                     share: float = 0.1, bins: int | Sequence[float] | None = None) -> pd.DataFrame:
        """Which segments' neighbourhoods changed most (see :func:`analysis.compare.neighbours.churn_by_attribute`)."""
        return churn_by_attribute(self.ids[self.knn_rows], self.knn_overlap, self.aligned_cosine[self.knn_rows],
                                  attributes, column, id_column=id_column or f"{self.kind.entity}_id", share=share,
                                  bins=bins)


def compare_versions(a: Snapshot, b: Snapshot, kind: TableKind | str = TableKind.UR, *, k: int = 10,
                     clusters: int = 8, fit_sample: int = FIT_SAMPLE, knn_max: int = KNN_MAX,
                     exact_max: int = EXACT_MAX, drift_sample: int = SAMPLE, strata: pd.Series | None = None,
                     mmd_permutations: int = 500, classifier_permutations: int = 200, drift_space: str = "auto",
                     seed: int = 0, verify: bool = True, progress: bool = False,
                     memory_mb: float = DEFAULT_MEMORY_MB, engine: Engine | None = None) -> VersionComparison:
    """Every paired and unpaired measure of version ``b`` against version ``a`` of table ``kind``.

    ``drift_space``: ``raw`` runs the drift tests on the vectors as they are; ``aligned`` maps ``b``'s
    sample through the Procrustes alignment first; ``auto`` aligns when the dims differ or the
    manifests say the versions come from different training runs (their bases differ, so raw drift
    would only find the rotation). ``strata`` (a Series indexed by id) stratifies the drift samples.

    ``memory_mb`` bounds the whole comparison (out of core, :mod:`analysis.compare.budget`): the ids and
    per-id results, the largest of the stated samples' working sets (alignment fit, neighbour population,
    cluster sample, drift samples) and the paired pass's batches and blocks sized from what is left.
    A bound too small for even 1,024-row batches is refused before any vector is read, naming the least.

    ``engine`` (default None: this process) runs the paired pass — the join by id and every per-id and
    summed statistic over all shared ids — as tasks over id-hash partitions of both tables
    (:func:`analysis.compare.partitioned.paired_similarity_partitioned`); the samples (alignment fit,
    neighbours, clusters, drift) are drawn and used in this process as without one, so the result is the
    same (per-id cosines identical, CKA to rounding). ``memory_mb`` then bounds this process's share.
    """
    kind = TableKind.parse(kind)
    if drift_space not in ("auto", "raw", "aligned"):
        raise InputError(f"drift_space must be auto, raw or aligned; got {drift_space!r}")
    for name, value, least in (("k", k, 1), ("clusters", clusters, 2), ("knn_max", knn_max, 2),
                               ("drift_sample", drift_sample, 5)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise InputError(f"{name} must be an integer of at least {least}; got {value!r}")
    ia, ib = a.info(kind), b.info(kind)
    label_a, label_b = version_label(a), version_label(b)
    notes: list[str] = []
    warned = warn_skew([(a, t) for t in a.kinds], what=f"version {label_a}")
    warned += warn_skew([(b, t) for t in b.kinds], what=f"version {label_b}")
    same = same_basis(a, b)
    if same is False:
        notes.append("the versions come from different training runs: their bases differ, so raw same-id cosine "
                     "says little; read the aligned cosine, CKA and kNN overlap")
    # the up-front refusal: the samples' sizes are known from the manifests and the arguments
    n_a, n_b = ia.rows, ib.rows
    held = sample_bytes(n_shared=min(n_a, n_b), n_a=n_a, n_b=n_b, d_a=ia.dim, d_b=ib.dim, fit_sample=fit_sample,
                        knn_max=knn_max, cluster_max=CLUSTER_MAX, k=k, clusters=clusters, drift_sample=drift_sample)
    batch_rows, _ = compare_budget(a, b, kind, memory_mb, held_bytes=held)
    steps = tqdm(total=4, desc=f"compare {label_a} vs {label_b}", disable=not progress, leave=False)
    ids_a, ids_b, pos = join_ids(a, b, kind)
    n_shared = int((pos >= 0).sum())
    nan = float("nan")
    empty = np.zeros(0, np.float32)
    if n_shared >= 2:
        if engine is None:
            paired = paired_similarity(a, b, kind, fit_sample=fit_sample, seed=seed, verify=verify,
                                       progress=progress, memory_mb=memory_mb, held_bytes=held,
                                       joined=(ids_a, ids_b, pos))
        else:
            paired = paired_similarity_partitioned(a, b, kind, engine=engine, fit_sample=fit_sample, seed=seed,
                                                   verify=verify, joined=(ids_a, ids_b, pos))
        al = paired.alignment
        steps.update(1)
        pop = sample_positions(paired.n_shared, knn_max, seed)
        if pop.size < paired.n_shared:
            notes.append(f"neighbours and clusters on a seeded sample of {pop.size:,} of {paired.n_shared:,} "
                         "shared ids")
        xa = gather_rows(a, kind, paired.pos_a[pop], batch_rows=batch_rows)
        xb = gather_rows(b, kind, paired.pos_b[pop], batch_rows=batch_rows)
        if pop.size > k:
            nb = knn_overlap(xa, xb, k=k, exact_max=exact_max, seed=seed, progress=progress)
            overlap, knn_method, recall = nb.overlap, nb.method, (nb.recall_a, nb.recall_b)
        else:
            overlap, knn_method, recall = empty, f"not computed: {pop.size} shared ids, k={k}", (nan, nan)
        steps.update(1)
        csub = sample_positions(pop.size, CLUSTER_MAX, seed + 1)
        if csub.size > clusters:
            cs = cluster_stability(xa[csub], xb[csub], k=clusters, seed=seed)
            cluster = {"k": cs.k, "ari": cs.ari, "baseline_mean": cs.baseline_mean, "baseline_low": cs.baseline_low,
                       "baseline_high": cs.baseline_high, "p_value": cs.p_value, "rows": cs.rows}
        else:
            cluster = {}
        steps.update(1)
        raw = paired.raw_cosine if paired.raw_cosine is not None else empty
        if paired.raw_cosine is None:
            notes.append(f"dims differ ({ia.dim} vs {ib.dim}): raw same-id cosine is undefined")
        shared_ids, aligned, cka = paired.ids, paired.aligned_cosine, (paired.cka, paired.cka_low, paired.cka_high)
        alignment = (f"{al.method}; fitted on a seeded sample of {al.fit_rows:,} shared ids "
                     "(unit-normalised rows), applied to all")
        fit = (al.fit_rows, al.fit_cosine)
        knn_rows = pop if overlap.size else np.zeros(0, np.int64)
        w = al.matrix
        del xa, xb
    else:
        notes.append(f"{n_shared} shared id(s): paired measures need at least 2; only the unpaired drift tests ran")
        shared_ids, raw, aligned, cka = ids_b[:0], empty, empty, (nan, nan, nan)
        alignment, fit, knn_method, recall, overlap, cluster = "none (no shared ids)", (0, nan), "not computed", \
            (nan, nan), empty, {}
        knn_rows = np.zeros(0, np.int64)
        w = None
        steps.update(3)
    space = drift_space
    if space == "auto":
        space = "aligned" if (ia.dim != ib.dim or same is False) and w is not None else "raw"
    drift = pd.DataFrame(columns=["test", "statistic", "p_value", "n_a", "n_b", "null_draws", "method"])
    if space == "aligned" and w is None:
        notes.append("drift tests not run: aligning needs shared ids")
    elif space == "raw" and ia.dim != ib.dim:
        notes.append(f"drift tests not run in the raw space: dims differ ({ia.dim} vs {ib.dim})")
    else:
        sa = stratified_sample(ids_a, drift_sample, strata=strata, seed=seed)
        sb = stratified_sample(ids_b, drift_sample, strata=strata, seed=seed + 1)
        va = gather_rows(a, kind, sa, batch_rows=batch_rows).astype(np.float64)
        vb = gather_rows(b, kind, sb, batch_rows=batch_rows).astype(np.float64)
        if space == "aligned":
            assert w is not None
            vb = vb @ w
        tests = [mmd_test(va, vb, permutations=mmd_permutations, seed=seed),
                 classifier_test(va, vb, permutations=classifier_permutations, seed=seed)]
        drift = pd.DataFrame([t.row() for t in tests])
        how = "stratified by the given attribute (proportional allocation)" if strata is not None else "uniform"
        notes.append(f"drift tests on seeded samples of {sa.size:,} ids of a and {sb.size:,} ids of b ({how}), "
                     f"in the {space} space")
    steps.update(1)
    steps.close()
    return VersionComparison(
        a=label_a, b=label_b, kind=kind, dim_a=ia.dim, dim_b=ib.dim, n_a=int(ids_a.size), n_b=int(ids_b.size),
        same_run=same, checkpoint_a=checkpoint_of(a, kind), checkpoint_b=checkpoint_of(b, kind), ids=shared_ids,
        raw_cosine=raw, aligned_cosine=aligned, cka=cka[0], cka_low=cka[1], cka_high=cka[2], alignment=alignment,
        alignment_fit_rows=int(fit[0]), alignment_fit_cosine=float(fit[1]), k=int(k), knn_rows=knn_rows,
        knn_overlap=np.asarray(overlap, dtype=np.float64), knn_method=knn_method, knn_recall_a=float(recall[0]),
        knn_recall_b=float(recall[1]), cluster=cluster, drift=drift, drift_space=space, warnings=warned, notes=notes)
