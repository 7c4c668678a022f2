"""``mind``: the Microsoft News Dataset (MIND / MINDsmall) — impressions in, one row per shown item out.

Layout read (tab-separated, no header, as released)::

    SRC/behaviors.tsv   impression id, user id, time (``11/15/2019 8:55:44 AM``), history (clicked
                        news ids, space-separated), impressions (``N123-1 N456-0``: shown news id and
                        whether it was clicked)
    SRC/news.tsv        news id, category, subcategory, title, abstract, URL, title entities,
                        abstract entities

Conventions: each impression is **exploded to one event per shown news item**, ``click`` = its
``-1`` / ``-0`` suffix; ``position`` is its place in the impression list (1-based; a column, not a
field). Times are read as UTC. News become the items table (category, subcategory, title,
abstract, URL; the entity JSON columns are dropped); ``category`` and ``subcategory`` are item
fields. A user's ``history`` is the same on every impression of the release (the clicks before its
time window), so it is a user attribute and a multi-valued user field (space-separated), taken
from the user's first impression; how many users had a different history later is stated. The
test split's impressions carry no click suffix and are refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from lee.data.importers.base import (
    ImportedTables,
    Importer,
    ImportOptions,
    Rows,
    integers,
    require_present,
    text,
    times,
)
from lee.data.importers.text import Delimited, read_delimited
from lee.data.spec import DatasetSpec, FieldRole, FieldSpec, FieldType, Roles
from lee.errors import InputError

BEHAVIORS = Delimited("\t", header=False, quoting=False,
                      names=("impression_id", "user_id", "time", "history", "impressions"))
NEWS = Delimited("\t", header=False, quoting=False,
                 names=("news_id", "category", "subcategory", "title", "abstract", "url", "title_entities",
                        "abstract_entities"))
TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"


class MindImporter(Importer):
    """MIND's behaviors.tsv (exploded impressions) and news.tsv (items)."""

    name = "mind"
    description = "Microsoft News Dataset: behaviors.tsv impressions exploded to one row per shown news, news.tsv"
    accepts: ClassVar[frozenset[str]] = frozenset({"split"})

    def __init__(self, src: Path, options: ImportOptions) -> None:
        super().__init__(src, options)
        root = src if src.is_dir() else src.parent
        self.behaviors, self.news = root / "behaviors.tsv", root / "news.tsv"
        if not self.behaviors.is_file():
            raise InputError(f"{self.behaviors}: file not found; a MIND directory holds behaviors.tsv and news.tsv")
        if not self.news.is_file():
            raise InputError(f"{self.news}: file not found; a MIND directory holds behaviors.tsv and news.tsv")
        self.root = root
        self.history: dict[str, str] = {}
        self.history_changed: set[str] = set()
        fields = (FieldSpec(name="category", role=FieldRole.ITEM, table="items"),
                  FieldSpec(name="subcategory", role=FieldRole.ITEM, table="items"),
                  FieldSpec(name="history", role=FieldRole.USER, type=FieldType.MULTI, table="users", separator=" "))
        self.spec = DatasetSpec(name=options.name or root.name,
                                roles=Roles(label="click", user_id="user_id", item_id="news_id", ts="ts"),
                                fields=fields, split=self.split())
        self.notes += ["impressions exploded to one event per shown news item (click = its -1/-0 suffix; position "
                       "= its place in the list, 1-based)", "times read as UTC",
                       "user history (from the user's first impression) is a users-table multi field"]

    def events(self) -> Iterator[pd.DataFrame]:
        for table, rows in read_delimited(self.behaviors, BEHAVIORS, block_mb=self.options.chunk_mb):
            yield self._explode(table, rows)

    def _explode(self, table: pa.Table, rows: Rows) -> pd.DataFrame:
        imp = table.column("impressions")
        require_present(imp, rows, "impressions (column 5)", "the shown news ids with -1/-0 click suffixes")
        require_present(table.column("user_id"), rows, "user id (column 2)", "a user id")
        ts = times(table.column("time"), rows, "time (column 3)", "format", TIME_FORMAT)
        impression_id = integers(table.column("impression_id"), rows, "impression id (column 1)")
        users = text(table.column("user_id"))
        tokens = pc.utf8_split_whitespace(imp)
        counts = pc.list_value_length(tokens).to_numpy(zero_copy_only=False)
        flat = pc.list_flatten(tokens)
        parent = pc.list_parent_indices(tokens).to_numpy(zero_copy_only=False)
        parts = pc.split_pattern(flat, "-", max_splits=1, reverse=True)
        bad = pc.list_value_length(parts).to_numpy(zero_copy_only=False) != 2
        suffix = pa.array([], pa.string())
        if not bad.any():
            suffix = pc.list_element(parts, 1)
            bad = ~pc.is_in(suffix, pa.array(["0", "1"])).to_numpy(zero_copy_only=False)
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            k = int(parent[j])
            token = flat[j].as_py()
            raise InputError(f"{rows(k)}: impression {token!r} has no click label; expected NEWSID-1 or NEWSID-0 "
                             "(MIND's test split ships without labels and cannot be imported)")
        news = pc.list_element(parts, 0)
        position = np.arange(len(flat), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts) + 1
        history = text(table.column("history")).fillna("")
        self._remember_history(users, history)
        return pd.DataFrame({
            "ts": ts[parent], "user_id": users.to_numpy()[parent], "news_id": text(news).to_numpy(),
            "click": (pc.equal(suffix, "1").to_numpy(zero_copy_only=False)).astype(np.int8),
            "impression_id": impression_id[parent], "position": position.astype(np.int16),
        }).astype({"user_id": "str", "news_id": "str"})

    def _remember_history(self, users: pd.Series, history: pd.Series) -> None:
        pairs = pd.DataFrame({"u": users.to_numpy(), "h": history.to_numpy()}).drop_duplicates()
        for u, h in zip(pairs["u"].to_numpy(), pairs["h"].to_numpy()):
            if self.history.setdefault(u, h) != h:
                self.history_changed.add(u)

    def result(self) -> ImportedTables:
        assert self.spec is not None
        chunks = list(read_delimited(self.news, NEWS, columns=list(NEWS.names or ())[:6],
                                     block_mb=self.options.chunk_mb))
        if not chunks:
            raise InputError(f"{self.news}: holds no rows")
        table, rows = pa.concat_tables([t for t, _ in chunks]), chunks[0][1]
        require_present(table.column("news_id"), rows, "news id (column 1)", "a news id")
        items = pd.DataFrame({c: text(table.column(c)) for c in table.column_names})
        dup = items["news_id"].duplicated().to_numpy()
        if dup.any():
            k = int(np.flatnonzero(dup)[0])
            raise InputError(f"{rows(k)}: news id {items['news_id'].iloc[k]!r} appears twice")
        users = pd.DataFrame({"user_id": pd.Series(list(self.history), dtype="str"),
                              "history": pd.Series(list(self.history.values()), dtype="str")})
        users["history_length"] = users["history"].str.split().str.len().fillna(0).astype(np.int64)
        notes = list(self.notes)
        if self.history_changed:
            notes.append(f"{len(self.history_changed):,} user(s) have a different history on a later impression; "
                         "the first one is kept")
        spec = self.spec.model_copy(update={"source": {
            "format": self.name, "path": str(self.root.resolve()),
            "label_rule": "click = the impression's -1 (clicked) / -0 (not clicked) suffix"}})
        return ImportedTables(spec=spec, users=users, items=items, notes=notes)
