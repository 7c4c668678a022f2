"""Scheduled LEE jobs: idempotent, locked, crash-safe, resumable; results CLI and job-file errors."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.cli.main import main
from lee.errors import ConfigError
from lee.jobs.config import load_job
from lee.jobs.lock import JobLock, JobLockedError
from lee.jobs.run import run_job
from lee.jobs.store import ResultsStore
from lee.world.io import save_world
from lee.world.planted import write_planted_variants

JOB = """
[job]
name = "t"
snapshots = "snapshots"
world = "world"
results = "results.sqlite"
variants = {variants}
latest_only = {latest_only}
device = "cpu"

[eval]
usages = ["UR+IR", "CR"]
fusions = ["concat"]
seeds = [0]
windows = 4
n_boot = 30
"""


@pytest.fixture
def job_dir(tiny_world, tmp_path) -> Path:
    save_world(tiny_world, tmp_path / "world")
    write_planted_variants(tiny_world, tmp_path / "snapshots", n_snapshots=2, seed=0,
                           variants=("oracle", "random", "noise_high"))
    return tmp_path


def write_job(d: Path, variants: str = '["*"]', latest_only: str = "true") -> Path:
    path = d / "job.toml"
    path.write_text(JOB.format(variants=variants, latest_only=latest_only), encoding="utf-8")
    return path


def quiet(*_):
    pass


def test_job_evaluates_each_unit_once(job_dir):
    job = load_job(write_job(job_dir))
    first = run_job(job, progress=False, log=quiet)
    assert len(first.evaluated) == 3 * 2  # 3 variants (latest snapshot only) x 2 usages
    again = run_job(job, progress=False, log=quiet)
    assert again.evaluated == [] and again.skipped == 6
    runs = ResultsStore(job.job.results).runs()
    assert len(runs) == 6 and runs["run_id"].is_unique
    oracle = runs[(runs["variant"] == "oracle") & (runs["usage"] == "UR+IR")].iloc[0]
    assert oracle["verdict"] == "better" and oracle["delta_auc"] > 0.01


def test_a_new_snapshot_or_config_is_evaluated_but_nothing_twice(job_dir):
    run_job(load_job(write_job(job_dir)), progress=False, log=quiet)
    every = run_job(load_job(write_job(job_dir, latest_only="false")), progress=False, log=quiet)
    assert len(every.evaluated) == 6 and every.skipped == 6  # the older snapshots only


def test_record_holds_config_checksums_code_version_and_window_metrics(job_dir):
    job = load_job(write_job(job_dir, variants='["oracle"]'))
    run_job(job, progress=False, log=quiet)
    store = ResultsStore(job.job.results)
    run_id = store.runs()["run_id"].iloc[0]
    doc = store.run(run_id[:6])
    assert doc["config"]["seeds"] == [0] and doc["config"]["windows"] == 4
    snap_manifest = json.loads((Path(doc["snapshot_path"]) / "manifest.json").read_text())
    for kind, sha in doc["checksums"].items():
        assert snap_manifest["tables"][kind]["sha256"] == sha
    assert doc["code_version"].startswith("0.1.0")
    m = doc["metrics"]
    assert sorted(m.loc[(m["model"] == "variant") & (m["metric"] == "auc"), "window"]) == [0, 1, 2, 3]
    overall = m[(m["model"] == "variant") & (m["metric"] == "auc") & (m["window"] == 0)]["value"].iloc[0]
    assert overall == pytest.approx(doc["auc"])


def test_lock_stops_an_overlapping_run(job_dir):
    job = load_job(write_job(job_dir))
    with JobLock(job.job.results.with_name(job.job.results.name + ".lock")):
        with pytest.raises(JobLockedError, match=f"another evaluation job is running \\(pid {os.getpid()}\\)"):
            run_job(job, progress=False, log=quiet)
    assert run_job(job, progress=False, log=quiet).evaluated  # released: the next run proceeds


def test_sigkill_mid_run_leaves_no_partial_result_and_the_next_run_resumes(job_dir):
    path = write_job(job_dir, latest_only="false")  # 12 units: long enough to kill mid-way
    db = job_dir / "results.sqlite"
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "evaluate", "--config", str(path), "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(db) as con:
                    done = con.execute("SELECT count(*) FROM runs").fetchone()[0]
            except sqlite3.OperationalError:
                done = 0
            if done >= 2:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the job finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(db) as con:
        counts = con.execute("SELECT r.run_id, count(m.run_id) FROM runs r LEFT JOIN metrics m USING (run_id) "
                             "GROUP BY r.run_id").fetchall()
    assert 2 <= len(counts) < 12
    assert len({c for _, c in counts}) == 1 and counts[0][1] > 0  # every recorded run is complete
    report = run_job(load_job(path), progress=False, log=quiet)  # the lock died with the process
    assert len(report.evaluated) == 12 - len(counts) and report.skipped == len(counts)
    assert len(ResultsStore(db).runs()) == 12


def test_results_cli(job_dir, capsys):
    path = write_job(job_dir)
    assert main(["evaluate", "--config", str(path), "-q", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["evaluated"]) == 6
    db = str(job_dir / "results.sqlite")
    assert main(["results", "compare", "--db", db, "--usage", "CR", "--json"]) == 0
    ranked = json.loads(capsys.readouterr().out)
    assert [r["variant"] for r in ranked][0] == "oracle"
    assert [r["delta_auc"] for r in ranked] == sorted((r["delta_auc"] for r in ranked), reverse=True)
    assert main(["results", "ls", "--db", db, "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)[0]["run_id"]
    assert main(["results", "show", run_id, "--db", db]) == 0
    assert "delta_auc" in capsys.readouterr().out
    assert main(["results", "show", "zzz", "--db", db]) == 2
    assert "no run with id 'zzz'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, pattern",
    [
        ('[job]\nsnapshots="s"\nworld="w"\ncolour="red"\n', r"unknown key\(s\) colour in \[job\]"),
        ('[jobs]\nsnapshots="s"\n', r"unknown section \[jobs\]"),
        ('[job]\nworld="w"\n', r"\[job\] needs snapshots"),
        ('[job]\nsnapshots="s"\nworld="w"\n[eval]\nusages=["XR"]\n',
         r"\[eval\] usages\[0\]: expected one of 'UR', .*; got \"XR\" \(a TOML string\)"),
        ('[job]\nsnapshots="s"\nworld="w"\n[eval]\nseeds=["a"]\n',
         r"\[eval\] seeds\[0\]: expected an integer; got \"a\" \(a TOML string\)"),
        ('[job]\nsnapshots="s"\nworld="w"\n[proxy]\nemb_dim=0\n',
         r"\[proxy\] emb_dim: expected a value > 0; got 0 \(a TOML integer\)"),
        ("[job\n", r"not valid TOML"),
    ],
)
def test_job_file_errors_name_the_problem(tmp_path, text, pattern):
    path = tmp_path / "job.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=pattern):
        load_job(path)


def test_evaluate_cli_reports_a_bad_job_without_traceback(tmp_path):
    path = tmp_path / "job.toml"
    path.write_text('[job]\nsnapshots="s"\nworld="w"\n', encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "app.cli", "evaluate", "--config", str(path)], capture_output=True,
                          text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "not a dataset directory" in proc.stderr


def _copy_variant(root: Path, src: str, dst: str) -> None:
    """``dst``: byte-identical tables to ``src``'s latest snapshot (its manifest names the new variant)."""
    import shutil

    snap = sorted((root / src).iterdir())[-1]
    target = root / dst / snap.name
    shutil.copytree(snap, target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["variant"] = dst
    (target / "manifest.json").write_text(json.dumps(manifest))


def test_identical_tables_under_two_variants_both_get_results(job_dir, capsys):
    """The second variant reuses the first's evaluation (said in its line and recorded); no store
    error; a re-run skips both."""
    _copy_variant(job_dir / "snapshots", "oracle", "oracle_copy")
    path = write_job(job_dir, variants='["oracle", "oracle_copy"]')
    assert main(["evaluate", "--config", str(path), "-q", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["evaluated"]) == 4                             # 2 variants x 2 usages
    reused = [line for line in out["evaluated"] if "evaluated once, recorded for both" in line]
    assert len(reused) == 2 and all(line.startswith("oracle_copy@") for line in reused)
    store = ResultsStore(job_dir / "results.sqlite")
    runs = store.runs()
    assert sorted(runs["variant"]) == ["oracle", "oracle", "oracle_copy", "oracle_copy"]
    for usage in ("UR+IR", "CR"):
        a, b = (runs[(runs["variant"] == v) & (runs["usage"] == usage)].iloc[0] for v in ("oracle", "oracle_copy"))
        assert a["delta_auc"] == b["delta_auc"] and a["verdict"] == b["verdict"] == "better"
        assert store.run(b["run_id"])["extra"]["same_content_as"].startswith("oracle@")
    again = run_job(load_job(path), progress=False, log=quiet)
    assert again.evaluated == [] and again.skipped == 4


def test_a_store_failure_is_one_paragraph_not_a_traceback(job_dir, capsys):
    """SQLite refuses the insert (a trigger stands in for a failing database): the store's message plus
    which unit was not recorded, in one paragraph, exit status 2, no traceback."""
    db = job_dir / "results.sqlite"
    ResultsStore(db)                                             # the schema
    with sqlite3.connect(db) as con:
        con.execute("CREATE TRIGGER refuse BEFORE INSERT ON runs BEGIN SELECT RAISE(ABORT, 'refused by a test "
                    "trigger'); END")
    assert main(["evaluate", "--config", str(write_job(job_dir, variants='["oracle"]')), "-q"]) == 2
    err = " ".join(capsys.readouterr().err.split())            # the message is wrapped to the terminal
    assert "Traceback" not in err
    assert "results.sqlite: results store error (refused by a test trigger)" in err
    assert "oracle@" in err and "was not recorded; the next run evaluates it again" in err


def test_a_unit_recorded_meanwhile_is_reported_not_raised(job_dir, monkeypatch):
    """Should another writer record the same unit first (the lock makes this unlikely), the insert's
    IntegrityError is caught and the unit reported as already recorded."""
    real_add = ResultsStore.add

    def twice(self, rec):
        real_add(self, rec)
        real_add(self, rec)        # the second insert of the same unit_key fails

    monkeypatch.setattr(ResultsStore, "add", twice)
    report = run_job(load_job(write_job(job_dir, variants='["oracle"]')), progress=False, log=quiet)
    assert len(report.evaluated) == 2
    assert all("already recorded by another run" in line for line in report.evaluated)


def test_results_show_json_has_per_window_figures(job_dir, capsys):
    job = load_job(write_job(job_dir, variants='["oracle"]'))
    run_job(job, progress=False, log=quiet)
    store = ResultsStore(job.job.results)
    run_id = store.runs()["run_id"].iloc[0]
    assert main(["results", "show", run_id, "--db", str(job.job.results), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    windows = doc["windows"]
    assert [w["window"] for w in windows] == [1, 2, 3]             # windows = 4: three test windows
    for w in windows:
        assert w["start"] <= w["end"] and w["events"] > 0 and 0 < w["positives"] < w["events"]
        assert 0.5 < w["variant_auc"] < 1 and 0.4 < w["baseline_auc"] < 1
    sizes = [w["events"] for w in windows]
    m = doc["metrics"]
    per_seed = [r for r in m if r["model"] == "variant" and r["metric"] == "auc" and r["window"] >= 1]
    assert doc["auc"] == pytest.approx(sum(s * r["value"] for s, r in zip(sizes, per_seed)) / sum(sizes), abs=1e-12)
    assert doc["auc_pooled"] is not None and doc["auc_pooled"] != doc["auc"]
    assert main(["results", "show", run_id, "--db", str(job.job.results)]) == 0
    text = capsys.readouterr().out
    assert "auc_pooled" in text and "baseline_auc" in text and "positives" in text


def test_version_skew_in_a_unit_is_logged_and_reported(job_dir):
    """A snapshot whose UR and IR were written by different checkpoints: the job warns (log, report,
    VersionSkewWarning) for the usage that combines them (UR+IR), not for CR."""
    from lee.errors import VersionSkewWarning
    from lee.snapshot import SnapshotStore, write_snapshot

    oracle = SnapshotStore(job_dir / "snapshots").latest("oracle")
    tables = {k: oracle.load(k) for k in oracle.kinds}
    write_snapshot(job_dir / "snapshots", "mixed", oracle.event_time, tables,
                   extra={"checkpoint": "run@200", "checkpoints": {"IR": "run@100"}})
    lines: list[str] = []
    with pytest.warns(VersionSkewWarning, match="LEE injection UR\\+IR of mixed@"):
        report = run_job(load_job(write_job(job_dir, variants='["mixed"]')), progress=False, log=lines.append,
                         stop_after=0)
    assert len(report.warnings) == 1 and "run@100" in report.warnings[0] and "run@200" in report.warnings[0]
    assert any(line.startswith("warning: version skew in LEE injection UR+IR of mixed@") for line in lines)


def test_iim_units_are_keyed_by_their_baseline_stand_in(job_dir):
    """Stored iim results predate the random-code baseline (issue 14) and must not be reused; every
    other fusion keeps its key, so nothing else is re-evaluated."""
    from lee.evaluator.compare import EvalConfig
    from lee.jobs.run import Unit, _hash
    from lee.snapshot import SnapshotStore

    snap = SnapshotStore(job_dir / "snapshots").latest("oracle")
    for fusion in ("concat", "gate", "iim"):
        unit = Unit(snap, EvalConfig(fusion=fusion, usage="UR+IR"))
        legacy = _hash({"config": unit.cfg.to_dict(), "data": "d", "tables": unit.checksums})
        assert (unit.content_key("d") == legacy) == (fusion != "iim")
