"""The job file (TOML): which snapshots to evaluate, on which stream, how, and where to record it.

Example (paths are relative to the job file)::

    [job]
    name = "nightly"
    snapshots = "snapshots"          # snapshot root
    world = "world"                  # world directory that holds the downstream stream
    results = "results.sqlite"       # results store (created if missing)
    variants = ["*"]                 # glob patterns over variant names
    latest_only = false              # only each variant's latest snapshot
    device = "auto"

    [stream]
    domain = "ad"

    [eval]
    usages = ["UR+IR", "CR"]
    fusions = ["concat"]
    seeds = [0, 1, 2]
    windows = 10
    n_boot = 100
    level = 0.95

    [proxy]                          # optional: ProxyConfig fields
    emb_dim = 16

Unknown sections and keys are errors that name them.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lee.device import DEVICE_CHOICES
from lee.errors import ConfigError
from lee.evaluator.compare import EvalConfig
from lee.evaluator.models import ProxyConfig

_SECTIONS = {
    "job": {"name", "snapshots", "world", "results", "variants", "latest_only", "device"},
    "stream": {"domain", "start", "end"},
    "eval": {"usages", "fusions", "seeds", "windows", "n_boot", "level", "bootstrap_seed"},
    "proxy": {f.name for f in dataclasses.fields(ProxyConfig)},
}


@dataclass(frozen=True)
class JobConfig:
    name: str
    snapshots: Path
    world: Path
    results: Path
    variants: tuple[str, ...] = ("*",)
    latest_only: bool = False
    device: str = "auto"
    domain: str = "ad"
    start: str | None = None
    end: str | None = None
    usages: tuple[str, ...] = ("UR+IR",)
    fusions: tuple[str, ...] = ("concat",)
    seeds: tuple[int, ...] = (0, 1, 2)
    windows: int = 10
    n_boot: int = 100
    level: float = 0.95
    bootstrap_seed: int = 0
    proxy: ProxyConfig = field(default_factory=ProxyConfig)

    def eval_configs(self) -> list[EvalConfig]:
        return [EvalConfig(usage=u, fusion=f, seeds=self.seeds, n_windows=self.windows, n_boot=self.n_boot,
                           level=self.level, bootstrap_seed=self.bootstrap_seed, proxy=self.proxy)
                for u in self.usages for f in self.fusions]


def _tuple(value: Any, key: str, kind: type) -> tuple:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, kind) and not isinstance(v, bool) for v in items):
        raise ConfigError(f"job file: {key} must be a non-empty list of {kind.__name__}; got {value!r}")
    return tuple(items)


def load_job(path: str | Path) -> JobConfig:
    """Parse and check a job file; relative paths are taken relative to the file's directory."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: job file not found")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    for section, body in raw.items():
        if section not in _SECTIONS:
            raise ConfigError(f"{path}: unknown section [{section}]; known: {', '.join(f'[{s}]' for s in _SECTIONS)}")
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: [{section}] must be a table")
        unknown = sorted(set(body) - _SECTIONS[section])
        if unknown:
            raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)} in [{section}]; "
                              f"known: {', '.join(sorted(_SECTIONS[section]))}")
    job, stream, ev = raw.get("job", {}), raw.get("stream", {}), raw.get("eval", {})
    for key in ("snapshots", "world"):
        if key not in job:
            raise ConfigError(f"{path}: [job] needs {key} = \"PATH\"")
    base = path.resolve().parent
    snapshots = base / job["snapshots"]
    device = job.get("device", "auto")
    if device not in DEVICE_CHOICES:
        raise ConfigError(f"{path}: [job] device must be one of {', '.join(DEVICE_CHOICES)}; got {device!r}")
    try:
        proxy = ProxyConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.get("proxy", {}).items()})
        cfg = JobConfig(
            name=str(job.get("name", path.stem)),
            snapshots=snapshots,
            world=base / job["world"],
            results=base / job.get("results", "results.sqlite"),
            variants=_tuple(job.get("variants", ["*"]), "[job] variants", str),
            latest_only=bool(job.get("latest_only", False)),
            device=device,
            domain=str(stream.get("domain", "ad")),
            start=stream.get("start"),
            end=stream.get("end"),
            usages=_tuple(ev.get("usages", ["UR+IR"]), "[eval] usages", str),
            fusions=_tuple(ev.get("fusions", ["concat"]), "[eval] fusions", str),
            seeds=_tuple(ev.get("seeds", [0, 1, 2]), "[eval] seeds", int),
            windows=int(ev.get("windows", 10)),
            n_boot=int(ev.get("n_boot", 100)),
            level=float(ev.get("level", 0.95)),
            bootstrap_seed=int(ev.get("bootstrap_seed", 0)),
            proxy=proxy,
        )
        cfg.eval_configs()  # validates usages and fusions
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: bad value ({exc})") from None
    return cfg
