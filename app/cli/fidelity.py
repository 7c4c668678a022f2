"""``lee fidelity``: does LEE rank representations as full downstream training would (analysis.fidelity)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from app.cli import choices
from app.cli.output import AddCommon, emit, names, quiet_log
from lee.errors import InputError


def _ints(text: str | None, flag: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InputError(f"{flag} expects comma-separated integers; got {text!r}") from None
    if not values:
        raise InputError(f"{flag} needs at least one value")
    return values


def _settings(items: list[str], flag: str) -> dict[str, Any]:
    """``KEY=VALUE`` items as a dict, each value read as JSON (``64``, ``[256,128]``) or else kept as text; the
    config model checks them."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{flag} expects KEY=VALUE (e.g. {flag} emb_dim=64); got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value.strip()
    return out


def cmd_fidelity(args: argparse.Namespace) -> int:
    from analysis.fidelity import FidelityConfig, run_fidelity
    from analysis.fidelity_variants import CatalogueConfig
    from lee.device import resolve_device

    raw: dict[str, Any] = {"usage": args.usage, "fusion": args.fusion, "windows": args.windows,
                           "test_windows": args.test_windows, "n_boot": args.boot,
                           "full": {**_settings(args.full, "--full"), "max_epochs": args.max_epochs,
                                    "patience": args.patience}}
    for key, flag, value in (("seeds", "--seeds", args.seeds), ("full_seeds", "--full-seeds", args.full_seeds)):
        parsed = _ints(value, flag)
        if parsed is not None:
            raw[key] = list(parsed)
    if args.proxy_epochs is not None:
        raw["proxy"] = {"epochs_per_window": args.proxy_epochs}
    cfg = FidelityConfig.from_dict(raw, source="lee fidelity options")
    if args.upstream_times < 1:
        raise InputError(f"--upstream-times must be at least 1; got {args.upstream_times}")
    if args.upstream_epochs is not None and args.upstream_epochs < 1:
        raise InputError(f"--upstream-epochs must be at least 1; got {args.upstream_epochs}")
    catalogue = CatalogueConfig(upstream_times=args.upstream_times, upstream_epochs=args.upstream_epochs,
                                seed=args.seed)
    res = run_fidelity(args.data, args.out, cfg=cfg, catalogue=catalogue, select=names(args.variants),
                       device=str(resolve_device(args.device)), progress=not args.quiet and not args.json,
                       log=quiet_log(args))
    m = res.metrics
    emit({"kendall_tau": m["kendall_tau"], "kendall_tau_ci": m["kendall_tau_ci"],
          "spearman_rho": m["spearman_rho"], "spearman_rho_ci": m["spearman_rho_ci"],
          "verdict_agreement": m["verdict_agreement"], "time_ratio": m["time_ratio"],
          "interval": m["interval"], "n_variants": m["n_variants"],
          "pairs": [{k: p[k] for k in ("variant", "lee_delta_auc", "lee_verdict", "full_delta_auc", "full_verdict")}
                    for p in res.pairs()],
          "notes": res.notes, "written": {"json": str(Path(args.out) / "fidelity.json"),
                                          "result": str(Path(args.out) / "fidelity")}}, args)
    return 0


def register(sub: Any, common: AddCommon) -> None:
    """``lee fidelity``."""
    p = common(sub.add_parser("fidelity", help="rank variants by LEE and by full downstream training; "
                              "Kendall/Spearman, verdict agreement, wall-time ratio"))
    p.add_argument("--data", "--world", dest="data", required=True, type=Path, help="dataset (or world) directory")
    p.add_argument("--out", required=True, type=Path, help="directory for fidelity.json, fidelity/ and snapshots/")
    p.add_argument("--variants", help="comma-separated families (planted, upstream, layer, rank, noise, null) or "
                   "name patterns such as 'upstream@*' (default: all)")
    p.add_argument("--seeds", help="LEE's proxy seeds (default 0,1,2)")
    p.add_argument("--full-seeds", help="the full model's seeds (default: the same as --seeds)")
    p.add_argument("--usage", default="auto", choices=[*choices.USAGES, "auto"],
                   help="tables injected (auto, the default: UR+IR where a variant has them, else CR)")
    p.add_argument("--fusion", default="concat", choices=choices.FUSIONS)
    p.add_argument("--windows", type=int, default=10, help="event-time windows of the downstream stream")
    p.add_argument("--test-windows", type=int, default=3, help="the last N windows are the full model's test set")
    p.add_argument("--max-epochs", type=int, default=8, help="full model: most passes over the training events")
    p.add_argument("--patience", type=int, default=2, help="full model: epochs without a better validation AUC")
    p.add_argument("--full", action="append", default=[], metavar="KEY=VALUE",
                   help="full model size or training (FullConfig: emb_dim, cross_layers, mlp_hidden=[256,128], "
                   "batch_size, lr, sparse_lr, min_steps_per_epoch)")
    p.add_argument("--proxy-epochs", type=int, help="LEE proxy: passes per window (default: the proxy's, 1)")
    p.add_argument("--upstream-times", type=int, default=4, help="upstream snapshots at successive times")
    p.add_argument("--upstream-epochs", type=int, help="upstream model: passes per snapshot interval")
    p.add_argument("--boot", type=int, default=200, help="bootstrap resamples (verdicts, rank-correlation intervals)")
    p.add_argument("--seed", type=int, default=0, help="seed of the written variants and the upstream model")
    p.add_argument("--device", default="auto", choices=choices.DEVICES)
    p.set_defaults(func=cmd_fidelity)
