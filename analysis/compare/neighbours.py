"""Neighbourhood churn and cluster stability between two versions of one table (rotation-invariant).

* **kNN overlap@k** per id: the share of an id's k nearest neighbours (cosine, among the ids both
  versions hold, itself excluded) that are the same in both versions. faiss searches exactly
  (``IndexFlatIP`` on unit rows) up to :data:`EXACT_MAX` ids; beyond, an inverted-file index
  (``IndexIVFFlat``, ``nlist ≈ 2√n`` trained on 39 seeded points per list, ``nprobe`` 8 by default)
  answers, and its recall@k against exact search is measured on a stated seeded sample of queries
  in each version and reported: on embeddings with neighbourhood structure it is ≈ 1, on vectors
  without any (i.i.d. Gaussian) it collapses (0.18 measured at 1M × 64), and the result says so.
* **Cluster stability**: K-means (:func:`analysis.clusters.kmeans`) in each version at the same
  k, and the adjusted Rand index between the two partitions, beside its random-partition baseline:
  the ARI of the first partition with random relabellings of the second that keep its cluster sizes.
* **Churn by segment**: which ids' neighbourhoods changed most (the lowest overlap, ties broken by
  the lowest aligned cosine), and their share within each value of any user or item attribute.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score
from tqdm.auto import tqdm

from analysis._inputs import require_columns
from analysis.clusters import kmeans
from lee.errors import FewerClustersWarning, InputError

EXACT_MAX = 25_000
"""Up to this many ids, neighbours are searched exactly (all-pairs inner products in faiss)."""
RECALL_QUERIES = 1_000
"""Queries whose approximate neighbours are checked against exact search when the index is approximate."""
_SEARCH_CHUNK = 16_384


@dataclass(frozen=True)
class NeighbourOverlap:
    """Per-id overlap@k and how the neighbours were found (recall is 1.0 for exact search)."""

    overlap: np.ndarray          # (n,) share in [0, 1] of the k neighbours kept
    k: int
    method: str
    recall_a: float
    recall_b: float
    recall_queries: int

    @property
    def mean(self) -> float:
        return float(self.overlap.mean()) if self.overlap.size else float("nan")


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


def _search(index, x: np.ndarray, k: int, rows: np.ndarray | None = None) -> np.ndarray:
    """k neighbours of ``x[rows]`` (all rows by default), the query itself removed (k+1 asked for)."""
    rows = np.arange(x.shape[0]) if rows is None else rows
    out = np.empty((rows.size, k), np.int64)
    for lo in range(0, rows.size, _SEARCH_CHUNK):
        r = rows[lo:lo + _SEARCH_CHUNK]
        _, nn = index.search(x[r], k + 1)
        self_hit = nn == r[:, None]
        # drop the query itself where it came back, else the (k+1)-th neighbour
        drop = np.where(self_hit.any(1), self_hit.argmax(1), k)
        keep = np.ones_like(nn, dtype=bool)
        keep[np.arange(r.size), drop] = False
        out[lo:lo + r.size] = nn[keep].reshape(r.size, k)
    return out


def _overlap(na: np.ndarray, nb: np.ndarray) -> np.ndarray:
    """Per row, the share of ``na``'s entries also in ``nb`` (both (n, k), no repeats within a row)."""
    k = na.shape[1]
    both = np.sort(np.concatenate([na, nb], axis=1), axis=1)
    same = (both[:, 1:] == both[:, :-1]) & (both[:, 1:] >= 0)
    return same.sum(1) / k


def _index(x: np.ndarray, exact: bool, nprobe: int, seed: int):
    import faiss

    d = x.shape[1]
    if exact:
        index = faiss.IndexFlatIP(d)
        index.add(x)
        return index
    nlist = int(min(max(2 * np.sqrt(x.shape[0]), 16), x.shape[0] // 39))
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    train = x[np.random.default_rng(seed).choice(x.shape[0], size=min(x.shape[0], 39 * nlist), replace=False)]
    index.cp.seed = seed
    index.cp.niter = 10          # coarse centroids only route queries; recall is measured, not assumed
    index.train(train)
    index.add(x)
    index.nprobe = nprobe
    return index


def knn_overlap(a: np.ndarray, b: np.ndarray, *, k: int = 10, exact_max: int = EXACT_MAX, nprobe: int = 8,
                recall_queries: int = RECALL_QUERIES, seed: int = 0, progress: bool = False) -> NeighbourOverlap:
    """Overlap@k of every row's cosine neighbourhood in ``a`` and in ``b`` (row ``i`` is one id in both).

    Exact up to ``exact_max`` rows; beyond, faiss IVF with ``nprobe`` probed lists, whose recall@k
    against exact search on ``recall_queries`` seeded queries is measured in each version.
    """
    if a.shape[0] != b.shape[0]:
        raise InputError(f"kNN overlap needs the same ids in both versions; got {a.shape[0]} and {b.shape[0]} rows")
    n = a.shape[0]
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise InputError(f"k must be a positive integer; got {k!r}")
    if n <= k:
        raise InputError(f"kNN overlap@{k} needs more than {k} shared ids; got {n}")
    xa, xb = _unit(a), _unit(b)
    exact = n <= exact_max
    neighbours = []
    recalls = []
    q = np.sort(np.random.default_rng(seed).choice(n, size=min(n, recall_queries), replace=False))
    for x in tqdm((xa, xb), desc=f"kNN@{k}", disable=not progress, leave=False):
        index = _index(x, exact, nprobe, seed)
        nn = _search(index, x, k)
        neighbours.append(nn)
        if exact:
            recalls.append(1.0)
        else:
            truth = _search(_index(x, True, nprobe, seed), x, k, q)
            recalls.append(float(_overlap(nn[q], truth).mean()))
    method = (f"exact (faiss IndexFlatIP, cosine), {n:,} ids" if exact else
              f"approximate (faiss IndexIVFFlat, cosine, nprobe={nprobe}), {n:,} ids; recall@{k} measured "
              f"against exact search on {q.size:,} seeded queries")
    return NeighbourOverlap(_overlap(neighbours[0], neighbours[1]), int(k), method, recalls[0], recalls[1],
                            0 if exact else int(q.size))


def knn_overlap_brute(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """The same overlap by numpy brute force (ties broken by row number): a cross-check for small data."""
    def nn(x: np.ndarray) -> np.ndarray:
        u = _unit(x).astype(np.float64)
        sim = u @ u.T
        np.fill_diagonal(sim, -np.inf)
        return np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return _overlap(nn(a), nn(b))


# --------------------------------------------------------------------------- clusters


@dataclass(frozen=True)
class ClusterStability:
    """ARI between the two versions' K-means partitions and its random-partition baseline."""

    k: int
    ari: float
    baseline_mean: float
    baseline_low: float
    baseline_high: float
    baseline_draws: int
    rows: int
    p_value: float               # share of random relabellings with an ARI at least as high (+1 smoothing)


def cluster_stability(a: np.ndarray, b: np.ndarray, *, k: int = 8, seed: int = 0, draws: int = 200,
                      backend: str = "auto") -> ClusterStability:
    """K-means with ``k`` clusters in each version (cosine geometry: unit rows) and the ARI between the partitions.

    The baseline relabels the second partition at random ``draws`` times, keeping its cluster sizes;
    its mean is ≈ 0 by construction of the ARI, its 95% range says how far chance alone reaches.
    """
    if a.shape[0] != b.shape[0]:
        raise InputError(f"cluster stability needs the same ids in both versions; got {a.shape[0]} and "
                         f"{b.shape[0]} rows")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewerClustersWarning)  # a collapsed version simply gets a low ARI
        la = kmeans(_unit(a), k, seed=seed, backend=backend).labels
        lb = kmeans(_unit(b), k, seed=seed, backend=backend).labels
    ari = float(adjusted_rand_score(la, lb))
    rng = np.random.default_rng(seed)
    null = np.array([adjusted_rand_score(la, rng.permutation(lb)) for _ in range(draws)])
    lo, hi = np.quantile(null, [0.025, 0.975])
    p = float((1 + (null >= ari).sum()) / (1 + draws))
    return ClusterStability(k=int(k), ari=ari, baseline_mean=float(null.mean()), baseline_low=float(lo),
                            baseline_high=float(hi), baseline_draws=int(draws), rows=int(a.shape[0]), p_value=p)


# --------------------------------------------------------------------------- churn by segment


def churn_by_attribute(ids: np.ndarray, overlap: np.ndarray, aligned_cosine: np.ndarray, attributes: pd.DataFrame,
                       column: str, *, id_column: str, share: float = 0.1,
                       bins: int | Sequence[float] | None = None) -> pd.DataFrame:
    """Per value of ``column``: how many ids, their mean overlap and aligned cosine, and the share of them
    among the ``share`` of ids whose neighbourhood changed most (lowest overlap, then lowest aligned
    cosine), with its ratio to ``share`` (above 1: the segment churns more than the population).

    ``attributes`` has one row per id; numeric columns with many values need ``bins`` (an int gives
    quantile bins). Ids without a row fall into "(unknown)".
    """
    if not 0 < share < 1:
        raise InputError(f"share must lie in (0, 1); got {share}")
    require_columns(attributes, [id_column, column], name="attributes")
    if attributes[id_column].duplicated().any():
        dup = attributes[id_column][attributes[id_column].duplicated()].iloc[0]
        raise InputError(f"attributes: column {id_column} has duplicate id {dup!r}; one row per id expected")
    values = attributes.set_index(id_column)[column].reindex(ids)
    if bins is not None:
        if not pd.api.types.is_numeric_dtype(values):
            raise InputError(f"attributes: bins need a numeric column; {column} is {values.dtype}")
        values = (pd.qcut(values, bins, duplicates="drop") if isinstance(bins, int)
                  else pd.cut(values, list(bins), include_lowest=True))
    elif pd.api.types.is_numeric_dtype(values) and values.nunique() > 50:
        raise InputError(f"attributes: column {column} is numeric with {values.nunique()} distinct values; "
                         "pass bins (a count of quantile bins or bin edges)")
    groups = values.astype(str).where(values.notna(), "(unknown)").to_numpy()
    order = np.lexsort((aligned_cosine, overlap))           # lowest overlap first, then lowest cosine
    n_top = max(1, int(round(share * ids.size)))
    top = np.zeros(ids.size, bool)
    top[order[:n_top]] = True
    frame = pd.DataFrame({column: groups, "overlap": overlap, "aligned_cosine": aligned_cosine, "top": top})
    g = frame.groupby(column, sort=True)
    out = g.agg(n=("top", "size"), mean_knn_overlap=("overlap", "mean"),
                mean_aligned_cosine=("aligned_cosine", "mean"), share_most_changed=("top", "mean"))
    out["ratio_to_population"] = out["share_most_changed"] / (n_top / ids.size)
    return out.reset_index()
