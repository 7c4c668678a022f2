"""``libsvm`` and ``libfm``: sparse ``label index:value index:value ...`` lines.

Each line is a label and features; ``# ...`` to the end of a line is a comment. ``libfm`` also
reads libFFM-style ``field:index:value`` tokens. What a feature *means* comes from a field map
(``--field-map FILE``), one line per feature index::

    gender:female<TAB>17        categorical: index 17 is field "gender" with value "female"
    age<TAB>18                  numeric: index 18 is field "age", its value is the token's value

An index absent from the map is an error naming the line and the index. Without a field map, the
k-th feature of a line is field ``f{k}`` (``f0``, ``f1``, ...) and its value is the index
(libFFM tokens: field ``f{field}``), which must then be a one-hot ``index:1``.

Conventions (the formats have no user, item or time column): the **user id is the first field and
the item id the second** unless ``--user-field`` / ``--item-field`` name others; the **time is the
line order** (data line ``k``, from 0, is ``k`` seconds after 1970-01-01). Labels: ``1``/``+1`` are
1, ``0``/``-1`` are 0; any other label needs a click rule on the column ``label``
(``--positive 'label>=4'``, the raw value then kept as the column ``target``). A field that
holds several indices on one line is multi-valued (values joined with ``|``); all fields have
role ``context`` except the two ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from lee.data.importers.base import IdColumn, ImportedTables, Importer, ImportOptions, Rows, check_name, labels
from lee.data.importers.text import read_lines
from lee.data.spec import DatasetSpec, FieldRole, FieldSpec, FieldType, Roles
from lee.errors import InputError


@dataclass
class FieldMap:
    """Feature index -> (field, value); ``value`` None for a numeric field."""

    path: Path
    index: pd.Index                 # feature indices
    field: np.ndarray               # field position (into ``names``) of each index
    value: pa.Array                 # the categorical value of each index ("" for numeric ones)
    names: list[str]
    numeric: set[str]


def read_field_map(path: Path) -> FieldMap:
    """Parse ``field:value<TAB>index`` / ``field<TAB>index`` lines; every problem names the line."""
    if not path.is_file():
        raise InputError(f"{path}: field map not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{path}: the field map is not UTF-8 text") from None
    names: list[str] = []
    kinds: dict[str, str] = {}
    index: list[int] = []
    field: list[int] = []
    value: list[str] = []
    seen: dict[int, int] = {}
    for n, line in enumerate(lines, start=1):
        if not line.strip() or line.startswith("#"):
            continue
        key, tab, idx = line.rpartition("\t")
        if not tab:
            raise InputError(f"{path}: line {n}: expected field:value<TAB>index (or field<TAB>index for a numeric "
                             f"feature); found no tab in {line[:80]!r}")
        try:
            k = int(idx.strip())
        except ValueError:
            raise InputError(f"{path}: line {n}: the feature index {idx.strip()!r} is not an integer") from None
        if k in seen:
            raise InputError(f"{path}: line {n}: feature index {k} is already mapped on line {seen[k]}")
        seen[k] = n
        name, colon, val = key.partition(":")
        name = check_name(name.strip(), f"{path}: line {n}: field name")
        kind = "categorical" if colon else "numeric"
        if kinds.setdefault(name, kind) != kind:
            raise InputError(f"{path}: line {n}: field {name} is mapped both as categorical (field:value) and as "
                             "numeric (field alone)")
        if name not in names:
            names.append(name)
        index.append(k)
        field.append(names.index(name))
        value.append(val)
    if not index:
        raise InputError(f"{path}: the field map is empty; expected lines field:value<TAB>index")
    return FieldMap(path=path, index=pd.Index(np.asarray(index, dtype=np.int64)),
                    field=np.asarray(field, dtype=np.int64), value=pa.array(value, pa.string()), names=names,
                    numeric={n for n, k in kinds.items() if k == "numeric"})


class _SparseImporter(Importer):
    """What libsvm and libfm share."""

    accepts: ClassVar[frozenset[str]] = frozenset({"field_map", "user_field", "item_field", "positive", "split"})
    ffm_tokens: ClassVar[bool] = False

    def __init__(self, src: Path, options: ImportOptions) -> None:
        super().__init__(src, options)
        if not src.is_file():
            raise InputError(f"{src}: not a file; --format {self.name} reads one file of label index:value lines")
        self.fmap = read_field_map(options.field_map) if options.field_map is not None else None
        self.rule = self.label_rule()
        if self.rule is not None and self.rule.column != "label":
            raise InputError(f"--positive {self.options.positive!r}: a {self.name} line has one column, label; "
                             "write the rule on it, e.g. 'label>=4'")
        self.names: list[str] = list(self.fmap.names) if self.fmap else []
        self.numeric: set[str] = set(self.fmap.numeric) if self.fmap else set()
        self.multi: set[str] = set()
        self.user_col = self.item_col = ""
        self.ids: dict[str, IdColumn] = {}
        self.token_kind: int | None = None       # 2 (index:value) or 3 (field:index:value)
        self.ffm_fields: list[str] = []
        self._rows_seen = 0
        if self.fmap:
            self._choose_ids(self.fmap.path)

    def _choose_ids(self, where: Path) -> None:
        cats = [n for n in self.names if n not in self.numeric]
        user = self.options.user_field or (cats[0] if cats else None)
        item = self.options.item_field or (cats[1] if len(cats) > 1 else None)
        for col, flag in ((user, "--user-field"), (item, "--item-field")):
            if col is None:
                raise InputError(f"{where}: fewer than two categorical fields, so there is no user and item id")
            if col not in self.names:
                raise InputError(f"{flag} {col}: not a field of {where} (fields: {', '.join(self.names[:20])})")
            if col in self.numeric:
                raise InputError(f"{flag} {col}: a numeric field cannot be an id")
        assert user is not None and item is not None
        if user == item:
            raise InputError(f"--user-field and --item-field both name {user}")
        for col in (user, item):
            if col in ("label", "ts", "target"):
                raise InputError(f"{where}: field {col} clashes with a column the import adds; rename it")
        self.user_col, self.item_col = user, item
        self.ids = {"user": IdColumn(user), "item": IdColumn(item)}
        for f in self.names:
            if f in ("label", "ts", "target", "user", "item") and f not in (user, item):
                raise InputError(f"{where}: field name {f} is reserved; rename it")

    # ------------------------------------------------------------------ parsing

    def events(self) -> Iterator[pd.DataFrame]:
        for lines, rows in read_lines(self.src, block_mb=self.options.chunk_mb):
            yield self._parse(lines, rows)

    def _parse(self, lines: pa.Array, rows: Rows) -> pd.DataFrame:
        n = len(lines)
        body = pc.utf8_trim_whitespace(pc.replace_substring_regex(lines, r"#.*$", ""))
        tokens = pc.utf8_split_whitespace(body)
        counts = pc.list_value_length(tokens).to_numpy(zero_copy_only=False)
        blank = pc.equal(pc.utf8_length(body), 0).to_numpy(zero_copy_only=False)
        if blank.any():
            k = int(np.flatnonzero(blank)[0])
            raise InputError(f"{rows(k)} is empty; expected 'label index:value index:value ...'")
        lone = (counts == 1) & pc.match_substring_regex(body, r"[,;|]").to_numpy(zero_copy_only=False)
        if lone.any():
            k = int(np.flatnonzero(lone)[0])
            raise InputError(f"{rows(k)}: expected 'label index:value index:value ...' separated by spaces, found "
                             f"{lines[k].as_py()[:80]!r} — the line looks separated by another character")
        raw_label = pc.list_element(tokens, 0)
        feats = pc.list_slice(tokens, 1)
        flat = pc.list_flatten(feats)
        row = pc.list_parent_indices(feats).to_numpy(zero_copy_only=False)
        nfeat = counts - 1
        pos = np.arange(len(flat), dtype=np.int64) - np.repeat(np.cumsum(nfeat) - nfeat, nfeat)
        parts = pc.split_pattern(flat, ":")
        nparts = pc.list_value_length(parts).to_numpy(zero_copy_only=False)
        allowed = (2, 3) if self.ffm_tokens else (2,)
        bad = ~np.isin(nparts, allowed)
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            shape = "index:value or field:index:value" if self.ffm_tokens else "index:value"
            raise InputError(f"{rows(int(row[j]))}: feature {flat[j].as_py()!r} is not {shape}")
        if len(flat):
            kinds = np.unique(nparts)
            if len(kinds) > 1 or (self.token_kind is not None and kinds[0] != self.token_kind):
                j = int(np.flatnonzero(nparts != (self.token_kind or nparts[0]))[0])
                raise InputError(f"{rows(int(row[j]))}: feature {flat[j].as_py()!r} mixes index:value and "
                                 "field:index:value tokens; a file uses one kind")
            self.token_kind = int(kinds[0])
        off = 1 if self.token_kind == 3 else 0
        idx = self._ints(pc.list_element(parts, off) if len(flat) else pa.array([], pa.string()), flat, row, rows,
                         "index")
        val = self._floats(pc.list_element(parts, off + 1) if len(flat) else pa.array([], pa.string()), flat, row,
                           rows)
        # which field each feature belongs to, and its value (text for categorical, number for numeric)
        if self.fmap is not None:
            at = self.fmap.index.get_indexer(idx)
            if (at < 0).any():
                j = int(np.flatnonzero(at < 0)[0])
                raise InputError(f"{rows(int(row[j]))}: feature index {int(idx[j])} is not in the field map "
                                 f"{self.fmap.path}")
            field = self.fmap.field[at]
            cat_value = pc.take(self.fmap.value, pa.array(at))
        else:
            if self.token_kind == 3:
                names = pc.list_element(parts, 0)
                field = self._ffm_field(names, flat, row, rows)
            else:
                field = self._position_field(pos, row, rows)
            not_one = val != 1.0
            if not_one.any():
                j = int(np.flatnonzero(not_one)[0])
                raise InputError(f"{rows(int(row[j]))}: feature {flat[j].as_py()!r} has value {val[j]:g}; without "
                                 "--field-map each field is one-hot (index:1) — map real-valued features as numeric "
                                 "fields with lines `name<TAB>index` in a field map")
            cat_value = pc.cast(pa.array(idx), pa.string())
        return self._frame(n, row, field, cat_value, val, raw_label, rows)

    def _ints(self, arr: pa.Array, flat: pa.Array, row: np.ndarray, rows: Rows, what: str) -> np.ndarray:
        try:
            return pc.cast(arr, pa.int64()).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:
            num = pd.to_numeric(arr.to_pandas(), errors="coerce").to_numpy(np.float64)
            bad = ~np.isfinite(num) | (num != np.round(num))
            j = int(np.flatnonzero(bad)[0])
            raise InputError(f"{rows(int(row[j]))}: feature {flat[j].as_py()!r}: the {what} is not an "
                             "integer") from None

    def _floats(self, arr: pa.Array, flat: pa.Array, row: np.ndarray, rows: Rows) -> np.ndarray:
        try:
            return pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:
            num = pd.to_numeric(arr.to_pandas(), errors="coerce").to_numpy(np.float64)
            j = int(np.flatnonzero(np.isnan(num))[0])
            raise InputError(f"{rows(int(row[j]))}: feature {flat[j].as_py()!r}: the value is not a number") from None

    def _position_field(self, pos: np.ndarray, row: np.ndarray, rows: Rows) -> np.ndarray:
        width = int(pos.max()) + 1 if len(pos) else 0
        if not self.names:
            if width < 2:
                raise InputError(f"{self.src}: the first lines hold fewer than two features, so there is no user "
                                 "and item id (each position is a field without --field-map)")
            self.names = [f"f{k}" for k in range(width)]
            self._choose_ids(self.src)
        elif width > len(self.names):
            j = int(np.flatnonzero(pos >= len(self.names))[0])
            raise InputError(f"{rows(int(row[j]))}: has more than the {len(self.names)} features of the first lines; "
                             "without --field-map each position is a field, so every line has at most as many")
        return pos

    def _ffm_field(self, names: pa.Array, flat: pa.Array, row: np.ndarray, rows: Rows) -> np.ndarray:
        labels_ = [f"f{x}" for x in names.to_pylist()]
        if not self.ffm_fields:
            found = sorted(set(labels_), key=lambda s: (len(s), s))
            if len(found) < 2:
                raise InputError(f"{self.src}: the first lines use fewer than two fields, so there is no user and "
                                 "item id")
            self.ffm_fields = found
            self.names = list(found)
            self._choose_ids(self.src)
        lookup = {name: k for k, name in enumerate(self.ffm_fields)}
        codes = np.fromiter((lookup.get(x, -1) for x in labels_), dtype=np.int64, count=len(labels_))
        if (codes < 0).any():
            j = int(np.flatnonzero(codes < 0)[0])
            raise InputError(f"{rows(int(row[j]))}: feature {flat[j].as_py()!r} names a field the first lines do "
                             f"not use ({', '.join(self.ffm_fields[:10])})")
        return codes

    def _frame(self, n: int, row: np.ndarray, field: np.ndarray, cat_value: pa.Array, val: np.ndarray,
               raw_label: pa.Array, rows: Rows) -> pd.DataFrame:
        order = np.argsort(field, kind="stable")      # grouped by field, line order within a field
        counts = np.bincount(field, minlength=len(self.names))
        starts = np.cumsum(counts) - counts
        cols: dict[str, Any] = {}
        for f, name in enumerate(self.names):
            sel = order[starts[f]:starts[f] + counts[f]]
            r = row[sel]
            repeated = len(r) > 1 and bool((np.diff(r) == 0).any())
            if name in self.numeric:
                if repeated:
                    k = int(r[np.flatnonzero(np.diff(r) == 0)[0]])
                    raise InputError(f"{rows(k)}: numeric field {name} appears twice on the line")
                col = np.full(n, np.nan)
                col[r] = val[sel]
                cols[name] = col
                continue
            values = pc.take(cat_value, pa.array(sel))
            if repeated:
                if name in (self.user_col, self.item_col):
                    k = int(r[np.flatnonzero(np.diff(r) == 0)[0]])
                    raise InputError(f"{rows(k)}: the {'user' if name == self.user_col else 'item'} field {name} "
                                     "holds several values; an id has one")
                self.multi.add(name)
                joined = pd.Series(values.to_pandas().to_numpy(), index=r).groupby(level=0, sort=True).agg("|".join)
                r, values = joined.index.to_numpy(), pa.array(joined.to_numpy(), pa.string())
            take = np.full(n, -1, dtype=np.int64)
            take[r] = np.arange(len(r))
            if name in (self.user_col, self.item_col) and (take < 0).any():
                k = int(np.flatnonzero(take < 0)[0])
                role = "user" if name == self.user_col else "item"
                raise InputError(f"{rows(k)}: no feature of field {name} (the {role} id); every line needs one")
            arr = pc.take(values, pa.array(take, mask=take < 0))
            if name in (self.user_col, self.item_col):
                cols[name] = self.ids["user" if name == self.user_col else "item"](arr, rows, label=f"field {name}")
            else:
                cols[name] = arr.to_pandas().astype("str")
        frame = pd.DataFrame(cols)
        if self.rule is not None:
            raw = self._floats(raw_label, raw_label, np.arange(n), rows)
            frame["target"] = raw
            frame["label"] = self.rule.apply(raw, where=rows)
        else:
            frame["label"] = labels(raw_label, rows, "label (the first token)", signed=True)
        frame["ts"] = np.arange(self._rows_seen, self._rows_seen + n, dtype=np.int64)
        self._rows_seen += n
        return frame

    # ------------------------------------------------------------------ the description

    @property
    def spec(self) -> DatasetSpec | None:
        if not self.names:
            return None
        fields = tuple(FieldSpec(name=f, role=FieldRole.CONTEXT,
                                 type=FieldType.NUMERIC if f in self.numeric else
                                 FieldType.MULTI if f in self.multi else FieldType.CATEGORICAL)
                       for f in self.names if f not in (self.user_col, self.item_col))
        return DatasetSpec(name=self.options.name or self.src.name.split(".")[0],
                           roles=Roles(label="label", user_id=self.user_col, item_id=self.item_col, ts="ts"),
                           fields=fields, split=self.split())

    @spec.setter
    def spec(self, value: DatasetSpec | None) -> None:  # the base class's initial None
        pass

    def result(self) -> ImportedTables:
        spec = self.spec
        if spec is None:
            raise InputError(f"{self.src}: holds no features")
        rule = self.rule.describe("label") if self.rule else "label = 1 for 1 or +1, 0 for 0 or -1 (first token)"
        how = (f"fields from the field map {self.fmap.path}" if self.fmap else
               "no field map: field f{k} is the k-th feature of a line" if self.token_kind != 3 else
               "no field map: field f{F} is the field F of field:index:value tokens")
        notes = [how, f"user id = field {self.user_col}, item id = field {self.item_col}"
                 f"{'' if self.options.user_field or self.options.item_field else ' (the first two fields)'}",
                 "time = line order: data line k (from 0) is k seconds after 1970-01-01",
                 "every other field has role context"]
        if self.multi:
            notes.append(f"multi-valued (several indices on one line): {', '.join(sorted(self.multi))}")
        spec = spec.model_copy(update={"source": {
            "format": self.name, "path": str(self.src.resolve()), "label_rule": rule,
            "field_map": str(self.fmap.path.resolve()) if self.fmap else None,
            "user_id": self.user_col, "item_id": self.item_col, "time": "line order"}})
        return ImportedTables(spec=spec, notes=notes + self.notes)


class LibsvmImporter(_SparseImporter):
    """libSVM / SVMlight sparse lines."""

    name = "libsvm"
    description = "libSVM lines 'label index:value ...' (+ --field-map FILE naming what each index is)"


class LibfmImporter(_SparseImporter):
    """libFM lines (libSVM's layout, also with libFFM's field:index:value tokens)."""

    name = "libfm"
    description = "libFM lines 'label index:value ...' or 'label field:index:value ...' (+ --field-map FILE)"
    ffm_tokens = True
