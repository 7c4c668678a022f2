"""The reader's streaming API (vector_batches, row_gather, verify_checksum) and snapshot discovery
(find_snapshot_dirs): each checked against Snapshot.load, the one reader everything else trusts."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from analysis.volatility import cosine_by_id
from lee.errors import SnapshotError
from lee.snapshot import EmbeddingTable, Snapshot, SnapshotStore, write_snapshot
from lee.snapshot.store import SkippedSnapshotWarning, find_snapshot_dirs, scan_snapshot_dirs

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def _table(rows: int, dim: int, seed: int = 0, str_ids: bool = False) -> EmbeddingTable:
    rng = np.random.default_rng(seed)
    ids = (np.array([f"u{k}" for k in range(rows)], dtype=object) if str_ids
           else rng.permutation(rows * 3)[:rows].astype(np.int64))
    return EmbeddingTable(ids, rng.standard_normal((rows, dim)).astype(np.float32))


@pytest.fixture(params=["writer-layout", "zstd"])
def snap(request, tmp_path):
    """A table big enough for several data pages, in the writer's layout or compressed (Arrow path)."""
    path = write_snapshot(tmp_path, "v", T0, {"UR": _table(70_000, 12), "IR": _table(50, 3, seed=1, str_ids=True)},
                          compression="none" if request.param == "writer-layout" else "zstd")
    return Snapshot.open(path), request.param


@pytest.mark.parametrize("rows", [1, 999, 131_072])
def test_vector_batches_concatenate_to_load(snap, rows):
    s, layout = snap
    want = s.load("UR").vectors
    batches = list(s.vector_batches("UR", rows=rows))
    assert all(b.dtype == np.float32 and b.ndim == 2 and b.shape[1] == 12 and 0 < len(b) <= rows for b in batches)
    got = np.concatenate(batches)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))  # bit for bit
    if layout == "writer-layout":
        assert not any(b.flags.owndata for b in batches)  # zero-copy views of the mapped file


def test_vector_batches_refuse_non_positive_size(snap):
    s, _ = snap
    with pytest.raises(SnapshotError, match=r"batch size must be positive; got rows=0"):
        next(s.vector_batches("UR", rows=0))


def test_row_gather_takes_rows_of_the_mapped_file(snap):
    s, layout = snap
    gather = s.row_gather("UR")
    if layout == "zstd":
        assert gather is None  # compressed pages cannot be mapped: callers use vector_batches
        return
    assert gather is not None and gather.n_rows == 70_000 and gather.dim == 12
    want = s.load("UR").vectors
    rows = np.random.default_rng(3).integers(0, 70_000, size=5000)
    rows[:3] = [0, 69_999, gather.rows_per_page]  # first, last, first row of the second page
    out = np.full((6000, 12), np.nan, np.float32)
    got = gather.take(rows, out)
    assert got.shape == (5000, 12) and np.shares_memory(got, out)  # written into the caller's buffer
    np.testing.assert_array_equal(got.view(np.uint32), want[rows].view(np.uint32))
    assert np.isnan(out[5000:]).all()  # nothing beyond the rows asked for is touched


def test_row_gather_none_when_rows_disagree_with_manifest(tmp_path):
    path = write_snapshot(tmp_path, "v", T0, {"UR": _table(100, 4)})
    raw = json.loads((path / "manifest.json").read_text())
    raw["tables"]["UR"]["rows"] = 99
    (path / "manifest.json").write_text(json.dumps(raw))
    assert Snapshot.open(path).row_gather("UR") is None


def _corrupt(snap: Snapshot, kind: str) -> None:
    path = snap.table_path(kind)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_verify_checksum_passes_and_words_a_mismatch_as_load_does(snap):
    s, _ = snap
    s.verify_checksum("UR")
    s.verify_checksum("IR")
    _corrupt(s, "UR")
    with pytest.raises(SnapshotError) as by_verify:
        s.verify_checksum("UR")
    with pytest.raises(SnapshotError) as by_load:
        s.load("UR")
    assert str(by_verify.value) == str(by_load.value)
    assert "UR.parquet: checksum mismatch: manifest says sha256 " in str(by_verify.value)
    assert by_verify.value.path == s.table_path("UR")
    s.verify_checksum("IR")  # the other table is unaffected


def test_volatility_reports_the_readers_checksum_error(tmp_path):
    """The join reads through the reader's API, so a corrupted file gets the reader's own wording."""
    t = _table(2000, 8)
    write_snapshot(tmp_path, "v", T0, {"UR": t})
    write_snapshot(tmp_path, "v", T1, {"UR": EmbeddingTable(t.ids, t.vectors * 2)})
    store = SnapshotStore(tmp_path)
    before, after = store.open("v", T0), store.open("v", T1)
    assert np.allclose(cosine_by_id(before, after).cosine, 1.0, atol=1e-6)
    _corrupt(before, "UR")
    with pytest.raises(SnapshotError) as err:
        cosine_by_id(before, after)
    with pytest.raises(SnapshotError) as by_load:
        before.load("UR")
    assert str(err.value) == str(by_load.value)
    assert cosine_by_id(before, after, verify=False).n_shared == 2000  # unverified, it still joins


# --------------------------------------------------------------------------------------------
# discovery
# --------------------------------------------------------------------------------------------


@pytest.fixture()
def root(tmp_path):
    r = tmp_path / "root"
    for variant in ("b", "a"):
        for t in (T1, T0):
            write_snapshot(r, variant, t, {"UR": _table(5, 2)})
    return r


def test_find_snapshot_dirs_at_every_level(root):
    a0, a1 = root / "a" / "20260101T000000Z", root / "a" / "20260101T000500Z"
    b0, b1 = root / "b" / "20260101T000000Z", root / "b" / "20260101T000500Z"
    assert find_snapshot_dirs(root) == [a0, a1, b0, b1]
    assert find_snapshot_dirs(str(root / "a")) == [a0, a1]
    assert find_snapshot_dirs(a1) == [a1]
    assert find_snapshot_dirs(root / "missing") == []
    assert find_snapshot_dirs(a1 / "manifest.json") == []
    (root / "empty").mkdir()
    assert find_snapshot_dirs(root / "empty") == []
    assert find_snapshot_dirs(root) == [a0, a1, b0, b1]


def test_find_snapshot_dirs_skips_hidden_temporaries(root):
    src = root / "a" / "20260101T000000Z"
    shutil.copytree(src, root / "a" / ".tmp-20260101T001000Z-deadbeef")   # an unfinished write
    shutil.copytree(src, root / "a" / ".old-20260101T000000Z-0badf00d")   # an unfinished overwrite
    shutil.copytree(root / "b", root / ".tmp-c-12345678")                # a hidden variant
    assert all(not p.name.startswith(".") and not p.parent.name.startswith(".") for p in find_snapshot_dirs(root))
    assert len(find_snapshot_dirs(root)) == 4 and len(find_snapshot_dirs(root / "a")) == 2


def test_discovery_reports_what_is_not_its_layout(root):
    """Only ``<variant>/<event-time>/`` directories are snapshots; a snapshot renamed to an odd name
    or nested deeper is not listed but reported, with its path and why, never silently skipped."""
    write_snapshot(root / "a", "sub", "2026-01-01T00:10:00Z", {"UR": _table(5, 2)})  # a/sub/<time>/
    write_snapshot(root / "a", "odd", T0, {"UR": _table(5, 2)})
    (root / "a" / "odd" / "20260101T000000Z").rename(root / "a" / "not-a-time")
    in_a, problems = scan_snapshot_dirs(root / "a")
    assert in_a == [root / "a" / "20260101T000000Z", root / "a" / "20260101T000500Z"]
    assert {p.path.name: p.reason.split(" (")[0] for p in problems} == {
        name: "directory name is not an event time in the writer's form" for name in ("not-a-time", "odd", "sub")}
    store = SnapshotStore(root)
    with pytest.warns(SkippedSnapshotWarning, match="not-a-time: directory name is not an event time"):
        assert store.variants() == ["a", "b"]
    assert [t.strftime("%Y%m%dT%H%M%SZ") for t in store.times("a")] == ["20260101T000000Z", "20260101T000500Z"]
    assert sorted(p.path.name for p in store.problems()) == ["not-a-time", "odd", "sub"]
