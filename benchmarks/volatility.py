"""Volatility benchmark: lee's streamed id join against DuckDB, Polars, pandas merge + numpy and the floor.

    python benchmarks/volatility.py [--rows 1000000 10000000] [--dim 64] [--repeats 3] [--json OUT]

Data: two snapshots of one variant, ``rows`` ids × ``dim`` float32 each, 95% of ids shared, the
later one's rows shuffled (so nothing can join by position). Every method produces the same
thing — the cosine of every shared id, as an (ids, cosines) pair in memory — from the same
Parquet files:

* ``lee``          — analysis.volatility.cosine_by_id (checksums verified on a second thread);
* ``lee_noverify`` — the same without checksum verification;
* ``duckdb``       — ``SELECT id, array_cosine_similarity(a.vector::FLOAT[d], b.vector::FLOAT[d])
  FROM a JOIN b USING (id)``, fetched as numpy;
* ``polars``       — lazy scan of both files, inner join on id, row-wise cosine on the array
  column via numpy (skipped when polars is not installed);
* ``pandas``       — pandas merge of the id columns to get row pairs, then gather + numpy cosine;
* ``arrow_aligned`` — pyarrow reads both matrices, row-aligned cosine without any join;
* ``floor``        — both matrices mapped without decoding (lee.snapshot.rawread, the fastest read
  there is here) and the row-aligned cosine without any join: what no method can beat.

Each method runs in its own fresh subprocess: one warm-up run, then ``--repeats`` timed runs;
the table reports the median. Peak memory is the child's peak RSS (ru_maxrss) minus its RSS
after imports; for lee and the floor it includes the mapped file pages they touch (page cache,
reclaimable), which the other methods copy into their own memory instead. Results are checked:
every method's mean cosine must equal lee's to 1e-5.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

METHODS = ("lee", "lee_noverify", "duckdb", "polars", "pandas", "arrow_aligned", "floor")
T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def make_data(root: Path, rows: int, dim: int, seed: int = 0) -> None:
    from lee.snapshot import EmbeddingTable, write_snapshot

    if (root / "v").is_dir() and len([p for p in (root / "v").iterdir() if not p.name.startswith(".")]) == 2:
        return  # both snapshots written by an earlier run
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.arange(rows * 2, dtype=np.int64))[:rows]
    x = np.empty((rows, dim), np.float32)
    for lo in range(0, rows, 1_000_000):  # chunked generation keeps the generator's memory low at 10M
        hi = min(lo + 1_000_000, rows)
        x[lo:hi] = rng.standard_normal((hi - lo, dim), dtype=np.float32)
    write_snapshot(root, "v", T0, {"UR": EmbeddingTable(ids, x)})
    # five minutes later: every vector drifts a little, 5% of ids are replaced, rows are shuffled
    for lo in range(0, rows, 1_000_000):
        hi = min(lo + 1_000_000, rows)
        x[lo:hi] += 0.1 * rng.standard_normal((hi - lo, dim), dtype=np.float32)
    keep = rng.random(rows) < 0.95
    ids2 = ids.copy()
    ids2[~keep] = np.arange(rows * 2, rows * 2 + int((~keep).sum()), dtype=np.int64)
    perm = rng.permutation(rows)
    write_snapshot(root, "v", T1, {"UR": EmbeddingTable(ids2[perm], x[perm])})


def _paths(root: Path) -> tuple[Path, Path]:
    from lee.snapshot import SnapshotStore

    store = SnapshotStore(root)
    return store.open("v", T0).table_path("UR"), store.open("v", T1).table_path("UR")


def run_method(method: str, root: Path, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """One run: returns (ids, cosines) of the shared ids."""
    import pyarrow.parquet as pq

    before, after = _paths(root)
    if method in ("lee", "lee_noverify"):
        from analysis.volatility import volatility

        r = volatility(root, "v", "UR", verify=method == "lee")
        return r.ids, r.cosine
    if method == "duckdb":
        import duckdb

        con = duckdb.connect()
        q = (f"SELECT id, array_cosine_similarity(a.vector::FLOAT[{dim}], b.vector::FLOAT[{dim}]) AS c "
             f"FROM read_parquet('{after}') a JOIN read_parquet('{before}') b USING (id)")
        out = con.sql(q).fetchnumpy()
        return out["id"], out["c"]
    if method == "polars":
        import polars as pl

        a = pl.scan_parquet(after).rename({"vector": "va"})
        b = pl.scan_parquet(before).rename({"vector": "vb"})
        joined = a.join(b, on="id", how="inner").collect()
        va = joined["va"].to_numpy().reshape(-1, dim)
        vb = joined["vb"].to_numpy().reshape(-1, dim)
        c = np.einsum("ij,ij->i", va, vb) / np.linalg.norm(va, axis=1) / np.linalg.norm(vb, axis=1)
        return joined["id"].to_numpy(), c
    if method == "pandas":
        import pandas as pd

        ta, tb = pq.read_table(after), pq.read_table(before)
        va = ta.column("vector").combine_chunks().flatten().to_numpy().reshape(-1, dim)
        vb = tb.column("vector").combine_chunks().flatten().to_numpy().reshape(-1, dim)
        fa = pd.DataFrame({"id": ta.column("id").to_numpy(), "ra": np.arange(len(ta))})
        fb = pd.DataFrame({"id": tb.column("id").to_numpy(), "rb": np.arange(len(tb))})
        m = fa.merge(fb, on="id", how="inner")
        x, y = va[m["ra"].to_numpy()], vb[m["rb"].to_numpy()]
        c = np.einsum("ij,ij->i", x, y) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
        return m["id"].to_numpy(), c
    if method == "floor":
        from lee.snapshot.rawread import raw_vectors

        va, vb = raw_vectors(after, dim).matrix(), raw_vectors(before, dim).matrix()
        c = np.einsum("ij,ij->i", va, vb) / np.sqrt(np.einsum("ij,ij->i", va, va) * np.einsum("ij,ij->i", vb, vb))
        return va[:0, 0], c  # no join: the ids are not aligned
    if method == "arrow_aligned":
        ta, tb = pq.read_table(after, columns=["vector"]), pq.read_table(before, columns=["vector"])
        va = ta.column("vector").combine_chunks().flatten().to_numpy().reshape(-1, dim)
        vb = tb.column("vector").combine_chunks().flatten().to_numpy().reshape(-1, dim)
        c = np.einsum("ij,ij->i", va, vb) / np.linalg.norm(va, axis=1) / np.linalg.norm(vb, axis=1)
        return ta.column("vector").to_numpy()[:0], c  # no join: the ids are not aligned
    raise ValueError(method)


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(method: str, root: Path, dim: int, repeats: int) -> dict:
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401 - same import baseline for every method

    if method == "polars":
        try:
            import polars  # noqa: F401
        except ImportError:
            return {"method": method, "skipped": "polars is not installed"}
    if method == "duckdb":
        import duckdb  # noqa: F401
    if method.startswith("lee"):
        import analysis.volatility  # noqa: F401
    base = _rss_mb()
    times = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        ids, cos = run_method(method, root, dim)
        times.append(time.perf_counter() - t)
        mean = float(np.mean(cos, dtype=np.float64))
        n = int(cos.size)
        del ids, cos
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"method": method, "first_s": times[0], "median_s": statistics.median(times[1:]),
            "min_s": min(times[1:]), "peak_mb": peak - base, "n": n, "mean_cosine": mean}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--data", type=Path, default=REPO / "benchmarks" / "out" / "volatility-data")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "out" / "volatility.json")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        method, root, rows = args.worker
        print(json.dumps(worker(method, Path(root), args.dim, args.repeats)))
        return
    results = []
    for rows in args.rows:
        root = args.data / f"{rows}x{args.dim}"
        print(f"# preparing {rows:,} x {args.dim} in {root}", file=sys.stderr)
        make_data(root, rows, args.dim)
        for method in args.methods:
            out = subprocess.run([sys.executable, __file__, "--dim", str(args.dim), "--repeats", str(args.repeats),
                                  "--worker", method, str(root), str(rows)], capture_output=True, text=True)
            if out.returncode != 0:
                res = {"method": method, "skipped": out.stderr.strip().splitlines()[-1][:200]}
            else:
                res = json.loads(out.stdout.strip().splitlines()[-1])
            res["rows"] = rows
            results.append(res)
            print(json.dumps(res), file=sys.stderr)
    info = {"machine": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "dim": args.dim, "repeats": args.repeats, "results": results}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(info, indent=2) + "\n")
    print("\n| rows | method | median s | 1st run s | peak MB | lee ÷ method | method ÷ floor |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for rows in args.rows:
        rs = {r["method"]: r for r in results if r["rows"] == rows and "median_s" in r}
        lee = rs.get("lee", {}).get("median_s")
        floor = rs.get("floor", {}).get("median_s")
        for m in args.methods:
            r = next(x for x in results if x["rows"] == rows and x["method"] == m)
            if "median_s" not in r:
                print(f"| {rows:,} | {m} | skipped: {r['skipped']} | | | | |")
                continue
            checked = "lee" in rs and m not in ("floor", "arrow_aligned")
            if checked and abs(r["mean_cosine"] - rs["lee"]["mean_cosine"]) > 1e-5:
                raise SystemExit(f"{m} disagrees with lee: mean cosine {r['mean_cosine']} "
                                 f"vs {rs['lee']['mean_cosine']}")
            ratio = f"{lee / r['median_s']:.2f}" if lee else ""
            vs_floor = f"{r['median_s'] / floor:.2f}" if floor else ""
            print(f"| {rows:,} | {m} | {r['median_s']:.2f} | {r['first_s']:.2f} | {r['peak_mb']:.0f} "
                  f"| {ratio} | {vs_floor} |")


if __name__ == "__main__":
    main()
