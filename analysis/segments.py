"""User-segment lift of an A/B test: metric per user by arm, relative lift, interval and p-value.

The log is the user's own: one row per user, an arm column holding (at least) the two arms to
compare (``control`` / ``treatment`` by default; any two values, chosen by ``control=`` /
``treatment=``; rows of other arms are left out and counted), any non-negative metric column
(``gmv`` by default; a constant or all-zero metric is an error naming it) and attribute columns.
Attributes may also come from a user frame joined on the user id column.

The default split is the seed paper's four quadrants: home-scenario ad behaviour in a recent
window (at least ``home_min`` actions in ``home_col``, default 1 in the last 10 days) crossed with
ad actions in other scenarios (strictly above ``other_threshold`` in ``other_col``, default 10 in
the last 60 days, marks an *out-of-domain* user). It is only offered when those two columns exist
(:func:`available_splits`); any log column, or any column of the joined user frame, can define the
split instead; numeric ones are binned.

Per segment the table holds users per arm, the metric per user per arm, the lift
``treatment / control - 1``, and:

* **interval**: a percentile interval of the lift from a user-level bootstrap that resamples
  users with replacement within each arm, independently, within the segment (so arm and segment
  sizes are fixed). It is vectorised: only users with a non-zero metric are drawn individually
  (the number of draws that land on them is Binomial(n, nonzero share)), which is exactly the
  multinomial bootstrap at a fraction of the cost when most users have zero GMV.
  ``ci_low``/``ci_high`` are **unadjusted** (each segment on its own, at ``level``);
  ``ci_low_adj``/``ci_high_adj`` are the same bootstrap's percentiles at the family-adjusted
  level (Bonferroni-simultaneous under Holm, FCR-adjusted under Benjamini–Hochberg; see
  :mod:`analysis.multiplicity`).
* **p-value**: Welch's unequal-variance t-test of the per-user metric, treatment against control
  (``scipy.stats.ttest_ind(equal_var=False)``, two-sided); ``lift = 0`` is the same null as equal
  means. ``p_adjusted`` adjusts it over the family of tested segments (Holm by default,
  Benjamini–Hochberg on request) and ``significant`` is ``p_adjusted < alpha`` (``alpha = 1 -
  level`` unless given). ``ci_excludes_zero`` reports whether the unadjusted interval excludes 0.

**Minimum segment size**: a segment with fewer than ``min_users`` users, or fewer than
``min_nonzero`` users with a non-zero metric, in either arm is pooled with the other small
segments into one ``(other)`` segment (its ``members`` column lists them) instead of being
reported with an interval that means nothing.

The ``all`` row pools every user and is computed with its own random stream, so it is identical
whatever the split; it is one pre-specified test, not part of the family (its adjusted p-value
is its p-value).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis._inputs import require_columns, require_numeric
from analysis.multiplicity import DEFAULT_ADJUST, adjust_pvalues, parse_adjust
from lee.errors import InputError, LeeWarning, SmallSampleWarning
from lee.results import SavedResult, register
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
OTHER = "(other)"          # the segment label of the small segments pooled together
MAX_LEVELS = 20            # a numeric `by` column with more distinct values needs `bins`
MIN_USERS_PER_ARM = 30     # default minimum users per arm of a reported segment (below: pooled into (other))
MIN_NONZERO_PER_ARM = 5    # default minimum users with a non-zero metric per arm (below: pooled)
_BOOT_DRAWS_PER_CHUNK = 4_000_000

P_VALUE_METHOD = "Welch t-test on the per-user metric (scipy.stats.ttest_ind, equal_var=False, two-sided)"
INTERVAL_METHOD = "percentile interval of the lift from a user-level bootstrap within each arm and segment"


@register("segments")
@dataclass
class SegmentLift(SavedResult):
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
    arms: tuple[str, str] = ARMS                   # (control, treatment) as they appear in the log
    arm_col: str = "arm"
    adjust: str = DEFAULT_ADJUST.value
    alpha: float | None = None                     # None: 1 - level
    multiplicity: dict[str, Any] = field(default_factory=dict)
    min_users: int = MIN_USERS_PER_ARM
    min_nonzero: int = MIN_NONZERO_PER_ARM
    pooled: tuple[str, ...] = ()
    rows_other_arms: int = 0

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
        alpha = self.alpha if self.alpha is not None else 1.0 - self.level
        raw = segs["p_value"].to_numpy(np.float64)
        return {
            "by": list(self.by) if self.by else None,
            "metric": self.metric,
            "arms": {"column": self.arm_col, "control": self.arms[0], "treatment": self.arms[1]},
            "rows_other_arms": self.rows_other_arms,
            "level": self.level,
            "alpha": alpha,
            "n_boot": self.n_boot,
            "thresholds": dict(self.thresholds),
            "minimum_segment": {"users_per_arm": self.min_users, "nonzero_users_per_arm": self.min_nonzero},
            "pooled_into_other": list(self.pooled),
            "users": int(overall["users_control"] + overall["users_treatment"]),
            "segments": int(len(segs)),
            "overall": {k: _py(overall[k]) for k in ("lift", "ci_low", "ci_high", "p_value", "significant")},
            "multiplicity": dict(self.multiplicity),
            "significant_segments": [str(s) for s in segs.loc[segs["significant"], "segment"]],
            "unadjusted_p_below_alpha": int((np.nan_to_num(raw, nan=1.0) < alpha).sum()),
            "intervals": {"ci_low/ci_high": f"unadjusted, per segment, at level {self.level}",
                          "ci_low_adj/ci_high_adj": self.multiplicity.get("interval_kind", "")},
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

def quadrant_missing(log: pd.DataFrame, users: pd.DataFrame | None = None, *, home_col: str = DEFAULT_HOME_COL,
                     other_col: str = DEFAULT_OTHER_COL) -> list[str]:
    """The columns the quadrant split needs that neither ``log`` nor ``users`` holds (empty: available)."""
    have = set(map(str, log.columns)) | (set(map(str, users.columns)) if users is not None else set())
    return [c for c in (home_col, other_col) if c not in have]


def available_splits(log: pd.DataFrame, users: pd.DataFrame | None = None, *, metric: str | None = None,
                     arm_col: str = "arm", user_col: str = "user_id", home_col: str = DEFAULT_HOME_COL,
                     other_col: str = DEFAULT_OTHER_COL) -> dict[str, Any]:
    """What a log can be split by: ``quadrant`` (only when its two columns exist; otherwise
    ``quadrant_missing`` names them and ``quadrant_message`` says so) and every other column of
    the log and of ``users`` (the arm, user id and metric columns excepted)."""
    missing = quadrant_missing(log, users, home_col=home_col, other_col=other_col)
    skip = {arm_col, user_col, metric}
    cols = [str(c) for c in log.columns if c not in skip]
    if users is not None:
        cols += [str(c) for c in users.columns if c not in skip and str(c) not in cols]
    return {
        "quadrant": not missing,
        "quadrant_missing": missing,
        "quadrant_message": (f"the quadrant split is not offered: it needs columns {home_col} and {other_col}, and "
                             f"the log lacks {', '.join(missing)}; split by a column instead") if missing else "",
        "columns": cols,
    }


# ----------------------------------------------------------------------------- reading a log


def read_log(source: str | Path | bytes, *, name: str | None = None) -> pd.DataFrame:
    """An A/B log from a CSV or Parquet file (a path, or the file's bytes with its ``name``, e.g. an
    upload): Parquet when the name ends in .parquet/.pq or the bytes start with Parquet's magic,
    else CSV."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    if isinstance(source, (bytes, bytearray)):
        label, data = name or "uploaded file", bytes(source)
    else:
        path = Path(source)
        label = str(path)
        if not path.is_file():
            raise InputError(f"A/B log not found: {path} (a CSV or Parquet file with one row per user: an arm "
                             f"column, a metric column, attributes; `lee world ab-log` writes the planted one)")
        data = path.read_bytes()
    parquet = label.lower().endswith((".parquet", ".pq")) or data[:4] == b"PAR1"
    try:
        frame = pq.read_table(io.BytesIO(data)).to_pandas() if parquet else pd.read_csv(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise InputError(f"{label}: not a readable {'Parquet' if parquet else 'CSV'} file ({exc})") from None
    return frame


# ----------------------------------------------------------------------------- validation


def _select_arms(log: pd.DataFrame, metric: str, *, arm_col: str, user_col: str,
                 arms: tuple[str, str]) -> tuple[pd.DataFrame, np.ndarray, int]:
    """Validate the log; return its rows in the two arms, a bool array (True for treatment rows)
    and how many rows of other arms were left out."""
    if not isinstance(log, pd.DataFrame):
        raise InputError(f"log: expected a pandas DataFrame; got {type(log).__name__}")
    if len(log) == 0:
        raise InputError("log: the exposure log is empty (0 rows); at least one user per arm needed")
    control, treatment = (str(a) for a in arms)
    if control == treatment:
        raise InputError(f"arms: control and treatment must differ; both are {control!r}")
    require_columns(log, [arm_col, user_col, metric], name="log")
    arm = log[arm_col]
    if arm.isna().any():
        k = int(np.flatnonzero(arm.isna().to_numpy())[0])
        raise InputError(f"log: column {arm_col} holds a missing arm at row {k}; every row needs "
                         f"an arm")
    labels = arm.astype(str).to_numpy()
    present = list(pd.unique(labels))
    shown = ", ".join(repr(v) for v in present[:10]) + (", ..." if len(present) > 10 else "")
    if len(present) == 1:
        raise InputError(f"log: only one arm present ({present[0]}) in column {arm_col}; two are needed "
                         f"(control {control!r} and treatment {treatment!r})")
    absent = [a for a in (control, treatment) if a not in present]
    if absent:
        raise InputError(f"log: column {arm_col} holds {shown} but no {' and no '.join(repr(a) for a in absent)} "
                         f"rows; choose the two arms to compare (control=/treatment=, --control/--treatment): "
                         f"expected {control!r} (control) and {treatment!r} (treatment)")
    require_numeric(log, [metric], name="log", nonnegative=True)
    dup = log[user_col].duplicated(keep=False).to_numpy()
    if dup.any():
        first = _py(log[user_col].iloc[int(np.flatnonzero(dup)[0])])
        n_ids = int(log[user_col][dup].nunique())
        raise InputError(f"log: duplicated {user_col} {first!r} ({n_ids} id(s) appear more than once); "
                         f"the log must hold one row per user")
    keep = (labels == control) | (labels == treatment)
    dropped = int((~keep).sum())
    if dropped:
        others = sorted(set(labels[~keep]))
        warnings.warn(f"segment_lift: {dropped} row(s) of column {arm_col} belong to other arms "
                      f"({', '.join(map(repr, others[:5]))}) and are left out; comparing {treatment!r} with "
                      f"{control!r}", LeeWarning, stacklevel=3)
        log = log.loc[keep]
        labels = labels[keep]
    y = log[metric].to_numpy(np.float64)
    if y.size and (y == y[0]).all():
        numeric = [str(c) for c in log.columns if c not in (arm_col, user_col, metric)
                   and pd.api.types.is_numeric_dtype(log[c]) and not pd.api.types.is_bool_dtype(log[c])]
        what = "all zero" if y[0] == 0 else f"constant (every row holds {float(y[0])!r})"
        raise InputError(f"log: metric column {metric} is {what} over the {len(y)} users of the two arms, so its "
                         f"lift is undefined; choose another metric column (numeric columns: "
                         f"{', '.join(numeric) or 'none'})")
    return log, labels == treatment, dropped


def _attribute(log: pd.DataFrame, users: pd.DataFrame | None, user_pos: np.ndarray | None,
               col: str, *, role: str = "by", user_col: str = "user_id") -> pd.Series:
    """Column ``col`` for the log's rows: from ``users`` (joined on the user id) when it holds it,
    else from the log."""
    if users is not None and col in users.columns and col != user_col:
        assert user_pos is not None
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
    raise InputError(f"log: missing column {col!r} ({role}, needed for by='quadrant') in {where}: the quadrant "
                     f"split is not available for this log; split by a column instead (columns available: "
                     f"{', '.join(present)})")


def _join_users(log: pd.DataFrame, users: pd.DataFrame, user_col: str) -> np.ndarray:
    """Row of ``users`` for each log row (every log user must be there)."""
    require_columns(users, [user_col], name="users")
    dup = users[user_col].duplicated().to_numpy()
    if dup.any():
        raise InputError(f"users: duplicated {user_col} {_py(users[user_col].iloc[int(np.flatnonzero(dup)[0])])!r}; "
                         f"the attribute frame must hold one row per user")
    pos = pd.Index(users[user_col]).get_indexer(log[user_col])
    missing = pos < 0
    if missing.any():
        first = _py(log[user_col].iloc[int(np.flatnonzero(missing)[0])])
        raise InputError(f"users: {int(missing.sum())} of {len(log)} log user(s) have no row in users "
                         f"(e.g. {user_col} {first!r}); check that the {user_col} types match")
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
              n_boot: int, level: float) -> tuple[dict[str, Any], np.ndarray]:
    """The row of one segment and its sorted bootstrap replicates of the lift (for adjusted intervals)."""
    nc, nt = control.size, treatment.size
    row: dict[str, Any] = {
        "users_control": nc, "users_treatment": nt,
        "nonzero_control": int((control != 0).sum()), "nonzero_treatment": int((treatment != 0).sum()),
        "metric_per_user_control": float(control.mean()) if nc else np.nan,
        "metric_per_user_treatment": float(treatment.mean()) if nt else np.nan,
        "lift": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan,
        "significant": False, "ci_excludes_zero": False, "note": "",
    }
    empty = np.zeros(0)
    if nc == 0 or nt == 0:
        row["note"] = f"no {'control' if nc == 0 else 'treatment'} users: lift undefined"
        return row, empty
    if row["metric_per_user_control"] == 0:
        row["note"] = "control metric is zero: lift undefined"
        return row, empty
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
        if not np.isfinite(p):
            row["p_value"] = np.nan
            notes.append("p-value undefined (no variance in either arm)")
    else:
        notes.append("fewer than 2 users in an arm: no p-value")
    if min(nc, nt) < MIN_USERS_PER_ARM:
        notes.append(f"fewer than {MIN_USERS_PER_ARM} users in an arm: interval unreliable")
    row["note"] = "; ".join(notes)
    return row, defined


def _interval(sorted_reps: np.ndarray, level: float) -> tuple[float, float]:
    if not sorted_reps.size:
        return float("nan"), float("nan")
    a = 1.0 - level
    return _percentile(sorted_reps, a / 2), _percentile(sorted_reps, 1 - a / 2)


# ----------------------------------------------------------------------------- the analysis


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InputError(f"{name}: expected a non-negative integer; got {value!r}")
    return int(value)


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
    arm_col: str = "arm",
    control: str = ARMS[0],
    treatment: str = ARMS[1],
    user_col: str = "user_id",
    min_users: int = MIN_USERS_PER_ARM,
    min_nonzero: int = MIN_NONZERO_PER_ARM,
    adjust: str = DEFAULT_ADJUST,
    alpha: float | None = None,
) -> SegmentLift:
    """Lift of ``metric`` per user, ``treatment`` over ``control``, per segment of ``by``.

    ``log`` holds one row per user: ``arm_col`` (the arm; rows of arms other than ``control`` and
    ``treatment`` are left out with a warning), ``user_col`` and ``metric`` (finite, non-negative,
    not constant). ``by`` is ``'quadrant'`` (from ``home_col`` / ``other_col`` with ``home_min`` /
    ``other_threshold``, see :func:`quadrants`; only when those columns exist), a column name, a
    list of them (segments are their combinations; ``'quadrant'`` may be one of them), or ``None``
    (only the ``all`` row). Columns are looked up in ``users`` first (an attribute frame joined on
    ``user_col``; every log user must have a row), then in the log.

    A numeric column with more than ``MAX_LEVELS`` distinct values needs ``bins``: an int (that
    many quantile bins) or a sequence of edges (every value must fall inside them); a mapping
    column -> bins when ``by`` is a list. Missing attribute values form a ``(missing)`` segment.
    Segments with fewer than ``min_users`` users or ``min_nonzero`` users with a non-zero metric
    in either arm are pooled into ``(other)`` (0 turns pooling off).

    See the module docstring for the interval (bootstrap percentile, ``n_boot`` replicates,
    ``level``), the p-value (Welch t-test) and the multiplicity adjustment (``adjust``: ``holm``
    or ``bh``, at ``alpha``, default ``1 - level``). A reported segment with an arm of fewer than
    ``MIN_USERS_PER_ARM`` users raises a :class:`SmallSampleWarning`.
    """
    if not (isinstance(n_boot, (int, np.integer)) and not isinstance(n_boot, bool) and n_boot >= 10):
        raise InputError(f"n_boot: expected an integer of at least 10; got {n_boot!r}")
    if not (isinstance(level, (int, float)) and 0.0 < float(level) < 1.0):
        raise InputError(f"level: expected a number strictly between 0 and 1; got {level!r}")
    if not isinstance(metric, str):
        raise InputError(f"metric: expected a column name; got {metric!r}")
    min_users, min_nonzero = _count(min_users, "min_users"), _count(min_nonzero, "min_nonzero")
    method = parse_adjust(adjust)
    alpha_ = float(1.0 - level if alpha is None else alpha)
    log, treated, dropped = _select_arms(log, metric, arm_col=arm_col, user_col=user_col,
                                         arms=(str(control), str(treatment)))
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

    user_pos = _join_users(log, users, user_col) if users is not None else None
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
            frame = pd.DataFrame({c: _attribute(log, users, user_pos, c, role=r, user_col=user_col)
                                  for c, r in ((home_col, "home_col"), (other_col, "other_col"))})
            q = quadrants(frame, home_col=home_col, other_col=other_col, home_min=home_min,
                          other_threshold=other_threshold)
            codes, levels = q.cat.codes.to_numpy(np.int64), list(QUADRANTS)
        else:
            codes, levels = _component(_attribute(log, users, user_pos, col, user_col=user_col), col,
                                       bins.get(col))
        comp_codes.append(codes)
        comp_levels.append(levels)

    fixed = ["segment", "users_control", "users_treatment", "nonzero_control", "nonzero_treatment",
             "metric_per_user_control", "metric_per_user_treatment", "lift", "ci_low", "ci_high", "ci_low_adj",
             "ci_high_adj", "p_value", "p_adjusted", "significant", "ci_excludes_zero", "share_of_users",
             "members", "note"]
    by_names = [f"by_{c}" if c in fixed else c for c in by_cols]   # a `by` column named like a table column
    level = float(level)
    rows: list[dict[str, Any]] = []
    reps: list[np.ndarray] = []
    small: list[str] = []
    pooled: list[str] = []
    n_total = len(log)
    nonzero = y != 0
    if by_cols:
        combined = np.ravel_multi_index(comp_codes, [len(lv) for lv in comp_levels])
        order = np.argsort(combined, kind="stable")
        seg_ids, starts = np.unique(combined[order], return_index=True)
        groups = np.split(order, starts[1:])
        pool: list[np.ndarray] = []
        for k, (sid, members) in enumerate(zip(seg_ids, groups)):
            parts = np.unravel_index(sid, [len(lv) for lv in comp_levels])
            names = [comp_levels[j][int(parts[j])] for j in range(len(by_cols))]
            label = " | ".join(names)
            t = treated[members]
            nz = nonzero[members]
            if min(int((~t).sum()), int(t.sum())) < min_users or min(int((nz & ~t).sum()), int((nz & t).sum())) \
                    < min_nonzero:
                pooled.append(label)
                pool.append(members)
                continue
            row, r = _lift_row(np.random.default_rng([seed, 1, k]), y[members][~t], y[members][t],
                               n_boot=n_boot, level=level)
            rows.append({"segment": label, **dict(zip(by_names, names)), **row, "members": "",
                         "share_of_users": members.size / n_total})
            reps.append(r)
        if pool:
            members = np.concatenate(pool)
            t = treated[members]
            row, r = _lift_row(np.random.default_rng([seed, 2]), y[members][~t], y[members][t],
                               n_boot=n_boot, level=level)
            row["note"] = "; ".join(x for x in (f"pooled: {', '.join(pooled)}", row["note"]) if x)
            rows.append({"segment": OTHER, **{c: OTHER for c in by_names}, **row, "members": ", ".join(pooled),
                         "share_of_users": members.size / n_total})
            reps.append(r)
        for row in rows:
            if 0 < min(row["users_control"], row["users_treatment"]) < MIN_USERS_PER_ARM:
                small.append(row["segment"])

    # multiplicity over the tested segments (the all row is not part of the family)
    adj = adjust_pvalues(np.array([r["p_value"] for r in rows], dtype=np.float64), method, alpha=alpha_)
    for k, row in enumerate(rows):
        row["p_adjusted"] = float(adj.p_adjusted[k])
        row["significant"] = bool(adj.significant[k])
        row["ci_low_adj"], row["ci_high_adj"] = _interval(reps[k], adj.interval_level)

    all_row, all_reps = _lift_row(np.random.default_rng([seed, 0]), y[~treated], y[treated], n_boot=n_boot,
                                  level=level)
    all_row["p_adjusted"] = all_row["p_value"]
    all_row["significant"] = bool(np.isfinite(all_row["p_value"]) and all_row["p_value"] < alpha_)
    all_row["ci_low_adj"], all_row["ci_high_adj"] = all_row["ci_low"], all_row["ci_high"]
    rows.append({"segment": ALL, **{c: ALL for c in by_names}, **all_row, "members": "", "share_of_users": 1.0})
    if min(all_row["users_control"], all_row["users_treatment"]) < MIN_USERS_PER_ARM:
        small.append(ALL)
    if small:
        warnings.warn(f"segment_lift: fewer than {MIN_USERS_PER_ARM} users in an arm of segment(s) "
                      f"{', '.join(small)}; their intervals mean little", SmallSampleWarning, stacklevel=2)

    table = pd.DataFrame(rows, columns=[fixed[0], *by_names, *fixed[1:]])
    for c in ("users_control", "users_treatment", "nonzero_control", "nonzero_treatment"):
        table[c] = table[c].astype(np.int64)
    table["significant"] = table["significant"].astype(bool)
    thresholds = {"home_col": home_col, "other_col": other_col, "home_min": home_min,
                  "other_threshold": other_threshold}
    return SegmentLift(table=table, by=by_cols or None, metric=metric, level=level, n_boot=int(n_boot),
                       seed=seed, thresholds=thresholds, arms=(str(control), str(treatment)), arm_col=arm_col,
                       adjust=method.value, alpha=alpha, multiplicity=adj.describe(), min_users=min_users,
                       min_nonzero=min_nonzero, pooled=tuple(pooled), rows_other_arms=dropped)
