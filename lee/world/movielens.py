"""MovieLens ``ml-latest-small`` as a world: users, movies (genres as categories), a rating stream.

Label rule: a rating is a **click when it is ≥ 4 stars** (``positive_min``); every rating is an
exposure. Users are labelled by their top genre *normalised by genre popularity* (the genre whose
share among the user's positively rated movies most exceeds its share among all positive ratings
(shares minus shares) —
raw counts would call almost everyone a Drama fan; the difference of shares rather than their ratio,
which would crown rare genres after a single film); movies by their first listed genre.

Upstream/downstream split in time, recorded per event in the column ``part``:

* ``per-user`` (default): each user's earliest ``1 - downstream_share`` of ratings are upstream,
  the rest downstream. The upstream model learns from everyone's history; the proxy is evaluated
  on everyone's later ratings.
* ``global``: every rating before the time quantile ``1 - downstream_share`` is upstream. On this
  dataset most users rate in a single burst, so at a 70/30 cut only 8.9% of downstream ratings come
  from users the upstream model has seen — user representations then carry little by construction.

All events sit in the ``ad`` domain (``domain = 1``, scenario ``home``, position 1, no GMV): the
downstream stream is the ``downstream`` part.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lee.errors import InputError
from lee.world.config import ACTIVITY_LEVELS, AD_SCENARIOS, CONTENT_SCENARIO
from lee.world.model import World

SPLITS = ("per-user", "global")
_RATINGS = ("userId", "movieId", "rating", "timestamp")
_MOVIES = ("movieId", "title", "genres")


def _read_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"{path}: file is missing; a MovieLens directory needs ratings.csv and movies.csv")
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: not a readable CSV file ({exc})") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; required: {', '.join(required)}")
    return frame


def import_movielens(path: str | Path, *, split: str = "per-user", downstream_share: float = 0.3,
                     positive_min: float = 4.0, users: int | None = None, seed: int = 0) -> World:
    """Read ``path`` (ratings.csv, movies.csv) into a :class:`World` with a ``part`` column.

    ``users`` keeps a seeded random subset of that many users (a reduced run for CI).
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: not a directory; expected MovieLens ml-latest-small (ratings.csv, movies.csv)")
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if not 0.0 < downstream_share < 1.0:
        raise InputError(f"downstream_share must lie in (0, 1); got {downstream_share}")
    ratings = _read_csv(path / "ratings.csv", _RATINGS)
    movies = _read_csv(path / "movies.csv", _MOVIES)
    for col in _RATINGS:
        if not pd.api.types.is_numeric_dtype(ratings[col]) or ratings[col].isna().any():
            raise InputError(f"{path / 'ratings.csv'}: column {col} must be numeric without gaps")
    if ratings.empty:
        raise InputError(f"{path / 'ratings.csv'}: no ratings")
    if movies["movieId"].duplicated().any():
        first = movies["movieId"][movies["movieId"].duplicated()].iloc[0]
        raise InputError(f"{path / 'movies.csv'}: duplicate movieId {first}")
    unknown = ~ratings["movieId"].isin(movies["movieId"])
    if unknown.any():
        raise InputError(f"{path / 'ratings.csv'}: movieId {ratings['movieId'][unknown].iloc[0]} is not in movies.csv")
    if users is not None:
        if users < 1:
            raise InputError(f"users must be at least 1 (a subset size); got {users}")
        ids = np.sort(ratings["userId"].unique())
        keep = np.random.default_rng(seed).choice(ids, size=min(users, ids.size), replace=False)
        ratings = ratings[ratings["userId"].isin(keep)]

    ratings = ratings.sort_values(["timestamp", "userId", "movieId"], kind="stable").reset_index(drop=True)
    ts = ratings["timestamp"].to_numpy(np.int64)
    if split == "global":
        cut = np.quantile(ts, 1.0 - downstream_share)
        downstream = ts >= cut
    else:
        rank = ratings.groupby("userId").cumcount().to_numpy()
        size = ratings.groupby("userId")["userId"].transform("size").to_numpy()
        downstream = rank >= np.ceil(size * (1.0 - downstream_share))
    click = (ratings["rating"].to_numpy() >= positive_min).astype(np.int8)

    movies = movies[movies["movieId"].isin(ratings["movieId"].unique())].reset_index(drop=True)
    genre_lists = movies["genres"].fillna("(no genres listed)").str.split("|")
    items = pd.DataFrame({
        "item_id": movies["movieId"].to_numpy(np.int64),
        "domain": np.ones(len(movies), np.int8),
        "category": pd.Categorical(genre_lists.str[0]),
        "advertiser_id": np.full(len(movies), -1, np.int64),
        "price": np.zeros(len(movies)),
        "title": movies["title"].astype(str).to_numpy(),
        "genres": movies["genres"].astype(str).to_numpy(),
    })
    user_frame = _users(ratings, click, genre_lists.set_axis(movies["movieId"].to_numpy()))
    n = len(ratings)
    scen = pd.Categorical.from_codes(np.full(n, 1), categories=[CONTENT_SCENARIO, *AD_SCENARIOS])
    events = pd.DataFrame({
        "ts": ts, "user_id": ratings["userId"].to_numpy(np.int64), "item_id": ratings["movieId"].to_numpy(np.int64),
        "domain": np.ones(n, np.int8), "scenario": scen, "position": np.ones(n, np.int8), "click": click,
        "conversion": np.zeros(n, np.int8), "gmv": np.zeros(n), "rating": ratings["rating"].to_numpy(np.float32),
        "part": pd.Categorical(np.where(downstream, "downstream", "upstream"), categories=["upstream", "downstream"]),
    })
    meta = {"kind": "movielens", "source": str(path), "label_rule": f"click = rating >= {positive_min:g}",
            "split": split, "downstream_share": downstream_share, "users_subset": users,
            "user_label_rule": "top genre of positively rated movies, normalised by genre popularity",
            "item_category_rule": "first listed genre"}
    return World(users=user_frame, items=items, events=events, meta=meta)


def _users(ratings: pd.DataFrame, click: np.ndarray, genres: pd.Series) -> pd.DataFrame:
    """One row per user: popularity-normalised top genre, activity and its tercile."""
    pos = ratings.loc[click == 1, ["userId", "movieId"]]
    # a user with no positive rating is labelled from all their ratings
    no_pos = ~ratings["userId"].isin(pos["userId"])
    base = pd.concat([pos, ratings.loc[no_pos, ["userId", "movieId"]]])
    g = base.assign(genre=genres.reindex(base["movieId"].to_numpy()).to_numpy()).explode("genre")
    g["w"] = 1.0 / g.groupby(["userId", "movieId"])["genre"].transform("size")
    user_share = g.groupby(["userId", "genre"])["w"].sum()
    user_share = user_share / user_share.groupby(level=0).transform("sum")
    overall = g.groupby("genre")["w"].sum()
    # excess share over the genre's share of all positive ratings: a ratio would crown rare genres
    # (one IMAX film makes an IMAX fan), raw counts would crown Drama
    excess = user_share - (overall / overall.sum()).reindex(user_share.index.get_level_values(1)).to_numpy()
    top = excess.groupby(level=0).idxmax().map(lambda t: t[1])
    counts = ratings.groupby("userId").size()
    uid = counts.index.to_numpy(np.int64)
    level = np.searchsorted(np.quantile(counts.to_numpy(), [1 / 3, 2 / 3]), counts.to_numpy(), side="right")
    return pd.DataFrame({
        "user_id": uid,
        "label": pd.Categorical(top.reindex(uid).fillna("(none)").to_numpy()),
        "activity": counts.to_numpy(np.float64),
        "activity_level": pd.Categorical.from_codes(level, categories=list(ACTIVITY_LEVELS)),
    })


def part(world: World, name: str) -> World:
    """The world restricted to the ``upstream`` or ``downstream`` part of its events."""
    if "part" not in world.events:
        raise InputError("this world has no upstream/downstream split (no 'part' column in its events)")
    if name not in ("upstream", "downstream"):
        raise InputError(f"part must be 'upstream' or 'downstream'; got {name!r}")
    ev = world.events[world.events["part"] == name].reset_index(drop=True)
    if ev.empty:
        raise InputError(f"the {name} part of this world holds no events")
    return World(users=world.users, items=world.items, events=ev, meta=world.meta)
