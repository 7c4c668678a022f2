"""The local engine's worker processes (``[engine] workers``, ``lee evaluate --workers``) and the
proxy's thread policy: units evaluated in a pool of spawned processes give the same results as in
this process, a failing item costs only itself, a killed worker is a named error, and the proxy
trains on the CPU with :data:`~lee.evaluator.stream.PROXY_CPU_THREADS` intra-op threads while the
caller's own thread count is left as it was."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pandas as pd
import pytest
import torch

from app.cli.main import main
from lee.device import torch_threads
from lee.engine import EngineError, EngineSpec, LocalEngine, make_engine
from lee.errors import ConfigError, InputError
from lee.evaluator.stream import PROXY_CPU_THREADS
from lee.jobs.config import load_job
from lee.jobs.run import run_job
from lee.jobs.store import ResultsStore

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "tiny"

JOB = """
[job]
name = "{name}"
snapshots = "{root}/snapshots"
world = "{root}/world"
results = "{name}.sqlite"
variants = ["oracle", "random", "noise_high"]
latest_only = true
device = "cpu"

[eval]
usages = ["UR+IR"]
fusions = ["concat"]
seeds = [0]
windows = 4
n_boot = 30

[engine]
workers = {workers}
"""


def _job(d: Path, name: str, workers: int) -> Path:
    path = d / f"{name}.toml"
    path.write_text(JOB.format(root=FIXTURES.as_posix(), name=name, workers=workers), encoding="utf-8")
    return path


def _results(db: Path) -> pd.DataFrame:
    runs = ResultsStore(db).runs().sort_values("variant").reset_index(drop=True)
    assert runs["variant"].is_unique, "a unit was recorded twice"
    return runs[["variant", "auc", "baseline_auc", "delta_auc", "ci_low", "ci_high", "verdict"]]


# module-level, so that spawned workers can import them by name


def _pid_and_square(x: int) -> tuple[int, int]:
    return os.getpid(), x * x


def _threads_and_sum(values: list[int], k: int) -> tuple[int, int, str | None]:
    return sum(values) + k, torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise InputError(f"item {x} is bad")
    return x


def _die_on_two(x: int) -> int:
    if x == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def test_worker_pool_maps_every_item_in_other_processes_with_shared_objects():
    with LocalEngine(workers=2) as engine:
        got = dict(engine.map(_pid_and_square, [(k,) for k in range(6)]))
        assert {k: v[1] for k, v in got.items()} == {k: k * k for k in range(6)}
        assert os.getpid() not in {v[0] for v in got.values()}        # computed in the workers
        assert len({v[0] for v in got.values()}) <= 2
        early = engine.put(list(range(100)))   # put after the pool started: travels by value, same result
        out = dict(engine.map(_threads_and_sum, [(early, k) for k in range(3)]))
        assert {k: v[0] for k, v in out.items()} == {k: 4950 + k for k in range(3)}
        # each worker got its share of the cores before torch loaded
        share = max(1, (os.cpu_count() or 1) // 2)
        assert {(v[1], v[2]) for v in out.values()} == {(share, str(share))}
    with LocalEngine(workers=2) as engine:
        shared = engine.put(list(range(10)))   # put before the pool: each worker holds it from its start
        assert [v[0] for _, v in sorted(engine.map(_threads_and_sum, [(shared, k) for k in range(4)]))] == \
            [45, 46, 47, 48]
        # one item runs in this process (no pool for a single unit); handles resolve there too
        assert list(engine.map(_threads_and_sum, [(shared, 1)]))[0][1][0] == 46


def test_worker_pool_failure_costs_only_its_item_and_a_killed_worker_is_named():
    with LocalEngine(workers=2) as engine:
        got = []
        with pytest.raises(InputError, match="item 3 is bad"):   # its own error, after every other item
            for _, v in engine.map(_fail_on_three, [(k,) for k in range(6)]):
                got.append(v)
        assert sorted(got) == [0, 1, 2, 4, 5]
        with pytest.raises(EngineError, match="unit two: a worker process of the local engine died"):
            list(engine.map(_die_on_two, [(k,) for k in range(4)], labels=["unit zero", "unit one", "unit two",
                                                                            "unit three"]))
        # the broken pool was dropped: the next map starts a fresh one
        assert sorted(v for _, v in engine.map(_fail_on_three, [(0,), (1,)])) == [0, 1]


def test_workers_setting_is_checked_and_described(tmp_path):
    assert make_engine(EngineSpec(workers=3)).workers == 3
    assert EngineSpec(workers=2).describe() == "local, 2 worker processes"
    assert EngineSpec().describe() == "local"
    with pytest.raises(ConfigError, match="workers = 2 is for the local engine"):
        EngineSpec(kind="ray", workers=2)
    with pytest.raises(ConfigError, match="workers"):
        EngineSpec(workers=0)
    job = load_job(_job(tmp_path, "w", 2))
    assert job.engine.workers == 2
    assert job.with_workers(1).engine.workers == 1
    with pytest.raises(ConfigError, match="--workers 2 is for the local engine; this job runs on ray"):
        job.with_engine("ray").with_workers(2)
    with pytest.raises(ConfigError, match="--workers must be at least 1; got 0"):
        job.with_workers(0)


def test_a_job_on_two_worker_processes_equals_the_job_in_this_process(tmp_path, capsys):
    here = run_job(load_job(_job(tmp_path, "one", 1)), progress=False, log=lambda *_: None)
    assert len(here.evaluated) == 3
    assert main(["evaluate", "--config", str(_job(tmp_path, "two", 1)), "--workers", "2", "--quiet"]) == 0
    assert "done: 3 evaluated" in capsys.readouterr().out
    one, two = _results(tmp_path / "one.sqlite"), _results(tmp_path / "two.sqlite")
    pd.testing.assert_frame_equal(one, two, check_exact=False, rtol=0, atol=1e-6)
    assert (two["delta_auc"].abs() > 0).all()
    store = ResultsStore(tmp_path / "two.sqlite")
    doc = store.run(store.runs()["run_id"].iloc[0])
    assert doc["extra"]["engine"] == "local, 2 worker processes"


def test_torch_threads_restores_the_callers_count_and_the_proxy_trains_on_its_share():
    from lee.evaluator import stream as stream_module

    before = torch.get_num_threads()
    seen: list[int] = []
    real = stream_module.stream_windows

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(1, "cuda"):   # a GPU's work is not bound by CPU threads: nothing changes
        assert torch.get_num_threads() == before
    from lee.data.worlds import dataset_from_world
    from lee.evaluator.data import stream_from_dataset
    from lee.world.io import load_world

    stream = stream_from_dataset(dataset_from_world(load_world(FIXTURES / "world")))
    stream_module.stream_windows = spy
    try:
        stream_module.run_stream(stream, None, n_windows=3)
    finally:
        stream_module.stream_windows = real
    assert seen == [PROXY_CPU_THREADS]
    assert torch.get_num_threads() == before
