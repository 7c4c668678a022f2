"""Training the upstream model on the mixed content+ad stream in event-time order.

The stream is cut into intervals of ``snapshot_every_minutes`` of event time; after the model has
trained on an interval it writes a snapshot stamped with the interval's end, so consecutive
snapshots are exactly that many minutes apart. The last ``holdout_fraction`` of the stream (by
time) is never trained on and gives an honest held-out AUC.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from lee.errors import ConfigError, InputError
from lee.features import EncodedWorld
from lee.metrics import roc_auc
from lee.nn.optim import make_optimizers, optimizer_step
from lee.snapshot import EmbeddingTable, TableKind, write_snapshot
from lee.upstream.cr_average import CRAverager, ExpDecay
from lee.upstream.model import Batch, TripleTower, UpstreamConfig, UserTower


@dataclass(frozen=True)
class TrainConfig:
    """How the stream is consumed and how often snapshots are written."""

    batch_size: int = 1024
    lr: float = 3e-3
    # id embeddings: slower than before (1e-2), so they add to the click history rather than memorise a
    # user's few events. 3e-3 serves both yardsticks: the planted small world (seed 0: AUC gap to the
    # oracle towers 0.023, UR ARI 0.71; 1e-3 gives 0.020 / 0.84, 1e-2 a gap of 0.037) and MovieLens,
    # where at 1e-3 the UR was no longer told from a random snapshot (upstream - random +0.0154
    # [-0.0076, +0.0384]) and at 3e-3 it is (+0.0298 [+0.0028, +0.0568], clusters above 20 random draws)
    sparse_lr: float = 3e-3
    snapshot_every_minutes: int = 5
    holdout_fraction: float = 0.2
    tau_seconds: float = 600.0   # CR moving average: beta(dt) = exp(-dt / tau)
    epochs_per_interval: int = 2  # passes over each interval before its snapshot (the last one updates CR)
    seed: int = 0
    variant: str = "upstream"

    def __post_init__(self) -> None:
        if self.batch_size <= 0 or self.snapshot_every_minutes <= 0 or self.epochs_per_interval <= 0:
            raise ConfigError("batch_size, snapshot_every_minutes and epochs_per_interval must be positive")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ConfigError(f"holdout_fraction must lie in [0, 1); got {self.holdout_fraction}")


@dataclass
class TrainResult:
    """What a training run produced and how well it predicts the held-out stream."""

    snapshots: list[Path]
    holdout_auc_ad: float
    holdout_auc_content: float
    train_events: int
    holdout_events: int
    seconds: float
    device: str
    events_per_second: float
    model: TripleTower = field(repr=False)
    layer_cr: dict[str, tuple[EmbeddingTable, EmbeddingTable]] = field(default_factory=dict, repr=False)


def _interval_bounds(ts: np.ndarray, step: int, holdout_fraction: float) -> tuple[list[tuple[int, int, int]], int]:
    """(lo, hi, stamp) event ranges per snapshot interval over the training part, and the cut index."""
    first = int(ts[0]) // step * step
    if holdout_fraction > 0:
        cut_ts = int(np.quantile(ts, 1.0 - holdout_fraction)) // step * step
        cut_ts = max(cut_ts, first + step)
    else:
        cut_ts = -(-(int(ts[-1]) + 1) // step) * step
    cut = int(np.searchsorted(ts, cut_ts, side="left"))
    bounds = []
    for start in range(first, cut_ts, step):
        lo, hi = np.searchsorted(ts, [start, start + step], side="left")
        bounds.append((int(lo), int(min(hi, cut)), start + step))
    return bounds, cut


@torch.no_grad()
def _tower_rows(tower: nn.Module, rows: torch.Tensor, chunk: int = 65_536) -> torch.Tensor:
    return torch.cat([tower(rows[k:k + chunk]) for k in range(0, rows.numel(), chunk)]) if rows.numel() else \
        torch.zeros(0, device=rows.device)


def train_upstream(
    enc: EncodedWorld,
    out_root: str | Path | None,
    *,
    model_cfg: UpstreamConfig | None = None,
    train_cfg: TrainConfig | None = None,
    device: torch.device | str = "cpu",
    user_tower: nn.Module | None = None,
    item_tower: nn.Module | None = None,
    progress: bool = True,
    tap_layers: Sequence[str] = (),
) -> TrainResult:
    """Train in event-time order, write a snapshot per interval to ``out_root`` (None: write none).

    ``user_tower``/``item_tower`` replace the learned towers, e.g. by a :class:`FrozenTower` over a
    planted snapshot, to measure what fixed representations give the same mix tower.
    ``tap_layers`` adds a user and an item CR average for each named layer (for a layer sweep);
    their final states come back in ``TrainResult.layer_cr``.
    """
    mcfg, tcfg = model_cfg or UpstreamConfig(), train_cfg or TrainConfig()
    device = torch.device(device)
    ts_np = enc.ts.numpy()
    if ts_np.size == 0:
        raise InputError("the event stream is empty; nothing to train on")
    step = tcfg.snapshot_every_minutes * 60
    bounds, cut = _interval_bounds(ts_np, step, tcfg.holdout_fraction)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(tcfg.seed)
        model = TripleTower(enc, mcfg, user_tower, item_tower).to(device)
    opts = make_optimizers(model, tcfg.lr, tcfg.sparse_lr)
    item_category = enc.item_category.to(device)
    loss_fn = nn.BCEWithLogitsLoss()
    cr_dim = model.layer_dim(mcfg.cr_layer)
    n_users, n_items = enc.cardinalities["users"], enc.cardinalities["items"]
    beta = ExpDecay(tcfg.tau_seconds)
    cr_user = CRAverager(n_users, cr_dim, beta, device=device)
    cr_item = CRAverager(n_items, cr_dim, beta, device=device)
    for name in tap_layers:
        mcfg.check_layer(name)
    taps = {name: (CRAverager(n_users, model.layer_dim(name), beta, device=device),
                   CRAverager(n_items, model.layer_dim(name), beta, device=device))
            for name in tap_layers if name != mcfg.cr_layer}

    snapshots: list[Path] = []
    run_id = model_run_id(enc, mcfg, tcfg, custom_towers=user_tower is not None or item_tower is not None)
    t0 = time.perf_counter()
    bar = tqdm(total=cut, desc="upstream", unit="ev", unit_scale=True, disable=not progress)
    model.train()
    for lo, hi, stamp in bounds:
        for _ in range(tcfg.epochs_per_interval - 1):  # extra passes train only; CR averages once
            for b0 in range(lo, hi, tcfg.batch_size):
                b = Batch.slice(enc, b0, min(b0 + tcfg.batch_size, hi), device)
                optimizer_step(opts, loss_fn(model(b).logit, b.click))
        for b0 in range(lo, hi, tcfg.batch_size):
            b = Batch.slice(enc, b0, min(b0 + tcfg.batch_size, hi), device)
            out = model(b, taps=True)
            loss = loss_fn(out.logit, b.click)
            optimizer_step(opts, loss)
            if isinstance(model.user_tower, UserTower):  # after the step: a label never feeds its own prediction
                model.user_tower.observe(b.user, item_category[b.item], b.click)
            cr = out.layers[mcfg.cr_layer].detach()
            ts_f = b.ts.double()
            cr_user.update(b.user, ts_f, cr)
            cr_item.update(b.item, ts_f, cr)
            for name, (avg_u, avg_i) in taps.items():
                layer_out = out.layers[name].detach()
                avg_u.update(b.user, ts_f, layer_out)
                avg_i.update(b.item, ts_f, layer_out)
            bar.update(b.user.numel())
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        if out_root is not None and bool(cr_user.seen.any()):
            snapshots.append(_write(model, enc, out_root, tcfg.variant, stamp, mcfg.cr_layer, cr_user, cr_item,
                                    checkpoint=f"{run_id}@{hi}"))
    bar.close()
    train_seconds = time.perf_counter() - t0

    auc_ad, auc_content = _holdout_auc(model, enc, cut, device, tcfg.batch_size * 8)
    layer_cr: dict[str, tuple[EmbeddingTable, EmbeddingTable]] = {}
    for name in tap_layers:
        avg_u, avg_i = (cr_user, cr_item) if name == mcfg.cr_layer else taps[name]
        layer_cr[name] = (_table(avg_u, enc.user_ids), _table(avg_i, enc.item_ids))
    return TrainResult(layer_cr=layer_cr, snapshots=snapshots, holdout_auc_ad=auc_ad, holdout_auc_content=auc_content,
                       train_events=cut, holdout_events=enc.n_events - cut, seconds=train_seconds,
                       device=str(device), events_per_second=cut / max(train_seconds, 1e-9), model=model)


def _table(avg: CRAverager, ids: np.ndarray) -> EmbeddingTable:
    rows, state, last_ts = avg.snapshot()
    return EmbeddingTable(ids=ids[rows.cpu().numpy()], vectors=state.cpu().numpy(),
                          updated_at=last_ts.cpu().numpy().astype(np.int64))


@torch.no_grad()
def predict(model: TripleTower, enc: EncodedWorld, lo: int, hi: int, device: torch.device,
            chunk: int = 8192) -> np.ndarray:
    """Click logits of events ``lo:hi``."""
    model.eval()
    out = [model(Batch.slice(enc, k, min(k + chunk, hi), device)).logit.cpu() for k in range(lo, hi, chunk)]
    model.train()
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def _holdout_auc(model: TripleTower, enc: EncodedWorld, cut: int, device: torch.device,
                 chunk: int) -> tuple[float, float]:
    if cut >= enc.n_events:
        return float("nan"), float("nan")
    logits = predict(model, enc, cut, enc.n_events, device, chunk)
    y = enc.click[cut:].numpy()
    dom = enc.domain[cut:].numpy()
    res = []
    for d in (1, 0):
        m = dom == d
        ok = m.any() and 0 < y[m].sum() < m.sum()
        res.append(roc_auc(y[m], logits[m]) if ok else float("nan"))
    return res[0], res[1]


def model_run_id(enc: EncodedWorld, mcfg: UpstreamConfig, tcfg: TrainConfig, *, custom_towers: bool = False) -> str:
    """A short id of one training run: its model and training settings (seed included, variant name
    excluded) and a fingerprint of the stream. Snapshots of one run share it (and a basis); a retrain
    with another seed or other data gets another. Recorded in every manifest as ``model_run``, and
    with the events trained so far as the ``checkpoint`` id (``<model_run>@<events>``)."""
    ts = enc.ts
    doc = {"model": asdict(mcfg), "train": {k: v for k, v in asdict(tcfg).items() if k != "variant"},
           "custom_towers": custom_towers, "events": enc.n_events, "cardinalities": enc.cardinalities,
           "span": [int(ts[0]), int(ts[-1])] if ts.numel() else [], "clicks": float(enc.click.sum())}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:12]


@torch.no_grad()
def _write(model: TripleTower, enc: EncodedWorld, root: str | Path, variant: str, stamp: int, layer: str,
           cr_user: CRAverager, cr_item: CRAverager, *, checkpoint: str) -> Path:
    """Snapshot of every id seen so far: UR/IR from the towers, CR_user/CR_item from the averages.

    The averagers know which ids have had an event and when the last one was, for both tables.
    ``checkpoint`` (``<model_run>@<events trained>``) goes into the manifest, so comparisons and
    jobs can tell a retrain from the next snapshot of one run, and catch tables of different
    checkpoints combined (:mod:`lee.versions`).
    """
    model.eval()
    tables: dict[TableKind, EmbeddingTable] = {}
    for rep_kind, cr_kind, tower, avg, ids in (
        (TableKind.UR, TableKind.CR_USER, model.user_tower, cr_user, enc.user_ids),
        (TableKind.IR, TableKind.CR_ITEM, model.item_tower, cr_item, enc.item_ids),
    ):
        rows, state, last_ts = avg.snapshot()
        row_ids = ids[rows.cpu().numpy()]
        updated = last_ts.cpu().numpy().astype(np.int64)
        tables[rep_kind] = EmbeddingTable(ids=row_ids, vectors=_tower_rows(tower, rows).float().cpu().numpy(),
                                          updated_at=updated)
        tables[cr_kind] = EmbeddingTable(ids=row_ids, vectors=state.cpu().numpy(), updated_at=updated)
    model.train()
    return write_snapshot(root, variant, stamp, tables, source_layer=layer, overwrite=True,
                          extra={"producer": "lee.upstream", "cr_layer": layer,
                                 "model_run": checkpoint.split("@", 1)[0], "checkpoint": checkpoint})
