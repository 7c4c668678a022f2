"""``lee analyze ...``: the analyses of :mod:`analysis` from the command line.

Each command checks its arguments, calls one analysis function, prints the result's summary as
JSON and, with ``--out DIR``, saves the result there (its JSON and one CSV per table).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.cli import choices
from app.cli.output import AddCommon, emit
from lee.errors import InputError

DEFAULT_MEMORY_MB = 4096   # lee.snapshot.reader.DEFAULT_MEMORY_MB, not imported: `lee --help` loads no pyarrow


def _finish(result: Any, args: argparse.Namespace, extra: dict[str, Any] | None = None) -> int:
    """Print the result's summary (plus ``extra``) as JSON; with ``--out DIR`` also save it there."""
    from lee.results import plain

    doc = plain(result.summary())
    if extra:
        doc.update(plain(extra))
    if args.out:
        doc["written"] = str(result.save(args.out))
    emit(doc, args)
    return 0


@contextmanager
def _engine(args: argparse.Namespace) -> Iterator[Any]:
    """``--engine ray [--address ...]``: a Ray engine, released afterwards; ``--engine local``
    (the default): None, i.e. streamed in this process within ``--memory-mb``."""
    if args.address and args.engine != "ray":
        raise InputError(f"--address {args.address} names a Ray cluster; it needs --engine ray")
    if args.engine != "ray":
        yield None
        return
    from lee.engine import EngineSpec, make_engine

    with make_engine(EngineSpec(kind="ray", address=args.address)) as engine:
        yield engine


def cmd_volatility(args: argparse.Namespace) -> int:
    from analysis.volatility import volatility, volatility_series

    opts = {"memory_mb": args.memory_mb, "verify": not args.no_verify}
    with _engine(args) as engine:
        if args.series:
            return _finish(volatility_series(args.root, args.variant, args.table, progress=not args.quiet,
                                             engine=engine, **opts), args)
        res = volatility(args.root, args.variant, args.table, at=args.at, minutes=args.minutes,
                         tolerance_minutes=args.tolerance, progress=not args.quiet, engine=engine, **opts)
    extra = None
    if args.by:
        if not args.data:
            raise InputError("--by needs --data (the dataset whose users/items table holds the attribute)")
        from lee.data.dataset import Dataset

        ds = Dataset.open(args.data)
        attrs = ds.attributes(res.kind.entity)
        if attrs is None:
            raise InputError(f"{args.data}: has no {res.kind.entity}s table to take --by {args.by} from")
        if res.kind.entity == "user" and ds.user_col != "user_id":
            attrs = attrs.rename(columns={ds.user_col: "user_id"})
        if res.kind.entity == "item" and ds.item_col != "item_id":
            attrs = attrs.rename(columns={ds.item_col: "item_id"})
        extra = {"by": res.by_attribute(attrs, args.by, bins=args.bins).to_dict(orient="records")}
    return _finish(res, args, extra)


def _thresholds(path: Path | None):
    """The health thresholds of ``--thresholds`` (a ``[health]`` table or top-level keys), else the defaults."""
    from analysis.health import HealthThresholds
    from lee.config import load_config

    if path is None:
        return HealthThresholds()
    return load_config(HealthThresholds, path, table="health", what="thresholds file")


def cmd_health(args: argparse.Namespace) -> int:
    from analysis.health import snapshot_health

    with _engine(args) as engine:
        report = snapshot_health(args.root, args.variant, thresholds=_thresholds(args.thresholds),
                                 kinds=args.table or None, progress=not args.quiet, engine=engine,
                                 memory_mb=args.memory_mb)
    flagged = report.table.loc[~report.table["healthy"], ["time", "table", "reasons"]]
    return _finish(report, args,
                   {"flags": flagged.astype(str).to_dict(orient="records")})


def cmd_collapse(args: argparse.Namespace) -> int:
    from analysis.collapse import collapse_comparison, collapse_of_table, collapse_partitioned
    from lee.snapshot import SnapshotStore

    store = SnapshotStore(args.root)
    variants = args.variants.split(",") if args.variants else store.variants()
    with _engine(args) as engine:
        results = {v: collapse_of_table(store.latest(v), args.table, memory_mb=args.memory_mb) if engine is None
                   else collapse_partitioned(store.latest(v), args.table, engine=engine) for v in variants}
    return _finish(collapse_comparison(results, table=args.table, ratio=args.ratio), args)


def cmd_importance(args: argparse.Namespace) -> int:
    from analysis.importance import importance_for_snapshot
    from lee.data.dataset import Dataset
    from lee.device import resolve_device
    from lee.evaluator.data import stream_from_dataset
    from lee.snapshot import SnapshotStore

    if args.repeats < 1 or args.boot < 1:
        raise InputError(f"--repeats and --boot must be at least 1; got {args.repeats} and {args.boot}")
    stream = stream_from_dataset(Dataset.open(args.data), part=args.part)
    groups = _groups(args.group, stream.fields) if args.group else None
    snap = SnapshotStore(args.root).latest(args.variant) if args.variant else None
    res = importance_for_snapshot(stream, snap, usage=args.usage, fusion=args.fusion, mode=args.mode,
                                  groups=groups, n_repeats=args.repeats, n_boot=args.boot, seed=args.seed,
                                  device=resolve_device(args.device), progress=not args.quiet)
    extra = {"ranking": res.table[["rank", "target", "kind", "drop", "ci_low", "ci_high"]].to_dict(orient="records")}
    return _finish(res, args, extra)


def _groups(specs: list[str], fields: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """``--group NAME=field,field`` options as feature groups (unknown fields named with the known ones)."""
    out: dict[str, tuple[str, ...]] = {}
    for spec in specs:
        name, sep, members = spec.partition("=")
        names = tuple(m.strip() for m in members.split(",") if m.strip())
        if not sep or not name.strip() or not names:
            raise InputError(f"--group expects NAME=field,field (e.g. 'user side=user,age'); got {spec!r}")
        unknown = [m for m in names if m not in fields]
        if unknown:
            raise InputError(f"--group {name.strip()}: unknown field(s) {', '.join(unknown)}; the stream's fields: "
                             f"{', '.join(fields)}")
        out[name.strip()] = names
    return out


def cmd_segments(args: argparse.Namespace) -> int:
    from analysis.segments import QUADRANT, available_splits, read_log, segment_lift

    users = None
    if args.data:
        from lee.data.dataset import Dataset

        users = Dataset.open(args.data).users
        if users is None:
            raise InputError(f"--data {args.data}: the dataset has no users table to join attributes from")
    log = read_log(args.log)
    if args.by is None:  # the quadrant split when the log has its columns, else the user must choose (a log
        # lacking the arm, user or metric column gets segment_lift's message about those first)
        splits = available_splits(log, users, metric=args.metric, arm_col=args.arm_col, user_col=args.user_col,
                                  home_col=args.home_col, other_col=args.other_col)
        if not splits["quadrant"] and {args.arm_col, args.user_col, args.metric} <= set(log.columns):
            raise InputError(f"{args.log}: {splits['quadrant_message']} with --by COLUMN (columns: "
                             f"{', '.join(splits['columns']) or 'none'})")
        by: Any = QUADRANT
    else:
        by = args.by.split(",") if "," in args.by else args.by
    res = segment_lift(log, by=by, users=users, bins=args.bins, home_col=args.home_col,
                       other_col=args.other_col, home_min=args.home_min, other_threshold=args.other_threshold,
                       metric=args.metric, n_boot=args.boot, level=args.level, seed=args.seed, arm_col=args.arm_col,
                       control=args.control, treatment=args.treatment, user_col=args.user_col,
                       min_users=args.min_users, min_nonzero=args.min_nonzero, adjust=args.adjust)
    cols = ["segment", "users_control", "users_treatment", "lift", "ci_low", "ci_high", "ci_low_adj", "ci_high_adj",
            "p_value", "p_adjusted", "significant", "members"]
    return _finish(res, args, {"rows": res.table[cols].to_dict(orient="records")})


def cmd_gains(args: argparse.Namespace) -> int:
    from analysis.gains import gains_for_snapshot
    from lee.data.dataset import Dataset
    from lee.device import resolve_device
    from lee.snapshot import SnapshotStore

    try:
        seeds = tuple(int(x) for x in args.seeds.split(",") if x.strip())
    except ValueError:
        raise InputError(f"--seeds expects comma-separated integers; got {args.seeds!r}") from None
    if not seeds:
        raise InputError("--seeds needs at least one value")
    ds = Dataset.open(args.data)
    by, chosen = _gains_by(ds, args.by)
    if args.by is None:
        from app.cli.output import print_error

        print_error(f"segments by {chosen}", prefix="note")
    store = SnapshotStore(args.root)
    snap = store.nearest(args.variant, args.at, at_or_before=True) if args.at else store.latest(args.variant)
    res = gains_for_snapshot(ds, snap, by=by, usage=args.usage, fusion=args.fusion,
                             seeds=seeds, windows=args.windows, bins=args.bins, min_users=args.min_users,
                             min_positives=args.min_positives, n_boot=args.boot, level=args.level,
                             adjust=args.adjust, bootstrap_seed=args.seed, device=resolve_device(args.device),
                             variant=args.variant)
    cols = ["segment", "users", "events", "positives", "delta_auc", "ci_low", "ci_high", "ci_low_adj", "ci_high_adj",
            "p_value", "p_adjusted", "significant", "delta_logloss", "logloss_p_adjusted", "contribution",
            "share_of_lift", "members"]
    return _finish(res, args, {"by_chosen": chosen,
                               "rows": res.table[[c for c in cols if c in res.table]].to_dict(orient="records")})


def _gains_by(ds: Any, given: str | None) -> tuple[str, str]:
    """The attribute ``--by`` names (an events column is refused with the reason) or, without it, the dataset's
    only users or items attribute; otherwise an error listing them."""
    where = f"{ds.path or 'the dataset'}"
    if given is not None:
        entity, sep, col = given.partition(":")
        col = col if sep and entity in ("user", "item") else given
        if col not in ds.attribute_columns("user") and col not in ds.attribute_columns("item"):
            why = ds.why_not_attribute(col)
            if why is not None:
                raise InputError(f"--by {given}: {why}; segments come from a users or items attribute of {where} "
                                 f"({ds.describe_attributes()})")
        return given, f"--by {given}"
    found = [(e, c) for e in ("user", "item") for c in ds.attribute_columns(e)]
    if len(found) == 1:
        entity, col = found[0]
        return f"{entity}:{col}", (f"the only attribute of the users and items tables, the {entity}s' {col} "
                                   "(--by picks another)")
    if not found:
        raise InputError(f"--by: {where} has no user or item attribute to split the gains by "
                         f"({ds.describe_attributes()}); import the log with a users/items file, or declare the "
                         "events fields that describe a user or an item with role user or item in the mapping, so "
                         "they become columns of those tables (docs/data-format.md)")
    raise InputError(f"--by: {where} has {len(found)} user and item attributes, so none is chosen for you; pass "
                     f"--by COLUMN (or user:COLUMN / item:COLUMN) — {ds.describe_attributes()}")


def _cluster_label(ds: Any, entity: str, given: str | None) -> tuple[str | None, str]:
    """The column that labels the clusters and how it was chosen: ``--label`` (a users or items attribute, never
    an events column), else a column named label (items: category), else the entity table's only categorical
    column; several candidates are an error listing them; none leaves the clusters unlabelled, and says so."""
    other = "item" if entity == "user" else "user"
    own = ds.attribute_columns(entity)
    where = f"{ds.path or 'the dataset'}"
    if given is not None:
        if given in own or given in ds.attribute_columns(other):
            return given, f"--label {given}"
        why = ds.why_not_attribute(given) or f"no column {given!r} in the users or items table"
        raise InputError(f"--label {given}: {why}; clusters are labelled by a users or items attribute of {where} "
                         f"({ds.describe_attributes()})")
    for conventional in ("label", "category") if entity == "item" else ("label",):
        if conventional in own:
            return conventional, f"the {entity}s table's column {conventional} (the default; --label picks another)"
    cats = [c for c, kind in own.items() if kind != "numeric"]
    if len(cats) == 1:
        return cats[0], f"the {entity}s table's only categorical column, {cats[0]} (--label picks another)"
    if len(cats) > 1:
        raise InputError(f"--label: the {entity}s table of {where} has {len(cats)} categorical columns "
                         f"({', '.join(cats)}), so none is chosen for you; pass --label COLUMN (attributes: "
                         f"{ds.describe_attributes()})")
    return None, (f"no label: the {entity}s table of {where} has no categorical column ({ds.describe_attributes()}); "
                  f"--label COLUMN of the {other}s table labels each {entity} by the {other}s of its positive events")


def cmd_clusters(args: argparse.Namespace) -> int:
    from analysis._data import id_labels, interactions, planted_truth
    from analysis.clusters import cluster_snapshot
    from app.cli.output import print_error
    from lee.data.dataset import Dataset
    from lee.snapshot import SnapshotStore, TableKind

    ds = Dataset.open(args.data)
    kind = TableKind.parse(args.table)
    label_col, chosen = _cluster_label(ds, kind.entity, args.label)
    labels = id_labels(ds, kind.entity, label_col)
    if label_col is not None and labels is None:  # a column of the other side table, through positive events
        from analysis.cluster_labels import label_mix, top_labels

        labels = top_labels(label_mix(ds, kind.entity, label_col).mix)
    items = ds.items if ds.items is not None and {"item_id", "category"} <= set(ds.items.columns) else None
    if labels is None and items is not None:
        chosen = (f"each {kind.entity}'s most clicked category (the items table's column category)"
                  if kind.entity == "user" else "the items table's column category")
    if args.label is None:
        print_error(f"clusters labelled by {chosen}" if label_col or items is not None else chosen, prefix="note")
    truth = planted_truth(ds) if kind.entity == "user" else None
    k = args.k or (int(labels.nunique()) if labels is not None else 8)
    snap = SnapshotStore(args.root).latest(args.variant)
    with _engine(args) as engine:
        res = cluster_snapshot(snap, kind, k=k, events=interactions(ds), items=items, labels=labels, truth=truth,
                               seed=args.seed, backend=args.backend, domain=None, memory_mb=args.memory_mb,
                               engine=engine)
    label_doc = {"label_column": label_col, "label_chosen": chosen}
    if not args.against_random:
        return _finish(res, args, {"variant": args.variant, **label_doc})
    from analysis.cluster_labels import snapshot_cluster_labels
    from lee.results import plain

    if label_col is None:
        raise InputError(f"--against-random compares the clusters with a label, and there is none: {chosen}")
    vs = snapshot_cluster_labels(snap, kind, ds, label_col, k=res.k, draws=args.against_random, seed=args.seed,
                                 backend=args.backend, assignment=res.assignment)
    doc = {**plain(res.summary()), "variant": args.variant, **label_doc, "against_random": plain(vs.summary())}
    if args.out:  # the clusters in DIR, the comparison with random draws in DIR/against-random
        doc["written"] = str(res.save(args.out))
        doc["against_random"]["written"] = str(vs.save(Path(args.out) / "against-random"))
    emit(doc, args)
    return 0



def register(sub: Any, common: AddCommon) -> None:
    """``lee analyze volatility|health|collapse|importance|segments|gains|clusters``."""
    analyze = sub.add_parser("analyze", help="volatility, health, collapse, importance, clusters, segments, gains"
                             ).add_subparsers(dest="analyze_command", required=True, metavar="ANALYSIS")

    def out(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", type=Path, help="also write the result's JSON and CSV tables to this directory")

    def memory(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument("--memory-mb", type=float, default=DEFAULT_MEMORY_MB, metavar="MIB",
                       help=f"memory bound in MiB for {what}: tables larger than it are read in Parquet chunks "
                            f"sized to stay within it (default {DEFAULT_MEMORY_MB})")

    def engine(p: argparse.ArgumentParser) -> None:
        p.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="local (default): streamed in this process within --memory-mb; ray: row ranges (or "
                            "hash partitions of ids) as Ray tasks, exact statistics merged; equal results")
        p.add_argument("--address", help="with --engine ray: an existing Ray cluster ('auto', 'ray://HEAD:10001'); "
                                         "default: a Ray instance started on this machine")

    p = common(analyze.add_parser("volatility", help="cosine of each id between a snapshot and the one before"))
    p.add_argument("--root", required=True, type=Path, help="snapshot root")
    p.add_argument("--variant", required=True)
    p.add_argument("--table", default="UR", help="UR, IR, CR_user or CR_item (default UR)")
    p.add_argument("--at", help="event time of the later snapshot (default: the latest)")
    p.add_argument("--minutes", type=float, default=None,
                   help="how far back the earlier snapshot lies (default: the previous snapshot; the gap is printed)")
    p.add_argument("--tolerance", type=float, default=0.0, help="minutes of slack when finding it")
    p.add_argument("--series", action="store_true", help="every consecutive pair instead of one")
    p.add_argument("--data", "--world", dest="data", type=Path,
                   help="dataset (or world) whose users/items table holds the attribute for --by")
    p.add_argument("--by", help="break down by this user (or item) attribute, e.g. activity_level")
    p.add_argument("--bins", type=int, help="quantile bins for a numeric --by attribute")
    memory(p, "the join (both tables' ids, the later table's batches, blocks of the earlier one)")
    engine(p)
    p.add_argument("--no-verify", action="store_true", help="skip checksum verification")
    out(p)
    p.set_defaults(func=cmd_volatility)

    p = common(analyze.add_parser("health", help="per-table statistics and anomaly flags over a variant"))
    p.add_argument("--root", required=True, type=Path)
    p.add_argument("--variant", required=True)
    p.add_argument("--table", action="append", help="only these tables (repeatable)")
    p.add_argument("--thresholds", type=Path, help="TOML file with a [health] table of thresholds")
    memory(p, "each table's statistics")
    engine(p)
    out(p)
    p.set_defaults(func=cmd_health)

    p = common(analyze.add_parser("collapse", help="singular-value spectrum and effective rank per variant"))
    p.add_argument("--root", required=True, type=Path)
    p.add_argument("--variants", default="", help="comma-separated (default: all)")
    p.add_argument("--table", default="UR")
    p.add_argument("--ratio", type=float, default=0.5, help="collapsed below this × the median effective rank")
    memory(p, "each table's Gram matrix pass (the d×d Gram and the RankMe sample included)")
    engine(p)
    out(p)
    p.set_defaults(func=cmd_collapse)

    p = common(analyze.add_parser("importance", help="feature-masking importance of a trained proxy model"))
    p.add_argument("--data", "--world", dest="data", required=True, type=Path, help="dataset (or world) directory")
    p.add_argument("--part", default="downstream", choices=("downstream", "upstream", "all"),
                   help="which events the proxy trains and is masked on (default: the dataset's downstream part)")
    p.add_argument("--group", action="append", metavar="NAME=FIELD,FIELD",
                   help="a feature group to mask together (repeatable; default: by declared role)")
    p.add_argument("--root", type=Path, help="snapshot root (omit --variant for the baseline)")
    p.add_argument("--variant", help="inject this variant's latest snapshot")
    p.add_argument("--usage", default="UR+IR", choices=choices.USAGES)
    p.add_argument("--fusion", default="concat", choices=choices.FUSIONS)
    p.add_argument("--mode", default="permutation", choices=choices.MASKING_MODES)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--boot", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=choices.DEVICES)
    out(p)
    p.set_defaults(func=cmd_importance)

    p = common(analyze.add_parser("segments", help="lift of a metric, treatment over control, per user segment"))
    p.add_argument("--log", required=True, type=Path,
                   help="A/B log (Parquet or CSV): one row per user, an arm column, a metric column, attributes")
    p.add_argument("--by", help="a column or comma-separated columns (default: quadrant, when the log has its columns)")
    p.add_argument("--data", "--world", dest="data", type=Path,
                   help="join the users table of this dataset (or world) for --by")
    p.add_argument("--bins", type=int, help="quantile bins for a numeric --by column")
    p.add_argument("--arm-col", default="arm", help="the arm column (default arm)")
    p.add_argument("--control", default="control", help="the control arm's value (default control)")
    p.add_argument("--treatment", default="treatment", help="the treatment arm's value (default treatment)")
    p.add_argument("--user-col", default="user_id", help="the user id column (default user_id)")
    p.add_argument("--metric", default="gmv", help="any non-negative metric column (default gmv)")
    p.add_argument("--home-col", default="home_ad_actions_10d", help="home-scenario actions column (window)")
    p.add_argument("--other-col", default="other_ad_actions_60d", help="other-scenario actions column (window)")
    p.add_argument("--home-min", type=int, default=1, help="home-active at this many actions or more")
    p.add_argument("--other-threshold", type=int, default=10, help="out-of-domain above this many actions")
    p.add_argument("--min-users", type=int, default=30, help="pool segments with fewer users per arm into (other)")
    p.add_argument("--min-nonzero", type=int, default=5,
                   help="pool segments with fewer users with a non-zero metric per arm into (other)")
    p.add_argument("--adjust", default="holm", choices=["holm", "bh"],
                   help="multiplicity: holm (family-wise, default) or bh (Benjamini-Hochberg false discovery rate)")
    p.add_argument("--boot", type=int, default=1000)
    p.add_argument("--level", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)
    out(p)
    p.set_defaults(func=cmd_segments)

    p = common(analyze.add_parser("gains", help="who gains: per-segment ΔAUC of a representation over the baseline"))
    p.add_argument("--data", "--world", dest="data", required=True, type=Path, help="dataset (or world) directory")
    p.add_argument("--root", required=True, type=Path, help="snapshot root")
    p.add_argument("--variant", required=True)
    p.add_argument("--at", help="event time of the snapshot (default: the latest)")
    p.add_argument("--by", help="a user or item attribute column (user:COL / item:COL if both; not an events column); "
                                "default: the dataset's only attribute, else the attributes are listed to choose from")
    p.add_argument("--bins", type=int, default=4, help="quantile bins for a numeric attribute (default 4)")
    p.add_argument("--usage", default="UR+IR", choices=choices.USAGES)
    p.add_argument("--fusion", default="concat", choices=choices.FUSIONS)
    p.add_argument("--seeds", default="0,1,2", help="proxy seeds, comma-separated (default 0,1,2)")
    p.add_argument("--windows", type=int, default=10, help="streaming windows (default 10)")
    p.add_argument("--min-users", type=int, default=50, help="pool segments with fewer users into (other)")
    p.add_argument("--min-positives", type=int, default=20,
                   help="pool segments with fewer positives (or negatives) into (other)")
    p.add_argument("--adjust", default="holm", choices=["holm", "bh"],
                   help="multiplicity: holm (family-wise, default) or bh (Benjamini-Hochberg false discovery rate)")
    p.add_argument("--boot", type=int, default=200, help="paired user-bootstrap resamples (default 200)")
    p.add_argument("--level", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--device", default="auto", choices=choices.DEVICES)
    out(p)
    p.set_defaults(func=cmd_gains)

    p = common(analyze.add_parser("clusters", help="K-means clusters with labels, per-cluster CTR and ARI"))
    p.add_argument("--data", "--world", dest="data", required=True, type=Path,
                   help="dataset (or world) directory: its downstream events give the CTRs, its side tables labels")
    p.add_argument("--label", help="users/items attribute that names the clusters (not an events column); default: "
                                   "a column named label (items: category), else the table's only categorical "
                                   "column, else none — several candidates are listed for you to choose")
    p.add_argument("--root", required=True, type=Path)
    p.add_argument("--variant", required=True)
    p.add_argument("--table", default="UR")
    p.add_argument("--k", type=int, help="clusters (default: the number of distinct user labels)")
    p.add_argument("--against-random", type=int, metavar="N",
                   help="also purity, NMI and label-mix divergence vs N random draws of the same shape")
    p.add_argument("--backend", default="auto", choices=choices.KMEANS_BACKENDS)
    p.add_argument("--seed", type=int, default=0)
    memory(p, "K-means: a table whose in-memory clustering exceeds it is fitted on a 100,000-row seeded sample "
              "and assigned in streamed chunks")
    engine(p)
    out(p)
    p.set_defaults(func=cmd_clusters)
