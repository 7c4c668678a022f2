"""Importers of (ids, matrix) pairs from array files, and exporters of a table to CSV or Parquet.

No pickle anywhere: ``.npy``/``.npz`` are read with ``allow_pickle=False`` and safetensors is a
plain tensor container. Each importer is a small class behind one interface.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from lee.errors import InputError
from lee.fileio import atomic_file
from lee.snapshot.format import EmbeddingTable, TableKind
from lee.snapshot.parquet_io import to_arrow
from lee.snapshot.reader import Snapshot


def _as_ids(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.ndim != 1:
        raise InputError(f"{where}: ids must be a 1-D array; got shape {arr.shape}")
    if arr.dtype.kind in "iu":
        if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
            raise InputError(f"{where}: ids exceed the int64 range")
        return arr.astype(np.int64)
    if arr.dtype.kind == "U":
        return arr.astype(object)
    raise InputError(f"{where}: ids must be integers or strings; got dtype {arr.dtype}")


def _unreadable(path: Path, exc: Exception, what: str) -> InputError:
    """The error for a file the loader could not parse: refused pickle, or damaged/foreign bytes.

    Damaged files fail in many ways (BadZipFile, zlib.error, EOFError, a tokenizer error in a
    .npy header, ...), so any loader exception is turned into an :class:`InputError` here.
    """
    if "pickle" in str(exc).lower():  # object arrays need pickle, which we refuse
        return InputError(f"{path}: cannot read without unpickling ({exc}); store plain arrays")
    return InputError(f"{path}: not a readable {what} ({type(exc).__name__}: {exc})")


def _as_vectors(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.ndim != 2:
        raise InputError(f"{where}: vectors must be a 2-D (rows, dim) array; got shape {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{where}: vectors must be numeric; got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


class Importer:
    """Reads one file format into an :class:`EmbeddingTable`."""

    name: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]]

    def read(self, path: Path) -> EmbeddingTable:
        raise NotImplementedError


@dataclass
class NpzImporter(Importer):
    """An ``.npz`` archive holding an ids array and a vectors matrix under the given keys."""

    ids_key: str = "ids"
    vectors_key: str = "vectors"
    name: ClassVar[str] = "npz"
    suffixes: ClassVar[tuple[str, ...]] = (".npz",)

    def read(self, path: Path) -> EmbeddingTable:
        try:
            z = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise _unreadable(path, exc, ".npz archive") from None
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise InputError(f"{path}: holds a single .npy array, not a .npz archive of named arrays; "
                             "use the npy format with a separate ids file")
        with z:
            keys = list(z.keys())
            for key in (self.ids_key, self.vectors_key):
                if key not in keys:
                    raise InputError(f"{path}: no array named {key!r}; arrays present: {', '.join(keys) or 'none'}")
            try:
                ids, vecs = z[self.ids_key], z[self.vectors_key]
            except Exception as exc:
                raise _unreadable(path, exc, ".npz archive") from None
        return EmbeddingTable(ids=_as_ids(ids, f"{path}[{self.ids_key}]"),
                              vectors=_as_vectors(vecs, f"{path}[{self.vectors_key}]"))


@dataclass
class NpyImporter(Importer):
    """A ``.npy`` matrix plus a separate ``.npy`` file of ids."""

    ids_path: Path | None = None
    name: ClassVar[str] = "npy"
    suffixes: ClassVar[tuple[str, ...]] = (".npy",)

    def read(self, path: Path) -> EmbeddingTable:
        if self.ids_path is None:
            raise InputError(f"{path}: a .npy matrix needs its ids in a second .npy file (--ids FILE)")
        arrays = []
        for p in (self.ids_path, path):
            try:
                arr = np.load(p, allow_pickle=False)
            except Exception as exc:
                raise _unreadable(p, exc, ".npy file") from None
            if not isinstance(arr, np.ndarray):
                arr.close()
                raise InputError(f"{p}: is a .npz archive, not a single .npy array; use the npz format")
            arrays.append(arr)
        return EmbeddingTable(ids=_as_ids(arrays[0], str(self.ids_path)), vectors=_as_vectors(arrays[1], str(path)))


@dataclass
class SafetensorsImporter(Importer):
    """A safetensors file with an integer ``ids`` tensor and a ``vectors`` matrix."""

    ids_key: str = "ids"
    vectors_key: str = "vectors"
    name: ClassVar[str] = "safetensors"
    suffixes: ClassVar[tuple[str, ...]] = (".safetensors",)

    def read(self, path: Path) -> EmbeddingTable:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise InputError(f"{path}: not a readable safetensors file ({exc})") from None
        except TypeError as exc:  # e.g. bfloat16, which numpy has no dtype for
            raise InputError(f"{path}: holds a tensor dtype numpy cannot read ({exc}); "
                             "store ids as integers and vectors as float16/32/64") from None
        for key in (self.ids_key, self.vectors_key):
            if key not in tensors:
                raise InputError(f"{path}: no tensor named {key!r}; tensors present: {', '.join(tensors) or 'none'}")
        return EmbeddingTable(ids=_as_ids(tensors[self.ids_key], f"{path}[{self.ids_key}]"),
                              vectors=_as_vectors(tensors[self.vectors_key], f"{path}[{self.vectors_key}]"))


IMPORTERS: dict[str, type[Importer]] = {cls.name: cls for cls in (NpzImporter, NpyImporter, SafetensorsImporter)}


def importer_for(path: Path, fmt: str | None = None, **options: object) -> Importer:
    """The importer named by ``fmt``, or chosen by the file's suffix."""
    if fmt is None:
        matches = [c for c in IMPORTERS.values() if path.suffix.lower() in c.suffixes]
        if not matches:
            raise InputError(f"{path}: cannot tell the format from the suffix; use one of {', '.join(IMPORTERS)}")
        cls = matches[0]
    elif fmt in IMPORTERS:
        cls = IMPORTERS[fmt]
    else:
        raise InputError(f"unknown import format {fmt!r}; choose one of {', '.join(IMPORTERS)}")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    accepted = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    given = {k: v for k, v in options.items() if v is not None}
    stray = sorted(set(given) - accepted)
    if stray:
        raise InputError(f"{path}: option(s) {', '.join(stray)} do not apply to the {cls.name} format")
    return cls(**given)


EXPORT_FORMATS = ("csv", "parquet")


def export_table(snapshot: Snapshot, kind: TableKind | str, out: str | Path, fmt: str = "csv") -> Path:
    """Write one table as CSV (``id, v0..v{d-1}``, one row per id) or as Parquet in the same wide layout."""
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    table = snapshot.load(kind)
    out = Path(out)
    arrow = to_arrow(table)
    cols: dict[str, pa.Array] = {"id": arrow.column("id")}
    for k in range(table.dim):
        cols[f"v{k}"] = pa.array(table.vectors[:, k])
    if table.updated_at is not None:
        cols["updated_at"] = arrow.column("updated_at")
    wide = pa.table(cols)
    with atomic_file(out) as tmp:
        if fmt == "csv":
            pacsv.write_csv(wide, tmp)
        else:
            pq.write_table(wide, tmp)
    return out
