"""Data-parallel training of one proxy model: a stream too large for one worker, split across N.

``EvalConfig.data_parallel`` N > 1 makes :func:`lee.evaluator.stream.run_stream` start N worker
processes (``torch.multiprocessing``, spawn) that meet through a file rendezvous on this machine
and form a ``torch.distributed`` process group: gloo on CPU, NCCL on CUDA when every worker has
a GPU of its own. Every worker holds a full copy of the model, draws the same shuffle of each
window, and trains on its contiguous shard of every global batch (per-worker batch = global batch
/ N); after each backward pass :func:`average_gradients` averages the gradients across workers,
and each worker then takes the same optimiser step. The model after each step is therefore the
one-process model after the same global batch, up to the order in which floats are summed
(``tests/test_data_parallel.py``).

Why not DistributedDataParallel: with the sparse gradients of ``nn.Embedding(sparse=True)`` on
gloo, DDP's reducer all-reduces each sparse bucket on gloo's threads while the backward pass still
runs, and with torch 2.13 on CPU this corrupted the heap of a worker about one run in eight
(``malloc(): unaligned tcache chunk detected`` or ``terminate called without an active
exception`` inside ``backward``, the worker killed by SIGABRT; measured on the tiny world, 2 of
16 runs). :func:`average_gradients` runs after the backward pass, in the worker's own thread,
with dense collectives only: one all-reduce of every dense gradient flattened into one buffer,
and per sparse table an all-gather of the rows each worker touched (padded to the largest count,
since all-gather needs equal sizes), summed by coalescing. It costs the overlap of communication
with the backward pass, which the proxy's small dense part barely needs.

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

from lee.evaluator.models import ProxyConfig, ProxyCTR
from lee.evaluator.stream import stream_windows
from lee.nn.optim import split_params


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


def average_gradients(model: torch.nn.Module, world_size: int) -> None:
    """Replace every trainable parameter's gradient by its mean over the ``world_size`` workers.

    Collective: every worker calls it at the same step, with the same model. A parameter a worker's
    shard did not reach (gradient ``None``) counts as a zero gradient there, so the collectives
    always match. Dense gradients travel in one flattened all-reduce; each sparse embedding
    gradient as an all-gather of the (row, value) pairs of every worker, padded to the largest
    count, then coalesced (rows touched by several workers summed) and divided by ``world_size``.
    """
    sparse, dense = split_params(model)
    if dense:
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in dense])
        dist.all_reduce(flat)
        flat /= world_size
        at = 0
        for p in dense:
            p.grad = flat[at:at + p.numel()].view_as(p).clone()
            at += p.numel()
    for p in sparse:
        mine = p.grad.coalesce() if p.grad is not None else torch.sparse_coo_tensor(
            torch.zeros((1, 0), dtype=torch.long, device=p.device),
            torch.zeros((0, *p.shape[1:]), dtype=p.dtype, device=p.device), p.shape)
        rows, values = mine.indices()[0], mine.values()
        counts = [torch.zeros(1, dtype=torch.long, device=p.device) for _ in range(world_size)]
        dist.all_gather(counts, torch.tensor([rows.numel()], dtype=torch.long, device=p.device))
        sizes = [int(c) for c in counts]
        most = max(sizes)
        pad = most - rows.numel()
        rows_out = [torch.empty(most, dtype=torch.long, device=p.device) for _ in range(world_size)]
        vals_out = [torch.empty((most, *p.shape[1:]), dtype=p.dtype, device=p.device) for _ in range(world_size)]
        dist.all_gather(rows_out, torch.cat([rows, rows.new_zeros(pad)]))
        dist.all_gather(vals_out, torch.cat([values, values.new_zeros((pad, *p.shape[1:]))]))
        all_rows = torch.cat([r[:n] for r, n in zip(rows_out, sizes)])
        all_vals = torch.cat([v[:n] for v, n in zip(vals_out, sizes)])
        p.grad = torch.sparse_coo_tensor(all_rows.unsqueeze(0), all_vals / world_size, p.shape).coalesce()


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
        scores, _ = stream_windows(model, job.x, job.y, job.rows, job.bounds, job.cfg, seed=job.seed,
                                   device=device, rank=rank, world_size=world_size,
                                   sync_gradients=lambda: average_gradients(model, world_size))
        if rank == 0:
            job.scores.copy_(torch.from_numpy(scores))
            with torch.no_grad():
                for mine, out in zip(model.parameters(), shared.parameters()):
                    out.copy_(mine.detach().to(out.device))
        dist.barrier()
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
