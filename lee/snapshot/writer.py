"""Atomic snapshot writer.

Everything is written into a hidden temporary directory beside the destination, each file is
fsynced, and only then is the directory renamed into place: a crash or an error at any point
leaves either the complete snapshot or nothing (the temporary directory is removed on error, and
readers never list hidden directories).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from lee.errors import SnapshotError
from lee.snapshot.checks import check_ids, check_vectors
from lee.snapshot.format import MANIFEST_NAME, EmbeddingTable, Manifest, TableInfo, TableKind
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


def check_variant_name(variant: str) -> None:
    """Variant names become directory names: letters, digits, '-', '_', '.', '@' only."""
    ok = variant and not variant.startswith(".") and all(c.isalnum() or c in "-_.@" for c in variant)
    if not ok:
        raise SnapshotError(
            f"variant name {variant!r} is not allowed; use letters, digits, '-', '_', '.' or '@' "
            "and do not start with '.'"
        )


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
) -> Path:
    """Write one snapshot to ``root/variant/<event-time>/`` atomically and return its path.

    Every table is checked first (finite, unique ids, float32, non-empty), so a bad snapshot is
    never written. An existing snapshot at the same place is an error unless ``overwrite``.
    """
    check_variant_name(variant)
    when = parse_event_time(event_time)
    if not tables:
        raise SnapshotError("a snapshot needs at least one table")
    final = Path(root) / variant / time_dirname(when)
    if final.exists() and not overwrite:
        raise SnapshotError("a snapshot already exists here; pass overwrite=True to replace it", path=final)

    kinds = {TableKind.parse(k): t for k, t in tables.items()}
    for kind, table in kinds.items():
        where = f"table {kind.value} for {variant}@{time_dirname(when)}"
        check_ids(table.ids, where=where)
        check_vectors(table.vectors, table.ids, where=where)
        if table.updated_at is not None and len(table.updated_at) != len(table):
            raise SnapshotError(f"updated_at has {len(table.updated_at)} rows, vectors {len(table)}", path=where)

    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        infos: dict[TableKind, TableInfo] = {}
        for kind, table in kinds.items():
            sink = pa.BufferOutputStream()
            write_parquet(table, sink, compression=compression)
            buf = sink.getvalue()
            view = memoryview(buf)
            _write_file(tmp / kind.filename, view)
            infos[kind] = TableInfo(
                kind=kind,
                file=kind.filename,
                dim=table.dim,
                rows=len(table),
                id_type=table.id_type,
                sha256=hashlib.sha256(view).hexdigest(),
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
