"""The ``lee`` command line: worlds, the upstream model, snapshots, LEE, analyses and the demo job.

Every user-facing error is a :class:`~lee.errors.LeeError`; ``main`` prints it as one paragraph
on stderr and exits with status 2 (1 for other operating-system errors such as a full disk),
never with a traceback. Commands that report numbers print JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sys
import textwrap
import warnings
from dataclasses import replace
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lee import __version__, cli_analyze
from lee.device import DEVICE_CHOICES
from lee.errors import InputError, LeeError, LeeWarning

EXIT_USAGE_OR_INPUT = 2
EXIT_OS = 1


# ---------------------------------------------------------------------------------------------
# world
# ---------------------------------------------------------------------------------------------


def _parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are read as JSON when they parse, else kept as strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise InputError(f"--set expects key=value; got {pair!r}")
        key, raw = pair.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def _check_override_types(overrides: dict[str, Any]) -> None:
    """``--set`` values must have the type of the field they set (an int where an int belongs)."""
    from lee.world.config import WorldConfig

    defaults = {f.name: f.default for f in dataclasses.fields(WorldConfig)}
    for key, value in overrides.items():
        if key not in defaults:
            continue  # unknown keys: config_for_scale names them and lists the known ones
        want = type(defaults[key])
        ok = not isinstance(value, bool) and (isinstance(value, want) or (want is float and isinstance(value, int)))
        if not ok:
            expected = {int: "an integer", float: "a number", str: "a string"}.get(want, want.__name__)
            raise InputError(f"--set {key} expects {expected}; got {value!r}")


def cmd_world_generate(args: argparse.Namespace) -> int:
    from lee.world.config import config_for_scale
    from lee.world.generate import generate_world
    from lee.world.io import save_world

    overrides = _parse_overrides(args.set)
    _check_override_types(overrides)
    config = config_for_scale(args.scale, seed=args.seed, **overrides)
    world = generate_world(config, progress=not args.quiet)
    path = save_world(world, args.out, overwrite=args.overwrite)
    _emit({"world": str(path), **world.summary()}, args)
    return 0


def cmd_world_plant(args: argparse.Namespace) -> int:
    from lee.world.io import load_world
    from lee.world.planted import PLANTED_VARIANTS, write_planted_variants

    variants = args.variants.split(",") if args.variants else list(PLANTED_VARIANTS)
    unknown = sorted(set(variants) - set(PLANTED_VARIANTS))
    if unknown:
        raise InputError(f"unknown planted variant(s) {', '.join(unknown)}; choose from {', '.join(PLANTED_VARIANTS)}")
    if args.snapshots <= 0 or args.interval <= 0:
        raise InputError(f"--snapshots and --interval must be positive; got {args.snapshots} and {args.interval}")
    world = load_world(args.world)
    written = write_planted_variants(world, args.out, dim=args.dim, n_snapshots=args.snapshots,
                                     interval_minutes=args.interval, variants=variants, seed=args.seed,
                                     overwrite=args.overwrite)
    _emit({v: [str(p) for p in paths] for v, paths in written.items()}, args)
    return 0


def cmd_world_fixtures(args: argparse.Namespace) -> int:
    from lee.world.fixtures import write_fixtures

    _emit({"fixtures": str(write_fixtures(args.out, overwrite=args.overwrite))}, args)
    return 0


def cmd_world_show(args: argparse.Namespace) -> int:
    from lee.world.io import load_world

    world = load_world(args.world)
    _emit({"world": str(args.world), **world.summary(), "config": world.meta.get("config")}, args)
    return 0


# ---------------------------------------------------------------------------------------------
# upstream
# ---------------------------------------------------------------------------------------------


def cmd_upstream_train(args: argparse.Namespace) -> int:
    from lee.device import resolve_device
    from lee.features import encode_world
    from lee.snapshot.format import check_variant_name
    from lee.upstream.model import UpstreamConfig
    from lee.upstream.train import TrainConfig, train_upstream
    from lee.world.io import load_world

    device = resolve_device(args.device)
    if args.rep_dim <= 0:
        raise InputError(f"--rep-dim must be positive; got {args.rep_dim}")
    model_cfg = UpstreamConfig(rep_dim=args.rep_dim, cr_layer=args.cr_layer)
    model_cfg.check_layer(args.cr_layer)
    train_cfg = TrainConfig(batch_size=args.batch_size, snapshot_every_minutes=args.snapshot_every,
                            holdout_fraction=args.holdout, tau_seconds=args.tau, seed=args.seed,
                            variant=args.variant)
    check_variant_name(args.variant)
    enc = encode_world(load_world(args.world))
    result = train_upstream(enc, args.out, model_cfg=model_cfg, train_cfg=train_cfg, device=device,
                            progress=not args.quiet)
    _emit({
        "variant": args.variant,
        "snapshots": [str(p) for p in result.snapshots],
        "holdout_auc_ad": result.holdout_auc_ad,
        "holdout_auc_content": result.holdout_auc_content,
        "train_events": result.train_events,
        "holdout_events": result.holdout_events,
        "seconds": round(result.seconds, 3),
        "events_per_second": round(result.events_per_second),
        "device": result.device,
    }, args)
    return 0


# ---------------------------------------------------------------------------------------------
# snapshots
# ---------------------------------------------------------------------------------------------


def cmd_snapshots_ls(args: argparse.Namespace) -> int:
    from lee.snapshot import SnapshotStore
    from lee.timeutil import iso

    store = SnapshotStore(args.root)
    variants = [args.variant] if args.variant else store.variants()
    listing = {v: [iso(t) for t in store.times(v)] for v in variants}
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    if not listing:
        print(f"{args.root}: no snapshots")
    for v, times in listing.items():
        span = f"{times[0]} .. {times[-1]}" if times else "none"
        print(f"{v:<20} {len(times):>4} snapshot(s)  {span}")
    return 0


def cmd_snapshots_show(args: argparse.Namespace) -> int:
    from lee.snapshot.store import open_any

    snap = open_any(args.path)
    doc = snap.manifest.to_dict()
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"{snap.path}\n  variant {doc['variant']}  event time {doc['event_time']}  "
          f"source layer {doc['source_layer'] or '-'}  format v{doc['format_version']}")
    for kind, t in doc["tables"].items():
        print(f"  {kind:<8} {t['rows']:>10,} rows x {t['dim']:>4}  ids {t['id_type']:<6}  "
              f"sha256 {t['sha256'][:12]}…{'  updated_at' if t['has_updated_at'] else ''}")
    return 0


def _snapshot_dirs(path: Path) -> list[Path]:
    """A snapshot directory, every snapshot of a variant directory, or every snapshot under a root."""
    from lee.snapshot.format import MANIFEST_NAME

    if (path / MANIFEST_NAME).is_file() or not path.is_dir():
        return [path]
    found = sorted(p.parent for p in path.glob(f"*/{MANIFEST_NAME}") if not p.parent.name.startswith("."))
    found += sorted(p.parent for p in path.glob(f"*/*/{MANIFEST_NAME}")
                    if not p.parent.name.startswith(".") and not p.parent.parent.name.startswith("."))
    return found or [path]  # nothing found: let the validator say why ``path`` is not a snapshot


def cmd_snapshots_validate(args: argparse.Namespace) -> int:
    from lee.snapshot import validate_snapshot

    failures = 0
    checked = 0
    for root in args.paths:
        for snap_dir in _snapshot_dirs(Path(root)):
            checked += 1
            try:
                reports = validate_snapshot(snap_dir)
            except LeeError as exc:
                failures += 1
                _print_error(exc, prefix="invalid")
                continue
            if not args.quiet:
                tables = ", ".join(f"{r.kind.value} {r.rows:,}x{r.dim}" for r in reports)
                print(f"ok  {snap_dir}  ({tables})")
    if failures:
        print(f"{failures} of {checked} snapshot(s) failed validation", file=sys.stderr)
        return EXIT_USAGE_OR_INPUT
    return 0


def cmd_snapshots_import(args: argparse.Namespace) -> int:
    from lee.snapshot import write_snapshot
    from lee.snapshot.importers import importer_for

    ids_files = dict(_kind_pairs(args.ids, "--ids"))
    tables = {}
    for kind, file in _kind_pairs(args.table, "--table"):
        importer = importer_for(file, args.format, ids_path=ids_files.get(kind),
                                ids_key=args.ids_key, vectors_key=args.vectors_key)
        tables[kind] = importer.read(file)
    unused = sorted(k.value for k in set(ids_files) - set(tables))
    if unused:
        raise InputError(f"--ids given for {', '.join(unused)} but no --table for it")
    path = write_snapshot(args.root, args.variant, _event_time_arg(args.time), tables, source_layer=args.source_layer,
                          overwrite=args.overwrite, extra={"imported_from": {k.value: str(f) for k, f in
                                                                              _kind_pairs(args.table, "--table")}})
    _emit({"snapshot": str(path), "tables": {k.value: {"rows": len(t), "dim": t.dim} for k, t in tables.items()}},
          args)
    return 0


def _event_time_arg(text: str) -> Any:
    """``--time`` as the help promises: ISO 8601, the directory form, or whole epoch seconds."""
    from lee.timeutil import parse_event_time

    try:
        return parse_event_time(text)
    except InputError:
        if not re.fullmatch(r"\s*[+-]?\d+\s*", text):
            raise
    try:
        return parse_event_time(int(text))
    except (OverflowError, ValueError, OSError) as exc:
        raise InputError(f"--time {text.strip()}: epoch seconds out of range ({exc})") from None


def _kind_pairs(pairs: Sequence[str] | None, flag: str) -> list[tuple[Any, Path]]:
    """``KIND=PATH`` pairs such as ``UR=user.npz`` as (TableKind, Path)."""
    from lee.snapshot.format import TableKind

    out = []
    for pair in pairs or []:
        if "=" not in pair:
            raise InputError(f"{flag} expects KIND=PATH (e.g. UR=users.npz); got {pair!r}")
        kind, file = pair.split("=", 1)
        out.append((TableKind.parse(kind), Path(file)))
    return out


def cmd_snapshots_export(args: argparse.Namespace) -> int:
    from lee.snapshot.importers import export_table
    from lee.snapshot.store import open_any

    path = export_table(open_any(args.path), args.kind, args.out, args.format)
    _emit({"exported": str(path)}, args)
    return 0


# ---------------------------------------------------------------------------------------------
# evaluate and results
# ---------------------------------------------------------------------------------------------


def cmd_evaluate(args: argparse.Namespace) -> int:
    from lee.jobs.config import load_job
    from lee.jobs.run import run_job

    job = load_job(args.config)
    if args.device:
        job = replace(job, device=args.device)
    report = run_job(job, progress=not args.quiet, log=(lambda *_: None) if args.json else print,
                     stop_after=args.max_units)
    doc = {"job": job.name, "results": str(job.results), "evaluated": report.evaluated,
           "already_done": report.skipped, "not_applicable": report.not_applicable,
           "seconds": round(report.seconds, 2)}
    if args.json:
        _emit(doc, args)
    else:
        print(f"done: {len(report.evaluated)} evaluated, {report.skipped} already in the store, "
              f"{report.seconds:.1f} s")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from lee.device import resolve_device
    from lee.evaluator.compare import EvalConfig
    from lee.evaluator.sweep import layer_sweep
    from lee.world.io import load_world

    dims = _int_list(args.dims, "--dims")
    seeds = _int_list(args.seeds, "--seeds")
    res = layer_sweep(load_world(args.world), args.out, dims=dims, device=resolve_device(args.device),
                      eval_cfg=EvalConfig(usage="CR", fusion=args.fusion, seeds=tuple(seeds)),
                      progress=not args.quiet)
    if args.table:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        res.table.to_csv(args.table, index=False)
    _print_frame(res.table, args)
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
    return ResultsStore(args.db)


def _print_frame(df, args: argparse.Namespace) -> None:
    import pandas as pd

    if args.json:
        print(df.to_json(orient="records"))
    elif df.empty:
        print("no runs")
    else:
        with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_colwidth", 40):
            print(df.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def cmd_results_ls(args: argparse.Namespace) -> int:
    df = _results_store(args).runs(job=args.job)
    cols = ["run_id", "job", "variant", "event_time", "usage", "fusion", "auc", "delta_auc", "verdict", "finished_at"]
    _print_frame(df[cols] if not df.empty else df, args)
    return 0


def cmd_results_show(args: argparse.Namespace) -> int:
    doc = _results_store(args).run(args.run_id)
    metrics = doc.pop("metrics")
    if args.json:
        doc["metrics"] = metrics.to_dict(orient="records")
        print(json.dumps(doc, default=str))
        return 0
    for key in ("run_id", "job", "variant", "event_time", "usage", "fusion", "auc", "baseline_auc", "delta_auc",
                "ci_low", "ci_high", "verdict", "rela_impr", "gauc", "logloss", "seconds", "code_version",
                "snapshot_path"):
        print(f"{key:<14} {doc[key]}")
    overall = metrics[metrics["window"] == 0].pivot_table(index=["model", "seed"], columns="metric", values="value")
    print(overall.to_string(float_format=lambda v: f"{v:.4f}"))
    return 0


def cmd_results_compare(args: argparse.Namespace) -> int:
    df = _results_store(args).compare(usage=args.usage, fusion=args.fusion, job=args.job)
    cols = ["variant", "event_time", "usage", "fusion", "auc", "baseline_auc", "delta_auc", "ci_low", "ci_high",
            "rela_impr", "verdict", "run_id"]
    _print_frame(df[cols] if not df.empty else df, args)
    return 0


# ---------------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from lee.demo import run_demo

    run_demo(args.out, scale=args.scale, seed=args.seed, device=args.device, overwrite=args.overwrite,
             progress=not args.quiet, log=(lambda *_: None) if args.quiet else print,
             real_data=not args.no_real_data)
    return 0


# ---------------------------------------------------------------------------------------------
# plumbing
# ---------------------------------------------------------------------------------------------


def _strict(value: Any) -> Any:
    """NaN and infinities become null, so the output is strict JSON that any parser reads."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def _emit(doc: dict[str, Any], args: argparse.Namespace) -> None:
    """Results as JSON on stdout: indented for people, one line with ``--json`` for scripts."""
    print(json.dumps(_strict(doc), indent=None if getattr(args, "json", False) else 2, default=str,
                     allow_nan=False))


def _print_error(exc: BaseException, *, prefix: str = "error") -> None:
    text = " ".join(str(exc).split())  # one paragraph, whatever the message's line breaks
    print(textwrap.fill(f"{prefix}: {text}", width=100, break_long_words=False, break_on_hyphens=False),
          file=sys.stderr)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Workbench warnings as one 'warning: ...' paragraph (no source line); others as usual."""
    if issubclass(category, LeeWarning):
        _print_error(message, prefix="warning")
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def build_parser() -> argparse.ArgumentParser:
    from lee.world.config import SCALES

    parser = argparse.ArgumentParser(prog="lee", description="LEE Workbench: embedding-quality analysis for "
                                     "recommendation and ads foundation models.")
    parser.add_argument("--version", action="version", version=f"lee {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--json", action="store_true", help="print machine-readable JSON on one line")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
        return p

    # world
    world = sub.add_parser("world", help="generate, plant and inspect worlds").add_subparsers(
        dest="world_command", required=True, metavar="SUBCOMMAND")
    p = common(world.add_parser("generate", help="generate a planted ad world"))
    p.add_argument("--out", required=True, type=Path, help="world directory to write")
    p.add_argument("--scale", default="small", choices=sorted(SCALES), help="named size (default: small)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config field")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_world_generate)

    p = common(world.add_parser("plant", help="write the planted-quality snapshot variants of a world"))
    p.add_argument("--world", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="snapshot root")
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--snapshots", type=int, default=3, help="snapshots per variant")
    p.add_argument("--interval", type=int, default=5, help="minutes between snapshots")
    p.add_argument("--variants", default="", help="comma-separated subset (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_world_plant)

    p = common(world.add_parser("anomalies", help="append planted broken snapshots (health-monitor yardsticks)"))
    p.add_argument("--root", required=True, type=Path, help="snapshot root")
    p.add_argument("--variant", required=True)
    p.add_argument("--interval", type=int, default=5, help="minutes between the appended snapshots")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=lambda a: cli_analyze.cmd_anomalies(a, _emit))

    p = common(world.add_parser("ab-log", help="write a planted A/B exposure log (GMV lift differs by segment)"))
    p.add_argument("--world", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="Parquet file to write")
    p.add_argument("--other-threshold", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=lambda a: cli_analyze.cmd_ab_log(a, _emit))

    cli_analyze.add_world_importers(world, common, lambda cmd: (lambda a: cmd(a, _emit)))

    p = common(world.add_parser("fixtures", help="regenerate the committed sample data (fixtures/tiny)"))
    p.add_argument("--out", type=Path, default=Path("fixtures/tiny"))
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_world_fixtures)

    p = common(world.add_parser("show", help="summarise a world directory"))
    p.add_argument("world", type=Path)
    p.set_defaults(func=cmd_world_show)

    # upstream
    upstream = sub.add_parser("upstream", help="the upstream foundation model").add_subparsers(
        dest="upstream_command", required=True, metavar="SUBCOMMAND")
    p = common(upstream.add_parser("train", help="train the triple-tower model and write snapshots"))
    p.add_argument("--world", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="snapshot root")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--snapshot-every", type=int, default=5, metavar="MINUTES", help="event-time minutes between snapshots")
    p.add_argument("--holdout", type=float, default=0.2, help="final share of the stream held out for AUC")
    p.add_argument("--rep-dim", type=int, default=32, help="dim of UR and IR")
    p.add_argument("--cr-layer", default="ads.mlp.1", help="layer CR is read from (e.g. ads.cross.0, content.mlp.1)")
    p.add_argument("--tau", type=float, default=600.0, help="CR moving-average time constant in seconds")
    p.add_argument("--variant", default="upstream", help="variant name of the written snapshots")
    p.set_defaults(func=cmd_upstream_train)

    # snapshots
    snaps = sub.add_parser("snapshots", help="list, inspect, validate, import and export snapshots").add_subparsers(
        dest="snapshots_command", required=True, metavar="SUBCOMMAND")
    p = common(snaps.add_parser("ls", help="variants and their snapshot times under a root"))
    p.add_argument("root", type=Path)
    p.add_argument("--variant")
    p.set_defaults(func=cmd_snapshots_ls)

    p = common(snaps.add_parser("show", help="one snapshot's manifest"))
    p.add_argument("path", type=Path)
    p.set_defaults(func=cmd_snapshots_show)

    p = common(snaps.add_parser("validate", help="fully check snapshots (a snapshot, variant or root directory)"))
    p.add_argument("paths", nargs="+", type=Path)
    p.set_defaults(func=cmd_snapshots_validate)

    p = common(snaps.add_parser("import", help="write a snapshot from .npz/.npy/safetensors files"))
    p.add_argument("--root", required=True, type=Path)
    p.add_argument("--variant", required=True)
    p.add_argument("--time", required=True, help="event time (ISO 8601 or epoch seconds)")
    p.add_argument("--table", action="append", required=True, metavar="KIND=FILE",
                   help="a table to import, e.g. UR=users.npz (repeatable)")
    p.add_argument("--ids", action="append", metavar="KIND=FILE", help="ids .npy for a .npy table")
    p.add_argument("--format", choices=("npz", "npy", "safetensors"), help="default: from the suffix")
    p.add_argument("--ids-key", help="array/tensor name of the ids (default: ids)")
    p.add_argument("--vectors-key", help="array/tensor name of the vectors (default: vectors)")
    p.add_argument("--source-layer", default="")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_snapshots_import)

    p = common(snaps.add_parser("export", help="write one table as CSV or Parquet (id, v0..v{d-1})"))
    p.add_argument("path", type=Path)
    p.add_argument("--kind", required=True, help="UR, IR, CR_user or CR_item")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--format", default="csv", choices=("csv", "parquet"))
    p.set_defaults(func=cmd_snapshots_export)

    # evaluate / results
    p = common(sub.add_parser("evaluate", help="run a LEE job: evaluate snapshots not yet in the results store"))
    p.add_argument("--config", required=True, type=Path, help="job file (TOML)")
    p.add_argument("--device", choices=DEVICE_CHOICES, help="override the job's device")
    p.add_argument("--max-units", type=int, help="evaluate at most this many units in this run")
    p.set_defaults(func=cmd_evaluate)

    p = common(sub.add_parser("sweep", help="layer sweep: LEE on the CR of every upstream layer at several dims"))
    p.add_argument("--world", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="snapshot root for the sweep's CR variants")
    p.add_argument("--dims", default="16,32,64")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--fusion", default="concat", choices=("concat", "gate", "iim"))
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
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
            p.add_argument("--usage")
            p.add_argument("--fusion")
        p.set_defaults(func=func)
    p = common(results.add_parser("show", help="one run in full"))
    p.add_argument("run_id")
    p.add_argument("--db", required=True, type=Path)
    p.set_defaults(func=cmd_results_show)

    cli_analyze.add_parsers(sub, common, lambda cmd: (lambda a: cmd(a, _emit)))
    cli_analyze.add_casestudy(sub, common, lambda cmd: (lambda a: cmd(a, _emit)))

    p = common(sub.add_parser("report", help="self-contained HTML report (+ JSON/CSV) of every analysis"))
    p.add_argument("--world", required=True, type=Path)
    p.add_argument("--root", required=True, type=Path, help="snapshot root")
    p.add_argument("--out", required=True, type=Path, help="directory for report.html and data/")
    p.add_argument("--db", type=Path, help="LEE results store to include")
    p.add_argument("--sweep", type=Path, help="layer-sweep CSV (lee sweep --table) to include")
    p.add_argument("--variants", help="comma-separated (default: all)")
    p.add_argument("--maps", default="pca", help="2-D maps: pca,tsne,umap (default pca)")
    p.add_argument("--importance", help="variants to run feature-masking importance on (comma-separated)")
    p.add_argument("--boot", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=lambda a: cli_analyze.cmd_report(a, _emit))

    # demo
    p = common(sub.add_parser("demo", help="the main job, end to end on a generated world"))
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--scale", default="small", choices=sorted(SCALES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-real-data", action="store_true", help="skip step 8 (the MovieLens and Open Bandit case studies)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; user errors become a one-paragraph message and a non-zero exit status."""
    args = build_parser().parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        return int(args.func(args) or 0)
    except LeeError as exc:
        _print_error(exc)
        return EXIT_USAGE_OR_INPUT
    except OSError as exc:  # disk full, permission denied: the OS's words, without a traceback
        _print_error(exc)
        return EXIT_OS
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
