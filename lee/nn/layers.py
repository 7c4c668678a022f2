"""Building blocks: the DCN-v2 cross network and a plain MLP, both able to expose every layer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class CrossNetV2(nn.Module):
    """DCN-v2 cross network: ``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l`` (full-rank W_l).

    Explicit bounded-degree feature interactions; layer ``l``'s output is the (l+1)-degree cross.
    """

    def __init__(self, in_dim: int, n_layers: int) -> None:
        super().__init__()
        linears = [nn.Linear(in_dim, in_dim) for _ in range(n_layers)]
        for layer in linears:
            nn.init.xavier_uniform_(layer.weight, gain=0.5)
            nn.init.zeros_(layer.bias)
        self.layers = nn.ModuleList(linears)

    def forward(self, x0: torch.Tensor, taps: list[torch.Tensor] | None = None) -> torch.Tensor:
        x = x0  # (B, D)
        for layer in self.layers:
            x = x0 * layer(x) + x  # (B, D)
            if taps is not None:
                taps.append(x)
        return x


class MLP(nn.Module):
    """Linear + ReLU stack; ``taps`` collects each hidden layer's output."""

    def __init__(self, in_dim: int, hidden: Sequence[int], *, dropout: float = 0.0) -> None:
        super().__init__()
        dims = [in_dim, *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out_dim = dims[-1]

    def forward(self, x: torch.Tensor, taps: list[torch.Tensor] | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = self.dropout(torch.relu(layer(x)))  # (B, H_l)
            if taps is not None:
                taps.append(x)
        return x
