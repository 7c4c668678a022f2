"""Clusters benchmark: K-means faiss vs scikit-learn, t-SNE openTSNE vs scikit-learn.

    python benchmarks/clusters.py [--sizes 100000,1000000] [--dim 64] [--k 16]
                                  [--tsne-sizes 5000,20000] [--out benchmarks/out/clusters.json]

Data: planted Gaussian blobs (``k`` centres ~ N(0, 3^2 I) in ``dim`` dims, unit-variance points,
float32), seeded. Each method runs once per size in this process, timed with time.perf_counter.

K-means rows time :func:`analysis.clusters.kmeans` end to end with each backend (k-means++
seeding, n_init=3, max_iter=50, exact float64 inertia): "inertia ratio" is faiss / sklearn (below
1 = faiss found the better solution), "ARI" compares the two labelings, "ARI truth" each one with
the planted blobs.

t-SNE rows time openTSNE (the library behind ``analysis.maps.embed_2d(method="tsne")``) and
scikit-learn's Barnes-Hut TSNE with matched settings (perplexity 30, PCA init, 750 iterations in
total, ``--threads`` threads). Quality is the 10-NN preservation: the mean share of each
point's 10 nearest neighbours in the input that are also among its 10 nearest in 2-D.

``--threads`` (default: OMP_NUM_THREADS, else the CPU count) caps faiss, BLAS, OpenMP and the
t-SNE libraries alike; the counts in effect are printed with the table. On a box shared with other
work, one thread per process gives steadier numbers: an idle OpenMP team spin-waiting on a busy
core can make a 2-thread run several times slower than a 1-thread one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def blobs(n: int, dim: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = 3.0 * rng.standard_normal((k, dim)).astype(np.float32)
    lab = rng.integers(0, k, size=n)
    x = centres[lab]
    x += rng.standard_normal((n, dim), dtype=np.float32)
    return x, lab


def knn_preservation(x: np.ndarray, y: np.ndarray, k: int = 10) -> float:
    """Mean share of each point's k nearest neighbours in ``x`` that are also its k nearest in ``y``."""
    import faiss

    def knn(a: np.ndarray) -> np.ndarray:
        a = np.ascontiguousarray(a, dtype=np.float32)
        index = faiss.IndexFlatL2(a.shape[1])
        index.add(a)
        return index.search(a, k + 1)[1][:, 1:]  # drop the point itself

    hx, hy = knn(x), knn(y)
    hits = [np.intersect1d(hx[i], hy[i], assume_unique=True).size for i in range(len(x))]
    return float(np.mean(hits) / k)


def bench_kmeans(n: int, dim: int, k: int) -> list[dict]:
    from sklearn.metrics import adjusted_rand_score

    from analysis.clusters import kmeans

    x, truth = blobs(n, dim, k, seed=n)
    fits, rows = {}, []
    for backend in ("faiss", "sklearn"):
        t0 = time.perf_counter()
        fits[backend] = kmeans(x, k, backend=backend, seed=0, n_init=3, max_iter=50)
        secs = time.perf_counter() - t0
        rows.append({"task": "kmeans", "n": n, "dim": dim, "k": k, "method": backend, "seconds": secs,
                     "inertia": fits[backend].inertia,
                     "ari_truth": float(adjusted_rand_score(truth, fits[backend].labels))})
        print(f"  kmeans {backend:8s} n={n:>9,} {secs:8.2f} s", flush=True)
    ratio = fits["faiss"].inertia / fits["sklearn"].inertia
    ari = float(adjusted_rand_score(fits["faiss"].labels, fits["sklearn"].labels))
    for r in rows:
        r.update(inertia_ratio=ratio, ari_between=ari)
    return rows


def bench_tsne(n: int, dim: int, k: int, threads: int) -> list[dict]:
    from openTSNE import TSNE as OpenTSNE
    from sklearn.manifold import TSNE as SkTSNE

    x, _ = blobs(n, dim, k, seed=10_000 + n)
    runs = {
        # openTSNE: 250 early-exaggeration + 500 iterations (its defaults)
        "openTSNE": lambda: np.asarray(OpenTSNE(n_components=2, perplexity=30, random_state=0, n_jobs=threads,
                                                verbose=False).fit(x)),
        # sklearn: max_iter counts both phases (250 + 500)
        "sklearn": lambda: SkTSNE(n_components=2, perplexity=30, init="pca", random_state=0, n_jobs=threads,
                                  max_iter=750).fit_transform(x),
    }
    rows = []
    for name, run in runs.items():
        t0 = time.perf_counter()
        y = run()
        secs = time.perf_counter() - t0
        q = knn_preservation(x, y)
        rows.append({"task": "tsne", "n": n, "dim": dim, "k": k, "method": name, "seconds": secs, "knn10": q})
        print(f"  tsne   {name:8s} n={n:>9,} {secs:8.2f} s  10-NN kept {q:.3f}", flush=True)
    return rows


def machine() -> dict:
    import faiss
    from threadpoolctl import threadpool_info

    return {
        "python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "faiss_threads": faiss.omp_get_max_threads(),
        "faiss": faiss.__version__,
        "threadpools": [{k: p[k] for k in ("user_api", "internal_api", "num_threads")} for p in threadpool_info()],
    }


def markdown(rows: list[dict]) -> str:
    out = ["| task | n × dim (k) | method | seconds | quality |", "|---|---|---|---:|---|"]
    for r in rows:
        if r["task"] == "kmeans":
            q = (f"ARI truth {r['ari_truth']:.3f}; faiss/sklearn inertia {r['inertia_ratio']:.4f}, "
                 f"ARI between {r['ari_between']:.3f}")
        else:
            q = f"10-NN preserved {r['knn10']:.3f}"
        out.append(f"| {r['task']} | {r['n']:,} × {r['dim']} ({r['k']}) | {r['method']} | {r['seconds']:.2f} | {q} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100000,1000000", help="K-means row counts, comma-separated")
    ap.add_argument("--tsne-sizes", default="5000,20000", help="t-SNE row counts, comma-separated ('' to skip)")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))
    ap.add_argument("--out", default=str(REPO / "benchmarks/out/clusters.json"))
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    tsne_sizes = [int(s) for s in args.tsne_sizes.split(",") if s]

    import faiss
    from threadpoolctl import threadpool_limits

    faiss.omp_set_num_threads(args.threads)
    rows: list[dict] = []
    with threadpool_limits(limits=args.threads):
        info = machine() | {"threads": args.threads}
        print(json.dumps(info), flush=True)
        for n in sizes:
            rows += bench_kmeans(n, args.dim, args.k)
        for n in tsne_sizes:
            rows += bench_tsne(n, args.dim, args.k, args.threads)
    table = markdown(rows)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": info, "rows": rows, "markdown": table}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
