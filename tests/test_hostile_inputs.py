"""Hostile and broken inputs: no hang, no silent wrong answer, no traceback, no clobbered file.

The corpus (``tests/hostile_corpus.py``) breaks a copy of two tiny committed variants in each way
an attacker or a flaky pipeline would; every consumer (validate, volatility, health, collapse,
clusters, evaluate, report) runs on every case in its own process with a time limit, and must
either refuse with a one-paragraph message naming the broken path or exit 0 naming it as skipped:
never a hang, never a traceback, never numbers that do not say what they left out. Around it:
racing writers, the results store on read-only and full file systems, ``--out`` pointing at links
and FIFOs, forged array headers, the crash handler, figure labels, the dashboard's roots and binding.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import hostile_corpus as hc
import numpy as np
import pandas as pd
import pytest

from app.cli.main import main
from lee.errors import InputError, SnapshotError
from lee.snapshot import EmbeddingTable, Snapshot, SnapshotStore, validate_snapshot, write_snapshot

REPO = Path(__file__).resolve().parents[1]
LIGHT_TIMEOUT, HEAVY_TIMEOUT = 60.0, 240.0


def _flat(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------------------------
# the corpus: every consumer on every case
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Build every case (plus the untouched root as a control) and run every consumer on it."""
    base = tmp_path_factory.mktemp("hostile")
    cases = {"control": (lambda root, outside: None), **{c.name: c.build for c in hc.CASES}}
    culprits, jobs = {}, []
    for name, build in cases.items():
        case_dir = base / name
        root = hc.base_root(case_dir / "root")
        outside = case_dir / "outside"
        outside.mkdir()
        culprits[name] = build(root, outside)
        for consumer in hc.CONSUMERS:
            work = case_dir / f"work-{consumer}"
            work.mkdir()
            timeout = HEAVY_TIMEOUT if consumer in ("evaluate", "report", "clusters") else LIGHT_TIMEOUT
            jobs.append(((name, consumer), hc.consumer_argv(consumer, root, work, case_dir / "results.sqlite"),
                         timeout))
    # the control first and alone; every case then starts from a copy of its results store, so a
    # snapshot the control evaluated is not evaluated again (same bytes, same unit)
    runs = hc.run_all([j for j in jobs if j[0][0] == "control"], parallel=1)
    for name in cases:
        if name != "control":
            shutil.copy(base / "control" / "results.sqlite", base / name / "results.sqlite")
    runs.update(hc.run_all([j for j in jobs if j[0][0] != "control"], parallel=2))
    return culprits, runs


def test_control_every_consumer_succeeds_on_the_untouched_root(corpus):
    """Without this, a consumer misconfigured to fail on anything would pass every case."""
    _, runs = corpus
    for consumer in hc.CONSUMERS:
        run = runs[("control", consumer)]
        assert run.rc == 0, f"{consumer}: rc {run.rc}\n{run.err}"
        assert "Traceback" not in run.err and "warning: skipped" not in run.text(), f"{consumer}: {run.err}"
    assert json.loads(runs[("control", "evaluate")].out)["evaluated"]
    assert json.loads(runs[("control", "report")].out)["skipped"] == []


@pytest.mark.parametrize("case", [c.name for c in hc.CASES])
def test_every_consumer_refuses_or_names_what_it_skipped(corpus, case):
    culprits, runs = corpus
    bad = {consumer: problem for consumer in hc.CONSUMERS
           if (problem := hc.verdict(runs[(case, consumer)], culprits[case])) is not None}
    detail = {c: (runs[(case, c)].rc, runs[(case, c)].err[-600:]) for c in bad}
    assert not bad, f"{case}: {bad}\n{detail}"
    # validate never passes a broken root, and the corpus cases are slow for nobody
    assert runs[(case, "validate")].rc == 2
    assert all(runs[(case, c)].seconds < LIGHT_TIMEOUT for c in ("validate", "volatility", "health", "collapse"))


def test_broken_latest_snapshot_is_never_the_rollback_target(corpus):
    """Health names a broken latest snapshot as flagged (exit 0), never as the one to roll back to."""
    culprits, runs = corpus
    for case in ("duplicate_id", "string_ids_under_int64", "int64_ids_under_string", "absurd_values",
                 "zeroed_data_page", "fifo_table", "dev_zero_table", "table_link_out_of_root"):
        run = runs[(case, "health")]
        assert run.rc == 0, (case, run.err)
        doc = json.loads(run.out)
        assert doc["rollback_target"] != "2026-01-01T00:30:00Z", case
        assert "2026-01-01T00:30:00Z" in doc["flagged_times"], case


def test_one_bad_directory_does_not_fail_the_other_variants(corpus):
    _, runs = corpus
    for case in ("bad_variant_dir_name", "variant_link_out_of_root"):
        for consumer in ("volatility", "health", "collapse", "clusters", "evaluate", "report"):
            assert runs[(case, consumer)].rc == 0, (case, consumer, runs[(case, consumer)].err)


# --------------------------------------------------------------------------------------------
# reading: regular files only, bounded, one validation path for every reader
# --------------------------------------------------------------------------------------------


def _snap(tmp_path: Path, **kw) -> Path:
    rng = np.random.default_rng(0)
    t = EmbeddingTable(np.arange(50, dtype=np.int64), rng.standard_normal((50, 4)).astype(np.float32))
    return write_snapshot(tmp_path / "root", "v", "2026-01-01T00:05:00Z", {"UR": t}, **kw)


def _every_reader(snap: Snapshot) -> dict:
    return {"load": lambda: snap.load("UR"), "load_ids": lambda: snap.load_ids("UR"),
            "iter_chunks": lambda: list(snap.iter_chunks("UR", rows=7)),
            "vector_batches": lambda: list(snap.vector_batches("UR", rows=7)),
            "row_gather": lambda: snap.row_gather("UR"), "verify_checksum": lambda: snap.verify_checksum("UR")}


def test_a_fifo_swapped_in_after_open_is_refused_not_waited_on(tmp_path):
    """The snapshot was opened while the table was a regular file; every reader re-checks the
    descriptor it opens (O_NONBLOCK), so a FIFO put there since never blocks a read."""
    snap = Snapshot.open(_snap(tmp_path))
    ur = snap.table_path("UR")
    ur.unlink()
    os.mkfifo(ur)
    for name, read in _every_reader(snap).items():
        t0 = time.perf_counter()
        with pytest.raises(SnapshotError, match=r"UR\.parquet: is a FIFO \(named pipe\), not a regular file"):
            read()
        assert time.perf_counter() - t0 < 5, name


@pytest.mark.parametrize("case", ["duplicate_id", "string_ids_under_int64", "int64_ids_under_string",
                                  "absurd_values", "zeroed_data_page"])
def test_every_streaming_reader_runs_the_same_checks(tmp_path, case):
    from lee.snapshot.format import Manifest

    root = hc.base_root(tmp_path / "root")
    getattr(hc, case)(root, tmp_path)
    if case in ("string_ids_under_int64", "int64_ids_under_string"):  # the schema disagrees: refused on opening
        with pytest.raises(SnapshotError, match="ids are .* but the manifest says") as err:
            Snapshot.open(hc.latest(root), root=root)
        assert err.value.path == hc.latest(root) / "UR.parquet"
        # and every reader checks it again by itself (a Snapshot built without Snapshot.open's checks)
        snap = Snapshot(hc.latest(root), Manifest.from_file(hc.latest(root) / "manifest.json"), root=root)
    else:
        snap = Snapshot.open(hc.latest(root), root=root)
    for name, read in _every_reader(snap).items():
        if case in ("duplicate_id",) and name in ("vector_batches", "row_gather", "verify_checksum"):
            continue  # ids are not read by these: load_ids, run beside them by every consumer, refuses
        if case in ("absurd_values",) and name in ("load_ids", "verify_checksum"):
            continue  # vectors are not read by these
        if case == "zeroed_data_page" and name in ("load_ids", "vector_batches", "row_gather"):
            continue  # the damaged page holds vectors; the mapped readers leave checksums to verify_checksum
        with pytest.raises(SnapshotError) as err:
            read()
        assert err.value.path == hc.latest(root) / "UR.parquet", (name, str(err.value))


def test_magnitude_bound_is_configurable(tmp_path, monkeypatch):
    root = hc.base_root(tmp_path / "root")
    hc.absurd_values(root, tmp_path)
    with pytest.raises(SnapshotError, match=r"beyond the plausibility bound ±1e\+06 .*3\.4e\+38.*LEE_MAX_ABS_VALUE"):
        validate_snapshot(hc.latest(root))
    validate_snapshot(hc.latest(root), max_abs=np.inf)
    monkeypatch.setenv("LEE_MAX_ABS_VALUE", "1e39")
    validate_snapshot(hc.latest(root))
    monkeypatch.setenv("LEE_MAX_ABS_VALUE", "lots")
    assert main(["snapshots", "validate", str(hc.latest(root))]) == 2


def test_a_table_larger_than_the_manifest_says_is_refused_before_hashing(tmp_path):
    path = _snap(tmp_path)
    with open(path / "UR.parquet", "ab") as fh:
        fh.write(b"\0" * 4096)
    with pytest.raises(SnapshotError, match=r"UR\.parquet: is [\d,]+ bytes but the manifest says [\d,]+"):
        Snapshot.open(path)


def test_store_problems_name_every_unreadable_directory(tmp_path):
    root = hc.base_root(tmp_path / "root")
    hc.missing_manifest(root, tmp_path)
    hc.bad_variant_dir_name(root, tmp_path)
    store = SnapshotStore(root)
    assert {p.path.name for p in store.problems()} == {hc.LATEST, "bad name!"}
    with pytest.warns(UserWarning, match="skipped .*20260101T003000Z: holds no manifest.json"):
        assert store.times(hc.VARIANT)[-1].strftime("%H%M") == "0025"


# --------------------------------------------------------------------------------------------
# writing: racing writers, leftovers, page checksums
# --------------------------------------------------------------------------------------------


def test_48_concurrent_imports_exactly_one_wins(tmp_path):
    """48 ``lee snapshots import`` processes of one variant and time without --overwrite: one
    snapshot is published, 47 are refused cleanly, and the survivor is the one that said so."""
    n = 48
    arrays = []
    for k in range(n):
        f = tmp_path / f"ur{k}.npz"
        np.savez(f, ids=np.arange(20), vectors=np.full((20, 3), float(k), np.float32))
        arrays.append(f)
    root = tmp_path / "root"
    jobs = [(k, ["snapshots", "import", "--root", str(root), "--variant", "v", "--time", "2026-01-01T00:05:00Z",
                 "--table", f"UR={arrays[k]}", "--json"], 120.0) for k in range(n)]
    runs = hc.run_all(jobs, parallel=n)
    won = [k for k, r in runs.items() if r.rc == 0]
    assert len(won) == 1, {k: (r.rc, r.err) for k, r in runs.items()}
    for k, r in runs.items():
        assert "Traceback" not in r.err and r.rc in (0, 2), (k, r.rc, r.err)
        if r.rc:
            assert "a snapshot already exists here" in _flat(r.err) or "another writer published" in _flat(r.err)
    snap_dir = root / "v" / "20260101T000500Z"
    validate_snapshot(snap_dir)
    assert float(Snapshot.open(snap_dir).load("UR").vectors[0, 0]) == float(won[0])
    assert sorted(p.name for p in (root / "v").iterdir()) == ["20260101T000500Z"]  # no temporaries left


@pytest.mark.parametrize("round_", range(3))
def test_48_writers_released_together_exactly_one_publishes(tmp_path, round_):
    """The same race with every writer past the early existence check at once (a barrier releases
    them together), so the rename decides: RENAME_NOREPLACE lets exactly one through."""
    codes = hc.race(tmp_path / "root", 48)
    assert sorted(codes).count(0) == 1 and set(codes) <= {0, 2}, codes
    snap_dir = tmp_path / "root" / "v" / "20260101T000500Z"
    validate_snapshot(snap_dir)
    assert [p.name for p in (tmp_path / "root" / "v").iterdir()] == ["20260101T000500Z"]
    assert float(Snapshot.open(snap_dir).load("UR").vectors[0, 0]) == float(codes.index(0))


def test_a_zero_dim_array_is_refused_and_leaves_nothing(tmp_path):
    np.savez(tmp_path / "empty.npz", ids=np.arange(100), vectors=np.zeros((100, 0), np.float32))
    root = tmp_path / "root"
    assert main(["snapshots", "import", "--root", str(root), "--variant", "v", "--time", "2026-01-01T00:00:00Z",
                 "--table", f"UR={tmp_path / 'empty.npz'}"]) == 2
    assert not root.exists()


def test_writer_pages_carry_checksums_that_readers_verify(tmp_path):
    root = hc.base_root(tmp_path / "root")
    write_snapshot(root, hc.VARIANT, "2026-01-01T00:35:00Z", {"UR": Snapshot.open(hc.latest(root)).load("UR")})
    snap = root / hc.VARIANT / "20260101T003500Z"
    ur = snap / "UR.parquet"
    import pyarrow.parquet as pq

    md = pq.ParquetFile(ur).metadata
    assert md.row_group(0).num_columns == 2
    data = bytearray(ur.read_bytes())
    chunk = md.row_group(0).column(1)
    mid = chunk.data_page_offset + chunk.total_compressed_size // 2
    data[mid:mid + 64] = bytes(64)
    ur.write_bytes(bytes(data))
    hc.recompute_checksum(snap, "UR")
    for name, read in _every_reader(Snapshot.open(snap)).items():
        if name in ("load_ids", "vector_batches", "row_gather"):
            continue  # the ids' pages are intact; the mapped readers leave checksums to verify_checksum
        with pytest.raises(SnapshotError, match=r"CRC"):
            read()


# --------------------------------------------------------------------------------------------
# the results store
# --------------------------------------------------------------------------------------------


def _new_store(path: Path) -> None:
    from lee.jobs.store import ResultsStore

    ResultsStore(path)


def _in_mount_namespace(mount: str, script: str) -> subprocess.CompletedProcess:
    """Run ``script`` (Python) after the shell command ``mount``, in a private mount namespace."""
    proc = subprocess.run(["unshare", "-m", "sh", "-c", f"{mount} && {sys.executable} -c {shlex.quote(script)}"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    if "mount:" in proc.stderr or "unshare:" in proc.stderr:
        pytest.skip(f"cannot mount in a private namespace here: {proc.stderr.strip()}")
    return proc


@pytest.mark.skipif(not shutil.which("unshare"), reason="needs unshare(1) to mount a read-only file system")
def test_results_store_on_a_read_only_file_system_can_be_read(tmp_path):
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    src.mkdir()
    mnt.mkdir()
    _new_store(src / "results.sqlite")
    read_only = f"mount --bind {src} {mnt} && mount -o remount,bind,ro {mnt}"
    script = (f"from app.cli.main import main; import sys; "
              f"sys.exit(10 * main(['results', 'ls', '--db', '{mnt}/results.sqlite']) + "
              f"main(['results', 'compare', '--db', '{mnt}/results.sqlite', '--json']))")
    proc = _in_mount_namespace(read_only, script)
    assert proc.returncode == 0, proc.stderr
    assert "no LEE runs" in proc.stdout and "Traceback" not in proc.stderr
    # a writer there is told what the problem is, not "not a LEE results database"
    proc = _in_mount_namespace(read_only, f"from lee.jobs.store import ResultsStore; ResultsStore('{mnt}/new.sqlite')")
    assert "read-only file system" in proc.stderr and "not a LEE results database" not in proc.stderr


@pytest.mark.skipif(not shutil.which("unshare"), reason="needs unshare(1) to mount a small tmpfs")
def test_results_store_on_a_full_disk_says_so(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = (f"import os\nfrom lee.jobs.store import ResultsStore\n"
              f"fd = os.open('{mnt}/fill', os.O_WRONLY | os.O_CREAT)\n"
              "try:\n    while True:\n        os.write(fd, b'x' * 4096)\nexcept OSError:\n    pass\n"
              f"ResultsStore('{mnt}/r.sqlite')\n")
    proc = _in_mount_namespace(f"mount -t tmpfs -o size=128k tmpfs {mnt}", script)
    assert proc.returncode != 0
    assert "the disk is full" in proc.stderr and "not a LEE results database" not in proc.stderr


def test_reading_commands_never_create_or_alter_a_store(tmp_path):
    from analysis.lee_results import lee_comparison
    from lee.jobs.store import ResultsStore

    db = tmp_path / "typed" / "results.sqlite"
    assert main(["results", "ls", "--db", str(db)]) == 2
    for read in (lambda: lee_comparison(db), lambda: ResultsStore(db, readonly=True)):
        with pytest.raises(InputError, match="no results store here"):
            read()
    assert not db.exists() and not db.parent.exists()
    _new_store(db)
    before = db.read_bytes()
    assert main(["results", "compare", "--db", str(db)]) == 0
    assert db.read_bytes() == before
    db.write_bytes(b"")  # an empty file: a store being created this very moment, or nothing
    assert main(["results", "ls", "--db", str(db)]) == 2


def test_schema_is_created_in_one_transaction(tmp_path):
    """A reader that opens a new store while it is being created sees all of the schema or none."""
    from lee.jobs.store import ResultsStore

    db = tmp_path / "r.sqlite"
    seen = []
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.close()
    import threading

    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
                seen.append(c.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0])

    t = threading.Thread(target=reader)
    t.start()
    try:
        ResultsStore(db)
    finally:
        done.set()
        t.join()
    n_tables = len(sqlite3.connect(db).execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall())
    assert set(seen) <= {0, n_tables}, seen


# --------------------------------------------------------------------------------------------
# --out
# --------------------------------------------------------------------------------------------


def test_out_refuses_links_and_fifos_before_writing(tmp_path, capsys):
    snap = str(hc.base_root(tmp_path / "root") / hc.VARIANT / hc.LATEST)
    target = tmp_path / "precious.csv"
    target.write_text("keep me")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    for out in (link, fifo):
        assert main(["snapshots", "export", snap, "--kind", "UR", "--out", str(out)]) == 2
        assert "refusing" in _flat(capsys.readouterr().err)
    assert target.read_text() == "keep me" and link.is_symlink() and fifo.is_fifo()
    # directories: a linked --out for a result or a report is refused, its target untouched
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "outlink").symlink_to(elsewhere, target_is_directory=True)
    assert main(["analyze", "collapse", "--root", str(tmp_path / "root"), "--out", str(tmp_path / "outlink")]) == 2
    assert list(elsewhere.iterdir()) == [] and (tmp_path / "outlink").is_symlink()


def test_export_to_standard_output_with_dash(tmp_path, capfd):
    snap = str(hc.base_root(tmp_path / "root") / hc.VARIANT / hc.LATEST)
    assert main(["snapshots", "export", snap, "--kind", "UR", "--out", "-"]) == 0
    out = capfd.readouterr().out
    assert out.startswith('"id","v0"') and len(out.splitlines()) == 1 + Snapshot.open(snap).info("UR").rows


def test_report_data_is_replaced_whole(tmp_path):
    from analysis.report import write_report
    from analysis.suite import SuiteConfig, run_suite
    from lee.data.dataset import Dataset

    suite = run_suite(Dataset.open(hc.WORLD), hc.base_root(tmp_path / "root"),
                      config=SuiteConfig(tables=("UR",), map_methods=(), segments=False, n_boot=10, k=4),
                      log=lambda *_: None)
    out = tmp_path / "report"
    (out / "data" / "lee").mkdir(parents=True)
    (out / "data" / "lee" / "stale.csv").write_text("from an older report")
    write_report(out, suite)
    assert sorted(p.name for p in (out / "data").iterdir()) == ["suite"]   # no stale lee/ survives
    assert sorted(p.name for p in out.iterdir()) == ["data", "report.html"]  # no temporaries


# --------------------------------------------------------------------------------------------
# forged array headers, unexpected failures
# --------------------------------------------------------------------------------------------


def test_a_200_byte_npy_claiming_40_gb_is_refused_before_allocation(tmp_path):
    import io
    import resource

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (100_000, 100_000)})
    forged = tmp_path / "vectors.npy"
    forged.write_bytes(buf.getvalue() + b"\0" * (200 - len(buf.getvalue())))
    np.save(tmp_path / "ids.npy", np.arange(3))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    from lee.snapshot.importers import NpyImporter

    with pytest.raises(InputError, match=r"40,000,000,000 bytes.*only \d+ bytes of data follow"):
        NpyImporter(ids_path=tmp_path / "ids.npy").read(forged)
    assert time.perf_counter() - t0 < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 100_000  # KiB: nothing was allocated


def test_unexpected_failure_is_one_paragraph_naming_the_command_and_the_traceback_file(tmp_path, monkeypatch, capsys):
    import app.cli.snapshots as snapshots_cli

    def broken(args):
        raise ValueError("output array is read-only")

    monkeypatch.setattr(snapshots_cli, "cmd_snapshots_ls", broken)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    assert main(["snapshots", "ls", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err and "\n\n" not in err.strip() and err.startswith("error: lee snapshots ls failed")
    crash = next(tmp_path.glob("lee-crash-*.txt"))
    assert str(crash) in _flat(err)
    text = crash.read_text()
    assert "Traceback" in text and "ValueError: output array is read-only" in text and "snapshots ls" in text


# --------------------------------------------------------------------------------------------
# figures: labels escaped exactly once, long ones clipped
# --------------------------------------------------------------------------------------------


EVIL = '"><b>bold</b> & <script>alert(1)</script> &amp; \'q\''


def test_figure_text_is_escaped_once_and_clipped():
    from analysis import figures

    assert figures.safe('<b>"x" & y</b>') == '&lt;b&gt;"x" &amp; y&lt;/b&gt;'   # quotes stay quotes
    long = ["a" * 100 + "1", "a" * 100 + "2", "short", "a" * 100 + "1"]
    shown = figures.safe(long)
    assert len(shown[0]) == figures.LABEL_CHARS and shown[0].endswith("…")
    assert shown[0] == shown[3] and shown[1] == shown[0] + " #2" and shown[2] == "short"
    s = figures.safe(pd.Series([EVIL], index=[7]))
    assert list(s.index) == [7]
    table = pd.DataFrame({"variant": [EVIL, "x" * 10_000], "usage": ["UR+IR"] * 2, "delta_auc": [0.1, 0.2],
                          "ci_low": [0.0, 0.1], "ci_high": [0.2, 0.3], "verdict": ["better", "better"]})
    fig = figures.lee_ranking(table)
    ys = [y for trace in fig.data for y in trace.y]
    shown_text = [y.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") for y in ys]
    assert all(len(y) <= figures.LABEL_CHARS + len(" · UR+IR") for y in shown_text), shown_text
    assert any(y.startswith('"&gt;&lt;b&gt;bold&lt;/b&gt; &amp; &lt;script&gt;') for y in ys)
    assert not any("&quot;" in y or "&amp;lt;" in y for y in ys)


# --------------------------------------------------------------------------------------------
# the dashboard: configured roots, never a file created at a typed path, bound to localhost
# --------------------------------------------------------------------------------------------


def test_dashboard_refuses_paths_outside_its_roots_and_creates_nothing(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.delenv("LEE_DASHBOARD_ROOTS", raising=False)
    at = AppTest.from_file(str(REPO / "app" / "dashboard" / "main.py"), default_timeout=180)
    at.run()
    outside = tmp_path / "typed" / "results.sqlite"
    at.text_input(key="src_db").set_value(str(outside)).run()
    assert any("outside the directories this dashboard may read" in e.value for e in at.error)
    assert not outside.exists() and not outside.parent.exists()
    # inside a configured root a typed path is used, and still never created by reading it
    monkeypatch.setenv("LEE_DASHBOARD_ROOTS", str(tmp_path))
    at.text_input(key="src_db").set_value(str(outside)).run()
    assert not any("outside the directories" in e.value for e in at.error)
    assert not outside.exists()


def _listening(port: int) -> set[str]:
    """Local addresses (hex, as /proc writes them) with a socket listening on ``port`` (Linux)."""
    found = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            addr, hex_port = fields[1].split(":")
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                found.add(addr)
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads listening sockets from /proc")
def test_dashboard_serves_localhost_only_by_default(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "streamlit.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app/dashboard/main.py", "--server.headless",
                             "true", "--server.port", str(port)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not _listening(port):
            time.sleep(0.5)
        addrs = _listening(port)
        assert addrs, (tmp_path / "streamlit.log").read_text()
        assert addrs == {"0100007F"}, addrs   # 127.0.0.1 only: not 0.0.0.0, not ::
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
