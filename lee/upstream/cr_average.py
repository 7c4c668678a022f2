"""Time-aware moving average of user-item cross representations (CR) per user and per item.

For each id, in event-time order::

    CR(u) <- beta(dt) * CR(u) + (1 - beta(dt)) * CR(u, i)

where ``dt`` is the time since the id's previous event and ``beta`` is non-increasing in ``dt``
(default ``exp(-dt / tau)``). An id's first event sets ``CR(u) = CR(u, i)``.

A batch is folded in without a Python loop over events: unrolling the recursion gives
``S_k = (prod_j beta_j) S_0 + sum_j (1 - beta_j) (prod_{l>j} beta_l) x_j``, and the products are
reverse cumulative sums of ``log beta`` within each id's run of events — one sort, two scans and a
scatter-add, for any pluggable ``beta``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from lee.errors import ConfigError

BetaFn = Callable[[torch.Tensor], torch.Tensor]
_LOG_FLOOR = -80.0  # exp(-80) ~ 1e-35: a product below this is zero for float32 state


@dataclass(frozen=True)
class ExpDecay:
    """beta(dt) = exp(-dt / tau): after ``tau`` seconds an old CR keeps weight 1/e."""

    tau_seconds: float = 600.0

    def __post_init__(self) -> None:
        if not self.tau_seconds > 0:
            raise ConfigError(f"tau_seconds must be positive; got {self.tau_seconds}")

    def __call__(self, dt: torch.Tensor) -> torch.Tensor:
        return torch.exp(-dt / self.tau_seconds)


@dataclass(frozen=True)
class ConstantBeta:
    """beta(dt) = b whatever dt: a plain exponential moving average over events."""

    beta: float = 0.9

    def __call__(self, dt: torch.Tensor) -> torch.Tensor:
        return torch.full_like(dt, self.beta)


class CRAverager:
    """Running per-id CR state, updated batch by batch in event-time order."""

    def __init__(self, n_ids: int, dim: int, beta: BetaFn | None = None, *, device: torch.device | str = "cpu") -> None:
        self.beta = beta or ExpDecay()
        self.state = torch.zeros(n_ids, dim, dtype=torch.float32, device=device)
        self.last_ts = torch.zeros(n_ids, dtype=torch.float64, device=device)
        self.seen = torch.zeros(n_ids, dtype=torch.bool, device=device)

    @torch.no_grad()
    def update(self, idx: torch.Tensor, ts: torch.Tensor, x: torch.Tensor) -> None:
        """Fold events ``(idx[k], ts[k], x[k])`` into the state; ``ts`` need not be sorted."""
        if idx.numel() == 0:
            return
        dev = self.state.device
        idx, ts, x = idx.to(dev).long(), ts.to(dev, torch.float64), x.to(dev, torch.float64)
        # sort by (id, time): ts first, then a stable sort by id keeps time order within an id
        o1 = torch.argsort(ts, stable=True)
        o2 = torch.argsort(idx[o1], stable=True)
        order = o1[o2]
        idx, ts, x = idx[order], ts[order], x[order]

        run_start = torch.ones_like(idx, dtype=torch.bool)
        run_start[1:] = idx[1:] != idx[:-1]
        prev_ts = torch.empty_like(ts)
        prev_ts[1:] = ts[:-1]
        prev_ts[run_start] = self.last_ts[idx[run_start]]
        dt = (ts - prev_ts).clamp_min(0.0)
        beta = self.beta(dt).clamp(0.0, 1.0)
        first_ever = run_start & ~self.seen[idx]
        beta = torch.where(first_ever, torch.zeros_like(beta), beta)

        log_beta = torch.log(beta).clamp_min(_LOG_FLOOR)
        # suffix sum of log beta within each run: sum_{l > j} log beta_l
        run_id = torch.cumsum(run_start.long(), 0) - 1
        n_runs = int(run_id[-1]) + 1
        total = torch.zeros(n_runs, dtype=torch.float64, device=dev).index_add_(0, run_id, log_beta)
        incl = torch.cumsum(log_beta, 0)
        run_offset = torch.zeros(n_runs, dtype=torch.float64, device=dev)
        starts = torch.nonzero(run_start).squeeze(1)
        run_offset[:] = incl[starts] - log_beta[starts]  # cumsum before the run
        within = incl - run_offset[run_id]               # sum_{l <= j} within run
        after = total[run_id] - within                   # sum_{l > j} within run
        w = (1.0 - beta) * torch.exp(after)               # weight of x_j in the final state

        ids_u = idx[starts]
        keep = torch.exp(total)                            # weight of the old state S_0
        new = self.state[ids_u].double() * keep[:, None]
        new.index_add_(0, run_id, w[:, None] * x)
        self.state[ids_u] = new.float()
        ends = torch.cat([starts[1:] - 1, torch.tensor([idx.numel() - 1], device=dev)])
        self.last_ts[ids_u] = ts[ends]
        self.seen[ids_u] = True

    def snapshot(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Row indices of ids seen so far, their CR state and the time of their last event."""
        rows = torch.nonzero(self.seen).squeeze(1)
        return rows, self.state[rows].clone(), self.last_ts[rows].clone()


def reference_update(state: dict[int, list[float]], last: dict[int, float],
                     events: list[tuple[int, float, list[float]]], beta: BetaFn) -> None:
    """The recursion applied one event at a time in plain Python: the slow, obvious reference."""
    for i, t, x in sorted(events, key=lambda e: e[1]):
        if i not in state:
            state[i] = list(x)
        else:
            b = float(beta(torch.tensor([t - last[i]], dtype=torch.float64))[0])
            state[i] = [b * s + (1 - b) * v for s, v in zip(state[i], x)]
        last[i] = t


__all__ = ["BetaFn", "CRAverager", "ConstantBeta", "ExpDecay", "reference_update"]
