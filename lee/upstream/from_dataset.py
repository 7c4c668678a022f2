"""The upstream model on any dataset: only its upstream events, at a cadence its time span sets.

:func:`upstream_world` turns a dataset into the world the triple-tower model reads
(:func:`lee.data.worlds.world_from_dataset`, which states how each of the model's fixed inputs was
filled) and keeps only the events the dataset's split marks upstream — the proxy's downstream
events are never trained on. :func:`default_cadence_minutes` picks the snapshot interval from the
upstream events' time span, so a 60-minute planted stream gets 5-minute snapshots and a
7-month rating log gets fortnightly ones instead of one per year.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lee.data.dataset import Dataset
from lee.data.spec import SplitKind
from lee.data.worlds import world_from_dataset
from lee.errors import InputError
from lee.world.model import World

# "nice" snapshot intervals in minutes: 1 minute .. 1 year
_DAY = 1440
_NICE = (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, _DAY, 2 * _DAY, 3 * _DAY, 7 * _DAY, 14 * _DAY, 28 * _DAY,
         91 * _DAY, 182 * _DAY, 365 * _DAY)


def default_cadence_minutes(span_seconds: float, *, snapshots: int = 12) -> int:
    """The nice interval closest to ``span / snapshots`` (about ``snapshots`` snapshots over the span)."""
    if span_seconds <= 0:
        return _NICE[0]
    target = span_seconds / 60.0 / snapshots
    return int(min(_NICE, key=lambda m: abs(np.log(m) - np.log(max(target, 1e-9)))))


def upstream_world(ds: Dataset) -> tuple[World, dict[str, Any]]:
    """The world the upstream model trains on (upstream events only) and what was done to get it."""
    world, mapping = world_from_dataset(ds)
    info: dict[str, Any] = {"mapping": mapping, "split": ds.spec.split.describe()}
    if ds.spec.split.kind != SplitKind.NONE:
        up = ds.part_mask("upstream")
        if not up.any():
            raise InputError(f"{ds.path or 'dataset'}: no upstream events ({ds.spec.split.describe()}); "
                             "the upstream model has nothing to train on")
        world = World(users=world.users, items=world.items, events=world.events.loc[up].reset_index(drop=True),
                      meta=world.meta)
        info["upstream_events"] = int(up.sum())
    else:
        info["upstream_events"] = len(world.events)
        info["note"] = ("the dataset declares no split: the upstream model trains on the first part of every "
                        "event (minus its own holdout), which the proxy may also score")
    ts = world.events["ts"].to_numpy()
    info["span_seconds"] = int(ts[-1] - ts[0]) if len(ts) else 0
    return world, info
