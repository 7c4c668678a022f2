"""A random snapshot shaped like a real one: the "no information" yardstick for any data.

On a planted world the ``random`` variant is written from the generator; on real data there is no
generator, so the yardstick is built from the snapshot under test: the same ids, the same tables
and dims, and in every dimension the same mean and standard deviation, with vectors that carry no
information about the ids. LEE then says whether a representation beats what its shape alone
gives (the proxy z-scores every column, so scale and offset are matched anyway), and cluster
measures are compared against clusters of such draws.

Method: per table, draw a standard normal matrix of the table's shape, standardise each column of
the draw exactly (mean 0, population std 1), then scale and shift it by the source's per-column
std and mean. The moments therefore match the source's to float32 rounding, not only in
expectation; a dead (constant) dimension stays constant. With a single row there is nothing to
standardise and the row is copied: one id carries no spread to randomise.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from lee.errors import InputError
from lee.snapshot.format import EmbeddingTable, TableKind
from lee.snapshot.reader import Snapshot
from lee.snapshot.writer import write_snapshot
from lee.timeutil import parse_event_time, time_dirname

SOURCE_LAYER = "random-like"
METHOD = ("per table: standard normal draws of the table's shape, each column standardised exactly, then scaled "
          "and shifted to the source's per-dimension std and mean; same ids, dims and updated_at")


def random_like_vectors(vectors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian float32 vectors of ``vectors``' shape with exactly its per-column mean and std.

    Computed in float64 and rounded to float32 once, so the moments agree with the source's to
    float32 precision. Columns with zero spread (and a single row) come back constant at the mean.
    """
    x = np.asarray(vectors)
    if x.ndim != 2:
        raise InputError(f"random-like vectors need a 2-D matrix (rows x dims); got shape {x.shape}")
    src = x.astype(np.float64, copy=False)
    mean, std = src.mean(axis=0), src.std(axis=0)
    z = rng.standard_normal(x.shape)
    if x.shape[0] > 1:
        z -= z.mean(axis=0)
        zs = z.std(axis=0)
        z /= np.where(zs > 0, zs, 1.0)
    else:
        z[:] = 0.0
    return (mean + std * z).astype(np.float32)


def random_like_tables(snapshot: Snapshot, *, seed: int = 0) -> dict[TableKind, EmbeddingTable]:
    """Every table of ``snapshot`` replaced by :func:`random_like_vectors` (ids and updated_at kept).

    Tables are drawn in the snapshot's table order from one generator seeded with ``seed``, so a
    seed gives the same snapshot every time.
    """
    rng = np.random.default_rng(seed)
    out: dict[TableKind, EmbeddingTable] = {}
    for kind in snapshot.kinds:
        table = snapshot.load(kind)
        out[kind] = EmbeddingTable(table.ids, random_like_vectors(table.vectors, rng), table.updated_at)
    return out


def write_random_like(snapshot: Snapshot | str | Path, root: str | Path | None = None, variant: str = "random", *,
                      seed: int = 0, event_time: str | datetime | int | None = None,
                      overwrite: bool = False) -> Path:
    """Write a random snapshot shaped like ``snapshot`` as ``root/variant/<event time>`` and return its path.

    ``root`` defaults to the source's own snapshot root (the directory above its variant), and
    ``event_time`` to the source's, so the yardstick sits beside the snapshot it measures. The
    manifest's ``extra.random_like`` records the source path, variant, event time, seed and method.
    Writing over the source itself is refused.
    """
    snap = snapshot if isinstance(snapshot, Snapshot) else Snapshot.open(snapshot)
    root = Path(root) if root is not None else snap.path.parent.parent
    when = snap.event_time if event_time is None else event_time
    target = root / variant / time_dirname(parse_event_time(when))
    if target.resolve() == snap.path.resolve():
        raise InputError(f"{snap.path}: the random-like snapshot would replace its own source; "
                         f"give another --variant than {variant!r} or another --root")
    tables = random_like_tables(snap, seed=seed)
    extra: dict[str, Any] = {"random_like": {"source": str(snap.path), "source_variant": snap.variant,
                                             "source_event_time": snap.event_time.isoformat(), "seed": int(seed),
                                             "method": METHOD}}
    return write_snapshot(root, variant, when, tables, source_layer=SOURCE_LAYER, extra=extra, overwrite=overwrite)
