"""One result shape: every result a front door shows saves to a directory and loads back equal,
and the dashboard opens a finished run without calling any analysis function."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from analysis.clusters import ClusterResult, cluster_snapshot
from analysis.collapse import CollapseComparison, collapse_comparison, collapse_of_table
from analysis.health import HealthReport, snapshot_health
from analysis.importance import ImportanceResult
from analysis.lee_results import LeeComparison, lee_comparison
from analysis.maps import Map2D
from analysis.report import write_report
from analysis.segments import SegmentLift
from analysis.suite import SuiteConfig, SuiteResult, run_suite
from analysis.volatility import VolatilityResult, VolatilitySeries, volatility, volatility_series
from lee.errors import InputError
from lee.jobs.config import load_job
from lee.jobs.run import JobReport, run_job
from lee.results import RESULT_FILE, Result, load_result
from lee.snapshot import SnapshotStore
from lee.world.anomalies import plant_anomalies
from lee.world.config import config_for_scale
from lee.world.generate import generate_world
from lee.world.io import save_world
from lee.world.planted import write_planted_variants

REPO = Path(__file__).resolve().parents[1]
MAIN = str(REPO / "app" / "dashboard" / "main.py")


def assert_same(a: Result, b: Result) -> None:
    """Equal summaries (as JSON) and equal tables, dtypes included."""
    assert type(a) is type(b)
    assert json.dumps(a.summary(), sort_keys=True, default=str) == json.dumps(b.summary(), sort_keys=True, default=str)
    ta, tb = a.tables(), b.tables()
    assert list(ta) == list(tb)
    for key in ta:
        pd.testing.assert_frame_equal(ta[key], tb[key], obj=key)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A small finished run laid out as the demo lays it out: world, snapshots, results, analyses, lee."""
    d = tmp_path_factory.mktemp("run")
    world = generate_world(config_for_scale("tiny", seed=11))
    save_world(world, d / "world")
    write_planted_variants(world, d / "snapshots", variants=["oracle", "random", "rank_collapsed"], n_snapshots=3)
    plant_anomalies(d / "snapshots", "oracle", into="monitored")
    (d / "job.toml").write_text(
        f'[job]\nname = "t"\nsnapshots = "{d / "snapshots"}"\nworld = "{d / "world"}"\n'
        f'results = "{d / "results.sqlite"}"\n'
        'variants = ["oracle", "random"]\nlatest_only = true\ndevice = "cpu"\n'
        '[eval]\nusages = ["UR+IR"]\nseeds = [0]\nwindows = 3\nn_boot = 20\n', encoding="utf-8")
    report = run_job(load_job(d / "job.toml"), progress=False, log=lambda *_: None)
    report.save(d / "job-report")
    run_suite(world, d / "snapshots", out=d / "analyses", log=lambda *_: None,
              config=SuiteConfig(n_boot=30, map_methods=("pca",), importance_variants=("oracle",),
                                 importance_repeats=1))
    sweep = pd.DataFrame({16: [0.01, 0.02], 32: [0.015, np.nan]}, index=pd.Index(["a.0", "b.1"], name="layer"))
    sweep.columns.name = "dim"
    lee = lee_comparison(d / "results.sqlite", sweep=sweep)
    lee.save(d / "lee")
    write_report(d / "report", SuiteResult.load(d / "analyses"), lee=lee)   # as the demo does
    return d


def test_suite_round_trips_with_every_analysis(run_dir: Path) -> None:
    suite = SuiteResult.load(run_dir / "analyses")
    assert set(suite.health) == {"oracle", "random", "rank_collapsed", "monitored"}
    assert suite.importance and suite.segments is not None and suite.maps["oracle"]["pca"].xy.shape[1] == 2
    again = SuiteResult.load(suite.save(run_dir / "suite-again"))
    assert_same(suite, again)
    for v, by in suite.volatility.items():  # the arrays themselves, not only their summaries
        for t, r in by.items():
            np.testing.assert_array_equal(r.cosine, again.volatility[v][t].cosine)
            np.testing.assert_array_equal(r.ids, again.volatility[v][t].ids)
            assert r.kind is again.volatility[v][t].kind and r.after == again.volatility[v][t].after
    np.testing.assert_array_equal(suite.clusters["oracle"].assignment, again.clusters["oracle"].assignment)
    m, m2 = suite.maps["oracle"]["pca"], again.maps["oracle"]["pca"]
    assert isinstance(m2, Map2D) and m2.method == m.method and m2.sample_size == m.sample_size
    np.testing.assert_array_equal(m.xy, m2.xy)
    np.testing.assert_array_equal(m.rows, m2.rows)
    assert suite.health["monitored"].rollback_target == again.health["monitored"].rollback_target


def test_saved_suite_equals_a_fresh_computation(run_dir: Path) -> None:
    saved = SuiteResult.load(run_dir / "analyses")
    fresh = snapshot_health(run_dir / "snapshots", "monitored", thresholds=saved.health["monitored"].thresholds)
    pd.testing.assert_frame_equal(saved.health["monitored"].table, fresh.table)


@pytest.mark.parametrize("make", ["volatility", "series", "health", "collapse", "clusters"])
def test_each_analysis_result_round_trips(run_dir: Path, tmp_path: Path, make: str) -> None:
    store = SnapshotStore(run_dir / "snapshots")
    world_users = pd.read_parquet(run_dir / "world" / "users.parquet")
    if make == "volatility":
        res: object = volatility(store, "random", "IR")
    elif make == "series":
        res = volatility_series(store, "oracle", "UR")
    elif make == "health":
        res = snapshot_health(store, "monitored")
    elif make == "collapse":
        res = collapse_comparison({v: collapse_of_table(store.latest(v), "UR") for v in store.variants()},
                                  table="UR")
    else:
        labels = pd.Series(world_users["label"].astype(str).to_numpy(), index=world_users["user_id"].to_numpy())
        events = pd.read_parquet(run_dir / "world" / "events.parquet")
        res = cluster_snapshot(store.latest("oracle"), "UR", k=4, events=events, labels=labels, seed=0)
    cls = type(res)
    assert cls in (VolatilityResult, VolatilitySeries, HealthReport, CollapseComparison, ClusterResult)
    back = cls.load(res.save(tmp_path / make))
    assert_same(res, back)


def test_lee_comparison_and_job_report_round_trip(run_dir: Path) -> None:
    lee = LeeComparison.load(run_dir / "lee")
    assert list(lee.ranking["variant"]) and set(lee.ranking["variant"]) == {"oracle", "random"}
    fresh = lee_comparison(run_dir / "results.sqlite", sweep=lee.sweep)
    assert_same(fresh, lee)
    assert list(lee.sweep.columns) == [16, 32] and lee.sweep.index.name == "layer"  # int dims survive
    assert np.isnan(lee.sweep.loc["b.1", 32])
    job = JobReport.load(run_dir / "job-report")
    assert len(job.evaluated) == 2 and job.summary()["evaluated"] == 2


def test_importance_and_segments_round_trip(run_dir: Path, tmp_path: Path) -> None:
    suite = SuiteResult.load(run_dir / "analyses")
    imp = suite.importance["oracle"]
    back = ImportanceResult.load(imp.save(tmp_path / "imp"))
    assert_same(imp, back)
    assert back.events == imp.events and isinstance(back.events, tuple)
    for k, v in imp.drops.items():
        np.testing.assert_array_equal(v, back.drops[k])
    seg = SegmentLift.load(suite.segments.save(tmp_path / "seg"))
    assert_same(suite.segments, seg)


def test_load_refuses_other_kinds_and_hostile_directories(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="holds a lee-comparison result, not a"):
        SuiteResult.load(run_dir / "lee")
    with pytest.raises(InputError, match="not a saved result"):
        load_result(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    doc = json.loads((run_dir / "lee" / RESULT_FILE).read_text())
    doc["state"]["fields"]["ranking"]["$frame"] = "../../etc/passwd"
    (bad / RESULT_FILE).write_text(json.dumps(doc))
    with pytest.raises(InputError, match="bad state file reference"):
        load_result(bad)
    doc["kind"] = "os.system"
    (bad / RESULT_FILE).write_text(json.dumps(doc))
    with pytest.raises(InputError, match="unknown result type 'os.system'"):
        load_result(bad)
    (bad / RESULT_FILE).write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_result(bad)


def test_save_refuses_a_directory_that_is_not_a_result(run_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not a saved result"):
        LeeComparison.load(run_dir / "lee").save(tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "mine"


ENTRY_POINTS = [
    ("analysis.suite", "run_suite"), ("analysis.health", "snapshot_health"), ("analysis.volatility", "volatility"),
    ("analysis.volatility", "cosine_by_id"), ("analysis.volatility", "volatility_series"),
    ("analysis.clusters", "cluster_snapshot"), ("analysis.collapse", "collapse_of_table"),
    ("analysis.importance", "importance_for_snapshot"), ("analysis.segments", "segment_lift"),
    ("analysis.lee_results", "lee_comparison"), ("analysis.maps", "embed_2d"), ("analysis.report", "build_report"),
]
PAGES = ["pages/overview.py", "pages/lee.py", "pages/volatility.py", "pages/importance.py", "pages/segments.py",
         "pages/clusters.py", "pages/collapse.py", "pages/reports.py"]


def test_dashboard_opens_a_finished_run_without_computing(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    def boom(*_a, **_k):
        raise AssertionError("an analysis function was called while opening a finished run")

    for module, name in ENTRY_POINTS:
        monkeypatch.setattr(importlib.import_module(module), name, boom)
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.run()
    at.text_input(key="src_run").set_value(str(run_dir)).run()
    at.text_input(key="src_world").set_value(str(run_dir / "world")).run()
    at.text_input(key="src_root").set_value(str(run_dir / "snapshots")).run()
    at.text_input(key="src_db").set_value(str(run_dir / "results.sqlite")).run()
    saved = SuiteResult.load(run_dir / "analyses")
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert not at.error, (page, [e.value for e in at.error])
        assert at.title[0].value
    at.switch_page("pages/collapse.py").run()
    shown = at.dataframe[0].value.set_index("variant")
    assert shown["effective_rank"].to_dict() == saved.collapse["UR"].set_index("variant")["effective_rank"].to_dict()
    at.switch_page("pages/lee.py").run()
    assert set(at.dataframe[0].value["variant"]) == {"oracle", "random"}
