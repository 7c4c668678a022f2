"""User-segment GMV lift (analysis/segments.py) and its planted A/B log (lee/world/ab_log.py)."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.segments import MISSING, OTHER, SegmentLift, quadrants, segment_lift
from lee.errors import InputError, SmallSampleWarning
from lee.world.ab_log import HOME_ACTIVE_IN_DOMAIN as A_IN
from lee.world.ab_log import HOME_ACTIVE_OUT_OF_DOMAIN as A_OOD
from lee.world.ab_log import HOME_INACTIVE_IN_DOMAIN as I_IN
from lee.world.ab_log import HOME_INACTIVE_OUT_OF_DOMAIN as I_OOD
from lee.world.ab_log import LOG_COLUMNS, PLANTED_LIFT, QUADRANTS, generate_ab_log
from lee.world.config import config_for_scale
from lee.world.generate import generate_world


@pytest.fixture(scope="module")
def big_world():
    # Many users, few events: the users frame is all the A/B log needs (~0.2 s).
    return generate_world(config_for_scale("small", seed=0, n_users=200_000, n_events=20_000))


@pytest.fixture(scope="module")
def planted_log(big_world):
    return generate_ab_log(big_world, seed=0)


@pytest.fixture(scope="module")
def planted_result(planted_log):
    return segment_lift(planted_log, n_boot=1000, level=0.95, seed=0)


@pytest.fixture(scope="module")
def mid_world():
    return generate_world(config_for_scale("small", seed=3, n_users=50_000, n_events=20_000))


def _micro_log() -> pd.DataFrame:
    """Eight users, one per arm per quadrant, at the thresholds' edges."""
    return pd.DataFrame({
        "arm": ["control", "treatment"] * 4,
        "user_id": [101, 102, 103, 104, 105, 106, 107, 108],
        "home_ad_actions_10d": [0, 0, 0, 0, 1, 1, 5, 5],
        "other_ad_actions_60d": [10, 10, 11, 11, 0, 0, 50, 50],
        "gmv": [10.0, 15.0, 20.0, 40.0, 30.0, 27.0, 40.0, 60.0],
    })


# ----------------------------------------------------------------------------- closed form


def test_micro_case_exact_means_lifts_and_quadrants():
    log = _micro_log()
    q = quadrants(log)
    assert list(q) == [I_IN, I_IN, I_OOD, I_OOD, A_IN, A_IN, A_OOD, A_OOD]  # other == 10 is NOT above 10

    with pytest.warns(SmallSampleWarning, match="fewer than"):
        res = segment_lift(log, n_boot=200, min_users=0, min_nonzero=0)  # no pooling: one user per arm and quadrant
    assert isinstance(res, SegmentLift)
    t = res.table.set_index("segment")
    assert list(t.index) == [*QUADRANTS, "all"]
    expected = {I_IN: (10, 15, 0.5), I_OOD: (20, 40, 1.0), A_IN: (30, 27, -0.1), A_OOD: (40, 60, 0.5)}
    for seg, (c, tr, lift) in expected.items():
        row = t.loc[seg]
        assert (row.users_control, row.users_treatment) == (1, 1)
        assert row.metric_per_user_control == c and row.metric_per_user_treatment == tr
        assert row.lift == pytest.approx(lift, abs=1e-12)
        # one user per arm: every bootstrap resample is that user, so the interval is the point
        assert row.ci_low == pytest.approx(lift) and row.ci_high == pytest.approx(lift)
        assert np.isnan(row.p_value) and not row.significant and "no p-value" in row.note
        assert row.share_of_users == 0.25
    a = t.loc["all"]
    assert (a.users_control, a.users_treatment) == (4, 4)
    assert a.metric_per_user_control == 25.0 and a.metric_per_user_treatment == 35.5
    assert a.lift == pytest.approx(35.5 / 25.0 - 1)
    assert a.ci_low <= a.lift <= a.ci_high and a.ci_low < a.ci_high
    assert a.p_value == pytest.approx(stats.ttest_ind([15, 40, 27, 60], [10, 20, 30, 40], equal_var=False).pvalue)


def test_quadrant_boundaries_and_thresholds():
    log = pd.DataFrame({"home_ad_actions_10d": [0, 1, 0, 1, 2, 3],
                        "other_ad_actions_60d": [10, 10, 11, 11, 9, 10]})
    assert list(quadrants(log)) == [I_IN, A_IN, I_OOD, A_OOD, A_IN, A_IN]
    # home_min=2: one action is no longer "home-active"; threshold 9: 10 is now above it
    assert list(quadrants(log, home_min=2, other_threshold=9)) == [I_OOD, I_OOD, I_OOD, I_OOD, A_IN, A_OOD]
    q = quadrants(log)
    assert list(q.cat.categories) == list(QUADRANTS) and q.name == "quadrant"


# ----------------------------------------------------------------------------- the generator


def test_generator_shape_windows_and_attrs(big_world, planted_log):
    log, users = planted_log, big_world.users
    assert list(log.columns) == list(LOG_COLUMNS)
    assert len(log) == len(users) and log["user_id"].is_unique
    assert (log["user_id"].to_numpy() == users["user_id"].to_numpy()).all()
    counts = log["arm"].value_counts()
    assert counts["treatment"] == len(users) // 2 and counts["control"] == len(users) - len(users) // 2
    assert (log["clicks"] <= log["exposures"]).all() and (log["conversions"] <= log["clicks"]).all()
    assert ((log["gmv"] > 0) == (log["conversions"] > 0)).all()
    assert (log["home_ad_actions_7d"] <= log["home_ad_actions_10d"]).all()
    assert (log["home_ad_actions_10d"] <= log["home_ad_actions_30d"]).all()
    assert (log["other_ad_actions_30d"] <= log["other_ad_actions_60d"]).all()
    assert (log["other_ad_actions_60d"] <= log["other_ad_actions_90d"]).all()
    # the windows really differ (else configurable windows would be a no-op)
    assert (log["home_ad_actions_30d"] > log["home_ad_actions_10d"]).mean() > 0.2
    assert (log["other_ad_actions_30d"] < log["other_ad_actions_60d"]).mean() > 0.2
    assert (log["activity_level"].astype(str) == users["activity_level"].astype(str)).all()
    assert log.attrs["planted_lift"] == PLANTED_LIFT
    assert set(PLANTED_LIFT) == set(QUADRANTS) and len(set(PLANTED_LIFT.values())) == 4
    assert max(PLANTED_LIFT, key=PLANTED_LIFT.get) == I_OOD and min(PLANTED_LIFT.values()) < 0
    assert min(PLANTED_LIFT.values()) < log.attrs["planted_lift_all"] < max(PLANTED_LIFT.values())
    again = generate_ab_log(big_world, seed=0)
    pd.testing.assert_frame_equal(log, again)
    assert not generate_ab_log(big_world, seed=1)["arm"].equals(log["arm"])


def test_generator_conversion_rate_carries_the_lift(planted_log):
    """The construction itself: conversions / clicks = cvr * (1 + lift) in treatment, cvr in control."""
    log = planted_log
    cvr = log.attrs["params"]["cvr"]
    q = quadrants(log)
    for quad in QUADRANTS:
        for arm in ("control", "treatment"):
            sel = (q == quad).to_numpy() & (log["arm"] == arm).to_numpy()
            clicks, conv = log["clicks"].to_numpy()[sel].sum(), log["conversions"].to_numpy()[sel].sum()
            p = cvr * (1 + PLANTED_LIFT[quad]) if arm == "treatment" else cvr
            se = np.sqrt(p * (1 - p) / clicks)
            assert abs(conv / clicks - p) < 4 * se, (quad, arm, conv / clicks, p)


def test_generator_options_and_errors(big_world):
    users = big_world.users.iloc[:1000]
    flat = generate_ab_log(users, lift=0.1, seed=2)  # a users frame works, a scalar lift applies to all
    assert flat.attrs["planted_lift"] == {q: 0.1 for q in QUADRANTS}
    assert flat.attrs["planted_lift_all"] == pytest.approx(0.1)
    # other_threshold moves users between quadrants of the *planted* lift
    lift = {A_IN: 0.0, A_OOD: 0.0, I_IN: 0.0, I_OOD: 0.5}
    a = generate_ab_log(users, lift=lift, other_threshold=10)
    b = generate_ab_log(users, lift=lift, other_threshold=3)
    assert b.attrs["planted_lift_all"] > a.attrs["planted_lift_all"]
    with pytest.raises(InputError, match=r"cvr \* \(1 \+ lift\)"):
        generate_ab_log(users, lift=1.5, cvr=0.5)
    with pytest.raises(InputError, match="unknown: bogus"):
        generate_ab_log(users, lift={**PLANTED_LIFT, "bogus": 0.1})
    with pytest.raises(InputError, match="missing: " + I_OOD):
        generate_ab_log(users, lift={k: v for k, v in PLANTED_LIFT.items() if k != I_OOD})
    with pytest.raises(InputError, match="other_ad_actions_60d"):
        generate_ab_log(users.drop(columns=["other_ad_actions_60d"]))


def test_generator_one_million_users_is_seconds():
    rng = np.random.default_rng(0)
    n = 1_000_000
    activity = rng.lognormal(0.0, 1.0, n)
    users = pd.DataFrame({"user_id": np.arange(n, dtype=np.int64) * 3 + 7, "activity": activity,
                          "home_ad_actions_10d": rng.poisson(0.5 * activity),
                          "other_ad_actions_60d": rng.poisson(5.0 * activity)})
    t0 = time.perf_counter()
    log = generate_ab_log(users, seed=0)
    assert time.perf_counter() - t0 < 15.0  # ~1 s on an idle core; loose for a shared box
    assert len(log) == n and set(log["activity_level"].astype(str)) == {"low", "mid", "high"}


# ----------------------------------------------------------------------------- recovery


def test_planted_lifts_recovered_and_distinguished(planted_log, planted_result):
    # Fixed seeds. Over 20 world/log seeds, all four 95% intervals held their planted lift in 16
    # (as expected: 0.95^4 = 0.81) and the separations below held in 19.
    t = planted_result.table.set_index("segment")
    for quad in QUADRANTS:
        row = t.loc[quad]
        assert row.ci_low < PLANTED_LIFT[quad] < row.ci_high, (quad, row.lift, row.ci_low, row.ci_high)
        assert row.ci_high - row.ci_low < 0.25  # informative, not merely wide
    # clearly different planted lifts (0.25 vs -0.02 and vs 0.05): the intervals separate
    assert t.loc[I_OOD, "ci_low"] > t.loc[A_IN, "ci_high"]
    assert t.loc[I_OOD, "ci_low"] > t.loc[I_IN, "ci_high"]
    assert t.loc[I_OOD, "significant"] and t.loc[I_OOD, "p_value"] < 1e-4
    a = t.loc["all"]
    assert a.ci_low < planted_log.attrs["planted_lift_all"] < a.ci_high
    s = planted_result.summary()
    assert s["largest_lift_segment"] == I_OOD and I_OOD in s["significant_segments"]
    assert s["users"] == len(planted_log) and s["segments"] == 4
    assert t.loc[list(QUADRANTS), "share_of_users"].sum() == pytest.approx(1.0)


def test_zero_lift_is_rarely_significant(mid_world):
    zero = {q: 0.0 for q in QUADRANTS}
    hits = excl = 0
    for seed in range(5):
        tab = segment_lift(generate_ab_log(mid_world, lift=zero, seed=seed), n_boot=200, seed=seed).table
        quad = tab[tab["segment"] != "all"]
        assert len(quad) == 4
        hits += int(quad["significant"].sum())
        excl += int(quad["ci_excludes_zero"].sum())
    # 20 tests at 5%: expected 1; P(Binomial(20, 0.05) >= 4) < 2%
    assert hits <= 3 and excl <= 3, (hits, excl)


def test_bootstrap_interval_coverage(mid_world):
    users = mid_world.users.iloc[:10_000]  # at 4k users the percentile interval under-covers a little (~87%)
    covered90 = covered50 = 0
    for rep in range(40):
        log = generate_ab_log(users, lift=0.1, seed=100 + rep)
        truth = log.attrs["planted_lift_all"]  # 0.1: the same lift in every quadrant
        r90 = segment_lift(log, by=None, n_boot=300, level=0.90, seed=rep).row("all")
        r50 = segment_lift(log, by=None, n_boot=300, level=0.50, seed=rep).row("all")
        covered90 += r90.ci_low <= truth <= r90.ci_high
        covered50 += r50.ci_low <= truth <= r50.ci_high
    assert covered90 >= 30, covered90          # nominal 36 of 40
    assert 10 <= covered50 <= 30, covered50    # nominal 20 of 40: neither too wide nor too narrow


def test_p_value_is_welch_t_test(planted_log, planted_result):
    q = quadrants(planted_log)
    treat = (planted_log["arm"] == "treatment").to_numpy()
    gmv = planted_log["gmv"].to_numpy()
    t = planted_result.table.set_index("segment")
    for quad in QUADRANTS:
        sel = (q == quad).to_numpy()
        want = stats.ttest_ind(gmv[sel & treat], gmv[sel & ~treat], equal_var=False).pvalue
        assert t.loc[quad, "p_value"] == pytest.approx(want, rel=1e-9)
        assert t.loc[quad, "significant"] == (want < 0.05)
    want_all = stats.ttest_ind(gmv[treat], gmv[~treat], equal_var=False).pvalue
    assert t.loc["all", "p_value"] == pytest.approx(want_all, rel=1e-9)
    assert planted_result.summary()["p_value_method"].startswith("Welch")


# ----------------------------------------------------------------------------- any attribute


def test_split_by_categorical_numeric_and_combined(big_world, planted_log, planted_result):
    log = planted_log.iloc[:60_000]
    by_level = segment_lift(log, by="activity_level", n_boot=200)
    unsplit = segment_lift(log, by=None, n_boot=200)
    by_quad = segment_lift(log, n_boot=200)
    t = by_level.table.set_index("segment")
    assert list(t.index) == ["low", "mid", "high", "all"]
    arm = log["arm"].astype(str)
    for level in ("low", "mid", "high"):
        sel = log["activity_level"].astype(str) == level
        c, tr = log.loc[sel & (arm == "control"), "gmv"].mean(), log.loc[sel & (arm == "treatment"), "gmv"].mean()
        assert t.loc[level, "lift"] == pytest.approx(tr / c - 1, rel=1e-12)
    # the 'all' row is the unsplit lift, interval and all, whatever the split
    cols = ["users_control", "users_treatment", "lift", "ci_low", "ci_high", "p_value"]
    for res in (by_level, by_quad):
        assert res.row("all")[cols].tolist() == pytest.approx(unsplit.row("all")[cols].tolist())
    assert unsplit.row("all")["lift"] == pytest.approx(
        log.loc[arm == "treatment", "gmv"].mean() / log.loc[arm == "control", "gmv"].mean() - 1)
    assert len(unsplit.table) == 1

    # the same attribute from a joined user frame (which takes precedence over the log's column)
    joined = segment_lift(log.drop(columns=["activity_level"]), by="activity_level",
                          users=big_world.users[["user_id", "activity_level"]], n_boot=200).table
    pd.testing.assert_frame_equal(joined, by_level.table)
    relabel = big_world.users[["user_id"]].assign(activity_level="one")
    assert segment_lift(log, by="activity_level", users=relabel, n_boot=50).table["segment"].tolist() == ["one", "all"]

    # a numeric attribute from a joined user frame: quantile bins and explicit edges
    users = big_world.users[["user_id", "activity"]]
    with pytest.raises(InputError, match="distinct values.*bins"):
        segment_lift(log, by="activity", users=users, n_boot=50)
    q4 = segment_lift(log, by="activity", users=users, bins=4, n_boot=200).table
    segs = q4[q4["segment"] != "all"]
    assert len(segs) == 4 and segs["share_of_users"].to_numpy() == pytest.approx(0.25, abs=0.01)
    assert q4.iloc[-1]["lift"] == pytest.approx(unsplit.row("all")["lift"])
    # higher activity means more GMV per user in both arms
    assert segs["metric_per_user_control"].is_monotonic_increasing
    edges = segment_lift(log, by="activity", users=users, bins=[0, 1, np.inf], n_boot=200).table
    act = users.set_index("user_id").loc[log["user_id"], "activity"].to_numpy()
    assert edges["users_control"].iloc[0] + edges["users_treatment"].iloc[0] == int((act <= 1).sum())

    with warnings.catch_warnings():  # some activity x quadrant cells are small
        warnings.simplefilter("ignore", SmallSampleWarning)
        both = segment_lift(log, by=["activity_level", "quadrant"], n_boot=100).table
    segs = both[both["segment"] != "all"]
    assert 8 <= len(segs) <= 12 and (segs["users_control"] + segs["users_treatment"]).sum() == len(log)
    assert {"activity_level", "quadrant"} <= set(both.columns)
    assert both.iloc[-1]["lift"] == pytest.approx(unsplit.row("all")["lift"])


def test_segment_missing_an_arm_gets_nan_and_note():
    log = _micro_log().assign(tier=["a", "b"] * 4)  # every 'a' is control, every 'b' treatment
    with pytest.warns(SmallSampleWarning):
        tab = segment_lift(log, by="tier", n_boot=50, min_users=0, min_nonzero=0).table.set_index("segment")
    assert np.isnan(tab.loc["a", "lift"]) and "no treatment users" in tab.loc["a", "note"]
    assert np.isnan(tab.loc["b", "lift"]) and "no control users" in tab.loc["b", "note"]
    assert not tab.loc["a", "significant"] and np.isfinite(tab.loc["all", "lift"])
    # a missing attribute becomes its own segment
    with pytest.warns(SmallSampleWarning):
        tab = segment_lift(log.assign(tier=["a", None] * 4), by="tier", n_boot=50, min_users=0,
                           min_nonzero=0).table
    assert MISSING in set(tab["segment"])


def test_configurable_thresholds_and_windows(planted_log):
    log = planted_log.iloc[:40_000]
    base = segment_lift(log, n_boot=50).table.set_index("segment")
    n = base["users_control"] + base["users_treatment"]
    low = segment_lift(log, other_threshold=5, n_boot=50)
    assert low.thresholds["other_threshold"] == 5
    m = low.table.set_index("segment")
    m = m["users_control"] + m["users_treatment"]
    other = log["other_ad_actions_60d"]
    moved = int(((other > 5) & (other <= 10)).sum())
    assert moved > 0 and (m[A_OOD] + m[I_OOD]) - (n[A_OOD] + n[I_OOD]) == moved
    # a 30-day home window: more users are home-active, exactly as the column says
    wide = segment_lift(log, home_col="home_ad_actions_30d", other_col="other_ad_actions_90d", n_boot=50)
    w = wide.table.set_index("segment")
    w = w["users_control"] + w["users_treatment"]
    active = int((log["home_ad_actions_30d"] >= 1).sum())
    assert w[A_IN] + w[A_OOD] == active > n[A_IN] + n[A_OOD]
    assert w[A_OOD] + w[I_OOD] == int((log["other_ad_actions_90d"] > 10).sum())
    short = quadrants(log, home_col="home_ad_actions_7d", other_col="other_ad_actions_30d")
    assert short.isin([A_IN, A_OOD]).sum() < n[A_IN] + n[A_OOD]


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("mutate", "kwargs", "match"),
    [
        (lambda d: d.iloc[:0], {}, "empty"),
        (lambda d: d.drop(columns=["gmv"]), {}, "missing column.*gmv"),
        (lambda d: d.drop(columns=["other_ad_actions_60d"]), {}, "missing column.*other_ad_actions_60d"),
        (lambda d: d.assign(arm=["control", "tretment"] * 4), {}, "arm.*'tretment'.*control.*treatment"),
        (lambda d: d.assign(arm=["control", None] * 4), {}, "arm holds a missing arm at row 1"),
        (lambda d: d.assign(arm="control"), {}, "only one arm.*control"),
        (lambda d: d.assign(gmv=[1.0, -2.0] * 4), {}, "gmv.*non-negative.*-2"),
        (lambda d: d.assign(gmv=[1.0, np.nan] * 4), {}, "gmv.*finite"),
        (lambda d: d.assign(gmv=[1.0, np.inf] * 4), {}, "gmv.*finite"),
        (lambda d: d.assign(user_id=[1, 2, 3, 4, 5, 6, 7, 7]), {}, "duplicated user_id 7"),
        (lambda d: d, {"by": "country"}, "country.*not found"),
        (lambda d: d.assign(score=np.linspace(0, 1, 8) ** 2).pipe(lambda x: pd.concat(
            [x] + [x.assign(user_id=x.user_id + 1000 * k, score=x.score + 10 * k) for k in range(1, 4)])),
         {"by": "score"}, "score.*32 distinct values.*bins"),
        (lambda d: d, {"by": "arm", "bins": 3}, "bins.*not numeric"),
        (lambda d: d, {"users": pd.DataFrame({"user_id": [101, 102]})}, "6 of 8 log user.*no row in users"),
        (lambda d: d, {"level": 1.5}, "level"),
        (lambda d: d, {"n_boot": 0}, "n_boot"),
        (lambda d: d, {"metric": "revenue"}, "missing column.*revenue"),
    ],
)
def test_bad_input_raises(mutate, kwargs, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        with pytest.raises(InputError, match=match):
            segment_lift(mutate(_micro_log()), **kwargs)


# ----------------------------------------------------------------------------- the user's own log


@pytest.fixture(scope="module")
def own_users():
    from lee.world.gains_log import generate_gains_log

    # 20,000 users in 8 uniform segments, plus a numeric age; the events are not used here
    return generate_gains_log(n_users=20_000, n_items=20, n_events=10, n_segments=8, seed=0).users


def test_own_log_any_arms_any_metric_and_no_quadrant(own_users, tmp_path):
    from analysis.segments import available_splits
    from lee.errors import LeeWarning
    from lee.world.gains_log import generate_user_ab_log

    log = generate_user_ab_log(own_users, arms=("old", "new"), seed=1)
    res = segment_lift(log, by="segment", metric="revenue", control="old", treatment="new", n_boot=100)
    t = res.table.set_index("segment")
    assert list(t.index) == [f"s0{k}" for k in range(8)] + ["all"]
    sel = (log["segment"].astype(str) == "s02").to_numpy()
    new, old = log.loc[sel & (log["arm"] == "new"), "revenue"], log.loc[sel & (log["arm"] == "old"), "revenue"]
    assert t.loc["s02", "lift"] == pytest.approx(new.mean() / old.mean() - 1, rel=1e-12)
    assert res.summary()["arms"] == {"column": "arm", "control": "old", "treatment": "new"}
    # the default arm names are not in this log: the error names what is there and how to choose
    with pytest.raises(InputError, match="arm holds 'old', 'new'.*no 'control' and no 'treatment'.*--control"):
        segment_lift(log, by="segment", metric="clicks")
    # the quadrant split needs two columns this log lacks: not offered, and the error names them
    splits = available_splits(log, metric="clicks")
    assert not splits["quadrant"] and splits["quadrant_missing"] == ["home_ad_actions_10d", "other_ad_actions_60d"]
    assert "segment" in splits["columns"] and "arm" not in splits["columns"] and "clicks" not in splits["columns"]
    with pytest.raises(InputError, match="missing column 'home_ad_actions_10d'.*quadrant split is not available"):
        segment_lift(log, metric="clicks", control="old", treatment="new")
    # a third arm is left out, with a warning, and counted
    three = log.assign(arm=np.where(np.arange(len(log)) % 10 == 0, "holdout", log["arm"]))
    with pytest.warns(LeeWarning, match="2000 row.*'holdout'.*left out"):
        r3 = segment_lift(three, by="segment", metric="clicks", control="old", treatment="new", n_boot=20)
    assert r3.rows_other_arms == 2000 and r3.summary()["users"] == 18_000
    # any arm column name and user id column name
    renamed = log.rename(columns={"arm": "variant", "user_id": "uid"})
    r4 = segment_lift(renamed, by="segment", metric="revenue", arm_col="variant", user_col="uid", control="old",
                      treatment="new", n_boot=100)
    pd.testing.assert_frame_equal(r4.table, res.table)


@pytest.mark.parametrize(("values", "match"),
                         [(0.0, "gmv is all zero"), (3.0, r"gmv is constant \(every row holds 3.0\)")])
def test_constant_metric_is_an_error_naming_the_column(values, match):
    log = _micro_log().assign(gmv=values, clicks=[1, 2, 3, 4, 5, 6, 7, 8])
    others = "numeric columns: home_ad_actions_10d, other_ad_actions_60d, clicks"
    with pytest.raises(InputError, match=match + ".*" + others):
        segment_lift(log)


def test_small_segments_are_pooled_into_other(own_users):
    from lee.world.gains_log import generate_user_ab_log

    users = own_users.assign(segment=np.where(np.arange(len(own_users)) < 40, "tiny",
                                              np.where(np.arange(len(own_users)) < 100, "small", "big")))
    log = generate_user_ab_log(users, seed=2)
    res = segment_lift(log, by="segment", metric="clicks", n_boot=50)   # default: 30 users per arm
    t = res.table.set_index("segment")
    assert list(t.index) == ["big", OTHER, "all"] and res.pooled == ("small", "tiny")
    assert t.loc[OTHER, "members"] == "small, tiny" and "pooled: small, tiny" in t.loc[OTHER, "note"]
    assert t.loc[OTHER, "users_control"] + t.loc[OTHER, "users_treatment"] == 100
    assert res.summary()["pooled_into_other"] == ["small", "tiny"]
    with pytest.warns(SmallSampleWarning):
        unpooled = segment_lift(log, by="segment", metric="clicks", n_boot=50, min_users=0, min_nonzero=0)
    assert set(unpooled.table["segment"]) == {"big", "small", "tiny", "all"}
    assert unpooled.row("all")["lift"] == res.row("all")["lift"]


def test_multiplicity_columns_holm_and_bh(own_users):
    from analysis.multiplicity import adjust_pvalues
    from lee.world.gains_log import generate_user_ab_log

    log = generate_user_ab_log(own_users, gaining=("s03",), lift=0.15, seed=3)
    res = segment_lift(log, by="segment", metric="clicks", n_boot=400)
    segs = res.table.loc[res.table["segment"] != "all"].set_index("segment")
    np.testing.assert_allclose(segs["p_adjusted"], adjust_pvalues(segs["p_value"], "holm").p_adjusted)
    assert (segs["significant"] == (segs["p_adjusted"] < 0.05)).all()
    m = res.multiplicity
    assert m["family_size"] == 8 and m["method"] == "holm" and m["interval_level"] == pytest.approx(1 - 0.05 / 8)
    # Bonferroni-level percentile intervals contain the unadjusted ones
    assert ((segs["ci_low_adj"] <= segs["ci_low"]) & (segs["ci_high"] <= segs["ci_high_adj"])).all()
    s = res.summary()
    assert s["intervals"]["ci_low/ci_high"].startswith("unadjusted")
    assert "simultaneous" in s["intervals"]["ci_low_adj/ci_high_adj"]
    bh = segment_lift(log, by="segment", metric="clicks", n_boot=400, adjust="bh").table
    bh = bh.loc[bh["segment"] != "all"].set_index("segment")
    np.testing.assert_allclose(bh["p_value"], segs["p_value"])
    np.testing.assert_allclose(bh["p_adjusted"], adjust_pvalues(segs["p_value"], "bh").p_adjusted)


def test_planted_segment_effect_found_and_no_other(own_users):
    from lee.world.gains_log import generate_user_ab_log

    # treatment raises clicks by 15% for segment s03 only; 8 segments of ~2,500 users
    log = generate_user_ab_log(own_users, gaining=("s03",), lift=0.15, seed=3)
    res = segment_lift(log, by="segment", metric="clicks", n_boot=400)
    t = res.table.set_index("segment")
    assert t.loc["s03", "significant"] and t.loc["s03", "p_adjusted"] < 0.05
    assert t.loc["s03", "ci_low_adj"] < 0.15 < t.loc["s03", "ci_high_adj"]
    others = [f"s0{k}" for k in range(8) if k != 3]
    assert not t.loc[others, "significant"].any(), t.loc[others, ["lift", "p_value", "p_adjusted"]]
    assert res.summary()["significant_segments"] == ["s03"]


def test_random_arm_placebo_rarely_flags_a_segment():
    """200 placebo runs (random arms, clicks) over 20 segments: the share of runs with any
    adjusted-significant segment stays near 5%, where unadjusted p < 0.05 flags most runs."""
    from lee.world.gains_log import generate_gains_log, generate_user_ab_log

    users = generate_gains_log(n_users=8_000, n_items=20, n_events=10, n_segments=20, seed=4).users
    runs, hits, raw = 200, 0, 0
    for r in range(runs):
        res = segment_lift(generate_user_ab_log(users, seed=1000 + r), by="segment", metric="clicks", n_boot=10)
        segs = res.table.loc[res.table["segment"] != "all"]
        assert len(segs) == 20
        hits += bool(segs["significant"].any())
        raw += bool((segs["p_value"] < 0.05).any())
    assert hits / runs <= 0.075, hits       # Holm: at most 5% in expectation (Binomial(200, 0.05) sd 1.5%)
    assert raw / runs >= 0.5, raw           # unadjusted: 1 - 0.95^20 = 64%


def test_dashboard_segments_page_reads_the_users_own_log(own_users, tmp_path, monkeypatch):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from lee.world.gains_log import generate_user_ab_log

    log = generate_user_ab_log(own_users, arms=("old", "new"), seed=5)
    log.to_csv(tmp_path / "ab.csv", index=False)
    monkeypatch.setenv("LEE_DASHBOARD_ROOTS", str(tmp_path))   # the sidebar reads only allowed directories
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app" / "dashboard" / "main.py"),
                           default_timeout=180)
    at.run()
    at.text_input(key="src_db").set_value(str(tmp_path / "results.sqlite")).run()
    at.switch_page("pages/segments.py").run()
    at.radio(key="seg_source").set_value("Your own A/B log (a file)").run()
    assert "Upload a log" in at.info[0].value
    at.text_input(key="seg_path").set_value("/etc/passwd").run()     # never opened: outside the allowed roots
    assert "outside the directories this dashboard may read" in at.error[0].value
    at.text_input(key="seg_path").set_value(str(tmp_path / "ab.csv")).run()
    at.selectbox(key="seg_control").set_value("old").run()
    at.selectbox(key="seg_treatment").set_value("new").run()
    at.selectbox(key="seg_metric").set_value("clicks").run()
    at.selectbox(key="seg_own_by").set_value("segment").run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    assert "quadrant split is not offered" in " ".join(c.value for c in at.caption)
    assert QUADRANTS[0] not in at.selectbox(key="seg_own_by").options
    shown = at.dataframe[0].value
    ref = segment_lift(pd.read_csv(tmp_path / "ab.csv"), by="segment", metric="clicks", control="old",
                       treatment="new", n_boot=1000).table
    assert list(shown["segment"]) == list(ref["segment"])
    np.testing.assert_allclose(shown["lift"].to_numpy(), ref["lift"].to_numpy())
    np.testing.assert_allclose(shown["p_adjusted"].to_numpy(), ref["p_adjusted"].to_numpy())
    assert "Holm step-down" in " ".join(c.value for c in at.caption)


def test_cli_segments_on_the_users_own_log(own_users, tmp_path, capsys):
    import json

    from app.cli.main import main
    from lee.world.gains_log import generate_user_ab_log

    log = generate_user_ab_log(own_users, arms=("old", "new"), seed=6).assign(zero=0.0)
    log.to_csv(tmp_path / "ab.csv", index=False)
    capsys.readouterr()
    assert main(["analyze", "segments", "--log", str(tmp_path / "ab.csv"), "--control", "old", "--treatment", "new",
                 "--metric", "clicks", "--by", "segment", "--adjust", "bh", "--boot", "50", "--json",
                 "--out", str(tmp_path / "out")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["segment"] for r in doc["rows"]] == [f"s0{k}" for k in range(8)] + ["all"]
    assert doc["multiplicity"]["method"] == "bh" and doc["multiplicity"]["family_size"] == 8
    assert {"p_value", "p_adjusted", "ci_low_adj", "ci_high_adj"} <= set(doc["rows"][0])
    assert SegmentLift.load(tmp_path / "out").adjust == "bh"
    # no --by: the quadrant split is not offered for this log, and the message names the missing columns
    assert main(["analyze", "segments", "--log", str(tmp_path / "ab.csv"), "--control", "old", "--treatment", "new",
                 "--metric", "clicks"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "quadrant split is not offered" in err and "home_ad_actions_10d, other_ad_actions_60d" in err
    assert "--by COLUMN" in err and "segment" in err
    # an all-zero metric is an error naming the column
    assert main(["analyze", "segments", "--log", str(tmp_path / "ab.csv"), "--control", "old", "--treatment", "new",
                 "--metric", "zero", "--by", "segment"]) == 2
    assert "metric column zero is all zero" in " ".join(capsys.readouterr().err.split())
