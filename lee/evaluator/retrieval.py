"""The retrieval usage: a two-tower retriever whose towers add an adapter over UR and IR to
learned id embeddings, trained with InfoNCE over in-batch negatives.

Score = cosine of the user and item vectors. Scored like the CTR proxies by AUC on every test
exposure (per window), and as a retriever by Recall@K and NDCG@K of each test click's item among
all items of the stream (exact inner-product search with faiss).

The baseline is the same model with a learned constant in place of the representation (the
adapters then add one shared offset), so that a representation's ΔAUC is what its content adds to
id embeddings, and a random snapshot — extra inputs with nothing in them — adds no structure the
baseline lacks. The adapters' output enters times a learned scale that starts at 0.1, as in
``concat`` fusion.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lee.errors import ConfigError
from lee.evaluator.data import DownstreamStream
from lee.evaluator.inject import Injection, lookup_rows
from lee.evaluator.models import ProxyConfig, RepLookup
from lee.evaluator.stream import StreamRun, finish_run
from lee.nn.optim import make_optimizers, optimizer_step
from lee.results import register

TEMPERATURE = 0.1
RETRIEVAL_K = (10, 50)
RETRIEVAL_BATCH = 512          # clicks per InfoNCE batch (the in-batch negatives)
RETRIEVAL_SPARSE_LR = 0.1      # SparseAdam on the id embeddings unless ProxyConfig.sparse_lr is given


class TwoTower(nn.Module):
    """Learned user and item id embeddings plus adapters (MLPs) over the injected user and item tables."""

    def __init__(self, stream: DownstreamStream, cfg: ProxyConfig, injection: Injection | None, out_dim: int = 32):
        super().__init__()
        self.user_emb = nn.Embedding(len(stream.user_ids), out_dim, sparse=True)
        self.item_emb = nn.Embedding(len(stream.item_ids), out_dim, sparse=True)
        nn.init.normal_(self.user_emb.weight, std=0.1)
        nn.init.normal_(self.item_emb.weight, std=0.1)
        self.reps = RepLookup(injection) if injection is not None else None
        if injection is not None:
            kinds = [t.kind.entity for t in injection.tables]
            if sorted(kinds) != ["item", "user"]:
                raise ConfigError("retrieval needs one user table and one item table (usage 'UR+IR' or 'CR')")
            self.user_slot, self.item_slot = kinds.index("user"), kinds.index("item")
            d_u, d_i = injection.tables[self.user_slot].dim, injection.tables[self.item_slot].dim
            self.user_adapter = nn.Sequential(nn.Linear(d_u, 64), nn.ReLU(), nn.Linear(64, out_dim))
            self.item_adapter = nn.Sequential(nn.Linear(d_i, 64), nn.ReLU(), nn.Linear(64, out_dim))
            self.rep_scale = nn.Parameter(torch.full((2,), 0.1))

    def users(self, user_row: torch.Tensor, rep_rows: list[torch.Tensor]) -> torch.Tensor:
        v = self.user_emb(user_row)
        if self.reps is not None:
            v = v + self.rep_scale[0] * self.user_adapter(self.reps(rep_rows)[self.user_slot])
        return F.normalize(v, dim=1)  # (B, out)

    def items(self, item_row: torch.Tensor, rep_rows: list[torch.Tensor]) -> torch.Tensor:
        v = self.item_emb(item_row)
        if self.reps is not None:
            v = v + self.rep_scale[1] * self.item_adapter(self.reps(rep_rows)[self.item_slot])
        return F.normalize(v, dim=1)  # (B, out)


@register("retrieval-run")
@dataclass
class RetrievalRun(StreamRun):
    recall: dict[int, float] = field(default_factory=dict)
    ndcg: dict[int, float] = field(default_factory=dict)


def _rows(stream: DownstreamStream, injection: Injection | None, user_row: np.ndarray,
          item_row: np.ndarray) -> list[torch.Tensor]:
    if injection is None:
        return []
    return [torch.from_numpy(lookup_rows(t, user_row if t.kind.entity == "user" else item_row))
            for t in injection.tables]


@torch.no_grad()
def _retrieval_hits(model: TwoTower, stream: DownstreamStream, injection: Injection | None, lo: int, hi: int,
                    items: np.ndarray, device: torch.device, ks: tuple[int, ...]) -> tuple[np.ndarray, int]:
    """Rank (0-based, or -1 beyond max K) of each clicked item of events lo:hi among ``items``."""
    clicked = lo + np.flatnonzero(stream.y[lo:hi].numpy() > 0)
    if clicked.size == 0:
        return np.zeros(0, np.int64), 0
    model.eval()
    item_vec = model.items(torch.from_numpy(items).to(device), [r.to(device) for r in
                           _rows(stream, injection, np.zeros_like(items), items)]).cpu().numpy()
    users = np.unique(stream.user_row[clicked])
    user_vec = model.users(torch.from_numpy(users).to(device), [r.to(device) for r in
                           _rows(stream, injection, users, np.zeros_like(users))]).cpu().numpy()
    model.train()
    index = faiss.IndexFlatIP(item_vec.shape[1])
    index.add(np.ascontiguousarray(item_vec, dtype=np.float32))
    k = min(max(ks), items.size)
    _, top = index.search(np.ascontiguousarray(user_vec, dtype=np.float32), k)  # (U, k) positions in items
    pos_of_user = {int(u): n for n, u in enumerate(users)}
    item_pos = np.searchsorted(items, stream.item_row[clicked])
    ranks = np.full(clicked.size, -1, np.int64)
    for n, (u, ip) in enumerate(zip(stream.user_row[clicked], item_pos)):
        hit = np.flatnonzero(top[pos_of_user[int(u)]] == ip)
        if hit.size:
            ranks[n] = hit[0]
    return ranks, clicked.size


def run_retrieval(stream: DownstreamStream, injection: Injection | None, *, cfg: ProxyConfig | None = None,
                  seed: int = 0, n_windows: int = 10, device: torch.device | str = "cpu",
                  ks: tuple[int, ...] = RETRIEVAL_K) -> RetrievalRun:
    """Streaming test-then-train of the two-tower retriever; InfoNCE over each batch's clicks."""
    cfg = cfg or ProxyConfig()
    device = torch.device(device)
    bounds = stream.window_bounds(n_windows)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TwoTower(stream, cfg, injection).to(device)
    sparse_lr = cfg.sparse_lr if cfg.sparse_lr is not None else RETRIEVAL_SPARSE_LR
    opts = make_optimizers(model, cfg.lr, sparse_lr)
    ur_all = torch.from_numpy(stream.user_row)
    ir_all = torch.from_numpy(stream.item_row)
    rows_all = _rows(stream, injection, stream.user_row, stream.item_row)
    items = np.unique(stream.item_row)
    gen = torch.Generator().manual_seed(seed)
    test_lo = bounds[1][0]
    scores = np.empty(len(stream) - test_lo, np.float32)
    all_ranks: list[np.ndarray] = []
    trained = 0
    t0 = time.perf_counter()
    for w, (lo, hi) in enumerate(bounds):
        if w > 0:
            model.eval()
            with torch.no_grad():
                for a in range(lo, hi, 65_536):
                    b = min(a + 65_536, hi)
                    rr = [r[a:b].to(device) for r in rows_all]
                    u = model.users(ur_all[a:b].to(device), rr)
                    i = model.items(ir_all[a:b].to(device), rr)
                    scores[a - test_lo:b - test_lo] = ((u * i).sum(1) / TEMPERATURE).cpu().numpy()
            model.train()
            ranks, _ = _retrieval_hits(model, stream, injection, lo, hi, items, device, ks)
            all_ranks.append(ranks)
        if w == len(bounds) - 1:
            break
        clicks = lo + np.flatnonzero(stream.y[lo:hi].numpy() > 0)
        perm = torch.from_numpy(clicks)[torch.randperm(clicks.size, generator=gen)]
        for a in range(0, perm.numel(), RETRIEVAL_BATCH):
            idx = perm[a:a + RETRIEVAL_BATCH]
            if idx.numel() < 2:
                continue
            rr = [r[idx].to(device) for r in rows_all]
            u = model.users(ur_all[idx].to(device), rr)
            i = model.items(ir_all[idx].to(device), rr)
            logits = u @ i.T / TEMPERATURE                                   # (B, B): in-batch negatives
            loss = F.cross_entropy(logits, torch.arange(idx.numel(), device=device))
            optimizer_step(opts, loss)
            trained += idx.numel()
    seconds = time.perf_counter() - t0
    ranks = np.concatenate(all_ranks) if all_ranks else np.zeros(0, np.int64)
    recall = {k: float(((ranks >= 0) & (ranks < k)).mean()) if ranks.size else float("nan") for k in ks}
    gain = 1.0 / np.log2(np.maximum(ranks, 0) + 2.0)  # one relevant item per click: DCG = IDCG * gain
    ndcg = {k: float(np.where((ranks >= 0) & (ranks < k), gain, 0.0).mean()) if ranks.size else float("nan")
            for k in ks}
    return finish_run(RetrievalRun, stream, scores, bounds, seed=seed, seconds=seconds, samples_trained=trained,
                      recall=recall, ndcg=ndcg,
                      training={"clicks_per_batch": RETRIEVAL_BATCH, "sparse_optimizer": "adam",
                                "sparse_lr": sparse_lr})
