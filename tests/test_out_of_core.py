"""Out of core (issue 18): every snapshot analysis streams its table in chunks sized from a memory
bound, and gives what the in-memory computation gives (sums to 1e-9 relative, labels identical).

A tiny bound (:meth:`Snapshot.memory_mb_for`: the bound that leaves room for ~100-row chunks) forces
dozens of chunks on a 3,000-row table; the in-memory answer is computed with numpy/scikit-learn on
the loaded table. The subprocess tests that measure memory are in tests/test_memory_cap.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import health
from analysis.clusters import _inertia, cluster_snapshot, kmeans, sample_rows
from analysis.collapse import collapse_of_matrix, collapse_of_table, memory_costs
from analysis.health import table_stats
from analysis.lloyd import assign
from analysis.volatility import cosine_by_id, join_budget
from lee.errors import InputError
from lee.snapshot import EmbeddingTable, Snapshot, SnapshotStore, TableKind, write_snapshot

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"
N, D = 3000, 16


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> SnapshotStore:
    """Two snapshots of one variant: clustered rows (4 planted groups), then each moved a little,
    100 ids lost and 80 new, rows shuffled."""
    root = tmp_path_factory.mktemp("ooc")
    rng = np.random.default_rng(7)
    centers = rng.standard_normal((4, D)).astype(np.float32) * 3
    group = rng.integers(0, 4, N)
    a = (centers[group] + rng.standard_normal((N, D)).astype(np.float32)).astype(np.float32)
    ids = rng.permutation(10 * N)[:N].astype(np.int64)
    write_snapshot(root, "v", T0, {"UR": EmbeddingTable(ids, a)})
    keep = np.arange(100, N)
    new = np.arange(10 * N, 10 * N + 80, dtype=np.int64)
    b = np.r_[a[keep] + 0.1 * rng.standard_normal((keep.size, D)).astype(np.float32),
              rng.standard_normal((80, D)).astype(np.float32)].astype(np.float32)
    ids_b = np.r_[ids[keep], new]
    perm = rng.permutation(ids_b.size)
    write_snapshot(root, "v", T1, {"UR": EmbeddingTable(ids_b[perm], b[perm])})
    return SnapshotStore(root)


@pytest.fixture
def chunk_sizes(monkeypatch) -> list[int]:
    """The ``rows`` of every :meth:`Snapshot.iter_chunks` call and the chunks it yielded."""
    seen: list[int] = []
    original = Snapshot.iter_chunks

    def spy(self, kind, **kw):
        for chunk in original(self, kind, **kw):
            seen.append(len(chunk))
            yield chunk

    monkeypatch.setattr(Snapshot, "iter_chunks", spy)
    return seen


def test_health_streamed_within_a_tiny_bound_equals_numpy(store, chunk_sizes):
    snap = store.open("v", T0)
    mb = snap.memory_mb_for("UR", 97, **health.CHUNK_COSTS)
    assert snap.chunk_rows("UR", mb, **health.CHUNK_COSTS) == 97
    s = table_stats(snap, "UR", memory_mb=mb)
    assert len(chunk_sizes) >= 2 * (N // 97) and max(chunk_sizes) <= 97   # two passes of ~31 chunks
    x = snap.load("UR").vectors.astype(np.float64)
    mean_d, std_d = x.mean(0), x.std(0)
    for got, want in [(s.mean, x.mean()), (s.variance, x.var()), (s.l1_mean, np.abs(x).sum(1).mean()),
                      (s.l2_mean, np.linalg.norm(x, axis=1).mean()), (s.min, x.min()), (s.max, x.max())]:
        assert rel(got, want) < 1e-9
    np.testing.assert_allclose(s.dim_mean, mean_d, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(s.dim_std, std_d, rtol=1e-9)
    own = health._yardstick(health.Reference(mean_d, std_d, 0.0, 0.0, 0.0, 0))
    want_extreme = (np.abs(x - own[0]) > 2.0 * own[1]).mean()
    assert table_stats(snap, "UR", memory_mb=mb, extreme_z=2.0).extreme_share == pytest.approx(want_extreme,
                                                                                             rel=1e-12)
    whole = table_stats(snap, "UR", chunk_rows=N)    # one chunk: the in-memory computation
    assert rel(s.l2_mean, whole.l2_mean) < 1e-9 and s.extreme_share == whole.extreme_share


def test_collapse_streamed_within_a_tiny_bound_equals_the_in_memory_spectrum(store, chunk_sizes):
    snap = store.open("v", T0)
    costs = memory_costs(D, 500)
    mb = snap.memory_mb_for("UR", 101, **costs)
    res = collapse_of_table(snap, "UR", memory_mb=mb, rankme_sample=500, seed=3)
    assert len(chunk_sizes) == -(-N // 101)
    ref = collapse_of_matrix(snap.load("UR").vectors, kind=TableKind.UR, rankme_sample=500, seed=3)
    s, t = res.singular_values, ref.singular_values
    np.testing.assert_allclose(s, t, rtol=1e-9, atol=1e-9 * t[0])
    np.testing.assert_allclose(s, np.linalg.svd(snap.load("UR").vectors.astype(np.float64)
                                                - snap.load("UR").vectors.mean(0), compute_uv=False),
                               rtol=1e-7)   # numpy's SVD of the centred matrix: the same spectrum
    assert res.rankme == ref.rankme and res.rankme_rows == 500
    for key in ("effective_rank", "information_abundance", "alpha_req", "stable_rank"):
        assert rel(getattr(res, key), getattr(ref, key)) < 1e-9


def test_volatility_within_a_tiny_bound_holds_the_earlier_table_in_blocks(store):
    before, after = store.open("v", T0), store.open("v", T1)
    kind = TableKind.UR
    mb = 16.0
    while True:   # the least bound (to 0.01 MiB) the join accepts, plus room for ~800-row blocks
        try:
            join_budget(before, after, kind, mb)
            break
        except InputError:
            mb += 0.01
    mb += 4 * D * 800 * 1.25 / 2**20
    batch, block = join_budget(before, after, kind, mb)
    res = cosine_by_id(before, after, "UR", memory_mb=mb)
    assert res.blocks == -(-N // block) >= 3 and batch < N
    a, b = before.load(kind), after.load(kind)
    ia = pd.Index(a.ids).get_indexer(b.ids)
    keep = ia >= 0
    x, y = b.vectors[keep].astype(np.float64), a.vectors[ia[keep]].astype(np.float64)
    want = (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
    np.testing.assert_array_equal(res.ids, b.ids[keep])
    np.testing.assert_allclose(res.cosine, want, atol=2e-6)
    whole = cosine_by_id(before, after, "UR")          # the default bound: one block
    assert whole.blocks == 1
    np.testing.assert_array_equal(res.cosine, whole.cosine)
    with pytest.raises(InputError, match=r"cannot run within 1 MiB.*give --memory-mb \d+"):
        cosine_by_id(before, after, "UR", memory_mb=1)


def least_bound(run):
    """``run(mb)`` at the least bound (to 0.05 MiB from 16) it accepts: the out-of-core path's smallest chunks."""
    mb = 16.0
    while True:
        try:
            return run(mb)
        except InputError:
            mb += 0.05


def _events(ids: np.ndarray, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    users = rng.choice(ids, 20_000)
    return pd.DataFrame({"user_id": users, "item_id": rng.integers(0, 50, users.size),
                         "click": (rng.random(users.size) < 0.05 + 0.1 * (users % 3 == 0)).astype(np.int64),
                         "domain": np.ones(users.size, np.int64)})


def test_clusters_out_of_core_equal_the_in_memory_clusters(store, chunk_sizes):
    """A table that fits the fit sample: fitted on every row either way, then assigned in ~100-row
    chunks; labels, inertia, silhouette and the per-cluster CTR table equal the in-memory result."""
    snap = store.open("v", T0)
    events = _events(snap.load_ids("UR"))
    in_memory = cluster_snapshot(snap, "UR", k=4, events=events, seed=1, memory_mb=None, silhouette_sample=1000)
    assert in_memory.fit_rows is None and not chunk_sizes
    ooc = least_bound(lambda mb: cluster_snapshot(snap, "UR", k=4, events=events, seed=1, memory_mb=mb,
                                                  silhouette_sample=1000))
    assert ooc.fit_rows == N and len(chunk_sizes) >= 10
    np.testing.assert_array_equal(ooc.ids, in_memory.ids)
    np.testing.assert_array_equal(ooc.assignment, in_memory.assignment)
    assert rel(ooc.inertia, in_memory.inertia) < 1e-9
    assert ooc.silhouette == in_memory.silhouette and ooc.silhouette_sample == in_memory.silhouette_sample
    pd.testing.assert_frame_equal(ooc.table, in_memory.table, rtol=1e-9)
    assert ooc.overall_ctr == in_memory.overall_ctr


def test_clusters_out_of_core_fit_on_a_stated_sample(store):
    """More rows than the fit sample: the centroids are K-means' on the stated seeded sample, every
    row gets its nearest centroid (as scikit-learn finds it), the inertia sums every row."""
    from sklearn.metrics import pairwise_distances_argmin

    snap = store.open("v", T0)
    events = _events(snap.load_ids("UR"))
    res = least_bound(lambda mb: cluster_snapshot(snap, "UR", k=4, events=events, seed=2, memory_mb=mb,
                                                  fit_sample=600, silhouette_sample=1000))
    assert res.fit_rows == 600 and res.summary()["fit_rows"] == 600
    x = snap.load("UR").vectors
    fit = kmeans(x[sample_rows(N, 600, seed=2)], 4, seed=2, n_init=10, sample=600)
    labels = assign(x, fit.centroids)
    np.testing.assert_array_equal(res.assignment, labels)
    np.testing.assert_array_equal(labels, pairwise_distances_argmin(x, fit.centroids))
    assert rel(res.inertia, _inertia(x, labels, fit.centroids)) < 1e-9
    size = np.bincount(labels, minlength=4)
    assert res.table["size"].tolist() == size[size > 0].tolist()


def test_bound_too_small_names_what_it_needs(store):
    snap = store.open("v", T0)
    with pytest.raises(InputError, match=r"health statistics cannot run within 2 MiB.*--memory-mb \d+"):
        table_stats(snap, "UR", memory_mb=2)
    with pytest.raises(InputError, match=r"must be a positive number of MiB"):
        snap.chunk_rows("UR", 0)


# --------------------------------------------------------------------------- the command line


def test_cli_memory_bound_on_every_snapshot_analysis(store, capsys):
    """``--memory-mb`` reaches each analysis: a tight bound gives the default bound's answer, one
    below the reader's floor is a one-paragraph error naming the least bound that would do."""
    import json

    from app.cli import analyze as cli
    from app.cli.main import main
    from lee.snapshot import reader

    assert cli.DEFAULT_MEMORY_MB == reader.DEFAULT_MEMORY_MB
    root = str(store.root)

    def run(*argv: str) -> dict:
        capsys.readouterr()
        assert main(["analyze", *argv, "--root", root, "--json", "-q"]) == 0
        return json.loads(capsys.readouterr().out)

    for analysis in (["health", "--variant", "v"], ["collapse", "--variants", "v"], ["volatility", "--variant", "v"]):
        tight, default = run(*analysis, "--memory-mb", "18"), run(*analysis)
        if analysis[0] == "collapse":
            assert tight["variants"][0]["effective_rank"] == pytest.approx(default["variants"][0]["effective_rank"],
                                                                           rel=1e-9)
        elif analysis[0] == "health":
            assert tight["flagged"] == default["flagged"] == 0
        else:
            assert tight["mean_cosine"] == default["mean_cosine"] and tight["n_shared"] == N - 100
        capsys.readouterr()
        assert main(["analyze", *analysis, "--root", root, "--memory-mb", "3", "-q"]) == 2
        err = " ".join(capsys.readouterr().err.split())   # the message is wrapped to the terminal
        assert "cannot run within 3 MiB" in err and "--memory-mb" in err and "Traceback" not in err
    assert main(["analyze", "health", "--root", root, "--variant", "v", "--address", "auto", "-q"]) == 2
    assert "needs --engine ray" in capsys.readouterr().err
