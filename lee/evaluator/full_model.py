"""The full downstream model: LEE's proxy architecture scaled up and trained to convergence.

LEE answers "is this representation better?" with a light proxy trained once through the stream.
The answer it stands in for is what a production-sized downstream model, trained properly, would
say. :func:`run_full` trains that model — the proxy's own architecture (:class:`ProxyCTR`: field
embeddings with first-order weights and the FM term, DCN-v2 cross network, MLP, the same fusion
and injection) with wider embeddings and a deeper cross network and MLP — for several epochs over
all downstream training events, with early stopping on a validation window, and scores the held-out
test windows. :mod:`analysis.fidelity` compares the two rankings.

Protocol over the stream's ``n_windows`` event-time windows (the same windows LEE uses): the last
``test_windows`` are the held-out test windows; the one before them validates (the AUC after
every epoch; training stops after ``patience`` epochs without improvement and the best epoch's
weights are kept); every event before the validation window trains. With ``refit`` the model then
starts again from its initial weights and trains the validated number of epochs on every event
before the test windows (validation window included), the usual last step of a production fit. A baseline and a variant
built with the same seed start from the same downstream weights and see the same batches, as in
LEE, so their ΔAUC measures the representation.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Annotated, ClassVar

import numpy as np
import torch
from pydantic import Field
from torch import nn

from lee.config import ConfigModel
from lee.errors import InputError
from lee.evaluator.data import DownstreamStream
from lee.evaluator.inject import Injection
from lee.evaluator.models import ProxyConfig, ProxyCTR
from lee.evaluator.stream import StreamRun, finish_run, proxy_optimizers, rep_rows_for, score
from lee.metrics import roc_auc
from lee.nn.optim import optimizer_step
from lee.results import register

_Width = Annotated[int, Field(gt=0)]


class FullConfig(ConfigModel):
    """Sizes and training of the full downstream model (the proxy's are in :class:`ProxyConfig`).

    Defaults: embeddings twice as wide as the proxy's (32 vs 16), three cross layers instead of
    two, an MLP of 256-128-64 instead of 64-32; Adam on the dense weights and Adagrad on the
    embedding tables, as the proxy; up to ``max_epochs`` passes over the training events.
    """

    config_name: ClassVar[str] = "full model config"

    emb_dim: int = Field(32, gt=0)
    cross_layers: int = Field(3, ge=0)
    mlp_hidden: tuple[_Width, ...] = (256, 128, 64)
    batch_size: int = Field(1024, gt=0)
    lr: float = Field(1e-3, gt=0)
    sparse_lr: float = Field(0.05, gt=0)
    max_epochs: int = Field(8, ge=1)
    patience: int = Field(2, ge=1)             # epochs without a better validation AUC before stopping
    min_delta: float = Field(1e-4, ge=0)       # what counts as better
    min_steps_per_epoch: int = Field(50, ge=1)  # small data: smaller batches, so an epoch still learns
    refit: bool = False                         # after early stopping, retrain on train + validation events

    def proxy_config(self) -> ProxyConfig:
        """The :class:`ProxyConfig` that builds this model (the proxy's architecture at these sizes)."""
        return ProxyConfig(emb_dim=self.emb_dim, cross_layers=self.cross_layers, mlp_hidden=self.mlp_hidden,
                           batch_size=self.batch_size, lr=self.lr, sparse_lr=self.sparse_lr)

    def batch_for(self, train_events: int) -> int:
        """``batch_size``, shrunk so an epoch gives at least ``min_steps_per_epoch`` steps."""
        return max(32, min(self.batch_size, -(-train_events // self.min_steps_per_epoch)))


@dataclass(frozen=True)
class Split:
    """Event ranges of the full model's protocol: train ``[0, val_lo)``, validate ``[val_lo, test_lo)``,
    test windows ``test`` (index ranges into the stream, in time order)."""

    val_lo: int
    test_lo: int
    test: list[tuple[int, int]]


def full_split(stream: DownstreamStream, n_windows: int, test_windows: int) -> Split:
    """The last ``test_windows`` of the stream's ``n_windows`` windows test, the one before validates,
    everything earlier trains."""
    if not 1 <= test_windows <= n_windows - 2:
        raise InputError(f"test_windows must lie in 1..{n_windows - 2} for {n_windows} windows (one window "
                         f"validates, at least one trains); got {test_windows}")
    bounds = stream.window_bounds(n_windows)
    test = bounds[n_windows - test_windows:]
    val_lo = bounds[n_windows - test_windows - 1][0]
    return Split(val_lo=val_lo, test_lo=test[0][0], test=test)


@register("full-run")
@dataclass
class FullRun(StreamRun):
    """One full model: scores and per-window metrics on the test windows, plus how training went."""

    epochs: int = 0                                     # epochs trained (early stopping included)
    best_epoch: int = 0                                 # 1-based; its weights were kept
    val_auc: list[float] = field(default_factory=list)  # validation AUC after each epoch


def _epoch(model: nn.Module, opts: list[torch.optim.Optimizer], loss_fn: nn.Module, x: torch.Tensor,
           rows: list[torch.Tensor], y: torch.Tensor, n: int, batch: int, gen: torch.Generator,
           device: torch.device) -> int:
    """One pass over events ``[0, n)`` in a shuffled order drawn from ``gen``; returns samples trained."""
    perm = torch.randperm(n, generator=gen)
    for a in range(0, perm.numel(), batch):
        idx = perm[a:a + batch]
        loss = loss_fn(model(x[idx].to(device), [r[idx].to(device) for r in rows]), y[idx].to(device))
        optimizer_step(opts, loss)
    return int(perm.numel())


def run_full(stream: DownstreamStream, injection: Injection | None, *, fusion: str = "concat",
             cfg: FullConfig | None = None, seed: int = 0, n_windows: int = 10, test_windows: int = 3,
             device: torch.device | str = "cpu") -> FullRun:
    """Train the full model on the training events (epochs, early stopping on the validation window)
    and score the test windows; ``seconds`` covers training, validation and scoring."""
    cfg = cfg or FullConfig()
    device = torch.device(device)
    split = full_split(stream, n_windows, test_windows)
    pcfg = cfg.proxy_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ProxyCTR(stream.cardinalities, pcfg, injection, fusion, slots=stream.slots).to(device)
    init_state = copy.deepcopy(model.state_dict()) if cfg.refit else None
    opts = proxy_optimizers(model, pcfg, split.val_lo)
    loss_fn = nn.BCEWithLogitsLoss()
    rows = rep_rows_for(stream, injection)
    x, y = stream.x, stream.y
    y_val = y[split.val_lo:split.test_lo].numpy()
    gen = torch.Generator().manual_seed(seed)
    batch = cfg.batch_for(split.val_lo)
    t0 = time.perf_counter()
    best, best_epoch, best_state, stale, trained = -np.inf, 0, None, 0, 0
    val_auc: list[float] = []
    for epoch in range(1, cfg.max_epochs + 1):
        trained += _epoch(model, opts, loss_fn, x, rows, y, split.val_lo, batch, gen, device)
        s_val = score(model, x, rows, split.val_lo, split.test_lo, device)
        auc = roc_auc(y_val, s_val) if 0 < y_val.sum() < y_val.size else float("nan")
        val_auc.append(float(auc))
        if not np.isfinite(auc):          # a one-class validation window cannot stop anything
            best_epoch, best_state = epoch, None
            continue
        if auc > best + cfg.min_delta:
            best, best_epoch, best_state, stale = auc, epoch, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    if init_state is not None:
        # the validated number of epochs, from the same initial weights, over every event before the test windows
        model.load_state_dict(init_state)
        opts = proxy_optimizers(model, pcfg, split.test_lo)
        batch = cfg.batch_for(split.test_lo)
        for _ in range(max(best_epoch, 1)):
            trained += _epoch(model, opts, loss_fn, x, rows, y, split.test_lo, batch, gen, device)
    scores = score(model, x, rows, split.test_lo, len(stream), device)
    seconds = time.perf_counter() - t0
    training = {"train_events": split.val_lo, "validation_events": split.test_lo - split.val_lo,
                "test_events": len(stream) - split.test_lo, "batch_size": batch, "max_epochs": cfg.max_epochs,
                "patience": cfg.patience, "sparse_lr": cfg.sparse_lr, "lr": cfg.lr, "refit": cfg.refit}
    return finish_run(FullRun, stream, scores, [(0, split.test_lo), *split.test], seed=seed, seconds=seconds,
                      samples_trained=trained, training=training, epochs=len(val_auc), best_epoch=best_epoch,
                      val_auc=val_auc)
