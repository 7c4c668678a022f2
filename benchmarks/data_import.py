"""Import rate and peak memory of ``lee data import`` on a generated click log, beside the tools a user
would otherwise reach for.

    python benchmarks/data_import.py [--rows 10000000] [--work DIR] [--methods lee,duckdb,pandas]
                                     [--memory-mb 512] [--json OUT]

The log (seeded, written once to ``--work``, reused when present) is a CSV with a header and 8
columns: ``ts`` (epoch seconds, jittered so the file is *not* in time order), ``user_id``
(1M users, Zipf-like), ``item_id`` (100k), ``click`` (0/1, 3%), ``device`` (5 values), ``price``
(2 decimals, the value column), ``tags`` (1-3 of 20 tags joined by ``|``, a multi-valued field),
``country`` (30 values). ~52 bytes a row.

Every method runs in its own fresh Python subprocess and writes a sorted-by-time Parquet file of
the whole log; reported: wall time of the work (imports excluded), rows per second, and peak RSS
increase over the process after its imports (VmHWM minus VmRSS before the work, from
/proc/self/status).

* ``lee``        — ``import_dataset("csv", ...)``: streamed in 16 MiB chunks, each converted and
  checked (labels, ids, times, value, part, field types, line numbers for errors), staged to
  Parquet, sorted by DuckDB under ``--memory-mb`` (default 512 MiB), cardinalities, time span and
  label rate computed, written atomically with dataset.json (the path for logs over 500,000 rows).
* ``lee_memory`` — the same import held in memory (``spill_rows`` above the row count), i.e. the
  in-memory :func:`lee.data.dataset.write_dataset` path.
* ``duckdb``     — ``COPY (SELECT * FROM read_csv(...) ORDER BY ts) TO ... (FORMAT parquet)`` with the
  same memory limit and 2 threads: no checks, no statistics, no atomic write — the floor.
* ``pandas``     — ``read_csv`` + ``sort_values(kind="stable")`` + ``to_parquet``: what one writes by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METHODS = ("lee", "lee_memory", "duckdb", "pandas")

MAPPING = """
name = "bench"
ids = "integer"
[roles]
label = "click"
user_id = "user_id"
item_id = "item_id"
ts = "ts"
value = "price"
[[fields]]
name = "device"
role = "context"
[[fields]]
name = "country"
role = "user"
[[fields]]
name = "tags"
role = "item"
type = "multi"
"""


def generate(path: Path, rows: int, seed: int = 0, block: int = 1_000_000) -> None:
    """Write the seeded log in blocks (bounded memory)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    devices = np.array(["ios", "android", "web", "tv", "other"])
    countries = np.array([f"c{k:02d}" for k in range(30)])
    tags = np.array([f"t{k:02d}" for k in range(20)])
    tmp = path.with_suffix(".partial")
    with pacsv.CSVWriter(str(tmp), pa.schema([("ts", pa.int64()), ("user_id", pa.int64()), ("item_id", pa.int64()),
                                              ("click", pa.int8()), ("device", pa.string()),
                                              ("price", pa.float64()), ("tags", pa.string()),
                                              ("country", pa.string())])) as writer:
        for start in range(0, rows, block):
            n = min(block, rows - start)
            ts = 1_700_000_000 + (np.arange(start, start + n) // 4) + rng.integers(-30, 30, n)
            users = np.minimum(rng.zipf(1.3, n), 1_000_000) - 1
            k = rng.integers(1, 4, n)
            t = tags[rng.integers(0, 20, (n, 3))]
            tag_text = np.where(k == 1, t[:, 0], np.where(k == 2, np.char.add(np.char.add(t[:, 0], "|"), t[:, 1]),
                                np.char.add(np.char.add(np.char.add(np.char.add(t[:, 0], "|"), t[:, 1]), "|"),
                                            t[:, 2])))
            writer.write_table(pa.table({
                "ts": ts, "user_id": users, "item_id": rng.integers(0, 100_000, n),
                "click": (rng.random(n) < 0.03).astype(np.int8), "device": devices[rng.integers(0, 5, n)],
                "price": np.round(rng.gamma(2.0, 5.0, n), 2), "tags": tag_text,
                "country": countries[rng.integers(0, 30, n)]}))
    tmp.rename(path)


WORKER = textwrap.dedent('''
    import json, sys, time
    from pathlib import Path

    method, src, mapping, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
    rows, memory_mb = int(sys.argv[5]), int(sys.argv[6])
    if method.startswith("lee"):
        from lee.data.importers import ImportOptions, import_dataset
    elif method == "duckdb":
        import duckdb
    else:
        import pandas as pd

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024
        return 0

    base = status("VmRSS:")
    t0 = time.perf_counter()
    extra = {}
    if method == "lee":
        r = import_dataset("csv", src, out, ImportOptions(mapping=mapping, memory_mb=memory_mb))
        extra = {"out_of_core": r.out_of_core, "label_rate": r.spec.label_rate}
    elif method == "lee_memory":
        r = import_dataset("csv", src, out, ImportOptions(mapping=mapping, spill_rows=rows + 1))
        extra = {"out_of_core": r.out_of_core, "label_rate": r.spec.label_rate}
    elif method == "duckdb":
        out.mkdir(parents=True)
        con = duckdb.connect()
        con.execute(f"SET memory_limit = '{memory_mb}MB'")
        con.execute("SET threads = 2")
        con.execute("SET enable_progress_bar = false")
        con.execute(f"SET temp_directory = '{out}/spill'")
        con.execute(f"COPY (SELECT * FROM read_csv('{src}', header = true) ORDER BY ts) TO '{out}/events.parquet' "
                    "(FORMAT parquet, COMPRESSION zstd)")
    else:
        out.mkdir(parents=True)
        df = pd.read_csv(src)
        df = df.sort_values("ts", kind="stable")
        df.to_parquet(out / "events.parquet", compression="zstd", index=False)
    seconds = time.perf_counter() - t0
    peak_mb = (status("VmHWM:") - base) / 2**20
    print("RESULT " + json.dumps({"method": method, "seconds": seconds, "peak_mb": peak_mb, **extra}))
''')


def run_method(method: str, src: Path, mapping: Path, work: Path, rows: int, memory_mb: int) -> dict:
    out = work / f"out-{method}"
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}
    argv = [method, str(src), str(mapping), str(out), str(rows), str(memory_mb)]
    proc = subprocess.run([sys.executable, "-c", WORKER, *argv], capture_output=True, text=True, env=env)
    shutil.rmtree(out, ignore_errors=True)
    if proc.returncode != 0:
        return {"method": method, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    found = re.findall(r"RESULT (\{.*\})", proc.stdout)
    if not found:
        return {"method": method, "error": (proc.stdout + proc.stderr).strip()[-300:]}
    return json.loads(found[-1])


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    mem = next((int(ln.split()[1]) for ln in open("/proc/meminfo") if ln.startswith("MemTotal")), 0) / 2**20
    return (f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPU ({cpu}), "
            f"{mem:.1f} GiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--work", type=Path, default=None, help="where the log is written (default: a temp dir)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--memory-mb", type=int, default=512, help="DuckDB's memory limit (lee and duckdb)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="lee-import-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    src = work / f"log-{args.rows}.csv"
    if not src.exists():
        print(f"generating {args.rows:,} rows -> {src}", flush=True)
        generate(src, args.rows)
    mapping = work / "map.toml"
    mapping.write_text(MAPPING, encoding="utf-8")
    size = src.stat().st_size
    print(f"machine: {machine()}\nlog: {args.rows:,} rows, {size / 2**20:,.0f} MiB CSV\n", flush=True)
    results = []
    print(f"{'method':<12} {'seconds':>8} {'M rows/s':>9} {'MB/s':>7} {'peak RSS MB':>12}")
    for method in args.methods.split(","):
        r = run_method(method, src, mapping, work, args.rows, args.memory_mb)
        results.append(r)
        if "error" in r:
            print(f"{method:<12} failed: {r['error']}")
            continue
        s = r["seconds"]
        print(f"{method:<12} {s:8.1f} {args.rows / s / 1e6:9.2f} {size / s / 1e6:7.1f} {r['peak_mb']:12.0f}"
              + (f"   out_of_core={r['out_of_core']}" if "out_of_core" in r else ""), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "rows": args.rows, "bytes": size,
                                         "results": results}, indent=2))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
