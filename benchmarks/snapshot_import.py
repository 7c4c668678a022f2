"""Time ``lee snapshots import``'s readers on N x D embedding files of each text/list layout, next to
what a user would otherwise write (numpy.loadtxt, pandas.read_csv / read_json / read_parquet).

    .venv/bin/python benchmarks/snapshot_import.py --rows 1000000 --dim 64 [--skip-loadtxt]

Files are written once under --dir (default: a temporary directory): word2vec text with a header,
JSON lines, a header-less TSV (PyTorch-BigGraph's export) and Parquet with a list column. Each
reader's wall time is the best of --repeats runs; the lee times include every check the importer
does (ids, lengths, nulls), not the snapshot write.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from lee.snapshot.importers import importer_for


def write_files(out: Path, rows: int, dim: int, seed: int = 0) -> dict[str, Path]:
    """The four layouts of the same (ids, vectors), values printed with 7 significant digits."""
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((rows, dim)).astype(np.float32)
    ids = np.char.add("w", np.arange(rows).astype(str))
    text = pa.table({"id": pa.array(ids), **{f"v{j}": pa.array(np.char.mod("%.7g", vecs[:, j])) for j in range(dim)}})
    files = {"w2v": out / "vectors.vec", "tsv": out / "entities.tsv", "jsonl": out / "vectors.jsonl",
             "parquet": out / "vectors.parquet"}
    body = out / "body.txt"
    pacsv.write_csv(text, body, pacsv.WriteOptions(include_header=False, delimiter=" ", quoting_style="none"))
    with open(files["w2v"], "wb") as fh, open(body, "rb") as src:
        fh.write(f"{rows} {dim}\n".encode())
        while chunk := src.read(64 << 20):
            fh.write(chunk)
    body.unlink()
    pacsv.write_csv(text, files["tsv"], pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none"))
    vec_text = [", ".join(row) for row in zip(*(text.column(f"v{j}").to_pylist() for j in range(dim)), strict=True)]
    with open(files["jsonl"], "w") as fh:
        for ident, v in zip(ids.tolist(), vec_text, strict=True):
            fh.write(f'{{"id": "{ident}", "embedding": [{v}]}}\n')
    flat = pa.array(vecs.reshape(-1))
    pq.write_table(pa.table({"id": pa.array(ids), "embedding": pa.ListArray.from_arrays(
        pa.array(np.arange(0, rows * dim + 1, dim, dtype=np.int32)), flat)}), files["parquet"])
    return files


def best(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--dir", type=Path)
    ap.add_argument("--skip-loadtxt", action="store_true", help="numpy.loadtxt is the slowest reader here")
    ap.add_argument("--reuse", action="store_true", help="keep the files already in --dir (written by a run with "
                    "the same --rows and --dim)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.dir or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        names = {"w2v": "vectors.vec", "tsv": "entities.tsv", "jsonl": "vectors.jsonl", "parquet": "vectors.parquet"}
        files = {k: out / n for k, n in names.items()}
        if not (args.reuse and all(p.exists() for p in files.values())):
            files = write_files(out, args.rows, args.dim)
        print(f"{args.rows:,} x {args.dim} files ready in {time.perf_counter() - start:.1f} s: "
              + ", ".join(f"{k} {p.stat().st_size / 2**20:,.0f} MiB" for k, p in files.items()))
        cols = list(range(1, args.dim + 1))
        others: dict[str, list[tuple[str, Callable[[], object]]]] = {
            "w2v": [("pandas.read_csv(sep=' ', header=None, skiprows=1)",
                     lambda: pd.read_csv(files["w2v"], sep=" ", header=None, skiprows=1, engine="c",
                                         quoting=3, dtype={0: str}, na_filter=False))],
            "tsv": [("pandas.read_csv(sep='\\t', header=None)",
                     lambda: pd.read_csv(files["tsv"], sep="\t", header=None, engine="c", dtype={0: str}))],
            "jsonl": [("pandas.read_json(lines=True) + np.stack",
                       lambda: np.stack(pd.read_json(files["jsonl"], lines=True)["embedding"].to_numpy()))],
            "parquet": [("pandas.read_parquet + np.stack",
                         lambda: np.stack(pd.read_parquet(files["parquet"])["embedding"].to_numpy()))],
        }
        if not args.skip_loadtxt:
            others["w2v"].append(("numpy.loadtxt(usecols=1..D, skiprows=1), vectors only",
                                  lambda: np.loadtxt(files["w2v"], skiprows=1, usecols=cols, dtype=np.float32,
                                                     comments=None)))
        for fmt, path in files.items():
            opts = {"header": False} if fmt == "tsv" else {}
            table = importer_for(path, **opts).read(path)
            assert table.vectors.shape == (args.rows, args.dim)
            lee_s = best(lambda path=path, opts=opts: importer_for(path, **opts).read(path), args.repeats)
            print(f"{fmt:<8} lee import reader {lee_s:7.2f} s")
            for label, fn in others[fmt]:
                print(f"{'':<8} {label:<55} {best(fn, 1):7.2f} s")


if __name__ == "__main__":
    main()
