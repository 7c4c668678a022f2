"""Where work runs: on this machine (``local``, the default: in this process, or in ``workers``
worker processes) or as tasks on a Ray cluster (``ray``).

Both engines offer the same map-over-units operations, so a job or an analysis is written once:

- :meth:`Engine.map` runs ``fn(*args)`` for every item and yields ``(index, result)``: the local
  engine in order, in this process, or with ``workers > 1`` in a pool of that many spawned worker
  processes (each with its share of the machine's threads) as they finish; the Ray engine submits
  every item as a Ray task and yields results as they finish. A task whose worker process dies
  (killed, out of memory) is retried by Ray up to ``max_retries`` times; a task that still fails
  costs only its own item: the others are yielded first, then the failure is raised.
- :meth:`Engine.put` shares one large argument (a click stream) with every task once.
- :meth:`Engine.scatter` runs ``fn(*args)`` per item where ``fn`` returns ``n_out`` parts, and
  keeps the parts where they were made (Ray's object store) for a later :meth:`Engine.map` to
  consume: the map side of a shuffle, e.g. volatility's join partitioned by id hash.

The caller (the driver) stays the only writer of anything persistent: tasks return values, they
never write the results store. Ray is imported only when a Ray engine is made, so the local path
costs nothing. On a cluster every worker must see the same paths (snapshots, datasets) as the
driver, e.g. a shared file system, and have this package installed.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.reduction import ForkingPickler
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from lee.config import ConfigModel
from lee.errors import InputError, LeeError

__all__ = ["Engine", "EngineError", "EngineSpec", "LocalEngine", "RayEngine", "make_engine", "usable_cpus"]


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity set where the OS keeps one (``taskset``, a
    container's cpuset), else the machine's count. ``os.cpu_count()`` counts the machine's, so on
    a box lent 2 of 64 cores it would give each of 2 workers 32 threads."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class EngineError(LeeError):
    """A task could not be completed by the engine (its worker died more often than retries allow)."""


class EngineSpec(ConfigModel):
    """``[engine]`` of a job file (and ``--engine``/``--address`` on the command line).

    ``kind = "local"`` runs everything on this machine: in this process (``workers = 1``, the
    default) or in a pool of ``workers`` worker processes, each given ``usable_cpus() // workers``
    threads (at least one), so that units which use one core each (small proxy models) fill the
    machine. ``kind = "ray"`` runs units as Ray tasks:
    on the cluster at ``address`` (``"auto"``: the one this machine belongs to; ``"ray://host:10001"``:
    a remote one through Ray Client), or, without an address, on a Ray instance started here with
    ``num_cpus`` CPUs (default: this machine's count) and shut down afterwards.
    """

    config_name: ClassVar[str] = "job config [engine]"

    kind: Literal["local", "ray"] = "local"
    address: str | None = None
    num_cpus: int | None = Field(None, ge=1)
    max_retries: int = Field(3, ge=0)   # re-runs of a task whose worker process died
    workers: int = Field(1, ge=1)       # local: processes running items at once (1: this process)

    @model_validator(mode="after")
    def _workers_are_local(self) -> EngineSpec:
        if self.kind != "local" and self.workers != 1:
            raise ValueError(f"workers = {self.workers} is for the local engine; on ray, num_cpus (or the "
                             "cluster's CPUs) sets how many items run at once")
        return self

    def describe(self) -> str:
        """The engine in words (recorded with every run)."""
        if self.kind == "local":
            return "local" if self.workers == 1 else f"local, {self.workers} worker processes"
        where = self.address or f"local Ray instance ({self.num_cpus or os.cpu_count()} CPUs)"
        return f"ray at {where}, max_retries={self.max_retries}"


class Engine(ABC):
    """Runs functions over items; see the module's docstring."""

    name: str = "engine"

    @abstractmethod
    def map(self, fn: Callable[..., Any], items: Sequence[tuple[Any, ...]], *,
            labels: Sequence[str] | None = None, gpus: float = 0.0) -> Iterator[tuple[int, Any]]:
        """``(index, fn(*items[index]))`` for every item; ``labels`` name the items in errors;
        ``gpus``: GPUs each task needs (a cluster schedules it where they are free)."""

    @abstractmethod
    def scatter(self, fn: Callable[..., Sequence[Any]], items: Sequence[tuple[Any, ...]],
                n_out: int) -> list[list[Any]]:
        """``handles[i][p]``: part ``p`` of ``fn(*items[i])`` (which returns ``n_out`` parts), kept where
        it was made; pass handles as top-level arguments of :meth:`map` items to consume them."""

    def put(self, obj: Any) -> Any:
        """A handle to ``obj`` that tasks receive as ``obj`` (the object itself, locally)."""
        return obj

    @property
    def parallelism(self) -> int:
        """How many tasks run at once (a guide for choosing partition counts)."""
        return 1

    @property
    def gpus(self) -> float:
        """GPUs the engine can give tasks (0 locally: there the job's device is this machine's)."""
        return 0.0

    @abstractmethod
    def close(self) -> None:
        """Release what the engine started."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class _Shared:
    """A :meth:`LocalEngine.put` handle: the object stays in the engine and crosses to each worker
    process once, when the pool starts, instead of once per item."""

    key: int


_WORKER_SHARED: dict[int, Any] = {}   # in a pool worker: the objects shared when it started


@dataclass(frozen=True)
class _Pickled:
    """Objects as pickled bytes, unpickled only when :func:`_worker_start` has set the worker's
    thread counts: unpickling a stream's tensors imports torch, which reads ``OMP_NUM_THREADS``
    once, when it loads (a worker given the shared objects directly loaded torch with every core's
    threads before its start ran)."""

    data: bytes

    def load(self) -> Any:
        # bytes the engine's own process pickled for the child it spawned, handed over the pool's
        # pipe as every pool argument is; never bytes read from a file or from anyone else
        return pickle.loads(self.data)


class _Deferred:
    """The shared objects as the pool's start arguments: pickled (with multiprocessing's pickler,
    as the pool would) into a :class:`_Pickled` afresh for each worker it spawns."""

    def __init__(self, objs: dict[int, Any]) -> None:
        self.objs = objs

    def load(self) -> dict[int, Any]:
        return self.objs

    def __reduce__(self) -> tuple[type[_Pickled], tuple[bytes]]:
        return _Pickled, (bytes(ForkingPickler.dumps(self.objs)),)


def _ignore_interrupt(signum: int, frame: object) -> None:
    """A pool worker's Ctrl-C: nothing; the engine's process stops its workers itself. A Python
    handler rather than ``SIG_IGN``: processes the worker spawns (data-parallel ranks) get the
    default back when they start, so they still stop on the SIGINT torch sends when their parent
    dies."""


def _exit_with_parent() -> None:
    """In a pool worker: exit once the engine's process is gone (killed, or ended by SIGTERM
    without its cleanup), instead of waiting for work that never comes, an orphan holding its
    copy of the stream."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)


def _worker_start(threads: int, shared: _Pickled | _Deferred) -> None:
    """A pool worker's start: before torch, BLAS or OpenMP load, give each its share of the cores
    (two workers each running two-thread libraries on two cores spend their time contending), and
    cap what is loaded already (NumPy's BLAS, imported with the main module); then unpickle the
    shared objects. The worker ignores Ctrl-C and ends with its parent."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)
    # tqdm (the tasks' progress bars) would make a multiprocessing lock here, registered with the
    # engine process's resource tracker; a worker stopped at once (Ctrl-C) leaves it registered and
    # the tracker warns of a "leaked semaphore" at exit. A thread lock serves one process as well.
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())
    signal.signal(signal.SIGINT, _ignore_interrupt)
    threading.Thread(target=_exit_with_parent, name="lee-exit-with-parent", daemon=True).start()
    _WORKER_SHARED.update(shared.load())


def _worker_call(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """``fn(*args)`` in a pool worker, each shared handle replaced by its object."""
    return fn(*(_WORKER_SHARED[a.key] if isinstance(a, _Shared) else a for a in args))


class LocalEngine(Engine):
    """Items on this machine: with one worker, in this process, item after item, in order, errors
    propagating at once; with ``workers > 1``, in a pool of spawned worker processes (created on
    the first map that has more than one item, kept until :meth:`close`), results yielded as they
    finish. A failing item there costs only itself: every other item is yielded first, then its
    error is raised (a user error keeps its own message). A worker process that dies (killed, out
    of memory) breaks the pool: the items not yet finished fail with an :class:`EngineError`.
    Leaving the engine's ``with`` block on an exception (Ctrl-C, a failure the caller raises)
    stops the workers at once rather than waiting for the items they run; the workers ignore
    Ctrl-C themselves and exit when this process dies.

    Items and results cross to the workers by pickling, between this process and the children it
    spawned, never from a file; ``fn`` must be a module-level function.
    """

    name = "local"

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise InputError(f"workers must be at least 1; got {workers}")
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._shared: dict[int, Any] = {}
        self._in_pool: set[int] = set()   # shared objects the running pool's workers already hold

    @property
    def parallelism(self) -> int:
        return self.workers

    def put(self, obj: Any) -> Any:
        if self.workers == 1:
            return obj
        key = len(self._shared)
        self._shared[key] = obj
        return _Shared(key)

    def _resolve(self, arg: Any) -> Any:
        return self._shared[arg.key] if isinstance(arg, _Shared) else arg

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            threads = max(1, usable_cpus() // self.workers)
            self._in_pool = set(self._shared)
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_worker_start,
                                             initargs=(threads, _Deferred(dict(self._shared))))
        return self._pool

    def map(self, fn: Callable[..., Any], items: Sequence[tuple[Any, ...]], *,
            labels: Sequence[str] | None = None, gpus: float = 0.0) -> Iterator[tuple[int, Any]]:
        if self.workers == 1 or len(items) < 2:
            for k, args in enumerate(items):
                yield k, fn(*(self._resolve(a) for a in args))
            return
        pool = self._executor()
        # a handle the workers hold travels as itself; one put after the pool started, by value
        index: dict[Future[Any], int] = {
            pool.submit(_worker_call, fn, tuple(a if isinstance(a, _Shared) and a.key in self._in_pool
                                                else self._resolve(a) for a in args)): k
            for k, args in enumerate(items)}
        failures: list[tuple[int, BaseException]] = []
        try:
            for future in as_completed(index):
                k = index[future]
                try:
                    value = future.result()
                except Exception as exc:   # the item's own error, or the pool broken by a dead worker
                    failures.append((k, exc))
                    continue
                yield k, value
        finally:
            for future in index:   # the consumer stopped early (or failed): drop what has not started
                future.cancel()
        if failures:
            failures.sort(key=lambda f: f[0])
            broken = [k for k, exc in failures if isinstance(exc, BrokenProcessPool)]
            if broken:
                self.close()   # a broken pool takes no more work: the next map starts a fresh one
            k, exc = failures[0]
            if not isinstance(exc, BrokenProcessPool):
                raise exc
            # every item unfinished when a worker dies fails alike: which one it was running is not known
            names = [labels[j] if labels is not None else f"item {j}" for j in broken]
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            raise EngineError(f"a worker process of the local engine died (killed, or out of memory) while "
                              f"{len(names)} item(s) were unfinished: {shown}; every item that finished before "
                              "was yielded, run again to redo the rest (fewer workers use less memory)") from None

    def scatter(self, fn: Callable[..., Sequence[Any]], items: Sequence[tuple[Any, ...]],
                n_out: int) -> list[list[Any]]:
        out = []
        for args in items:
            parts = list(fn(*(self._resolve(a) for a in args)))
            if len(parts) != n_out:
                raise ValueError(f"{fn.__name__} returned {len(parts)} parts; {n_out} expected")
            out.append(parts)
        return out

    def close(self) -> None:
        """Stop the worker processes, if any were started, once the items they run are done."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _stop_workers(self) -> None:
        """Stop the worker processes now, without waiting for the items they run (the caller is
        leaving on an error or Ctrl-C, so their results would be dropped anyway): what
        ``ProcessPoolExecutor.terminate_workers`` does from Python 3.14."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        processes = list((getattr(pool, "_processes", None) or {}).values())
        manager = getattr(pool, "_executor_manager_thread", None)
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=10)
        if manager is not None:
            manager.join(timeout=10)

    def __exit__(self, *exc: object) -> None:
        if exc and exc[0] is not None:
            self._stop_workers()
        self.close()


class RayEngine(Engine):
    """Items as Ray tasks (one CPU each), results yielded as they finish.

    Connects to ``spec.address`` or starts a local Ray instance; an instance already initialised
    in this process (a test fixture, a notebook) is used as is and left running.
    """

    name = "ray"

    def __init__(self, spec: EngineSpec) -> None:
        try:
            import ray
        except ImportError:  # pragma: no cover - ray is in requirements.txt
            raise InputError("the ray engine needs the ray package (pip install ray); "
                             "or run with --engine local") from None
        self._ray = ray
        self.spec = spec
        self._started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "logging_level": logging.WARNING}
            if spec.address:
                kwargs["address"] = spec.address
            else:
                kwargs["num_cpus"] = spec.num_cpus or os.cpu_count() or 1
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
                where = f"the Ray cluster at {spec.address!r}" if spec.address else "a local Ray instance"
                raise InputError(f"cannot start or reach {where} ({exc}); check the address (e.g. 'auto' on a "
                                 "node of the cluster, or 'ray://HEAD:10001'), or run with --engine local") from None
            self._started = True

    @property
    def parallelism(self) -> int:
        return max(1, int(self._ray.cluster_resources().get("CPU", 1)))

    @property
    def gpus(self) -> float:
        return float(self._ray.cluster_resources().get("GPU", 0.0))

    def put(self, obj: Any) -> Any:
        return self._ray.put(obj)

    def _remote(self, fn: Callable[..., Any], **options: Any) -> Any:
        return self._ray.remote(max_retries=self.spec.max_retries, retry_exceptions=False, num_cpus=1,
                                **options)(fn)

    def scatter(self, fn: Callable[..., Sequence[Any]], items: Sequence[tuple[Any, ...]],
                n_out: int) -> list[list[Any]]:
        remote = self._remote(fn, num_returns=n_out)
        out = []
        for args in items:
            refs = remote.remote(*args)
            out.append(list(refs) if n_out > 1 else [refs])
        return out

    def map(self, fn: Callable[..., Any], items: Sequence[tuple[Any, ...]], *,
            labels: Sequence[str] | None = None, gpus: float = 0.0) -> Iterator[tuple[int, Any]]:
        ray = self._ray
        remote = self._remote(fn, num_gpus=gpus) if gpus else self._remote(fn)
        index = {remote.remote(*args): k for k, args in enumerate(items)}
        pending = list(index)
        failures: list[tuple[int, BaseException]] = []
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                if pending:   # and whatever else is done by now, without waiting
                    more, pending = ray.wait(pending, num_returns=len(pending), timeout=0)
                    ready += more
                for ref in ready:
                    k = index[ref]
                    try:
                        value = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:   # the task raised: a user error keeps its own
                        failures.append((k, exc.cause if isinstance(exc.cause, LeeError | OSError) else exc))
                        continue
                    except ray.exceptions.RayError as exc:       # its worker died more often than retries allow
                        failures.append((k, exc))
                        continue
                    yield k, value
        finally:
            for ref in pending:   # the consumer stopped early (or failed): stop what still runs
                ray.cancel(ref, force=True)
        if failures:
            k, exc = failures[0]
            name = labels[k] if labels is not None else f"item {k}"
            others = f" ({len(failures) - 1} more item(s) failed too)" if len(failures) > 1 else ""
            if isinstance(exc, ray.exceptions.RayError) and not isinstance(exc, ray.exceptions.RayTaskError):
                raise EngineError(f"{name}: its Ray task failed after {self.spec.max_retries} retr"
                                  f"{'y' if self.spec.max_retries == 1 else 'ies'} ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}){others}; every other "
                                  "item completed") from None
            raise exc   # the task's own error after every other item: a LeeError names its file; a bug keeps
            # Ray's error, whose message holds the remote traceback

    def close(self) -> None:
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False


def make_engine(spec: EngineSpec | None = None) -> Engine:
    """The engine ``spec`` names (default: local). Use it as a context manager to release it."""
    spec = spec or EngineSpec()
    return RayEngine(spec) if spec.kind == "ray" else LocalEngine(spec.workers)
