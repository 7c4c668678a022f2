"""Opening, loading and validating one snapshot directory.

Every reader of a table — :meth:`Snapshot.load`, :meth:`Snapshot.load_ids`,
:meth:`Snapshot.iter_chunks`, :meth:`Snapshot.vector_batches`, :meth:`Snapshot.row_gather` — goes
through one path:

* the file is opened only if it is a regular file inside the snapshot's root (a FIFO, a device or
  a symbolic link leading out of the root is refused with a message naming it) and only if its
  size is the one the manifest records; every read is bounded by that size;
* the Parquet schema is checked against the manifest (columns, dim, ``id_type``, ``updated_at``),
  Arrow verifies the page CRCs of every page it decodes;
* ids are checked for nulls and duplicates, vectors for NaN/Inf and for values beyond the
  plausibility bound (:func:`lee.snapshot.checks.max_abs_bound`, default ±1e6), rows against the
  manifest. ``verify`` adds the file's sha256 (and the CRCs of the pages the raw reader maps).

:meth:`Snapshot.open` checks the manifest, the file list, and that the manifest's variant and
event time are the directory's names.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lee.errors import InputError, LeeError, SnapshotError
from lee.fileio import UnsafeFileError, check_regular, open_regular, resolve_inside, sha256_fd
from lee.snapshot.checks import check_ids, check_vectors, max_abs_bound
from lee.snapshot.format import MANIFEST_NAME, EmbeddingTable, Manifest, TableInfo, TableKind
from lee.snapshot.parquet_io import check_schema, from_arrow, open_parquet, read_parquet
from lee.snapshot.rawread import RawVectors, RowGather, raw_vectors
from lee.timeutil import DIR_FORMAT, iso, time_dirname

__all__ = ["DEFAULT_MEMORY_MB", "MAX_CHUNK_ROWS", "RowGather", "Snapshot", "TableReport", "validate_snapshot"]

DEFAULT_MEMORY_MB = 4096
"""The memory bound (MiB) of the snapshot analyses when none is given (``--memory-mb``)."""
MAX_CHUNK_ROWS = 131_072
"""Chunks never exceed this many rows (one of the writer's row groups): larger ones gain nothing."""
# What :meth:`Snapshot.iter_chunks` itself costs, measured on 64-d float32 tables (pyarrow 26): Arrow
# decodes a FixedSizeList<float32> batch through definition and repetition levels and growing builders,
# about 5x the batch's 4 bytes per value at its peak, plus the mapped pages of one batch (released after
# it, see _release); Arrow's page buffers and the checksum's 8 MiB read buffer whatever the batch; and
# per id of the table the ids held for the duplicate-id check after the last chunk (the chunks' ids,
# their concatenation, the hash table).
_READER_VALUE_BYTES = 24
_READER_FIXED_BYTES = 16 << 20
_INT_ID_BYTES = 48
_STR_ID_BYTES = 160      # plus the id's length: a Python str per id, pointers, the hash table


@dataclass(frozen=True)
class _TableFile:
    """One table file opened safely: its manifest entry, path, descriptor, size and read-only map."""

    info: TableInfo
    path: Path
    fd: int
    size: int
    map: mmap.mmap


def _unsafe(exc: UnsafeFileError) -> SnapshotError:
    return SnapshotError(exc.reason, path=exc.path)


@dataclass(frozen=True)
class Snapshot:
    """A snapshot directory whose manifest has been read and whose file list has been checked.

    ``root`` is the directory no file of the snapshot may resolve outside of (the store's root,
    or the snapshot directory itself when opened alone); ``max_abs`` the plausibility bound on
    vector values (None: ``$LEE_MAX_ABS_VALUE`` or 1e6).
    """

    path: Path
    manifest: Manifest
    root: Path | None = None
    max_abs: float | None = None

    @classmethod
    def open(cls, path: str | Path, *, root: str | Path | None = None, max_abs: float | None = None) -> Snapshot:
        """Read the manifest and check that exactly the files it lists are present, each a regular
        file inside ``root`` (default: the snapshot directory), and that the manifest's variant and
        event time are the directory's names (``<variant>/<event-time>/``).

        The names are checked whenever the snapshot lies in a store's layout: opened with a
        ``root`` (the store, ``lee snapshots validate ROOT``) or in a directory named as an event
        time. A loose copy in a directory of another name (an export, a test fixture) is opened
        without that check.
        """
        path = Path(path)
        base = Path(root) if root is not None else path
        max_abs_bound(max_abs)  # a bad bound is a ConfigError now, not at the first read
        try:
            if root is not None:
                resolve_inside(path, base)
        except UnsafeFileError as exc:
            raise _unsafe(exc) from None
        if not path.is_dir():
            raise SnapshotError("is not a snapshot directory (it does not exist or is not a directory)", path=path)
        manifest = Manifest.from_file(path / MANIFEST_NAME, root=base)
        expected = {MANIFEST_NAME} | {t.file for t in manifest.tables.values()}
        try:
            present = {p.name for p in path.iterdir()}
        except OSError as exc:
            raise SnapshotError(f"cannot be listed ({exc.strerror or exc})", path=path) from None
        missing = sorted(expected - present)
        if missing:
            raise SnapshotError(f"the manifest lists {', '.join(missing)} but the file is missing", path=path)
        extra = sorted(present - expected)
        if extra:
            raise SnapshotError(
                f"holds file(s) the manifest does not list: {', '.join(extra)}; "
                "a snapshot directory must hold only manifest.json and its tables",
                path=path,
            )
        for info in manifest.tables.values():
            try:
                st = check_regular(path / info.file, root=base)
            except UnsafeFileError as exc:
                raise _unsafe(exc) from None
            _check_size(st.st_size, info, path / info.file)
        if root is not None or _is_time_dir(Path(os.path.abspath(path)).name):
            _check_location(path, manifest)
        snap = cls(path=path, manifest=manifest, root=base, max_abs=max_abs)
        for kind in snap.kinds:
            snap._check_footer(kind)
        return snap

    def _check_footer(self, kind: TableKind) -> None:
        """The table's Parquet schema (its footer: a few kilobytes) against the manifest — id type,
        dim, columns — so that a manifest edited to disagree with its tables is refused on opening,
        even by a consumer that would skip the table as already evaluated. A footer that does not
        parse is left to the readers, which check the checksum first (the better explanation)."""
        with self._table_file(kind) as tf:
            try:
                pf = open_parquet(tf.map, path=tf.path)
            except SnapshotError:
                return
            check_schema(pf.schema_arrow, path=tf.path, dim=tf.info.dim, has_updated_at=tf.info.has_updated_at,
                         id_type=tf.info.id_type)

    @property
    def variant(self) -> str:
        return self.manifest.variant

    @property
    def event_time(self) -> datetime:
        return self.manifest.event_time

    @property
    def kinds(self) -> list[TableKind]:
        return sorted(self.manifest.tables, key=lambda k: list(TableKind).index(k))

    def info(self, kind: TableKind | str) -> TableInfo:
        k = TableKind.parse(kind, path=self.path)
        if k not in self.manifest.tables:
            have = ", ".join(t.value for t in self.kinds)
            raise SnapshotError(f"has no {k.value} table; it holds {have}", path=self.path)
        return self.manifest.tables[k]

    def table_path(self, kind: TableKind | str) -> Path:
        return self.path / self.info(kind).file

    # ------------------------------------------------------------------ one path for every read

    @contextmanager
    def _table_file(self, kind: TableKind | str) -> Iterator[_TableFile]:
        """Open ``kind``'s file safely (regular, inside the root, the manifest's size) and map it."""
        info = self.info(kind)
        path = self.path / info.file
        with ExitStack() as stack:
            try:
                fd, st = stack.enter_context(open_regular(path, root=self.root if self.root is not None
                                                          else self.path))
            except UnsafeFileError as exc:
                raise _unsafe(exc) from None
            except FileNotFoundError:
                raise SnapshotError("the manifest lists this file but it is missing", path=path) from None
            except OSError as exc:
                raise SnapshotError(f"cannot be opened ({exc.strerror or exc})", path=path) from None
            _check_size(st.st_size, info, path)
            if st.st_size == 0:
                raise SnapshotError("is not a readable Parquet file (it is empty: 0 bytes)", path=path)
            try:
                mm = mmap.mmap(fd, st.st_size, access=mmap.ACCESS_READ)
            except (OSError, ValueError) as exc:
                raise SnapshotError(f"cannot be mapped ({exc})", path=path) from None
            yield _TableFile(info, path, fd, st.st_size, mm)

    def _parquet(self, tf: _TableFile) -> pq.ParquetFile:
        """The mapped file as Parquet (page CRCs verified on decode), schema checked against the manifest."""
        pf = open_parquet(tf.map, path=tf.path)
        check_schema(pf.schema_arrow, path=tf.path, dim=tf.info.dim, has_updated_at=tf.info.has_updated_at,
                     id_type=tf.info.id_type)
        return pf

    def _check_values(self, vectors: np.ndarray, tf: _TableFile, first_row: int, *,
                      allow_nonfinite: bool = False) -> None:
        """NaN/Inf and magnitude check of rows ``first_row...`` read without their ids; the error
        path reads the ids so that the message names the offending id."""
        try:
            check_vectors(vectors, None, where=tf.path, dim=tf.info.dim, allow_nonfinite=allow_nonfinite,
                          max_abs=self.max_abs, first_row=first_row)
        except SnapshotError:
            ids = self.load_ids(tf.info.kind)[first_row:first_row + vectors.shape[0]]
            check_vectors(vectors, ids, where=tf.path, dim=tf.info.dim, allow_nonfinite=allow_nonfinite,
                          max_abs=self.max_abs, first_row=first_row)
            raise

    # ------------------------------------------------------------------ readers

    def load(self, kind: TableKind | str, *, verify: bool = True) -> EmbeddingTable:
        """Load one table as ids plus one contiguous float32 matrix.

        Ids (nulls, duplicates, the manifest's ``id_type``) and vectors (NaN/Inf, the magnitude
        bound, dim) are always checked; ``verify`` (the default) also checks the file's sha256 and
        page CRCs, on a second core while Arrow parses. A failure names the file and id.
        """
        with self._table_file(kind) as tf, ThreadPoolExecutor(max_workers=1) as pool:
            # hashlib and zlib release the GIL on large buffers: hash on a second core while Arrow parses
            digest = pool.submit(lambda: hashlib.sha256(memoryview(tf.map)).hexdigest()) if verify else None
            try:
                pf = self._parquet(tf)
                # the writer's layout (PLAIN, uncompressed pages) maps without decoding; else Arrow decodes
                raw = raw_vectors(tf.map, tf.info.dim, parquet=pf)
                table = read_parquet(pf, path=tf.path, vectors=raw.matrix() if raw is not None else None)
            except SnapshotError:
                if digest is not None:
                    _check_sha(digest.result(), tf.info, tf.path)  # corruption is the better explanation
                raise
            if digest is not None:
                # the page CRCs here while the sha256 finishes on the other core; the sha256 speaks first
                bad = raw.bad_page() if raw is not None else None
                _check_sha(digest.result(), tf.info, tf.path)
                _check_crc(bad, tf.path)
            info, path = tf.info, tf.path
        _check_rows(len(table), info, path)
        check_ids(table.ids, where=path, id_type=info.id_type)
        check_vectors(table.vectors, table.ids, where=path, dim=info.dim, max_abs=self.max_abs)
        return table

    def load_ids(self, kind: TableKind | str) -> np.ndarray:
        """Only the ``id`` column of a table (int64 array or object array of str), without the vectors,
        checked for nulls, duplicates and the manifest's ``id_type``.

        Reading one column of a Parquet file skips the vector bytes entirely, so aligning two
        large snapshots by id costs a few bytes per row, not the whole matrix.
        """
        with self._table_file(kind) as tf:
            pf = self._parquet(tf)
            try:
                col = pf.read(columns=["id"]).column("id")
            except (pa.ArrowException, OSError, ValueError) as exc:
                raise SnapshotError(f"is not a readable Parquet file ({exc})", path=tf.path) from None
            info, path = tf.info, tf.path
        if col.null_count:
            raise SnapshotError(f"holds {col.null_count} null(s); nulls are not allowed", path=path, column="id")
        _check_rows(len(col), info, path)
        ids = col.to_numpy() if pa.types.is_int64(col.type) else np.asarray(col.to_numpy(zero_copy_only=False),
                                                                              dtype=object)
        check_ids(ids, where=path, id_type=info.id_type)
        return ids

    def iter_chunks(
        self, kind: TableKind | str, *, rows: int = 131_072, verify: bool = True, allow_nonfinite: bool = False
    ) -> Iterator[EmbeddingTable]:
        """Yield the table in chunks of at most ``rows`` rows, for tables larger than memory.

        Every chunk is checked as :meth:`load` checks a table (NaN/Inf, magnitude, dim); duplicate
        ids across chunks and the row count are checked after the last chunk, before the iteration
        ends, so a consumer that reads to the end never returns a result from a bad table.
        ``verify`` checks the checksum first (one bounded streaming pass over the file).
        ``allow_nonfinite`` passes NaN/Inf rows through (values beyond the magnitude bound are still
        refused), for the health monitor, whose job is to count them rather than refuse the snapshot.
        """
        if rows <= 0:
            raise SnapshotError(f"chunk size must be positive; got rows={rows}")
        with self._table_file(kind) as tf:
            if verify:
                _check_sha(sha256_fd(tf.fd, tf.size), tf.info, tf.path)
            pf = self._parquet(tf)
            seen = 0
            id_parts: list[np.ndarray] = []
            batches = pf.iter_batches(batch_size=rows)
            while True:
                try:
                    batch = next(batches)
                except StopIteration:
                    break
                except (pa.ArrowException, OSError, ValueError) as exc:
                    raise SnapshotError(f"could not be read to the end ({exc})", path=tf.path) from None
                chunk = from_arrow(batch, path=tf.path)
                check_vectors(chunk.vectors, chunk.ids, where=tf.path, dim=tf.info.dim,
                              allow_nonfinite=allow_nonfinite, max_abs=self.max_abs, first_row=seen)
                id_parts.append(chunk.ids)
                seen += len(chunk)
                yield chunk
                _release(tf)
            _check_rows(seen, tf.info, tf.path)
            check_ids(np.concatenate(id_parts), where=tf.path, id_type=tf.info.id_type)

    def id_bytes(self, kind: TableKind | str) -> float:
        """Bytes per row that holding and checking the table's ids costs (int64: 48; strings: 160 plus
        their mean length, estimated from the file's bytes beyond its vectors)."""
        info = self.info(kind)
        if info.id_type == "int64":
            return float(_INT_ID_BYTES)
        extra = max(0, (info.bytes or 0) - info.rows * info.dim * 4)
        return _STR_ID_BYTES + extra / max(info.rows, 1)

    def chunk_rows(self, kind: TableKind | str, memory_mb: float, *, value_bytes: float = 0.0,
                   row_bytes: float = 0.0, id_bytes: float = 0.0, held_bytes: float = 0.0,
                   what: str = "this analysis") -> int:
        """Rows per :meth:`iter_chunks` chunk so that a streamed pass stays within ``memory_mb`` MiB.

        The bound covers the reader's own cost (Arrow's decode of a chunk, the ids held for the
        duplicate check: :meth:`id_bytes` per row of the table) plus what the caller states it
        needs: ``value_bytes`` per value and ``row_bytes`` per row of a chunk (its working arrays),
        ``id_bytes`` per row of the table (per-id arrays held for the whole pass, e.g. results) and
        ``held_bytes`` whatever the chunk size (a d×d Gram matrix, a sample). At most
        :data:`MAX_CHUNK_ROWS` rows; an :class:`InputError` names the least bound that would do
        when not even one row fits.
        """
        info = self.info(kind)
        if not memory_mb > 0:
            raise InputError(f"the memory bound must be a positive number of MiB; got {memory_mb!r}")
        fixed = _READER_FIXED_BYTES + held_bytes + info.rows * (self.id_bytes(kind) + id_bytes)
        per_row = info.dim * (_READER_VALUE_BYTES + value_bytes) + row_bytes + 16
        rows = int((memory_mb * (1 << 20) - fixed) // per_row)
        if rows < 1:
            need = (fixed + per_row * min(info.rows, 1024)) / (1 << 20)
            raise InputError(
                f"{self.table_path(kind)}: {what} cannot run within {memory_mb:g} MiB: it holds "
                f"{fixed / (1 << 20):.1f} MiB whatever the chunk size ({info.rows:,} ids at "
                f"{self.id_bytes(kind) + id_bytes:.0f} bytes each, plus {held_bytes / (1 << 20):.1f} MiB of "
                f"state and {_READER_FIXED_BYTES >> 20} MiB of reader buffers); give --memory-mb {int(need) + 1} "
                "or more (chunks of 1,024 rows)")
        return max(1, min(rows, MAX_CHUNK_ROWS, info.rows))

    def memory_mb_for(self, kind: TableKind | str, rows: int, *, value_bytes: float = 0.0, row_bytes: float = 0.0,
                      id_bytes: float = 0.0, held_bytes: float = 0.0) -> float:
        """The bound (MiB) under which :meth:`chunk_rows` gives chunks of ``rows`` rows (its inverse)."""
        info = self.info(kind)
        fixed = _READER_FIXED_BYTES + held_bytes + info.rows * (self.id_bytes(kind) + id_bytes)
        per_row = info.dim * (_READER_VALUE_BYTES + value_bytes) + row_bytes + 16
        return (fixed + per_row * (rows + 0.5)) / (1 << 20)

    def verify_checksum(self, kind: TableKind | str) -> None:
        """Hash the table's file (streamed, bounded memory and bounded by the manifest's size) and
        check the CRCs of the vector pages that :meth:`vector_batches` and :meth:`row_gather` map
        without decoding; raise :class:`SnapshotError`, worded as :meth:`load` words it, on a mismatch.

        For readers that do not go through :meth:`load`: run it on a second core (hashlib and zlib
        release the GIL) while reading the same file through :meth:`vector_batches` or :meth:`row_gather`.
        """
        with self._table_file(kind) as tf:
            got = sha256_fd(tf.fd, tf.size)
            _check_sha(got, tf.info, tf.path)
            pf = self._parquet(tf)  # the schema against the manifest (id type, dim) costs nothing here
            raw = raw_vectors(tf.map, tf.info.dim, parquet=pf)
            _check_crc(_bad_page(raw, tf) if raw is not None else None, tf.path)

    def vector_batches(self, kind: TableKind | str, *, rows: int = 131_072) -> Iterator[np.ndarray]:
        """The ``vector`` column in row order, in batches of at most ``rows`` rows, as float32
        ``(n, dim)`` matrices (no ids; see :meth:`load_ids`). Every batch is checked for NaN/Inf
        and the magnitude bound; the checksum is not (see :meth:`verify_checksum`).

        Files laid out as the snapshot writer lays them out (PLAIN, uncompressed pages) are mapped
        page by page without decoding and the batches are zero-copy views of the file; anything
        else is decoded by Arrow. Pair the batches with :meth:`load_ids` by position.
        """
        if rows <= 0:
            raise SnapshotError(f"batch size must be positive; got rows={rows}")
        with self._table_file(kind) as tf:
            pf = self._parquet(tf)
            dim = tf.info.dim
            raw = raw_vectors(tf.map, dim, parquet=pf)
            seen = 0
            if raw is not None and all(p.size % dim == 0 for p in raw.pages):
                for page in raw.pages:
                    m = page.reshape(-1, dim)
                    for lo in range(0, m.shape[0], rows):
                        batch = m[lo:lo + rows]
                        self._check_values(batch, tf, seen)
                        seen += batch.shape[0]
                        yield batch
                        _release(tf)
                _check_rows(seen, tf.info, tf.path)
                return
            batches = pf.iter_batches(batch_size=rows, columns=["vector"])
            while True:
                try:
                    arrow_batch = next(batches)
                except StopIteration:
                    break
                except (pa.ArrowException, OSError, ValueError) as exc:
                    raise SnapshotError(f"could not be read ({exc})", path=tf.path) from None
                col = arrow_batch.column(0)
                if col.null_count or col.flatten().null_count:
                    raise SnapshotError("holds null vectors or elements", path=tf.path, column="vector")
                batch = col.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
                self._check_values(batch, tf, seen)
                seen += batch.shape[0]
                yield batch
                _release(tf)
            _check_rows(seen, tf.info, tf.path)

    def row_gather(self, kind: TableKind | str) -> RowGather | None:
        """Random access to the table's rows straight from the mapped file: ``take(rows, out)``
        copies rows ``rows`` (row numbers in file order) into ``out`` without materialising the
        matrix; the file's pages stay in the page cache (evictable), not in the process's memory.

        Every value of the table is checked (NaN/Inf, magnitude bound) before it is returned.
        ``None`` when the file is not laid out as the snapshot writer lays it out (compression,
        dictionary pages, uneven pages) or its row count differs from the manifest's; read it
        with :meth:`vector_batches` then. No checksum: see :meth:`verify_checksum`.
        """
        with self._table_file(kind) as tf:
            pf = self._parquet(tf)
            raw = raw_vectors(tf.map, tf.info.dim, parquet=pf)
            gather = raw.row_gather() if raw is not None else None
            if gather is None or gather.n_rows != tf.info.rows or raw is None:
                return None
            seen = 0
            for page in raw.pages:
                m = page.reshape(-1, tf.info.dim)
                self._check_values(m, tf, seen)
                seen += m.shape[0]
            return gather


def _release(tf: _TableFile) -> None:
    """Drop the mapped file's pages from this process's resident set (``MADV_DONTNEED``) once a
    batch has been consumed: they stay in the page cache and fault back in if read again (the
    mapping is shared and read-only, so nothing changes but the accounting), and a streamed pass
    over a file larger than memory holds about one batch of it, not the whole file, in its RSS."""
    try:
        tf.map.madvise(mmap.MADV_DONTNEED)
    except (AttributeError, OSError, ValueError):  # pragma: no cover - a platform without madvise
        pass


def _bad_page(raw: RawVectors, tf: _TableFile, release_every: int = 4 << 20) -> int | None:
    """:meth:`RawVectors.bad_page`, releasing the mapped pages (:func:`_release`) every
    ``release_every`` bytes, so that checking a file larger than memory does not hold it all."""
    view = memoryview(tf.map)
    done = 0
    try:
        for k, (start, size, crc) in enumerate(raw.crcs):
            if zlib.crc32(view[start:start + size]) != crc & 0xFFFFFFFF:
                return k
            done += size
            if done >= release_every:
                _release(tf)
                done = 0
        return None
    finally:
        view.release()
        _release(tf)


def _check_sha(got: str, info: TableInfo, path: Path) -> None:
    if got != info.sha256:
        raise SnapshotError(
            f"checksum mismatch: manifest says sha256 {info.sha256[:16]}…, file has {got[:16]}…; "
            "the file was changed or corrupted after it was written",
            path=path,
        )


def _check_crc(bad_page: int | None, path: Path) -> None:
    if bad_page is not None:
        raise SnapshotError(
            f"data page {bad_page} of the vector column does not match its CRC; the file was damaged after it "
            "was written (its sha256 in the manifest was recomputed over the damaged bytes)",
            path=path, column="vector",
        )


def _check_size(size: int, info: TableInfo, path: Path) -> None:
    if info.bytes is not None and size != info.bytes:
        raise SnapshotError(
            f"is {size:,} bytes but the manifest says {info.bytes:,}; the file was changed, truncated or "
            "replaced after it was written",
            path=path,
        )


def _check_rows(n: int, info: TableInfo, path: Path) -> None:
    if n == 0:
        raise SnapshotError("table is empty (0 rows); a snapshot table needs at least one row", path=path)
    if n != info.rows:
        raise SnapshotError(f"holds {n} rows but the manifest says {info.rows}", path=path)


def _is_time_dir(name: str) -> bool:
    try:
        return time_dirname(datetime.strptime(name, DIR_FORMAT)) == name
    except (ValueError, LeeError):
        return False


def _check_location(path: Path, manifest: Manifest) -> None:
    """The manifest's variant and event time must be the names of ``<variant>/<event-time>/``."""
    where = Path(os.path.abspath(path))
    try:
        want = time_dirname(manifest.event_time)
    except LeeError as exc:
        raise SnapshotError(f"bad event_time: {exc}", path=path / MANIFEST_NAME) from None
    if where.name != want or where.parent.name != manifest.variant:
        raise SnapshotError(
            f"manifest says variant {manifest.variant!r} at {iso(manifest.event_time)} "
            f"(directory {manifest.variant}/{want}), but the directory is {where.parent.name}/{where.name}; "
            "snapshots must not be renamed or moved between variants",
            path=path / MANIFEST_NAME,
        )


@dataclass(frozen=True)
class TableReport:
    kind: TableKind
    rows: int
    dim: int
    id_type: str


def validate_snapshot(path: str | Path, *, chunk_rows: int = 262_144, root: str | Path | None = None,
                      max_abs: float | None = None) -> list[TableReport]:
    """Fully check a snapshot with bounded memory; raise :class:`SnapshotError` on the first problem.

    Checks: manifest and format version, variant and event time against the directory, missing or
    extra files, regular files inside ``root``, sizes, checksums, page CRCs, schema and dtypes, dims
    and row counts against the manifest, nulls, NaN/Inf rows, values beyond the magnitude bound,
    duplicate ids, the manifest's id type, empty tables.
    """
    snap = Snapshot.open(path, root=root, max_abs=max_abs)
    reports = []
    for kind in snap.kinds:
        info = snap.info(kind)
        for _chunk in snap.iter_chunks(kind, rows=chunk_rows, verify=True):
            pass  # every check runs inside the iteration
        reports.append(TableReport(kind=kind, rows=info.rows, dim=info.dim, id_type=info.id_type))
    return reports
