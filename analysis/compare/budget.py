"""The memory bound of a version comparison (issue 18): what each phase holds, and the chunk sizes.

:func:`analysis.compare.compare_versions` runs in phases — the alignment's fit sample, the streamed
paired pass, the neighbour population's kNN search, K-means on the cluster sample, the drift tests on
their samples — each holding its own working set beside what the whole comparison holds (both id
columns, the join and the per-id results: :data:`ID_BYTES_A`/:data:`ID_BYTES_B` per id beyond the
reader's own :meth:`Snapshot.id_bytes`). The samples are stated by the caller (``fit_sample``,
``knn_max``, ``drift_sample``), so their cost is known up front: :func:`sample_bytes` is the largest
phase's, and :func:`compare_budget` sizes the paired pass's batches of the later table and blocks of
the earlier one from what the bound leaves — or refuses before reading a vector, naming the least
bound that would do. The constants are the same cost model as the reader's (``lee.snapshot.reader``)
and the volatility join's, checked by the subprocess measurement in tests/test_memory_cap.py.
"""

from __future__ import annotations

from lee.errors import InputError
from lee.snapshot import Snapshot, TableKind

ID_BYTES_A = 40
"""Per id of the earlier table: its ids' hash index for the join, beyond the reader's own id cost."""
ID_BYTES_B = 56
"""Per id of the later table: its row in the earlier one, both positions, raw and aligned cosine, the result's id."""
_FIXED_BYTES = 16 << 20      # the reader's page buffers and the checksums' read buffers
_DECODE_VALUE_BYTES = 24     # per value of a batch being read (Arrow's decode; a mapped page costs less)
ADD_ROWS = 1_024
"""CKA's cross-products are taken over at most this many rows at a time (their float64 copies are held)."""
JACKKNIFE_GROUPS = 20


def cka_bytes(d_a: int, d_b: int) -> int:
    """CKA's per-group moments (float64) and one sub-block's centred float64 copies."""
    return 8 * JACKKNIFE_GROUPS * (d_a * d_a + d_b * d_b + d_a * d_b + d_a + d_b) + 16 * ADD_ROWS * (d_a + d_b)


def fit_bytes(rows: int, d_a: int, d_b: int) -> int:
    """The alignment's fit sample: both versions' rows (float32), their unit float64 copies, the fitted rows."""
    return rows * ((d_a + d_b) * 12 + d_a * 16)


def knn_bytes(rows: int, d_a: int, d_b: int, k: int) -> int:
    """kNN overlap on ``rows`` ids: both versions' rows and unit copies, faiss's index copy and its search
    blocks (4,096 queries × 1,024 rows of distances), both neighbour lists and the overlap's sort."""
    d = max(d_a, d_b)
    return rows * ((d_a + d_b) * 8 + d * 4 + 48 * k + 16) + min(rows, 4096) * min(rows, 1024) * 4 \
        + min(rows, 16_384) * (k + 1) * 24


def cluster_bytes(rows: int, held_rows: int, d_a: int, d_b: int, clusters: int) -> int:
    """K-means on ``rows`` ids while the neighbour population (``held_rows``) is still held."""
    return held_rows * (d_a + d_b) * 4 + rows * ((d_a + d_b) * 12 + 16 * clusters + 64) + (4 << 20)


def drift_bytes(n_a: int, n_b: int, d: int) -> int:
    """MMD and the domain classifier on samples of ``n_a`` and ``n_b`` rows (float64): the pooled
    sample's distance and kernel matrices, the classifier's out-of-fold matrix, the permutation blocks."""
    m = n_a + n_b
    return m * d * 24 + 6 * m * m * 8 + m * 1_600 + (4 << 20)


def sample_bytes(*, n_shared: int, n_a: int, n_b: int, d_a: int, d_b: int, fit_sample: int, knn_max: int,
                 cluster_max: int, k: int, clusters: int, drift_sample: int) -> int:
    """The largest of the phases' working sets (they run one after another)."""
    pop = min(n_shared, knn_max)
    return max(fit_bytes(min(n_shared, fit_sample), d_a, d_b), knn_bytes(pop, d_a, d_b, k),
               cluster_bytes(min(pop, cluster_max), pop, d_a, d_b, clusters),
               drift_bytes(min(n_a, drift_sample), min(n_b, drift_sample), max(d_a, d_b)))


def compare_budget(a: Snapshot, b: Snapshot, kind: TableKind | str, memory_mb: float, *, held_bytes: float = 0.0,
                   batch_rows: int = 65_536) -> tuple[int, int]:
    """``(batch_rows, block_rows)`` of the paired pass within ``memory_mb`` MiB: what the comparison holds
    whole (ids, join, per-id results, CKA's moments, ``held_bytes`` of samples), then a quarter of what is
    left (at most ``batch_rows``; 1,024 rows when a quarter holds fewer) for the batches being read and
    gathered, the rest for the block of the earlier table held in memory (the whole table when it fits:
    one pass). An :class:`InputError` names
    the least bound when not even 1,024-row batches and blocks fit."""
    kind = TableKind.parse(kind)
    if not memory_mb > 0:
        raise InputError(f"the memory bound must be a positive number of MiB; got {memory_mb!r}")
    ia, ib = a.info(kind), b.info(kind)
    d_a, d_b = ia.dim, ib.dim
    fixed = (_FIXED_BYTES + ia.rows * (a.id_bytes(kind) + ID_BYTES_A) + ib.rows * (b.id_bytes(kind) + ID_BYTES_B)
             + cka_bytes(d_a, d_b) + held_bytes)
    left = memory_mb * (1 << 20) - fixed
    # per row of a batch: the batches of both tables being read, three gather buffers of each, b W, cosines
    per_batch_row = (d_a + d_b) * (_DECODE_VALUE_BYTES + 12) + d_a * 4 + 64
    least = min(1024, batch_rows, max(ia.rows, ib.rows))
    batch = int(min(batch_rows, max(ia.rows, ib.rows), left / 4 // per_batch_row))
    if batch < least:  # a tight bound: batches of 1,024 rows, the rest for the block
        batch = int(min(least, left // (per_batch_row + 4 * d_a)))
    block = int(min(ia.rows, (left - batch * per_batch_row) // (4 * d_a)))
    if batch < least or block < min(1024, ia.rows):
        need = (fixed + 1024 * (per_batch_row + 4 * d_a)) / (1 << 20)
        raise InputError(
            f"comparing {kind.value} ({a.table_path(kind)} vs {b.table_path(kind)}) cannot run within "
            f"{memory_mb:g} MiB: the ids of both tables, the join and the per-id results take "
            f"{(ia.rows * (a.id_bytes(kind) + ID_BYTES_A) + ib.rows * (b.id_bytes(kind) + ID_BYTES_B)) / (1 << 20):.1f}"
            f" MiB ({ia.rows:,} + {ib.rows:,} ids), CKA's moments {cka_bytes(d_a, d_b) / (1 << 20):.1f} MiB and the "
            f"samples (alignment fit, neighbours, clusters, drift) {held_bytes / (1 << 20):.1f} MiB at their largest; "
            f"give --memory-mb {int(need) + 1} or more, or smaller samples (--knn-max, --sample)")
    return max(1, batch), max(1, block)
