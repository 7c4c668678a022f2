"""``recbole``: RecBole atomic files, the format dozens of public recommendation datasets ship in.

Layout: ``NAME.inter`` (interactions) and optionally ``NAME.user`` / ``NAME.item`` beside it;
SRC is the directory (holding exactly one ``.inter``) or the ``.inter`` file. Each file is
tab-separated with a typed header, ``name:type``, the types being ``token`` (one categorical
value), ``token_seq`` (several, separated by spaces), ``float`` and ``float_seq``.

Conventions: the user and item ids are the columns ``user_id`` and ``item_id`` (``--user-field`` /
``--item-field`` name others); ``timestamp`` is the time in seconds (floored; without one, line
order is the time); ``label`` is the 0/1 label, else ``--positive`` derives one (e.g.
``'rating>=4'``) and without either the import is refused. In ``.inter`` the other ``token`` /
``token_seq`` columns are context fields, while ``float`` columns (ratings and other outcomes) are
kept as plain columns, never fields, since they usually describe the outcome itself. In ``.user`` /
``.item`` every column is an attribute and a field of that table (``float`` numeric, ``token``
categorical, ``token_seq`` multi-valued); ``float_seq`` columns are kept as text, not fields. A
field name already taken gets the table's prefix (``item_class``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa

from lee.data.importers.base import (
    IdColumn,
    ImportedTables,
    Importer,
    ImportOptions,
    Rows,
    apply_rule,
    labels,
    numbers,
    text,
    times,
)
from lee.data.importers.text import Delimited, first_line, read_delimited
from lee.data.spec import DatasetSpec, FieldRole, FieldSpec, FieldType, Roles
from lee.errors import InputError

TYPES = ("token", "token_seq", "float", "float_seq")
LAYOUT = Delimited("\t", header=True, quoting=False)


def typed_header(path: Path) -> list[tuple[str, str, str]]:
    """``(raw, name, type)`` for every column of a RecBole file's header."""
    line = first_line(path)
    if line is None:
        raise InputError(f"{path}: the file is empty")
    if "\t" not in line and line.count(":") > 1:
        sep = next((name for c, name in ((",", "comma"), (";", "semicolon"), (" ", "space")) if c in line), "")
        raise InputError(f"{path}: line 1 holds no tab; RecBole files are tab-separated"
                         + (f" (this one looks {sep}-separated)" if sep else "") + f": {line[:80]!r}")
    cols = []
    for k, raw in enumerate(line.split("\t"), start=1):
        name, sep, kind = raw.strip().rpartition(":")
        if not sep or not name:
            hint = " (the header looks comma-separated; RecBole files are tab-separated)" if "," in raw else ""
            raise InputError(f"{path}: line 1, column {k}: {raw!r} is not name:type; expected e.g. user_id:token "
                             f"with a type among {', '.join(TYPES)}{hint}")
        if kind not in TYPES:
            raise InputError(f"{path}: line 1, column {k}: unknown type {kind!r} in {raw!r}; expected one of "
                             f"{', '.join(TYPES)}")
        cols.append((raw.strip(), name, kind))
    names = [n for _, n, _ in cols]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"{path}: line 1: column(s) {', '.join(dup)} appear twice")
    return cols


class RecboleImporter(Importer):
    """RecBole's .inter / .user / .item atomic files."""

    name = "recbole"
    description = "RecBole atomic files: NAME.inter (+ NAME.user, NAME.item), tab-separated with name:type headers"
    accepts: ClassVar[frozenset[str]] = frozenset({"user_field", "item_field", "positive", "split"})

    def __init__(self, src: Path, options: ImportOptions) -> None:
        super().__init__(src, options)
        if src.is_dir():
            inters = sorted(src.glob("*.inter"))
            if len(inters) != 1:
                raise InputError(f"{src}: expected exactly one .inter file, found "
                                 f"{', '.join(p.name for p in inters) or 'none'}; pass the .inter file itself")
            src = inters[0]
        elif src.suffix != ".inter":
            raise InputError(f"{src}: expected a RecBole .inter file (or the directory holding it)")
        self.inter = src
        self.header = typed_header(src)
        self.kinds = {name: kind for _, name, kind in self.header}
        self.user_col = options.user_field or "user_id"
        self.item_col = options.item_field or "item_id"
        for col, flag in ((self.user_col, "--user-field"), (self.item_col, "--item-field")):
            if col not in self.kinds:
                raise InputError(f"{src}: line 1: no column {col} (the {'user' if 'user' in flag else 'item'} id); "
                                 f"columns: {', '.join(self.kinds)}; name it with {flag}")
            if self.kinds[col] != "token":
                raise InputError(f"{src}: line 1: column {col} is {self.kinds[col]}; an id column is token")
        self.rule = self.label_rule()
        self.label_col = "label"
        if self.rule is None and "label" not in self.kinds:
            raise InputError(f"{src}: no label column (label:float) and no click rule; give one such as "
                             "--positive 'rating>=4' (columns: " + ", ".join(self.kinds) + ")")
        if self.rule is not None:
            if self.rule.column not in self.kinds:
                raise InputError(f"--positive: {src} has no column {self.rule.column}; columns: "
                                 f"{', '.join(self.kinds)}")
            if "label" in self.kinds:
                self.label_col = "label_rule"
        self.ts_col = "timestamp" if "timestamp" in self.kinds else "ts"
        if "timestamp" not in self.kinds:
            self.notes.append("no timestamp column: line order is the time (data line k, from 0, is k seconds "
                              "after 1970-01-01)")
        self.ids = {"user": IdColumn(self.user_col), "item": IdColumn(self.item_col)}
        self.used_names: set[str] = {"user", "item"}
        fields = []
        roles_used = {self.user_col, self.item_col, "timestamp", "label", self.rule.column if self.rule else ""}
        kept_only = []
        for _, name, kind in self.header:
            if name in roles_used:
                continue
            if kind in ("token", "token_seq"):
                fields.append(self._field(name, FieldRole.CONTEXT, "events", kind))
            else:
                kept_only.append(name)
        if self.rule is not None:
            self.notes.append(f"click rule: {self.rule.describe(self.label_col)}; {self.rule.column} stays a column, "
                              "never a field")
        if kept_only:
            self.notes.append(f".inter column(s) {', '.join(kept_only)} kept as plain columns, not fields "
                              "(float columns usually describe the outcome)")
        self.side = {}
        for entity, suffix in (("user", ".user"), ("item", ".item")):
            path = src.with_suffix(suffix)
            if path.is_file():
                header = typed_header(path)
                id_col = self.user_col if entity == "user" else self.item_col
                if id_col not in {n for _, n, _ in header}:
                    raise InputError(f"{path}: line 1: no column {id_col} (the {entity} id the .inter file uses)")
                self.side[entity] = (path, header)
                table = "users" if entity == "user" else "items"
                role = FieldRole.USER if entity == "user" else FieldRole.ITEM
                for _, name, kind in header:
                    if name != id_col and kind != "float_seq":
                        fields.append(self._field(name, role, table, kind))
        self.event_kinds = {f.source: f.type for f in fields if f.table == "events"}
        self.spec = DatasetSpec(name=options.name or src.stem,
                                roles=Roles(label=self.label_col, user_id=self.user_col, item_id=self.item_col,
                                            ts=self.ts_col),
                                fields=tuple(fields), split=self.split())
        self._rows_seen = 0

    def _field(self, name: str, role: FieldRole, table: str, kind: str) -> FieldSpec:
        field_name = name if name not in self.used_names else f"{table[:-1]}_{name}"
        if field_name in self.used_names:
            raise InputError(f"{self.inter}: field {name} appears in several files; rename one of them")
        self.used_names.add(field_name)
        ftype = {"token": FieldType.CATEGORICAL, "token_seq": FieldType.MULTI, "float": FieldType.NUMERIC}[kind]
        return FieldSpec(name=field_name, role=role, type=ftype, table=table,
                         column=name if field_name != name else None, separator=" ")

    def events(self) -> Iterator[pd.DataFrame]:
        raw = {name: r for r, name, _ in self.header}
        for table, rows in read_delimited(self.inter, LAYOUT, block_mb=self.options.chunk_mb):
            cols: dict[str, Any] = {}
            for name, kind in self.kinds.items():
                arr = table.column(raw[name])
                if name == self.user_col:
                    cols[name] = self.ids["user"](arr, rows)
                elif name == self.item_col:
                    cols[name] = self.ids["item"](arr, rows)
                elif name == "timestamp":
                    cols[name] = times(arr, rows, raw[name], "s")
                elif name == "label" and self.rule is None:
                    cols[name] = labels(arr, rows, raw[name])
                elif kind == "float":
                    cols[name] = numbers(arr, rows, raw[name])
                else:
                    cols[name] = text(arr)
            frame = pd.DataFrame(cols)
            if self.rule is not None:
                frame[self.label_col] = apply_rule(self.rule, frame, rows)
            if self.ts_col == "ts":
                frame["ts"] = np.arange(self._rows_seen, self._rows_seen + len(frame), dtype=np.int64)
            self._rows_seen += len(frame)
            yield frame

    def _side_table(self, entity: str) -> pd.DataFrame | None:
        if entity not in self.side:
            return None
        path, header = self.side[entity]
        id_col = self.user_col if entity == "user" else self.item_col
        chunks = list(read_delimited(path, LAYOUT, block_mb=self.options.chunk_mb))
        if not chunks:
            raise InputError(f"{path}: holds no rows")
        table: pa.Table = pa.concat_tables([t for t, _ in chunks])
        rows: Rows = chunks[0][1]
        cols: dict[str, Any] = {}
        for raw, name, kind in header:
            arr = table.column(raw)
            if name == id_col:
                cols[name] = self.ids[entity](arr, rows, label=raw)
            elif kind == "float":
                cols[name] = numbers(arr, rows, raw)
            else:
                cols[name] = text(arr)
        frame = pd.DataFrame(cols)
        dup = frame[id_col].duplicated().to_numpy()
        if dup.any():
            k = int(np.flatnonzero(dup)[0])
            raise InputError(f"{rows(k)}: {entity} id {frame[id_col].iloc[k]!r} appears twice; one row per "
                             f"{entity} expected")
        return frame

    def result(self) -> ImportedTables:
        assert self.spec is not None
        rule = self.rule.describe(self.label_col) if self.rule else "label = the .inter file's label column (0/1)"
        spec = self.spec.model_copy(update={"source": {
            "format": self.name, "path": str(self.inter.resolve()), "label_rule": rule,
            "files": [self.inter.name, *(p.name for p, _ in self.side.values())]}})
        return ImportedTables(spec=spec, users=self._side_table("user"), items=self._side_table("item"),
                              notes=self.notes)
