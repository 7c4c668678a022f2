"""Engines (issue 18): the local engine and a local Ray cluster (ray.init(num_cpus=2)) give equal
results for a LEE job, volatility, health and collapse; a task process SIGKILLed mid-job costs at most its
unit (Ray retries it, or the next run redoes it), and nothing is recorded twice.

One Ray instance serves the whole module (started once, ~10 s; shut down at the end)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import ray

from analysis.health import snapshot_health, table_stats, table_stats_partitioned
from analysis.volatility import cosine_by_id, cosine_by_id_partitioned, id_partition
from lee.engine import EngineError, EngineSpec, LocalEngine, RayEngine, make_engine
from lee.errors import ConfigError, DeviceError, InputError, SnapshotError
from lee.jobs.config import load_job
from lee.jobs.run import run_job
from lee.jobs.store import ResultsStore
from lee.snapshot import EmbeddingTable, SnapshotStore, write_snapshot

pytestmark = pytest.mark.slow   # ~1 minute on 2 cores, most of it starting Ray and its workers; part of CI

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "tiny" / "snapshots"

JOB = """
[job]
name = "t"
snapshots = "{root}/snapshots"
world = "{root}/world"
results = "{db}"
variants = ["oracle", "random", "noise_high"]
latest_only = true
device = "cpu"

[eval]
usages = ["UR+IR"]
fusions = ["concat"]
seeds = [0]
windows = 4
n_boot = 30

[engine]
kind = "{kind}"
max_retries = {retries}
"""


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs for the whole module, shut down cleanly at the end."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])   # this module's helpers, by value
    try:
        yield RayEngine(EngineSpec(kind="ray"))   # uses the running instance, leaves it running
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def job_dir(tmp_path_factory) -> Path:
    """Job files and results stores; the job reads the committed tiny world and its snapshots."""
    return tmp_path_factory.mktemp("rayjob")


def _job(d: Path, name: str, kind: str, retries: int = 3) -> Path:
    path = d / f"{name}.toml"
    path.write_text(JOB.format(root=FIXTURES.parent.as_posix(), db=f"{name}.sqlite", kind=kind, retries=retries),
                    encoding="utf-8")
    return path


def _results(db: Path) -> pd.DataFrame:
    store = ResultsStore(db)
    runs = store.runs().sort_values("variant").reset_index(drop=True)
    assert runs["variant"].is_unique, "a unit was recorded twice"
    cols = ["variant", "usage", "fusion", "auc", "baseline_auc", "delta_auc", "ci_low", "ci_high", "verdict"]
    return runs[cols]


def _quiet(*_):
    pass


@pytest.fixture(scope="module")
def local_results(job_dir) -> pd.DataFrame:
    report = run_job(load_job(_job(job_dir, "local", "local")), progress=False, log=_quiet)
    assert len(report.evaluated) == 3
    return _results(job_dir / "local.sqlite")


# --------------------------------------------------------------------------- the engines themselves


def _square(x: int) -> int:
    return x * x


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise InputError(f"item {x} is bad")
    return x


def _parts(x: int, n: int) -> list[int]:
    return [x * 10 + p for p in range(n)]


def _total(*xs: int) -> int:
    return sum(xs)


def test_local_engine_maps_in_order_and_scatters():
    with make_engine() as engine:
        assert isinstance(engine, LocalEngine)
        assert list(engine.map(_square, [(k,) for k in range(5)])) == [(k, k * k) for k in range(5)]
        handles = engine.scatter(_parts, [(1, 3), (2, 3)], 3)
        assert dict(engine.map(_total, [tuple(h[p] for h in handles) for p in range(3)])) == {0: 30, 1: 32, 2: 34}


def test_engine_section_is_checked():
    with pytest.raises(ConfigError, match="kind"):
        EngineSpec(kind="spark")
    with pytest.raises(ConfigError, match="max_retries"):
        EngineSpec(kind="ray", max_retries=-1)


def test_engine_section_of_a_job_file_is_checked_and_overridden(tmp_path):
    path = tmp_path / "job.toml"
    path.write_text('[job]\nsnapshots = "s"\nworld = "w"\n[engine]\nkind = "spark"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"job.toml: \[engine\] kind: expected one of 'local' or 'ray'"):
        load_job(path)
    path.write_text('[job]\nsnapshots = "s"\nworld = "w"\n[engine]\nkind = "ray"\nmax_retries = 1\n', encoding="utf-8")
    job = load_job(path)
    assert (job.engine.kind, job.engine.address, job.engine.max_retries) == ("ray", None, 1)
    assert job.with_engine("ray", "auto").engine.max_retries == 1          # --address keeps the section
    assert job.with_engine("local").engine == EngineSpec()                   # --engine local replaces it


def test_ray_engine_yields_every_item_and_a_failed_task_costs_only_itself(cluster):
    assert sorted(cluster.map(_square, [(k,) for k in range(6)])) == [(k, k * k) for k in range(6)]
    handles = cluster.scatter(_parts, [(1, 3), (2, 3)], 3)
    assert dict(cluster.map(_total, [tuple(h[p] for h in handles) for p in range(3)])) == {0: 30, 1: 32, 2: 34}
    got = []
    with pytest.raises(InputError, match="item 3 is bad"):   # the task's own error, after the others
        for _, v in cluster.map(_fail_on_three, [(k,) for k in range(6)]):
            got.append(v)
    assert sorted(got) == [0, 1, 2, 4, 5]


# --------------------------------------------------------------------------- LEE job


def test_lee_job_on_ray_equals_the_local_engine(cluster, job_dir, local_results):
    report = run_job(load_job(_job(job_dir, "ray", "ray")), progress=False, log=_quiet)
    assert len(report.evaluated) == 3
    pd.testing.assert_frame_equal(_results(job_dir / "ray.sqlite"), local_results, check_exact=True)
    doc = ResultsStore(job_dir / "ray.sqlite").run(ResultsStore(job_dir / "ray.sqlite").runs()["run_id"].iloc[0])
    assert doc["extra"]["engine"].startswith("ray")
    again = run_job(load_job(_job(job_dir, "ray", "ray")), progress=False, log=_quiet)
    assert again.evaluated == [] and again.skipped == 3   # idempotent, as locally


def test_cuda_on_a_cluster_without_a_gpu_is_refused_before_any_unit_runs(cluster, job_dir):
    path = _job(job_dir, "cuda", "ray")
    path.write_text(path.read_text(encoding="utf-8").replace('device = "cpu"', 'device = "cuda"'), encoding="utf-8")
    with pytest.raises(DeviceError, match="device cuda was asked for but the ray cluster has no GPU"):
        run_job(load_job(path), progress=False, log=_quiet)
    assert ResultsStore(job_dir / "cuda.sqlite").runs().empty


def _unit_task_pids() -> list[int]:
    """Processes whose title is ray::variant_task: Ray workers running a unit right now (Linux /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if cmd.startswith(b"ray::variant_task"):
                pids.append(int(entry))
    return pids


def _kill_first_unit_task(done: threading.Event, killed: list[int]) -> None:
    """SIGKILL the first Ray worker process seen running a unit, mid-unit."""
    while not done.is_set():
        for pid in _unit_task_pids():
            time.sleep(0.3)   # mid-unit, not at its first instruction
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            killed.append(pid)
            return
        time.sleep(0.02)


def _run_with_a_kill(path: Path) -> tuple[list[int], BaseException | None]:
    done, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_first_unit_task, args=(done, killed), daemon=True)
    killer.start()
    error: BaseException | None = None
    try:
        run_job(load_job(path), progress=False, log=_quiet)
    except EngineError as exc:
        error = exc
    finally:
        done.set()
        killer.join()
    return killed, error


def test_a_killed_task_is_retried_and_the_job_completes(cluster, job_dir, local_results):
    killed, error = _run_with_a_kill(_job(job_dir, "kill_retry", "ray", retries=3))
    assert killed, "no unit task was seen running"
    assert error is None
    pd.testing.assert_frame_equal(_results(job_dir / "kill_retry.sqlite"), local_results, check_exact=True)


def test_a_killed_task_without_retries_costs_its_unit_and_the_next_run_resumes(cluster, job_dir, local_results):
    path = _job(job_dir, "kill_once", "ray", retries=0)
    killed, error = _run_with_a_kill(path)
    assert killed and isinstance(error, EngineError)
    assert "failed after 0 retries" in str(error) and "every other item completed" in str(error)
    assert len(ResultsStore(job_dir / "kill_once.sqlite").runs()) == 2   # the other units are recorded
    report = run_job(load_job(path), progress=False, log=_quiet)
    assert len(report.evaluated) == 1 and report.skipped == 2
    pd.testing.assert_frame_equal(_results(job_dir / "kill_once.sqlite"), local_results, check_exact=True)


# --------------------------------------------------------------------------- snapshot analyses


@pytest.fixture(scope="module")
def drift_pair(tmp_path_factory):
    """Two snapshots with string ids, 3,000 rows each, 2,500 shared (new and lost ids), one zero vector."""
    root = tmp_path_factory.mktemp("drift")
    rng = np.random.default_rng(5)
    ids = np.array([f"user-{k}" for k in range(3500)], dtype=object)
    before = rng.normal(size=(3000, 8)).astype(np.float32)
    after = np.concatenate([before[500:] + 0.3 * rng.normal(size=(2500, 8)).astype(np.float32),
                            rng.normal(size=(500, 8)).astype(np.float32)])
    after[7] = 0.0
    order = rng.permutation(3000)
    write_snapshot(root, "v", "2026-01-01T00:00:00Z", {"UR": EmbeddingTable(ids[:3000], before)})
    write_snapshot(root, "v", "2026-01-01T00:05:00Z", {"UR": EmbeddingTable(ids[500:][order], after[order])})
    store = SnapshotStore(root)
    return store.open("v", store.times("v")[0]), store.open("v", store.times("v")[1])


def test_id_partition_is_stable_and_spread():
    ids = np.arange(10_000, dtype=np.int64)
    p = id_partition(ids, 7)
    assert np.array_equal(p, id_partition(ids.copy(), 7)) and p.min() == 0 and p.max() == 6
    assert np.bincount(p).min() > 1200   # about 10,000 / 7 each


def _same_volatility(a, b) -> None:
    assert np.array_equal(a.ids, b.ids) and np.array_equal(a.new_ids, b.new_ids)
    assert np.array_equal(a.lost_ids, b.lost_ids) and a.n_zero_norm == b.n_zero_norm
    np.testing.assert_allclose(b.cosine.astype(np.float64), a.cosine.astype(np.float64), rtol=1e-9, atol=0)
    sa, sb = a.summary(), b.summary()
    assert sa.keys() == sb.keys()
    for key in sa:
        if isinstance(sa[key], float):
            assert sb[key] == pytest.approx(sa[key], rel=1e-9, abs=0), key
        else:
            assert sb[key] == sa[key], key


def test_row_ranges_follow_row_groups_and_partitioned_analyses_match_locally(tmp_path, monkeypatch):
    """Many small row groups (100 rows): ranges take whole groups, or cut inside a larger group;
    every range reads exactly its rows; both partitioned analyses equal the local ones (no Ray)."""
    from lee.snapshot import parquet_io
    from lee.snapshot.ranges import read_rows, row_group_starts, row_ranges

    monkeypatch.setattr(parquet_io, "ROW_GROUP_ROWS", 100)
    rng = np.random.default_rng(2)
    ids = rng.permutation(5000)[:1050].astype(np.int64)
    x = rng.normal(size=(1050, 6)).astype(np.float32)
    write_snapshot(tmp_path, "v", "2026-01-01T00:00:00Z", {"UR": EmbeddingTable(ids, x)})
    write_snapshot(tmp_path, "v", "2026-01-01T00:05:00Z",
                   {"UR": EmbeddingTable(ids[::-1].copy(), (x[::-1] + 0.1).astype(np.float32))})
    store = SnapshotStore(tmp_path)
    before, after = store.open("v", store.times("v")[0]), store.open("v", store.times("v")[1])
    assert row_group_starts(before, "UR").tolist() == list(range(0, 1050, 100)) + [1050]
    assert row_ranges(before, "UR", 250) == [(0, 300), (300, 600), (600, 900), (900, 1050)]  # whole groups
    assert row_ranges(before, "UR", 40)[:3] == [(0, 40), (40, 80), (80, 100)]               # cut inside
    table = before.load("UR")
    for rows in (1, 37, 250, 2000):
        parts = [read_rows(before, "UR", lo, hi) for lo, hi in row_ranges(before, "UR", rows)]
        assert np.array_equal(np.concatenate([p.ids for p in parts]), table.ids)
        assert np.array_equal(np.concatenate([p.vectors for p in parts]), table.vectors)
    with pytest.raises(SnapshotError, match=r"row range \[1000, 1100\) is outside the table's 1050 rows"):
        read_rows(before, "UR", 1000, 1100)
    _same_volatility(cosine_by_id(before, after, "UR"),
                     cosine_by_id_partitioned(before, after, "UR", engine=LocalEngine(), parts=4, rows_per_task=130))
    local, parted = table_stats(after, "UR"), table_stats_partitioned(after, "UR", engine=LocalEngine(),
                                                                      rows_per_task=130)
    for f in dataclasses.fields(local):
        np.testing.assert_allclose(np.asarray(getattr(parted, f.name), float),
                                   np.asarray(getattr(local, f.name), float), rtol=1e-9, atol=0, err_msg=f.name)


def test_volatility_partitioned_on_ray_equals_the_local_join(cluster, drift_pair):
    before, after = drift_pair
    local = cosine_by_id(before, after, "UR")
    assert local.n_shared == 2500 and local.new_ids.size == 500 and local.lost_ids.size == 500
    assert local.n_zero_norm == 1
    on_ray = cosine_by_id_partitioned(before, after, "UR", engine=cluster, parts=4, rows_per_task=700)
    _same_volatility(local, on_ray)
    assert on_ray.extra["partitions"] == 4 and on_ray.extra["map_tasks"] == 10
    _same_volatility(local, cosine_by_id_partitioned(before, after, "UR", engine=LocalEngine(), parts=3,
                                                     rows_per_task=1000))
    store = SnapshotStore(FIXTURES)   # int64 ids, every table of a planted variant
    times = store.times("noise_low")
    for kind in ("UR", "IR", "CR_item"):
        first, second = store.open("noise_low", times[0]), store.open("noise_low", times[1])
        _same_volatility(cosine_by_id(first, second, kind),
                         cosine_by_id_partitioned(first, second, kind, engine=cluster, parts=3, rows_per_task=150))


def test_volatility_partitioned_names_a_nan_row(cluster, drift_pair, tmp_path):
    before, _ = drift_pair
    bad = before.load("UR")
    vectors = bad.vectors.copy()
    vectors[42, 3] = np.nan
    write_snapshot(tmp_path, "v", "2026-01-01T00:05:00Z", {"UR": EmbeddingTable(bad.ids, vectors)},
                   allow_nonfinite=True)
    after = SnapshotStore(tmp_path).latest("v")
    with pytest.raises(SnapshotError, match="'user-42'"):
        cosine_by_id_partitioned(before, after, "UR", engine=cluster, parts=2, rows_per_task=1000)


def test_health_partitioned_on_ray_equals_the_local_statistics(cluster):
    store = SnapshotStore(FIXTURES)
    snap = store.latest("oracle")
    for kind in snap.kinds:
        local = table_stats(snap, kind)
        on_ray = table_stats_partitioned(snap, kind, engine=cluster, rows_per_task=90)
        for f in dataclasses.fields(local):
            np.testing.assert_allclose(np.asarray(getattr(on_ray, f.name), float),
                                       np.asarray(getattr(local, f.name), float), rtol=1e-9, atol=0,
                                       err_msg=f"{kind.value} {f.name}")
    local = snapshot_health(store, "oracle")
    on_ray = snapshot_health(store, "oracle", engine=cluster)
    pd.testing.assert_frame_equal(on_ray.table, local.table, check_exact=False, rtol=1e-9, atol=0)
    assert on_ray.summary() == local.summary()


def test_collapse_partitioned_on_ray_equals_the_streamed_spectrum(cluster, capsys):
    """The Gram matrix summed by row range on Ray: singular values equal the streamed ones to 1e-9 of
    the largest, RankMe (the same sampled rows) exactly; `lee analyze collapse --engine ray` too."""

    from analysis.collapse import collapse_of_table, collapse_partitioned
    from app.cli.main import main

    store = SnapshotStore(FIXTURES)
    for variant in ("oracle", "rank_collapsed"):
        snap = store.latest(variant)
        for kind in snap.kinds:
            local = collapse_of_table(snap, kind, rankme_sample=300, seed=1)
            on_ray = collapse_partitioned(snap, kind, engine=cluster, rankme_sample=300, seed=1, rows_per_task=90)
            s, t = on_ray.singular_values, local.singular_values
            np.testing.assert_allclose(s, t, rtol=1e-9, atol=1e-9 * t[0], err_msg=f"{variant} {kind.value}")
            assert on_ray.rankme == local.rankme and on_ray.rows == local.rows
            assert on_ray.effective_rank == pytest.approx(local.effective_rank, rel=1e-9)
    docs = []
    for engine in ("local", "ray"):
        capsys.readouterr()
        assert main(["analyze", "collapse", "--root", str(FIXTURES), "--json", "-q", "--engine", engine]) == 0
        docs.append(json.loads(capsys.readouterr().out))
    local_doc, ray_doc = docs
    assert ray_doc["collapsed"] == local_doc["collapsed"]
    for a, b in zip(ray_doc["variants"], local_doc["variants"]):
        assert a["variant"] == b["variant"] and a["rankme"] == b["rankme"]
        assert a["effective_rank"] == pytest.approx(b["effective_rank"], rel=1e-9)


def test_evaluate_cli_engine_flags(cluster, job_dir, local_results, capsys):
    from app.cli.main import main

    path = _job(job_dir, "cli", "local")
    assert main(["evaluate", "--config", str(path), "--address", "auto"]) == 2   # an address needs --engine ray
    assert "--address auto names a Ray cluster; it needs --engine ray" in capsys.readouterr().err
    assert main(["evaluate", "--config", str(path), "--engine", "ray", "--max-units", "1", "-q"]) == 0
    runs = ResultsStore(job_dir / "cli.sqlite").runs()
    assert len(runs) == 1
    doc = ResultsStore(job_dir / "cli.sqlite").run(runs["run_id"].iloc[0])
    assert doc["extra"]["engine"].startswith("ray")
    want = local_results.set_index("variant").loc[doc["variant"]]
    assert doc["delta_auc"] == want["delta_auc"] and doc["auc"] == want["auc"]


def test_kmeans_partitioned_on_ray_equals_the_local_fit(cluster, tmp_path):
    """K-means with its full Lloyd passes and the final assignment as Ray tasks over two row ranges
    (70,000 rows: ranges cut at the pass's 65,536-row chunk): labels identical to the in-memory fit
    (equal arrays, ARI 1.0), centroids to 1e-6 and inertia to 1e-9 relative (in fact bitwise: the same
    chunks, their sums added in the same order), the same passes; 12 overlapping planted groups so
    that the passes on the cluster are many."""
    from sklearn.metrics import adjusted_rand_score

    from analysis.clusters import kmeans, kmeans_partitioned

    rng = np.random.default_rng(0)
    n, d, k = 70_000, 8, 12
    truth = rng.integers(k, size=n)
    x = (rng.normal(size=(k, d))[truth] + rng.normal(size=(n, d))).astype(np.float32)
    write_snapshot(tmp_path, "v", "2026-01-01T00:00:00Z", {"UR": EmbeddingTable(np.arange(n, dtype=np.int64), x)})
    snap = SnapshotStore(tmp_path).latest("v")
    opts = {"seed": 3, "n_init": 2, "sample": 5000}
    local = kmeans(x, k, **opts)
    on_ray, _ = kmeans_partitioned(snap, "UR", k, engine=cluster, rows_per_task=30_000, **opts)
    assert on_ray.info["ranges"] == 2 and on_ray.info["engine"] == "ray"
    assert on_ray.info["iterations_full"] == local.info["iterations_full"] > 2
    assert on_ray.info["iterations_sample"] == local.info["iterations_sample"]
    assert np.array_equal(on_ray.labels, local.labels)
    assert adjusted_rand_score(local.labels, on_ray.labels) == 1.0
    np.testing.assert_allclose(on_ray.centroids, local.centroids, rtol=1e-6, atol=0)
    assert on_ray.inertia == pytest.approx(local.inertia, rel=1e-9)
    in_process, _ = kmeans_partitioned(snap, "UR", k, engine=LocalEngine(), rows_per_task=30_000, **opts)
    assert np.array_equal(in_process.labels, local.labels) and in_process.inertia == on_ray.inertia


def test_clusters_on_ray_equal_the_local_engine(cluster, capsys):
    """cluster_snapshot and `lee analyze clusters --engine ray` on the planted tiny world: the same
    assignment, CTR table, silhouette and ARI as the local engine; other backends are refused."""

    from analysis._data import interactions, planted_truth
    from analysis.clusters import cluster_snapshot
    from app.cli.main import main
    from lee.data.dataset import Dataset

    world = FIXTURES.parent / "world"
    ds = Dataset.open(world)
    snap = SnapshotStore(FIXTURES).latest("oracle")
    truth = planted_truth(ds)
    opts = {"k": int(truth.nunique()), "events": interactions(ds), "items": ds.items, "truth": truth, "domain": None}
    local = cluster_snapshot(snap, "UR", **opts)
    on_ray = cluster_snapshot(snap, "UR", engine=cluster, **opts)
    assert np.array_equal(on_ray.assignment, local.assignment) and local.ari is not None and local.ari > 0.9
    pd.testing.assert_frame_equal(on_ray.table, local.table)
    assert on_ray.ari == local.ari and on_ray.silhouette == local.silhouette
    assert on_ray.inertia == pytest.approx(local.inertia, rel=1e-9)
    with pytest.raises(InputError, match="backend 'sklearn'"):
        cluster_snapshot(snap, "UR", engine=cluster, backend="sklearn", **opts)
    docs = []
    for engine in ("local", "ray"):
        capsys.readouterr()
        assert main(["analyze", "clusters", "--data", str(world), "--root", str(FIXTURES), "--variant", "oracle",
                     "--json", "-q", "--engine", engine]) == 0
        docs.append(json.loads(capsys.readouterr().out))
    assert docs[1] == docs[0] and docs[0]["ari"] > 0.9


def test_a_data_parallel_unit_on_ray_trains_on_ray_tasks_and_equals_one_process(cluster, job_dir, local_results):
    """data_parallel = 2 on --engine ray: the unit's task starts its two ranks as Ray tasks (a
    placement group of 2 one-CPU bundles on the 2-CPU cluster; the unit's task lends its CPU while it
    waits), and the AUCs equal the one-process local run up to float summation order (the bound and
    its reason: tests/test_data_parallel.py)."""
    path = _job(job_dir, "dp", "ray")
    text = path.read_text(encoding="utf-8").replace('variants = ["oracle", "random", "noise_high"]',
                                                     'variants = ["oracle"]')
    path.write_text(text.replace("n_boot = 30", "n_boot = 30\ndata_parallel = 2"), encoding="utf-8")
    report = run_job(load_job(path), progress=False, log=_quiet)
    assert len(report.evaluated) == 1
    store = ResultsStore(job_dir / "dp.sqlite")
    doc = store.run(store.runs()["run_id"].iloc[0])
    want = local_results.set_index("variant").loc["oracle"]
    assert abs(doc["auc"] - want["auc"]) <= 1e-4 and abs(doc["baseline_auc"] - want["baseline_auc"]) <= 1e-4
    assert doc["verdict"] == want["verdict"]
    for side in ("training", "baseline_training"):
        assert doc["extra"][side]["data_parallel"] == 2
        assert doc["extra"][side]["data_parallel_workers"] == "2 Ray tasks"


def test_data_parallel_wider_than_the_ray_cluster_is_refused(cluster, job_dir):
    path = _job(job_dir, "dp3", "ray", retries=0)
    text = path.read_text(encoding="utf-8").replace('variants = ["oracle", "random", "noise_high"]',
                                                     'variants = ["oracle"]')
    path.write_text(text.replace("n_boot = 30", "n_boot = 30\ndata_parallel = 3"), encoding="utf-8")
    with pytest.raises(ConfigError, match="data_parallel = 3 needs 3 CPUs on the Ray cluster, which has 2 CPUs"):
        run_job(load_job(path), progress=False, log=_quiet)


def test_kmeans_partitioned_moves_an_emptied_cluster_as_the_local_fit_does(cluster, tmp_path, monkeypatch):
    """A centroid that no row is nearest to in a full pass (the sample fit's centroid 0 moved far
    away) is moved to the pass's farthest row on both engines: on Ray the farthest row of each chunk
    comes back from the range tasks and the driver reads that one row; labels, centroids and inertia
    equal the in-memory fit's, and every cluster ends non-empty."""
    import analysis.lloyd as lloyd_mod
    from analysis.clusters import kmeans, kmeans_partitioned

    original = lloyd_mod._restarts

    def far_centroid(*args, **kwargs):
        c, p, it = original(*args, **kwargs)
        c = c.copy()
        c[0] = 1e4
        return c, p, it

    monkeypatch.setattr(lloyd_mod, "_restarts", far_centroid)
    rng = np.random.default_rng(1)
    n, d, k = 70_000, 8, 6
    truth = rng.integers(k, size=n)
    x = (3 * rng.normal(size=(k, d))[truth] + rng.normal(size=(n, d))).astype(np.float32)
    write_snapshot(tmp_path, "v", "2026-01-01T00:00:00Z", {"UR": EmbeddingTable(np.arange(n, dtype=np.int64), x)})
    snap = SnapshotStore(tmp_path).latest("v")
    opts = {"seed": 0, "n_init": 1, "sample": 5000}
    local = kmeans(x, k, **opts)
    on_ray, _ = kmeans_partitioned(snap, "UR", k, engine=cluster, rows_per_task=30_000, **opts)
    assert on_ray.info["ranges"] == 2
    assert np.array_equal(on_ray.labels, local.labels)
    np.testing.assert_allclose(on_ray.centroids, local.centroids, rtol=1e-6, atol=0)
    assert on_ray.inertia == pytest.approx(local.inertia, rel=1e-9)
    assert np.bincount(on_ray.labels, minlength=k).min() > 0 and np.abs(on_ray.centroids).max() < 1e3
