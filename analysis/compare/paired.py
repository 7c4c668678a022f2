"""Paired, rotation-invariant similarity of two versions of one table, on the ids both hold.

Same-id cosine (:mod:`analysis.volatility`) assumes both versions share a basis. Across a retrain,
a new model version or a new dimension they do not, and two measures that do not care are
computed here in one streamed pass over the later table:

* **aligned cosine** per id: the later version is mapped into the earlier one's space by the
  orthogonal map ``W`` that best fits a stated seeded sample of shared ids (orthogonal Procrustes,
  ``scipy.linalg.orthogonal_procrustes``, on unit-normalised rows so that every id weighs as much
  in the fit as it does in the cosine it is judged by), then ``cos(b W, a)`` for every shared id.
  With different dims ``W`` is the ``d_b × d_a`` partial isometry ``U Vᵀ`` of the SVD of the
  sample's cross-product ``Bᵀ A``: the alignment goes through the shared subspace of
  ``min(d_a, d_b)`` dims, and the result says so;
* **linear CKA** (Kornblith et al., 2019): ``‖ÃᵀB̃‖²_F / (‖ÃᵀÃ‖_F ‖B̃ᵀB̃‖_F)`` of the centred
  matrices, exact: it needs only the ``d×d`` cross-products and column sums, accumulated in float64
  batch by batch (shifted by the first batch's means, so that a large offset costs no precision),
  never the ``n×n`` Gram matrices. Its interval is a delete-a-group jackknife over 20 groups
  (blocks of at most 8,192 consecutive rows of the later table, dealt round-robin), accumulated in the same pass.

Rows are read in one bounded pass (issue 18: out of core): the earlier table is held in blocks of
as many rows as ``memory_mb`` leaves (the whole table when it fits) and the later table is streamed
once per block; samples are gathered by streamed passes (:func:`gather_rows`). Ids are joined with a
pandas index over the id columns only, and checksums are verified on a second core while the pass runs.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.linalg import orthogonal_procrustes
from scipy.stats import t as student_t
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from analysis.compare.budget import ADD_ROWS, JACKKNIFE_GROUPS, compare_budget, fit_bytes
from analysis.volatility import _read_blocks
from lee.errors import InputError
from lee.snapshot import Snapshot, TableKind
from lee.snapshot.reader import DEFAULT_MEMORY_MB

FIT_SAMPLE = 100_000
"""Shared ids the orthogonal alignment is fitted on (a seeded uniform sample; all when fewer)."""
JACKKNIFE_BLOCK = 8_192
"""CKA's jackknife groups: blocks of consecutive rows of the later table (this many at most, fewer so
that every group gets at least 8 blocks), dealt round-robin."""
_BATCH_ROWS = 65_536
FLOAT64_MAX = 1_000_000
"""Up to this many shared ids CKA's cross-products are float64 by default; beyond, float32 (see paired_similarity)."""


# --------------------------------------------------------------------------- reading rows


class TableRows:
    """Random and sequential access to one table's vectors: the mapped file when the reader can map
    it (every value checked once, nothing held in the process), else the matrix read into memory."""

    def __init__(self, snapshot: Snapshot, kind: TableKind | str) -> None:
        kind = TableKind.parse(kind)
        self.snapshot, self.kind = snapshot, kind
        self.dim = snapshot.info(kind).dim
        self.n = snapshot.info(kind).rows
        self._gather = snapshot.row_gather(kind)
        self._matrix: np.ndarray | None = None
        if self._gather is None:  # not the writer's layout: decode it once
            parts = list(snapshot.vector_batches(kind))
            self._matrix = np.ascontiguousarray(np.concatenate(parts)) if parts else np.zeros((0, self.dim), np.float32)

    @property
    def mapped(self) -> bool:
        return self._gather is not None

    def take(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``rows`` (row numbers in file order) as a float32 ``(len(rows), dim)`` matrix."""
        rows = np.asarray(rows, dtype=np.int64)
        if out is None:
            out = np.empty((rows.size, self.dim), np.float32)
        if self._gather is not None:
            return self._gather.take(rows, out)
        assert self._matrix is not None
        return np.take(self._matrix, rows, axis=0, out=out[: rows.size])


def join_ids(a: Snapshot, b: Snapshot, kind: TableKind | str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ids_a, ids_b, pos)``: both id columns and, for each row of ``b``, its row in ``a`` (-1: only in b).

    Only the id columns are read; the reader has checked each for nulls and duplicates."""
    kind = TableKind.parse(kind)
    ia, ib = a.info(kind), b.info(kind)
    if ia.id_type != ib.id_type:
        raise InputError(f"cannot compare {kind.value}: ids are {ia.id_type} in {a.path} but {ib.id_type} in "
                         f"{b.path}; the two versions must name ids the same way")
    ids_a, ids_b = a.load_ids(kind), b.load_ids(kind)
    pos = pd.Index(ids_a).get_indexer(ids_b)
    return ids_a, ids_b, pos.astype(np.int64)


# --------------------------------------------------------------------------- alignment


@dataclass(frozen=True)
class Alignment:
    """The orthogonal map taking the later version into the earlier one's space: ``b @ matrix``."""

    matrix: np.ndarray        # (d_b, d_a); orthogonal when the dims are equal
    fit_rows: int             # shared ids it was fitted on
    method: str               # how (Procrustes, or through the shared subspace)
    fit_cosine: float         # mean aligned cosine on the fit sample

    @property
    def shared_dims(self) -> int:
        return int(min(self.matrix.shape))

    def apply(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float32) @ self.matrix.astype(np.float32)


def _row_norms(x: np.ndarray) -> np.ndarray:
    return np.sqrt(np.einsum("ij,ij->i", x, x))


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), in one float64 copy."""
    x = np.array(x, dtype=np.float64)
    n = _row_norms(x)
    x /= np.where(n > 0, n, 1.0)[:, None]
    return x


def fit_alignment(a: np.ndarray, b: np.ndarray) -> Alignment:
    """The orthogonal ``W`` minimising ``‖B̂ W − Â‖_F`` over unit-normalised rows ``Â``, ``B̂`` of one sample
    of shared ids (row ``k`` of ``a`` and of ``b`` belong to one id).

    Equal dims: ``scipy.linalg.orthogonal_procrustes``. Different dims: ``W = U Vᵀ`` from the SVD
    of ``B̂ᵀ Â`` — the same solution over partial isometries, aligning the ``min(d_a, d_b)``-dim
    subspace the two spaces can share.
    """
    if a.shape[0] != b.shape[0] or a.shape[0] < 2:
        raise InputError(f"an alignment needs the same ids in both versions, at least 2; got {a.shape[0]} and "
                         f"{b.shape[0]} rows")
    ua, ub = _unit_rows(a), _unit_rows(b)
    d_a, d_b = ua.shape[1], ub.shape[1]
    if d_a == d_b:
        w, _ = orthogonal_procrustes(ub, ua)
        method = f"orthogonal Procrustes (scipy.linalg.orthogonal_procrustes), {d_a} dims"
    else:
        u, _, vt = np.linalg.svd(ub.T @ ua, full_matrices=False)
        w = u @ vt
        method = (f"dims differ ({d_a} vs {d_b}): aligned through the shared subspace of {min(d_a, d_b)} dims "
                  "(partial-isometry Procrustes, U Vᵀ of the SVD of Bᵀ A)")
    fitted = ub @ w
    cos = np.einsum("ij,ij->i", fitted, ua) / np.maximum(_row_norms(fitted), 1e-300)
    cos[_row_norms(ua) == 0] = 0.0
    return Alignment(matrix=w.astype(np.float64), fit_rows=int(a.shape[0]), method=method,
                     fit_cosine=float(np.clip(cos, -1, 1).mean()))


def sample_positions(n: int, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded uniform sample of ``min(n, size)`` of ``n`` items (all when n <= size)."""
    if size < 1:
        raise InputError(f"a sample size must be at least 1; got {size}")
    if n <= size:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False)).astype(np.int64)


# --------------------------------------------------------------------------- CKA


def linear_cka(a: np.ndarray, b: np.ndarray) -> float:
    """Linear CKA of two in-memory matrices with the same rows (feature-space form, float64)."""
    acc = _CkaAccumulator(a.shape[1], b.shape[1], groups=1)
    acc.add(np.asarray(a), np.asarray(b), np.zeros(a.shape[0], np.int64))
    return acc.cka()


def cka_from_moments(n: float, sa: np.ndarray, sb: np.ndarray, gaa: np.ndarray, gbb: np.ndarray,
                     gab: np.ndarray) -> float:
    """Linear CKA from shifted moments: row count, column sums and cross-products of ``A − c_a``, ``B − c_b``."""
    caa = gaa - np.outer(sa, sa) / n
    cbb = gbb - np.outer(sb, sb) / n
    cab = gab - np.outer(sa, sb) / n
    den = np.linalg.norm(caa) * np.linalg.norm(cbb)
    return float(np.linalg.norm(cab) ** 2 / den) if den > 0 else float("nan")


class _CkaAccumulator:
    """Per-group moments of two matrices (float64 totals), for linear CKA and its delete-a-group jackknife.

    Rows arrive in blocks of consecutive rows (:data:`JACKKNIFE_BLOCK` rows of the later table), dealt
    round-robin into the groups, so a group is a systematic sample of the table and no row is ever
    gathered. ``precision`` is the dtype the cross-products of one block are computed in: float64
    (exact to rounding) or float32 (about twice as fast; each block's float32 sums are added into
    float64 totals, measured within 1e-6 of float64 on the benchmark).
    """

    def __init__(self, d_a: int, d_b: int, groups: int, precision: str = "float64") -> None:
        if precision not in ("float64", "float32"):
            raise InputError(f"precision must be float64 or float32; got {precision!r}")
        self.dtype = np.dtype(precision)
        self.groups = groups
        self.n = np.zeros(groups)
        self.sa, self.sb = np.zeros((groups, d_a)), np.zeros((groups, d_b))
        self.gaa, self.gbb = np.zeros((groups, d_a, d_a)), np.zeros((groups, d_b, d_b))
        self.gab = np.zeros((groups, d_a, d_b))
        self.shift_a: np.ndarray | None = None
        self.shift_b: np.ndarray | None = None

    def add(self, xa: np.ndarray, xb: np.ndarray, blocks: np.ndarray) -> None:
        """Rows of one batch; ``blocks[k]`` is row k's block number (non-decreasing)."""
        if xa.shape[0] == 0:
            return
        if self.shift_a is None or self.shift_b is None:
            self.shift_a = xa.mean(0, dtype=np.float64)
            self.shift_b = xb.mean(0, dtype=np.float64)
        sa = self.shift_a.astype(self.dtype)
        sb = self.shift_b.astype(self.dtype)
        edges = np.flatnonzero(np.diff(blocks)) + 1
        starts = np.r_[0, edges]
        ends = np.r_[edges, blocks.size]
        for lo, hi in ((s, min(s + ADD_ROWS, e)) for s0, e in zip(starts, ends) for s in range(s0, e, ADD_ROWS)):
            g = int(blocks[lo]) % self.groups
            ca = xa[lo:hi].astype(self.dtype) - sa
            cb = xb[lo:hi].astype(self.dtype) - sb
            self.n[g] += hi - lo
            self.sa[g] += ca.sum(0, dtype=np.float64)
            self.sb[g] += cb.sum(0, dtype=np.float64)
            self.gaa[g] += ca.T @ ca
            self.gbb[g] += cb.T @ cb
            self.gab[g] += ca.T @ cb

    def cka(self, drop: int | None = None) -> float:
        keep = np.ones(self.groups, bool)
        if drop is not None:
            keep[drop] = False
        n = self.n[keep].sum()
        if n < 2:
            return float("nan")
        return cka_from_moments(n, self.sa[keep].sum(0), self.sb[keep].sum(0), self.gaa[keep].sum(0),
                                self.gbb[keep].sum(0), self.gab[keep].sum(0))

    def jackknife(self, level: float = 0.95) -> tuple[float, float]:
        """Delete-a-group jackknife interval (t with groups − 1 df); NaN with fewer than 2 filled groups."""
        filled = [g for g in range(self.groups) if self.n[g] > 0]
        if len(filled) < 2:
            return float("nan"), float("nan")
        loo = np.array([self.cka(drop=g) for g in filled])
        m = len(filled)
        se = float(np.sqrt((m - 1) / m * ((loo - loo.mean()) ** 2).sum()))
        half = float(student_t.ppf(0.5 + level / 2, m - 1)) * se
        point = self.cka()
        return point - half, point + half


# --------------------------------------------------------------------------- the streamed pass


@dataclass
class PairedSimilarity:
    """Per-id raw and aligned cosine of the shared ids (in the later table's row order) and linear CKA.

    ``raw_cosine`` is None when the dims differ (same-id cosine is undefined there)."""

    ids: np.ndarray
    pos_a: np.ndarray            # row of each shared id in the earlier table
    pos_b: np.ndarray            # ... and in the later one
    raw_cosine: np.ndarray | None
    aligned_cosine: np.ndarray
    cka: float
    cka_low: float
    cka_high: float
    alignment: Alignment
    n_a: int
    n_b: int
    n_zero_norm: int
    cka_precision: str = "float64"
    blocks: int = 1              # passes over the later table (blocks of the earlier one held in memory)

    @property
    def n_shared(self) -> int:
        return int(self.ids.size)


def _cosine(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise cosine (0 where a row has no direction) and the mask of rows where it is defined."""
    dots = np.einsum("ij,ij->i", x, y)
    den = np.sqrt(np.einsum("ij,ij->i", x, x)) * np.sqrt(np.einsum("ij,ij->i", y, y))
    ok = den > 0
    out = np.zeros(dots.shape, np.float32)
    np.divide(dots, den, out=out, where=ok)
    np.clip(out, -1.0, 1.0, out=out)
    return out, ok


def gather_rows(snapshot: Snapshot, kind: TableKind | str, rows: np.ndarray, *,
                batch_rows: int = _BATCH_ROWS) -> np.ndarray:
    """Rows ``rows`` (row numbers in file order, any order) as a float32 ``(len(rows), dim)`` matrix,
    in one streamed pass over the table: only the result and one batch of at most ``batch_rows`` rows
    are held, whatever the file's layout (mapped pages are dropped after each batch by the reader)."""
    rows = np.asarray(rows, dtype=np.int64)
    out = np.empty((rows.size, snapshot.info(kind).dim), np.float32)
    order = np.argsort(rows, kind="stable")
    wanted = rows[order]
    lo = 0
    for batch in snapshot.vector_batches(kind, rows=batch_rows):
        hi = lo + batch.shape[0]
        i0, i1 = np.searchsorted(wanted, [lo, hi])
        if i1 > i0:
            out[order[i0:i1]] = batch[wanted[i0:i1] - lo]
        lo = hi
    return out


def shared_positions(a: Snapshot, b: Snapshot, kind: TableKind,
                     joined: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ids of ``a``, ids of ``b``, row in ``a`` and row in ``b`` of every shared id, in ``b``'s row
    order) from :func:`join_ids` (or ``joined``, its result); no shared id is the user's error."""
    ids_a, ids_b, pos = joined if joined is not None else join_ids(a, b, kind)
    shared = pos >= 0
    if not shared.any():
        raise InputError(
            f"no id of the {kind.value} table in {b.path} is present in {a.path} (first ids: {ids_b[0]!r} vs "
            f"{ids_a[0]!r}); paired measures need shared ids — the unpaired drift tests do not")
    return ids_a, ids_b, pos[shared], np.flatnonzero(shared).astype(np.int64)


def paired_similarity(a: Snapshot, b: Snapshot, kind: TableKind | str = TableKind.UR, *,
                      fit_sample: int = FIT_SAMPLE, seed: int = 0, batch_rows: int = _BATCH_ROWS,
                      memory_mb: float = DEFAULT_MEMORY_MB, held_bytes: float = 0.0, block_rows: int | None = None,
                      verify: bool = True, progress: bool = False,
                      joined: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                      precision: str = "auto") -> PairedSimilarity:
    """Aligned and raw cosine of every id in both versions' ``kind`` tables, and linear CKA, streamed.

    ``a`` is the earlier (incumbent) version, ``b`` the later (candidate) one; ``b`` is aligned into
    ``a``'s space. ``verify`` checks both files' sha256 on a second core while the pass runs.
    ``joined`` reuses the result of :func:`join_ids`.

    Out of core: ``memory_mb`` bounds the whole pass (:func:`analysis.compare.budget.compare_budget`,
    with ``held_bytes`` of samples the caller holds beside it): the earlier table is held in blocks
    of as many rows as the bound leaves (the whole table when it fits: one pass), and the later one
    is streamed once per block in batches of at most ``batch_rows`` rows, whatever the files' layout.
    ``block_rows`` sets the block size instead (e.g. to force many blocks on a small table).

    ``precision`` is the dtype of CKA's cross-products (see :class:`_CkaAccumulator`): ``auto`` takes
    float64 up to :data:`FLOAT64_MAX` shared ids and float32 beyond, where its error (measured 8e-9 at
    1M ids) is far inside CKA's own jackknife interval and it halves the pass's largest cost. The
    cross-products run on a worker thread (BLAS releases the GIL) while the main thread gathers and
    takes cosines, with at most two batches in flight; every BLAS call uses one thread, since two
    BLAS threads fighting a busy core were measured 5× slower than one.
    """
    kind = TableKind.parse(kind)
    if batch_rows <= 0:
        raise InputError(f"batch_rows must be positive; got {batch_rows}")
    with ThreadPoolExecutor(max_workers=1) as pool, ThreadPoolExecutor(max_workers=1) as worker, \
            threadpool_limits(1, user_api="blas"):
        checks: list[Future[None]] = [pool.submit(s.verify_checksum, kind) for s in (a, b)] if verify else []
        ids_a, ids_b, pos_a, pos_b = shared_positions(a, b, kind, joined)
        if precision == "auto":
            precision = "float64" if pos_b.size <= FLOAT64_MAX else "float32"
        d_a, d_b = a.info(kind).dim, b.info(kind).dim
        n_a = a.info(kind).rows
        fit_n = min(pos_b.size, fit_sample)
        held = max(held_bytes, fit_bytes(fit_n, d_a, d_b))
        budget_batch, budget_block = compare_budget(a, b, kind, memory_mb, held_bytes=held, batch_rows=batch_rows)
        if block_rows is None:
            batch_rows, block_rows = budget_batch, budget_block
        elif block_rows <= 0:
            raise InputError(f"block_rows must be positive; got {block_rows}")
        fit = sample_positions(pos_b.size, fit_sample, seed)
        alignment = fit_alignment(gather_rows(a, kind, pos_a[fit], batch_rows=batch_rows),
                                  gather_rows(b, kind, pos_b[fit], batch_rows=batch_rows))
        w = alignment.matrix.astype(np.float32)
        raw = np.zeros(pos_b.size, np.float32) if d_a == d_b else None
        aligned = np.zeros(pos_b.size, np.float32)
        zero = 0
        acc = _CkaAccumulator(d_a, d_b, JACKKNIFE_GROUPS, precision)
        jblock = int(np.clip(b.info(kind).rows // (8 * JACKKNIFE_GROUPS), 1, JACKKNIFE_BLOCK))  # ≥ 8 per group
        n_blocks = -(-n_a // block_rows)
        pending: list[Future[None]] = []
        # three buffer pairs in rotation: the batch being read and the two the worker may still hold
        ring = [(np.empty((batch_rows, d_a), np.float32), np.empty((batch_rows, d_b), np.float32))
                for _ in range(3)]
        bar = tqdm(total=n_blocks * pos_b.size, desc=f"compare {kind.value}", unit="id", unit_scale=True,
                   disable=not progress, leave=False)
        step, lo = 0, 0
        for held_a in _read_blocks(a, kind, batch_rows, block_rows):
            hi = lo + held_a.shape[0]
            r0 = 0
            for batch in b.vector_batches(kind, rows=batch_rows):
                r1 = r0 + batch.shape[0]
                k0, k1 = (int(x) for x in np.searchsorted(pos_b, [r0, r1]))
                if n_blocks == 1:
                    ks = np.arange(k0, k1)
                else:
                    ks = k0 + np.flatnonzero((pos_a[k0:k1] >= lo) & (pos_a[k0:k1] < hi))
                m = ks.size
                if m:
                    buf_a, buf_b = ring[step % 3]
                    step += 1
                    xb = np.take(batch, pos_b[ks] - r0, axis=0, out=buf_b[:m])
                    xa = np.take(held_a, pos_a[ks] - lo, axis=0, out=buf_a[:m])
                    if acc.shift_a is None:                  # the shift comes from the first batch, before any add
                        acc.shift_a, acc.shift_b = xa.mean(0, dtype=np.float64), xb.mean(0, dtype=np.float64)
                    if len(pending) == 2:
                        pending.pop(0).result()
                    pending.append(worker.submit(acc.add, xa, xb, pos_b[ks] // jblock))
                    if raw is not None:
                        raw[ks], ok = _cosine(xb, xa)
                        zero += int((~ok).sum())
                    aligned[ks], _ = _cosine(xb @ w, xa)
                bar.update(k1 - k0)
                r0 = r1
            lo = hi
        for job in pending:
            job.result()
        bar.close()
        for check in checks:
            check.result()  # the reader's checksum-mismatch error, if any
    low, high = acc.jackknife()
    return PairedSimilarity(ids=ids_b[pos_b], pos_a=pos_a, pos_b=pos_b, raw_cosine=raw, aligned_cosine=aligned,
                            cka=acc.cka(), cka_low=low, cka_high=high, alignment=alignment, n_a=int(ids_a.size),
                            n_b=int(ids_b.size), n_zero_norm=zero, cka_precision=precision, blocks=n_blocks)
