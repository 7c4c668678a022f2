"""``lee gate``: can the candidate snapshot go out? ship (exit 0), hold (1) or roll back (2).

The decision is printed as JSON on stdout with a ``decision`` key, always — also for hold and roll
back. An input error prints nothing on stdout and one paragraph on stderr (exit 2, like every
command): a cron or CI caller that must tell a roll back from an error reads the ``decision`` key.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from app.cli import choices
from app.cli.output import AddCommon, emit, print_frame


def cmd_gate(args: argparse.Namespace) -> int:
    from analysis.gate import load_rules, run_gate
    from lee.data.dataset import Dataset
    from lee.device import resolve_device

    rules = load_rules(args.rules)
    decision = run_gate(args.root, args.candidate, args.incumbent, Dataset.open(args.data), rules=rules, db=args.db,
                        device=resolve_device(args.device), progress=not (args.quiet or args.json))
    doc = decision.summary()
    if args.out:
        doc["written"] = str(decision.save(args.out))
    if args.json:
        emit(doc, args)
        return decision.exit_code
    # for people: the decision, every rule on one line, the reasons; the full document is --json / --out
    print(f"decision: {doc['decision']} (exit {doc['exit_code']}): {doc['candidate']} against {doc['incumbent']}")
    print_frame(decision.rules[["rule", "measured", "threshold", "fired", "action", "reason"]], args)
    for reason in doc["reasons"]:
        print(f"  - {reason}")
    if doc["rollback_target"]:
        print(f"roll back to: {doc['rollback_target']}")
    print("every rule's details: --json" + (f"; saved in {doc['written']}" if args.out else " or --out DIR"))
    return decision.exit_code


def register(sub: Any, common: AddCommon) -> None:
    """``lee gate``."""
    p = common(sub.add_parser("gate", help="release gate: ship (exit 0), hold (1) or roll back (2) a candidate "
                              "snapshot against the incumbent"))
    p.add_argument("--candidate", required=True, help="VARIANT[@TIME] (default: the variant's latest snapshot)")
    p.add_argument("--incumbent", required=True, help="VARIANT[@TIME] that consumers use today")
    p.add_argument("--root", required=True, type=Path, help="snapshot root holding both")
    p.add_argument("--data", "--world", dest="data", required=True, type=Path,
                   help="dataset (or world) with the downstream events LEE and the compatibility check train on")
    p.add_argument("--db", type=Path, help="results store to record the decision in")
    p.add_argument("--rules", type=Path, help="gate.toml with the rules' thresholds (default: the documented defaults)")
    p.add_argument("--device", choices=choices.DEVICES, default="cpu")
    p.add_argument("--out", type=Path, help="also save the decision as a result directory")
    p.set_defaults(func=cmd_gate)
