"""Streaming test-then-train: train on window t, score window t+1, over the whole downstream stream.

The stream is already a set of tensors; batches are index slices of them (no DataLoader, no
per-sample Python), which is what keeps a proxy model above a million samples a minute on CPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from lee.evaluator.data import DownstreamStream
from lee.evaluator.inject import Injection, lookup_rows
from lee.evaluator.models import ProxyConfig, ProxyCTR
from lee.evaluator.stats import gauc
from lee.metrics import log_loss, roc_auc
from lee.nn.optim import make_optimizers, optimizer_step
from lee.results import register


@register("stream-run")
@dataclass
class StreamRun:
    """One proxy model's test-then-train pass: scores on every test event and per-window metrics."""

    seed: int
    test_lo: int                      # first scored event (start of window 1)
    scores: np.ndarray                # (N - test_lo,) logits
    window_edges: list[tuple[int, int]]
    window_auc: list[float]
    auc: float
    gauc: float
    logloss: float
    seconds: float
    samples_trained: int
    model: nn.Module | None = field(default=None, repr=False, metadata={"save": False})  # not saved

    @property
    def samples_per_second(self) -> float:
        return self.samples_trained / max(self.seconds, 1e-9)


def rep_rows_for(stream: DownstreamStream, injection: Injection | None) -> list[torch.Tensor]:
    """Per-event row of every injected table (absent ids point at the 'missing' row)."""
    if injection is None:
        return []
    return [torch.from_numpy(lookup_rows(t, stream.user_row if t.kind.entity == "user" else stream.item_row))
            for t in injection.tables]


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


def run_stream(stream: DownstreamStream, injection: Injection | None, *, fusion: str = "concat",
               cfg: ProxyConfig | None = None, seed: int = 0, n_windows: int = 10,
               device: torch.device | str = "cpu", progress: bool = False, keep_model: bool = False,
               desc: str = "proxy") -> StreamRun:
    """Train the proxy model window by window; each window is scored before it is trained on."""
    cfg = cfg or ProxyConfig()
    device = torch.device(device)
    bounds = stream.window_bounds(n_windows)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ProxyCTR(stream.cardinalities, cfg, injection, fusion, slots=stream.slots).to(device)
    opts = make_optimizers(model, cfg.lr, cfg.sparse_lr)
    loss_fn = nn.BCEWithLogitsLoss()
    fusion_params = [p_ for p_ in model.fusion.parameters()] if cfg.fusion_l2 > 0 else []
    rows = rep_rows_for(stream, injection)
    x, y = stream.x, stream.y
    gen = torch.Generator().manual_seed(seed)
    test_lo = bounds[1][0]
    scores = np.empty(len(stream) - test_lo, np.float32)
    trained = 0
    t0 = time.perf_counter()
    bar = tqdm(total=bounds[-2][1], desc=desc, unit="ev", unit_scale=True, disable=not progress, leave=False)
    for w, (lo, hi) in enumerate(bounds):
        if w > 0:
            scores[lo - test_lo:hi - test_lo] = score(model, x, rows, lo, hi, device)
        if w == len(bounds) - 1:
            break
        perm = torch.cat([lo + torch.randperm(hi - lo, generator=gen) for _ in range(cfg.epochs_per_window)])
        batch = cfg.batch_for(hi - lo)
        for a in range(0, perm.numel(), batch):
            idx = perm[a:a + batch]
            logit = model(x[idx].to(device), [r[idx].to(device) for r in rows])
            loss = loss_fn(logit, y[idx].to(device))
            if fusion_params:
                loss = loss + cfg.fusion_l2 * sum((p_ ** 2).sum() for p_ in fusion_params)
            optimizer_step(opts, loss)
            trained += idx.numel()
            bar.update(idx.numel())
    bar.close()
    seconds = time.perf_counter() - t0
    y_test = y[test_lo:].numpy()
    window_auc = [_safe_auc(y[lo:hi].numpy(), scores[lo - test_lo:hi - test_lo]) for lo, hi in bounds[1:]]
    probs = 1.0 / (1.0 + np.exp(-scores.astype(np.float64)))
    return StreamRun(
        seed=seed, test_lo=test_lo, scores=scores, window_edges=bounds, window_auc=window_auc,
        auc=_safe_auc(y_test, scores), gauc=gauc(stream.user_row[test_lo:], y_test, scores),
        logloss=log_loss(y_test, probs), seconds=seconds, samples_trained=trained,
        model=model if keep_model else None,
    )
