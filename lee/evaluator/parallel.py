"""Data-parallel training of one proxy model: a stream too large for one worker, split across N.

``EvalConfig.data_parallel`` N > 1 makes :func:`lee.evaluator.stream.run_stream` start N worker
processes (``torch.multiprocessing``, spawn) that meet through a file rendezvous on this machine
and form a ``torch.distributed`` process group: gloo on CPU, NCCL on CUDA when every worker has
a GPU of its own. Every worker holds a full copy of the model, draws the same shuffle of each
window, and trains on its contiguous shard of every global batch (per-worker batch = global batch
/ N); DistributedDataParallel averages the gradients after each backward pass, the sparse
embedding gradients included (gloo all-reduces sparse tensors), and each worker then takes the
same optimiser step. The model after each step is therefore the one-process model after the same
global batch, up to the order in which floats are summed (``tests/test_data_parallel.py``).

Why DDP and not a hand-written all-reduce of the gradients: DDP supports the sparse gradients of
``nn.Embedding(sparse=True)`` on gloo (one bucket per sparse table, dense parameters bucketed and
reduced while the backward pass still runs), and the sparse optimisers (Adagrad, SparseAdam)
only ever see the averaged gradient, which they coalesce as they would one process's.

Rank 0 scores each test window before the workers train on it (scoring is cheap beside training)
and writes the scores, and at the end its trained parameters, into shared memory the caller
reads. Randomness: the shuffle comes from the run's seed on every worker; ``rep_dropout`` draws
its masks from each worker's own generator, so with dropout on a data-parallel run is an equally
valid draw, not the same numbers (the default is no dropout).

On a Ray cluster the same :func:`train_worker` runs in one Ray task per worker (one task per
rank, ``init_method`` a ``tcp://HOST:PORT`` on rank 0's node instead of the file here); that path
is documented, not built.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from lee.evaluator.models import ProxyConfig, ProxyCTR
from lee.evaluator.stream import stream_windows


@dataclass
class ParallelJob:
    """What every worker needs: the model to start from, the stream's tensors and the schedule.

    Tensors travel to spawned workers through shared memory (torch's multiprocessing pickler), so
    the stream is not copied per worker. ``scores`` and the model's parameters are where rank 0
    writes its results.
    """

    model: ProxyCTR
    x: torch.Tensor
    y: torch.Tensor
    rows: list[torch.Tensor]
    bounds: list[tuple[int, int]]
    cfg: ProxyConfig
    seed: int
    device: str
    scores: torch.Tensor      # (events after window 0,) float32, shared; rank 0 fills it
    threads: int              # torch threads per worker


def backend_for(device: torch.device, world_size: int) -> str:
    """NCCL when the workers run on CUDA and each has a GPU of its own, gloo otherwise."""
    if device.type == "cuda" and torch.cuda.device_count() >= world_size and dist.is_nccl_available():
        return "nccl"
    return "gloo"


def worker_device(device: torch.device, rank: int) -> torch.device:
    """Rank ``rank``'s device: its own GPU when there are enough, the given device otherwise."""
    if device.type == "cuda" and torch.cuda.device_count() > 1:
        return torch.device("cuda", rank % torch.cuda.device_count())
    return device


def train_worker(rank: int, world_size: int, init_method: str, job: ParallelJob) -> None:
    """One worker: join the process group, train its shard of every batch, rank 0 scores and
    writes back. The function a Ray task per rank would run on a cluster."""
    torch.set_num_threads(job.threads)
    device = worker_device(torch.device(job.device), rank)
    dist.init_process_group(backend_for(torch.device(job.device), world_size), init_method=init_method,
                            rank=rank, world_size=world_size)
    try:
        # a private copy of the parameters; the frozen representation tables (buffers) stay shared
        shared = job.model
        model = copy.deepcopy(shared, memo={id(b): b for b in shared.buffers()}).to(device)
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                                  forward_sync_buffers=False)
        scores, _ = stream_windows(model, ddp, job.x, job.y, job.rows, job.bounds, job.cfg, seed=job.seed,
                                   device=device, rank=rank, world_size=world_size)
        if rank == 0:
            job.scores.copy_(torch.from_numpy(scores))
            with torch.no_grad():
                for mine, out in zip(model.parameters(), shared.parameters()):
                    out.copy_(mine.detach().to(out.device))
    finally:
        dist.destroy_process_group()


def stream_data_parallel(model: ProxyCTR, x: torch.Tensor, y: torch.Tensor, rows: list[torch.Tensor],
                         bounds: list[tuple[int, int]], cfg: ProxyConfig, *, seed: int, world_size: int,
                         device: torch.device) -> tuple[np.ndarray, int]:
    """:func:`~lee.evaluator.stream.stream_windows` over ``world_size`` worker processes.

    ``model`` is trained in place (rank 0's parameters are written back into it). Returns the
    logits of windows 1..W-1 and the samples trained on. Each worker gets an equal share of this
    process's torch threads (at least one).
    """
    home = model.to("cpu").share_memory()
    scores = torch.empty(bounds[-1][1] - bounds[1][0], dtype=torch.float32).share_memory_()
    job = ParallelJob(home, x, y, rows, bounds, cfg, seed, str(device), scores,
                      threads=max(1, torch.get_num_threads() // world_size))
    with tempfile.TemporaryDirectory(prefix="lee-ddp-") as tmp:
        init_method = Path(tmp, "rendezvous").as_uri()
        mp.start_processes(train_worker, args=(world_size, init_method, job), nprocs=world_size,
                           join=True, start_method="spawn")
    model.to(device)
    trained = sum((hi - lo) * cfg.epochs_per_window for lo, hi in bounds[:-1])
    return scores.numpy(), trained
