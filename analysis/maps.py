"""2-D maps of a representation: PCA, t-SNE and UMAP behind one function.

A map is for looking, not for measuring: it shows whether clusters are compact and separated and
which of them neighbour each other. Large tables are mapped on a stratified sample (proportional
to each stratum, e.g. the K-means cluster, with a floor of a few points so small clusters still
show); the sample's size and rows are part of the result, so a figure can say what it shows.

Methods: ``pca`` (numpy SVD of the centred matrix: linear, exact, instant), ``tsne`` (openTSNE:
Barnes-Hut for small inputs, FFT-accelerated interpolation for large ones; local neighbourhoods) and
``umap`` (umap-learn, imported only when asked for because its import alone takes seconds).

Large tables: the method is fitted on a stratified sample of stated size and, with
``place_rest=True``, every other row is placed by the method's own transform (PCA: the sample's
principal axes; t-SNE: openTSNE's ``transform``, each new point optimised against the fixed
sample embedding; UMAP: ``UMAP.transform``). Nearest neighbours, for t-SNE's affinities and for
placing new points, come from faiss (exact on the sample, an IVF index for placing), not from
openTSNE's default Annoy index. Every map carries its neighbour preservation: the mean share of
each query row's ``k`` nearest neighbours in the input that are also among its ``k`` nearest on
the map, over a stated seeded subsample of query rows (neighbours searched among every mapped
row), for the fitted rows and for all mapped rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from analysis._inputs import as_matrix
from lee.errors import InputError
from lee.results import register

MIN_PER_STRATUM = 5
KNN_K = 10            # neighbour preservation: k
KNN_QUERIES = 1_000   # neighbour preservation: seeded query rows
PLACE_CHUNK = 100_000 # rows placed per transform call (bounded memory; placed rows do not interact)


@register("map-2d")
@dataclass(frozen=True)
class Map2D:
    """2-D coordinates of a sample of the input's rows.

    ``xy[j]`` is the position of input row ``rows[j]`` (``rows`` sorted ascending);
    ``sample_size`` = len(rows) of the ``n_total`` input rows; ``strata`` holds the sampled rows'
    strata (None when no strata were given).
    """

    rows: np.ndarray
    xy: np.ndarray
    method: str
    sample_size: int
    n_total: int
    seed: int
    strata: np.ndarray | None = None
    n_placed: int = 0
    fitted: np.ndarray | None = None
    knn_k: int = KNN_K
    knn_queries: int = 0
    knn_fitted: float = float("nan")
    knn_all: float = float("nan")
    seconds_fit: float = float("nan")
    seconds_place: float = 0.0

    def summary(self) -> dict[str, Any]:
        """What the map shows and how faithful it is (the figures printed beside every map)."""
        return {"method": self.method, "n_total": self.n_total, "fitted": self.sample_size, "placed": self.n_placed,
                "knn_k": self.knn_k, "knn_queries": self.knn_queries,
                "knn_preserved_fitted": self.knn_fitted, "knn_preserved_all": self.knn_all,
                "seconds_fit": self.seconds_fit, "seconds_place": self.seconds_place}

    def caption(self) -> str:
        """One line for a figure: rows fitted and placed, and the neighbour preservation."""
        placed = f", {self.n_placed:,} more placed by its transform" if self.n_placed else ""
        knn = "" if not self.knn_queries else (
            f"; {self.knn_k}-NN preserved {self.knn_fitted:.3f} (fitted rows)"
            + (f", {self.knn_all:.3f} (all mapped rows)" if self.n_placed else "")
            + f" on {self.knn_queries:,} query rows")
        return f"{self.method.upper()} fitted on a stratified sample of {self.sample_size:,} of {self.n_total:,} rows" \
            f"{placed}{knn}"


Placer = Callable[[np.ndarray], np.ndarray]


def _pca(x: np.ndarray, seed: int, threads: int) -> tuple[np.ndarray, Placer]:
    """The first two principal-component scores (centred SVD); each axis' sign is fixed so that
    its largest-magnitude loading is positive, which makes the map deterministic. New rows are
    projected on the same axes."""
    mean = x.mean(axis=0, dtype=np.float64)
    xc = x.astype(np.float64) - mean
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    xy = np.zeros((x.shape[0], 2))
    r = min(2, s.size)
    sign = np.sign(vt[np.arange(r), np.abs(vt[:r]).argmax(axis=1)])
    xy[:, :r] = u[:, :r] * s[:r] * sign
    axes = np.zeros((2, x.shape[1]))
    axes[:r] = vt[:r] * sign[:, None]
    return xy, lambda new: (new.astype(np.float64) - mean) @ axes.T


def _faiss_knn_index() -> type:
    """An openTSNE nearest-neighbour index backed by faiss: exact (BLAS) search among the fitted
    rows, and an IVF index (nlist 4·sqrt(n), at most n/39, nprobe 16) when many new rows are placed."""
    import faiss
    from openTSNE.nearest_neighbors import KNNIndex

    class FaissKNN(KNNIndex):
        VALID_METRICS = ["euclidean"]

        def build(self) -> tuple[np.ndarray, np.ndarray]:
            data = np.ascontiguousarray(self.data, dtype=np.float32)
            self.index = faiss.IndexFlatL2(data.shape[1])
            self.index.add(data)
            dist, idx = _search(self.index, data, self.k + 1)
            return idx[:, 1:], np.sqrt(np.maximum(dist[:, 1:], 0.0))

        def query(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
            q = np.ascontiguousarray(query, dtype=np.float32)
            index = self.index
            if self.n_samples >= 10_000 and q.shape[0] >= 10_000:
                if getattr(self, "_ivf", None) is None:
                    data = np.ascontiguousarray(self.data, dtype=np.float32)
                    nlist = max(1, min(int(4 * np.sqrt(self.n_samples)), self.n_samples // 39))  # faiss: 39/list
                    ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(data.shape[1]), data.shape[1], nlist)
                    ivf.cp.seed = 0 if self.random_state is None else int(self.random_state) % (2**31)
                    ivf.train(data)
                    ivf.add(data)
                    ivf.nprobe = 16
                    self._ivf = ivf
                index = self._ivf
            dist, idx = _search(index, q, k)
            return idx, np.sqrt(np.maximum(dist, 0.0))

    return FaissKNN


def _search(index: Any, q: np.ndarray, k: int, chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """``index.search`` in row chunks (bounded distance buffers)."""
    parts = [index.search(q[lo:lo + chunk], k) for lo in range(0, q.shape[0], chunk)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _tsne(x: np.ndarray, seed: int, threads: int) -> tuple[np.ndarray, Placer]:
    """openTSNE: perplexity 30 (capped for tiny inputs), faiss neighbours, PCA initialisation,
    FFT-interpolated gradients from 10,000 rows (Barnes-Hut below), 250 early-exaggeration + 500
    iterations (openTSNE's defaults), ``threads`` threads. New rows: openTSNE's ``transform``."""
    from openTSNE import TSNE, affinity, initialization

    perplexity = float(min(30.0, (x.shape[0] - 1) / 3.0))
    k = min(x.shape[0] - 1, int(3 * perplexity))
    x = np.ascontiguousarray(x, dtype=np.float32)
    aff = affinity.PerplexityBasedNN(perplexity=perplexity, knn_index=_faiss_knn_index()(x, k, random_state=seed),
                                     n_jobs=threads)
    init = initialization.pca(x, random_state=seed)
    emb = TSNE(n_components=2, random_state=seed, n_jobs=threads, verbose=False,
               negative_gradient_method="fft" if x.shape[0] >= 10_000 else "bh").fit(affinities=aff,
                                                                                    initialization=init)

    def place(new: np.ndarray) -> np.ndarray:
        return np.asarray(emb.transform(np.ascontiguousarray(new, dtype=np.float32), n_iter=100))

    return np.asarray(emb), place


def _umap(x: np.ndarray, seed: int, threads: int) -> tuple[np.ndarray, Placer]:
    """umap-learn with 15 neighbours (fewer for tiny inputs); seeded, hence single-threaded.
    New rows: ``UMAP.transform``."""
    import umap  # slow import: only when asked for

    n_neighbors = int(min(15, x.shape[0] - 1))
    model = umap.UMAP(n_components=2, n_neighbors=n_neighbors, random_state=seed, n_jobs=1)
    xy = np.asarray(model.fit_transform(x))
    return xy, lambda new: np.asarray(model.transform(new))


# name -> (function, smallest input it accepts)
class MapMethod(StrEnum):
    """How a 2-D map is drawn: ``pca``, ``tsne`` (openTSNE) or ``umap`` (umap-learn)."""

    PCA = "pca"
    TSNE = "tsne"
    UMAP = "umap"


MAP_METHODS: dict[str, tuple[Callable[[np.ndarray, int, int], tuple[np.ndarray, Placer]], int]] = {
    MapMethod.PCA: (_pca, 2),
    MapMethod.TSNE: (_tsne, 4),
    MapMethod.UMAP: (_umap, 4),
}


def stratified_sample(n: int, size: int, strata: np.ndarray | None = None, *, seed: int = 0,
                      min_per_stratum: int = MIN_PER_STRATUM) -> np.ndarray:
    """Sorted indices of a seeded sample of about ``size`` of ``n`` rows, proportional by stratum.

    Every stratum gets ``size * n_s / n`` rows (rounded by largest remainder) but at least
    ``min(min_per_stratum, n_s)``; strata raised to that floor are paid for by the others, so the
    sample holds exactly ``size`` rows unless the floors alone exceed it. All rows when n <= size.
    """
    if n <= size:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    if strata is None:
        return np.sort(rng.choice(n, size=size, replace=False)).astype(np.int64)
    codes, _ = pd.factorize(np.asarray(strata), use_na_sentinel=False)
    counts = np.bincount(codes).astype(np.float64)
    floor = np.minimum(counts, min_per_stratum)
    # Water-filling: strata whose proportional share falls below their floor are fixed at it and
    # the rest of the budget is shared proportionally among the others, until nothing changes.
    fixed = np.zeros(counts.size, bool)
    while True:
        budget = size - floor[fixed].sum()
        free = counts[~fixed].sum()
        ideal = np.where(fixed, floor, budget * counts / free if free > 0 else 0.0)
        newly = ~fixed & (ideal < floor)
        if not newly.any():
            break
        fixed |= newly
    quota = np.floor(ideal).astype(np.int64)
    short = int(round(max(size - quota.sum(), 0)))
    if short:
        room = (~fixed) & (quota < counts)
        frac = np.where(room, ideal - quota, -1.0)
        quota[np.argsort(-frac, kind="stable")[:short]] += 1
    quota = np.minimum(quota, counts.astype(np.int64))
    # Within each stratum, take the first `quota` rows of a random order.
    order = np.lexsort((rng.random(n), codes))
    starts = np.r_[0, np.cumsum(counts.astype(np.int64))[:-1]]
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - starts[codes[order]]
    return np.flatnonzero(rank < quota[codes]).astype(np.int64)


def neighbour_preservation(x: np.ndarray, xy: np.ndarray, *, k: int = KNN_K, queries: int = KNN_QUERIES,
                           seed: int = 0, threads: int | None = None) -> tuple[float, int]:
    """Mean share of each query row's ``k`` nearest neighbours among the rows of ``x`` that are also
    among its ``k`` nearest in ``xy`` (exact search in both spaces, the row itself excluded), over
    a seeded sample of ``queries`` rows (all rows when fewer). Returns (share, query rows used)."""
    import faiss

    n = x.shape[0]
    if n <= k:
        return float("nan"), 0
    q = sample_rows_uniform(n, queries, seed)
    if threads is not None:
        faiss.omp_set_num_threads(int(threads))

    def knn(a: np.ndarray) -> np.ndarray:
        a = np.ascontiguousarray(a, dtype=np.float32)
        index = faiss.IndexFlatL2(a.shape[1])
        index.add(a)
        found = _search(index, a[q], k + 1)[1]
        # drop the row itself (ties at distance 0 may put another row first)
        return np.array([[j for j in row if j != i][:k] for i, row in zip(q, found)])

    hx, hy = knn(x), knn(xy)
    hits = (hx[:, :, None] == hy[:, None, :]).any(axis=2).sum(axis=1)
    return float(hits.mean() / k), int(q.size)


def sample_rows_uniform(n: int, size: int, seed: int) -> np.ndarray:
    """Sorted row numbers of a seeded uniform sample of ``min(n, size)`` of ``n`` rows."""
    if n <= size:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False)).astype(np.int64)


def embed_2d(
    vectors: np.ndarray,
    method: str = "pca",
    *,
    sample: int = 20_000,
    strata: np.ndarray | pd.Series | None = None,
    seed: int = 0,
    place_rest: bool = False,
    knn_queries: int = KNN_QUERIES,
    threads: int | None = None,
) -> Map2D:
    """A 2-D map of ``vectors`` by ``method`` (pca, tsne or umap) fitted on at most ~``sample`` rows.

    ``strata`` (one value per row, e.g. the cluster assignment) makes the sample proportional by
    stratum with at least a few points per stratum; without it the sample is uniform. With
    ``place_rest`` every row outside the sample is placed by the method's transform (in chunks of
    :data:`PLACE_CHUNK` rows), so the map holds every row. The result states which rows were
    fitted and placed and their ``KNN_K``-NN preservation on ``knn_queries`` query rows (0: not
    measured).
    """
    from analysis.lloyd import default_threads

    key = method.lower() if isinstance(method, str) else method
    if key not in MAP_METHODS:
        raise InputError(f"unknown map method {method!r}; choose one of {', '.join(MAP_METHODS)}")
    func, min_rows = MAP_METHODS[key]
    x = as_matrix(vectors, name="vectors", min_rows=min_rows)
    n = x.shape[0]
    if isinstance(sample, bool) or not isinstance(sample, (int, np.integer)) or sample < min_rows:
        raise InputError(f"sample must be an integer of at least {min_rows} for {key}; got {sample!r}")
    if isinstance(knn_queries, bool) or not isinstance(knn_queries, (int, np.integer)) or knn_queries < 0:
        raise InputError(f"knn_queries must be a non-negative integer; got {knn_queries!r}")
    strata_arr = None
    if strata is not None:
        strata_arr = np.asarray(strata)
        if strata_arr.ndim != 1 or strata_arr.shape[0] != n:
            raise InputError(f"strata: expected one value per row ({n}); got shape {strata_arr.shape}")
    n_threads = default_threads() if threads is None else int(threads)
    fit_rows = stratified_sample(n, int(sample), strata_arr, seed=seed)
    t0 = time.perf_counter()
    xy_fit, place = func(np.ascontiguousarray(x[fit_rows]), seed, n_threads)
    seconds_fit = time.perf_counter() - t0
    rows, xy, fitted, n_placed, seconds_place = fit_rows, np.asarray(xy_fit, np.float32), None, 0, 0.0
    if place_rest and fit_rows.size < n:
        rest = np.setdiff1d(np.arange(n, dtype=np.int64), fit_rows, assume_unique=True)
        t1 = time.perf_counter()
        placed = np.concatenate([np.asarray(place(x[rest[lo:lo + PLACE_CHUNK]]), np.float32)
                                 for lo in range(0, rest.size, PLACE_CHUNK)])
        seconds_place = time.perf_counter() - t1
        rows = np.arange(n, dtype=np.int64)
        xy = np.empty((n, 2), np.float32)
        xy[fit_rows], xy[rest] = xy_fit, placed
        fitted = np.zeros(n, bool)
        fitted[fit_rows] = True
        n_placed = int(rest.size)
    knn_fit = knn_all = float("nan")
    used = 0
    if knn_queries:
        knn_fit, used = neighbour_preservation(x[fit_rows], xy[fitted] if fitted is not None else xy,
                                               queries=knn_queries, seed=seed)
        knn_all = knn_fit
        if n_placed:
            knn_all, _ = neighbour_preservation(x, xy, queries=knn_queries, seed=seed)
    return Map2D(rows=rows, xy=np.ascontiguousarray(xy, dtype=np.float32), method=key,
                 sample_size=int(fit_rows.size), n_total=n, seed=seed,
                 strata=None if strata_arr is None else strata_arr[rows], n_placed=n_placed, fitted=fitted,
                 knn_k=KNN_K, knn_queries=used, knn_fitted=knn_fit, knn_all=knn_all, seconds_fit=seconds_fit,
                 seconds_place=seconds_place)
