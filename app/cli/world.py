"""``lee world ...``: generate, plant, inspect and import worlds, plus planted yardsticks."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.cli import choices
from app.cli.output import AddCommon, emit
from lee.errors import InputError


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


def cmd_world_generate(args: argparse.Namespace) -> int:
    from lee.world.config import config_for_scale
    from lee.world.generate import generate_world
    from lee.world.io import save_world

    config = config_for_scale(args.scale, seed=args.seed, source="--set", **_parse_overrides(args.set))
    world = generate_world(config, progress=not args.quiet)
    path = save_world(world, args.out, overwrite=args.overwrite)
    emit({"world": str(path), **world.summary()}, args)
    return 0


def cmd_world_plant(args: argparse.Namespace) -> int:
    from lee.world.io import load_world
    from lee.world.planted import PLANTED_VARIANTS, check_variant_names, write_planted_variants

    variants = args.variants.split(",") if args.variants else list(PLANTED_VARIANTS)
    check_variant_names(variants)  # also rank_K and noise_X
    if args.snapshots <= 0 or args.interval <= 0:
        raise InputError(f"--snapshots and --interval must be positive; got {args.snapshots} and {args.interval}")
    world = load_world(args.world)
    written = write_planted_variants(world, args.out, dim=args.dim, n_snapshots=args.snapshots,
                                     interval_minutes=args.interval, variants=variants, seed=args.seed,
                                     overwrite=args.overwrite)
    emit({v: [str(p) for p in paths] for v, paths in written.items()}, args)
    return 0


def cmd_world_fixtures(args: argparse.Namespace) -> int:
    from lee.world.fixtures import write_fixtures

    emit({"fixtures": str(write_fixtures(args.out, overwrite=args.overwrite))}, args)
    return 0


def cmd_world_show(args: argparse.Namespace) -> int:
    from lee.world.io import load_world

    world = load_world(args.world)
    emit({"world": str(args.world), **world.summary(), "config": world.meta.get("config")}, args)
    return 0



def cmd_ab_log(args: argparse.Namespace) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lee.fileio import atomic_file
    from lee.world.ab_log import generate_ab_log
    from lee.world.io import load_world

    log = generate_ab_log(load_world(args.world), other_threshold=args.other_threshold, seed=args.seed)
    with atomic_file(args.out) as tmp:
        pq.write_table(pa.Table.from_pandas(log, preserve_index=False), tmp)
    emit({"log": str(args.out), "users": len(log), "planted_lift": log.attrs["planted_lift"],
          "planted_lift_all": log.attrs.get("planted_lift_all")}, args)
    return 0

def cmd_import_movielens(args: argparse.Namespace) -> int:
    from lee.world.io import save_world
    from lee.world.movielens import import_movielens

    world = import_movielens(args.path, split=args.split, downstream_share=args.downstream_share,
                             positive_min=args.positive_min)
    path = save_world(world, args.out, overwrite=args.overwrite)
    counts = world.events["part"].value_counts().to_dict()
    emit({"world": str(path), **world.summary(), "label_rule": world.meta["label_rule"], "split": args.split,
          "upstream_events": counts.get("upstream", 0), "downstream_events": counts.get("downstream", 0)}, args)
    return 0


def cmd_import_obd(args: argparse.Namespace) -> int:
    import json

    from lee.world.obd import import_obd

    out = import_obd(args.path, args.out, campaign=args.campaign, overwrite=args.overwrite)
    meta = out / "obd.json"
    emit({"exposures": str(out), **(json.loads(meta.read_text()) if meta.is_file() else {})}, args)
    return 0

def cmd_anomalies(args: argparse.Namespace) -> int:
    from lee.world.anomalies import plant_anomalies

    times = plant_anomalies(args.root, args.variant, interval_minutes=args.interval, seed=args.seed,
                            overwrite=args.overwrite)
    emit({k: v.isoformat() for k, v in times.items()}, args)
    return 0



def register(sub: Any, common: AddCommon) -> None:
    """``lee world generate|plant|anomalies|ab-log|import-movielens|import-obd|fixtures|show``."""

    world = sub.add_parser("world", help="generate, plant and inspect worlds").add_subparsers(
        dest="world_command", required=True, metavar="SUBCOMMAND")
    p = common(world.add_parser("generate", help="generate a planted ad world"))
    p.add_argument("--out", required=True, type=Path, help="world directory to write")
    p.add_argument("--scale", default="small", choices=choices.SCALES, help="named size (default: small)")
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
    p.add_argument("--variants", default="", help="comma-separated (default: the six default variants; also rank_K, "
                                                  "noise_X)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_world_plant)

    p = common(world.add_parser("anomalies", help="append planted broken snapshots (health-monitor yardsticks)"))
    p.add_argument("--root", required=True, type=Path, help="snapshot root")
    p.add_argument("--variant", required=True)
    p.add_argument("--interval", type=int, default=5, help="minutes between the appended snapshots")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_anomalies)

    p = common(world.add_parser("ab-log", help="write a planted A/B exposure log (GMV lift differs by segment)"))
    p.add_argument("--world", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="Parquet file to write")
    p.add_argument("--other-threshold", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_ab_log)

    p = common(world.add_parser("import-movielens", help="MovieLens ml-latest-small -> a world (click = rating >= 4)"))
    p.add_argument("path", type=Path, help="directory with ratings.csv and movies.csv")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--split", default="per-user", choices=("per-user", "global"),
                   help="upstream/downstream split in time: each user's later ratings, or the latest ones overall")
    p.add_argument("--downstream-share", type=float, default=0.3)
    p.add_argument("--positive-min", type=float, default=4.0, help="a rating at or above this is a click")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_import_movielens)

    p = common(world.add_parser("import-obd", help="Open Bandit (small) -> an exposure log with both policies as arms"))
    p.add_argument("path", type=Path, help="open-bandit-small directory (random/ and bts/)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--campaign", default="all", choices=("all", "men", "women"))
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_import_obd)

    p = common(world.add_parser("fixtures", help="regenerate the committed sample data (fixtures/tiny)"))
    p.add_argument("--out", type=Path, default=Path("fixtures/tiny"))
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_world_fixtures)

    p = common(world.add_parser("show", help="summarise a world directory"))
    p.add_argument("world", type=Path)
    p.set_defaults(func=cmd_world_show)
