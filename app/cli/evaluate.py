"""``lee evaluate``, ``lee sweep`` and ``lee results ...``: LEE jobs and their results store."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from app.cli import choices
from app.cli.output import AddCommon, emit, print_frame
from lee.errors import InputError


def cmd_evaluate(args: argparse.Namespace) -> int:
    from lee.jobs.config import load_job
    from lee.jobs.run import run_job

    job = load_job(args.config) if args.config else _job_from_flags(args)
    if args.device:
        job = job.with_device(args.device)
    if args.engine or args.address:
        if args.address and (args.engine or job.engine.kind) != "ray":
            raise InputError(f"--address {args.address} names a Ray cluster; it needs --engine ray")
        job = job.with_engine(args.engine or job.engine.kind, args.address)
    if args.workers is not None:   # overrides [engine] workers (local engine only)
        job = job.with_workers(args.workers)
    if args.data_parallel is not None:  # overrides the job file's [eval] data_parallel
        from lee.jobs.config import JobEval

        job = job.model_copy(update={"eval": JobEval(**{**job.eval.model_dump(), "data_parallel": args.data_parallel})})
    report = run_job(job, progress=not args.quiet, log=(lambda *_: None) if args.json else print,
                     stop_after=args.max_units)
    doc = {"job": job.job.name, "results": str(job.job.results), "evaluated": report.evaluated,
           "already_done": report.skipped, "not_applicable": report.not_applicable,
           "warnings": report.warnings, "seconds": round(report.seconds, 2)}
    if args.json:
        emit(doc, args)
    else:
        print(f"done: {len(report.evaluated)} evaluated, {report.skipped} already in the store, "
              f"{report.seconds:.1f} s")
    return 0


def _job_from_flags(args: argparse.Namespace) -> Any:
    """A job without a file: ``--data``, ``--snapshots`` and ``--results`` (plus optional settings)."""
    from lee.jobs.config import JobConfig, JobEval, JobSpec, StreamSpec

    missing = [f"--{k}" for k in ("data", "snapshots", "results") if getattr(args, k) is None]
    if missing:
        raise InputError(f"lee evaluate needs --config JOB.toml, or {', '.join(missing)} "
                         "(with --data, --snapshots and --results)")
    job = {"name": args.name, "snapshots": args.snapshots, "data": args.data, "results": args.results,
           "latest_only": not args.all_snapshots}
    if args.variants:
        job["variants"] = tuple(v for v in args.variants.split(",") if v)
    ev: dict[str, Any] = {}
    if args.usages:
        ev["usages"] = tuple(u for u in args.usages.split(",") if u)
    if args.fusions:
        ev["fusions"] = tuple(f for f in args.fusions.split(",") if f)
    if args.seeds is not None:
        ev["seeds"] = tuple(range(args.seeds))
    stream: dict[str, Any] = {"part": args.part}
    return JobConfig(job=JobSpec(**job), eval=JobEval(**ev), stream=StreamSpec(**stream))


def cmd_sweep(args: argparse.Namespace) -> int:
    from lee.device import resolve_device
    from lee.evaluator.compare import EvalConfig
    from lee.evaluator.sweep import layer_sweep
    from lee.world.io import load_world

    dims = _int_list(args.dims, "--dims")
    seeds = _int_list(args.seeds, "--seeds")
    if args.table:
        from lee.fileio import check_output_target

        check_output_target(args.table)  # before the sweep runs, not after
    res = layer_sweep(load_world(args.world), args.out, dims=dims, device=resolve_device(args.device),
                      eval_cfg=EvalConfig(usage="CR", fusion=args.fusion, seeds=tuple(seeds)),
                      progress=not args.quiet)
    if args.table:  # a regular file, replaced whole; a link or a device is refused (lee.fileio)
        from lee.fileio import atomic_write_text

        atomic_write_text(args.table, res.table.to_csv(index=False))
    print_frame(res.table, args)
    return 0


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{flag} expects comma-separated integers; got {text!r}") from None
    if not values:
        raise InputError(f"{flag} needs at least one value")
    return values


def _results_store(args: argparse.Namespace):
    from lee.jobs.store import ResultsStore

    if not Path(args.db).is_file():
        raise InputError(f"{args.db}: no results store here (run `lee evaluate --config JOB.toml` first)")
    return ResultsStore(args.db, readonly=True)  # reading never creates or alters the store


def cmd_results_ls(args: argparse.Namespace) -> int:
    df = _results_store(args).runs(job=args.job)
    cols = ["run_id", "job", "variant", "event_time", "usage", "fusion", "auc", "delta_auc", "verdict", "finished_at"]
    if df.empty and not args.json:
        return _no_runs(args)
    print_frame(df[cols] if not df.empty else df, args)
    return 0


def _no_runs(args: argparse.Namespace) -> int:
    """Say what a store without matching LEE runs does hold: the release gate's decisions, if any."""
    from analysis.gate import decision_table

    which = [f"{name} {value}" for name, value in (("of job", args.job), ("with usage", getattr(args, "usage", None)),
                                                   ("and fusion", getattr(args, "fusion", None))) if value]
    gates = decision_table(args.db)
    listed = ", newest first:" if len(gates) else ""
    print(f"no LEE runs{' ' + ' '.join(which) if which else ''} in {args.db} (lee evaluate records them); "
          f"{len(gates)} release-gate decision(s) recorded (lee gate --db){listed}")
    if len(gates):
        print_frame(gates, args)
    return 0


WINDOW_COLUMNS = ["window", "start", "end", "events", "positives", "ctr", "baseline_auc", "variant_auc",
                  "baseline_pred_ctr", "variant_pred_ctr", "baseline_logloss", "variant_logloss"]


def cmd_results_show(args: argparse.Namespace) -> int:
    import pandas as pd

    doc = _results_store(args).run(args.run_id)
    metrics = doc.pop("metrics")
    extra = doc.get("extra") or {}
    # per test window: event-time span, events, positives, both models' AUC (the headline's parts)
    doc["windows"] = extra.get("windows", [])
    for key in ("auc_pooled", "baseline_auc_pooled", "calibration", "baseline_calibration", "same_content_as"):
        doc[key] = extra.get(key)
    if args.json:
        doc["metrics"] = metrics.to_dict(orient="records")
        print(json.dumps(doc, default=str))
        return 0
    for key in ("run_id", "job", "variant", "event_time", "usage", "fusion", "auc", "baseline_auc", "delta_auc",
                "ci_low", "ci_high", "verdict", "rela_impr", "gauc", "logloss", "calibration", "auc_pooled",
                "baseline_auc_pooled", "seconds", "code_version", "snapshot_path"):
        print(f"{key:<19} {doc[key]}")
    if doc["same_content_as"]:
        print(f"{'same_content_as':<19} {doc['same_content_as']} (evaluated once, recorded for both)")
    print("auc, gauc, delta_auc: event-weighted means of per-window values; auc_pooled: all test events pooled")
    if doc["windows"]:
        table = pd.DataFrame(doc["windows"])
        print(table[[c for c in WINDOW_COLUMNS if c in table.columns]].to_string(
            index=False, float_format=lambda v: f"{v:.4f}"))
    overall = metrics[metrics["window"] == 0].pivot_table(index=["model", "seed"], columns="metric", values="value")
    print(overall.to_string(float_format=lambda v: f"{v:.4f}"))
    return 0


def cmd_results_compare(args: argparse.Namespace) -> int:
    from lee.evaluator.compare import coverage_warning

    if args.variants:
        return _compare_two(args)
    from analysis.lee_results import MULTIPLICITY, add_multiplicity, run_levels

    store = _results_store(args)
    df = store.compare(usage=args.usage, fusion=args.fusion, job=args.job)
    if df.empty and not args.json:
        return _no_runs(args)
    df = add_multiplicity(df, run_levels(store, df))
    cols = ["variant", "event_time", "usage", "fusion", "auc", "baseline_auc", "delta_auc", "ci_low", "ci_high",
            "rela_impr", "auc_pooled", "calibration", "coverage_events", "coverage_ids", "verdict", "verdict_holm",
            "p_holm", "family_size", "run_id"]
    print_frame(df[cols] if not df.empty else df, args)
    if not args.json and not df.empty:
        print(MULTIPLICITY)
        for r in df.itertuples():
            warn = coverage_warning(float(r.coverage_events)) if r.coverage_events == r.coverage_events else ""
            if warn:
                print(f"{r.variant} {r.usage}/{r.fusion}: {warn}")
    return 0


def _compare_two(args: argparse.Namespace) -> int:
    """``lee results compare --db DB A B``: the paired interval of AUC(A) − AUC(B) (analysis.variant_compare)."""
    from analysis.variant_compare import compare_variants

    if len(args.variants) != 2:
        raise InputError(f"results compare takes two variants to compare with each other (A B), or none for the "
                         f"ranking; got {len(args.variants)}: {' '.join(args.variants)}")
    res = compare_variants(args.db, *args.variants, usage=args.usage, fusion=args.fusion, job=args.job,
                           level=args.level)
    doc = res.summary()
    if args.json:
        emit(doc, args)
        return 0
    cols = ["usage", "fusion", "delta", "ci_low", "ci_high", "verdict", "windows", "seeds", "pooled_delta",
            "lag1_autocorr", "run_a", "run_b"]
    print(f"{doc['question']}, {res.level:.0%} interval")
    print_frame(res.table[cols], args)
    print(f"method: {doc['method']}")
    print(f"assumption: {doc['assumption']}")
    return 0


def register(sub: Any, common: AddCommon) -> None:
    """``lee evaluate``, ``lee sweep``, ``lee results ls|compare|show``."""
    p = common(sub.add_parser("evaluate", help="run a LEE job: evaluate snapshots not yet in the results store"))
    p.add_argument("--config", type=Path, help="job file (TOML); or give --data, --snapshots and --results")
    p.add_argument("--data", type=Path, help="dataset (or world) directory: its downstream events are the stream")
    p.add_argument("--snapshots", type=Path, help="snapshot root")
    p.add_argument("--results", type=Path, help="results store (SQLite; created if missing)")
    p.add_argument("--name", default="cli", help="job name recorded with the runs (default: cli)")
    p.add_argument("--variants", help="comma-separated glob patterns (default: every variant)")
    p.add_argument("--usages", help="comma-separated, e.g. UR+IR,CR (default: UR+IR)")
    p.add_argument("--fusions", help="comma-separated, e.g. concat,iim (default: concat)")
    p.add_argument("--seeds", type=int, help="number of proxy seeds (default: 3)")
    p.add_argument("--part", default="downstream", choices=("downstream", "upstream", "all"),
                   help="which events the proxy learns from and is scored on (default: downstream)")
    p.add_argument("--all-snapshots", action="store_true", help="every snapshot, not only each variant's latest")
    p.add_argument("--device", choices=choices.DEVICES, help="override the job's device")
    p.add_argument("--max-units", type=int, help="evaluate at most this many units in this run")
    p.add_argument("--engine", choices=("local", "ray"),
                   help="where units run: local (this process) or ray (Ray tasks); overrides the job's [engine]")
    p.add_argument("--address", help="with --engine ray: an existing Ray cluster ('auto', 'ray://HEAD:10001'); "
                                     "default: a Ray instance started on this machine")
    p.add_argument("--workers", type=int, metavar="N",
                   help="local engine: evaluate N units at once in N worker processes, each with its share of "
                        "the cores (same results; overrides [engine] workers; default 1: in this process)")
    p.add_argument("--data-parallel", type=int, metavar="N",
                   help="train each proxy model data-parallel in N worker processes (same results up to float "
                        "summation order; overrides [eval] data_parallel; default 1)")
    p.set_defaults(func=cmd_evaluate)

    p = common(sub.add_parser("sweep", help="layer sweep: LEE on the CR of every upstream layer at several dims"))
    p.add_argument("--world", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="snapshot root for the sweep's CR variants")
    p.add_argument("--dims", default="16,32,64")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--fusion", default="concat", choices=choices.FUSIONS)
    p.add_argument("--device", default="auto", choices=choices.DEVICES)
    p.add_argument("--table", type=Path, help="also write the sweep table as CSV here")
    p.set_defaults(func=cmd_sweep)

    results = sub.add_parser("results", help="inspect the results store").add_subparsers(
        dest="results_command", required=True, metavar="SUBCOMMAND")
    for name, func, helptext in (("ls", cmd_results_ls, "list runs"),
                                 ("compare", cmd_results_compare, "latest run per variant, ranked by ΔAUC")):
        p = common(results.add_parser(name, help=helptext))
        p.add_argument("--db", required=True, type=Path, help="results store (SQLite)")
        p.add_argument("--job")
        if name == "compare":
            p.add_argument("variants", nargs="*", metavar="A B",
                           help="two variants: the paired interval of AUC(A) - AUC(B) instead of the ranking")
            p.add_argument("--usage")
            p.add_argument("--fusion")
            p.add_argument("--level", type=float, default=0.95, help="interval level for A B (default 0.95)")
        p.set_defaults(func=func)
    p = common(results.add_parser("show", help="one run in full"))
    p.add_argument("run_id")
    p.add_argument("--db", required=True, type=Path)
    p.set_defaults(func=cmd_results_show)
