"""User-segment lift of an A/B test: metric per user by arm, relative lift, interval and p-value.

The default split is the seed paper's four quadrants: home-scenario ad behaviour in a recent
window (at least ``home_min`` actions in ``home_col``, default 1 in the last 10 days) crossed with
ad actions in other scenarios (strictly above ``other_threshold`` in ``other_col``, default 10 in
the last 60 days, marks an *out-of-domain* user). Any log column, or any column of a user
attribute frame joined on ``user_id``, can define the split instead; numeric ones are binned.

Per segment the table holds users per arm, the metric per user per arm, the lift
``treatment / control - 1``, and:

* **interval**: a percentile interval of the lift from a user-level bootstrap that resamples
  users with replacement within each arm, independently, within the segment (so arm and segment
  sizes are fixed). It is vectorised: only users with a non-zero metric are drawn individually
  (the number of draws that land on them is Binomial(n, nonzero share)), which is exactly the
  multinomial bootstrap at a fraction of the cost when most users have zero GMV.
* **p-value**: Welch's unequal-variance t-test of the per-user metric, treatment against control
  (``scipy.stats.ttest_ind(equal_var=False)``, two-sided); ``lift = 0`` is the same null as equal
  means. ``significant`` is ``p_value < 1 - level``; ``ci_excludes_zero`` reports whether the
  bootstrap interval agrees. The two share the null and the data and agree except in borderline
  cases (the test is on the difference, the interval on the ratio).

The ``all`` row pools every user and is computed with its own random stream, so it is identical
whatever the split.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis._inputs import require_columns, require_numeric
from lee.errors import InputError, SmallSampleWarning
from lee.world.ab_log import (
    ARMS,
    DEFAULT_HOME_COL,
    DEFAULT_HOME_MIN,
    DEFAULT_OTHER_COL,
    DEFAULT_OTHER_THRESHOLD,
    QUADRANTS,
    quadrant_codes,
    quadrant_labels,
)

QUADRANT = "quadrant"      # the special `by` name: the four home x other quadrants
ALL = "all"                # the segment label of the pooled row
MISSING = "(missing)"      # the segment label of users whose attribute is missing
MAX_LEVELS = 20            # a numeric `by` column with more distinct values needs `bins`
MIN_USERS_PER_ARM = 30     # below this an arm of a segment triggers a SmallSampleWarning
_BOOT_DRAWS_PER_CHUNK = 4_000_000

P_VALUE_METHOD = "Welch t-test on the per-user metric (scipy.stats.ttest_ind, equal_var=False, two-sided)"
INTERVAL_METHOD = "percentile interval of the lift from a user-level bootstrap within each arm and segment"


@dataclass
class SegmentLift:
    """The lift of ``metric`` per segment. ``table`` has one row per segment plus an ``all`` row."""

    table: pd.DataFrame
    by: tuple[str, ...] | None
    metric: str
    level: float
    n_boot: int
    seed: int
    thresholds: dict[str, Any] = field(default_factory=dict)
    p_value_method: str = P_VALUE_METHOD
    interval_method: str = INTERVAL_METHOD

    def row(self, segment: str) -> pd.Series:
        """The table row of ``segment`` (``'all'`` for the pooled row)."""
        hit = self.table.loc[self.table["segment"] == segment]
        if hit.empty:
            raise InputError(f"segment {segment!r} not in the table; segments: {', '.join(self.table['segment'])}")
        return hit.iloc[0]

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"lift": self.table}

    def summary(self) -> dict[str, Any]:
        segs = self.table.loc[self.table["segment"] != ALL]
        overall = self.row(ALL)
        finite = segs.loc[np.isfinite(segs["lift"].to_numpy(np.float64))]
        return {
            "by": list(self.by) if self.by else None,
            "metric": self.metric,
            "level": self.level,
            "n_boot": self.n_boot,
            "thresholds": dict(self.thresholds),
            "users": int(overall["users_control"] + overall["users_treatment"]),
            "segments": int(len(segs)),
            "overall": {k: _py(overall[k]) for k in ("lift", "ci_low", "ci_high", "p_value", "significant")},
            "significant_segments": [str(s) for s in segs.loc[segs["significant"], "segment"]],
            "largest_lift_segment": str(finite.loc[finite["lift"].idxmax(), "segment"]) if len(finite) else None,
            "smallest_lift_segment": str(finite.loc[finite["lift"].idxmin(), "segment"]) if len(finite) else None,
            "p_value_method": self.p_value_method,
            "interval_method": self.interval_method,
        }


def _py(x: Any) -> Any:
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return float(x)
    return x


# ----------------------------------------------------------------------------- quadrants


def quadrants(
    log: pd.DataFrame,
    *,
    home_col: str = DEFAULT_HOME_COL,
    other_col: str = DEFAULT_OTHER_COL,
    home_min: float = DEFAULT_HOME_MIN,
    other_threshold: float = DEFAULT_OTHER_THRESHOLD,
) -> pd.Series:
    """The quadrant of each row of ``log`` (a categorical Series named ``quadrant``, categories
    :data:`~lee.world.ab_log.QUADRANTS`): home-active iff ``log[home_col] >= home_min``,
    out-of-domain iff ``log[other_col] > other_threshold`` (strictly: exactly the threshold is
    in-domain)."""
    require_columns(log, [home_col, other_col], name="log")
    require_numeric(log, [home_col, other_col], name="log", nonnegative=True)
    codes = quadrant_codes(log[home_col].to_numpy(np.float64), log[other_col].to_numpy(np.float64),
                           home_min=home_min, other_threshold=other_threshold)
    return pd.Series(quadrant_labels(codes), index=log.index, name=QUADRANT)


# ----------------------------------------------------------------------------- validation


def _check_log(log: pd.DataFrame, metric: str) -> np.ndarray:
    """Validate the log; return a bool array, True for treatment rows."""
    if not isinstance(log, pd.DataFrame):
        raise InputError(f"log: expected a pandas DataFrame; got {type(log).__name__}")
    if len(log) == 0:
        raise InputError("log: the exposure log is empty (0 rows); at least one user per arm needed")
    require_columns(log, ["arm", "user_id", metric], name="log")
    arm = log["arm"]
    values = pd.unique(arm.astype(object))
    bad = [v for v in values if not (isinstance(v, str) and v in ARMS)]
    if bad:
        k = int(np.flatnonzero(~arm.astype(object).isin(list(ARMS)).to_numpy())[0])
        raise InputError(f"log: column arm holds unexpected value {_py(bad[0])!r} (first at row {k}); "
                         f"expected only 'control' or 'treatment'")
    treated = (arm.astype(object) == "treatment").to_numpy()
    if treated.all() or not treated.any():
        present = "treatment" if treated.any() else "control"
        raise InputError(f"log: only one arm present ({present}); both 'control' and 'treatment' needed")
    require_numeric(log, [metric], name="log", nonnegative=True)
    dup = log["user_id"].duplicated(keep=False).to_numpy()
    if dup.any():
        first = _py(log["user_id"].iloc[int(np.flatnonzero(dup)[0])])
        n_ids = int(log["user_id"][dup].nunique())
        raise InputError(f"log: duplicated user_id {first!r} ({n_ids} id(s) appear more than once); "
                         f"the log must hold one row per user")
    return treated


def _attribute(log: pd.DataFrame, users: pd.DataFrame | None, user_pos: np.ndarray | None,
               col: str, *, role: str = "by") -> pd.Series:
    """Column ``col`` for the log's rows: from ``users`` (joined on user_id) when it holds it,
    else from the log."""
    if users is not None and col in users.columns and col != "user_id":
        return pd.Series(users[col].to_numpy()[user_pos] if not isinstance(users[col].dtype, pd.CategoricalDtype)
                         else pd.Categorical.from_codes(users[col].cat.codes.to_numpy()[user_pos],
                                                        dtype=users[col].dtype),
                         index=log.index, name=col)
    if col in log.columns:
        return log[col]
    where = "the log" + (" or users" if users is not None else "")
    present = sorted(set(map(str, log.columns)) | (set(map(str, users.columns)) if users is not None else set()))
    if role == "by":
        raise InputError(f"by: column {col!r} not found in {where}; columns available: {', '.join(present)}")
    raise InputError(f"log: missing column {col!r} ({role}, needed for by='quadrant') in {where}; "
                     f"columns available: {', '.join(present)}")


def _join_users(log: pd.DataFrame, users: pd.DataFrame) -> np.ndarray:
    """Row of ``users`` for each log row (every log user must be there)."""
    require_columns(users, ["user_id"], name="users")
    dup = users["user_id"].duplicated().to_numpy()
    if dup.any():
        raise InputError(f"users: duplicated user_id {_py(users['user_id'].iloc[int(np.flatnonzero(dup)[0])])!r}; "
                         f"the attribute frame must hold one row per user")
    pos = pd.Index(users["user_id"]).get_indexer(log["user_id"])
    missing = pos < 0
    if missing.any():
        first = _py(log["user_id"].iloc[int(np.flatnonzero(missing)[0])])
        raise InputError(f"users: {int(missing.sum())} of {len(log)} log user(s) have no row in users "
                         f"(e.g. user_id {first!r}); check that the user_id types match")
    return pos


# ----------------------------------------------------------------------------- segment labels


def _component(values: pd.Series, col: str, bins: Any) -> tuple[np.ndarray, list[str]]:
    """Integer codes (0..L-1, ordered) and string levels for one `by` column; missing values
    become the last level, ``(missing)``."""
    dtype = values.dtype
    is_numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype) \
        and not isinstance(dtype, pd.CategoricalDtype)
    if bins is not None and not is_numeric:
        raise InputError(f"bins: column {col!r} is not numeric (dtype {dtype}); bins apply only to numeric columns")
    if is_numeric and bins is not None:
        x = values.to_numpy(np.float64)
        if isinstance(bins, (int, np.integer)) and not isinstance(bins, bool):
            if bins < 1:
                raise InputError(f"bins: a count of quantile bins must be at least 1; got {bins}")
            cat = pd.qcut(x, q=int(bins), duplicates="drop")
        else:
            edges = np.asarray(bins, dtype=np.float64)
            if edges.ndim != 1 or edges.size < 2 or not np.all(np.diff(edges) > 0):
                raise InputError(f"bins: edges for column {col!r} must be at least 2 increasing numbers; got {bins!r}")
            cat = pd.cut(x, bins=edges, include_lowest=True)
            outside = np.isfinite(x) & (np.asarray(cat.codes) < 0)
            if outside.any():
                k = int(np.flatnonzero(outside)[0])
                raise InputError(f"bins: column {col!r} holds {int(outside.sum())} value(s) outside the bin edges "
                                 f"[{edges[0]}, {edges[-1]}] (e.g. {x[k]!r} at row {k})")
        codes = np.asarray(cat.codes, dtype=np.int64)
        levels = [str(c) for c in cat.categories]
    elif isinstance(dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy(np.int64)
        levels = [str(c) for c in dtype.categories]
    else:
        codes_, uniques = pd.factorize(values, sort=True)
        codes, levels = codes_.astype(np.int64), [str(u) for u in uniques]
        if is_numeric and len(levels) > MAX_LEVELS:
            raise InputError(f"by: numeric column {col!r} has {len(levels)} distinct values (more than {MAX_LEVELS}); "
                             f"pass bins= (bin edges or a count of quantile bins)")
    missing = codes < 0
    if missing.any():
        codes = np.where(missing, len(levels), codes)
        levels = [*levels, MISSING]
    return codes, levels


# ----------------------------------------------------------------------------- statistics


def _boot_means(rng: np.random.Generator, values: np.ndarray, n_boot: int) -> np.ndarray:
    """Means of ``n_boot`` bootstrap resamples (size n, with replacement) of ``values``.

    Only non-zero values are drawn one by one: the number of the n draws landing on them is
    Binomial(n, m / n), each uniform among the m non-zero values. That is the multinomial
    bootstrap exactly, at O(n_boot * m) cost.
    """
    n = values.size
    nz = values[values != 0]
    m = nz.size
    out = np.zeros(n_boot)
    if n == 0 or m == 0:
        return out
    chunk = max(1, _BOOT_DRAWS_PER_CHUNK // m)
    for lo in range(0, n_boot, chunk):
        b = min(chunk, n_boot - lo)
        k = rng.binomial(n, m / n, size=b)
        idx = rng.integers(0, m, size=int(k.sum()))
        rep = np.repeat(np.arange(b), k)
        out[lo:lo + b] = np.bincount(rep, weights=nz[idx], minlength=b) / n
    return out


def _percentile(sorted_values: np.ndarray, q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of sorted values that may end in +inf."""
    pos = q * (sorted_values.size - 1)
    lo, hi = int(np.floor(pos)), int(np.ceil(pos))
    a, b = sorted_values[lo], sorted_values[hi]
    if hi == lo:
        return float(a)
    if np.isinf(b):
        return float("inf")
    return float(a + (b - a) * (pos - lo))


def _lift_row(rng: np.random.Generator, control: np.ndarray, treatment: np.ndarray, *,
              n_boot: int, level: float) -> dict[str, Any]:
    nc, nt = control.size, treatment.size
    row: dict[str, Any] = {
        "users_control": nc, "users_treatment": nt,
        "metric_per_user_control": float(control.mean()) if nc else np.nan,
        "metric_per_user_treatment": float(treatment.mean()) if nt else np.nan,
        "lift": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan,
        "significant": False, "ci_excludes_zero": False, "note": "",
    }
    if nc == 0 or nt == 0:
        row["note"] = f"no {'control' if nc == 0 else 'treatment'} users: lift undefined"
        return row
    if row["metric_per_user_control"] == 0:
        row["note"] = "control metric is zero: lift undefined"
        return row
    row["lift"] = row["metric_per_user_treatment"] / row["metric_per_user_control"] - 1.0
    notes = []
    mc, mt = _boot_means(rng, control, n_boot), _boot_means(rng, treatment, n_boot)
    with np.errstate(divide="ignore", invalid="ignore"):
        reps = mt / mc - 1.0
    zero_c = int((mc == 0).sum())
    if zero_c:
        notes.append(f"{zero_c} of {n_boot} bootstrap replicates had zero control metric")
    alpha = 1.0 - level
    defined = np.sort(reps[~np.isnan(reps)])  # +inf where a replicate's control metric is zero
    if defined.size:
        lo, hi = _percentile(defined, alpha / 2), _percentile(defined, 1 - alpha / 2)
        row["ci_low"], row["ci_high"] = float(lo), float(hi)
        row["ci_excludes_zero"] = bool(lo > 0 or hi < 0)
    if nc >= 2 and nt >= 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = stats.ttest_ind(treatment, control, equal_var=False).pvalue
        row["p_value"] = float(p)
        row["significant"] = bool(np.isfinite(p) and p < alpha)
        if not np.isfinite(p):
            notes.append("p-value undefined (no variance in either arm)")
    else:
        notes.append("fewer than 2 users in an arm: no p-value")
    if min(nc, nt) < MIN_USERS_PER_ARM:
        notes.append(f"fewer than {MIN_USERS_PER_ARM} users in an arm: interval unreliable")
    row["note"] = "; ".join(notes)
    return row


# ----------------------------------------------------------------------------- the analysis


def segment_lift(
    log: pd.DataFrame,
    *,
    by: str | Sequence[str] | None = QUADRANT,
    users: pd.DataFrame | None = None,
    bins: int | Sequence[float] | Mapping[str, Any] | None = None,
    home_col: str = DEFAULT_HOME_COL,
    other_col: str = DEFAULT_OTHER_COL,
    home_min: float = DEFAULT_HOME_MIN,
    other_threshold: float = DEFAULT_OTHER_THRESHOLD,
    metric: str = "gmv",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> SegmentLift:
    """Lift of ``metric`` per user, treatment over control, per segment of ``by``.

    ``log`` holds one row per user: ``arm`` ('control' or 'treatment'), ``user_id`` and
    ``metric`` (finite, non-negative). ``by`` is ``'quadrant'`` (from ``home_col`` /
    ``other_col`` with ``home_min`` / ``other_threshold``, see :func:`quadrants`), a column name,
    a list of them (segments are their combinations; ``'quadrant'`` may be one of them), or
    ``None`` (only the ``all`` row). Columns are looked up in ``users`` first (an attribute frame
    joined on ``user_id``; every log user must have a row), then in the log.

    A numeric column with more than ``MAX_LEVELS`` distinct values needs ``bins``: an int (that
    many quantile bins) or a sequence of edges (every value must fall inside them); a mapping
    column -> bins when ``by`` is a list. Missing attribute values form a ``(missing)`` segment.

    See the module docstring for the interval (bootstrap percentile, ``n_boot`` replicates,
    ``level``) and the p-value (Welch t-test). A segment missing an arm gets NaN lift and a
    ``note``; arms of fewer than ``MIN_USERS_PER_ARM`` users raise a :class:`SmallSampleWarning`.
    """
    if not (isinstance(n_boot, (int, np.integer)) and not isinstance(n_boot, bool) and n_boot >= 10):
        raise InputError(f"n_boot: expected an integer of at least 10; got {n_boot!r}")
    if not (isinstance(level, (int, float)) and 0.0 < float(level) < 1.0):
        raise InputError(f"level: expected a number strictly between 0 and 1; got {level!r}")
    if not isinstance(metric, str):
        raise InputError(f"metric: expected a column name; got {metric!r}")
    treated = _check_log(log, metric)
    y = log[metric].to_numpy(np.float64)

    if by is None:
        by_cols: tuple[str, ...] = ()
    elif isinstance(by, str):
        by_cols = (by,)
    elif isinstance(by, Sequence) and all(isinstance(c, str) for c in by) and len(by) > 0:
        by_cols = tuple(by)
        if len(set(by_cols)) != len(by_cols):
            raise InputError(f"by: columns repeat in {list(by_cols)}")
    else:
        raise InputError(f"by: expected 'quadrant', a column name, a list of column names or None; got {by!r}")

    user_pos = _join_users(log, users) if users is not None else None
    if bins is not None and not isinstance(bins, Mapping):
        numeric_by = [c for c in by_cols if c != QUADRANT]
        if len(numeric_by) != 1:
            raise InputError("bins: with several `by` columns pass a mapping column -> bins")
        bins = {numeric_by[0]: bins}
    bins = dict(bins or {})
    unknown_bins = sorted(set(bins) - set(by_cols))
    if unknown_bins:
        raise InputError(f"bins: column(s) {', '.join(unknown_bins)} are not in by={list(by_cols)}")

    comp_codes, comp_levels = [], []
    for col in by_cols:
        if col == QUADRANT:
            frame = pd.DataFrame({c: _attribute(log, users, user_pos, c, role=r)
                                  for c, r in ((home_col, "home_col"), (other_col, "other_col"))})
            q = quadrants(frame, home_col=home_col, other_col=other_col, home_min=home_min,
                          other_threshold=other_threshold)
            codes, levels = q.cat.codes.to_numpy(np.int64), list(QUADRANTS)
        else:
            codes, levels = _component(_attribute(log, users, user_pos, col), col, bins.get(col))
        comp_codes.append(codes)
        comp_levels.append(levels)

    level = float(level)
    rows: list[dict[str, Any]] = []
    small: list[str] = []
    n_total = len(log)
    if by_cols:
        combined = np.ravel_multi_index(comp_codes, [len(lv) for lv in comp_levels])
        order = np.argsort(combined, kind="stable")
        seg_ids, starts = np.unique(combined[order], return_index=True)
        groups = np.split(order, starts[1:])
        for k, (sid, members) in enumerate(zip(seg_ids, groups)):
            parts = np.unravel_index(sid, [len(lv) for lv in comp_levels])
            names = [comp_levels[j][int(parts[j])] for j in range(len(by_cols))]
            t = treated[members]
            row = _lift_row(np.random.default_rng([seed, 1, k]), y[members][~t], y[members][t],
                            n_boot=n_boot, level=level)
            label = " | ".join(names)
            row = {"segment": label, **dict(zip(by_cols, names)), **row,
                   "share_of_users": members.size / n_total}
            if 0 < min(row["users_control"], row["users_treatment"]) < MIN_USERS_PER_ARM:
                small.append(label)
            rows.append(row)
    all_row = _lift_row(np.random.default_rng([seed, 0]), y[~treated], y[treated], n_boot=n_boot, level=level)
    rows.append({"segment": ALL, **{c: ALL for c in by_cols}, **all_row, "share_of_users": 1.0})
    if min(all_row["users_control"], all_row["users_treatment"]) < MIN_USERS_PER_ARM:
        small.append(ALL)
    if small:
        warnings.warn(f"segment_lift: fewer than {MIN_USERS_PER_ARM} users in an arm of segment(s) "
                      f"{', '.join(small)}; their intervals mean little", SmallSampleWarning, stacklevel=2)

    columns = ["segment", *by_cols, "users_control", "users_treatment", "metric_per_user_control",
               "metric_per_user_treatment", "lift", "ci_low", "ci_high", "p_value", "significant",
               "ci_excludes_zero", "share_of_users", "note"]
    table = pd.DataFrame(rows, columns=columns)
    table["users_control"] = table["users_control"].astype(np.int64)
    table["users_treatment"] = table["users_treatment"].astype(np.int64)
    thresholds = {"home_col": home_col, "other_col": other_col, "home_min": home_min,
                  "other_threshold": other_threshold}
    return SegmentLift(table=table, by=by_cols or None, metric=metric, level=level, n_boot=int(n_boot),
                       seed=seed, thresholds=thresholds)
