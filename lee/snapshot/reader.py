"""Opening, loading and validating one snapshot directory."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lee.errors import SnapshotError
from lee.fileio import sha256_file
from lee.snapshot.checks import check_ids, check_vectors
from lee.snapshot.format import MANIFEST_NAME, EmbeddingTable, Manifest, TableInfo, TableKind
from lee.snapshot.parquet_io import check_schema, from_arrow, read_parquet_bytes
from lee.snapshot.rawread import RowGather, raw_vectors

__all__ = ["RowGather", "Snapshot", "TableReport", "validate_snapshot"]


@dataclass(frozen=True)
class Snapshot:
    """A snapshot directory whose manifest has been read and whose file list has been checked."""

    path: Path
    manifest: Manifest

    @classmethod
    def open(cls, path: str | Path) -> Snapshot:
        """Read the manifest and check that exactly the files it lists are present."""
        path = Path(path)
        if not path.is_dir():
            raise SnapshotError("is not a snapshot directory (it does not exist or is not a directory)", path=path)
        manifest = Manifest.from_file(path / MANIFEST_NAME)
        expected = {MANIFEST_NAME} | {t.file for t in manifest.tables.values()}
        present = {p.name for p in path.iterdir()}
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
        return cls(path=path, manifest=manifest)

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

    def load(self, kind: TableKind | str, *, verify: bool = True) -> EmbeddingTable:
        """Load one table as ids plus one contiguous float32 matrix.

        With ``verify`` (the default) the file's sha256 is checked against the manifest and the
        contents are checked for NaN/Inf rows and duplicate ids; a failure names the file and id.
        """
        info = self.info(kind)
        path = self.path / info.file
        with pa.memory_map(str(path), "r") as mm, ThreadPoolExecutor(max_workers=1) as pool:
            buf = mm.read_buffer()
            # hashlib releases the GIL on large buffers: hash on a second core while Arrow parses.
            digest = pool.submit(lambda: hashlib.sha256(memoryview(buf)).hexdigest()) if verify else None
            # the writer's layout (PLAIN, uncompressed pages) maps without decoding; else Arrow decodes
            raw = raw_vectors(path, info.dim)
            try:
                table = read_parquet_bytes(buf, path=path, dim=info.dim, has_updated_at=info.has_updated_at,
                                           vectors=raw.matrix() if raw is not None else None)
            except SnapshotError:
                if digest is not None:
                    self._check_sha(digest.result(), info, path)  # corruption is the better explanation
                raise
            if digest is not None:
                self._check_sha(digest.result(), info, path)
        self._check_rows(len(table), info, path)
        if verify:
            check_ids(table.ids, where=path)
            self._check_id_type(table.ids, info, path)
            check_vectors(table.vectors, table.ids, where=path, dim=info.dim)
        return table

    @staticmethod
    def _check_sha(got: str, info: TableInfo, path: Path) -> None:
        if got != info.sha256:
            raise SnapshotError(
                f"checksum mismatch: manifest says sha256 {info.sha256[:16]}…, file has {got[:16]}…; "
                "the file was changed or corrupted after it was written",
                path=path,
            )

    @staticmethod
    def _check_id_type(ids: np.ndarray, info: TableInfo, path: Path) -> None:
        id_type = "int64" if ids.dtype.kind in "iu" else "string"
        if id_type != info.id_type:
            raise SnapshotError(f"ids are {id_type} but the manifest says {info.id_type}", path=path, column="id")

    def load_ids(self, kind: TableKind | str) -> np.ndarray:
        """Only the ``id`` column of a table (int64 array or object array of str), without the vectors.

        Reading one column of a Parquet file skips the vector bytes entirely, so aligning two
        large snapshots by id costs a few bytes per row, not the whole matrix.
        """
        info = self.info(kind)
        path = self.path / info.file
        try:
            pf = pq.ParquetFile(str(path))
            check_schema(pf.schema_arrow, path=path, dim=info.dim, has_updated_at=info.has_updated_at)
            col = pf.read(columns=["id"]).column("id")
        except SnapshotError:
            raise
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise SnapshotError(f"is not a readable Parquet file ({exc})", path=path) from None
        if col.null_count:
            raise SnapshotError(f"holds {col.null_count} null(s); nulls are not allowed", path=path, column="id")
        self._check_rows(len(col), info, path)
        if pa.types.is_int64(col.type):
            return col.to_numpy()
        return np.asarray(col.to_numpy(), dtype=object)

    def iter_chunks(
        self, kind: TableKind | str, *, rows: int = 131_072, verify: bool = True, allow_nonfinite: bool = False
    ) -> Iterator[EmbeddingTable]:
        """Yield the table in chunks of at most ``rows`` rows, for tables larger than memory.

        ``verify`` checks the checksum (one streaming pass over the file first) and every chunk
        for NaN/Inf rows; duplicate ids across chunks are left to :func:`validate_snapshot`.
        ``allow_nonfinite`` keeps the checksum but passes NaN/Inf rows through, for the health
        monitor, whose job is to count them rather than refuse the snapshot.
        """
        if rows <= 0:
            raise SnapshotError(f"chunk size must be positive; got rows={rows}")
        info = self.info(kind)
        path = self.path / info.file
        if verify:
            self.verify_checksum(kind)
        try:
            pf = pq.ParquetFile(str(path))
        except (pa.ArrowException, OSError) as exc:
            raise SnapshotError(f"is not a readable Parquet file ({exc})", path=path) from None
        check_schema(pf.schema_arrow, path=path, dim=info.dim, has_updated_at=info.has_updated_at)
        seen = 0
        try:
            for batch in pf.iter_batches(batch_size=rows):
                chunk = from_arrow(batch, path=path)
                if verify and not allow_nonfinite:
                    check_vectors(chunk.vectors, chunk.ids, where=path, dim=info.dim)
                seen += len(chunk)
                yield chunk
        except (pa.ArrowException, OSError) as exc:
            raise SnapshotError(f"could not be read to the end ({exc})", path=path) from None
        self._check_rows(seen, info, path)

    def verify_checksum(self, kind: TableKind | str) -> None:
        """Hash the table's file (streamed, bounded memory) and raise :class:`SnapshotError`, worded
        as :meth:`load` words it, when it does not match the manifest's sha256.

        For readers that do not go through :meth:`load`: run it on a second core (hashlib releases
        the GIL) while reading the same file through :meth:`vector_batches` or :meth:`row_gather`.
        """
        info = self.info(kind)
        path = self.path / info.file
        self._check_sha(sha256_file(path), info, path)

    def vector_batches(self, kind: TableKind | str, *, rows: int = 131_072) -> Iterator[np.ndarray]:
        """The ``vector`` column in row order, in batches of at most ``rows`` rows, as float32
        ``(n, dim)`` matrices (no ids, no checksum or NaN checks: see :meth:`verify_checksum`).

        Files laid out as the snapshot writer lays them out (PLAIN, uncompressed pages) are mapped
        page by page without decoding and the batches are zero-copy views of the file; anything
        else is decoded by Arrow. Pair the batches with :meth:`load_ids` by position.
        """
        if rows <= 0:
            raise SnapshotError(f"batch size must be positive; got rows={rows}")
        info = self.info(kind)
        path = self.path / info.file
        dim = info.dim
        raw = raw_vectors(path, dim)
        if raw is not None and all(p.size % dim == 0 for p in raw.pages):
            for page in raw.pages:
                m = page.reshape(-1, dim)
                for lo in range(0, m.shape[0], rows):
                    yield m[lo:lo + rows]
            return
        try:
            pf = pq.ParquetFile(str(path))
            for batch in pf.iter_batches(batch_size=rows, columns=["vector"]):
                col = batch.column(0)
                if col.null_count or col.flatten().null_count:
                    raise SnapshotError("holds null vectors or elements", path=path, column="vector")
                yield col.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
        except (pa.ArrowException, OSError) as exc:
            raise SnapshotError(f"could not be read ({exc})", path=path) from None

    def row_gather(self, kind: TableKind | str) -> RowGather | None:
        """Random access to the table's rows straight from the mapped file: ``take(rows, out)``
        copies rows ``rows`` (row numbers in file order) into ``out`` without materialising the
        matrix; the file's pages stay in the page cache (evictable), not in the process's memory.

        ``None`` when the file is not laid out as the snapshot writer lays it out (compression,
        dictionary pages, uneven pages) or its row count differs from the manifest's; read it
        with :meth:`vector_batches` then. No checksum or NaN checks: see :meth:`verify_checksum`.
        """
        info = self.info(kind)
        raw = raw_vectors(self.path / info.file, info.dim)
        gather = raw.row_gather() if raw is not None else None
        return gather if gather is not None and gather.n_rows == info.rows else None

    @staticmethod
    def _check_rows(n: int, info: TableInfo, path: Path) -> None:
        if n == 0:
            raise SnapshotError("table is empty (0 rows); a snapshot table needs at least one row", path=path)
        if n != info.rows:
            raise SnapshotError(f"holds {n} rows but the manifest says {info.rows}", path=path)


@dataclass(frozen=True)
class TableReport:
    kind: TableKind
    rows: int
    dim: int
    id_type: str


def validate_snapshot(path: str | Path, *, chunk_rows: int = 262_144) -> list[TableReport]:
    """Fully check a snapshot with bounded memory; raise :class:`SnapshotError` on the first problem.

    Checks: manifest and format version, missing or extra files, checksums, schema and dtypes,
    dims and row counts against the manifest, nulls, NaN/Inf rows, duplicate ids, empty tables.
    """
    snap = Snapshot.open(path)
    reports = []
    for kind in snap.kinds:
        info = snap.info(kind)
        id_parts: list[np.ndarray] = []
        for chunk in snap.iter_chunks(kind, rows=chunk_rows, verify=True):
            id_parts.append(chunk.ids)
        ids = np.concatenate(id_parts)
        check_ids(ids, where=snap.path / info.file)
        Snapshot._check_id_type(ids, info, snap.path / info.file)
        reports.append(TableReport(kind=kind, rows=info.rows, dim=info.dim, id_type=info.id_type))
    return reports
