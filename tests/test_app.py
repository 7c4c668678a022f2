"""The dashboard through Streamlit's AppTest: every page runs, and what it shows equals the engine's output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from analysis.clusters import cluster_snapshot
from analysis.collapse import collapse_of_table, compare_collapse
from analysis.health import snapshot_health
from analysis.segments import segment_lift
from analysis.volatility import volatility
from lee.jobs.store import ResultsStore
from lee.snapshot import SnapshotStore
from lee.world.ab_log import generate_ab_log
from lee.world.io import load_world

REPO = Path(__file__).resolve().parents[1]
MAIN = str(REPO / "app" / "dashboard" / "main.py")
WORLD = REPO / "fixtures" / "tiny" / "world"
ROOT = REPO / "fixtures" / "tiny" / "snapshots"
PAGES = ["pages/overview.py", "pages/lee.py", "pages/volatility.py", "pages/importance.py", "pages/segments.py",
         "pages/clusters.py", "pages/collapse.py", "pages/reports.py"]


@pytest.fixture()
def app(tmp_path):
    at = AppTest.from_file(MAIN, default_timeout=180)
    at.run()
    at.text_input(key="src_db").set_value(str(tmp_path / "results.sqlite")).run()
    return at


def _clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_every_page_runs(app):
    for page in PAGES:
        app.switch_page(page).run()
        _clean(app)
        assert app.title[0].value  # each page has its title


def test_overview_and_collapse_numbers(app):
    _clean(app)
    shown = app.dataframe[0].value.set_index("variant")
    for variant in SnapshotStore(ROOT).variants():
        assert shown.loc[variant, "flagged"] == snapshot_health(ROOT, variant).summary()["flagged"]
    app.switch_page("pages/collapse.py").run()
    shown = app.dataframe[0].value.set_index("variant")
    store = SnapshotStore(ROOT)
    ref = compare_collapse({v: collapse_of_table(store.latest(v), "UR") for v in store.variants()}).set_index("variant")
    np.testing.assert_allclose(shown.loc[ref.index, "effective_rank"], ref["effective_rank"])
    assert shown.loc["rank_collapsed", "collapsed"]


def test_volatility_clusters_segments_numbers(app):
    app.switch_page("pages/volatility.py").run()
    app.selectbox(key="vol_variant").set_value("oracle").run()
    app.selectbox(key="vol_table").set_value("IR").run()
    _clean(app)
    ref = volatility(ROOT, "oracle", "IR").summary()
    metric = {m.label: m.value for m in app.metric}
    assert metric["cosine > 0.99"] == f"{ref['share_above_0.99']:.1%}"
    assert metric["ids compared"] == f"{ref['n_shared']:,}"

    app.switch_page("pages/clusters.py").run()
    app.selectbox(key="cl_variant").set_value("oracle").run()
    app.radio(key="cl_color").set_value("label").run()
    _clean(app)
    world = load_world(WORLD)
    labels = pd.Series(world.users["label"].astype(str).to_numpy(), index=world.users["user_id"].to_numpy())
    truth = pd.Series(world.users["group"].to_numpy(), index=world.users["user_id"].to_numpy())
    ref = cluster_snapshot(SnapshotStore(ROOT).latest("oracle"), "UR", k=int(world.users["label"].nunique()),
                           events=world.events, items=world.items, labels=labels, truth=truth, seed=0)
    shown = app.dataframe[0].value
    np.testing.assert_allclose(shown["ctr"].to_numpy(), ref.table["ctr"].to_numpy())
    assert list(shown["top1_label"]) == list(ref.table["top1_label"])

    app.switch_page("pages/segments.py").run()
    app.selectbox(key="seg_by").set_value("activity_level").run()
    _clean(app)
    ref = segment_lift(generate_ab_log(world, seed=0), by="activity_level", n_boot=1000, seed=0).table
    shown = app.dataframe[0].value
    np.testing.assert_allclose(shown["lift"].to_numpy(), ref["lift"].to_numpy())
    np.testing.assert_allclose(shown["ci_low"].to_numpy(), ref["ci_low"].to_numpy())


def test_new_evaluation_with_progress_then_ranking(app, tmp_path):
    app.switch_page("pages/lee.py").run()
    _clean(app)
    assert "No LEE results" in app.info[0].value
    app.multiselect(key="lee_variants").set_value(["oracle", "random"])
    app.button[0].click().run()  # the form's submit button
    _clean(app)
    assert "2 evaluated" in app.success[0].value
    app.switch_page("pages/lee.py").run()
    shown = app.dataframe[0].value.set_index("variant")
    ref = ResultsStore(tmp_path / "results.sqlite").compare().set_index("variant")
    np.testing.assert_allclose(shown.loc[["oracle", "random"], "delta_auc"], ref.loc[["oracle", "random"], "delta_auc"])
    assert shown.loc["oracle", "delta_auc"] > shown.loc["random", "delta_auc"]


def test_new_evaluation_form_passes_the_engine(app, monkeypatch):
    """The form's engine, Ray address and units at once reach the job as its [engine], its data-parallel workers as
    [eval] data_parallel (the dashboard computes nothing
    itself: run_job, the same call `lee evaluate` makes, gets the job)."""
    import lee.jobs.run as jobs_run
    from lee.jobs.run import JobReport

    seen = []

    def fake_run_job(job, **_):
        seen.append(job)
        return JobReport(evaluated=["oracle UR+IR concat"])

    monkeypatch.setattr(jobs_run, "run_job", fake_run_job)
    app.switch_page("pages/lee.py").run()
    app.multiselect(key="lee_variants").set_value(["oracle"])
    app.selectbox(key="lee_engine").set_value("ray")
    app.text_input(key="lee_address").set_value(" auto ")
    app.number_input(key="lee_data_parallel").set_value(2)
    app.button[0].click().run()
    _clean(app)
    assert "1 evaluated" in app.success[0].value
    assert len(seen) == 1 and seen[0].engine.kind == "ray" and seen[0].engine.address == "auto"
    assert seen[0].eval.data_parallel == 2 and all(c.data_parallel == 2 for c in seen[0].eval_configs())
    assert seen[0].job.variants == ("oracle",)
    app.selectbox(key="lee_engine").set_value("local")
    app.number_input(key="lee_workers").set_value(2)
    app.button[0].click().run()
    _clean(app)
    assert len(seen) == 2 and seen[1].engine.kind == "local" and seen[1].engine.workers == 2


def test_importance_page(app):
    app.switch_page("pages/importance.py").run()
    app.selectbox(key="imp_variant").set_value("oracle")
    app.selectbox(key="imp_mode").set_value("zero")
    app.button(key="imp_run").click().run()
    _clean(app)
    shown = app.dataframe[0].value
    # planted truth: the oracle representation outranks every single field (a group of fields masked
    # together, e.g. every item-side field at once, may drop more than any one of them)
    assert shown[shown["kind"] != "group"].iloc[0]["kind"] == "representation"


def test_empty_root_shows_a_message(app, tmp_path):
    (tmp_path / "empty").mkdir()
    app.text_input(key="src_root").set_value(str(tmp_path / "empty")).run()
    for page in ("pages/overview.py", "pages/collapse.py"):
        app.switch_page(page).run()
        assert not app.exception and "no snapshots" in app.info[0].value


def test_bad_paths_show_messages_not_tracebacks(app, tmp_path):
    app.text_input(key="src_root").set_value(str(tmp_path / "nowhere")).run()
    assert not app.exception
    assert "is not a snapshot root" in app.error[0].value
    app.text_input(key="src_root").set_value(str(ROOT)).run()
    app.text_input(key="src_world").set_value(str(tmp_path)).run()
    assert not app.exception
    assert "dataset.json: file is missing" in app.error[0].value
