"""Round trip, discovery and atomic-write tests for ``lee.snapshot``.

The round trip is property-based: whatever ids, vectors and ``updated_at`` go into
``write_snapshot`` must come back bit-for-bit from ``Snapshot.load`` and ``iter_chunks``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import lee.fileio as fileio_mod
import lee.snapshot.writer as writer_mod
from lee.errors import SnapshotError, SnapshotNotFoundError
from lee.snapshot import (
    FORMAT_VERSION,
    EmbeddingTable,
    Snapshot,
    SnapshotStore,
    TableKind,
    validate_snapshot,
    write_snapshot,
)
from lee.snapshot.store import SkippedSnapshotWarning
from lee.timeutil import time_dirname

T0 = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)

# --------------------------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------------------------

SPECIAL_STRINGS = [
    "",
    " ",
    "<script>",
    "<script>alert('x')</script>",
    "\x00",
    "a\x00b",
    "null",
    "None",
    "NaN",
    "0",
    "-1",
    "1e308",
    "é",
    "e\u0301",  # decomposed é: must stay distinct from the composed one
    "日本語",
    "🙂",
    "\u202e",
    "../etc/passwd",
    "a,b;c\"d'e",
    "\n\t\r",
    "x" * 1000,
]

finite_f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


def _bits_matrix(seed: int, rows: int, dim: int) -> np.ndarray:
    """Random float32 bit patterns (subnormals, -0.0, huge values), non-finite ones replaced."""
    rng = np.random.default_rng(seed)
    m = rng.integers(0, 2**32, size=(rows, dim), dtype=np.uint64).astype(np.uint32).view(np.float32)
    m = m.copy()
    bad = ~np.isfinite(m)
    m[bad] = np.float32(-0.0)
    return m


@st.composite
def embedding_tables(draw, max_rows: int = 300, max_dim: int = 70) -> EmbeddingTable:
    rows = draw(st.integers(1, max_rows))
    dim = draw(st.integers(1, max_dim))
    if draw(st.booleans()):
        ids = np.asarray(
            draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=rows, max_size=rows, unique=True)),
            dtype=np.int64,
        )
    else:
        text = st.one_of(st.sampled_from(SPECIAL_STRINGS), st.text(max_size=12))
        ids = np.empty(rows, dtype=object)
        ids[:] = draw(st.lists(text, min_size=rows, max_size=rows, unique=True))
    if draw(st.booleans()):
        vectors = draw(arrays(np.float32, (rows, dim), elements=finite_f32))
    else:
        vectors = _bits_matrix(draw(st.integers(0, 2**32 - 1)), rows, dim)
    if draw(st.booleans()):  # non-contiguous / Fortran-ordered input must be written correctly too
        vectors = np.asfortranarray(vectors)
    updated_at = None
    if draw(st.booleans()):
        updated_at = np.asarray(
            draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=rows, max_size=rows)), dtype=np.int64
        )
    return EmbeddingTable(ids=ids, vectors=vectors, updated_at=updated_at)


variant_names = st.text(
    alphabet=st.sampled_from(list("abcXYZ019-_.@") + ["é", "模"]), min_size=1, max_size=20
).filter(lambda s: not s.startswith("."))

event_times = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 12, 31), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=0))

@pytest.fixture(autouse=True, scope="module")
def _every_finite_float32_is_plausible():
    """These round trips cover every finite float32 bit pattern (3.4e38 included), so the reader's
    plausibility bound (default ±1e6, tested in test_hostile_inputs.py) is lifted for this module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LEE_MAX_ABS_VALUE", "inf")
        yield


ROUNDTRIP_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def assert_same_table(got: EmbeddingTable, want: EmbeddingTable) -> None:
    assert got.vectors.dtype == np.float32
    assert got.vectors.flags.c_contiguous
    assert got.vectors.shape == want.vectors.shape
    # bit-identical, so -0.0 vs 0.0 and subnormals are checked too
    want_bits = np.ascontiguousarray(want.vectors, dtype=np.float32).view(np.uint32)
    np.testing.assert_array_equal(got.vectors.view(np.uint32), want_bits)
    if want.id_type == "int64":
        assert got.ids.dtype == np.int64
        np.testing.assert_array_equal(got.ids, want.ids)
    else:
        assert got.ids.dtype == object
        assert list(got.ids) == list(want.ids)
        assert all(type(x) is str for x in got.ids)
    if want.updated_at is None:
        assert got.updated_at is None
    else:
        assert got.updated_at is not None
        assert got.updated_at.dtype == np.int64
        np.testing.assert_array_equal(got.updated_at, want.updated_at)


def concat_chunks(chunks: list[EmbeddingTable]) -> EmbeddingTable:
    assert chunks, "iter_chunks yielded nothing"
    upd = None if chunks[0].updated_at is None else np.concatenate([c.updated_at for c in chunks])
    return EmbeddingTable(
        ids=np.concatenate([c.ids for c in chunks]),
        vectors=np.ascontiguousarray(np.concatenate([c.vectors for c in chunks])),
        updated_at=upd,
    )


def small_table(n: int = 4, dim: int = 3, start: int = 0, value: float = 1.0) -> EmbeddingTable:
    return EmbeddingTable(
        ids=np.arange(start, start + n, dtype=np.int64),
        vectors=np.full((n, dim), value, dtype=np.float32),
    )


# --------------------------------------------------------------------------------------------
# 1. round trip
# --------------------------------------------------------------------------------------------


@ROUNDTRIP_SETTINGS
@given(
    table=embedding_tables(),
    kind=st.sampled_from(list(TableKind)),
    variant=variant_names,
    when=event_times,
    source_layer=st.text(max_size=20),
    chunk_rows=st.integers(1, 400),
)
def test_roundtrip_single_table(table, kind, variant, when, source_layer, chunk_rows):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = write_snapshot(root, variant, when, {kind: table}, source_layer=source_layer)
        assert path == root / variant / time_dirname(when)
        assert sorted(p.name for p in path.iterdir()) == sorted(["manifest.json", kind.filename])
        assert [p.name for p in (root / variant).iterdir()] == [path.name]  # no temporary leftovers

        snap = Snapshot.open(path)
        m = snap.manifest
        assert m.format_version == FORMAT_VERSION
        assert m.variant == variant == snap.variant
        assert m.event_time == when == snap.event_time
        assert m.event_time.tzinfo is not None
        assert m.source_layer == source_layer
        assert snap.kinds == [kind]
        info = snap.info(kind)
        assert (info.kind, info.file, info.dim, info.rows, info.id_type, info.has_updated_at) == (
            kind,
            kind.filename,
            table.dim,
            len(table),
            table.id_type,
            table.updated_at is not None,
        )
        # the manifest on disk says the same as the parsed one
        raw = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        assert raw["variant"] == variant and raw["tables"][kind.value]["rows"] == len(table)

        assert_same_table(snap.load(kind), table)
        assert_same_table(snap.load(kind.value, verify=False), table)

        chunks = list(snap.iter_chunks(kind, rows=chunk_rows))
        assert all(1 <= len(c) <= chunk_rows for c in chunks)
        assert len(chunks) == -(-len(table) // chunk_rows)
        assert_same_table(concat_chunks(chunks), table)

        reports = validate_snapshot(path, chunk_rows=chunk_rows)
        assert [(r.kind, r.rows, r.dim, r.id_type) for r in reports] == [
            (kind, len(table), table.dim, table.id_type)
        ]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    kinds=st.lists(st.sampled_from(list(TableKind)), min_size=1, max_size=4, unique=True),
    data=st.data(),
    when=event_times,
)
def test_roundtrip_several_tables(kinds, data, when):
    tables = {k: data.draw(embedding_tables(max_rows=40, max_dim=16), label=k.value) for k in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        path = write_snapshot(tmp, "multi", when.isoformat(), {k.value: t for k, t in tables.items()},
                              source_layer="layer.7", extra={"seed": 3, "note": "<script>"})
        snap = Snapshot.open(path)
        assert snap.kinds == [k for k in TableKind if k in tables]
        assert snap.manifest.extra == {"seed": 3, "note": "<script>"}
        for k, t in tables.items():
            assert_same_table(snap.load(k), t)
            assert_same_table(concat_chunks(list(snap.iter_chunks(k, rows=7))), t)
            assert snap.info(k).dim == t.dim and snap.info(k).rows == len(t)
        assert {r.kind for r in validate_snapshot(path, chunk_rows=5)} == set(tables)


def test_roundtrip_edge_values_exact(tmp_path):
    """Hand-picked float32 edge values survive bit for bit; large int64 and odd string ids survive."""
    f32 = np.finfo(np.float32)
    vals = np.array(
        [0.0, -0.0, f32.tiny, -f32.tiny, f32.smallest_subnormal, -f32.smallest_subnormal, f32.max, f32.min,
         f32.eps, 1.0, -1.0, np.float32(1 / 3)],
        dtype=np.float32,
    ).reshape(2, 6)
    ints = EmbeddingTable(ids=np.array([-(2**63), 2**63 - 1], dtype=np.int64), vectors=vals,
                          updated_at=np.array([-(2**63), 2**63 - 1], dtype=np.int64))
    strs = EmbeddingTable(ids=np.array(["<script>", "e\u0301"], dtype=object), vectors=vals[::-1].copy())
    path = write_snapshot(tmp_path, "edge", T0, {"UR": ints, "IR": strs})
    snap = Snapshot.open(path)
    assert_same_table(snap.load("UR"), ints)
    assert_same_table(snap.load("IR"), strs)
    assert np.signbit(snap.load("UR").vectors[0, 1])  # -0.0 stays negative


def test_event_time_forms_are_equivalent(tmp_path):
    """ISO with Z, ISO with offset, directory form, epoch seconds and datetime name the same snapshot."""
    when = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    path = write_snapshot(tmp_path, "v", "2026-03-04T05:06:07Z", {"UR": small_table()})
    assert path.name == "20260304T050607Z"
    store = SnapshotStore(tmp_path)
    for form in ("2026-03-04T05:06:07Z", "2026-03-04T07:06:07+02:00", "20260304T050607Z",
                 int(when.timestamp()), when, when.replace(tzinfo=None)):
        assert store.open("v", form).path == path
    assert store.times("v") == [when]


# --------------------------------------------------------------------------------------------
# 2. store discovery
# --------------------------------------------------------------------------------------------


MINUTES = [0, 5, 10, 20]


@pytest.fixture
def store_root(tmp_path) -> Path:
    for m in MINUTES:
        write_snapshot(tmp_path, "alpha", T0 + timedelta(minutes=m), {"UR": small_table(value=m)})
    write_snapshot(tmp_path, "beta", T0 + timedelta(minutes=7), {"IR": small_table()})
    write_snapshot(tmp_path, "gamma@2", T0, {"IR": small_table()})
    return tmp_path


def minute_of(snap: Snapshot) -> float:
    return (snap.event_time - T0).total_seconds() / 60


def test_store_variants_and_times(store_root):
    store = SnapshotStore(store_root)
    assert store.variants() == ["alpha", "beta", "gamma@2"]
    assert store.times("alpha") == [T0 + timedelta(minutes=m) for m in MINUTES]
    assert store.times("beta") == [T0 + timedelta(minutes=7)]
    # the snapshot really is the one written at that time
    assert float(store.open("alpha", T0 + timedelta(minutes=10)).load("UR").vectors[0, 0]) == 10.0
    assert minute_of(store.latest("alpha")) == 20


def test_store_lists_non_snapshot_entries_as_problems(store_root):
    """Entries that are not snapshots are left out of the listings, but never silently: each is a
    problem with its path and reason, and listing warns about it once."""
    (store_root / "alpha" / "notes").mkdir()  # no manifest
    (store_root / "alpha" / "20990101T000000Z").mkdir()  # time-shaped but no manifest
    (store_root / "alpha" / "README.txt").write_text("hi")
    (store_root / "empty_variant").mkdir()
    (store_root / "stray.txt").write_text("x")
    store = SnapshotStore(store_root)
    with pytest.warns(SkippedSnapshotWarning) as caught:
        assert store.variants() == ["alpha", "beta", "gamma@2"]
    assert len(caught) == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # each problem is warned about once per store
        assert store.times("alpha") == [T0 + timedelta(minutes=m) for m in MINUTES]
    got = {p.path.relative_to(store_root).as_posix(): p.reason for p in store.problems()}
    assert sorted(got) == ["alpha/20990101T000000Z", "alpha/README.txt", "alpha/notes", "stray.txt"]
    assert got["alpha/20990101T000000Z"].startswith("holds no manifest.json")
    assert got["alpha/notes"].startswith("directory name is not an event time")
    assert got["alpha/README.txt"].startswith("is a regular file, not a snapshot directory")
    assert got["stray.txt"].startswith("is a regular file, not a variant directory")


@pytest.mark.parametrize(
    ("query_minutes", "expected"),
    [
        (-60, 0),  # before the first: the first
        (0, 0),  # exact
        (2, 0),
        (2.5, 0),  # tie between 0 and 5 goes to the earlier
        (3, 5),
        (7.5, 5),  # tie between 5 and 10
        (8, 10),
        (15, 10),  # tie between 10 and 20
        (15 + 1 / 60, 20),
        (20, 20),
        (10_000, 20),  # after the last: the last
    ],
)
def test_store_nearest(store_root, query_minutes, expected):
    store = SnapshotStore(store_root)
    assert minute_of(store.nearest("alpha", T0 + timedelta(minutes=query_minutes))) == expected


@pytest.mark.parametrize(
    ("query_minutes", "expected"),
    [(0, 0), (4, 0), (5, 5), (9.99, 5), (10, 10), (19, 10), (20, 20), (500, 20)],
)
def test_store_nearest_at_or_before(store_root, query_minutes, expected):
    store = SnapshotStore(store_root)
    got = store.nearest("alpha", T0 + timedelta(minutes=query_minutes), at_or_before=True)
    assert minute_of(got) == expected


def test_store_nearest_at_or_before_none(store_root):
    store = SnapshotStore(store_root)
    with pytest.raises(SnapshotNotFoundError, match=r"no snapshot at or before 2025-12-31T23:59:00Z; "
                                                    r"the first is 2026-01-01T00:00:00Z") as exc:
        store.nearest("alpha", T0 - timedelta(minutes=1), at_or_before=True)
    assert exc.value.path == store_root / "alpha"


def test_store_previous(store_root):
    store = SnapshotStore(store_root)
    s10 = store.open("alpha", T0 + timedelta(minutes=10))
    assert minute_of(store.previous(s10)) == 5
    assert minute_of(store.previous(s10, minutes=10)) == 0
    assert minute_of(store.previous(store.open("alpha", T0 + timedelta(minutes=5)))) == 0


def test_store_previous_missing_raises_with_times(store_root):
    store = SnapshotStore(store_root)
    s20 = store.open("alpha", T0 + timedelta(minutes=20))
    with pytest.raises(SnapshotNotFoundError,
                       match=r"no snapshot 5 minutes before 2026-01-01T00:20:00Z \(wanted 2026-01-01T00:15:00Z, "
                             r"tolerance 0 min\); times present: 2026-01-01T00:00:00Z, ") as exc:
        store.previous(s20)
    assert exc.value.path == store_root / "alpha"
    assert "2026-01-01T00:10:00Z" in str(exc.value)
    # the first snapshot has nothing before it, whatever the tolerance
    s0 = store.open("alpha", T0)
    with pytest.raises(SnapshotNotFoundError, match="no snapshot 5 minutes before 2026-01-01T00:00:00Z"):
        store.previous(s0, tolerance_minutes=60)


def test_store_previous_tolerance(store_root):
    store = SnapshotStore(store_root)
    s20 = store.open("alpha", T0 + timedelta(minutes=20))
    # wanted 00:15; 00:10 is 5 minutes before that
    with pytest.raises(SnapshotNotFoundError):
        store.previous(s20, tolerance_minutes=4.9)
    assert minute_of(store.previous(s20, tolerance_minutes=5)) == 10
    assert minute_of(store.previous(s20, tolerance_minutes=100)) == 10  # the latest at or before, not the first
    # a snapshot after the wanted time is never taken, however close
    s10 = store.open("alpha", T0 + timedelta(minutes=10))
    assert minute_of(store.previous(s10, minutes=4, tolerance_minutes=1)) == 5
    with pytest.raises(SnapshotNotFoundError, match="wanted 2026-01-01T00:04:00Z"):
        store.previous(s10, minutes=6, tolerance_minutes=0.5)


def test_store_errors(tmp_path, store_root):
    with pytest.raises(SnapshotNotFoundError, match="is not a snapshot root") as exc:
        SnapshotStore(tmp_path / "nope")
    assert exc.value.path == tmp_path / "nope"
    store = SnapshotStore(store_root)
    with pytest.raises(SnapshotNotFoundError, match=r"has no variant 'delta'; variants present: alpha, beta, gamma@2"):
        store.times("delta")
    with pytest.raises(SnapshotNotFoundError, match=r"variant 'alpha' has no snapshot at 2026-01-01T00:01:00Z"):
        store.open("alpha", T0 + timedelta(minutes=1))


def test_hidden_tmp_dir_is_never_listed(store_root):
    """A complete-looking leftover ``.tmp-*`` directory (manifest and all) is invisible to the store."""
    src = store_root / "alpha" / time_dirname(T0 + timedelta(minutes=5))
    shutil.copytree(src, store_root / "alpha" / f".tmp-{time_dirname(T0 + timedelta(minutes=15))}-deadbeef")
    shutil.copytree(src, store_root / "alpha" / ".tmp-20260101T001500Z")
    # a variant holding only a leftover temporary directory is not a variant
    (store_root / "delta").mkdir()
    shutil.copytree(src, store_root / "delta" / f".tmp-{time_dirname(T0)}-0badf00d")
    # a hidden variant directory is not listed either
    shutil.copytree(store_root / "beta", store_root / ".tmp-beta")

    store = SnapshotStore(store_root)
    assert store.variants() == ["alpha", "beta", "gamma@2"]
    assert store.times("alpha") == [T0 + timedelta(minutes=m) for m in MINUTES]
    assert store.times("delta") == []
    assert minute_of(store.nearest("alpha", T0 + timedelta(minutes=15, seconds=1))) == 20
    assert minute_of(store.nearest("alpha", T0 + timedelta(minutes=15), at_or_before=True)) == 10


def test_crash_leftover_tmp_dir_is_never_listed(tmp_path, monkeypatch):
    """Simulate a crash after every file of the temporary directory was written, before the rename."""
    write_snapshot(tmp_path, "v", T0, {"UR": small_table()})

    def crash(path):
        raise RuntimeError("power cut")

    monkeypatch.setattr(fileio_mod, "fsync_path", crash)
    monkeypatch.setattr(fileio_mod.shutil, "rmtree", lambda *a, **k: None)  # the cleanup never ran
    with pytest.raises(RuntimeError, match="power cut"):
        write_snapshot(tmp_path, "v", T0 + timedelta(minutes=5), {"UR": small_table(), "IR": small_table()})
    monkeypatch.undo()

    leftovers = [p for p in (tmp_path / "v").iterdir() if p.name.startswith(".tmp-")]
    assert len(leftovers) == 1 and (leftovers[0] / "manifest.json").is_file()  # the crash did leave one
    store = SnapshotStore(tmp_path)
    assert store.variants() == ["v"]
    assert store.times("v") == [T0]
    assert minute_of(store.nearest("v", T0 + timedelta(minutes=5))) == 0
    with pytest.raises(SnapshotNotFoundError):
        store.open("v", T0 + timedelta(minutes=5))


# --------------------------------------------------------------------------------------------
# 3. atomic writer
# --------------------------------------------------------------------------------------------


def _fail_on_call(monkeypatch, n: int) -> list[int]:
    real = writer_mod.write_parquet
    calls = [0]

    def flaky(table, sink, **kw):
        calls[0] += 1
        if calls[0] == n:
            raise RuntimeError("disk full (injected)")
        return real(table, sink, **kw)

    monkeypatch.setattr(writer_mod, "write_parquet", flaky)
    return calls


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    calls = _fail_on_call(monkeypatch, 2)
    with pytest.raises(RuntimeError, match="injected"):
        write_snapshot(tmp_path, "v", T0, {"UR": small_table(), "IR": small_table(), "CR_user": small_table()})
    assert calls[0] == 2
    final = tmp_path / "v" / time_dirname(T0)
    assert not final.exists()
    # nothing at all: no final dir, no .tmp-*, no .old-*, not even the variant directory it created
    assert list(tmp_path.iterdir()) == []
    assert SnapshotStore(tmp_path).variants() == []
    # and a retry then succeeds
    monkeypatch.undo()
    write_snapshot(tmp_path, "v", T0, {"UR": small_table(), "IR": small_table()})
    assert validate_snapshot(final)


def test_failed_overwrite_keeps_old_snapshot(tmp_path, monkeypatch):
    old = write_snapshot(tmp_path, "v", T0, {"UR": small_table(value=1.0)})
    _fail_on_call(monkeypatch, 2)
    with pytest.raises(RuntimeError, match="injected"):
        write_snapshot(tmp_path, "v", T0, {"UR": small_table(value=2.0), "IR": small_table()}, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == [old.name]
    snap = Snapshot.open(old)
    assert snap.kinds == [TableKind.UR]
    assert np.all(snap.load("UR").vectors == 1.0)
    validate_snapshot(old)


def test_existing_snapshot_without_overwrite_raises(tmp_path):
    path = write_snapshot(tmp_path, "v", T0, {"UR": small_table(value=1.0)})
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    with pytest.raises(SnapshotError, match=r"a snapshot already exists here; pass overwrite=True") as exc:
        write_snapshot(tmp_path, "v", T0, {"UR": small_table(value=2.0)})
    assert exc.value.path == path
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert [p.name for p in (tmp_path / "v").iterdir()] == [path.name]


def test_overwrite_replaces(tmp_path):
    path = write_snapshot(tmp_path, "v", T0, {"UR": small_table(value=1.0), "IR": small_table()},
                          source_layer="old")
    again = write_snapshot(tmp_path, "v", T0, {"CR_item": small_table(n=6, dim=5, value=2.0)},
                           source_layer="new", overwrite=True)
    assert again == path
    assert sorted(p.name for p in path.iterdir()) == ["CR_item.parquet", "manifest.json"]  # old tables gone
    assert [p.name for p in (tmp_path / "v").iterdir()] == [path.name]  # no .old-* / .tmp-* left
    snap = Snapshot.open(path)
    assert snap.manifest.source_layer == "new"
    assert snap.kinds == [TableKind.CR_ITEM]
    t = snap.load("CR_item")
    assert t.vectors.shape == (6, 5) and np.all(t.vectors == 2.0)
    validate_snapshot(path)


def test_refused_write_creates_nothing(tmp_path):
    """Content checks run before anything touches the disk."""
    bad = EmbeddingTable(ids=np.array([1, 1]), vectors=np.ones((2, 2), np.float32))
    with pytest.raises(SnapshotError, match="duplicate id"):
        write_snapshot(tmp_path, "v", T0, {"UR": small_table(), "IR": bad})
    assert list(tmp_path.iterdir()) == []


def test_manifest_sha256_and_size_are_the_files_own_when_hashed_on_a_second_thread(tmp_path, monkeypatch):
    """The writer hashes chunks on a second thread while it encodes; the manifest must still hold the
    sha256 and byte count of exactly the bytes on disk, for every table, also when more chunks are
    written than may wait for the hash (bound forced down to 1 here)."""
    import hashlib

    monkeypatch.setattr(writer_mod._HashingSink, "PENDING", 1)
    rng = np.random.default_rng(5)
    tables = {kind: EmbeddingTable(np.arange(n, dtype=np.int64), rng.standard_normal((n, 24), dtype=np.float32))
              for kind, n in (("UR", 30_000), ("IR", 7_001))}
    path = write_snapshot(tmp_path, "v", "2026-01-01T00:00:00Z", tables)
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    assert len(manifest["tables"]) == 2
    for entry in manifest["tables"].values():
        data = (path / entry["file"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["bytes"] == len(data)
    snap = SnapshotStore(tmp_path).latest("v")
    for kind, table in tables.items():
        np.testing.assert_array_equal(snap.load(kind).vectors, table.vectors)   # load verifies the sha256
