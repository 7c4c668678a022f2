"""``lee compare A B``: two versions of one table, compared by every paired and unpaired measure."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from app.cli.output import AddCommon, emit, print_frame, quiet_log
from lee.errors import InputError

DEFAULT_MEMORY_MB = 4096  # lee.snapshot.reader.DEFAULT_MEMORY_MB, not imported: `lee --help` loads no pyarrow
KNN_MAX = 1_000_000       # analysis.compare.KNN_MAX, likewise


def _attributes(data: Path, entity: str) -> Any:
    """The dataset's users (or items) table with its id column named ``user_id`` (``item_id``)."""
    from lee.data.dataset import Dataset

    ds = Dataset.open(data)
    attrs = ds.attributes(entity)
    if attrs is None:
        raise InputError(f"{data}: has no {entity}s table to take --by from")
    id_col = ds.user_col if entity == "user" else ds.item_col
    return attrs.rename(columns={id_col: f"{entity}_id"})


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.0%}" if whole else "–"


def another_basis(doc: dict[str, Any], *, gap: float = 0.2) -> str:
    """A plain sentence when B looks like A in another basis (empty otherwise).

    Without a recorded training run (``same_model_run`` null, e.g. imported snapshots) nothing else
    tells a retrain from noise: a same-id cosine well below the Procrustes-aligned one (by ``gap``
    or more) means the vectors moved together, by a rotation, and a consumer reading them by
    position would see them as new.
    """
    raw, aligned = doc.get("raw_cosine_mean"), doc.get("aligned_cosine_mean")
    if doc.get("same_model_run") is False or raw is None or aligned is None:
        return ""
    if not (np.isfinite(raw) and np.isfinite(aligned)) or aligned - raw < gap:
        return ""
    return (f"same-id cosine {raw:.3f} but {aligned:.3f} after an orthogonal alignment: B is largely A's "
            "representation in another basis (a retrain or a new model version), not noise; consumers that read "
            "the vectors by position must be retrained on B (or served B aligned), and the drift tests below ran "
            f"in the {doc.get('drift_space', 'raw')} space, where the rotation alone can make them reject")


def cmd_compare(args: argparse.Namespace) -> int:
    from analysis.compare import compare_versions, open_version
    from app.cli.analyze import _engine as engine_of
    from lee.results import plain

    if args.by and not args.data:
        raise InputError("--by needs --data (the dataset whose users/items table holds the attribute)")
    a, b = open_version(args.a, args.root), open_version(args.b, args.root)
    strata = None
    kind = args.table
    from lee.snapshot import TableKind

    entity = TableKind.parse(kind).entity
    attrs = _attributes(args.data, entity) if args.data and (args.by or args.stratify) else None
    if args.stratify:
        assert attrs is not None
        if args.stratify not in attrs.columns:
            raise InputError(f"--stratify {args.stratify}: no such column in the {entity}s table; columns: "
                             f"{', '.join(map(str, attrs.columns))}")
        strata = attrs.set_index(f"{entity}_id")[args.stratify]
    with engine_of(args) as engine:
        res = compare_versions(a, b, kind, k=args.k, clusters=args.clusters, drift_sample=args.sample,
                               strata=strata, knn_max=args.knn_max, seed=args.seed, verify=not args.no_verify,
                               progress=not (args.quiet or args.json), memory_mb=args.memory_mb, engine=engine)
    doc = plain(res.summary())
    if args.by:
        doc["by"] = plain(res.by_attribute(attrs, args.by, share=args.share, bins=args.bins).to_dict(orient="records"))
    if args.out:
        doc["written"] = str(res.save(args.out))
    if args.json:
        emit(doc, args)
        return 0
    say = quiet_log(args)
    n_a, n_b = doc["shared_ids"] + doc["only_a"], doc["shared_ids"] + doc["only_b"]
    print(f"{doc['a']} -> {doc['b']}  table {doc['table']} (dims {doc['dim_a']} / {doc['dim_b']}): "
          f"{doc['shared_ids']:,} shared ids ({_share(doc['shared_ids'], n_a)} of A's {n_a:,}, "
          f"{_share(doc['shared_ids'], n_b)} of B's {n_b:,}), {doc['only_a']:,} only in A, {doc['only_b']:,} only in B")
    basis = another_basis(doc)
    if basis:
        print(f"reading: {basis}")
    print_frame(res.measures(), args)
    print(f"alignment: {doc['alignment']}")
    print(f"neighbours: {doc['knn_method']}; recall {doc['knn_recall']}")
    print(f"drift: {doc['drift_space']} space, samples {doc['drift_sample_a']:,} / {doc['drift_sample_b']:,}")
    for line in doc["notes"]:
        say(f"note: {line}")
    if args.by:
        print_frame(res.by_attribute(attrs, args.by, share=args.share, bins=args.bins), args)
    if args.out:
        print(f"written: {doc['written']}")
    return 0


def register(sub: Any, common: AddCommon) -> None:
    """``lee compare A B``."""
    p = common(sub.add_parser("compare", help="two versions of a table: aligned cosine, CKA, kNN overlap, clusters, "
                              "drift tests"))
    p.add_argument("a", help="earlier version: a snapshot directory, or VARIANT[@TIME] with --root")
    p.add_argument("b", help="later version, likewise")
    p.add_argument("--root", type=Path, help="snapshot root: A and B name VARIANT[@TIME] (default: the latest)")
    p.add_argument("--table", default="UR", help="UR, IR, CR_user or CR_item (default UR)")
    p.add_argument("--k", type=int, default=10, help="neighbours for kNN overlap@k (default 10)")
    p.add_argument("--clusters", type=int, default=8, help="K-means clusters for cluster stability (default 8)")
    p.add_argument("--sample", type=int, default=1000, help="vectors per side for the drift tests (default 1000)")
    p.add_argument("--data", "--world", dest="data", type=Path,
                   help="dataset (or world) whose users/items table holds --by / --stratify attributes")
    p.add_argument("--by", help="share of ids whose neighbourhood changed most, by this attribute")
    p.add_argument("--share", type=float, default=0.1, help="'changed most': this share of ids (default 0.1)")
    p.add_argument("--bins", type=int, help="quantile bins for a numeric --by attribute")
    p.add_argument("--stratify", help="stratify the drift samples by this attribute")
    p.add_argument("--knn-max", type=int, default=KNN_MAX,
                   help=f"neighbours and clusters on a seeded sample of at most this many shared ids "
                        f"(default {KNN_MAX:,})")
    p.add_argument("--memory-mb", type=float, default=DEFAULT_MEMORY_MB,
                   help=f"memory bound in MiB: the ids, the samples and the streamed pass's chunks fit within it; "
                        f"too small a bound is refused up front naming the least (default {DEFAULT_MEMORY_MB})")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local (default): in this process within --memory-mb; ray: the paired pass (join by id, "
                        "per-id cosines, CKA's sums) as Ray tasks over id-hash partitions, exact sums merged; the "
                        "samples (alignment fit, neighbours, clusters, drift) stay here; equal results")
    p.add_argument("--address", help="with --engine ray: an existing Ray cluster ('auto', 'ray://HEAD:10001'); "
                                     "default: a Ray instance started on this machine")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-verify", action="store_true", help="skip checksum verification")
    p.add_argument("--out", type=Path, help="also write the result's JSON and CSV tables to this directory")
    p.set_defaults(func=cmd_compare)
