"""Row ranges of a snapshot table, read on their own: the unit of work of partitioned analyses.

An engine (``lee.engine``) gives each task one range ``[lo, hi)`` of a table's rows; the task reads
only the Parquet row groups that overlap it (:func:`read_rows`), checked as every reader checks
(safe open, schema against the manifest, page CRCs on decode, NaN/Inf and the magnitude bound,
ids' type and uniqueness within the range). What a range cannot see — the file's sha256 and
duplicate ids across ranges — the caller checks once per table (:meth:`Snapshot.verify_checksum`,
:meth:`Snapshot.load_ids`), e.g. as two more tasks.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from lee.errors import SnapshotError
from lee.snapshot.checks import check_ids, check_vectors
from lee.snapshot.format import EmbeddingTable, TableKind
from lee.snapshot.parquet_io import from_arrow
from lee.snapshot.reader import Snapshot

__all__ = ["read_rows", "row_group_starts", "row_ranges"]


def row_group_starts(snapshot: Snapshot, kind: TableKind | str) -> np.ndarray:
    """First row of every Parquet row group of the table, plus its row count at the end."""
    with snapshot._table_file(kind) as tf:  # noqa: SLF001 - the reader's one safe way in, same package
        md = snapshot._parquet(tf).metadata  # noqa: SLF001
        sizes = [md.row_group(g).num_rows for g in range(md.num_row_groups)]
        info, path = tf.info, tf.path
    starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
    if starts[-1] != info.rows:
        raise SnapshotError(f"holds {int(starts[-1])} rows but the manifest says {info.rows}", path=path)
    return starts


def row_ranges(snapshot: Snapshot, kind: TableKind | str, rows_per_range: int) -> list[tuple[int, int]]:
    """The table cut into ranges of about ``rows_per_range`` rows, on row-group boundaries where the
    row groups are smaller than that (whole groups per range), inside groups where they are larger."""
    if rows_per_range <= 0:
        raise SnapshotError(f"rows per range must be positive; got {rows_per_range}")
    starts = row_group_starts(snapshot, kind)
    cuts = [0]
    for g0, g1 in zip(starts[:-1].tolist(), starts[1:].tolist()):
        if g1 - g0 > rows_per_range:              # a large group: close what came before, cut inside it
            if g0 > cuts[-1]:
                cuts.append(g0)
            cuts += list(range(g0 + rows_per_range, g1, rows_per_range)) + [g1]
        elif g1 - cuts[-1] >= rows_per_range:     # small groups: whole groups until a range is full
            cuts.append(g1)
    if cuts[-1] != int(starts[-1]):
        cuts.append(int(starts[-1]))
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:])]


def read_rows(snapshot: Snapshot, kind: TableKind | str, lo: int, hi: int, *,
              allow_nonfinite: bool = False) -> EmbeddingTable:
    """Rows ``[lo, hi)`` of the table (ids, float32 vectors, in file order), read from the row
    groups that overlap them and copied out of the mapped file."""
    kind = TableKind.parse(kind)
    info = snapshot.info(kind)
    if not 0 <= lo < hi <= info.rows:
        raise SnapshotError(f"row range [{lo}, {hi}) is outside the table's {info.rows} rows",
                            path=snapshot.table_path(kind))
    with snapshot._table_file(kind) as tf:  # noqa: SLF001 - the reader's one safe way in, same package
        pf = snapshot._parquet(tf)  # noqa: SLF001
        md = pf.metadata
        sizes = [md.row_group(g).num_rows for g in range(md.num_row_groups)]
        starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        groups = [g for g in range(md.num_row_groups) if starts[g] < hi and starts[g + 1] > lo]
        try:
            table = pf.read_row_groups(groups).slice(lo - int(starts[groups[0]]), hi - lo)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise SnapshotError(f"rows {lo}..{hi} could not be read ({exc})", path=tf.path) from None
        chunk = from_arrow(table, path=tf.path)
        ids = chunk.ids.copy()
        vectors = np.array(chunk.vectors, dtype=np.float32, copy=True, order="C")
        path = tf.path
    if vectors.shape[0] != hi - lo:
        raise SnapshotError(f"rows {lo}..{hi}: read {vectors.shape[0]} rows", path=path)
    check_vectors(vectors, ids, where=path, dim=info.dim, allow_nonfinite=allow_nonfinite,
                  max_abs=snapshot.max_abs, first_row=lo)
    check_ids(ids, where=path, id_type=info.id_type)
    return EmbeddingTable(ids=ids, vectors=vectors)
