"""The ``lee`` command line, called in-process via ``main([...])`` and once or twice as ``python -m app.cli``.

One tiny world, its planted variants and one upstream training run are made once per module and
shared; tests that damage snapshots work on copies. Every user error must exit 2 with a
one-paragraph message on stderr and no traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.numpy import save_file as save_safetensors

from analysis.lee_results import LeeComparison
from analysis.suite import SuiteResult
from app.cli.main import main
from lee.snapshot import Snapshot, SnapshotStore, TableKind
from lee.timeutil import iso
from lee.world.config import SCALES, WorldConfig
from lee.world.planted import PLANTED_VARIANTS

REPO = Path(__file__).resolve().parents[1]
TINY = SCALES["tiny"]
TINY_ITEMS = TINY["n_content_items"] + TINY["n_ad_items"]
ALL_KINDS = {"UR", "IR", "CR_user", "CR_item"}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def run(capsys, *args: object) -> tuple[int, str, str]:
    """Run ``lee ARGS`` in-process; return (exit status, stdout, stderr)."""
    capsys.readouterr()  # drop anything printed before
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def run_json(capsys, *args: object) -> dict:
    """Run a command that must succeed with ``--json`` and return its one-line JSON document."""
    rc, out, err = run(capsys, *args, "--json")
    assert rc == 0, err
    assert out.count("\n") == 1, "--json prints exactly one line"
    return json.loads(out)


def run_quietly(*args: object) -> tuple[int, str]:
    """Run ``lee ARGS`` from a fixture (no capsys there); return (exit status, stdout)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main([str(a) for a in args])
    return rc, buf.getvalue()


def flat(text: str) -> str:
    """stderr with its line wrapping undone, for matching phrases."""
    return " ".join(text.split())


def assert_user_error(rc: int, err: str, *phrases: str) -> None:
    """Exit 2, a message starting with ``error:``, naming every phrase, and no traceback."""
    assert rc == 2, err
    assert err.startswith("error: "), err
    assert "Traceback" not in err
    assert "\n\n" not in err.strip(), "one paragraph"
    for phrase in phrases:
        assert phrase in flat(err), f"{phrase!r} not in {err!r}"


def snapshot_dirs(root: Path) -> list[Path]:
    """Every snapshot directory under ``root`` (``root/variant/time/manifest.json``), hidden ones excluded."""
    return sorted(p.parent for p in root.glob("*/*/manifest.json")
                  if not p.parent.name.startswith(".") and not p.parent.parent.name.startswith("."))


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def table_arrays(n: int = 6, dim: int = 3) -> tuple[np.ndarray, np.ndarray]:
    ids = np.arange(n, dtype=np.int64) * 11 + 5
    vecs = (np.arange(n * dim, dtype=np.float32).reshape(n, dim) / 3).astype(np.float32)
    vecs[0, 0] = -0.0
    return ids, vecs


def assert_loaded(snap_dir: Path, kind: str, ids: np.ndarray, vecs: np.ndarray) -> None:
    table = Snapshot.open(snap_dir).load(kind)
    np.testing.assert_array_equal(table.ids, ids)
    np.testing.assert_array_equal(table.vectors.view(np.uint32), vecs.view(np.uint32))


# --------------------------------------------------------------------------------------------
# shared artefacts (one per module)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, dict]:
    """A tiny world made by ``lee world generate``, and the JSON it printed."""
    out = tmp_path_factory.mktemp("cli") / "world"
    rc, stdout = run_quietly("world", "generate", "--scale", "tiny", "--out", out, "-q", "--json")
    assert rc == 0
    return out, json.loads(stdout)


@pytest.fixture(scope="module")
def world_dir(generated) -> Path:
    return generated[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, world_dir) -> tuple[Path, dict]:
    """Upstream snapshots from ``lee upstream train`` on the tiny world, and the JSON it printed."""
    root = tmp_path_factory.mktemp("cli") / "runs"
    rc, stdout = run_quietly("upstream", "train", "--world", world_dir, "--out", root, "-q", "--device", "cpu",
                             "--snapshot-every", "5", "--json")
    assert rc == 0
    return root, json.loads(stdout)


@pytest.fixture(scope="module")
def upstream_root(trained) -> Path:
    return trained[0]


@pytest.fixture(scope="module")
def first_snapshot(upstream_root) -> Path:
    return snapshot_dirs(upstream_root)[0]


@pytest.fixture(scope="module")
def planted(tmp_path_factory, world_dir) -> tuple[Path, dict]:
    """Two planted variants, three snapshots each, from ``lee world plant``."""
    root = tmp_path_factory.mktemp("cli") / "planted"
    rc, stdout = run_quietly("world", "plant", "--world", world_dir, "--out", root, "--variants", "oracle,random",
                             "--dim", "16", "--snapshots", "3", "-q", "--json")
    assert rc == 0
    return root, json.loads(stdout)


# --------------------------------------------------------------------------------------------
# world
# --------------------------------------------------------------------------------------------


def test_world_generate_reports_the_tiny_scale(generated):
    out, doc = generated
    assert doc["world"] == str(out)
    assert (doc["users"], doc["items"], doc["events"]) == (TINY["n_users"], TINY_ITEMS, TINY["n_events"])
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json", "events.parquet", "items.parquet", "truth",
                                                     "users.parquet", "world.json"]


def test_world_show_json_matches_the_tiny_scale(capsys, world_dir):
    doc = run_json(capsys, "world", "show", world_dir)
    assert doc["world"] == str(world_dir)
    assert doc["users"] == TINY["n_users"]
    assert doc["items"] == TINY_ITEMS
    assert doc["events"] == TINY["n_events"]
    assert doc["end_ts"] - doc["start_ts"] < TINY["duration_minutes"] * 60
    cfg = doc["config"]
    assert {k: cfg[k] for k in TINY} == TINY
    assert cfg["seed"] == 0


def test_world_show_without_json_is_indented(capsys, world_dir):
    rc, out, _ = run(capsys, "world", "show", world_dir)
    assert rc == 0
    assert out.count("\n") > 10
    assert json.loads(out)["users"] == TINY["n_users"]


def test_world_show_missing_directory(capsys, tmp_path):
    rc, _, err = run(capsys, "world", "show", tmp_path / "nope")
    assert_user_error(rc, err, f"{tmp_path / 'nope'}: not a world directory", "lee world generate")


def test_world_generate_refuses_a_non_empty_out_dir(capsys, world_dir):
    before = {p.name: p.stat().st_mtime_ns for p in world_dir.iterdir()}
    rc, _, err = run(capsys, "world", "generate", "--scale", "tiny", "--out", world_dir, "-q")
    assert_user_error(rc, err, "directory exists and is not empty")
    assert {p.name: p.stat().st_mtime_ns for p in world_dir.iterdir()} == before


def test_world_generate_unknown_set_key_lists_known_keys(capsys, tmp_path):
    rc, _, err = run(capsys, "world", "generate", "--scale", "tiny", "--out", tmp_path / "w", "--set", "bogus=1")
    known = sorted(WorldConfig.model_fields)
    assert_user_error(rc, err, "unknown key(s) bogus", "known keys: " + ", ".join(known))
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("pair, phrase", [
    ("n_users=abc", '--set: n_users: expected an integer; got "abc" (a string)'),
    ("n_users=1.5", "--set: n_users: expected an integer; got 1.5 (a float)"),
    ("n_users=3.0", "--set: n_users: expected an integer; got 3.0 (a float)"),
    ("content_share=true", "--set: content_share: expected a number; got true (a boolean)"),
    ("n_users", "--set expects key=value; got 'n_users'"),
    ("n_users=-3", "--set: n_users: expected a value > 0; got -3 (an integer)"),
])
def test_world_generate_bad_set_values(capsys, tmp_path, pair, phrase):
    rc, _, err = run(capsys, "world", "generate", "--scale", "tiny", "--out", tmp_path / "w", "--set", pair)
    assert_user_error(rc, err, phrase)


def test_world_generate_set_overrides_apply(capsys, tmp_path):
    doc = run_json(capsys, "world", "generate", "--scale", "tiny", "--out", tmp_path / "w", "-q",
                   "--set", "n_users=50", "--set", "n_events=2000", "--set", "content_share=1")
    assert (doc["users"], doc["events"], doc["ad_events"]) == (50, 2000, 0)


def test_world_plant_writes_each_variant_five_minutes_apart(planted):
    root, doc = planted
    assert sorted(doc) == ["oracle", "random"]
    store = SnapshotStore(root)
    assert store.variants() == ["oracle", "random"]
    for variant, paths in doc.items():
        assert [Path(p) for p in paths] == [store.path(variant, t) for t in store.times(variant)]
        times = store.times(variant)
        assert [b - a for a, b in zip(times, times[1:])] == [timedelta(minutes=5)] * 2
        snap = Snapshot.open(paths[-1])
        assert {k.value for k in snap.kinds} == ALL_KINDS
        assert snap.info("UR").dim == 16 and snap.info("UR").rows == TINY["n_users"]
        assert snap.info("IR").rows == TINY_ITEMS
        assert snap.manifest.source_layer == f"planted:{variant}"


@pytest.mark.parametrize("args, phrase", [
    (["--variants", "oracle,bogus"], "unknown planted variant(s) bogus; choose from " + ", ".join(PLANTED_VARIANTS)),
    (["--interval", "0"], "--snapshots and --interval must be positive"),
    (["--snapshots", "0"], "--snapshots and --interval must be positive"),
    (["--dim", "4"], "snapshot dim 4 must be at least the latent dim 16"),
])
def test_world_plant_bad_arguments(capsys, tmp_path, world_dir, args, phrase):
    rc, _, err = run(capsys, "world", "plant", "--world", world_dir, "--out", tmp_path / "p", *args)
    assert_user_error(rc, err, phrase)
    assert snapshot_dirs(tmp_path / "p") == []


# --------------------------------------------------------------------------------------------
# upstream
# --------------------------------------------------------------------------------------------


def test_upstream_train_writes_snapshots_exactly_five_minutes_apart(trained):
    root, doc = trained
    times = SnapshotStore(root).times("upstream")
    assert len(times) >= 3
    assert [(b - a).total_seconds() for a, b in zip(times, times[1:])] == [300.0] * (len(times) - 1)
    assert all(t.second == 0 and t.minute % 5 == 0 for t in times)
    assert doc["snapshots"] == [str(SnapshotStore(root).path("upstream", t)) for t in times]


def test_upstream_train_json_report(trained, generated):
    """Training stops at the last snapshot; every later event (at least the last 20 %) is held out."""
    root, doc = trained
    world_dir, world = generated
    assert doc["variant"] == "upstream"
    assert doc["device"] == "cpu"
    times = SnapshotStore(root).times("upstream")
    ts = pq.read_table(world_dir / "events.parquet", columns=["ts"]).column("ts").to_numpy()
    assert doc["train_events"] == int((ts < times[-1].timestamp()).sum())
    assert doc["train_events"] + doc["holdout_events"] == TINY["n_events"]
    assert 0.2 * TINY["n_events"] <= doc["holdout_events"] < (0.2 + 5 / TINY["duration_minutes"]) * TINY["n_events"]
    assert 0.5 < doc["holdout_auc_ad"] <= 1.0 and 0.5 < doc["holdout_auc_content"] <= 1.0
    assert world["start_ts"] < times[0].timestamp() < times[-1].timestamp() <= world["end_ts"]


def test_upstream_snapshots_hold_all_four_tables(upstream_root):
    for snap_dir in snapshot_dirs(upstream_root):
        snap = Snapshot.open(snap_dir)
        assert {k.value for k in snap.kinds} == ALL_KINDS
        assert snap.manifest.source_layer == "ads.mlp.1"
        assert snap.info("UR").dim == 32 and snap.info("IR").dim == 32
        assert snap.info("UR").rows <= TINY["n_users"] and snap.info("IR").rows <= TINY_ITEMS


def test_upstream_train_cuda_without_gpu_exits_2(capsys, tmp_path, world_dir):
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    rc, _, err = run(capsys, "upstream", "train", "--world", world_dir, "--out", tmp_path / "r", "-q",
                     "--device", "cuda")
    assert_user_error(rc, err, "--device cuda", "no CUDA GPU", "--device cpu")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args, phrase", [
    (["--rep-dim", "0"], "--rep-dim must be positive; got 0"),
    (["--cr-layer", "bogus"], "unknown CR layer 'bogus'"),
    (["--holdout", "1.5"], "holdout_fraction must lie in [0, 1)"),
    (["--variant", ".hidden"], "variant name '.hidden' is not allowed"),
])
def test_upstream_train_bad_arguments(capsys, tmp_path, world_dir, args, phrase):
    rc, _, err = run(capsys, "upstream", "train", "--world", world_dir, "--out", tmp_path / "r", "-q",
                     "--device", "cpu", *args)
    assert_user_error(rc, err, phrase)
    assert snapshot_dirs(tmp_path / "r") == []


def test_upstream_train_missing_world(capsys, tmp_path):
    rc, _, err = run(capsys, "upstream", "train", "--world", tmp_path / "none", "--out", tmp_path / "r",
                     "--device", "cpu")
    assert_user_error(rc, err, f"{tmp_path / 'none'}: not a dataset directory")


def test_upstream_cadence_comes_from_the_time_span(capsys, world_dir, tmp_path):
    """Without --snapshot-every, about 12 snapshots over the span: 30 minutes of tiny world -> 2-minute steps."""
    rc, out, _ = run(capsys, "upstream", "train", "--data", world_dir, "--out", tmp_path / "r", "--device", "cpu",
                     "--holdout", "0", "-q", "--json")
    assert rc == 0
    doc = json.loads(out)
    assert doc["snapshot_every_minutes"] == 2 and "time span" in doc["cadence"]
    times = SnapshotStore(tmp_path / "r").times("upstream")
    assert {(b - a).total_seconds() for a, b in zip(times, times[1:])} == {120.0} and len(times) == 15


# --------------------------------------------------------------------------------------------
# snapshots ls / show / validate
# --------------------------------------------------------------------------------------------


def test_snapshots_ls_json_lists_times(capsys, upstream_root):
    rc, out, err = run(capsys, "snapshots", "ls", upstream_root, "--json")
    assert rc == 0, err
    assert json.loads(out) == {"upstream": [iso(t) for t in SnapshotStore(upstream_root).times("upstream")]}


def test_snapshots_ls_text(capsys, upstream_root, planted):
    times = SnapshotStore(upstream_root).times("upstream")
    rc, out, _ = run(capsys, "snapshots", "ls", upstream_root)
    assert rc == 0
    assert out.split() == ["upstream", str(len(times)), "snapshot(s)", iso(times[0]), "..", iso(times[-1])]
    rc, out, _ = run(capsys, "snapshots", "ls", planted[0], "--variant", "random")
    assert rc == 0
    assert out.split()[:3] == ["random", "3", "snapshot(s)"]


def test_snapshots_ls_errors(capsys, tmp_path, upstream_root):
    rc, _, err = run(capsys, "snapshots", "ls", tmp_path / "none")
    assert_user_error(rc, err, "is not a snapshot root")
    rc, _, err = run(capsys, "snapshots", "ls", upstream_root, "--variant", "nope")
    assert_user_error(rc, err, "has no variant 'nope'; variants present: upstream")


def test_snapshots_ls_empty_root(capsys, tmp_path):
    rc, out, _ = run(capsys, "snapshots", "ls", tmp_path)
    assert (rc, out) == (0, f"{tmp_path}: no snapshots\n")


def test_snapshots_show_json_is_the_manifest(capsys, first_snapshot):
    rc, out, _ = run(capsys, "snapshots", "show", first_snapshot, "--json")
    assert rc == 0
    doc = json.loads(out)
    assert doc == json.loads((first_snapshot / "manifest.json").read_text())
    assert doc["variant"] == "upstream"
    assert set(doc["tables"]) == ALL_KINDS


def test_snapshots_show_text(capsys, first_snapshot):
    manifest = Snapshot.open(first_snapshot).manifest
    rc, out, _ = run(capsys, "snapshots", "show", first_snapshot)
    assert rc == 0
    lines = out.splitlines()
    assert lines[0] == str(first_snapshot)
    assert f"variant upstream  event time {iso(manifest.event_time)}  source layer ads.mlp.1" in lines[1]
    assert len(lines) == 2 + 4
    ur = next(line for line in lines if line.split()[0] == "UR")
    assert f"{manifest.tables[TableKind.UR].rows:,} rows x   32" in ur
    assert manifest.tables[TableKind.UR].sha256[:12] in ur


@pytest.mark.parametrize("which, phrase", [
    ("root", "no manifest.json found"),
    ("variant", "is a variant directory; name one of its snapshot directories"),
    ("missing", "is not a snapshot directory"),
])
def test_snapshots_show_errors(capsys, tmp_path, upstream_root, which, phrase):
    path = {"root": upstream_root, "variant": upstream_root / "upstream", "missing": tmp_path / "x"}[which]
    rc, _, err = run(capsys, "snapshots", "show", path)
    assert_user_error(rc, err, f"{path}: {phrase}")


def test_snapshots_validate_a_root(capsys, upstream_root, planted):
    dirs = snapshot_dirs(upstream_root) + snapshot_dirs(planted[0])
    rc, out, err = run(capsys, "snapshots", "validate", upstream_root, planted[0])
    assert (rc, err) == (0, "")
    lines = out.splitlines()
    assert [line.split()[:2] for line in lines] == [["ok", str(d)] for d in dirs]
    assert all("UR " in line and "CR_item " in line for line in lines)


def test_snapshots_validate_one_snapshot_and_a_variant_dir_quietly(capsys, upstream_root, first_snapshot):
    rc, out, err = run(capsys, "snapshots", "validate", first_snapshot, upstream_root / "upstream", "-q")
    assert (rc, out, err) == (0, "", "")


def test_snapshots_validate_names_the_corrupted_file(capsys, tmp_path, upstream_root):
    root = tmp_path / "copy"
    shutil.copytree(upstream_root, root)
    dirs = snapshot_dirs(root)
    bad = dirs[1] / "IR.parquet"
    flip_byte(bad)
    rc, out, err = run(capsys, "snapshots", "validate", root)
    assert rc == 2
    assert "Traceback" not in err
    assert flat(err).startswith(f"invalid: {bad}: checksum mismatch")
    assert f"1 of {len(dirs)} snapshot(s) failed validation" in err
    assert [line.split()[1] for line in out.splitlines()] == [str(d) for d in dirs if d != dirs[1]]


def test_snapshots_validate_missing_path(capsys, tmp_path):
    rc, out, err = run(capsys, "snapshots", "validate", tmp_path / "nope")
    assert (rc, out) == (2, "")
    assert flat(err) == (f"invalid: {tmp_path / 'nope'}: is not a snapshot directory (it does not exist or is "
                         "not a directory) 1 of 1 snapshot(s) failed validation")


def test_snapshots_validate_extra_file_in_snapshot(capsys, tmp_path, first_snapshot):
    snap = tmp_path / "snap"
    shutil.copytree(first_snapshot, snap)
    (snap / "notes.txt").write_text("hi")
    rc, _, err = run(capsys, "snapshots", "validate", snap)
    assert rc == 2
    assert "holds file(s) the manifest does not list: notes.txt" in flat(err)


# --------------------------------------------------------------------------------------------
# snapshots import / export
# --------------------------------------------------------------------------------------------


def import_args(root: Path, *rest: object, variant: str = "imp", time: str = "2026-01-01T00:05:00Z") -> list:
    return ["snapshots", "import", "--root", root, "--variant", variant, "--time", time, *rest]


def test_import_npz(capsys, tmp_path):
    ids, vecs = table_arrays()
    npz = tmp_path / "users.npz"
    np.savez(npz, ids=ids, vectors=vecs)
    doc = run_json(capsys, *import_args(tmp_path / "root", "--table", f"UR={npz}", "--source-layer", "ext.1"))
    snap_dir = tmp_path / "root" / "imp" / "20260101T000500Z"
    assert doc == {"snapshot": str(snap_dir), "tables": {"UR": {"rows": 6, "dim": 3}}}
    assert_loaded(snap_dir, "UR", ids, vecs)
    manifest = Snapshot.open(snap_dir).manifest
    assert manifest.source_layer == "ext.1"
    assert manifest.extra == {"imported_from": {"UR": str(npz)}}


def test_import_npy_with_ids(capsys, tmp_path):
    ids, vecs = table_arrays(5, 4)
    np.save(tmp_path / "v.npy", vecs)
    np.save(tmp_path / "ids.npy", ids)
    doc = run_json(capsys, *import_args(tmp_path / "root", "--table", f"UR={tmp_path / 'v.npy'}",
                                        "--ids", f"UR={tmp_path / 'ids.npy'}"))
    assert doc["tables"] == {"UR": {"rows": 5, "dim": 4}}
    assert_loaded(Path(doc["snapshot"]), "UR", ids, vecs)


def test_import_several_tables_keys_and_formats(capsys, tmp_path):
    ids, vecs = table_arrays(4, 2)
    np.savez(tmp_path / "u.npz", uid=ids, emb=vecs)
    save_safetensors({"uid": ids, "emb": vecs[::-1].copy()}, str(tmp_path / "i.safetensors"))
    doc = run_json(capsys, *import_args(tmp_path / "root", "--table", f"ur={tmp_path / 'u.npz'}",
                                        "--table", f"IR={tmp_path / 'i.safetensors'}",
                                        "--ids-key", "uid", "--vectors-key", "emb"))
    snap_dir = Path(doc["snapshot"])
    assert sorted(doc["tables"]) == ["IR", "UR"]
    assert_loaded(snap_dir, "UR", ids, vecs)
    assert_loaded(snap_dir, "IR", ids, vecs[::-1].copy())


def test_import_explicit_format_for_an_unsuffixed_file(capsys, tmp_path):
    ids, vecs = table_arrays()
    path = tmp_path / "table.bin"
    with open(path, "wb") as fh:
        np.savez(fh, ids=ids, vectors=vecs)
    doc = run_json(capsys, *import_args(tmp_path / "root", "--table", f"CR_user={path}", "--format", "npz"))
    assert_loaded(Path(doc["snapshot"]), "CR_user", ids, vecs)


def test_import_time_as_epoch_seconds(capsys, tmp_path):
    ids, vecs = table_arrays()
    np.savez(tmp_path / "u.npz", ids=ids, vectors=vecs)
    doc = run_json(capsys, *import_args(tmp_path / "root", "--table", f"UR={tmp_path / 'u.npz'}",
                                        time="1767225900"))
    assert Path(doc["snapshot"]).name == "20260101T000500Z"


@pytest.mark.parametrize("table, extra, phrase", [
    ("UR{npz}", [], "--table expects KIND=PATH (e.g. UR=users.npz); got"),
    ("XX={npz}", [], "unknown table kind 'XX'; expected one of UR, IR, CR_user, CR_item"),
    ("UR={npz}", ["--ids", "UR={npy}"], "option(s) ids_path do not apply to the npz format"),
    ("UR={npz}", ["--ids", "UR{npy}"], "--ids expects KIND=PATH"),
    ("UR={npy}", [], "a .npy matrix needs its ids in a second .npy file (--ids FILE)"),
    ("UR={npz}", ["--ids", "IR={npy}"], "--ids given for IR but no --table for it"),
    ("UR={dir}/missing.npz", [], "missing.npz: no such file"),
    ("UR={dir}/table.dat", [], "cannot tell the format from the suffix"),
    ("UR={fake_npz}", [], "single .npy array, not a .npz archive"),
    ("UR={evil}", [], "cannot read without unpickling"),
])
def test_import_bad_arguments_and_files(capsys, tmp_path, table, extra, phrase):
    ids, vecs = table_arrays()
    files = {"npz": tmp_path / "u.npz", "npy": tmp_path / "v.npy", "dir": tmp_path,
             "fake_npz": tmp_path / "fake.npz", "evil": tmp_path / "evil.npz"}
    np.savez(files["npz"], ids=ids, vectors=vecs)
    np.save(files["npy"], vecs)
    (tmp_path / "table.dat").write_text("1,2,3\n")
    with open(files["fake_npz"], "wb") as fh:
        np.save(fh, vecs)
    np.savez(files["evil"], ids=np.array([1, "a", None], dtype=object), vectors=vecs[:3])
    fill = {k: str(v) for k, v in files.items()}
    rc, out, err = run(capsys, *import_args(tmp_path / "root", "--table", table.format(**fill),
                                            *[e.format(**fill) for e in extra]))
    assert_user_error(rc, err, phrase)
    assert out == ""
    assert snapshot_dirs(tmp_path / "root") == []


@pytest.mark.parametrize("time, phrase", [
    ("yesterday", "cannot read event time 'yesterday'"),
    ("99999999999999", "epoch seconds out of range"),
    ("2026-01-01T00:00:00.5Z", "has a sub-second part"),
])
def test_import_bad_time(capsys, tmp_path, time, phrase):
    ids, vecs = table_arrays()
    np.savez(tmp_path / "u.npz", ids=ids, vectors=vecs)
    rc, _, err = run(capsys, *import_args(tmp_path / "root", "--table", f"UR={tmp_path / 'u.npz'}", time=time))
    assert_user_error(rc, err, phrase)


def test_import_refuses_bad_contents(capsys, tmp_path):
    ids, vecs = table_arrays()
    np.savez(tmp_path / "dup.npz", ids=np.zeros(6, dtype=np.int64), vectors=vecs)
    rc, _, err = run(capsys, *import_args(tmp_path / "root", "--table", f"UR={tmp_path / 'dup.npz'}"))
    assert_user_error(rc, err, "duplicate id")
    np.savez(tmp_path / "flat.npz", ids=ids, vectors=vecs.ravel())
    rc, _, err = run(capsys, *import_args(tmp_path / "root", "--table", f"UR={tmp_path / 'flat.npz'}"))
    assert_user_error(rc, err, "vectors must be a 2-D (rows, dim) array")
    assert snapshot_dirs(tmp_path / "root") == []


def test_import_overwrite(capsys, tmp_path):
    ids, vecs = table_arrays()
    np.savez(tmp_path / "a.npz", ids=ids, vectors=vecs)
    np.savez(tmp_path / "b.npz", ids=ids, vectors=vecs + 1)
    root = tmp_path / "root"
    assert run(capsys, *import_args(root, "--table", f"UR={tmp_path / 'a.npz'}"))[0] == 0
    rc, _, err = run(capsys, *import_args(root, "--table", f"UR={tmp_path / 'b.npz'}"))
    assert_user_error(rc, err, "a snapshot already exists here")
    assert_loaded(snapshot_dirs(root)[0], "UR", ids, vecs)
    assert run(capsys, *import_args(root, "--table", f"UR={tmp_path / 'b.npz'}", "--overwrite"))[0] == 0
    assert_loaded(snapshot_dirs(root)[0], "UR", ids, vecs + 1)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_matches_the_snapshot_exactly(capsys, tmp_path, first_snapshot, fmt):
    out = tmp_path / "sub" / f"ur.{fmt}"
    doc = run_json(capsys, "snapshots", "export", first_snapshot, "--kind", "ur", "--out", out, "--format", fmt)
    assert doc == {"exported": str(out)}
    table = Snapshot.open(first_snapshot).load("UR")
    if fmt == "csv":
        frame = pd.read_csv(out, dtype={f"v{k}": "float64" for k in range(table.dim)})
    else:
        frame = pq.read_table(out).to_pandas()
    assert list(frame.columns) == ["id"] + [f"v{k}" for k in range(table.dim)] + ["updated_at"]
    np.testing.assert_array_equal(frame["id"].to_numpy(), table.ids)
    got = frame[[f"v{k}" for k in range(table.dim)]].to_numpy().astype(np.float32)
    np.testing.assert_array_equal(got.view(np.uint32), table.vectors.view(np.uint32))
    np.testing.assert_array_equal(frame["updated_at"].to_numpy(), table.updated_at)


def test_export_errors(capsys, tmp_path, first_snapshot, upstream_root):
    rc, _, err = run(capsys, "snapshots", "export", first_snapshot, "--kind", "XX", "--out", tmp_path / "x.csv")
    assert_user_error(rc, err, "unknown table kind 'XX'")
    rc, _, err = run(capsys, "snapshots", "export", upstream_root / "upstream", "--kind", "UR",
                     "--out", tmp_path / "x.csv")
    assert_user_error(rc, err, "is a variant directory")
    assert not (tmp_path / "x.csv").exists()


# --------------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------------


def test_demo_tiny_end_to_end(capsys, tmp_path):
    out = tmp_path / "demo"
    rc, stdout, err = run(capsys, "demo", "--scale", "tiny", "--out", out, "-q", "--device", "cpu", "--no-real-data")
    assert (rc, stdout, err) == (0, "", "")
    summary = json.loads((out / "summary.json").read_text())
    steps = summary["steps"]
    assert list(steps)[:4] == ["world", "planted", "upstream", "validate"]  # later capabilities append steps
    assert (summary["scale"], summary["device"]) == ("tiny", "cpu")
    assert (steps["world"]["users"], steps["world"]["events"]) == (TINY["n_users"], TINY["n_events"])
    assert steps["planted"]["variants"] == sorted(PLANTED_VARIANTS)
    retrain = steps["release"]["retrain"]                 # the release step's retrain, written after validation
    on_disk = [p for p in snapshot_dirs(out / "snapshots") if p.parent.name != retrain["variant"]]
    assert len(snapshot_dirs(out / "snapshots")) == len(on_disk) + retrain["snapshots"]
    # every snapshot validates except the planted NaN one, which must be refused
    assert steps["validate"]["valid"] == len(on_disk) - 1
    assert len(steps["validate"]["refused"]) == 1 and "NaN" in steps["validate"]["refused"][0]
    assert len(on_disk) == len(PLANTED_VARIANTS) * steps["planted"]["snapshots_per_variant"] \
        + steps["upstream"]["snapshots"] + 5
    assert steps["validate"]["variants"] == sorted([*PLANTED_VARIANTS, "upstream", "oracle-monitored"])
    a = steps["analyses"]
    assert a["health"]["oracle-monitored"]["flagged"] == 3
    assert a["health"]["oracle-monitored"]["rollback_target"] == steps["planted"]["anomalies"]["oracle-monitored"][
        "healthy"].replace("+00:00", "Z")
    assert [v for v, r in a["collapse"]["UR"].items() if r["collapsed"]] == ["rank_collapsed"]
    assert a["clusters"]["oracle"]["ari"] >= 0.8 and abs(a["clusters"]["random"]["ari"]) < 0.1
    # the oracle representation outranks every single field (a group of fields may drop more)
    assert a["importance"]["oracle"]["top_single"].startswith("representation")
    assert list(steps)[4:] == ["lee", "sweep", "analyses", "release", "report"]
    assert steps["release"]["retrain"]["variant"].startswith("upstream-seed")
    sweep = pd.read_csv(out / "sweep.csv")
    assert set(sweep["dim"]) == {16, 32} and sweep["layer"].nunique() >= 4
    html = (out / "report" / "report.html").read_text(encoding="utf-8")
    assert "id='lee'" in html and "id='clusters'" in html
    assert (out / "report" / "data" / "lee" / "ranking.csv").is_file()
    saved = SuiteResult.load(out / "analyses")
    assert saved.summary() == SuiteResult.load(out / "report" / "data" / "suite").summary()
    assert saved.summary()["collapse"] == a["collapse"]
    assert LeeComparison.load(out / "lee").summary()["runs"] == steps["lee"]["units"]
    times = SnapshotStore(out / "snapshots").times("upstream")
    assert {(b - a).total_seconds() for a, b in zip(times, times[1:])} == {300.0}


def test_demo_refuses_a_non_empty_out_dir(capsys, tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    rc, _, err = run(capsys, "demo", "--scale", "tiny", "--out", out, "-q")
    assert_user_error(rc, err, f"{out}: directory exists and is not empty; pass --overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


# --------------------------------------------------------------------------------------------
# argparse and the real process
# --------------------------------------------------------------------------------------------


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["world"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["upstream", "train", "--world", "w", "--out", "r", "--device", "tpu"])
    assert exc.value.code == 2
    assert "invalid choice: 'tpu'" in capsys.readouterr().err


def python_m_lee(*args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "app.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120)


def test_process_bad_snapshot_exits_nonzero_with_one_paragraph(tmp_path, first_snapshot):
    snap = tmp_path / "snap"
    shutil.copytree(first_snapshot, snap)
    (snap / "manifest.json").write_text('{"format_version": 1, "variant": ')
    proc = python_m_lee("snapshots", "show", snap)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    err = proc.stderr.strip()
    assert flat(err).startswith(f"error: {snap / 'manifest.json'}: is not valid JSON")
    assert "\n\n" not in err and all(line.strip() for line in err.splitlines())


def test_process_validate_corrupted_snapshot_and_bad_import(tmp_path, first_snapshot):
    snap = tmp_path / "snap"
    shutil.copytree(first_snapshot, snap)
    flip_byte(snap / "CR_user.parquet")
    proc = python_m_lee("snapshots", "validate", snap)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert flat(proc.stderr).startswith(f"invalid: {snap / 'CR_user.parquet'}: checksum mismatch")

    np.savez(tmp_path / "evil.npz", ids=np.array([1, "a", None], dtype=object), vectors=np.ones((3, 2)))
    proc = python_m_lee("snapshots", "import", "--root", tmp_path / "root", "--variant", "v",
                        "--time", "2026-01-01T00:00:00Z", "--table", f"UR={tmp_path / 'evil.npz'}")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "cannot read without unpickling" in flat(proc.stderr)


def test_json_output_is_strict_when_a_rate_is_undefined(tmp_path, capsys):
    """A world with no content events has an undefined content CTR: printed as null, not NaN."""
    from app.cli.main import main as cli_main

    assert cli_main(["world", "generate", "--scale", "tiny", "--out", str(tmp_path / "w"), "-q", "--json",
                     "--set", "content_share=0"]) == 0
    out = capsys.readouterr().out
    assert "NaN" not in out
    assert json.loads(out)["ctr_content"] is None


def test_a_reader_that_goes_away_is_not_an_error(tmp_path):
    """`lee ... | head`: the pipe closes before lee writes; exit 0, nothing on stderr (it printed
    'error: [Errno 32] Broken pipe')."""
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)
    repo = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "app.cli.main", "snapshots", "ls", str(repo / "fixtures/tiny/snapshots")]
    proc = subprocess.run(cmd, stdout=write, stderr=subprocess.PIPE, text=True, cwd=repo)
    os.close(write)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
