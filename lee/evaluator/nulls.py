"""Null checks: a random snapshot (a Gaussian vector per user and item, nothing learned) must be
judged "no different" from the baseline at the nominal rate, in every fusion mode.

Used by ``benchmarks/null_calibration.py`` (20+ replicates on the planted world and MovieLens) and
by the reduced check in the test suite. Replicate ``r`` draws its own snapshot and trains with its
own proxy seeds, so replicates share no randomness.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import binomtest

from lee.evaluator.compare import EvalConfig, evaluate_baseline, evaluate_variant
from lee.evaluator.data import DownstreamStream
from lee.snapshot import EmbeddingTable, Snapshot, TableKind, write_snapshot


def random_snapshot(stream: DownstreamStream, root: str | Path, seed: int, dim: int) -> Snapshot:
    """UR and IR holding an independent standard-normal vector for every user and item of ``stream``."""
    rng = np.random.default_rng([seed, 7919])
    tables = {TableKind.UR: EmbeddingTable(ids=stream.user_ids, vectors=rng.standard_normal(
                  (len(stream.user_ids), dim)).astype(np.float32)),
              TableKind.IR: EmbeddingTable(ids=stream.item_ids, vectors=rng.standard_normal(
                  (len(stream.item_ids), dim)).astype(np.float32))}
    return Snapshot.open(write_snapshot(root, f"random-{seed}", 0, tables, overwrite=True))


def null_verdict(stream: DownstreamStream, snap: Snapshot, mode: str, replicate: int,
                 base_cfg: EvalConfig) -> dict[str, Any]:
    """Replicate ``replicate``: ``snap`` (UR+IR) against the baseline under fusion ``mode``, with
    proxy seeds ``S*r .. S*r + S-1`` (``S`` = the number of seeds of ``base_cfg``)."""
    n = len(base_cfg.seeds)
    cfg = base_cfg.model_copy(update={"fusion": mode, "usage": "UR+IR",
                                      "seeds": tuple(n * replicate + k for k in range(n))})
    t0 = time.perf_counter()
    base = evaluate_baseline(stream, cfg, snap)
    res = evaluate_variant(stream, "random", snap, cfg, base)
    assert res.delta is not None, "evaluate_variant pairs every variant with the baseline"
    return {"replicate": replicate, "delta": res.delta.delta, "low": res.delta.low, "high": res.delta.high,
            "verdict": res.verdict, "baseline_auc": base.auc, "seconds": time.perf_counter() - t0}


def summarise(rows: list[dict[str, Any]], nominal: float = 0.05) -> dict[str, Any]:
    """False verdicts ("better" + "worse") over the replicates: counts, rate, its two-sided
    Clopper-Pearson 95% interval, and the one-sided binomial p-value of "rate > ``nominal``"."""
    n = len(rows)
    better = sum(r["verdict"] == "better" for r in rows)
    worse = sum(r["verdict"] == "worse" for r in rows)
    false = better + worse
    above = binomtest(false, n, nominal, alternative="greater")
    ci = binomtest(false, n, nominal).proportion_ci(confidence_level=0.95, method="exact")
    deltas = np.array([r["delta"] for r in rows], dtype=np.float64)
    return {"replicates": n, "better": better, "worse": worse, "false_rate": false / n,
            "ci_low": float(ci.low), "ci_high": float(ci.high), "p_rate_above_nominal": float(above.pvalue),
            "consistent_with_nominal": bool(above.pvalue >= 0.05), "delta_mean": float(deltas.mean()),
            "delta_sd": float(deltas.std(ddof=1)) if n > 1 else 0.0,
            "seconds": float(sum(r["seconds"] for r in rows))}
