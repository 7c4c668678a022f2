"""``lee report``: every analysis in one self-contained HTML file plus JSON/CSV of every number."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from app.cli.output import AddCommon, emit


def cmd_report(args: argparse.Namespace) -> int:
    import pandas as pd

    from analysis.lee_results import LeeComparison, lee_comparison
    from analysis.report import write_report
    from analysis.suite import SuiteConfig, run_suite
    from lee.config import load_config
    from lee.data.dataset import Dataset
    from lee.evaluator.sweep import read_sweep_figure

    def names(text: str | None) -> tuple[str, ...] | None:
        return tuple(x for x in text.split(",") if x) if text else None

    sweep = read_sweep_figure(args.sweep) if args.sweep else None  # a bad file fails before the analyses run
    fidelity = None
    if args.fidelity:  # a lee fidelity --out directory, or its fidelity/ result (read before the analyses run)
        from analysis.fidelity import FidelityResult

        fid = args.fidelity / "fidelity" if (args.fidelity / "fidelity").is_dir() else args.fidelity
        fidelity = FidelityResult.load(fid)
    base = load_config(SuiteConfig, args.config, what="suite config file") if args.config else SuiteConfig()
    flags = {"variants": names(args.variants), "map_methods": names(args.maps and args.maps.lower()),
             "importance_variants": names(args.importance), "seed": args.seed, "n_boot": args.boot}
    cfg = SuiteConfig(**{**base.model_dump(), **{k: v for k, v in flags.items() if v is not None}})  # flags win
    suite = run_suite(Dataset.open(args.data), args.root, config=cfg, log=(lambda *_: None) if args.quiet else print,
                      progress=not args.quiet)
    lee = lee_comparison(args.db, sweep=sweep) if args.db else (
        LeeComparison(source=str(args.sweep), ranking=pd.DataFrame(), windows=pd.DataFrame(), sweep=sweep)
        if sweep is not None else None)
    from analysis.compare.review import review_from_store

    review = review_from_store(args.db) if args.db else None  # the gate's recorded decisions lead the report
    path = write_report(args.out, suite, lee=lee, fidelity=fidelity, review=review,
                        meta={"data": str(args.data), "snapshots": str(args.root)})
    emit({"report": str(path), "data": str(path.parent / "data"), "skipped": suite.skipped}, args)
    return 0



def register(sub: Any, common: AddCommon) -> None:
    """``lee report``."""
    p = common(sub.add_parser("report", help="self-contained HTML report (+ JSON/CSV) of every analysis"))
    p.add_argument("--data", "--world", dest="data", required=True, type=Path, help="dataset (or world) directory")
    p.add_argument("--root", required=True, type=Path, help="snapshot root")
    p.add_argument("--out", required=True, type=Path, help="directory for report.html and data/")
    p.add_argument("--db", type=Path, help="LEE results store to include")
    p.add_argument("--sweep", type=Path, help="layer-sweep CSV (lee sweep --table) to include")
    p.add_argument("--fidelity", type=Path, help="a lee fidelity --out directory to include")
    p.add_argument("--variants", help="comma-separated (default: all)")
    p.add_argument("--config", type=Path, help="suite config (TOML: SuiteConfig keys, [health] thresholds); "
                   "the flags below override it")
    p.add_argument("--maps", help="2-D maps: pca,tsne,umap (default: the suite config's, pca)")
    p.add_argument("--importance", help="variants to run feature-masking importance on (comma-separated)")
    p.add_argument("--boot", type=int, help="bootstrap resamples (default: the suite config's n_boot)")
    p.add_argument("--seed", type=int, help="seed (default: the suite config's)")
    p.set_defaults(func=cmd_report)
