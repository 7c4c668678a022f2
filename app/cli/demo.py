"""``lee demo``: the main job end to end (:mod:`app.workflows.demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from app.cli import choices
from app.cli.output import AddCommon


def cmd_demo(args: argparse.Namespace) -> int:
    from app.workflows.demo import run_demo

    run_demo(args.out, scale=args.scale, seed=args.seed, device=args.device, overwrite=args.overwrite,
             progress=not args.quiet, log=(lambda *_: None) if args.quiet else print,
             real_data=not args.no_real_data)
    return 0



def register(sub: Any, common: AddCommon) -> None:
    """``lee demo``."""

    p = common(sub.add_parser("demo", help="the main job, end to end on a generated world"))
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--scale", default="small", choices=choices.SCALES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=choices.DEVICES)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-real-data", action="store_true",
                   help="skip step 8 (the MovieLens and Open Bandit case studies)")
    p.set_defaults(func=cmd_demo)
