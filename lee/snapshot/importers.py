"""Importers of (ids, matrix) pairs from array, table and text files, and exporters of a table to CSV or Parquet.

The layouts users' embedding files come in: ``.npz``, ``.npy`` (+ an ids ``.npy``), safetensors;
CSV/TSV tables in the wide layout ``id, v0..v{d-1}`` (with or without a header line, the latter
being PyTorch-BigGraph's TSV export); Parquet and Arrow IPC/Feather tables either wide or with one
list column of vectors (Spark, BigQuery exports, pandas columns of arrays, lee's own snapshot
files); word2vec / GloVe / fastText text; JSON lines. Every table then goes through the snapshot
writer's checks (unique ids, finite values, one dimension).

No pickle anywhere: ``.npy``/``.npz`` are read with ``allow_pickle=False`` and safetensors is a
plain tensor container. Each importer is a small class behind one interface. Inputs must be
regular files (never a FIFO or a device), and an array's header is checked against the bytes that
follow it before numpy allocates anything, so a 200-byte file claiming 40 GB is refused at once.
"""

from __future__ import annotations

import dataclasses
import math
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq

from lee.errors import InputError
from lee.fileio import atomic_file, check_output_target, check_regular, open_regular
from lee.snapshot.format import EmbeddingTable, TableKind
from lee.snapshot.import_columns import (
    check_id_type,
    columns_matrix,
    is_list_type,
    list_vectors,
    pick_list_column,
    rows_locator,
    typed_ids,
)
from lee.snapshot.import_text import read_jsonl, read_word2vec
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


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _npy_header(fh: IO[bytes], where: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and header length of the ``.npy`` stream ``fh`` (positioned at its start)."""
    start = fh.tell()
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:  # 3.0 (utf-8 field names) has no public reader; numpy's own load reads it below
            raise InputError(f"{where}: .npy format version {version[0]}.{version[1]} is not supported; "
                             "save with numpy's default format (1.0 or 2.0)")
    except (InputError, zipfile.BadZipFile):
        raise  # a damaged archive member is the archive's error
    except Exception as exc:  # noqa: BLE001 - damaged headers fail in many ways (TokenError, SyntaxError, ...)
        raise InputError(f"{where}: not a readable .npy file ({type(exc).__name__}: {exc})") from None
    return tuple(int(n) for n in shape), np.dtype(dtype), fh.tell() - start


def _check_npy_size(shape: tuple[int, ...], dtype: np.dtype, available: int, where: str) -> None:
    """Refuse an array whose header promises more bytes than the file holds (or this machine has),
    before numpy allocates it: a 200-byte file claiming 40 GB is refused at once."""
    if dtype.hasobject:
        raise InputError(f"{where}: cannot read without unpickling (the array holds Python objects, dtype "
                         f"{dtype}); store plain numeric or string arrays")
    need = math.prod(shape) * dtype.itemsize
    if need > available:
        raise InputError(f"{where}: not a readable .npy file: the header says shape {shape} of {dtype} "
                         f"({need:,} bytes) but only {available:,} bytes of data follow it (truncated or forged)")
    ram = _physical_memory()
    if ram is not None and need > ram:
        raise InputError(f"{where}: shape {shape} of {dtype} needs {need:,} bytes, more than this machine's "
                         f"{ram:,} bytes of memory")


_NPY_MAGIC, _ZIP_MAGIC = b"\x93NUMPY", b"PK\x03\x04"


def _check_npy_file(path: Path) -> None:
    """A ``.npy`` file: a regular file whose header fits its size."""
    try:
        with open_regular(path) as (fd, st), os.fdopen(os.dup(fd), "rb") as fh:
            if os.pread(fd, 4, 0) == _ZIP_MAGIC:
                raise InputError(f"{path}: is a .npz archive, not a single .npy array; use the npz format")
            shape, dtype, header = _npy_header(fh, str(path))
    except FileNotFoundError:
        raise InputError(f"{path}: not a readable .npy file (no such file)") from None
    _check_npy_size(shape, dtype, st.st_size - header, str(path))


_DEFLATE_MAX_RATIO = 1032  # deflate cannot expand a byte to more than ~1032 bytes


def _check_npz_members(path: Path, keys: tuple[str, ...]) -> None:
    """Every wanted member of a ``.npz``: its declared size plausible for its compressed size, and
    its ``.npy`` header fitting the declared size, all checked before numpy allocates anything."""
    try:
        with open_regular(path) as (fd, _st):
            if os.pread(fd, 6, 0) == _NPY_MAGIC:
                raise InputError(f"{path}: holds a single .npy array, not a .npz archive of named arrays; "
                                 "use the npy format with a separate ids file")
        with open_regular(path) as (fd, _st), os.fdopen(os.dup(fd), "rb") as raw, zipfile.ZipFile(raw) as zf:
            for key in keys:
                try:
                    info = zf.getinfo(key + ".npy")
                except KeyError:
                    continue  # reported with the names present by the importer
                where = f"{path}[{key}]"
                if ((info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size)
                        or (info.compress_type == zipfile.ZIP_DEFLATED
                            and info.file_size > _DEFLATE_MAX_RATIO * info.compress_size + 1024)):
                    raise InputError(f"{where}: declares {info.file_size:,} bytes from {info.compress_size:,} "
                                     "compressed ones, which its compression cannot produce; the archive is forged")
                with zf.open(info) as member:
                    shape, dtype, header = _npy_header(member, where)
                _check_npy_size(shape, dtype, info.file_size - header, where)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, NotImplementedError) as exc:
        raise InputError(f"{path}: not a readable .npz archive ({type(exc).__name__}: {exc})") from None


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
        _check_npz_members(path, (self.ids_key, self.vectors_key))
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
            _check_npy_file(Path(p))
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


def _looks_like_numbers(names: list[str]) -> bool:
    try:
        [float(n) for n in names]
    except ValueError:
        return False
    return bool(names)


def _wide_table(table: pa.Table, path: Path, ids_key: str, id_type: str | None = None) -> EmbeddingTable:
    """``id, v0..v{d-1}`` (the export layout): the ids column and every other numeric column, in order."""
    names = table.column_names
    if ids_key not in names:
        hint = ("; the first line looks like data, not a header: for a file without one, pass --no-header"
                if _looks_like_numbers(names[1:]) else "")
        raise InputError(f"{path}: no id column {ids_key!r}; columns: {', '.join(names[:12]) or 'none'}"
                         f"{' ...' if len(names) > 12 else ''} (name it with --ids-key){hint}")
    value_cols = [c for c in names if c not in (ids_key, "updated_at")]
    if not value_cols:
        raise InputError(f"{path}: no vector columns beside {ids_key!r}; expected {ids_key}, v0, v1, ...")
    bad = [c for c in value_cols if not (pa.types.is_integer(table.schema.field(c).type)
                                         or pa.types.is_floating(table.schema.field(c).type))]
    if bad:
        raise InputError(f"{path}: column(s) {', '.join(bad[:5])} are not numeric "
                         f"({table.schema.field(bad[0]).type}); every column but {ids_key!r} and 'updated_at' is "
                         "read as one vector dimension")
    nulls = [c for c in value_cols if table.column(c).null_count]
    if nulls or table.column(ids_key).null_count:
        where = nulls[0] if nulls else ids_key
        raise InputError(f"{path}: column {where!r} has {table.column(where).null_count} empty value(s); "
                         "every id needs a value in every dimension")
    vecs = columns_matrix([table.column(c) for c in value_cols])
    if id_type is not None:
        ids = typed_ids(table.column(ids_key), check_id_type(id_type, path), path, ids_key, rows_locator())
        return EmbeddingTable(ids=ids, vectors=_as_vectors(vecs, str(path)))
    raw = table.column(ids_key).to_numpy(zero_copy_only=False)
    if raw.dtype == object:
        raw = raw.astype(str)
    return EmbeddingTable(ids=_as_ids(raw, f"{path}[{ids_key}]"), vectors=_as_vectors(vecs, str(path)))


def _columns_table(table: pa.Table, path: Path, ids_key: str, vectors_key: str | None,
                   id_type: str | None) -> EmbeddingTable:
    """A Parquet/Arrow table: one list column of vectors when it has one (or ``vectors_key`` names
    it; other columns are then ignored), else the wide layout ``id, v0..v{d-1}``."""
    if vectors_key is None and not any(is_list_type(f.type) for f in table.schema):
        return _wide_table(table, path, ids_key, id_type)
    column = pick_list_column(table.schema, vectors_key, path)
    if ids_key not in table.column_names:
        raise InputError(f"{path}: no id column {ids_key!r} (name it with --ids-key); columns: "
                         f"{', '.join(table.column_names[:12])}{' ...' if table.num_columns > 12 else ''}")
    locate = rows_locator()
    ids = typed_ids(table.column(ids_key), check_id_type(id_type, path), path, ids_key, locate)
    return EmbeddingTable(ids=ids, vectors=list_vectors(table.column(column), ids, path, column, locate))


@dataclass
class CsvImporter(Importer):
    """A CSV file, one row per id: ``id, v0..v{d-1}`` (what ``lee snapshots export`` writes).

    With a header line (the default) the id column is ``ids_key`` and every other column a
    dimension; with ``header=False`` the first column holds the ids and the rest the values.
    ``id_type`` (integer, text, auto) overrides the id type Arrow infers (which reads ``007`` as 7).
    """

    ids_key: str = "id"
    header: bool = True
    id_type: str | None = None
    name: ClassVar[str] = "csv"
    suffixes: ClassVar[tuple[str, ...]] = (".csv",)
    delimiter: ClassVar[str] = ","

    def read(self, path: Path) -> EmbeddingTable:
        id_type = check_id_type(self.id_type, path)
        if not self.header and self.ids_key != "id":
            raise InputError(f"{path}: --ids-key names a header column, but the file is read without a header "
                             "(--no-header): its ids are the first column")
        id_column = self.ids_key if self.header else "f0"
        # an id type asked for is decided from the ids as written (Arrow's inference reads 007 as 7)
        convert = pacsv.ConvertOptions(column_types={id_column: pa.string()} if id_type is not None else None)
        try:
            table = pacsv.read_csv(str(path), read_options=pacsv.ReadOptions(autogenerate_column_names=not self.header),
                                   parse_options=pacsv.ParseOptions(delimiter=self.delimiter),
                                   convert_options=convert)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{path}: not a readable {self.name.upper()} table of id, v0..v(d-1) "
                             f"{'with' if self.header else 'without'} a header line ({exc})") from None
        if not self.header:
            table = table.rename_columns(["id", *(f"v{j}" for j in range(table.num_columns - 1))])
        return _wide_table(table, path, self.ids_key, id_type)


@dataclass
class TsvImporter(CsvImporter):
    """A tab-separated table in the wide layout; PyTorch-BigGraph's TSV export has no header (``header=False``)."""

    name: ClassVar[str] = "tsv"
    suffixes: ClassVar[tuple[str, ...]] = (".tsv", ".tab")
    delimiter: ClassVar[str] = "\t"


@dataclass
class ParquetImporter(Importer):
    """A Parquet file, one row per id: ``id`` and one list column of vectors (``vectors_key``, default the
    single list column), or the wide layout ``id, v0..v{d-1}`` (the export layout)."""

    ids_key: str = "id"
    vectors_key: str | None = None
    id_type: str | None = None
    name: ClassVar[str] = "parquet"
    suffixes: ClassVar[tuple[str, ...]] = (".parquet", ".pq")

    def read(self, path: Path) -> EmbeddingTable:
        try:
            table = pq.read_table(str(path))
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{path}: not a readable Parquet table of id, v0..v(d-1) ({exc})") from None
        return _columns_table(table, path, self.ids_key, self.vectors_key, self.id_type)


@dataclass
class ArrowImporter(Importer):
    """An Arrow IPC file or stream, or Feather (v1 or v2), in either layout of :class:`ParquetImporter`."""

    ids_key: str = "id"
    vectors_key: str | None = None
    id_type: str | None = None
    name: ClassVar[str] = "arrow"
    suffixes: ClassVar[tuple[str, ...]] = (".arrow", ".feather", ".ipc", ".arrows")

    def read(self, path: Path) -> EmbeddingTable:
        try:
            table = feather.read_table(str(path), memory_map=False)  # IPC file (Feather v2) or Feather v1
        except (pa.ArrowInvalid, OSError):
            try:
                with pa.OSFile(str(path)) as src:
                    table = pa.ipc.open_stream(src).read_all()
            except (pa.ArrowInvalid, OSError) as exc:
                raise InputError(f"{path}: not a readable Arrow IPC or Feather file ({exc})") from None
        try:
            table.validate(full=True)  # damaged offsets must fail here, not inside a compute kernel
        except pa.ArrowInvalid as exc:
            raise InputError(f"{path}: not a readable Arrow IPC or Feather file ({exc})") from None
        return _columns_table(table, path, self.ids_key, self.vectors_key, self.id_type)


@dataclass
class Word2vecImporter(Importer):
    """word2vec / GloVe / fastText text: an optional ``N D`` header line, then ``word v1 .. vD`` per line.

    ``header`` None reads two whole numbers on line 1 as the header; False reads line 1 as a row.
    Ids are the words as text (leading zeros intact) unless ``id_type`` is integer or auto.
    """

    header: bool | None = None
    id_type: str = "text"
    name: ClassVar[str] = "w2v"
    suffixes: ClassVar[tuple[str, ...]] = (".vec", ".txt")

    def read(self, path: Path) -> EmbeddingTable:
        return read_word2vec(path, header=self.header, id_type=check_id_type(self.id_type, path))


@dataclass
class JsonlImporter(Importer):
    """JSON lines, one object per line: ``{"id": "u1", "embedding": [0.1, ...]}``; ``vectors_key`` defaults
    to the single array-valued key of the first line; ids keep their JSON type unless ``id_type`` is given."""

    ids_key: str = "id"
    vectors_key: str | None = None
    id_type: str | None = None
    name: ClassVar[str] = "jsonl"
    suffixes: ClassVar[tuple[str, ...]] = (".jsonl", ".ndjson")

    def read(self, path: Path) -> EmbeddingTable:
        return read_jsonl(path, ids_key=self.ids_key, vectors_key=self.vectors_key,
                          id_type=check_id_type(self.id_type, path))


IMPORTERS: dict[str, type[Importer]] = {cls.name: cls for cls in (
    NpzImporter, NpyImporter, SafetensorsImporter, CsvImporter, ParquetImporter,
    TsvImporter, ArrowImporter, Word2vecImporter, JsonlImporter)}


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
    try:
        check_regular(path)  # never a FIFO (whose open would wait forever) or a device such as /dev/zero
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    accepted = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    given = {k: v for k, v in options.items() if v is not None}
    stray = sorted(set(given) - accepted)
    if stray:
        raise InputError(f"{path}: option(s) {', '.join(stray)} do not apply to the {cls.name} format")
    return cls(**given)


EXPORT_FORMATS = ("csv", "parquet")


def export_table(snapshot: Snapshot, kind: TableKind | str, out: str | Path | BinaryIO,
                 fmt: str = "csv") -> Path | None:
    """Write one table as CSV (``id, v0..v{d-1}``, one row per id) or as Parquet in the same wide layout.

    ``out`` is a file path (written atomically; a symbolic link, a device or a FIFO is refused
    before anything is read) or a binary stream such as standard output (then None is returned).
    """
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    if isinstance(out, (str, Path)):
        check_output_target(out)
    table = snapshot.load(kind)
    arrow = to_arrow(table)
    cols: dict[str, pa.Array] = {"id": arrow.column("id")}
    for k in range(table.dim):
        cols[f"v{k}"] = pa.array(table.vectors[:, k])
    if table.updated_at is not None:
        cols["updated_at"] = arrow.column("updated_at")
    wide = pa.table(cols)
    if not isinstance(out, (str, Path)):
        sink = pa.PythonFile(out, mode="w")
        if fmt == "csv":
            pacsv.write_csv(wide, sink)
        else:
            pq.write_table(wide, sink)
        return None
    path = Path(out)
    with atomic_file(path) as tmp:
        if fmt == "csv":
            pacsv.write_csv(wide, tmp)
        else:
            pq.write_table(wide, tmp)
    return path
