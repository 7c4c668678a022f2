"""Layer sweep: CRs from every layer of one upstream model, at several dims, under LEE.

One upstream training run averages the CR of every cross and MLP layer per user and per item.
Each layer's averaged CR is reduced to each requested dim by PCA (fitted on the users' states and
applied to both tables; a layer narrower than a dim is skipped for that dim), written as snapshot
variant ``cr.<layer>.d<dim>``, and evaluated against one baseline. The result holds the data of
an AUC-lift-by-layer figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lee.errors import ConfigError
from lee.evaluator.compare import Comparison, EvalConfig, compare_snapshots
from lee.evaluator.data import stream_from_world
from lee.features import encode_world
from lee.snapshot import EmbeddingTable, Snapshot, TableKind, write_snapshot
from lee.upstream.model import UpstreamConfig
from lee.upstream.train import TrainConfig, TrainResult, train_upstream
from lee.world.model import World

SWEEP_DIMS = (16, 32, 64)


def _pca_basis(x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and top-``dim`` principal directions of ``x`` (float64 SVD; small widths only)."""
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    return mean, vt[:dim].T


def reduce_tables(user: EmbeddingTable, item: EmbeddingTable, dim: int) -> tuple[EmbeddingTable, EmbeddingTable]:
    """Project a layer's user and item CR tables onto the users' top ``dim`` principal directions."""
    mean, basis = _pca_basis(user.vectors.astype(np.float64), dim)
    out = []
    for t in (user, item):
        vec = ((t.vectors.astype(np.float64) - mean) @ basis).astype(np.float32)
        out.append(EmbeddingTable(ids=t.ids, vectors=vec, updated_at=t.updated_at))
    return out[0], out[1]


@dataclass
class SweepResult:
    """Per (layer, dim): the evaluation row; plus the comparison behind it."""

    table: pd.DataFrame   # layer, branch, kind, depth, dim, delta_auc, ci_low, ci_high, verdict, auc, ...
    comparison: Comparison
    upstream: TrainResult

    def figure_data(self) -> pd.DataFrame:
        """ΔAUC by layer (rows) and dim (columns): the AUC-lift-by-layer figure."""
        return self.table.pivot_table(index="layer", columns="dim", values="delta_auc", sort=False)


def layer_sweep(world: World, out_root: str | Path, *, dims: Sequence[int] = SWEEP_DIMS,
                layers: Sequence[str] | None = None, eval_cfg: EvalConfig | None = None,
                model_cfg: UpstreamConfig | None = None, train_cfg: TrainConfig | None = None,
                device: torch.device | str = "cpu", progress: bool = False) -> SweepResult:
    """Train the upstream model once, write every layer's CR at every dim, and evaluate them all."""
    mcfg = model_cfg or UpstreamConfig()
    layers = list(layers or mcfg.layer_names())
    if not dims or any(d <= 0 for d in dims):
        raise ConfigError(f"sweep dims must be positive integers; got {list(dims)}")
    cfg = eval_cfg or EvalConfig(usage="CR")
    if cfg.usage != "CR":
        raise ConfigError("a layer sweep evaluates CRs: use EvalConfig(usage='CR')")
    enc = encode_world(world)
    result = train_upstream(enc, None, model_cfg=mcfg, train_cfg=train_cfg or TrainConfig(), device=device,
                            progress=progress, tap_layers=layers)
    stamp = int(world.end_ts) // 300 * 300 + 300
    snaps: dict[str, Snapshot] = {}
    meta: dict[str, dict] = {}
    for layer in layers:
        user, item = result.layer_cr[layer]
        for dim in dims:
            if dim > user.dim:
                continue
            u, i = reduce_tables(user, item, dim)
            name = f"cr.{layer}.d{dim}"
            path = write_snapshot(out_root, name, stamp, {TableKind.CR_USER: u, TableKind.CR_ITEM: i},
                                  source_layer=layer, overwrite=True,
                                  extra={"sweep": True, "layer_width": user.dim, "pca_dim": dim})
            snaps[name] = Snapshot.open(path)
            branch, kind, depth = layer.split(".")
            meta[name] = {"layer": layer, "branch": branch, "kind": kind, "depth": int(depth), "dim": dim,
                          "layer_width": user.dim}
    comparison = compare_snapshots(stream_from_world(world), snaps, cfg, device=device, progress=progress)
    rows = []
    for v in comparison.variants:
        r = v.row()
        rows.append({**meta[v.name], **{k: r[k] for k in ("delta_auc", "ci_low", "ci_high", "verdict", "auc",
                                                           "rela_impr_pct")}})
    order = {name: k for k, name in enumerate(layers)}
    table = pd.DataFrame(rows).sort_values(["layer", "dim"], key=lambda c: c.map(order) if c.name == "layer" else c)
    return SweepResult(table=table.reset_index(drop=True), comparison=comparison, upstream=result)
