"""Discovery over a snapshot root: variants, their event times, nearest and previous snapshots.

A root is laid out as ``<root>/<variant>/<event-time>/``. Hidden entries (the temporaries of an
unfinished write, ``.tmp-*`` / ``.old-*``) are never listed. Anything else that is not a readable
snapshot directory — a directory without ``manifest.json`` or whose manifest is a dangling link, a
directory or a FIFO, a time directory whose name is not an event time, a variant directory with an
invalid name, a symbolic link leading out of the root, a stray file — is a
:class:`SnapshotProblem`: never silently skipped. ``lee snapshots validate`` lists each one and
fails; :meth:`SnapshotStore.problems` gives them to analyses, and the store's listings warn
(:class:`SkippedSnapshotWarning`) once per problem, naming the path and the reason, so that
"the latest snapshot" can never silently become the previous one.
"""

from __future__ import annotations

import os
import warnings
from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from lee.errors import LeeWarning, SnapshotError, SnapshotNotFoundError
from lee.fileio import UnsafeFileError, check_regular, file_kind, resolve_inside
from lee.snapshot.checks import max_abs_bound
from lee.snapshot.format import MANIFEST_NAME, check_variant_name
from lee.snapshot.reader import Snapshot
from lee.timeutil import DIR_FORMAT, iso, parse_event_time, time_dirname


class SkippedSnapshotWarning(LeeWarning):
    """A directory under a snapshot root is not a readable snapshot and was left out of a listing."""


@dataclass(frozen=True)
class SnapshotProblem:
    """A directory (or file) under a snapshot root that cannot be read as a snapshot, and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"

    def skipped(self) -> str:
        """The one-line note analyses print: which snapshot was left out and why."""
        return f"skipped {self.path}: {self.reason}"


def _is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def _parse_time_dir(name: str) -> datetime | None:
    """The event time a directory name stands for, if it is exactly the writer's form."""
    try:
        when = datetime.strptime(name, DIR_FORMAT).replace(tzinfo=parse_event_time(0).tzinfo)
    except ValueError:
        return None
    return when if time_dirname(when) == name else None


def _entries(directory: Path, problems: list[SnapshotProblem]) -> list[Path]:
    """Non-hidden entries of ``directory``, sorted; a directory that cannot be listed is a problem."""
    try:
        return sorted(p for p in directory.iterdir() if not _is_hidden(p))
    except OSError as exc:
        problems.append(SnapshotProblem(directory, f"cannot be listed ({exc.strerror or exc})"))
        return []


def _dir_problem(path: Path, root: Path, what: str) -> str | None:
    """Why ``path`` is not a directory to descend into (a link out of ``root``, dangling, a file)."""
    try:
        resolve_inside(path, root)
        st = os.stat(path)
    except UnsafeFileError as exc:
        return f"{exc.reason}; not read"
    except FileNotFoundError:
        return f"is a dangling symbolic link (to {os.readlink(path)})" if path.is_symlink() else "vanished"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if not os.path.isdir(path):
        return f"is {file_kind(st.st_mode)}, not a {what} directory; a snapshot root holds only " \
               "<variant>/<event-time>/ directories"
    return None


def _manifest_problem(snap_dir: Path, root: Path) -> SnapshotProblem | None:
    """Why ``snap_dir`` has no readable manifest (missing, a dangling link, a directory, a FIFO...)."""
    manifest = snap_dir / MANIFEST_NAME
    if not os.path.lexists(manifest):
        return SnapshotProblem(snap_dir, f"holds no {MANIFEST_NAME}: an unfinished, damaged or hand-made snapshot "
                                         "directory")
    try:
        check_regular(manifest, root=root)
    except UnsafeFileError as exc:
        return SnapshotProblem(manifest, exc.reason)
    except FileNotFoundError:
        return SnapshotProblem(manifest, "vanished")
    except OSError as exc:
        return SnapshotProblem(manifest, f"cannot be read ({exc.strerror or exc})")
    return None


def _scan_variant(vdir: Path, root: Path, problems: list[SnapshotProblem]) -> list[Path]:
    """Snapshot directories directly inside a variant directory; everything else becomes a problem."""
    found = []
    for child in _entries(vdir, problems):
        reason = _dir_problem(child, root, "snapshot")
        if reason is None and _parse_time_dir(child.name) is None:
            reason = ("directory name is not an event time in the writer's form (e.g. 20260101T000500Z); "
                      "snapshots must not be renamed")
        if reason is not None:
            problems.append(SnapshotProblem(child, reason))
        elif (bad_manifest := _manifest_problem(child, root)) is not None:
            problems.append(bad_manifest)
        else:
            found.append(child)
    return found


def _scan_root(root: Path, problems: list[SnapshotProblem]) -> list[Path]:
    """Snapshot directories of every variant under ``root``; everything else becomes a problem."""
    found = []
    for child in _entries(root, problems):
        reason = _dir_problem(child, root, "variant")
        if reason is None:
            try:
                check_variant_name(child.name)
            except SnapshotError as exc:
                reason = f"is not a variant directory: {exc}"
        if reason is not None:
            problems.append(SnapshotProblem(child, reason))
            continue
        found.extend(_scan_variant(child, root, problems))
    return found


def _looks_like_variant(path: Path) -> bool:
    try:
        return any(_parse_time_dir(p.name) is not None for p in path.iterdir() if not _is_hidden(p))
    except OSError:
        return False


def scan_snapshot_dirs(path: str | Path) -> tuple[list[Path], list[SnapshotProblem]]:
    """The snapshot directories at ``path`` and the problems found on the way.

    ``[path]`` for a snapshot directory (one with a ``manifest.json`` entry, even a broken one: the
    reader says what is wrong with it), its snapshots for a variant directory (one holding a
    directory named as an event time), every ``<variant>/<event-time>`` snapshot for a root.
    Symbolic links must stay inside ``path``. A path that does not exist gives ``([], [])``:
    callers that need a reason open ``path`` themselves.
    """
    path = Path(path)
    problems: list[SnapshotProblem] = []
    if os.path.lexists(path / MANIFEST_NAME):
        return [path], problems
    if not path.is_dir():
        return [], problems
    if _looks_like_variant(path):
        return sorted(_scan_variant(path, path, problems)), problems
    return sorted(_scan_root(path, problems)), problems


def find_snapshot_dirs(path: str | Path) -> list[Path]:
    """The readable-looking snapshot directories at ``path`` (see :func:`scan_snapshot_dirs`), sorted."""
    return scan_snapshot_dirs(path)[0]


_WARNED: set[SnapshotProblem] = set()


class SnapshotStore:
    """A directory laid out as ``<root>/<variant>/<event-time>/``.

    Every snapshot it opens is confined to ``root`` (no file may resolve outside it) and checked
    against the magnitude bound ``max_abs`` (None: ``$LEE_MAX_ABS_VALUE`` or 1e6).
    """

    def __init__(self, root: str | Path, *, max_abs: float | None = None) -> None:
        root = Path(root)
        if not root.is_dir():
            raise SnapshotNotFoundError("is not a snapshot root (no such directory)", path=root)
        max_abs_bound(max_abs)
        self.root = root
        self.max_abs = max_abs
        self._scanned = False

    def __repr__(self) -> str:
        return f"SnapshotStore({str(self.root)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SnapshotStore) and (self.root, self.max_abs) == (other.root, other.max_abs)

    def __hash__(self) -> int:
        return hash((self.root, self.max_abs))

    def _warn(self, problems: list[SnapshotProblem]) -> None:
        """Warn once per problem and process; a store's first listing warns about every problem
        under the root, so a command reading any variant names every unreadable directory of it."""
        if not self._scanned:
            self._scanned = True
            problems = [*problems, *self.problems()]
        for p in problems:
            if p not in _WARNED:  # once per process: every store of a command reads the same root
                _WARNED.add(p)
                warnings.warn(p.skipped(), SkippedSnapshotWarning, stacklevel=3)

    def problems(self) -> list[SnapshotProblem]:
        """Every entry under the root that is not a readable snapshot directory, with the reason.

        Analyses state these in their output (or refuse); ``lee snapshots validate`` fails on them.
        """
        problems: list[SnapshotProblem] = []
        _scan_root(self.root, problems)
        return problems

    def variants(self) -> list[str]:
        """Variant names that hold at least one snapshot, sorted (problems are warned about)."""
        problems: list[SnapshotProblem] = []
        dirs = _scan_root(self.root, problems)
        self._warn(problems)
        return sorted({d.parent.name for d in dirs})

    def times(self, variant: str) -> list[datetime]:
        """Event times of a variant's snapshots, oldest first (problems in it are warned about)."""
        try:
            check_variant_name(variant)
        except SnapshotError as exc:
            raise SnapshotError(str(exc), path=self.root) from None
        vdir = self.root / variant
        reason = _dir_problem(vdir, self.root, "variant") if os.path.lexists(vdir) else None
        if reason is not None:
            raise SnapshotError(reason, path=vdir)
        if not vdir.is_dir():
            have = ", ".join(self.variants()) or "none"
            raise SnapshotNotFoundError(f"has no variant {variant!r}; variants present: {have}", path=self.root)
        problems: list[SnapshotProblem] = []
        dirs = _scan_variant(vdir, self.root, problems)
        self._warn(problems)
        return sorted(t for t in (_parse_time_dir(d.name) for d in dirs) if t is not None)

    def path(self, variant: str, event_time: str | datetime | int) -> Path:
        check_variant_name(variant)
        return self.root / variant / time_dirname(parse_event_time(event_time))

    def _open(self, variant: str, when: datetime) -> Snapshot:
        """Open a listed snapshot: confined to the root, its manifest agreeing with where it lies."""
        return Snapshot.open(self.path(variant, when), root=self.root, max_abs=self.max_abs)

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


def open_any(path: str | Path, *, max_abs: float | None = None) -> Snapshot:
    """Open a snapshot given its directory, raising a clear error when ``path`` is a root or variant dir."""
    path = Path(path)
    if os.path.lexists(path / MANIFEST_NAME):
        return Snapshot.open(path, max_abs=max_abs)
    if path.is_dir() and _looks_like_variant(path):
        raise SnapshotError("is a variant directory; name one of its snapshot directories", path=path)
    return Snapshot.open(path, max_abs=max_abs)  # raises the precise error (missing manifest / not a directory)
