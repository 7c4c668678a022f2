"""A planted A/B exposure log: per-user outcomes of a treatment whose GMV lift differs by segment.

Users are split into four quadrants (the seed paper's segments) by two pre-period behaviours:

* home-scenario ad actions in the last 10 days: *home-active* if at least ``home_min`` (1);
* ad actions in other scenarios in the last 60 days: *out-of-domain* if strictly above
  ``other_threshold`` (10), otherwise *in-domain*. Exactly 10 actions is in-domain.

:func:`generate_ab_log` randomises a world's users 50/50 into ``control`` and ``treatment`` and
draws their exposures, clicks, conversions and GMV so that the treatment multiplies the
conversion rate of a quadrant by ``1 + lift[quadrant]``. The analysis in
:mod:`analysis.segments` must recover those lifts.

Everything is vectorised numpy driven by one seeded generator (1M users take about a second).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from lee.errors import InputError
from lee.world.config import ACTIVITY_LEVELS

ARMS: tuple[str, str] = ("control", "treatment")

# Quadrant names, in a fixed order (also the category order of :func:`quadrant_labels`).
HOME_ACTIVE_IN_DOMAIN = "home_active_in_domain"
HOME_ACTIVE_OUT_OF_DOMAIN = "home_active_out_of_domain"
HOME_INACTIVE_IN_DOMAIN = "home_inactive_in_domain"
HOME_INACTIVE_OUT_OF_DOMAIN = "home_inactive_out_of_domain"
QUADRANTS: tuple[str, ...] = (
    HOME_ACTIVE_IN_DOMAIN, HOME_ACTIVE_OUT_OF_DOMAIN, HOME_INACTIVE_IN_DOMAIN, HOME_INACTIVE_OUT_OF_DOMAIN,
)

# The planted relative GMV lift of the treatment per quadrant: strongest for users with no home
# behaviour but many ad actions elsewhere (the treatment transfers their out-of-domain interest),
# near zero and slightly negative for home-active in-domain users (already well served).
PLANTED_LIFT: dict[str, float] = {
    HOME_ACTIVE_IN_DOMAIN: -0.02,
    HOME_ACTIVE_OUT_OF_DOMAIN: 0.10,
    HOME_INACTIVE_IN_DOMAIN: 0.05,
    HOME_INACTIVE_OUT_OF_DOMAIN: 0.25,
}

DEFAULT_HOME_COL = "home_ad_actions_10d"
DEFAULT_OTHER_COL = "other_ad_actions_60d"
DEFAULT_HOME_MIN = 1
DEFAULT_OTHER_THRESHOLD = 10

# Extra behaviour windows written next to the 10d / 60d columns: (column, days).
HOME_WINDOWS: tuple[tuple[str, int], ...] = (("home_ad_actions_7d", 7), ("home_ad_actions_10d", 10),
                                             ("home_ad_actions_30d", 30))
OTHER_WINDOWS: tuple[tuple[str, int], ...] = (("other_ad_actions_30d", 30), ("other_ad_actions_60d", 60),
                                              ("other_ad_actions_90d", 90))
LOG_COLUMNS: tuple[str, ...] = (
    "arm", "user_id", "exposures", "clicks", "conversions", "gmv",
    *(c for c, _ in HOME_WINDOWS), *(c for c, _ in OTHER_WINDOWS), "activity_level",
)


def quadrant_codes(home: np.ndarray, other: np.ndarray, *, home_min: float = DEFAULT_HOME_MIN,
                   other_threshold: float = DEFAULT_OTHER_THRESHOLD) -> np.ndarray:
    """Index into :data:`QUADRANTS` per user: home-active iff ``home >= home_min``, out-of-domain
    iff ``other > other_threshold`` (strictly above)."""
    active = np.asarray(home) >= home_min
    ood = np.asarray(other) > other_threshold
    return np.where(active, np.where(ood, 1, 0), np.where(ood, 3, 2)).astype(np.int8)


def quadrant_labels(codes: np.ndarray) -> pd.Categorical:
    """Quadrant codes as a categorical with the categories :data:`QUADRANTS` in their fixed order."""
    return pd.Categorical.from_codes(np.asarray(codes, dtype=np.int8), categories=list(QUADRANTS))


def _lift_vector(lift: float | Mapping[str, float]) -> np.ndarray:
    if isinstance(lift, Mapping):
        unknown = sorted(set(map(str, lift)) - set(QUADRANTS))
        missing = [q for q in QUADRANTS if q not in lift]
        if unknown or missing:
            raise InputError(
                f"lift: keys must be exactly the quadrants {', '.join(QUADRANTS)}"
                + (f"; unknown: {', '.join(unknown)}" if unknown else "")
                + (f"; missing: {', '.join(missing)}" if missing else ""))
        vec = np.array([float(lift[q]) for q in QUADRANTS])
    else:
        vec = np.full(len(QUADRANTS), float(lift))
    if not np.isfinite(vec).all() or (vec <= -1.0).any():
        raise InputError(f"lift: every lift must be finite and above -1; got {vec.tolist()}")
    return vec


def _users_of(world: Any) -> pd.DataFrame:
    users = world.users if hasattr(world, "users") else world
    if not isinstance(users, pd.DataFrame):
        raise InputError(f"generate_ab_log: expected a World or a users DataFrame; got {type(world).__name__}")
    needed = ("user_id", DEFAULT_HOME_COL, DEFAULT_OTHER_COL)
    missing = [c for c in needed if c not in users.columns]
    if missing:
        raise InputError(f"generate_ab_log: users miss column(s) {', '.join(missing)}; "
                         f"columns present: {', '.join(map(str, users.columns))}")
    if len(users) < 2:
        raise InputError(f"generate_ab_log: users hold {len(users)} row(s); at least 2 needed (one per arm)")
    for col in needed[1:]:
        arr = users[col].to_numpy(np.float64)
        if not np.isfinite(arr).all() or (arr < 0).any():
            raise InputError(f"generate_ab_log: users column {col} must hold finite non-negative counts")
    return users


def _extend_window(rng: np.random.Generator, counts: np.ndarray, days: int, extra_days: int,
                   prior_shape: float = 0.5, prior_days: float = 5.0) -> np.ndarray:
    """Counts over ``days + extra_days``: the observed ``counts`` plus draws for the unseen days from
    the posterior predictive of a Poisson daily rate under a Gamma(prior_shape, prior_days) prior."""
    rate = rng.gamma(counts + prior_shape, 1.0 / (days + prior_days))
    return counts + rng.poisson(rate * extra_days)


def generate_ab_log(
    world: Any,
    *,
    lift: float | Mapping[str, float] = PLANTED_LIFT,
    other_threshold: float = DEFAULT_OTHER_THRESHOLD,
    home_min: float = DEFAULT_HOME_MIN,
    seed: int = 0,
    exposures_per_activity: float = 30.0,
    ctr: float = 0.05,
    ctr_concentration: float = 50.0,
    cvr: float = 0.10,
    price_log_mean: float = 3.0,
    price_log_sigma: float = 0.6,
) -> pd.DataFrame:
    """One row per user of ``world`` (a :class:`~lee.world.model.World` or its users frame): the
    user's arm and outcomes over the experiment, plus pre-period behaviour windows.

    Users are randomised 50/50 (a random permutation: ``n // 2`` in treatment). Per user ``u``:

    * ``exposures ~ Poisson(exposures_per_activity * activity_u)`` (activity 1 if the users frame
      has no ``activity`` column);
    * ``clicks ~ Binomial(exposures, ctr_u)`` with ``ctr_u ~ Beta`` of mean ``ctr``;
    * ``conversions ~ Binomial(clicks, cvr * m)`` with ``m = 1 + lift[quadrant_u]`` in treatment
      and ``m = 1`` in control;
    * ``gmv`` = the sum over conversions of independent LogNormal(price_log_mean, price_log_sigma)
      prices (not rounded).

    Hence the expected GMV of a user is ``exposures_per_activity * activity_u * E[ctr_u] * cvr * m
    * E[price]``, and since arm and quadrant are independent of every other draw, **within a
    quadrant the expected GMV per user in treatment is exactly ``1 + lift[quadrant]`` times that in
    control**. ``cvr * (1 + lift)`` must stay at most 1 (checked).

    Quadrants use the 10d home / 60d other columns with ``home_min`` and ``other_threshold``
    (strictly above). Window columns are consistent: ``home 7d <= 10d <= 30d`` and
    ``other 30d <= 60d <= 90d``; shorter windows thin the observed counts binomially (exact for a
    constant-rate Poisson process), longer ones add posterior-predictive draws for the unseen days.

    ``frame.attrs`` holds ``planted_lift`` (quadrant -> lift), ``planted_lift_all`` (the expected
    lift over all users, a mix of the quadrant lifts weighted by expected control GMV),
    ``other_threshold``, ``home_min`` and ``params``.
    """
    users = _users_of(world)
    lift_vec = _lift_vector(lift)
    for name, value in (("ctr", ctr), ("cvr", cvr)):
        if not 0.0 < value < 1.0:
            raise InputError(f"generate_ab_log: {name} must lie in (0, 1); got {value}")
    if cvr * (1.0 + lift_vec.max()) > 1.0:
        raise InputError(f"generate_ab_log: cvr * (1 + lift) must be at most 1; cvr={cvr}, "
                         f"largest lift={lift_vec.max()} gives {cvr * (1.0 + lift_vec.max())}")
    for name, value in (("exposures_per_activity", exposures_per_activity),
                        ("ctr_concentration", ctr_concentration), ("price_log_sigma", price_log_sigma)):
        if not (np.isfinite(value) and value > 0):
            raise InputError(f"generate_ab_log: {name} must be positive; got {value}")

    rng = np.random.default_rng(seed)
    n = len(users)
    home10 = users[DEFAULT_HOME_COL].to_numpy(np.int64)
    other60 = users[DEFAULT_OTHER_COL].to_numpy(np.int64)
    quad = quadrant_codes(home10, other60, home_min=home_min, other_threshold=other_threshold)

    if "activity" in users.columns:
        activity = users["activity"].to_numpy(np.float64)
        if not np.isfinite(activity).all() or (activity < 0).any():
            raise InputError("generate_ab_log: users column activity must be finite and non-negative")
    else:
        activity = np.ones(n)
    if "activity_level" in users.columns:
        activity_level = users["activity_level"].array  # keeps a categorical's order
    else:
        cuts = np.quantile(activity, [1 / 3, 2 / 3])
        activity_level = pd.Categorical.from_codes(np.searchsorted(cuts, activity, side="right"),
                                                   categories=list(ACTIVITY_LEVELS))

    treated = np.zeros(n, dtype=bool)
    treated[rng.permutation(n)[: n // 2]] = True
    mult = np.where(treated, 1.0 + lift_vec[quad], 1.0)

    exposures = rng.poisson(exposures_per_activity * activity)
    ctr_u = rng.beta(ctr_concentration * ctr, ctr_concentration * (1.0 - ctr), size=n)
    clicks = rng.binomial(exposures, ctr_u)
    conversions = rng.binomial(clicks, cvr * mult)
    owner = np.repeat(np.arange(n), conversions)
    prices = rng.lognormal(price_log_mean, price_log_sigma, size=owner.size)
    gmv = np.bincount(owner, weights=prices, minlength=n)

    home = {"home_ad_actions_7d": rng.binomial(home10, 7 / 10), "home_ad_actions_10d": home10,
            "home_ad_actions_30d": _extend_window(rng, home10, 10, 20)}
    other = {"other_ad_actions_30d": rng.binomial(other60, 30 / 60), "other_ad_actions_60d": other60,
             "other_ad_actions_90d": _extend_window(rng, other60, 60, 30)}

    log = pd.DataFrame({
        "arm": pd.Categorical.from_codes(treated.astype(np.int8), categories=list(ARMS)),
        "user_id": users["user_id"].to_numpy(),
        "exposures": exposures.astype(np.int64),
        "clicks": clicks.astype(np.int64),
        "conversions": conversions.astype(np.int64),
        "gmv": gmv,
        **home,
        **other,
        "activity_level": activity_level,
    })
    expected_control = activity * (exposures_per_activity * ctr * cvr)  # per user, up to E[price]
    planted_all = float((expected_control * lift_vec[quad]).sum() / expected_control.sum()) \
        if expected_control.sum() > 0 else float("nan")
    log.attrs.update({
        "planted_lift": {q: float(v) for q, v in zip(QUADRANTS, lift_vec)},
        "planted_lift_all": planted_all,
        "other_threshold": other_threshold,
        "home_min": home_min,
        "params": {"seed": seed, "exposures_per_activity": exposures_per_activity, "ctr": ctr,
                   "ctr_concentration": ctr_concentration, "cvr": cvr,
                   "price_log_mean": price_log_mean, "price_log_sigma": price_log_sigma},
    })
    return log
