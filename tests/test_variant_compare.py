"""``lee results compare --db DB A B``: the paired interval of AUC(A) − AUC(B), checked against a hand
computation (NumPy + SciPy's one-sample t-test) on a results store filled here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from analysis.variant_compare import VariantComparison, compare_variants
from app.cli.main import main
from lee.errors import InputError
from lee.jobs.store import ResultsStore, RunRecord

SEEDS = (0, 1, 2)
WINDOWS = 5
RNG = np.random.default_rng(11)
BASE = 0.60 + 0.01 * RNG.standard_normal((len(SEEDS), WINDOWS))      # shared baseline (same config and data)
AUC_A = BASE + 0.03 + 0.01 * RNG.standard_normal((len(SEEDS), WINDOWS))
AUC_B = BASE + 0.01 + 0.01 * RNG.standard_normal((len(SEEDS), WINDOWS))
AUC_A[1, 3] = np.nan                                                   # a window without both classes


def _record(run_id: str, variant: str, auc: np.ndarray, *, pooled_shift: float = 0.0, usage: str = "UR",
            fusion: str = "concat",
            config_hash: str = "cfg1", data_hash: str = "data1", event_time: str = "2026-01-01T00:30:00+00:00",
            finished: str = "2026-02-01T00:00:00") -> RunRecord:
    metrics = []
    for model, table in (("variant", auc), ("baseline", BASE)):
        for s, seed in enumerate(SEEDS):
            metrics.append((model, seed, 0, "auc", float(np.nanmean(table[s]))))   # headline: mean of windows
            metrics.append((model, seed, 0, "auc_pooled", float(np.nanmean(table[s])) + pooled_shift))
            metrics += [(model, seed, w + 1, "auc", float(table[s, w])) for w in range(WINDOWS)]
    return RunRecord(run_id=run_id, job="j", unit_key=f"unit-{run_id}", config_hash=config_hash, config={},
                     data_hash=data_hash, variant=variant, event_time=event_time, snapshot_path=None, checksums={},
                     usage=usage, fusion=fusion, code_version="test", started_at=finished, finished_at=finished,
                     seconds=1.0, summary={"auc": float(np.nanmean(auc)), "verdict": "better"}, metrics=metrics,
                     extra={})


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "results.sqlite"
    store = ResultsStore(path)
    store.add(_record("a-old", "A", AUC_A - 0.5, event_time="2026-01-01T00:25:00+00:00"))  # an earlier snapshot
    store.add(_record("a1", "A", AUC_A, pooled_shift=0.001))
    store.add(_record("b1", "B", AUC_B, pooled_shift=0.002))
    store.add(_record("a-cr", "A", AUC_A, usage="CR"))          # B has no CR run: not comparable
    store.add(_record("c-other", "C", AUC_B, data_hash="data2"))  # C ran on other data
    return path


def _hand() -> tuple[float, float, float, np.ndarray]:
    diff = AUC_A - AUC_B                                  # pair by (seed, window)
    per_window = np.nanmean(diff, axis=0)                 # seeds averaged within each window (NaN pair dropped)
    ci = stats.ttest_1samp(per_window, 0.0).confidence_interval(0.95)
    return float(per_window.mean()), float(ci.low), float(ci.high), per_window


def test_paired_compare_equals_a_hand_computation(db: Path, capsys) -> None:
    assert main(["results", "compare", "--db", str(db), "A", "B", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    delta, low, high, per_window = _hand()
    assert len(doc["rows"]) == 1
    row = doc["rows"][0]
    assert (row["usage"], row["fusion"], row["run_a"], row["run_b"]) == ("UR", "concat", "a1", "b1")
    assert row["delta"] == pytest.approx(delta, abs=1e-12)
    assert row["ci_low"] == pytest.approx(low, abs=1e-12) and row["ci_high"] == pytest.approx(high, abs=1e-12)
    assert row["windows"] == WINDOWS and row["seeds"] == len(SEEDS)
    assert row["verdict"] == ("better" if low > 0 else "worse" if high < 0 else "no different")
    assert row["baselines_identical"] is True
    c = per_window - per_window.mean()
    assert row["lag1_autocorr"] == pytest.approx((c[1:] * c[:-1]).sum() / (c * c).sum())
    # pooled_delta reads the recorded auc_pooled (window 0), not the headline window mean
    assert row["pooled_delta"] == pytest.approx(np.mean(np.nanmean(AUC_A, axis=1)) + 0.001
                                                - np.mean(AUC_B.mean(axis=1)) - 0.002)
    assert "t-interval" in doc["method"] and "independent" in doc["assumption"]
    # the other direction is the mirror image
    res = compare_variants(db, "B", "A")
    r = res.table.iloc[0]
    assert r["delta"] == pytest.approx(-delta) and r["ci_low"] == pytest.approx(-high)
    assert len(res.pairs) == len(SEEDS) * WINDOWS - 1              # the NaN pair is left out


def test_paired_compare_prints_its_method(db: Path, capsys) -> None:
    assert main(["results", "compare", "--db", str(db), "A", "B", "--level", "0.9"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("AUC(A) − AUC(B), 90% interval")
    assert "method: paired by seed and test window" in out and "assumption:" in out
    # without variants the ranking is printed as before
    assert main(["results", "compare", "--db", str(db), "--json"]) == 0
    assert {r["variant"] for r in json.loads(capsys.readouterr().out)} == {"A", "B", "C"}


def test_paired_compare_saves_and_loads(db: Path, tmp_path: Path) -> None:
    res = compare_variants(db, "A", "B")
    back = VariantComparison.load(res.save(tmp_path / "cmp"))
    assert back.summary() == res.summary()
    assert (tmp_path / "cmp" / "compare.csv").is_file() and (tmp_path / "cmp" / "pairs.csv").is_file()


def test_paired_compare_refuses_what_it_cannot_pair(db: Path, capsys) -> None:
    assert main(["results", "compare", "--db", str(db), "A", "C"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "no comparable runs" in err and "A has CR/concat, UR/concat" in err and "C has UR/concat" in err
    assert main(["results", "compare", "--db", str(db), "A", "B", "--usage", "CR"]) == 2
    assert "B has no runs" in " ".join(capsys.readouterr().err.split())
    assert main(["results", "compare", "--db", str(db), "A", "nope"]) == 2
    assert "no run of variant 'nope'; variants present: A, B, C" in " ".join(capsys.readouterr().err.split())
    assert main(["results", "compare", "--db", str(db), "A"]) == 2
    assert "two variants" in " ".join(capsys.readouterr().err.split())
    with pytest.raises(InputError, match="two different variants"):
        compare_variants(db, "A", "A")
    assert main(["results", "compare", "--db", str(db.parent / "none.sqlite"), "A", "B"]) == 2
