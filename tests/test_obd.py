"""Open Bandit Dataset adapter (lee/world/obd.py) and case study (analysis/obd_case.py) on the
committed fixture, fixtures/real/open-bandit-small (the `all` campaign of both policies)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.workflows.obd_case import ObdCaseStudy, obd_case_study, obd_dataset, run_obd_case
from lee.data.dataset import Dataset
from lee.data.importers import import_dataset
from lee.errors import InputError
from lee.world.obd import (
    EXPOSURE_COLUMNS,
    OBD_FIELDS,
    POLICIES,
    USER_FEATURES,
    import_obd,
    load_exposures,
    read_obd,
    stream_from_exposures,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "real" / "open-bandit-small"


def _raw(policy: str, name: str = "all") -> pd.DataFrame:
    """A file of the fixture as pandas reads it directly (the unnamed index included)."""
    return pd.read_csv(FIXTURE / policy / "all" / f"{name}.csv.gz")


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return read_obd(FIXTURE)


@pytest.fixture
def small_obd(tmp_path: Path) -> Path:
    """A 300-row-per-policy copy of the fixture as plain CSV, for breaking on purpose."""
    root = tmp_path / "obd"
    for policy in POLICIES:
        d = root / policy / "all"
        d.mkdir(parents=True)
        with gzip.open(FIXTURE / policy / "all" / "all.csv.gz", "rt") as fh:
            head = [next(fh) for _ in range(301)]
        (d / "all.csv").write_text("".join(head))
        items = gzip.decompress((FIXTURE / policy / "all" / "item_context.csv.gz").read_bytes())
        (d / "item_context.csv").write_bytes(items)
    return root


# ----------------------------------------------------------------------------- reading


def test_fixture_matches_a_direct_read(log: pd.DataFrame) -> None:
    assert list(log.columns) == list(EXPOSURE_COLUMNS)
    assert len(log) == 20_000
    assert log["arm"].value_counts().to_dict() == {"random": 10_000, "bts": 10_000}
    for policy in POLICIES:
        raw = _raw(policy)
        part = log[log["arm"] == policy]
        assert int(part["click"].sum()) == int(raw["click"].sum())
        assert part["propensity_score"].sum() == pytest.approx(raw["propensity_score"].sum())
        # the same impressions, re-ordered only by (sub-second) time
        raw_sorted = raw.assign(t=pd.to_datetime(raw["timestamp"], utc=True)).sort_values("t", kind="stable")
        assert part["item_id"].to_numpy().tolist() == raw_sorted["item_id"].to_numpy().tolist()
        assert part["ts"].to_numpy().tolist() == [int(t.timestamp()) for t in raw_sorted["t"]]
    assert log["ts"].dtype == np.int64 and log["click"].dtype == np.int8
    assert (np.diff(log["ts"].to_numpy()) >= 0).all()
    assert log["ts"].iloc[0] == int(pd.Timestamp("2019-11-24 00:00:17.004101+00:00").timestamp())
    assert log["user_key"].tolist() == ["|".join(r) for r in log[list(USER_FEATURES)].itertuples(index=False)]
    assert set(log["campaign"]) == {"all"}


def test_item_features_are_one_table_for_both_arms(log: pd.DataFrame) -> None:
    # bts's item_context hashes item_feature_1..3 differently; the log uses random's for both arms
    per_item = log.groupby("item_id")[[f"item_feature_{k}" for k in range(4)]].nunique()
    assert (per_item == 1).all().all()
    items = _raw("random", "item_context").set_index("item_id")
    assert log["item_feature_1"].nunique() == items["item_feature_1"].nunique() == 12
    bts = log[log["arm"] == "bts"].iloc[0]
    assert bts["item_feature_2"] == items.loc[bts["item_id"], "item_feature_2"]


def test_import_round_trip(log: pd.DataFrame, tmp_path: Path) -> None:
    out = import_obd(FIXTURE, tmp_path / "obd")
    assert sorted(p.name for p in out.iterdir()) == ["exposures.parquet", "obd.json"]
    back = load_exposures(out)
    pd.testing.assert_frame_equal(back, log)
    meta = json.loads((out / "obd.json").read_text())
    assert meta["campaign"] == "all" and meta["label_rule"] == "click = the logged click"
    assert meta["rows"] == {"random": 10_000, "bts": 10_000}
    assert meta["clicks"] == {p: int(_raw(p)["click"].sum()) for p in POLICIES}
    assert meta["ctr"]["bts"] == pytest.approx(meta["clicks"]["bts"] / 10_000)
    assert meta["time_range"]["start_ts"] == int(log["ts"].min())
    with pytest.raises(InputError, match="not empty"):
        import_obd(FIXTURE, out)
    import_obd(FIXTURE, out, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["obd"]          # no temporary directory left


def test_plain_and_gzip_csv_read_the_same(small_obd: Path) -> None:
    small = read_obd(small_obd)
    assert len(small) == 600 and small["arm"].value_counts().to_dict() == {"random": 300, "bts": 300}


def _edit(root: Path, policy: str, name: str, fn) -> Path:
    path = root / policy / "all" / name
    frame = pd.read_csv(path)
    fn(frame).to_csv(path, index=False)
    return path


def test_bad_paths(small_obd: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a directory"):
        read_obd(tmp_path / "nowhere")
    with pytest.raises(InputError, match="unknown OBD campaign 'kids'"):
        read_obd(small_obd, campaign="kids")
    with pytest.raises(InputError, match=r"men: campaign directory is missing"):
        read_obd(small_obd, campaign="men")
    (small_obd / "bts" / "all" / "item_context.csv").unlink()
    with pytest.raises(InputError, match=r"bts/all/item_context\.csv: file is missing"):
        read_obd(small_obd)
    for p in sorted((small_obd / "bts").rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    (small_obd / "bts").rmdir()
    with pytest.raises(InputError, match=r"bts: behaviour-policy directory is missing"):
        read_obd(small_obd)


@pytest.mark.parametrize(("policy", "name", "edit", "message"), [
    ("bts", "all.csv", lambda f: f.drop(columns="click"), r"bts/all/all\.csv: missing column\(s\) click"),
    ("random", "item_context.csv", lambda f: f.drop(columns="item_feature_2"),
     r"random/all/item_context\.csv: missing column\(s\) item_feature_2"),
    ("random", "all.csv", lambda f: f.assign(click=f["click"].where(f.index != 7, 2)),
     r"random/all/all\.csv: column click must hold only 0 or 1; row 7 holds 2"),
    ("bts", "all.csv", lambda f: f.assign(timestamp=f["timestamp"].where(f.index != 3, "yesterday")),
     r"bts/all/all\.csv: column timestamp holds an unparseable time 'yesterday' at row 3"),
    ("bts", "all.csv", lambda f: f.assign(item_id=f["item_id"].where(f.index != 5, 999)),
     r"item_id 999 \(row 5\) has no row in"),
    ("bts", "item_context.csv", lambda f: f.assign(item_feature_3="same"),
     r"bts/all/item_context\.csv\[\.gz\]: column item_feature_3 groups the items differently"),
])
def test_bad_contents_name_file_and_column(small_obd: Path, policy, name, edit, message) -> None:
    _edit(small_obd, policy, name, edit)
    with pytest.raises(InputError, match=message):
        read_obd(small_obd)


def test_load_exposures_checks_its_input(tmp_path: Path, small_obd: Path) -> None:
    with pytest.raises(InputError, match="not a directory"):
        load_exposures(tmp_path / "none")
    out = import_obd(small_obd, tmp_path / "imported")
    (out / "obd.json").write_text(json.dumps({"rows": {"random": 1, "bts": 1}}))
    with pytest.raises(InputError, match="differ from"):
        load_exposures(out)
    (out / "exposures.parquet").unlink()
    with pytest.raises(InputError, match=r"exposures\.parquet: file is missing"):
        load_exposures(out)


# ----------------------------------------------------------------------------- the stream


def test_stream_encoding_is_consistent_with_the_log(log: pd.DataFrame) -> None:
    s = stream_from_exposures(log)
    assert s.fields == OBD_FIELDS and len(s) == len(log) and s.x.shape == (len(log), len(OBD_FIELDS))
    card = dict(zip(s.fields, s.cardinalities))
    for f in ("position", *USER_FEATURES, "item_feature_1", "item_feature_2", "item_feature_3", "arm"):
        assert card[f] == log[f].nunique(), f
    assert card["item"] == 80 and card["hour"] == 24 and card["item_feature_0_bin"] == 10
    x = pd.DataFrame(s.x.numpy(), columns=s.fields)
    assert (x.max() < pd.Series(card)).all() and (x.min() >= 0).all()
    assert (s.item_ids[x["item"]] == log["item_id"].to_numpy()).all()
    assert (s.item_ids[s.item_row] == log["item_id"].to_numpy()).all()
    assert (s.user_ids[s.user_row] == log["user_key"].to_numpy()).all()
    assert len(s.user_ids) == log["user_key"].nunique()
    assert (np.asarray(sorted(log["arm"].unique()))[x["arm"]] == log["arm"].to_numpy()).all()  # sorted codes
    assert (x["hour"].to_numpy() == (log["ts"].to_numpy() // 3600) % 24).all()
    # deciles are ordered: a higher bin never holds a smaller item_feature_0
    by_bin = log["item_feature_0"].groupby(x["item_feature_0_bin"].to_numpy()).agg(["min", "max"])
    assert (by_bin["max"].to_numpy()[:-1] < by_bin["min"].to_numpy()[1:]).all()
    assert s.y.numpy().sum() == log["click"].sum() and (s.ts == log["ts"].to_numpy()).all()
    assert (s.extra["arm"] == log["arm"].to_numpy()).all() and (s.extra["user_key"] == log["user_key"].to_numpy()).all()

    sub = stream_from_exposures(log, fields=("item", "arm"))
    assert sub.fields == ("item", "arm") and sub.cardinalities == (80, 2)
    with pytest.raises(InputError, match="fields: user not usable"):
        stream_from_exposures(log, fields=("item", "user"))
    with pytest.raises(InputError, match="missing column"):
        stream_from_exposures(log.drop(columns="user_key"))


# ----------------------------------------------------------------------------- the case study


@pytest.fixture(scope="module")
def study(log: pd.DataFrame) -> ObdCaseStudy:
    return obd_case_study(log, seeds=(0, 1), n_windows=5, n_boot=30, n_repeats=2)


def test_case_study_auc(study: ObdCaseStudy, log: pd.DataFrame) -> None:
    assert 0.0 <= study.auc <= 1.0
    lo, hi = study.auc_ci
    assert 0.0 <= lo <= study.auc <= hi <= 1.0
    assert study.auc == pytest.approx(study.auc_seeds["auc"].mean())
    assert study.test_events == 16_000
    assert study.test_clicks == int(log["click"].iloc[4_000:].sum())
    assert study.windows["clicks"].sum() == study.test_clicks and len(study.windows) == 4
    assert set(study.windows.columns) >= {"auc_seed_0", "auc_seed_1", "auc_mean"}


def test_in_memory_dataset_equals_the_import(log: pd.DataFrame, tmp_path: Path) -> None:
    """obd_dataset(read_obd(...)) holds what `lee data import --format obd` writes."""
    import_dataset("obd", FIXTURE, tmp_path / "obd")
    imported, mem = Dataset.open(tmp_path / "obd"), obd_dataset(log)
    for name in ("events", "users", "items"):
        pd.testing.assert_frame_equal(getattr(mem, name).reset_index(drop=True),
                                      getattr(imported, name).reset_index(drop=True), check_dtype=False)
    assert [f.model_dump() for f in mem.spec.fields] == [f.model_dump() for f in imported.spec.fields]


def test_case_study_importance_covers_every_field(study: ObdCaseStudy) -> None:
    t = study.importance
    # the generic stream: the two ids, then every declared field in the dataset's order
    assert study.fields == ("user", "item", "position", "arm", "hour", *USER_FEATURES,
                            *(f"item_feature_{k}" for k in range(4)))
    assert study.groups == {"user side": ["user", *USER_FEATURES],
                            "item side": ["item", *(f"item_feature_{k}" for k in range(4))],
                            "context": ["position", "arm", "hour"]}
    assert set(study.fields) | set(study.groups) == set(t["target"])
    assert (t["ci_low"] <= t["drop"]).all() and (t["drop"] <= t["ci_high"]).all()
    assert study.importance_events == (16_000, 20_000) and study.importance_clicks > 0


def test_case_study_arms(study: ObdCaseStudy, log: pd.DataFrame) -> None:
    s = study.summary()["arms"]
    for policy in POLICIES:
        raw = _raw(policy)
        assert s["ctr"][policy] == pytest.approx(raw["click"].mean())
        assert s["clicks"][policy] == int(raw["click"].sum())
    assert s["lift"] == pytest.approx(s["ctr"]["bts"] / s["ctr"]["random"] - 1)
    assert s["ci_low"] <= s["lift"] <= s["ci_high"] and 0.0 <= s["p_value"] <= 1.0
    assert s["ci_user_key_low"] <= s["lift"] <= s["ci_user_key_high"]
    assert "policies, not items" in s["note"]
    assert set(study.lift.table["segment"]) == {"1", "2", "3", "all"}


def test_case_study_exports(study: ObdCaseStudy, tmp_path: Path) -> None:
    written = study.save(tmp_path / "obd")
    doc = json.loads((written / "result.json").read_text())
    assert set(doc["tables"]) == {"auc_seeds", "windows", "importance", "arms", "arm_lift"}
    back = ObdCaseStudy.load(written)
    assert back.summary() == study.summary()
    pd.testing.assert_frame_equal(back.importance, study.importance)
    assert "proxy AUC" in study.text()


def test_run_obd_case_imports_then_studies(tmp_path: Path, study: ObdCaseStudy) -> None:
    """The generic path (import, then the study on the dataset) gives the numbers of the in-memory one."""
    case = run_obd_case(FIXTURE, tmp_path / "obd", seeds=(0, 1), n_windows=5, n_boot=30, n_repeats=2)
    assert (tmp_path / "obd" / "data" / "dataset.json").is_file()
    assert ObdCaseStudy.load(tmp_path / "obd" / "case-study").summary() == case.summary()
    assert case.summary() == study.summary()
