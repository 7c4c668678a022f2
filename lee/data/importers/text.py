"""Reading delimited text in chunks with Arrow's streaming CSV reader, every line accounted for.

Every column is read as text (the importers convert, naming the line of a bad value), empty
values are missing, and blank lines are not skipped, so row ``k`` of the file is line
``k + 1`` (+ 1 with a header) — which is how every message names a line. A line with the wrong
number of fields stops the read with its number, what was expected and, when the line splits on
another common separator, a hint that the separator is wrong. A separator of more than one
character (MovieLens 1M's ``::``) is handled by reading whole lines and splitting them.
``.gz`` and ``.bz2`` files are decompressed on the fly.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from lee.data.importers.base import Rows
from lee.errors import InputError

_CANDIDATES = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe", "::": "'::'", " ": "space"}
_LINE_DELIMITER = "\x1f"   # a control character no text line holds: the whole line is one field


def separator_name(sep: str) -> str:
    return {"\t": "tabs", ",": "commas", ";": "semicolons", "|": "pipes", " ": "spaces"}.get(sep, repr(sep))


def separator_hint(line: str, sep: str, expected: int | None = None) -> str:
    """`` — the line looks tab-separated`` when another common separator splits it (better), else ''."""
    for cand, name in _CANDIDATES.items():
        if cand == sep or cand not in line or cand == " ":
            continue
        n = len(line.split(cand))
        if expected is None or n == expected or (n > 1 and len(line.split(sep)) == 1):
            return f" — the line looks {name}-separated, not separated by {separator_name(sep)}"
    return ""


@dataclass(frozen=True)
class Delimited:
    """How a text file is laid out."""

    separator: str = ","
    header: bool = True
    names: tuple[str, ...] | None = None     # column names when there is no header line
    encoding: str = "utf-8"
    quoting: bool = True                     # "..." may enclose a separator (CSV); off for TSV logs


def first_line(path: Path, encoding: str = "utf-8") -> str | None:
    """The first line of ``path`` (decompressed), or None when the file holds nothing."""
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        with pa.input_stream(str(path), compression="detect") as fh:
            data = fh.read(1 << 20)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path}: cannot read the file ({exc})") from None
    if not data.strip():
        return None
    try:
        return data.split(b"\n", 1)[0].rstrip(b"\r").decode(encoding).lstrip("\ufeff")
    except UnicodeDecodeError:
        raise InputError(f"{path}: line 1 is not {encoding} text") from None


def header_names(path: Path, layout: Delimited) -> tuple[str, ...]:
    """The column names: the header line's (quotes honoured) or ``layout.names``."""
    line = first_line(path, layout.encoding)
    if line is None:
        raise InputError(f"{path}: the file is empty")
    if not layout.header:
        if layout.names is None:
            raise InputError(f"{path}: the file has no header line, so its column names must be given")
        return layout.names
    if len(layout.separator) > 1 or not layout.quoting:
        names = line.split(layout.separator)
    else:
        names = next(csv.reader([line], delimiter=layout.separator, quotechar='"'))
    return tuple(n.strip() for n in names)


def _invalid(path: Path, layout: Delimited, row: pacsv.InvalidRow | None, first_data_line: int) -> InputError:
    if row is None:
        return InputError(f"{path}: not readable as text separated by {separator_name(layout.separator)}")
    line = row.number if row.number is not None else None
    where = f"line {line}" if line is not None else "a line"
    text = row.text or ""
    if not text.strip():
        return InputError(f"{path}: {where} is empty; expected {row.expected_columns} fields separated by "
                          f"{separator_name(layout.separator)}")
    shown = text if len(text) <= 80 else text[:79] + "…"
    return InputError(f"{path}: {where}: expected {row.expected_columns} fields separated by "
                      f"{separator_name(layout.separator)}, found {row.actual_columns}: {shown!r}"
                      f"{separator_hint(text, layout.separator, row.expected_columns)}")


def read_delimited(path: Path, layout: Delimited, *, columns: Sequence[str] | None = None,
                   block_mb: int = 16) -> Iterator[tuple[pa.Table, Rows]]:
    """Chunks of ``path`` as Arrow tables of text columns (only ``columns`` when given), each with the
    :class:`Rows` that names its lines."""
    names = header_names(path, layout)
    first_data_line = 2 if layout.header else 1
    if len(layout.separator) > 1:
        yield from _read_multichar(path, layout, names, columns, block_mb, first_data_line)
        return
    bad: list[pacsv.InvalidRow] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        bad.append(row)
        return "error"

    read = pacsv.ReadOptions(column_names=list(names), skip_rows=1 if layout.header else 0,
                             block_size=block_mb << 20, use_threads=False, encoding=layout.encoding)
    parse = pacsv.ParseOptions(delimiter=layout.separator, quote_char='"' if layout.quoting else False,
                               ignore_empty_lines=False, invalid_row_handler=on_invalid)
    keep = list(columns) if columns is not None else list(names)
    convert = pacsv.ConvertOptions(column_types={n: pa.string() for n in names}, include_columns=keep,
                                   strings_can_be_null=True, null_values=[""], quoted_strings_can_be_null=True)
    rows_before = 0
    try:
        reader = pacsv.open_csv(str(path), read_options=read, parse_options=parse, convert_options=convert)
        for batch in reader:
            if batch.num_rows:
                yield pa.Table.from_batches([batch]), Rows(path, first_data_line + rows_before)
            rows_before += batch.num_rows
    except pa.ArrowInvalid as exc:
        if bad:
            raise _invalid(path, layout, bad[0], first_data_line) from None
        if "UTF8" in str(exc) or "utf8" in str(exc).lower():
            raise InputError(f"{path}: not {layout.encoding} text after line {first_data_line + rows_before - 1} "
                             f"({exc})") from None
        raise InputError(f"{path}: not readable as text separated by {separator_name(layout.separator)} "
                         f"({exc})") from None


def read_lines(path: Path, *, encoding: str = "utf-8", skip: int = 0, block_mb: int = 16
               ) -> Iterator[tuple[pa.Array, Rows]]:
    """Chunks of whole lines (text, never missing), skipping the first ``skip`` lines."""
    if first_line(path, encoding) is None:
        raise InputError(f"{path}: the file is empty")
    read = pacsv.ReadOptions(column_names=["line"], skip_rows=skip, block_size=block_mb << 20, use_threads=False,
                             encoding=encoding)
    parse = pacsv.ParseOptions(delimiter=_LINE_DELIMITER, quote_char=False, ignore_empty_lines=False,
                               newlines_in_values=False)
    convert = pacsv.ConvertOptions(column_types={"line": pa.string()}, strings_can_be_null=False)
    rows_before = 0
    try:
        for batch in pacsv.open_csv(str(path), read_options=read, parse_options=parse, convert_options=convert):
            if batch.num_rows:
                yield batch.column(0), Rows(path, skip + 1 + rows_before)
            rows_before += batch.num_rows
    except pa.ArrowInvalid as exc:
        raise InputError(f"{path}: not readable as {encoding} text lines after line {skip + rows_before} "
                         f"({exc})") from None


def _read_multichar(path: Path, layout: Delimited, names: Sequence[str], columns: Sequence[str] | None,
                    block_mb: int, first_data_line: int) -> Iterator[tuple[pa.Table, Rows]]:
    keep = list(columns) if columns is not None else list(names)
    index = {n: k for k, n in enumerate(names)}
    for lines, rows in read_lines(path, encoding=layout.encoding, skip=first_data_line - 1, block_mb=block_mb):
        parts = pc.split_pattern(lines, layout.separator)
        counts = pc.list_value_length(parts).to_numpy(zero_copy_only=False)
        wrong = counts != len(names)
        if wrong.any():
            k = int(wrong.nonzero()[0][0])
            line = lines[k].as_py()
            if not line.strip():
                raise InputError(f"{rows(k)} is empty; expected {len(names)} fields separated by {layout.separator!r}")
            shown = line if len(line) <= 80 else line[:79] + "…"
            raise InputError(f"{rows(k)}: expected {len(names)} fields separated by {layout.separator!r}, found "
                             f"{int(counts[k])}: {shown!r}{separator_hint(line, layout.separator, len(names))}")
        cols = {}
        for n in keep:
            col = pc.list_element(parts, index[n])
            cols[n] = pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)
        yield pa.table(cols), rows


def require_columns(path: Path, layout: Delimited, names: Sequence[str], required: Sequence[str],
                    what: str = "") -> None:
    """An error naming the columns ``required`` that the header lacks (with a separator hint)."""
    missing = [c for c in required if c not in names]
    if not missing:
        return
    line = first_line(path, layout.encoding) or ""
    hint = separator_hint(line, layout.separator) if layout.header else ""
    if line.lstrip().startswith("{"):
        raise InputError(f"{path}: line 1 is a JSON object, not {'a header of' if layout.header else 'a line of'} "
                         f"column names separated by {separator_name(layout.separator)}: the file looks like JSON "
                         "lines (one object a line); use --format jsonl with the same mapping")
    shown = ", ".join(repr(n) for n in names[:12]) + (", ..." if len(names) > 12 else "")
    raise InputError(f"{path}: missing column(s) {', '.join(missing)}{what}; the "
                     f"{'header' if layout.header else 'layout'} holds {len(names)} column(s): {shown}{hint}")
