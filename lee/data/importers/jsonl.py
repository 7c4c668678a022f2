"""``jsonl``: JSON lines — one object a line (Amazon reviews, many event exports) — through a TOML mapping.

The mapping is the csv/parquet one (docs/data-format.md): ``[roles]``, ``[time]``, ``[[fields]]``,
side tables; the ``[csv]`` table is not used. A mapped key must hold a single value (text, number,
boolean); a key missing on a line is an empty value there. Blank lines are skipped; every message
names the file's own line number. ``.gz`` / ``.bz2`` files are read directly.

Each chunk of lines is parsed by Arrow's JSON reader; when that fails (a line that is not JSON, a
key whose type changes between lines), the chunk is parsed line by line with :mod:`json`, which
names the line at fault and otherwise gives the same values.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.json as pajson

from lee.data.importers.base import Rows
from lee.data.importers.tabular import _MappedImporter
from lee.data.importers.text import read_lines
from lee.errors import InputError


@dataclass(frozen=True)
class _LineRows(Rows):
    """Rows of a chunk whose blank lines were skipped: row ``k`` is line ``lines[k]``."""

    lines: tuple[int, ...] = ()

    def __call__(self, k: int) -> str:
        return f"{self.path}: line {self.lines[int(k)]}"


def _not_an_object(path: Path, line: int, text: str, detail: str) -> InputError:
    shown = text if len(text) <= 80 else text[:79] + "…"
    hint = ""
    if text.lstrip().startswith("{'"):
        hint = (" — it looks like a Python literal (single quotes), as in the older Amazon review dumps; convert "
                "each line to JSON first (json.dumps(ast.literal_eval(line)))")
    elif text.lstrip().startswith("["):
        hint = " — the file looks like one JSON array; --format jsonl reads one object a line"
    return InputError(f"{path}: line {line}: expected one JSON object a line, found {shown!r} ({detail}){hint}")


def _scalar(value: Any, path: Path, line: int, key: str) -> Any:
    if isinstance(value, (dict, list)):
        raise InputError(f"{path}: line {line}: key {key} holds {json.dumps(value)[:60]!r}; a mapped key must hold "
                         "one value (text, a number or true/false)")
    return value


class JsonLinesImporter(_MappedImporter):
    """JSON lines, one event an object, through a mapping."""

    name = "jsonl"
    description = "JSON lines (one object a line, e.g. Amazon reviews) with a TOML mapping (--mapping)"

    def _first_object(self) -> tuple[int, dict[str, Any]]:
        for lines, rows in read_lines(self.src, block_mb=1):
            for k, text in enumerate(lines.to_pylist()):
                if text.strip():
                    try:
                        obj = json.loads(text)
                    except json.JSONDecodeError as exc:
                        raise _not_an_object(self.src, rows.first + k, text, exc.msg) from None
                    if not isinstance(obj, dict):
                        raise _not_an_object(self.src, rows.first + k, text, f"a JSON {type(obj).__name__}")
                    return rows.first + k, obj
        raise InputError(f"{self.src}: holds only blank lines")

    def _columns(self) -> list[str]:
        return list(self._first_object()[1])

    def _require(self, needed: list[str]) -> None:
        line, obj = self._first_object()
        missing = [c for c in needed if c not in obj]
        if missing:
            keys = ", ".join(list(obj)[:20]) + (", ..." if len(obj) > 20 else "")
            raise InputError(f"{self.src}: line {line}: the object has no key(s) {', '.join(missing)} that the mapping "
                             f"names; its keys: {keys}")

    def _tables(self) -> Iterator[tuple[pa.Table, Rows]]:
        for lines, rows in read_lines(self.src, block_mb=self.options.chunk_mb):
            texts = lines.to_pylist()
            keep = [k for k, t in enumerate(texts) if t.strip()]
            if not keep:
                continue
            if len(keep) < len(texts):
                texts = [texts[k] for k in keep]
                rows = _LineRows(rows.path, rows.first, "line", tuple(rows.first + k for k in keep))
            yield self._parse(texts, rows), rows

    def _parse(self, texts: list[str], rows: Rows) -> pa.Table:
        data = "\n".join(texts).encode("utf-8")
        try:
            table = pajson.read_json(io.BytesIO(data), read_options=pajson.ReadOptions(
                use_threads=False, block_size=max(len(data) + 1, 1 << 20)))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return self._parse_slowly(texts, rows)
        if table.num_rows != len(texts):
            return self._parse_slowly(texts, rows)
        cols = {}
        for c in self.needed:
            if c not in table.column_names:
                cols[c] = pa.nulls(len(texts), pa.string())
                continue
            arr = table.column(c)
            if pa.types.is_nested(arr.type):
                return self._parse_slowly(texts, rows)   # names the line of the first non-scalar value
            cols[c] = arr
        return pa.table(cols)

    def _parse_slowly(self, texts: list[str], rows: Rows) -> pa.Table:
        values: dict[str, list[Any]] = {c: [] for c in self.needed}
        for k, text in enumerate(texts):
            where = rows(k)
            line = int(where.rsplit(" ", 1)[1])
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise _not_an_object(self.src, line, text, f"{exc.msg} at character {exc.colno}") from None
            if not isinstance(obj, dict):
                raise _not_an_object(self.src, line, text, f"a JSON {type(obj).__name__}")
            for c in self.needed:
                values[c].append(_scalar(obj.get(c), self.src, line, c))
        return pa.table({c: _column(v) for c, v in values.items()})


def _column(values: list[Any]) -> pa.Array:
    """The values with the type Arrow's JSON reader would give them; as text when lines disagree on it."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())
