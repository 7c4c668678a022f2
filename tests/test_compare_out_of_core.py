"""Out of core (issue 18) for "Compare two versions": :func:`compare_versions` and
:func:`paired_similarity` stream both tables within ``memory_mb`` and give what the unbounded run
and a direct numpy computation on the loaded tables give — per-id raw and aligned cosine and CKA to
1e-9 relative, the sampled measures (kNN overlap, cluster ARI, drift tests) identical with the same
seed — also when the files are decoded by Arrow rather than mapped. A bound that cannot hold even
1,024-row chunks is refused up front, naming the least bound, which then runs. The subprocess
measurement of peak memory is in tests/test_memory_cap.py."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import lee.snapshot.reader as reader
from analysis.compare import compare_versions
from analysis.compare.paired import gather_rows, linear_cka, paired_similarity
from lee.errors import InputError
from lee.snapshot import EmbeddingTable, SnapshotStore, write_snapshot

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"
N, D = 3000, 16
SMALL = dict(knn_max=600, drift_sample=150, mmd_permutations=60, classifier_permutations=30, clusters=4, seed=3)


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> SnapshotStore:
    """Two snapshots: planted groups, then each moved a little and rotated, 100 ids lost, 80 new, rows shuffled."""
    root = tmp_path_factory.mktemp("cmp-ooc")
    rng = np.random.default_rng(11)
    centers = rng.standard_normal((4, D)).astype(np.float32) * 3
    a = (centers[rng.integers(0, 4, N)] + rng.standard_normal((N, D))).astype(np.float32)
    ids = rng.permutation(10 * N)[:N].astype(np.int64)
    write_snapshot(root, "v", T0, {"UR": EmbeddingTable(ids, a)})
    q, _ = np.linalg.qr(rng.standard_normal((D, D)))
    keep = np.arange(100, N)
    b = np.r_[(a[keep] + 0.1 * rng.standard_normal((keep.size, D))) @ q,
              rng.standard_normal((80, D))].astype(np.float32)
    ids_b = np.r_[ids[keep], np.arange(10 * N, 10 * N + 80, dtype=np.int64)]
    perm = rng.permutation(ids_b.size)
    write_snapshot(root, "v", T1, {"UR": EmbeddingTable(ids_b[perm], b[perm])})
    return SnapshotStore(root)


def _least_bound(a, b, **kw) -> float:
    with pytest.raises(InputError, match=r"cannot run within 1 MiB") as err:
        compare_versions(a, b, "UR", memory_mb=1, **kw)
    return float(re.search(r"give --memory-mb (\d+) or more", str(err.value)).group(1))


@pytest.mark.parametrize("decoded", [False, True], ids=["mapped", "arrow-decoded"])
def test_streamed_comparison_equals_the_unbounded_one_and_numpy(store, monkeypatch, decoded) -> None:
    a, b = store.open("v", T0), store.open("v", T1)
    full = compare_versions(a, b, "UR", **SMALL)
    if decoded:  # every read goes through Arrow's decoder, as for a compressed or dictionary-encoded file
        monkeypatch.setattr(reader, "raw_vectors", lambda *a, **k: None)
    least = _least_bound(a, b, **SMALL)
    tight = compare_versions(a, b, "UR", memory_mb=least, **SMALL)
    np.testing.assert_array_equal(tight.ids, full.ids)
    for x, y in ((tight.raw_cosine, full.raw_cosine), (tight.aligned_cosine, full.aligned_cosine)):
        np.testing.assert_allclose(x, y, rtol=1e-9, atol=0)
    assert rel(tight.cka, full.cka) < 1e-9 and rel(tight.cka_low, full.cka_low) < 1e-9
    np.testing.assert_array_equal(tight.knn_rows, full.knn_rows)
    np.testing.assert_array_equal(tight.knn_overlap, full.knn_overlap)
    assert tight.cluster == full.cluster and tight.cluster["rows"] == 600
    pd.testing.assert_frame_equal(tight.drift, full.drift)
    # against numpy on the loaded tables
    ta, tb = a.load("UR"), b.load("UR")
    pa = pd.Index(ta.ids).get_indexer(tight.ids)
    xa = ta.vectors[pa].astype(np.float64)
    xb = tb.vectors[pd.Index(tb.ids).get_indexer(tight.ids)].astype(np.float64)
    cos = (xa * xb).sum(1) / np.linalg.norm(xa, axis=1) / np.linalg.norm(xb, axis=1)
    np.testing.assert_allclose(tight.raw_cosine, cos, atol=2e-6)
    assert rel(tight.cka, linear_cka(xa, xb)) < 1e-9
    assert tight.n_shared == N - 100 and np.median(tight.aligned_cosine) > 0.99 > np.median(tight.raw_cosine) + 0.5


def test_many_blocks_of_the_earlier_table_give_the_same_pass(store) -> None:
    a, b = store.open("v", T0), store.open("v", T1)
    one = paired_similarity(a, b, "UR", fit_sample=500)
    many = paired_similarity(a, b, "UR", fit_sample=500, batch_rows=128, block_rows=300)
    assert one.blocks == 1 and many.blocks == 10
    np.testing.assert_allclose(many.aligned_cosine, one.aligned_cosine, rtol=1e-9, atol=0)
    np.testing.assert_allclose(many.raw_cosine, one.raw_cosine, rtol=1e-9, atol=0)
    assert rel(many.cka, one.cka) < 1e-9 and rel(many.cka_high, one.cka_high) < 1e-9


def test_gather_rows_in_any_order_equals_the_loaded_table(store) -> None:
    a = store.open("v", T0)
    rows = np.random.default_rng(0).choice(N, 700, replace=True)
    np.testing.assert_array_equal(gather_rows(a, "UR", rows, batch_rows=97), a.load("UR").vectors[rows])


def test_a_bound_too_small_is_refused_up_front_naming_the_least(store, monkeypatch) -> None:
    a, b = store.open("v", T0), store.open("v", T1)
    read = []
    monkeypatch.setattr(type(a), "vector_batches", lambda *args, **kw: read.append(1) or iter(()))
    least = _least_bound(a, b, **SMALL)
    assert read == []                         # refused before a vector was read
    with pytest.raises(InputError, match=r"smaller samples"):
        compare_versions(a, b, "UR", memory_mb=least - 1, **SMALL)


def test_lee_compare_states_and_keeps_its_memory_bound(store, capsys) -> None:
    from app.cli.main import main

    args = ["compare", f"v@{T0}", f"v@{T1}", "--root", str(store.root), "--sample", "150", "--knn-max", "600",
            "--clusters", "4", "--seed", "3", "--json"]
    assert main(args + ["--memory-mb", "1"]) == 2
    err = " ".join(capsys.readouterr().err.split())   # the message is wrapped to the terminal
    least = int(re.search(r"give --memory-mb (\d+) or more", err).group(1))
    assert "Traceback" not in err and "cannot run within 1 MiB" in err
    assert main(args + ["--memory-mb", str(least)]) == 0
    assert '"cka"' in capsys.readouterr().out
