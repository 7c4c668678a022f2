"""``lee fidelity`` end to end at a reduced size: LEE's proxy and the full downstream model rank a tiny
planted world's oracle, its noise levels and random alike, the figures are SciPy's, the JSON has its
keys and the saved result round-trips.

Reduced size for CI (about a minute on 2 cores): a tiny world with 12k events and a stronger click
signal, one seed, five windows (the last one tests the full model, the one before validates), the full
model at the proxy's widths for at most two epochs. The full-size figures are ``benchmarks/fidelity.py``'s.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau, spearmanr

from analysis.fidelity import FidelityResult, fidelity_figure
from analysis.fidelity_variants import Selection, planted_names, rank_k, with_noise
from app.cli.main import main
from lee.errors import InputError
from lee.results import load_result


@pytest.fixture(scope="module")
def fidelity_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("fidelity")
    world, out = base / "world", base / "out"
    assert main(["world", "generate", "--out", str(world), "--scale", "tiny", "--seed", "7", "--set", "n_events=12000",
                 "--set", "affinity_strength=0.8", "--quiet"]) == 0
    assert main(["fidelity", "--world", str(world), "--out", str(out), "--variants", "oracle,noise,random",
                 "--seeds", "0", "--boot", "30", "--windows", "5", "--test-windows", "1", "--max-epochs", "2",
                 "--full", "emb_dim=16", "--full", "mlp_hidden=[64,32]", "--full", "cross_layers=2",
                 "--quiet"]) == 0
    return out, json.loads((out / "fidelity.json").read_text())


def test_fidelity_json_has_its_keys_and_the_figures_are_scipys(fidelity_run):
    _, doc = fidelity_run
    for key in ("kendall_tau", "kendall_tau_ci", "spearman_rho", "spearman_rho_ci", "verdict_agreement",
                "time_ratio", "lee_seconds", "full_seconds", "pairs", "interval", "machine", "config"):
        assert key in doc, key
    pairs = pd.DataFrame(doc["pairs"])
    assert {"oracle", "random"} <= set(pairs["variant"]) and (pairs["family"] == "noise").sum() >= 4
    lee, full = pairs["lee_delta_auc"].to_numpy(), pairs["full_delta_auc"].to_numpy()
    assert doc["kendall_tau"] == pytest.approx(kendalltau(lee, full).statistic, abs=1e-12)
    assert doc["spearman_rho"] == pytest.approx(spearmanr(lee, full).statistic, abs=1e-12)
    assert doc["verdict_agreement"] == pytest.approx(float(np.mean(pairs["lee_verdict"] == pairs["full_verdict"])))
    assert doc["time_ratio"] == pytest.approx(doc["full_seconds"] / doc["lee_seconds"])
    lo, hi = doc["kendall_tau_ci"]
    assert -1.0 <= lo <= hi <= 1.0


def test_lee_ranks_the_planted_world_as_full_training_does(fidelity_run):
    _, doc = fidelity_run
    pairs = pd.DataFrame(doc["pairs"]).set_index("variant")
    # six variants: Kendall's tau >= 0.6 has p < 0.07 under random rankings; the world's order is clear
    assert doc["kendall_tau"] >= 0.6 and doc["spearman_rho"] >= 0.75, pairs
    _, level, _ = planted_names()

    def lvl(name: str) -> float:  # planted noise_X / noise_low, or derived oracle.noiseX
        return level(name) or float(name.rsplit("noise", 1)[1])

    noisy = list(pairs.index[pairs["family"] == "noise"])
    lowest, highest = min(noisy, key=lvl), max(noisy, key=lvl)
    for col in ("lee_delta_auc", "full_delta_auc"):
        top = min(pairs.loc["oracle", col], pairs.loc[lowest, col])
        bottom = max(pairs.loc[highest, col], pairs.loc["random", col])
        assert top > bottom, (col, pairs[col])
    assert pairs.loc["oracle", "lee_verdict"] == pairs.loc["oracle", "full_verdict"] == "better"


def test_fidelity_result_round_trips(fidelity_run):
    out, doc = fidelity_run
    res = load_result(out / "fidelity", FidelityResult)
    again = FidelityResult.load(out / "fidelity")
    pd.testing.assert_frame_equal(res.variants, again.variants)
    assert res.metrics["kendall_tau"] == doc["kendall_tau"]
    assert list(res.variants["variant"]) == [p["variant"] for p in doc["pairs"]]
    assert len(res.boot) == 30
    # LEE read on the later half of the stream (windows 2..4 of 5), from the per-window table
    late = res.deltas[res.deltas["window"] >= 2]
    late = late.groupby("variant").apply(lambda g: np.average(g["lee_delta_auc"], weights=g["events"]),
                                         include_groups=False)
    v = res.variants.set_index("variant")
    assert res.metrics["kendall_tau_late_windows"] == pytest.approx(
        kendalltau(late.reindex(v.index), v["full_delta_auc"]).statistic, abs=1e-12)
    fig = fidelity_figure(res)
    assert len(fig.data) == res.variants["family"].nunique()


def test_selection_and_derived_tables():
    sel = Selection(["noise", "upstream@*"])
    assert sel.wants("noise_2", "noise") and sel.wants("upstream@20260101T000000Z", "upstream")
    assert not sel.wants("oracle", "planted")
    with pytest.raises(InputError, match="matched no variant"):
        Selection(["nope"]).check(["oracle"])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 8)) @ rng.standard_normal((8, 8))
    assert np.linalg.matrix_rank(rank_k(x, 3) - x.mean(0), tol=1e-3) == 3
    assert rank_k(x, 8) == pytest.approx(x, abs=1e-4)  # every direction kept: the table itself
    noisy = with_noise(x, 1.0, np.random.default_rng(1))
    assert np.std(noisy - x, axis=0) == pytest.approx(x.std(0), rel=0.25)


def test_bad_full_setting_is_one_paragraph(tmp_path, capsys):
    assert main(["fidelity", "--world", str(tmp_path / "none"), "--out", str(tmp_path / "o"), "--full", "emb_dim"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_report_section_and_dashboard_show_the_figures(fidelity_run, tmp_path):
    from streamlit.testing.v1 import AppTest

    from analysis.report import build_report
    from analysis.suite import SuiteResult

    out, doc = fidelity_run
    res = FidelityResult.load(out / "fidelity")
    page = build_report(SuiteResult(variants=[]), fidelity=res)
    assert "id='fidelity'" in page and f"Kendall τ {doc['kendall_tau']:.3f}" in page
    assert all(p["variant"] in page for p in doc["pairs"])

    app = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app" / "dashboard" / "main.py"),
                            default_timeout=180)
    app.run()
    app.text_input(key="src_db").set_value(str(tmp_path / "results.sqlite")).run()
    app.switch_page("pages/lee.py").run()
    app.text_input(key="fidelity_dir").set_value(str(out)).run()
    assert not app.exception and not app.error, [e.value for e in [*app.exception, *app.error]]
    shown = {m.label: m.value for m in app.metric}
    assert shown["Kendall τ"] == f"{doc['kendall_tau']:.2f}" and shown["Verdicts agree"] == \
        f"{doc['verdict_agreement']:.0%}"
    table = next(d.value for d in app.dataframe if "full_delta_auc" in d.value.columns).set_index("variant")
    pairs = pd.DataFrame(doc["pairs"]).set_index("variant")
    np.testing.assert_allclose(table.loc[pairs.index, "full_delta_auc"], pairs["full_delta_auc"])


def test_full_model_early_stops_and_refits_on_the_validation_window_too(tiny_world):
    from lee.evaluator.data import stream_from_world
    from lee.evaluator.full_model import FullConfig, full_split, run_full

    stream = stream_from_world(tiny_world)
    split = full_split(stream, 5, 1)
    cfg = FullConfig(emb_dim=8, cross_layers=1, mlp_hidden=(16,), max_epochs=3, patience=1)
    plain = run_full(stream, None, cfg=cfg, n_windows=5, test_windows=1)
    assert 1 <= plain.best_epoch <= plain.epochs == len(plain.val_auc) <= 3
    assert plain.best_epoch == int(np.argmax(plain.val_auc)) + 1
    assert plain.samples_trained == plain.epochs * split.val_lo
    refit = run_full(stream, None, cfg=cfg.model_copy(update={"refit": True}), n_windows=5, test_windows=1)
    assert refit.val_auc == plain.val_auc  # same seed: the same validation path, then the refit
    assert refit.samples_trained == refit.epochs * split.val_lo + refit.best_epoch * split.test_lo
    assert len(refit.scores) == len(plain.scores) == len(stream) - split.test_lo
    with pytest.raises(InputError, match="test_windows"):
        full_split(stream, 5, 4)
