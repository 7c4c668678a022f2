"""The paired pass of a version comparison on an engine (issue 18): a hash-partitioned join by id.

:func:`analysis.compare.paired.paired_similarity` streams the later table against blocks of the
earlier one in this process. :func:`paired_similarity_partitioned` computes the same
:class:`~analysis.compare.paired.PairedSimilarity` on a :class:`lee.engine.Engine` instead, with
volatility's partitioning (:func:`analysis.volatility.split_by_id_hash`, :func:`~analysis.volatility.id_partition`):

* map tasks read row ranges of both tables and split each by ``hash(id) % parts`` (kept in the
  engine's object store);
* reduce task ``p`` joins partition ``p`` of the earlier table with partition ``p`` of the later one
  by id and returns, for its shared ids, their rows in both tables, the raw and aligned cosine per
  id (computed as the local pass computes them: float32, one BLAS thread) and CKA's per-group
  moments over its rows (float64, about the one shift every task is given);
* the driver adds the moments in partition order 0, 1, …, parts − 1 (a fixed order, so a rerun
  gives the same bits) and puts the per-id values back in the later table's row order.

What works on a stated sample stays in the driver, drawn exactly as the local pass draws it: the
alignment is fitted on the same seeded sample of shared ids (so ``W`` is the same matrix), and the
driver keeps the id-only join (:func:`~analysis.compare.paired.join_ids`) that the samples are drawn
from and that the tasks' joins are checked against. CKA's shift is the fit sample's column means
(the local pass takes its first batch's): CKA does not depend on the shift, which only guards
precision, so the two agree to rounding. CKA's cross-products are float64 here whatever the size
(the local pass takes float32 beyond :data:`~analysis.compare.paired.FLOAT64_MAX` shared ids, measured
within 1e-8 of float64): the workers share that cost, and every sum stays exact to rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from analysis.compare.budget import JACKKNIFE_GROUPS
from analysis.compare.paired import (
    FIT_SAMPLE,
    JACKKNIFE_BLOCK,
    PairedSimilarity,
    _CkaAccumulator,
    _cosine,
    fit_alignment,
    gather_rows,
    sample_positions,
    shared_positions,
)
from analysis.volatility import (
    ROWS_PER_TASK,
    _Block,
    _concat,
    _in_row_order,
    _unique_index,
    scatter_by_id_hash,
)
from lee.engine import Engine
from lee.snapshot import Snapshot, TableKind

__all__ = ["PairedPartition", "paired_partition", "paired_similarity_partitioned"]


@dataclass
class PairedPartition:
    """One partition's share of the paired pass (rows index the tables' file order)."""

    rows_b: np.ndarray            # rows of the later table whose id is in both, increasing
    rows_a: np.ndarray            # ... and each one's row in the earlier table
    raw: np.ndarray | None        # float32 same-id cosine (None when the dims differ)
    aligned: np.ndarray           # float32 cosine of b W and a
    n_zero_norm: int
    n: np.ndarray                 # CKA's per-group moments about the shared shift (float64)
    sa: np.ndarray
    sb: np.ndarray
    gaa: np.ndarray
    gbb: np.ndarray
    gab: np.ndarray


def _aligned(xb: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``xb @ w`` in float32 as the local pass takes it: a matrix product (one row would go through
    BLAS's matrix-vector kernel, whose rounding may differ, so it is padded to two)."""
    if xb.shape[0] == 1:
        return (np.concatenate([xb, xb]) @ w)[:1]
    return xb @ w


def paired_partition(a: Snapshot, b: Snapshot, kind: TableKind, n_blocks_a: int, w: np.ndarray,
                     shift_a: np.ndarray, shift_b: np.ndarray, jblock: int, *blocks: _Block) -> PairedPartition:
    """Reduce side: ``blocks`` holds this partition's blocks of the earlier table ``a`` (the first
    ``n_blocks_a``), then of the later table ``b``, each in row order. ``w`` is the float32 alignment,
    ``shift_*`` CKA's shift, ``jblock`` the rows per jackknife block of the later table."""
    ba = _concat(blocks[:n_blocks_a], a.info(kind).dim)
    bb = _concat(blocks[n_blocks_a:], b.info(kind).dim)
    index_a = _unique_index(ba.ids, a, kind)
    _unique_index(bb.ids, b, kind)
    pos = index_a.get_indexer(bb.ids)
    shared = np.flatnonzero(pos >= 0)             # increasing: the later table's rows stay in row order
    rows_b, rows_a = bb.rows[shared], ba.rows[pos[shared]]
    xb = np.ascontiguousarray(bb.vectors[shared])
    xa = np.ascontiguousarray(ba.vectors[pos[shared]])
    acc = _CkaAccumulator(xa.shape[1], xb.shape[1], JACKKNIFE_GROUPS, "float64")
    acc.shift_a, acc.shift_b = shift_a, shift_b
    raw, zero = None, 0
    with threadpool_limits(1, user_api="blas"):   # as the local pass: one BLAS thread
        acc.add(xa, xb, rows_b // jblock)
        if xa.shape[1] == xb.shape[1]:
            raw, ok = _cosine(xb, xa)
            zero = int((~ok).sum())
        aligned, _ = _cosine(_aligned(xb, w), xa)
    return PairedPartition(rows_b, rows_a, raw, aligned, zero, acc.n, acc.sa, acc.sb, acc.gaa, acc.gbb, acc.gab)


def _verify_table(snapshot: Snapshot, kind: TableKind) -> None:
    """The file's sha256 and page CRCs (what no row range checks)."""
    snapshot.verify_checksum(kind)


def _merge(done: Sequence[PairedPartition], d_a: int, d_b: int, shift_a: np.ndarray,
           shift_b: np.ndarray) -> _CkaAccumulator:
    """CKA's moments of every partition, added in the order given (partition 0 first)."""
    acc = _CkaAccumulator(d_a, d_b, JACKKNIFE_GROUPS, "float64")
    acc.shift_a, acc.shift_b = shift_a, shift_b
    for part in done:
        acc.n += part.n
        acc.sa += part.sa
        acc.sb += part.sb
        acc.gaa += part.gaa
        acc.gbb += part.gbb
        acc.gab += part.gab
    return acc


def paired_similarity_partitioned(a: Snapshot, b: Snapshot, kind: TableKind | str = TableKind.UR, *,
                                  engine: Engine, fit_sample: int = FIT_SAMPLE, seed: int = 0, verify: bool = True,
                                  joined: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                                  parts: int | None = None, rows_per_task: int = ROWS_PER_TASK) -> PairedSimilarity:
    """:func:`~analysis.compare.paired.paired_similarity` as a hash-partitioned join on ``engine`` (see
    the module's docstring): the same ids, per-id cosines and alignment, CKA and its interval to rounding.

    ``parts`` (default: partitions of about ``PARTITION_BYTES`` of both tables' vectors, at least twice
    the engine's parallelism) sets the partition count, ``rows_per_task`` the map tasks' row ranges. A
    worker holds one partition of both tables, about (n_a · d_a + n_b · d_b) · 4 / parts bytes, plus one
    map range and CKA's per-group moments (20 · (d_a² + d_b² + d_a·d_b) · 8 bytes); the driver holds the
    ids, the fit sample and the per-id results, as the local pass does.
    """
    kind = TableKind.parse(kind)
    ia, ib = a.info(kind), b.info(kind)
    d_a, d_b = ia.dim, ib.dim
    ids_a, ids_b, pos_a, pos_b = shared_positions(a, b, kind, joined)
    parts, ranges_a, _, handles = scatter_by_id_hash(engine, a, b, kind, parts, rows_per_task)
    # meanwhile, in the driver: the alignment on the same seeded sample as the local pass
    fit = sample_positions(pos_b.size, fit_sample, seed)
    fit_a, fit_b = gather_rows(a, kind, pos_a[fit]), gather_rows(b, kind, pos_b[fit])
    alignment = fit_alignment(fit_a, fit_b)
    shift_a, shift_b = fit_a.mean(0, dtype=np.float64), fit_b.mean(0, dtype=np.float64)
    del fit_a, fit_b
    if verify:
        for _ in engine.map(_verify_table, [(a, kind), (b, kind)],
                            labels=[str(a.table_path(kind)), str(b.table_path(kind))]):
            pass
    w = alignment.matrix.astype(np.float32)
    jblock = int(np.clip(ib.rows // (8 * JACKKNIFE_GROUPS), 1, JACKKNIFE_BLOCK))   # as the local pass
    n_map_a = len(ranges_a)
    results: list[PairedPartition | None] = [None] * parts
    w_ref, sa_ref, sb_ref = engine.put(w), engine.put(shift_a), engine.put(shift_b)
    for p, res in engine.map(paired_partition, [(a, b, kind, n_map_a, w_ref, sa_ref, sb_ref, jblock,
                                                 *(h[p] for h in handles)) for p in range(parts)],
                             labels=[f"compare partition {p}/{parts}" for p in range(parts)]):
        results[p] = res
    del handles
    done = [r for r in results if r is not None]
    rows_b, rows_a, aligned = _in_row_order([r.rows_b for r in done], [r.rows_b for r in done],
                                            [r.rows_a for r in done], [r.aligned for r in done])
    if not (np.array_equal(rows_b, pos_b) and np.array_equal(rows_a, pos_a)):   # a bug, never a user's error
        raise RuntimeError(f"the partitioned join of {kind.value} ({a.table_path(kind)} vs {b.table_path(kind)}) "
                       f"found {rows_b.size:,} shared ids where the id join found {pos_b.size:,}")
    raw = None
    if d_a == d_b:
        raw, = _in_row_order([r.rows_b for r in done], [r.raw for r in done if r.raw is not None])
        raw = raw.astype(np.float32, copy=False)
    acc = _merge(done, d_a, d_b, shift_a, shift_b)
    low, high = acc.jackknife()
    return PairedSimilarity(ids=ids_b[pos_b], pos_a=pos_a, pos_b=pos_b, raw_cosine=raw,
                            aligned_cosine=aligned.astype(np.float32, copy=False), cka=acc.cka(), cka_low=low,
                            cka_high=high, alignment=alignment, n_a=int(ids_a.size), n_b=int(ids_b.size),
                            n_zero_norm=sum(r.n_zero_norm for r in done), cka_precision="float64", blocks=1)
