"""2-D maps benchmark: time and neighbour preservation of every map, with the plain libraries beside them.

    python benchmarks/maps.py [--runs tsne-fit:100000,tsne-sample:100000,opentsne:100000,tsne-sample:1000000]
                              [--sample 20000] [--queries 1000] [--out benchmarks/out/maps.json]

Data: planted Gaussian blobs (16 centres ~ N(0, 3² I) in 64 dims, unit-variance points, float32),
seeded by the size: the data of the earlier t-SNE benchmark rows.

Each run is a fresh Python process (imports and a small warm-up fit first, so numba/openTSNE
compilation is not timed) and one timed map:

- ``opentsne``: the anchor, openTSNE as a user would call it: ``TSNE(n_jobs=threads).fit(x)``
  (Annoy neighbours, FFT gradients, 250 + 500 iterations) on every row;
- ``umap``: umap-learn ``UMAP(n_neighbors=15).fit_transform(x)`` on every row (warm);
- ``tsne-fit``: :func:`analysis.maps.embed_2d` (method tsne) fitted on every row (faiss neighbours);
- ``tsne-sample``: ``embed_2d(method="tsne", sample=S, place_rest=True)``: fitted on a stratified
  sample of S rows (strata: the planted blob), every other row placed by openTSNE's transform;
- ``pca-sample``: the same with PCA.

Quality: 10-NN preservation (the mean share of a row's 10 nearest neighbours in 64-D that are
also its 10 nearest on the map, neighbours among every mapped row) on ``--queries`` seeded query
rows, by :func:`analysis.maps.neighbour_preservation` for every method alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def one_map(method: str, n: int, sample: int, queries: int, threads: int) -> dict:
    from analysis.maps import embed_2d, neighbour_preservation
    from benchmarks.clusters import blobs

    x, lab = blobs(n, 64, 16, seed=10_000 + n, spread=3.0)
    warm = x[:2_000]
    info: dict = {}
    if method == "opentsne":
        from openTSNE import TSNE

        TSNE(n_jobs=threads, verbose=False).fit(warm)
        t0 = time.perf_counter()
        xy = np.asarray(TSNE(n_jobs=threads, random_state=0, verbose=False).fit(x))
        secs = time.perf_counter() - t0
    elif method == "umap":
        import umap

        umap.UMAP(n_neighbors=15).fit_transform(warm)
        t0 = time.perf_counter()
        xy = umap.UMAP(n_neighbors=15, random_state=0, n_jobs=1).fit_transform(x)
        secs = time.perf_counter() - t0
    else:
        kind, how = method.split("-")
        size = n if how == "fit" else sample
        embed_2d(warm, kind, sample=1_000, strata=lab[:2_000], place_rest=True, knn_queries=0, threads=threads)
        t0 = time.perf_counter()
        m = embed_2d(x, kind, sample=size, strata=lab, seed=0, place_rest=True, knn_queries=0, threads=threads)
        secs = time.perf_counter() - t0
        xy = m.xy
        info = {"fitted": m.sample_size, "placed": m.n_placed, "seconds_fit": m.seconds_fit,
                "seconds_place": m.seconds_place}
        if m.n_placed:
            info["knn_fitted_rows"] = neighbour_preservation(x[m.fitted], xy[m.fitted], queries=queries)[0]
    knn, used = neighbour_preservation(x, np.asarray(xy, np.float32), queries=queries)
    return {"method": method, "n": n, "seconds": secs, "knn10": knn, "queries": used, "threads": threads, **info}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default="tsne-sample:100000,tsne-fit:100000,opentsne:100000,pca-sample:1000000,"
                                      "tsne-sample:1000000")
    ap.add_argument("--sample", type=int, default=20_000)
    ap.add_argument("--queries", type=int, default=1_000)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--out", default=str(REPO / "benchmarks/out/maps.json"))
    ap.add_argument("--one", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        r = one_map(args.one[0], int(args.one[1]), args.sample, args.queries, args.threads)
        print("@@" + json.dumps(r), flush=True)
        return 0
    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "threads": args.threads, "sample": args.sample, "queries": args.queries}
    print(json.dumps(info), flush=True)
    rows = []
    for spec in args.runs.split(","):
        method, n = spec.split(":")
        load0 = os.getloadavg()
        out = subprocess.run([sys.executable, __file__, "--one", method, n, "--sample", str(args.sample),
                              "--queries", str(args.queries), "--threads", str(args.threads)],
                             capture_output=True, text=True)
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("@@")]
        if not lines:
            print(f"  {spec}: failed\n{out.stderr[-2000:]}", flush=True)
            continue
        r = json.loads(lines[-1][2:]) | {"load_before": load0, "load_after": os.getloadavg()}
        rows.append(r)
        extra = {k: r[k] for k in r if k.startswith(("fit", "pla", "knn_f", "seconds_"))}
        print(f"  {method:12s} n={int(n):>9,} {r['seconds']:8.1f} s  10-NN kept {r['knn10']:.3f}  "
              f"load {load0[0]:.1f}->{r['load_after'][0]:.1f}  {extra}", flush=True)
    table = ["| map | N | seconds | 10-NN preserved (all rows) | fitted / placed | load (1-min) |",
             "|---|---:|---:|---:|---|---|"]
    for r in rows:
        fp = f"{r.get('fitted', r['n']):,} / {r.get('placed', 0):,}"
        table.append(f"| {r['method']} | {r['n']:,} | {r['seconds']:.1f} | {r['knn10']:.3f} | {fp} | "
                     f"{r['load_before'][0]:.1f}–{r['load_after'][0]:.1f} |")
    md = "\n".join(table)
    print(md)
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps({"machine": info, "rows": rows, "markdown": md}, indent=2))
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
