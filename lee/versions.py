"""Which model produced a snapshot's tables, and warnings when tables of different checkpoints are combined.

The upstream writer records two keys in a snapshot manifest's ``extra``:

* ``model_run`` — one training run (its configuration, seed and data): the snapshots of one
  continuously trained model share it, a retrain with another seed does not. Vectors of one run
  share a basis, so same-id cosine (volatility) means something between them; across runs only
  rotation-invariant measures do (:mod:`analysis.compare`).
* ``checkpoint`` — the weights that wrote the snapshot: ``<model_run>@<events trained>``.

A snapshot assembled from several sources may name a checkpoint per table in
``extra["checkpoints"]`` (``{"UR": "...", "IR": "..."}``), which wins over the snapshot-wide one.

A user vector of one checkpoint scored against an item vector of another is *version skew*: the
two were never trained together, and whatever consumes them (a dot product, a proxy model) sees
a mismatch that no per-table check can catch. :func:`skew_warnings` finds it whenever a job, an
injection or a comparison combines tables, and :func:`warn_skew` raises it as a
:class:`~lee.errors.VersionSkewWarning`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

from lee.errors import VersionSkewWarning
from lee.snapshot import Snapshot, TableKind
from lee.timeutil import time_dirname

CHECKPOINT_KEY = "checkpoint"
RUN_KEY = "model_run"
PER_TABLE_KEY = "checkpoints"


def checkpoint_of(snapshot: Snapshot, kind: TableKind | str | None = None) -> str | None:
    """The checkpoint id that produced ``kind`` (or the snapshot as a whole); None when unrecorded."""
    extra: dict[str, Any] = snapshot.manifest.extra
    if kind is not None:
        per_table = extra.get(PER_TABLE_KEY)
        if isinstance(per_table, dict):
            value = per_table.get(TableKind.parse(kind).value)
            if isinstance(value, str) and value:
                return value
    value = extra.get(CHECKPOINT_KEY)
    return value if isinstance(value, str) and value else None


def model_run_of(snapshot: Snapshot) -> str | None:
    """The training run that produced the snapshot (None when unrecorded)."""
    value = snapshot.manifest.extra.get(RUN_KEY)
    if isinstance(value, str) and value:
        return value
    checkpoint = checkpoint_of(snapshot)
    return checkpoint.split("@", 1)[0] if checkpoint and "@" in checkpoint else None


def same_basis(a: Snapshot, b: Snapshot) -> bool | None:
    """True when both snapshots come from one training run (same-id cosine is meaningful), False when
    from different runs, None when either does not record its run."""
    ra, rb = model_run_of(a), model_run_of(b)
    if ra is None or rb is None:
        return None
    return ra == rb


def skew_warnings(parts: Iterable[tuple[Snapshot, TableKind | str]], *, what: str) -> list[str]:
    """One message per set of tables combined from more than one checkpoint (empty when consistent).

    ``parts`` are the (snapshot, table) pairs a job, an injection or a comparison combines;
    ``what`` names the combination in the message (e.g. ``"LEE injection UR+IR"``). Tables without
    a recorded checkpoint are listed as such but never cause a warning on their own.
    """
    seen: dict[str, list[str]] = {}
    unknown: list[str] = []
    for snap, kind in parts:
        k = TableKind.parse(kind)
        label = f"{k.value} of {snap.variant}@{time_dirname(snap.event_time)}"
        ckpt = checkpoint_of(snap, k)
        if ckpt is None:
            unknown.append(label)
        else:
            seen.setdefault(ckpt, []).append(label)
    if len(seen) <= 1:
        return []
    listed = "; ".join(f"{', '.join(labels)} from checkpoint {c}" for c, labels in seen.items())
    tail = f" ({', '.join(unknown)} record no checkpoint)" if unknown else ""
    return [f"version skew in {what}: tables from {len(seen)} different model checkpoints are combined: "
            f"{listed}{tail}. Vectors of different checkpoints were never trained together; combine tables "
            "of one checkpoint, or retrain what consumes them"]


def warn_skew(parts: Iterable[tuple[Snapshot, TableKind | str]], *, what: str) -> list[str]:
    """:func:`skew_warnings`, each also raised as a :class:`VersionSkewWarning`; returns the messages."""
    messages = skew_warnings(parts, what=what)
    for message in messages:
        warnings.warn(message, VersionSkewWarning, stacklevel=2)
    return messages
