"""Scale benchmark (issue 18): volatility, health and collapse at 10M ids, local engine vs Ray on this box.

    nice -n 10 python benchmarks/scale.py [--rows 10000000] [--dim 16] [--data DIR] [--json OUT]
                                          [--analyses volatility,health,collapse,lee]
                                          [--memory-mb 4096] [--engines local,ray]

Data: two snapshots of one variant (``UR``, int64 ids, ``dim`` float32 per id), generated and
written in 1M-row chunks with the writer's Parquet layout (never whole in memory): the later one
keeps 95% of the earlier one's ids (shuffled within each chunk, so nothing joins by position),
adds 5% new ids, and moves every vector by Gaussian noise. At 10M ids and dim 16 each file is
~0.7 GB (dim 16 keeps both snapshots and the page cache well inside this shared box's disk and
23 GB of memory; the work per row scales with dim).

Each (analysis, engine) runs in its own fresh subprocess:

* ``volatility`` — local: ``cosine_by_id`` (the streamed join, checksums on a second thread);
  ray: ``cosine_by_id_partitioned`` (hash-partitioned join: map tasks over 524,288-row ranges,
  reduce tasks per partition, checksums and ids checked as two more tasks).
* ``collapse`` — one table's singular spectrum and RankMe: local ``collapse_of_table`` (streamed
  Gram matrix), ray ``collapse_partitioned`` (one task per row range, Gram sums merged in order).
* ``health`` — one table's statistics without a reference (two passes: moments, then extremes):
  local ``table_stats``, ray ``table_stats_partitioned`` (one task per row range, sums merged).

* ``lee`` — a LEE job on the ``small`` planted world (200k events): its 6 planted variants under
  UR+IR, 3 seeds, 10 windows (1 baseline + 6 units), one torch thread per process (as Ray's
  workers run), on the job's ``[engine]``; the world is generated once, outside the timing.

On Ray it reports separately: starting the local instance (``ray.init(num_cpus=2)``), warming
the workers (first tasks import numpy/pyarrow/lee), the per-task overhead (200 empty tasks), and
the analysis itself. Memory: the child's peak RSS (the driver; for the local engine everything)
and the box's peak extra memory in use (MemTotal − MemAvailable sampled every 0.1 s, minus its
value before the run: Ray's workers, raylet and object store included, and anything else the box
was doing meanwhile — this box is shared, so read it as an upper bound). Results are checked:
Ray's summary must equal the local one to 1e-9 relative.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"
CHUNK = 1_000_000


# --------------------------------------------------------------------------- data, streamed


def _write_table(snap_dir: Path, variant: str, when: str, dim: int, chunks: Any) -> None:
    """Write ``UR.parquet`` from ``chunks`` of (ids, vectors) with the writer's layout, then the manifest."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lee.snapshot.format import MANIFEST_NAME, Manifest, TableInfo, TableKind
    from lee.snapshot.parquet_io import ROW_GROUP_ROWS
    from lee.timeutil import parse_event_time

    tmp = snap_dir.with_name("." + snap_dir.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / TableKind.UR.filename
    schema = pa.schema([("id", pa.int64()), ("vector", pa.list_(pa.float32(), dim))])
    rows = 0
    with pq.ParquetWriter(path, schema, compression="none", use_dictionary=False, write_statistics=["id"],
                          write_page_checksum=True) as writer:
        for ids, vectors in chunks:
            flat = pa.array(np.ascontiguousarray(vectors, np.float32).reshape(-1), type=pa.float32())
            writer.write_table(pa.table({"id": pa.array(ids, pa.int64()),
                                         "vector": pa.FixedSizeListArray.from_arrays(flat, dim)}),
                               row_group_size=ROW_GROUP_ROWS)
            rows += len(ids)
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(8 << 20):
            digest.update(block)
    info = TableInfo(kind=TableKind.UR, file=TableKind.UR.filename, dim=dim, rows=rows, id_type="int64",
                     sha256=digest.hexdigest(), has_updated_at=False, bytes=path.stat().st_size)
    manifest = Manifest(variant=variant, event_time=parse_event_time(when), source_layer="benchmark",
                        tables={TableKind.UR: info}, extra={})
    (tmp / MANIFEST_NAME).write_bytes(manifest.to_json().encode("utf-8"))
    tmp.rename(snap_dir)


def make_data(root: Path, rows: int, dim: int, seed: int = 0) -> tuple[Path, Path]:
    """Both snapshots under ``root/v/``; reused when an earlier run wrote them with these sizes."""
    from lee.snapshot import SnapshotStore
    from lee.timeutil import parse_event_time, time_dirname

    dirs = [root / "v" / time_dirname(parse_event_time(t)) for t in (T0, T1)]
    if all((d / "manifest.json").is_file() for d in dirs):
        snap = SnapshotStore(root).open("v", T0)
        if snap.info("UR").rows == rows and snap.info("UR").dim == dim:
            return dirs[0], dirs[1]
        raise SystemExit(f"{root} holds data of another size; pass another --data")

    def chunk(c: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = c * CHUNK, min((c + 1) * CHUNK, rows)
        rng = np.random.default_rng([seed, c])
        return np.arange(lo, hi, dtype=np.int64) * 7 + 3, rng.normal(size=(hi - lo, dim)).astype(np.float32)

    def before() -> Any:
        for c in range(-(-rows // CHUNK)):
            yield chunk(c)

    def after() -> Any:
        for c in range(-(-rows // CHUNK)):
            ids, x = chunk(c)
            rng = np.random.default_rng([seed, c, 1])
            keep = rng.permutation(ids.size)[: int(ids.size * 0.95)]          # 5% lost, the rest shuffled
            moved = x[keep] + 0.2 * rng.normal(size=(keep.size, dim)).astype(np.float32)
            new = np.arange(ids.size - keep.size, dtype=np.int64) * 7 + 7 * rows * 2 + c * CHUNK * 7 + 5
            yield (np.concatenate([ids[keep], new]),
                   np.concatenate([moved, rng.normal(size=(new.size, dim)).astype(np.float32)]))

    t = time.perf_counter()
    _write_table(dirs[0], "v", T0, dim, before())
    _write_table(dirs[1], "v", T1, dim, after())
    print(f"wrote 2 x {rows:,} ids x {dim} dims in {time.perf_counter() - t:.0f} s "
          f"({sum((d / 'UR.parquet').stat().st_size for d in dirs) / 1e9:.2f} GB)", flush=True)
    return dirs[0], dirs[1]


# --------------------------------------------------------------------------- one measurement (child)


def _used_mb() -> float:
    info = {}
    with open("/proc/meminfo") as fh:
        for line in fh:
            key, value = line.split(":", 1)
            info[key] = int(value.split()[0])
    return (info["MemTotal"] - info["MemAvailable"]) / 1024


class _Sampler:
    """Peak of the box's memory in use, sampled every 0.1 s."""

    def __init__(self) -> None:
        self.base = _used_mb()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, _used_mb())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak - self.base


def _noop() -> None:
    return None


LEE_JOB = """
[job]
name = "scale"
snapshots = "snapshots"
world = "world"
results = "{db}"
device = "cpu"

[eval]
usages = ["UR+IR"]
seeds = [0, 1, 2]
windows = 10

[engine]
kind = "{kind}"
num_cpus = 2
"""


def _lee_job(root: Path, engine_kind: str) -> dict[str, Any]:
    """A LEE job on the ``small`` planted world (200k events, seed 0): its 6 planted variants' latest
    snapshot under UR+IR, 3 seeds, 10 windows (1 baseline + 6 units) on one engine; a fresh store."""
    import torch

    from lee.jobs.config import load_job
    from lee.jobs.run import run_job
    from lee.jobs.store import ResultsStore
    from lee.world.config import config_for_scale
    from lee.world.generate import generate_world
    from lee.world.io import save_world
    from lee.world.planted import write_planted_variants

    torch.set_num_threads(1)   # as Ray's workers run (and the test suite): results comparable exactly
    d = root / "lee"
    if not (d / "snapshots").is_dir():
        world = generate_world(config_for_scale("small", seed=0))
        save_world(world, d / "world")
        write_planted_variants(world, d / "snapshots", n_snapshots=1, seed=0)
    db = d / f"{engine_kind}.sqlite"
    for leftover in d.glob(f"{engine_kind}.sqlite*"):
        leftover.unlink()
    (d / f"{engine_kind}.toml").write_text(LEE_JOB.format(db=db.name, kind=engine_kind), encoding="utf-8")
    t = time.perf_counter()
    report = run_job(load_job(d / f"{engine_kind}.toml"), progress=False, log=lambda *_: None)
    seconds = time.perf_counter() - t
    runs = ResultsStore(db).runs().sort_values("variant")
    return {"seconds": seconds, "units": len(report.evaluated),
            "summary": {f"{r.variant}.{k}": float(getattr(r, k)) for r in runs.itertuples()
                        for k in ("auc", "delta_auc", "ci_low", "ci_high")}}


def _child(analysis: str, engine_kind: str, root: Path, memory_mb: float) -> dict[str, Any]:
    from analysis.collapse import collapse_of_table, collapse_partitioned
    from analysis.health import table_stats, table_stats_partitioned
    from analysis.volatility import cosine_by_id, cosine_by_id_partitioned, id_partition
    from lee.engine import EngineSpec, RayEngine
    from lee.snapshot import SnapshotStore

    store = SnapshotStore(root)
    before, after = store.open("v", T0), store.open("v", T1)
    out: dict[str, Any] = {"analysis": analysis, "engine": engine_kind,
                           "memory_mb": memory_mb if engine_kind == "local" else None}
    sampler = _Sampler()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    engine = None
    if engine_kind == "ray":
        t = time.perf_counter()
        engine = RayEngine(EngineSpec(kind="ray", num_cpus=2))
        out["ray_init_s"] = time.perf_counter() - t
        t = time.perf_counter()
        list(engine.map(id_partition, [(np.arange(10), 2)] * 4))
        out["ray_warmup_s"] = time.perf_counter() - t     # first tasks: worker processes import lee
        t = time.perf_counter()
        list(engine.map(_noop, [()] * 200))
        out["ray_task_overhead_ms"] = (time.perf_counter() - t) / 200 * 1e3
    if analysis == "lee":   # on the job's own [engine] (Ray: the instance started above, reused)
        out.update(_lee_job(root, engine_kind))
        out["driver_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out["box_peak_extra_mb"] = sampler.stop()
        out["rows_per_s"] = 0.0
        return out
    t = time.perf_counter()
    if analysis == "volatility":
        res = (cosine_by_id(before, after, "UR", memory_mb=memory_mb) if engine is None
               else cosine_by_id_partitioned(before, after, "UR", engine=engine))
        out["summary"] = res.summary()
        out["extra"] = res.extra
        out["blocks"] = res.blocks
    elif analysis == "collapse":
        spec = (collapse_of_table(after, "UR", memory_mb=memory_mb) if engine is None
                else collapse_partitioned(after, "UR", engine=engine))
        out["summary"] = {"rankme": float(spec.rankme), "rows": int(spec.rows),
                          **{f"sv{i}": float(v) for i, v in enumerate(spec.singular_values)}}
    else:
        stats = (table_stats(after, "UR", memory_mb=memory_mb) if engine is None
                 else table_stats_partitioned(after, "UR", engine=engine))
        out["summary"] = {k: (float(v) if isinstance(v, float | np.floating) else int(v))
                          for k, v in stats.row().items()}
    out["seconds"] = time.perf_counter() - t
    out["driver_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["driver_rss_before_mb"] = rss0
    out["box_peak_extra_mb"] = sampler.stop()
    if engine is not None:
        engine.close()
    out["rows_per_s"] = after.info("UR").rows / out["seconds"]
    return out


# --------------------------------------------------------------------------- driver


def _run_child(analysis: str, engine: str, root: Path, memory_mb: float) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", analysis, engine, "--data", str(root),
                           "--memory-mb", str(memory_mb)],
                          capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"{analysis}/{engine} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _equal(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Largest relative difference over the numeric entries of two summaries."""
    worst = 0.0
    for key, x in a.items():
        y = b[key]
        if isinstance(x, int | float) and not isinstance(x, bool):
            if x != y:
                worst = max(worst, abs(x - y) / max(abs(x), 1e-300))
        elif x != y:
            return float("inf")
    return worst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--data", type=Path, help="data directory (default: benchmarks/out/scale-<rows>-<dim>)")
    p.add_argument("--analyses", default="volatility,health,collapse,lee")
    p.add_argument("--engines", default="local,ray")
    p.add_argument("--json", type=Path, default=REPO / "benchmarks" / "out" / "scale.json")
    p.add_argument("--memory-mb", type=float, default=4096,
                   help="the local engine's memory bound, MiB (the analyses' --memory-mb; default 4096)")
    p.add_argument("--child", nargs=2, metavar=("ANALYSIS", "ENGINE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    root = args.data or REPO / "benchmarks" / "out" / f"scale-{args.rows}-{args.dim}"
    if args.child:
        print(json.dumps(_child(args.child[0], args.child[1], root, args.memory_mb), default=str))
        return 0
    if set(args.analyses.split(",")) - {"lee"}:
        make_data(root, args.rows, args.dim)
    results = []
    for analysis in args.analyses.split(","):
        for engine in args.engines.split(","):
            load = os.getloadavg()[0]
            r = _run_child(analysis, engine, root, args.memory_mb)
            r["load_before"] = load
            results.append(r)
            extra = (f", ray init {r['ray_init_s']:.1f} s, warm-up {r['ray_warmup_s']:.1f} s, "
                     f"{r['ray_task_overhead_ms']:.1f} ms/task" if "ray_init_s" in r else
                     f", {r['units']} units" if analysis == "lee" else "")
            print(f"{analysis:<10} {engine:<5} {r['seconds']:7.1f} s  {r['rows_per_s'] / 1e6:5.2f} M rows/s  "
                  f"driver peak RSS {r['driver_peak_rss_mb']:6.0f} MB  box peak +{r['box_peak_extra_mb']:6.0f} MB"
                  f"  (load {load:.1f}){extra}", flush=True)
        by = {r["engine"]: r for r in results if r["analysis"] == analysis}
        if {"local", "ray"} <= set(by):
            diff = _equal(by["local"]["summary"], by["ray"]["summary"])
            print(f"{analysis}: ray vs local, largest relative difference {diff:.2e}"
                  f" ({'equal to 1e-9' if diff <= 1e-9 else 'DIFFERENT'})", flush=True)
            for r in by.values():
                r["max_rel_diff_vs_local"] = diff
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rows": args.rows, "dim": args.dim, "machine": platform.platform(),
                                     "cpus": os.cpu_count(), "results": results}, indent=1, default=str))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
