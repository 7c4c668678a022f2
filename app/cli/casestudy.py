"""``lee casestudy movielens|obd``: the real-data case studies, end to end (app.workflows)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from app.cli import choices
from app.cli.output import AddCommon, emit


def cmd_case_movielens(args: argparse.Namespace) -> int:
    from app.workflows.movielens_case import run_movielens_case

    case = run_movielens_case(args.data, args.out, users=args.users, seeds=tuple(range(args.seeds)),
                              n_boot=args.boot, split=args.split, device=args.device,
                              log=(lambda *_: None) if args.quiet or args.json else print, progress=not args.quiet)
    doc = case.summary()
    coverage = [{k: r[k] for k in ("variant", "usage", "coverage_events", "coverage_ids", "verdict")}
                for r in doc["lee"]]
    emit({"report": doc["report"], "upstream_vs_random": doc["upstream_vs_random"],
          "method": doc["upstream_vs_random_method"], "coverage": coverage, "purity": doc["purity"][:1],
          "clusters_vs_random": doc["clusters_vs_random"]["measures"],
          "written": str(Path(args.out) / "case-study")}, args)
    return 0


def cmd_case_obd(args: argparse.Namespace) -> int:
    from app.workflows.obd_case import run_obd_case

    case = run_obd_case(args.data, args.out, campaign=args.campaign, seeds=tuple(range(args.seeds)),
                        n_boot=args.boot)
    doc = case.summary()
    if args.out:
        doc["written"] = {"dataset": str(Path(args.out) / "data"), "result": str(Path(args.out) / "case-study")}
    emit(doc, args)
    return 0



def register(sub: Any, common: AddCommon) -> None:
    """``lee casestudy movielens|obd``: the real-data case studies, end to end."""
    cs = sub.add_parser("casestudy", help="the workbench end to end on real public data").add_subparsers(
        dest="casestudy_command", required=True, metavar="DATASET")
    p = common(cs.add_parser("movielens", help="import, upstream model, LEE on UR/IR/CR vs random, analyses, report"))
    p.add_argument("--data", type=Path, default=Path("fixtures/real/movielens-latest-small"))
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--users", type=int, help="a seeded subset of users (reduced run)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--boot", type=int, default=200)
    p.add_argument("--split", default="per-user", choices=("per-user", "global"))
    p.add_argument("--device", default="cpu", choices=choices.DEVICES)
    p.set_defaults(func=cmd_case_movielens)

    p = common(cs.add_parser("obd", help="proxy baseline, feature-masking importance, arm-vs-arm split"))
    p.add_argument("--data", type=Path, default=Path("fixtures/real/open-bandit-small"))
    p.add_argument("--campaign", default="all", choices=("all", "men", "women"))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--boot", type=int, default=200)
    p.add_argument("--out", type=Path, help="also write the dataset (DIR/data) and the result (DIR/case-study) here")
    p.set_defaults(func=cmd_case_obd)
