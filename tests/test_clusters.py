"""Clusters analysis: exact K-means, planted-group recovery, labels, CTR intervals, 2-D maps, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score, silhouette_score
from sklearn.neighbors import NearestNeighbors

from analysis.clusters import (
    choose_k,
    cluster_snapshot,
    kmeans,
    ratio_interval,
    sample_rows,
    top_behaviour_labels,
)
from analysis.maps import embed_2d, stratified_sample
from lee.errors import FewerClustersWarning, InputError, SmallSampleWarning
from lee.snapshot import EmbeddingTable, Snapshot, TableKind, write_snapshot
from lee.world.planted import write_planted_variants

BACKENDS = ["numpy", "faiss", "torch", "sklearn"]


def _blobs(n_per: int, centers: int, dim: int, *, spread: float = 10.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    c = spread * rng.standard_normal((centers, dim))
    lab = np.repeat(np.arange(centers), n_per)
    return (c[lab] + rng.standard_normal((lab.size, dim))).astype(np.float32), lab


def _write_ur(root, ids, vectors, variant="sim"):
    return write_snapshot(root, variant, 1_767_225_600, {TableKind.UR: EmbeddingTable(
        ids=np.asarray(ids, np.int64), vectors=np.asarray(vectors, np.float32))})


@pytest.fixture(scope="module")
def planted(tiny_world, tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    paths = write_planted_variants(tiny_world, root, variants=["oracle", "random"], n_snapshots=1)
    return {name: p[0] for name, p in paths.items()}


# --------------------------------------------------------------------------- K-means


@pytest.mark.parametrize("backend", BACKENDS)
def test_kmeans_exact_micro_case(backend):
    # Three separated groups with integer means; inertia by hand: 4*2 + 4*1 + 2*1 = 14.
    a = [(0, 0), (0, 2), (2, 0), (2, 2)]          # mean (1, 1), each point at squared distance 2
    b = [(19, 0), (21, 0), (20, 1), (20, -1)]     # mean (20, 0), squared distance 1
    c = [(0, 29), (0, 31)]                         # mean (0, 30), squared distance 1
    x = np.array(a + b + c, np.float32)
    truth = np.repeat([0, 1, 2], [4, 4, 2])
    fit = kmeans(x, 3, backend=backend, seed=0)
    assert fit.backend == backend and fit.n_distinct == 3
    assert adjusted_rand_score(truth, fit.labels) == 1.0
    assert fit.inertia == pytest.approx(14.0, rel=1e-6)
    got = sorted(map(tuple, np.round(fit.centroids, 4).tolist()))
    assert got == [(0.0, 30.0), (1.0, 1.0), (20.0, 0.0)]
    assert fit.labels.dtype == np.int64 and fit.centroids.dtype == np.float32


@pytest.mark.parametrize("backend", ["numpy", "faiss", "torch"])
def test_lloyd_backends_and_sklearn_agree_on_planted_users(tiny_world, backend):
    x = tiny_world.user_latent
    k = int(tiny_world.users["group"].nunique())
    f = kmeans(x, k, backend=backend, seed=0, n_init=10)
    s = kmeans(x, k, backend="sklearn", seed=0, n_init=10)
    assert adjusted_rand_score(f.labels, s.labels) >= 0.95
    assert f.inertia == pytest.approx(s.inertia, rel=0.01)


def test_planted_world_recovers_groups_and_labels(tiny_world, planted):
    users = tiny_world.users.set_index("user_id")
    k = int(users["group"].nunique())
    truth, labels = users["group"], users["label"]
    oracle = cluster_snapshot(planted["oracle"], "UR", k=k, events=tiny_world.events, labels=labels,
                              truth=truth, n_init=10)
    random = cluster_snapshot(planted["random"], "UR", k=k, events=tiny_world.events, labels=labels,
                              truth=truth, n_init=10)
    assert oracle.ari >= 0.8
    assert abs(random.ari) < 0.05
    assert oracle.silhouette > random.silhouette + 0.1
    # The planted label is the group, so every oracle cluster is nearly pure; random ones are mixed.
    assert (oracle.table["top1_share"] > 0.8).all()
    assert random.table["top1_share"].max() < 0.6
    assert oracle.table["size"].sum() == oracle.n_ids == len(users)
    assert set(oracle.table["top1_label"]) == set(labels.astype(str))  # one cluster per group


def test_item_table_labelled_by_category(tiny_world, planted):
    items = tiny_world.items.set_index("item_id")
    k = int(items["category"].nunique())
    res = cluster_snapshot(planted["oracle"], TableKind.IR, k=k, events=tiny_world.events,
                           items=tiny_world.items, truth=items["category"], n_init=10)
    assert res.kind is TableKind.IR and res.ari >= 0.8
    assert (res.table["top1_share"] > 0.8).all()


def test_top_behaviour_labels_by_clicks_then_exposures():
    items = pd.DataFrame({"item_id": [10, 11, 12], "category": ["pets", "books", "books"]})
    events = pd.DataFrame({
        "user_id": [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3],
        "item_id": [10, 10, 11, 12, 11, 12, 11, 10, 10, 11, 99],  # 99: not in items, ignored
        "click":   [1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1],
    })
    out = top_behaviour_labels(events, items).set_index("user_id")
    assert out.loc[1, "label"] == "pets" and out.loc[1, "share"] == pytest.approx(2 / 3)
    assert out.loc[1, "basis"] == "clicks"
    assert out.loc[2, "label"] == "books" and out.loc[2, "share"] == pytest.approx(0.75)
    assert out.loc[2, "basis"] == "exposures"
    assert out.loc[3, "label"] == "books" and out.loc[3, "share"] == pytest.approx(0.5)  # tie: sorted first


# --------------------------------------------------------------------------- CTR intervals


def _simulated_log(true_ctr, n_ids: int, seed: int):
    """Ids in separated blobs, one per cluster; each id has its own CTR ~ Beta around its cluster's
    (so its events are correlated) and a heavy-tailed number of ad exposures; content events with
    a very different CTR must be ignored."""
    rng = np.random.default_rng(seed)
    k = len(true_ctr)
    vectors, cluster = _blobs(n_ids, k, 8, seed=seed)
    ids = 1000 + 7 * np.arange(cluster.size)
    mean = np.asarray(true_ctr)[cluster]
    conc = 5.0
    p = rng.beta(mean * conc, (1 - mean) * conc)
    expo = rng.geometric(1 / 40, size=cluster.size)
    user = np.repeat(ids, expo)
    click = (rng.random(user.size) < np.repeat(p, expo)).astype(np.int8)
    content_users = rng.choice(ids, size=5000)
    events = pd.DataFrame({
        "user_id": np.r_[user, content_users],
        "item_id": 0,
        "domain": np.r_[np.ones(user.size, np.int8), np.zeros(content_users.size, np.int8)],
        "click": np.r_[click, (rng.random(content_users.size) < 0.5).astype(np.int8)],
    })
    return ids, vectors, cluster, events


def test_ratio_interval_is_calibrated_under_per_id_correlation():
    # 400 independent replicates of one 300-id cluster (true CTR 0.05, per-id CTRs overdispersed):
    # the id-robust interval covers ~95%; a naive binomial one, treating events as independent, ~50%.
    rng = np.random.default_rng(3)
    reps, n_ids, true = 400, 300, 0.05
    group = np.repeat(np.arange(reps), n_ids)
    p = rng.beta(true * 10.0, (1 - true) * 10.0, size=group.size)
    expo = rng.geometric(1 / 50, size=group.size).astype(np.float64)
    clicks = rng.binomial(expo.astype(np.int64), p).astype(np.float64)
    out = ratio_interval(clicks, expo, group, reps, level=0.95)
    covered = ((out["ctr_low"] <= true) & (true <= out["ctr_high"])).mean()
    assert 0.92 <= covered <= 0.98
    naive_se = np.sqrt(out["ctr"] * (1 - out["ctr"]) / out["exposures"])
    naive = ((out["ctr"] - 1.96 * naive_se <= true) & (true <= out["ctr"] + 1.96 * naive_se)).mean()
    assert naive < 0.7
    # No click: the lower bound is 0 and the upper one undefined.
    zero = ratio_interval(np.zeros(3), np.ones(3), np.zeros(3, np.int64), 1)
    assert zero.loc[0, "ctr_low"] == 0.0 and np.isnan(zero.loc[0, "ctr_high"])


def test_cluster_ctr_intervals_and_flags(tmp_path):
    true_ctr = [0.03, 0.06, 0.06, 0.10]
    ids, vectors, cluster, events = _simulated_log(true_ctr, 250, seed=1)
    snap = _write_ur(tmp_path, ids, vectors)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # enough clicks everywhere: no SmallSampleWarning
        res = cluster_snapshot(snap, "UR", k=4, events=events, truth=pd.Series(cluster, index=ids))
    assert res.ari == 1.0
    # Map each found cluster to its planted one (ARI 1: a bijection).
    planted_of = pd.Series(cluster, index=ids).reindex(res.ids).to_numpy()
    t = res.table.set_index("cluster")
    t["planted"] = [planted_of[res.assignment == c][0] for c in t.index]
    t["true"] = np.asarray(true_ctr)[t["planted"]]
    assert ((t["ctr_low"] <= t["true"]) & (t["true"] <= t["ctr_high"])).all()
    expected_flag = {0: "below", 1: "", 2: "", 3: "above"}
    assert t["flag"].tolist() == [expected_flag[g] for g in t["planted"]]
    # Point CTR equals a pandas groupby over ad events only.
    ads = events[events["domain"] == 1]
    by = ads.assign(c=pd.Series(res.assignment, index=res.ids).reindex(ads["user_id"]).to_numpy())
    g = by.groupby("c")["click"].agg(["sum", "size"])
    np.testing.assert_allclose(t["ctr"], (g["sum"] / g["size"]).reindex(t.index), rtol=1e-12)
    assert t["exposures"].tolist() == g["size"].reindex(t.index).tolist()
    assert res.overall_ctr == pytest.approx(ads["click"].mean(), rel=1e-12)
    assert res.n_ids_with_events == len(ids)


def test_small_clusters_warn(tmp_path):
    ids, vectors, _, events = _simulated_log([0.002, 0.2], 30, seed=2)
    snap = _write_ur(tmp_path, ids, vectors)
    with pytest.warns(SmallSampleWarning, match="fewer than 10 clicks"):
        cluster_snapshot(snap, "UR", k=2, events=events)


# --------------------------------------------------------------------------- silhouette and k


def test_silhouette_equals_sklearn_on_the_stated_sample(tiny_world, planted):
    res = cluster_snapshot(planted["oracle"], "UR", k=6, events=tiny_world.events, silhouette_sample=150, seed=4)
    assert res.silhouette_sample == 150
    x = Snapshot.open(planted["oracle"]).load("UR").vectors
    rows = sample_rows(len(x), 150, seed=4)
    assert res.silhouette == pytest.approx(silhouette_score(x[rows], res.assignment[rows]), abs=1e-9)
    assert res.silhouette != pytest.approx(silhouette_score(x, res.assignment), abs=1e-6)


def test_choose_k_peaks_at_planted_k():
    x, _ = _blobs(80, 5, 12, spread=6.0, seed=5)
    table = choose_k(x, range(2, 9), seed=0, sample=300)
    assert table["k"].tolist() == list(range(2, 9))
    assert int(table.loc[table["silhouette"].idxmax(), "k"]) == 5
    assert (np.diff(table["inertia"]) < 0).all()


# --------------------------------------------------------------------------- maps


def test_map_shapes_and_stated_sample():
    x, lab = _blobs(500, 4, 16, seed=6)
    m = embed_2d(x, "pca", sample=300, strata=lab, seed=1)
    assert m.xy.shape == (300, 2) and m.xy.dtype == np.float32
    assert m.sample_size == 300 and m.n_total == 2000 and m.method == "pca"
    assert np.all(np.diff(m.rows) > 0) and m.rows.max() < 2000
    np.testing.assert_array_equal(m.strata, lab[m.rows])
    full = embed_2d(x[:100], "pca", sample=300)
    assert full.sample_size == 100 and np.array_equal(full.rows, np.arange(100))


def test_stratified_sample_is_proportional_with_a_floor():
    strata = np.repeat(["a", "b", "c", "d"], [7979, 1523, 489, 9])
    rows = stratified_sample(strata.size, 1000, strata, seed=0)
    counts = pd.Series(strata[rows]).value_counts()
    assert rows.size == 1000 and len(np.unique(rows)) == 1000
    assert counts["d"] == 5  # floor for a stratum whose proportional share is 0.9 points
    for s, n in (("a", 7979), ("b", 1523), ("c", 489)):
        assert abs(counts[s] - 995 * n / 9991) <= 1.0
    again = stratified_sample(strata.size, 1000, strata, seed=0)
    assert np.array_equal(rows, again)


def test_pca_map_equals_sklearn_up_to_sign():
    x, _ = _blobs(100, 3, 10, seed=7)
    xy = embed_2d(x, "pca").xy
    ref = PCA(n_components=2).fit_transform(x.astype(np.float64))
    for j in range(2):
        sign = np.sign(xy[:, j] @ ref[:, j])
        np.testing.assert_allclose(sign * xy[:, j], ref[:, j], rtol=1e-4, atol=1e-3)


def _knn_agreement(xy: np.ndarray, lab: np.ndarray, k: int = 10) -> float:
    nn = NearestNeighbors(n_neighbors=k + 1).fit(xy)
    idx = nn.kneighbors(xy, return_distance=False)[:, 1:]
    return float((lab[idx] == lab[:, None]).mean())


def test_tsne_map_keeps_blobs_apart():
    x, lab = _blobs(100, 4, 20, seed=8)
    m = embed_2d(x, "tsne", sample=300, strata=lab, seed=0)
    assert m.xy.shape == (300, 2) and m.method == "tsne"
    assert _knn_agreement(m.xy, lab[m.rows]) >= 0.9


@pytest.mark.slow
def test_umap_map_keeps_blobs_apart():  # ~12 s: umap's import and numba compilation
    x, lab = _blobs(50, 3, 10, seed=9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap/numba chatter about tiny graphs
        m = embed_2d(x, "umap", seed=0)
    assert m.xy.shape == (150, 2) and m.method == "umap"
    assert _knn_agreement(m.xy, lab[m.rows]) >= 0.9


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("call, pattern", [
    (lambda x: kmeans(x, 1), "single cluster"),
    (lambda x: kmeans(x[:3], 8), "n_samples=3 should be >= n_clusters=8"),
    (lambda x: kmeans(np.where(np.arange(20)[:, None] == 4, np.nan, x), 2), "row 4 holds NaN"),
    (lambda x: kmeans(x, 2, backend="cuml"), "unknown K-means backend 'cuml'.*auto, numpy, faiss, torch, sklearn"),
    (lambda x: kmeans(x, 2, backend="numpy", device="cuda"), "--device cuda needs the torch K-means backend"),
    (lambda x: kmeans(x, 2, tol=1.5), "tol must be a relative change"),
    (lambda x: kmeans(x, 2, sample=1), "sample must be an integer of at least k=2"),
    (lambda x: embed_2d(x, "mds"), "unknown map method 'mds'.*pca, tsne, umap"),
    (lambda x: choose_k(x, []), "ks is empty"),
])
def test_bad_arrays_are_refused(call, pattern):
    x = np.random.default_rng(0).standard_normal((20, 3)).astype(np.float32)
    with pytest.raises(InputError, match=pattern):
        call(x)


def test_bad_logs_are_refused(tmp_path):
    ids, vectors, _, events = _simulated_log([0.05, 0.05], 20, seed=0)
    snap = _write_ur(tmp_path, ids, vectors)
    with pytest.raises(InputError, match="events: holds 0 row"):
        cluster_snapshot(snap, "UR", k=2, events=events.iloc[:0])
    with pytest.raises(InputError, match="events: missing column.*click"):
        cluster_snapshot(snap, "UR", k=2, events=events.drop(columns="click"))
    with pytest.raises(InputError, match="events: missing column.*item_id"):  # labels derived from items
        cluster_snapshot(snap, "UR", k=2, events=events.drop(columns="item_id"),
                         items=pd.DataFrame({"item_id": [0], "category": ["pets"]}))
    other = events.assign(user_id=events["user_id"] + 1)  # ids shifted: none matches
    with pytest.raises(InputError, match=r"no id of snapshot .*sim.* \(UR, 40 user ids, e\.g\. 1000"
                                         r".*events\.user_id \(e\.g\. 1001"):
        cluster_snapshot(snap, "UR", k=2, events=other)
    with pytest.raises(InputError, match="no row has domain == 1"):
        cluster_snapshot(snap, "UR", k=2, events=events.assign(domain=0))
    with pytest.raises(InputError, match="truth: none of its ids"):
        cluster_snapshot(snap, "UR", k=2, events=events, truth=pd.Series([1, 2], index=[5, 6]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_duplicated_points_warn_fewer_clusters(backend):
    x = np.repeat(np.array([[0, 0], [5, 5], [10, 0]], np.float32), 4, axis=0)
    with pytest.warns(FewerClustersWarning, match="only 3 non-empty clusters of the k=5.*3 distinct vectors"):
        fit = kmeans(x, 5, backend=backend)
    assert fit.n_distinct == 3 and fit.inertia == pytest.approx(0.0, abs=1e-3)  # faiss splits nudge centroids


# --------------------------------------------------------------------------- the sampled Lloyd


def _overlapping_blobs(n: int, k: int, dim: int, seed: int) -> np.ndarray:
    """Blobs close enough to overlap, so inertia depends on where the centroids settle."""
    rng = np.random.default_rng(seed)
    centres = 1.5 * rng.standard_normal((k, dim)).astype(np.float32)
    return centres[rng.integers(0, k, n)] + rng.standard_normal((n, dim), dtype=np.float32)


@pytest.mark.parametrize("backend", ["numpy", "faiss", "torch"])
def test_sampled_lloyd_reaches_sklearn_inertia_within_one_percent(backend):
    # sample < n: seeding and restarts on 4,000 rows, refinement on all 40,000
    x = _overlapping_blobs(40_000, 12, 16, seed=3)
    ours = kmeans(x, 12, backend=backend, seed=0, n_init=3, sample=4_000)
    ref = kmeans(x, 12, backend="sklearn", seed=0, n_init=1)
    assert ours.info["sample"] == 4_000 and ours.info["iterations_full"] >= 2
    assert ours.inertia <= ref.inertia * 1.01
    # labels are the nearest centroid of the returned centroids, and the inertia is theirs
    d = ((x[:, None, :].astype(np.float64) - ours.centroids[None].astype(np.float64)) ** 2).sum(-1)
    assert (d[np.arange(x.shape[0]), ours.labels] <= d.min(axis=1) + 1e-3).all()
    assert ours.inertia == pytest.approx(float(d.min(axis=1).sum()), rel=1e-5)


def test_engines_and_thread_counts_give_the_same_fit():
    x = _overlapping_blobs(30_000, 8, 12, seed=5)
    fits = [kmeans(x, 8, backend=b, seed=1, sample=5_000, threads=t)
            for b, t in [("numpy", 1), ("numpy", 2), ("faiss", 2), ("torch", 2)]]
    for f in fits[1:]:
        assert adjusted_rand_score(fits[0].labels, f.labels) > 0.999
        assert f.inertia == pytest.approx(fits[0].inertia, rel=1e-5)


def test_converged_lloyd_is_a_fixed_point():
    # at convergence (tol 0: until the inertia stops falling) every centroid is its cluster's mean
    x = _overlapping_blobs(20_000, 6, 8, seed=7)
    fit = kmeans(x, 6, backend="numpy", seed=0, sample=2_000, tol=0.0)
    assert fit.info["converged"]
    for j in range(6):
        np.testing.assert_allclose(fit.centroids[j], x[fit.labels == j].mean(axis=0), atol=1e-3)


def test_an_emptied_cluster_moves_to_the_farthest_row():
    from analysis.lloyd import _Pass, _update

    x = np.array([[0, 0], [1, 0], [9, 9]], np.float32)
    p = _Pass(labels=np.zeros(3, np.int64), sums=np.array([[10.0, 9.0], [0.0, 0.0]]),
              counts=np.array([3, 0]), inertia=0.0, far_rows=np.array([2]), far_dist=np.array([100.0]))
    new = _update(p, np.zeros((2, 2), np.float32), x)
    np.testing.assert_allclose(new, [[10 / 3, 3.0], [9.0, 9.0]], rtol=1e-6)


def test_device_cuda_picks_torch_and_without_a_gpu_says_so(monkeypatch):
    import torch

    from analysis.clusters import resolve_backend
    from lee.errors import DeviceError

    assert resolve_backend("auto", "cuda") == "torch" and resolve_backend("auto") == "numpy"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    x = _overlapping_blobs(3_000, 3, 4, seed=0)
    with pytest.raises(DeviceError, match="--device cuda was asked for but torch sees no CUDA GPU"):
        kmeans(x, 3, device="cuda", sample=500)


# --------------------------------------------------------------------------- maps of every row


def test_pca_map_places_the_rest_on_the_sample_axes():
    x, lab = _blobs(400, 3, 8, seed=2)
    fit_only = embed_2d(x, "pca", sample=300, strata=lab, seed=4, knn_queries=0)
    m = embed_2d(x, "pca", sample=300, strata=lab, seed=4, place_rest=True, knn_queries=0)
    assert m.sample_size == 300 and m.n_placed == 900 and m.xy.shape == (1200, 2)
    np.testing.assert_array_equal(m.rows, np.arange(1200))
    np.testing.assert_array_equal(np.flatnonzero(m.fitted), fit_only.rows)
    np.testing.assert_allclose(m.xy[m.fitted], fit_only.xy, rtol=1e-6)
    # the placed rows: the sample's principal axes (scikit-learn's PCA on the same rows, signs aside)
    pca = PCA(n_components=2, svd_solver="full").fit(x[fit_only.rows].astype(np.float64))
    ref = pca.transform(x[~m.fitted].astype(np.float64))
    got = m.xy[~m.fitted].astype(np.float64)
    for j in range(2):
        assert abs(np.corrcoef(ref[:, j], got[:, j])[0, 1]) > 0.99999


def test_tsne_places_new_rows_with_their_neighbours_and_reports_preservation():
    x, lab = _blobs(1_000, 4, 16, seed=8)
    m = embed_2d(x, "tsne", sample=800, strata=lab, seed=0, place_rest=True, knn_queries=500)
    assert m.sample_size == 800 and m.n_placed == 3_200 and m.knn_queries == 500
    placed = ~m.fitted
    # a placed row lands among rows of its own blob
    nn = NearestNeighbors(n_neighbors=6).fit(m.xy[m.fitted])
    idx = nn.kneighbors(m.xy[placed], return_distance=False)
    fitted_lab = lab[m.rows[m.fitted]]
    assert (fitted_lab[idx] == lab[m.rows[placed]][:, None]).mean() >= 0.95
    assert 0.0 < m.knn_fitted <= 1.0 and 0.0 < m.knn_all <= 1.0
    assert "3,200 more placed" in m.caption() and "on 500 query rows" in m.caption()


def test_neighbour_preservation_closed_forms():
    from analysis.maps import neighbour_preservation

    rng = np.random.default_rng(0)
    xy = rng.standard_normal((3_000, 2)).astype(np.float32)
    lifted = np.hstack([xy, np.zeros((3_000, 5), np.float32)])  # the same points in 7-D: same neighbours
    share, used = neighbour_preservation(lifted, xy, queries=400, seed=1)
    assert share == 1.0 and used == 400
    noise = rng.standard_normal((3_000, 2)).astype(np.float32)  # unrelated map: about k / n
    share, _ = neighbour_preservation(lifted, noise, queries=400, seed=1)
    assert share < 0.02


def test_torch_backend_restores_the_callers_thread_count():
    """The torch Lloyd pass runs on ``threads`` threads and gives the process its own count back
    (it used to leave 2 threads set, and every later proxy run in the process then stalled on a
    busy machine)."""
    import torch

    x = np.random.default_rng(0).standard_normal((400, 4)).astype(np.float32)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fit = kmeans(x, 3, backend="torch", seed=0, sample=100, threads=2)
        assert fit.backend == "torch" and fit.info["iterations_full"] > 0 and fit.info["threads"] == 2
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
