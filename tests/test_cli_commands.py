"""The commands no other test runs through ``main([...])``, on the committed fixtures at reduced sizes.

``report``, ``sweep``, ``world import-obd``, ``world fixtures``, ``casestudy movielens`` and
``casestudy obd``: each is run in-process as ``lee`` would run it, and what it prints and writes is
checked against the fixtures read directly (raw CSV click counts, the committed sample, the
snapshots the command wrote). ``tests/test_docs.py`` checks that every parser command is run
somewhere like this.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.collapse import effective_rank
from app.cli.main import main
from lee.snapshot import Snapshot, SnapshotStore, TableKind, validate_snapshot
from lee.upstream.model import UpstreamConfig
from lee.world.io import load_world
from lee.world.obd import load_exposures, read_obd

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "fixtures" / "tiny"
OBD = REPO / "fixtures" / "real" / "open-bandit-small"
MOVIELENS = REPO / "fixtures" / "real" / "movielens-latest-small"
POLICIES = ("random", "bts")


def one_json_line(out: str) -> object:
    """``--json`` output: exactly one line of strict JSON."""
    assert out.count("\n") == 1, out[:500]
    return json.loads(out)


def raw_clicks(policy: str) -> pd.Series:
    """The logged clicks of one policy, read straight from the fixture's CSV."""
    return pd.read_csv(OBD / policy / "all" / "all.csv.gz")["click"]


# --------------------------------------------------------------------------------------------
# lee world fixtures / lee world import-obd
# --------------------------------------------------------------------------------------------


def test_world_fixtures_regenerates_the_committed_sample(tmp_path, capsys):
    out = tmp_path / "tiny"
    assert main(["world", "fixtures", "--out", str(out), "--json"]) == 0
    assert one_json_line(capsys.readouterr().out) == {"fixtures": str(out)}
    fresh, committed = load_world(out / "world"), load_world(TINY / "world")
    for name in ("users", "items", "events"):
        pd.testing.assert_frame_equal(getattr(fresh, name), getattr(committed, name))
    new, old = SnapshotStore(out / "snapshots"), SnapshotStore(TINY / "snapshots")
    assert new.variants() == old.variants() and len(new.variants()) == 6
    for v in old.variants():
        assert new.times(v) == old.times(v)
        for t in old.times(v):
            a, b = new.open(v, t), old.open(v, t)
            assert a.kinds == b.kinds
            for kind in a.kinds:
                np.testing.assert_array_equal(a.load(kind).vectors, b.load(kind).vectors)

    assert main(["world", "fixtures", "--out", str(out)]) == 2  # refuses to overwrite silently
    assert "directory exists and is not empty" in " ".join(capsys.readouterr().err.split())
    assert main(["world", "fixtures", "--out", str(out), "--overwrite", "--json"]) == 0


def test_world_import_obd_writes_the_exposure_log(tmp_path, capsys):
    out = tmp_path / "obd"
    assert main(["world", "import-obd", str(OBD), "--out", str(out), "--json"]) == 0
    doc = one_json_line(capsys.readouterr().out)
    assert doc["exposures"] == str(out) and doc["campaign"] == "all"
    assert doc["rows"] == {"random": 10_000, "bts": 10_000}
    assert doc["clicks"] == {p: int(raw_clicks(p).sum()) for p in POLICIES}
    pd.testing.assert_frame_equal(load_exposures(out), read_obd(OBD))

    assert main(["world", "import-obd", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nowhere" in err and "Traceback" not in err


# --------------------------------------------------------------------------------------------
# lee sweep / lee report
# --------------------------------------------------------------------------------------------


def test_sweep_writes_one_cr_snapshot_per_layer_and_its_table(tmp_path, capsys):
    root, table = tmp_path / "sweep", tmp_path / "out" / "sweep.csv"
    assert main(["sweep", "--world", str(TINY / "world"), "--out", str(root), "--dims", "8", "--seeds", "0",
                 "--table", str(table), "--json", "-q"]) == 0
    printed = pd.DataFrame(one_json_line(capsys.readouterr().out))
    written = pd.read_csv(table)
    layers = UpstreamConfig().layer_names()
    assert sorted(written["layer"]) == sorted(layers) and set(written["dim"]) == {8}
    np.testing.assert_allclose(printed["delta_auc"], written["delta_auc"], rtol=1e-6)
    assert ((written["ci_low"] <= written["delta_auc"]) & (written["delta_auc"] <= written["ci_high"])).all()
    assert set(written["verdict"]) <= {"better", "no different", "worse"}
    store = SnapshotStore(root)
    assert store.variants() == sorted(f"cr.{layer}.d8" for layer in layers)
    for v in store.variants():
        snap = store.latest(v)
        validate_snapshot(snap.path)
        assert set(snap.kinds) == {TableKind.CR_USER, TableKind.CR_ITEM}
        assert snap.info(TableKind.CR_USER).dim == 8

    assert main(["sweep", "--world", str(TINY / "world"), "--out", str(root), "--dims", "8,x"]) == 2
    assert "--dims expects comma-separated integers" in capsys.readouterr().err


def test_report_on_the_committed_sample(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", "--world", str(TINY / "world"), "--root", str(TINY / "snapshots"), "--out", str(out),
                 "--variants", "oracle,rank_collapsed", "--boot", "20", "--json", "-q"]) == 0
    doc = one_json_line(capsys.readouterr().out)
    html = Path(doc["report"]).read_text(encoding="utf-8")
    assert Path(doc["report"]) == out / "report.html" and doc["skipped"] == []
    for section in ("health", "volatility", "collapse", "clusters"):
        assert f"id='{section}'" in html
    assert "rank_collapsed" in html and "<script src=" not in html  # self-contained: no external script

    # The effective rank in the report's data is the one of the snapshot's own centred singular values.
    tables = [pd.read_csv(p) for p in Path(doc["data"]).rglob("*.csv")]
    ranks = pd.concat([t for t in tables if {"variant", "table", "effective_rank"} <= set(t.columns)])
    row = ranks.set_index(["variant", "table"]).loc[("rank_collapsed", "UR")]
    vectors = SnapshotStore(TINY / "snapshots").latest("rank_collapsed").load("UR").vectors.astype(np.float64)
    singular_values = np.linalg.svd(vectors - vectors.mean(0), compute_uv=False)  # SVD, not the report's Gram
    assert row["effective_rank"] == pytest.approx(effective_rank(singular_values), rel=1e-6)
    assert row["effective_rank"] < 0.5 * vectors.shape[1]  # the planted collapse shows


# --------------------------------------------------------------------------------------------
# lee casestudy obd / lee casestudy movielens
# --------------------------------------------------------------------------------------------


def test_casestudy_obd_reduced(tmp_path, capsys):
    out = tmp_path / "obd-case"
    assert main(["casestudy", "obd", "--seeds", "1", "--boot", "20", "--out", str(out), "--json", "-q"]) == 0
    doc = one_json_line(capsys.readouterr().out)
    assert doc["rows"] == 20_000 and doc["seeds"] == [0] and doc["n_boot"] == 20
    assert doc["clicks"] == sum(int(raw_clicks(p).sum()) for p in POLICIES)
    auc = doc["auc"]
    assert 0.0 <= auc["ci_low"] <= auc["mean"] <= auc["ci_high"] <= 1.0
    for policy in POLICIES:
        assert doc["arms"]["ctr"][policy] == pytest.approx(raw_clicks(policy).mean())
    assert out.is_dir() and any(p.suffix == ".csv" for p in out.rglob("*"))
    assert (out / "data" / "dataset.json").is_file() and doc["written"]["result"] == str(out / "case-study")
    assert doc["fields"][:2] == ["user", "item"] and set(doc["groups"]) == {"user side", "item side", "context"}


def test_casestudy_movielens_reduced(tmp_path, capsys):
    out = tmp_path / "ml"
    assert main(["casestudy", "movielens", "--data", str(MOVIELENS), "--out", str(out), "--users", "120",
                 "--seeds", "1", "--boot", "20", "--json", "-q"]) == 0
    doc = one_json_line(capsys.readouterr().out)
    assert [r["usage"] for r in doc["upstream_vs_random"]] == ["UR", "IR", "CR"]
    for r in doc["upstream_vs_random"]:
        assert r["ci_low"] <= r["delta_auc_upstream_minus_random"] <= r["ci_high"]
        assert r["verdict"] in {"better", "no different", "worse"}
    assert doc["purity"][0]["variant"] == "upstream"
    assert {(r["variant"], r["usage"]) for r in doc["coverage"]} == {(v, u) for v in ("upstream", "random")
                                                                     for u in ("UR", "IR", "CR")}
    assert all(0.0 < r["coverage_events"] <= 1.0 and 0.0 < r["coverage_ids"] <= 1.0 for r in doc["coverage"])
    assert "t-interval" in doc["method"]["method"]
    assert [m["measure"] for m in doc["clusters_vs_random"]] == ["purity", "nmi", "label_mix_divergence"]
    html = Path(doc["report"]).read_text(encoding="utf-8")
    assert Path(doc["report"]).is_relative_to(out) and "id='clusters'" in html
    store = SnapshotStore(out / "snapshots")
    assert {"upstream", "random"} <= set(store.variants())
    assert Snapshot.open(store.latest("upstream").path).info(TableKind.UR).rows > 0


def test_casestudy_reports_a_missing_data_directory(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["casestudy", "obd", "--data", str(missing), "--json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(missing) in " ".join(err.split()) and "Traceback" not in err
