"""The on-disk snapshot format: table kinds, the manifest, and the in-memory table.

A snapshot is the set of representations an upstream model emitted at one point in event time::

    <root>/<variant>/<event-time>/manifest.json
    <root>/<variant>/<event-time>/<KIND>.parquet      one per table

Each Parquet file has ``id`` (int64 or string), ``vector`` (fixed-size list of float32, length =
dim) and optionally ``updated_at`` (int64 epoch seconds of the last event that moved the row).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from lee.errors import SnapshotError
from lee.fileio import UnsafeFileError, open_regular
from lee.timeutil import iso, parse_event_time

FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = (1,)
MANIFEST_NAME = "manifest.json"
MAX_MANIFEST_BYTES = 16 << 20   # a manifest is a few hundred bytes; anything this large is not one
MAX_DIM = 1 << 20
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def check_variant_name(variant: object) -> None:
    """Variant names become directory names: letters, digits, '-', '_', '.', '@' only."""
    ok = (
        isinstance(variant, str)
        and variant
        and not variant.startswith(".")
        and all(c.isalnum() or c in "-_.@" for c in variant)
    )
    if not ok:
        raise SnapshotError(
            f"variant name {variant!r} is not allowed; use letters, digits, '-', '_', '.' or '@' "
            "and do not start with '.'"
        )


def _flag(value: object, table: str, path: Path) -> bool:
    if not isinstance(value, bool):
        raise SnapshotError(f"table {table!r} has_updated_at must be true or false; got {value!r}", path=path)
    return value


class TableKind(str, Enum):  # noqa: UP042 (a StrEnum would format as "UR", not "TableKind.UR")
    """What a table represents: user (UR), item (IR) or user-/item-aggregated cross (CR) vectors."""

    UR = "UR"
    IR = "IR"
    CR_USER = "CR_user"
    CR_ITEM = "CR_item"

    @classmethod
    def parse(cls, value: str | TableKind, *, path: Path | None = None) -> TableKind:
        if isinstance(value, TableKind):
            return value
        allowed = ", ".join(k.value for k in cls)
        if not isinstance(value, str):
            raise SnapshotError(
                f"unknown table kind {value!r} (a {type(value).__name__}); expected one of {allowed}", path=path
            )
        for kind in cls:
            if value == kind.value or value.upper() == kind.value.upper():
                return kind
        raise SnapshotError(f"unknown table kind {value!r}; expected one of {allowed}", path=path)

    @property
    def entity(self) -> str:
        """``user`` or ``item``: which id space the table's ids live in."""
        return "user" if self in (TableKind.UR, TableKind.CR_USER) else "item"

    @property
    def filename(self) -> str:
        return f"{self.value}.parquet"


@dataclass(frozen=True)
class EmbeddingTable:
    """Ids and one contiguous float32 matrix, row ``k`` belonging to ``ids[k]``.

    ``ids`` is int64 or an object array of str; ``updated_at`` (int64 epoch seconds) is optional.
    """

    ids: np.ndarray
    vectors: np.ndarray
    updated_at: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def id_type(self) -> str:
        return "int64" if self.ids.dtype.kind in "iu" else "string"


@dataclass(frozen=True)
class TableInfo:
    """One table's entry in the manifest. ``bytes`` (the file's size) bounds every read of the file;
    manifests written before it was recorded leave it None and reads are bounded by the file's size."""

    kind: TableKind
    file: str
    dim: int
    rows: int
    id_type: str
    sha256: str
    has_updated_at: bool = False
    bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind.value,
            "file": self.file,
            "dim": self.dim,
            "rows": self.rows,
            "id_type": self.id_type,
            "sha256": self.sha256,
            "has_updated_at": self.has_updated_at,
        }
        if self.bytes is not None:
            out["bytes"] = self.bytes
        return out


@dataclass(frozen=True)
class Manifest:
    """What ``manifest.json`` says about a snapshot."""

    variant: str
    event_time: datetime
    source_layer: str
    tables: dict[TableKind, TableInfo]
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "variant": self.variant,
            "event_time": iso(self.event_time),
            "source_layer": self.source_layer,
            "tables": {k.value: t.to_dict() for k, t in sorted(self.tables.items(), key=lambda kv: kv[0].value)},
            "extra": self.extra,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_file(cls, path: Path, *, root: Path | None = None) -> Manifest:
        """Read and check a manifest; every problem is a :class:`SnapshotError` naming the file.

        The file must be a regular file (inside ``root`` when given) of at most 16 MiB: a FIFO,
        a device or a link out of the root is refused before a byte is read.
        """
        try:
            with open_regular(path, root=root, max_bytes=MAX_MANIFEST_BYTES) as (fd, st):
                data = os.pread(fd, st.st_size, 0)
        except UnsafeFileError as exc:
            raise SnapshotError(exc.reason, path=exc.path) from None
        except FileNotFoundError:
            raise SnapshotError(f"no {MANIFEST_NAME} found; a snapshot directory must contain one",
                                path=path.parent) from None
        except OSError as exc:
            raise SnapshotError(f"cannot be read ({exc.strerror or exc})", path=path) from None
        try:
            raw = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SnapshotError(f"is not valid JSON ({exc})", path=path) from None
        except RecursionError:
            raise SnapshotError("is not a manifest (JSON nested too deeply to read)", path=path) from None
        if not isinstance(raw, dict):
            raise SnapshotError("must hold a JSON object", path=path)
        return cls.from_dict(raw, path=path)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, path: Path) -> Manifest:
        version = raw.get("format_version")
        if type(version) is not int or version not in SUPPORTED_FORMAT_VERSIONS:
            raise SnapshotError(
                f"unknown format_version {version!r}; this workbench reads versions "
                f"{', '.join(map(str, SUPPORTED_FORMAT_VERSIONS))}",
                path=path,
            )
        for key in ("variant", "event_time", "source_layer", "tables"):
            if key not in raw:
                raise SnapshotError(f"is missing the key {key!r}", path=path)
        try:
            check_variant_name(raw["variant"])
        except SnapshotError as exc:
            raise SnapshotError(f"bad 'variant': {exc}", path=path) from None
        if not isinstance(raw["tables"], dict) or not raw["tables"]:
            raise SnapshotError("'tables' must be a non-empty object of kind -> table entry", path=path)
        extra = raw.get("extra")
        if extra is not None and not isinstance(extra, dict):
            raise SnapshotError(f"'extra' must be an object; got {type(extra).__name__}", path=path)
        tables: dict[TableKind, TableInfo] = {}
        for name, entry in raw["tables"].items():
            kind = TableKind.parse(name, path=path)
            if kind in tables:
                raise SnapshotError(f"lists the {kind.value} table twice (as {name!r} too)", path=path)
            tables[kind] = _table_info(kind, name, entry, path)
        files = [t.file for t in tables.values()]
        if len(set(files)) != len(files):
            raise SnapshotError(f"two tables name the same file ({', '.join(sorted(files))})", path=path)
        try:
            event_time = parse_event_time(raw["event_time"])
        except Exception as exc:  # InputError, or an epoch out of range: re-raised against this file
            raise SnapshotError(f"bad event_time: {exc}", path=path) from None
        return cls(
            variant=str(raw["variant"]),
            event_time=event_time,
            source_layer=str(raw["source_layer"]),
            tables=tables,
            format_version=int(version),
            extra=dict(extra or {}),
        )


def _table_info(kind: TableKind, name: str, entry: object, path: Path) -> TableInfo:
    """One checked table entry of a manifest."""
    if not isinstance(entry, dict):
        raise SnapshotError(f"table entry {name!r} must be an object", path=path)
    missing = [k for k in ("file", "dim", "rows", "id_type", "sha256") if k not in entry]
    if missing:
        raise SnapshotError(f"table {name!r} is missing {', '.join(missing)}", path=path)
    dim, rows = entry["dim"], entry["rows"]
    if type(dim) is not int or not 0 < dim <= MAX_DIM or type(rows) is not int or rows < 0:
        raise SnapshotError(
            f"table {name!r} needs a positive integer dim and a non-negative integer rows; "
            f"got dim={dim!r}, rows={rows!r} (dim at most {MAX_DIM})",
            path=path,
        )
    if entry["id_type"] not in ("int64", "string"):
        raise SnapshotError(f"table {name!r} id_type must be 'int64' or 'string'; got {entry['id_type']!r}",
                            path=path)
    file = entry["file"]
    if (not isinstance(file, str) or Path(file).name != file or file in (".", "..", MANIFEST_NAME)
            or file.startswith(".") or "\\" in file or "\x00" in file):
        raise SnapshotError(f"table {name!r} file must be a plain file name; got {file!r} (a name in the "
                            "snapshot directory, not hidden, not manifest.json)",
                            path=path)
    sha = entry["sha256"]
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        raise SnapshotError(f"table {name!r} sha256 must be 64 hex digits; got {sha!r}", path=path)
    size = entry.get("bytes")
    if size is not None and (type(size) is not int or size < 0):
        raise SnapshotError(f"table {name!r} bytes must be a non-negative integer; got {size!r}", path=path)
    return TableInfo(kind=kind, file=file, dim=dim, rows=rows, id_type=entry["id_type"], sha256=sha.lower(),
                     has_updated_at=_flag(entry.get("has_updated_at", False), name, path), bytes=size)
