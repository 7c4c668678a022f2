"""``lee results ls`` on a results store that holds release-gate decisions but no LEE runs.

Reproduction (before the fix it printed only ``no runs``):

    lee gate --candidate oracle --incumbent noise_low --root fixtures/tiny/snapshots --data fixtures/tiny/world \\
        --db r.sqlite
    lee results ls --db r.sqlite

Now it says there are no LEE runs and lists the recorded decisions, counted, newest first.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis.gate import decision_table
from app.cli.main import main
from lee.jobs.store import ResultsStore

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "fixtures" / "tiny"


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str]:
    capsys.readouterr()
    rc = main([str(a) for a in args])
    return rc, capsys.readouterr().out


def test_results_ls_lists_the_gate_decisions_of_a_store_without_runs(tmp_path, capsys):
    db = tmp_path / "r.sqlite"
    rc, out = run(capsys, "gate", "--candidate", "oracle", "--incumbent", "noise_low", "--root", TINY / "snapshots",
                  "--data", TINY / "world", "--db", db, "--json", "-q")
    decision = json.loads(out)
    assert rc == decision["exit_code"]

    rc, out = run(capsys, "results", "ls", "--db", db)
    assert rc == 0
    lines = out.splitlines()
    assert lines[0] == (f"no LEE runs in {db} (lee evaluate records them); 1 release-gate decision(s) recorded "
                        "(lee gate --db), newest first:")
    assert lines[1].split() == ["variant", "decision", "candidate", "incumbent", "decided_at", "reasons",
                                "decision_id"]
    assert len(lines) == 3
    row = lines[2]
    for value in ("oracle", decision["decision"], decision["candidate"], decision["incumbent"],
                  decision["decision_id"]):
        assert value in row

    # the listing is the store's record: same decision, same reasons (joined), newest first
    table = decision_table(db)
    recorded = ResultsStore(db, readonly=True).gate_decisions()
    assert table["decision_id"].tolist() == recorded["decision_id"].tolist() == [decision["decision_id"]]
    assert table["reasons"][0] == ("; ".join(decision["reasons"]) or "every rule passed")

    # results compare says the same, naming its filters
    rc, out = run(capsys, "results", "compare", "--db", db, "--usage", "UR+IR")
    assert rc == 0
    assert out.splitlines()[0] == (f"no LEE runs with usage UR+IR in {db} (lee evaluate records them); 1 "
                                   "release-gate decision(s) recorded (lee gate --db), newest first:")
    assert decision["decision_id"] in out

    # scripts keep the runs' records: none
    rc, out = run(capsys, "results", "ls", "--db", db, "--json")
    assert rc == 0 and json.loads(out) == []
    rc, out = run(capsys, "results", "ls", "--db", db, "--job", "nightly")
    assert out.startswith(f"no LEE runs of job nightly in {db} (lee evaluate records them); 1 release-gate")


def test_results_ls_on_an_empty_store_says_it_holds_nothing(tmp_path, capsys):
    db = tmp_path / "r.sqlite"
    ResultsStore(db)  # the schema, no rows
    rc, out = run(capsys, "results", "ls", "--db", db)
    assert rc == 0
    assert out == (f"no LEE runs in {db} (lee evaluate records them); 0 release-gate decision(s) recorded "
                   "(lee gate --db)\n")
    assert decision_table(db).empty
