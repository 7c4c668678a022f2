"""2-D maps of a representation: PCA, t-SNE and UMAP behind one function.

A map is for looking, not for measuring: it shows whether clusters are compact and separated and
which of them neighbour each other. Large tables are mapped on a stratified sample (proportional
to each stratum, e.g. the K-means cluster, with a floor of a few points so small clusters still
show); the sample's size and rows are part of the result, so a figure can say what it shows.

Methods: ``pca`` (numpy SVD of the centred matrix: linear, exact, instant), ``tsne`` (openTSNE:
Barnes-Hut for small inputs, FFT-accelerated interpolation for large ones; local neighbourhoods) and
``umap`` (umap-learn, imported only when asked for because its import alone takes seconds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

from analysis._inputs import as_matrix
from lee.errors import InputError
from lee.results import register

MIN_PER_STRATUM = 5


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


def _pca(x: np.ndarray, seed: int) -> np.ndarray:
    """The first two principal-component scores (centred SVD); each axis' sign is fixed so that
    its largest-magnitude loading is positive, which makes the map deterministic."""
    xc = x.astype(np.float64) - x.mean(axis=0, dtype=np.float64)
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    xy = np.zeros((x.shape[0], 2))
    r = min(2, s.size)
    sign = np.sign(vt[np.arange(r), np.abs(vt[:r]).argmax(axis=1)])
    xy[:, :r] = u[:, :r] * s[:r] * sign
    return xy


def _tsne(x: np.ndarray, seed: int) -> np.ndarray:
    """openTSNE with its defaults (PCA initialisation, perplexity 30 capped for tiny inputs)."""
    from openTSNE import TSNE

    perplexity = float(min(30.0, (x.shape[0] - 1) / 3.0))
    emb = TSNE(n_components=2, perplexity=perplexity, random_state=seed, n_jobs=1, verbose=False).fit(x)
    return np.asarray(emb)


def _umap(x: np.ndarray, seed: int) -> np.ndarray:
    """umap-learn with 15 neighbours (fewer for tiny inputs); seeded, hence single-threaded."""
    import umap  # slow import: only when asked for

    n_neighbors = int(min(15, x.shape[0] - 1))
    return np.asarray(umap.UMAP(n_components=2, n_neighbors=n_neighbors, random_state=seed, n_jobs=1).fit_transform(x))


# name -> (function, smallest input it accepts)
class MapMethod(StrEnum):
    """How a 2-D map is drawn: ``pca``, ``tsne`` (openTSNE) or ``umap`` (umap-learn)."""

    PCA = "pca"
    TSNE = "tsne"
    UMAP = "umap"


MAP_METHODS: dict[str, tuple[Callable[[np.ndarray, int], np.ndarray], int]] = {  # keyed by MapMethod
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


def embed_2d(
    vectors: np.ndarray,
    method: str = "pca",
    *,
    sample: int = 20_000,
    strata: np.ndarray | pd.Series | None = None,
    seed: int = 0,
) -> Map2D:
    """A 2-D map of ``vectors`` by ``method`` (pca, tsne or umap) on a sample of at most ~``sample`` rows.

    ``strata`` (one value per row, e.g. the cluster assignment) makes the sample proportional by
    stratum with at least a few points per stratum; without it the sample is uniform. The result
    states which rows were mapped.
    """
    key = method.lower() if isinstance(method, str) else method
    if key not in MAP_METHODS:
        raise InputError(f"unknown map method {method!r}; choose one of {', '.join(MAP_METHODS)}")
    func, min_rows = MAP_METHODS[key]
    x = as_matrix(vectors, name="vectors", min_rows=min_rows)
    n = x.shape[0]
    if isinstance(sample, bool) or not isinstance(sample, (int, np.integer)) or sample < min_rows:
        raise InputError(f"sample must be an integer of at least {min_rows} for {key}; got {sample!r}")
    strata_arr = None
    if strata is not None:
        strata_arr = np.asarray(strata)
        if strata_arr.ndim != 1 or strata_arr.shape[0] != n:
            raise InputError(f"strata: expected one value per row ({n}); got shape {strata_arr.shape}")
    rows = stratified_sample(n, int(sample), strata_arr, seed=seed)
    xy = np.ascontiguousarray(func(x[rows], seed), dtype=np.float32)
    return Map2D(rows=rows, xy=xy, method=key, sample_size=int(rows.size), n_total=n, seed=seed,
                 strata=None if strata_arr is None else strata_arr[rows])
