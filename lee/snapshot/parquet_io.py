"""Conversion between :class:`EmbeddingTable` and Arrow/Parquet, without Python loops over rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lee.errors import SnapshotError
from lee.snapshot.format import EmbeddingTable

ROW_GROUP_ROWS = 131_072  # ~32 MiB of 64-d float32 per row group: the unit of chunked reads


def to_arrow(table: EmbeddingTable) -> pa.Table:
    """Build the Arrow table written to Parquet: ``id``, ``vector`` and optional ``updated_at``."""
    vectors = np.ascontiguousarray(table.vectors, dtype=np.float32)
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    columns = {
        "id": pa.array(table.ids, type=pa.int64() if table.id_type == "int64" else pa.string()),
        "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]),
    }
    if table.updated_at is not None:
        columns["updated_at"] = pa.array(np.asarray(table.updated_at, dtype=np.int64), type=pa.int64())
    return pa.table(columns)


def write_parquet(table: EmbeddingTable, sink: pa.NativeFile | str, *, compression: str = "none") -> None:
    """Write ``table`` as Parquet. Floats are incompressible noise to zstd, so none is the default.

    Every page carries a CRC-32 (``write_page_checksum``): the file's sha256 in the manifest says
    whether the file changed, the page CRCs say which page, and catch a damaged page even when
    someone recomputed the manifest's sha256 over the damaged file.
    """
    pq.write_table(
        to_arrow(table),
        sink,
        compression=compression,
        use_dictionary=["id"] if table.id_type == "string" else False,
        write_statistics=["id", "updated_at"],
        row_group_size=ROW_GROUP_ROWS,
        write_page_checksum=True,
    )


def open_parquet(buf: pa.Buffer | memoryview | object, *, path: Path) -> pq.ParquetFile:
    """A Parquet file held in memory (a mapped file), with Arrow's page-checksum verification on;
    unreadable bytes become a :class:`SnapshotError` naming ``path``."""
    try:
        return pq.ParquetFile(pa.BufferReader(pa.py_buffer(buf)), page_checksum_verification=True)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise SnapshotError(f"is not a readable Parquet file ({exc})", path=path) from None


def check_schema(
    schema: pa.Schema, *, path: Path, dim: int | None, has_updated_at: bool | None = None, id_type: str | None = None
) -> None:
    """The Parquet schema must be ``id`` int64/string (the manifest's ``id_type`` when given),
    ``vector`` fixed-size float32 list, optional ``updated_at``."""
    expected_id_type = id_type
    names = set(schema.names)
    if len(names) != len(schema.names):
        raise SnapshotError(f"repeats a column name ({', '.join(schema.names)})", path=path)
    for required in ("id", "vector"):
        if required not in names:
            raise SnapshotError(
                f"missing the required column; columns present: {', '.join(schema.names) or 'none'}",
                path=path, column=required,
            )
    extra = names - {"id", "vector", "updated_at"}
    if extra:
        raise SnapshotError(
            f"unexpected column(s) {', '.join(sorted(extra))}; allowed: id, vector, updated_at", path=path
        )
    id_type = schema.field("id").type
    if not (pa.types.is_int64(id_type) or pa.types.is_string(id_type) or pa.types.is_large_string(id_type)):
        raise SnapshotError(f"must be int64 or string; got {id_type}", path=path, column="id")
    if expected_id_type is not None:
        got = "int64" if pa.types.is_int64(id_type) else "string"
        if got != expected_id_type:
            raise SnapshotError(f"ids are {got} but the manifest says {expected_id_type}", path=path,
                                column="id")
    vtype = schema.field("vector").type
    if not pa.types.is_fixed_size_list(vtype) or not pa.types.is_float32(vtype.value_type):
        raise SnapshotError(
            f"must be a fixed-size list of float32; got {vtype}", path=path, column="vector"
        )
    if dim is not None and vtype.list_size != dim:
        raise SnapshotError(
            f"holds vectors of dim {vtype.list_size} but the manifest says dim {dim}", path=path, column="vector"
        )
    if has_updated_at is not None and ("updated_at" in names) != has_updated_at:
        said = "has" if has_updated_at else "has no"
        found = "holds" if "updated_at" in names else "lacks"
        raise SnapshotError(
            f"the file {found} the column but the manifest says the table {said} updated_at",
            path=path, column="updated_at",
        )
    if "updated_at" in names and not pa.types.is_int64(schema.field("updated_at").type):
        raise SnapshotError(
            f"must be int64 epoch seconds; got {schema.field('updated_at').type}", path=path, column="updated_at"
        )


def from_arrow(table: pa.Table | pa.RecordBatch, *, path: Path) -> EmbeddingTable:
    """Turn an Arrow table (already schema-checked) into ids plus one contiguous float32 matrix."""
    for name in table.column_names:
        if table.column(name).null_count:
            raise SnapshotError(f"holds {table.column(name).null_count} null(s); nulls are not allowed", path=path,
                                column=name)
    vec_col = table.column("vector")
    vec = vec_col.combine_chunks() if isinstance(vec_col, pa.ChunkedArray) else vec_col
    dim = vec.type.list_size
    values = vec.flatten()  # respects slicing offsets, unlike .values
    if values.null_count:
        raise SnapshotError(f"holds {values.null_count} null element(s) inside vectors", path=path, column="vector")
    vectors = values.to_numpy(zero_copy_only=False).reshape(-1, dim)
    id_col = table.column("id")
    if pa.types.is_int64(id_col.type):
        ids = id_col.to_numpy()
    else:
        ids = np.asarray(id_col.to_numpy(zero_copy_only=False), dtype=object)
    updated = table.column("updated_at").to_numpy() if "updated_at" in table.column_names else None
    return EmbeddingTable(ids=ids, vectors=vectors, updated_at=updated)


def read_parquet(
    pf: pq.ParquetFile, *, path: Path, vectors: np.ndarray | None = None,
) -> EmbeddingTable:
    """Read a whole (schema-checked) Parquet file; unreadable bytes become a :class:`SnapshotError`.

    ``vectors``, when given, are the file's vectors already read by the raw page reader
    (:mod:`lee.snapshot.rawread`): only the other columns are then decoded.
    """
    try:
        if vectors is not None:
            rest = pf.read(columns=[c for c in pf.schema_arrow.names if c != "vector"])
            if rest.num_rows != vectors.shape[0]:
                raise SnapshotError(f"{rest.num_rows} ids but {vectors.shape[0]} vectors", path=path)
            for name in rest.column_names:
                if rest.column(name).null_count:
                    raise SnapshotError(f"holds {rest.column(name).null_count} null(s); nulls are not allowed",
                                        path=path, column=name)
            id_col = rest.column("id")
            ids = (id_col.to_numpy() if pa.types.is_int64(id_col.type)
                   else np.asarray(id_col.to_numpy(zero_copy_only=False), dtype=object))
            updated = rest.column("updated_at").to_numpy() if "updated_at" in rest.column_names else None
            return EmbeddingTable(ids=ids, vectors=vectors, updated_at=updated)
        table = pf.read()
    except SnapshotError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise SnapshotError(f"is not a readable Parquet file ({exc})", path=path) from None
    return from_arrow(table, path=path)
