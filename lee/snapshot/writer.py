"""Atomic snapshot writer.

Everything is written into a hidden temporary directory beside the destination, each file is
fsynced, and only then is the directory renamed into place: a crash or an error at any point
leaves either the complete snapshot or nothing (the temporary directory is removed on error, and
readers never list hidden directories).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from lee.errors import SnapshotError
from lee.snapshot.checks import check_ids, check_updated_at, check_vectors
from lee.snapshot.format import MANIFEST_NAME, EmbeddingTable, Manifest, TableInfo, TableKind, check_variant_name
from lee.snapshot.parquet_io import write_parquet
from lee.timeutil import parse_event_time, time_dirname


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes | memoryview) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


class _HashingSink(io.RawIOBase):
    """A write-only file that hashes what passes through, so the bytes are never held twice."""

    def __init__(self, fh: io.BufferedWriter) -> None:
        self._fh = fh
        self._pos = 0
        self.digest = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | memoryview) -> int:  # type: ignore[override]
        self.digest.update(data)
        n = self._fh.write(data)
        self._pos += n
        return n

    def tell(self) -> int:
        return self._pos


def write_snapshot(
    root: str | Path,
    variant: str,
    event_time: str | datetime | int,
    tables: Mapping[TableKind | str, EmbeddingTable],
    *,
    source_layer: str = "",
    extra: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    compression: str = "none",
    allow_nonfinite: bool = False,
) -> Path:
    """Write one snapshot to ``root/variant/<event-time>/`` atomically and return its path.

    Every table is checked first (finite, unique ids, float32, non-empty), so a bad snapshot is
    never written. An existing snapshot at the same place is an error unless ``overwrite``.
    ``allow_nonfinite`` lets NaN/Inf rows through: only for planting the broken snapshots that the
    health monitor must catch (verifying readers still refuse to load them).
    """
    check_variant_name(variant)
    when = parse_event_time(event_time)
    if when.microsecond:
        raise SnapshotError(
            f"event time {when.isoformat()} has a sub-second part; snapshots are named to the whole second, "
            "so round the time first"
        )
    if not tables:
        raise SnapshotError("a snapshot needs at least one table")
    final = Path(root) / variant / time_dirname(when)
    if final.exists() and not overwrite:
        raise SnapshotError("a snapshot already exists here; pass overwrite=True to replace it", path=final)

    kinds = {TableKind.parse(k): t for k, t in tables.items()}
    for kind, table in kinds.items():
        where = f"table {kind.value} for {variant}@{time_dirname(when)}"
        check_ids(table.ids, where=where)
        check_vectors(table.vectors, table.ids, where=where, allow_nonfinite=allow_nonfinite)
        check_updated_at(table.updated_at, len(table), where=where)

    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        infos: dict[TableKind, TableInfo] = {}
        for kind, table in kinds.items():
            with open(tmp / kind.filename, "wb") as fh:
                sink = _HashingSink(fh)
                write_parquet(table, pa.PythonFile(sink, mode="w"), compression=compression)
                fh.flush()
                os.fsync(fh.fileno())
            infos[kind] = TableInfo(
                kind=kind,
                file=kind.filename,
                dim=table.dim,
                rows=len(table),
                id_type=table.id_type,
                sha256=sink.digest.hexdigest(),
                has_updated_at=table.updated_at is not None,
            )
        manifest = Manifest(
            variant=variant, event_time=when, source_layer=source_layer, tables=infos, extra=dict(extra or {})
        )
        _write_file(tmp / MANIFEST_NAME, manifest.to_json().encode("utf-8"))
        _fsync_dir(tmp)
        if final.exists():  # overwrite: move the old one aside, swap, then drop it
            trash = final.parent / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
            final.rename(trash)
            tmp.rename(final)
            shutil.rmtree(trash)
        else:
            tmp.rename(final)
        _fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
