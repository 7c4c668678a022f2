"""``lee snapshots ...``: list, show, validate, import and export snapshots."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.cli.output import EXIT_USAGE_OR_INPUT, AddCommon, emit, print_error
from lee.errors import InputError, LeeError

# lee.snapshot.importers.IMPORTERS and import_columns.ID_TYPES (kept here so that --help imports no pyarrow;
# tests/test_snapshot_import_layouts.py checks they agree)
IMPORT_FORMATS = ("npz", "npy", "safetensors", "csv", "parquet", "tsv", "arrow", "w2v", "jsonl")
ID_TYPES = ("integer", "text", "auto")


def cmd_snapshots_ls(args: argparse.Namespace) -> int:
    from lee.snapshot import SnapshotStore
    from lee.timeutil import iso

    store = SnapshotStore(args.root)
    variants = [args.variant] if args.variant else store.variants()
    listing = {v: [iso(t) for t in store.times(v)] for v in variants}
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    if not listing:
        print(f"{args.root}: no snapshots")
    for v, times in listing.items():
        span = f"{times[0]} .. {times[-1]}" if times else "none"
        print(f"{v:<20} {len(times):>4} snapshot(s)  {span}")
    return 0


def cmd_snapshots_show(args: argparse.Namespace) -> int:
    from lee.snapshot.store import open_any

    snap = open_any(args.path)
    doc = snap.manifest.to_dict()
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"{snap.path}\n  variant {doc['variant']}  event time {doc['event_time']}  "
          f"source layer {doc['source_layer'] or '-'}  format v{doc['format_version']}")
    for kind, t in doc["tables"].items():
        print(f"  {kind:<8} {t['rows']:>10,} rows x {t['dim']:>4}  ids {t['id_type']:<6}  "
              f"sha256 {t['sha256'][:12]}…{'  updated_at' if t['has_updated_at'] else ''}")
    return 0


def cmd_snapshots_validate(args: argparse.Namespace) -> int:
    """Validate every snapshot at each path; every directory that is not a readable snapshot
    (no manifest, a dangling or odd manifest, a name that is not an event time, a link out of the
    root, a stray file) is listed as invalid too, so nothing under a root is ever silently skipped."""
    from lee.snapshot import validate_snapshot
    from lee.snapshot.store import scan_snapshot_dirs

    failures = 0
    checked = 0
    for given in args.paths:
        snap_dirs, problems = scan_snapshot_dirs(given)
        for problem in problems:
            checked += 1
            failures += 1
            print_error(str(problem), prefix="invalid")
        if not snap_dirs and not problems:
            snap_dirs = [Path(given)]  # nothing found: validate the path itself, so it says why it is not one
        for snap_dir in snap_dirs:
            checked += 1
            # snapshots found under a root or variant directory are confined to it and must sit where
            # their manifest says; a snapshot directory given on its own is checked as it stands
            root = Path(given) if snap_dir != Path(given) else None
            try:
                reports = validate_snapshot(snap_dir, root=root, max_abs=args.max_abs)
            except LeeError as exc:
                failures += 1
                print_error(exc, prefix="invalid")
                continue
            if not args.quiet:
                tables = ", ".join(f"{r.kind.value} {r.rows:,}x{r.dim}" for r in reports)
                print(f"ok  {snap_dir}  ({tables})")
    if failures:
        print(f"{failures} of {checked} snapshot(s) failed validation", file=sys.stderr)
        return EXIT_USAGE_OR_INPUT
    return 0


def cmd_snapshots_import(args: argparse.Namespace) -> int:
    from lee.snapshot import write_snapshot
    from lee.snapshot.importers import importer_for

    ids_files = dict(_kind_pairs(args.ids, "--ids"))
    tables = {}
    for kind, file in _kind_pairs(args.table, "--table"):
        importer = importer_for(file, args.format, ids_path=ids_files.get(kind),
                                ids_key=args.ids_key, vectors_key=args.vectors_key,
                                header=False if args.no_header else None, id_type=args.id_type)
        tables[kind] = importer.read(file)
    unused = sorted(k.value for k in set(ids_files) - set(tables))
    if unused:
        raise InputError(f"--ids given for {', '.join(unused)} but no --table for it")
    extra: dict[str, Any] = {"imported_from": {k.value: str(f) for k, f in _kind_pairs(args.table, "--table")}}
    if args.model_run is not None:
        from lee.versions import RUN_KEY

        if not args.model_run.strip():
            raise InputError("--model-run: give the training run's name (any text that stays the same for every "
                             "snapshot of one run); got an empty one")
        extra[RUN_KEY] = args.model_run
    path = write_snapshot(args.root, args.variant, _event_time_arg(args.time), tables, source_layer=args.source_layer,
                          overwrite=args.overwrite, extra=extra)
    emit({"snapshot": str(path), "tables": {k.value: {"rows": len(t), "dim": t.dim} for k, t in tables.items()}},
          args)
    return 0


def _event_time_arg(text: str) -> Any:
    """``--time`` as the help promises: ISO 8601, the directory form, or whole epoch seconds."""
    from lee.timeutil import parse_event_time

    try:
        return parse_event_time(text)
    except InputError:
        if not re.fullmatch(r"\s*[+-]?\d+\s*", text):
            raise
    try:
        return parse_event_time(int(text))
    except (OverflowError, ValueError, OSError) as exc:
        raise InputError(f"--time {text.strip()}: epoch seconds out of range ({exc})") from None


def _kind_pairs(pairs: Sequence[str] | None, flag: str) -> list[tuple[Any, Path]]:
    """``KIND=PATH`` pairs such as ``UR=user.npz`` as (TableKind, Path)."""
    from lee.snapshot.format import TableKind

    out = []
    for pair in pairs or []:
        if "=" not in pair:
            raise InputError(f"{flag} expects KIND=PATH (e.g. UR=users.npz); got {pair!r}")
        kind, file = pair.split("=", 1)
        out.append((TableKind.parse(kind), Path(file)))
    return out


def cmd_snapshots_export(args: argparse.Namespace) -> int:
    """Write one table as CSV or Parquet to ``--out FILE`` (replaced atomically), or to standard
    output with ``--out -``; a symbolic link or device (``/dev/stdout`` included) is refused."""
    from lee.fileio import check_output_target
    from lee.snapshot.importers import export_table
    from lee.snapshot.store import open_any

    to_stdout = str(args.out) == "-"
    if not to_stdout:
        check_output_target(args.out, stdout_hint=True)  # before the table is even read
    snap = open_any(args.path)
    if to_stdout:
        export_table(snap, args.kind, sys.stdout.buffer, args.format)
        sys.stdout.flush()
        return 0
    path = export_table(snap, args.kind, args.out, args.format)
    emit({"exported": str(path)}, args)
    return 0


def cmd_snapshots_random_like(args: argparse.Namespace) -> int:
    """A random snapshot with the source's ids, dims and per-dimension mean and std (lee.snapshot.random_like)."""
    from lee.snapshot import Snapshot
    from lee.snapshot.random_like import METHOD, write_random_like
    from lee.snapshot.store import open_any

    src = open_any(args.path)
    path = write_random_like(src, args.root, args.variant, seed=args.seed, overwrite=args.overwrite)
    out = Snapshot.open(path)
    emit({"snapshot": str(path), "source": str(src.path), "seed": args.seed, "method": METHOD,
          "tables": {k.value: {"rows": out.info(k).rows, "dim": out.info(k).dim} for k in out.kinds}}, args)
    return 0


def register(sub: Any, common: AddCommon) -> None:
    """``lee snapshots ls|show|validate|import|export|random-like``."""
    snaps = sub.add_parser("snapshots", help="list, inspect, validate, import and export snapshots").add_subparsers(
        dest="snapshots_command", required=True, metavar="SUBCOMMAND")
    p = common(snaps.add_parser("ls", help="variants and their snapshot times under a root"))
    p.add_argument("root", type=Path)
    p.add_argument("--variant")
    p.set_defaults(func=cmd_snapshots_ls)

    p = common(snaps.add_parser("show", help="one snapshot's manifest"))
    p.add_argument("path", type=Path)
    p.set_defaults(func=cmd_snapshots_show)

    p = common(snaps.add_parser("validate", help="fully check snapshots (a snapshot, variant or root directory)"))
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--max-abs", type=float, default=None, metavar="X",
                   help="refuse vector values beyond ±X (default: $LEE_MAX_ABS_VALUE or 1e6)")
    p.set_defaults(func=cmd_snapshots_validate)

    p = common(snaps.add_parser("import", help="write a snapshot from .npz/.npy/safetensors files, CSV/TSV/Parquet/"
                                "Arrow tables, word2vec/GloVe/fastText text or JSON lines"))
    p.add_argument("--root", required=True, type=Path)
    p.add_argument("--variant", required=True)
    p.add_argument("--time", required=True, help="event time (ISO 8601 or epoch seconds)")
    p.add_argument("--table", action="append", required=True, metavar="KIND=FILE",
                   help="a table to import, e.g. UR=users.npz (repeatable)")
    p.add_argument("--ids", action="append", metavar="KIND=FILE", help="ids .npy for a .npy table")
    p.add_argument("--format", choices=IMPORT_FORMATS,
                   help="default: from the suffix (.npz .npy .safetensors .csv .tsv .parquet .arrow/.feather "
                   ".vec/.txt .jsonl); csv and tsv read one row per id: the id column and every other numeric column "
                   "as a dimension (what 'lee snapshots export' writes); parquet and arrow read that too, or an id "
                   "column and one list column of vectors; w2v is word2vec/GloVe/fastText text (an optional 'N D' "
                   "header line, then 'word v1 .. vD'); jsonl is one object per line "
                   "({\"id\": .., \"embedding\": [..]})")
    p.add_argument("--ids-key", help="array/tensor name of the ids (default: ids; the id column or key of a "
                   "CSV/TSV/Parquet/Arrow table or JSON lines, default: id)")
    p.add_argument("--vectors-key", help="array/tensor name of the vectors (default: vectors; for Parquet/Arrow the "
                   "list column of vectors and for JSON lines the array key, default: the only one)")
    p.add_argument("--no-header", action="store_true", help="csv, tsv: the file has no header line, its first "
                   "column holds the ids (PyTorch-BigGraph's TSV export); w2v: line 1 is a vector, not 'N D'")
    p.add_argument("--id-type", choices=ID_TYPES, help="csv, tsv, parquet, arrow, w2v, jsonl: read the ids as "
                   "integers, as text (as written, leading zeros kept), or auto (integers when every id is written "
                   "as one without leading zeros, as 'lee data import' does); default: the file's own type (Arrow's "
                   "inference for CSV/TSV, which reads 007 as 7), text for w2v")
    p.add_argument("--source-layer", default="")
    p.add_argument("--model-run", help="name of the training run that wrote these vectors, recorded in the manifest: "
                   "snapshots of one run share a basis (same-id cosine is meaningful), snapshots of different runs "
                   "are compared after alignment and the gate judges the swap; unrecorded, a low same-id cosine "
                   "beside a high aligned one is reported as another basis")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_snapshots_import)

    p = common(snaps.add_parser("export", help="write one table as CSV or Parquet (id, v0..v{d-1})"))
    p.add_argument("path", type=Path)
    p.add_argument("--kind", required=True, help="UR, IR, CR_user or CR_item")
    p.add_argument("--out", required=True, help="output file, or - for standard output")
    p.add_argument("--format", default="csv", choices=("csv", "parquet"))
    p.set_defaults(func=cmd_snapshots_export)

    p = common(snaps.add_parser("random-like", help="a random snapshot with the same ids, dims and per-dim mean/std"))
    p.add_argument("path", type=Path, metavar="SNAPSHOT", help="the snapshot directory to imitate")
    p.add_argument("--variant", required=True, help="variant name of the random snapshot")
    p.add_argument("--root", type=Path, help="snapshot root to write into (default: the source's root)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_snapshots_random_like)
