"""The planted world: determinism, the structure it plants, its files, and the planted variants."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from lee.errors import ConfigError, InputError
from lee.metrics import roc_auc
from lee.snapshot import SnapshotStore, TableKind
from lee.world.config import AD_SCENARIOS, GROUP_LABELS, SCALES, WorldConfig, config_for_scale
from lee.world.generate import generate_world
from lee.world.io import load_world, save_world
from lee.world.model import EVENT_COLUMNS, ITEM_COLUMNS, USER_COLUMNS
from lee.world.planted import (
    COLLAPSED_RANK,
    GRADED_VARIANTS,
    PLANTED_VARIANTS,
    variant_noise,
    variant_rank,
    write_planted_variants,
)


def _event_affinity(world) -> np.ndarray:
    """True <user latent, item latent> of every event."""
    u_row = pd.Index(world.users["user_id"]).get_indexer(world.events["user_id"])
    i_row = pd.Index(world.items["item_id"]).get_indexer(world.events["item_id"])
    return np.einsum("ij,ij->i", world.user_latent[u_row], world.item_latent[i_row])


# --- determinism and config ------------------------------------------------------------------


def test_same_seed_same_world_and_other_seed_differs():
    a = generate_world(config_for_scale("tiny", seed=3))
    b = generate_world(config_for_scale("tiny", seed=3))
    c = generate_world(config_for_scale("tiny", seed=4))
    pd.testing.assert_frame_equal(a.events, b.events)
    pd.testing.assert_frame_equal(a.users, b.users)
    np.testing.assert_array_equal(a.user_latent, b.user_latent)
    assert not a.events["click"].equals(c.events["click"])


def test_unknown_config_key_is_an_error_that_lists_known_keys():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) n_userz.*n_users"):
        WorldConfig.from_dict({"n_userz": 10})


@pytest.mark.parametrize("bad", [{"n_users": 0}, {"n_groups": len(GROUP_LABELS) + 1}, {"content_share": 1.5},
                                 {"n_advertisers": 2, "n_groups": 5}])
def test_invalid_config_values_are_refused(bad):
    with pytest.raises(ConfigError, match="world config"):
        WorldConfig(**bad)


def test_unknown_scale_is_refused():
    with pytest.raises(ConfigError, match="unknown scale 'huge'"):
        config_for_scale("huge")


def test_large_scale_reaches_ten_million_events_and_a_million_users():
    cfg = config_for_scale("large")
    assert cfg.n_events >= 10_000_000 and cfg.n_users >= 1_000_000
    assert set(SCALES) >= {"tiny", "small", "medium", "large"}


# --- planted structure -----------------------------------------------------------------------


def test_tables_have_their_columns_and_sparse_unique_ids(tiny_world):
    w = tiny_world
    assert set(USER_COLUMNS) <= set(w.users.columns)
    assert set(ITEM_COLUMNS) <= set(w.items.columns)
    assert set(EVENT_COLUMNS) <= set(w.events.columns)
    for frame, col in ((w.users, "user_id"), (w.items, "item_id")):
        ids = frame[col].to_numpy()
        assert frame[col].is_unique
        assert ids.max() - ids.min() + 1 > len(ids)  # sparse: ids are not row numbers
    assert w.events["ts"].is_monotonic_increasing
    cfg = config_for_scale("tiny", seed=7)
    span = w.events["ts"].iloc[-1] - w.events["ts"].iloc[0]
    assert 0.9 * cfg.duration_minutes * 60 <= span < cfg.duration_minutes * 60


def test_users_are_nearest_to_their_planted_group_centroid(tiny_world):
    w = tiny_world
    centroids = np.asarray(w.meta["centroids"])
    d2 = ((w.user_latent[:, None, :] - centroids[None]) ** 2).sum(-1)
    agree = (d2.argmin(1) == w.users["group"].to_numpy()).mean()
    assert agree > 0.95
    labels = w.meta["group_labels"]
    assert (w.users["label"].astype(str).to_numpy() == np.array(labels)[w.users["group"].to_numpy()]).all()


def test_clicks_follow_the_planted_affinity(tiny_world):
    """The true affinity ranks clicks well above chance in both domains: the signal to recover."""
    w = tiny_world
    aff = _event_affinity(w)
    click = w.events["click"].to_numpy()
    for domain in (0, 1):
        m = w.events["domain"].to_numpy() == domain
        assert roc_auc(click[m], aff[m]) > 0.65


def test_ads_scenarios_conversions_and_gmv_are_consistent(tiny_world):
    ev = tiny_world.events
    ads = ev["domain"] == 1
    assert set(ev.loc[ads, "scenario"].astype(str)) == set(AD_SCENARIOS)
    assert set(ev.loc[~ads, "scenario"].astype(str)) == {"content"}
    assert (ev["conversion"] <= ev["click"]).all()          # a conversion needs a click
    assert (ev.loc[~ads, "conversion"] == 0).all()          # content does not convert
    assert ((ev["gmv"] > 0) == (ev["conversion"] == 1)).all()
    ctr_ad = ev.loc[ads, "click"].mean()
    assert 0.02 < ctr_ad < 0.4
    items = tiny_world.items
    assert (items.loc[items["domain"] == 1, "advertiser_id"] >= 0).all()
    assert (items.loc[items["domain"] == 1, "price"] > 0).all()


def test_segment_attributes_grow_with_activity(tiny_world):
    u = tiny_world.users
    assert (u["home_ad_actions_10d"] >= 0).all() and (u["other_ad_actions_60d"] >= 0).all()
    by_level = u.groupby("activity_level", observed=True)["other_ad_actions_60d"].mean()
    assert by_level["low"] < by_level["high"]
    events_per_user = tiny_world.events["user_id"].value_counts()
    lvl = u.set_index("user_id")["activity_level"]
    counts = events_per_user.reindex(lvl.index, fill_value=0)
    assert counts[lvl == "high"].mean() > 3 * counts[lvl == "low"].mean()


# --- files -------------------------------------------------------------------------------------


def test_save_and_load_round_trip(tiny_world, tmp_path):
    path = save_world(tiny_world, tmp_path / "w")
    back = load_world(path)
    pd.testing.assert_frame_equal(back.events, tiny_world.events, check_categorical=False)
    pd.testing.assert_frame_equal(back.users[list(USER_COLUMNS)], tiny_world.users[list(USER_COLUMNS)],
                                  check_categorical=False)
    np.testing.assert_array_equal(back.item_latent, tiny_world.item_latent)
    assert back.meta["config"]["seed"] == 7


def test_save_refuses_non_empty_directory(tiny_world, tmp_path):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        save_world(tiny_world, tmp_path / "w")
    assert (tmp_path / "w" / "keep.txt").exists()


@pytest.fixture
def world_dir(tiny_world, tmp_path):
    return save_world(tiny_world, tmp_path / "w")


def _rewrite_events(world_dir, fn):
    ev = pd.read_parquet(world_dir / "events.parquet")
    fn(ev).to_parquet(world_dir / "events.parquet", index=False)


@pytest.mark.parametrize(
    "damage, pattern",
    [
        (lambda d: (d / "events.parquet").unlink(), r"events\.parquet: file is missing"),
        (lambda d: (d / "world.json").unlink(), r"world\.json: file is missing"),
        (lambda d: (d / "users.parquet").write_bytes(b"not parquet"), r"users\.parquet: not a readable Parquet"),
        (lambda d: _rewrite_events(d, lambda e: e.drop(columns=["click"])), r"missing column\(s\) click"),
        (lambda d: _rewrite_events(d, lambda e: e.iloc[::-1]), r"column ts must be sorted"),
        (lambda d: _rewrite_events(d, lambda e: e.assign(click=e["click"] * 2)), r"click must hold only 0 and 1"),
        (lambda d: _rewrite_events(d, lambda e: e.assign(user_id=e["user_id"] + 1)), r"user_id has id .* not in users"),
        (lambda d: _rewrite_events(d, lambda e: e.iloc[:0]), r"event stream is empty"),
    ],
    ids=["no-events", "no-meta", "bad-parquet", "no-column", "unsorted", "non-binary", "unknown-user", "empty"],
)
def test_load_world_names_the_file_and_problem(world_dir, damage, pattern):
    damage(world_dir)
    with pytest.raises(InputError, match=pattern):
        load_world(world_dir)


def test_load_world_on_a_missing_directory(tmp_path):
    with pytest.raises(InputError, match="not a world directory"):
        load_world(tmp_path / "nope")


# --- planted variants --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    world = generate_world(config_for_scale("tiny", seed=11))
    root = tmp_path_factory.mktemp("planted")
    paths = write_planted_variants(world, root, dim=32, n_snapshots=3, seed=1)
    return world, SnapshotStore(root), paths


def _corr_with_oracle(store, variant, kind=TableKind.UR) -> float:
    """Mean per-dim correlation between a variant's first snapshot and the oracle's, aligned by id."""
    t0 = store.times(variant)[0]
    a = store.open("oracle", t0).load(kind)
    b = store.open(variant, t0).load(kind)
    rows = pd.Index(b.ids).get_indexer(a.ids)
    x, y = a.vectors.astype(np.float64), b.vectors[rows].astype(np.float64)
    x, y = x - x.mean(0), y - y.mean(0)
    return float(((x * y).sum(0) / np.sqrt((x**2).sum(0) * (y**2).sum(0))).mean())


def test_every_variant_has_three_snapshots_five_minutes_apart(planted):
    world, store, paths = planted
    assert store.variants() == sorted(PLANTED_VARIANTS)
    for v in PLANTED_VARIANTS:
        times = store.times(v)
        assert len(times) == 3
        assert all(b - a == timedelta(minutes=5) for a, b in zip(times, times[1:]))
        assert times[-1].timestamp() >= world.end_ts  # the last snapshot covers the whole stream


def test_oracle_inner_products_are_the_true_affinities(planted):
    world, store, _ = planted
    snap = store.open("oracle", store.times("oracle")[0])
    ur, ir = snap.load("UR"), snap.load("IR")
    np.testing.assert_array_equal(ur.ids, world.users["user_id"].to_numpy())
    got = ur.vectors[:5].astype(np.float64) @ ir.vectors[:7].astype(np.float64).T
    want = world.user_latent[:5].astype(np.float64) @ world.item_latent[:7].astype(np.float64).T
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_quality_order_is_planted(planted):
    _, store, _ = planted
    for kind in (TableKind.UR, TableKind.CR_USER):
        c = {v: _corr_with_oracle(store, v, kind)
             for v in ("oracle", "noise_low", "noise_high", "random", "id_shuffled")}
        assert c["oracle"] == pytest.approx(1.0)
        assert c["oracle"] > c["noise_low"] > c["noise_high"] > c["random"]
        assert abs(c["random"]) < 0.1 and abs(c["id_shuffled"]) < 0.1
        assert c["noise_low"] == pytest.approx(1 / np.sqrt(1 + 0.5**2), abs=0.05)  # noise std 0.5x the signal's


def test_id_shuffled_holds_the_oracle_vectors_under_other_ids(planted):
    _, store, _ = planted
    t0 = store.times("oracle")[0]
    a, b = store.open("oracle", t0).load("UR"), store.open("id_shuffled", t0).load("UR")
    np.testing.assert_array_equal(np.sort(a.ids), np.sort(b.ids))
    key = lambda m: np.lexsort(m.T)  # noqa: E731 - same rows, any order
    np.testing.assert_array_equal(a.vectors[key(a.vectors)], b.vectors[key(b.vectors)])


def test_rank_collapsed_spans_two_dimensions(planted):
    _, store, _ = planted
    vec = store.open("rank_collapsed", store.times("rank_collapsed")[0]).load("UR").vectors.astype(np.float64)
    s = np.linalg.svd(vec - vec.mean(0), compute_uv=False)
    assert s[COLLAPSED_RANK] / s[0] < 1e-5
    s_oracle = np.linalg.svd(store.open("oracle", store.times("oracle")[0]).load("UR").vectors, compute_uv=False)
    assert s_oracle[COLLAPSED_RANK] / s_oracle[0] > 0.1


def test_active_ids_drift_more_between_snapshots(planted):
    world, store, _ = planted
    t = store.times("oracle")
    a, b = store.open("oracle", t[0]).load("UR"), store.open("oracle", t[2]).load("UR")
    cos = (a.vectors * b.vectors).sum(1) / np.linalg.norm(a.vectors, axis=1) / np.linalg.norm(b.vectors, axis=1)
    counts = world.events["user_id"].value_counts().reindex(a.ids, fill_value=0).to_numpy()
    top, bottom = counts >= np.quantile(counts, 0.8), counts <= np.quantile(counts, 0.2)
    assert cos[top].mean() < cos[bottom].mean() < 1.0


def test_planted_variants_need_true_latents(tiny_world, tmp_path):
    from dataclasses import replace

    with pytest.raises(InputError, match="true latents"):
        write_planted_variants(replace(tiny_world, user_latent=None), tmp_path)


# --- the balanced click model and the graded variants -------------------------------------------


def _latent_spectrum(world) -> np.ndarray:
    """Eigenvalues of the users' latent covariance, largest first."""
    return np.linalg.eigvalsh(np.cov(world.user_latent.astype(np.float64), rowvar=False))[::-1]


def test_balanced_world_weighs_every_latent_direction_alike():
    """Legacy: the group centroids dominate a few directions. Balanced: every direction of the latent
    space carries about the same variance (so no low-rank projection is free), the users still sit
    nearest their own group's centroid, and clicks rise with the affinity and with activity."""
    over = dict(n_users=20_000, n_events=60_000)
    legacy = _latent_spectrum(generate_world(config_for_scale("tiny", seed=5, **over)))
    world = generate_world(config_for_scale("tiny", seed=5, click_model="balanced", **over))
    balanced = _latent_spectrum(world)
    share = lambda e, k: e[:k].sum() / e.sum()  # noqa: E731 - variance share of the top-k directions
    # 16 dims, 6 groups: legacy puts ~40% of the variance in 2 directions and ~80% in 8; balanced
    # ~2/16 and ~8/16 (a little more, the groups being of unequal size)
    assert share(legacy, 2) > 0.35 and share(legacy, 8) > 0.75
    assert share(balanced, 2) < 0.2 and share(balanced, 8) < 0.6, balanced
    centroids = np.asarray(world.meta["centroids"])
    d2 = ((world.user_latent[:, None, :] - centroids[None]) ** 2).sum(-1)
    assert (d2.argmin(1) == world.users["group"].to_numpy()).mean() > 0.95
    ev = world.events
    aff = _event_affinity(world)
    assert roc_auc(ev["click"].to_numpy(), aff) > 0.7
    act = world.users.set_index("user_id")["activity"].reindex(ev["user_id"]).to_numpy()
    hi, lo = act > np.quantile(act, 0.8), act < np.quantile(act, 0.2)
    assert ev["click"].to_numpy()[hi].mean() > ev["click"].to_numpy()[lo].mean()
    assert WorldConfig().click_model == "legacy" and WorldConfig().activity_logit == 0.0
    assert WorldConfig(click_model="balanced").activity_logit == 0.2


def test_balanced_world_needs_room_for_its_simplex():
    with pytest.raises(ConfigError, match="latent_dim"):
        config_for_scale("tiny", click_model="balanced", latent_dim=4)
    with pytest.raises(ConfigError, match="click_model"):
        config_for_scale("tiny", click_model="flat", source="--set")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    world = generate_world(config_for_scale("tiny", seed=13, click_model="balanced"))
    root = tmp_path_factory.mktemp("graded")
    write_planted_variants(world, root, dim=32, n_snapshots=1, seed=2, variants=("oracle", *GRADED_VARIANTS))
    return world, SnapshotStore(root)


def test_rank_k_variants_keep_the_affinity_in_proportion(graded):
    """rank_k spans k dims; its <UR, IR> explains more of the true affinity as k grows."""
    world, store = graded
    aff = world.user_latent.astype(np.float64) @ world.item_latent.astype(np.float64).T
    corr = {}
    for v in ("rank_2", "rank_4", "rank_8", "oracle"):
        snap = store.latest(v)
        ur, ir = snap.load("UR").vectors.astype(np.float64), snap.load("IR").vectors.astype(np.float64)
        if v != "oracle":
            s = np.linalg.svd(ur - ur.mean(0), compute_uv=False)
            assert s[variant_rank(v)] / s[0] < 1e-5 < s[variant_rank(v) - 1] / s[0]
        corr[v] = np.corrcoef((ur @ ir.T).ravel(), aff.ravel())[0, 1]
    assert corr["rank_2"] < corr["rank_4"] < corr["rank_8"] < corr["oracle"] == pytest.approx(1.0)
    assert corr["rank_8"] < 0.9  # half the directions gone costs real signal


def test_graded_noise_levels(graded):
    _, store = graded
    t = store.times("oracle")[0]
    a = store.open("oracle", t).load("UR").vectors.astype(np.float64)
    for level in (0.25, 0.5, 1.0, 2.0):
        name = f"noise_{level:g}"
        assert variant_noise(name) == level
        b = store.open(name, t).load("UR").vectors.astype(np.float64)
        x, y = a - a.mean(0), b - b.mean(0)
        c = ((x * y).sum(0) / np.sqrt((x**2).sum(0) * (y**2).sum(0))).mean()
        assert c == pytest.approx(1 / np.sqrt(1 + level**2), abs=0.05)
    assert variant_noise("noise_low") == 0.5 and variant_noise("noise_high") == 2.0
    assert variant_rank("rank_collapsed") == COLLAPSED_RANK and variant_rank("oracle") is None


def test_unknown_variant_names_are_refused_before_writing(tiny_world, tmp_path):
    with pytest.raises(InputError, match=r"unknown planted variant\(s\) noise_0, rank_x"):
        write_planted_variants(tiny_world, tmp_path, variants=("oracle", "rank_x", "noise_0"))
    assert not any(tmp_path.iterdir())
