"""Streaming test-then-train: train on window t, score window t+1, over the whole downstream stream.

The stream is already a set of tensors; batches are index slices of them (no DataLoader, no
per-sample Python), which is what keeps a proxy model above a million samples a minute on CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from lee.device import torch_threads
from lee.evaluator.data import DownstreamStream
from lee.evaluator.inject import Injection, lookup_rows
from lee.evaluator.models import ProxyConfig, ProxyCTR
from lee.evaluator.stats import window_metrics
from lee.metrics import log_loss, roc_auc
from lee.nn.optim import make_optimizers, optimizer_step, split_params
from lee.results import register


@register("stream-run")
@dataclass
class StreamRun:
    """One proxy model's test-then-train pass: scores on every test event and per-window metrics."""

    seed: int
    test_lo: int                      # first scored event (start of window 1)
    scores: np.ndarray                # (N - test_lo,) logits
    window_edges: list[tuple[int, int]]
    window_auc: list[float]           # per test window (windows 1..W-1)
    auc: float                        # headline: event-weighted mean of window_auc
    gauc: float                       # event-weighted mean of the per-window GAUCs (per user within a window)
    logloss: float                    # over all test events (= event-weighted mean of the per-window LogLoss)
    seconds: float
    samples_trained: int
    model: nn.Module | None = field(default=None, repr=False, metadata={"save": False})  # not saved
    auc_pooled: float = float("nan")  # one AUC over all test events pooled across windows (secondary)
    window_gauc: list[float] = field(default_factory=list)
    window_logloss: list[float] = field(default_factory=list)
    window_pred_ctr: list[float] = field(default_factory=list)   # mean predicted click probability
    training: dict[str, Any] = field(default_factory=dict)        # what was picked from the stream (epochs...)
    calibration: float = float("nan")  # mean predicted / observed click rate over all test events (1 = calibrated)

    @property
    def test_bounds(self) -> list[tuple[int, int]]:
        """The test windows as index ranges into ``scores``."""
        return [(a - self.test_lo, b - self.test_lo) for a, b in self.window_edges[1:]]

    @property
    def samples_per_second(self) -> float:
        return self.samples_trained / max(self.seconds, 1e-9)


def rep_rows_for(stream: DownstreamStream, injection: Injection | None) -> list[torch.Tensor]:
    """Per-event row of every injected table (absent ids point at the 'missing' row)."""
    if injection is None:
        return []
    return [torch.from_numpy(lookup_rows(t, stream.user_row if t.kind.entity == "user" else stream.item_row))
            for t in injection.tables]


def proxy_optimizers(model: nn.Module, cfg: ProxyConfig, window_events: int) -> list[torch.optim.Optimizer]:
    """Adam over the dense parameters; the sparse embedding tables with ``cfg.sparse_optimizer`` at
    the step size picked for windows of ``window_events`` events."""
    sparse_lr = cfg.sparse_lr_for(window_events)
    if cfg.sparse_optimizer == "adam":
        return make_optimizers(model, cfg.lr, sparse_lr)
    sparse, dense = split_params(model)
    opts: list[torch.optim.Optimizer] = [torch.optim.Adam(dense, lr=cfg.lr)]
    if sparse:
        # torch's default, made explicit: without it Adagrad's sparse update warns on every run
        torch.sparse.check_sparse_tensor_invariants.disable()
        opts.append(torch.optim.Adagrad(sparse, lr=sparse_lr))
    return opts


def training_picks(cfg: ProxyConfig, window_events: int) -> dict[str, Any]:
    """What the run picked from the stream's size (recorded with every run)."""
    return {"events_per_window": int(window_events), "batch_size": cfg.batch_for(window_events),
            "sparse_optimizer": cfg.sparse_optimizer, "sparse_lr": round(cfg.sparse_lr_for(window_events), 6),
            "sparse_lr_picked": cfg.sparse_lr is None, "epochs_per_window": cfg.epochs_per_window}


@torch.no_grad()
def score(model: nn.Module, x: torch.Tensor, rows: list[torch.Tensor], lo: int, hi: int,
          device: torch.device, chunk: int = 65_536) -> np.ndarray:
    """Logits of events ``lo:hi``."""
    model.eval()
    out = []
    for a in range(lo, hi, chunk):
        b = min(a + chunk, hi)
        out.append(model(x[a:b].to(device), [r[a:b].to(device) for r in rows]).float().cpu())
    model.train()
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def _safe_auc(y: np.ndarray, s: np.ndarray) -> float:
    return roc_auc(y, s) if 0 < y.sum() < y.size else float("nan")


# Intra-op threads of one proxy model's training on the CPU. Its operations are small (a batch of a
# few thousand rows through embedding bags and layers of tens of units, sparse optimiser updates),
# so a parallel region per operation costs more than it brings: the demo's 4-unit job on 2 cores took
# 71-79 s at 2 threads (OpenMP threads sleeping between regions, lee's default) and 40-44 s at 1; 2
# spinning threads 34-37 s on an idle machine and several times slower with another process on a
# core. More cores serve more models at once instead (``[engine] workers``; ``data_parallel``).
PROXY_CPU_THREADS = 1


def run_stream(stream: DownstreamStream, injection: Injection | None, *, fusion: str = "concat",
               cfg: ProxyConfig | None = None, seed: int = 0, n_windows: int = 10,
               device: torch.device | str = "cpu", progress: bool = False, keep_model: bool = False,
               desc: str = "proxy", data_parallel: int = 1) -> StreamRun:
    """Train the proxy model window by window; each window is scored before it is trained on.

    With ``data_parallel`` N > 1 every window's training batches are split across N worker
    processes (:mod:`lee.evaluator.parallel`) whose gradients are averaged each step, so the model
    follows the same path as here, up to the order of float summation.
    """
    cfg = cfg or ProxyConfig()
    device = torch.device(device)
    bounds = stream.window_bounds(n_windows)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ProxyCTR(stream.cardinalities, cfg, injection, fusion, slots=stream.slots).to(device)
    window_events = bounds[0][1] - bounds[0][0]
    rows = rep_rows_for(stream, injection)
    training = training_picks(cfg, window_events)
    t0 = time.perf_counter()
    if data_parallel > 1:
        from lee.evaluator.parallel import stream_data_parallel  # the parallel module builds on this one

        scores, trained, where = stream_data_parallel(model, stream.x, stream.y, rows, bounds, cfg, seed=seed,
                                                      world_size=data_parallel, device=device)
        training = {**training, "data_parallel": data_parallel, "data_parallel_workers": where}
    else:
        bar = tqdm(total=bounds[-2][1], desc=desc, unit="ev", unit_scale=True, disable=not progress, leave=False)
        with torch_threads(PROXY_CPU_THREADS, device):
            scores, trained = stream_windows(model, stream.x, stream.y, rows, bounds, cfg, seed=seed,
                                             device=device, on_batch=bar.update)
        bar.close()
    seconds = time.perf_counter() - t0
    return finish_run(StreamRun, stream, scores, bounds, seed=seed, seconds=seconds, samples_trained=trained,
                      model=model if keep_model else None, training=training)


def stream_windows(model: ProxyCTR, x: torch.Tensor, y: torch.Tensor,
                   rows: list[torch.Tensor], bounds: list[tuple[int, int]], cfg: ProxyConfig, *, seed: int,
                   device: torch.device, rank: int = 0, world_size: int = 1,
                   sync_gradients: Callable[[], None] | None = None,
                   on_batch: Callable[[int], Any] | None = None) -> tuple[np.ndarray, int]:
    """The test-then-train loop: score window t with ``model``, then train on it, and so on.

    In a data-parallel worker, worker ``rank`` of ``world_size`` draws the same shuffle as every
    other worker (same seed) and trains on its contiguous shard of each global batch, with the loss
    summed over the shard and divided by the global batch size over ``world_size``;
    ``sync_gradients`` then averages the workers' gradients between the backward pass and the step,
    so that every worker steps with the global batch's mean gradient.
    Only rank 0 scores; other ranks return an empty array. Returns (scores of windows 1..W-1 as
    logits, samples trained on across all workers).
    """
    window_events = bounds[0][1] - bounds[0][0]
    opts = proxy_optimizers(model, cfg, window_events)
    loss_fn = nn.BCEWithLogitsLoss()
    fusion_params = [p_ for p_ in model.fusion.parameters()] if cfg.fusion_l2 > 0 else []
    gen = torch.Generator().manual_seed(seed)
    test_lo = bounds[1][0]
    scores = np.empty(bounds[-1][1] - test_lo if rank == 0 else 0, np.float32)
    trained = 0
    for w, (lo, hi) in enumerate(bounds):
        if w > 0 and rank == 0:
            scores[lo - test_lo:hi - test_lo] = score(model, x, rows, lo, hi, device)
        if w == len(bounds) - 1:
            break
        perm = torch.cat([lo + torch.randperm(hi - lo, generator=gen) for _ in range(cfg.epochs_per_window)])
        batch = cfg.batch_for(hi - lo)
        for a in range(0, perm.numel(), batch):
            idx = perm[a:a + batch]
            mine = idx if world_size == 1 else idx.tensor_split(world_size)[rank]
            logit = model(x[mine].to(device), [r[mine].to(device) for r in rows])
            if world_size == 1:
                loss = loss_fn(logit, y[mine].to(device))
            else:  # this shard's share of the global batch's mean loss, times world_size (workers average)
                loss = nn.functional.binary_cross_entropy_with_logits(logit, y[mine].to(device), reduction="sum")
                loss = loss * (world_size / idx.numel())
            if fusion_params:
                loss = loss + cfg.fusion_l2 * sum((p_ ** 2).sum() for p_ in fusion_params)
            optimizer_step(opts, loss, sync_gradients)
            trained += idx.numel()
            if on_batch is not None:
                on_batch(idx.numel())
    return scores, trained


R = TypeVar("R", bound=StreamRun)


def finish_run(cls: type[R], stream: DownstreamStream, scores: np.ndarray, bounds: list[tuple[int, int]],
               **fields: Any) -> R:
    """A run of type ``cls`` with its per-window and headline metrics computed from ``scores``."""
    test_lo = bounds[1][0]
    y_test = stream.y[test_lo:].numpy()
    test_bounds = [(a - test_lo, b - test_lo) for a, b in bounds[1:]]
    wm = window_metrics(y_test, scores, stream.user_row[test_lo:], test_bounds)
    probs = 1.0 / (1.0 + np.exp(-scores.astype(np.float64)))
    return cls(test_lo=test_lo, scores=scores, window_edges=bounds, window_auc=wm.auc, auc=wm.headline_auc,
               gauc=wm.headline_gauc, logloss=log_loss(y_test, probs), auc_pooled=_safe_auc(y_test, scores),
               window_gauc=wm.gauc, window_logloss=wm.logloss, window_pred_ctr=wm.pred_ctr,
               calibration=float(probs.mean() / y_test.mean()) if y_test.sum() > 0 else float("nan"), **fields)
