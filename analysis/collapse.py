"""Dimensional collapse: the singular-value spectrum of a table and how many dimensions it really uses.

The spectrum of the centred matrix comes from its d×d Gram matrix, accumulated chunk by chunk
in float64 (exact, bounded memory whatever the row count). Two summaries of it:

* effective rank (Roy & Vetterli, 2007): ``exp(H(p))`` with ``p_i = σ_i / Σσ`` — d for a flat
  spectrum, 1 when one direction holds everything;
* information abundance (Guo et al., 2023, "On the Embedding Collapse When Scaling Up
  Recommendation Models"): ``Σσ / max σ``.

Three label-free quality scores sit beside them:

* RankMe (Garrido et al., 2023): the entropy effective rank of the *uncentred* embedding matrix,
  ``exp(-Σ p_k log p_k)`` with ``p_k = σ_k / Σσ + 1e-7``, computed on a stated seeded uniform sample
  of rows (default :data:`RANKME_SAMPLE`; all rows when fewer), as its authors define it;
* α-ReQ (Agrawal et al., 2022): the decay exponent α of the covariance eigenspectrum
  ``λ_i ∝ i^-α``, the least-squares slope of ``log λ_i`` on ``log i`` over every eigenvalue above
  ``1e-12 λ_1`` — small α: variance spread over many directions; large α: a few dominate;
* stable rank: ``Σσ² / σ_1²`` of the centred matrix, a rank that small directions cannot inflate.

A table is judged collapsed relative to others of the same kind (variants compared side by side):
an effective rank far below theirs means most of its dimensions carry nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis._inputs import as_matrix
from lee.engine import Engine
from lee.errors import InputError
from lee.results import SavedResult, register
from lee.snapshot import Snapshot, TableKind
from lee.snapshot.reader import DEFAULT_MEMORY_MB

RANKME_SAMPLE = 25_600
"""Rows RankMe is computed on (a seeded uniform sample; every row when the table has fewer)."""
ROWS_PER_TASK = 4 * 131_072
"""Rows per engine task of :func:`collapse_partitioned` (four of the writer's row groups)."""


@register("collapse")
@dataclass
class CollapseResult(SavedResult):
    """Singular values (descending) of the centred table and the measures derived from them.

    ``rankme`` is computed on ``rankme_rows`` sampled rows (NaN for results saved before it existed).
    """

    kind: TableKind | None
    rows: int
    dim: int
    singular_values: np.ndarray
    rankme: float = float("nan")
    rankme_rows: int = 0

    @property
    def effective_rank(self) -> float:
        return effective_rank(self.singular_values)

    @property
    def information_abundance(self) -> float:
        return information_abundance(self.singular_values)

    @property
    def alpha_req(self) -> float:
        return alpha_req(self.singular_values)

    @property
    def stable_rank(self) -> float:
        return stable_rank(self.singular_values)

    def dims_for_variance(self, share: float) -> int:
        """Fewest leading directions holding ``share`` of the variance."""
        var = self.singular_values**2
        total = var.sum()
        if total <= 0:
            return 0
        return int(np.searchsorted(np.cumsum(var) / total, share - 1e-12) + 1)

    def spectrum(self) -> pd.DataFrame:
        """One row per direction: singular value, its share of Σσ, cumulative explained variance."""
        s = self.singular_values
        var = s**2
        return pd.DataFrame({
            "component": np.arange(1, s.size + 1), "singular_value": s,
            "normalised": s / s.max() if s.size and s.max() > 0 else s,
            "explained_variance_cum": np.cumsum(var) / var.sum() if var.sum() > 0 else np.zeros_like(var),
        })

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"spectrum": self.spectrum()}

    def summary(self) -> dict[str, Any]:
        return {"table": self.kind.value if self.kind else None, "rows": self.rows, "dim": self.dim,
                "effective_rank": self.effective_rank, "information_abundance": self.information_abundance,
                "rankme": self.rankme, "rankme_rows": self.rankme_rows, "alpha_req": self.alpha_req,
                "stable_rank": self.stable_rank, "effective_rank_ratio": self.effective_rank / self.dim,
                "dims_90pct_variance": self.dims_for_variance(0.90),
                "dims_99pct_variance": self.dims_for_variance(0.99)}


def effective_rank(singular_values: np.ndarray) -> float:
    """``exp`` of the entropy of the normalised singular values (1 ≤ erank ≤ number of values)."""
    s = np.asarray(singular_values, dtype=np.float64)
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s[s > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def information_abundance(singular_values: np.ndarray) -> float:
    """``Σσ / max σ``: how many directions' worth of spread the table holds."""
    s = np.asarray(singular_values, dtype=np.float64)
    return float(s.sum() / s.max()) if s.size and s.max() > 0 else 0.0


def rankme(sample: np.ndarray, *, eps: float = 1e-7) -> float:
    """RankMe of a sample of rows: ``exp`` of the entropy of ``σ_k / Σσ + eps`` (uncentred σ)."""
    s = np.linalg.svd(np.asarray(sample, dtype=np.float64), compute_uv=False)
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s / total + eps
    return float(np.exp(-(p * np.log(p)).sum()))


def alpha_req(singular_values: np.ndarray, *, floor: float = 1e-12) -> float:
    """The power-law decay exponent α of the eigenspectrum ``λ_i = σ_i²``: minus the least-squares slope of
    ``log λ_i`` on ``log i`` over the eigenvalues above ``floor × λ_1`` (NaN with fewer than 2 of them)."""
    lam = np.asarray(singular_values, dtype=np.float64) ** 2
    if lam.size < 2 or lam[0] <= 0:
        return float("nan")
    keep = lam > floor * lam[0]
    if keep.sum() < 2:
        return float("nan")
    x = np.log(np.arange(1, lam.size + 1)[keep])
    y = np.log(lam[keep])
    slope = np.polyfit(x, y, 1)[0]
    return float(-slope)


def stable_rank(singular_values: np.ndarray) -> float:
    """``Σσ² / σ_1²`` (0 for an all-zero table)."""
    s = np.asarray(singular_values, dtype=np.float64)
    return float((s**2).sum() / s[0] ** 2) if s.size and s[0] > 0 else 0.0


def _sample_positions(n: int, size: int, seed: int) -> np.ndarray:
    if n <= size:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False)).astype(np.int64)


def _from_gram(gram: np.ndarray, col_sum: np.ndarray, n: int) -> np.ndarray:
    cov = gram - np.outer(col_sum, col_sum) / n          # centred X^T X
    eig = np.linalg.eigvalsh((cov + cov.T) / 2.0)[::-1]
    return np.sqrt(np.clip(eig, 0.0, None))


def collapse_of_matrix(vectors: np.ndarray, *, kind: TableKind | None = None, rankme_sample: int = RANKME_SAMPLE,
                       seed: int = 0) -> CollapseResult:
    """The spectrum of an in-memory matrix (rows × dims); RankMe on ``rankme_sample`` seeded rows."""
    x = as_matrix(vectors, name="vectors", min_rows=2).astype(np.float64)
    rows = _sample_positions(x.shape[0], rankme_sample, seed)
    return CollapseResult(kind, x.shape[0], x.shape[1], _from_gram(x.T @ x, x.sum(0), x.shape[0]),
                          rankme=rankme(x[rows]), rankme_rows=int(rows.size))


def memory_costs(dim: int, sample_rows: int) -> dict[str, float]:
    """What a streamed spectrum holds beyond the reader (for :meth:`Snapshot.chunk_rows`): a float64
    copy of each chunk, the d×d Gram matrix with its centred and symmetrised copies, and the RankMe
    sample (float32 as picked, then its float64 copy and LAPACK's copy while its SVD runs)."""
    return {"value_bytes": 8.0, "held_bytes": 4.0 * dim * dim * 8 + sample_rows * dim * 20.0}


def collapse_of_table(snapshot: Snapshot, kind: TableKind | str, *, memory_mb: float = DEFAULT_MEMORY_MB,
                      chunk_rows: int | None = None, rankme_sample: int = RANKME_SAMPLE,
                      seed: int = 0) -> CollapseResult:
    """The spectrum of one snapshot table, streamed in chunks (memory O(d²), not O(rows)); RankMe on a
    seeded uniform sample of ``rankme_sample`` rows picked during the same pass.

    Chunks are sized to stay within ``memory_mb`` MiB (:meth:`Snapshot.chunk_rows` with
    :func:`memory_costs`); ``chunk_rows`` sets their size instead.
    """
    kind = TableKind.parse(kind)
    info = snapshot.info(kind)
    d = info.dim
    if rankme_sample < 1:
        raise InputError(f"rankme_sample must be at least 1; got {rankme_sample}")
    wanted = _sample_positions(info.rows, rankme_sample, seed)
    if chunk_rows is None:
        chunk_rows = snapshot.chunk_rows(kind, memory_mb, what="the collapse spectrum",
                                         **memory_costs(d, int(wanted.size)))
    picked: list[np.ndarray] = []
    gram = np.zeros((d, d))
    col_sum = np.zeros(d)
    n = 0
    for chunk in snapshot.iter_chunks(kind, rows=chunk_rows):
        lo, hi = np.searchsorted(wanted, [n, n + len(chunk)])
        picked.append(chunk.vectors[wanted[lo:hi] - n].copy())   # float32: exact, half the bytes
        x = chunk.vectors.astype(np.float64)
        gram += x.T @ x
        col_sum += x.sum(0)
        n += len(x)
        del x, chunk
    return _result(snapshot, kind, n, d, gram, col_sum, picked)


def _result(snapshot: Snapshot, kind: TableKind, n: int, d: int, gram: np.ndarray, col_sum: np.ndarray,
            picked: list[np.ndarray]) -> CollapseResult:
    if n < 2:
        raise InputError(f"{snapshot.table_path(kind)}: {n} row(s); a spectrum needs at least 2")
    sample = np.concatenate(picked)
    del picked[:]
    return CollapseResult(kind, n, d, _from_gram(gram, col_sum, n), rankme=rankme(sample),
                          rankme_rows=int(sample.shape[0]))


# --------------------------------------------------------------------------- partitioned (engines)
# The Gram matrix, the column sums and the row count are sums over rows: each engine task sums one row
# range (lee.snapshot.ranges) and picks the RankMe sample rows that fall in it; the driver adds the sums in
# range order and concatenates the picks. The sample is the same rows as collapse_of_table's, so RankMe is
# identical; the spectrum differs from the streamed one only by float64 summation order (well inside 1e-9
# of the largest singular value).


@dataclass
class RangeGram:
    """One row range's share of a spectrum: ``XᵀX``, column sums, rows, and its RankMe picks (float32)."""

    gram: np.ndarray
    col_sum: np.ndarray
    n: int
    picked: np.ndarray


def range_gram(snapshot: Snapshot, kind: TableKind, lo: int, hi: int, wanted: np.ndarray) -> RangeGram:
    """One task: the sums of rows ``[lo, hi)`` and the rows of ``wanted`` (table row numbers) among them."""
    from lee.snapshot.ranges import read_rows

    v = read_rows(snapshot, kind, lo, hi).vectors
    a, b = np.searchsorted(wanted, [lo, hi])
    x = v.astype(np.float64)
    return RangeGram(x.T @ x, x.sum(0), int(x.shape[0]), v[wanted[a:b] - lo].copy())


def _check_table(snapshot: Snapshot, kind: TableKind) -> None:
    """What no range can check alone: the sha256 and page CRCs, duplicate ids across ranges."""
    snapshot.verify_checksum(kind)
    snapshot.load_ids(kind)


def collapse_partitioned(snapshot: Snapshot, kind: TableKind | str, *, engine: Engine,
                         rankme_sample: int = RANKME_SAMPLE, seed: int = 0,
                         rows_per_task: int = ROWS_PER_TASK) -> CollapseResult:
    """:func:`collapse_of_table` with one ``engine`` task per row range, Gram matrices merged exactly
    (see above); the file's checksum and ids are checked by one more task."""
    from lee.snapshot.ranges import row_ranges

    kind = TableKind.parse(kind)
    info = snapshot.info(kind)
    if rankme_sample < 1:
        raise InputError(f"rankme_sample must be at least 1; got {rankme_sample}")
    wanted = _sample_positions(info.rows, rankme_sample, seed)
    ranges = row_ranges(snapshot, kind, rows_per_task)
    where = str(snapshot.table_path(kind))
    for _ in engine.map(_check_table, [(snapshot, kind)], labels=[where]):
        pass
    shared = engine.put(wanted)
    parts: list[RangeGram | None] = [None] * len(ranges)
    for k, part in engine.map(range_gram, [(snapshot, kind, lo, hi, shared) for lo, hi in ranges],
                              labels=[f"{where} rows {lo}..{hi}" for lo, hi in ranges]):
        parts[k] = part
    d = info.dim
    gram, col_sum, n = np.zeros((d, d)), np.zeros(d), 0
    for p in parts:   # in range order, whatever order the tasks finished in
        assert p is not None
        gram += p.gram
        col_sum += p.col_sum
        n += p.n
    return _result(snapshot, kind, n, d, gram, col_sum, [p.picked for p in parts if p is not None])


def compare_collapse(results: Mapping[str, CollapseResult], *, ratio: float = 0.5) -> pd.DataFrame:
    """Side-by-side summaries; a variant is flagged collapsed when its effective rank is below
    ``ratio`` × the median effective rank of the variants compared."""
    if not results:
        raise InputError("nothing to compare: no collapse results given")
    if not 0 < ratio < 1:
        raise InputError(f"ratio must lie in (0, 1); got {ratio}")
    rows = [{"variant": name, **r.summary()} for name, r in results.items()]
    frame = pd.DataFrame(rows)
    median = float(frame["effective_rank"].median())
    frame["collapsed"] = frame["effective_rank"] < ratio * median
    return frame


@register("collapse-comparison")
@dataclass
class CollapseComparison(SavedResult):
    """Several variants' spectra of one table kind, side by side, with the collapsed ones flagged."""

    table: str
    ratio: float
    results: dict[str, CollapseResult]
    frame: pd.DataFrame

    @property
    def collapsed(self) -> list[str]:
        return self.frame.loc[self.frame["collapsed"], "variant"].tolist()

    def tables(self) -> dict[str, pd.DataFrame]:
        spectra = {f"spectrum-{v}": r.spectrum() for v, r in self.results.items()}
        return {"collapse": self.frame, **spectra}

    def summary(self) -> dict[str, Any]:
        cols = ["variant", "rows", "dim", "effective_rank", "information_abundance", "rankme", "alpha_req",
                "stable_rank", "effective_rank_ratio",
                "dims_90pct_variance", "dims_99pct_variance", "collapsed"]
        return {"table": self.table, "ratio": self.ratio, "collapsed": self.collapsed,
                "variants": self.frame[[c for c in cols if c in self.frame.columns]].to_dict(orient="records")}


def collapse_comparison(results: Mapping[str, CollapseResult], *, table: str, ratio: float = 0.5) -> CollapseComparison:
    """:func:`compare_collapse` as a result object that keeps each variant's spectrum."""
    return CollapseComparison(table=table, ratio=ratio, results=dict(results),
                              frame=compare_collapse(results, ratio=ratio))
