"""The exported report: self-contained, escaped, and its data files equal the analysis results."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from analysis.lee_results import LeeComparison
from analysis.report import build_report, write_report
from analysis.suite import SuiteConfig, run_suite
from lee.world.anomalies import plant_anomalies
from lee.world.config import config_for_scale
from lee.world.generate import generate_world
from lee.world.planted import write_planted_variants

EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def suite_and_report(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    world = generate_world(config_for_scale("tiny", seed=3))
    # a hostile label: must be shown as text everywhere
    world.users["label"] = world.users["label"].cat.rename_categories({world.users["label"].cat.categories[0]: EVIL})
    write_planted_variants(world, d / "s", variants=["oracle", "random", "rank_collapsed"], n_snapshots=3)
    plant_anomalies(d / "s", "oracle", into="monitored")
    suite = run_suite(world, d / "s", config=SuiteConfig(n_boot=50), log=lambda *_: None)
    lee = pd.DataFrame({"variant": ["oracle", EVIL], "usage": ["UR+IR", "UR+IR"], "fusion": ["concat"] * 2,
                        "auc": [0.8, 0.7], "baseline_auc": [0.7, 0.7], "delta_auc": [0.1, 0.0],
                        "ci_low": [0.09, -0.01], "ci_high": [0.11, 0.01], "rela_impr": [50.0, 0.0],
                        "verdict": ["better", "no different"]})
    path = write_report(d / "out", suite, lee=LeeComparison(source="test", ranking=lee, windows=pd.DataFrame()),
                        meta={"world": EVIL})
    return suite, path


def test_report_is_self_contained_and_escaped(suite_and_report):
    _, path = suite_and_report
    text = path.read_text(encoding="utf-8")
    assert "plotly" in text.lower() and len(text) > 3_000_000            # plotly.js is inside
    assert not re.search(r"<script[^>]+src=", text)                       # no script fetched
    assert not re.search(r"<link[^>]+href=", text)                        # no stylesheet fetched
    # (plotly.js's own defaults mention cdn.plot.ly for geo/mathjax; the browser test, offline, checks
    # that nothing of it is needed)
    assert EVIL not in text                                               # never raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text                # shown as text
    for anchor in ("lee", "health", "volatility", "collapse", "clusters", "segments"):
        assert f"id='{anchor}'" in text


def test_report_data_equals_the_results(suite_and_report):
    suite, path = suite_and_report
    data = path.parent / "data"
    doc = json.loads((data / "suite" / "result.json").read_text())
    assert doc["kind"] == "suite" and doc["format_version"] == 1
    assert doc["summary"]["health"]["monitored"]["flagged"] == suite.health["monitored"].summary()["flagged"] == 3
    assert doc["summary"]["clusters"]["oracle"]["ari"] == pytest.approx(suite.clusters["oracle"].ari)
    table = pd.read_csv(data / "suite" / doc["tables"]["clusters-oracle"])
    pd.testing.assert_series_equal(table["ctr"], suite.clusters["oracle"].table["ctr"].reset_index(drop=True),
                                   check_names=False)
    collapse = pd.read_csv(data / "suite" / "collapse-UR.csv").set_index("variant")
    assert collapse.loc["rank_collapsed", "collapsed"]
    assert doc["summary"]["volatility"]["random"]["UR"]["mean_cosine"] == pytest.approx(
        suite.volatility["random"]["UR"].summary()["mean_cosine"])
    lee = pd.read_csv(data / "lee" / "ranking.csv")
    assert list(lee["variant"]) == ["oracle", EVIL]  # the CSV keeps the raw value; only HTML escapes
    seg = pd.read_csv(data / "suite" / "segments.csv")
    assert seg["lift"].iloc[-1] == pytest.approx(suite.segments.table["lift"].iloc[-1])


def test_report_without_lee_or_segments(suite_and_report):
    suite, _ = suite_and_report
    text = build_report(suite, title=EVIL)
    assert "id='lee'" not in text and EVIL not in text
