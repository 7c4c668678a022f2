"""A corpus of hostile and broken snapshot roots, and a runner that puts every consumer through each.

Each :class:`Case` starts from a copy of two committed tiny variants (``fixtures/tiny``: ``oracle``
and ``random``, two snapshots each) and breaks one thing the way an attacker or a flaky pipeline
would: a FIFO or a link to ``/dev/zero`` as a table, links leading out of the root, duplicate ids
or the wrong id type with the checksum recomputed, a missing / dangling / directory / FIFO
manifest, a time directory whose name does not parse, absurd values, a manifest naming another
variant, a zeroed data page with the file hash recomputed, a variant directory with an invalid
name. ``build`` returns the path every consumer must name.

:func:`run_cli` runs one ``lee`` command in a child process forked from a server that has imported
the command line once (``multiprocessing``'s forkserver), with a time limit: the import cost is
paid once, yet each command is its own process, so a hang is killed and reported, a traceback is
seen on the child's stderr, and an exit status is an exit status.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "fixtures" / "tiny"
WORLD = TINY / "world"
VARIANT, OTHER = "oracle", "random"
EARLIER, LATEST = "20260101T002500Z", "20260101T003000Z"

# --------------------------------------------------------------------------------------------
# building roots
# --------------------------------------------------------------------------------------------


def base_root(dest: Path) -> Path:
    """``dest`` holding copies of the tiny ``oracle`` and ``random`` variants (valid, 2 snapshots each)."""
    dest.mkdir(parents=True, exist_ok=True)
    for v in (VARIANT, OTHER):
        shutil.copytree(TINY / "snapshots" / v, dest / v)
    return dest


def latest(root: Path) -> Path:
    return root / VARIANT / LATEST


def _manifest(snap: Path) -> dict:
    return json.loads((snap / "manifest.json").read_text(encoding="utf-8"))


def _save_manifest(snap: Path, raw: dict) -> None:
    (snap / "manifest.json").write_text(json.dumps(raw, indent=2), encoding="utf-8")


def recompute_checksum(snap: Path, kind: str, *, rows: int | None = None) -> None:
    """What a careless pipeline (or an attacker) does after editing a table: make the manifest's
    sha256 and size (and rows) match the file again, so only the deeper checks can catch it."""
    raw = _manifest(snap)
    entry = raw["tables"][kind]
    data = (snap / entry["file"]).read_bytes()
    entry["sha256"] = hashlib.sha256(data).hexdigest()
    if "bytes" in entry:
        entry["bytes"] = len(data)
    if rows is not None:
        entry["rows"] = rows
    _save_manifest(snap, raw)


def rewrite_table(snap: Path, kind: str, ids: pa.Array, vectors: np.ndarray) -> Path:
    """Replace a table with plain pyarrow (no page CRCs) and recompute the manifest's checksum."""
    path = snap / f"{kind}.parquet"
    flat = pa.array(np.ascontiguousarray(vectors, np.float32).reshape(-1), pa.float32())
    pq.write_table(pa.table({"id": ids, "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])}),
                   path, compression="none", use_dictionary=False)
    raw = _manifest(snap)
    raw["tables"][kind]["has_updated_at"] = False
    _save_manifest(snap, raw)
    recompute_checksum(snap, kind, rows=len(ids))
    return path


def _ur(snap: Path) -> tuple[np.ndarray, np.ndarray]:
    t = pq.read_table(snap / "UR.parquet")
    ids = t.column("id").to_numpy().copy()
    vec = t.column("vector").combine_chunks().flatten().to_numpy().reshape(len(ids), -1).copy()
    return ids, vec


def _replace_with_link(path: Path, target: str | Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    path.symlink_to(target)


# every builder breaks ``root`` (``outside`` is a directory beside it) and returns the path to name


def fifo_table(root: Path, outside: Path) -> Path:
    ur = latest(root) / "UR.parquet"
    ur.unlink()
    os.mkfifo(ur)
    return ur


def dev_zero_table(root: Path, outside: Path) -> Path:
    ur = latest(root) / "UR.parquet"
    _replace_with_link(ur, "/dev/zero")
    return ur


def table_link_out_of_root(root: Path, outside: Path) -> Path:
    ur = latest(root) / "UR.parquet"
    shutil.copy(ur, outside / "UR.parquet")   # the very same bytes: only where they live is wrong
    _replace_with_link(ur, outside / "UR.parquet")
    return ur


def manifest_link_out_of_root(root: Path, outside: Path) -> Path:
    m = latest(root) / "manifest.json"
    shutil.copy(m, outside / "manifest.json")
    _replace_with_link(m, outside / "manifest.json")
    return m


def snapshot_dir_link_out_of_root(root: Path, outside: Path) -> Path:
    snap = latest(root)
    shutil.move(str(snap), str(outside / LATEST))
    snap.symlink_to(outside / LATEST, target_is_directory=True)
    return snap


def variant_link_out_of_root(root: Path, outside: Path) -> Path:
    v = root / OTHER
    shutil.move(str(v), str(outside / OTHER))
    v.symlink_to(outside / OTHER, target_is_directory=True)
    return v


def duplicate_id(root: Path, outside: Path) -> Path:
    ids, vec = _ur(latest(root))
    ids[5] = ids[2]
    return rewrite_table(latest(root), "UR", pa.array(ids, pa.int64()), vec)


def string_ids_under_int64(root: Path, outside: Path) -> Path:
    ids, vec = _ur(latest(root))
    return rewrite_table(latest(root), "UR", pa.array([str(i) for i in ids], pa.string()), vec)


def int64_ids_under_string(root: Path, outside: Path) -> Path:
    snap = latest(root)
    raw = _manifest(snap)
    raw["tables"]["UR"]["id_type"] = "string"
    _save_manifest(snap, raw)
    return snap / "UR.parquet"


def missing_manifest(root: Path, outside: Path) -> Path:
    (latest(root) / "manifest.json").unlink()
    return latest(root)


def dangling_manifest(root: Path, outside: Path) -> Path:
    _replace_with_link(latest(root) / "manifest.json", outside / "gone.json")
    return latest(root)


def manifest_is_directory(root: Path, outside: Path) -> Path:
    m = latest(root) / "manifest.json"
    m.unlink()
    m.mkdir()
    return latest(root)


def manifest_fifo(root: Path, outside: Path) -> Path:
    m = latest(root) / "manifest.json"
    m.unlink()
    os.mkfifo(m)
    return latest(root)


def unparseable_time_dir(root: Path, outside: Path) -> Path:
    renamed = root / VARIANT / "2026-01-01 00:30"
    latest(root).rename(renamed)
    return renamed


def absurd_values(root: Path, outside: Path) -> Path:
    ids, vec = _ur(latest(root))
    vec[3, 1] = np.float32(3.4e38)   # finite, and turns every variance and Gram matrix into inf
    return rewrite_table(latest(root), "UR", pa.array(ids, pa.int64()), vec)


def manifest_names_another_variant(root: Path, outside: Path) -> Path:
    snap = latest(root)
    raw = _manifest(snap)
    raw["variant"] = OTHER
    _save_manifest(snap, raw)
    return snap / "manifest.json"


def manifest_variant_traversal(root: Path, outside: Path) -> Path:
    snap = latest(root)
    raw = _manifest(snap)
    raw["variant"] = "../../../etc"
    _save_manifest(snap, raw)
    return snap / "manifest.json"


def zeroed_data_page(root: Path, outside: Path) -> Path:
    """Zero 256 bytes inside UR's vector values (written by the snapshot writer, so each page has a
    CRC) and recompute the file's sha256: the values stay finite, only the page CRC can tell."""
    snap = latest(root)
    ur = snap / "UR.parquet"
    md = pq.ParquetFile(ur).metadata
    names = [md.schema.column(i).path for i in range(md.num_columns)]
    chunk = md.row_group(0).column(names.index("vector.list.element"))
    data = bytearray(ur.read_bytes())
    mid = chunk.data_page_offset + chunk.total_compressed_size // 2
    data[mid:mid + 256] = bytes(256)
    ur.write_bytes(bytes(data))
    recompute_checksum(snap, "UR")
    return ur


def bad_variant_dir_name(root: Path, outside: Path) -> Path:
    bad = root / "bad name!"
    shutil.copytree(root / OTHER, bad)
    return bad


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path, Path], Path]


CASES: tuple[Case, ...] = tuple(Case(f.__name__, f) for f in (
    fifo_table, dev_zero_table, table_link_out_of_root, manifest_link_out_of_root, snapshot_dir_link_out_of_root,
    variant_link_out_of_root, duplicate_id, string_ids_under_int64, int64_ids_under_string, missing_manifest,
    dangling_manifest, manifest_is_directory, manifest_fifo, unparseable_time_dir, absurd_values,
    manifest_names_another_variant, manifest_variant_traversal, zeroed_data_page, bad_variant_dir_name,
))


# --------------------------------------------------------------------------------------------
# consumers
# --------------------------------------------------------------------------------------------


def write_job(path: Path, root: Path, results: Path) -> Path:
    """A LEE job on the tiny world reduced to seconds: one seed, three windows, a small proxy."""
    path.write_text(
        f'[job]\nsnapshots = "{root}"\ndata = "{WORLD}"\nresults = "{results}"\nvariants = ["{VARIANT}"]\n'
        'latest_only = true\ndevice = "cpu"\n\n[eval]\nusages = ["UR+IR"]\nseeds = [0]\nwindows = 3\nn_boot = 10\n\n'
        '[proxy]\nemb_dim = 4\nmlp_hidden = [8]\n', encoding="utf-8")
    return path


def write_suite_config(path: Path) -> Path:
    """The report's suite reduced to seconds: the UR table, no maps, no A/B log, few resamples."""
    path.write_text('tables = ["UR"]\nmap_methods = []\nsegments = false\nn_boot = 10\nk = 4\n', encoding="utf-8")
    return path


CONSUMERS = ("validate", "volatility", "health", "collapse", "clusters", "evaluate", "report")


def consumer_argv(consumer: str, root: Path, work: Path, results: Path) -> list[str]:
    """The ``lee`` command line of one consumer on ``root`` (``work``: a scratch directory)."""
    common = ["--quiet"]
    if consumer == "validate":
        return ["snapshots", "validate", str(root), *common]
    if consumer == "volatility":
        return ["analyze", "volatility", "--root", str(root), "--variant", VARIANT, "--json", *common]
    if consumer == "health":
        return ["analyze", "health", "--root", str(root), "--variant", VARIANT, "--json", *common]
    if consumer == "collapse":
        return ["analyze", "collapse", "--root", str(root), "--json", *common]
    if consumer == "clusters":
        return ["analyze", "clusters", "--data", str(WORLD), "--root", str(root), "--variant", VARIANT, "--k", "4",
                "--json", *common]
    if consumer == "evaluate":
        return ["evaluate", "--config", str(write_job(work / "job.toml", root, results)), "--json", *common]
    if consumer == "report":
        return ["report", "--data", str(WORLD), "--root", str(root), "--out", str(work / "report"), "--config",
                str(write_suite_config(work / "suite.toml")), "--json", *common]
    raise ValueError(consumer)


# --------------------------------------------------------------------------------------------
# running a command in its own process, with a time limit
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    argv: tuple[str, ...]
    rc: int | None          # None: killed at the time limit
    out: str
    err: str
    seconds: float

    @property
    def timed_out(self) -> bool:
        return self.rc is None

    def text(self) -> str:
        """stdout and stderr on one line each word apart (paths wrapped by the error printer rejoin)."""
        return " ".join((self.out + "\n" + self.err).split())


def _child(argv: Sequence[str], out_path: str, err_path: str) -> None:
    """Runs in the forked child: the command's stdout and stderr go to files, its status is the exit code."""
    for fd, path in ((1, out_path), (2, err_path)):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    os.environ.pop("LEE_MAX_ABS_VALUE", None)
    rc = 99
    try:
        import torch

        torch.set_num_threads(1)
        from app.cli.main import main

        rc = int(main(list(argv)) or 0)
    except SystemExit as exc:  # argparse
        rc = exc.code if isinstance(exc.code, int) else 2
    except BaseException:  # noqa: BLE001 - what must never happen: shown as the traceback it is
        traceback.print_exc()
        rc = 99
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)


_CTX: mp.context.BaseContext | None = None


def _context() -> mp.context.BaseContext:
    global _CTX
    if _CTX is None:
        method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        ctx = mp.get_context(method)
        if method == "forkserver":
            ctx.set_forkserver_preload(["hostile_corpus", "app.cli.main", "analysis.suite", "analysis.report",
                                        "lee.jobs.run", "analysis.clusters", "torch"])
        _CTX = ctx
    return _CTX


def run_cli(argv: Sequence[str], *, timeout: float) -> Run:
    """Run ``lee ARGV`` in its own process; kill it after ``timeout`` seconds (``rc`` None)."""
    with tempfile.TemporaryDirectory(prefix="lee-run-") as tmp:
        out, err = os.path.join(tmp, "out"), os.path.join(tmp, "err")
        t0 = time.perf_counter()
        proc = _context().Process(target=_child, args=(list(argv), out, err), daemon=True)
        proc.start()
        proc.join(timeout)
        rc: int | None
        if proc.is_alive():
            proc.kill()
            proc.join(10)
            rc = None
        else:
            rc = proc.exitcode
        seconds = time.perf_counter() - t0

        def read(path: str) -> str:
            try:
                return Path(path).read_text(encoding="utf-8", errors="replace")
            except FileNotFoundError:
                return ""

        return Run(tuple(argv), rc, read(out), read(err), seconds)


def run_all(jobs: Sequence[tuple[str, Sequence[str], float]], *, parallel: int = 2) -> dict[str, Run]:
    """Run many ``(key, argv, timeout)`` commands, ``parallel`` at a time; results by key."""
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = {key: pool.submit(run_cli, argv, timeout=timeout) for key, argv, timeout in jobs}
        return {key: f.result() for key, f in futures.items()}


def race_writer(root: str, k: int, barrier: object) -> None:
    """One of many processes writing the same variant and time at once (released together by
    ``barrier``): exits 0 if it published its snapshot, 2 if it was refused, 99 on anything else."""
    from lee.errors import SnapshotError
    from lee.snapshot import EmbeddingTable, write_snapshot

    table = EmbeddingTable(np.arange(20, dtype=np.int64), np.full((20, 3), float(k), np.float32))
    barrier.wait()  # type: ignore[attr-defined]
    try:
        write_snapshot(root, "v", "2026-01-01T00:05:00Z", {"UR": table})
    except SnapshotError as exc:
        os._exit(2 if "already exists" in str(exc) or "another writer" in str(exc) else 98)
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        os._exit(99)
    os._exit(0)


def race(root: Path, n: int) -> list[int | None]:
    """``n`` processes run :func:`race_writer` on ``root`` released at the same instant; their exit codes."""
    ctx = _context()
    barrier = ctx.Barrier(n)
    procs = [ctx.Process(target=race_writer, args=(str(root), k, barrier)) for k in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    return [p.exitcode for p in procs]


# --------------------------------------------------------------------------------------------
# judging a run
# --------------------------------------------------------------------------------------------


def verdict(run: Run, culprit: Path | str) -> str | None:
    """None when the run behaved (refused in one paragraph naming ``culprit``, or exited 0 naming
    it as skipped); otherwise what went wrong, in words."""
    name = str(culprit)
    if run.timed_out:
        return f"hung (killed after {run.seconds:.0f} s)"
    if "Traceback" in run.err or "Traceback" in run.out:
        return "printed a traceback"
    if run.rc not in (0, 1, 2):
        return f"exit status {run.rc} (0, 1 or 2 expected; 3 is an unexpected failure)"
    if name not in run.text():
        what = "refused without naming" if run.rc else "exited 0 without naming (as skipped)"
        return f"{what} {name}"
    if run.rc and run.argv[:2] != ("snapshots", "validate"):
        errors = [line for line in run.err.splitlines() if line.startswith("error:")]
        tail = run.err[run.err.find("error:"):] if errors else ""
        if len(errors) != 1 or "\n\n" in tail:
            return f"refused, but not in one paragraph: {run.err!r}"
    return None


def corrupt(path: Path, seed: int) -> None:
    """Truncate the file or overwrite a few random bytes, deterministically from ``seed``."""
    rng = np.random.default_rng(seed)
    data = bytearray(path.read_bytes())
    if seed % 3 == 0:
        data = data[: int(rng.integers(0, len(data)))]
    else:
        for _ in range(int(rng.integers(1, 6))):
            data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
    path.write_bytes(bytes(data))
