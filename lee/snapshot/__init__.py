"""Representation snapshots: the format, the atomic writer, the validating reader and discovery."""

from lee.snapshot.format import FORMAT_VERSION, EmbeddingTable, Manifest, TableInfo, TableKind
from lee.snapshot.reader import Snapshot, TableReport, validate_snapshot
from lee.snapshot.store import SnapshotStore, open_any
from lee.snapshot.writer import write_snapshot

__all__ = [
    "FORMAT_VERSION",
    "EmbeddingTable",
    "Manifest",
    "Snapshot",
    "SnapshotStore",
    "TableInfo",
    "TableKind",
    "TableReport",
    "open_any",
    "validate_snapshot",
    "write_snapshot",
]
