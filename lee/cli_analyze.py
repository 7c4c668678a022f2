"""``lee analyze ...``: the analyses of :mod:`analysis` from the command line.

Each command checks its arguments, calls one analysis function, prints the result's summary as
JSON and, with ``--out DIR``, writes the result's JSON and CSV tables there (analysis.export).
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lee.device import DEVICE_CHOICES
from lee.errors import ConfigError, InputError

Emit = Callable[[dict[str, Any], argparse.Namespace], None]


def _finish(result: Any, name: str, args: argparse.Namespace, emit: Emit, extra: dict[str, Any] | None = None) -> int:
    from analysis.export import export_result, plain

    doc = plain(result.summary())
    if extra:
        doc.update(plain(extra))
    if args.out:
        doc["written"] = {k: str(v) for k, v in export_result(result, args.out, name).items()}
    emit(doc, args)
    return 0


def cmd_volatility(args: argparse.Namespace, emit: Emit) -> int:
    from analysis.volatility import volatility, volatility_series

    opts = {"memory_mb": args.memory_mb, "verify": not args.no_verify}
    if args.series:
        return _finish(volatility_series(args.root, args.variant, args.table, progress=not args.quiet, **opts),
                       f"volatility-series-{args.variant}-{args.table}", args, emit)
    res = volatility(args.root, args.variant, args.table, at=args.at, minutes=args.minutes,
                     tolerance_minutes=args.tolerance, progress=not args.quiet, **opts)
    extra = None
    if args.by:
        if not args.world:
            raise InputError("--by needs --world (the users/items table that holds the attribute)")
        from lee.world.io import load_world

        world = load_world(args.world)
        attrs = world.users if res.kind.entity == "user" else world.items
        extra = {"by": res.by_attribute(attrs, args.by, bins=args.bins).to_dict(orient="records")}
    return _finish(res, f"volatility-{args.variant}-{args.table}", args, emit, extra)


def _thresholds(path: Path | None):
    from analysis.health import HealthThresholds

    if path is None:
        return HealthThresholds()
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: thresholds file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return HealthThresholds.from_dict(raw.get("health", raw))


def cmd_health(args: argparse.Namespace, emit: Emit) -> int:
    from analysis.health import snapshot_health

    report = snapshot_health(args.root, args.variant, thresholds=_thresholds(args.thresholds),
                             kinds=args.table or None, progress=not args.quiet)
    flagged = report.table.loc[~report.table["healthy"], ["time", "table", "reasons"]]
    return _finish(report, f"health-{args.variant}", args, emit,
                   {"flags": flagged.astype(str).to_dict(orient="records")})


def cmd_collapse(args: argparse.Namespace, emit: Emit) -> int:
    from analysis.collapse import collapse_of_table, compare_collapse
    from analysis.export import Frames
    from lee.snapshot import SnapshotStore

    store = SnapshotStore(args.root)
    variants = args.variants.split(",") if args.variants else store.variants()
    results = {v: collapse_of_table(store.latest(v), args.table) for v in variants}
    frame = compare_collapse(results, ratio=args.ratio)
    summary = {"table": args.table, "variants": frame.to_dict(orient="records"),
               "collapsed": frame.loc[frame["collapsed"], "variant"].tolist()}
    return _finish(Frames({"collapse": frame}, summary), f"collapse-{args.table}", args, emit)


def cmd_importance(args: argparse.Namespace, emit: Emit) -> int:
    from analysis.importance import importance_for_snapshot
    from lee.device import resolve_device
    from lee.evaluator.data import stream_from_world
    from lee.snapshot import SnapshotStore
    from lee.world.io import load_world

    if args.repeats < 1 or args.boot < 1:
        raise InputError(f"--repeats and --boot must be at least 1; got {args.repeats} and {args.boot}")
    stream = stream_from_world(load_world(args.world))
    snap = SnapshotStore(args.root).latest(args.variant) if args.variant else None
    res = importance_for_snapshot(stream, snap, usage=args.usage, fusion=args.fusion, mode=args.mode,
                                  n_repeats=args.repeats, n_boot=args.boot, seed=args.seed,
                                  device=resolve_device(args.device), progress=not args.quiet)
    extra = {"ranking": res.table[["rank", "target", "kind", "drop", "ci_low", "ci_high"]].to_dict(orient="records")}
    return _finish(res, f"importance-{args.variant or 'baseline'}-{args.mode}", args, emit, extra)


def _read_log(path: Path) -> Any:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: exposure log not found (write one with `lee world ab-log`)")
    try:
        if path.suffix == ".csv":
            return pd.read_csv(path)
        return pq.read_table(path).to_pandas()
    except (pa.ArrowException, OSError, ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: not a readable {'CSV' if path.suffix == '.csv' else 'Parquet'} file ({exc})") from None


def cmd_segments(args: argparse.Namespace, emit: Emit) -> int:
    from analysis.segments import segment_lift

    users = None
    if args.world:
        from lee.world.io import load_world

        users = load_world(args.world).users
    by = args.by.split(",") if args.by and "," in args.by else args.by
    res = segment_lift(_read_log(args.log), by=by, users=users, bins=args.bins, home_col=args.home_col,
                       other_col=args.other_col, home_min=args.home_min, other_threshold=args.other_threshold,
                       metric=args.metric, n_boot=args.boot, level=args.level, seed=args.seed)
    cols = ["segment", "users_control", "users_treatment", "lift", "ci_low", "ci_high", "p_value", "significant"]
    return _finish(res, f"segments-{args.by}", args, emit, {"rows": res.table[cols].to_dict(orient="records")})


def cmd_ab_log(args: argparse.Namespace, emit: Emit) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lee.world.ab_log import generate_ab_log
    from lee.world.io import load_world

    log = generate_ab_log(load_world(args.world), other_threshold=args.other_threshold, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    pq.write_table(pa.Table.from_pandas(log, preserve_index=False), tmp)
    tmp.replace(args.out)
    emit({"log": str(args.out), "users": len(log), "planted_lift": log.attrs["planted_lift"],
          "planted_lift_all": log.attrs.get("planted_lift_all")}, args)
    return 0


def cmd_clusters(args: argparse.Namespace, emit: Emit) -> int:
    import pandas as pd

    from analysis.clusters import cluster_snapshot
    from lee.snapshot import SnapshotStore, TableKind
    from lee.world.io import load_world

    world = load_world(args.world)
    kind = TableKind.parse(args.table)
    users = world.users
    labels = truth = None
    if kind.entity == "user" and "label" in users:
        labels = pd.Series(users["label"].astype(str).to_numpy(), index=users["user_id"].to_numpy())
    if kind.entity == "user" and "group" in users:
        truth = pd.Series(users["group"].to_numpy(), index=users["user_id"].to_numpy())
    k = args.k or (int(users["label"].nunique()) if "label" in users else 8)
    res = cluster_snapshot(SnapshotStore(args.root).latest(args.variant), kind, k=k, events=world.events,
                           items=world.items, labels=labels, truth=truth, seed=args.seed, backend=args.backend)
    cols = ["cluster", "size", "top1_label", "top1_share", "ctr", "ctr_low", "ctr_high", "flag"]
    doc = {"variant": args.variant, "table": kind.value, "k": res.k, "backend": res.backend, "ari": res.ari,
           "silhouette": res.silhouette, "silhouette_sample": res.silhouette_sample, "overall_ctr": res.overall_ctr,
           "clusters": res.table[cols].to_dict(orient="records")}

    from analysis.export import Frames

    return _finish(Frames({"clusters": res.table}, doc), f"clusters-{args.variant}-{kind.value}", args, emit)


def cmd_report(args: argparse.Namespace, emit: Emit) -> int:
    import pandas as pd

    from analysis.report import lee_from_store, write_report
    from analysis.suite import SuiteConfig, run_suite
    from lee.world.io import load_world

    def names(text: str | None) -> tuple[str, ...] | None:
        return tuple(x for x in text.split(",") if x) if text else None

    cfg = SuiteConfig(variants=names(args.variants), map_methods=names(args.maps) or ("pca",),
                      importance_variants=names(args.importance) or (), seed=args.seed, n_boot=args.boot)
    suite = run_suite(load_world(args.world), args.root, config=cfg, log=(lambda *_: None) if args.quiet else print,
                      progress=not args.quiet)
    lee_table = lee_windows = sweep = None
    if args.db:
        if not Path(args.db).is_file():
            raise InputError(f"{args.db}: no results store here (run `lee evaluate --config JOB.toml` first)")
        lee_table, lee_windows = lee_from_store(args.db)
    if args.sweep:
        try:
            sweep = pd.read_csv(args.sweep).pivot_table(index="layer", columns="dim", values="delta_auc", sort=False)
        except (OSError, KeyError, ValueError) as exc:
            raise InputError(f"{args.sweep}: not a sweep table from `lee sweep --table` ({exc})") from None
    path = write_report(args.out, suite, lee_table=lee_table, lee_windows=lee_windows, sweep=sweep,
                        meta={"world": str(args.world), "snapshots": str(args.root)})
    emit({"report": str(path), "data": str(path.parent / "data"), "skipped": suite.skipped}, args)
    return 0


def cmd_import_movielens(args: argparse.Namespace, emit: Emit) -> int:
    from lee.world.io import save_world
    from lee.world.movielens import import_movielens

    world = import_movielens(args.path, split=args.split, downstream_share=args.downstream_share,
                             positive_min=args.positive_min)
    path = save_world(world, args.out, overwrite=args.overwrite)
    counts = world.events["part"].value_counts().to_dict()
    emit({"world": str(path), **world.summary(), "label_rule": world.meta["label_rule"], "split": args.split,
          "upstream_events": counts.get("upstream", 0), "downstream_events": counts.get("downstream", 0)}, args)
    return 0


def cmd_import_obd(args: argparse.Namespace, emit: Emit) -> int:
    import json

    from lee.world.obd import import_obd

    out = import_obd(args.path, args.out, campaign=args.campaign, overwrite=args.overwrite)
    meta = out / "obd.json"
    emit({"exposures": str(out), **(json.loads(meta.read_text()) if meta.is_file() else {})}, args)
    return 0


def cmd_case_movielens(args: argparse.Namespace, emit: Emit) -> int:
    from analysis.movielens_case import run_movielens_case

    case = run_movielens_case(args.data, args.out, users=args.users, seeds=tuple(range(args.seeds)),
                              n_boot=args.boot, split=args.split, device=args.device,
                              log=(lambda *_: None) if args.quiet or args.json else print, progress=not args.quiet)
    doc = case.summary()
    emit({"report": doc["report"], "upstream_vs_random": doc["upstream_vs_random"], "purity": doc["purity"][:1],
          "written": str(Path(args.out) / "case-study.json")}, args)
    return 0


def cmd_case_obd(args: argparse.Namespace, emit: Emit) -> int:
    from analysis.obd_case import obd_case_study
    from analysis.export import export_result
    from lee.world.obd import read_obd

    case = obd_case_study(read_obd(args.data, campaign=args.campaign), seeds=tuple(range(args.seeds)),
                          n_boot=args.boot)
    doc = case.summary()
    if args.out:
        doc["written"] = {k: str(v) for k, v in export_result(case, args.out, "obd-case").items()}
    emit(doc, args)
    return 0


def cmd_anomalies(args: argparse.Namespace, emit: Emit) -> int:
    from lee.world.anomalies import plant_anomalies

    times = plant_anomalies(args.root, args.variant, interval_minutes=args.interval, seed=args.seed,
                            overwrite=args.overwrite)
    emit({k: v.isoformat() for k, v in times.items()}, args)
    return 0


def add_parsers(sub: Any, common: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
                bind: Callable[[Callable[[argparse.Namespace, Emit], int]], Callable[[argparse.Namespace], int]]) -> None:
    """Register ``lee analyze ...`` under ``sub``; ``bind`` turns a command into a CLI handler."""
    analyze = sub.add_parser("analyze", help="volatility, health, collapse, importance, clusters, segments"
                             ).add_subparsers(dest="analyze_command", required=True, metavar="ANALYSIS")

    def out(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", type=Path, help="also write the result's JSON and CSV tables to this directory")

    p = common(analyze.add_parser("volatility", help="cosine of each id between a snapshot and the one before"))
    p.add_argument("--root", required=True, type=Path, help="snapshot root")
    p.add_argument("--variant", required=True)
    p.add_argument("--table", default="UR", help="UR, IR, CR_user or CR_item (default UR)")
    p.add_argument("--at", help="event time of the later snapshot (default: the latest)")
    p.add_argument("--minutes", type=float, default=5.0, help="how far back the earlier snapshot lies")
    p.add_argument("--tolerance", type=float, default=0.0, help="minutes of slack when finding it")
    p.add_argument("--series", action="store_true", help="every consecutive pair instead of one")
    p.add_argument("--world", type=Path, help="world directory holding the attribute for --by")
    p.add_argument("--by", help="break down by this user (or item) attribute, e.g. activity_level")
    p.add_argument("--bins", type=int, help="quantile bins for a numeric --by attribute")
    p.add_argument("--memory-mb", type=int, default=4096, help="memory bound for the join (default 4096)")
    p.add_argument("--no-verify", action="store_true", help="skip checksum verification")
    out(p)
    p.set_defaults(func=bind(cmd_volatility))

    p = common(analyze.add_parser("health", help="per-table statistics and anomaly flags over a variant"))
    p.add_argument("--root", required=True, type=Path)
    p.add_argument("--variant", required=True)
    p.add_argument("--table", action="append", help="only these tables (repeatable)")
    p.add_argument("--thresholds", type=Path, help="TOML file with a [health] table of thresholds")
    out(p)
    p.set_defaults(func=bind(cmd_health))

    p = common(analyze.add_parser("collapse", help="singular-value spectrum and effective rank per variant"))
    p.add_argument("--root", required=True, type=Path)
    p.add_argument("--variants", default="", help="comma-separated (default: all)")
    p.add_argument("--table", default="UR")
    p.add_argument("--ratio", type=float, default=0.5, help="collapsed below this × the median effective rank")
    out(p)
    p.set_defaults(func=bind(cmd_collapse))

    p = common(analyze.add_parser("importance", help="feature-masking importance of a trained proxy model"))
    p.add_argument("--world", required=True, type=Path)
    p.add_argument("--root", type=Path, help="snapshot root (omit --variant for the baseline)")
    p.add_argument("--variant", help="inject this variant's latest snapshot")
    p.add_argument("--usage", default="UR+IR")
    p.add_argument("--fusion", default="concat", choices=("concat", "gate", "iim"))
    p.add_argument("--mode", default="permutation", choices=("zero", "mean", "permutation"))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--boot", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    out(p)
    p.set_defaults(func=bind(cmd_importance))

    p = common(analyze.add_parser("segments", help="GMV lift of treatment over control per user segment"))
    p.add_argument("--log", required=True, type=Path, help="A/B exposure log (Parquet or CSV), one row per user")
    p.add_argument("--by", default="quadrant", help="quadrant (default), a column, or comma-separated columns")
    p.add_argument("--world", type=Path, help="join the world's user attributes for --by")
    p.add_argument("--bins", type=int, help="quantile bins for a numeric --by column")
    p.add_argument("--home-col", default="home_ad_actions_10d", help="home-scenario actions column (window)")
    p.add_argument("--other-col", default="other_ad_actions_60d", help="other-scenario actions column (window)")
    p.add_argument("--home-min", type=int, default=1, help="home-active at this many actions or more")
    p.add_argument("--other-threshold", type=int, default=10, help="out-of-domain above this many actions")
    p.add_argument("--metric", default="gmv")
    p.add_argument("--boot", type=int, default=1000)
    p.add_argument("--level", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)
    out(p)
    p.set_defaults(func=bind(cmd_segments))

    p = common(analyze.add_parser("clusters", help="K-means clusters with labels, per-cluster CTR and ARI"))
    p.add_argument("--world", required=True, type=Path, help="world directory (events, items, user labels)")
    p.add_argument("--root", required=True, type=Path)
    p.add_argument("--variant", required=True)
    p.add_argument("--table", default="UR")
    p.add_argument("--k", type=int, help="clusters (default: the number of distinct user labels)")
    p.add_argument("--backend", default="auto", choices=("auto", "faiss", "sklearn"))
    p.add_argument("--seed", type=int, default=0)
    out(p)
    p.set_defaults(func=bind(cmd_clusters))


def add_world_importers(world: Any, common: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
                        bind: Callable[[Callable[[argparse.Namespace, Emit], int]], Callable[[argparse.Namespace], int]]) -> None:
    """``lee world import-movielens`` and ``lee world import-obd``."""
    p = common(world.add_parser("import-movielens", help="MovieLens ml-latest-small -> a world (click = rating >= 4)"))
    p.add_argument("path", type=Path, help="directory with ratings.csv and movies.csv")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--split", default="per-user", choices=("per-user", "global"),
                   help="upstream/downstream split in time: each user's later ratings, or the latest ones overall")
    p.add_argument("--downstream-share", type=float, default=0.3)
    p.add_argument("--positive-min", type=float, default=4.0, help="a rating at or above this is a click")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=bind(cmd_import_movielens))

    p = common(world.add_parser("import-obd", help="Open Bandit (small) -> an exposure log with both policies as arms"))
    p.add_argument("path", type=Path, help="open-bandit-small directory (random/ and bts/)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--campaign", default="all", choices=("all", "men", "women"))
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=bind(cmd_import_obd))


def add_casestudy(sub: Any, common: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
                  bind: Callable[[Callable[[argparse.Namespace, Emit], int]], Callable[[argparse.Namespace], int]]) -> None:
    """``lee casestudy movielens|obd``: the real-data case studies, end to end."""
    cs = sub.add_parser("casestudy", help="the workbench end to end on real public data").add_subparsers(
        dest="casestudy_command", required=True, metavar="DATASET")
    p = common(cs.add_parser("movielens", help="upstream model, LEE on UR/IR/CR, every analysis, the report"))
    p.add_argument("--data", type=Path, default=Path("fixtures/real/movielens-latest-small"))
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--users", type=int, help="a seeded subset of users (reduced run)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--boot", type=int, default=200)
    p.add_argument("--split", default="per-user", choices=("per-user", "global"))
    p.add_argument("--device", default="cpu", choices=DEVICE_CHOICES)
    p.set_defaults(func=bind(cmd_case_movielens))

    p = common(cs.add_parser("obd", help="proxy baseline, feature-masking importance, arm-vs-arm split"))
    p.add_argument("--data", type=Path, default=Path("fixtures/real/open-bandit-small"))
    p.add_argument("--campaign", default="all", choices=("all", "men", "women"))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--boot", type=int, default=200)
    p.add_argument("--out", type=Path, help="also write JSON and CSV here")
    p.set_defaults(func=bind(cmd_case_obd))
