"""``lee report`` on a snapshot root whose snapshot has text ids while the log's ids are integers.

Reproduction (before the fix: exit 2, no report; the clusters step's InputError ended the whole run):

    lee snapshots import --root ROOT --variant textv --time 2024-03-15 --table UR=users.csv  # id column: 'u1000..'
    lee report --world fixtures/tiny/world --root ROOT --out OUT

Every analysis that can run on text ids runs (health, volatility, collapse, segments); clusters and
feature-masking importance, which need the snapshot's ids in the log, say in the report why they did not.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.collapse import effective_rank
from app.cli.main import main

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "fixtures" / "tiny"


def text_id_csv(path: Path, seed: int) -> tuple[pd.Series, np.ndarray]:
    """The tiny world's users with text ids ('u' + id) and seeded Gaussian vectors, as an export-style CSV."""
    users = pd.read_parquet(TINY / "world" / "users.parquet")
    ids = "u" + users["user_id"].astype(str)
    vectors = np.random.default_rng(seed).normal(size=(len(users), 8)).astype(np.float32)
    pd.DataFrame({"id": ids, **{f"v{j}": vectors[:, j] for j in range(8)}}).to_csv(path, index=False)
    return ids, vectors


def import_text_snapshot(tmp_path: Path, root: Path, time: str, seed: int) -> tuple[pd.Series, np.ndarray]:
    csv = tmp_path / f"users-{seed}.csv"
    ids, vectors = text_id_csv(csv, seed)
    assert main(["snapshots", "import", "--root", str(root), "--variant", "textv", "--time", time,
                 "--table", f"UR={csv}", "--json"]) == 0
    return ids, vectors


def report(root: Path, out: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[dict, str]:
    capsys.readouterr()
    assert main(["report", "--world", str(TINY / "world"), "--root", str(root), "--out", str(out),
                 "--boot", "20", "--json", "-q", *extra]) == 0
    doc = json.loads(capsys.readouterr().out)
    return doc, Path(doc["report"]).read_text(encoding="utf-8")


def test_report_on_a_root_of_one_text_id_snapshot(tmp_path, capsys):
    root = tmp_path / "snaps"
    _, vectors = import_text_snapshot(tmp_path, root, "2024-03-15", seed=0)
    doc, html = report(root, tmp_path / "out", capsys)

    for section in ("health", "collapse", "clusters", "segments", "notes"):
        assert f"id='{section}'" in html
    clusters = [x for x in doc["skipped"] if x.startswith("clusters textv")]
    assert len(clusters) == 1
    assert clusters[0].startswith("clusters textv: not run (UR ids are text, events.user_id are integer; "
                                  "cluster CTR needs the snapshot's ids in the log)")
    # the sentence stands in the Clusters section itself, escaped, not only in the notes at the end
    section = html[html.index("id='clusters'"):html.index("id='segments'")]
    assert "clusters textv: not run (UR ids are text" in section
    assert any(x.startswith("volatility textv: no snapshot before") for x in doc["skipped"])

    # the collapse numbers are the text-id snapshot's own: effective rank of its centred singular values
    frame = pd.read_csv(tmp_path / "out" / "data" / "suite" / "collapse-UR.csv").set_index("variant")
    x = vectors.astype(np.float64)
    assert frame.loc["textv", "effective_rank"] == pytest.approx(
        effective_rank(np.linalg.svd(x - x.mean(0), compute_uv=False)), rel=1e-6)


def test_report_on_a_root_mixing_text_and_integer_ids(tmp_path, capsys):
    root = tmp_path / "snaps"
    (root / "oracle").mkdir(parents=True)
    src = TINY / "snapshots" / "oracle"
    latest = sorted(p.name for p in src.iterdir())[-1]  # the latest integer-id oracle snapshot
    shutil.copytree(src / latest, root / "oracle" / latest)
    ids, before = import_text_snapshot(tmp_path, root, "2024-03-15", seed=0)
    _, after = import_text_snapshot(tmp_path, root, "2024-03-16", seed=1)
    doc, html = report(root, tmp_path / "out", capsys, "--importance", "textv")

    # clusters ran on the integer-id variant and not on the text-id one, which says why
    suite = json.loads((tmp_path / "out" / "data" / "suite" / "result.json").read_text())["summary"]
    assert set(suite["clusters"]) == {"oracle"}
    assert [x[:40] for x in doc["skipped"] if x.startswith("clusters")] == ["clusters textv: not run (UR ids are text"]
    importance = [x for x in doc["skipped"] if x.startswith("importance textv: not run: ")]
    assert len(importance) == 1 and "its ids are text" in importance[0]
    assert "importance textv: not run" in html[html.index("id='importance'"):]

    # volatility ran on the text ids: mean cosine of each id's two vectors
    cos = (before * after).sum(1) / np.linalg.norm(before, axis=1) / np.linalg.norm(after, axis=1)
    assert suite["volatility"]["textv"]["UR"]["n_shared"] == len(ids)
    assert suite["volatility"]["textv"]["UR"]["mean_cosine"] == pytest.approx(float(cos.mean()), abs=1e-6)
