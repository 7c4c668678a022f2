"""Version-comparison benchmark: aligned cosine + linear CKA streamed, beside the volatility join, and kNN overlap.

    python benchmarks/compare.py [--rows 1000000 10000000] [--knn-rows 1000000] [--dim 64] [--repeats 3]

Data: the volatility benchmark's files (``benchmarks/volatility.py``, written here when missing):
two snapshots of ``rows`` ids × ``dim`` float32, 95% of ids shared, the later one's rows shuffled.
Methods, each in a fresh subprocess (one warm-up run, then ``--repeats`` timed runs, median reported):

* ``volatility``  — ``analysis.volatility.volatility``: same-id cosine of every shared id (the
  reference: the join every comparison needs, checksums verified on a second thread);
* ``compare``     — ``analysis.compare.paired.paired_similarity`` on the same two files, as
  ``lee compare`` runs it: the join, an orthogonal Procrustes fit on 100,000 sampled shared ids, then
  one streamed pass giving raw and aligned cosine of every shared id and linear CKA from its d×d
  moments with a 20-group jackknife (``precision="auto"``: float64 cross-products up to 1M shared
  ids, float32 ones added into float64 totals beyond), checksums verified on a second thread;
* ``compare32`` / ``compare64`` — the same with CKA's cross-products forced to float32 / float64;
* ``knn``         — ``analysis.compare.neighbours.knn_overlap`` (k = 10) on ``--knn-rows`` ids ×
  ``dim`` with neighbourhood structure, as embeddings have (a seeded mixture of one Gaussian
  cluster per 500 ids, centres N(0, I), spread 0.35; version B = A plus noise of 0.1 per dim):
  faiss IVF search of every id in both versions, recall@10 measured on 1,000 queries against exact
  search. One timed run (nothing is cached between runs);
* ``knn_iid``     — the same on the first ``--knn-rows`` shared ids of the volatility files, whose
  i.i.d. Gaussian vectors have no neighbourhood structure: the worst case for any inverted index
  (not run by default).

Peak memory is the child's peak RSS minus its RSS after imports; for the streamed methods it
includes the mapped file pages they touch (page cache, reclaimable). The machine's load average
is printed before and after: on a shared box the figures move with it.
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
for p in (REPO, REPO / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

METHODS = ("volatility", "compare", "compare32", "compare64", "knn", "knn_iid")
DEFAULT = ("volatility", "compare", "compare64", "knn")
T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _pair(root: Path):
    from lee.snapshot import SnapshotStore

    store = SnapshotStore(root)
    return store.open("v", T0), store.open("v", T1)


def worker(method: str, root: Path, repeats: int, knn_rows: int) -> dict:
    import analysis.compare.neighbours  # noqa: F401 - same import baseline for every method
    import analysis.compare.paired  # noqa: F401
    import analysis.volatility  # noqa: F401

    a, b = _pair(root)
    payload = None
    if method == "knn_iid":
        from analysis.compare.paired import TableRows, join_ids

        _, _, pos = join_ids(a, b, "UR")
        rows_b = np.flatnonzero(pos >= 0)[:knn_rows]
        payload = (TableRows(a, "UR").take(pos[rows_b]), TableRows(b, "UR").take(rows_b))
    elif method == "knn":
        rng = np.random.default_rng(0)
        dim = a.info("UR").dim
        centres = rng.standard_normal((max(knn_rows // 500, 1), dim), dtype=np.float32)
        xa = centres[rng.integers(0, centres.shape[0], knn_rows)]
        xa += 0.35 * rng.standard_normal(xa.shape, dtype=np.float32)
        payload = (xa, xa + 0.1 * rng.standard_normal(xa.shape, dtype=np.float32))
    base = _rss_mb()
    times, out = [], {}
    for _ in range(repeats + 1):
        t = time.perf_counter()
        if method == "volatility":
            from analysis.volatility import cosine_by_id

            r = cosine_by_id(a, b, "UR")
            out = {"n": r.n_shared, "mean_cosine": float(r.cosine.mean(dtype=np.float64))}
        elif method in ("compare", "compare32", "compare64"):
            from analysis.compare.paired import paired_similarity

            precision = {"compare": "auto", "compare32": "float32"}.get(method, "float64")
            p = paired_similarity(a, b, "UR", precision=precision)
            assert p.raw_cosine is not None  # same dims
            out = {"n": p.n_shared, "mean_cosine": float(p.raw_cosine.mean(dtype=np.float64)),
                   "mean_aligned_cosine": float(p.aligned_cosine.mean(dtype=np.float64)), "cka": p.cka,
                   "cka_ci": [p.cka_low, p.cka_high], "precision": p.cka_precision}
        else:
            from analysis.compare.neighbours import knn_overlap

            assert payload is not None
            nb = knn_overlap(*payload, k=10)
            out = {"n": int(nb.overlap.size), "mean_overlap": nb.mean, "recall": [nb.recall_a, nb.recall_b],
                   "how": nb.method}
        times.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    timed = times[1:] or times   # --repeats 0: the one run is the figure
    return {"method": method, "first_s": times[0], "median_s": statistics.median(timed),
            "min_s": min(timed), "peak_mb": peak - base, **out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--knn-rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", nargs="+", default=list(DEFAULT), choices=METHODS)
    ap.add_argument("--data", type=Path, default=REPO / "benchmarks" / "out" / "volatility-data")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "out" / "compare.json")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        method, root = args.worker
        print(json.dumps(worker(method, Path(root), args.repeats, args.knn_rows)))
        return
    from volatility import make_data  # the volatility benchmark's data, shared

    load_before = os.getloadavg()
    print(f"# load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} "
          f"on {os.cpu_count()} CPUs", file=sys.stderr)
    results = []
    for rows in args.rows:
        root = args.data / f"{rows}x{args.dim}"
        print(f"# preparing {rows:,} x {args.dim} in {root}", file=sys.stderr)
        make_data(root, rows, args.dim)
        for method in args.methods:
            if method.startswith("knn") and rows != min(r for r in args.rows if r >= args.knn_rows):
                continue  # once, on the smallest data set that holds --knn-rows ids
            reps = 0 if method.startswith("knn") else args.repeats
            out = subprocess.run([sys.executable, __file__, "--repeats", str(reps), "--knn-rows", str(args.knn_rows),
                                  "--worker", method, str(root)], capture_output=True, text=True)
            if out.returncode != 0:
                lines = out.stderr.strip().splitlines() or [f"exit status {out.returncode}"]
                res = {"method": method, "failed": lines[-1][:300]}
            else:
                res = json.loads(out.stdout.strip().splitlines()[-1])
            res["rows"] = rows
            res["load_average"] = os.getloadavg()[0]
            results.append(res)
            print(json.dumps(res), file=sys.stderr)
    load_after = os.getloadavg()
    print(f"# load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}", file=sys.stderr)
    by = {(r["rows"], r["method"]): r for r in results}
    for rows in args.rows:
        v = by.get((rows, "volatility"))
        for name in ("compare", "compare32", "compare64"):
            c = by.get((rows, name))
            if v and c and "median_s" in v and "median_s" in c:
                print(f"{rows:,} rows: {name} {c['median_s']:.2f} s ({c['peak_mb']:.0f} MB) vs volatility "
                      f"{v['median_s']:.2f} s ({v['peak_mb']:.0f} MB): {c['median_s'] / v['median_s']:.2f}x; "
                      f"CKA {c['cka']:.9f}, aligned cosine {c['mean_aligned_cosine']:.4f}, raw "
                      f"{c['mean_cosine']:.4f} (volatility {v['mean_cosine']:.4f})")
        for name in ("knn", "knn_iid"):
            k = by.get((rows, name))
            if k and "median_s" in k:
                print(f"{name} {k['n']:,} ids: kNN overlap@10 {k['median_s']:.1f} s ({k['peak_mb']:.0f} MB), mean "
                      f"overlap {k['mean_overlap']:.3f}, recall {k['recall']}; {k['how']}")
    info = {"machine": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "dim": args.dim, "repeats": args.repeats, "load_average_before": load_before,
            "load_average_after": load_after, "results": results}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(info, indent=2) + "\n")


if __name__ == "__main__":
    main()
