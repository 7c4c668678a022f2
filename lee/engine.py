"""Where work runs: in this process (``local``, the default) or as tasks on a Ray cluster (``ray``).

Both engines offer the same map-over-units operations, so a job or an analysis is written once:

- :meth:`Engine.map` runs ``fn(*args)`` for every item and yields ``(index, result)``: the local
  engine in order, in this process; the Ray engine submits every item as a Ray task and yields
  results as they finish. A task whose worker process dies (killed, out of memory) is retried by
  Ray up to ``max_retries`` times; a task that still fails costs only its own item: the others
  are yielded first, then the failure is raised.
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
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field

from lee.config import ConfigModel
from lee.errors import InputError, LeeError

__all__ = ["Engine", "EngineError", "EngineSpec", "LocalEngine", "RayEngine", "make_engine"]


class EngineError(LeeError):
    """A task could not be completed by the engine (its worker died more often than retries allow)."""


class EngineSpec(ConfigModel):
    """``[engine]`` of a job file (and ``--engine``/``--address`` on the command line).

    ``kind = "local"`` runs everything in this process. ``kind = "ray"`` runs units as Ray tasks:
    on the cluster at ``address`` (``"auto"``: the one this machine belongs to; ``"ray://host:10001"``:
    a remote one through Ray Client), or, without an address, on a Ray instance started here with
    ``num_cpus`` CPUs (default: this machine's count) and shut down afterwards.
    """

    config_name: ClassVar[str] = "job config [engine]"

    kind: Literal["local", "ray"] = "local"
    address: str | None = None
    num_cpus: int | None = Field(None, ge=1)
    max_retries: int = Field(3, ge=0)   # re-runs of a task whose worker process died

    def describe(self) -> str:
        """The engine in words (recorded with every run)."""
        if self.kind == "local":
            return "local"
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


class LocalEngine(Engine):
    """Everything in this process, item after item, in order; errors propagate at once."""

    name = "local"

    def map(self, fn: Callable[..., Any], items: Sequence[tuple[Any, ...]], *,
            labels: Sequence[str] | None = None, gpus: float = 0.0) -> Iterator[tuple[int, Any]]:
        for k, args in enumerate(items):
            yield k, fn(*args)

    def scatter(self, fn: Callable[..., Sequence[Any]], items: Sequence[tuple[Any, ...]],
                n_out: int) -> list[list[Any]]:
        out = []
        for args in items:
            parts = list(fn(*args))
            if len(parts) != n_out:
                raise ValueError(f"{fn.__name__} returned {len(parts)} parts; {n_out} expected")
            out.append(parts)
        return out

    def close(self) -> None:
        """Nothing to release."""


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
    return RayEngine(spec) if spec.kind == "ray" else LocalEngine()
