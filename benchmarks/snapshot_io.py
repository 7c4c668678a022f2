"""Snapshot I/O benchmark: lee.snapshot against plain pyarrow Parquet and numpy .npy.

    python benchmarks/snapshot_io.py [--rows N] [--dim D] [--repeats R] [--json OUT]

Every operation runs in its own fresh Python subprocess, which

1. imports numpy, pyarrow and lee.snapshot (same baseline for every operation),
2. builds its input: the seeded random matrix (float32, rows x dim) and a seeded permutation of
   int64 ids for writes; nothing for reads (the files were written once beforehand),
3. runs the operation once as a warm-up and then ``--repeats`` (default 5) timed times
   (time.perf_counter); the warm-up's time is reported too, as the fresh-process "1st run",
4. measures the peak-RSS increase of every run: the kernel's peak-RSS counter (VmHWM, the value
   behind getrusage's ru_maxrss) is reset through /proc/self/clear_refs right before the run and
   compared with the resident size at that moment. Where clear_refs is not allowed, only the
   warm-up run is measured, as ru_maxrss after it minus the resident size before it (that run is
   the first large allocation in a fresh process, so the earlier high-water mark does not mask it).

The table reports median and min over the timed runs; throughput is the logical payload
(rows x (8 + 4*dim) bytes, MB = 10^6 bytes) divided by the median time. The peak-RSS figure is
the one of the first run in the fresh process (the warm-up), i.e. what a one-shot process pays;
the JSON also holds every run's figure.

Caveats printed with the table: the page cache cannot be dropped here, so reads are warm-cache
reads of files just written; only lee's writer fsyncs (the "+ fsync" rows add one to the plain
writers for an apples-to-apples comparison); lee.load memory-maps the file, and the mapped pages
it touches count as resident (file-backed, reclaimable) memory in its peak RSS.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# name -> (label, kind); kind "write" ops build the data in the worker, "read" ops read reference files.
OPS: dict[str, tuple[str, str]] = {
    "lee_write": ("lee write_snapshot (parquet, none, sha256, fsync, rename)", "write"),
    "lee_load_verify": ("lee Snapshot.load verify=True", "read"),
    "lee_load_noverify": ("lee Snapshot.load verify=False", "read"),
    "lee_iter_chunks": ("lee iter_chunks full pass (verify=True, 131072 rows)", "read"),
    "lee_iter_chunks_noverify": ("lee iter_chunks full pass (verify=False)", "read"),
    "pq_write_default": ("pyarrow write_table, defaults (snappy, dictionary)", "write"),
    "pq_write_none": ("pyarrow write_table, compression=none", "write"),
    "pq_write_none_fsync": ("pyarrow write_table, compression=none + fsync", "write"),
    "pq_write_none_crc_fsync": ("pyarrow write_table, compression=none, page CRCs + fsync", "write"),
    "pq_read_default": ("pyarrow read_table, file with defaults", "read"),
    "pq_read_none": ("pyarrow read_table, file with compression=none", "read"),
    "pq_read_none_numpy": ("pyarrow read_table (none) + to numpy ids/matrix", "read"),
    "np_save": ("numpy.save ids.npy + vectors.npy", "write"),
    "np_save_fsync": ("numpy.save ids.npy + vectors.npy + fsync", "write"),
    "np_load": ("numpy.load ids.npy + vectors.npy", "read"),
}

SNAP_VARIANT = "bench"
SNAP_TIME = 1_700_000_000  # epoch seconds; any fixed event time


# --------------------------------------------------------------------------- worker side


def _make_data(rows: int, dim: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((rows, dim), dtype=np.float32)  # generated as float32, no float64 temp
    ids = rng.permutation(rows).astype(np.int64, copy=False) * 7 + 1_000_003  # unique, unsorted int64
    return ids, vectors


def _arrow_table(ids, vectors):
    import pyarrow as pa

    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    return pa.table({"id": pa.array(ids, type=pa.int64()),
                     "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])})


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _paths(workdir: Path) -> dict[str, Path]:
    ref = workdir / "ref"
    return {
        "snap_root": ref / "snapshots",
        "pq_default": ref / "default.parquet",
        "pq_none": ref / "none.parquet",
        "npy_ids": ref / "ids.npy",
        "npy_vectors": ref / "vectors.npy",
    }


def _snap_dir(root: Path) -> Path:
    from lee.timeutil import parse_event_time, time_dirname

    return root / SNAP_VARIANT / time_dirname(parse_event_time(SNAP_TIME))


def prepare(workdir: Path, rows: int, dim: int, seed: int) -> dict[str, int]:
    """Write the reference files every read operation reads; return their sizes in bytes."""
    import numpy as np
    import pyarrow.parquet as pq

    from lee.snapshot import EmbeddingTable, write_snapshot

    p = _paths(workdir)
    p["snap_root"].parent.mkdir(parents=True, exist_ok=True)
    ids, vectors = _make_data(rows, dim, seed)
    snap = write_snapshot(p["snap_root"], SNAP_VARIANT, SNAP_TIME, {"UR": EmbeddingTable(ids, vectors)})
    table = _arrow_table(ids, vectors)
    pq.write_table(table, p["pq_default"])
    pq.write_table(table, p["pq_none"], compression="none")
    np.save(p["npy_ids"], ids)
    np.save(p["npy_vectors"], vectors)
    return {
        "lee": (snap / "UR.parquet").stat().st_size,
        "pq_default": p["pq_default"].stat().st_size,
        "pq_none": p["pq_none"].stat().st_size,
        "npy": p["npy_ids"].stat().st_size + p["npy_vectors"].stat().st_size,
    }


def _op_callable(op: str, workdir: Path, rows: int, dim: int, seed: int):
    """Return (run, cleanup): run(i) does one operation, cleanup(i) undoes its side effects untimed."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lee.snapshot import EmbeddingTable, Snapshot, write_snapshot

    p = _paths(workdir)
    out = workdir / f"out-{op}"
    out.mkdir(parents=True, exist_ok=True)

    def rm_out(i: int) -> None:
        target = out / str(i)
        if target.exists():
            shutil.rmtree(target)

    if OPS[op][1] == "write":
        ids, vectors = _make_data(rows, dim, seed)

        if op == "lee_write":
            def run(i):
                write_snapshot(out / str(i), SNAP_VARIANT, SNAP_TIME, {"UR": EmbeddingTable(ids, vectors)})
        elif op in ("pq_write_default", "pq_write_none", "pq_write_none_fsync", "pq_write_none_crc_fsync"):
            kwargs: dict = {} if op == "pq_write_default" else {"compression": "none"}
            if op == "pq_write_none_crc_fsync":   # the page CRCs lee's files carry (lee adds the sha256)
                kwargs["write_page_checksum"] = True
            fsync = op.endswith("_fsync")

            def run(i):
                d = out / str(i)
                d.mkdir()
                f = d / "UR.parquet"
                pq.write_table(_arrow_table(ids, vectors), f, **kwargs)
                if fsync:
                    _fsync_path(f)
                    _fsync_path(d)
        elif op in ("np_save", "np_save_fsync"):
            fsync = op.endswith("_fsync")

            def run(i):
                d = out / str(i)
                d.mkdir()
                np.save(d / "ids.npy", ids)
                np.save(d / "vectors.npy", vectors)
                if fsync:
                    _fsync_path(d / "ids.npy")
                    _fsync_path(d / "vectors.npy")
                    _fsync_path(d)
        else:
            raise ValueError(op)
        return run, rm_out

    snap_dir = _snap_dir(p["snap_root"])
    sink: list[object] = []  # keeps each result alive until the run is timed, then dropped

    if op in ("lee_load_verify", "lee_load_noverify"):
        verify = op == "lee_load_verify"

        def run(i):
            sink.append(Snapshot.open(snap_dir).load("UR", verify=verify))
    elif op in ("lee_iter_chunks", "lee_iter_chunks_noverify"):
        verify = op == "lee_iter_chunks"

        def run(i):
            n = 0
            for chunk in Snapshot.open(snap_dir).iter_chunks("UR", verify=verify):
                n += len(chunk)
            assert n == rows, n
    elif op in ("pq_read_default", "pq_read_none"):
        f = p["pq_default"] if op == "pq_read_default" else p["pq_none"]

        def run(i):
            sink.append(pq.read_table(f))
    elif op == "pq_read_none_numpy":
        def run(i):
            t = pq.read_table(p["pq_none"])
            vec = t.column("vector").combine_chunks()
            matrix = vec.flatten().to_numpy(zero_copy_only=False).reshape(-1, vec.type.list_size)
            sink.append((t.column("id").to_numpy(), matrix))
            del t, vec
    elif op == "np_load":
        def run(i):
            sink.append((np.load(p["npy_ids"]), np.load(p["npy_vectors"])))
    else:
        raise ValueError(op)

    def cleanup(i):
        sink.clear()

    _ = pa  # imported for the baseline only
    return run, cleanup


def _status_kib() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0])
    return out


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def worker(op: str, workdir: Path, rows: int, dim: int, seed: int, warmup: int, repeats: int) -> dict:
    import resource

    import numpy  # noqa: F401  same imports in every worker: the RSS baseline is the same
    import pyarrow  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import lee.snapshot  # noqa: F401

    run, cleanup = _op_callable(op, workdir, rows, dim, seed)
    can_reset = _reset_peak()
    times: list[float] = []
    warmup_times: list[float] = []
    rss_delta_kib: list[int | None] = []
    for i in range(warmup + repeats):
        gc.collect()
        if can_reset:
            _reset_peak()
        before = _status_kib()["VmRSS"]
        t0 = time.perf_counter()
        run(i)
        dt = time.perf_counter() - t0
        if can_reset:
            rss_delta_kib.append(max(0, _status_kib()["VmHWM"] - before))
        elif i == 0:
            rss_delta_kib.append(max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before))
        else:
            rss_delta_kib.append(None)
        cleanup(i)
        (times if i >= warmup else warmup_times).append(dt)
    return {
        "op": op,
        "times_s": times,
        "warmup_s": warmup_times,
        "rss_delta_kib": rss_delta_kib,
        "rss_method": "clear_refs+VmHWM" if can_reset else "ru_maxrss (warm-up run only)",
    }


# --------------------------------------------------------------------------- parent side


def _machine() -> dict[str, object]:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gib = None
    return {
        "nproc": os.cpu_count(),
        "sched_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu": cpu,
        "mem_gib": round(mem_gib, 1) if mem_gib else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pyarrow": pa.__version__,
        "pandas": pd.__version__,
        "arrow_memory_pool": pa.default_memory_pool().backend_name,
        "arrow_cpu_count": pa.cpu_count(),
        "platform": platform.platform(),
    }


def _run_worker(op: str, args: argparse.Namespace, workdir: Path) -> dict:
    cmd = [
        sys.executable, str(Path(__file__).resolve()), "--_worker", op, "--_workdir", str(workdir),
        "--rows", str(args.rows), "--dim", str(args.dim), "--seed", str(args.seed),
        "--warmup", str(args.warmup), "--repeats", str(args.repeats),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {op} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = time.perf_counter() - t0
    return result


def _fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per operation (after the warm-up)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs per operation")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    ap.add_argument("--ops", default=",".join(OPS), help="comma-separated subset of: " + ", ".join(OPS))
    ap.add_argument("--tmpdir", type=Path, default=None, help="where the temporary files go (default: system temp)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per operation's subprocess")
    ap.add_argument("--_worker", help=argparse.SUPPRESS)
    ap.add_argument("--_workdir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._worker:
        res = worker(args._worker, args._workdir, args.rows, args.dim, args.seed, args.warmup, args.repeats)
        print(json.dumps(res))
        return 0

    if args.rows <= 0 or args.dim <= 0 or args.repeats < 1 or args.warmup < 0:
        ap.error("--rows and --dim must be positive, --repeats >= 1, --warmup >= 0")
    ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    unknown = [o for o in ops if o not in OPS]
    if unknown:
        ap.error(f"unknown op(s) {', '.join(unknown)}; choose from {', '.join(OPS)}")

    started = time.perf_counter()
    machine = _machine()
    payload = args.rows * (8 + 4 * args.dim)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="lee-snapshot-bench-", dir=args.tmpdir) as tmp:
        workdir = Path(tmp)
        t0 = time.perf_counter()
        sizes = prepare(workdir, args.rows, args.dim, args.seed)
        prep_s = time.perf_counter() - t0
        gc.collect()
        print(
            f"# prepared reference files in {prep_s:.1f}s under {workdir} "
            f"(lee {sizes['lee'] / 2**20:.1f} MiB, pq default {sizes['pq_default'] / 2**20:.1f} MiB, "
            f"pq none {sizes['pq_none'] / 2**20:.1f} MiB, npy {sizes['npy'] / 2**20:.1f} MiB)",
            file=sys.stderr, flush=True,
        )
        for op in ops:
            res = _run_worker(op, args, workdir)
            results[op] = res
            print(
                f"# {op}: median {statistics.median(res['times_s']):.3f}s "
                f"(subprocess {res['process_wall_s']:.1f}s)",
                file=sys.stderr, flush=True,
            )

    file_for = {
        "lee_write": "lee", "lee_load_verify": "lee", "lee_load_noverify": "lee", "lee_iter_chunks": "lee",
        "lee_iter_chunks_noverify": "lee", "pq_write_default": "pq_default", "pq_read_default": "pq_default",
        "pq_write_none": "pq_none", "pq_write_none_fsync": "pq_none",
        "pq_write_none_crc_fsync": "pq_none", "pq_read_none": "pq_none",
        "pq_read_none_numpy": "pq_none", "np_save": "npy", "np_save_fsync": "npy", "np_load": "npy",
    }
    rows_out = []
    for op in ops:
        res = results[op]
        med = statistics.median(res["times_s"])
        mn = min(res["times_s"])
        first_rss = res["rss_delta_kib"][0] if res["rss_delta_kib"] else None
        timed_rss = [r for r in res["rss_delta_kib"][args.warmup:] if r is not None]
        entry = {
            "op": op,
            "label": OPS[op][0],
            "kind": OPS[op][1],
            "median_s": med,
            "min_s": mn,
            "times_s": res["times_s"],
            "first_run_s": res["warmup_s"][0] if res["warmup_s"] else None,
            "mb_per_s_median": payload / 1e6 / med,
            "rows_per_s_median": args.rows / med,
            "peak_rss_delta_mib_first_run": None if first_rss is None else first_rss / 1024,
            "peak_rss_delta_mib_timed_median": statistics.median(timed_rss) / 1024 if timed_rss else None,
            "rss_delta_kib_all_runs": res["rss_delta_kib"],
            "rss_method": res["rss_method"],
            "file_mib": sizes[file_for[op]] / 2**20,
        }
        rows_out.append(entry)

    total_s = time.perf_counter() - started
    print(
        f"\n## Snapshot I/O: {args.rows:,} rows x {args.dim} dims float32 + int64 ids "
        f"(payload {payload / 1e6:.1f} MB), {args.warmup} warm-up + {args.repeats} timed runs per op\n"
    )
    print(
        f"Machine: nproc={machine['nproc']}, {machine['cpu']}, {machine['mem_gib']} GiB RAM; "
        f"Python {machine['python']}, numpy {machine['numpy']}, pyarrow {machine['pyarrow']} "
        f"(pool {machine['arrow_memory_pool']}), pandas {machine['pandas']}\n"
    )
    print("| Operation | median s | min s | 1st run s | MB/s (median) | rows/s (median) | peak RSS Δ MiB | file MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for e in rows_out:
        rss = e["peak_rss_delta_mib_first_run"]
        print(
            f"| {e['label']} | {e['median_s']:.3f} | {e['min_s']:.3f} "
            f"| {'n/a' if e['first_run_s'] is None else format(e['first_run_s'], '.3f')} "
            f"| {_fmt_rate(e['mb_per_s_median'])} "
            f"| {_fmt_rate(e['rows_per_s_median'])} | {'n/a' if rss is None else f'{rss:,.0f}'} "
            f"| {e['file_mib']:.1f} |"
        )
    print(
        "\nNotes: median/min over the timed runs; '1st run' = the untimed warm-up, the first run in a fresh "
        "process (what a one-shot CLI pays, including first-touch page faults). "
        "MB/s = logical payload (rows x (8 + 4*dim) bytes, 1 MB = 10^6 B) / median time. "
        "Reads are warm-cache (files just written; the page cache cannot be dropped here). "
        "Only lee's writer and the '+ fsync' rows fsync. "
        "Peak RSS Δ = rise of the process's peak resident set over its size just before the run, "
        f"first run in a fresh subprocess ({rows_out[0]['rss_method'] if rows_out else ''}); "
        "lee.load memory-maps the file, so the mapped file pages it touches count in its figure. "
        f"Total benchmark wall time {total_s:.0f}s."
    )

    if args.json:
        doc = {
            "config": {
                "rows": args.rows, "dim": args.dim, "repeats": args.repeats, "warmup": args.warmup,
                "seed": args.seed, "payload_bytes": payload,
            },
            "machine": machine,
            "file_bytes": sizes,
            "prepare_s": prep_s,
            "total_wall_s": total_s,
            "results": rows_out,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
