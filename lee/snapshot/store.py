"""Discovery over a snapshot root: variants, their event times, nearest and previous snapshots."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from lee.errors import SnapshotError, SnapshotNotFoundError
from lee.snapshot.format import MANIFEST_NAME, check_variant_name
from lee.snapshot.reader import Snapshot
from lee.timeutil import DIR_FORMAT, iso, parse_event_time, time_dirname


def _is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def _holds_manifest(path: Path) -> bool:
    return (path / MANIFEST_NAME).is_file()


def find_snapshot_dirs(path: str | Path) -> list[Path]:
    """The snapshot directories at ``path``, sorted: ``[path]`` for a snapshot directory, its
    snapshots for a variant directory, every ``<variant>/<event-time>`` snapshot for a root.

    A snapshot directory is one holding a ``manifest.json``; hidden directories (the temporaries
    of an unfinished write, ``.tmp-*`` / ``.old-*``) are never listed. Anything else, including a
    path that does not exist, gives ``[]``: callers that need a reason open ``path`` themselves.
    """
    path = Path(path)
    if _holds_manifest(path):
        return [path]
    if not path.is_dir():
        return []
    found = []
    for child in path.iterdir():
        if _is_hidden(child) or not child.is_dir():
            continue
        if _holds_manifest(child):   # path is a variant directory (a snapshot never holds another)
            found.append(child)
            continue
        found.extend(s for s in child.iterdir() if not _is_hidden(s) and _holds_manifest(s))  # path is a root
    return sorted(found)


@dataclass(frozen=True)
class SnapshotStore:
    """A directory laid out as ``<root>/<variant>/<event-time>/``."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        root = Path(root)
        if not root.is_dir():
            raise SnapshotNotFoundError("is not a snapshot root (no such directory)", path=root)
        object.__setattr__(self, "root", root)

    def variants(self) -> list[str]:
        """Variant names that hold at least one snapshot, sorted."""
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and not _is_hidden(p) and self._times_in(p))

    def times(self, variant: str) -> list[datetime]:
        """Event times of a variant's snapshots, oldest first."""
        check_variant_name(variant)
        vdir = self.root / variant
        if not vdir.is_dir():
            have = ", ".join(self.variants()) or "none"
            raise SnapshotNotFoundError(f"has no variant {variant!r}; variants present: {have}", path=self.root)
        return self._times_in(vdir)

    @staticmethod
    def _times_in(vdir: Path) -> list[datetime]:
        """Event times of the snapshot directories directly inside ``vdir`` named as the writer names
        them (hidden temporaries of an unfinished write are never listed)."""
        out = []
        for p in find_snapshot_dirs(vdir):
            if p.parent != vdir:
                continue  # deeper than <variant>/<event-time>/: not part of this store's layout
            try:
                out.append(datetime.strptime(p.name, DIR_FORMAT).replace(tzinfo=parse_event_time(0).tzinfo))
            except ValueError:
                continue
        return sorted(out)

    def path(self, variant: str, event_time: str | datetime | int) -> Path:
        check_variant_name(variant)
        return self.root / variant / time_dirname(parse_event_time(event_time))

    def _open(self, variant: str, when: datetime) -> Snapshot:
        """Open a listed snapshot and check that its manifest agrees with where it lies."""
        snap = Snapshot.open(self.path(variant, when))
        if snap.variant != variant or snap.event_time != when:
            raise SnapshotError(
                f"manifest says variant {snap.variant!r} at {iso(snap.event_time)}, but the directory is "
                f"{variant}/{time_dirname(when)}; snapshots must not be renamed or moved between variants",
                path=snap.path / MANIFEST_NAME,
            )
        return snap

    def open(self, variant: str, event_time: str | datetime | int) -> Snapshot:
        when = parse_event_time(event_time)
        if when not in self.times(variant):
            raise SnapshotNotFoundError(f"variant {variant!r} has no snapshot at {iso(when)}", path=self.root)
        return self._open(variant, when)

    def latest(self, variant: str) -> Snapshot:
        times = self.times(variant)
        if not times:
            raise SnapshotNotFoundError(f"variant {variant!r} has no snapshots", path=self.root / variant)
        return self._open(variant, times[-1])

    def nearest(self, variant: str, event_time: str | datetime | int, *, at_or_before: bool = False) -> Snapshot:
        """The snapshot closest to ``event_time`` (ties go to the earlier), or the latest at or before it."""
        when = parse_event_time(event_time)
        times = self.times(variant)
        if not times:
            raise SnapshotNotFoundError(f"variant {variant!r} has no snapshots", path=self.root / variant)
        k = bisect_right(times, when)
        if at_or_before:
            if k == 0:
                raise SnapshotNotFoundError(
                    f"variant {variant!r} has no snapshot at or before {iso(when)}; the first is {iso(times[0])}",
                    path=self.root / variant,
                )
            return self._open(variant, times[k - 1])
        candidates = times[max(k - 1, 0) : k + 1]
        best = min(candidates, key=lambda t: (abs((t - when).total_seconds()), t))
        return self._open(variant, best)

    def previous(self, snapshot: Snapshot, *, minutes: float = 5.0, tolerance_minutes: float = 0.0) -> Snapshot:
        """The snapshot of the same variant ``minutes`` before ``snapshot``.

        The latest snapshot at or before that time is taken if it lies within ``tolerance_minutes``
        of it; otherwise the error says which snapshot times exist.
        """
        target = snapshot.event_time - timedelta(minutes=minutes)
        times = self.times(snapshot.variant)
        k = bisect_right(times, target)
        if k > 0 and (target - times[k - 1]) <= timedelta(minutes=tolerance_minutes):
            return self._open(snapshot.variant, times[k - 1])
        raise SnapshotNotFoundError(
            f"variant {snapshot.variant!r} has no snapshot {minutes:g} minutes before {iso(snapshot.event_time)} "
            f"(wanted {iso(target)}, tolerance {tolerance_minutes:g} min); "
            f"times present: {', '.join(iso(t) for t in times[:6])}{' …' if len(times) > 6 else ''}",
            path=self.root / snapshot.variant,
        )


def open_any(path: str | Path) -> Snapshot:
    """Open a snapshot given its directory, raising a clear error when ``path`` is a root or variant dir."""
    path = Path(path)
    if (path / MANIFEST_NAME).is_file():
        return Snapshot.open(path)
    if path.is_dir() and any((p / MANIFEST_NAME).is_file() for p in path.iterdir() if p.is_dir()):
        raise SnapshotError("is a variant directory; name one of its snapshot directories", path=path)
    return Snapshot.open(path)  # raises the precise error (missing manifest / not a directory)
