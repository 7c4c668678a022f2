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

from lee.errors import ConfigError, InputError
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
        return sweep_figure_data(self.table)


SWEEP_FIGURE_COLUMNS = ("layer", "dim", "delta_auc")


def sweep_figure_data(table: pd.DataFrame, *, where: str = "sweep table") -> pd.DataFrame:
    """ΔAUC by layer (rows, in the table's order) and dim (columns): the AUC-lift-by-layer figure.

    ``table`` is a sweep table (:attr:`SweepResult.table`, or the CSV ``lee sweep --table``
    writes); one row per (layer, dim). Anything else is an :class:`InputError` naming ``where``.
    """
    def refuse(why: str) -> InputError:
        return InputError(f"{where}: not a sweep table from `lee sweep --table`: {why}")

    missing = [c for c in SWEEP_FIGURE_COLUMNS if c not in table.columns]
    if missing:
        raise refuse(f"missing column(s) {', '.join(missing)}; expected {', '.join(SWEEP_FIGURE_COLUMNS)} "
                     f"(got {', '.join(map(str, table.columns)) or 'no columns'})")
    if table.empty:
        raise refuse("it holds no rows")
    numbers = {}
    for col in ("dim", "delta_auc"):
        num = pd.to_numeric(table[col], errors="coerce")
        if num.isna().any():
            k = int(np.flatnonzero(num.isna().to_numpy())[0])
            raw = table[col].iloc[k]
            raise refuse(f"column {col} must hold numbers; data row {k + 1} holds "
                         f"{'an empty value' if pd.isna(raw) else repr(raw)}")
        numbers[col] = num
    dims = numbers["dim"]
    if (dims != dims.round()).any() or (dims <= 0).any():
        raise refuse(f"column dim must hold positive whole numbers; got {sorted(set(dims.tolist()))}")
    frame = table.assign(dim=dims.astype(np.int64), delta_auc=numbers["delta_auc"])
    dup = frame.duplicated(["layer", "dim"])
    if dup.any():
        row = frame[dup].iloc[0]
        raise refuse(f"layer {row['layer']!r} at dim {row['dim']} appears more than once")
    return frame.pivot_table(index="layer", columns="dim", values="delta_auc", sort=False)


def read_sweep_figure(path: str | Path) -> pd.DataFrame:
    """Read a ``lee sweep --table`` CSV and return its ΔAUC by layer × dim (see
    :func:`sweep_figure_data`); a missing or foreign file is an :class:`InputError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no sweep table here (write one with `lee sweep --table FILE`)")
    try:
        table = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"{path}: not a sweep table from `lee sweep --table`: not a readable CSV ({exc})") from None
    return sweep_figure_data(table, where=str(path))


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
                                                           "rela_impr")}})
    order = {name: k for k, name in enumerate(layers)}
    table = pd.DataFrame(rows).sort_values(["layer", "dim"], key=lambda c: c.map(order) if c.name == "layer" else c)
    return SweepResult(table=table.reset_index(drop=True), comparison=comparison, upstream=result)
