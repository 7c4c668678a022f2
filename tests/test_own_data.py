"""The README's "Your own data" commands, run verbatim: a CSV log and .npz embeddings to a LEE
verdict with coverage and a report, from the documented commands alone."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.suite import SuiteResult
from app.cli.main import main
from lee.data.dataset import Dataset
from lee.jobs.store import ResultsStore

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[list[str]]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Your own data"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the section has a bash block"
    return [shlex.split(line) for line in block.group(1).splitlines() if line.strip()]


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> Path:
    """Run the block in a scratch directory that sees the repository's fixtures."""
    work = tmp_path_factory.mktemp("own")
    (work / "fixtures").symlink_to(REPO / "fixtures")
    old = Path.cwd()
    os.chdir(work)
    try:
        commands = readme_commands()
        assert len(commands) <= 5 and all(c[0] == "lee" for c in commands)
        for cmd in commands:
            assert main([*cmd[1:], "-q"]) == 0, cmd
    finally:
        os.chdir(old)
    return work / "runs" / "shop"


def test_import_declares_the_mapped_fields(ran: Path) -> None:
    ds = Dataset.open(ran / "data")
    raw = pd.read_csv(REPO / "fixtures" / "examples" / "shop" / "clicks.csv")
    assert len(ds.events) == len(raw) and ds.label.mean() == pytest.approx(raw["clicked"].mean())
    fields = {f.name: (f.role.value, f.type.value, f.cardinality) for f in ds.spec.fields}
    assert fields["device"] == ("context", "categorical", raw["device"].nunique())
    assert fields["country"][:2] == ("user", "categorical") and fields["price"][:2] == ("item", "numeric")


def test_the_verdict_carries_coverage(ran: Path) -> None:
    runs = ResultsStore(ran / "results.sqlite").compare()
    assert list(runs["variant"]) == ["shop-v1"]
    r = runs.iloc[0]
    users_with_vector = len(np.load(REPO / "fixtures/examples/shop/user_vectors.npz")["ids"])
    assert r["coverage_ids"] == pytest.approx(users_with_vector / 1500, abs=0.02)  # UR is the lower of UR and IR
    assert 0.8 < r["coverage_events"] < 0.95
    assert r["verdict"] == "better" and r["ci_low"] > 0      # the vectors carry the user and item factors


def test_the_report_holds_the_verdict_and_the_analyses(ran: Path) -> None:
    html = (ran / "report" / "report.html").read_text(encoding="utf-8")
    assert "id='lee'" in html and "id='health'" in html and "id='clusters'" in html
    lee = json.loads((ran / "report" / "data" / "lee" / "result.json").read_text())
    assert lee["summary"]["ranking"][0]["variant"] == "shop-v1"
    suite = SuiteResult.load(ran / "report" / "data" / "suite")
    n_vectors = len(np.load(REPO / "fixtures/examples/shop/user_vectors.npz")["ids"])
    assert suite.clusters["shop-v1"].n_ids == n_vectors
