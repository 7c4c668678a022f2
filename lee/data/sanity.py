"""Checks on what an imported log means, beyond its format: both outcomes present, no id swallowing the log.

A log can be perfectly well formed and still useless or misleading to LEE:

* **one outcome only** — a clicks-only log (Yoochoose's ``clicks.dat``) or a click rule that
  matches every row gives label rate 0 or 1; every AUC is then undefined and a verdict would be
  noise. :func:`require_both_outcomes` stops the import with what to do instead.
* **one id holding much of the log** — Avazu's ``device_id`` is ``a99f214a`` (the unknown device)
  on most rows; taken as the user id, most events share one "user", so user vectors can hardly
  matter. :class:`TopIds` finds such ids while the chunks stream by (exact for an id that is
  among a chunk's most frequent in every chunk, a lower bound otherwise) and
  :func:`concentration_warnings` words them; ``lee data show`` computes them exactly.
* **a time split outside the log** — ``--split time:T`` after the last event leaves nothing
  downstream (:func:`split_warnings`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lee.data.spec import SplitKind, SplitSpec
from lee.errors import InputError

DOMINANT_SHARE = 0.2
"""An id on at least this share of the events is stated (placeholder ids, bots, a default value) ..."""
DOMINANT_RATIO = 3.0
"""... when it is also this many times as frequent as the runner-up (a log of ten items is not flagged)."""


def require_both_outcomes(src: Path, label_col: str, rule: str | None, positives: int, rows: int) -> None:
    """An :class:`InputError` when every event has the same label."""
    if rows == 0 or 0 < positives < rows:
        return
    value = 1 if positives else 0
    how = rule or f"column {label_col}"
    raise InputError(
        f"{src}: every one of the {rows:,} events has label {value} ({how}); LEE compares models by AUC and log "
        "loss, which need events of both outcomes. A log of positives only (e.g. Yoochoose's clicks, or purchases "
        "alone) has no negatives: give a click rule on a column that tells outcomes apart (--positive or the "
        "mapping's positive, e.g. 'event!=view'), or add the exposures that were not clicked")


class TopIds:
    """The most frequent ids of one column, counted chunk by chunk (see the module docstring)."""

    def __init__(self, column: str, per_chunk: int = 5) -> None:
        self.column = column
        self.per_chunk = per_chunk
        self.counts: dict[object, int] = {}
        self.rows = 0

    def add(self, chunk: pd.DataFrame) -> None:
        """Count one chunk's most frequent ids (and the ids already being followed)."""
        col = chunk[self.column]
        self.rows += len(col)
        vc = col.value_counts()
        follow = set(vc.index[: self.per_chunk]) | set(self.counts)
        for key in follow:
            n = int(vc.get(key, 0))
            if n:
                self.counts[key] = self.counts.get(key, 0) + n

    def top(self) -> tuple[object, int, int] | None:
        """The most frequent id, (a lower bound on) its count, and the runner-up's count (0 if none)."""
        if not self.counts:
            return None
        ranked = sorted(self.counts.items(), key=lambda kv: -kv[1])
        return ranked[0][0], ranked[0][1], ranked[1][1] if len(ranked) > 1 else 0


def concentration_warnings(tops: dict[str, tuple[str, object, int, int]], rows: int) -> list[str]:
    """One sentence per id role (``user``/``item`` -> (column, id, count, runner-up's count)) whose top id holds
    at least :data:`DOMINANT_SHARE` of the events and :data:`DOMINANT_RATIO` times the runner-up's count."""
    out = []
    for role, (column, key, n, second) in tops.items():
        share = n / rows if rows else 0.0
        if share >= DOMINANT_SHARE and n >= DOMINANT_RATIO * second:
            out.append(f"{role} id {key!r} (column {column}) is on {n:,} of the {rows:,} events ({share:.0%}; the "
                       f"next most frequent on {second:,}); if it is a placeholder (an unknown device, a logged-out "
                       f"visitor, a default value), all those events count as one {role} and its vector weighs on "
                       f"every verdict: pick another {role} id column, or drop those rows before the import")
    return out


def exact_tops(events: pd.DataFrame, columns: dict[str, str]) -> dict[str, tuple[str, object, int, int]]:
    """The most frequent id of each role's column (``role -> column``) and the runner-up's count, exactly."""
    out: dict[str, tuple[str, object, int, int]] = {}
    for role, column in columns.items():
        vc = events[column].value_counts()
        if len(vc):
            key = vc.index[0]
            out[role] = (column, key.item() if hasattr(key, "item") else key, int(vc.iloc[0]),
                         int(vc.iloc[1]) if len(vc) > 1 else 0)
    return out


def split_warnings(split: SplitSpec, span: tuple[int, int] | None) -> list[str]:
    """A time split whose cut leaves no downstream (or no upstream) event, given the events' time span."""
    if split.kind != SplitKind.TIME or span is None or split.cut is None:
        return []
    from lee.timeutil import iso, parse_event_time

    lo, hi = span
    when = f"the events run from {iso(parse_event_time(lo))} to {iso(parse_event_time(hi))}"
    if split.cut > hi:
        return [f"the split's cut {iso(parse_event_time(split.cut))} is after the last event ({when}): no event is "
                "downstream, so LEE has nothing to score — give --split time:T inside that span"]
    if split.cut <= lo:
        return [f"the split's cut {iso(parse_event_time(split.cut))} is at or before the first event ({when}): "
                "every event is downstream and none is upstream"]
    return []
