"""``lee upstream train``: the triple-tower foundation model, writing snapshots as it trains."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from app.cli import choices
from app.cli.output import AddCommon, emit
from lee.errors import InputError


def cmd_upstream_train(args: argparse.Namespace) -> int:
    from lee.data.dataset import Dataset
    from lee.device import resolve_device
    from lee.features import encode_world
    from lee.snapshot.format import check_variant_name
    from lee.upstream.from_dataset import default_cadence_minutes, upstream_world
    from lee.upstream.model import UpstreamConfig
    from lee.upstream.train import TrainConfig, train_upstream

    device = resolve_device(args.device)
    if args.snapshot_every is not None and args.snapshot_every <= 0:
        raise InputError(f"--snapshot-every must be positive; got {args.snapshot_every}")
    if args.rep_dim <= 0:
        raise InputError(f"--rep-dim must be positive; got {args.rep_dim}")
    model_cfg = UpstreamConfig(rep_dim=args.rep_dim, cr_layer=args.cr_layer)
    model_cfg.check_layer(args.cr_layer)
    train_cfg = TrainConfig(batch_size=args.batch_size,
                            holdout_fraction=args.holdout, tau_seconds=args.tau, seed=args.seed,
                            variant=args.variant)
    check_variant_name(args.variant)
    world, info = upstream_world(Dataset.open(args.data))
    cadence = args.snapshot_every or default_cadence_minutes(info["span_seconds"])
    train_cfg = replace(train_cfg, snapshot_every_minutes=cadence)
    enc = encode_world(world)
    result = train_upstream(enc, args.out, model_cfg=model_cfg, train_cfg=train_cfg, device=device,
                            progress=not args.quiet)
    emit({
        "variant": args.variant,
        "snapshot_every_minutes": cadence,
        "cadence": "given" if args.snapshot_every else "from the upstream events' time span (about 12 snapshots)",
        "upstream": info,
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



def register(sub: Any, common: AddCommon) -> None:
    """``lee upstream train``."""
    upstream = sub.add_parser("upstream", help="the upstream foundation model").add_subparsers(
        dest="upstream_command", required=True, metavar="SUBCOMMAND")
    p = common(upstream.add_parser("train", help="train the triple-tower model and write snapshots"))
    p.add_argument("--data", "--world", dest="data", required=True, type=Path,
                   help="dataset (or world) directory; the model trains on its upstream events only")
    p.add_argument("--out", required=True, type=Path, help="snapshot root")
    p.add_argument("--device", default="auto", choices=choices.DEVICES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--snapshot-every", type=int, default=None, metavar="MINUTES",
                   help="event-time minutes between snapshots (default: from the time span, ~12 snapshots)")
    p.add_argument("--holdout", type=float, default=0.2, help="final share of the stream held out for AUC")
    p.add_argument("--rep-dim", type=int, default=32, help="dim of UR and IR")
    p.add_argument("--cr-layer", default="ads.mlp.1", help="layer CR is read from (e.g. ads.cross.0, content.mlp.1)")
    p.add_argument("--tau", type=float, default=600.0, help="CR moving-average time constant in seconds")
    p.add_argument("--variant", default="upstream", help="variant name of the written snapshots")
    p.set_defaults(func=cmd_upstream_train)
