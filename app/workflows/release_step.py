"""The demo's release step: compare versions of the representation and run the release gate on them.

On the demo's snapshot root it

1. retrains the upstream model with another seed (variant ``upstream-seed<k>``): a retrain, whose
   basis differs from the first run's, as a new model version's would;
2. runs the release gate three times — the upstream model's latest snapshot against the one before
   it (one training run), the retrain against the first run, and the monitored oracle copy's
   latest (broken) snapshot against its last healthy one — recording each decision in the results
   store;
3. compares the oracle with every planted variant (noise, random, shuffled ids, collapsed rank);
4. saves everything as one :class:`~analysis.compare.review.ReleaseReview` (``compare/``), which
   the report leads with and the dashboard's Compare page opens.

Nothing here computes a number: it decides what to compare with what.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from analysis.compare import compare_versions
from analysis.compare.review import ReleaseReview
from analysis.gate import GateRules, run_gate
from lee.errors import LeeWarning
from lee.evaluator.data import stream_from_world
from lee.features import encode_world
from lee.snapshot import SnapshotStore
from lee.timeutil import time_dirname
from lee.upstream.model import UpstreamConfig
from lee.upstream.train import TrainConfig, train_upstream
from lee.world.model import World

PLANTED = ("noise_low", "noise_high", "random", "id_shuffled", "rank_collapsed")


def release_step(world: World, root: Path, results: Path, out: Path, *, seed: int = 0, monitored: str | None = None,
                 device: torch.device | str = "cpu", progress: bool = False,
                 log: Callable[[str], Any] = print) -> tuple[ReleaseReview, dict[str, Any]]:
    """Retrain, gate and compare on the demo's root; save the review to ``out``; return it with a summary."""
    retrain = f"upstream-seed{seed + 1}"
    res = train_upstream(encode_world(world), root, model_cfg=UpstreamConfig(),
                         train_cfg=TrainConfig(seed=seed + 1, variant=retrain), device=device, progress=progress)
    store = SnapshotStore(root)
    up = store.times("upstream")
    stream = stream_from_world(world)
    rules = GateRules.from_dict({"lee": {"seeds": [seed], "n_boot": 50}})
    pairs = {"upstream next snapshot": (f"upstream@{time_dirname(up[-1])}", f"upstream@{time_dirname(up[-2])}"),
             "upstream retrain": (retrain, "upstream")}
    if monitored is not None:
        times = store.times(monitored)
        pairs[f"{monitored} latest"] = (f"{monitored}@{time_dirname(times[-1])}",
                                        f"{monitored}@{time_dirname(times[-3])}")  # the planted healthy one
    review = ReleaseReview()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LeeWarning)  # reported in each result
        for name, (candidate, incumbent) in pairs.items():
            review.gates[name] = run_gate(root, candidate, incumbent, stream, rules=rules, db=results, device=device)
            compared = review.gates[name].comparison
            if compared is not None:                # a broken candidate is not compared
                review.comparisons[name] = compared
        oracle = store.latest("oracle")
        for variant in PLANTED:
            review.comparisons[f"oracle vs {variant}"] = compare_versions(
                oracle, store.latest(variant), "UR", drift_sample=500, mmd_permutations=200,
                classifier_permutations=200, seed=seed)
    review.save(out)
    log(f"      release review -> {out}: retrain {retrain}, {len(review.gates)} gate decisions (recorded in "
        f"{results}), {len(review.comparisons)} version comparisons")
    summary = {"retrain": {"variant": retrain, "holdout_auc_ad": res.holdout_auc_ad, "snapshots": len(res.snapshots)},
               **review.summary(), "out": str(out)}
    for name, g in review.gates.items():
        log(f"      gate {name}: {g.decision} ({g.candidate} vs {g.incumbent})"
            + "".join(f"\n        {r}" for r in g.reasons))
    t = review.comparison_table().set_index("comparison")
    for name in t.index:
        r = t.loc[name]
        log(f"      compare {name}: raw cos {r['raw_cosine_mean']:.3f}, aligned {r['aligned_cosine_mean']:.3f}, "
            f"CKA {r['cka']:.3f}, kNN@10 {r['knn_overlap']:.3f}, MMD p {r['mmd_p']:.3f}")
    return review, summary
