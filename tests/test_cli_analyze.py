"""`lee analyze ...` and the analysis-related `lee world` commands, end to end through main()."""

from __future__ import annotations

import json

import pytest

from analysis.health import HealthReport
from app.cli.main import main


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli-analyze")
    assert main(["world", "generate", "--scale", "tiny", "--out", str(d / "w"), "-q", "--json"]) == 0
    assert main(["world", "plant", "--world", str(d / "w"), "--out", str(d / "s"), "-q", "--json",
                 "--variants", "oracle,random,rank_collapsed"]) == 0
    return d


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_health_flags_planted_anomalies(planted, capsys, tmp_path):
    root = planted / "s"
    capsys.readouterr()
    assert main(["world", "anomalies", "--root", str(root), "--variant", "random", "--json"]) == 0
    times = _json(capsys)
    assert main(["analyze", "health", "--root", str(root), "--variant", "random", "--json", "-q",
                 "--out", str(tmp_path / "health")]) == 0
    doc = _json(capsys)
    assert doc["flagged"] == 3 and doc["rollback_target"].startswith(times["healthy"][:19])
    assert doc["written"] == str(tmp_path / "health")
    saved = HealthReport.load(tmp_path / "health")   # the saved result loads back with the same flags
    assert saved.summary()["flagged"] == 3 and (tmp_path / "health" / "tables.csv").is_file()
    (tmp_path / "th.toml").write_text("[health]\nmax_scale = 2\n")
    assert main(["analyze", "health", "--root", str(root), "--variant", "random", "--thresholds",
                 str(tmp_path / "th.toml")]) == 2
    assert "unknown key" in capsys.readouterr().err


def test_volatility_collapse_and_errors(planted, capsys):
    root = planted / "s"
    capsys.readouterr()
    assert main(["analyze", "volatility", "--root", str(root), "--variant", "oracle", "--world",
                 str(planted / "w"), "--by", "activity_level", "--json", "-q"]) == 0
    doc = _json(capsys)
    assert doc["n_shared"] == 400 and {r["activity_level"] for r in doc["by"]} == {"low", "mid", "high"}
    assert doc["minutes_apart"] == 5.0           # the previous snapshot, and the gap it lies at
    assert main(["analyze", "volatility", "--root", str(root), "--variant", "oracle", "--series", "--json", "-q"]) == 0
    assert _json(capsys)["pairs"] == 2
    assert main(["analyze", "collapse", "--root", str(root), "--json", "-q"]) == 0
    assert _json(capsys)["collapsed"] == ["rank_collapsed"]
    assert main(["analyze", "volatility", "--root", str(root), "--variant", "nope", "--json"]) == 2
    assert "no variant 'nope'" in capsys.readouterr().err
    assert main(["analyze", "volatility", "--root", str(root), "--variant", "oracle", "--by", "x"]) == 2
    assert "--by needs --data" in capsys.readouterr().err


def test_segments_from_a_planted_log(planted, capsys, tmp_path):
    capsys.readouterr()
    log = tmp_path / "ab.parquet"
    assert main(["world", "ab-log", "--world", str(planted / "w"), "--out", str(log), "--json"]) == 0
    assert _json(capsys)["users"] == 400
    assert main(["analyze", "segments", "--log", str(log), "--boot", "50", "--json", "--by", "activity_level"]) == 0
    doc = _json(capsys)
    assert [r["segment"] for r in doc["rows"]][-1] == "all" and len(doc["rows"]) == 4
    assert main(["analyze", "segments", "--log", str(tmp_path / "missing.parquet")]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "bad.csv").write_text("arm,user_id\ncontrol,1\n")
    assert main(["analyze", "segments", "--log", str(tmp_path / "bad.csv")]) == 2
    assert "missing column" in capsys.readouterr().err


def test_importance_cli(planted, capsys):
    capsys.readouterr()
    assert main(["analyze", "importance", "--world", str(planted / "w"), "--root", str(planted / "s"), "--variant",
                 "oracle", "--repeats", "2", "--boot", "10", "--device", "cpu", "--json", "-q"]) == 0
    doc = _json(capsys)
    # planted truth: the oracle representation outranks every single field (a group of fields masked
    # together, e.g. every item-side field at once, may drop more than any one of them)
    singles = [r for r in doc["ranking"] if r["kind"] != "group"]
    assert singles[0]["kind"] == "representation"
    assert singles[0]["ci_low"] > max(r["drop"] for r in singles if r["kind"] == "feature")  # beyond its interval


def test_clusters_cli(planted, capsys):
    capsys.readouterr()
    assert main(["analyze", "clusters", "--world", str(planted / "w"), "--root", str(planted / "s"), "--variant",
                 "oracle", "--json"]) == 0
    doc = _json(capsys)
    assert doc["ari"] >= 0.8 and len(doc["clusters"]) == doc["k"]
    assert main(["analyze", "clusters", "--world", str(planted / "w"), "--root", str(planted / "s"), "--variant",
                 "oracle", "--k", "1"]) == 2
    assert "a single cluster" in capsys.readouterr().err
