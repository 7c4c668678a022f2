"""Planted snapshot anomalies: broken snapshots a health monitor must flag, between healthy ones.

After a variant's latest snapshot, four more are written ``interval_minutes`` apart:

* ``rescaled``      — every vector multiplied by ``RESCALE`` (an upstream normalisation bug);
* ``healthy``       — the latest healthy snapshot plus a small drift (must *not* be flagged);
* ``nan_rows``      — ``NAN_SHARE`` of the rows hold NaN (a numerical blow-up);
* ``collapsed_dim`` — one dimension set to a constant (a dead unit).

So the most recent healthy snapshot to roll back to is the ``healthy`` one.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from lee.snapshot import EmbeddingTable, SnapshotStore
from lee.snapshot.writer import write_snapshot

ANOMALIES: tuple[str, ...] = ("rescaled", "healthy", "nan_rows", "collapsed_dim")
RESCALE = 3.0
NAN_SHARE = 0.01
DRIFT = 0.02  # healthy step, in per-dimension std


def plant_anomalies(root: str | Path, variant: str, *, into: str | None = None, interval_minutes: int = 5,
                    seed: int = 0, overwrite: bool = False) -> dict[str, datetime]:
    """Append the four snapshots above to ``variant``; returns each one's event time by name.

    With ``into``, ``variant`` is left untouched: its latest snapshot is copied to the variant
    ``into`` (as the healthy baseline, at its own time) and the four are appended there.
    """
    store = SnapshotStore(root)
    base = store.latest(variant)
    tables = {k: base.load(k) for k in base.kinds}
    if into is not None:
        write_snapshot(root, into, base.event_time, tables, source_layer=base.manifest.source_layer,
                       extra={"copied_from": variant}, overwrite=overwrite)
        variant = into
    rng = np.random.default_rng(seed)
    times: dict[str, datetime] = {}
    for step, name in enumerate(ANOMALIES, start=1):
        when = base.event_time + timedelta(minutes=interval_minutes * step)
        out = {}
        for kind, t in tables.items():
            v = t.vectors.astype(np.float32, copy=True)
            std = v.std(axis=0) + 1e-12
            if name == "rescaled":
                v *= RESCALE
            elif name == "healthy":
                v += (DRIFT * std * rng.standard_normal(v.shape)).astype(np.float32)
            elif name == "nan_rows":
                rows = rng.choice(len(v), size=max(1, int(NAN_SHARE * len(v))), replace=False)
                v[rows] = np.nan
            else:  # collapsed_dim: the highest-variance dimension goes dead
                d = int(np.argmax(std))
                v[:, d] = v[:, d].mean()
            out[kind] = EmbeddingTable(ids=t.ids, vectors=v, updated_at=t.updated_at)
        write_snapshot(root, variant, when, out, source_layer=f"anomaly:{name}",
                       extra={"planted_anomaly": name}, overwrite=overwrite, allow_nonfinite=name == "nan_rows")
        times[name] = when
    return times
