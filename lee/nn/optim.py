"""Optimiser plumbing shared by the upstream model and the proxy models.

Sparse id embeddings train with SparseAdam (only the rows a batch touches), everything else with
Adam; one step applies both.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def split_params(model: nn.Module) -> tuple[list[torch.Tensor], list[nn.Parameter]]:
    """(sparse embedding weights for SparseAdam, every other trainable parameter for Adam)."""
    sparse = [m.weight for m in model.modules() if isinstance(m, nn.Embedding) and m.sparse]
    ids = {id(p) for p in sparse}
    return sparse, [p for p in model.parameters() if id(p) not in ids and p.requires_grad]


def make_optimizers(model: nn.Module, lr: float, sparse_lr: float) -> list[torch.optim.Optimizer]:
    """Adam over the dense parameters, plus SparseAdam over sparse embeddings when there are any."""
    sparse, dense = split_params(model)
    opts: list[torch.optim.Optimizer] = [torch.optim.Adam(dense, lr=lr)]
    if sparse:
        opts.append(torch.optim.SparseAdam(sparse, lr=sparse_lr))
    return opts


def optimizer_step(opts: list[torch.optim.Optimizer], loss: torch.Tensor,
                   before_step: Callable[[], None] | None = None) -> None:
    """One optimisation step of ``loss`` through every optimiser; ``before_step`` runs between the
    backward pass and the step (a data-parallel worker averages its gradients there)."""
    for opt in opts:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    if before_step is not None:
        before_step()
    for opt in opts:
        opt.step()
