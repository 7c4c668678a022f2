"""A fast path for the ``vector`` column: map the float32 values of PLAIN, uncompressed pages
straight from the file, without decoding them.

Arrow decodes a list column value by value (repetition and definition levels for every float),
about 0.5 GB/s here; the snapshot writer stores vectors uncompressed with PLAIN encoding, so each
data page's values are already one contiguous little-endian float32 run. This module walks the
page headers (Thrift compact protocol, parsed by the few lines below), checks that every page is
what the fast path assumes — a data page, PLAIN, no compression, no nulls (the value bytes must
be exactly ``num_values × 4``) — and returns zero-copy views of those runs.

Anything else (compression, dictionary pages, nulls, an unknown page type, a malformed header)
returns ``None`` and the caller falls back to Arrow, so files written by other tools still read
correctly; ``tests/test_rawread.py`` checks the fast path against Arrow value for value.

Pages that carry a CRC (the snapshot writer asks Arrow for page checksums) are checked by
:meth:`RawVectors.bad_page` when the caller verifies: the values are never decoded by Arrow here,
so Arrow's own page-checksum verification would not see them.
"""

from __future__ import annotations

import mmap
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

_DATA_PAGE, _DATA_PAGE_V2 = 0, 3
_PLAIN = 0


class _Unsupported(Exception):
    """The file is not laid out the way the fast path needs: use Arrow."""


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        if pos >= len(buf):
            raise _Unsupported("truncated varint")
        b = buf[pos]
        pos += 1
        out |= (b & 0x7F) << shift
        if not b & 0x80:
            return out, pos
        shift += 7
        if shift > 63:
            raise _Unsupported("varint too long")


def _zigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


def _value(buf: memoryview, pos: int, ctype: int) -> tuple[object, int]:
    """One Thrift compact-protocol value of type ``ctype`` (structs as {field id: value})."""
    if ctype in (1, 2):                       # booleans carried in the type nibble
        return ctype == 1, pos
    if ctype == 3:                            # byte
        return buf[pos], pos + 1
    if ctype in (4, 5, 6):                    # i16, i32, i64
        n, pos = _varint(buf, pos)
        return _zigzag(n), pos
    if ctype == 7:                            # double
        return struct.unpack_from("<d", buf, pos)[0], pos + 8
    if ctype == 8:                            # binary
        n, pos = _varint(buf, pos)
        if n > len(buf) - pos:
            raise _Unsupported("binary longer than the file")
        return bytes(buf[pos:pos + n]), pos + n
    if ctype in (9, 10):                      # list, set
        head = buf[pos]
        pos += 1
        size, etype = head >> 4, head & 0x0F
        if size == 15:
            size, pos = _varint(buf, pos)
        if size > len(buf) - pos:  # every element takes at least one byte: garbage, not a header
            raise _Unsupported("list longer than the file")
        items = []
        for _ in range(size):
            v, pos = _value(buf, pos, etype)
            items.append(v)
        return items, pos
    if ctype == 11:                           # map
        size, pos = _varint(buf, pos)
        if size == 0:
            return {}, pos
        if size > len(buf) - pos:
            raise _Unsupported("map longer than the file")
        kv = buf[pos]
        pos += 1
        out = {}
        for _ in range(size):
            k, pos = _value(buf, pos, kv >> 4)
            v, pos = _value(buf, pos, kv & 0x0F)
            out[k] = v
        return out, pos
    if ctype == 12:                           # struct
        return _struct(buf, pos)
    raise _Unsupported(f"unknown thrift type {ctype}")


def _struct(buf: memoryview, pos: int) -> tuple[dict[int, object], int]:
    fields: dict[int, object] = {}
    last = 0
    while True:
        if pos >= len(buf):
            raise _Unsupported("truncated struct")
        head = buf[pos]
        pos += 1
        if head == 0:
            return fields, pos
        delta, ctype = head >> 4, head & 0x0F
        if delta:
            fid = last + delta
        else:
            raw, pos = _varint(buf, pos)
            fid = _zigzag(raw)
        fields[fid], pos = _value(buf, pos, ctype)
        last = fid


@dataclass(frozen=True)
class RawVectors:
    """Zero-copy float32 views of the vector column, one per data page, in row order."""

    pages: list[np.ndarray]   # each (values,) float32; together rows × dim values
    offsets: list[int]        # byte offset of each page's first value in the file
    dim: int
    _map: mmap.mmap
    crcs: list[tuple[int, int, int]] = field(default_factory=list)  # (body offset, body size, crc32) per page

    def bad_page(self) -> int | None:
        """Ordinal of the first data page whose bytes do not match the CRC in its header, or None
        when every page that carries one matches (zlib releases the GIL: run it on a second core)."""
        view = memoryview(self._map)
        for k, (start, size, crc) in enumerate(self.crcs):
            if zlib.crc32(view[start:start + size]) != crc & 0xFFFFFFFF:
                return k
        return None

    def row_gather(self) -> RowGather | None:
        """Random access to rows straight from the mapped file, when every page but the last holds
        the same whole number of rows (the writer's layout); ``None`` otherwise."""
        rows = [p.size // self.dim for p in self.pages]
        if any(p.size % self.dim for p in self.pages) or len(set(rows[:-1])) > 1 or not rows:
            return None
        if len(rows) > 1 and rows[-1] > rows[0]:
            return None
        return RowGather(self, rows[0])

    def row_group_views(self) -> list[np.ndarray]:
        return self.pages

    def matrix(self, out: np.ndarray | None = None) -> np.ndarray:
        """All rows as one (rows, dim) float32 matrix (one copy, into ``out`` when given)."""
        n = sum(p.size for p in self.pages)
        flat = out.reshape(-1) if out is not None else np.empty(n, np.float32)
        pos = 0
        for p in self.pages:
            flat[pos:pos + p.size] = p
            pos += p.size
        return flat.reshape(-1, self.dim)


class RowGather:
    """Rows ``r`` of the table, gathered from the mapped pages without materialising the matrix.

    A byte-strided view of the whole file whose items are whole rows (item ``b`` = the ``4·dim``
    bytes starting at byte ``b``, as one opaque ``void`` value) lets one fancy index pick rows at
    arbitrary page offsets with one copy per row (a strided ``uint8`` view copied them byte by
    byte, ~6× slower at 1M random rows of 64 dims); the file's pages stay in the page cache
    (evictable), not in the process's own memory.
    """

    def __init__(self, raw: RawVectors, rows_per_page: int) -> None:
        self.dim = raw.dim
        self.rows_per_page = rows_per_page
        self.n_rows = sum(p.size for p in raw.pages) // raw.dim
        self._offsets = np.asarray(raw.offsets, dtype=np.int64)
        self._raw = raw  # keeps the map alive
        row_bytes = 4 * raw.dim
        self._row = np.dtype((np.void, row_bytes))
        self._rows = np.ndarray(shape=(max(0, len(raw._map) - row_bytes + 1),), dtype=self._row, buffer=raw._map,
                                strides=(1,))

    def take(self, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Rows ``rows`` into ``out[:len(rows)]`` (float32, (m, dim)); returns that slice."""
        page = rows // self.rows_per_page
        start = self._offsets[page] + (rows - page * self.rows_per_page) * (4 * self.dim)
        dest = out[: rows.size]
        if dest.flags.c_contiguous:
            dest.view(self._row).reshape(-1)[...] = self._rows[start]
        else:
            dest[...] = self._rows[start].view(np.float32).reshape(-1, self.dim)
        return dest


def raw_vectors(source: str | Path | mmap.mmap, dim: int, *,
                parquet: pq.ParquetFile | None = None) -> RawVectors | None:
    """Views of the file's vector values, or ``None`` when the file needs Arrow's decoder.

    ``source`` is a path (opened only if it is a regular file) or a read-only map of the file
    that the caller opened safely, with ``parquet`` its already-parsed :class:`pq.ParquetFile`.
    """
    try:
        if isinstance(source, mmap.mmap):
            return _raw_vectors(source, parquet if parquet is not None else pq.ParquetFile(pa.py_buffer(source)), dim)
        from lee.fileio import open_regular

        with open_regular(source) as (fd, st):
            mm = mmap.mmap(fd, st.st_size, access=mmap.ACCESS_READ)
        return _raw_vectors(mm, pq.ParquetFile(pa.py_buffer(mm)), dim)
    except Exception:  # noqa: BLE001 - a fast path never raises: anything unexpected means "use Arrow"
        return None


def _raw_vectors(mm: mmap.mmap, pf: pq.ParquetFile, dim: int) -> RawVectors:
    md = pf.metadata
    names = [pf.schema.column(i).path for i in range(md.num_columns)]
    if "vector.list.element" not in names and "vector.list.item" not in names:
        raise _Unsupported("no vector.list.element column")
    col = names.index("vector.list.element" if "vector.list.element" in names else "vector.list.item")
    desc = pf.schema.column(col)
    if desc.physical_type != "FLOAT" or desc.max_repetition_level != 1:
        raise _Unsupported("vector column is not a float list")
    # levels are never decoded, so the list length must be guaranteed by the schema itself
    vtype = pf.schema_arrow.field("vector").type
    if not (pa.types.is_fixed_size_list(vtype) and vtype.list_size == dim and pa.types.is_float32(vtype.value_type)):
        raise _Unsupported("vector is not a fixed-size float32 list of the expected dim")
    buf = memoryview(mm)
    pages: list[np.ndarray] = []
    offsets: list[int] = []
    crcs: list[tuple[int, int, int]] = []
    for g in range(md.num_row_groups):
        chunk = md.row_group(g).column(col)
        if chunk.compression != "UNCOMPRESSED" or chunk.dictionary_page_offset is not None:
            raise _Unsupported("compressed or dictionary-encoded vectors")
        if chunk.num_values != md.row_group(g).num_rows * dim:
            raise _Unsupported("value count is not rows × dim")
        pos, end = chunk.data_page_offset, chunk.data_page_offset + chunk.total_compressed_size
        if pos < 0 or end > len(buf):
            raise _Unsupported("column chunk outside the file")
        seen = 0
        while pos < end:
            header, body = _struct(buf, pos)
            size = header.get(3)
            kind = header.get(1)
            if not isinstance(size, int) or size < 0 or body + size > end:  # pages only move forward
                raise _Unsupported("bad page header")
            if kind == _DATA_PAGE:
                dph = header.get(5)
                if not isinstance(dph, dict) or dph.get(2) != _PLAIN:
                    raise _Unsupported("not a PLAIN data page")
                count = dph.get(1)
                levels_rle = dph.get(3) in (None, 3) and dph.get(4) in (None, 3)
                if not isinstance(count, int) or count < 0 or not levels_rle:
                    raise _Unsupported("bad value count or non-RLE levels")
                p = body
                for _ in range(2):  # repetition then definition levels, each length-prefixed
                    (n,) = struct.unpack_from("<I", buf, p)
                    p += 4 + n
                value_bytes = body + size - p
            elif kind == _DATA_PAGE_V2:
                dph = header.get(8)
                if not isinstance(dph, dict) or dph.get(4) != _PLAIN or dph.get(2, 0) != 0 or dph.get(7) is True:
                    raise _Unsupported("not a plain, null-free, uncompressed v2 page")
                count, def_len, rep_len = dph.get(1), dph.get(5, 0), dph.get(6, 0)
                if not (isinstance(count, int) and isinstance(def_len, int) and isinstance(rep_len, int)):
                    raise _Unsupported("bad v2 page header")
                if min(count, def_len, rep_len) < 0:
                    raise _Unsupported("bad v2 page header")
                p = body + def_len + rep_len
                value_bytes = body + size - p
            else:
                raise _Unsupported(f"page type {kind}")
            if value_bytes != 4 * count:  # nulls would leave fewer values than levels
                raise _Unsupported("page holds nulls")
            pages.append(np.frombuffer(mm, dtype="<f4", count=count, offset=p))
            offsets.append(p)
            crc = header.get(4)
            if isinstance(crc, int):
                crcs.append((body, size, crc))
            seen += count
            pos = body + size
        if seen != chunk.num_values:
            raise _Unsupported("pages do not add up to the chunk's values")
    return RawVectors(pages=pages, offsets=offsets, dim=dim, _map=mm, crcs=crcs)
