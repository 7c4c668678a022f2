"""Readers of embedding text files: word2vec / GloVe / fastText text (``.vec``, ``.txt``) and JSON lines.

Both are read by Arrow's multi-threaded C++ parsers (``pyarrow.csv`` with a space or tab
delimiter and no quoting; ``pyarrow.json``), never a Python loop over lines: a 1M x 64 file
imports in seconds. Arrow's errors say neither the file nor the line, so when it refuses a file
the file is scanned once more, in Python and only then, to name the first bad line and what was
expected there.

word2vec text (the C tool's and gensim's ``save_word2vec_format``, fastText's ``.vec``) opens with
a header line ``N D``; GloVe has none. Then one line per word: the word and its D values,
separated by single spaces (or tabs); the C tool and fastText end each line with a space, which
is accepted. Words are kept as text (leading zeros intact) unless another id type is asked for.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from lee.errors import InputError
from lee.fileio import open_regular
from lee.snapshot.format import EmbeddingTable
from lee.snapshot.import_columns import IdType, Locate, columns_matrix, list_vectors, typed_ids

_MAX_LINE = 64 << 20  # a first line longer than this is not an embedding row (1M dims of 60 chars is 60 MiB)
_HEADER = re.compile(rb"\s*([0-9]+)[ \t]+([0-9]+)\s*")
_BOM = b"\xef\xbb\xbf"  # a UTF-8 byte order mark (Windows editors); Arrow's readers skip it too


def _show(data: bytes | str, limit: int = 60) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return repr(text if len(text) <= limit else text[:limit - 3] + "...")


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """``(line number from 1, line without its end)`` of a regular file."""
    import os

    with open_regular(path) as (fd, _st), os.fdopen(os.dup(fd), "rb") as fh:
        for number, line in enumerate(fh, start=1):
            yield number, (line.removeprefix(_BOM) if number == 1 else line).rstrip(b"\r\n")


def line_of_record(path: Path, k: int, *, skip: int = 0, blank_if_spaces: bool = False) -> int:
    """The line number (from 1) of record ``k`` (from 0) after the first ``skip`` lines, blank lines not
    counted: how Arrow's readers number rows. Only for error messages (one pass over the file)."""
    seen = -1
    for number, line in _lines(path):
        if number <= skip or not (line.strip() if blank_if_spaces else line):
            continue
        seen += 1
        if seen == k:
            return number
    return -1


def _line_locator(path: Path, *, skip: int = 0, blank_if_spaces: bool = False) -> Locate:
    return lambda k: f"line {line_of_record(path, k, skip=skip, blank_if_spaces=blank_if_spaces)}"


def _first_lines(path: Path, count: int) -> list[tuple[int, bytes]]:
    """The first ``count`` lines that are not blank (whitespace only), with their numbers; each line is
    read with a bound on its length, so a file without line ends is refused, not read whole."""
    import os

    out: list[tuple[int, bytes]] = []
    with open_regular(path) as (fd, _st), os.fdopen(os.dup(fd), "rb") as fh:
        number = 0
        while len(out) < count:
            line = fh.readline(_MAX_LINE)
            if not line:
                break
            number += 1
            if len(line) >= _MAX_LINE and not line.endswith(b"\n"):
                raise InputError(f"{path}: line {number} is longer than {_MAX_LINE:,} bytes; not an embedding text "
                                 "file")
            line = (line.removeprefix(_BOM) if number == 1 else line).rstrip(b"\r\n")
            if line.strip():
                out.append((number, line))
    return out


# ------------------------------------------------------------------------------------------------
# word2vec / GloVe / fastText text
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class W2vLayout:
    """What the first lines of a word-vector text file say: header, separator, dimension."""

    header: tuple[int, int] | None  # (N, D) from line 1, or None (GloVe)
    delimiter: bytes  # b" " or b"\t"
    dim: int
    trailing: bool  # lines end with the separator (the word2vec C tool, fastText)
    first_data_line: int

    @property
    def skip(self) -> int:
        return 1 if self.header else 0


def sniff_word2vec(path: Path, header: bool | None) -> W2vLayout:
    """Read the header (when there is one: ``header`` None decides from line 1) and the first row."""
    lines = _first_lines(path, 2)
    if not lines:
        raise InputError(f"{path}: is empty; expected word vectors, one per line (word v1 ... vD)")
    match = _HEADER.fullmatch(lines[0][1]) if lines[0][0] == 1 else None
    if header is True and not match:
        raise InputError(f"{path}: line 1 is {_show(lines[0][1]) if lines[0][0] == 1 else 'blank'}; expected the "
                         "header 'N D' (the number of vectors and their dimension)")
    # two whole numbers on line 1 are the header 'N D' (word2vec, fastText); --no-header reads them as a row
    has_header = bool(match) and header is not False
    rows = lines[1:] if has_header else lines
    if not rows:
        if has_header and match and int(match.group(1)) == 0:
            raise InputError(f"{path}: the header on line 1 says 0 vectors; a table needs at least one")
        raise InputError(f"{path}: holds no vectors (nothing after {'the header on ' if has_header else ''}line 1)")
    number, line = rows[0]
    fields, delimiter = _split(line)
    trailing = len(fields) > 1 and fields[-1] == b""
    dim = len(fields) - 1 - trailing
    if dim < 1:
        hint = " (comma-separated? use --format csv, with --no-header if it has none)" if b"," in line else ""
        raise InputError(f"{path}: line {number} is {_show(line)}; expected a word and its values separated by "
                         f"spaces or tabs{hint}")
    if has_header and match:
        n_header, d_header = int(match.group(1)), int(match.group(2))
        if d_header != dim:
            raise InputError(f"{path}: line {number} has {_count(dim)} after its word, but the header on line 1 says "
                             f"{d_header} ('{n_header} {d_header}': vectors, dimension; if line 1 is a word and its "
                             "value, pass --no-header)")
        return W2vLayout((n_header, d_header), delimiter, dim, trailing, number)
    return W2vLayout(None, delimiter, dim, trailing, number)


def _count(n: int) -> str:
    return f"{n} value{'' if n == 1 else 's'}"


def _split(line: bytes) -> tuple[list[bytes], bytes]:
    delimiter = b"\t" if b"\t" in line else b" "
    return line.split(delimiter), delimiter


def read_word2vec(path: Path, *, header: bool | None = None, id_type: IdType | None = "text") -> EmbeddingTable:
    """A word2vec / GloVe / fastText text file as an :class:`EmbeddingTable` (ids: the words)."""
    layout = sniff_word2vec(path, header)
    names = ["id", *(f"v{j}" for j in range(layout.dim)), *(["end"] if layout.trailing else [])]
    types: dict[str, pa.DataType] = {n: pa.float32() for n in names}
    types["id"] = pa.string()
    if layout.trailing:
        types["end"] = pa.string()
    try:
        table = pacsv.read_csv(
            str(path),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=layout.skip, block_size=16 << 20),
            parse_options=pacsv.ParseOptions(delimiter=layout.delimiter.decode(), quote_char=False,
                                             double_quote=False, escape_char=False, newlines_in_values=False,
                                             ignore_empty_lines=True),
            convert_options=pacsv.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=False,
                                                 quoted_strings_can_be_null=False, check_utf8=True),
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise diagnose_word2vec(path, layout, exc) from None
    locate = _line_locator(path, skip=layout.skip)
    n = table.num_rows
    if layout.header and layout.header[0] != n:
        raise InputError(f"{path}: the header on line 1 says {layout.header[0]:,} vectors, but the file holds {n:,} "
                         f"(of dimension {layout.dim})")
    if layout.trailing:
        end = table.column("end")
        stray = pc.not_equal(end, "")
        if pc.any(stray).as_py():
            k = int(pc.index(stray, True).as_py())
            raise InputError(f"{path}: {locate(k)} has {layout.dim + 1} values after its word; expected "
                             f"{layout.dim} (as on line {layout.first_data_line})")
    values = [table.column(j + 1) for j in range(layout.dim)]
    for j, col in enumerate(values):
        if col.null_count:
            k = int(pc.index(col.is_null(), True).as_py())
            raise InputError(f"{path}: {locate(k)} has an empty value {j + 1} (two separators in a row?); expected "
                             f"{layout.dim} numbers after the word, one separator apart")
    vectors = columns_matrix(values)
    ids = typed_ids(table.column("id"), id_type, path, "word", locate)
    return EmbeddingTable(ids=ids, vectors=vectors)


_ARROW_COLUMN = re.compile(r"In CSV column #(\d+)")


def diagnose_word2vec(path: Path, layout: W2vLayout, exc: Exception) -> InputError:
    """Name the first line Arrow could not read: wrong count of values, a non-number, bad UTF-8.

    Arrow's message says which kind of problem it met (and, for a non-number, the column), so each
    line gets only that cheap check: counting separators, decoding, or parsing one field. A 1M-line
    file with its error on the last line is diagnosed in seconds, not the minute a full parse takes.
    """
    message = str(exc)
    found = _ARROW_COLUMN.search(message)
    column = int(found.group(1)) if found else None  # Arrow names the column of a conversion error
    utf8 = "utf8" in message.lower() or "utf-8" in message.lower()
    count = re.search(r"Expected \d+ columns, got \d+", message) is not None  # Arrow's "wrong number of fields"
    delimiter, separators = layout.delimiter, layout.dim + layout.trailing
    for number, line in _lines(path):
        if number <= layout.skip or not line:
            continue
        if line.count(delimiter) != separators or layout.trailing != line.endswith(delimiter):
            return _w2v_line_error(path, layout, number, line) or InputError(
                f"{path}: line {number} is not laid out like line {layout.first_data_line}")
        if (utf8 or column is None) and not _is_utf8(line):
            return _w2v_line_error(path, layout, number, line) or InputError(f"{path}: line {number} is unreadable")
        if column is not None and 1 <= column <= layout.dim:
            value = line.split(delimiter, column + 1)[column]
            if not _is_number(value):
                return _w2v_line_error(path, layout, number, line) or InputError(
                    f"{path}: line {number}, value {column} is {_show(value)}; expected a number")
        elif column is None and not utf8 and not count:
            error = _w2v_line_error(path, layout, number, line)  # an unknown complaint: check every field
            if error is not None:
                return error
    return InputError(f"{path}: not a readable word2vec/GloVe text file ({exc})")


def _w2v_line_error(path: Path, layout: W2vLayout, number: int, line: bytes) -> InputError | None:
    """What is wrong with one line (None if nothing): bad UTF-8, the count of values, the line's end, a non-number."""
    separator = "tabs" if layout.delimiter == b"\t" else "spaces"
    expected = f"the word and {layout.dim} numbers separated by {separator}"
    if not _is_utf8(line):
        return InputError(f"{path}: line {number} is not UTF-8 text (byte {_bad_utf8_at(line)}); save the file "
                          "as UTF-8")
    fields = line.split(layout.delimiter)
    values = fields[1:]
    ends = bool(values) and values[-1] == b""
    if ends:
        values = values[:-1]
    if len(values) != layout.dim:
        return InputError(f"{path}: line {number} has {_count(len(values))} after its word; expected {expected} "
                          f"(as on line {layout.first_data_line}){'' if values else f': {_show(line)}'}")
    if ends != layout.trailing:
        return InputError(f"{path}: line {number} {'ends' if ends else 'does not end'} with a separator, unlike "
                          f"line {layout.first_data_line}; every line must end the same way")
    for j in range(1, layout.dim + 1):
        if not _is_number(fields[j]):
            return InputError(f"{path}: line {number}, value {j} is {_show(fields[j])}; expected a number "
                              f"(line: {expected})")
    return None


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _bad_utf8_at(line: bytes) -> int:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as err:
        return int(err.start)
    return -1


def _is_number(text: bytes) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return b"_" not in text


# ------------------------------------------------------------------------------------------------
# JSON lines
# ------------------------------------------------------------------------------------------------


def read_jsonl(path: Path, *, ids_key: str = "id", vectors_key: str | None = None,
               id_type: IdType | None = None) -> EmbeddingTable:
    """JSON lines, one object per line with an id and an array of numbers: ``{"id": "u1", "embedding": [...]}``.

    ``vectors_key`` None takes the single array-valued key of the first object. Ids keep their JSON
    type (numbers as integers, strings as text) unless ``id_type`` says otherwise.
    """
    first_line, first = _first_object(path)
    if ids_key not in first:
        raise InputError(f"{path}: line {first_line} has no key {ids_key!r} (--ids-key); keys: "
                         f"{', '.join(map(str, first)) or 'none'}")
    if vectors_key is None:
        arrays = [k for k, v in first.items() if isinstance(v, list)]
        if len(arrays) != 1:
            raise InputError(f"{path}: line {first_line} has {len(arrays)} array keys ({', '.join(arrays)}); name "
                             "the vectors key with --vectors-key")
        vectors_key = arrays[0]
    elif vectors_key not in first:
        raise InputError(f"{path}: line {first_line} has no key {vectors_key!r} (--vectors-key); keys: "
                         f"{', '.join(map(str, first)) or 'none'}")
    first_id = first[ids_key]
    if isinstance(first_id, bool) or not isinstance(first_id, (int, str)):
        raise InputError(f"{path}: line {first_line}: id {_show(json.dumps(first_id))} under {ids_key!r} is neither "
                         "a string nor an integer")
    id_arrow = pa.string() if isinstance(first_id, str) else pa.int64()
    schema = pa.schema([pa.field(ids_key, id_arrow), pa.field(vectors_key, pa.list_(pa.float64()))])
    parse = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore", newlines_in_values=False)
    try:
        table = pajson.read_json(str(path), read_options=pajson.ReadOptions(block_size=16 << 20), parse_options=parse)
    except (pa.ArrowInvalid, OSError) as exc:
        raise diagnose_jsonl(path, ids_key, vectors_key, type(first_id), first_line, exc, parse) from None
    locate = _line_locator(path, blank_if_spaces=True)
    ids = typed_ids(table.column(ids_key), id_type, path, ids_key, locate)
    vectors = list_vectors(table.column(vectors_key), ids, path, vectors_key, locate)
    return EmbeddingTable(ids=ids, vectors=vectors)


def _first_object(path: Path) -> tuple[int, dict[str, object]]:
    lines = _first_lines(path, 1)
    if not lines:
        raise InputError(f"{path}: is empty; expected JSON lines, one object per line ({{\"id\": ..., \"vector\": "
                         "[...]}})")
    number, line = lines[0]
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: line {number} is not JSON ({exc}); expected one object per line") from None
    if not isinstance(obj, dict):
        raise InputError(f"{path}: line {number} is a JSON {type(obj).__name__}, not an object; expected one "
                         "object per line, e.g. {\"id\": \"u1\", \"embedding\": [0.1, 0.2]}")
    return number, obj


def _line_chunks(path: Path, size: int = 4 << 20) -> Iterator[tuple[int, bytes]]:
    """The file in pieces of about ``size`` bytes cut at line ends, each with the number of its first line."""
    import os

    with open_regular(path) as (fd, _st), os.fdopen(os.dup(fd), "rb") as fh:
        first, rest = 1, b""
        while block := fh.read(size):
            data = rest + block
            cut = data.rfind(b"\n") + 1
            if cut:
                yield first, data[:cut]
                first += data.count(b"\n", 0, cut)
            rest = data[cut:]
        if rest:
            yield first, rest


def diagnose_jsonl(path: Path, ids_key: str, vectors_key: str, id_kind: type, first_line: int,
                   exc: Exception, parse: pajson.ParseOptions) -> InputError:
    """Name the first line Arrow's JSON reader refused: not JSON, not an object, an id of another
    type than line ``first_line``'s, or vectors that are not an array of numbers.

    The file is re-read by Arrow in 4 MiB pieces with the same schema; only the first piece it
    refuses is checked line by line in Python (a 1M-line file is diagnosed in seconds)."""
    for first, chunk in _line_chunks(path):
        try:
            pajson.read_json(pa.BufferReader(chunk), parse_options=parse)
        except (pa.ArrowInvalid, OSError):
            lines = chunk.split(b"\n")
            if first == 1 and lines:
                lines[0] = lines[0].removeprefix(_BOM)
            numbered = ((first + k, ln.rstrip(b"\r")) for k, ln in enumerate(lines))
            error = _jsonl_line_error(path, numbered, ids_key, vectors_key, id_kind, first_line)
            if error is not None:
                return error
    return InputError(f"{path}: not readable JSON lines ({exc})")


def _jsonl_line_error(path: Path, lines: Iterator[tuple[int, bytes]], ids_key: str, vectors_key: str,
                      id_kind: type, first_line: int) -> InputError | None:
    """The first of ``lines`` that is not an object with an id like line ``first_line``'s and an array of numbers."""
    id_word = "a string" if id_kind is str else "an integer"
    for number, line in lines:
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, UnicodeDecodeError) as err:
            return InputError(f"{path}: line {number} is not valid JSON ({err})")
        if not isinstance(obj, dict):
            return InputError(f"{path}: line {number} is a JSON {type(obj).__name__}, not an object")
        ident = obj.get(ids_key)
        if ident is not None and (isinstance(ident, bool) or not isinstance(ident, id_kind)):
            return InputError(f"{path}: line {number}: id {_show(json.dumps(ident))} under {ids_key!r} is not "
                              f"{id_word} like the id on line {first_line}; write every id the same way")
        vec = obj.get(vectors_key)
        if vec is None:
            continue  # a missing vector is named with its id after the read
        if not isinstance(vec, list):
            return InputError(f"{path}: line {number} (id {_show(str(ident))}): {vectors_key!r} is "
                              f"{_show(json.dumps(vec))}; expected an array of numbers")
        for j, v in enumerate(vec):
            if v is not None and not _json_number(v):
                shown = "beyond the range of a double" if isinstance(v, float) else f"{_show(json.dumps(v))}"
                return InputError(f"{path}: line {number} (id {_show(str(ident))}): value {j} of {vectors_key!r} is "
                                  f"{shown}; expected a finite number")
    return None


def _json_number(v: object) -> bool:
    """A number Arrow's JSON reader takes as a double (NaN included: the table checks name it later)."""
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return abs(v) < 2 ** 1024
    return isinstance(v, float) and not math.isinf(v)
