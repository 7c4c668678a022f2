"""Comparing versions and the release gate on a user's own data, through the documented commands only.

A Taobao-layout log with planted user x item factors is imported with ``lee data import``; the
user's "upstream model" versions are imported with ``lee snapshots import`` (one variant each, no
training run recorded, as a user's own files come):

* v1: planted factors + noise (the incumbent);
* v2: v1 after a little more training (same noise draw, smaller; same basis) -> ship;
* v3: v2 rotated by a random orthogonal matrix (a retrain: another basis) -> hold, named as such;
* v4: v2 with one dimension dead in both tables -> roll back to v1;
* v5: v2 without 30% of the users -> its coverage stated, the exact share of events kept.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.cli.main import main
from lee.snapshot import Snapshot

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import scripts.make_native_formats as native  # noqa: E402

TIME = "2017-12-04"


def _log_and_factors(out: Path, events: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
    """The Taobao maker's log, with the planted factors it drew and the ids it gave them."""
    captured = {}
    plant = native._plant

    def keep(*args: object, **kwargs: object) -> native.Planted:
        captured["p"] = plant(*args, **kwargs)  # type: ignore[arg-type]
        return captured["p"]

    native._plant = keep  # type: ignore[assignment]
    try:
        native.taobao(out, events, np.random.default_rng(5), False)
    finally:
        native._plant = plant  # type: ignore[assignment]
    p = captured["p"]
    log = pd.read_csv(out / "UserBehavior.csv", header=None, names=["user", "item", "cat", "behavior", "ts"])
    user_ids = np.arange(1, len(p.user_factors) + 1) * 7 + 1_000  # the maker's user ids
    order = np.argsort(user_ids[p.users], kind="stable")  # the log is sorted by user, stably
    item_ids = np.empty(len(p.item_factors), np.int64)
    item_ids[p.items[order]] = log["item"].to_numpy()
    assert (user_ids[p.users[order]] == log["user"].to_numpy()).all()
    return p.user_factors, p.item_factors, user_ids, item_ids, log


def lee(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    work = tmp_path_factory.mktemp("release")
    (work / "log").mkdir()
    users, items, uids, iids, log = _log_and_factors(work / "log", 9_000)
    rng = np.random.default_rng(1)
    nu, ni = rng.normal(size=users.shape), rng.normal(size=items.shape)
    versions = {"v1": (users + 0.8 * nu, items + 0.8 * ni, uids),
                "v2": (users + 0.6 * nu, items + 0.6 * ni, uids)}
    q, _ = np.linalg.qr(rng.normal(size=(users.shape[1],) * 2))
    versions["v3"] = (versions["v2"][0] @ q, versions["v2"][1] @ q, uids)
    u4, i4 = versions["v2"][0].copy(), versions["v2"][1].copy()
    u4[:, 3] = i4[:, 3] = 0.0
    versions["v4"] = (u4, i4, uids)
    kept = rng.random(len(uids)) >= 0.3
    versions["v5"] = (versions["v2"][0][kept], versions["v2"][1], uids[kept])
    return {"work": work, "versions": versions, "uids": uids, "iids": iids, "kept": uids[kept], "log": log}


@pytest.fixture(scope="module")
def imported(world: dict[str, object]) -> Path:
    """``lee data import`` of the log and ``lee snapshots import`` of every version (npz, and v1's UR as CSV)."""
    work: Path = world["work"]  # type: ignore[assignment]
    assert main(["data", "import", str(work / "log" / "UserBehavior.csv"), "--format", "csv", "--mapping",
                 str(REPO / "fixtures/formats/native/taobao/mapping.toml"), "--out", str(work / "data"), "-q"]) == 0
    for name, (u, i, uids) in world["versions"].items():  # type: ignore[attr-defined]
        np.savez(work / f"{name}_UR.npz", ids=uids, vectors=u.astype(np.float32))
        np.savez(work / f"{name}_IR.npz", ids=world["iids"], vectors=i.astype(np.float32))
        ur = work / f"{name}_UR.npz"
        if name == "v1":  # a user's vectors as a CSV table, id, v0..v7
            frame = pd.DataFrame(u.astype(np.float32), columns=[f"v{k}" for k in range(u.shape[1])])
            frame.insert(0, "id", uids)
            ur = work / "v1_UR.csv"
            frame.to_csv(ur, index=False)
        assert main(["snapshots", "import", "--root", str(work / "snaps"), "--variant", f"model-{name}", "--time",
                     TIME, "--table", f"UR={ur}", "--table", f"IR={work / f'{name}_IR.npz'}", "-q"]) == 0
    return work


def gate(work: Path, candidate: str, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict]:
    code, out, err = lee("gate", "--candidate", f"model-{candidate}", "--incumbent", "model-v1", "--root",
                         work / "snaps", "--data", work / "data", "--json", "-q", *extra, capsys=capsys)
    doc = json.loads(out)
    assert doc["exit_code"] == code
    return code, doc


def rule(doc: dict, name: str) -> dict:
    return next(r for r in doc["rules"] if r["rule"] == name)


def test_csv_import_keeps_every_id_and_value(imported: Path, world: dict[str, object]) -> None:
    snap = Snapshot.open(next((imported / "snaps" / "model-v1").iterdir()))
    table = snap.load("UR")
    u, _, uids = world["versions"]["v1"]  # type: ignore[index]
    order = np.argsort(uids)
    got = np.argsort(table.ids.astype(np.int64))
    assert (table.ids.astype(np.int64)[got] == uids[order]).all()
    np.testing.assert_array_equal(table.vectors[got], u.astype(np.float32)[order])


def test_more_training_in_one_basis_ships(imported: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = gate(imported, "v2", capsys)
    assert (code, doc["decision"]) == (0, "ship")
    sim = rule(doc, "similarity")
    assert "same-id cosine" in sim["reason"] and float(sim["measured"]) > 0.95
    assert "100% of the incumbent's" in sim["reason"]
    assert "coverage 100% of downstream events" in rule(doc, "lee")["reason"]


def test_a_retrain_in_another_basis_is_held_and_named(imported: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = gate(imported, "v3", capsys)
    assert (code, doc["decision"]) == (1, "hold")
    sim = rule(doc, "similarity")
    assert sim["fired"] and float(sim["measured"]) < 0.5
    assert "another basis" in sim["reason"]
    assert doc["details"]["similarity"]["aligned_cosine_mean"] > 0.95  # the same representation, rotated
    code, out, _ = lee("compare", "model-v1", "model-v3", "--root", imported / "snaps", "-q", capsys=capsys)
    assert code == 0 and "reading: same-id cosine" in out and "another basis" in out
    code, out, _ = lee("compare", "model-v1", "model-v2", "--root", imported / "snaps", "-q", capsys=capsys)
    assert code == 0 and "reading:" not in out


def test_a_dead_dimension_rolls_back_to_the_incumbent(imported: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = gate(imported, "v4", capsys, "--db", imported / "results.sqlite")
    assert (code, doc["decision"]) == (2, "roll back")
    health = rule(doc, "health")
    assert health["fired"] and "UR: 1 dead dimension(s)" in health["reason"] and "IR: 1 dead" in health["reason"]
    assert doc["rollback_target"] == f"model-v1@{TIME.replace('-', '')}T000000Z"
    from analysis.compare.review import review_from_store

    review = review_from_store(imported / "results.sqlite")  # what `lee report --db` now leads with
    assert review is not None
    (g,) = review.gates.values()
    assert str(g.decision) == "roll back" and g.rules.loc[g.rules["rule"] == "health", "fired"].item()


def test_missing_ids_state_the_exact_coverage(imported: Path, world: dict[str, object],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    log: pd.DataFrame = world["log"]  # type: ignore[assignment]
    kept = np.isin(log["user"], world["kept"])  # type: ignore[arg-type]
    n_ids = len(world["uids"])  # type: ignore[arg-type]
    n_kept = len(world["kept"])  # type: ignore[arg-type]
    code, doc = gate(imported, "v5", capsys)
    assert doc["details"]["lee"]["coverage_events"] == pytest.approx(kept.mean())
    assert f"coverage {kept.mean():.0%} of downstream events" in rule(doc, "lee")["reason"]
    assert f"over {n_kept:,} shared ids ({n_kept / n_ids:.0%} of the incumbent's {n_ids:,})" in \
        rule(doc, "similarity")["reason"]
    assert doc["decision"] != "roll back"  # fewer ids is not a breakage
