"""Purity, NMI and label-mix divergence of clusters against random draws (analysis/cluster_labels.py) and
``lee analyze clusters --label COLUMN --against-random N``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

from analysis.cluster_labels import (
    ClusterLabelResult,
    label_measures,
    label_mix,
    mix_divergence,
    purity,
    top_labels,
)
from app.cli.main import main
from lee.data.dataset import write_dataset
from lee.data.spec import DatasetSpec, FieldRole, FieldSpec, FieldType, Roles, SplitKind, SplitSpec
from lee.errors import InputError
from lee.snapshot import EmbeddingTable, write_snapshot

TINY = Path(__file__).resolve().parents[1] / "fixtures" / "tiny"


# ----------------------------------------------------------------------------- the measures


def test_purity_and_nmi_against_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    clusters = rng.integers(0, 5, 400)
    labels = np.where(rng.random(400) < 0.6, clusters % 3, rng.integers(0, 4, 400)).astype(str)
    table = contingency_matrix(labels, clusters)           # rows: labels, columns: clusters
    assert purity(clusters, labels) == pytest.approx(table.max(axis=0).sum() / table.sum(), abs=1e-15)
    # a hand example: clusters {0: a a b}, {1: b b b c} -> (2 + 3) / 7
    assert purity(np.array([0, 0, 0, 1, 1, 1, 1]), np.array(list("aabbbbc"))) == pytest.approx(5 / 7)
    ids = np.arange(400)
    mix = pd.DataFrame(pd.get_dummies(labels).to_numpy(float), index=ids, columns=sorted(set(labels)))
    got = label_measures(clusters, ids, pd.Series(labels, index=ids), mix)
    assert got["nmi"] == pytest.approx(normalized_mutual_info_score(labels, clusters), abs=1e-12)
    assert got["purity"] == pytest.approx(purity(clusters, labels))
    perfect = label_measures(np.array([0, 0, 1, 1]), np.arange(4), pd.Series(list("xxyy")),
                             pd.DataFrame({"x": [1.0, 1, 0, 0], "y": [0.0, 0, 1, 1]}))
    # each cluster's mix (1, 0) against the population's (0.5, 0.5): JS = ½ ln(4/3) + ½ (½ ln(2/3) + ½ ln 2)
    js = 0.5 * np.log(4 / 3) + 0.5 * (0.5 * np.log(2 / 3) + 0.5 * np.log(2))
    assert perfect == pytest.approx({"purity": 1.0, "nmi": 1.0, "label_mix_divergence": js})


def test_mix_divergence_closed_form() -> None:
    # cluster 0 mixes (1, 0), cluster 1 mixes (0.5, 0.5); overall (0.75, 0.25)
    mix = np.array([[1.0, 0.0], [1.0, 0.0], [0.5, 0.5], [0.5, 0.5]])

    def js(p: np.ndarray, q: np.ndarray) -> float:
        m = (p + q) / 2
        kl = lambda a, b: float(sum(x * np.log(x / y) for x, y in zip(a, b) if x > 0))  # noqa: E731
        return 0.5 * kl(p, m) + 0.5 * kl(q, m)

    overall = np.array([0.75, 0.25])
    want = 0.5 * js(np.array([1.0, 0.0]), overall) + 0.5 * js(np.array([0.5, 0.5]), overall)
    assert mix_divergence(np.array([0, 0, 1, 1]), mix) == pytest.approx(want, abs=1e-12)
    assert mix_divergence(np.array([0, 1, 0, 1]), mix) == pytest.approx(0.0, abs=1e-12)  # every cluster = population


# ----------------------------------------------------------------------------- labels from any column


def _dataset(tmp_path: Path, split: SplitSpec | None = None) -> Path:
    """Three users, three items with a multi-valued ``genres`` field; the hand-computed mixes are below."""
    events = pd.DataFrame({"ts": [1, 2, 3, 4, 5, 6], "user_id": [1, 1, 1, 2, 3, 2], "item_id": [10, 11, 12, 12, 10, 10],
                           "label": [1, 1, 0, 1, 0, 0]})
    items = pd.DataFrame({"item_id": [10, 11, 12], "genres": ["A|B", "B", "C"]})
    users = pd.DataFrame({"user_id": [1, 2, 3], "country": ["fr", "de", "fr"]})
    spec = DatasetSpec(roles=Roles(), split=split or SplitSpec(),
                       fields=(FieldSpec(name="genres", role=FieldRole.ITEM, type=FieldType.MULTI, table="items"),
                               FieldSpec(name="country", role=FieldRole.USER, table="users")))
    write_dataset(tmp_path / "ds", spec, events, users, items)
    return tmp_path / "ds"


def test_label_mix_from_the_other_table_and_top_labels(tmp_path: Path) -> None:
    from lee.data.dataset import Dataset

    ds = Dataset.open(_dataset(tmp_path))
    mix = label_mix(ds, "user", "genres")
    # user 1 clicked 10 (A|B, half each) and 11 (B): A 0.5, B 1.5 -> 0.25 / 0.75; user 2 clicked 12 (C); user 3 none
    want = pd.DataFrame({"A": [0.25, 0.0], "B": [0.75, 0.0], "C": [0.0, 1.0]}, index=[1, 2])
    pd.testing.assert_frame_equal(mix.mix, want, check_names=False, check_index_type=False)
    assert mix.table == "items" and "split on '|'" in mix.source and "all events" in mix.source
    # population mean mix (0.125, 0.375, 0.5): user 1's largest excess is B, user 2's is C
    assert top_labels(mix.mix).to_dict() == {1: "B", 2: "C"}
    own = label_mix(ds, "user", "country")                       # the users' own column, one-hot
    assert own.table == "users" and top_labels(own.mix).to_dict() == {1: "fr", 2: "de", 3: "fr"}
    items_own = label_mix(ds, "item", "genres")                  # an item's own genres, split equally
    assert items_own.mix.loc[10].to_dict() == {"A": 0.5, "B": 0.5, "C": 0.0}
    with pytest.raises(InputError, match=r"no column 'nope' in the users or items table .*users: country"):
        label_mix(ds, "user", "nope")
    # with a split, the default is the upstream part: user 2's only click (ts 4) is downstream there
    split = Dataset.open(_dataset(tmp_path / "s", SplitSpec(kind=SplitKind.TIME, cut=4)))
    up = label_mix(split, "user", "genres")
    assert list(up.mix.index) == [1] and "upstream events" in up.source
    assert list(label_mix(split, "user", "genres", part="all").mix.index) == [1, 2]


def test_cli_clusters_label_from_items_table(tmp_path: Path, capsys) -> None:
    data = _dataset(tmp_path)
    rng = np.random.default_rng(0)
    ur = EmbeddingTable(np.array([1, 2, 3], dtype=np.int64), rng.standard_normal((3, 4)).astype("f4"))
    write_snapshot(tmp_path / "snaps", "v", "2026-01-01T00:00:00Z", {"UR": ur})
    assert main(["analyze", "clusters", "--data", str(data), "--root", str(tmp_path / "snaps"), "--variant", "v",
                 "--label", "genres", "--k", "2", "--against-random", "3", "--json", "-q",
                 "--out", str(tmp_path / "out")]) == 0
    doc = json.loads(capsys.readouterr().out)
    vs = doc["against_random"]
    assert vs["label_table"] == "items" and vs["n_labelled"] == 2 and vs["random_draws"] == 3
    assert {m["measure"] for m in vs["measures"]} == {"purity", "nmi", "label_mix_divergence"}
    saved = ClusterLabelResult.load(tmp_path / "out" / "against-random")
    assert saved.summary()["measures"] == ClusterLabelResult.load(vs["written"]).summary()["measures"]
    assert (tmp_path / "out" / "result.json").is_file()                        # the clusters themselves
    assert main(["analyze", "clusters", "--data", str(data), "--root", str(tmp_path / "snaps"), "--variant", "v",
                 "--label", "nope", "--against-random", "3"]) == 2
    assert "no column 'nope'" in " ".join(capsys.readouterr().err.split())


# ----------------------------------------------------------------------------- planted truth separates


def _against_random(capsys, variant: str) -> dict:
    assert main(["analyze", "clusters", "--data", str(TINY / "world"), "--root", str(TINY / "snapshots"),
                 "--variant", variant, "--label", "label", "--against-random", "9", "--json", "-q"]) == 0
    doc = json.loads(capsys.readouterr().out)["against_random"]
    return {m["measure"]: m for m in doc["measures"]}


def test_planted_oracle_separates_from_random_on_purity(capsys) -> None:
    oracle, random = _against_random(capsys, "oracle"), _against_random(capsys, "random")
    for m in ("purity", "nmi", "label_mix_divergence"):
        assert oracle[m]["above_every_draw"] and oracle[m]["p_value"] == pytest.approx(0.1)
    assert oracle["purity"]["snapshot"] > 0.9 > oracle["purity"]["random_max"] + 0.5
    # the planted random variant is one more random draw: inside the draws' spread, far below the oracle
    r = random["purity"]
    assert abs(r["snapshot"] - r["random_mean"]) < 4 * r["random_sd"]
    assert r["snapshot"] < oracle["purity"]["snapshot"] - 0.5
