"""``lee data ...``: import a log in a public or custom format as a dataset, and show a dataset.

Both print the users and items columns that were derived from the events (``entity_columns``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from app.cli import choices
from app.cli.output import AddCommon, emit


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _lines(key: str, value: Any, indent: str = "") -> list[str]:
    """One ``key: value`` line, or a heading with indented lines for a table of values or a list of notes."""
    if isinstance(value, dict):
        out = [f"{indent}{key}:"]
        for k, v in value.items():
            if v is not None and v != [] and v != {}:
                out += _lines(str(k), v, indent + "  ")
        return out
    if isinstance(value, list) and any(isinstance(v, str) and " " in v for v in value):
        return [f"{indent}{key}:"] + [f"{indent}  - {v}" for v in value]
    if isinstance(value, list):
        return [f"{indent}{key}: " + " .. ".join(_scalar(v) for v in value)]
    return [f"{indent}{key}: {_scalar(value)}"]


def _text_block(summary: dict[str, Any], fields: list[dict[str, Any]]) -> str:
    """The human-readable form: one line per topic, then the fields as a table."""
    import pandas as pd

    lines: list[str] = []
    for key, value in summary.items():
        if value is not None and value != [] and value != {}:
            lines += _lines(key, value)
    if fields:
        table = pd.DataFrame(fields).fillna("")
        lines.append("fields:")
        lines += ["  " + ln for ln in table.to_string(index=False).splitlines()]
    else:
        lines.append("fields: none besides the user and item ids")
    return "\n".join(lines)


def _print(summary: dict[str, Any], args: argparse.Namespace) -> None:
    if args.json:
        emit(summary, args)
        return
    rest = {k: v for k, v in summary.items() if k != "fields"}
    print(_text_block(rest, summary.get("fields") or []))


def cmd_data_import(args: argparse.Namespace) -> int:
    from lee.data.importers import ImportOptions, import_dataset

    given = {k: getattr(args, k) for k in ("mapping", "field_map", "user_field", "item_field", "positive", "split",
                                           "campaign", "name", "memory_mb", "entity_tolerance")
             if getattr(args, k) is not None}
    report = import_dataset(args.format, args.src, args.out, ImportOptions(**given), overwrite=args.overwrite,
                            progress=not (args.quiet or args.json))
    _print(report.summary(), args)
    return 0


def cmd_data_show(args: argparse.Namespace) -> int:
    from lee.data.dataset import Dataset

    _print(Dataset.open(args.dataset).summary(), args)
    return 0


def register(sub: Any, common: AddCommon) -> None:
    """``lee data import|show``."""

    data = sub.add_parser("data", help="import logs as datasets and inspect them (docs/data-format.md)").add_subparsers(
        dest="data_command", required=True, metavar="SUBCOMMAND")
    p = common(data.add_parser("import", help="import a log (csv, parquet, jsonl, libfm, libsvm, criteo, recbole, "
                                              "movielens, mind, obd) as a dataset directory"))
    p.add_argument("src", type=Path, metavar="SRC", help="the file or directory to import")
    p.add_argument("--format", required=True, choices=choices.DATA_FORMATS, help="the source format")
    p.add_argument("--out", required=True, type=Path, help="dataset directory to write")
    p.add_argument("--mapping", type=Path, help="csv, parquet, jsonl: TOML mapping of columns to roles, fields and "
                                               "the time's unit (docs/data-format.md)")
    p.add_argument("--field-map", type=Path, help="libfm, libsvm: lines `field:value<TAB>index`")
    p.add_argument("--user-field", help="libfm, libsvm, criteo, recbole: the field holding the user id")
    p.add_argument("--item-field", help="libfm, libsvm, criteo, recbole: the field holding the item id")
    p.add_argument("--positive", metavar="RULE", help="click rule for rating data, e.g. 'rating>=4'")
    p.add_argument("--split", help="none | part | user:FRACTION | time:ISO-or-epoch (which events are downstream)")
    p.add_argument("--campaign", help="obd: all | men | women (default all)")
    p.add_argument("--name", help="the dataset's name (default: from the source)")
    p.add_argument("--memory-mb", type=int, help="memory for sorting a large log out of core, MiB (default 512)")
    p.add_argument("--entity-tolerance", type=float, metavar="SHARE",
                   help="a user- or item-role field on the events becomes a users/items column when at least this "
                        "share of events holds its id's most frequent value (default 0.99)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_data_import)

    p = common(data.add_parser("show", help="roles, fields, cardinalities, time span, label rate and split"))
    p.add_argument("dataset", type=Path, metavar="DIR")
    p.set_defaults(func=cmd_data_show)
