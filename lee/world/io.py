"""Reading and writing a world directory, with validation at the boundary.

Layout::

    world.json              meta (kind, config, labels) and summary
    users.parquet           user_id, label, activity_level, segment attributes, ...
    items.parquet           item_id, domain, category, advertiser_id, price
    events.parquet          ts, user_id, item_id, domain, scenario, position, click, conversion, gmv
    truth/user_latent.npy   planted worlds only: true latent factors, row k = users.user_id[k]
    truth/item_latent.npy
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lee.errors import InputError
from lee.fileio import atomic_dir
from lee.world.model import EVENT_COLUMNS, ITEM_COLUMNS, USER_COLUMNS, World


def save_world(world: World, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``world`` to ``out`` atomically (temporary directory, then rename)."""
    out = Path(out)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for name, frame in (("users", world.users), ("items", world.items), ("events", world.events)):
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp / f"{name}.parquet",
                           compression="zstd")
        if world.user_latent is not None and world.item_latent is not None:
            (tmp / "truth").mkdir()
            np.save(tmp / "truth" / "user_latent.npy", world.user_latent, allow_pickle=False)
            np.save(tmp / "truth" / "item_latent.npy", world.item_latent, allow_pickle=False)
        doc = {"meta": world.meta, "summary": world.summary()}
        (tmp / "world.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        # the same directory is a dataset (docs/data-format.md): every generic reader opens it
        from lee.data.spec import SPEC_FILE
        from lee.data.worlds import dataset_from_world

        spec = dataset_from_world(world, path=out).spec
        (tmp / SPEC_FILE).write_text(json.dumps(spec.to_dict(), indent=2) + "\n", encoding="utf-8")
    return out


def _read_frame(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"{path}: file is missing; a world directory needs users, items and events Parquet files")
    try:
        frame = pq.read_table(path).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; required: {', '.join(required)}")
    return frame


def load_world(path: str | Path) -> World:
    """Load and check a world directory written by :func:`save_world` or an importer."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: not a world directory (run `lee world generate --out {path}` to make one)")
    meta_file = path / "world.json"
    if not meta_file.is_file():
        raise InputError(f"{meta_file}: file is missing; this does not look like a world directory")
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8")).get("meta", {})
    except json.JSONDecodeError as exc:
        raise InputError(f"{meta_file}: not valid JSON ({exc})") from None
    users = _read_frame(path / "users.parquet", USER_COLUMNS)
    items = _read_frame(path / "items.parquet", ITEM_COLUMNS)
    events = _read_frame(path / "events.parquet", EVENT_COLUMNS)
    _check_world(path, users, items, events)
    user_latent = item_latent = None
    truth = path / "truth"
    if truth.is_dir():
        user_latent = np.load(truth / "user_latent.npy", allow_pickle=False)
        item_latent = np.load(truth / "item_latent.npy", allow_pickle=False)
        if len(user_latent) != len(users) or len(item_latent) != len(items):
            raise InputError(f"{truth}: latent rows do not match users/items ({len(user_latent)} vs {len(users)}, "
                             f"{len(item_latent)} vs {len(items)})")
    return World(users=users, items=items, events=events, meta=meta, user_latent=user_latent, item_latent=item_latent)


def _check_world(path: Path, users: pd.DataFrame, items: pd.DataFrame, events: pd.DataFrame) -> None:
    if len(events) == 0:
        raise InputError(f"{path / 'events.parquet'}: the event stream is empty")
    for frame, col, name in ((users, "user_id", "users"), (items, "item_id", "items")):
        dup = frame[col].duplicated()
        if dup.any():
            raise InputError(f"{path / (name + '.parquet')}: column {col} has duplicate id {frame[col][dup].iloc[0]!r}")
    ts = events["ts"].to_numpy()
    if ts.dtype.kind not in "iu":
        raise InputError(f"{path / 'events.parquet'}: column ts must be int64 epoch seconds; got {ts.dtype}")
    if np.any(np.diff(ts) < 0):
        k = int(np.flatnonzero(np.diff(ts) < 0)[0]) + 1
        raise InputError(f"{path / 'events.parquet'}: column ts must be sorted by event time; "
                         f"row {k} goes back in time")
    for col, ref, name in (("user_id", users, "users"), ("item_id", items, "items")):
        unknown = ~events[col].isin(ref[col])
        if unknown.any():
            raise InputError(f"{path / 'events.parquet'}: column {col} has id {events[col][unknown].iloc[0]!r} "
                             f"that is not in {name}.parquet ({int(unknown.sum())} such events)")
    for col in ("click", "conversion"):
        vals = events[col].to_numpy()
        if not np.isin(vals, (0, 1)).all():
            raise InputError(f"{path / 'events.parquet'}: column {col} must hold only 0 and 1")
