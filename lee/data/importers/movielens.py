"""``movielens``: a GroupLens MovieLens directory, in whichever layout it was released.

=============  ==========================================  =========================================
layout         ratings (events)                            movies / users
=============  ==========================================  =========================================
100K           ``u.data``: user, item, rating, timestamp    ``u.item`` (``|``, latin-1: id, title,
               (tab-separated, no header)                  release date, video date, IMDb URL, 19
                                                           genre flags named by ``u.genre``);
                                                           ``u.user`` (``|``: id, age, gender,
                                                           occupation, zip code)
1M, 10M        ``ratings.dat``: ``UserID::MovieID::Rating  ``movies.dat`` (``MovieID::Title::Genres``,
               ::Timestamp``                               latin-1); ``users.dat`` (1M only:
                                                           ``UserID::Gender::Age::Occupation::Zip``)
latest, 20M+   ``ratings.csv``: userId, movieId, rating,    ``movies.csv``: movieId, title, genres
               timestamp (header)
=============  ==========================================  =========================================

Conventions: **click = rating >= 4** unless ``--positive`` says otherwise (the rating column stays in
the events, never as a field: it is the label's source). Items keep title and genres; fields are
``genres`` (multi-valued, ``|``) and ``year`` (numeric, from the title's trailing ``(YYYY)``).
Demographics, where the layout has them, are user attributes and fields: ``gender``,
``occupation`` and ``age`` (a number in 100K; in 1M the age group and occupation codes are replaced
by the names the 1M README gives); the zip code is kept as an attribute, not a field. Split by
default: the later 30% of each user's ratings are downstream (``--split`` changes it), as
``lee world import-movielens`` does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

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
    integers,
    numbers,
    require_present,
    text,
)
from lee.data.importers.text import Delimited, header_names, read_delimited, require_columns
from lee.data.spec import DatasetSpec, FieldRole, FieldSpec, FieldType, Roles
from lee.errors import InputError

DEFAULT_RULE = "rating>=4"
DEFAULT_SPLIT = "user:0.3"
GENRES_100K = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
               "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
               "War", "Western")
AGES_1M = {"1": "Under 18", "18": "18-24", "25": "25-34", "35": "35-44", "45": "45-49", "50": "50-55", "56": "56+"}
OCCUPATIONS_1M = ("other", "academic/educator", "artist", "clerical/admin", "college/grad student",
                  "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
                  "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist", "self-employed",
                  "technician/engineer", "tradesman/craftsman", "unemployed", "writer")
RATING_COLUMNS = ("user_id", "item_id", "rating", "timestamp")


class _Layout:
    """File names and text layouts of one release layout."""

    def __init__(self, name: str, ratings: str, movies: str, users: str | None, ratings_layout: Delimited,
                 movies_layout: Delimited, users_layout: Delimited | None) -> None:
        self.name, self.ratings, self.movies, self.users = name, ratings, movies, users
        self.ratings_layout, self.movies_layout, self.users_layout = ratings_layout, movies_layout, users_layout


LAYOUTS = (
    _Layout("100K", "u.data", "u.item", "u.user",
            Delimited("\t", header=False, names=RATING_COLUMNS, quoting=False),
            Delimited("|", header=False, encoding="latin-1", quoting=False,
                      names=("item_id", "title", "release_date", "video_release_date", "imdb_url",
                             *(f"g{k}" for k in range(len(GENRES_100K))))),
            Delimited("|", header=False, quoting=False, names=("user_id", "age", "gender", "occupation", "zip"))),
    _Layout("1M/10M", "ratings.dat", "movies.dat", "users.dat",
            Delimited("::", header=False, names=RATING_COLUMNS, encoding="latin-1", quoting=False),
            Delimited("::", header=False, names=("item_id", "title", "genres"), encoding="latin-1", quoting=False),
            Delimited("::", header=False, names=("user_id", "gender", "age", "occupation", "zip"),
                      encoding="latin-1", quoting=False)),
    _Layout("latest", "ratings.csv", "movies.csv", None,
            Delimited(",", header=True), Delimited(",", header=True), None),
)
_LATEST = {"userId": "user_id", "movieId": "item_id", "rating": "rating", "timestamp": "timestamp"}


class MovielensImporter(Importer):
    """MovieLens 100K, 1M, 10M, 20M, 25M, 32M and latest(-small), detected from the file names."""

    name = "movielens"
    description = "GroupLens MovieLens in any layout: 100K (u.data ...), 1M/10M (*.dat), latest/20M+ (*.csv)"
    accepts: ClassVar[frozenset[str]] = frozenset({"positive", "split"})

    def __init__(self, src: Path, options: ImportOptions) -> None:
        super().__init__(src, options)
        root = src if src.is_dir() else src.parent
        found = [lay for lay in LAYOUTS if (root / lay.ratings).is_file()]
        if not found:
            raise InputError(f"{root}: not a MovieLens directory; expected u.data (100K), ratings.dat (1M, 10M) "
                             "or ratings.csv (latest, 20M, 25M, 32M)")
        self.root, self.layout = root, found[0]
        self.rule = self.label_rule(DEFAULT_RULE)
        assert self.rule is not None
        lay = self.layout
        self.ratings_path = root / lay.ratings
        if lay.name == "latest":
            names = header_names(self.ratings_path, lay.ratings_layout)
            require_columns(self.ratings_path, lay.ratings_layout, names, list(_LATEST))
        self.movies_path = root / lay.movies if (root / lay.movies).is_file() else None
        self.users_path = root / lay.users if lay.users and (root / lay.users).is_file() else None
        user_fields: tuple[FieldSpec, ...] = ()
        if self.users_path is not None:
            age_type = FieldType.NUMERIC if lay.name == "100K" else FieldType.CATEGORICAL
            user_fields = (FieldSpec(name="gender", role=FieldRole.USER, table="users"),
                           FieldSpec(name="age", role=FieldRole.USER, type=age_type, table="users"),
                           FieldSpec(name="occupation", role=FieldRole.USER, table="users"))
        item_fields: tuple[FieldSpec, ...] = ()
        if self.movies_path is not None:
            item_fields = (FieldSpec(name="genres", role=FieldRole.ITEM, type=FieldType.MULTI, table="items"),
                           FieldSpec(name="year", role=FieldRole.ITEM, type=FieldType.NUMERIC, table="items"))
        split = self.split(DEFAULT_SPLIT)
        self.spec = DatasetSpec(name=options.name or root.name,
                                roles=Roles(label="label", user_id="user_id", item_id="item_id", ts="ts"),
                                fields=user_fields + item_fields, split=split)
        self.notes.append(f"layout {lay.name} ({lay.ratings}"
                          f"{', ' + lay.movies if self.movies_path else ''}"
                          f"{', ' + str(lay.users) if self.users_path else ''})")
        if self.movies_path is None:
            self.notes.append(f"{lay.movies} not found: no items table, no genres")
        self.notes.append(f"click rule: {self.rule.describe('label')}; the rating stays a column, never a field")
        if self.options.split is None:
            self.notes.append("split: the later 30% of each user's ratings are downstream (default)")
        self.user_ids, self.item_ids = IdColumn("user_id", "integer"), IdColumn("item_id", "integer")

    def events(self) -> Iterator[pd.DataFrame]:
        lay = self.layout
        rename = _LATEST if lay.name == "latest" else {c: c for c in RATING_COLUMNS}
        for table, rows in read_delimited(self.ratings_path, lay.ratings_layout, columns=list(rename),
                                          block_mb=self.options.chunk_mb):
            col = {rename[c]: table.column(c) for c in rename}
            src = {v: k for k, v in rename.items()}
            require_present(col["rating"], rows, src["rating"], "a rating")
            rating = numbers(col["rating"], rows, src["rating"])
            frame = pd.DataFrame({
                "ts": integers(col["timestamp"], rows, src["timestamp"], "a time in epoch seconds"),
                "user_id": self.user_ids(col["user_id"], rows, label=src["user_id"]),
                "item_id": self.item_ids(col["item_id"], rows, label=src["item_id"]),
                "rating": rating,
            })
            assert self.rule is not None
            frame["label"] = apply_rule(self.rule, frame, rows)
            yield frame

    # ------------------------------------------------------------------ side tables

    def _table(self, path: Path, layout: Delimited) -> tuple[pa.Table, Rows]:
        chunks = list(read_delimited(path, layout, block_mb=self.options.chunk_mb))
        if not chunks:
            raise InputError(f"{path}: holds no rows")
        return pa.concat_tables([t for t, _ in chunks]), chunks[0][1]

    def _items(self) -> pd.DataFrame | None:
        if self.movies_path is None:
            return None
        lay = self.layout
        table, rows = self._table(self.movies_path, lay.movies_layout)
        if lay.name == "latest":
            require_columns(self.movies_path, lay.movies_layout, table.column_names, ["movieId", "title", "genres"])
            table = table.rename_columns(["item_id" if c == "movieId" else c for c in table.column_names])
        items = pd.DataFrame({"item_id": integers(table.column("item_id"), rows, "item_id", "an integer movie id"),
                              "title": text(table.column("title"))})
        if lay.name == "100K":
            names = self._genre_names()
            flags = np.column_stack([integers(table.column(f"g{k}"), rows, f"genre flag {k + 1}", "0 or 1")
                                     for k in range(len(names))])
            items["genres"] = ["|".join(n for n, f in zip(names, row) if f) for row in flags]
            for c in ("release_date", "video_release_date", "imdb_url"):
                items[c] = text(table.column(c))
        else:
            items["genres"] = text(table.column("genres")).fillna("")
        items["genres"] = items["genres"].astype("str")
        items["year"] = pd.to_numeric(items["title"].str.extract(r"\((\d{4})\)\s*$")[0], errors="coerce")
        dup = items["item_id"].duplicated().to_numpy()
        if dup.any():
            k = int(np.flatnonzero(dup)[0])
            raise InputError(f"{rows(k)}: movie id {items['item_id'].iloc[k]} appears twice")
        return items

    def _genre_names(self) -> tuple[str, ...]:
        path = self.root / "u.genre"
        if not path.is_file():
            return GENRES_100K
        lines = [ln for ln in path.read_text(encoding="latin-1").splitlines() if ln.strip()]
        pairs = [ln.rsplit("|", 1) for ln in lines]
        if any(len(p) != 2 or not p[1].strip().isdigit() for p in pairs) or len(pairs) != len(GENRES_100K):
            raise InputError(f"{path}: expected {len(GENRES_100K)} lines `name|index`")
        return tuple(name for name, _ in sorted(pairs, key=lambda p: int(p[1])))

    def _users(self) -> pd.DataFrame | None:
        if self.users_path is None:
            return None
        lay = self.layout
        assert lay.users_layout is not None
        table, rows = self._table(self.users_path, lay.users_layout)
        users = pd.DataFrame({"user_id": integers(table.column("user_id"), rows, "user_id", "an integer user id")})
        if lay.name == "100K":
            users["age"] = numbers(table.column("age"), rows, "age")
            users["gender"] = text(table.column("gender"))
            users["occupation"] = text(table.column("occupation"))
        else:
            users["gender"] = text(table.column("gender"))
            codes = text(table.column("age"))
            users["age"] = codes.map(lambda c: AGES_1M.get(c, c)).astype("str")
            occ = text(table.column("occupation"))
            users["occupation"] = occ.map(
                lambda c: OCCUPATIONS_1M[int(c)] if isinstance(c, str) and c.isdigit() and int(c) < len(OCCUPATIONS_1M)
                else c).astype("str")
        users["zip"] = text(table.column("zip"))
        dup = users["user_id"].duplicated().to_numpy()
        if dup.any():
            k = int(np.flatnonzero(dup)[0])
            raise InputError(f"{rows(k)}: user id {users['user_id'].iloc[k]} appears twice")
        return users

    def result(self) -> ImportedTables:
        assert self.spec is not None and self.rule is not None
        spec = self.spec.model_copy(update={"source": {
            "format": self.name, "layout": self.layout.name, "path": str(self.root.resolve()),
            "label_rule": self.rule.describe("label")}})
        return ImportedTables(spec=spec, users=self._users(), items=self._items(), notes=self.notes)
