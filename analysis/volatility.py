"""Volatility: how much each id's representation moved between two snapshots of one variant.

For every id present in both snapshots (by default a snapshot and the one 5 minutes before it)
the cosine similarity of its two vectors; the shares above 0.99 and 0.95 summarise it (the seed
paper reports 76.0% and 95.7% for its users). Ids in only one snapshot are counted as new or lost.

The join is by id and streams the later table in Parquet batches against the earlier one held in
memory — or, when the earlier table exceeds what ``memory_mb`` leaves for it, against one block of
it at a time (a block nested-loop join: one more pass over the later file per block). Only the id
columns and per-id arrays (positions, dot products, norms: :data:`ID_BYTES` per id) are ever held
whole; ``memory_mb`` bounds them, the later table's batch and the earlier table's block together,
so a join of tables larger than the bound stays within it, with int64 or string ids.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from analysis._inputs import require_columns
from lee.engine import Engine
from lee.errors import InputError, LeeError, SnapshotError
from lee.results import SavedResult, register
from lee.snapshot import Snapshot, SnapshotStore, TableKind
from lee.snapshot.reader import DEFAULT_MEMORY_MB, MAX_CHUNK_ROWS, RowGather
from lee.timeutil import iso

THRESHOLDS = (0.99, 0.95)
_BATCH_ROWS = MAX_CHUNK_ROWS
ID_BYTES = 80
"""Bytes per id of each table that the join holds whole (beyond the reader's own, see
:meth:`Snapshot.id_bytes`): the earlier ids' hash index, positions, hit counts, the later rows'
dot products and norms, the masks and the result's id and cosine arrays."""
_BATCH_VALUE_BYTES = 16   # per value of a later batch: its mapped pages, the shared rows, the gathered ones
_FIXED_BYTES = 16 << 20   # the reader's page buffers and the checksum's read buffer


def join_budget(before: Snapshot, after: Snapshot, kind: TableKind, memory_mb: float,
                batch_rows: int = _BATCH_ROWS) -> tuple[int, int]:
    """``(batch_rows, block_rows)`` that keep the join within ``memory_mb`` MiB: the per-id arrays
    first, then a quarter of what is left (at most ``batch_rows`` rows) for the later table's batch,
    the rest for the block of the earlier table held in memory."""
    ib, ia = before.info(kind), after.info(kind)
    dim = ib.dim
    fixed = (_FIXED_BYTES + ib.rows * (before.id_bytes(kind) + ID_BYTES)
             + ia.rows * (after.id_bytes(kind) + ID_BYTES))
    left = memory_mb * (1 << 20) - fixed
    per_batch_row = dim * _BATCH_VALUE_BYTES + 64
    batch = int(min(batch_rows, ia.rows, left / 4 // per_batch_row))
    block = int((left - batch * per_batch_row) // (4 * dim))
    if batch < 1 or block < 1:
        need = (fixed + 1024 * (per_batch_row + 4 * dim)) / (1 << 20)
        raise InputError(
            f"volatility of {kind.value} ({before.table_path(kind)} vs {after.table_path(kind)}) cannot run within "
            f"{memory_mb:g} MiB: the ids of both tables and the join's per-id arrays take {fixed / (1 << 20):.1f} "
            f"MiB ({ib.rows:,} + {ia.rows:,} ids); give --memory-mb {int(need) + 1} or more")
    return batch, block



@register("volatility")
@dataclass
class VolatilityResult(SavedResult):
    """Per-id cosine between two snapshots of one variant, with coverage of new and lost ids.

    ``ids[k]`` and ``cosine[k]`` are the shared ids in the later snapshot's row order. A zero
    vector has no direction: its cosine is 0 (scikit-learn's convention) and it is counted in
    ``n_zero_norm``.
    """

    variant: str
    kind: TableKind
    before: datetime
    after: datetime
    ids: np.ndarray
    cosine: np.ndarray
    n_before: int
    n_after: int
    new_ids: np.ndarray
    lost_ids: np.ndarray
    n_zero_norm: int = 0
    blocks: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_shared(self) -> int:
        return int(self.ids.size)

    @property
    def minutes_apart(self) -> float:
        return (self.after - self.before).total_seconds() / 60.0

    def share_above(self, threshold: float) -> float:
        """Share of shared ids whose cosine is strictly above ``threshold``."""
        return float((self.cosine > threshold).mean())

    def summary(self) -> dict[str, Any]:
        c = self.cosine.astype(np.float64)
        q = np.quantile(c, [0.05, 0.5]) if c.size else [np.nan, np.nan]
        return {
            "variant": self.variant, "table": self.kind.value,
            "before": iso(self.before), "after": iso(self.after), "minutes_apart": self.minutes_apart,
            "n_before": self.n_before, "n_after": self.n_after, "n_shared": self.n_shared,
            "n_new": int(self.new_ids.size), "n_lost": int(self.lost_ids.size),
            "coverage": self.n_shared / max(self.n_after, 1),
            "mean_cosine": float(c.mean()), "median_cosine": float(q[1]), "p05_cosine": float(q[0]),
            **{f"share_above_{t:g}": self.share_above(t) for t in THRESHOLDS},
            "n_zero_norm": self.n_zero_norm,
        }

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"histogram": self.histogram(), "cdf": self.cdf()}

    def histogram(self, bins: int = 100, lo: float | None = None) -> pd.DataFrame:
        """Counts of cosine in ``bins`` equal bins over [lo, 1] (lo: the 0.1% quantile, at most 0.9)."""
        if lo is None:
            lo = float(min(np.quantile(self.cosine, 0.001), 0.9)) if self.cosine.size else -1.0
        lo = max(-1.0, lo)
        counts, edges = np.histogram(np.clip(self.cosine, lo, 1.0), bins=bins, range=(lo, 1.0))
        return pd.DataFrame({"left": edges[:-1], "right": edges[1:], "count": counts,
                             "share": counts / max(self.n_shared, 1)})

    def cdf(self, points: int = 201) -> pd.DataFrame:
        """The empirical CDF at ``points`` quantiles: share of ids at or below each cosine."""
        share = np.linspace(0.0, 1.0, points)
        return pd.DataFrame({"cosine": np.quantile(self.cosine, share), "share_at_or_below": share})

    def by_attribute(self, attributes: pd.DataFrame, column: str, *, id_column: str | None = None,
                     bins: int | Sequence[float] | None = None) -> pd.DataFrame:
        """Volatility broken down by an attribute of the ids (activity level, segment, ...).

        ``attributes`` holds one row per id (``id_column``: ``user_id`` for user tables, ``item_id``
        for item tables by default). A numeric attribute with many values needs ``bins`` (an
        int gives quantile bins). Shared ids without a row fall into the group "(unknown)".
        """
        id_column = id_column or f"{self.kind.entity}_id"
        require_columns(attributes, [id_column, column], name="attributes")
        if attributes[id_column].duplicated().any():
            dup = attributes[id_column][attributes[id_column].duplicated()].iloc[0]
            raise InputError(f"attributes: column {id_column} has duplicate id {dup!r}; one row per id expected")
        values = attributes.set_index(id_column)[column].reindex(self.ids)
        if bins is not None:
            if not pd.api.types.is_numeric_dtype(values):
                raise InputError(f"attributes: bins need a numeric column; {column} is {values.dtype}")
            values = (pd.qcut(values, bins, duplicates="drop") if isinstance(bins, int)
                      else pd.cut(values, list(bins), include_lowest=True))
        elif pd.api.types.is_numeric_dtype(values) and values.nunique() > 50:
            raise InputError(f"attributes: column {column} is numeric with {values.nunique()} distinct values; "
                             "pass bins (a count of quantile bins or bin edges)")
        cat = values.astype("category") if not isinstance(values.dtype, pd.CategoricalDtype) else values
        if cat.isna().any():
            cat = cat.cat.add_categories("(unknown)").fillna("(unknown)")
        groups = cat.cat.rename_categories([str(c) for c in cat.cat.categories])  # bins keep their order
        frame = pd.DataFrame({column: groups.to_numpy(), "cosine": self.cosine.astype(np.float64)})
        g = frame.groupby(column, sort=True, observed=True)["cosine"]
        out = g.agg(n="size", mean_cosine="mean", median_cosine="median")
        for t in THRESHOLDS:
            out[f"share_above_{t:g}"] = g.apply(lambda c, t=t: float((c > t).mean()))
        return out.reset_index()


# --------------------------------------------------------------------------- the join


def _check_pair(before: Snapshot, after: Snapshot, kind: TableKind) -> None:
    ib, ia = before.info(kind), after.info(kind)
    pb, pa_ = before.table_path(kind), after.table_path(kind)
    if ib.dim != ia.dim:
        raise InputError(f"cannot compare {kind.value}: {pb} has dim {ib.dim} but {pa_} has dim "
                         f"{ia.dim}; volatility needs two snapshots of the same representation")
    if ib.id_type != ia.id_type:
        raise InputError(f"cannot compare {kind.value}: ids are {ib.id_type} in {pb} but {ia.id_type} in {pa_}")


def _unique_index(ids: np.ndarray, snap: Snapshot, kind: TableKind) -> pd.Index:
    index = pd.Index(ids)
    if not index.is_unique:
        dup = index[index.duplicated()][0]
        raise SnapshotError("duplicate id; ids must be unique", path=snap.table_path(kind), column="id",
                            id=dup.item() if isinstance(dup, np.generic) else dup)
    return index


def _norms(x: np.ndarray, snap: Snapshot, kind: TableKind, ids: np.ndarray, offset: int,
           rows: np.ndarray | None = None) -> np.ndarray:
    """Row norms; a NaN/Inf row is an error naming the file and its id (not a NaN cosine).
    Row ``k`` of ``x`` has id ``ids[offset + k]``, or ``ids[rows[k]]`` when ``rows`` is given."""
    n = np.sqrt(np.einsum("ij,ij->i", x, x))
    if not np.isfinite(n).all():
        k = int(np.flatnonzero(~np.isfinite(n))[0])
        bad = ids[offset + k] if rows is None else ids[rows[k]]
        raise SnapshotError("row holds NaN or Inf; volatility needs finite vectors", path=snap.table_path(kind),
                            column="vector", id=bad.item() if isinstance(bad, np.generic) else bad)
    return n


def cosine_by_id(before: Snapshot, after: Snapshot, kind: TableKind | str = TableKind.UR, *,
                 memory_mb: float = DEFAULT_MEMORY_MB, batch_rows: int = _BATCH_ROWS, verify: bool = True,
                 progress: bool = False, block_rows: int | None = None) -> VolatilityResult:
    """Cosine similarity of every id present in both snapshots' ``kind`` tables.

    ``memory_mb`` bounds the whole join (:func:`join_budget`): the per-id arrays, the later table
    streamed in batches of at most ``batch_rows`` rows and the block of the earlier table held in
    memory. ``block_rows`` sets the block's size instead (the later batches stay bounded by
    ``batch_rows``), e.g. to force many blocks on a small table. ``verify`` checks both files'
    checksums on a second core while the join runs; nothing is returned if a file does not match
    its manifest.
    """
    kind = TableKind.parse(kind)
    _check_pair(before, after, kind)
    if memory_mb <= 0 or batch_rows <= 0:
        raise InputError(f"memory_mb and batch_rows must be positive; got {memory_mb} and {batch_rows}")
    with ThreadPoolExecutor(max_workers=1) as pool:
        # hashlib releases the GIL: both checksums are computed on a second core while the join runs
        checks: list[Future[None]] = []
        if verify:
            checks = [pool.submit(s.verify_checksum, kind) for s in (before, after)]
        ids_b, ids_a = before.load_ids(kind), after.load_ids(kind)
        index_b = _unique_index(ids_b, before, kind)
        pos = index_b.get_indexer(ids_a)          # (n_after,) row of each later id in the earlier table
        shared = pos >= 0
        # duplicate later ids: shared ones would hit one earlier row twice; new ones are checked alone
        pos_shared = pos[shared]
        hits = np.bincount(pos_shared, minlength=ids_b.size)
        if (hits > 1).any():
            dup = ids_b[int(np.argmax(hits > 1))]
            raise SnapshotError("duplicate id; ids must be unique", path=after.table_path(kind), column="id",
                                id=dup.item() if isinstance(dup, np.generic) else dup)
        _unique_index(ids_a[~shared], after, kind)
        if not shared.any():
            raise InputError(
                f"no id of the {kind.value} table in {after.path} is present in {before.path} "
                f"(first ids: {ids_a[0]!r} vs {ids_b[0]!r}); volatility needs overlapping ids")
        seen_b = hits > 0

        dim = before.info(kind).dim
        if block_rows is None:
            batch_rows, block_rows = join_budget(before, after, kind, memory_mb, batch_rows)
        elif block_rows <= 0:
            raise InputError(f"block_rows must be positive; got {block_rows}")
        n_blocks = -(-ids_b.size // block_rows)
        bar = tqdm(total=n_blocks * ids_a.size, desc=f"volatility {kind.value}", unit="row", unit_scale=True,
                   disable=not progress, leave=False)
        scratch = np.empty((batch_rows, dim), np.float32)           # gathered earlier rows, reused
        dots = np.zeros(ids_a.size, np.float32)
        norm_a = np.zeros(ids_a.size, np.float32)
        norm_b = np.zeros(ids_a.size, np.float32)   # norm of each later row's earlier vector
        mapped = _mapped_rows(before, kind, block_rows)
        lo = 0
        for held in (iter([None]) if mapped is not None else _read_blocks(before, kind, batch_rows, block_rows)):
            hi = ids_b.size if held is None else lo + held.shape[0]  # None: gathered from the mapped file
            a0 = 0
            for batch in after.vector_batches(kind, rows=batch_rows):
                a1 = a0 + batch.shape[0]
                p = pos[a0:a1]
                if n_blocks == 1:   # one block: every shared row is in it
                    rows = None if shared[a0:a1].all() else np.flatnonzero(p >= 0)
                else:
                    rows = np.flatnonzero((p >= lo) & (p < hi))
                m = batch.shape[0] if rows is None else rows.size
                if m:
                    x = batch if rows is None else batch[rows]         # (m, d) later vectors
                    want = (p if rows is None else p[rows]) - lo
                    if held is None:  # (m, d) their earlier vectors, gathered from the mapped file
                        assert mapped is not None  # held is None only when the earlier table is mapped
                        y = mapped.take(want, scratch)
                    else:                 # ... or taken from the block held in memory
                        y = np.take(held, want, axis=0, out=scratch[:m])
                    out = slice(a0, a1) if rows is None else a0 + rows
                    dots[out] = np.einsum("ij,ij->i", x, y)
                    norm_a[out] = _norms(x, after, kind, ids_a[a0:a1] if rows is None else ids_a[a0:a1][rows], 0)
                    norm_b[out] = _norms(y, before, kind, ids_b, 0, rows=want + lo)
                bar.update(a1 - a0)
                a0 = a1
            lo = hi
        denom = norm_a[shared] * norm_b[shared]
        ok = denom > 0
        cos_shared = np.zeros(denom.size, np.float32)
        np.divide(dots[shared], denom, out=cos_shared, where=ok)
        np.clip(cos_shared, -1.0, 1.0, out=cos_shared)
        bar.close()
        for check in checks:
            check.result()  # raises the reader's checksum-mismatch error
    return VolatilityResult(
        variant=after.variant, kind=kind, before=before.event_time, after=after.event_time,
        ids=ids_a[shared], cosine=cos_shared, n_before=int(ids_b.size),
        n_after=int(ids_a.size), new_ids=ids_a[~shared], lost_ids=ids_b[~seen_b],
        n_zero_norm=int((~ok).sum()), blocks=n_blocks,
    )


def _mapped_rows(snap: Snapshot, kind: TableKind, block_rows: int) -> RowGather | None:
    """Row access into the mapped file, when it has the writer's layout and fits one block."""
    if snap.info(kind).rows > block_rows:
        return None
    return snap.row_gather(kind)


def _read_blocks(snap: Snapshot, kind: TableKind, batch_rows: int, block_rows: int) -> Iterator[np.ndarray]:
    """The table's vectors in blocks of at most ``block_rows`` rows, each copied once into one
    buffer that is reused from block to block (fresh pages are what cost most here)."""
    n = snap.info(kind).rows
    dim = snap.info(kind).dim
    buf = np.empty((min(block_rows, n), dim), np.float32)
    held = 0
    for b in snap.vector_batches(kind, rows=batch_rows):
        while b.shape[0]:
            take = min(buf.shape[0] - held, b.shape[0])
            buf[held:held + take] = b[:take]
            held += take
            b = b[take:]
            if held == buf.shape[0]:
                yield buf
                held = 0
    if held:
        yield buf[:held]


# --------------------------------------------------------------------------- entry points


def _join(before: Snapshot, after: Snapshot, kind: TableKind | str, engine: Engine | None,
          **kwargs: Any) -> VolatilityResult:
    """:func:`cosine_by_id` in this process (``engine`` None), else :func:`cosine_by_id_partitioned` on it."""
    if engine is None:
        return cosine_by_id(before, after, kind, **kwargs)
    return cosine_by_id_partitioned(before, after, kind, engine=engine, verify=kwargs.get("verify", True))


def volatility(store: SnapshotStore | str | Path, variant: str, kind: TableKind | str = TableKind.UR, *,
               at: str | datetime | int | None = None, minutes: float | None = None, tolerance_minutes: float = 0.0,
               engine: Engine | None = None, **kwargs: Any) -> VolatilityResult:
    """Volatility of ``variant`` at ``at`` (default: its latest snapshot) against the snapshot
    ``minutes`` before (default: the previous snapshot, whatever the gap; the result's
    ``minutes_apart`` says which gap was used). ``kwargs`` go to :func:`cosine_by_id` (``memory_mb``,
    ``verify``, ``progress``); with ``engine`` the join is hash-partitioned on it instead
    (:func:`cosine_by_id_partitioned`, equal results)."""
    store = store if isinstance(store, SnapshotStore) else SnapshotStore(store)
    after = store.latest(variant) if at is None else store.open(variant, at)
    if minutes is None:
        times = store.times(variant)
        k = times.index(after.event_time)
        if k == 0:
            raise InputError(f"{store.root / variant}: {iso(after.event_time)} is the variant's first snapshot; "
                             "volatility needs one before it")
        before = store.open(variant, times[k - 1])
    else:
        before = store.previous(after, minutes=minutes, tolerance_minutes=tolerance_minutes)
    return _join(before, after, kind, engine, **kwargs)


@register("volatility-series")
@dataclass
class VolatilitySeries(SavedResult):
    """Volatility between each pair of consecutive snapshots of one variant: one row per pair."""

    variant: str
    kind: TableKind
    table: pd.DataFrame

    def summary(self) -> dict[str, Any]:
        return {"variant": self.variant, "table": self.kind.value, "pairs": len(self.table),
                "mean_share_above_0.99": float(self.table["share_above_0.99"].mean()),
                "min_share_above_0.99": float(self.table["share_above_0.99"].min())}

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"series": self.table}


def volatility_series(store: SnapshotStore | str | Path, variant: str, kind: TableKind | str = TableKind.UR, *,
                      times: Sequence[datetime] | None = None, progress: bool = False, skip_errors: bool = False,
                      engine: Engine | None = None, **kwargs: Any) -> VolatilitySeries:
    """Volatility over a whole sequence of snapshots (consecutive pairs, oldest first).

    With ``skip_errors`` a pair that cannot be compared (e.g. a snapshot with NaN rows) becomes a
    row whose ``error`` column says why, instead of stopping the series.
    """
    store = store if isinstance(store, SnapshotStore) else SnapshotStore(store)
    kind = TableKind.parse(kind)
    times = list(times) if times is not None else store.times(variant)
    if len(times) < 2:
        raise InputError(f"variant {variant!r} has {len(times)} snapshot(s); a volatility series needs at least 2")
    rows = []
    for t0, t1 in tqdm(list(zip(times[:-1], times[1:])), desc=f"volatility {variant}", disable=not progress):
        try:
            res = _join(store.open(variant, t0), store.open(variant, t1), kind, engine, **kwargs)
        except LeeError as exc:
            if not skip_errors:
                raise
            rows.append({"variant": variant, "table": kind.value, "before": iso(t0), "after": iso(t1),
                         "error": str(exc)})
            continue
        rows.append({**res.summary(), "error": ""})
    return VolatilitySeries(variant, kind, pd.DataFrame(rows))


# --------------------------------------------------------------------------- partitioned join (engines)
# Volatility on an engine (lee.engine): a hash-partitioned join. Map tasks read row ranges of both
# tables and split each by hash(id) % parts; reduce task p joins partition p of the earlier table
# with partition p of the later one (an id lands in the same partition in both) and returns its
# shared ids' cosines with their row numbers; the driver puts them back in the later table's row
# order. Each cosine is computed as cosine_by_id computes it, so the result equals the local one.

PARTITION_BYTES = 256 << 20   # target size of one partition (both tables' vectors): a worker's working set
ROWS_PER_TASK = 4 * 131_072   # rows per map task (four of the writer's row groups)


def id_partition(ids: np.ndarray, parts: int) -> np.ndarray:
    """Partition (0..parts-1) of every id: pandas' stable hash of the value (SipHash with a fixed key
    for strings), so the same id lands in the same partition in every table and every process."""
    return (pd.util.hash_array(ids, categorize=False) % np.uint64(parts)).astype(np.int64)


@dataclass
class _Block:
    """Rows of one table that fall in one partition: their row numbers, ids and vectors."""

    rows: np.ndarray
    ids: np.ndarray
    vectors: np.ndarray


def split_by_id_hash(snapshot: Snapshot, kind: TableKind, lo: int, hi: int, parts: int) -> list[_Block]:
    """Map side: rows ``[lo, hi)`` of the table split into ``parts`` blocks by :func:`id_partition`."""
    from lee.snapshot.ranges import read_rows

    chunk = read_rows(snapshot, kind, lo, hi)
    part = id_partition(chunk.ids, parts)
    order = np.argsort(part, kind="stable")          # row order kept inside each partition
    bounds = np.searchsorted(part[order], np.arange(parts + 1))
    rows = np.arange(lo, hi, dtype=np.int64)
    return [_Block(rows[order[a:b]], chunk.ids[order[a:b]], chunk.vectors[order[a:b]])
            for a, b in zip(bounds[:-1], bounds[1:])]


@dataclass
class PartitionJoin:
    """Reduce side's answer for one partition (row numbers index the tables' file order)."""

    shared_rows: np.ndarray    # rows of the later table whose id is in both
    shared_ids: np.ndarray
    cosine: np.ndarray         # float32, as cosine_by_id computes it
    n_zero_norm: int
    new_rows: np.ndarray       # rows of the later table whose id is not in the earlier one
    new_ids: np.ndarray
    lost_rows: np.ndarray      # rows of the earlier table whose id is not in the later one
    lost_ids: np.ndarray


def _concat(blocks: Sequence[_Block], dim: int) -> _Block:
    if not blocks:
        return _Block(np.empty(0, np.int64), np.empty(0, np.int64), np.empty((0, dim), np.float32))
    return _Block(np.concatenate([b.rows for b in blocks]), np.concatenate([b.ids for b in blocks]),
                  np.concatenate([b.vectors for b in blocks]))


def join_partition(before: Snapshot, after: Snapshot, kind: TableKind, n_before: int,
                   *blocks: _Block) -> PartitionJoin:
    """Reduce side: ``blocks`` holds this partition's blocks of the earlier table (the first
    ``n_before``), then of the later one, each in row order."""
    dim = before.info(kind).dim
    b = _concat(blocks[:n_before], dim)
    a = _concat(blocks[n_before:], dim)
    index_b = _unique_index(b.ids, before, kind)
    _unique_index(a.ids, after, kind)
    pos = index_b.get_indexer(a.ids)
    shared = pos >= 0
    x = a.vectors[shared]
    y = b.vectors[pos[shared]]
    dots = np.einsum("ij,ij->i", x, y)
    denom = (_norms(x, after, kind, a.ids[shared], 0) * _norms(y, before, kind, b.ids[pos[shared]], 0))
    ok = denom > 0
    cos = np.zeros(denom.size, np.float32)
    np.divide(dots, denom, out=cos, where=ok)
    np.clip(cos, -1.0, 1.0, out=cos)
    seen = np.zeros(b.ids.size, bool)
    seen[pos[shared]] = True
    return PartitionJoin(a.rows[shared], a.ids[shared], cos, int((~ok).sum()), a.rows[~shared], a.ids[~shared],
                         b.rows[~seen], b.ids[~seen])


def _check_table(snapshot: Snapshot, kind: TableKind) -> None:
    """What no single range can check: the file's sha256 and page CRCs, and duplicate ids across ranges."""
    snapshot.verify_checksum(kind)
    snapshot.load_ids(kind)


def _in_row_order(rows: Sequence[np.ndarray], *values: Sequence[np.ndarray]) -> list[np.ndarray]:
    r = np.concatenate(list(rows)) if rows else np.empty(0, np.int64)
    order = np.argsort(r, kind="stable")
    return [np.concatenate(list(v))[order] if v else np.empty(0) for v in values]


def scatter_by_id_hash(engine: Engine, first: Snapshot, second: Snapshot, kind: TableKind, parts: int | None,
                       rows_per_task: int) -> tuple[int, list[tuple[int, int]], list[tuple[int, int]], list[list[Any]]]:
    """The map side of a join of two tables by id hash: every row range of ``first``, then of
    ``second``, split into ``parts`` partitions kept on ``engine`` (``handles[range][partition]``).
    ``parts`` None: partitions of about ``PARTITION_BYTES`` of both tables' vectors, at least twice the
    engine's parallelism. Returns (parts, ranges of ``first``, ranges of ``second``, handles)."""
    from lee.snapshot.ranges import row_ranges

    i1, i2 = first.info(kind), second.info(kind)
    if parts is None:
        size = (i1.rows * i1.dim + i2.rows * i2.dim) * 4
        parts = max(2 * engine.parallelism, -(-size // PARTITION_BYTES))
    if parts <= 0 or rows_per_task <= 0:
        raise InputError(f"parts and rows_per_task must be positive; got {parts} and {rows_per_task}")
    ranges_1, ranges_2 = row_ranges(first, kind, rows_per_task), row_ranges(second, kind, rows_per_task)
    handles = engine.scatter(split_by_id_hash, [(first, kind, lo, hi, parts) for lo, hi in ranges_1]
                             + [(second, kind, lo, hi, parts) for lo, hi in ranges_2], parts)
    return parts, ranges_1, ranges_2, handles


def cosine_by_id_partitioned(before: Snapshot, after: Snapshot, kind: TableKind | str = TableKind.UR, *,
                             engine: Engine, parts: int | None = None, rows_per_task: int = ROWS_PER_TASK,
                             verify: bool = True) -> VolatilityResult:
    """:func:`cosine_by_id` as a hash-partitioned join on ``engine`` (see above): equal results.

    ``parts`` (default: enough for partitions of about ``PARTITION_BYTES``, at least twice the
    engine's parallelism) sets the partition count; ``rows_per_task`` the map tasks' row ranges.
    A worker holds one partition of both tables, about (rows_before + rows_after) · dim · 4 / parts
    bytes, plus one map range.
    """

    kind = TableKind.parse(kind)
    _check_pair(before, after, kind)
    parts, ranges_b, ranges_a, handles = scatter_by_id_hash(engine, before, after, kind, parts, rows_per_task)
    if verify:   # meanwhile (on a cluster): both files' checksums and ids
        for _ in engine.map(_check_table, [(before, kind), (after, kind)],
                            labels=[str(before.table_path(kind)), str(after.table_path(kind))]):
            pass
    n_b = len(ranges_b)
    joins: list[PartitionJoin | None] = [None] * parts
    for p, res in engine.map(join_partition, [(before, after, kind, n_b, *(h[p] for h in handles))
                                              for p in range(parts)],
                             labels=[f"volatility partition {p}/{parts}" for p in range(parts)]):
        joins[p] = res
    done = [j for j in joins if j is not None]
    del handles
    ids, cos = _in_row_order([j.shared_rows for j in done], [j.shared_ids for j in done], [j.cosine for j in done])
    new_ids, = _in_row_order([j.new_rows for j in done], [j.new_ids for j in done])
    lost_ids, = _in_row_order([j.lost_rows for j in done], [j.lost_ids for j in done])
    if not ids.size:
        raise InputError(
            f"no id of the {kind.value} table in {after.path} is present in {before.path} "
            f"(first ids: {new_ids[0]!r} vs {lost_ids[0]!r}); volatility needs overlapping ids")
    return VolatilityResult(
        variant=after.variant, kind=kind, before=before.event_time, after=after.event_time,
        ids=ids, cosine=cos.astype(np.float32, copy=False), n_before=before.info(kind).rows,
        n_after=after.info(kind).rows,
        new_ids=new_ids, lost_ids=lost_ids, n_zero_norm=sum(j.n_zero_norm for j in done), blocks=1,
        extra={"engine": engine.name, "partitions": parts, "map_tasks": len(ranges_b) + len(ranges_a)},
    )
