"""Comparing two versions on an engine (issue 18): ``compare_versions`` and ``lee compare`` on a local Ray
cluster (ray.init(num_cpus=2)) give the local engine's result — the paired pass (join by id, raw and
aligned cosine per id, CKA's moments) as tasks over id-hash partitions, the samples in the driver.

One Ray instance serves the whole module (started once, ~10 s; shut down at the end)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import ray
from scipy.stats import ortho_group

from analysis.compare import VersionComparison, compare_versions
from analysis.compare.paired import paired_similarity
from analysis.compare.partitioned import paired_similarity_partitioned
from app.cli.main import main
from lee.engine import EngineSpec, LocalEngine, RayEngine
from lee.snapshot import EmbeddingTable, SnapshotStore, write_snapshot

pytestmark = pytest.mark.slow   # ~30 s on 2 cores, most of it starting Ray and its workers; part of CI

OPTS: dict[str, Any] = {"k": 5, "clusters": 3, "drift_sample": 200, "fit_sample": 500, "mmd_permutations": 100,
                        "classifier_permutations": 20}


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs for the whole module, shut down cleanly at the end."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield RayEngine(EngineSpec(kind="ray"))   # uses the running instance, leaves it running
    finally:
        ray.shutdown()


def _versions(root: Path, d_a: int = 8, d_b: int = 8) -> tuple[Any, Any]:
    """A (3,000 string ids) and B (2,900 ids, 2,400 of them A's, in another row order): B is A rotated,
    with 600 of the shared ids drifted hard and the rest lightly, 500 new ids and one zero vector."""
    rng = np.random.default_rng(11)
    ids = np.array([f"user-{k}" for k in range(3500)], dtype=object)
    a = rng.normal(size=(3000, d_a)).astype(np.float32)
    q = ortho_group.rvs(max(d_a, d_b), random_state=3)[:d_a, :d_b]
    shared = a[600:] @ q
    noise = np.full((2400, 1), 0.05)
    noise[:600] = 1.5                                   # the drifted ones
    b = np.concatenate([shared + noise * rng.normal(size=(2400, d_b)), rng.normal(size=(500, d_b))])
    b = b.astype(np.float32)
    b[17] = 0.0
    order = rng.permutation(2900)
    write_snapshot(root, "v", "2026-01-01T00:00:00Z", {"UR": EmbeddingTable(ids[:3000], a)})
    write_snapshot(root, "v", "2026-01-01T00:05:00Z", {"UR": EmbeddingTable(ids[600:][order], b[order])})
    store = SnapshotStore(root)
    return store.open("v", store.times("v")[0]), store.open("v", store.times("v")[1])


def _same_value(ours: Any, theirs: Any, key: str) -> None:
    if isinstance(theirs, float):
        assert isinstance(ours, float) and (math.isnan(ours) == math.isnan(theirs)), key
        if not math.isnan(theirs):
            assert ours == pytest.approx(theirs, rel=1e-9, abs=0), key
    elif isinstance(theirs, list) and theirs and isinstance(theirs[0], float):
        assert len(ours) == len(theirs), key
        for x, y in zip(ours, theirs):
            _same_value(x, y, key)
    else:
        assert ours == theirs, key


def _same_summary(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    assert ours.keys() == theirs.keys()
    for key in theirs:
        _same_value(ours[key], theirs[key], key)


def _same_comparison(ours: VersionComparison, theirs: VersionComparison) -> None:
    _same_summary(ours.summary(), theirs.summary())
    pa, pb = ours.per_id(), theirs.per_id()
    assert list(pa.columns) == list(pb.columns) and np.array_equal(pa["id"].to_numpy(), pb["id"].to_numpy())
    for col in pa.columns[1:]:
        np.testing.assert_allclose(pa[col].to_numpy(float), pb[col].to_numpy(float), rtol=1e-9, atol=0,
                                   equal_nan=True, err_msg=col)
    pd.testing.assert_frame_equal(ours.drift, theirs.drift)
    assert ours.cluster == theirs.cluster


def test_compare_versions_on_ray_equals_the_local_engine(cluster, tmp_path):
    a, b = _versions(tmp_path)
    local = compare_versions(a, b, "UR", **OPTS)
    s = local.summary()
    assert (s["shared_ids"], s["only_a"], s["only_b"]) == (2400, 600, 500)
    assert s["raw_cosine_mean"] < 0.5 < s["aligned_cosine_mean"]          # a rotation: aligned sees through it
    per_id = local.per_id().set_index("id")["aligned_cosine"]
    drifted = per_id.index.isin([f"user-{k}" for k in range(600, 1200)])
    assert per_id[drifted].median() < 0.8 < 0.99 < per_id[~drifted].median()   # the drifted ids stand out
    on_ray = compare_versions(a, b, "UR", engine=cluster, **OPTS)
    _same_comparison(on_ray, local)
    # the per-id cosines are the local pass's bits, the CKA sums equal to rounding
    assert np.array_equal(on_ray.raw_cosine, local.raw_cosine)
    assert np.array_equal(on_ray.aligned_cosine, local.aligned_cosine)


def test_paired_pass_partitioned_equals_the_streamed_one(cluster, tmp_path):
    """Many map ranges and partitions (on Ray and on the local engine) against the local pass held in one
    block and in many: same ids, rows, zero-norm count and per-id cosines, CKA and its interval to 1e-9."""
    a, b = _versions(tmp_path)
    one = paired_similarity(a, b, "UR", fit_sample=500)
    many = paired_similarity(a, b, "UR", fit_sample=500, block_rows=700, batch_rows=256)
    assert one.n_zero_norm == 1 and many.blocks == 5
    for engine, parts, rows in ((cluster, 5, 700), (LocalEngine(), 3, 1000), (LocalEngine(), 1, 10_000)):
        part = paired_similarity_partitioned(a, b, "UR", engine=engine, fit_sample=500, parts=parts,
                                             rows_per_task=rows)
        for ref in (one, many):
            assert np.array_equal(part.ids, ref.ids) and np.array_equal(part.pos_a, ref.pos_a)
            assert np.array_equal(part.pos_b, ref.pos_b) and part.n_zero_norm == ref.n_zero_norm
            assert part.raw_cosine is not None and ref.raw_cosine is not None
            np.testing.assert_allclose(part.raw_cosine, ref.raw_cosine, rtol=1e-9, atol=0)
            np.testing.assert_allclose(part.aligned_cosine, ref.aligned_cosine, rtol=1e-9, atol=0)
            np.testing.assert_array_equal(part.alignment.matrix, ref.alignment.matrix)
            for f in ("cka", "cka_low", "cka_high"):
                assert getattr(part, f) == pytest.approx(getattr(ref, f), rel=1e-9, abs=0), f


def test_different_dims_on_ray_equal_the_local_engine(cluster, tmp_path):
    a, b = _versions(tmp_path, d_a=8, d_b=6)
    local = compare_versions(a, b, "UR", **OPTS)
    assert local.raw_cosine.size == 0 and "partial-isometry" in local.alignment
    _same_comparison(compare_versions(a, b, "UR", engine=cluster, **OPTS), local)


def test_lee_compare_engine_ray_prints_what_local_prints(cluster, tmp_path, capsys):
    _versions(tmp_path / "root")
    args = ["compare", "v@20260101T000000Z", "v", "--root", str(tmp_path / "root"), "--k", "5", "--clusters", "3",
            "--sample", "150", "--json"]
    assert main([*args, "--engine", "local"]) == 0
    local = json.loads(capsys.readouterr().out)
    assert main([*args, "--engine", "ray"]) == 0
    _same_summary(json.loads(capsys.readouterr().out), local)
    assert main([*args, "--address", "auto"]) == 2          # an address needs --engine ray, as on lee analyze
    assert "--address auto names a Ray cluster; it needs --engine ray" in capsys.readouterr().err
