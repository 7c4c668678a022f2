"""The local engine's worker processes (``[engine] workers``, ``lee evaluate --workers``) and the
proxy's thread policy: units evaluated in a pool of spawned processes give the same results as in
this process, a failing item costs only itself, a killed worker is a named error, and the proxy
trains on the CPU with :data:`~lee.evaluator.stream.PROXY_CPU_THREADS` intra-op threads while the
caller's own thread count is left as it was."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import torch

from app.cli.main import main
from lee.device import torch_threads
from lee.engine import EngineError, EngineSpec, LocalEngine, make_engine, usable_cpus
from lee.errors import ConfigError, InputError
from lee.evaluator.stream import PROXY_CPU_THREADS
from lee.jobs.config import load_job
from lee.jobs.run import engine_note, run_job
from lee.jobs.store import ResultsStore

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures" / "tiny"

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


def _threads_and_sum(values: list[int] | torch.Tensor, k: int) -> tuple[int, int, str | None]:
    return int(sum(values)) + k, torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise InputError(f"item {x} is bad")
    return x


def _die_on_two(x: int) -> int:
    if x == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def _fail_on_one_die_on_two(x: int) -> int:
    if x == 1:
        raise InputError(f"item {x} is bad")
    return _die_on_two(x)


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
        share = max(1, usable_cpus() // 2)
        assert {(v[1], v[2]) for v in out.values()} == {(share, str(share))}
    with LocalEngine(workers=2) as engine:
        # put before the pool: each worker holds it from its start. A tensor, like a job's stream:
        # unpickling it loads torch, which must come after the worker set its thread count (it
        # came before, and the workers trained with every core's threads)
        shared = engine.put(torch.arange(10))
        out = dict(engine.map(_threads_and_sum, [(shared, k) for k in range(4)]))
        assert [out[k][0] for k in range(4)] == [45, 46, 47, 48]
        assert {(v[1], v[2]) for v in out.values()} == {(share, str(share))}
        # one item runs in this process (no pool for a single unit); handles resolve there too
        assert list(engine.map(_threads_and_sum, [(shared, 1)]))[0][1][0] == 46
    engine.close()   # closing twice is harmless


def test_worker_pool_failure_costs_only_its_item_and_a_killed_worker_is_named():
    with LocalEngine(workers=2) as engine:
        got = []
        with pytest.raises(InputError, match="item 3 is bad"):   # its own error, after every other item
            for _, v in engine.map(_fail_on_three, [(k,) for k in range(6)]):
                got.append(v)
        assert sorted(got) == [0, 1, 2, 4, 5]
        # which unfinished item the dead worker ran is not known: all of them are named, none blamed
        with pytest.raises(EngineError, match=r"a worker process of the local engine died \(killed, or out of "
                                              r"memory\) while [12] item\(s\) were unfinished: unit two"):
            list(engine.map(_die_on_two, [(k,) for k in range(4)], labels=["unit zero", "unit one", "unit two",
                                                                            "unit three"]))
        # the broken pool was dropped: the next map starts a fresh one
        assert sorted(v for _, v in engine.map(_fail_on_three, [(0,), (1,)])) == [0, 1]
        # an item's own error ranks first, and the pool a worker's death broke is still dropped
        # (it was kept, and the next map's submit raised BrokenProcessPool, a crash)
        with pytest.raises(InputError, match="item 1 is bad"):
            list(engine.map(_fail_on_one_die_on_two, [(k,) for k in range(3)]))
        assert sorted(v for _, v in engine.map(_fail_on_three, [(4,), (5,)])) == [4, 5]


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


def test_a_lone_unit_on_a_worker_job_is_recorded_as_run_in_the_jobs_process(tmp_path):
    """No pool is started for one item: the run says where it really ran."""
    report = run_job(load_job(_job(tmp_path, "lone", 2)), progress=False, log=lambda *_: None, stop_after=1)
    assert len(report.evaluated) == 1
    store = ResultsStore(tmp_path / "lone.sqlite")
    doc = store.run(store.runs()["run_id"].iloc[0])
    assert doc["extra"]["engine"].startswith("local, in the job's process")


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


def test_usable_cpus_counts_the_cores_this_process_may_use(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    assert usable_cpus() == 3   # taskset / a cpuset: 3 of the machine's cores
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    assert usable_cpus() == (os.cpu_count() or 1)


def test_the_jobs_first_line_names_the_engine_and_hints_workers_only_where_they_help(tmp_path, monkeypatch):
    import lee.jobs.run as run_module

    monkeypatch.setattr(run_module, "usable_cpus", lambda: 4)
    job = load_job(_job(tmp_path, "note", 1))
    cpu = torch.device("cpu")
    assert engine_note(job, 3, cpu) == (", one at a time (4 cores here: [engine] workers or --workers runs "
                                        "several at once)")
    assert engine_note(job, 1, cpu) == ""
    assert engine_note(job, 3, torch.device("cuda")) == ""   # several processes on one GPU: no hint
    # data_parallel already spreads each unit over processes
    parallel = job.model_copy(update={"eval": job.eval.model_copy(update={"data_parallel": 2})})
    assert engine_note(parallel, 3, cpu) == ""
    assert engine_note(job.with_workers(2), 3, cpu) == " on local, 2 worker processes"
    monkeypatch.setattr(run_module, "usable_cpus", lambda: 1)
    assert engine_note(job, 3, cpu) == ""


# A program that uses the engine as `lee evaluate` does: NumPy loaded before the workers start (the
# `lee` script's imports load it, and spawn re-imports the main script in each worker), tqdm used
# in the items. It prints the workers' pids and BLAS threads, then waits on items that nap.
_HELPER = """
import os, time

def info(k):
    from threadpoolctl import threadpool_info
    return os.getpid(), {i["internal_api"]: i["num_threads"] for i in threadpool_info()}

def nap(seconds):
    from tqdm.auto import tqdm
    tqdm(total=1, disable=True).close()
    time.sleep(seconds)
    return seconds
"""

_PROGRAM = """
import json, multiprocessing, sys
import numpy
from lee.engine import LocalEngine
from helper import info, nap

if __name__ == "__main__":
    try:
        with LocalEngine(workers=2) as engine:
            got = dict(engine.map(info, [(0,), (1,)]))
            print(json.dumps({"pids": sorted(p.pid for p in multiprocessing.active_children()),
                              "blas": sorted({n for v in got.values() for n in v[1].values()})}), flush=True)
            for _ in engine.map(nap, [(60,), (60,), (60,)]):
                pass
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
"""


@contextmanager
def _program(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], list[int]]]:
    """The program started in a session of its own, once its workers answered: it, and the worker
    pids; on the way out every process of it still running is killed (an assertion that failed
    must not leave orphans napping)."""
    (tmp_path / "helper.py").write_text(_HELPER, encoding="utf-8")
    (tmp_path / "program.py").write_text(_PROGRAM, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    proc = subprocess.Popen([sys.executable, str(tmp_path / "program.py")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    pids: list[int] = []
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first, "the program printed nothing"
        seen = json.loads(first)
        pids = seen["pids"]
        assert len(pids) == 2
        assert seen["blas"] == [max(1, usable_cpus() // 2)]
        time.sleep(1.0)   # the naps have started
        yield proc, pids
    finally:
        for pid in [proc.pid, *pids]:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=30)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs (a dead process reparented to an init that does not reap it
    stays a zombie: that is gone too)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_ctrl_c_stops_the_workers_at_once_quietly_and_blas_got_its_share(tmp_path):
    # entering checks that NumPy's BLAS, loaded before the worker's start ran, was capped to its share
    with _program(tmp_path) as (proc, pids):
        t0 = time.perf_counter()
        os.killpg(proc.pid, signal.SIGINT)   # Ctrl-C: the terminal signals the whole process group
        _, err = proc.communicate(timeout=60)
        took = time.perf_counter() - t0
        assert proc.returncode == 130
        assert took < 10, f"{took:.1f} s: the engine waited for the running items (60 s naps)"
        # the workers ignored the signal (no KeyboardInterrupt tracebacks) and left nothing behind
        # (tqdm's multiprocessing locks made the resource tracker warn of leaked semaphores)
        assert err.strip() == "interrupted", err
        assert not [pid for pid in pids if _running(pid)]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_workers_exit_when_the_engines_process_is_killed(tmp_path):
    with _program(tmp_path) as (proc, pids):
        os.kill(proc.pid, signal.SIGKILL)   # no cleanup runs, as with SIGTERM's default
        proc.wait(timeout=30)
        deadline = time.monotonic() + 15
        while [pid for pid in pids if _running(pid)] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in pids if _running(pid)], \
            "the workers outlived the engine's process, waiting forever for work"
