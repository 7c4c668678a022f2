"""Is LEE's proxy baseline at least as strong as the plain models a user would fit first?

Per dataset and per test window, the AUC of

* **LR** — one-hot logistic regression (scikit-learn, L2, lbfgs) over the same field codes the proxy
  embeds (a multi-valued field's values weigh 1/k each, as the proxy averages them), refit on all
  events of the earlier windows and scored on the next; ``C`` is picked from a grid by the mean AUC
  of test windows 1 and 2 (each fitted on the windows before it), then used for every window;
* **FM** — a factorisation machine (torch: bias, first-order weights, 8 factors, Adam, L2 on the
  rows a batch uses), refit from scratch on all earlier windows; the L2 strength and the number of
  epochs are picked the same way, on test windows 1 and 2;
* **proxy** — the baseline exactly as LEE trains it (``evaluate_baseline``: default ``EvalConfig``,
  concat fusion with a constant in place of a 32-wide UR and IR, seeds 0-2, streaming
  test-then-train: each window is scored before it is trained on), mean over seeds.

Reported per window: events, positives, the three AUCs and proxy − LR; per dataset: their means
over windows (the headline AUCs LEE reports are these means, event-weighted: the windows are of
equal size), the wall time of each method (LR and FM: the tuning fits plus the refits of every
window; proxy: one seed's run, mean over seeds) and what the proxy picked from the stream's size.
Tuning LR and FM on windows that are also reported favours them slightly; the comparison is the
proxy's to lose.

    python benchmarks/proxy_strength.py                        # every dataset the repository holds
    python benchmarks/proxy_strength.py --data DIR [--json]    # any dataset (lee data import) or world dir
    python benchmarks/proxy_strength.py --synthetic criteo:100000   # a generated Criteo-style log too

Datasets held by the repository: the planted world (``small``, seed 0, ad events), MovieLens
latest-small and Open Bandit small (``fixtures/real``, imported with the default conventions), and
the hand-written format slices (``fixtures/formats``: 4-10 events each, too few for 10 windows of
10 events — listed with that reason). ``--json`` prints ``{"lr": …, "fm": …, "proxy": …}`` (means
of per-window AUCs) for one dataset, or one such object per dataset name for several.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import sparse
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from lee.data.dataset import Dataset
from lee.data.importers import ImportOptions, import_dataset
from lee.data.spec import Where
from lee.data.worlds import dataset_from_world
from lee.errors import LeeError
from lee.evaluator.compare import EvalConfig, evaluate_baseline
from lee.evaluator.data import DownstreamStream, stream_from_dataset
from lee.evaluator.stats import RankedScores
from lee.snapshot import TableKind
from lee.world.config import config_for_scale
from lee.world.generate import generate_world

REPO = Path(__file__).resolve().parents[1]
FIX = REPO / "fixtures"
LR_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
FM_L2 = (1e-5, 1e-4, 1e-3)
FM_MAX_EPOCHS = 6
FM_FACTORS = 8
TUNE_WINDOWS = (1, 2)

# the hand-written format slices and the options their tests import them with
SLICES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "csv": ("csv", "formats/csv/events.csv", {"mapping": FIX / "formats/csv/mapping.toml"}),
    "parquet": ("parquet", "formats/parquet/events.parquet", {"mapping": FIX / "formats/parquet/mapping.toml"}),
    "libsvm": ("libsvm", "formats/libsvm/clicks.libsvm", {"field_map": FIX / "formats/libsvm/fields.txt"}),
    "libfm": ("libfm", "formats/libfm/ratings.libfm", {"field_map": FIX / "formats/libfm/fields.txt",
                                                       "positive": "label>=4"}),
    "criteo": ("criteo", "formats/criteo/sample.txt", {}),
    "recbole": ("recbole", "formats/recbole/toy", {"positive": "rating>=4"}),
    "movielens-ml-100k": ("movielens", "formats/movielens/ml-100k", {}),
    "mind": ("mind", "formats/mind", {}),
    "obd-slice": ("obd", "formats/obd", {}),
}


# --- the two reference models --------------------------------------------------------------------


def one_hot(stream: DownstreamStream) -> sparse.csr_matrix:
    """Every field code as a column (a multi-valued field's k values weigh 1/k each; padding dropped)."""
    x = stream.x.numpy()
    n = x.shape[0]
    rows, cols, vals, offset = [], [], [], 0
    for (a, b), card in zip(stream.field_columns(), stream.cardinalities):
        block = x[:, a:b]
        keep = np.ones_like(block, dtype=bool) if b - a == 1 else block != 0
        weight = 1.0 / np.maximum(keep.sum(1, keepdims=True), 1)
        r, c = np.nonzero(keep)
        rows.append(r)
        cols.append(offset + block[r, c])
        vals.append(np.broadcast_to(weight, block.shape)[r, c])
        offset += card
    return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(n, offset))


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    return RankedScores(y, s).auc() if 0 < y.sum() < y.size else float("nan")


def lr_windows(stream: DownstreamStream, bounds: list[tuple[int, int]]) -> dict[str, Any]:
    """Logistic regression refit on all earlier windows, C tuned on the first test windows."""
    import warnings

    t0 = time.perf_counter()
    X, y = one_hot(stream), stream.y.numpy().astype(np.int64)

    def fit_score(C: float, w: int) -> float:
        lo, hi = bounds[w]
        if y[:lo].min() == y[:lo].max():
            return float("nan")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = LogisticRegression(C=C, max_iter=500).fit(X[:lo], y[:lo])
        return _auc(y[lo:hi], model.decision_function(X[lo:hi]))

    tune = {C: np.nanmean([fit_score(C, w) for w in TUNE_WINDOWS]) for C in LR_GRID}
    ok = {c: v for c, v in tune.items() if np.isfinite(v)}
    C = max(ok, key=ok.__getitem__) if ok else 1.0
    aucs = [fit_score(C, w) for w in range(1, len(bounds))]
    return {"auc": aucs, "picked": {"C": C}, "seconds": time.perf_counter() - t0}


class FM(torch.nn.Module):
    """Factorisation machine over one table of all field codes (global offsets)."""

    def __init__(self, n_codes: int, k: int) -> None:
        super().__init__()
        self.w = torch.nn.Embedding(n_codes, 1, sparse=True)
        self.v = torch.nn.Embedding(n_codes, k, sparse=True)
        self.b = torch.nn.Parameter(torch.zeros(1))
        torch.nn.init.zeros_(self.w.weight)
        torch.nn.init.normal_(self.v.weight, std=0.01)

    def forward(self, codes: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        wv = weights.unsqueeze(2)                                   # (B, C, 1)
        v = self.v(codes)                                           # (B, C, k)
        first = (self.w(codes).squeeze(2) * weights).sum(1)         # (B,)
        pair = 0.5 * ((v * wv).sum(1).pow(2) - (v * wv).pow(2).sum(1)).sum(1)
        penalty = (v.pow(2).sum(2) + self.w(codes).squeeze(2).pow(2)).mul(weights != 0).sum(1).mean()
        return self.b + first + pair, penalty


def _fm_inputs(stream: DownstreamStream) -> tuple[torch.Tensor, torch.Tensor, int]:
    x = stream.x.numpy()
    codes, weights, offset = [], [], 0
    for (a, b), card in zip(stream.field_columns(), stream.cardinalities):
        block = x[:, a:b]
        keep = np.ones_like(block, dtype=bool) if b - a == 1 else block != 0
        codes.append(block + offset)
        weights.append(keep / np.maximum(keep.sum(1, keepdims=True), 1))
        offset += card
    return (torch.from_numpy(np.hstack(codes)), torch.from_numpy(np.hstack(weights).astype(np.float32)), offset)


def fm_windows(stream: DownstreamStream, bounds: list[tuple[int, int]], seed: int = 0) -> dict[str, Any]:
    """An FM refit from scratch on all earlier windows; L2 and epochs tuned on the first test windows."""
    t0 = time.perf_counter()
    codes, weights, n_codes = _fm_inputs(stream)
    y = stream.y

    def fit(l2: float, w: int, epochs: int) -> list[float]:
        """AUC on window ``w`` after each epoch of training on the windows before it."""
        lo, hi = bounds[w]
        torch.manual_seed(seed)
        model = FM(n_codes, FM_FACTORS)
        opts = [torch.optim.SparseAdam(list(model.w.parameters()) + list(model.v.parameters()), lr=0.01),
                torch.optim.Adam([model.b], lr=0.01)]
        gen = torch.Generator().manual_seed(seed)
        out = []
        for _ in range(epochs):
            perm = torch.randperm(lo, generator=gen)
            for a in range(0, lo, 256):
                idx = perm[a:a + 256]
                logit, pen = model(codes[idx], weights[idx])
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, y[idx]) + l2 * pen
                for o in opts:
                    o.zero_grad()
                loss.backward()
                for o in opts:
                    o.step()
            with torch.no_grad():
                s = torch.cat([model(codes[a:min(a + 65536, hi)], weights[a:min(a + 65536, hi)])[0]
                               for a in range(lo, hi, 65536)])
            out.append(_auc(y[lo:hi].numpy(), s.numpy()))
        return out

    best = (-np.inf, FM_L2[0], 1)
    for l2 in FM_L2:
        curves = np.array([fit(l2, w, FM_MAX_EPOCHS) for w in TUNE_WINDOWS])
        mean = np.nanmean(curves, axis=0)
        if np.isfinite(mean).any() and np.nanmax(mean) > best[0]:
            best = (float(np.nanmax(mean)), l2, int(np.nanargmax(mean)) + 1)
    _, l2, epochs = best
    aucs = [fit(l2, w, epochs)[-1] for w in range(1, len(bounds))]
    return {"auc": aucs, "picked": {"l2": l2, "epochs": epochs}, "seconds": time.perf_counter() - t0}


def proxy_windows(stream: DownstreamStream, cfg: EvalConfig) -> dict[str, Any]:
    """The proxy baseline as LEE trains it; per-window AUC as the mean over seeds."""
    t0 = time.perf_counter()
    base = evaluate_baseline(stream, cfg, {TableKind.UR: 32, TableKind.IR: 32})
    return {"auc": base.window_auc, "picked": base.runs[0].training,
            "seconds": (time.perf_counter() - t0) / len(cfg.seeds)}


# --- datasets --------------------------------------------------------------------------------------


def planted_world(scale: str = "small", seed: int = 0) -> Dataset:
    ds = dataset_from_world(generate_world(config_for_scale(scale, seed=seed)))
    ds.spec = ds.spec.model_copy(update={"downstream_where": Where(column="domain", values=(1,))})
    return ds


def imported(fmt: str, src: Path, work: Path, name: str, **options: Any) -> Dataset:
    out = work / name
    if not (out / "dataset.json").is_file():
        import_dataset(fmt, src, out, ImportOptions(**options), overwrite=True)
    return Dataset.open(out)


def synthetic_criteo(path: Path, n: int, seed: int = 0) -> None:
    """A Criteo-layout log whose clicks follow a known model: a logistic model over per-value effects
    of Zipf-distributed categorical fields (3 to 50,000 values; every third field pure noise), four
    count features, a rank-4 user x item interaction and a slow drift of the click rate."""
    rng = np.random.default_rng(seed)
    cards = list(np.geomspace(3, 50_000, 26).astype(int))
    cards[0], cards[1] = 5000, 2000                    # C1 = user, C2 = item (the importer's convention)
    logit = np.full(n, -1.6) + np.linspace(0, -0.3, n)
    cols = []
    for k, c in enumerate(cards):
        p = 1.0 / np.arange(1, c + 1) ** 1.1
        v = rng.choice(c, n, p=p / p.sum())
        sd = 0.0 if k % 3 == 2 else 0.6 if c < 100 else 0.4 if c < 5000 else 0.3
        logit += rng.normal(0, sd, c)[v]
        cols.append(v)
    u, i = rng.normal(0, 0.5, (cards[0], 4)), rng.normal(0, 0.5, (cards[1], 4))
    logit += (u[cols[0]] * i[cols[1]]).sum(1)
    ints = [rng.lognormal(1.0, 1.2, n).astype(int) for _ in range(13)]
    for k in range(4):
        logit += 0.25 * np.log1p(ints[k]) * (1 if k % 2 else -1)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    missing = rng.random((n, 13)) < 0.05
    with open(path, "w", encoding="utf-8") as fh:
        for r in range(n):
            ints_text = ["" if missing[r, k] else str(ints[k][r]) for k in range(13)]
            cats = [format((int(cols[k][r]) * 2654435761 + k) % (1 << 32), "08x") for k in range(26)]
            fh.write("\t".join([str(y[r]), *ints_text, *cats]) + "\n")


def repository_datasets(work: Path) -> list[tuple[str, Any]]:
    """(name, Dataset or a loader) for every dataset the repository holds."""
    out: list[tuple[str, Any]] = [
        ("planted world (small, seed 0)", lambda: planted_world()),
        ("MovieLens latest-small", lambda: imported("movielens", FIX / "real/movielens-latest-small", work, "ml")),
        ("Open Bandit small", lambda: imported("obd", FIX / "real/open-bandit-small", work, "obd")),
    ]
    for name, (fmt, rel, options) in SLICES.items():
        out.append((f"slice {name}", lambda fmt=fmt, rel=rel, options=options, name=name:
                    imported(fmt, FIX / rel, work, f"slice-{name}", **options)))
    return out


# --- one dataset ---------------------------------------------------------------------------------


def measure(name: str, ds: Dataset, cfg: EvalConfig, *, fm: bool = True) -> dict[str, Any]:
    """Every method on one dataset's downstream stream, per window."""
    stream = stream_from_dataset(ds)
    try:
        bounds = stream.window_bounds(cfg.windows)
    except LeeError as exc:
        return {"dataset": name, "events": len(stream), "skipped": str(exc)}
    y = stream.y.numpy()
    res = {"lr": lr_windows(stream, bounds), "proxy": proxy_windows(stream, cfg)}
    if fm:
        res["fm"] = fm_windows(stream, bounds)
    windows = []
    for w, (lo, hi) in enumerate(bounds[1:]):
        row = {"window": w + 1, "events": hi - lo, "positives": int(y[lo:hi].sum())}
        for k, r in res.items():
            row[k] = r["auc"][w]
        row["proxy_minus_lr"] = row["proxy"] - row["lr"]
        windows.append(row)
    table = pd.DataFrame(windows)
    means = {k: float(np.nanmean(table[k])) for k in res}
    return {"dataset": name, "events": len(stream), "positives": int(y.sum()), "windows": windows,
            "mean": means, "proxy_minus_lr": float(np.nanmean(table["proxy_minus_lr"])),
            "seconds": {k: round(r["seconds"], 2) for k, r in res.items()},
            "picked": {k: r["picked"] for k, r in res.items()}}


def machine() -> str:
    load = os.getloadavg()
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
            f"({torch.get_num_threads()} thread(s)), load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")


def print_result(r: dict[str, Any]) -> None:
    if "skipped" in r:
        print(f"\n## {r['dataset']}: {r['events']} events, not measured: {r['skipped']}")
        return
    m, s = r["mean"], r["seconds"]
    print(f"\n## {r['dataset']}: {r['events']:,} events, {r['positives']:,} positives")
    print(pd.DataFrame(r["windows"]).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print("mean  " + "  ".join(f"{k} {v:.4f}" for k, v in m.items())
          + f"  proxy-LR {r['proxy_minus_lr']:+.4f}")
    print("seconds  " + "  ".join(f"{k} {v:.1f}" for k, v in s.items()) + "  (proxy: one seed)")
    print("picked  " + json.dumps(r["picked"], default=str))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, action="append", help="a dataset or world directory (repeatable)")
    ap.add_argument("--synthetic", action="append", default=[], help="criteo:N — also a generated Criteo-style log")
    ap.add_argument("--seeds", default="0,1,2", help="proxy seeds")
    ap.add_argument("--windows", type=int, default=10)
    ap.add_argument("--no-fm", action="store_true", help="skip the factorisation machine")
    ap.add_argument("--json", action="store_true", help='print {"lr": ..., "fm": ..., "proxy": ...} only')
    ap.add_argument("--out", type=Path, help="also write every figure as JSON here")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: the safe choice on a shared box)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = EvalConfig(seeds=tuple(int(s) for s in args.seeds.split(",")), windows=args.windows)
    with tempfile.TemporaryDirectory(prefix="lee-proxy-") as tmp:
        work = Path(tmp)
        if args.data:
            todo: list[tuple[str, Any]] = [(str(d), lambda d=d: Dataset.open(d)) for d in args.data]
        else:
            todo = [] if args.synthetic else repository_datasets(work)
        for spec in args.synthetic:
            kind, _, n = spec.partition(":")
            if kind != "criteo":
                sys.exit(f"--synthetic {spec}: only criteo:N is generated")
            src = work / f"synthetic-criteo-{n}.txt"
            synthetic_criteo(src, int(n or 100_000))
            todo.append((f"synthetic Criteo-style log ({int(n or 100_000):,} lines)",
                         lambda src=src: imported("criteo", src, work, src.stem)))
        if not args.json:
            print(f"# proxy strength: LR and FM refit on all earlier windows vs LEE's proxy baseline\n"
                  f"machine: {machine()}")
        results = []
        for name, load in todo:
            results.append(measure(name, load(), cfg, fm=not args.no_fm))
            if not args.json:
                print_result(results[-1])
    if not args.json:
        print(f"\nmachine at the end: {machine()}")
    if args.out:
        args.out.write_text(json.dumps({"machine": machine(), "results": results}, indent=2, default=str))
    if args.json:
        means = {r["dataset"]: r.get("mean", {"skipped": r.get("skipped")}) for r in results}
        print(json.dumps(next(iter(means.values())) if len(means) == 1 else means))


if __name__ == "__main__":
    main()
