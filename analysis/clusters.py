"""Clusters of a representation: K-means, readable top-behaviour labels and per-cluster CTR.

The question this analysis answers is "does the representation encode meaningful structure?":
cluster a snapshot table with K-means, name each cluster by the behaviour of its members (the
item category they click most), check the clustering against planted truth when there is one
(adjusted Rand index) and show which clusters click ads significantly more or less than average.

Everything runs on all rows (no subsampling for the fit) when the table fits the memory bound
(``memory_mb``); only the silhouette, which is quadratic in the number of points, is computed on a
seeded sample whose size is stated in the result. A table larger than the bound is clustered out
of core: K-means is fitted on a stated seeded sample of rows (``fit_sample``, picked in one
streamed pass), then every row is assigned to its nearest centroid chunk by chunk (a second pass,
the assignment a Lloyd pass computes) and the inertia summed over all rows; the result says so
(``fit_rows``).

CTR intervals
-------------
Events of one id are correlated (an active user who likes ads clicks many of them), so treating
exposures as independent Bernoulli trials gives intervals that are far too narrow. A cluster's CTR
is the ratio estimator ``r = sum_u c_u / sum_u e_u`` over its ids ``u`` (clicks ``c_u``,
exposures ``e_u``); its standard error is the cluster-robust (by id) delta-method one::

    var(r) = sum_u (c_u - r e_u)^2 / E^2 * n / (n - 1),      E = sum_u e_u

with ``n`` the number of ids of the cluster that have events. The interval is normal (quantile
``z`` of ``level``) on the logit scale, ``logit(r) +- z se / (r (1 - r))``, mapped back: it stays
inside (0, 1) and is asymmetric like the estimator's distribution. Per-id click counts are very
skewed (most users never click an ad, a few click many), and with few ids the symmetric
``r +- z se`` misses mostly on the high side: in simulation (true CTR 0.05, per-id CTR ~ Beta
with concentration 5, geometric exposures with mean 50, nominal 95%) it covered 89% with 60 ids
where the logit one covers 92%; both reach ~95% with a thousand ids; a naive binomial interval
over events covers 40%. A bootstrap over ids behaved like the symmetric interval and costs
hundreds of passes, so the closed form is used.

A cluster is flagged ``above`` / ``below`` when its interval lies entirely above / below the
overall CTR (treated as fixed: it pools every cluster and is much more precise than any one of
them; the test is conservative since the overall CTR includes the cluster's own events).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from analysis._inputs import as_matrix, require_columns, require_numeric, require_rows
from lee.engine import Engine
from lee.errors import FewerClustersWarning, InputError, SmallSampleWarning
from lee.results import SavedResult, register
from lee.snapshot import Snapshot, TableKind
from lee.snapshot.reader import DEFAULT_MEMORY_MB


class KMeansBackend(StrEnum):
    """Who runs K-means: ``auto`` (``numpy``, or ``torch`` when a CUDA device is asked for),
    ``numpy`` (BLAS Lloyd, :mod:`analysis.lloyd`), ``faiss`` (the same Lloyd with faiss' exact
    nearest-centroid search), ``torch`` (the same Lloyd in torch, on the CPU or a CUDA GPU) or
    ``sklearn`` (scikit-learn's ``KMeans``, k-means++ seeding over all rows: the reference)."""

    AUTO = "auto"
    NUMPY = "numpy"
    FAISS = "faiss"
    TORCH = "torch"
    SKLEARN = "sklearn"


BACKENDS: tuple[KMeansBackend, ...] = tuple(KMeansBackend)
KMEANS_SAMPLE = 100_000  # seeding and restarts look at most this many (seeded) rows; see analysis.lloyd
_CHUNK = 65_536


# --------------------------------------------------------------------------- K-means


@dataclass(frozen=True)
class KMeansFit:
    """One K-means solution.

    ``labels[i]`` is the cluster of row ``i`` (its nearest centroid); ``inertia`` is the sum of
    squared Euclidean distances of the rows to their centroids (float64, recomputed exactly);
    ``n_distinct`` counts the clusters that hold at least one row (fewer than ``k`` hints at
    collapsed vectors). ``info`` says how the fit went: seeding sample, restarts, Lloyd passes on
    the sample and on all rows, convergence, threads and device (empty for ``sklearn`` but for its
    iteration count).
    """

    labels: np.ndarray
    centroids: np.ndarray
    inertia: float
    backend: str
    k: int
    n_distinct: int
    info: dict[str, Any] = field(default_factory=dict)


def _faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, device: str = "cpu") -> str:
    """``auto`` becomes ``torch`` for a CUDA device and ``numpy`` otherwise; anything else is checked."""
    if backend not in BACKENDS:
        raise InputError(f"unknown K-means backend {backend!r}; choose one of {', '.join(KMeansBackend)}")
    if device not in ("auto", "cpu", "cuda"):
        raise InputError(f"device must be one of auto, cpu, cuda; got {device!r}")
    if backend == "auto":
        return "torch" if device == "cuda" else "numpy"
    if backend == "faiss" and not _faiss_available():
        raise InputError("K-means backend 'faiss' was asked for but faiss is not installed; "
                         "install faiss-cpu or use backend='numpy' (or 'auto')")
    if device == "cuda" and backend != "torch":
        raise InputError(f"--device cuda needs the torch K-means backend; backend {backend!r} runs on the CPU "
                         "(use --backend torch or auto)")
    return backend


def _check_int(value: object, name: str, *, at_least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name} must be an integer; got {value!r}")
    if value < at_least:
        raise InputError(f"{name} must be at least {at_least}; got {value}")
    return int(value)


def _check_k(k: object, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InputError(f"k must be an integer number of clusters; got {k!r}")
    if k < 2:
        raise InputError(f"k={k}: a single cluster (or none) says nothing about structure; use k >= 2")
    if k > n:
        raise InputError(f"n_samples={n} should be >= n_clusters={k}: cannot make {k} clusters of {n} rows")
    return int(k)


def _inertia(x: np.ndarray, labels: np.ndarray, centroids: np.ndarray, threads: int = 1) -> float:
    """Exact sum of squared distances to the assigned centroids (float32 differences, float64
    sums), chunked over ``threads`` threads."""
    def part(lo: int) -> float:
        diff = x[lo:lo + _CHUNK] - centroids[labels[lo:lo + _CHUNK]]
        return float(np.einsum("ij,ij->i", diff, diff).sum(dtype=np.float64))

    starts = range(0, x.shape[0], _CHUNK)
    if threads <= 1 or x.shape[0] <= _CHUNK:
        return float(sum(part(lo) for lo in starts))
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return float(sum(pool.map(part, starts)))


def _kmeans_sklearn(x: np.ndarray, k: int, seed: int, n_init: int, max_iter: int,
                    tol: float) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        # Duplicate points: reported once, as FewerClustersWarning, by kmeans().
        warnings.filterwarnings("ignore", message="Number of distinct clusters", category=ConvergenceWarning)
        km = KMeans(n_clusters=k, init="k-means++", n_init=n_init, max_iter=max_iter, random_state=seed,
                    algorithm="lloyd").fit(x)
    return (km.labels_.astype(np.int64), km.cluster_centers_.astype(np.float32),
            {"iterations_full": int(km.n_iter_), "n_init": n_init})


def kmeans(
    vectors: np.ndarray,
    k: int,
    *,
    backend: str = "auto",
    seed: int = 0,
    n_init: int = 3,
    max_iter: int = 300,
    tol: float = 1e-4,
    sample: int = KMEANS_SAMPLE,
    threads: int | None = None,
    device: str = "cpu",
) -> KMeansFit:
    """K-means of every row of ``vectors`` into ``k`` clusters.

    ``numpy`` / ``faiss`` / ``torch`` (``auto`` picks numpy, or torch for ``device='cuda'``):
    greedy k-means++ seeding and ``n_init`` restarts on a seeded sample of ``sample`` rows, then
    Lloyd on every row until the inertia changes by less than ``tol`` (relative) between passes or
    ``max_iter`` passes (:mod:`analysis.lloyd`), on ``threads`` threads (default: this process'
    cores). ``sklearn``: scikit-learn's KMeans (Lloyd, k-means++ over all rows, ``n_init``
    restarts on all rows; its own ``tol`` on centre shifts). Labels are each row's nearest
    centroid and the inertia is recomputed exactly, so every backend reports the same quantity.
    Warns :class:`FewerClustersWarning` when fewer than ``k`` clusters are non-empty (duplicated
    or collapsed vectors).
    """
    from analysis.lloyd import default_threads, lloyd

    name = resolve_backend(backend, device)
    x = as_matrix(vectors, name="vectors")
    k = _check_k(k, x.shape[0])
    n_init = _check_int(n_init, "n_init", at_least=1)
    max_iter = _check_int(max_iter, "max_iter", at_least=1)
    seed = _check_int(seed, "seed", at_least=0)
    n_threads = default_threads() if threads is None else _check_int(threads, "threads", at_least=1)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if name == "sklearn":
        labels, centroids, info = _kmeans_sklearn(x, k, seed, n_init, max_iter, tol)
    else:
        fit = lloyd(x, k, engine=name, seed=seed, n_init=n_init, max_iter=max_iter, tol=tol, sample=sample,
                    threads=n_threads, device=device)
        labels, centroids = fit.labels, fit.centroids
        info = {"sample": fit.sample_size, "n_init": fit.n_init, "iterations_sample": fit.iterations_sample,
                "iterations_full": fit.iterations_full, "converged": fit.converged, "threads": fit.threads,
                "device": fit.device, "tol": tol}
    n_distinct = int(np.unique(labels).size)
    if n_distinct < k:
        distinct_rows = int(np.unique(x, axis=0).shape[0])
        warnings.warn(
            f"K-means ({name}) found only {n_distinct} non-empty clusters of the k={k} asked for; the "
            f"{x.shape[0]} rows hold {distinct_rows} distinct vectors: duplicated or collapsed vectors",
            FewerClustersWarning, stacklevel=2,
        )
    return KMeansFit(labels=labels, centroids=centroids, inertia=_inertia(x, labels, centroids, n_threads),
                     backend=name, k=k, n_distinct=n_distinct, info=info)


# --------------------------------------------------------------------------- silhouette and k


def sample_rows(n: int, size: int, *, seed: int = 0) -> np.ndarray:
    """Sorted row indices of a seeded uniform sample of ``min(n, size)`` rows (all rows if n <= size)."""
    size = _check_int(size, "sample", at_least=2)
    if n <= size:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False)).astype(np.int64)


def silhouette_on_sample(vectors: np.ndarray, labels: np.ndarray, *, sample: int = 10_000,
                         seed: int = 0) -> tuple[float, int]:
    """Mean silhouette (Euclidean) on ``sample_rows(n, sample, seed=seed)``; NaN if undefined.

    Returns ``(silhouette, rows used)``. The silhouette is undefined when the sample holds a
    single cluster or as many clusters as rows.
    """
    from sklearn.metrics import silhouette_score

    rows = sample_rows(len(labels), sample, seed=seed)
    lab = np.asarray(labels)[rows]
    n_lab = np.unique(lab).size
    if not 2 <= n_lab <= rows.size - 1:
        return float("nan"), int(rows.size)
    return float(silhouette_score(np.asarray(vectors)[rows], lab)), int(rows.size)


def choose_k(
    vectors: np.ndarray,
    ks: Iterable[int],
    *,
    seed: int = 0,
    sample: int = 10_000,
    backend: str = "auto",
) -> pd.DataFrame:
    """Inertia and silhouette for each ``k`` in ``ks``: the aid for choosing k.

    Inertia always falls with k (look for the elbow); the silhouette (on the same seeded sample of
    at most ``sample`` rows for every k) peaks where clusters are compact and well separated.
    Columns: k, inertia, silhouette, n_distinct.
    """
    x = as_matrix(vectors, name="vectors")
    ks = list(ks)
    if not ks:
        raise InputError("choose_k: ks is empty; give the numbers of clusters to try, e.g. [4, 8, 16]")
    rows = []
    for k in ks:
        fit = kmeans(x, k, backend=backend, seed=seed)
        sil, _ = silhouette_on_sample(x, fit.labels, sample=sample, seed=seed)
        rows.append({"k": fit.k, "inertia": fit.inertia, "silhouette": sil, "n_distinct": fit.n_distinct})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- labels


def top_behaviour_labels(
    events: pd.DataFrame,
    items: pd.DataFrame,
    *,
    by: str = "category",
    domain: int | None = None,
) -> pd.DataFrame:
    """Each user's readable label: the item ``by`` value (category) they clicked most.

    Users with no click are labelled by their most exposed category instead. ``share`` is that
    category's share of the user's clicks (or exposures); ``basis`` says which. ``domain`` restricts
    to content (0) or ad (1) events; None uses both. Events whose item is not in ``items`` are
    ignored. Ties go to the category that comes first in sorted order. Columns: user_id, label,
    share, basis.
    """
    require_columns(events, ["user_id", "item_id", "click"], name="events")
    require_columns(items, ["item_id", by], name="items")
    require_rows(events, name="events")
    require_numeric(events, ["click"], name="events", nonnegative=True)
    if domain is not None:
        require_columns(events, ["domain"], name="events")
        events = events[events["domain"].to_numpy() == domain]
        require_rows(events, name=f"events with domain == {domain}")

    item_label = pd.Series(items[by].to_numpy(), index=items["item_id"].to_numpy())
    if item_label.index.has_duplicates:
        dup = item_label.index[item_label.index.duplicated()][0]
        raise InputError(f"items: item_id {dup!r} appears more than once; item ids must be unique")
    cat = item_label.reindex(events["item_id"].to_numpy()).to_numpy()
    known = ~pd.isna(cat)
    if not known.any():
        raise InputError(
            f"events: no item_id is in items (events e.g. {_first(events['item_id'])}; "
            f"items e.g. {_first(items['item_id'])})"
        )
    cat_codes, cat_names = pd.factorize(pd.Series(cat[known]).astype(str), sort=True)
    user_codes, user_ids = pd.factorize(events["user_id"].to_numpy()[known])
    n_cat = len(cat_names)
    cell = user_codes.astype(np.int64) * n_cat + cat_codes
    size = len(user_ids) * n_cat
    exposures = np.bincount(cell, minlength=size).reshape(-1, n_cat).astype(np.float64)
    clicks = np.bincount(cell, weights=events["click"].to_numpy(np.float64)[known], minlength=size).reshape(-1, n_cat)
    has_click = clicks.sum(axis=1) > 0
    counts = np.where(has_click[:, None], clicks, exposures)
    best = counts.argmax(axis=1)  # first maximum = first category in sorted order
    share = counts[np.arange(len(best)), best] / counts.sum(axis=1)
    return pd.DataFrame({
        "user_id": user_ids,
        "label": np.asarray(cat_names)[best],
        "share": share,
        "basis": np.where(has_click, "clicks", "exposures"),
    })


# --------------------------------------------------------------------------- clusters of a snapshot


@register("clusters")
@dataclass(frozen=True)
class ClusterResult(SavedResult):
    """K-means clusters of one snapshot table, with labels, CTR intervals and quality numbers.

    ``assignment[i]`` is the cluster of ``ids[i]``. ``table`` holds one row per non-empty cluster
    (see :func:`cluster_snapshot`). ``overall_ctr`` pools the events of every clustered id;
    ``silhouette`` was computed on ``silhouette_sample`` rows; ``ari`` is the adjusted Rand index
    against planted truth (None without truth). ``n_ids_with_events`` counts ids with at least one
    event of the CTR domain.
    """

    kind: TableKind
    k: int
    backend: str
    ids: np.ndarray
    assignment: np.ndarray
    table: pd.DataFrame
    overall_ctr: float
    silhouette: float
    silhouette_sample: int
    ari: float | None
    n_ids: int
    n_ids_with_events: int
    inertia: float
    snapshot: str
    level: float
    domain: int | None
    fit_rows: int | None = None   # rows K-means was fitted on out of core (None: every row, in memory)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"clusters": self.table}

    def summary(self) -> dict[str, Any]:
        cols = ["cluster", "size", "top1_label", "top1_share", "ctr", "ctr_low", "ctr_high", "flag"]
        return {"table": self.kind.value, "snapshot": self.snapshot, "k": self.k, "backend": self.backend,
                "ari": self.ari, "silhouette": self.silhouette, "silhouette_sample": self.silhouette_sample,
                "overall_ctr": self.overall_ctr, "inertia": self.inertia, "n_ids": self.n_ids,
                "fit_rows": self.fit_rows if self.fit_rows is not None else self.n_ids,
                "n_ids_with_events": self.n_ids_with_events, "level": self.level,
                "clusters_above": int((self.table["flag"] == "above").sum()),
                "clusters_below": int((self.table["flag"] == "below").sum()),
                "clusters": self.table[[c for c in cols if c in self.table.columns]].to_dict(orient="records")}


def _first(values: Sequence | pd.Series | np.ndarray, n: int = 3) -> str:
    vals = list(pd.unique(np.asarray(values, dtype=object)[: 10 * n]))[:n]
    return ", ".join(repr(v.item() if isinstance(v, np.generic) else v) for v in vals)


def _series(obj: object, name: str) -> pd.Series:
    if not isinstance(obj, pd.Series):
        raise InputError(f"{name}: expected a pandas Series indexed by id; got {type(obj).__name__}")
    if obj.index.has_duplicates:
        dup = obj.index[obj.index.duplicated()][0]
        raise InputError(f"{name}: id {dup!r} appears more than once in the index; ids must be unique")
    return obj


def _aligned(series: pd.Series, ids: np.ndarray, name: str, where: str) -> np.ndarray:
    """``series`` values for ``ids`` (object array, None where absent); no overlap is an error."""
    values = series.reindex(ids)
    if values.isna().all():
        raise InputError(
            f"{name}: none of its ids is an id of {where} ({name} index e.g. {_first(series.index)}; "
            f"snapshot ids e.g. {_first(ids)})"
        )
    return values.to_numpy(dtype=object)


def _top_labels(assignment: np.ndarray, labels: np.ndarray | None, clusters: np.ndarray) -> pd.DataFrame:
    """The three most frequent labels of each cluster and their shares of its labelled ids."""
    out = pd.DataFrame(index=clusters)
    if labels is None:
        for r in (1, 2, 3):
            out[f"top{r}_label"], out[f"top{r}_share"] = "", np.nan
        out["n_labelled"] = 0
        return out
    known = ~pd.isna(labels)
    codes, names = pd.factorize(pd.Series(labels[known]).astype(str), sort=True)
    n_lab = len(names)
    k = int(assignment.max()) + 1
    counts = np.bincount(assignment[known] * n_lab + codes, minlength=k * n_lab).reshape(k, n_lab)[clusters]
    total = counts.sum(axis=1)
    order = np.argsort(-counts, axis=1, kind="stable")  # ties: first label in sorted order
    names = np.asarray(names, dtype=object)
    for r in (1, 2, 3):
        if r <= n_lab:
            idx = order[:, r - 1]
            cnt = counts[np.arange(len(clusters)), idx]
            with np.errstate(invalid="ignore", divide="ignore"):
                share = cnt / total
            out[f"top{r}_label"] = np.where(cnt > 0, names[idx], "")
            out[f"top{r}_share"] = np.where(cnt > 0, share, np.nan)
        else:
            out[f"top{r}_label"], out[f"top{r}_share"] = "", np.nan
    out["n_labelled"] = total
    return out


def ratio_interval(clicks: np.ndarray, exposures: np.ndarray, group: np.ndarray, n_groups: int,
                   *, level: float = 0.95) -> pd.DataFrame:
    """Per-group CTR ``sum clicks / sum exposures`` with a cluster-robust (by id) interval.

    ``clicks[u]``, ``exposures[u]`` are one id's totals and ``group[u]`` its group. The standard
    error is the delta-method one of the ratio estimator with ids as the independent units; the
    interval is normal on the logit scale (see the module docstring). A group with no click (or
    only clicks) has no logit: its lower (upper) bound is 0 (1) and the other one NaN. Columns:
    exposures, clicks, ctr, se, ctr_low, ctr_high, ids_with_events.
    """
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    e_g = np.bincount(group, weights=exposures, minlength=n_groups)
    c_g = np.bincount(group, weights=clicks, minlength=n_groups)
    n_g = np.bincount(group, weights=(exposures > 0).astype(np.float64), minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        ctr = c_g / e_g
        resid = clicks - np.nan_to_num(ctr)[group] * exposures
        s_g = np.bincount(group, weights=resid * resid, minlength=n_groups)
        se = np.sqrt(np.where(n_g > 1, s_g / (e_g * e_g) * n_g / (n_g - 1), np.nan))
        logit = np.log(ctr / (1.0 - ctr))
        half = z * se / (ctr * (1.0 - ctr))
        low = np.where(ctr == 0.0, 0.0, 1.0 / (1.0 + np.exp(-(logit - half))))
        high = np.where(ctr == 1.0, 1.0, 1.0 / (1.0 + np.exp(-(logit + half))))
    return pd.DataFrame({
        "exposures": e_g.astype(np.int64), "clicks": c_g, "ctr": ctr, "se": se,
        "ctr_low": low, "ctr_high": high, "ids_with_events": n_g.astype(np.int64),
    })


def cluster_snapshot(
    snapshot: Snapshot | str | Path,
    kind: TableKind | str,
    *,
    k: int,
    events: pd.DataFrame,
    items: pd.DataFrame | None = None,
    labels: pd.Series | None = None,
    truth: pd.Series | None = None,
    seed: int = 0,
    backend: str = "auto",
    level: float = 0.95,
    silhouette_sample: int = 10_000,
    domain: int | None = 1,
    min_clicks: int = 10,
    n_init: int = 10,
    max_iter: int = 300,
    device: str = "cpu",
    memory_mb: float | None = DEFAULT_MEMORY_MB,
    fit_sample: int = KMEANS_SAMPLE,
    engine: Engine | None = None,
) -> ClusterResult:
    """Cluster one snapshot table with K-means and describe every cluster.

    ``kind`` picks the table; its ids are users (UR, CR_user: ``events.user_id``) or items (IR,
    CR_item: ``events.item_id``). Readable labels come from ``labels`` (Series id -> label) or,
    when only ``items`` is given, are derived: a user's top clicked category
    (:func:`top_behaviour_labels`, over all events), an item's own ``category``. Without either
    the label columns are blank. ``truth`` (Series id -> planted group) adds the adjusted Rand
    index over the ids present in both.

    The table has one row per non-empty cluster: cluster, size, share (of ids), top1..3_label and
    _share (of the cluster's labelled ids), n_labelled, exposures, clicks, ctr, ctr_low, ctr_high
    (interval at ``level``, see the module docstring), flag ('above' | 'below' | ''),
    ids_with_events. CTR uses the events of ``domain`` (1 = ads, the default; None = all). Warns
    :class:`SmallSampleWarning` for clusters with fewer than ``min_clicks`` clicks. ``n_init``
    restarts run on the seeding sample (see :func:`kmeans`); ``device='cuda'`` runs K-means in
    torch on a GPU.

    ``memory_mb`` (MiB; None: no bound) decides where the vectors live: a table whose in-memory
    clustering fits it is loaded and clustered on every row; a larger one is clustered out of core
    (fitted on ``fit_sample`` seeded rows, every row assigned in streamed chunks; see the module
    docstring), within the bound.

    ``engine`` (:mod:`lee.engine`; numpy backend only) runs K-means' full Lloyd passes and the final
    assignment as tasks over row ranges (:func:`kmeans_partitioned`): the labels, centroids and CTR table
    of the in-memory fit, whatever the table's size (``memory_mb`` is then not used).
    """
    if not isinstance(level, (int, float)) or not 0.0 < level < 1.0:
        raise InputError(f"level must lie strictly between 0 and 1 (e.g. 0.95); got {level!r}")
    snap = snapshot if isinstance(snapshot, Snapshot) else Snapshot.open(snapshot)
    kind = TableKind.parse(kind, path=snap.path)
    entity = kind.entity
    col = f"{entity}_id"
    require_columns(events, [col, "click"] + (["domain"] if domain is not None else []), name="events")
    require_rows(events, name="events")
    ctr_events = events
    if domain is not None:
        ctr_events = events[events["domain"].to_numpy() == domain]
        if len(ctr_events) == 0:
            present = sorted(pd.unique(events["domain"]).tolist())
            raise InputError(f"events: no row has domain == {domain} (domains present: {present}); "
                             "pass domain=None to use every event")
    require_numeric(ctr_events, ["click"], name="events", nonnegative=True)
    backend_name = resolve_backend(backend, device)
    if engine is not None and backend_name != "numpy":
        raise InputError(f"K-means on the {engine.name} engine runs the numpy backend's Lloyd passes as tasks; "
                         f"backend {backend_name!r} (device {device!r}) runs in one process only: use backend "
                         "'numpy' (or 'auto' on the CPU), or no engine")

    out_of_core = (engine is None and memory_mb is not None
                   and _in_memory_bytes(snap, kind, silhouette_sample) > memory_mb * (1 << 20))
    table = None if out_of_core or engine is not None else snap.load(kind)
    ids = snap.load_ids(kind) if table is None else table.ids
    where = f"{snap.path} ({kind.value})"
    rows = pd.Index(ids).get_indexer(ctr_events[col].to_numpy())
    hit = rows >= 0
    if not hit.any():
        raise InputError(
            f"no id of snapshot {snap.path} ({kind.value}, {len(ids)} {entity} ids, e.g. {_first(ids)}; "
            f"dtype {ids.dtype}) appears in events.{col} (e.g. {_first(ctr_events[col])}; dtype "
            f"{ctr_events[col].dtype}){'' if domain is None else f' among events with domain == {domain}'}; "
            "are the snapshot and the log from the same id space?"
        )

    # Labels and truth, aligned to the snapshot rows; checked before the (expensive) fit.
    label_values = None
    if labels is not None:
        label_values = _aligned(_series(labels, "labels"), ids, "labels", where)
    elif items is not None:
        if entity == "user":
            derived = top_behaviour_labels(events, items).set_index("user_id")["label"]
        else:
            require_columns(items, ["item_id", "category"], name="items")
            derived = _series(pd.Series(items["category"].to_numpy(), index=items["item_id"].to_numpy()), "items")
        label_values = _aligned(derived, ids, "labels derived from items", where)
    truth_values = None
    if truth is not None:
        truth_values = _aligned(_series(truth, "truth"), ids, "truth", where)

    fit_rows = None
    if engine is not None:
        sil_pos = sample_rows(len(ids), silhouette_sample, seed=seed)
        fit, sil_x = kmeans_partitioned(snap, kind, k, engine=engine, seed=seed, n_init=n_init, max_iter=max_iter,
                                        extra_rows=sil_pos)
        assert sil_x is not None
        assignment, inertia, n_k = fit.labels, fit.inertia, fit.k
        sil, sil_n = silhouette_on_sample(sil_x, assignment[sil_pos], sample=sil_pos.size, seed=seed)
    elif table is not None:
        fit = kmeans(table.vectors, k, backend=backend_name, seed=seed, n_init=n_init, max_iter=max_iter,
                     device=device)
        assignment, inertia, n_k = fit.labels, fit.inertia, fit.k
        sil, sil_n = silhouette_on_sample(table.vectors, assignment, sample=silhouette_sample, seed=seed)
    else:
        assert memory_mb is not None
        fit, assignment, inertia, sil, sil_n = _cluster_out_of_core(
            snap, kind, k, memory_mb=memory_mb, fit_sample=fit_sample, silhouette_sample=silhouette_sample,
            seed=seed, backend=backend_name, n_init=n_init, max_iter=max_iter, device=device)
        n_k, fit_rows = fit.k, int(min(fit_sample, len(ids)))
    n = len(ids)

    ari = None
    if truth_values is not None:
        from sklearn.metrics import adjusted_rand_score

        known = ~pd.isna(truth_values)
        ari = float(adjusted_rand_score(pd.factorize(truth_values[known])[0], assignment[known]))

    # Per-id totals, then per-cluster ratio estimates with id-clustered intervals.
    exposures = np.bincount(rows[hit], minlength=n).astype(np.float64)
    clicks = np.bincount(rows[hit], weights=ctr_events["click"].to_numpy(np.float64)[hit], minlength=n)
    ctr = ratio_interval(clicks, exposures, assignment, n_k, level=level)
    overall = float(clicks.sum() / exposures.sum())

    size = np.bincount(assignment, minlength=n_k)
    clusters = np.flatnonzero(size > 0)
    ctr = ctr.iloc[clusters].reset_index(drop=True)
    flag = np.where(ctr["ctr_low"] > overall, "above", np.where(ctr["ctr_high"] < overall, "below", ""))
    out = pd.DataFrame({"cluster": clusters, "size": size[clusters], "share": size[clusters] / n})
    out = pd.concat([out, _top_labels(assignment, label_values, clusters).reset_index(drop=True)], axis=1)
    for c in ("exposures", "clicks", "ctr", "ctr_low", "ctr_high"):
        out[c] = ctr[c].to_numpy()
    out["flag"] = flag
    out["ids_with_events"] = ctr["ids_with_events"].to_numpy()

    few = out.loc[out["clicks"] < min_clicks, "cluster"].tolist()
    if few:
        warnings.warn(
            f"{where}: cluster(s) {', '.join(map(str, few))} have fewer than {min_clicks} clicks; "
            "their CTR intervals are wide and their flags mean little",
            SmallSampleWarning, stacklevel=2,
        )
    return ClusterResult(
        kind=kind, k=fit.k, backend=fit.backend, ids=ids, assignment=assignment, table=out,
        overall_ctr=overall, silhouette=sil, silhouette_sample=sil_n, ari=ari, n_ids=n,
        n_ids_with_events=int((exposures > 0).sum()), inertia=inertia, snapshot=str(snap.path),
        level=float(level), domain=domain, fit_rows=fit_rows,
    )


# --------------------------------------------------------------------------- out of core

_ID_BYTES = 96   # per id, held for the whole analysis: assignment, per-id clicks and exposures, labels, masks


def _in_memory_bytes(snap: Snapshot, kind: TableKind, silhouette_sample: int) -> float:
    """What clustering the table in memory holds: the matrix (the mapped file, the loaded copy and
    K-means' working arrays), the per-id arrays, and the silhouette's distance block (scikit-learn
    computes it in blocks of at most its 1 GiB working memory)."""
    info = snap.info(kind)
    s = min(info.rows, silhouette_sample)
    return ((16 << 20) + info.rows * (info.dim * 4 * 3 + _ID_BYTES + snap.id_bytes(kind))
            + min(1 << 30, 8.0 * s * s))


def _cluster_out_of_core(snap: Snapshot, kind: TableKind, k: int, *, memory_mb: float, fit_sample: int,
                         silhouette_sample: int, seed: int, backend: str, n_init: int, max_iter: int,
                         device: str) -> tuple[KMeansFit, np.ndarray, float, float, int]:
    """K-means fitted on ``fit_sample`` seeded rows (picked in one streamed pass with the silhouette's
    rows), then every row assigned to its nearest centroid in a second pass; the inertia summed
    over all rows. Chunks are sized so that the whole stays within ``memory_mb`` MiB."""
    from sklearn import config_context

    from analysis.lloyd import assign

    info = snap.info(kind)
    n, d = info.rows, info.dim
    fit_sample = _check_int(fit_sample, "fit_sample", at_least=k)
    fit_pos = sample_rows(n, fit_sample, seed=seed)
    sil_pos = sample_rows(n, silhouette_sample, seed=seed)
    # held: the fit sample (picked, then K-means' copies) and the silhouette's rows with their distances
    # (sklearn's working memory, below); per chunk row: the assignment's distance and one-hot blocks, the
    # inertia's gathered centroids and differences (8 bytes per value)
    sil_mb = max(1.0, memory_mb / 8)
    costs = {"held_bytes": fit_pos.size * d * 4 * 3.0 + sil_pos.size * (d * 4 + 16) + sil_mb * (1 << 20)
             + 2 * k * d * 8, "value_bytes": 8.0, "row_bytes": 8.0 * k + 24, "id_bytes": float(_ID_BYTES)}
    rows = snap.chunk_rows(kind, memory_mb, what=f"K-means assignment (k={k}, fit on {fit_pos.size:,} rows)",
                           **costs)
    fit_x = np.empty((fit_pos.size, d), np.float32)
    sil_x = np.empty((sil_pos.size, d), np.float32)
    start = 0
    for chunk in snap.iter_chunks(kind, rows=rows):
        for pos, out in ((fit_pos, fit_x), (sil_pos, sil_x)):
            a, b = np.searchsorted(pos, [start, start + len(chunk)])
            out[a:b] = chunk.vectors[pos[a:b] - start]
        start += len(chunk)
    fit = kmeans(fit_x, k, backend=backend, seed=seed, n_init=n_init, max_iter=max_iter, sample=fit_pos.size,
                 device=device)
    del fit_x
    assignment = np.empty(n, np.int64)
    inertia = 0.0
    start = 0
    for chunk in snap.iter_chunks(kind, rows=rows, verify=False):   # checked by the first pass
        lab = assign(chunk.vectors, fit.centroids)
        assignment[start:start + lab.size] = lab
        inertia += _inertia(chunk.vectors, lab, fit.centroids)
        start += lab.size
    with config_context(working_memory=sil_mb):   # sklearn's pairwise-distance blocks within the bound
        sil, sil_n = silhouette_on_sample(sil_x, assignment[sil_pos], sample=sil_pos.size, seed=seed)
    return fit, assignment, inertia, sil, sil_n


# --------------------------------------------------------------------------- on an engine
# K-means with its full Lloyd passes as engine tasks (lee.engine), one per row range (lee.snapshot.ranges):
# the driver draws the same seeding sample as kmeans() (analysis.lloyd.sample_positions with the fit's
# generator), picks those rows (and the silhouette's) by range tasks, runs seeding and restarts on them
# (analysis.lloyd.fit_sample), then each pass maps analysis.lloyd.chunk_pass over the ranges; the driver adds
# the chunks' sums, counts and inertia in chunk order (analysis.lloyd.merge_chunks) and updates the
# centroids by the same rule (means; an emptied cluster moves to the farthest row of the pass) until the
# same convergence rule stops it. Ranges start on multiples of the pass's chunk rows, so every chunk is the
# chunk the in-memory pass computes, with the same single-threaded SGEMM: the sums, labels and inertia equal
# kmeans()'s (float64 sums in the same order); the exact inertia is summed per 65,536-row chunk in range
# order (equal when ranges start on those multiples too, else up to float64 summation order). Final labels:
# one assignment task per range (analysis.lloyd.assign), concatenated in range order.

ROWS_PER_TASK = 4 * 131_072
"""Rows per engine task of the K-means passes (about four of the writer's row groups)."""


def _lloyd_ranges(snapshot: Snapshot, kind: TableKind, rows_per_task: int, step: int) -> list[tuple[int, int]]:
    """The table's row ranges (:func:`lee.snapshot.ranges.row_ranges`) with each cut moved down to a
    multiple of ``step`` (a Lloyd pass's chunk rows), so that tasks cut the chunks a whole pass cuts."""
    from lee.snapshot.ranges import row_ranges

    n = snapshot.info(kind).rows
    cuts = sorted({0, n} | {(hi // step) * step for _, hi in row_ranges(snapshot, kind, max(rows_per_task, step))})
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def _range_pick(snapshot: Snapshot, kind: TableKind, lo: int, hi: int, wanted: np.ndarray) -> np.ndarray:
    """Task: the rows of ``wanted`` (sorted table row numbers) that lie in ``[lo, hi)``."""
    from lee.snapshot.ranges import read_rows

    v = read_rows(snapshot, kind, lo, hi).vectors
    a, b = np.searchsorted(wanted, [lo, hi])
    return v[wanted[a:b] - lo].copy()


def _range_pass(snapshot: Snapshot, kind: TableKind, lo: int, hi: int, centroids: np.ndarray,
                step: int) -> list[Any]:
    """Task: the chunks' shares of one Lloyd pass over rows ``[lo, hi)``."""
    from analysis.lloyd import chunk_pass
    from lee.snapshot.ranges import read_rows

    return chunk_pass(read_rows(snapshot, kind, lo, hi).vectors, centroids, lo, step)


def _range_assign(snapshot: Snapshot, kind: TableKind, lo: int, hi: int,
                  centroids: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Task: the nearest centroid of rows ``[lo, hi)`` and their exact inertia per 65,536-row chunk."""
    from analysis.lloyd import assign
    from lee.snapshot.ranges import read_rows

    x = read_rows(snapshot, kind, lo, hi).vectors
    lab = assign(x, centroids)
    return lab, [_inertia(x[a:a + _CHUNK], lab[a:a + _CHUNK], centroids) for a in range(0, x.shape[0], _CHUNK)]


def _check_table(snapshot: Snapshot, kind: TableKind) -> None:
    """Task: the file's sha256 (what no range task can check alone)."""
    snapshot.verify_checksum(kind)


def _in_order(engine: Engine, fn: Any, items: list[tuple[Any, ...]], labels: list[str]) -> list[Any]:
    out: list[Any] = [None] * len(items)
    for i, value in engine.map(fn, items, labels=labels):
        out[i] = value
    return out


def kmeans_partitioned(snapshot: Snapshot, kind: TableKind | str, k: int, *, engine: Engine, seed: int = 0,
                       n_init: int = 3, max_iter: int = 300, tol: float = 1e-4, sample: int = KMEANS_SAMPLE,
                       threads: int | None = None, rows_per_task: int = ROWS_PER_TASK,
                       extra_rows: np.ndarray | None = None) -> tuple[KMeansFit, np.ndarray | None]:
    """:func:`kmeans` (numpy backend) of a snapshot table with every full Lloyd pass and the final
    assignment as ``engine`` tasks over row ranges (see above): the same labels and centroids, the
    inertia up to float64 summation order. The driver holds the seeding sample, the centroids and the
    labels, never the table. ``extra_rows`` (sorted table row numbers, e.g. the silhouette's) are picked
    in the same read as the sample and returned with the fit (None without them)."""
    from analysis.lloyd import assign_chunk_rows, default_threads, fit_sample, iterate, merge_chunks, sample_positions
    from lee.snapshot.ranges import read_rows

    kind = TableKind.parse(kind, path=snapshot.path)
    info = snapshot.info(kind)
    n, d = info.rows, info.dim
    k = _check_k(k, n)
    n_init = _check_int(n_init, "n_init", at_least=1)
    max_iter = _check_int(max_iter, "max_iter", at_least=1)
    seed = _check_int(seed, "seed", at_least=0)
    sample = _check_int(sample, "sample", at_least=k)
    rows_per_task = _check_int(rows_per_task, "rows_per_task", at_least=1)
    n_threads = default_threads() if threads is None else _check_int(threads, "threads", at_least=1)
    step = assign_chunk_rows(k)
    ranges = _lloyd_ranges(snapshot, kind, rows_per_task, step)
    where = str(snapshot.table_path(kind))
    names = [f"{where} rows {lo}..{hi}" for lo, hi in ranges]
    _in_order(engine, _check_table, [(snapshot, kind)], [where])

    rng = np.random.default_rng(seed)
    fit_pos = sample_positions(n, sample, rng).astype(np.int64)
    extra = np.asarray(extra_rows if extra_rows is not None else [], np.int64)
    wanted = np.union1d(fit_pos, extra)
    shared = engine.put(wanted)
    picked = np.concatenate(_in_order(engine, _range_pick, [(snapshot, kind, lo, hi, shared) for lo, hi in ranges],
                                      names))
    xs = np.ascontiguousarray(picked[np.searchsorted(wanted, fit_pos)])
    c, sample_labels, inertia_pass, it_sample = fit_sample(xs, k, rng, n_init=n_init, max_iter=max_iter, tol=tol,
                                                           threads=n_threads)
    it_full, converged = 0, True
    if n > sample:
        def run_pass(cc: np.ndarray) -> Any:
            items = [(snapshot, kind, lo, hi, cc, step) for lo, hi in ranges]
            parts = [chunk for r in _in_order(engine, _range_pass, items, names) for chunk in r]
            return merge_chunks(parts, k, d)

        def row(i: int) -> np.ndarray:
            return read_rows(snapshot, kind, i, i + 1).vectors[0]

        c, p, it_full, converged = iterate(run_pass, row, c, max_iter=max_iter, tol=tol)
        inertia_pass = p.inertia
    if n <= sample:   # the sample is every row: the best restart is the answer (as kmeans())
        labels, inertia = sample_labels, _inertia(xs, sample_labels, c, n_threads)
    else:
        done = _in_order(engine, _range_assign, [(snapshot, kind, lo, hi, c) for lo, hi in ranges], names)
        labels = np.concatenate([lab for lab, _ in done])
        inertia = float(sum(part for _, parts in done for part in parts))
    n_distinct = int(np.unique(labels).size)
    if n_distinct < k:
        warnings.warn(f"K-means (numpy on {engine.name}) found only {n_distinct} non-empty clusters of the k={k} "
                      f"asked for in {where}: duplicated or collapsed vectors", FewerClustersWarning, stacklevel=2)
    fit = KMeansFit(labels=labels, centroids=c, inertia=inertia, backend="numpy", k=k, n_distinct=n_distinct,
                    info={"sample": int(fit_pos.size), "n_init": n_init, "iterations_sample": it_sample,
                          "iterations_full": it_full, "converged": converged, "threads": n_threads,
                          "device": "cpu", "tol": tol, "engine": engine.name, "ranges": len(ranges),
                          "inertia_pass": inertia_pass})
    return fit, (picked[np.searchsorted(wanted, extra)] if extra_rows is not None else None)
