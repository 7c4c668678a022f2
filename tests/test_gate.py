"""The release gate: planted cases for every rule, the exit codes, the typed rules file, the record.

The snapshots are the committed tiny fixture's planted variants (plus anomalies planted into a
copy of the oracle, a rotated copy and a copy with tables of two checkpoints); the rules file
shrinks LEE to 5 windows and 30 bootstrap resamples so each decision takes seconds.
"""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import ortho_group

from analysis.gate import Decision, GateDecision, GateRules, latest_decisions, load_rules, run_gate
from app.cli.main import main
from lee.data.dataset import Dataset
from lee.errors import ConfigError
from lee.jobs.store import ResultsStore
from lee.snapshot import EmbeddingTable, SnapshotStore, write_snapshot
from lee.world.anomalies import plant_anomalies

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tiny"
FAST = """
[lee]
windows = 5
n_boot = 30

[compat]
test_windows = 2
"""
# the monitored copy of the oracle: healthy at 00:30, then rescaled, healthy, NaN rows, dead dimension
HEALTHY, RESCALED, DRIFTED, NAN_ROWS = ("mon@20260101T003000Z", "mon@20260101T003500Z", "mon@20260101T004000Z",
                                        "mon@20260101T004500Z")


@pytest.fixture(scope="module")
def world() -> Path:
    return FIXTURES / "world"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gate") / "snapshots"
    shutil.copytree(FIXTURES / "snapshots", root)
    plant_anomalies(root, "oracle", into="mon", seed=0)
    oracle = SnapshotStore(root).latest("oracle")
    rotated, skewed = {}, {}
    for k in oracle.kinds:
        t = oracle.load(k)
        q = ortho_group.rvs(t.dim, random_state=3).astype(np.float32)
        rotated[k] = EmbeddingTable(t.ids, t.vectors @ q)
        skewed[k] = t
    write_snapshot(root, "rotated", oracle.event_time, rotated)
    write_snapshot(root, "skewed", oracle.event_time, skewed,
                   extra={"checkpoint": "run1@900", "checkpoints": {"IR": "run1@600"}})
    return root


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "gate.toml"
    path.write_text(FAST, encoding="utf-8")
    return path


def _gate(root: Path, world: Path, candidate: str, incumbent: str, **kw) -> GateDecision:
    import tomllib

    return run_gate(root, candidate, incumbent, Dataset.open(world), rules=GateRules.from_dict(tomllib.loads(FAST)),
                    **kw)


def _fired(decision: GateDecision) -> set[str]:
    return set(decision.rules.loc[decision.rules["fired"], "rule"])


def test_a_worse_candidate_is_held(root: Path, world: Path, rules_file: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "results.sqlite"
    code = main(["gate", "--candidate", "noise_high", "--incumbent", "oracle", "--root", str(root), "--data",
                 str(world), "--rules", str(rules_file), "--db", str(db), "--json", "--out", str(tmp_path / "dec")])
    assert code == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["decision"] == "hold" and doc["exit_code"] == 1
    fired = {r["rule"] for r in doc["rules"] if r["fired"]}
    assert "lee" in fired and "health" not in fired
    assert doc["details"]["lee"]["ci_high"] < 0                     # noise_high is clearly worse than the oracle
    assert any(r.startswith("lee (hold): ΔAUC") for r in doc["reasons"])
    saved = GateDecision.load(tmp_path / "dec")
    assert saved.decision == "hold" and saved.exit_code == 1 and saved.comparison is not None
    recorded = ResultsStore(db).gate_decisions()
    assert recorded["decision"].tolist() == ["hold"] and recorded["candidate_variant"].tolist() == ["noise_high"]
    assert recorded["reasons"][0] == doc["reasons"]


def test_a_better_stable_candidate_ships(root: Path, world: Path, tmp_path: Path) -> None:
    # the oracle against its noisiest copy: clearly better under LEE, in the same basis (aligned cosine
    # 0.47, so this team's rules accept a mean cosine down to 0.4), served to today's consumers safely
    rules = GateRules.from_dict({"lee": {"windows": 5, "n_boot": 30}, "compat": {"test_windows": 2},
                                 "similarity": {"min_mean_cosine": 0.4}})
    dec = run_gate(root, "oracle", "noise_high", Dataset.open(world), rules=rules, db=tmp_path / "r.sqlite")
    assert dec.decision == Decision.SHIP and dec.exit_code == 0 and not _fired(dec), dec.rules
    assert dec.details["lee"]["ci_low"] > 0                          # the oracle beats its noisy copy
    compat = dec.details["compat"]
    assert compat["delta_auc_swap_vs_keep_ci"][1] >= -0.002
    # the details lead with the comparison the rule judged and say it passed; every verdict names its reference
    assert compat["rule"]["judged"] == "the raw swap against keeping the incumbent"
    high = compat["delta_auc_swap_vs_keep_ci"][1]
    assert compat["rule"]["outcome"] == f"passed: the interval's upper end {high:+.4f} is not below -0.0020"
    assert compat["verdict_vs_keep"] == "no worse than keeping the incumbent"
    assert compat["verdict_vs_retrained"] in ("compatible against retraining on the candidate",
                                              "incompatible against retraining on the candidate")
    assert "verdict" not in compat and "delta_auc_swap" not in compat   # no number without its reference
    assert compat["delta_auc_swap_vs_retrained"] == pytest.approx(compat["auc_swap"] - compat["auc_retrained"])
    assert latest_decisions(tmp_path / "r.sqlite")["decision"].tolist() == ["ship"]


def test_compat_details_name_what_each_comparison_is_against() -> None:
    # a better candidate: served as is, today's consumers gain (vs keep > 0) but retrained ones gain more
    # (vs retrained < 0) -- the measured oracle-vs-noise_low case of the tiny fixture, rounded
    from analysis.compat import CompatResult

    res = CompatResult(before="inc@1", after="cand@2", usage="UR+IR", fusion="concat", seeds=[0], trained_events=10,
                       test_events=5, auc_keep=0.745, auc_swap=0.752, auc_swap_aligned=0.752, auc_retrained=0.772,
                       delta_raw=-0.020, raw_low=-0.027, raw_high=-0.013, delta_aligned=-0.019, aligned_low=-0.026,
                       aligned_high=-0.012, level=0.95, n_boot=30,
                       vs_keep={"raw": [0.007, 0.002, 0.013], "aligned": [0.007, -0.003, 0.012]})
    s = res.summary()
    assert s["verdict_vs_retrained"] == s["verdict_aligned_vs_retrained"] == \
        "incompatible against retraining on the candidate"
    assert s["verdict_vs_keep"] == s["verdict_aligned_vs_keep"] == "no worse than keeping the incumbent"
    assert s["delta_auc_swap_vs_retrained_ci"] == [-0.027, -0.013] and s["delta_auc_swap_vs_keep_ci"] == [0.002, 0.013]
    assert "against consumers retrained on the candidate" in s["reading"] and "keeping the incumbent" in s["reading"]
    assert res.verdict == "incompatible"   # the attribute keeps its documented meaning (against retraining)
    worse = CompatResult(**{**res.__dict__, "vs_keep": {"raw": [-0.01, -0.02, -0.005]}}).summary()
    assert worse["verdict_vs_keep"] == "worse than keeping the incumbent"
    assert worse["verdict_aligned_vs_keep"] == "not applicable"        # no aligned swap measured


def test_a_rescaled_candidate_is_rolled_back(root: Path, world: Path, rules_file: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["gate", "--candidate", RESCALED, "--incumbent", HEALTHY, "--root", str(root), "--data",
                 str(world), "--rules", str(rules_file), "--json"])
    assert code == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["decision"] == "roll back" and doc["rollback_target"] == HEALTHY
    health = next(r for r in doc["rules"] if r["rule"] == "health")
    assert health["fired"] and health["measured"] == "rescaled" and "mean row norm is 3× the reference's" in \
        health["reason"]
    # LEE z-scores every column, so a rescaled table looks as good as the incumbent there: only health catches it
    assert not next(r for r in doc["rules"] if r["rule"] == "lee")["fired"]


def test_a_nan_candidate_is_rolled_back_without_reading_it_further(root: Path, world: Path) -> None:
    dec = _gate(root, world, NAN_ROWS, DRIFTED)
    assert dec.decision == Decision.ROLL_BACK and dec.exit_code == 2 and _fired(dec) == {"health"}
    assert "NaN/Inf" in dec.rules.set_index("rule").loc["health", "reason"]
    assert dec.rollback_target == DRIFTED                            # the latest healthy snapshot before it
    skipped = dec.rules.set_index("rule").loc[["similarity", "collapse", "lee", "compat"], "reason"]
    assert skipped.str.startswith("not evaluated").all()


def test_a_drifted_candidate_is_held_not_rolled_back(root: Path, world: Path) -> None:
    oracle = SnapshotStore(root).latest("oracle")
    tables = {k: oracle.load(k) for k in oracle.kinds}
    rng = np.random.default_rng(0)
    for step in range(4):
        out = {}
        for k, t in tables.items():
            std = t.vectors.std(0)
            v = t.vectors + 0.02 * std * rng.standard_normal(t.vectors.shape)
            if step == 3:
                v = v + 0.8 * std                  # every dimension's mean moves by 0.8 std; the norm by ~1.3x
            out[k] = EmbeddingTable(t.ids, v.astype(np.float32))
        write_snapshot(root, "shifted", oracle.event_time + timedelta(minutes=5 * step), out)
    only_health = {r: {"enabled": False} for r in ("lee", "compat", "similarity", "collapse", "skew")}
    dec = run_gate(root, "shifted", "shifted@20260101T004000Z", Dataset.open(world),
                   rules=GateRules.from_dict(only_health))
    assert dec.decision == Decision.HOLD and _fired(dec) == {"health"}
    assert dec.rules.set_index("rule").loc["health", "measured"] == "drifted"
    assert "means shifted" in dec.rules.set_index("rule").loc["health", "reason"]
    harsh = run_gate(root, "shifted", "shifted@20260101T004000Z", Dataset.open(world),
                     rules=GateRules.from_dict({**only_health, "health": {"drift_action": "roll back"}}))
    assert harsh.decision == Decision.ROLL_BACK


def test_a_collapsed_candidate_is_held(root: Path, world: Path) -> None:
    dec = run_gate(root, "rank_collapsed", "oracle", Dataset.open(world),
                   rules=GateRules.from_dict({"lee": {"enabled": False}, "compat": {"enabled": False}}))
    assert dec.decision == Decision.HOLD and "collapse" in _fired(dec)
    assert float(dec.rules.set_index("rule").loc["collapse", "measured"]) < 0.5


def test_skewed_tables_are_held(root: Path, world: Path) -> None:
    dec = run_gate(root, "skewed", "oracle", Dataset.open(world),
                   rules=GateRules.from_dict({"lee": {"enabled": False}, "compat": {"enabled": False}}))
    assert dec.decision == Decision.HOLD and _fired(dec) == {"skew"}
    assert "run1@600" in dec.rules.set_index("rule").loc["skew", "reason"]


def test_a_rotated_candidate_is_held_unless_consumers_take_it_aligned(root: Path, world: Path) -> None:
    off = {"lee": {"windows": 5, "n_boot": 30, "enabled": False}}
    raw = run_gate(root, "rotated", "oracle", Dataset.open(world),
                   rules=GateRules.from_dict({**off, "compat": {"test_windows": 2}}))
    # no training run recorded: the same-id cosine (≈ 0) is read and the rotation named as another basis
    assert raw.decision == Decision.HOLD and _fired(raw) == {"compat", "similarity"}
    assert "another basis" in raw.rules.set_index("rule").loc["similarity", "reason"]
    assert raw.compat is not None and raw.compat.vs_keep["raw"][2] < -0.002     # served rotated: worse than today
    assert "against keeping the incumbent" in raw.rules.set_index("rule").loc["compat", "reason"]
    compat = raw.details["compat"]
    assert compat["rule"]["judged"] == "the raw swap against keeping the incumbent"
    assert compat["rule"]["outcome"].startswith("fired (hold): the interval's upper end -")
    assert compat["verdict_vs_keep"] == "worse than keeping the incumbent"
    assert raw.details["similarity"]["aligned_cosine_mean"] > 0.999     # the same vectors, rotated
    aligned = run_gate(root, "rotated", "oracle", Dataset.open(world),
                       rules=GateRules.from_dict({**off, "compat": {"test_windows": 2, "swap": "aligned"}}))
    assert aligned.decision == Decision.SHIP, aligned.rules


def test_similarity_rule_and_actions_are_configurable(root: Path, world: Path) -> None:
    rules = {"lee": {"enabled": False}, "compat": {"enabled": False}, "collapse": {"enabled": False},
             "similarity": {"min_mean_cosine": 0.95, "action": "roll back"}}
    dec = run_gate(root, "noise_low", "oracle", Dataset.open(world), rules=GateRules.from_dict(rules))
    assert dec.decision == Decision.ROLL_BACK and _fired(dec) == {"similarity"}
    assert dec.rollback_target == "oracle@20260101T003000Z"          # another variant: keep the incumbent


def test_rules_file_is_typed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert load_rules(None) == GateRules()
    d = GateRules()
    assert (d.lee.max_loss, d.compat.max_loss, d.similarity.min_mean_cosine, d.collapse.min_rank_ratio) == \
        (0.001, 0.002, 0.5, 0.5)
    assert d.health.action == Decision.ROLL_BACK and d.lee.action == Decision.HOLD
    bad = tmp_path / "bad.toml"
    bad.write_text("[lee]\nmax_los = 0.1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="max_los"):
        load_rules(bad)
    bad.write_text("[similarity]\nmin_mean_cosine = \"high\"\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="min_mean_cosine"):
        load_rules(bad)
    bad.write_text("[health]\naction = \"panic\"\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="action"):
        load_rules(bad)
    ok = tmp_path / "ok.toml"
    ok.write_text("[health.thresholds]\nmax_scale_ratio = 2.0\n[compat]\nswap = \"aligned\"\n", encoding="utf-8")
    r = load_rules(ok)
    assert r.health.thresholds.max_scale_ratio == 2.0 and r.compat.swap == "aligned"
    # an input error is exit 2 too, but prints no decision on stdout: that is how a caller tells them apart
    assert main(["gate", "--candidate", "a", "--incumbent", "b", "--root", str(tmp_path / "none"), "--data",
                 str(tmp_path), "--rules", str(bad)]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.startswith("error:")


def test_gate_for_people_is_a_decision_a_rule_table_and_reasons(root: Path, world: Path, rules_file: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json: one decision line, one line per rule, the reasons and the roll-back target (it
    printed the whole decision document, ~200 lines of indented JSON)."""
    code = main(["gate", "--candidate", RESCALED, "--incumbent", HEALTHY, "--root", str(root), "--data",
                 str(world), "--rules", str(rules_file)])
    out = capsys.readouterr().out
    assert code == 2
    lines = out.splitlines()
    assert lines[0].startswith("decision: roll back (exit 2): ") and HEALTHY in lines[0]
    for rule in ("health", "skew", "similarity", "collapse", "lee", "compat"):
        assert any(line.split()[:1] == [rule] for line in lines), rule
    assert any(line.startswith("  - health (roll back):") for line in lines)
    assert f"roll back to: {HEALTHY}" in lines and not out.lstrip().startswith("{")
    assert len(lines) < 20
