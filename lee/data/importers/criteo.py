"""``criteo``: the Criteo display-advertising logs (Kaggle challenge, Terabyte click logs, their samples).

Each line: the label (0/1), 13 integer features ``I1..I13`` and 26 categorical features
``C1..C26`` (hashed, 8 hex digits), tab-separated, no header; any feature may be empty.

Conventions (the format has no user, item or time column, so these are stated, not inferred):
the **user id is ``C1`` and the item id ``C2``** unless ``--user-field`` / ``--item-field`` name
other features (an empty id becomes the value ``(missing)``, counted in the output); the **time is
the line order** — the logs are chronological — data line ``k`` (from 0) is ``k`` seconds after
1970-01-01; ``I1..I13`` are numeric fields and the other ``C`` features categorical fields, all
with role ``context`` (their meaning is not published). Empty values are missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from lee.data.importers.base import ImportedTables, Importer, ImportOptions, labels, numbers, text
from lee.data.importers.text import Delimited, read_delimited
from lee.data.spec import DatasetSpec, FieldRole, FieldSpec, FieldType, Roles
from lee.errors import InputError

INTEGER = tuple(f"I{k}" for k in range(1, 14))
CATEGORICAL = tuple(f"C{k}" for k in range(1, 27))
COLUMNS = ("label", *INTEGER, *CATEGORICAL)
LAYOUT = Delimited("\t", header=False, names=COLUMNS, quoting=False)
MISSING_ID = "(missing)"


class CriteoImporter(Importer):
    """Criteo's 40-column tab-separated click logs."""

    name = "criteo"
    description = "Criteo click logs: label, I1..I13 (integer), C1..C26 (categorical), tab-separated, no header"
    accepts: ClassVar[frozenset[str]] = frozenset({"user_field", "item_field", "split"})

    def __init__(self, src: Path, options: ImportOptions) -> None:
        super().__init__(src, options)
        if not src.is_file():
            raise InputError(f"{src}: not a file; --format criteo reads one log file (e.g. train.txt, day_0.gz)")
        self.user_col = options.user_field or "C1"
        self.item_col = options.item_field or "C2"
        for col, flag in ((self.user_col, "--user-field"), (self.item_col, "--item-field")):
            if col not in COLUMNS[1:]:
                raise InputError(f"{flag} {col}: not a Criteo feature; choose among I1..I13, C1..C26")
        if self.user_col == self.item_col:
            raise InputError(f"--user-field and --item-field both name {self.user_col}")
        ids = {self.user_col, self.item_col}
        fields = tuple(FieldSpec(name=c, role=FieldRole.CONTEXT, type=FieldType.NUMERIC) for c in INTEGER
                       if c not in ids) + tuple(FieldSpec(name=c, role=FieldRole.CONTEXT) for c in CATEGORICAL
                                                if c not in ids)
        self.spec = DatasetSpec(name=options.name or src.name.split(".")[0],
                                roles=Roles(label="label", user_id=self.user_col, item_id=self.item_col, ts="ts"),
                                fields=fields, split=self.split())
        self.notes += [f"user id = {self.user_col}, item id = {self.item_col}"
                       f"{' (default)' if not (options.user_field or options.item_field) else ''}",
                       "time = line order: data line k (from 0) is k seconds after 1970-01-01",
                       "I1..I13 numeric and the other C features categorical fields, role context"]
        self.missing_ids = {self.user_col: 0, self.item_col: 0}
        self._rows_seen = 0

    def events(self) -> Iterator[pd.DataFrame]:
        for table, rows in read_delimited(self.src, LAYOUT, block_mb=self.options.chunk_mb):
            frame = {"label": labels(table.column("label"), rows, "label (column 1)")}
            for c in COLUMNS[1:]:
                arr = table.column(c)
                if c in self.missing_ids:
                    values = text(arr)
                    self.missing_ids[c] += int(values.isna().sum())
                    frame[c] = values.fillna(MISSING_ID)
                elif c in INTEGER:
                    frame[c] = numbers(arr, rows, f"{c} (column {COLUMNS.index(c) + 1})")
                else:
                    frame[c] = text(arr)
            n = table.num_rows
            frame["ts"] = np.arange(self._rows_seen, self._rows_seen + n, dtype=np.int64)
            self._rows_seen += n
            yield pd.DataFrame(frame)

    def result(self) -> ImportedTables:
        assert self.spec is not None
        notes = list(self.notes)
        for col, n in self.missing_ids.items():
            if n:
                notes.append(f"{n:,} event(s) have an empty {col}: their id is {MISSING_ID!r}")
        spec = self.spec.model_copy(update={"source": {
            "format": self.name, "path": str(self.src.resolve()), "label_rule": "label = the log's first column (0/1)",
            "user_id": self.user_col, "item_id": self.item_col, "time": "line order"}})
        return ImportedTables(spec=spec, notes=notes)
