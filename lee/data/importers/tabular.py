"""``csv`` and ``parquet``: any log, described by a TOML mapping (:mod:`lee.data.importers.mapping`).

The events file is SRC; only the columns the mapping names are kept (roles, declared fields, the
click rule's column, the ``downstream_where`` column). Side tables named in the mapping keep all
their columns as attributes; their id column is renamed to the events' id column. Without a time
column, row order is the time: row ``k`` (0-based) is ``k`` seconds after the epoch.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lee.data.importers.base import (
    IdColumn,
    ImportedTables,
    Importer,
    ImportOptions,
    Rows,
    TimeScale,
    apply_rule,
    labels,
    numbers,
    require_present,
    text,
    times,
)
from lee.data.importers.mapping import CsvLayout, Mapping, MappingField, SideTable, load_mapping
from lee.data.importers.text import Delimited, header_names, read_delimited, require_columns
from lee.data.rules import LabelRule, check_cut, parse_split
from lee.data.spec import DatasetSpec, FieldSpec, FieldType, Roles
from lee.errors import ConfigError, InputError


def _layout(csv: CsvLayout) -> Delimited:
    sep = "\t" if csv.separator == "\\t" else csv.separator
    return Delimited(separator=sep, header=csv.header, names=csv.columns, encoding=csv.encoding, quoting=csv.quoting)


class _MappedImporter(Importer):
    """What csv and parquet share: the mapping, the conversions, the side tables."""

    accepts = frozenset({"mapping", "positive", "split"})
    unit = "line"

    def __init__(self, src: Path, options: ImportOptions) -> None:
        super().__init__(src, options)
        if options.mapping is None:
            raise InputError(f"--format {self.name} needs --mapping MAP.toml, which says which columns are the label, "
                             "user, item and time and which are fields (see docs/data-format.md)")
        if not src.is_file():
            raise InputError(f"{src}: not a file; --format {self.name} reads one events file")
        self.mapping: Mapping = load_mapping(options.mapping)
        self.base = options.mapping.parent
        m, r = self.mapping, self.mapping.roles
        if options.positive and r.label:
            raise InputError(f"{options.mapping}: roles.label names a 0/1 column ({r.label}); --positive applies to "
                             "a mapping without one")
        rule_text = options.positive or m.positive
        self.rule: LabelRule | None = LabelRule.parse(rule_text) if rule_text else None
        self.names = self._columns()
        self.label_col = r.label or self._free("label", "click")
        self.ts_col = "ts"   # always epoch seconds, whatever the source column was called and written in
        needed: list[str] = [c for c in (r.label, r.user_id, r.item_id, r.ts, r.value, r.part) if c]
        needed += [f.source for f in m.fields if f.table == "events" and f.derived is None]
        if self.rule is not None:
            needed.append(self.rule.column)
        if m.downstream_where is not None:
            needed.append(m.downstream_where.column)
        self.needed = list(dict.fromkeys(needed))
        self._require(self.needed)
        if "ts" in self.needed and r.ts != "ts":
            raise InputError(f"{src}: has a column ts that is not the time column ({r.ts or 'none: row order'}); "
                             "the dataset's time column is called ts, so rename that column")
        self.event_fields = {f.source: f for f in m.fields if f.table == "events" and f.derived is None}
        self.user_ids = IdColumn(r.user_id, m.ids)
        self.item_ids = IdColumn(r.item_id, m.ids)
        self._rows_seen = 0
        self.time_scale: TimeScale | None = None
        if r.ts is not None:
            declared = "time" in m.model_fields_set
            self.time_scale = TimeScale(r.ts, m.time.unit, f"set {{}} in the [time] table of {options.mapping}",
                                        default_unit=not declared)
        for side in (m.users, m.items):
            if side is not None:
                self._side_path(side)   # fails now, not after the events, when the file is missing
        split = parse_split(options.split) if options.split else m.split
        if split.cut is not None:
            check_cut(split.cut, f"{options.mapping}: [split]", "cut = {}")
        try:
            fields = tuple(FieldSpec(name=f.name, role=f.role, type=f.type, table=f.table, column=f.column,
                                     separator=f.separator, derived=f.derived) for f in m.fields)
            self.spec = DatasetSpec(
                name=options.name or m.name or self.dataset_name,
                roles=Roles(label=self.label_col, user_id=r.user_id, item_id=r.item_id, ts=self.ts_col,
                            value=r.value, part=r.part),
                fields=fields, split=split, downstream_where=m.downstream_where)
        except ConfigError as exc:
            raise InputError(f"{options.mapping}: {exc}") from None
        if r.ts is None:
            self.notes.append("no time column: row order is the time (row k, from 0, is k seconds after 1970-01-01)")
        elif r.ts != "ts" or m.time.unit != "s":
            zone = "; text without a time zone is taken as UTC" if m.time.unit in ("iso", "format") else ""
            self.notes.append(f"time: column {r.ts} ({m.time.unit}{' ' + repr(m.time.format) if m.time.format else ''})"
                              f" read as epoch seconds into column ts{zone}")

    # ------------------------------------------------------------------ per format

    def _columns(self) -> list[str]:
        raise NotImplementedError

    def _require(self, needed: list[str]) -> None:
        raise NotImplementedError

    def _tables(self) -> Iterator[tuple[pa.Table, Rows]]:
        raise NotImplementedError

    def _free(self, *candidates: str) -> str:
        """A name for a column this import adds (label from a click rule, ts from row order)."""
        for c in candidates:
            if c not in self.names:
                return c
        raise InputError(f"{self.src}: columns {', '.join(candidates)} already exist; name the column to use in "
                         f"the mapping's [roles]")

    # ------------------------------------------------------------------ events

    def events(self) -> Iterator[pd.DataFrame]:
        for table, rows in self._tables():
            yield self._convert(table, rows)

    def _convert(self, table: pa.Table, rows: Rows) -> pd.DataFrame:
        m, r = self.mapping, self.mapping.roles
        n = table.num_rows
        cols: dict[str, Any] = {}
        for c in self.needed:
            arr = table.column(c)
            if c == r.ts:
                cols[self.ts_col] = times(arr, rows, c, m.time.unit, m.time.format)
                if self.time_scale is not None:
                    self.time_scale(cols[self.ts_col], arr, rows)
            elif c == r.label:
                cols[c] = labels(arr, rows, c)
            elif c == r.user_id:
                cols[c] = self.user_ids(arr, rows)
            elif c == r.item_id:
                cols[c] = self.item_ids(arr, rows)
            elif c == r.value:
                require_present(arr, rows, c, "a number (the value)")
                cols[c] = numbers(arr, rows, c)
            elif c == r.part:
                require_present(arr, rows, c, "upstream or downstream")
                cols[c] = text(arr)
            elif c in self.event_fields and self.event_fields[c].type == FieldType.NUMERIC:
                cols[c] = numbers(arr, rows, c)
            elif m.downstream_where is not None and c == m.downstream_where.column and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in m.downstream_where.values):
                cols[c] = numbers(arr, rows, c)
            else:
                cols[c] = text(arr)
        frame = pd.DataFrame(cols)
        if self.rule is not None:
            frame[self.label_col] = apply_rule(self.rule, frame, rows)
        if r.ts is None:
            frame[self.ts_col] = np.arange(self._rows_seen, self._rows_seen + n, dtype=np.int64)
        self._rows_seen += n
        return frame

    # ------------------------------------------------------------------ side tables

    def _side_path(self, side: SideTable) -> Path:
        path = Path(side.file)
        path = path if path.is_absolute() else self.base / path
        if not path.is_file():
            raise InputError(f"{self.options.mapping}: side table {side.file} not found (looked for {path})")
        return path

    def _read_side(self, side: SideTable, entity: str, ids: IdColumn, id_name: str,
                   fields: list[MappingField]) -> pd.DataFrame:
        path = self._side_path(side)
        if path.suffix == ".parquet":
            try:
                table = pq.read_table(path)
            except (pa.ArrowException, OSError) as exc:
                raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
            rows = Rows(path, 1, "row")
            names = table.column_names
        else:
            layout = _layout(side.csv or self.mapping.csv)
            names = list(header_names(path, layout))
            require_columns(path, layout, names, [side.id], f" (the {entity} id)")
            chunks = [t for t, _ in read_delimited(path, layout, block_mb=self.options.chunk_mb)]
            if not chunks:
                raise InputError(f"{path}: holds no rows")
            table = pa.concat_tables(chunks)
            rows = Rows(path, 2 if layout.header else 1)
        missing = [c for c in [side.id, *(f.source for f in fields)] if c not in names]
        if missing:
            raise InputError(f"{path}: missing column(s) {', '.join(missing)}; columns: {', '.join(names)}")
        if side.id != id_name and id_name in names:
            raise InputError(f"{path}: has a column {id_name} besides its id column {side.id}; the id is renamed "
                             f"{id_name} (the events' {entity} id), so rename the other column")
        numeric = {f.source for f in fields if f.type == FieldType.NUMERIC}
        cols: dict[str, Any] = {}
        for c in names:
            arr = table.column(c)
            if c == side.id:
                if ids.kind == "auto":   # no events read: let the side table decide
                    ids.kind = "text"
                cols[id_name] = ids(arr, rows, label=c)
            elif c in numeric:
                cols[c] = numbers(arr, rows, c)
            elif pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
                cols[c] = text(arr)
            else:
                cols[c] = arr.to_pandas()
        frame = pd.DataFrame(cols)
        dup = frame[id_name].duplicated().to_numpy()
        if dup.any():
            k = int(np.flatnonzero(dup)[0])
            raise InputError(f"{rows(k)}: {entity} id {frame[id_name].iloc[k]!r} appears twice; one row per "
                             f"{entity} expected")
        return frame

    def result(self) -> ImportedTables:
        m, r = self.mapping, self.mapping.roles
        assert self.spec is not None
        users = items = None
        if m.users is not None:
            users = self._read_side(m.users, "user", self.user_ids, r.user_id,
                                    [f for f in m.fields if f.table == "users" and f.derived is None])
        if m.items is not None:
            items = self._read_side(m.items, "item", self.item_ids, r.item_id,
                                    [f for f in m.fields if f.table == "items" and f.derived is None])
        if self.time_scale is not None:
            self.notes += self.time_scale.notes()
        label_rule = self.rule.describe(self.label_col) if self.rule else f"{self.label_col} = the log's 0/1 column"
        spec = self.spec.model_copy(update={"source": {
            "format": self.name, "path": str(self.src.resolve()),
            "mapping": str(Path(self.options.mapping or "").resolve()), "label_rule": label_rule,
            "time_column": m.roles.ts, "time_unit": m.time.unit if m.roles.ts else "row order",
            **({"time_format": m.time.format} if m.time.format else {})}})
        return ImportedTables(spec=spec, users=users, items=items, notes=self.notes)


class CsvImporter(_MappedImporter):
    """Delimited text (any separator), one events file plus optional side tables, through a mapping."""

    name = "csv"
    description = "delimited text with a TOML mapping (--mapping): columns -> roles, fields and their types"

    def __init__(self, src: Path, options: ImportOptions) -> None:
        self.layout = Delimited()
        if options.mapping is not None:
            self.layout = _layout(load_mapping(options.mapping).csv)
        super().__init__(src, options)

    def _columns(self) -> list[str]:
        return list(header_names(self.src, self.layout))

    def _require(self, needed: list[str]) -> None:
        require_columns(self.src, self.layout, self.names, needed)

    def _tables(self) -> Iterator[tuple[pa.Table, Rows]]:
        yield from read_delimited(self.src, self.layout, columns=self.needed, block_mb=self.options.chunk_mb)


class ParquetImporter(_MappedImporter):
    """A Parquet events file (native column types kept), plus optional side tables, through a mapping."""

    name = "parquet"
    description = "a Parquet file with a TOML mapping (--mapping); the mapping's [csv] table is not used"
    unit = "row"

    def _file(self) -> pq.ParquetFile:
        try:
            return pq.ParquetFile(self.src)
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"{self.src}: not a readable Parquet file ({exc})") from None

    def _columns(self) -> list[str]:
        return list(self._file().schema_arrow.names)

    def _require(self, needed: list[str]) -> None:
        missing = [c for c in needed if c not in self.names]
        if missing:
            raise InputError(f"{self.src}: missing column(s) {', '.join(missing)}; the file has: "
                             f"{', '.join(self.names)}")
        if self._file().metadata.num_rows == 0:
            raise InputError(f"{self.src}: the file holds no rows")

    def _tables(self) -> Iterator[tuple[pa.Table, Rows]]:
        rows_before = 0
        try:
            for batch in self._file().iter_batches(batch_size=self.options.chunk_mb * 32_768, columns=self.needed):
                yield pa.Table.from_batches([batch]), Rows(self.src, rows_before + 1, "row")
                rows_before += batch.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"{self.src}: not readable after row {rows_before} ({exc})") from None

