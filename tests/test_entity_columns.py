"""Users and items tables derived from the events of logs that ship none (lee.data.entity_columns), and how
``lee analyze clusters`` / ``gains`` choose their label / segment attribute.

Every expected table is computed here from the raw file with pandas (groupby per id), independently of
the importer. The samples are the synthetic native logs of fixtures/formats/native/ and, where 80 rows
are too few (the tolerance, the clusters), a 2,000-event Taobao log from scripts/make_native_formats.py
written in tmp_path, with item vectors planted around one centre per category.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.cli.analyze import _gains_by
from app.cli.main import main
from lee.data.dataset import Dataset
from lee.data.entity_columns import _share, recorded_checks
from lee.data.importers import ImportOptions, import_dataset
from lee.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
NATIVE = ROOT / "fixtures" / "formats" / "native"
TAOBAO_COLUMNS = ["user_id", "item_id", "category_id", "behavior_type", "timestamp"]


def _import(fmt: str, src: Path, mapping: Path, out: Path, **options: object) -> tuple[list[str], Dataset]:
    report = import_dataset(fmt, src, out, ImportOptions(mapping=mapping, **options))
    return report.notes, Dataset.open(out)


def _one_value_per_id(raw: pd.DataFrame, id_col: str, col: str) -> dict:
    """id -> its value, from the raw file; asserts the raw file holds one value per id."""
    per = raw.groupby(id_col)[col].nunique()
    assert (per == 1).all()
    return raw.groupby(id_col)[col].first().to_dict()


def _side(ds: Dataset, entity: str, col: str) -> dict:
    side = ds.attributes(entity)
    assert side is not None
    return dict(zip(side[ds.user_col if entity == "user" else ds.item_col], side[col], strict=True))


def _taobao_raw(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, header=None, names=TAOBAO_COLUMNS)


def _mapping_plus(base: Path, out: Path, extra: str) -> Path:
    out.write_text(base.read_text() + "\n" + extra)
    return out


# ----------------------------------------------------------------------------- the native samples


def test_taobao_category_becomes_an_items_column_and_behaviour_stays_on_the_events(tmp_path: Path) -> None:
    d = NATIVE / "taobao"
    raw = _taobao_raw(d / "UserBehavior.csv")
    notes, ds = _import("csv", d / "UserBehavior.csv", d / "mapping.toml", tmp_path / "ds")
    expected = {k: str(v) for k, v in _one_value_per_id(raw, "item_id", "category_id").items()}
    assert ds.users is None and ds.items is not None
    assert list(ds.items.columns) == ["item_id", "category_id"] and len(ds.items) == raw["item_id"].nunique()
    assert _side(ds, "item", "category_id") == expected
    # the field itself is unchanged: still read per event by the proxy
    assert ds.spec.field("category_id").table == "events" and "category_id" in ds.events.columns
    (check,) = recorded_checks(ds.spec)
    assert (check.derived, check.ids, check.ids_with_several_values, check.events) == (True, 10, 0, 80)
    assert f"items table: column category_id derived from the events' category_id (field category_id, role item): " \
           f"one value per item ({raw['item_id'].nunique()} items)" in notes
    assert ds.summary()["entity_columns"] == ["items.category_id from the events' category_id (constant per item_id)"]
    assert ds.attribute_columns("item") == {"category_id": "categorical"}

    # a field declared with role item that varies per event is not moved
    mapping = _mapping_plus(d / "mapping.toml", tmp_path / "map.toml",
                            '[[fields]]\nname = "behavior_type"\nrole = "item"\n')
    notes, ds2 = _import("csv", d / "UserBehavior.csv", mapping, tmp_path / "ds2")
    assert ds2.items is not None and list(ds2.items.columns) == ["item_id", "category_id"]
    mode_share = raw.groupby("item_id")["behavior_type"].agg(lambda s: s.value_counts().iloc[0]).sum() / len(raw)
    several = int((raw.groupby("item_id")["behavior_type"].nunique() > 1).sum())
    (kept,) = [c for c in recorded_checks(ds2.spec) if c.field == "behavior_type"]
    assert not kept.derived and kept.agreement == pytest.approx(mode_share) and kept.ids_with_several_values == several
    assert any(n.startswith("field behavior_type (role item) is not a column of the items table: its value varies "
                            f"within one item (item_id): only {_share(mode_share)} of events") and
               n.endswith("it stays an event field") for n in notes)
    assert "is an event field: its value varies" in (ds2.why_not_attribute("behavior_type") or "")


def test_avazu_site_category_varies_per_site_and_context_fields_are_not_checked(tmp_path: Path) -> None:
    d = NATIVE / "avazu"
    raw = pd.read_csv(d / "train.csv", dtype=str)
    _, ds = _import("csv", d / "train.csv", d / "mapping.toml", tmp_path / "ds")
    assert ds.items is None and ds.users is None              # site_category is random per event in the sample
    assert raw.groupby("site_id")["site_category"].nunique().max() > 1
    assert [c.field for c in recorded_checks(ds.spec)] == ["site_category"]   # banner_pos, C1, ... are context
    assert "role context" in (ds.why_not_attribute("C14") or "")


def _amazon_with_categories(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """The native Amazon reviews plus a ``category`` per asin (the sample has none; Amazon keeps it in the
    product metadata, which a user joins onto the reviews), and one planted disagreeing review."""
    lines = (NATIVE / "amazon" / "reviews.json").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    cats = ["Books", "Music", "Toys", "Garden"]
    for r in rows:
        r["category"] = cats[sum(map(ord, r["asin"])) % len(cats)]
    src = tmp_path / "reviews.json"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return src, pd.DataFrame(rows)


def test_amazon_reviewer_name_and_category_with_a_users_file(tmp_path: Path) -> None:
    src, raw = _amazon_with_categories(tmp_path)
    reviewers = sorted(raw["reviewerID"].unique())
    given = reviewers[: len(reviewers) // 2]            # a users file holding half the reviewers, with a country
    (tmp_path / "users.csv").write_text("reviewerID,country\n" + "".join(f"{r},c{k % 3}\n" for k, r in
                                                                          enumerate(given)))
    mapping = _mapping_plus(NATIVE / "amazon" / "mapping.toml", tmp_path / "map.toml",
                            '[[fields]]\nname = "reviewerName"\nrole = "user"\n\n'
                            '[[fields]]\nname = "category"\nrole = "item"\n\n'
                            '[[fields]]\nname = "reviewTime"\nrole = "item"\n\n'
                            '[users]\nfile = "users.csv"\nid = "reviewerID"\n')
    notes, ds = _import("jsonl", src, mapping, tmp_path / "ds")
    assert ds.items is not None and list(ds.items.columns) == ["asin", "category"]
    assert _side(ds, "item", "category") == _one_value_per_id(raw, "asin", "category")
    assert all(a.startswith(("0", "B00")) and len(a) == 10 for a in ds.items["asin"])   # text ids kept
    # the users file keeps its rows and column; reviewerName is added to it, also for the ids it lacked
    assert ds.users is not None and list(ds.users.columns) == ["reviewerID", "country", "reviewerName"]
    assert list(ds.users["reviewerID"][: len(given)]) == given
    assert _side(ds, "user", "reviewerName") == _one_value_per_id(raw, "reviewerID", "reviewerName")
    assert ds.users["country"].isna().sum() == len(reviewers) - len(given)
    assert any(f"{len(reviewers) - len(given)} user id(s) occur in the events but not in the users table" in n
               for n in notes)
    assert not [c for c in recorded_checks(ds.spec) if c.field == "reviewTime"][0].derived
    assert ds.attribute_columns("user") == {"country": "categorical", "reviewerName": "categorical"}

    # a column the users file already has is kept as given, and said so
    (tmp_path / "users.csv").write_text("reviewerID,reviewerName\n" + "".join(f"{r},given {r}\n" for r in reviewers))
    notes, ds2 = _import("jsonl", src, mapping, tmp_path / "ds2")
    assert ds2.users is not None and set(ds2.users["reviewerName"]) == {f"given {r}" for r in reviewers}
    assert ("field reviewerName (role user) is not a column of the users table: the users file already has a "
            "column reviewerName, which is kept as given; it stays an event field") in notes


# ----------------------------------------------------------------------------- tolerance, on a bigger log


def _generate_taobao(out: Path, events: int = 2000) -> Path:
    spec = importlib.util.spec_from_file_location("make_native_formats", ROOT / "scripts" / "make_native_formats.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out.mkdir(parents=True)
    module.taobao(out, events, np.random.default_rng(12), True)
    return out


@pytest.fixture(scope="module")
def taobao_big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _generate_taobao(tmp_path_factory.mktemp("native") / "taobao")


def test_a_few_disagreeing_items_are_counted_within_the_tolerance(taobao_big: Path, tmp_path: Path) -> None:
    raw = _taobao_raw(taobao_big / "UserBehavior.csv")
    rng = np.random.default_rng(3)
    planted = rng.choice(raw["item_id"].unique(), 4, replace=False)
    for item in planted:                                   # one event of each planted item gets another category
        row = raw.index[raw["item_id"] == item][0]
        raw.loc[row, "category_id"] = 999
    src = tmp_path / "UserBehavior.csv"
    raw.to_csv(src, header=False, index=False)
    mapping = NATIVE / "taobao" / "mapping.toml"
    notes, ds = _import("csv", src, mapping, tmp_path / "mem")
    n_items = raw["item_id"].nunique()
    modal = raw.groupby("item_id")["category_id"].agg(lambda s: s.value_counts().index[0])
    assert _side(ds, "item", "category_id") == {k: str(v) for k, v in modal.items()}
    assert "999" not in set(ds.items["category_id"])       # the planted values lose to each item's own
    # listed in the order of each item's first event, as without an items table: the proxy's rows do not move
    assert list(ds.items["item_id"]) == list(pd.unique(ds.events["item_id"]))
    (check,) = recorded_checks(ds.spec)
    assert (check.derived, check.ids, check.ids_with_several_values, check.events_off_modal) == (True, n_items, 4, 4)
    assert (f"4 of {n_items} items hold more than one value (4 of 2,000 events differ from their item's most "
            "frequent value, within the tolerance of 1%); each item takes its most frequent value") in " ".join(notes)
    assert ds.summary()["entity_columns"] == [
        "items.category_id from the events' category_id (constant per item_id; 4 of "
        f"{n_items} items held other values too, on 0.20% of events)"]
    # the out-of-core path (DuckDB counts) writes the same tables and description
    _import("csv", src, mapping, tmp_path / "ooc", spill_rows=0, memory_mb=64)
    assert (tmp_path / "mem" / "dataset.json").read_text() == (tmp_path / "ooc" / "dataset.json").read_text()
    pd.testing.assert_frame_equal(ds.items, Dataset.open(tmp_path / "ooc").items)
    # a stricter tolerance than the log's 99.8% agreement keeps it on the events
    notes, strict = _import("csv", src, mapping, tmp_path / "strict", entity_tolerance=0.999)
    assert strict.items is None
    assert any("only 99.8% of events hold their item's most frequent value, and 4 of" in n and "(tolerance: 99.9%)"
               in n for n in notes)


# ----------------------------------------------------------------------------- clusters and gains


def _planted_item_vectors(raw: pd.DataFrame, out: Path, *, random: bool = False) -> Path:
    """One vector per item: its category's centre plus small noise (or pure noise with ``random``)."""
    rng = np.random.default_rng(5)
    per_item = raw.groupby("item_id")["category_id"].first()
    cats = {c: k for k, c in enumerate(sorted(per_item.unique()))}
    centres = rng.normal(size=(len(cats), 8)) * 3.0
    noise = rng.normal(size=(len(per_item), 8)) * 0.3
    vectors = noise if random else centres[[cats[c] for c in per_item]] + noise
    np.savez(out, ids=per_item.index.to_numpy(np.int64), vectors=(vectors * (3.0 if random else 1.0)).astype("f4"))
    return out


def _purity(doc: dict) -> float:
    rows = doc["clusters"]
    return sum(r["size"] * r["top1_share"] for r in rows) / sum(r["size"] for r in rows)


def test_clusters_take_the_derived_category_and_planted_vectors_beat_random(
        taobao_big: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = _taobao_raw(taobao_big / "UserBehavior.csv")
    data, root = tmp_path / "data", tmp_path / "snaps"
    assert main(["data", "import", str(taobao_big / "UserBehavior.csv"), "--format", "csv", "--mapping",
                 str(NATIVE / "taobao" / "mapping.toml"), "--out", str(data), "--json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["entity_columns"] == [
        "items.category_id from the events' category_id (constant per item_id)"]
    for variant, random in (("planted", False), ("random", True)):
        npz = _planted_item_vectors(raw, tmp_path / f"{variant}.npz", random=random)
        assert main(["snapshots", "import", "--root", str(root), "--variant", variant, "--time",
                     "2017-12-04T00:00:00Z", "--table", f"IR={npz}", "--table",
                     f"UR={taobao_big / 'user_vectors.npz'}", "--json"]) == 0
    capsys.readouterr()
    docs = {}
    for variant in ("planted", "random"):
        assert main(["analyze", "clusters", "--data", str(data), "--root", str(root), "--variant", variant,
                     "--table", "IR", "--json", "-q"]) == 0
        out, err = capsys.readouterr()
        docs[variant] = json.loads(out)
        assert "clusters labelled by the items table's only categorical column, category_id" in " ".join(err.split())
    n_cats = raw["category_id"].nunique()
    for doc in docs.values():
        assert doc["label_column"] == "category_id" and doc["k"] == n_cats      # k: one per category
        assert {r["top1_label"] for r in doc["clusters"]} <= set(raw["category_id"].astype(str))
    assert _purity(docs["planted"]) == pytest.approx(1.0)
    assert _purity(docs["random"]) < 0.5                      # 0.36 measured; 12 categories over 50 items
    # the same comparison against random draws of the same shape
    assert main(["analyze", "clusters", "--data", str(data), "--root", str(root), "--variant", "planted",
                 "--table", "IR", "--against-random", "5", "--json", "-q"]) == 0
    measures = {m["measure"]: m for m in json.loads(capsys.readouterr().out)["against_random"]["measures"]}
    assert measures["purity"]["snapshot"] > measures["purity"]["random_max"]

    # users: no users table, so no label is chosen — said so, with where the attributes are
    assert main(["analyze", "clusters", "--data", str(data), "--root", str(root), "--variant", "planted",
                 "--table", "UR", "--json", "-q"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["label_column"] is None
    err = " ".join(err.split())
    assert "no label: the users table" in err and "items: category_id (categorical)" in err
    # the events' click column is not a users attribute, and the message says what it is
    assert main(["analyze", "clusters", "--data", str(data), "--root", str(root), "--variant", "planted",
                 "--table", "UR", "--label", "label"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--label label: 'label' is the events' 0/1 outcome (the label role: label = 1 where behavior_type != " \
           "'pv', else 0), not a user or item attribute" in err and "items: category_id (categorical)" in err
    # a column of the other table labels users by the items of their positive events
    assert main(["analyze", "clusters", "--data", str(data), "--root", str(root), "--variant", "planted",
                 "--table", "UR", "--label", "category_id", "--json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["label_column"] == "category_id"

    # gains: the only attribute is chosen; an events column is refused with its reason
    ds = Dataset.open(data)
    assert _gains_by(ds, None)[0] == "item:category_id"
    with pytest.raises(InputError, match="'behavior_type' is a column of the events only"):
        _gains_by(ds, "behavior_type")


def test_several_candidates_are_listed_never_chosen(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = NATIVE / "taobao"
    raw = _taobao_raw(d / "UserBehavior.csv")
    users = sorted(raw["user_id"].unique())
    (tmp_path / "users.csv").write_text("user_id,gender,city\n" + "".join(f"{u},{'fm'[u % 2]},c{u % 3}\n"
                                                                          for u in users))
    mapping = _mapping_plus(d / "mapping.toml", tmp_path / "map.toml", '[users]\nfile = "users.csv"\nid = "user_id"\n'
                            '[users.csv]\nheader = true\n')
    _, ds = _import("csv", d / "UserBehavior.csv", mapping, tmp_path / "ds")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "u.npz", ids=np.asarray(users, dtype=np.int64),
             vectors=rng.normal(size=(len(users), 4)).astype("f4"))
    assert main(["snapshots", "import", "--root", str(tmp_path / "s"), "--variant", "v", "--time",
                 "2017-12-04T00:00:00Z", "--table", f"UR={tmp_path / 'u.npz'}", "--json"]) == 0
    capsys.readouterr()
    assert main(["analyze", "clusters", "--data", str(tmp_path / "ds"), "--root", str(tmp_path / "s"), "--variant",
                 "v", "--table", "UR"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--label: the users table of" in err and "has 2 categorical columns (gender, city), so none is chosen" in err
    with pytest.raises(InputError, match=r"has 3 user and item attributes, so none is chosen for you; pass --by "
                                         r"COLUMN .*users: gender \(categorical\), city \(categorical\); items: "
                                         r"category_id \(categorical\)"):
        _gains_by(ds, None)
    assert _gains_by(ds, "user:city") == ("user:city", "--by user:city")
    with pytest.raises(InputError, match=r"--by label: 'label' is the events' 0/1 outcome"):
        _gains_by(ds, "label")
