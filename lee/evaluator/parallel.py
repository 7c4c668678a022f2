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

On a Ray cluster (a job's unit running as a Ray task, ``--engine ray``) the same
:func:`train_worker` runs as one Ray task per rank, gang-scheduled by a placement group across the
cluster's nodes, meeting at ``tcp://IP:PORT`` on rank 0's node instead of the file here
(:func:`ray_data_parallel`); every rank reads the stream from Ray's object store.
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lee.errors import ConfigError
from lee.evaluator.models import ProxyConfig, ProxyCTR
from lee.evaluator.stream import stream_windows
from lee.nn.optim import split_params


@dataclass
class ParallelJob:
    """What every worker needs: the model to start from, the stream's tensors and the schedule.

    Tensors travel to spawned workers through shared memory (torch's multiprocessing pickler), so
    the stream is not copied per worker; to Ray tasks through the object store (one copy per node).
    """

    model: ProxyCTR
    x: torch.Tensor
    y: torch.Tensor
    rows: list[torch.Tensor]
    bounds: list[tuple[int, int]]
    cfg: ProxyConfig
    seed: int
    device: str
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


def train_worker(rank: int, world_size: int, init_method: str,
                 job: ParallelJob) -> tuple[np.ndarray, list[torch.Tensor]] | None:
    """One worker: join the process group, train its shard of every batch. Rank 0 also scores;
    it returns (scores of windows 1..W-1, its trained parameters on the CPU), the others None."""
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
        out = (scores, [p.detach().cpu() for p in model.parameters()]) if rank == 0 else None
        dist.barrier()
        return out
    finally:
        dist.destroy_process_group()


def _spawned_worker(rank: int, world_size: int, init_method: str, job: ParallelJob,
                    scores_out: torch.Tensor) -> None:
    """:func:`train_worker` in a process spawned on this machine: rank 0 writes its scores and its
    parameters into the shared memory the parent reads (``job.model``'s parameters are shared)."""
    out = train_worker(rank, world_size, init_method, job)
    if out is not None:
        scores, params = out
        scores_out.copy_(torch.from_numpy(scores))
        with torch.no_grad():
            for mine, home in zip(params, job.model.parameters()):
                home.copy_(mine)


def inside_ray_task() -> bool:
    """Whether this code runs as a Ray task (a LEE unit on ``--engine ray``): then the
    data-parallel workers are Ray tasks too, placed by the cluster, instead of local processes."""
    import sys

    if "ray" not in sys.modules:
        return False
    import ray

    return bool(ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE)


def _rendezvous_address() -> tuple[str, int]:
    """(this node's IP, a free TCP port on it): where rank 0, placed on the same bundle, listens."""
    import socket

    import ray

    with socket.socket() as sock:
        sock.bind(("", 0))
        port = int(sock.getsockname()[1])
    return ray.util.get_node_ip_address(), port


def ray_data_parallel(job: ParallelJob, world_size: int) -> tuple[np.ndarray, list[torch.Tensor]]:
    """:func:`train_worker` as ``world_size`` Ray tasks, one per rank, gang-scheduled through a
    placement group (one bundle of one CPU, and one GPU on CUDA, per rank; ``SPREAD`` over the
    cluster's nodes where it can). Rank 0's node is found first (a task on bundle 0 returns its IP and
    a free port), and the ranks meet at ``tcp://IP:PORT``. A rank that fails fails the unit: the
    engine records the job's other units, and the next run re-runs this one.

    The calling task waits in ``ray.get`` and so lends the cluster its own CPU meanwhile. Refused
    up front when the cluster has fewer CPUs (or GPUs) than ranks, instead of waiting forever.
    """
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    cuda = torch.device(job.device).type == "cuda"
    have = ray.cluster_resources()
    if have.get("CPU", 0) < world_size or (cuda and have.get("GPU", 0) < world_size):
        raise ConfigError(f"data_parallel = {world_size} needs {world_size} CPUs"
                          f"{f' and {world_size} GPUs' if cuda else ''} on the Ray cluster, which has "
                          f"{have.get('CPU', 0):g} CPUs and {have.get('GPU', 0):g} GPUs; lower data_parallel")
    bundle: dict[str, float] = {"CPU": 1.0, **({"GPU": 1.0} if cuda else {})}
    group = placement_group([bundle] * world_size, strategy="SPREAD")
    try:
        ray.get(group.ready())

        def on(rank: int) -> PlacementGroupSchedulingStrategy:
            return PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=rank)

        options = {"num_cpus": 1, "num_gpus": 1 if cuda else 0, "max_retries": 0}
        host, port = ray.get(ray.remote(_rendezvous_address).options(
            num_cpus=1, scheduling_strategy=on(0)).remote())
        shared = ray.put(dataclasses.replace(job, threads=1))
        rank_task = ray.remote(train_worker)
        outs = ray.get([rank_task.options(**options, scheduling_strategy=on(r)).remote(
            r, world_size, f"tcp://{host}:{port}", shared) for r in range(world_size)])
    finally:
        remove_placement_group(group)
    first = outs[0]
    assert first is not None
    return first


def stream_data_parallel(model: ProxyCTR, x: torch.Tensor, y: torch.Tensor, rows: list[torch.Tensor],
                         bounds: list[tuple[int, int]], cfg: ProxyConfig, *, seed: int, world_size: int,
                         device: torch.device) -> tuple[np.ndarray, int, str]:
    """:func:`~lee.evaluator.stream.stream_windows` over ``world_size`` workers.

    The workers are processes spawned on this machine, each with an equal share of this process's
    torch threads (at least one); or, when this runs as a Ray task (a unit of a job on
    ``--engine ray``), Ray tasks placed by the cluster (:func:`ray_data_parallel`). ``model`` is
    trained in place (rank 0's parameters are written back into it). Returns the logits of windows
    1..W-1, the samples trained on, and where the workers ran (recorded with the run).
    """
    if inside_ray_task():
        job = ParallelJob(model.to("cpu"), x, y, rows, bounds, cfg, seed, str(device), threads=1)
        scores_np, params = ray_data_parallel(job, world_size)
        with torch.no_grad():
            for home, trained_param in zip(model.parameters(), params):
                home.copy_(trained_param)
        where = f"{world_size} Ray tasks"
    else:
        home = model.to("cpu").share_memory()
        scores = torch.empty(bounds[-1][1] - bounds[1][0], dtype=torch.float32).share_memory_()
        job = ParallelJob(home, x, y, rows, bounds, cfg, seed, str(device),
                          threads=max(1, torch.get_num_threads() // world_size))
        with tempfile.TemporaryDirectory(prefix="lee-ddp-") as tmp:
            init_method = Path(tmp, "rendezvous").as_uri()
            mp.start_processes(_spawned_worker, args=(world_size, init_method, job, scores), nprocs=world_size,
                               join=True, start_method="spawn")
        scores_np = scores.numpy()
        where = f"{world_size} local processes"
    model.to(device)
    trained = sum((hi - lo) * cfg.epochs_per_window for lo, hi in bounds[:-1])
    return scores_np, trained, where
