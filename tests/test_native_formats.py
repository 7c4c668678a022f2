"""Public click logs in their native layouts (Avazu, Taobao, RetailRocket, Amazon reviews, KuaiRec,
Yoochoose) through the documented ``lee data import`` mappings, and what goes wrong without them.

The samples in fixtures/formats/native/ are synthetic (scripts/make_native_formats.py). Every
expectation is computed here from the raw file with pandas / json, independently of the importer:
row counts, the label rate of the click rule, the time span in the right unit, the ids. The
failure cases are the mistakes a new user makes — forgetting that a time is in milliseconds or
written as YYMMDDHH, a clicks-only log, a placeholder device id — and each must stop (or warn)
with one paragraph naming the file, the line, the column and the fix.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.cli.main import main
from lee.data.dataset import Dataset
from lee.data.importers import ImportOptions, import_dataset
from lee.errors import InputError

NATIVE = Path(__file__).resolve().parents[1] / "fixtures" / "formats" / "native"
JSONL = NATIVE.parent / "jsonl"


def run(fmt: str, src: Path, mapping: Path, out: Path, **options: object) -> tuple[dict, Dataset]:
    report = import_dataset(fmt, src, out, ImportOptions(mapping=mapping, **options))
    return report.summary(), Dataset.open(out)


def epoch(values: pd.Series) -> np.ndarray:
    """Epoch seconds of parsed UTC times."""
    return ((values - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)


def assert_understood(ds: Dataset, *, rows: int, label: np.ndarray, ts: np.ndarray, users: np.ndarray,
                      items: np.ndarray) -> None:
    """Rows, label rate, time span (epoch seconds) and the id sets all match the raw file's."""
    assert len(ds.events) == rows
    assert ds.spec.label_rate == pytest.approx(label.mean())
    assert 0 < ds.spec.label_rate < 1
    assert ds.spec.time_span == (int(ts.min()), int(ts.max()))
    assert set(ds.events[ds.user_col]) == set(users)
    assert set(ds.events[ds.item_col]) == set(items)
    assert ds.warnings() == []


def test_avazu_hour_is_yymmddhh_and_ids_are_hashed_text(tmp_path: Path) -> None:
    d = NATIVE / "avazu"
    raw = pd.read_csv(d / "train.csv", dtype=str)
    summary, ds = run("csv", d / "train.csv", d / "mapping.toml", tmp_path / "ds")
    ts = epoch(pd.to_datetime(raw["hour"], format="%y%m%d%H", utc=True))
    assert_understood(ds, rows=80, label=raw["click"].astype(int).to_numpy(), ts=ts, users=raw["device_ip"],
                      items=raw["site_id"])
    assert summary["time_span"] == ["2014-10-21T00:00:00Z", "2014-10-22T22:00:00Z"]
    assert ds.events[ds.user_col].dtype == object or str(ds.events[ds.user_col].dtype).startswith("str")
    assert {f.name: f.cardinality for f in ds.spec.fields}["banner_pos"] == raw["banner_pos"].nunique()


def test_taobao_without_header_labels_every_action_beyond_a_page_view(tmp_path: Path) -> None:
    d = NATIVE / "taobao"
    raw = pd.read_csv(d / "UserBehavior.csv", header=None, names=["u", "i", "c", "b", "t"])
    summary, ds = run("csv", d / "UserBehavior.csv", d / "mapping.toml", tmp_path / "ds")
    assert_understood(ds, rows=80, label=(raw["b"] != "pv").to_numpy(), ts=raw["t"].to_numpy(), users=raw["u"],
                      items=raw["i"])
    assert ds.events[ds.user_col].dtype == np.int64
    assert summary["label_rule"] == "label = 1 where behavior_type != 'pv', else 0"
    assert "behavior_type" in ds.events.columns and "behavior_type" not in [f.name for f in ds.spec.fields]
    _, buys = run("csv", d / "UserBehavior.csv", d / "mapping.toml", tmp_path / "buys", positive="behavior_type==buy")
    assert buys.spec.label_rate == pytest.approx((raw["b"] == "buy").mean())


def test_retailrocket_milliseconds_become_seconds(tmp_path: Path) -> None:
    d = NATIVE / "retailrocket"
    raw = pd.read_csv(d / "events.csv")
    summary, ds = run("csv", d / "events.csv", d / "mapping.toml", tmp_path / "ds")
    assert_understood(ds, rows=80, label=(raw["event"] != "view").to_numpy(), ts=raw["timestamp"].to_numpy() // 1000,
                      users=raw["visitorid"], items=raw["itemid"])
    assert summary["time_span"][0].startswith("2015-06-")


def test_retailrocket_milliseconds_read_as_seconds_are_refused_with_the_unit(tmp_path: Path) -> None:
    d = NATIVE / "retailrocket"
    mapping = tmp_path / "map.toml"
    mapping.write_text((d / "mapping.toml").read_text().replace('[time]\nunit = "ms"\n', ""))
    with pytest.raises(InputError) as err:
        run("csv", d / "events.csv", mapping, tmp_path / "ds")
    first = pd.read_csv(d / "events.csv")["timestamp"].iloc[0]
    msg = str(err.value)
    assert f"events.csv: line 2: column timestamp holds '{first}'" in msg
    assert "default unit, epoch seconds" in msg and "year 4" in msg
    assert f'set unit = "ms" in the [time] table of {mapping}' in msg
    assert not (tmp_path / "ds").exists()


def test_seconds_declared_as_milliseconds_are_refused(tmp_path: Path) -> None:
    d = NATIVE / "taobao"
    mapping = tmp_path / "map.toml"
    mapping.write_text((d / "mapping.toml").read_text() + '\n[time]\nunit = "ms"\n')
    with pytest.raises(InputError, match=r'line 1: column timestamp .*declared unit, epoch milliseconds, is 1970-01-1'
                                         r'.*look like epoch seconds: set unit = "s"'):
        run("csv", d / "UserBehavior.csv", mapping, tmp_path / "ds")


def test_avazu_hour_read_as_seconds_is_refused_with_its_format(tmp_path: Path) -> None:
    d = NATIVE / "avazu"
    mapping = tmp_path / "map.toml"
    mapping.write_text((d / "mapping.toml").read_text().replace('[time]\nunit = "format"\nformat = "%y%m%d%H"\n', ""))
    with pytest.raises(InputError, match=r"train.csv: line 2: column hour holds '14102100', which read in the default "
                                         r"unit, epoch seconds, is 1970-06-13T05:15:00Z; .*dates written as digits "
                                         r'\(%y%m%d%H\): set unit = "format" and format = "%y%m%d%H"'):
        run("csv", d / "train.csv", mapping, tmp_path / "ds")


def test_a_placeholder_device_id_as_the_user_is_flagged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = NATIVE / "avazu"
    raw = pd.read_csv(d / "train.csv", dtype=str)
    share = (raw["device_id"] == "a99f214a").sum()
    mapping = tmp_path / "map.toml"
    mapping.write_text((d / "mapping.toml").read_text().replace('user_id = "device_ip"', 'user_id = "device_id"'))
    summary, ds = run("csv", d / "train.csv", mapping, tmp_path / "ds")
    expected = f"user id 'a99f214a' (column device_id) is on {share:,} of the 80 events ({share / 80:.0%};"
    assert any(n.startswith("warning: " + expected) for n in summary["notes"])
    assert ds.warnings()[0].startswith(expected)
    assert main(["data", "show", str(tmp_path / "ds")]) == 0
    assert "warnings:\n  - " + expected in capsys.readouterr().out


def test_amazon_reviews_json_lines_keep_asins_as_text(tmp_path: Path) -> None:
    d = NATIVE / "amazon"
    raw = pd.DataFrame([json.loads(line) for line in (d / "reviews.json").read_text().splitlines()])
    _, ds = run("jsonl", d / "reviews.json", d / "mapping.toml", tmp_path / "ds")
    assert_understood(ds, rows=80, label=(raw["overall"] >= 4).to_numpy(), ts=raw["unixReviewTime"].to_numpy(),
                      users=raw["reviewerID"], items=raw["asin"])
    assert any(a.startswith("0000") for a in ds.events["asin"])
    # the same times from the text date "09 13, 2009"
    mapping = tmp_path / "map.toml"
    mapping.write_text((d / "mapping.toml").read_text().replace(
        'ts = "unixReviewTime"', 'ts = "reviewTime"\n\n[time]\nunit = "format"\nformat = "%m %d, %Y"'))
    _, by_text = run("jsonl", d / "reviews.json", mapping, tmp_path / "text")
    assert by_text.spec.time_span == ds.spec.time_span


def test_json_lines_given_as_csv_point_to_jsonl(tmp_path: Path) -> None:
    d = NATIVE / "amazon"
    with pytest.raises(InputError, match=r"reviews.json: line 1 is a JSON object.*use --format jsonl"):
        run("csv", d / "reviews.json", d / "mapping.toml", tmp_path / "ds")


def test_jsonl_fixture_booleans_offsets_blank_lines(tmp_path: Path) -> None:
    _, ds = run("jsonl", JSONL / "events.jsonl", JSONL / "mapping.toml", tmp_path / "ds")
    ev = ds.events
    assert len(ev) == 5 and ev["clicked"].tolist() == [0, 1, 1, 0, 1]     # sorted by time; u3's +01:00 comes first
    assert ev["uid"].tolist() == ["u3", "u1", "u1", "u2", "u2"]
    assert ds.spec.time_span == (1704064800, 1704069000)                   # 2023-12-31T23:20Z .. 2024-01-01T00:30Z
    assert ev["item"].tolist()[0] == "0042" and ev["price"].sum() == pytest.approx(10.75)


@pytest.mark.parametrize(("line", "pattern"), [
    ("{'uid': 'u9', 'item': '1', 'ts': '2024-01-01T00:00:00Z', 'clicked': true, 'price': 1}",
     r"line 5: expected one JSON object a line.*Python literal"),
    ('{"uid": ["u9"], "item": "1", "ts": "2024-01-01T00:00:00Z", "clicked": true, "price": 1}',
     r"line 5: key uid holds '\[\"u9\"\]'; a mapped key must hold one value"),
    ('{"uid": "u9", "item": "1", "ts": "2024-01-01T00:00:00Z", "price": 1}',
     r"line 5: column clicked is empty"),
])
def test_jsonl_errors_name_the_files_own_line(tmp_path: Path, line: str, pattern: str) -> None:
    src = tmp_path / "events.jsonl"
    lines = (JSONL / "events.jsonl").read_text().splitlines()
    src.write_text("\n".join([*lines[:4], line, *lines[4:]]) + "\n")   # after the blank line 3: the file's line 5
    with pytest.raises(InputError, match=pattern):
        run("jsonl", src, JSONL / "mapping.toml", tmp_path / "ds")


def test_kuairec_float_seconds_and_watch_ratio_label(tmp_path: Path) -> None:
    d = NATIVE / "kuairec"
    raw = pd.read_csv(d / "small_matrix.csv")
    _, ds = run("csv", d / "small_matrix.csv", d / "mapping.toml", tmp_path / "ds")
    assert_understood(ds, rows=80, label=(raw["watch_ratio"] >= 2).to_numpy(),
                      ts=np.floor(raw["timestamp"].to_numpy()).astype(np.int64), users=raw["user_id"],
                      items=raw["video_id"])
    assert [f.name for f in ds.spec.fields] == ["video_duration"]      # the outcome columns are not fields
    mapping = tmp_path / "map.toml"
    mapping.write_text((d / "mapping.toml").read_text().replace('ts = "timestamp"', 'ts = "date"'))
    with pytest.raises(InputError, match=r'column date holds .*dates written as digits \(%Y%m%d\): set unit = '
                                         r'"format" and format = "%Y%m%d"'):
        run("csv", d / "small_matrix.csv", mapping, tmp_path / "date")


def test_yoochoose_clicks_only_are_refused_and_iso_times_read(tmp_path: Path) -> None:
    d = NATIVE / "yoochoose"
    src = d / "yoochoose-clicks.dat"
    raw = pd.read_csv(src, header=None, names=["s", "t", "i", "c"], dtype={"c": str})
    with pytest.raises(InputError) as err:
        run("csv", src, d / "mapping.toml", tmp_path / "all", positive="session>=0")
    assert str(err.value).startswith(f"{src}: every one of the 80 events has label 1 (label = 1 where session >= 0")
    assert "Yoochoose" in str(err.value) and not (tmp_path / "all").exists()
    _, ds = run("csv", src, d / "mapping.toml", tmp_path / "ds")                 # the contrived category==S rule
    assert_understood(ds, rows=80, label=(raw["c"] == "S").to_numpy(),
                      ts=epoch(pd.to_datetime(raw["t"], utc=True, format="ISO8601")), users=raw["s"], items=raw["i"])


def test_relative_times_are_kept_and_stated(tmp_path: Path) -> None:
    src = tmp_path / "log.csv"
    pd.DataFrame({"t": np.arange(0, 600, 10), "u": np.arange(60) % 7, "i": np.arange(60) % 5,
                  "y": np.arange(60) % 3 == 0}).astype({"y": int}).to_csv(src, index=False)
    mapping = tmp_path / "map.toml"
    mapping.write_text('[roles]\nlabel = "y"\nuser_id = "u"\nitem_id = "i"\nts = "t"\n')
    summary, ds = run("csv", src, mapping, tmp_path / "ds")
    assert ds.spec.time_span == (0, 590)
    assert any("every value of column t lies outside 1990–2100" in n and "relative times" in n
               for n in summary["notes"])


def test_the_fixture_mappings_import_from_the_command_line(tmp_path: Path) -> None:
    d = tmp_path / "retailrocket"
    shutil.copytree(NATIVE / "retailrocket", d)
    assert main(["data", "import", str(d / "events.csv"), "--format", "csv", "--mapping", str(d / "mapping.toml"),
                 "--out", str(tmp_path / "ds"), "-q"]) == 0
    (d / "mapping.toml").write_text((d / "mapping.toml").read_text().replace('unit = "ms"', 'unit = "s"'))
    assert main(["data", "import", str(d / "events.csv"), "--format", "csv", "--mapping", str(d / "mapping.toml"),
                 "--out", str(tmp_path / "bad"), "-q"]) == 2


def test_a_split_cut_in_milliseconds_is_refused_and_one_after_the_log_is_flagged(tmp_path: Path) -> None:
    d = NATIVE / "retailrocket"
    raw_ms = int(pd.read_csv(d / "events.csv")["timestamp"].median())
    with pytest.raises(InputError, match=rf"--split 'time:{raw_ms}': the cut {raw_ms} read as epoch seconds is "
                                         rf"after the year 2100; it looks like epoch milliseconds: give "
                                         rf"time:{raw_ms // 1000}"):
        run("csv", d / "events.csv", d / "mapping.toml", tmp_path / "ms", split=f"time:{raw_ms}")
    mapping = tmp_path / "map.toml"
    mapping.write_text((d / "mapping.toml").read_text() + f'\n[split]\nkind = "time"\ncut = {raw_ms}\n')
    with pytest.raises(InputError, match=rf"map.toml: \[split\]: .*give cut = {raw_ms // 1000} \(seconds\)"):
        run("csv", d / "events.csv", mapping, tmp_path / "ms2")
    summary, ds = run("csv", d / "events.csv", d / "mapping.toml", tmp_path / "late", split="time:2019-01-01")
    assert any(n.startswith("warning: the split's cut 2019-01-01T00:00:00Z is after the last event") for n in
               summary["notes"])
    assert not ds.part_mask("downstream").any()
    assert "no event is downstream under this split: LEE has nothing to score" in ds.warnings()
    _, ok = run("csv", d / "events.csv", d / "mapping.toml", tmp_path / "ok", split=f"time:{raw_ms // 1000}")
    down = ok.part_mask("downstream")
    assert down.sum() == (pd.read_csv(d / "events.csv")["timestamp"] // 1000 >= raw_ms // 1000).sum()
    assert 0 < down.sum() < 80 and ok.warnings() == []
