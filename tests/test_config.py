"""The one typed config loader: job files, health thresholds, suite and world configs.

Files are read without coercion (``windows = "3"`` is an error, not 3) and every error is one
paragraph naming the file, the key with its section, what was expected and what came; configs
built in code stay lenient. Closed option sets are StrEnums whose values feed argparse.
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from analysis.clusters import KMeansBackend
from analysis.health import HealthThresholds
from analysis.importance import MaskingMode
from analysis.maps import MapMethod
from analysis.suite import SuiteConfig
from app.cli.main import build_parser, main
from app.workflows.demo import DEMO_JOB
from lee.config import enum_values, load_config
from lee.device import Device
from lee.errors import ConfigError, InputError
from lee.evaluator.compare import EvalConfig, EvalSettings
from lee.evaluator.inject import Usage
from lee.evaluator.models import FUSIONS, FusionMode, ProxyConfig
from lee.jobs.config import JobConfig, JobEval, JobSpec, load_job
from lee.jobs.run import job_stream, run_job, stream_hash
from lee.jobs.store import ResultsStore
from lee.world.config import WorldConfig, config_for_scale
from lee.world.io import save_world
from lee.world.planted import write_planted_variants

ROOT = Path(__file__).resolve().parents[1]
JOB_HEAD = '[job]\nsnapshots = "snapshots"\nworld = "world"\n'


def flat(text: str) -> str:
    """stderr with the command line's line wrapping undone."""
    return " ".join(text.split())


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def one_paragraph_error(exc: pytest.ExceptionInfo[ConfigError], path: Path, *phrases: str) -> str:
    """The message starts with the file, is one line, and holds every phrase."""
    msg = str(exc.value)
    assert msg.startswith(f"{path}: "), msg
    assert "\n" not in msg, msg
    for phrase in phrases:
        assert phrase in msg, f"{phrase!r} not in {msg!r}"
    return msg


# ------------------------------------------------------------------------------------------------
# job files
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body, phrases", [
    ('[eval]\nwindows = "3"\n', ["[eval] windows: expected an integer", 'got "3" (a TOML string)']),
    ("[eval]\nwindows = 3.9\n", ["[eval] windows: expected an integer", "got 3.9 (a TOML float)"]),
    ("[eval]\nwindows = 3.0\n", ["[eval] windows: expected an integer", "got 3.0 (a TOML float)"]),
    ("[eval]\nwindows = 1\n", ["[eval] windows: expected a value >= 2", "got 1 (a TOML integer)"]),
    ("[eval]\nn_boot = 0\n", ["[eval] n_boot: expected a value >= 2", "got 0 (a TOML integer)"]),
    ("[eval]\nn_boot = -1\n", ["[eval] n_boot: expected a value >= 2", "got -1 (a TOML integer)"]),
    ("[eval]\nlevel = 1\n", ["[eval] level: expected a value < 1", "got 1 (a TOML integer)"]),
    ("[eval]\nseeds = [0, 1.5]\n", ["[eval] seeds[1]: expected an integer", "got 1.5 (a TOML float)"]),
    ("[eval]\nseeds = []\n", ["[eval] seeds: expected at least 1 item(s)", "got [] (a TOML array)"]),
    ('[eval]\nfusions = ["concat", "sum"]\n', ["[eval] fusions[1]: expected one of 'concat', 'gate', 'iim' or "
                                               "'retrieval'", 'got "sum" (a TOML string)']),
    ('[eval]\nusages = "CR"\n', ["[eval] usages: expected an array", 'got "CR" (a TOML string)']),
    ('[proxy]\nmlp_hidden = [64, "32"]\n', ["[proxy] mlp_hidden[1]: expected an integer", 'got "32"']),
    ("[proxy]\nrep_dropout = 1.0\n", ["[proxy] rep_dropout: expected a value < 1", "got 1.0 (a TOML float)"]),
    ("[proxy]\nlr = inf\n", ["[proxy] lr: expected a finite number", "got inf (a TOML float)"]),
    ("[eval]\nlevel = nan\n", ["[eval] level: expected a finite number", "got nan (a TOML float)"]),
    ('[stream]\nstart = "yesterday"\n', ["[stream] start: expected an event time", 'got "yesterday"']),
    ("[stream]\nstart = 2026-01-01T00:20:00Z\nend = 2026-01-01T00:10:00Z\n",
     ["[stream] start (2026-01-01T00:20:00+00:00) must come before end (2026-01-01T00:10:00+00:00)"]),
    ('[stream]\ndomain = "ads"\n', ["[stream] domain: expected one of ad, content, all", 'got "ads"']),
])
def test_a_wrong_type_or_range_in_a_job_file_is_one_paragraph(tmp_path, body, phrases):
    path = write(tmp_path / "job.toml", JOB_HEAD + body)
    with pytest.raises(ConfigError) as exc:
        load_job(path)
    one_paragraph_error(exc, path, *phrases)


@pytest.mark.parametrize("key, value, phrase", [
    ("latest_only", '"false"', 'got "false" (a TOML string)'),
    ("latest_only", "1", "got 1 (a TOML integer)"),
    ("variants", '"oracle"', 'got "oracle" (a TOML string)'),
    ("device", '"tpu"', 'got "tpu" (a TOML string)'),
    ("snapshots", "3", "got 3 (a TOML integer)"),
])
def test_job_section_values_are_not_coerced(tmp_path, key, value, phrase):
    body = JOB_HEAD.replace('snapshots = "snapshots"\n', "") if key == "snapshots" else JOB_HEAD
    path = write(tmp_path / "job.toml", f"{body}{key} = {value}\n")
    with pytest.raises(ConfigError) as exc:
        load_job(path)
    one_paragraph_error(exc, path, f"[job] {key}: expected", phrase)


def test_every_problem_of_a_file_is_in_the_one_paragraph(tmp_path):
    path = write(tmp_path / "job.toml", JOB_HEAD + 'latest_only = "false"\n[eval]\nwindows = "3"\nn_boot = 0\n')
    with pytest.raises(ConfigError) as exc:
        load_job(path)
    one_paragraph_error(exc, path, "[job] latest_only", "[eval] windows", "[eval] n_boot")


def test_unknown_keys_and_sections_are_named_with_the_known_ones(tmp_path):
    path = write(tmp_path / "job.toml", JOB_HEAD + "[eval]\nwindow = 3\n[evaluation]\nwindows = 3\n")
    with pytest.raises(ConfigError) as exc:
        load_job(path)
    known = ", ".join(sorted(JobEval.model_fields))
    one_paragraph_error(exc, path, f"unknown key(s) window in [eval]; known keys: {known}",
                        "unknown section [evaluation]; known sections: [engine], [eval], [job], [proxy], [stream]")
    path = write(tmp_path / "job.toml", '[job]\nworld = "w"\n')
    with pytest.raises(ConfigError) as exc:
        load_job(path)
    one_paragraph_error(exc, path, "[job] needs snapshots")
    path = write(tmp_path / "job.toml", '[stream]\ndomain = "ad"\n')
    with pytest.raises(ConfigError) as exc:
        load_job(path)
    assert str(exc.value) == f"{path}: needs a [job] table"


def test_a_job_file_reads_typed_values_with_one_default_each(tmp_path):
    path = write(tmp_path / "job.toml", JOB_HEAD + 'device = "cpu"\n[eval]\nusages = ["UR+IR", "CR"]\n'
                 'fusions = ["concat", "iim"]\nwindows = 4\nlevel = 0.9\n[proxy]\nlr = 1\nemb_dim = 8\n')
    job = load_job(path)
    assert job.job.name == "job"                                   # the file's name
    assert job.job.snapshots == tmp_path / "snapshots"             # relative to the file
    assert job.job.results == tmp_path / "results.sqlite"          # the default, relative to the file too
    assert job.job.device is Device.CPU and job.job.latest_only is False
    assert isinstance(job.proxy.lr, float) and job.proxy.lr == 1.0  # an integer where a number belongs is fine
    configs = job.eval_configs()
    assert [(c.usage, c.fusion) for c in configs] == [("UR+IR", "concat"), ("UR+IR", "iim"), ("CR", "concat"),
                                                     ("CR", "iim")]
    for c in configs:
        assert (c.windows, c.level, c.proxy.emb_dim) == (4, 0.9, 8)
        # settings the file leaves out take EvalConfig's own defaults (one default per setting)
        assert (c.seeds, c.n_boot, c.bootstrap_seed) == (EvalConfig().seeds, EvalConfig().n_boot, 0)
        assert c.to_dict()["windows"] == 4 and "n_windows" not in c.to_dict()
    assert set(JobEval.model_fields) - set(EvalSettings.model_fields) == {"usages", "fusions"}


def test_the_readme_and_demo_job_files_load(tmp_path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```toml\n(# nightly\.toml.*?)```", readme, re.S)
    assert block is not None, "the README's job example"
    job = load_job(write(tmp_path / "nightly.toml", block.group(1)))
    assert job.job.name == "nightly" and [c.usage for c in job.eval_configs()] == ["UR+IR", "UR+IR", "CR", "CR"]
    assert job.job.snapshots == Path("/data/lee/snapshots")        # absolute paths stay as written
    demo = load_job(write(tmp_path / "lee-job.toml", DEMO_JOB.format(device="cpu", seeds="0, 1, 2", workers=2)))
    assert demo.eval.windows == 10 and demo.eval.seeds == (0, 1, 2) and demo.job.latest_only is True
    assert demo.engine.kind == "local" and demo.engine.workers == 2


def test_configs_built_in_code_stay_lenient_and_errors_stay_config_errors():
    cfg = EvalConfig(usage="CR", fusion="gate", seeds=[0, 1], windows="4")  # plain strings and lists in code
    assert cfg.usage is Usage.CR and cfg.fusion == "gate" and cfg.seeds == (0, 1) and cfg.windows == 4
    assert cfg == EvalConfig(usage=Usage.CR, fusion=FusionMode.GATE, seeds=(0, 1), windows=4)
    job = JobConfig(job=JobSpec(name="x", snapshots="s", world="w", device="cpu"),
                    eval=JobEval(usages=["CR"], fusions=["concat"], seeds=[0]))
    assert job.job.snapshots == Path("s") and job.eval_configs() == [EvalConfig(usage="CR", seeds=(0,))]
    with pytest.raises(ConfigError) as exc:
        EvalConfig(n_boot=0, proxy=ProxyConfig(lr=0.01))
    assert str(exc.value) == "evaluation config: n_boot: expected a value >= 2; got 0 (an integer)"
    with pytest.raises(ConfigError, match=r"^job config: \[eval\] windows: expected a value >= 2; got 1"):
        JobConfig(job={"name": "x", "snapshots": "s", "world": "w"}, eval={"windows": 1})


# ------------------------------------------------------------------------------------------------
# [stream] start / end
# ------------------------------------------------------------------------------------------------


def test_stream_start_and_end_select_the_events_in_range(tiny_world, tmp_path):
    path = write(tmp_path / "job.toml", JOB_HEAD + '[stream]\nstart = 2026-01-01T00:05:00Z\nend = "20260101T002500Z"\n')
    job = load_job(path)
    assert job.stream.start == datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    assert job.stream.end == datetime(2026, 1, 1, 0, 25, tzinfo=UTC)
    stream = job_stream(job, tiny_world)
    ev = tiny_world.events
    lo, hi = int(job.stream.start.timestamp()), int(job.stream.end.timestamp())
    keep = ((ev["domain"] == 1) & (ev["ts"] >= lo) & (ev["ts"] < hi)).to_numpy()
    assert 0 < keep.sum() < (ev["domain"] == 1).sum()               # the range cuts the ad stream
    assert len(stream) == keep.sum()
    np.testing.assert_array_equal(stream.ts, ev["ts"].to_numpy()[keep])
    np.testing.assert_array_equal(stream.y.numpy(), ev["click"].to_numpy()[keep].astype(np.float32))
    only_start = load_job(write(tmp_path / "job.toml", JOB_HEAD + "[stream]\nstart = 2026-01-01T00:05:00Z\n"))
    assert len(job_stream(only_start, tiny_world)) == ((ev["domain"] == 1) & (ev["ts"] >= lo)).sum()
    empty = load_job(write(tmp_path / "job.toml", JOB_HEAD + "[stream]\nstart = 2030-01-01T00:00:00Z\n"))
    with pytest.raises(InputError, match="the downstream stream is empty"):
        job_stream(empty, tiny_world)


def test_a_job_with_a_stream_range_runs_and_records_that_stream(tiny_world, tmp_path):
    save_world(tiny_world, tmp_path / "world")
    write_planted_variants(tiny_world, tmp_path / "snapshots", n_snapshots=1, seed=0, variants=("oracle",))
    path = write(tmp_path / "job.toml", JOB_HEAD + 'device = "cpu"\n[stream]\nstart = 2026-01-01T00:05:00Z\n'
                 "end = 2026-01-01T00:25:00Z\n[eval]\nseeds = [0]\nwindows = 4\nn_boot = 20\n")
    job = load_job(path)
    report = run_job(job, progress=False, log=lambda *_: None)
    assert len(report.evaluated) == 1
    store = ResultsStore(job.job.results)
    run = store.run(store.runs()["run_id"].iloc[0])
    stream = job_stream(job, tiny_world)
    assert run["data_hash"] == stream_hash(stream)
    assert run["data_hash"] != stream_hash(job_stream(job.model_copy(update={"stream": type(job.stream)()}),
                                                      tiny_world))
    assert run["config"]["windows"] == 4 and run["extra"]["n_test"] == len(stream) - stream.window_bounds(4)[1][0]


# ------------------------------------------------------------------------------------------------
# health thresholds, suite and world configs
# ------------------------------------------------------------------------------------------------


def test_health_thresholds_file_with_a_string_is_one_paragraph_on_the_command_line(tmp_path, capsys):
    path = write(tmp_path / "health.toml", '[health]\nmax_scale_ratio = "2"\n')
    rc = main(["analyze", "health", "--root", str(tmp_path / "nope"), "--variant", "v", "--thresholds", str(path)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and "\n\n" not in err.strip()
    assert flat(err) == f'error: {path}: [health] max_scale_ratio: expected a number; got "2" (a TOML string)'



def test_health_thresholds_load_flat_or_in_a_table_and_refuse_unknown_keys(tmp_path):
    flat = load_config(HealthThresholds, write(tmp_path / "a.toml", "max_scale_ratio = 2\nmax_dead_dims = 1\n"),
                       table="health")
    table = load_config(HealthThresholds, write(tmp_path / "b.toml", "[health]\nmax_scale_ratio = 2\n"
                                                "max_dead_dims = 1\n"), table="health")
    assert flat == table == HealthThresholds(max_scale_ratio=2.0, max_dead_dims=1)
    assert isinstance(flat.max_scale_ratio, float)
    path = write(tmp_path / "c.toml", "[health]\nmax_scale = 2\nmax_scale_ratio = 1\n")
    with pytest.raises(ConfigError) as exc:
        load_config(HealthThresholds, path, table="health")
    one_paragraph_error(exc, path, "[health] max_scale_ratio: expected a value > 1; got 1 (a TOML integer)",
                        "unknown key(s) max_scale in [health]; known keys: " + ", ".join(sorted(
                            HealthThresholds.model_fields)))


def test_suite_config_file_errors_and_flags_over_the_file(tmp_path, capsys, monkeypatch):
    path = write(tmp_path / "suite.toml",
                 'n_boot = "200"\nmap_methods = ["pca", "mds"]\n[health]\nmax_dead_dims = 1.5\n')
    rc = main(["report", "--world", str(tmp_path / "w"), "--root", str(tmp_path / "r"), "--out", str(tmp_path / "o"),
               "--config", str(path)])
    err = flat(capsys.readouterr().err)
    assert rc == 2 and "Traceback" not in err and err.startswith(f"error: {path}: ")
    for phrase in ('n_boot: expected an integer; got "200" (a TOML string)',
                   "map_methods[1]: expected one of 'pca', 'tsne' or 'umap'; got \"mds\"",
                   "[health] max_dead_dims: expected an integer; got 1.5 (a TOML float)"):
        assert phrase in err, err

    good = write(tmp_path / "suite.toml", 'map_methods = ["pca", "tsne"]\nn_boot = 50\nimportance_mode = "zero"\n'
                 "[health]\nmax_scale_ratio = 3\n")
    cfg = load_config(SuiteConfig, good)
    assert cfg.map_methods == (MapMethod.PCA, MapMethod.TSNE) and cfg.importance_mode is MaskingMode.ZERO
    assert cfg.health == HealthThresholds(max_scale_ratio=3.0) and cfg.seed == SuiteConfig().seed

    seen = {}

    class Stop(BaseException):  # not an Exception: the crash handler (exit 3) must let it through
        pass

    def fake_run_suite(world, root, *, config, **_):
        seen["config"] = config
        raise Stop

    monkeypatch.setattr("analysis.suite.run_suite", fake_run_suite)
    monkeypatch.setattr("lee.data.dataset.Dataset.open", lambda path: None)
    with pytest.raises(Stop):
        main(["report", "--world", "w", "--root", "r", "--out", "o", "--config", str(good), "--boot", "30"])
    assert seen["config"] == SuiteConfig(map_methods=("pca", "tsne"), n_boot=30, importance_mode="zero",
                                         health=HealthThresholds(max_scale_ratio=3.0))
    with pytest.raises(Stop):
        main(["report", "--world", "w", "--root", "r", "--out", "o"])
    assert seen["config"] == SuiteConfig()                          # no file, no flags: the model's defaults


def test_world_config_file_is_typed_and_strict(tmp_path):
    path = write(tmp_path / "world.toml", 'n_users = "2000"\ncontent_share = true\nn_groups = 40\n')
    with pytest.raises(ConfigError) as exc:
        load_config(WorldConfig, path)
    one_paragraph_error(exc, path, 'n_users: expected an integer; got "2000" (a TOML string)',
                        "content_share: expected a number; got true (a TOML boolean)",
                        "n_groups: expected a value <= 16; got 40 (a TOML integer)")
    path = write(tmp_path / "world.toml", "n_users = 300\nn_userz = 1\n")
    with pytest.raises(ConfigError) as exc:
        load_config(WorldConfig, path)
    one_paragraph_error(exc, path, "unknown key(s) n_userz; known keys: " + ", ".join(sorted(WorldConfig.model_fields)))
    path = write(tmp_path / "world.toml", "n_users = 300\ncontent_share = 1\nstart = 2026-02-01T00:00:00Z\n")
    cfg = load_config(WorldConfig, path)
    assert (cfg.n_users, cfg.content_share, cfg.start) == (300, 1.0, "2026-02-01T00:00:00+00:00")
    assert cfg.start_time == datetime(2026, 2, 1, tzinfo=UTC)
    assert config_for_scale("tiny", seed=3, n_users="300") == config_for_scale("tiny", seed=3, n_users=300)  # code
    with pytest.raises(ConfigError, match=r'^--set: n_users: expected an integer; got "300" \(a string\)$'):
        config_for_scale("tiny", seed=3, source="--set", n_users="300")


def test_missing_or_broken_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match=f"^{re.escape(str(tmp_path / 'none.toml'))}: job file not found$"):
        load_job(tmp_path / "none.toml")
    path = write(tmp_path / "bad.toml", "[health\n")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}: not valid TOML"):
        load_config(HealthThresholds, path)
    path = write(tmp_path / "list.toml", "[health]\nmax_scale_ratio = 2\nextra = 1\n[other]\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) other outside \[health\]"):
        load_config(HealthThresholds, path, table="health")


# ------------------------------------------------------------------------------------------------
# enums -> argparse
# ------------------------------------------------------------------------------------------------


def _subparser(parser: argparse.ArgumentParser, *names: str) -> argparse.ArgumentParser:
    for name in names:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def _choices(parser: argparse.ArgumentParser, flag: str) -> list[str]:
    action = next(a for a in parser._actions if flag in a.option_strings)
    return list(action.choices)


@pytest.mark.parametrize("command, flag, values", [
    (("analyze", "importance"), "--mode", enum_values(MaskingMode)),
    (("analyze", "importance"), "--usage", enum_values(Usage)),
    (("analyze", "importance"), "--fusion", [f.value for f in FUSIONS]),
    (("analyze", "importance"), "--device", enum_values(Device)),
    (("analyze", "clusters"), "--backend", enum_values(KMeansBackend)),
    (("evaluate",), "--device", enum_values(Device)),
    (("sweep",), "--fusion", [f.value for f in FUSIONS]),
    (("sweep",), "--device", enum_values(Device)),
    (("upstream", "train"), "--device", enum_values(Device)),
    (("demo",), "--device", enum_values(Device)),
])
def test_enum_values_flow_to_argparse_choices(command, flag, values):
    choices = _choices(_subparser(build_parser(), *command), flag)
    assert choices == values and all(type(c) is str for c in choices)


def test_enums_are_the_closed_option_sets():
    assert enum_values(FusionMode) == ["concat", "gate", "iim", "retrieval"]
    assert enum_values(Usage) == ["UR", "IR", "UR+IR", "CR", "CR_user", "CR_item"]
    assert enum_values(MaskingMode) == ["zero", "mean", "permutation"]
    assert enum_values(KMeansBackend) == ["auto", "numpy", "faiss", "torch", "sklearn"]
    assert enum_values(MapMethod) == ["pca", "tsne", "umap"]
    assert enum_values(Device) == ["auto", "cpu", "cuda"]
    assert Usage.UR_IR == "UR+IR" and f"{FusionMode.IIM}" == "iim"  # members are their strings


def test_a_bad_choice_on_the_command_line_lists_the_values(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["analyze", "importance", "--world", "w", "--mode", "shuffle"])
    assert exc.value.code == 2
    assert "invalid choice: 'shuffle' (choose from 'zero', 'mean', 'permutation')" in capsys.readouterr().err
