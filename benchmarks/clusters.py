"""K-means benchmark: the project's backends against scikit-learn, at equal inertia, in one run.

    python benchmarks/clusters.py [--sizes 200000,1000000,10000000] [--dim 64] [--k 20]
                                  [--repeats 3] [--busy 0] [--out benchmarks/out/clusters.json]

Data: planted Gaussian blobs (``k`` centres ~ N(0, 1.5² I) in ``dim`` dims, unit-variance points,
float32: the blobs overlap, so where centroids settle changes the inertia), seeded by the size.

Method: every (size, method) fit runs in a fresh Python process that builds the data, imports
what it needs, warms up on 5,000 rows, then times one fit with time.perf_counter; the processes
alternate (numpy, faiss, sklearn, numpy, ...) ``--repeats`` times and the table shows medians.
Methods:

- ``numpy`` / ``faiss``: :func:`analysis.clusters.kmeans` with its defaults (k-means++ seeding
  and 3 restarts on a 100,000-row sample, Lloyd on every row until the inertia changes by at most
  1e-4 between passes; a blocking thread pool over the process' cores, BLAS / faiss at one
  thread per worker);
- ``sklearn``: the anchor, ``sklearn.cluster.KMeans(algorithm="lloyd", init="k-means++",
  n_init=1)`` with its defaults otherwise (max_iter 300, tol 1e-4, OpenMP over every core).

Every fit reports its inertia (float64, recomputed by the same function for every method);
"inertia vs sklearn" is the median inertia over the median sklearn inertia (below 1: better).

``--busy N`` starts N processes that spin on a core each for the whole run (a busy shared box);
the load average before and after each size is printed and saved either way.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

METHODS = ("numpy", "faiss", "sklearn")


def blobs(n: int, dim: int, k: int, seed: int, spread: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """``n`` float32 rows around ``k`` centres ~ N(0, spread² I); returns the rows and their blob."""
    rng = np.random.default_rng(seed)
    centres = spread * rng.standard_normal((k, dim)).astype(np.float32)
    lab = rng.integers(0, k, size=n)
    x = centres[lab]
    for lo in range(0, n, 1 << 20):  # in place, chunked: no second n × dim temporary
        x[lo:lo + (1 << 20)] += rng.standard_normal((min(1 << 20, n - lo), dim), dtype=np.float32)
    return x, lab


def one_fit(n: int, dim: int, k: int, method: str) -> dict:
    """Build the data, warm up, time one fit; runs inside the child process."""
    from analysis.clusters import _inertia, kmeans

    x, _ = blobs(n, dim, k, seed=n)
    if method == "sklearn":
        from sklearn.cluster import KMeans

        KMeans(n_clusters=k, n_init=1, random_state=0).fit(x[:5000])
        t0 = time.perf_counter()
        km = KMeans(n_clusters=k, init="k-means++", n_init=1, algorithm="lloyd", random_state=0).fit(x)
        secs = time.perf_counter() - t0
        labels, centroids = km.labels_.astype(np.int64), km.cluster_centers_.astype(np.float32)
        info = {"iterations": int(km.n_iter_)}
    else:
        kmeans(x[:5000], k, backend=method, seed=0)
        t0 = time.perf_counter()
        fit = kmeans(x, k, backend=method, seed=0)
        secs = time.perf_counter() - t0
        labels, centroids, info = fit.labels, fit.centroids, fit.info
    return {"n": n, "dim": dim, "k": k, "method": method, "seconds": secs,
            "inertia": _inertia(x, labels, centroids), "info": info}


def _spinners(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def machine() -> dict:
    import faiss
    import sklearn
    from threadpoolctl import threadpool_info

    return {
        "python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "faiss": faiss.__version__, "sklearn": sklearn.__version__, "numpy": np.__version__,
        "threadpools": [{k: p[k] for k in ("user_api", "internal_api", "num_threads")} for p in threadpool_info()],
    }


def summarise(runs: list[dict]) -> list[dict]:
    rows = []
    sizes = sorted({r["n"] for r in runs})
    for n in sizes:
        at = [r for r in runs if r["n"] == n]
        ref = [r for r in at if r["method"] == "sklearn"]
        ref_s = statistics.median(r["seconds"] for r in ref) if ref else float("nan")
        ref_i = statistics.median(r["inertia"] for r in ref) if ref else float("nan")
        for m in METHODS:
            mine = [r for r in at if r["method"] == m]
            if not mine:
                continue
            secs = statistics.median(r["seconds"] for r in mine)
            inertia = statistics.median(r["inertia"] for r in mine)
            rows.append({"n": n, "dim": mine[0]["dim"], "k": mine[0]["k"], "method": m, "runs": len(mine),
                         "seconds": secs,
                         "all_seconds": [r["seconds"] for r in mine], "inertia": inertia,
                         "all_inertia": [r["inertia"] for r in mine],
                         "speedup_vs_sklearn": ref_s / secs, "inertia_vs_sklearn": inertia / ref_i,
                         "info": mine[-1]["info"], "load": at[0].get("load")})
    return rows


def markdown(rows: list[dict]) -> str:
    out = ["| N × dim (k) | method | runs | seconds (median) | × faster than sklearn | inertia (median) | "
           "inertia ÷ sklearn's |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['n']:,} × {r['dim']} ({r['k']}) | {r['method']} | {r['runs']} | {r['seconds']:.2f} | "
                   f"{r['speedup_vs_sklearn']:.1f} | {r['inertia']:.5e} | {r['inertia_vs_sklearn']:.4f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="200000,1000000,10000000", help="row counts, comma-separated")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--repeats", default="3", help="alternated runs per method: one count, or one per size")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--busy", type=int, default=0, help="spinning processes started for the whole run")
    ap.add_argument("--out", default=str(REPO / "benchmarks/out/clusters.json"))
    ap.add_argument("--one", nargs=2, metavar=("N", "METHOD"), help=argparse.SUPPRESS)  # child process
    args = ap.parse_args(argv)
    if args.one:
        print("@@" + json.dumps(one_fit(int(args.one[0]), args.dim, args.k, args.one[1])), flush=True)
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s]
    reps = [int(r) for r in args.repeats.split(",")]
    reps = reps * len(sizes) if len(reps) == 1 else reps
    methods = [m for m in args.methods.split(",") if m]
    info = machine() | {"busy_processes": args.busy}
    print(json.dumps(info), flush=True)
    spin = _spinners(args.busy)
    runs: list[dict] = []
    try:
        for n, rep in zip(sizes, reps):
            load0 = os.getloadavg()
            for _ in range(rep):
                for m in methods:
                    out = subprocess.run([sys.executable, __file__, "--one", str(n), m, "--dim", str(args.dim),
                                          "--k", str(args.k)], capture_output=True, text=True, check=True)
                    r = json.loads([ln for ln in out.stdout.splitlines() if ln.startswith("@@")][-1][2:])
                    runs.append(r)
                    print(f"  n={n:>10,} {m:8s} {r['seconds']:8.2f} s  inertia {r['inertia']:.6e}  {r['info']}",
                          flush=True)
            load1 = os.getloadavg()
            for r in runs:
                if r["n"] == n:
                    r["load"] = {"before": load0, "after": load1}
            print(f"  load average before {load0}, after {load1}", flush=True)
    finally:
        for p in spin:
            p.kill()
    rows = summarise(runs)
    table = markdown(rows)
    print(table)
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps({"machine": info, "runs": runs, "rows": rows, "markdown": table}, indent=2))
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
