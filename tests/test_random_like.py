"""``lee snapshots random-like``: a random snapshot with the same ids, dims and per-dimension mean and std."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.cli.main import main
from lee.errors import InputError
from lee.snapshot import EmbeddingTable, Snapshot, SnapshotStore, TableKind, write_snapshot
from lee.snapshot.random_like import random_like_vectors, write_random_like

TINY = Path(__file__).resolve().parents[1] / "fixtures" / "tiny" / "snapshots"


def _source(tmp_path: Path) -> Path:
    """A snapshot with int ids (UR, with updated_at), string ids (IR) and a dead dimension in IR."""
    rng = np.random.default_rng(5)
    ur = EmbeddingTable(np.arange(100, 400, dtype=np.int64), (rng.standard_normal((300, 6)) * [1, 2, 3, 4, 5, 6]
                                                           + [0, -1, 10, 0, 3, 7]).astype(np.float32),
                        updated_at=np.arange(300, dtype=np.int64) + 1_700_000_000)
    ir_vec = rng.gamma(2.0, 1.0, (50, 4)).astype(np.float32)
    ir_vec[:, 2] = 0.25                                  # a dead dimension stays dead
    ir = EmbeddingTable(np.array([f"item-{k}" for k in range(50)], dtype=object), ir_vec)
    return write_snapshot(tmp_path / "root", "learned", "2026-01-01T00:05:00Z", {"UR": ur, "IR": ir})


def test_random_like_keeps_ids_dims_means_and_stds(tmp_path, capsys):
    src_path = _source(tmp_path)
    assert main(["snapshots", "random-like", str(src_path), "--variant", "rl", "--seed", "3", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    out = Snapshot.open(doc["snapshot"])
    src = Snapshot.open(src_path)
    assert out.path.parent.parent == src_path.parent.parent          # beside the source, same event time
    assert out.variant == "rl" and out.event_time == src.event_time
    assert doc["tables"] == {"UR": {"rows": 300, "dim": 6}, "IR": {"rows": 50, "dim": 4}}
    assert out.manifest.extra["random_like"]["source"] == str(src_path) and out.manifest.source_layer == "random-like"
    for kind in (TableKind.UR, TableKind.IR):
        a, b = src.load(kind), out.load(kind)
        np.testing.assert_array_equal(a.ids, b.ids)
        assert b.vectors.shape == a.vectors.shape and b.vectors.dtype == np.float32
        np.testing.assert_allclose(b.vectors.mean(0, dtype=np.float64), a.vectors.mean(0, dtype=np.float64),
                                   atol=2e-6 * (1 + np.abs(a.vectors).max()))
        np.testing.assert_allclose(b.vectors.std(0, dtype=np.float64), a.vectors.std(0, dtype=np.float64),
                                   rtol=1e-5, atol=1e-6)
        live = a.vectors.std(0) > 0
        assert not np.allclose(a.vectors[:, live], b.vectors[:, live])  # differs from the source
        # no information about the ids: per-column correlation with the source is near 0
        corr = [np.corrcoef(a.vectors[:, j], b.vectors[:, j])[0, 1] for j in np.flatnonzero(live)]
        assert np.max(np.abs(corr)) < 0.35
    np.testing.assert_array_equal(out.load("UR").updated_at, src.load("UR").updated_at)
    assert np.all(out.load("IR").vectors[:, 2] == np.float32(0.25))
    # the same seed gives the same snapshot; --root writes elsewhere
    assert main(["snapshots", "random-like", str(src_path), "--variant", "rl2", "--seed", "3",
                 "--root", str(tmp_path / "other"), "--json"]) == 0
    other = Snapshot.open(json.loads(capsys.readouterr().out)["snapshot"])
    assert other.path.parent.parent == tmp_path / "other"
    np.testing.assert_array_equal(other.load("UR").vectors, out.load("UR").vectors)
    assert SnapshotStore(tmp_path / "root").variants() == ["learned", "rl"]


def test_random_like_refuses_bad_requests(tmp_path, capsys):
    src_path = _source(tmp_path)
    assert main(["snapshots", "random-like", str(src_path), "--variant", "learned"]) == 2
    assert "would replace its own source" in " ".join(capsys.readouterr().err.split())
    assert main(["snapshots", "random-like", str(src_path), "--variant", "rl"]) == 0
    capsys.readouterr()
    assert main(["snapshots", "random-like", str(src_path), "--variant", "rl"]) == 2   # exists; no --overwrite
    assert "already exists" in capsys.readouterr().err
    assert main(["snapshots", "random-like", str(src_path), "--variant", "rl", "--overwrite", "--json"]) == 0
    capsys.readouterr()
    assert main(["snapshots", "random-like", str(src_path.parent), "--variant", "x"]) == 2  # a variant directory
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("error: ") and "is a variant directory" in err and "Traceback" not in err


def test_random_like_vectors_edge_cases():
    rng = np.random.default_rng(0)
    one = np.array([[1.5, -2.0, 3.0]], dtype=np.float32)
    np.testing.assert_array_equal(random_like_vectors(one, rng), one)     # one row: nothing to randomise
    with pytest.raises(InputError, match="2-D"):
        random_like_vectors(np.zeros(4, dtype=np.float32), rng)


def test_write_random_like_on_a_planted_snapshot(tmp_path):
    """On the committed tiny oracle: every table keeps ids and moments (function API, int ids)."""
    src = SnapshotStore(TINY).latest("oracle")
    path = write_random_like(src, tmp_path, "random-like", seed=1)
    out = Snapshot.open(path)
    assert out.kinds == src.kinds
    for kind in src.kinds:
        a, b = src.load(kind), out.load(kind)
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_allclose(b.vectors.std(0), a.vectors.std(0), rtol=1e-4)
