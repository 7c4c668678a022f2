"""MovieLens adapter (hand-made slices, bad input) and the case study end to end on the real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.variant_compare import compare_variants
from app.cli.main import main
from app.workflows.movielens_case import MovieLensCase, run_movielens_case
from lee.data.dataset import Dataset
from lee.data.spec import SplitKind
from lee.errors import InputError
from lee.snapshot import SnapshotStore
from lee.upstream.from_dataset import default_cadence_minutes
from lee.world.io import load_world, save_world
from lee.world.movielens import import_movielens, part

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "real" / "movielens-latest-small"


def _write(d: Path, ratings: list[tuple], movies: list[tuple]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(ratings, columns=["userId", "movieId", "rating", "timestamp"]).to_csv(d / "ratings.csv", index=False)
    pd.DataFrame(movies, columns=["movieId", "title", "genres"]).to_csv(d / "movies.csv", index=False)
    return d


MOVIES = [(1, "A", "Drama"), (2, "B", "Drama|Comedy"), (3, "C", "Horror"), (4, "D", "Drama"), (5, "E", "Comedy")]


def test_labels_clicks_and_per_user_split(tmp_path):
    # user 10 loves horror (rare overall), user 20 rates drama highly (common overall)
    ratings = [(10, 3, 5.0, 100), (10, 1, 2.0, 101), (10, 4, 4.0, 102), (10, 2, 1.0, 103),
               (20, 1, 4.5, 50), (20, 4, 4.0, 60), (20, 2, 5.0, 70), (20, 5, 3.5, 80), (20, 3, 2.0, 90)]
    w = import_movielens(_write(tmp_path / "m", ratings, MOVIES), downstream_share=0.5)
    ev = w.events
    assert ev["ts"].is_monotonic_increasing
    np.testing.assert_array_equal(ev["click"].to_numpy(), (ev["rating"].to_numpy() >= 4).astype(np.int8))
    labels = w.users.set_index("user_id")["label"].astype(str)
    assert labels[10] == "Horror"   # excess share over the population, not raw counts
    assert labels[20] == "Drama"
    for uid, n_down in ((10, 2), (20, 2)):  # ceil(n * 0.5) upstream, the later rest downstream
        u = ev[ev["user_id"] == uid]
        down, up = u[u["part"] == "downstream"], u[u["part"] == "upstream"]
        assert len(down) == n_down and down["ts"].min() > up["ts"].max()
    assert set(w.items["category"].astype(str)) == {"Drama", "Horror", "Comedy"}
    g = import_movielens(tmp_path / "m", split="global", downstream_share=0.5)
    cut = g.events.loc[g.events["part"] == "downstream", "ts"].min()
    assert (g.events.loc[g.events["part"] == "upstream", "ts"] < cut).all()
    save_world(w, tmp_path / "w")
    assert load_world(tmp_path / "w").events["part"].tolist() == ev["part"].tolist()


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="not a directory"):
        import_movielens(tmp_path / "nope")
    d = tmp_path / "m"
    d.mkdir()
    pd.DataFrame(MOVIES, columns=["movieId", "title", "genres"]).to_csv(d / "movies.csv", index=False)
    with pytest.raises(InputError, match="ratings.csv: file is missing"):
        import_movielens(d)
    no_rating = pd.DataFrame({"userId": [1], "movieId": [1], "stars": [4.0], "timestamp": [5]})
    no_rating.to_csv(d / "ratings.csv", index=False)
    with pytest.raises(InputError, match="missing column.*rating"):
        import_movielens(d)
    _write(d, [(1, 99, 4.0, 5)], MOVIES)
    with pytest.raises(InputError, match="movieId 99 is not in movies.csv"):
        import_movielens(d)
    _write(d, [(1, 1, 4.0, 5)], MOVIES)
    with pytest.raises(InputError, match="unknown split"):
        import_movielens(d, split="random")
    with pytest.raises(InputError, match="users must be at least 1"):
        import_movielens(d, users=0)
    with pytest.raises(InputError, match="downstream_share"):
        import_movielens(d, downstream_share=1.0)
    w = import_movielens(d, downstream_share=0.5)
    with pytest.raises(InputError, match="downstream part .* no events"):
        part(w, "downstream")
    assert main(["world", "import-movielens", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2


def test_real_data_split_facts():
    """The numbers docs/case-study.md quotes about the data and why the split is per user."""
    w = import_movielens(DATA)
    assert (len(w.users), len(w.events)) == (610, 100_836)
    assert w.events["click"].mean() == pytest.approx(0.4818, abs=1e-4)
    g = import_movielens(DATA, split="global")
    up, down = part(g, "upstream"), part(g, "downstream")
    seen = down.events["user_id"].isin(up.events["user_id"]).mean()
    assert seen < 0.15  # a global time cut leaves most downstream users unseen upstream
    up, down = part(w, "upstream"), part(w, "downstream")
    assert down.events["user_id"].isin(up.events["user_id"]).mean() == 1.0


def test_case_study_reduced_end_to_end(tmp_path):
    """The whole pipeline at a reduced size (CI), through the generic path: every step runs and writes
    what it says, and what it reports is what the dataset, the snapshots and the results store hold."""
    out = tmp_path / "case"
    case = run_movielens_case(DATA, out, users=120, seeds=(0,), n_boot=30, random_seeds=3, log=lambda *_: None)
    # 1. imported with `lee data import --format movielens`, 120 users kept, the users labelled by genre mix
    ds = Dataset.open(out / "data")
    assert ds.spec.source["format"] == "movielens" and ds.spec.split.kind == SplitKind.USER_FRACTION
    assert ds.events["user_id"].nunique() == 120 == case.world["users"]
    assert set(ds.users.columns) == {"user_id", "label"}
    assert case.world["label_rule"] == "label = 1 where rating >= 4, else 0"
    # 2. upstream events only, at the cadence the upstream time span gives
    up = ds.events.loc[ds.part_mask("upstream"), "ts"]
    assert case.upstream["snapshot_every_minutes"] == default_cadence_minutes(up.iloc[-1] - up.iloc[0])
    assert case.upstream["train_events"] + case.upstream["holdout_events"] == case.world["upstream_events"]
    store = SnapshotStore(out / "snapshots")
    assert case.upstream["snapshots"] == len(store.times("upstream")) >= 10 and store.times("random") == \
        [store.times("upstream")[-1]]
    # 3. LEE through the job file and results store; the paired interval is compare_variants on that store
    assert (out / "lee-job.toml").is_file()
    assert set(case.lee["usage"]) == {"UR", "IR", "CR"} and set(case.lee["variant"]) == {"upstream", "random"}
    assert case.lee[["auc", "baseline_auc"]].apply(lambda c: c.between(0.5, 1.0)).all().all()
    assert case.lee[["coverage_events", "coverage_ids"]].apply(lambda c: c.between(0.0, 1.0)).all().all()
    again = compare_variants(out / "results.sqlite", "upstream", "random").table.set_index("usage")
    got = case.upstream_vs_random.set_index("usage")
    assert list(got.index) == ["UR", "IR", "CR"]
    np.testing.assert_allclose(got["delta_auc_upstream_minus_random"], again.loc[got.index, "delta"])
    assert (got["ci_low"] <= got["ci_high"]).all()
    # 4-6. clusters against random draws, the suite, the report
    assert len(case.purity) == 4 and list(case.purity["variant"][:2]) == ["upstream", "random draw 0"]
    assert case.suite.volatility["upstream"]
    html = case.report.read_text(encoding="utf-8")
    assert "id='lee'" in html and "id='clusters'" in html and "id='importance'" in html
    doc = json.loads((out / "case-study" / "result.json").read_text())
    assert doc["summary"]["world"]["split"] == case.world["split"]
    assert MovieLensCase.load(out / "case-study").summary() == case.summary()


@pytest.fixture(scope="module")
def full_case(tmp_path_factory) -> MovieLensCase:
    """The case study on all of MovieLens, once for the tests below."""
    return run_movielens_case(DATA, tmp_path_factory.mktemp("ml-full") / "case", seeds=(0, 1, 2), n_boot=100,
                              log=lambda *_: None)


@pytest.mark.slow
def test_case_study_acceptance_full_data(full_case):
    """On all of MovieLens, through the generic path: against the baseline, the upstream UR, IR and CR
    are judged better and the random snapshot of their shape no different, in every usage."""
    lee = full_case.lee.set_index(["variant", "usage"])
    for usage in ("UR", "IR", "CR"):
        up, rnd = lee.loc[("upstream", usage)], lee.loc[("random", usage)]
        assert up["verdict"] == "better" and up["ci_low"] > 0, (usage, up)
        assert rnd["verdict"] == "no different", (usage, rnd)


@pytest.mark.slow
def test_case_study_ur_beats_random_paired(full_case):
    """The upstream UR beats a random snapshot of its shape under LEE with 95% confidence (paired by
    seed and window)."""
    ur = full_case.upstream_vs_random.set_index("usage").loc["UR"]
    assert ur["verdict"] == "better" and ur["ci_low"] > 0


@pytest.mark.slow
def test_case_study_clusters_beat_every_random_draw(full_case):
    """The UR's clusters' genre mix diverges from the population more than for any of 20 random
    embeddings of the same shape."""
    p = full_case.purity.set_index("variant")["genre_mix_divergence"]
    assert p["upstream"] > p.drop("upstream").max()
