"""Event-time parsing and formatting.

Event time is always a timezone-aware UTC ``datetime``. Snapshot directories are named with a
compact, sortable, filesystem-safe form (``20260101T000500Z``); manifests and users see ISO 8601.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from lee.errors import InputError

DIR_FORMAT = "%Y%m%dT%H%M%SZ"


def parse_event_time(value: str | datetime | int | float | np.integer) -> datetime:
    """Parse an event time from ISO 8601, the directory form, a datetime or epoch seconds.

    Naive datetimes and ISO strings without an offset are taken as UTC.
    """
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        dt = datetime.fromtimestamp(float(value), tz=UTC)
    elif isinstance(value, str):
        text = value.strip()
        try:
            dt = datetime.strptime(text, DIR_FORMAT)
        except ValueError:
            try:
                dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise InputError(
                    f"cannot read event time {value!r}: expected ISO 8601 such as "
                    "'2026-01-01T00:05:00Z', the directory form '20260101T000500Z', or epoch seconds"
                ) from None
    else:
        raise InputError(f"cannot read event time from a {type(value).__name__}: {value!r}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def time_dirname(dt: datetime) -> str:
    """The directory name of a snapshot taken at ``dt`` (years 1000-9999, so names sort as times)."""
    when = parse_event_time(dt)
    if not 1000 <= when.year <= 9999:
        raise InputError(f"event time {when.isoformat()} is outside the years 1000-9999 that snapshots support")
    return when.strftime(DIR_FORMAT)


def iso(dt: datetime) -> str:
    """ISO 8601 with a trailing Z, to the second."""
    return parse_event_time(dt).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch_seconds(dt: datetime) -> int:
    """Whole seconds since the Unix epoch."""
    return int(parse_event_time(dt).timestamp())
