"""The job file (TOML): which snapshots to evaluate, on which stream, how, and where to record it.

Example (paths are relative to the job file)::

    [job]
    name = "nightly"                 # default: the file's name without .toml
    snapshots = "snapshots"          # snapshot root
    data = "world"                   # dataset (or world) directory with the downstream events (alias: world)
    results = "results.sqlite"       # results store (created if missing)
    variants = ["*"]                 # glob patterns over variant names
    latest_only = false              # only each variant's latest snapshot
    device = "auto"                  # auto, cpu or cuda

    [stream]                         # optional: the downstream stream
    part = "downstream"              # downstream (default), upstream or all: which part of the dataset's split
    cut = 2026-01-01T00:30:00Z       # optional: override the split with a time cut (downstream from here on)
    user_fraction = 0.3              # optional: override it with each user's later share of events
    domain = "ad"                    # planted worlds only: ad (default), content or all
    start = 2026-01-01T00:10:00Z     # optional: events at or after this event time
    end = 2026-01-01T00:50:00Z       # optional: events before this event time

    [eval]                           # optional: the evaluation settings (lee.evaluator.compare)
    usages = ["UR+IR", "CR"]
    fusions = ["concat"]
    seeds = [0, 1, 2]
    windows = 10
    n_boot = 100
    level = 0.95

    [proxy]                          # optional: ProxyConfig fields
    emb_dim = 16

    [engine]                         # optional: where units run (lee.engine.EngineSpec)
    kind = "ray"                     # local (default: this process) or ray (units as Ray tasks)
    address = "auto"                 # an existing Ray cluster; default: start a local Ray instance
    max_retries = 3                  # re-runs of a unit whose worker process died
    # workers = 2                    # local only: units evaluated at once in worker processes (default 1)

Every key is type-checked without coercion (``windows = "3"`` is an error, not 3) and
range-checked when the file is loaded; unknown sections and keys are errors that name them.
Each setting has one name from this file to the results store and one default, on the model
that owns it: ``[eval]`` is :class:`~lee.evaluator.compare.EvalSettings` plus the lists of
usages and fusions, ``[proxy]`` is :class:`~lee.evaluator.models.ProxyConfig`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, Field, ValidationInfo, field_validator, model_validator

from lee.config import ConfigModel, EventTime, read_toml, validate_config
from lee.device import Device
from lee.engine import EngineSpec
from lee.errors import ConfigError
from lee.evaluator.compare import EvalConfig, EvalSettings
from lee.evaluator.data import DOMAINS
from lee.evaluator.inject import Usage
from lee.evaluator.models import FusionMode, ProxyConfig

__all__ = ["EngineSpec", "JobConfig", "JobEval", "JobSpec", "StreamSpec", "load_job"]


class JobSpec(ConfigModel):
    """``[job]``: what to evaluate and where to record it."""

    config_name: ClassVar[str] = "job config"

    name: str
    snapshots: Path
    data: Path = Field(validation_alias=AliasChoices("data", "world"))
    results: Path = Field("results.sqlite", validate_default=True)  # validated: relative to the file too
    variants: tuple[str, ...] = Field(("*",), min_length=1)
    latest_only: bool = False
    device: Device = Device.AUTO

    @field_validator("snapshots", "data", "results")
    @classmethod
    def _relative_to_file(cls, value: Path, info: ValidationInfo) -> Path:
        """Paths in a job file are taken relative to the file's directory."""
        base = (info.context or {}).get("base")
        return Path(base) / value if base is not None else value


class StreamSpec(ConfigModel):
    """``[stream]``: which downstream events the proxy models learn from and are scored on."""

    config_name: ClassVar[str] = "job config [stream]"

    part: Literal["downstream", "upstream", "all"] = "downstream"
    cut: EventTime | None = None            # override the dataset's split: downstream from this time on
    user_fraction: float | None = Field(None, gt=0, lt=1)  # override: each user's later share is downstream
    domain: str | None = None        # planted worlds: ad (their default), content or all
    start: EventTime | None = None   # events at or after this event time
    end: EventTime | None = None     # events before this event time

    @field_validator("domain")
    @classmethod
    def _known_domain(cls, value: str | None) -> str | None:
        if value is not None and value not in DOMAINS:
            raise ValueError(f"one of {', '.join(DOMAINS)}")
        return value

    @model_validator(mode="after")
    def _one_split(self) -> StreamSpec:
        if self.cut is not None and self.user_fraction is not None:
            raise ValueError("give either cut or user_fraction to override the split, not both")
        return self

    def describe(self) -> str:
        """The downstream selection in words (recorded with every run)."""
        parts = [f"part={self.part}"]
        if self.cut is not None:
            parts.append(f"split=time cut {self.cut.isoformat()}")
        if self.user_fraction is not None:
            parts.append(f"split=later {self.user_fraction:.0%} of each user's events")
        if self.domain is not None:
            parts.append(f"domain={self.domain}")
        if self.start is not None or self.end is not None:
            parts.append(f"time=[{self.start.isoformat() if self.start else '…'}, "
                         f"{self.end.isoformat() if self.end else '…'})")
        return ", ".join(parts)

    @model_validator(mode="after")
    def _ordered(self) -> StreamSpec:
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError(f"start ({self.start.isoformat()}) must come before end ({self.end.isoformat()})")
        return self


class JobEval(EvalSettings):
    """``[eval]``: the evaluation settings, for every combination of the usages and fusions listed."""

    config_name: ClassVar[str] = "job config [eval]"

    usages: tuple[Usage, ...] = Field((EvalConfig.model_fields["usage"].default,), min_length=1)
    fusions: tuple[FusionMode, ...] = Field((EvalConfig.model_fields["fusion"].default,), min_length=1)


class JobConfig(ConfigModel):
    """A whole job file, one field per section."""

    config_name: ClassVar[str] = "job config"

    job: JobSpec
    stream: StreamSpec = Field(default_factory=StreamSpec)
    eval: JobEval = Field(default_factory=JobEval)
    proxy: ProxyConfig = Field(default_factory=ProxyConfig)
    engine: EngineSpec = Field(default_factory=EngineSpec)

    def eval_configs(self) -> list[EvalConfig]:
        """One evaluation config per (usage, fusion) of ``[eval]``, each with the job's proxy settings."""
        shared = self.eval.settings()
        return [EvalConfig(usage=u, fusion=f, proxy=self.proxy, **shared)
                for u in self.eval.usages for f in self.eval.fusions]

    def with_device(self, device: Device | str) -> JobConfig:
        """The same job on another device (``lee evaluate --device`` overrides the file)."""
        return self.model_copy(update={"job": JobSpec(**{**self.job.model_dump(), "device": device})})

    def with_engine(self, kind: str, address: str | None = None) -> JobConfig:
        """The same job on another engine (``lee evaluate --engine/--address`` override ``[engine]``)."""
        keep = self.engine.model_dump() if kind == self.engine.kind else {}
        spec = {**keep, "kind": kind, **({"address": address} if address is not None else {})}
        return self.model_copy(update={"engine": EngineSpec(**spec)})

    def with_workers(self, workers: int) -> JobConfig:
        """The same job with ``workers`` local worker processes (``lee evaluate --workers``); refused,
        naming the flag, on a Ray engine or below one."""
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1; got {workers}")
        if workers > 1 and self.engine.kind != "local":
            raise ConfigError(f"--workers {workers} is for the local engine; this job runs on {self.engine.kind} "
                              "(--engine local, or let the Ray cluster's CPUs set how many units run at once)")
        spec = EngineSpec(**{**self.engine.model_dump(), "workers": workers})
        return self.model_copy(update={"engine": spec})


def load_job(path: str | Path) -> JobConfig:
    """Parse and check a job file; relative paths are taken relative to the file's directory."""
    path = Path(path)
    raw: dict[str, Any] = read_toml(path, what="job file")
    job = raw.get("job")
    if isinstance(job, dict) and "name" not in job:
        raw = {**raw, "job": {"name": path.stem, **job}}
    return validate_config(JobConfig, raw, source=str(path), kind="TOML",
                           context={"base": path.resolve().parent})
