"""The Open Bandit Dataset (OBD, ZOZOTOWN) as an exposure log and a downstream click stream.

OBD logs a fashion e-commerce recommendation widget under two behaviour policies run side by side,
``random`` (uniform) and ``bts`` (Bernoulli Thompson sampling); every row is one impression of one
item at one of three positions, with the logged click and the policy's propensity. Layout read::

    PATH/{random,bts}/{campaign}/{campaign}.csv[.gz]          impressions (first column: an index)
    PATH/{random,bts}/{campaign}/item_context.csv[.gz]        item_id, item_feature_0..3

The two policies are merged into one exposure log whose ``arm`` is the behaviour policy. OBD has no
user id: the four hashed user features are all that identifies a user, so their combination,
``user_key``, stands in for one. It is coarser than a user (people who share the four values share
a key), which makes it a conservative bootstrap cluster — a union of real users' events — and a
weak user field. The ``user-item_affinity_*`` columns are not kept.

Item features come from the ``random`` policy's item_context for every row: the released files hash
item_feature_1..3 with different strings per policy (a one-to-one relabelling, checked on read), and
taking each policy's own file would make every item category a proxy for the arm.

Label rule: **click = the logged click**; every row is an exposure.

:func:`import_obd` writes the log to a directory (``exposures.parquet`` and ``obd.json``), and
:func:`stream_from_exposures` encodes it as the :class:`~lee.evaluator.data.DownstreamStream` the
proxy models learn from.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from lee.encoding import category_codes
from lee.errors import InputError
from lee.evaluator.data import DownstreamStream
from lee.fileio import atomic_dir

POLICIES = ("random", "bts")
CAMPAIGNS = ("all", "men", "women")
USER_FEATURES = tuple(f"user_feature_{k}" for k in range(4))
ITEM_FEATURES = tuple(f"item_feature_{k}" for k in range(4))
ITEM_CATEGORICAL = ITEM_FEATURES[1:]          # item_feature_0 is numeric, the others hashed strings
EVENT_COLUMNS = ("timestamp", "item_id", "position", "click", "propensity_score", *USER_FEATURES)
ITEM_COLUMNS = ("item_id", *ITEM_FEATURES)
EXPOSURE_COLUMNS = ("ts", "arm", "campaign", "item_id", "position", "click", "propensity_score",
                    *USER_FEATURES, *ITEM_FEATURES, "user_key")
OBD_FIELDS = ("item", "position", "hour", *USER_FEATURES, "item_feature_0_bin", *ITEM_CATEGORICAL, "arm")
LABEL_RULE = "click = the logged click"
USER_KEY_RULE = "user_feature_0..3 joined with '|' (OBD has no user id)"
ITEM_CONTEXT_RULE = ("item features from random/{campaign}/item_context for both arms (bts's file hashes "
                     "item_feature_1..3 differently; checked to be a one-to-one relabelling)")
ITEM_BINS = 10                                # item_feature_0 -> deciles over the distinct items
EXPOSURES_FILE = "exposures.parquet"
META_FILE = "obd.json"


# ----------------------------------------------------------------------------- reading the CSVs


def _show(value: Any) -> Any:
    """A value as a message shows it: numpy scalars as plain Python (``2``, not ``np.int64(2)``)."""
    return value.item() if isinstance(value, np.generic) else value


def _find(directory: Path, stem: str) -> Path:
    """``directory/stem.csv``, else ``directory/stem.csv.gz``, else a clear error."""
    for name in (f"{stem}.csv", f"{stem}.csv.gz"):
        if (directory / name).is_file():
            return directory / name
    raise InputError(f"{directory / (stem + '.csv')}: file is missing (nor is there {stem}.csv.gz); "
                     f"an OBD campaign directory needs {{campaign}}.csv and item_context.csv")


def _read_csv(path: Path, required: tuple[str, ...], strings: tuple[str, ...]) -> pd.DataFrame:
    """Only the ``required`` columns of ``path`` (the unnamed index and the affinities are skipped)."""
    try:
        frame = pd.read_csv(path, usecols=lambda c: c in required, dtype={c: str for c in strings})
    except (OSError, ValueError, pd.errors.ParserError, EOFError) as exc:
        raise InputError(f"{path}: not a readable CSV file ({exc})") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; required: {', '.join(required)}")
    if frame.empty:
        raise InputError(f"{path}: holds no rows")
    for col in required:
        gaps = frame[col].isna().to_numpy()
        if gaps.any():
            raise InputError(f"{path}: column {col} is empty at row {int(np.flatnonzero(gaps)[0])} "
                             f"({int(gaps.sum())} such rows); every value is required")
    return frame[list(required)]


def _integer(frame: pd.DataFrame, col: str, path: Path) -> np.ndarray:
    """Column ``col`` as int64; the first non-integer value is named."""
    values = frame[col]
    if pd.api.types.is_integer_dtype(values):
        return values.to_numpy(np.int64)
    num = pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(num) | (num != np.round(num))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise InputError(f"{path}: column {col} must hold integers; row {k} holds {_show(values.iloc[k])!r}")
    return num.astype(np.int64)


def _parse_time(values: pd.Series, path: Path) -> pd.Series:
    """UTC timestamps; the first unparseable value is named."""
    parsed = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
    bad = parsed.isna().to_numpy()
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise InputError(f"{path}: column timestamp holds an unparseable time {_show(values.iloc[k])!r} at row {k} "
                         f"({int(bad.sum())} such rows); expected ISO 8601, e.g. '2019-11-24 00:00:34.762830+00:00'")
    return parsed


def _read_policy(root: Path, policy: str, campaign: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One policy's impressions (file order) and its item table (indexed by item_id), validated."""
    directory = root / policy / campaign
    if not (root / policy).is_dir():
        raise InputError(f"{root / policy}: behaviour-policy directory is missing; OBD needs "
                         f"{' and '.join(POLICIES)} under {root}")
    if not directory.is_dir():
        raise InputError(f"{directory}: campaign directory is missing; campaigns present for {policy}: "
                         f"{', '.join(sorted(p.name for p in (root / policy).iterdir() if p.is_dir())) or 'none'}")
    events_path = _find(directory, campaign)
    items_path = _find(directory, "item_context")
    ev = _read_csv(events_path, EVENT_COLUMNS, USER_FEATURES + ("timestamp",))
    items = _read_csv(items_path, ITEM_COLUMNS, ITEM_CATEGORICAL)

    click = ev["click"]
    ok = pd.api.types.is_numeric_dtype(click) and click.isin([0, 1]).all()
    if not ok:
        bad = ~pd.to_numeric(click, errors="coerce").isin([0, 1]).to_numpy()
        k = int(np.flatnonzero(bad)[0])
        raise InputError(f"{events_path}: column click must hold only 0 or 1; row {k} holds {_show(click.iloc[k])!r}")
    item_id = _integer(ev, "item_id", events_path)
    position = _integer(ev, "position", events_path)
    if (position < 1).any():
        k = int(np.flatnonzero(position < 1)[0])
        raise InputError(f"{events_path}: column position must be a positive slot number; row {k} holds {position[k]}")
    prop = pd.to_numeric(ev["propensity_score"], errors="coerce").to_numpy(np.float64)
    bad = ~(np.isfinite(prop) & (prop > 0) & (prop <= 1))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise InputError(f"{events_path}: column propensity_score must lie in (0, 1]; row {k} holds "
                         f"{_show(ev['propensity_score'].iloc[k])!r}")
    when = _parse_time(ev["timestamp"], events_path)

    item_ids = _integer(items, "item_id", items_path)
    dup = pd.Index(item_ids).duplicated()
    if dup.any():
        raise InputError(f"{items_path}: duplicate item_id {item_ids[dup][0]}; one row per item expected")
    f0 = pd.to_numeric(items["item_feature_0"], errors="coerce").to_numpy(np.float64)
    if not np.isfinite(f0).all():
        k = int(np.flatnonzero(~np.isfinite(f0))[0])
        raise InputError(f"{items_path}: column item_feature_0 must be numeric; row {k} holds "
                         f"{_show(items['item_feature_0'].iloc[k])!r}")
    pos = pd.Index(item_ids).get_indexer(item_id)
    if (pos < 0).any():
        k = int(np.flatnonzero(pos < 0)[0])
        raise InputError(f"{events_path}: item_id {item_id[k]} (row {k}) has no row in {items_path}")

    n = len(ev)
    events = pd.DataFrame({
        "_time": when, "arm": policy, "campaign": campaign, "item_id": item_id, "position": position,
        "click": click.to_numpy(np.int8), "propensity_score": prop,
        **{c: ev[c].astype(str).to_numpy() for c in USER_FEATURES},
        "_row": np.arange(n),
    })
    table = pd.DataFrame({"item_id": item_ids, "item_feature_0": f0,
                          **{c: items[c].astype(str).to_numpy() for c in ITEM_CATEGORICAL}})
    return events, table.set_index("item_id")


def _reconcile_items(tables: dict[str, pd.DataFrame], root: Path, campaign: str) -> pd.DataFrame:
    """One item table for both policies: the first policy's, once the others are shown to agree.

    The released files hash item_feature_1..3 differently per policy (same items, same
    item_feature_0, disjoint hash strings); merged naively, every item category would exist twice,
    once per arm, and item features would encode the policy. The tables must describe the same
    items with the same partition into categories, i.e. differ only by a one-to-one relabelling.
    """
    ref_policy = POLICIES[0]
    ref = tables[ref_policy]
    for policy, other in tables.items():
        if policy == ref_policy:
            continue
        where = f"{root / policy / campaign}/item_context.csv[.gz]"
        extra = other.index.difference(ref.index)
        if len(extra):
            raise InputError(f"{where}: item_id {extra[0]} is not in {ref_policy}'s item_context; "
                             "both policies must describe the same items")
        other = other.reindex(ref.index)
        shown = other["item_feature_0"].notna().to_numpy()      # items the other file lists
        diff = shown & ~np.isclose(other["item_feature_0"].to_numpy(), ref["item_feature_0"].to_numpy())
        if diff.any():
            k = ref.index[np.flatnonzero(diff)[0]]
            got, want = _show(other.loc[k, "item_feature_0"]), _show(ref.loc[k, "item_feature_0"])
            raise InputError(f"{where}: column item_feature_0 of item_id {k} is {got!r}, "
                             f"but {want!r} in {ref_policy}'s item_context")
        for col in ITEM_CATEGORICAL:
            pairs = pd.DataFrame({"a": ref[col].to_numpy()[shown], "b": other[col].to_numpy()[shown]})
            if pairs.groupby("a")["b"].nunique().max() > 1 or pairs.groupby("b")["a"].nunique().max() > 1:
                raise InputError(f"{where}: column {col} groups the items differently from {ref_policy}'s "
                                 "item_context (not a one-to-one relabelling of its hashed values)")
    return ref


def read_obd(path: str | Path, *, campaign: str = "all") -> pd.DataFrame:
    """Both behaviour policies of ``campaign`` under ``path`` as one exposure log, in time order.

    Columns: :data:`EXPOSURE_COLUMNS` — ``ts`` (int64 UTC epoch seconds), ``arm`` (the behaviour
    policy, 'random' or 'bts'), ``campaign``, ``item_id``, ``position``, ``click`` (int8 0/1),
    ``propensity_score``, the user and item features (hashed ones as strings) and ``user_key``.
    Rows are sorted on the full sub-second timestamp (ties: random before bts, then file order)
    before ``ts`` is truncated to seconds, so the order within a second is the logged one.
    """
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory; expected the Open Bandit Dataset "
                         f"({'/'.join(POLICIES)}/{{campaign}}/{{campaign}}.csv[.gz] and item_context.csv[.gz])")
    if campaign not in CAMPAIGNS:
        raise InputError(f"unknown OBD campaign {campaign!r}; choose one of {', '.join(CAMPAIGNS)}")
    parts = {policy: _read_policy(root, policy, campaign) for policy in POLICIES}
    items = _reconcile_items({p: t for p, (_, t) in parts.items()}, root, campaign)
    log = pd.concat([ev for ev, _ in parts.values()], ignore_index=True)
    pos = items.index.get_indexer(log["item_id"].to_numpy())   # every id checked against its own table
    log["item_feature_0"] = items["item_feature_0"].to_numpy()[pos]
    for col in ITEM_CATEGORICAL:
        log[col] = items[col].to_numpy()[pos]
    arm_order = log["arm"].map({p: k for k, p in enumerate(POLICIES)}).to_numpy()
    order = np.lexsort((log["_row"].to_numpy(), arm_order, log["_time"].to_numpy()))
    log = log.iloc[order].reset_index(drop=True)
    log.insert(0, "ts", ((log["_time"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).astype(np.int64))
    log["user_key"] = log[USER_FEATURES[0]].str.cat([log[c] for c in USER_FEATURES[1:]], sep="|")
    return log[list(EXPOSURE_COLUMNS)]


# ----------------------------------------------------------------------------- the imported log


def _validate_log(log: pd.DataFrame, where: str) -> None:
    """The exposure-log contract every consumer relies on; the first violation is named."""
    if not isinstance(log, pd.DataFrame):
        raise InputError(f"{where}: expected a pandas DataFrame; got {type(log).__name__}")
    missing = [c for c in EXPOSURE_COLUMNS if c not in log.columns]
    if missing:
        raise InputError(f"{where}: missing column(s) {', '.join(missing)}; required: {', '.join(EXPOSURE_COLUMNS)}")
    if log.empty:
        raise InputError(f"{where}: the exposure log is empty")
    for col in ("ts", "item_id", "position", "click"):
        if not pd.api.types.is_integer_dtype(log[col]):
            raise InputError(f"{where}: column {col} must be integer; got dtype {log[col].dtype}")
    bad_click = ~log["click"].isin([0, 1]).to_numpy()
    if bad_click.any():
        k = int(np.flatnonzero(bad_click)[0])
        raise InputError(f"{where}: column click must hold only 0 or 1; row {k} holds {_show(log['click'].iloc[k])!r}")
    bad_arm = ~log["arm"].isin(list(POLICIES)).to_numpy()
    if bad_arm.any():
        k = int(np.flatnonzero(bad_arm)[0])
        raise InputError(f"{where}: column arm holds {_show(log['arm'].iloc[k])!r} at row {k}; "
                         f"expected one of {', '.join(POLICIES)}")
    for col in (*USER_FEATURES, *ITEM_CATEGORICAL, "user_key", "item_feature_0"):
        gaps = log[col].isna().to_numpy()
        if gaps.any():
            raise InputError(f"{where}: column {col} is empty at row {int(np.flatnonzero(gaps)[0])}")
    if (np.diff(log["ts"].to_numpy(np.int64)) < 0).any():
        k = int(np.flatnonzero(np.diff(log["ts"].to_numpy(np.int64)) < 0)[0]) + 1
        raise InputError(f"{where}: column ts is not in time order (row {k} is earlier than row {k - 1})")


def obd_summary(log: pd.DataFrame) -> dict[str, Any]:
    """Rows, clicks and CTR per arm and the time range of an exposure log (what ``obd.json`` holds)."""
    g = log.groupby("arm", sort=False)["click"].agg(["size", "sum"])
    arms = [a for a in POLICIES if a in g.index]
    ts = log["ts"].to_numpy(np.int64)
    iso = lambda t: pd.Timestamp(int(t), unit="s", tz="UTC").isoformat()  # noqa: E731
    return {
        "rows": {a: int(g.loc[a, "size"]) for a in arms},
        "clicks": {a: int(g.loc[a, "sum"]) for a in arms},
        "ctr": {a: float(g.loc[a, "sum"] / g.loc[a, "size"]) for a in arms},
        "rows_total": int(len(log)), "clicks_total": int(log["click"].sum()),
        "distinct_user_keys": int(log["user_key"].nunique()), "distinct_items": int(log["item_id"].nunique()),
        "time_range": {"start_ts": int(ts.min()), "end_ts": int(ts.max()),
                       "start": iso(ts.min()), "end": iso(ts.max())},
    }


def import_obd(path: str | Path, out: str | Path, *, campaign: str = "all", overwrite: bool = False) -> Path:
    """Read OBD at ``path`` (:func:`read_obd`) and write ``out/exposures.parquet`` and
    ``out/obd.json`` atomically (temporary directory, then rename). A non-empty ``out`` is
    refused unless ``overwrite``."""
    out = Path(out)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        log = read_obd(path, campaign=campaign)
        meta = {"kind": "obd", "source": str(Path(path).resolve()), "campaign": campaign, "label_rule": LABEL_RULE,
                "user_key_rule": USER_KEY_RULE, "item_context_rule": ITEM_CONTEXT_RULE.format(campaign=campaign),
                "arms": list(POLICIES), **obd_summary(log)}
        pq.write_table(pa.Table.from_pandas(log, preserve_index=False), tmp / EXPOSURES_FILE, compression="zstd")
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return out


def load_exposures(out: str | Path) -> pd.DataFrame:
    """The exposure log written by :func:`import_obd`, checked against its schema and ``obd.json``."""
    out = Path(out)
    if not out.is_dir():
        raise InputError(f"{out}: not a directory (run import_obd to make one)")
    meta_path, data_path = out / META_FILE, out / EXPOSURES_FILE
    for p in (meta_path, data_path):
        if not p.is_file():
            raise InputError(f"{p}: file is missing; an imported OBD directory holds {EXPOSURES_FILE} and {META_FILE}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{meta_path}: not valid JSON ({exc})") from None
    try:
        log = pq.read_table(data_path).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{data_path}: not a readable Parquet file ({exc})") from None
    _validate_log(log, str(data_path))
    rows = obd_summary(log)["rows"]
    if isinstance(meta, dict) and "rows" in meta and meta["rows"] != rows:
        raise InputError(f"{data_path}: rows per arm {rows} differ from {meta_path}'s {meta['rows']}; "
                         "the directory is inconsistent — import it again")
    return log[list(EXPOSURE_COLUMNS)]


# ----------------------------------------------------------------------------- the click stream


def stream_from_exposures(log: pd.DataFrame, *, fields: Sequence[str] = OBD_FIELDS) -> DownstreamStream:
    """Encode an exposure log as a downstream stream, one integer-coded field per name in ``fields``.

    Fields (any subset of :data:`OBD_FIELDS`, in the order given): ``item`` (item_id),
    ``position``, ``hour`` (UTC hour of ``ts``), ``user_feature_0..3``, ``item_feature_0_bin``
    (item_feature_0 in deciles over the distinct items, so the bins describe the catalogue rather
    than what one policy showed most), ``item_feature_1..3`` and ``arm``. Codes come from
    ``pd.factorize(sort=True)``, as in :mod:`lee.evaluator.data`. ``user_row`` indexes the sorted
    distinct ``user_key`` values (``user_ids``), ``item_row`` the sorted item ids (``item_ids``);
    ``extra`` holds each event's ``arm`` and ``user_key``. Events keep the log's (time) order.
    """
    _validate_log(log, "log")
    fields = tuple(fields)
    unknown = [f for f in fields if f not in OBD_FIELDS]
    if unknown or not fields or len(set(fields)) != len(fields):
        raise InputError(f"fields: {', '.join(unknown) if unknown else list(fields)} not usable; "
                         f"choose distinct names among {', '.join(OBD_FIELDS)}")
    ts = log["ts"].to_numpy(np.int64)
    user_row, user_ids = pd.factorize(log["user_key"], sort=True)
    item_row, item_ids = pd.factorize(log["item_id"], sort=True)
    cols: dict[str, tuple[np.ndarray, int]] = {}
    for f in fields:
        if f == "item":
            cols[f] = (item_row.astype(np.int64), len(item_ids))
        elif f == "hour":
            cols[f] = ((ts // 3600) % 24, 24)
        elif f == "item_feature_0_bin":
            cols[f] = _item_bins(log)
        else:
            cols[f] = category_codes(log[f].to_numpy(), name=f"column {f}")
    x = np.stack([cols[f][0] for f in fields], axis=1).astype(np.int64)
    return DownstreamStream(
        x=torch.from_numpy(np.ascontiguousarray(x)),
        y=torch.from_numpy(log["click"].to_numpy(np.float32).copy()),
        ts=ts, user_row=user_row.astype(np.int64), item_row=item_row.astype(np.int64),
        user_ids=np.asarray(user_ids, dtype=object), item_ids=np.asarray(item_ids, dtype=np.int64),
        cardinalities=tuple(int(cols[f][1]) for f in fields), fields=fields,
        extra={"arm": log["arm"].to_numpy(dtype=object), "user_key": log["user_key"].to_numpy(dtype=object)},
    )


def _item_bins(log: pd.DataFrame) -> tuple[np.ndarray, int]:
    """Decile (0..B-1, ordered) of each event's item_feature_0, cut over the distinct items."""
    per_item = log.drop_duplicates("item_id")["item_feature_0"].to_numpy(np.float64)
    if np.unique(per_item).size < 2:  # a single distinct value: one bin
        return np.zeros(len(log), np.int64), 1
    # edges from the item table; tied values collapse bins, hence duplicates="drop"
    _, edges = pd.qcut(per_item, q=ITEM_BINS, retbins=True, duplicates="drop")
    codes = np.clip(np.searchsorted(edges, log["item_feature_0"].to_numpy(np.float64), side="left") - 1,
                    0, edges.size - 2)
    return codes.astype(np.int64), int(edges.size - 1)
