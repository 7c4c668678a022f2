"""The committed sample under fixtures/tiny is valid and equals a fresh regeneration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lee.snapshot import SnapshotStore, validate_snapshot
from lee.world.fixtures import write_fixtures
from lee.world.io import load_world

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tiny"


def test_committed_fixture_snapshots_are_valid():
    store = SnapshotStore(FIXTURES / "snapshots")
    assert len(store.variants()) == 6
    for v in store.variants():
        for t in store.times(v):
            validate_snapshot(store.path(v, t))


def test_committed_fixtures_equal_a_fresh_regeneration(tmp_path):
    fresh = write_fixtures(tmp_path / "tiny")
    a, b = load_world(FIXTURES / "world"), load_world(fresh / "world")
    for name in ("users", "items", "events"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.user_latent, b.user_latent)
    old, new = SnapshotStore(FIXTURES / "snapshots"), SnapshotStore(fresh / "snapshots")
    assert old.variants() == new.variants()
    for v in old.variants():
        assert old.times(v) == new.times(v)
        for t in old.times(v):
            for kind in old.open(v, t).kinds:
                x, y = old.open(v, t).load(kind), new.open(v, t).load(kind)
                np.testing.assert_array_equal(x.ids, y.ids)
                np.testing.assert_array_equal(x.vectors, y.vectors)
